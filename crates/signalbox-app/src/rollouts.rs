//! The rollout controller (issue 6): drives every deployment's rollout step by step through
//! the scheduler's jobs, durably and exactly once across replicas.
//!
//! **One pending job per deployment.** A deployment's `wake` names its current job
//! (`rollout.advance:<deployment>#<wake>`). Firing it claims it (the scheduler's versioned
//! claim), asks the state machine ([`signalbox_rollout::plan::Rollout::next`]) what to do and:
//! - to wait: plans the next job at the wake-up time (none when a person must act);
//! - to send a driver action or take measurements: records the action (with its idempotency
//!   key) and plans the next job as a *lease* — due when the I/O should long be over — then
//!   commits, performs the I/O outside any transaction, and in a new transaction claims the
//!   lease job, applies the result and decides again.
//!
//! **Crashes and takeovers.** A replica that dies mid-I/O leaves the lease job pending; when
//! it falls due any replica claims it, finds the action recorded but unfinished and sends it
//! again *with the same key*, so the receiver drops the duplicate. A result that arrives after
//! its lease was taken over is dropped (the lease job is no longer pending). Nothing is sent
//! twice under different keys, and no step is applied twice: each application is a versioned
//! update in the same transaction as the claim.
//!
//! **Release lifecycle.** When every component of a release succeeds in its last target
//! environment the release moves deploying → verifying → released; when a rollout rolls back in
//! an environment where the release is deploying, verifying or released, the release moves to
//! rolled_back. Detection, rollback request and restore times stay on the deployment for
//! recovery metrics.

use chrono::{DateTime, Duration, Utc};
use signalbox_domain::lifecycle::{allowed_targets, ReleaseState};
use signalbox_domain::model::{Environment, Kind, Release, Service, StateChange};
use signalbox_drivers::providers::ProviderReading;
use signalbox_drivers::{ActionStatus, ArtifactRef, DriverAction, DriverRequest, DriverSpec};
use signalbox_rollout::analysis::{MetricSpec, ProviderSpec, Reading};
use signalbox_rollout::plan::{ActionKind, ActionResult, ActionState, Next, RolloutPhase, RolloutState};
use signalbox_store::ListQuery;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::governance::Reader;
use crate::mutation::{decode, Mutation};
use crate::promotion::{deployment_placement, resolve_driver, Deployment, MetricPushRecord};
use crate::scheduler::{job_key, placement, plan_job, Job};
use crate::{App, AppError, AppResult, RequestContext, Versioned};

/// Advance one deployment's rollout.
pub const JOB_ROLLOUT: &str = "rollout.advance";
/// Promote a release into the next environment of its path once soaked.
pub const JOB_AUTO_PROMOTE: &str = "promotion.auto";

/// Jobs this controller runs (the general scheduler tick leaves them alone).
pub fn is_controller_job(kind: &str) -> bool {
    kind == JOB_ROLLOUT || kind == JOB_AUTO_PROMOTE
}

/// Settings and process-local state of the controller.
#[derive(Default)]
pub struct ControllerState {
    /// Deployments this process is driving right now (so one tick does not start a second
    /// task for a job the first is still claiming).
    busy: Mutex<HashSet<String>>,
    /// The Prometheus server for metrics whose provider names no address.
    pub prometheus_address: Mutex<Option<String>>,
    /// The simulated fleets of this process (demo and tutorial driver).
    pub fleets: signalbox_drivers::simulated::SimulatedFleets,
    pub http: reqwest::Client,
}

fn subject(d: &Deployment) -> String {
    format!("{}#{}", d.id, d.wake)
}

/// Plans the deployment's current job (`wake`) at `due`.
pub(crate) async fn plan_wake(m: &mut Mutation<'_>, d: &Deployment, due: DateTime<Utc>) -> AppResult<()> {
    plan_job(m, JOB_ROLLOUT, &subject(d), due).await
}

/// After a manual control: make the controller look at the deployment now. While I/O is in
/// flight the lease job stays as it is: the result's transaction re-reads the state.
pub(crate) async fn wake_now(m: &mut Mutation<'_>, current: &Deployment, next: &mut Deployment, now: DateTime<Utc>) -> AppResult<()> {
    if current.in_flight {
        return Ok(());
    }
    let key = job_key(JOB_ROLLOUT, &subject(current));
    if let Some(job) = m.find::<Job>(Kind::Job, &key).await? {
        if job.value.state == "pending" {
            if job.value.due > now {
                let mut sooner = job.value.clone();
                sooner.due = now;
                m.update("job.reschedule", Kind::Job, &sooner.id.clone(), placement(&sooner), &job, &sooner).await?;
            }
            return Ok(());
        }
    }
    next.wake = current.wake + 1;
    plan_wake(m, next, now).await
}

/// I/O the state machine asked for.
enum Work {
    Send(ActionState),
    Measure(Vec<MetricSpec>),
}

#[derive(Clone)]
enum IoResult {
    Action {
        key: String,
        result: ActionResult,
        note: Option<String>,
    },
    /// Readings and when they were taken (the measurements' time), with, per pushed metric,
    /// the pushes its window held (see [`Deployment::pushes_counted`]).
    Readings(Vec<(String, Reading)>, DateTime<Utc>, Vec<(String, PushWindow)>),
}

/// How long after its stamp a pushed value may still commit and be counted. A push is stamped
/// when its transaction starts; one that commits later than this is not counted.
pub const PUSH_COMMIT_GRACE_SECONDS: i64 = 30;

/// The pushes a pushed metric's window read, counted now or before: `(id, stamp)`.
#[derive(Clone, Debug, Default)]
struct PushWindow {
    pushes: Vec<(String, DateTime<Utc>)>,
}

impl App {
    /// One controller pass at `now`: runs every due controller job. Used by [`run`] (which
    /// spawns them concurrently) and by tests and benchmarks that drive time themselves.
    pub async fn rollout_tick(&self, now: DateTime<Utc>) -> AppResult<usize> {
        let due = self.due_controller_jobs(now).await?;
        let n = due.len();
        for job in due {
            if let Err(e) = self.run_controller_job(&job, Some(now)).await {
                tracing::warn!(job = %job.id, error = %e, "rollout job failed; it is retried");
            }
        }
        Ok(n)
    }

    async fn due_controller_jobs(&self, now: DateTime<Utc>) -> AppResult<Vec<Job>> {
        let mut due = Vec::new();
        for kind in [JOB_ROLLOUT, JOB_AUTO_PROMOTE] {
            // The database filters on the due time: only due jobs are shipped and decoded.
            let mut q = ListQuery::all(Kind::Job).with_field("kind", kind).with_time_at_most("due", now);
            q.state = Some("pending".into());
            q.limit = 1000;
            loop {
                let page = self.store.list(&q).await?;
                for r in &page.items {
                    let job: Job = decode(r)?.value;
                    if job.due <= now {
                        due.push(job);
                    }
                }
                match page.next_after_seq {
                    Some(seq) => q.after_seq = Some(seq),
                    None => break,
                }
            }
        }
        due.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        Ok(due)
    }

    /// Runs one controller job to its end (including any I/O it leads to). `fixed_now` pins the
    /// clock (tests); None reads the clock at every step.
    async fn run_controller_job(&self, job: &Job, fixed_now: Option<DateTime<Utc>>) -> AppResult<()> {
        let clock = || fixed_now.unwrap_or_else(Utc::now);
        if job.kind == JOB_AUTO_PROMOTE {
            return self.auto_promote(job, clock()).await;
        }
        let Some((deployment, gen)) = job.subject.rsplit_once('#') else { return Ok(()) };
        let Ok(mut gen) = gen.parse::<u64>() else { return Ok(()) };
        let mut result: Option<IoResult> = None;
        // Bounded: a rollout has finitely many steps; each round either waits or moves on.
        for _ in 0..200 {
            let step = {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    // A manual control or a driver report may have written the deployment
                    // between our read and our write: read again and apply the result to what
                    // is there now, rather than dropping it until the lease expires.
                    match self.controller_step(deployment, gen, result.clone(), clock()).await {
                        Err(AppError::PreconditionFailed { .. }) if attempt < 5 => continue,
                        other => break other,
                    }
                }
            };
            match step? {
                None => return Ok(()),
                Some((work, d, next_gen)) => {
                    gen = next_gen;
                    result = Some(self.perform(&d, work, clock()).await);
                }
            }
        }
        Ok(())
    }

    /// Claims job `#gen` of the deployment, applies a result, decides, and commits. Returns the
    /// I/O to perform (with the deployment as committed and the lease job's generation).
    async fn controller_step(
        &self,
        deployment_id: &str,
        gen: u64,
        result: Option<IoResult>,
        now: DateTime<Utc>,
    ) -> AppResult<Option<(Work, Deployment, u64)>> {
        let ctx = RequestContext::system();
        let mut m = Mutation::begin(self, &ctx).await?;
        m.now = now;
        let key = job_key(JOB_ROLLOUT, &format!("{deployment_id}#{gen}"));
        let Some(job) = m.find::<Job>(Kind::Job, &key).await? else { return Ok(None) };
        if job.value.state != "pending" {
            return Ok(None); // another replica claimed it: it drives this rollout now
        }
        let Some(current) = m.find::<Deployment>(Kind::Deployment, deployment_id).await? else { return Ok(None) };
        let mut claimed = job.value.clone();
        claimed.state = "done".into();
        claimed.fired_at = Some(now);
        claimed.late_seconds = Some((now - job.value.due).num_seconds().max(0));
        if current.value.wake != gen {
            claimed.outcome = Some("superseded by a later wake-up".into());
            m.update("job.fire", Kind::Job, &claimed.id.clone(), placement(&claimed), &job, &claimed).await?;
            m.commit(200, &claimed).await?;
            return Ok(None);
        }
        let mut next = current.value.clone();
        let mut rollout = current.value.rollout();
        let takeover = current.value.in_flight && result.is_none();
        match result {
            Some(IoResult::Action { key, result, note }) => {
                if let Some(n) = note {
                    next.notes.push(n);
                }
                if let Err(refused) = rollout.action_finished(&key, result, now) {
                    next.notes.push(format!("{}: result of {key} ignored: {}", now.to_rfc3339(), refused.0));
                }
            }
            Some(IoResult::Readings(readings, at, windows)) => {
                rollout.record_measurements(readings, at.min(now));
                // The next window starts a grace before this measurement; remember what of it
                // is already counted.
                let horizon = at - Duration::seconds(PUSH_COMMIT_GRACE_SECONDS);
                for (metric, window) in windows {
                    let counted: Vec<String> = window.pushes.into_iter().filter(|(_, stamp)| *stamp > horizon).map(|(id, _)| id).collect();
                    next.pushes_counted.insert(metric, counted);
                }
            }
            None => {}
        }
        if takeover {
            next.notes.push(format!("{}: taken over after the previous controller stopped mid-step", now.to_rfc3339()));
        }
        next.in_flight = false;
        // Freezes take effect at step boundaries (their effect decides).
        if rollout.at_step_boundary() {
            let release: Release = m.get(Kind::Release, &current.value.release_id).await?.value;
            let conflicts = {
                let mut reader = Reader::Tx(&mut m);
                self.rollout_calendar(&mut reader, &release, &current.value.service_id, &current.value.environment_id, now, 60).await?
            };
            if let Some(c) = conflicts.iter().find(|c| {
                c.freeze_effect == Some(signalbox_calendar::FreezeEffect::StopAtNextStep)
                    && matches!(c.kind, signalbox_calendar::conflict::ConflictKind::InsideFreeze)
            }) {
                rollout.freeze_pause(now, c.end, format!("stopped at a step boundary by a freeze: {}", c.reason));
            }
        }
        let decision = match rollout.next(now) {
            Next::Measure(specs) => defer_pushed(&rollout.state, rollout.metrics, specs, now),
            other => other,
        };
        let was_finished = current.value.rollout.phase.is_finished();
        next.rollout = rollout.state;
        next.wake = gen + 1;
        let work = match decision {
            Next::WaitUntil(Some(t)) | Next::AwaitReport(t) => {
                plan_wake(&mut m, &next, t.max(now)).await?;
                None
            }
            Next::WaitUntil(None) | Next::Finished => None,
            Next::Send(action) => {
                next.in_flight = true;
                plan_wake(&mut m, &next, now + lease_for_action(&next.driver)).await?;
                Some(Work::Send(action))
            }
            Next::Measure(specs) => {
                next.in_flight = true;
                plan_wake(&mut m, &next, now + lease_for_measurements(&specs)).await?;
                Some(Work::Measure(specs))
            }
        };
        claimed.outcome = Some(match &work {
            Some(Work::Send(a)) => format!("send {} ({})", a.action.as_str(), a.key),
            Some(Work::Measure(specs)) => format!("measure {}", specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")),
            None => format!("rollout {}", next.rollout.phase.as_str()),
        });
        m.set_reason(claimed.outcome.clone());
        m.update("job.fire", Kind::Job, &claimed.id.clone(), placement(&claimed), &job, &claimed).await?;
        m.update("deployment.advance", Kind::Deployment, deployment_id, deployment_placement(&next), &current, &next).await?;
        if next.rollout.phase.is_finished() && !was_finished {
            after_finish(self, &mut m, &next).await?;
        } else if !matches!(work, Some(Work::Send(_))) {
            // Measurements and waits are re-taken if lost; a decided action (its key) and the
            // end of a rollout are written durably before anything is sent or announced.
            m.relax_durability().await?;
        }
        m.commit(200, &next.key).await?;
        kill_switch_on_rollback(self, &current.value, &next).await;
        Ok(work.map(|w| (w, next.clone(), next.wake)))
    }

    /// Performs the I/O outside any transaction; `at` is the time of any measurement taken.
    async fn perform(&self, d: &Deployment, work: Work, at: DateTime<Utc>) -> IoResult {
        match work {
            Work::Send(action) => self.send_action(d, action).await,
            Work::Measure(specs) => {
                let mut readings = Vec::new();
                let mut windows = Vec::new();
                for spec in specs {
                    let (reading, window) = self.read_metric(d, &spec).await;
                    if let Some(window) = window {
                        windows.push((spec.name.clone(), window));
                    }
                    readings.push((spec.name.clone(), reading));
                }
                IoResult::Readings(readings, at, windows)
            }
        }
    }

    async fn send_action(&self, d: &Deployment, action: ActionState) -> IoResult {
        let key = action.key.clone();
        let driver = match resolve_driver(&d.driver) {
            Ok(s) => s,
            Err(message) => return IoResult::Action { key, result: ActionResult::Failed { message }, note: None },
        };
        let driver_action = match action.action {
            ActionKind::Deploy => DriverAction::Deploy,
            ActionKind::SetWeight => DriverAction::SetWeight { weight: action.weight },
            ActionKind::Switch => DriverAction::Switch,
            ActionKind::Rollback => DriverAction::Rollback,
            ActionKind::Finalize => DriverAction::Finalize,
        };
        let request = DriverRequest {
            action: driver_action,
            idempotency_key: key.clone(),
            deployment_id: d.id.clone(),
            release_key: d.release_key.clone(),
            service: d.service.clone(),
            environment: d.environment.clone(),
            artifact: ArtifactRef { name: d.service.clone(), version: d.artifact.version.clone(), digest: d.artifact.digest.clone() },
            previous: d.previous.as_ref().map(|p| ArtifactRef {
                name: d.service.clone(),
                version: p.version.clone(),
                digest: p.digest.clone(),
            }),
            strategy: d.strategy.name().into(),
            step: action.step.unwrap_or(0) as u32,
        };
        let mut outcome = signalbox_drivers::execute(&driver, &request, &self.controller.fleets).await;
        // All at once: the deploy itself carries full traffic. A simulated fleet models the
        // new side as a canary at weight 0 after deploy, so it is given the weight too.
        if action.action == ActionKind::Deploy && action.weight > 0 && matches!(driver, DriverSpec::Simulated { .. }) {
            if let Ok(first) = &outcome {
                let mut weight = request.clone();
                weight.action = DriverAction::SetWeight { weight: action.weight };
                weight.idempotency_key = format!("{key}/weight");
                outcome = signalbox_drivers::execute(&driver, &weight, &self.controller.fleets).await.map(|o| {
                    let mut o = o;
                    o.deployed_digest = o.deployed_digest.or(first.deployed_digest.clone());
                    o
                });
            }
        }
        match outcome {
            Ok(o) => {
                let note = o.message.as_ref().map(|msg| format!("{}: {} → {msg}", Utc::now().to_rfc3339(), action.action.as_str()));
                let result = match o.status {
                    ActionStatus::Completed => ActionResult::Completed { deployed_digest: o.deployed_digest },
                    ActionStatus::Accepted => ActionResult::Accepted,
                };
                IoResult::Action { key, result, note }
            }
            Err(e) => IoResult::Action { key, result: ActionResult::Failed { message: e.to_string() }, note: None },
        }
    }

    /// Takes one measurement; a pushed metric also answers with the window it read.
    async fn read_metric(&self, d: &Deployment, spec: &MetricSpec) -> (Reading, Option<PushWindow>) {
        let reading = match &spec.provider {
            ProviderSpec::Prometheus { address, query } => {
                let configured = self.controller.prometheus_address.lock().map(|a| a.clone()).unwrap_or(None);
                let Some(address) = address.clone().or(configured) else {
                    let message = "no Prometheus address: set provider.address on the metric or [rollouts] prometheus_url on the server";
                    return (Reading::Error { message: message.into() }, None);
                };
                let query = render_query(query, d);
                from_provider(
                    signalbox_drivers::providers::prometheus_query(
                        &self.controller.http,
                        &address,
                        &query,
                        std::time::Duration::from_secs(10),
                    )
                    .await,
                )
            }
            ProviderSpec::Http { method, url, expect_status, body_contains, max_latency_ms, timeout_seconds } => from_provider(
                signalbox_drivers::providers::http_check(
                    &self.controller.http,
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET),
                    url,
                    *expect_status,
                    body_contains.as_deref(),
                    max_latency_ms.map(|v| v as f64),
                    std::time::Duration::from_secs(*timeout_seconds),
                )
                .await,
            ),
            ProviderSpec::Pushed { name } => {
                let wanted = name.clone().unwrap_or_else(|| spec.name.clone());
                let source = Some(format!("values pushed for {wanted} since the last measurement"));
                return match self.pushed_since(d, spec, &wanted).await {
                    Ok((values, _, window)) if values.is_empty() => (Reading::NoData { source }, Some(window)),
                    Ok((values, baseline, window)) => {
                        (Reading::Values { values, baseline: (!baseline.is_empty()).then_some(baseline), source }, Some(window))
                    }
                    Err(e) => (Reading::Error { message: format!("could not read pushed values: {e}") }, None),
                };
            }
        };
        (reading, None)
    }

    /// Values pushed for `metric` that this metric's measurements in the current analysis have
    /// not counted yet, and the window read. Windows follow commit order, not stamps: a push is
    /// stamped when its transaction starts and can commit after a measurement has read past its
    /// stamp, so each window reaches [`PUSH_COMMIT_GRACE_SECONDS`] before the previous
    /// measurement (never before the analysis started) and skips the pushes already counted
    /// there. A value is counted once, by the first measurement that sees it.
    async fn pushed_since(&self, d: &Deployment, spec: &MetricSpec, metric: &str) -> AppResult<(Vec<f64>, Vec<f64>, PushWindow)> {
        let started = d.rollout.analysis.as_ref().map(|a| a.started_at).unwrap_or(d.rollout.step_started_at);
        let last =
            d.rollout.analysis.as_ref().and_then(|a| a.metrics.iter().find(|m| m.name == spec.name)).and_then(|m| m.measurements.last());
        let since = match last {
            Some(x) => (x.at - Duration::seconds(PUSH_COMMIT_GRACE_SECONDS)).max(started),
            None => started,
        };
        let counted: std::collections::HashSet<&str> = match last {
            Some(_) => d.pushes_counted.get(&spec.name).map(|ids| ids.iter().map(String::as_str).collect()).unwrap_or_default(),
            None => Default::default(),
        };
        // Only the window is read: the cost of a measurement follows the pushes since the last
        // one, not everything the deployment was ever pushed.
        let mut q = ListQuery::all(Kind::MetricPush).with_parent(d.id.clone()).with_created_after(since);
        q.limit = 1000;
        let mut values = Vec::new();
        let mut baseline = Vec::new();
        let mut window = PushWindow::default();
        loop {
            let page = self.store.list(&q).await?;
            for r in &page.items {
                let push: MetricPushRecord = decode(r)?.value;
                let mut carries_metric = false;
                let fresh = !counted.contains(r.id.as_str());
                for v in push.values.iter().filter(|v| v.metric == metric) {
                    carries_metric = true;
                    if fresh {
                        values.push(v.value);
                        if let Some(b) = v.baseline {
                            baseline.push(b);
                        }
                    }
                }
                if carries_metric {
                    window.pushes.push((r.id.clone(), r.created_at));
                }
            }
            match page.next_after_seq {
                Some(seq) => q.after_seq = Some(seq),
                None => break,
            }
        }
        Ok((values, baseline, window))
    }

    /// A due auto-promotion: promote into the next environment if every check passes now; the
    /// job's outcome says what happened either way.
    async fn auto_promote(&self, job: &Job, now: DateTime<Utc>) -> AppResult<()> {
        let ctx = RequestContext::system();
        if let Some((release_id, rest)) = job.subject.split_once('>') {
            self.prepare_promotion(release_id, rest.split('@').next().unwrap_or_default()).await;
        }
        let mut m = Mutation::begin(self, &ctx).await?;
        m.now = now;
        let current: Versioned<Job> = m.get(Kind::Job, &job.id).await?;
        if current.value.state != "pending" {
            return Ok(());
        }
        let Some((release_id, rest)) = current.value.subject.split_once('>') else { return Ok(()) };
        let env_id = rest.split('@').next().unwrap_or_default();
        let rel: Versioned<Release> = m.get(Kind::Release, release_id).await?;
        let env: Environment = m.get(Kind::Environment, env_id).await?.value;
        m.set_reason(Some(format!("auto-promotion of {} to {}", rel.value.key, env.name)));
        let outcome = match self.start_promotion(&mut m, rel, &env, "auto", Some("auto-promotion after soak".into())).await {
            Ok(ds) => format!("promoted: {}", ds.iter().map(|d| d.key.as_str()).collect::<Vec<_>>().join(", ")),
            Err(AppError::Refused { code: "promotion-refused", detail, .. }) => format!("not promoted: {detail}"),
            Err(e) => return Err(e),
        };
        let mut done = current.value.clone();
        done.state = "done".into();
        done.fired_at = Some(now);
        done.late_seconds = Some((now - current.value.due).num_seconds().max(0));
        done.outcome = Some(outcome);
        m.update("job.fire", Kind::Job, &done.id.clone(), placement(&done), &current, &done).await?;
        m.commit(200, &done).await?;
        Ok(())
    }
}

/// `{{service}}`, `{{environment}}`, `{{release}}`, `{{digest}}`, `{{version}}` in a query.
fn render_query(query: &str, d: &Deployment) -> String {
    query
        .replace("{{service}}", &d.service)
        .replace("{{environment}}", &d.environment)
        .replace("{{release}}", &d.release_key)
        .replace("{{digest}}", &d.artifact.digest)
        .replace("{{version}}", &d.artifact.version)
}

fn from_provider(reading: ProviderReading) -> Reading {
    match reading {
        ProviderReading::Values { values, source } => Reading::Values { values, baseline: None, source: Some(source) },
        ProviderReading::NoData { source } => Reading::NoData { source: Some(source) },
        ProviderReading::Error { message } => Reading::Error { message },
        ProviderReading::CheckFailed { message, latency_ms } => Reading::CheckFailed { message, latency_ms },
    }
}

/// A pushed metric's measurement summarizes the values pushed during the interval before it,
/// so its first one is taken one interval after the analysis starts (or after
/// `initial_delay_seconds`, if longer), never at the start, when nothing can have arrived yet.
/// Other metrics due now are measured; when none is left, the controller waits.
fn defer_pushed(state: &RolloutState, all: &[MetricSpec], specs: Vec<MetricSpec>, now: DateTime<Utc>) -> Next {
    let Some(run) = state.analysis.as_ref() else { return Next::Measure(specs) };
    // When the metrics not due now are next due, so that waiting does not delay them.
    let mut wake: Option<DateTime<Utc>> = run
        .metrics
        .iter()
        .filter(|m| !specs.iter().any(|s| s.name == m.name))
        .filter_map(|m| {
            let spec = all.iter().find(|s| s.name == m.name)?;
            signalbox_rollout::analysis::next_measurement_due(spec, run.started_at, &m.measurements)
        })
        .filter(|t| *t > now)
        .min();
    let mut due = Vec::new();
    for spec in specs {
        let first = run.metrics.iter().find(|m| m.name == spec.name).is_none_or(|m| m.measurements.is_empty());
        if first && matches!(spec.provider, ProviderSpec::Pushed { .. }) {
            let delay = spec.initial_delay_seconds.max(spec.interval_seconds.unwrap_or(0));
            let at = run.started_at + Duration::seconds(delay.min(30 * 86_400) as i64);
            if at > now {
                wake = Some(wake.map_or(at, |w| w.min(at)));
                continue;
            }
        }
        due.push(spec);
    }
    match (due.is_empty(), wake) {
        (false, _) => Next::Measure(due),
        (true, w) => Next::WaitUntil(w),
    }
}

/// How long reading `specs` (one after another) may take before another replica assumes this
/// one died: each metric's own timeout (Prometheus queries 10 s, HTTP checks their
/// `timeout_seconds`), plus a margin.
fn lease_for_measurements(specs: &[MetricSpec]) -> Duration {
    let seconds: u64 = specs
        .iter()
        .map(|s| match &s.provider {
            ProviderSpec::Prometheus { .. } => 10,
            ProviderSpec::Http { timeout_seconds, .. } => *timeout_seconds,
            ProviderSpec::Pushed { .. } => 2,
        })
        .sum();
    Duration::seconds((seconds + 15).min(3600) as i64)
}

/// The kill switch of the flags linked to a rollout, when this change started its rollback
/// (a failed analysis or action, or an abort). Runs after the rollback decision committed, in
/// its own audited writes; the deployment's flags are those of its path stage.
pub(crate) async fn kill_switch_on_rollback(app: &App, before: &Deployment, after: &Deployment) {
    if after.kill_switch_flags.is_empty()
        || after.rollout.phase != RolloutPhase::RollingBack
        || before.rollout.phase == RolloutPhase::RollingBack
    {
        return;
    }
    let reason = format!(
        "kill switch: {} of {} in {} is rolling back ({})",
        after.key,
        after.service,
        after.environment,
        after.rollout.failure.clone().unwrap_or_default()
    );
    for note in app.kill_linked_flags(&after.environment_id, None, &after.kill_switch_flags, &reason).await {
        tracing::info!(deployment = %after.key, "{note}");
    }
}

/// How long a driver action may take before another replica assumes this one died.
fn lease_for_action(driver: &DriverSpec) -> Duration {
    let seconds = match driver {
        DriverSpec::Webhook { timeout_seconds, max_attempts, backoff_ms, .. } => {
            timeout_seconds * u64::from(*max_attempts) + backoff_ms * (1u64 << (*max_attempts).min(10)) / 1000 + 10
        }
        DriverSpec::Command { timeout_seconds, .. } => timeout_seconds + 10,
        DriverSpec::Record {} | DriverSpec::Simulated { .. } => 15,
    };
    Duration::seconds(seconds.min(86_400) as i64)
}

/// What a finished rollout means for its release, and auto-promotion downstream.
pub(crate) async fn after_finish(app: &App, m: &mut Mutation<'_>, d: &Deployment) -> AppResult<()> {
    let rel: Versioned<Release> = m.get(Kind::Release, &d.release_id).await?;
    let now = m.now;
    let by = m.context().actor.username.clone();
    let mut moves: Vec<(ReleaseState, String)> = Vec::new();
    match d.rollout.phase {
        RolloutPhase::Succeeded => {
            let is_final = rel.value.target_environments.last() == Some(&d.environment_id);
            if is_final && rel.value.state == ReleaseState::Deploying {
                let mut all = true;
                for c in &rel.value.components {
                    let latest = app.current_deployment(m, &c.service_id, &d.environment_id).await?;
                    let ok = match &latest {
                        Some(x) if x.id == d.id => true,
                        Some(x) => {
                            x.release_id == rel.value.id && x.artifact.digest == c.digest && x.rollout.phase == RolloutPhase::Succeeded
                        }
                        None => false,
                    };
                    all &= ok;
                }
                if all {
                    moves.push((ReleaseState::Verifying, format!("every component rolled out to {}", d.environment)));
                    moves.push((ReleaseState::Released, format!("rollout analysis passed in {}", d.environment)));
                }
            }
            // Auto-promotion into the next environment of the path.
            if let Some(service) = m.find::<Service>(Kind::Service, &d.service_id).await? {
                let path = {
                    let mut reader = Reader::Tx(m);
                    App::path_for(&mut reader, &service.value).await?
                };
                if let Some(path) = path {
                    if let Some(i) = path.stages.iter().position(|s| s.environment_id == d.environment_id) {
                        if let Some(next) = path.stages.get(i + 1).filter(|s| s.auto_promote) {
                            let due = now + Duration::seconds(next.required_soak_seconds.min(365 * 86_400) as i64);
                            plan_job(m, JOB_AUTO_PROMOTE, &format!("{}>{}@{}", rel.value.id, next.environment_id, d.key), due).await?;
                        }
                    }
                }
            }
        }
        RolloutPhase::RolledBack | RolloutPhase::Aborted | RolloutPhase::Failed => {
            // The release's state speaks of its last target environment: a failed redeploy
            // into an earlier one does not undo a release.
            let is_final = rel.value.target_environments.last() == Some(&d.environment_id);
            if is_final && matches!(rel.value.state, ReleaseState::Deploying | ReleaseState::Verifying | ReleaseState::Released) {
                let why = d.rollout.failure.clone().unwrap_or_else(|| "rolled back".into());
                // A rollback that could not be completed leaves the release failed, not
                // rolled back: nobody restored the service yet.
                let to = if d.rollout.phase == RolloutPhase::Failed && rel.value.state != ReleaseState::Released {
                    ReleaseState::Failed
                } else {
                    ReleaseState::RolledBack
                };
                moves.push((to, format!("{} in {}: {why}", d.key, d.environment)));
            }
        }
        _ => {}
    }
    if moves.is_empty() {
        return Ok(());
    }
    let mut next = rel.value.clone();
    for (to, reason) in moves {
        if !allowed_targets(next.state).contains(&to) {
            break;
        }
        next.history.push(StateChange { from: Some(next.state), to, at: now, by: by.clone(), reason: Some(reason) });
        next.state = to;
    }
    App::store_release(m, "release.transition", &rel, next).await
}

/// Drives rollouts until `stop` turns true: every `interval`, due controller jobs are started
/// concurrently (at most `concurrency` at a time), each deployment by one task at a time.
pub async fn run(app: App, interval: std::time::Duration, concurrency: usize, mut stop: tokio::sync::watch::Receiver<bool>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    loop {
        match app.due_controller_jobs(Utc::now()).await {
            Ok(jobs) => {
                for job in jobs {
                    let subject = job.subject.split('#').next().unwrap_or_default().to_string();
                    {
                        let Ok(mut busy) = app.controller.busy.lock() else { continue };
                        if !busy.insert(subject.clone()) {
                            continue;
                        }
                    }
                    let Ok(permit) = permits.clone().acquire_owned().await else { return };
                    let app2 = app.clone();
                    tokio::spawn(async move {
                        if let Err(e) = app2.run_controller_job(&job, None).await {
                            if !matches!(e, AppError::PreconditionFailed { .. }) {
                                tracing::warn!(job = %job.id, error = %e, "rollout job failed; it is retried");
                            }
                        }
                        if let Ok(mut busy) = app2.controller.busy.lock() {
                            busy.remove(&subject);
                        }
                        drop(permit);
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "rollout controller could not list due jobs; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Pushed windows follow commit order: a push stamped before a measurement but committed
    //! after it is counted by the next measurement, once.
    use super::*;
    use crate::mutation::Placement;
    use crate::promotion::{DeployedArtifact, PushedValue};
    use signalbox_rollout::analysis::{Measurement, NoDataRule, Outcome};
    use signalbox_rollout::plan::{AnalysisState, MetricRun};
    use std::sync::Arc;

    fn spec() -> MetricSpec {
        MetricSpec {
            name: "error-rate".into(),
            provider: ProviderSpec::Pushed { name: None },
            interval_seconds: Some(10),
            count: None,
            initial_delay_seconds: 0,
            success_condition: Some("result < 0.01".into()),
            failure_condition: None,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            no_data: NoDataRule::Inconclusive,
            dry_run: false,
            judge: None,
        }
    }

    fn deployment(started: DateTime<Utc>, measured_at: Option<DateTime<Utc>>) -> Deployment {
        let mut rollout = RolloutState::new(started);
        rollout.analysis = Some(AnalysisState {
            step: 0,
            started_at: started,
            metrics: vec![MetricRun {
                name: "error-rate".into(),
                measurements: measured_at
                    .map(|at| Measurement {
                        at,
                        outcome: Outcome::Successful,
                        values: vec![0.001],
                        baseline: None,
                        no_data: false,
                        condition: None,
                        explanation: String::new(),
                        judge: None,
                    })
                    .into_iter()
                    .collect(),
                assessment: None,
            }],
            phase: None,
        });
        Deployment {
            id: "dep_window".into(),
            key: "D-1".into(),
            release_id: "rel_1".into(),
            release_key: "R-1".into(),
            environment_id: "env_1".into(),
            environment: "staging".into(),
            service_id: "svc_1".into(),
            service: "checkout".into(),
            artifact: DeployedArtifact {
                artifact_id: "art_1".into(),
                version: "1.0.0".into(),
                digest: "sha256:00".into(),
                release_key: None,
            },
            previous: None,
            path_id: None,
            trigger: "manual".into(),
            strategy: signalbox_rollout::plan::Strategy::AllAtOnce { analysis: vec!["error-rate".into()] },
            driver: DriverSpec::Simulated { fleet: "f".into() },
            plan: vec![],
            metrics: vec![spec()],
            kill_switch_flags: vec![],
            rollout,
            wake: 1,
            in_flight: false,
            created_by: "test".into(),
            created_at: started,
            reason: None,
            notes: vec![],
            pushes_counted: Default::default(),
        }
    }

    async fn push(app: &App, stamp: DateTime<Utc>, value: f64) -> String {
        let ctx = RequestContext::system();
        let mut m = Mutation::begin(app, &ctx).await.expect("begin");
        m.now = stamp;
        let record = MetricPushRecord {
            id: crate::new_id(Kind::MetricPush),
            deployment_id: "dep_window".into(),
            at: stamp,
            values: vec![PushedValue { metric: "error-rate".into(), value, baseline: None }],
        };
        let place = Placement { key: None, parent: Some("dep_window".into()), state: None };
        m.insert("deployment.metrics.push", Kind::MetricPush, &record.id.clone(), place, &record).await.expect("insert");
        m.commit(201, &record).await.expect("commit");
        record.id
    }

    #[tokio::test]
    async fn a_push_committed_after_a_measurement_read_past_its_stamp_is_counted_once_by_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = signalbox_store_sqlite::SqliteStore::open(dir.path()).await.expect("open");
        let app = App::new(Arc::new(store));
        let t0 = Utc::now() - Duration::seconds(600);
        let first_at = t0 + Duration::seconds(100);

        // Counted by the first measurement, stamped 3 s before it.
        let counted = push(&app, first_at - Duration::seconds(3), 0.002).await;
        // Stamped 2 s before the first measurement but committed after it read: the late one.
        let late = push(&app, first_at - Duration::seconds(2), 0.5).await;
        // Stamped before the analysis started, and beyond the grace: never this analysis's.
        push(&app, t0 - Duration::seconds(1), 9.0).await;
        // After the first measurement.
        push(&app, first_at + Duration::seconds(4), 0.003).await;

        let mut d = deployment(t0, Some(first_at));
        d.pushes_counted.insert("error-rate".into(), vec![counted.clone()]);
        let (values, _, window) = app.pushed_since(&d, &spec(), "error-rate").await.expect("read");
        let mut values = values;
        values.sort_by(f64::total_cmp);
        assert_eq!(values, vec![0.003, 0.5], "the late push and the new one, not the one counted before");
        let ids: Vec<&str> = window.pushes.iter().map(|(id, _)| id.as_str()).collect();
        assert!(ids.contains(&counted.as_str()) && ids.contains(&late.as_str()), "the window reaches back past the measurement: {ids:?}");

        // A measurement far later: the grace no longer reaches the old pushes.
        let d = deployment(t0, Some(first_at + Duration::seconds(PUSH_COMMIT_GRACE_SECONDS + 10)));
        let (values, _, _) = app.pushed_since(&d, &spec(), "error-rate").await.expect("read");
        assert!(values.is_empty(), "{values:?}");

        // The first measurement of an analysis reads from the analysis start, whatever was counted.
        let mut d = deployment(t0, None);
        d.pushes_counted.insert("error-rate".into(), vec![counted]);
        let (values, _, _) = app.pushed_since(&d, &spec(), "error-rate").await.expect("read");
        assert_eq!(values.len(), 3, "{values:?}");
    }
}
