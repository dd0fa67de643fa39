//! Gate evaluation (SPEC C4). The input is the *release evidence document*: one JSON-shaped
//! summary of everything known about a release headed for one environment, built by the
//! application from stored evidence facts. Built-in rules and Rego rules read the same
//! document, so what a custom rule sees is exactly what the built-ins decided from
//! (docs/GOVERNANCE.md documents every field).
//!
//! Every rule yields pass, fail, not applicable, error or bypassed, with the numbers behind
//! it. An error (a Rego module that fails, a timeout) is never a pass.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signalbox_domain::model::DocumentKind;
use utoipa::ToSchema;

use crate::policy::{EnvironmentPolicy, DEFAULT_MAX_CVSS};
use crate::rego::{CompiledRego, RegoInput, RegoOutcome};
use crate::risk::{RiskAssessment, RiskLevel};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TestSummary {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub errored: u64,
    pub skipped: u64,
    /// Names of failing tests, first few.
    #[serde(default)]
    pub failing: Vec<String>,
    pub evidence_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CoverageSummary {
    /// Line coverage in percent, 0–100.
    pub line_percent: f64,
    pub lines_total: u64,
    pub lines_covered: u64,
    pub evidence_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FindingSummary {
    pub total: u64,
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub max_score: Option<f64>,
    /// The highest-scored findings (rule id, score, location), first few.
    #[serde(default)]
    pub top: Vec<TopFinding>,
    pub evidence_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopFinding {
    pub rule_id: String,
    pub score: Option<f64>,
    pub severity: String,
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerformanceMetric {
    pub name: String,
    pub unit: String,
    pub baseline: f64,
    pub current: f64,
    /// Regression in percent versus the baseline; positive means worse.
    pub regression_percent: f64,
}

/// What is known about one component (a service pinned to an artifact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComponentEvidence {
    pub service_id: String,
    pub service: String,
    pub artifact_id: String,
    pub version: String,
    pub digest: String,
    pub tests: Option<TestSummary>,
    pub coverage: Option<CoverageSummary>,
    /// Line coverage of the artifact of this service currently in the environment.
    pub previous_coverage_percent: Option<f64>,
    pub findings: Option<FindingSummary>,
    /// Licenses found in the SBOM; `None` when there is no SBOM evidence.
    pub licenses: Option<Vec<String>>,
    pub sbom_components: Option<u64>,
    pub performance: Option<Vec<PerformanceMetric>>,
    /// The environment before this one on this component's promotion path (its service's path,
    /// else its domain's, else the organization's; without a path covering this environment,
    /// the environment list by position). `None` in the first environment.
    #[serde(default)]
    pub previous_environment: Option<EnvironmentFacts>,
    /// The latest deployment of this service in `previous_environment`, if any.
    #[serde(default)]
    pub upstream_deployment: Option<DeploymentEvidence>,
}

/// A deployment (one component promoted into one environment) as gates read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentEvidence {
    /// `D-<n>`.
    pub key: String,
    pub environment_id: String,
    pub digest: String,
    /// The rollout phase: `progressing`, `paused`, `rolling_back`, `succeeded`, `rolled_back`,
    /// `aborted` or `failed`.
    pub phase: String,
    /// When the rollout finished (`None` while it runs).
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeEvidence {
    pub id: String,
    pub reference: String,
    pub title: String,
    pub change_type: Option<String>,
    pub author: String,
    #[serde(default)]
    pub risk_flags: Vec<String>,
    /// `critical`/`high`/… when the change is a linked bug.
    pub bug_severity: Option<String>,
    pub bug_open: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SmokeEvidence {
    pub passed: u64,
    pub failed: u64,
    pub environment: String,
    pub recorded_at: DateTime<Utc>,
    pub evidence_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DependencyEvidence {
    pub key: String,
    pub state: String,
    pub released: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignoffEvidence {
    pub by: String,
    pub role: Option<String>,
    pub statement: String,
}

/// The release evidence document: the one input of every gate rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseEvidence {
    pub release: ReleaseFacts,
    pub environment: EnvironmentFacts,
    /// The environment before this one in the promotion path, if any.
    pub previous_environment: Option<EnvironmentFacts>,
    pub now: DateTime<Utc>,
    pub components: Vec<ComponentEvidence>,
    pub changes: Vec<ChangeEvidence>,
    pub dependencies: Vec<DependencyEvidence>,
    /// Smoke results recorded for this release in the previous environment, newest first.
    pub smoke: Vec<SmokeEvidence>,
    pub signoffs: Vec<SignoffEvidence>,
    pub risk: RiskAssessment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseFacts {
    pub id: String,
    pub key: String,
    pub name: String,
    pub state: String,
    pub domain_id: Option<String>,
    /// Which documents are present (non-empty text or a linked document).
    pub documents: Vec<DocumentKind>,
    pub planned_window_start: Option<DateTime<Utc>>,
    pub planned_window_end: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentFacts {
    pub id: String,
    pub name: String,
    pub tier: String,
    pub position: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    NotApplicable,
    /// The rule could not be evaluated (a Rego error or timeout). Blocks like a failure.
    Error,
    /// Failed, but an active break-glass bypasses it.
    Bypassed,
}

impl Outcome {
    pub fn blocks(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Error)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuleResult {
    /// Built-in rule name (`tests_passed`, `max_cvss`, …) or `rego:<name>`.
    pub rule: String,
    pub outcome: Outcome,
    pub summary: String,
    /// The numbers behind the outcome.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GateDecision {
    pub environment: String,
    pub passed: bool,
    pub rules: Vec<RuleResult>,
    /// Names of the rules that block, for quoting in refusals.
    pub failing: Vec<String>,
    pub evaluated_at: DateTime<Utc>,
}

impl GateDecision {
    /// One sentence per blocking rule, for lifecycle refusals.
    pub fn failure_reasons(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| r.outcome.blocks())
            .map(|r| format!("gate {} fails for {}: {}", r.rule, self.environment, r.summary))
            .collect()
    }
}

/// Every built-in rule name, for validating break-glass requests.
pub const BUILT_IN_RULES: [&str; 13] = [
    "tests_passed",
    "coverage_min",
    "coverage_no_drop",
    "max_cvss",
    "license_allow",
    "license_deny",
    "performance_tolerance",
    "required_documents",
    "no_open_critical_bugs",
    "smoke_passed",
    "min_soak",
    "dependencies_released",
    "critical_risk_requires_window",
];

struct Rules {
    results: Vec<RuleResult>,
}

impl Rules {
    fn push(&mut self, rule: &str, outcome: Outcome, summary: String, details: serde_json::Value) {
        self.results.push(RuleResult { rule: rule.to_string(), outcome, summary, details });
    }
    fn not_applicable(&mut self, rule: &str, summary: &str) {
        self.push(rule, Outcome::NotApplicable, summary.to_string(), serde_json::Value::Null);
    }
    fn verdict(&mut self, rule: &str, failures: Vec<String>, pass_summary: String, details: serde_json::Value) {
        if failures.is_empty() {
            self.push(rule, Outcome::Pass, pass_summary, details);
        } else {
            self.push(rule, Outcome::Fail, failures.join("; "), details);
        }
    }
}

fn label(c: &ComponentEvidence) -> String {
    format!("{} {}", c.service, c.version)
}

/// The evidence document as Rego input, converted once. It serves every evaluation of a
/// document with the same content whatever its `now`: [`evaluate_with_input`] sets `now` per
/// evaluation.
pub fn rego_input(doc: &ReleaseEvidence) -> Result<RegoInput, String> {
    let json = serde_json::to_string(doc).map_err(|e| format!("input could not be encoded: {e}"))?;
    RegoInput::from_json(&json)
}

/// Evaluates every rule of `policy` (already merged across levels) over `doc`. `rego` holds
/// the policy's compiled Rego rules; `bypassed` the rule names an active break-glass covers.
pub fn evaluate(policy: &EnvironmentPolicy, doc: &ReleaseEvidence, rego: &[CompiledRego], bypassed: &[String]) -> GateDecision {
    let input = if rego.is_empty() { Err(String::new()) } else { rego_input(doc) };
    evaluate_with_input(policy, doc, rego, bypassed, &input)
}

/// [`evaluate`] with the Rego input converted before by [`rego_input`] from a document equal
/// to `doc` except perhaps for `now` (which is taken from `doc`).
pub fn evaluate_with_input(
    policy: &EnvironmentPolicy,
    doc: &ReleaseEvidence,
    rego: &[CompiledRego],
    bypassed: &[String],
    input: &Result<RegoInput, String>,
) -> GateDecision {
    let g = &policy.gates;
    let mut rules = Rules { results: Vec::new() };

    if g.tests_passed == Some(true) {
        let mut failures = Vec::new();
        let mut totals = (0u64, 0u64, 0u64);
        for c in &doc.components {
            match &c.tests {
                None => failures.push(format!("no JUnit evidence for {}", label(c))),
                Some(t) => {
                    totals = (totals.0 + t.total, totals.1 + t.failed, totals.2 + t.errored);
                    if t.failed + t.errored > 0 {
                        let names = if t.failing.is_empty() { String::new() } else { format!(" ({})", t.failing.join(", ")) };
                        failures.push(format!("{}: {} failed, {} errored of {}{names}", label(c), t.failed, t.errored, t.total));
                    }
                }
            }
        }
        let details = serde_json::json!({"tests": totals.0, "failed": totals.1, "errored": totals.2});
        rules.verdict(
            "tests_passed",
            failures,
            format!("{} tests across {} components, none failed", totals.0, doc.components.len()),
            details,
        );
    } else {
        rules.not_applicable("tests_passed", "not required by the policy");
    }

    match g.coverage_min_percent {
        Some(min) => {
            let mut failures = Vec::new();
            let mut seen = Vec::new();
            for c in &doc.components {
                match &c.coverage {
                    None => failures.push(format!("no coverage evidence for {}", label(c))),
                    Some(cov) => {
                        seen.push(serde_json::json!({"service": c.service, "line_percent": cov.line_percent}));
                        if cov.line_percent < min {
                            failures.push(format!("{} covers {:.1}% of lines, below the minimum {min}%", label(c), cov.line_percent));
                        }
                    }
                }
            }
            rules.verdict(
                "coverage_min",
                failures,
                format!("every component covers at least {min}% of lines"),
                serde_json::json!({"minimum_percent": min, "components": seen}),
            );
        }
        None => rules.not_applicable("coverage_min", "no minimum set"),
    }

    if g.coverage_no_drop == Some(true) {
        let mut failures = Vec::new();
        let mut compared = Vec::new();
        for c in &doc.components {
            if let (Some(cov), Some(prev)) = (&c.coverage, c.previous_coverage_percent) {
                compared.push(serde_json::json!({"service": c.service, "current": cov.line_percent, "in_environment": prev}));
                if cov.line_percent + 1e-9 < prev {
                    failures.push(format!(
                        "{} covers {:.1}% of lines, down from {:.1}% in the artifact now in {}",
                        label(c),
                        cov.line_percent,
                        prev,
                        doc.environment.name
                    ));
                }
            } else if c.coverage.is_none() {
                failures.push(format!("no coverage evidence for {}", label(c)));
            }
        }
        if compared.is_empty() && failures.is_empty() {
            rules.not_applicable("coverage_no_drop", "no artifact with coverage evidence is in the environment yet");
        } else {
            rules.verdict(
                "coverage_no_drop",
                failures,
                "no component's coverage dropped".into(),
                serde_json::json!({"compared": compared}),
            );
        }
    } else {
        rules.not_applicable("coverage_no_drop", "not required by the policy");
    }

    let threshold = g.max_cvss.unwrap_or(DEFAULT_MAX_CVSS);
    let scanned: Vec<&ComponentEvidence> = doc.components.iter().filter(|c| c.findings.is_some()).collect();
    if scanned.is_empty() && g.security_scan_required != Some(true) {
        rules.not_applicable("max_cvss", "no SARIF evidence; set security_scan_required to demand it");
    } else {
        let mut failures = Vec::new();
        let mut max_seen: Option<f64> = None;
        for c in &doc.components {
            match &c.findings {
                None if g.security_scan_required == Some(true) => failures.push(format!("no SARIF evidence for {}", label(c))),
                None => {}
                Some(f) => {
                    if let Some(m) = f.max_score {
                        max_seen = Some(max_seen.map_or(m, |x: f64| x.max(m)));
                    }
                    let over: Vec<String> = f
                        .top
                        .iter()
                        .filter(|t| t.score.is_some_and(|s| s >= threshold))
                        .map(|t| format!("{} ({})", t.rule_id, t.score.unwrap_or_default()))
                        .collect();
                    if f.max_score.is_some_and(|m| m >= threshold) {
                        failures.push(format!("{} has findings at or above CVSS {threshold}: {}", label(c), over.join(", ")));
                    }
                }
            }
        }
        rules.verdict(
            "max_cvss",
            failures,
            format!("no finding at or above CVSS {threshold}"),
            serde_json::json!({"threshold": threshold, "max_score": max_seen, "scanned_components": scanned.len()}),
        );
    }

    match &g.license_allow {
        Some(allow) => {
            let mut failures = Vec::new();
            for c in &doc.components {
                match &c.licenses {
                    None => failures.push(format!("no SBOM evidence for {}", label(c))),
                    Some(ls) => {
                        let bad: Vec<&String> = ls.iter().filter(|l| !license_allowed(l, allow)).collect();
                        if !bad.is_empty() {
                            failures.push(format!("{} uses licenses outside the allow list: {bad:?}", label(c)));
                        }
                    }
                }
            }
            rules.verdict("license_allow", failures, "every SBOM license is allowed".into(), serde_json::json!({"allow": allow}));
        }
        None => rules.not_applicable("license_allow", "no allow list"),
    }
    match &g.license_deny {
        Some(deny) if !deny.is_empty() => {
            let mut failures = Vec::new();
            for c in &doc.components {
                if let Some(ls) = &c.licenses {
                    let bad: Vec<&String> = ls.iter().filter(|l| license_denied(l, deny)).collect();
                    if !bad.is_empty() {
                        failures.push(format!("{} uses denied licenses: {bad:?}", label(c)));
                    }
                }
            }
            rules.verdict("license_deny", failures, "no denied license in any SBOM".into(), serde_json::json!({"deny": deny}));
        }
        _ => rules.not_applicable("license_deny", "no deny list"),
    }

    match g.performance_tolerance_percent {
        Some(tol) => {
            let mut failures = Vec::new();
            let mut measured = 0;
            for c in &doc.components {
                for m in c.performance.iter().flatten() {
                    measured += 1;
                    if m.regression_percent > tol {
                        failures.push(format!(
                            "{}: {} is {:.1}% worse than the baseline ({} → {} {}), tolerance {tol}%",
                            label(c),
                            m.name,
                            m.regression_percent,
                            m.baseline,
                            m.current,
                            m.unit
                        ));
                    }
                }
            }
            if measured == 0 {
                rules.push(
                    "performance_tolerance",
                    Outcome::Fail,
                    "no performance evidence; upload results against a baseline".into(),
                    serde_json::json!({"tolerance_percent": tol}),
                );
            } else {
                rules.verdict(
                    "performance_tolerance",
                    failures,
                    format!("{measured} metric(s) within {tol}% of the baseline"),
                    serde_json::json!({"tolerance_percent": tol, "metrics": measured}),
                );
            }
        }
        None => rules.not_applicable("performance_tolerance", "no tolerance set"),
    }

    match &g.required_documents {
        Some(docs) if !docs.is_empty() => {
            let missing: Vec<&str> = docs.iter().filter(|d| !doc.release.documents.contains(d)).map(|d| d.label()).collect();
            let failures = if missing.is_empty() { vec![] } else { vec![format!("missing documents: {}", missing.join(", "))] };
            rules.verdict(
                "required_documents",
                failures,
                "every required document is present".into(),
                serde_json::json!({"required": docs, "missing": missing}),
            );
        }
        _ => rules.not_applicable("required_documents", "no documents required"),
    }

    if g.no_open_critical_bugs == Some(true) {
        let open: Vec<String> = doc
            .changes
            .iter()
            .filter(|c| c.bug_open && matches!(c.bug_severity.as_deref(), Some("critical") | Some("high")))
            .map(|c| format!("{} ({})", c.reference, c.bug_severity.as_deref().unwrap_or_default()))
            .collect();
        let failures = if open.is_empty() { vec![] } else { vec![format!("open critical/high bugs linked: {}", open.join(", "))] };
        rules.verdict(
            "no_open_critical_bugs",
            failures,
            "no open critical or high bug is linked".into(),
            serde_json::json!({"open": open}),
        );
    } else {
        rules.not_applicable("no_open_critical_bugs", "not required by the policy");
    }

    let previous = doc.previous_environment.as_ref();
    if g.smoke_passed == Some(true) {
        match previous {
            None => rules.not_applicable("smoke_passed", "first environment of the promotion path"),
            Some(prev) => match doc.smoke.iter().find(|s| s.environment == prev.id) {
                None => rules.push(
                    "smoke_passed",
                    Outcome::Fail,
                    format!("no smoke results recorded in {}", prev.name),
                    serde_json::json!({"environment": prev.name}),
                ),
                Some(s) => {
                    let failures = if s.failed > 0 {
                        vec![format!("{} of {} smoke checks failed in {}", s.failed, s.failed + s.passed, prev.name)]
                    } else {
                        vec![]
                    };
                    rules.verdict(
                        "smoke_passed",
                        failures,
                        format!("{} smoke checks passed in {}", s.passed, prev.name),
                        serde_json::json!({"environment": prev.name, "passed": s.passed, "failed": s.failed, "evidence": s.evidence_id}),
                    );
                }
            },
        }
    } else {
        rules.not_applicable("smoke_passed", "not required by the policy");
    }

    match g.min_soak_minutes {
        None => rules.not_applicable("min_soak", "no soak time required"),
        Some(min) => {
            // Soak starts when the same digest's deployment in the previous environment of the
            // component's promotion path finished successfully.
            let upstream: Vec<(&ComponentEvidence, &EnvironmentFacts)> =
                doc.components.iter().filter_map(|c| c.previous_environment.as_ref().map(|p| (c, p))).collect();
            if upstream.is_empty() {
                rules.not_applicable("min_soak", "first environment of the promotion path");
            } else {
                let mut failures = Vec::new();
                let mut soaked = Vec::new();
                for (c, prev) in upstream {
                    match &c.upstream_deployment {
                        Some(d) if d.digest == c.digest && d.phase == "succeeded" => {
                            let since = d.finished_at.unwrap_or(doc.now);
                            let minutes = (doc.now - since).num_minutes().max(0);
                            if minutes < i64::from(min) {
                                failures.push(format!(
                                    "{} soaked {minutes} of the required {min} minutes in {} ({})",
                                    label(c),
                                    prev.name,
                                    d.key
                                ));
                            }
                            soaked.push(serde_json::json!({"service": c.service, "environment": prev.name, "deployment": d.key,
                                "since": since, "soaked_minutes": minutes}));
                        }
                        Some(d) if d.digest == c.digest => {
                            failures.push(format!("{} is {} in {} ({}), not succeeded", label(c), d.phase, prev.name, d.key))
                        }
                        _ => failures.push(format!("{} ({}) has not been deployed to {}", label(c), c.digest, prev.name)),
                    }
                }
                let least = soaked.iter().filter_map(|s| s["soaked_minutes"].as_i64()).min();
                rules.verdict(
                    "min_soak",
                    failures,
                    format!("every component soaked at least {min} minutes in the previous environment (least {})", least.unwrap_or(0)),
                    serde_json::json!({"required_minutes": min, "soaked_minutes": least, "components": soaked}),
                );
            }
        }
    }

    if g.dependencies_released == Some(true) {
        let pending: Vec<String> = doc.dependencies.iter().filter(|d| !d.released).map(|d| format!("{} is {}", d.key, d.state)).collect();
        let failures = if pending.is_empty() { vec![] } else { vec![format!("dependency releases not released: {}", pending.join(", "))] };
        rules.verdict(
            "dependencies_released",
            failures,
            format!("{} dependency release(s), all released", doc.dependencies.len()),
            serde_json::json!({"dependencies": doc.dependencies}),
        );
    } else {
        rules.not_applicable("dependencies_released", "not required by the policy");
    }

    if g.critical_risk_requires_window == Some(true) && doc.risk.level == RiskLevel::Critical {
        let inside = match (doc.release.planned_window_start, doc.release.planned_window_end) {
            (Some(s), Some(e)) => s <= doc.now && doc.now < e,
            _ => false,
        };
        let failures = if inside {
            vec![]
        } else {
            vec![format!("risk is critical ({}); it may only deploy inside its planned release window", doc.risk.score)]
        };
        rules.verdict(
            "critical_risk_requires_window",
            failures,
            "critical risk, inside the planned window".into(),
            serde_json::json!({"score": doc.risk.score, "window_start": doc.release.planned_window_start, "window_end": doc.release.planned_window_end}),
        );
    } else {
        rules.not_applicable("critical_risk_requires_window", "the release is not critical risk or the rule is off");
    }

    if !rego.is_empty() {
        let now = serde_json::to_value(doc.now).map_err(|e| format!("input could not be encoded: {e}"));
        match input.clone().and_then(|i| i.with("now", now?)) {
            Ok(input) => {
                for r in rego {
                    let rule = format!("rego:{}", r.name);
                    match r.evaluate_input(&input) {
                        RegoOutcome::Denied(msgs) if msgs.is_empty() => {
                            rules.push(&rule, Outcome::Pass, "no deny message".into(), serde_json::json!({"deny": []}))
                        }
                        RegoOutcome::Denied(msgs) => rules.push(&rule, Outcome::Fail, msgs.join("; "), serde_json::json!({"deny": msgs})),
                        RegoOutcome::Error(e) => rules.push(
                            &rule,
                            Outcome::Error,
                            format!("policy could not be evaluated: {e}"),
                            serde_json::json!({"error": e}),
                        ),
                    }
                }
            }
            Err(e) => {
                for r in rego {
                    rules.push(&format!("rego:{}", r.name), Outcome::Error, e.clone(), serde_json::Value::Null);
                }
            }
        }
    }

    for r in &mut rules.results {
        if r.outcome.blocks() && bypassed.iter().any(|b| b == &r.rule || b == "*") {
            r.outcome = Outcome::Bypassed;
            r.summary = format!("bypassed by break-glass: {}", r.summary);
        }
    }
    let failing: Vec<String> = rules.results.iter().filter(|r| r.outcome.blocks()).map(|r| r.rule.clone()).collect();
    GateDecision {
        environment: doc.environment.name.clone(),
        passed: failing.is_empty(),
        rules: rules.results,
        failing,
        evaluated_at: doc.now,
    }
}

/// SPDX expressions such as `MIT OR Apache-2.0` are allowed when any alternative is allowed
/// and every conjunct of it is; plain ids compare case-insensitively.
fn license_allowed(expression: &str, allow: &[String]) -> bool {
    expression.split(" OR ").any(|alt| {
        alt.split(" AND ").all(|id| {
            let id = id.trim().trim_matches(|c| c == '(' || c == ')').trim();
            allow.iter().any(|a| a.eq_ignore_ascii_case(id))
        })
    })
}

/// A denied id anywhere in an expression makes it denied unless an `OR` alternative avoids it.
fn license_denied(expression: &str, deny: &[String]) -> bool {
    expression.split(" OR ").all(|alt| {
        alt.split(" AND ").any(|id| {
            let id = id.trim().trim_matches(|c| c == '(' || c == ')').trim();
            deny.iter().any(|d| d.eq_ignore_ascii_case(id))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::GateRules;
    use crate::risk::{assess, RiskInput, RiskWeights};

    pub(crate) fn sample_doc() -> ReleaseEvidence {
        let now = "2026-11-29T12:00:00Z".parse().unwrap();
        ReleaseEvidence {
            release: ReleaseFacts {
                id: "rel_1".into(),
                key: "R-1".into(),
                name: "checkout".into(),
                state: "awaiting_approval".into(),
                domain_id: None,
                documents: vec![DocumentKind::RollbackPlan],
                planned_window_start: None,
                planned_window_end: None,
            },
            environment: EnvironmentFacts { id: "env_prod".into(), name: "prod".into(), tier: "prod".into(), position: 40 },
            previous_environment: Some(EnvironmentFacts {
                id: "env_stg".into(),
                name: "staging".into(),
                tier: "staging".into(),
                position: 30,
            }),
            now,
            components: vec![ComponentEvidence {
                service_id: "svc_1".into(),
                service: "payments".into(),
                artifact_id: "art_1".into(),
                version: "1.2.0".into(),
                digest: "sha256:00".into(),
                tests: Some(TestSummary {
                    total: 10,
                    passed: 9,
                    failed: 1,
                    errored: 0,
                    skipped: 0,
                    failing: vec!["t::a".into()],
                    evidence_id: "ev_1".into(),
                }),
                coverage: Some(CoverageSummary { line_percent: 75.0, lines_total: 100, lines_covered: 75, evidence_id: "ev_2".into() }),
                previous_coverage_percent: Some(80.0),
                findings: Some(FindingSummary {
                    total: 1,
                    critical: 0,
                    high: 1,
                    medium: 0,
                    low: 0,
                    max_score: Some(8.1),
                    top: vec![TopFinding { rule_id: "CVE-1".into(), score: Some(8.1), severity: "high".into(), location: None }],
                    evidence_id: "ev_3".into(),
                }),
                licenses: Some(vec!["MIT".into(), "MIT OR Apache-2.0".into(), "GPL-3.0-only".into()]),
                sbom_components: Some(3),
                performance: Some(vec![PerformanceMetric {
                    name: "p99".into(),
                    unit: "ms".into(),
                    baseline: 100.0,
                    current: 112.0,
                    regression_percent: 12.0,
                }]),
                previous_environment: Some(EnvironmentFacts {
                    id: "env_stg".into(),
                    name: "staging".into(),
                    tier: "staging".into(),
                    position: 30,
                }),
                upstream_deployment: Some(DeploymentEvidence {
                    key: "D-1".into(),
                    environment_id: "env_stg".into(),
                    digest: "sha256:00".into(),
                    phase: "succeeded".into(),
                    finished_at: Some("2026-11-29T11:30:00Z".parse().unwrap()),
                }),
            }],
            changes: vec![],
            dependencies: vec![],
            smoke: vec![SmokeEvidence {
                passed: 5,
                failed: 0,
                environment: "env_stg".into(),
                recorded_at: "2026-11-29T11:30:00Z".parse().unwrap(),
                evidence_id: "ev_4".into(),
            }],
            signoffs: vec![],
            risk: assess(&RiskInput::default(), &RiskWeights::default()),
        }
    }

    fn strict() -> EnvironmentPolicy {
        EnvironmentPolicy {
            gates: GateRules {
                tests_passed: Some(true),
                coverage_min_percent: Some(80.0),
                coverage_no_drop: Some(true),
                license_allow: Some(vec!["MIT".into(), "Apache-2.0".into()]),
                license_deny: Some(vec!["GPL-3.0-only".into()]),
                performance_tolerance_percent: Some(5.0),
                required_documents: Some(vec![DocumentKind::RollbackPlan, DocumentKind::ImpactAssessment]),
                smoke_passed: Some(true),
                min_soak_minutes: Some(60),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn every_failing_rule_is_reported_with_its_numbers() {
        let d = evaluate(&strict(), &sample_doc(), &[], &[]);
        assert!(!d.passed);
        assert_eq!(
            d.failing,
            vec![
                "tests_passed",
                "coverage_min",
                "coverage_no_drop",
                "max_cvss",
                "license_allow",
                "license_deny",
                "performance_tolerance",
                "required_documents",
                "min_soak"
            ]
        );
        let soak = d.rules.iter().find(|r| r.rule == "min_soak").unwrap();
        assert_eq!(soak.details["soaked_minutes"], 30);
        let smoke = d.rules.iter().find(|r| r.rule == "smoke_passed").unwrap();
        assert_eq!(smoke.outcome, Outcome::Pass);
        assert!(d.failure_reasons()[0].contains("payments 1.2.0: 1 failed"), "{:?}", d.failure_reasons());
    }

    #[test]
    fn good_evidence_passes_and_break_glass_bypasses_only_named_rules() {
        let mut doc = sample_doc();
        let c = &mut doc.components[0];
        c.tests.as_mut().unwrap().failed = 0;
        c.coverage.as_mut().unwrap().line_percent = 85.0;
        c.findings.as_mut().unwrap().max_score = Some(5.0);
        c.findings.as_mut().unwrap().top[0].score = Some(5.0);
        c.licenses = Some(vec!["MIT OR GPL-3.0-only".into(), "Apache-2.0".into()]);
        c.performance.as_mut().unwrap()[0].regression_percent = 2.0;
        doc.release.documents.push(DocumentKind::ImpactAssessment);
        doc.now = "2026-11-29T13:00:00Z".parse().unwrap();
        let d = evaluate(&strict(), &doc, &[], &[]);
        assert!(d.passed, "{:?}", d.failure_reasons());

        doc.components[0].tests.as_mut().unwrap().failed = 2;
        let d = evaluate(&strict(), &doc, &[], &["tests_passed".into()]);
        assert!(d.passed);
        assert_eq!(d.rules[0].outcome, Outcome::Bypassed);
        let d = evaluate(&strict(), &doc, &[], &["max_cvss".into()]);
        assert_eq!(d.failing, vec!["tests_passed"]);
    }

    #[test]
    fn soak_counts_from_the_same_digests_successful_deployment_upstream() {
        let policy = EnvironmentPolicy { gates: GateRules { min_soak_minutes: Some(60), ..Default::default() }, ..Default::default() };
        let soak = |doc: &ReleaseEvidence| {
            let d = evaluate(&policy, doc, &[], &[]);
            let r = d.rules.into_iter().find(|r| r.rule == "min_soak").unwrap();
            (r.outcome, r.summary)
        };
        let mut doc = sample_doc();
        let (outcome, summary) = soak(&doc);
        assert_eq!(outcome, Outcome::Fail);
        assert_eq!(summary, "payments 1.2.0 soaked 30 of the required 60 minutes in staging (D-1)");
        doc.now = "2026-11-29T12:30:00Z".parse().unwrap();
        assert_eq!(soak(&doc).0, Outcome::Pass, "time alone completes the soak");
        let up = doc.components[0].upstream_deployment.as_mut().unwrap();
        up.phase = "rolled_back".into();
        assert_eq!(soak(&doc).1, "payments 1.2.0 is rolled_back in staging (D-1), not succeeded");
        let up = doc.components[0].upstream_deployment.as_mut().unwrap();
        up.phase = "succeeded".into();
        up.digest = "sha256:11".into();
        assert_eq!(soak(&doc).1, "payments 1.2.0 (sha256:00) has not been deployed to staging", "another digest does not count");
        doc.components[0].upstream_deployment = None;
        assert_eq!(soak(&doc).0, Outcome::Fail);
        doc.components[0].previous_environment = None;
        assert_eq!(soak(&doc).0, Outcome::NotApplicable, "the first environment of the path");
    }

    #[test]
    fn license_expressions() {
        let allow = vec!["MIT".to_string(), "Apache-2.0".to_string()];
        assert!(license_allowed("MIT OR GPL-3.0-only", &allow));
        assert!(!license_allowed("MIT AND GPL-3.0-only", &allow));
        assert!(license_allowed("(MIT AND Apache-2.0)", &allow));
        let deny = vec!["GPL-3.0-only".to_string()];
        assert!(!license_denied("MIT OR GPL-3.0-only", &deny));
        assert!(license_denied("MIT AND GPL-3.0-only", &deny));
    }
}
