//! The promotion part of `signalbox demo` (issue 6): two releases roll out on simulated fleets
//! while the demo runs. Both go to dev at once and are auto-promoted to staging after a short
//! soak, where a canary analyses pushed error-rate and latency: search-api's canary is healthy
//! and promotes; catalog-service's canary fails 5 % of requests and Signalbox rolls it back by
//! itself.
//!
//! The simulated fleets live in the server process; [`run_demo_traffic`] plays the part of the
//! applications, pushing each canary's error rate and p99 latency every two seconds, as a real
//! service (or its metrics pipeline) would through `POST /deployments/{id}/metrics`.

use chrono::Utc;
use serde_json::json;
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{Documents, Kind};
use signalbox_drivers::ArtifactRef;
use signalbox_rollout::plan::RolloutPhase;
use signalbox_store::ListQuery;

use crate::error::AppResult;
use crate::evidence::AddEvidence;
use crate::mutation::decode;
use crate::promotion::{Deployment, PromoteRequest, PushMetrics, PushedValue, PutPath};
use crate::requests::{CreateRelease, TransitionRequest};
use crate::{App, RequestContext};

/// (service, version running now, version released, canary error rate, canary p99 ms)
const ROLLOUTS: [(&str, &str, &str, f64, f64); 2] =
    [("search-api", "1.4.1", "1.5.0", 0.001, 120.0), ("catalog-service", "1.4.1", "1.5.0", 0.05, 140.0)];

const JUNIT_GREEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="0" errors="0"><testsuite name="api" tests="3" failures="0" errors="0">
<testcase classname="api" name="lists"/><testcase classname="api" name="gets"/><testcase classname="api" name="pages"/>
</testsuite></testsuites>"#;

fn fleet_name(service: &str, environment: &str) -> String {
    format!("{service}-{environment}")
}

fn path_for(service: &str) -> serde_json::Value {
    let metrics = json!([
        {
            "name": "error-rate",
            "provider": {"type": "pushed"},
            "interval_seconds": 5,
            "count": 3,
            "success_condition": "avg(result) < 0.01",
            "failure_condition": "avg(result) >= 0.01",
            "no_data": "inconclusive"
        },
        {
            "name": "latency-p99",
            "provider": {"type": "pushed"},
            "interval_seconds": 5,
            "count": 3,
            "success_condition": "max(result) < 300",
            "failure_condition": "max(result) >= 500",
            "no_data": "inconclusive"
        }
    ]);
    json!({
        "name": format!("{service} dev → staging"),
        "service": service,
        "stages": [
            {
                "environment": "dev",
                "strategy": {"type": "all_at_once"},
                "driver": {"type": "simulated", "fleet": fleet_name(service, "dev")}
            },
            {
                "environment": "staging",
                "auto_promote": true,
                "required_soak_seconds": 15,
                "strategy": {"type": "canary", "steps": [
                    {"set_weight": 10},
                    {"analysis": {"metrics": ["error-rate", "latency-p99"]}},
                    {"set_weight": 50},
                    {"pause": {"duration_seconds": 5}},
                    {"set_weight": 100}
                ]},
                "driver": {"type": "simulated", "fleet": fleet_name(service, "staging")},
                "metrics": metrics
            }
        ]
    })
}

impl App {
    pub(crate) async fn seed_promotion_demo(&self, ctx: &RequestContext) -> AppResult<()> {
        for (service, running, next, error_rate, latency) in ROLLOUTS {
            let path: PutPath =
                serde_json::from_value(path_for(service)).map_err(|e| crate::AppError::Internal(format!("demo path: {e}")))?;
            self.put_path(ctx, path).await?;
            for env in ["dev", "staging"] {
                let stable = ArtifactRef { name: service.into(), version: running.into(), digest: super::digest_for(service, running) };
                let fleet = self.controller.fleets.add_fleet(&fleet_name(service, env), Some(stable));
                if env == "staging" {
                    fleet.set_canary_health(error_rate, latency);
                }
            }
            // Staging's gate wants passing tests for the artifact.
            self.add_evidence(
                ctx,
                AddEvidence {
                    artifact: Some(format!("{service}@{next}")),
                    release: None,
                    kind: "junit".into(),
                    environment: None,
                    file_name: Some("junit.xml".into()),
                },
                JUNIT_GREEN.as_bytes(),
            )
            .await?;
            let release = self
                .create_release(
                    ctx,
                    CreateRelease {
                        name: format!("{service} {next} rollout"),
                        version: Some(next.into()),
                        domain: Some("storefront".into()),
                        template: Some("standard".into()),
                        owner: Some("alice".into()),
                        components: vec![format!("{service}@{next}")],
                        changes: vec![],
                        target_environments: vec!["dev".into(), "staging".into(), "prod".into()],
                        planned_window: None,
                        documents: Documents::default(),
                        depends_on: vec![],
                        kill_switch_flags: vec![],
                    },
                )
                .await?;
            let release = self
                .transition_release(
                    ctx,
                    &release.value.id,
                    Some(release.version),
                    TransitionRequest { to: ReleaseState::Testing, reason: Some("demo: on its way to staging".into()), environment: None },
                )
                .await?;
            self.promote(ctx, &release.value.id, PromoteRequest { environment: "dev".into(), reason: Some("demo".into()) }).await?;
        }
        Ok(())
    }
}

/// Pushes every simulated canary's numbers to its running deployment every two seconds until
/// `stop` turns true: the demo's stand-in for applications reporting their health.
pub async fn run_demo_traffic(app: App, mut stop: tokio::sync::watch::Receiver<bool>) {
    let ctx = RequestContext::system();
    loop {
        if let Ok(page) = app.store.list(&ListQuery::all(Kind::Deployment)).await {
            for record in &page.items {
                let Ok(d) = decode::<Deployment>(record).map(|v| v.value) else { continue };
                if d.rollout.phase != RolloutPhase::Progressing {
                    continue;
                }
                let signalbox_drivers::DriverSpec::Simulated { fleet } = &d.driver else { continue };
                let sample = app.controller.fleets.fleet(fleet).sample(Utc::now());
                let Some(canary) = sample.canary else { continue };
                let values = vec![
                    PushedValue { metric: "error-rate".into(), value: canary.error_rate, baseline: Some(sample.stable.error_rate) },
                    PushedValue {
                        metric: "latency-p99".into(),
                        value: canary.p99_latency_ms,
                        baseline: Some(sample.stable.p99_latency_ms),
                    },
                ];
                if let Err(e) = app.push_metrics(&ctx, &d.id, PushMetrics { values }).await {
                    tracing::debug!(deployment = %d.key, error = %e, "demo traffic: push failed");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
