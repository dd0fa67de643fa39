//! Release risk (SPEC C5): a score from 0 to 100 and a level, from impact, complexity,
//! novelty and history. Every factor is listed with what it contributed, so the score explains
//! itself; the weights are configuration with the defaults below.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }
}

/// What the assessment looks at. The application gathers it from the catalog, the release,
/// its SBOM evidence and the history of earlier releases.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct RiskInput {
    pub service_count: u32,
    /// Services marked customer-facing.
    pub customer_facing_services: u32,
    /// Services handling confidential or restricted data.
    pub sensitive_data_services: u32,
    pub component_count: u32,
    pub change_count: u32,
    /// Risk flags on the release's changes (`schema_migration`, `touches_payment_logic`, …)
    /// with how many changes carry each.
    pub risk_flags: BTreeMap<String, u32>,
    /// Names of services never released before.
    pub first_deploy_services: Vec<String>,
    /// SBOM components not present in the previous artifact of the same service.
    pub new_dependencies: u32,
    /// Earlier finished releases of the same services, and how many failed or were rolled back.
    pub prior_releases: u32,
    pub prior_failures: u32,
}

/// Points per factor. Defaults are documented in docs/GOVERNANCE.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RiskWeights {
    pub customer_facing: f64,
    pub sensitive_data: f64,
    pub per_extra_service: f64,
    pub extra_services_cap: f64,
    pub per_component_over_five: f64,
    pub components_cap: f64,
    pub per_change: f64,
    pub changes_cap: f64,
    /// Points for a flag present on any change; flags not listed get `other_flag`.
    pub flags: BTreeMap<String, f64>,
    pub other_flag: f64,
    pub flags_cap: f64,
    pub per_first_deploy: f64,
    pub first_deploy_cap: f64,
    pub per_new_dependency: f64,
    pub new_dependencies_cap: f64,
    /// Points at a 100 % failure rate, scaled linearly.
    pub failure_rate: f64,
    /// Fewer prior releases than this and history does not count (too little data).
    pub min_history: u32,
    /// Lowest scores of the medium, high and critical levels.
    pub medium_from: f64,
    pub high_from: f64,
    pub critical_from: f64,
}

impl Default for RiskWeights {
    fn default() -> Self {
        RiskWeights {
            customer_facing: 20.0,
            sensitive_data: 10.0,
            per_extra_service: 5.0,
            extra_services_cap: 15.0,
            per_component_over_five: 2.0,
            components_cap: 10.0,
            per_change: 0.5,
            changes_cap: 15.0,
            flags: BTreeMap::from([("schema_migration".to_string(), 15.0), ("touches_payment_logic".to_string(), 15.0)]),
            other_flag: 5.0,
            flags_cap: 30.0,
            per_first_deploy: 10.0,
            first_deploy_cap: 20.0,
            per_new_dependency: 1.0,
            new_dependencies_cap: 10.0,
            failure_rate: 30.0,
            min_history: 3,
            medium_from: 25.0,
            high_from: 50.0,
            critical_from: 75.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskCategory {
    Impact,
    Complexity,
    Novelty,
    History,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskFactor {
    pub category: RiskCategory,
    pub name: String,
    /// The observed value (a count, a rate, a list).
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// Points this factor added to the score.
    pub contribution: f64,
    pub explanation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskAssessment {
    /// 0–100.
    pub score: u32,
    pub level: RiskLevel,
    pub factors: Vec<RiskFactor>,
}

fn capped(points: f64, cap: f64) -> f64 {
    points.min(cap).max(0.0)
}

/// Scores a release. Pure and deterministic; factors with no contribution are still listed
/// so a reader sees what was considered.
pub fn assess(input: &RiskInput, w: &RiskWeights) -> RiskAssessment {
    let mut factors = Vec::new();
    let mut add = |category, name: &str, value: serde_json::Value, contribution: f64, explanation: String| {
        factors.push(RiskFactor {
            category,
            name: name.to_string(),
            value,
            contribution: (contribution * 10.0).round() / 10.0,
            explanation,
        });
    };
    let cf = if input.customer_facing_services > 0 { w.customer_facing } else { 0.0 };
    add(
        RiskCategory::Impact,
        "customer_facing",
        input.customer_facing_services.into(),
        cf,
        format!("{} customer-facing service(s) in the release", input.customer_facing_services),
    );
    let sd = if input.sensitive_data_services > 0 { w.sensitive_data } else { 0.0 };
    add(
        RiskCategory::Impact,
        "sensitive_data",
        input.sensitive_data_services.into(),
        sd,
        format!("{} service(s) handle confidential or restricted data", input.sensitive_data_services),
    );
    let extra = capped(f64::from(input.service_count.saturating_sub(1)) * w.per_extra_service, w.extra_services_cap);
    add(
        RiskCategory::Impact,
        "service_count",
        input.service_count.into(),
        extra,
        format!("{} service(s) change together", input.service_count),
    );
    let comps = capped(f64::from(input.component_count.saturating_sub(5)) * w.per_component_over_five, w.components_cap);
    add(
        RiskCategory::Complexity,
        "component_count",
        input.component_count.into(),
        comps,
        format!("{} component(s); more than five add points", input.component_count),
    );
    let changes = capped(f64::from(input.change_count) * w.per_change, w.changes_cap);
    add(RiskCategory::Complexity, "change_count", input.change_count.into(), changes, format!("{} change(s)", input.change_count));
    let mut flag_points = 0.0;
    for name in input.risk_flags.keys() {
        flag_points += w.flags.get(name).copied().unwrap_or(w.other_flag);
    }
    let flag_points = capped(flag_points, w.flags_cap);
    let flag_names: Vec<&String> = input.risk_flags.keys().collect();
    add(
        RiskCategory::Complexity,
        "risk_flags",
        serde_json::to_value(&input.risk_flags).unwrap_or_default(),
        flag_points,
        if flag_names.is_empty() { "no change carries a risk flag".into() } else { format!("changes flagged {flag_names:?}") },
    );
    let first = capped(input.first_deploy_services.len() as f64 * w.per_first_deploy, w.first_deploy_cap);
    add(
        RiskCategory::Novelty,
        "first_deploy",
        serde_json::to_value(&input.first_deploy_services).unwrap_or_default(),
        first,
        if input.first_deploy_services.is_empty() {
            "every service has been released before".into()
        } else {
            format!("first release of {}", input.first_deploy_services.join(", "))
        },
    );
    let deps = capped(f64::from(input.new_dependencies) * w.per_new_dependency, w.new_dependencies_cap);
    add(
        RiskCategory::Novelty,
        "new_dependencies",
        input.new_dependencies.into(),
        deps,
        format!("{} dependency(ies) new since the previous artifact's SBOM", input.new_dependencies),
    );
    let (history, explanation) = if input.prior_releases >= w.min_history {
        let rate = f64::from(input.prior_failures) / f64::from(input.prior_releases);
        (
            rate * w.failure_rate,
            format!(
                "{} of {} earlier releases of these services failed or were rolled back ({:.0}%)",
                input.prior_failures,
                input.prior_releases,
                rate * 100.0
            ),
        )
    } else {
        (0.0, format!("only {} earlier release(s); history counts from {}", input.prior_releases, w.min_history))
    };
    add(
        RiskCategory::History,
        "failure_rate",
        serde_json::json!({"releases": input.prior_releases, "failures": input.prior_failures}),
        history,
        explanation,
    );
    let total: f64 = factors.iter().map(|f| f.contribution).sum();
    let score = total.clamp(0.0, 100.0).round() as u32;
    let s = f64::from(score);
    let level = if s >= w.critical_from {
        RiskLevel::Critical
    } else if s >= w.high_from {
        RiskLevel::High
    } else if s >= w.medium_from {
        RiskLevel::Medium
    } else {
        RiskLevel::Low
    };
    RiskAssessment { score, level, factors }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_small_internal_change_is_low_risk() {
        let a = assess(&RiskInput { service_count: 1, component_count: 1, change_count: 2, ..Default::default() }, &RiskWeights::default());
        assert_eq!(a.level, RiskLevel::Low);
        assert_eq!(a.score, 1);
    }

    #[test]
    fn payments_migration_on_a_new_customer_facing_service_is_high() {
        let input = RiskInput {
            service_count: 2,
            customer_facing_services: 1,
            component_count: 2,
            change_count: 10,
            risk_flags: BTreeMap::from([("schema_migration".into(), 1), ("touches_payment_logic".into(), 2)]),
            first_deploy_services: vec!["ledger".into()],
            ..Default::default()
        };
        let a = assess(&input, &RiskWeights::default());
        // 20 customer-facing + 5 extra service + 5 changes + 30 flags + 10 first deploy.
        assert_eq!(a.score, 70);
        assert_eq!(a.level, RiskLevel::High);
        let flags = a.factors.iter().find(|f| f.name == "risk_flags").unwrap();
        assert_eq!(flags.contribution, 30.0);
    }

    proptest! {
        #[test]
        fn score_is_bounded_and_more_risk_never_lowers_it(changes in 0u32..1000, flags in 0usize..4, failures in 0u32..20) {
            let names = ["schema_migration", "touches_payment_logic", "auth", "infra"];
            let base = RiskInput {
                service_count: 1,
                change_count: changes,
                risk_flags: names[..flags].iter().map(|n| (n.to_string(), 1)).collect(),
                prior_releases: 20,
                prior_failures: failures,
                ..Default::default()
            };
            let w = RiskWeights::default();
            let a = assess(&base, &w);
            prop_assert!(a.score <= 100);
            let mut more = base.clone();
            more.customer_facing_services = 1;
            more.change_count += 10;
            prop_assert!(assess(&more, &w).score >= a.score);
        }
    }
}
