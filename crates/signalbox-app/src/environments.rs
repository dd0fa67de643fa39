//! Environments as users see them (issue 6): the services × environments matrix built from
//! deployments, and the configuration parity report between two environments.

use chrono::{DateTime, Utc};
use serde::Serialize;
use signalbox_domain::access::{Permission, ResourceScopes};
use signalbox_domain::model::{Environment, Kind, Service};
use signalbox_rollout::plan::RolloutPhase;
use signalbox_store::ListQuery;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use utoipa::ToSchema;

use crate::mutation::decode;
use crate::promotion::{DeployedArtifact, Deployment};
use crate::{App, AppResult, RequestContext};

/// What runs in one environment for one service.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MatrixCell {
    pub environment: String,
    /// What serves traffic: the last artifact rolled out successfully (or recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<DeployedArtifact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<String>,
    /// The latest deployment and its phase (`progressing`, `rolled_back`, …).
    pub latest_deployment: String,
    pub latest_release: String,
    pub status: String,
    /// Traffic on the latest deployment's artifact, in percent.
    pub weight: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MatrixRow {
    pub service: String,
    /// One per environment, in `environments` order; null where nothing was ever deployed.
    pub cells: Vec<Option<MatrixCell>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EnvironmentMatrix {
    /// Environments in path order (their `position`).
    pub environments: Vec<String>,
    pub rows: Vec<MatrixRow>,
}

/// One configuration key compared between two environments.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ParityItem {
    pub key: String,
    /// `missing` (only in `from`), `extra` (only in `to`), `different`, or `secret_reference_differs`.
    pub finding: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ParityReport {
    pub from: String,
    pub to: String,
    pub matching: usize,
    pub findings: Vec<ParityItem>,
    /// Keys the caller said may differ (URLs, sizes): compared for presence only.
    pub ignored: Vec<String>,
}

/// Secret references are compared by presence and by the name they point at, never shown.
fn is_secret(value: &str) -> bool {
    value.starts_with("secret://")
}

impl App {
    /// `GET /api/v1/environments/matrix`.
    pub async fn environment_matrix(&self, ctx: &RequestContext) -> AppResult<EnvironmentMatrix> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let mut envs: Vec<Environment> = decode_all(self, ListQuery::all(Kind::Environment)).await?;
        envs.sort_by(|a, b| (a.position, &a.name).cmp(&(b.position, &b.name)));
        let services: Vec<Service> = decode_all(self, ListQuery::all(Kind::Service)).await?;
        let deployments: Vec<Deployment> = decode_all(self, ListQuery::all(Kind::Deployment)).await?;
        let mut by_target: HashMap<(&str, &str), Vec<&Deployment>> = HashMap::new();
        for d in &deployments {
            by_target.entry((d.service_id.as_str(), d.environment_id.as_str())).or_default().push(d);
        }
        let mut rows = Vec::new();
        let mut services: Vec<&Service> = services.iter().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        for s in services {
            let cells: Vec<Option<MatrixCell>> = envs
                .iter()
                .map(|e| {
                    let mut list = by_target.get(&(s.id.as_str(), e.id.as_str()))?.clone();
                    list.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
                    let latest = *list.last()?;
                    let serving = list.iter().rev().find(|d| d.rollout.phase == RolloutPhase::Succeeded);
                    // A rolled-back or running rollout leaves its predecessor serving.
                    let running = serving.map(|d| d.artifact.clone()).or_else(|| latest.previous.clone());
                    Some(MatrixCell {
                        environment: e.name.clone(),
                        running,
                        deployed_at: serving.map(|d| d.rollout.finished_at.unwrap_or(d.created_at)),
                        deployed_by: serving.map(|d| d.created_by.clone()),
                        latest_deployment: latest.key.clone(),
                        latest_release: latest.release_key.clone(),
                        status: latest.rollout.phase.as_str().into(),
                        weight: latest.rollout.weight,
                    })
                })
                .collect();
            if cells.iter().any(Option::is_some) {
                rows.push(MatrixRow { service: s.name.clone(), cells });
            }
        }
        Ok(EnvironmentMatrix { environments: envs.iter().map(|e| e.name.clone()).collect(), rows })
    }

    /// `GET /api/v1/environments/parity?from=staging&to=production&ignore=KEY,…`.
    pub async fn environment_parity(&self, ctx: &RequestContext, from: &str, to: &str, ignore: &[String]) -> AppResult<ParityReport> {
        let a: Environment = self.get_resource(ctx, Kind::Environment, from).await?.value;
        let b: Environment = self.get_resource(ctx, Kind::Environment, to).await?.value;
        Ok(parity(&a.name, &a.config, &b.name, &b.config, ignore))
    }
}

/// Compares two configuration sets key by key.
pub fn parity(from: &str, a: &BTreeMap<String, String>, to: &str, b: &BTreeMap<String, String>, ignore: &[String]) -> ParityReport {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut findings = Vec::new();
    let mut matching = 0;
    let shown = |v: &String| if is_secret(v) { "secret://…".to_string() } else { v.clone() };
    for key in keys {
        match (a.get(key), b.get(key)) {
            (Some(x), None) => {
                findings.push(ParityItem { key: key.clone(), finding: "missing".into(), from_value: Some(shown(x)), to_value: None })
            }
            (None, Some(y)) => {
                findings.push(ParityItem { key: key.clone(), finding: "extra".into(), from_value: None, to_value: Some(shown(y)) })
            }
            (Some(x), Some(y)) => {
                if x == y || ignore.contains(key) {
                    matching += 1;
                } else if is_secret(x) != is_secret(y) {
                    findings.push(ParityItem {
                        key: key.clone(),
                        finding: "different".into(),
                        from_value: Some(shown(x)),
                        to_value: Some(shown(y)),
                    });
                } else if is_secret(x) {
                    // Secret references are expected to point at per-environment secrets.
                    matching += 1;
                } else {
                    findings.push(ParityItem {
                        key: key.clone(),
                        finding: "different".into(),
                        from_value: Some(x.clone()),
                        to_value: Some(y.clone()),
                    });
                }
            }
            (None, None) => {}
        }
    }
    ParityReport { from: from.into(), to: to.into(), matching, findings, ignored: ignore.to_vec() }
}

async fn decode_all<T: serde::de::DeserializeOwned>(app: &App, query: ListQuery) -> AppResult<Vec<T>> {
    let mut out = Vec::new();
    let mut q = query;
    q.limit = 1000;
    loop {
        let page = app.store.list(&q).await?;
        for r in &page.items {
            out.push(decode(r)?.value);
        }
        match page.next_after_seq {
            Some(seq) => q.after_seq = Some(seq),
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parity_reports_missing_extra_and_different_but_not_secret_targets() {
        let staging = set(&[("POOL", "10"), ("FEATURE_X", "on"), ("DB_PASSWORD", "secret://staging/db"), ("URL", "https://s")]);
        let prod = set(&[("POOL", "10"), ("DB_PASSWORD", "secret://prod/db"), ("NEW", "1"), ("URL", "https://p")]);
        let r = parity("staging", &staging, "production", &prod, &["URL".to_string()]);
        let found: Vec<(&str, &str)> = r.findings.iter().map(|f| (f.key.as_str(), f.finding.as_str())).collect();
        assert_eq!(found, vec![("FEATURE_X", "missing"), ("NEW", "extra")]);
        assert_eq!(r.matching, 3, "POOL equal, DB_PASSWORD both secret references, URL ignored");
        let r = parity("staging", &set(&[("POOL", "10")]), "production", &set(&[("POOL", "20")]), &[]);
        assert_eq!(r.findings[0].finding, "different");
        assert_eq!(r.findings[0].to_value.as_deref(), Some("20"));
        // A secret reference against a plain value is drift, and the secret is never shown.
        let r = parity("a", &set(&[("K", "secret://a/k")]), "b", &set(&[("K", "plain")]), &[]);
        assert_eq!(r.findings[0].from_value.as_deref(), Some("secret://…"));
    }
}
