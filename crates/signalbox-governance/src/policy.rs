//! Gate and approval policies per environment, set at three levels: organization guardrails,
//! domains and services. A lower level may only tighten what the levels above it say
//! ([`check_tightening`]); the policy that applies to a release is the strictest combination of
//! every level that covers it ([`merge`]). Both are pure so the rules read in one place.

use serde::{Deserialize, Serialize};
use signalbox_domain::access::Role;
use signalbox_domain::model::DocumentKind;
use signalbox_domain::validate::Invalid;
use utoipa::ToSchema;

use crate::risk::RiskLevel;

/// CVSS threshold applied when no level sets one (SPEC C4: "no finding at or above 7.0").
pub const DEFAULT_MAX_CVSS: f64 = 7.0;

/// The level a policy is set at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "level", content = "id", rename_all = "snake_case")]
pub enum PolicyLevel {
    Organization,
    Domain(String),
    Service(String),
}

impl PolicyLevel {
    pub fn describe(&self) -> String {
        match self {
            PolicyLevel::Organization => "the organization guardrail".into(),
            PolicyLevel::Domain(d) => format!("domain {d}"),
            PolicyLevel::Service(s) => format!("service {s}"),
        }
    }
}

/// A custom rule in Rego. The module's package must define a `deny` set of messages
/// (conftest's convention); the rule fails when the set is not empty. The input is the
/// release evidence document (docs/GOVERNANCE.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegoRule {
    /// Unique among the rules that apply to one environment, e.g. `no-friday-payments`.
    pub name: String,
    pub module: String,
}

/// The built-in gate rules. `None` means "not set at this level": the level above decides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateRules {
    /// Every component's latest JUnit evidence has no failures or errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests_passed: Option<bool>,
    /// Minimum line coverage in percent (0–100) for every component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_min_percent: Option<f64>,
    /// Coverage may not drop versus the artifact currently in the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_no_drop: Option<bool>,
    /// Findings with a CVSS score at or above this fail the gate (default 7.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cvss: Option<f64>,
    /// Every component must carry SARIF evidence (otherwise the CVSS rule is not applicable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_scan_required: Option<bool>,
    /// Licenses allowed in SBOMs (SPDX ids); anything else fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_allow: Option<Vec<String>>,
    /// Licenses that fail the gate wherever they appear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_deny: Option<Vec<String>>,
    /// Largest allowed regression versus the performance baseline, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_tolerance_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_documents: Option<Vec<DocumentKind>>,
    /// No open critical or high bug linked to the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_open_critical_bugs: Option<bool>,
    /// Smoke tests in the previous environment of the promotion path passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_passed: Option<bool>,
    /// Minutes the release must have soaked in the previous environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_soak_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies_released: Option<bool>,
    /// A release assessed critical risk may only go inside its planned release window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_risk_requires_window: Option<bool>,
    /// Custom rules; lower levels add rules, never remove them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rego: Vec<RegoRule>,
}

/// A group of approvers: `min` distinct people holding any of `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalGroup {
    pub name: String,
    pub roles: Vec<Role>,
    pub min: u32,
}

/// An extra group required when the release's risk is at or above a level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskApproval {
    pub at_or_above: RiskLevel,
    pub group: ApprovalGroup,
}

/// Who must approve: every group's quorum (each person counted in one group only) and a
/// total number of distinct approvers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRules {
    #[serde(default)]
    pub groups: Vec<ApprovalGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_total: Option<u32>,
    /// An approval older than this no longer counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after_hours: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_risk: Vec<RiskApproval>,
}

impl ApprovalRules {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.min_total.unwrap_or(0) == 0 && self.by_risk.is_empty()
    }
}

/// Everything a level says about one environment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentPolicy {
    #[serde(default)]
    pub gates: GateRules,
    #[serde(default)]
    pub approvals: ApprovalRules,
}

/// Checks a policy's own values (ranges, names) before anything else.
pub fn validate_policy(policy: &EnvironmentPolicy) -> Result<(), Invalid> {
    let mut errors = Invalid::default();
    let g = &policy.gates;
    if let Some(c) = g.coverage_min_percent {
        if !(0.0..=100.0).contains(&c) {
            errors.push("gates/coverage_min_percent", "must be a percentage between 0 and 100");
        }
    }
    if let Some(c) = g.max_cvss {
        if !(0.0..=10.0).contains(&c) {
            errors.push("gates/max_cvss", "must be a CVSS score between 0.0 and 10.0");
        }
    }
    if let Some(p) = g.performance_tolerance_percent {
        if !(0.0..=1000.0).contains(&p) {
            errors.push("gates/performance_tolerance_percent", "must be between 0 and 1000 percent");
        }
    }
    for (list, field) in [(&g.license_allow, "gates/license_allow"), (&g.license_deny, "gates/license_deny")] {
        for (i, l) in list.iter().flatten().enumerate() {
            if l.trim().is_empty() || l.len() > 200 {
                errors.push(format!("{field}/{i}"), "must be an SPDX license id such as MIT or Apache-2.0");
            }
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in g.rego.iter().enumerate() {
        if signalbox_domain::validate::Name::parse("name", &r.name).is_err() {
            errors.push(format!("gates/rego/{i}/name"), "use 1-63 lowercase letters, digits and dashes");
        }
        if !names.insert(r.name.as_str()) {
            errors.push(format!("gates/rego/{i}/name"), format!("{:?} is used by another rule of this policy", r.name));
        }
        if r.module.len() > 256 * 1024 {
            errors.push(format!("gates/rego/{i}/module"), "is larger than 256 KiB");
        }
    }
    let a = &policy.approvals;
    let mut group_names = std::collections::BTreeSet::new();
    let groups = a.groups.iter().map(|g| ("approvals/groups", g)).chain(a.by_risk.iter().map(|r| ("approvals/by_risk/group", &r.group)));
    for (i, (field, group)) in groups.enumerate() {
        if group.name.trim().is_empty() {
            errors.push(format!("{field}/{i}/name"), "must not be empty");
        }
        if group.roles.is_empty() {
            errors.push(format!("{field}/{i}/roles"), "name at least one role whose holders may approve");
        }
        if group.min == 0 || group.min > 50 {
            errors.push(format!("{field}/{i}/min"), "must be between 1 and 50");
        }
        if field == "approvals/groups" && !group_names.insert(group.name.as_str()) {
            errors.push(format!("{field}/{i}/name"), format!("{:?} names two groups", group.name));
        }
    }
    if a.min_total.is_some_and(|m| m > 50) {
        errors.push("approvals/min_total", "must be at most 50");
    }
    if a.expires_after_hours == Some(0) {
        errors.push("approvals/expires_after_hours", "must be at least 1 hour (leave it out for approvals that do not expire)");
    }
    errors.into_result()
}

fn loosened(errors: &mut Invalid, field: &str, parent: &PolicyLevel, detail: String) {
    errors.push(field, format!("{detail}; {} sets it and a lower level can only tighten it", parent.describe()));
}

/// Refuses a `child` policy that loosens anything `parent` (the combined levels above it)
/// requires. Names every loosened field.
pub fn check_tightening(parent: &EnvironmentPolicy, parent_level: &PolicyLevel, child: &EnvironmentPolicy) -> Result<(), Invalid> {
    let mut errors = Invalid::default();
    let (p, c) = (&parent.gates, &child.gates);
    let bools = [
        ("gates/tests_passed", p.tests_passed, c.tests_passed),
        ("gates/coverage_no_drop", p.coverage_no_drop, c.coverage_no_drop),
        ("gates/security_scan_required", p.security_scan_required, c.security_scan_required),
        ("gates/no_open_critical_bugs", p.no_open_critical_bugs, c.no_open_critical_bugs),
        ("gates/smoke_passed", p.smoke_passed, c.smoke_passed),
        ("gates/dependencies_released", p.dependencies_released, c.dependencies_released),
        ("gates/critical_risk_requires_window", p.critical_risk_requires_window, c.critical_risk_requires_window),
    ];
    for (field, pv, cv) in bools {
        if pv == Some(true) && cv == Some(false) {
            loosened(&mut errors, field, parent_level, "false would switch off a required rule".into());
        }
    }
    if let (Some(pv), Some(cv)) = (p.coverage_min_percent, c.coverage_min_percent) {
        if cv < pv {
            loosened(&mut errors, "gates/coverage_min_percent", parent_level, format!("{cv}% is below the required {pv}%"));
        }
    }
    let parent_cvss = p.max_cvss.unwrap_or(DEFAULT_MAX_CVSS);
    if let Some(cv) = c.max_cvss {
        if cv > parent_cvss {
            loosened(&mut errors, "gates/max_cvss", parent_level, format!("{cv} is above the threshold {parent_cvss}"));
        }
    }
    if let (Some(pv), Some(cv)) = (p.performance_tolerance_percent, c.performance_tolerance_percent) {
        if cv > pv {
            loosened(&mut errors, "gates/performance_tolerance_percent", parent_level, format!("{cv}% allows more than {pv}%"));
        }
    }
    if let (Some(pv), Some(cv)) = (p.min_soak_minutes, c.min_soak_minutes) {
        if cv < pv {
            loosened(&mut errors, "gates/min_soak_minutes", parent_level, format!("{cv} minutes is shorter than {pv}"));
        }
    }
    if let (Some(pv), Some(cv)) = (&p.license_allow, &c.license_allow) {
        let extra: Vec<&String> = cv.iter().filter(|l| !pv.contains(l)).collect();
        if !extra.is_empty() {
            loosened(&mut errors, "gates/license_allow", parent_level, format!("allows licenses the level above does not: {extra:?}"));
        }
    }
    if let (Some(pv), Some(cv)) = (&p.license_deny, &c.license_deny) {
        let dropped: Vec<&String> = pv.iter().filter(|l| !cv.contains(l)).collect();
        if !dropped.is_empty() {
            loosened(&mut errors, "gates/license_deny", parent_level, format!("no longer denies {dropped:?}"));
        }
    }
    if let (Some(pv), Some(cv)) = (&p.required_documents, &c.required_documents) {
        let dropped: Vec<&str> = pv.iter().filter(|d| !cv.contains(d)).map(|d| d.as_str()).collect();
        if !dropped.is_empty() {
            loosened(&mut errors, "gates/required_documents", parent_level, format!("drops required documents {dropped:?}"));
        }
    }
    for (i, r) in c.rego.iter().enumerate() {
        if p.rego.iter().any(|pr| pr.name == r.name) {
            errors.push(
                format!("gates/rego/{i}/name"),
                format!(
                    "{:?} is a rule of {}; a lower level adds rules under new names and cannot replace one",
                    r.name,
                    parent_level.describe()
                ),
            );
        }
    }
    let (pa, ca) = (&parent.approvals, &child.approvals);
    if let (Some(pv), Some(cv)) = (pa.min_total, ca.min_total) {
        if cv < pv {
            loosened(&mut errors, "approvals/min_total", parent_level, format!("{cv} approvers is fewer than {pv}"));
        }
    }
    if let (Some(pv), Some(cv)) = (pa.expires_after_hours, ca.expires_after_hours) {
        if cv > pv {
            loosened(&mut errors, "approvals/expires_after_hours", parent_level, format!("{cv} h keeps approvals longer than {pv} h"));
        }
    }
    for (i, g) in ca.groups.iter().enumerate() {
        if let Some(pg) = pa.groups.iter().find(|pg| pg.name == g.name) {
            if g.min < pg.min {
                loosened(&mut errors, &format!("approvals/groups/{i}/min"), parent_level, format!("{} is fewer than {}", g.min, pg.min));
            }
            if g.roles.iter().any(|r| !pg.roles.contains(r)) {
                loosened(
                    &mut errors,
                    &format!("approvals/groups/{i}/roles"),
                    parent_level,
                    "adds roles to a group the level above defines, letting more people satisfy it".into(),
                );
            }
        }
    }
    errors.into_result()
}

fn max_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn min_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y < x { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn or_opt(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(false) || y.unwrap_or(false)),
    }
}

/// The strictest combination of two policies. Associative and commutative, so the order in
/// which levels (and the services of a multi-service release) are combined does not matter.
pub fn merge(a: &EnvironmentPolicy, b: &EnvironmentPolicy) -> EnvironmentPolicy {
    let (x, y) = (&a.gates, &b.gates);
    let license_allow = match (&x.license_allow, &y.license_allow) {
        (Some(p), Some(q)) => {
            let mut both: Vec<String> = p.iter().filter(|l| q.contains(l)).cloned().collect();
            both.sort();
            both.dedup();
            Some(both)
        }
        (p, None) => p.clone(),
        (None, q) => q.clone(),
    };
    let union = |p: &Option<Vec<String>>, q: &Option<Vec<String>>| -> Option<Vec<String>> {
        match (p, q) {
            (None, None) => None,
            _ => {
                let mut all: Vec<String> = p.iter().chain(q.iter()).flatten().cloned().collect();
                all.sort();
                all.dedup();
                Some(all)
            }
        }
    };
    let required_documents = match (&x.required_documents, &y.required_documents) {
        (None, None) => None,
        (p, q) => {
            let mut all: Vec<DocumentKind> = Vec::new();
            for d in p.iter().chain(q.iter()).flatten() {
                if !all.contains(d) {
                    all.push(*d);
                }
            }
            all.sort_by_key(|d| d.as_str());
            Some(all)
        }
    };
    let mut rego = x.rego.clone();
    for r in &y.rego {
        if !rego.iter().any(|e| e.name == r.name && e.module == r.module) {
            rego.push(r.clone());
        }
    }
    rego.sort_by(|p, q| p.name.cmp(&q.name).then(p.module.cmp(&q.module)));
    let gates = GateRules {
        tests_passed: or_opt(x.tests_passed, y.tests_passed),
        coverage_min_percent: max_opt(x.coverage_min_percent, y.coverage_min_percent),
        coverage_no_drop: or_opt(x.coverage_no_drop, y.coverage_no_drop),
        // Lower levels cannot set a threshold above their parent's (or the default when the
        // parent sets none: check_tightening), so the strictest set value is the answer.
        max_cvss: min_opt(x.max_cvss, y.max_cvss),
        security_scan_required: or_opt(x.security_scan_required, y.security_scan_required),
        license_allow,
        license_deny: union(&x.license_deny, &y.license_deny),
        performance_tolerance_percent: min_opt(x.performance_tolerance_percent, y.performance_tolerance_percent),
        required_documents,
        no_open_critical_bugs: or_opt(x.no_open_critical_bugs, y.no_open_critical_bugs),
        smoke_passed: or_opt(x.smoke_passed, y.smoke_passed),
        min_soak_minutes: max_opt(x.min_soak_minutes, y.min_soak_minutes),
        dependencies_released: or_opt(x.dependencies_released, y.dependencies_released),
        critical_risk_requires_window: or_opt(x.critical_risk_requires_window, y.critical_risk_requires_window),
        rego,
    };
    let (p, q) = (&a.approvals, &b.approvals);
    let mut groups = p.groups.clone();
    for g in &q.groups {
        match groups.iter_mut().find(|e| e.name == g.name) {
            Some(e) => {
                e.min = e.min.max(g.min);
                // The stricter group is the one fewer people can satisfy: keep the roles both allow.
                let both: Vec<Role> = e.roles.iter().filter(|r| g.roles.contains(r)).copied().collect();
                if !both.is_empty() {
                    e.roles = both;
                }
            }
            None => groups.push(g.clone()),
        }
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let mut by_risk = p.by_risk.clone();
    for r in &q.by_risk {
        if !by_risk.contains(r) {
            by_risk.push(r.clone());
        }
    }
    by_risk.sort_by(|a, b| a.group.name.cmp(&b.group.name).then(a.at_or_above.cmp(&b.at_or_above)));
    let approvals = ApprovalRules {
        groups,
        min_total: max_opt(p.min_total, q.min_total),
        expires_after_hours: min_opt(p.expires_after_hours, q.expires_after_hours),
        by_risk,
    };
    EnvironmentPolicy { gates, approvals }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn org() -> EnvironmentPolicy {
        EnvironmentPolicy {
            gates: GateRules {
                tests_passed: Some(true),
                coverage_min_percent: Some(80.0),
                max_cvss: Some(7.0),
                license_deny: Some(vec!["AGPL-3.0-only".into()]),
                required_documents: Some(vec![DocumentKind::RollbackPlan]),
                ..Default::default()
            },
            approvals: ApprovalRules {
                groups: vec![ApprovalGroup { name: "tech".into(), roles: vec![Role::TechLead], min: 1 }],
                min_total: Some(2),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_team_policy_that_loosens_a_guardrail_is_refused_field_by_field() {
        let child = EnvironmentPolicy {
            gates: GateRules {
                tests_passed: Some(false),
                coverage_min_percent: Some(70.0),
                max_cvss: Some(9.0),
                license_deny: Some(vec![]),
                required_documents: Some(vec![]),
                ..Default::default()
            },
            approvals: ApprovalRules { min_total: Some(1), ..Default::default() },
        };
        let err = check_tightening(&org(), &PolicyLevel::Organization, &child).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "gates/tests_passed",
                "gates/coverage_min_percent",
                "gates/max_cvss",
                "gates/license_deny",
                "gates/required_documents",
                "approvals/min_total"
            ]
        );
        assert!(err.0[1].message.contains("70% is below the required 80%"), "{}", err.0[1].message);
    }

    #[test]
    fn tightening_is_accepted() {
        let child = EnvironmentPolicy {
            gates: GateRules {
                coverage_min_percent: Some(90.0),
                max_cvss: Some(4.0),
                license_deny: Some(vec!["AGPL-3.0-only".into(), "SSPL-1.0".into()]),
                ..Default::default()
            },
            approvals: ApprovalRules { min_total: Some(3), ..Default::default() },
        };
        check_tightening(&org(), &PolicyLevel::Organization, &child).unwrap();
        let merged = merge(&org(), &child);
        assert_eq!(merged.gates.coverage_min_percent, Some(90.0));
        assert_eq!(merged.gates.max_cvss, Some(4.0));
        assert_eq!(merged.approvals.min_total, Some(3));
        assert_eq!(merged.gates.tests_passed, Some(true));
    }

    #[test]
    fn an_unset_parent_threshold_still_guards_the_default_cvss() {
        let child = EnvironmentPolicy { gates: GateRules { max_cvss: Some(8.0), ..Default::default() }, ..Default::default() };
        let err = check_tightening(&EnvironmentPolicy::default(), &PolicyLevel::Organization, &child).unwrap_err();
        assert_eq!(err.0[0].field, "gates/max_cvss");
    }

    fn arb_policy() -> impl Strategy<Value = EnvironmentPolicy> {
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(0.0f64..100.0),
            // At or below the default, as check_tightening allows below an unset parent.
            proptest::option::of(0.0f64..=DEFAULT_MAX_CVSS),
            proptest::option::of(0u32..500),
            proptest::option::of(proptest::sample::subsequence(vec!["MIT", "Apache-2.0", "GPL-3.0-only", "BSD-3-Clause"], 0..4)),
            proptest::option::of(1u32..5),
        )
            .prop_map(|(tests, cov, cvss, soak, allow, total)| EnvironmentPolicy {
                gates: GateRules {
                    tests_passed: tests,
                    coverage_min_percent: cov,
                    max_cvss: cvss,
                    min_soak_minutes: soak,
                    license_allow: allow.map(|v| v.into_iter().map(String::from).collect()),
                    ..Default::default()
                },
                approvals: ApprovalRules { min_total: total, ..Default::default() },
            })
    }

    proptest! {
        /// The merge of two policies never loosens either of them.
        #[test]
        fn merge_only_tightens(a in arb_policy(), b in arb_policy()) {
            let m = merge(&a, &b);
            prop_assert!(check_tightening(&a, &PolicyLevel::Organization, &m).is_ok());
            prop_assert!(check_tightening(&b, &PolicyLevel::Organization, &m).is_ok());
        }

        #[test]
        fn merge_is_commutative(a in arb_policy(), b in arb_policy()) {
            prop_assert_eq!(merge(&a, &b), merge(&b, &a));
        }
    }
}
