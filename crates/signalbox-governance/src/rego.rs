//! Custom gate rules in Rego, evaluated by regorus with an execution time limit. A module is
//! parsed once ([`compile`]) and its engine cloned per evaluation. The module's package must
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

/// Parses `module` and checks it declares a package. The error text is for the user.
pub fn compile(name: &str, module: &str, time_limit: Duration) -> Result<CompiledRego, String> {
    let mut engine = regorus::Engine::new();
    let package = engine.add_policy(format!("{name}.rego"), module.to_string()).map_err(|e| format!("{e}"))?;
    let package = package.strip_prefix("data.").unwrap_or(&package).to_string();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: time_limit,
        check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
    });
    Ok(CompiledRego { name: name.to_string(), package, engine })
}

impl CompiledRego {
    /// Evaluates `data.<package>.deny` over `input_json` (the release evidence document).
    pub fn evaluate(&self, input_json: &str) -> RegoOutcome {
        let mut engine = self.engine.clone();
        if let Err(e) = engine.set_input_json(input_json) {
            return RegoOutcome::Error(format!("input rejected: {e}"));
        }
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
