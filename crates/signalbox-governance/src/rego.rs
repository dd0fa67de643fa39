//! Custom gate rules in Rego, evaluated by regorus with an execution time limit. A module is
//! parsed and prepared (analysed, scheduled) once ([`compile`]) and the prepared engine cloned
//! per evaluation; an input can be parsed once ([`RegoInput`]) for many evaluations, with single
//! top-level keys replaced per evaluation (the document's `now`). The module's package must
//! define `deny` as a set (or array) of strings; any error — a parse error, a runtime error, a
//! timeout, a `deny` of the wrong shape — is reported as an error, never as a pass.

use std::num::NonZeroU32;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;

/// Default wall-clock budget for one rule's evaluation.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct CompiledRego {
    pub name: String,
    pub package: String,
    engine: regorus::Engine,
}

impl std::fmt::Debug for CompiledRego {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRego").field("name", &self.name).field("package", &self.package).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegoOutcome {
    /// The `deny` messages (empty: the rule passes).
    Denied(Vec<String>),
    Error(String),
}

/// An input document in regorus' own form, converted once and shared by every evaluation that
/// reads it (cloning is a reference count).
#[derive(Debug, Clone)]
pub struct RegoInput(regorus::Value);

impl RegoInput {
    pub fn from_json(input_json: &str) -> Result<RegoInput, String> {
        regorus::Value::from_json_str(input_json).map(RegoInput).map_err(|e| format!("input rejected: {e}"))
    }

    /// This input with its top-level `key` set to `value`; only the top-level object is copied.
    pub fn with(&self, key: &str, value: serde_json::Value) -> Result<RegoInput, String> {
        let mut out = self.0.clone();
        let object = out.as_object_mut().map_err(|_| "input rejected: not an object".to_string())?;
        object.insert(regorus::Value::from(key), regorus::Value::from(value));
        Ok(RegoInput(out))
    }
}

/// Parses `module` and checks it declares a package. The error text is for the user.
pub fn compile(name: &str, module: &str, time_limit: Duration) -> Result<CompiledRego, String> {
    let mut engine = regorus::Engine::new();
    let package = engine.add_policy(format!("{name}.rego"), module.to_string()).map_err(|e| format!("{e}"))?;
    let package = package.strip_prefix("data.").unwrap_or(&package).to_string();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: time_limit,
        check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
    });
    // regorus analyses and schedules the modules on the first evaluation and keeps the result in
    // the engine; doing it here means every clone starts prepared. Only the preparation
    // matters: evaluation state is reset by every `eval_rule`, and this outcome is dropped.
    engine.set_input(regorus::Value::new_object());
    let _ = engine.eval_rule(format!("data.{package}.deny"));
    Ok(CompiledRego { name: name.to_string(), package, engine })
}

impl CompiledRego {
    /// Evaluates `data.<package>.deny` over `input_json` (the release evidence document).
    pub fn evaluate(&self, input_json: &str) -> RegoOutcome {
        match RegoInput::from_json(input_json) {
            Ok(input) => self.evaluate_input(&input),
            Err(e) => RegoOutcome::Error(e),
        }
    }

    /// [`CompiledRego::evaluate`] over an input converted before.
    pub fn evaluate_input(&self, input: &RegoInput) -> RegoOutcome {
        let mut engine = self.engine.clone();
        engine.set_input(input.0.clone());
        let query = format!("data.{}.deny", self.package);
        let value = match engine.eval_rule(query.clone()) {
            Ok(v) => v,
            Err(e) => return RegoOutcome::Error(format!("{e}")),
        };
        let json = match value.to_json_str() {
            Ok(j) => j,
            Err(e) => return RegoOutcome::Error(format!("{e}")),
        };
        match serde_json::from_str::<serde_json::Value>(&json) {
            // An undefined `deny` (no rule body matched) means nothing is denied.
            Ok(serde_json::Value::Null) => RegoOutcome::Denied(vec![]),
            Ok(serde_json::Value::String(s)) if s == "<undefined>" => RegoOutcome::Denied(vec![]),
            Ok(serde_json::Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        serde_json::Value::String(s) => out.push(s),
                        other => out.push(other.to_string()),
                    }
                }
                out.sort();
                RegoOutcome::Denied(out)
            }
            Ok(other) => RegoOutcome::Error(format!("{query} must be a set of messages, got {other}")),
            Err(e) => RegoOutcome::Error(format!("{e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRIDAY: &str = r#"
package signalbox.custom

import rego.v1

deny contains msg if {
    some c in input.components
    c.service == "payments"
    msg := sprintf("%s may not ship without a sign-off", [c.service])
}
"#;

    #[test]
    fn deny_messages_fail_and_absence_passes() {
        let r = compile("payments-signoff", FRIDAY, DEFAULT_TIME_LIMIT).unwrap();
        assert_eq!(r.package, "signalbox.custom");
        let hit = r#"{"components":[{"service":"payments"}]}"#;
        assert_eq!(r.evaluate(hit), RegoOutcome::Denied(vec!["payments may not ship without a sign-off".into()]));
        let miss = r#"{"components":[{"service":"search"}]}"#;
        assert_eq!(r.evaluate(miss), RegoOutcome::Denied(vec![]));
    }

    #[test]
    fn a_prepared_input_with_a_replaced_key_decides_as_the_same_json_does() {
        let module = "package t\nimport rego.v1\ndeny contains \"late\" if { input.now > \"2026-06\" }\n\
                      deny contains c.service if { some c in input.components; c.service == \"payments\" }";
        let r = compile("now", module, DEFAULT_TIME_LIMIT).unwrap();
        let json = r#"{"now":"2026-01-01T00:00:00Z","components":[{"service":"payments"}]}"#;
        let input = RegoInput::from_json(json).unwrap();
        assert_eq!(r.evaluate_input(&input), r.evaluate(json));
        assert_eq!(r.evaluate_input(&input), RegoOutcome::Denied(vec!["payments".into()]));
        let later = input.with("now", serde_json::json!("2026-07-01T00:00:00Z")).unwrap();
        assert_eq!(r.evaluate_input(&later), RegoOutcome::Denied(vec!["late".into(), "payments".into()]));
        assert_eq!(r.evaluate_input(&input), RegoOutcome::Denied(vec!["payments".into()]), "the original is unchanged");
        assert!(RegoInput::from_json("[1]").unwrap().with("now", serde_json::json!(1)).is_err());
    }

    #[test]
    fn syntax_errors_are_refused_at_compile_time() {
        let err = compile("broken", "package x\n deny contains msg if {", DEFAULT_TIME_LIMIT).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn runtime_errors_and_wrong_shapes_are_errors_not_passes() {
        let r = compile("shape", "package s\nimport rego.v1\ndeny := 5", DEFAULT_TIME_LIMIT).unwrap();
        assert!(matches!(r.evaluate("{}"), RegoOutcome::Error(_)));
        let r = compile("obj", "package o\nimport rego.v1\ndeny := {\"a\": 1}", DEFAULT_TIME_LIMIT).unwrap();
        assert!(matches!(r.evaluate("{}"), RegoOutcome::Error(_)));
    }

    #[test]
    fn a_runaway_policy_times_out_as_an_error() {
        let slow = r#"
package slow
import rego.v1
deny contains "never" if {
    count([x | some a in numbers.range(1, 3000); some b in numbers.range(1, 3000); x := a * b]) < 0
}
"#;
        let r = compile("slow", slow, Duration::from_millis(50)).unwrap();
        let out = r.evaluate("{}");
        assert!(matches!(&out, RegoOutcome::Error(e) if e.contains("time") || e.contains("limit")), "{out:?}");
    }
}
