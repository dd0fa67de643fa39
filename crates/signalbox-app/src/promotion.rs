//! Promotion (issue 6): promotion paths, promoting a release's components into an environment,
//! deployments recorded from external CI, driver reports, pushed metrics and the manual
//! controls of a rollout. The controller that drives rollouts lives in [`crate::rollouts`].
//!
//! **One deployment per component.** Promoting a release into an environment creates one
//! [`Deployment`] per component (service pinned to an artifact digest), each with its own
//! rollout, so the environment matrix (services × environments) reads straight from them and a
//! failing service rolls back alone; the release follows its components (see
//! [`crate::rollouts`] for the release's lifecycle).
//!
//! **What a promotion checks**, all inside the promotion's transaction: the release may deploy
//! (not failed, cancelled or closed); the environment is on the service's path; the same digest
//! succeeded in the previous environment of the path and has soaked there for the stage's
//! `required_soak_seconds`; governance gates and approvals for the environment; freezes and
//! release windows from the calendar; no other rollout of the service in the environment is
//! running. Every refusal lists every reason.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use signalbox_domain::access::{Permission, ResourceScopes, Scope};
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{Environment, Kind, Release, Service, StateChange};
use signalbox_drivers::DriverSpec;
use signalbox_rollout::analysis::MetricSpec;
use signalbox_rollout::plan::{compile, ActionResult, Rollout, RolloutPhase, RolloutState, Step, Strategy};
use signalbox_store::ListQuery;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::catalog::service_scopes;
use crate::governance::Reader;
use crate::mutation::{decode, Mutation, Placement};
use crate::releases::release_scopes;
use crate::{new_id, App, AppError, AppResult, RequestContext, Versioned};

/// The ordered environments releases of a scope move through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromotionPath {
    pub id: String,
    pub name: String,
    /// The path applies to this service; a service path wins over a domain path, which wins
    /// over the organization's (both absent).
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub domain_id: Option<String>,
    pub stages: Vec<PathStage>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// One environment of a path and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PathStage {
    pub environment_id: String,
    pub environment: String,
    /// Promote into this environment by itself once the previous one succeeded and soaked.
    #[serde(default)]
    pub auto_promote: bool,
    /// How long the digest must have run successfully in the previous environment.
    #[serde(default)]
    pub required_soak_seconds: u64,
    pub strategy: Strategy,
    #[schema(value_type = Object)]
    pub driver: DriverSpec,
    /// Metrics the strategy's analysis steps and smoke checks name.
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// Metrics run as smoke checks after every traffic change.
    #[serde(default)]
    pub smoke: Vec<String>,
    /// Flags (keys in the environment's flag set) switched off by the kill switch when a
    /// rollout of this stage starts rolling back.
    #[serde(default)]
    pub kill_switch_flags: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PutPath {
    pub name: String,
    /// Service id or name; absent with `domain` absent means the organization's default path.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    pub stages: Vec<PathStageInput>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PathStageInput {
    /// Environment id or name.
    pub environment: String,
    #[serde(default)]
    pub auto_promote: bool,
    #[serde(default)]
    pub required_soak_seconds: u64,
    pub strategy: Strategy,
    #[schema(value_type = Object)]
    pub driver: DriverSpec,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub smoke: Vec<String>,
    /// Flag keys the kill switch turns off when a rollout of this stage rolls back.
    #[serde(default)]
    pub kill_switch_flags: Vec<String>,
}

/// The artifact a deployment puts in place (or replaced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeployedArtifact {
    pub artifact_id: String,
    pub version: String,
    pub digest: String,
    #[serde(default)]
    pub release_key: Option<String>,
}

/// One component of a release promoted into one environment, with its rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub id: String,
    /// `D-<n>`.
    pub key: String,
    pub release_id: String,
    pub release_key: String,
    pub environment_id: String,
    pub environment: String,
    pub service_id: String,
    pub service: String,
    pub artifact: DeployedArtifact,
    /// What ran before in the environment; a rollback returns to it.
    #[serde(default)]
    pub previous: Option<DeployedArtifact>,
    #[serde(default)]
    pub path_id: Option<String>,
    /// `manual`, `auto` (auto-promotion) or `recorded` (deployed by external CI).
    pub trigger: String,
    pub strategy: Strategy,
    #[schema(value_type = Object)]
    pub driver: DriverSpec,
    pub plan: Vec<Step>,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// Flags switched off when this rollout starts rolling back (from the path stage).
    #[serde(default)]
    pub kill_switch_flags: Vec<String>,
    pub rollout: RolloutState,
    /// The controller's wake-up job generation; one pending job per deployment at a time.
    #[serde(default)]
    pub wake: u64,
    /// True while a driver action or measurement is in flight (the pending job is then the
    /// takeover lease, not a wake-up).
    #[serde(default)]
    pub in_flight: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Log lines for people: controls, freezes, reports.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Per pushed metric, the pushes its measurements already counted that are still inside
    /// the late-commit grace ([`crate::rollouts::PUSH_COMMIT_GRACE_SECONDS`]): a push is stamped
    /// when its transaction starts and may commit after a measurement read past its stamp, so
    /// each measurement re-reads that far back and skips what it counted before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pushes_counted: BTreeMap<String, Vec<String>>,
}

impl Deployment {
    pub fn phase(&self) -> RolloutPhase {
        self.rollout.phase
    }
    pub fn rollout(&self) -> Rollout<'_> {
        Rollout {
            deployment_id: &self.id,
            plan: &self.plan,
            metrics: &self.metrics,
            expected_digest: &self.artifact.digest,
            state: self.rollout.clone(),
        }
    }
}

pub(crate) fn deployment_placement(d: &Deployment) -> Placement {
    Placement { key: Some(d.key.clone()), parent: Some(d.release_id.clone()), state: Some(d.rollout.phase.as_str().into()) }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PromoteRequest {
    /// Environment id or name.
    pub environment: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What `promote` did, or would refuse.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PromotionResult {
    pub release: String,
    pub environment: String,
    pub deployments: Vec<Deployment>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RecordDeployment {
    pub release: String,
    pub environment: String,
    /// Service id or name; absent means every component of the release.
    #[serde(default)]
    pub service: Option<String>,
    /// The digest the pipeline deployed; it must be the one the release pins.
    pub digest: String,
    /// `succeeded` (default) or `failed`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A driver's asynchronous completion report (`POST /deployments/{id}/report`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct DriverReport {
    /// The idempotency key of the action reported on.
    pub idempotency_key: String,
    /// `completed` or `failed`.
    pub status: String,
    #[serde(default)]
    pub deployed_digest: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Values pushed for a deployment's analysis (`POST /deployments/{id}/metrics`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PushMetrics {
    pub values: Vec<PushedValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PushedValue {
    /// The metric's `provider.name`, or its own name.
    pub metric: String,
    pub value: f64,
    /// A baseline value for judged metrics.
    #[serde(default)]
    pub baseline: Option<f64>,
}

/// A stored push.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct MetricPushRecord {
    pub id: String,
    pub deployment_id: String,
    pub at: DateTime<Utc>,
    pub values: Vec<PushedValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    Pause,
    Resume,
    Abort,
    PromoteNow,
    Retry,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ControlRequest {
    pub action: Control,
    #[serde(default)]
    pub reason: Option<String>,
}

pub(crate) fn path_key(service_id: Option<&str>, domain_id: Option<&str>) -> String {
    match (service_id, domain_id) {
        (Some(s), _) => format!("service:{s}"),
        (None, Some(d)) => format!("domain:{d}"),
        (None, None) => "organization".into(),
    }
}

/// Resolves a webhook secret reference (`env:NAME`) at send time: secrets are never stored in
/// paths, deployments or the audit trail.
pub(crate) fn resolve_driver(spec: &DriverSpec) -> Result<DriverSpec, String> {
    match spec {
        DriverSpec::Webhook { url, secret, timeout_seconds, max_attempts, backoff_ms } => {
            let name =
                secret.expose().strip_prefix("env:").ok_or_else(|| "the webhook secret must be a reference `env:NAME`".to_string())?;
            let value = std::env::var(name)
                .map_err(|_| format!("the webhook secret variable {name} is not set on this server; set it to the whsec_… secret"))?;
            Ok(DriverSpec::Webhook {
                url: url.clone(),
                secret: value.into(),
                timeout_seconds: *timeout_seconds,
                max_attempts: *max_attempts,
                backoff_ms: *backoff_ms,
            })
        }
        other => Ok(other.clone()),
    }
}

fn validate_driver(field: &str, spec: &DriverSpec) -> AppResult<()> {
    let checked = match spec {
        DriverSpec::Webhook { url, secret, timeout_seconds, max_attempts, backoff_ms } => {
            let Some(name) = secret.expose().strip_prefix("env:") else {
                return Err(AppError::invalid(
                    format!("{field}.secret"),
                    "give the secret as a reference `env:NAME` to a variable holding the whsec_… value on every server; secrets are not stored",
                ));
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(AppError::invalid(format!("{field}.secret"), "`env:NAME` needs a variable name of letters, digits and _"));
            }
            // The format of the real secret is checked when it is used; check the rest now.
            DriverSpec::Webhook {
                url: url.clone(),
                secret: "whsec_c2lnbmFsYm94LXZhbGlkYXRpb24=".into(),
                timeout_seconds: *timeout_seconds,
                max_attempts: *max_attempts,
                backoff_ms: *backoff_ms,
            }
        }
        other => other.clone(),
    };
    checked.validate().map_err(|e| AppError::invalid(format!("{field}.{}", e.field), e.message))
}

impl App {
    /// `PUT /api/v1/promotion-paths`: creates or replaces the path of a scope.
    pub async fn put_path(&self, ctx: &RequestContext, req: PutPath) -> AppResult<Versioned<PromotionPath>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let (service_id, domain_id, scopes) = match (&req.service, &req.domain) {
            (Some(s), _) => {
                let svc: Service = App::resolve_ref(&mut m, Kind::Service, "service", s).await?.value;
                let scopes = service_scopes(&svc);
                (Some(svc.id), None, scopes)
            }
            (None, Some(d)) => {
                let dom: signalbox_domain::model::Domain = App::resolve_ref(&mut m, Kind::Domain, "domain", d).await?.value;
                (None, Some(dom.id.clone()), ResourceScopes::organization().with(Scope::Domain(dom.id)))
            }
            (None, None) => (None, None, ResourceScopes::organization()),
        };
        ctx.actor.require(Permission::ManagePolicy, &scopes)?;
        if req.name.trim().is_empty() || req.name.len() > 200 {
            return Err(AppError::invalid("name", "give the path a name of 1 to 200 characters"));
        }
        if req.stages.is_empty() {
            return Err(AppError::invalid("stages", "a path needs at least one environment"));
        }
        let mut stages = Vec::new();
        for (i, s) in req.stages.iter().enumerate() {
            let env: Environment =
                App::resolve_ref(&mut m, Kind::Environment, &format!("stages[{i}].environment"), &s.environment).await?.value;
            if stages.iter().any(|x: &PathStage| x.environment_id == env.id) {
                return Err(AppError::invalid(
                    format!("stages[{i}].environment"),
                    format!("{} appears twice; each environment once", env.name),
                ));
            }
            for (j, metric) in s.metrics.iter().enumerate() {
                metric.validate().map_err(|e| {
                    // The analysis crate names fields relative to a metric list (`metrics[].x`).
                    let inner = e.field.strip_prefix("metrics[].").unwrap_or(&e.field);
                    AppError::invalid(format!("stages[{i}].metrics[{j}].{inner}"), e.message)
                })?;
                if s.metrics[..j].iter().any(|m| m.name == metric.name) {
                    return Err(AppError::invalid(
                        format!("stages[{i}].metrics[{j}].name"),
                        format!("{:?} is defined twice in this stage; give each metric its own name", metric.name),
                    ));
                }
            }
            compile(&s.strategy, &s.metrics, &s.smoke).map_err(|e| AppError::invalid(format!("stages[{i}].{}", e.field), e.message))?;
            validate_driver(&format!("stages[{i}].driver"), &s.driver)?;
            if let Some(bad) = s.kill_switch_flags.iter().find(|f| f.trim().is_empty() || f.len() > 200) {
                return Err(AppError::invalid(
                    format!("stages[{i}].kill_switch_flags"),
                    format!("{bad:?} is not a flag key; name flags of the environment's flag set"),
                ));
            }
            if s.auto_promote {
                // Auto-promotion deploys as the server on the path owner's behalf: whoever turns
                // it on must be someone the environment accepts deployments from.
                ctx.actor.require_deployer(&env, &scopes.clone().with(Scope::Environment(env.id.clone()))).map_err(|e| match e {
                    AppError::Forbidden(detail) => AppError::Forbidden(format!("stages[{i}].auto_promote: {detail}")),
                    other => other,
                })?;
            }
            if i == 0 && s.required_soak_seconds > 0 {
                return Err(AppError::invalid(
                    "stages[0].required_soak_seconds",
                    "the first environment has no previous one to soak in; set it on a later stage",
                ));
            }
            stages.push(PathStage {
                environment_id: env.id.clone(),
                environment: env.name.clone(),
                auto_promote: s.auto_promote,
                required_soak_seconds: s.required_soak_seconds,
                strategy: s.strategy.clone(),
                driver: s.driver.clone(),
                metrics: s.metrics.clone(),
                smoke: s.smoke.clone(),
                kill_switch_flags: s.kill_switch_flags.clone(),
            });
        }
        let key = path_key(service_id.as_deref(), domain_id.as_deref());
        let place = Placement { key: Some(key.clone()), parent: service_id.clone().or(domain_id.clone()), state: None };
        let existing = m.find::<PromotionPath>(Kind::PromotionPath, &key).await?;
        let path = PromotionPath {
            id: existing.as_ref().map(|e| e.value.id.clone()).unwrap_or_else(|| new_id(Kind::PromotionPath)),
            name: req.name.trim().to_string(),
            service_id,
            domain_id,
            stages,
            updated_by: ctx.actor.username.clone(),
            updated_at: m.now,
        };
        let version = match existing {
            Some(current) => m.update("promotion_path.update", Kind::PromotionPath, &path.id.clone(), place, &current, &path).await?,
            None => m.insert("promotion_path.create", Kind::PromotionPath, &path.id.clone(), place, &path).await?,
        };
        let out = Versioned { version, value: path };
        m.commit(200, &out.value).await?;
        Ok(out)
    }

    pub async fn list_paths(&self, ctx: &RequestContext) -> AppResult<Vec<PromotionPath>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let page = self.store.list(&ListQuery::all(Kind::PromotionPath)).await?;
        page.items.iter().map(|r| decode(r).map(|v| v.value)).collect()
    }

    /// The path for a service: its own, else its domain's, else the organization's.
    pub(crate) async fn path_for(reader: &mut Reader<'_, '_>, service: &Service) -> AppResult<Option<PromotionPath>> {
        for key in [path_key(Some(&service.id), None), path_key(None, Some(&service.domain_id)), path_key(None, None)] {
            let found = match reader {
                Reader::Store(store) => store.get(Kind::PromotionPath, &key).await?.map(|r| decode::<PromotionPath>(&r)).transpose()?,
                Reader::Tx(m) => m.find::<PromotionPath>(Kind::PromotionPath, &key).await?,
            };
            if let Some(p) = found {
                return Ok(Some(p.value));
            }
        }
        Ok(None)
    }

    /// `POST /api/v1/releases/{id}/promote`: moves every component of the release into the
    /// environment, one rollout per component, after every check passes.
    pub async fn promote(&self, ctx: &RequestContext, release: &str, req: PromoteRequest) -> AppResult<PromotionResult> {
        self.prepare_promotion(release, &req.environment).await;
        let mut m = Mutation::begin(self, ctx).await?;
        let rel: Versioned<Release> = m.get(Kind::Release, release).await?;
        let env: Environment = App::resolve_ref(&mut m, Kind::Environment, "environment", &req.environment).await?.value;
        require_deploy_into(ctx, &rel.value, &env)?;
        let reason = req.reason.clone().or_else(|| ctx.reason.clone());
        m.set_reason(reason.clone());
        let deployments = self.start_promotion(&mut m, rel, &env, "manual", reason).await?;
        let out = PromotionResult { release: deployments[0].release_key.clone(), environment: env.name.clone(), deployments };
        m.commit(201, &out).await?;
        Ok(out)
    }

    /// Reads what a promotion's governance check needs before its transaction begins (see
    /// [`App::prepare_gather`]): on SQLite a write transaction holds the only writer, so what it
    /// can verify instead of read keeps every other write (metric pushes, controller steps)
    /// waiting less. Best effort; the transaction checks everything again.
    pub(crate) async fn prepare_promotion(&self, release: &str, environment: &str) {
        if let Ok(Some(record)) = self.store.get(Kind::Release, release).await {
            if let Ok(rel) = decode::<Release>(&record) {
                self.prepare_gather(&rel.value, environment).await;
            }
        }
    }

    /// Checks and creates the deployments of a promotion inside `m`. Shared by manual
    /// promotion and auto-promotion.
    pub(crate) async fn start_promotion(
        &self,
        m: &mut Mutation<'_>,
        rel: Versioned<Release>,
        env: &Environment,
        trigger: &str,
        reason: Option<String>,
    ) -> AppResult<Vec<Deployment>> {
        let now = m.now;
        let release = rel.value.clone();
        let mut reasons = Vec::new();
        if matches!(release.state, ReleaseState::Failed | ReleaseState::Cancelled | ReleaseState::Closed | ReleaseState::RolledBack) {
            reasons.push(format!("{} is {}; re-plan it before promoting", release.key, release.state));
        }
        if release.components.is_empty() {
            reasons.push(format!("{} has no components (services pinned to artifact digests) to promote", release.key));
        }
        let is_final = release.target_environments.last() == Some(&env.id);
        if is_final && !matches!(release.state, ReleaseState::Approved | ReleaseState::Deploying) {
            reasons.push(format!(
                "{} is the release's last target environment; the release must be approved first (it is {})",
                env.name, release.state
            ));
        }
        // Governance: gates and approvals for this environment.
        {
            let mut reader = Reader::Tx(m);
            reasons.extend(self.governance_blockers(&mut reader, now, &release, ReleaseState::Deploying, Some(&env.id)).await?);
        }
        let mut planned = Vec::new();
        for component in &release.components {
            let service: Service = m.get(Kind::Service, &component.service_id).await?.value;
            let path = {
                let mut reader = Reader::Tx(m);
                App::path_for(&mut reader, &service).await?
            };
            let Some(path) = path else {
                reasons.push(format!(
                    "no promotion path covers {}; set one for the service, its domain or the organization (PUT /api/v1/promotion-paths)",
                    service.name
                ));
                continue;
            };
            let Some(index) = path.stages.iter().position(|s| s.environment_id == env.id) else {
                let names: Vec<&str> = path.stages.iter().map(|s| s.environment.as_str()).collect();
                reasons.push(format!("{} is not on {}'s path {} ({})", env.name, service.name, path.name, names.join(" → ")));
                continue;
            };
            let stage = path.stages[index].clone();
            // The same digest must have succeeded upstream and soaked there.
            if index > 0 {
                let upstream = &path.stages[index - 1];
                let done = self.current_deployment(m, &service.id, &upstream.environment_id).await?;
                match done {
                    Some(d) if d.artifact.digest == component.digest && d.rollout.phase == RolloutPhase::Succeeded => {
                        let since = d.rollout.finished_at.unwrap_or(d.created_at);
                        let soaked = (now - since).num_seconds().max(0) as u64;
                        if soaked < stage.required_soak_seconds {
                            reasons.push(format!(
                                "{} {} has soaked {}s in {}; the path requires {}s (ready at {})",
                                service.name,
                                component.version,
                                soaked,
                                upstream.environment,
                                stage.required_soak_seconds,
                                (since + Duration::seconds(stage.required_soak_seconds as i64)).to_rfc3339()
                            ));
                        }
                    }
                    Some(d) if d.artifact.digest == component.digest => reasons.push(format!(
                        "{} {} is {} in {}, not succeeded; it must succeed there first",
                        service.name,
                        component.version,
                        d.rollout.phase.as_str(),
                        upstream.environment
                    )),
                    _ => reasons.push(format!(
                        "{} {} ({}) has not been deployed to {} yet; promote it there first (path {})",
                        service.name, component.version, component.digest, upstream.environment, path.name
                    )),
                }
            }
            let current = self.current_deployment(m, &service.id, &env.id).await?;
            if let Some(c) = &current {
                if !c.rollout.phase.is_finished() {
                    reasons.push(format!(
                        "{} already has a {} rollout in {} ({}); wait for it, or abort it",
                        service.name,
                        c.rollout.phase.as_str(),
                        env.name,
                        c.key
                    ));
                }
            }
            // The calendar: freezes and release windows for the expected duration.
            let plan = match compile(&stage.strategy, &stage.metrics, &stage.smoke) {
                Ok(p) => p,
                Err(e) => {
                    reasons.push(format!("{}'s path stage for {} no longer compiles: {e}", service.name, env.name));
                    continue;
                }
            };
            let expected = expected_seconds(&plan, &stage.metrics);
            let conflicts = {
                let mut reader = Reader::Tx(m);
                self.rollout_calendar(&mut reader, &release, &service.id, &env.id, now, expected).await?
            };
            for c in conflicts {
                reasons.push(format!("{} in {}: {}", service.name, env.name, c.reason));
            }
            let previous = current.filter(|c| c.rollout.phase == RolloutPhase::Succeeded).map(|c| c.artifact);
            planned.push((service, component.clone(), path.id.clone(), stage, plan, previous));
        }
        let mut seen = std::collections::HashSet::new();
        reasons.retain(|r| seen.insert(r.clone()));
        if !reasons.is_empty() {
            return Err(AppError::Refused {
                code: "promotion-refused",
                detail: format!("cannot promote {} to {}: {}", release.key, env.name, reasons.join("; ")),
                reasons,
            });
        }
        if is_final && release.state == ReleaseState::Approved {
            let mut next = release.clone();
            next.history.push(StateChange {
                from: Some(next.state),
                to: ReleaseState::Deploying,
                at: now,
                by: m.context().actor.username.clone(),
                reason: Some(format!("promoted to {}", env.name)),
            });
            next.state = ReleaseState::Deploying;
            App::store_release(m, "release.transition", &rel, next).await?;
        }
        let mut out = Vec::new();
        for (service, component, path_id, stage, plan, previous) in planned {
            let number = m.next_number("deployment").await?;
            let d = Deployment {
                id: new_id(Kind::Deployment),
                key: format!("D-{number}"),
                release_id: release.id.clone(),
                release_key: release.key.clone(),
                environment_id: env.id.clone(),
                environment: env.name.clone(),
                service_id: service.id.clone(),
                service: service.name.clone(),
                artifact: DeployedArtifact {
                    artifact_id: component.artifact_id.clone(),
                    version: component.version.clone(),
                    digest: component.digest.clone(),
                    release_key: Some(release.key.clone()),
                },
                previous,
                path_id: Some(path_id),
                trigger: trigger.into(),
                strategy: stage.strategy.clone(),
                driver: stage.driver.clone(),
                plan,
                metrics: stage.metrics.clone(),
                kill_switch_flags: {
                    // The stage's flags, then the release's own (each once).
                    let mut flags = stage.kill_switch_flags.clone();
                    flags.extend(release.kill_switch_flags.iter().filter(|f| !stage.kill_switch_flags.contains(f)).cloned());
                    flags
                },
                rollout: RolloutState::new(now),
                wake: 1,
                in_flight: false,
                created_by: m.context().actor.username.clone(),
                created_at: now,
                reason: reason.clone(),
                notes: vec![],
                pushes_counted: BTreeMap::new(),
            };
            m.insert("deployment.create", Kind::Deployment, &d.id.clone(), deployment_placement(&d), &d).await?;
            crate::rollouts::plan_wake(m, &d, now).await?;
            out.push(d);
        }
        Ok(out)
    }

    /// The latest deployment of a service in an environment (any phase).
    pub(crate) async fn current_deployment(
        &self,
        m: &mut Mutation<'_>,
        service_id: &str,
        environment_id: &str,
    ) -> AppResult<Option<Deployment>> {
        let q = ListQuery::all(Kind::Deployment).with_field("service_id", service_id).with_field("environment_id", environment_id);
        let items: Vec<Deployment> = m.list(&q).await?;
        Ok(items.into_iter().max_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key))))
    }

    /// Saves a release changed by promotion (state changes), recomputing nothing else.
    pub(crate) async fn store_release(m: &mut Mutation<'_>, action: &str, current: &Versioned<Release>, next: Release) -> AppResult<()> {
        let place = Placement { key: Some(next.key.clone()), parent: next.domain_id.clone(), state: Some(next.state.as_str().into()) };
        m.update(action, Kind::Release, &next.id.clone(), place, current, &next).await?;
        Ok(())
    }

    /// `POST /api/v1/deployments/record`: a deployment made by external CI. The same checks as a
    /// promotion apply (gates, approvals, calendar, path order); the rollout is recorded as
    /// finished.
    pub async fn record_deployment(&self, ctx: &RequestContext, req: RecordDeployment) -> AppResult<PromotionResult> {
        let mut m = Mutation::begin(self, ctx).await?;
        let rel: Versioned<Release> = App::resolve_ref(&mut m, Kind::Release, "release", &req.release).await?;
        let env: Environment = App::resolve_ref(&mut m, Kind::Environment, "environment", &req.environment).await?.value;
        require_deploy_into(ctx, &rel.value, &env)?;
        let failed = match req.status.as_deref() {
            None | Some("succeeded") => false,
            Some("failed") => true,
            Some(other) => return Err(AppError::invalid("status", format!("{other:?} is not a status; use succeeded or failed"))),
        };
        let mut scoped = rel.clone();
        if let Some(s) = &req.service {
            let svc: Service = App::resolve_ref(&mut m, Kind::Service, "service", s).await?.value;
            scoped.value.components.retain(|c| c.service_id == svc.id);
            if scoped.value.components.is_empty() {
                return Err(AppError::invalid("service", format!("{} is not a component of {}", svc.name, rel.value.key)));
            }
        }
        if req.service.is_none() && scoped.value.components.len() > 1 {
            let mut names = Vec::new();
            for c in &scoped.value.components {
                names.push(m.get::<Service>(Kind::Service, &c.service_id).await?.value.name);
            }
            return Err(AppError::invalid(
                "service",
                format!(
                    "{} has {} components ({}); name the one the pipeline deployed (--service), since one digest cannot match them all",
                    rel.value.key,
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        if let Some(c) = scoped.value.components.iter().find(|c| c.digest != req.digest) {
            return Err(AppError::invalid(
                "digest",
                format!(
                    "the pipeline deployed {}, but {} pins {} for this component; promote the same artifact, never a rebuild",
                    req.digest, rel.value.key, c.digest
                ),
            ));
        }
        let reason = req.reason.clone().or_else(|| ctx.reason.clone());
        m.set_reason(reason.clone());
        let mut deployments = self.start_promotion(&mut m, scoped, &env, "recorded", reason).await?;
        let now = m.now;
        for d in deployments.iter_mut() {
            let current: Versioned<Deployment> = m.get(Kind::Deployment, &d.id).await?;
            let mut next = current.value.clone();
            next.rollout.weight = if failed { 0 } else { 100 };
            next.rollout.step = next.plan.len();
            next.rollout.phase = if failed { RolloutPhase::RolledBack } else { RolloutPhase::Succeeded };
            next.rollout.finished_at = Some(now);
            if failed {
                next.rollout.failure = Some("the external pipeline reported the deployment failed".into());
                next.rollout.detected_at = Some(now);
            }
            next.notes.push(format!("recorded by {} from an external pipeline", ctx.actor.username));
            next.wake += 1; // the planned wake-up finds nothing to do
            m.update("deployment.record", Kind::Deployment, &next.id.clone(), deployment_placement(&next), &current, &next).await?;
            crate::rollouts::after_finish(self, &mut m, &next).await?;
            *d = next;
        }
        let out = PromotionResult { release: rel.value.key.clone(), environment: env.name.clone(), deployments };
        m.commit(201, &out).await?;
        Ok(out)
    }

    pub async fn get_deployment(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<Deployment>> {
        self.get_resource(ctx, Kind::Deployment, id).await
    }

    pub async fn list_deployments(
        &self,
        ctx: &RequestContext,
        release: Option<&str>,
        environment: Option<&str>,
    ) -> AppResult<Vec<Deployment>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let mut q = ListQuery::all(Kind::Deployment);
        if let Some(r) = release {
            let rel: Release = self.get_resource(ctx, Kind::Release, r).await?.value;
            q = q.with_parent(rel.id);
        }
        if let Some(e) = environment {
            let env: Environment = self.get_resource(ctx, Kind::Environment, e).await?.value;
            q = q.with_field("environment_id", env.id);
        }
        let page = self.store.list(&q).await?;
        page.items.iter().map(|r| decode(r).map(|v| v.value)).collect()
    }

    /// `POST /api/v1/deployments/{id}/report`: an asynchronous driver says how an action ended.
    pub async fn report_deployment(&self, ctx: &RequestContext, id: &str, req: DriverReport) -> AppResult<Versioned<Deployment>> {
        let result = match req.status.as_str() {
            "completed" => ActionResult::Completed { deployed_digest: req.deployed_digest.clone() },
            "failed" => {
                ActionResult::Failed { message: req.message.clone().unwrap_or_else(|| "the deploy system reported a failure".into()) }
            }
            other => return Err(AppError::invalid("status", format!("{other:?} is not a report status; use completed or failed"))),
        };
        if req.idempotency_key.trim().is_empty() {
            return Err(AppError::invalid("idempotency_key", "name the action reported on by the idempotency key it was sent with"));
        }
        self.control_deployment(ctx, id, Permission::Deploy, |rollout, now| {
            rollout
                .action_finished(&req.idempotency_key, result.clone(), now)
                .map_err(|r| AppError::Conflict { code: "report-refused", detail: r.0 })?;
            Ok(format!("driver report for {}: {}", req.idempotency_key, req.status))
        })
        .await
    }

    /// `POST /api/v1/deployments/{id}/control`: pause, resume, abort, promote now, retry.
    pub async fn control_rollout(&self, ctx: &RequestContext, id: &str, req: ControlRequest) -> AppResult<Versioned<Deployment>> {
        let who = ctx.actor.username.clone();
        let reason = req.reason.clone().or_else(|| ctx.reason.clone());
        let permission = match req.action {
            Control::PromoteNow => {
                if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    return Err(AppError::invalid("reason", "promote-now skips analysis; say why (reason)"));
                }
                Permission::OverrideRollout
            }
            Control::Abort => {
                if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    return Err(AppError::invalid("reason", "say why the rollout is aborted (reason); it is rolled back"));
                }
                Permission::Deploy
            }
            _ => Permission::Deploy,
        };
        self.control_deployment(ctx, id, permission, |rollout, now| {
            let r = reason.as_deref();
            let outcome = match req.action {
                Control::Pause => rollout.pause(now, &who, r),
                Control::Resume => rollout.resume(now),
                Control::Abort => rollout.abort(now, &who, r.unwrap_or_default()),
                Control::PromoteNow => rollout.promote_now(now),
                Control::Retry => rollout.retry(now),
            };
            outcome.map_err(|e| AppError::Conflict { code: "rollout-control-refused", detail: e.0 })?;
            Ok(format!("{:?} by {who}{}", req.action, r.map(|r| format!(": {r}")).unwrap_or_default()).to_lowercase())
        })
        .await
    }

    /// Applies a change to a deployment's rollout in one transaction and wakes its controller.
    /// The controller may write the deployment at the same moment (a step applied, a
    /// measurement recorded); a lost race re-reads and applies the change again, a few times.
    async fn control_deployment(
        &self,
        ctx: &RequestContext,
        id: &str,
        permission: Permission,
        change: impl Fn(&mut Rollout<'_>, DateTime<Utc>) -> AppResult<String>,
    ) -> AppResult<Versioned<Deployment>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.control_deployment_once(ctx, id, permission, &change).await {
                Err(AppError::PreconditionFailed { .. }) if attempt < 5 => continue,
                other => return other,
            }
        }
    }

    async fn control_deployment_once(
        &self,
        ctx: &RequestContext,
        id: &str,
        permission: Permission,
        change: &impl Fn(&mut Rollout<'_>, DateTime<Utc>) -> AppResult<String>,
    ) -> AppResult<Versioned<Deployment>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current: Versioned<Deployment> = m.get(Kind::Deployment, id).await?;
        let rel: Release = m.get(Kind::Release, &current.value.release_id).await?.value;
        ctx.actor.require(permission, &release_scopes(&rel))?;
        if permission == Permission::OverrideRollout {
            // Promote-now pushes the new version to everyone: only someone the environment
            // accepts deployments from.
            let env: Environment = m.get(Kind::Environment, &current.value.environment_id).await?.value;
            ctx.actor.require_deployer(&env, &release_scopes(&rel).with(Scope::Environment(env.id.clone())))?;
        }
        let now = m.now;
        let mut next = current.value.clone();
        let mut rollout = current.value.rollout();
        let note = change(&mut rollout, now)?;
        if rollout.state == current.value.rollout {
            // Nothing changed (a repeated driver report): nothing to write.
            return Ok(current);
        }
        next.rollout = rollout.state;
        if current.value.rollout.phase.is_finished() && !next.rollout.phase.is_finished() {
            // A retry deploys again: only the latest deployment of the service in the
            // environment, and only while the release may still deploy.
            let refuse = |detail: String| Err(AppError::Conflict { code: "rollout-control-refused", detail });
            let latest = self.current_deployment(&mut m, &current.value.service_id, &current.value.environment_id).await?;
            if let Some(l) = latest.filter(|l| l.id != current.value.id) {
                return refuse(format!(
                    "{} has since been replaced in {} by {} ({}); promote again instead of retrying an older rollout",
                    current.value.key, current.value.environment, l.key, l.release_key
                ));
            }
            if matches!(rel.state, ReleaseState::Failed | ReleaseState::Cancelled | ReleaseState::Closed | ReleaseState::RolledBack) {
                return refuse(format!("{} is {}; re-plan it before deploying it again", rel.key, rel.state));
            }
            // A retry deploys again, so it passes what a promotion passes now: the deployer
            // roles, gates and approvals, freezes and windows (not path order and soak, which
            // the first attempt already passed).
            let env: Environment = m.get(Kind::Environment, &current.value.environment_id).await?.value;
            require_deploy_into(ctx, &rel, &env)?;
            let expected = expected_seconds(&current.value.plan, &current.value.metrics);
            let mut reasons = {
                let mut reader = Reader::Tx(&mut m);
                self.governance_blockers(&mut reader, now, &rel, ReleaseState::Deploying, Some(&env.id)).await?
            };
            let conflicts = {
                let mut reader = Reader::Tx(&mut m);
                self.rollout_calendar(&mut reader, &rel, &current.value.service_id, &env.id, now, expected).await?
            };
            reasons.extend(conflicts.into_iter().map(|c| format!("{} in {}: {}", current.value.service, env.name, c.reason)));
            if !reasons.is_empty() {
                return Err(AppError::Refused {
                    code: "promotion-refused",
                    detail: format!("cannot retry {} in {}: {}", current.value.key, env.name, reasons.join("; ")),
                    reasons,
                });
            }
        }
        next.notes.push(format!("{}: {note}", now.to_rfc3339()));
        m.set_reason(ctx.reason.clone().or(Some(note)));
        crate::rollouts::wake_now(&mut m, &current.value, &mut next, now).await?;
        let version =
            m.update("deployment.control", Kind::Deployment, &current.value.id, deployment_placement(&next), &current, &next).await?;
        if next.rollout.phase.is_finished() && !current.value.rollout.phase.is_finished() {
            crate::rollouts::after_finish(self, &mut m, &next).await?;
        }
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        crate::rollouts::kill_switch_on_rollback(self, &current.value, &out.value).await;
        Ok(out)
    }

    /// `POST /api/v1/deployments/{id}/metrics`: values for `pushed` metrics.
    pub async fn push_metrics(&self, ctx: &RequestContext, id: &str, req: PushMetrics) -> AppResult<MetricPushRecord> {
        if req.values.is_empty() {
            return Err(AppError::invalid("values", "push at least one value: [{\"metric\": \"error-rate\", \"value\": 0.002}]"));
        }
        if req.values.len() > 1000 {
            return Err(AppError::invalid("values", "push at most 1000 values at a time"));
        }
        for (i, v) in req.values.iter().enumerate() {
            if v.metric.trim().is_empty() {
                return Err(AppError::invalid(format!("values[{i}].metric"), "name the metric"));
            }
            if !v.value.is_finite() || v.baseline.is_some_and(|b| !b.is_finite()) {
                return Err(AppError::invalid(format!("values[{i}].value"), "must be a finite number"));
            }
        }
        let mut m = Mutation::begin(self, ctx).await?;
        let d: Deployment = m.get(Kind::Deployment, id).await?.value;
        let rel: Release = m.get(Kind::Release, &d.release_id).await?.value;
        ctx.actor.require(Permission::Deploy, &release_scopes(&rel))?;
        if d.rollout.phase.is_finished() {
            return Err(AppError::Conflict {
                code: "deployment-finished",
                detail: format!(
                    "{} finished ({}){}; its metrics are no longer analysed, so the values were not stored. \
                     Push to the deployment that is running now (GET /api/v1/deployments?environment=…)",
                    d.key,
                    d.rollout.phase.as_str(),
                    d.rollout.finished_at.map(|t| format!(" at {}", t.to_rfc3339())).unwrap_or_default()
                ),
            });
        }
        let record = MetricPushRecord { id: new_id(Kind::MetricPush), deployment_id: d.id.clone(), at: m.now, values: req.values };
        let place = Placement { key: None, parent: Some(d.id.clone()), state: None };
        m.insert("deployment.metrics.push", Kind::MetricPush, &record.id.clone(), place, &record).await?;
        // Telemetry: the application pushes again within an interval.
        m.relax_durability().await?;
        m.commit(201, &record).await?;
        Ok(record)
    }
}

/// The `deploy` permission on the release (or on the environment), then the environment's
/// own list of deployer roles.
fn require_deploy_into(ctx: &RequestContext, release: &Release, env: &Environment) -> AppResult<()> {
    let scopes = release_scopes(release).with(Scope::Environment(env.id.clone()));
    ctx.actor.require(Permission::Deploy, &scopes)?;
    ctx.actor.require_deployer(env, &scopes)
}

/// A rough duration of a plan, for the calendar check: pauses, scale-down delays and analyses
/// (interval × count), at least an hour when it cannot be told (indefinite pauses).
pub fn expected_seconds(plan: &[Step], metrics: &[MetricSpec]) -> u32 {
    let mut total: u64 = 60;
    for s in plan {
        total += match s {
            Step::Pause { duration_seconds: Some(d) } => *d,
            Step::Pause { duration_seconds: None } => 3600,
            Step::ScaleDownDelay { seconds } => *seconds,
            Step::Analysis { metrics: names, .. } => names
                .iter()
                .filter_map(|n| metrics.iter().find(|m| &m.name == n))
                .map(|m| m.initial_delay_seconds + m.interval_seconds.unwrap_or(0) * u64::from(m.count.unwrap_or(1)))
                .max()
                .unwrap_or(0),
            _ => 30,
        };
    }
    total.min(u64::from(u32::MAX)) as u32
}
