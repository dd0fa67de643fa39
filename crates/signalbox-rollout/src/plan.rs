//! Strategies compiled to step plans, and the rollout state machine that walks a plan.
//!
//! A [`Strategy`] (what the user configures on a promotion path stage) compiles into a flat
//! list of [`Step`]s. A [`RolloutState`] records where a rollout is in that list; the
//! application persists it after every change. [`Rollout::next`] says what to do now — perform a
//! driver action, take measurements, or wait — and the application reports back through
//! [`Rollout::action_finished`], [`Rollout::record_measurements`] and the manual controls.
//!
//! **Idempotency.** Every driver action gets a key `<deployment>/<generation>/<step>/<action>`
//! when it is first decided, stored before it is sent; a resend after a crash or a takeover
//! reuses the stored key, so the receiver can drop duplicates. `generation` grows only on an
//! explicit retry, so a retried rollout's actions are new actions.
//!
//! **Reactions** (Argo Rollouts semantics, `../shared/reference/progressive-delivery.md` §1.2):
//! an analysis that fails or errors rolls back; an inconclusive one pauses for a person; a
//! driver action that fails (error, timeout, wrong digest) rolls back.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::analysis::assess::MAX_DURATION_SECONDS;
use crate::analysis::{self, FieldError, Measurement, MetricAssessment, MetricSpec, Outcome, Phase, Reading};

/// How a release moves into an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Strategy {
    /// Everything at once, then the named analysis metrics.
    AllAtOnce {
        #[serde(default)]
        analysis: Vec<String>,
    },
    /// `batches` equal steps of traffic (or instances), each followed by the smoke checks and
    /// the named analysis, with an optional pause between batches.
    Rolling {
        batches: u8,
        #[serde(default)]
        pause_seconds: u64,
        #[serde(default)]
        analysis: Vec<String>,
    },
    /// Argo Rollouts-style steps.
    Canary { steps: Vec<CanaryStep> },
    /// Deploy to the preview side, analyse, (optionally wait for a person), switch, analyse
    /// again, keep the old side for `scale_down_delay_seconds`, then finalize. Rollback is
    /// switching back.
    BlueGreen {
        #[serde(default)]
        pre_promotion_analysis: Vec<String>,
        #[serde(default)]
        post_promotion_analysis: Vec<String>,
        #[serde(default = "yes")]
        auto_promote: bool,
        #[serde(default = "default_scale_down_delay")]
        scale_down_delay_seconds: u64,
    },
}

fn yes() -> bool {
    true
}
fn default_scale_down_delay() -> u64 {
    30
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::AllAtOnce { .. } => "all_at_once",
            Strategy::Rolling { .. } => "rolling",
            Strategy::Canary { .. } => "canary",
            Strategy::BlueGreen { .. } => "blue_green",
        }
    }
}

/// One step of a canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CanaryStep {
    /// Send this percentage of traffic to the canary.
    SetWeight(u8),
    /// Wait `duration_seconds`, or until a person resumes when absent.
    Pause {
        #[serde(default)]
        duration_seconds: Option<u64>,
    },
    /// Run the named metrics of the stage until they complete.
    Analysis { metrics: Vec<String> },
}

/// One step of a compiled plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// Driver `deploy`: the new artifact, serving `weight` percent (0 for a canary or a
    /// blue-green preview, 100 for all at once).
    Deploy { weight: u8 },
    /// Driver `set_weight`.
    SetWeight { weight: u8 },
    /// Driver `switch` (blue-green: the preview becomes active).
    Switch,
    /// Wait, for a duration or (None) until a person resumes.
    Pause {
        #[serde(default)]
        duration_seconds: Option<u64>,
    },
    /// Measure the named metrics until they complete. `smoke` marks the checks run after every
    /// traffic change.
    Analysis {
        metrics: Vec<String>,
        #[serde(default)]
        smoke: bool,
    },
    /// Blue-green: keep the old side this long before finalizing.
    ScaleDownDelay { seconds: u64 },
    /// Driver `finalize`: the new artifact becomes the stable one; the old side goes.
    Finalize,
}

/// Driver actions the machine asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Deploy,
    SetWeight,
    Switch,
    Rollback,
    Finalize,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Deploy => "deploy",
            ActionKind::SetWeight => "set_weight",
            ActionKind::Switch => "switch",
            ActionKind::Rollback => "rollback",
            ActionKind::Finalize => "finalize",
        }
    }
}

impl Step {
    fn action(&self) -> Option<(ActionKind, u8)> {
        match self {
            Step::Deploy { weight } => Some((ActionKind::Deploy, *weight)),
            Step::SetWeight { weight } => Some((ActionKind::SetWeight, *weight)),
            Step::Switch => Some((ActionKind::Switch, 100)),
            Step::Finalize => Some((ActionKind::Finalize, 100)),
            _ => None,
        }
    }

    /// A short description for progress views.
    pub fn describe(&self) -> String {
        match self {
            Step::Deploy { weight } => format!("deploy ({weight}% traffic)"),
            Step::SetWeight { weight } => format!("set weight {weight}%"),
            Step::Switch => "switch traffic to the new side".into(),
            Step::Pause { duration_seconds: Some(s) } => format!("pause {s}s"),
            Step::Pause { duration_seconds: None } => "pause until resumed".into(),
            Step::Analysis { metrics, smoke: true } => format!("smoke checks ({})", metrics.join(", ")),
            Step::Analysis { metrics, smoke: false } => format!("analysis ({})", metrics.join(", ")),
            Step::ScaleDownDelay { seconds } => format!("keep the old side {seconds}s"),
            Step::Finalize => "finalize".into(),
        }
    }
}

/// Compiles a strategy, the stage's metrics and its smoke checks into steps. Every metric name
/// a step uses must be defined; smoke checks run after every traffic change.
pub fn compile(strategy: &Strategy, metrics: &[MetricSpec], smoke: &[String]) -> Result<Vec<Step>, FieldError> {
    let known = |field: &str, names: &[String]| -> Result<(), FieldError> {
        for n in names {
            if !metrics.iter().any(|m| &m.name == n) {
                let defined: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
                return Err(FieldError {
                    field: field.into(),
                    message: format!(
                        "names metric {n:?}, which the stage does not define; define it under `metrics` (defined: {})",
                        if defined.is_empty() { "none".to_string() } else { defined.join(", ") }
                    ),
                });
            }
        }
        Ok(())
    };
    known("smoke", smoke)?;
    // A wait the clock cannot add (or nobody means) is refused, like the metrics' intervals.
    let duration = |field: &str, seconds: u64| -> Result<(), FieldError> {
        if seconds > MAX_DURATION_SECONDS {
            return Err(FieldError {
                field: field.into(),
                message: format!("{seconds} seconds is too long; use at most {MAX_DURATION_SECONDS} seconds (30 days)"),
            });
        }
        Ok(())
    };
    let smoke_step = || (!smoke.is_empty()).then(|| Step::Analysis { metrics: smoke.to_vec(), smoke: true });
    let analysis_step = |names: &Vec<String>| (!names.is_empty()).then(|| Step::Analysis { metrics: names.clone(), smoke: false });
    let mut steps = Vec::new();
    match strategy {
        Strategy::AllAtOnce { analysis } => {
            known("strategy.analysis", analysis)?;
            steps.push(Step::Deploy { weight: 100 });
            steps.extend(smoke_step());
            steps.extend(analysis_step(analysis));
        }
        Strategy::Rolling { batches, pause_seconds, analysis } => {
            known("strategy.analysis", analysis)?;
            if !(1..=100).contains(batches) {
                return Err(FieldError { field: "strategy.batches".into(), message: "must be between 1 and 100".into() });
            }
            duration("strategy.pause_seconds", *pause_seconds)?;
            let n = u32::from(*batches);
            for i in 1..=n {
                let weight = (i * 100).div_ceil(n) as u8;
                steps.push(if i == 1 { Step::Deploy { weight } } else { Step::SetWeight { weight } });
                steps.extend(smoke_step());
                steps.extend(analysis_step(analysis));
                if i < n && *pause_seconds > 0 {
                    steps.push(Step::Pause { duration_seconds: Some(*pause_seconds) });
                }
            }
        }
        Strategy::Canary { steps: canary } => {
            if canary.is_empty() {
                return Err(FieldError {
                    field: "strategy.steps".into(),
                    message: "a canary needs at least one step, e.g. [{\"set_weight\": 5}, {\"pause\": {\"duration_seconds\": 60}}]".into(),
                });
            }
            steps.push(Step::Deploy { weight: 0 });
            steps.extend(smoke_step());
            let mut last = 0u8;
            for (i, s) in canary.iter().enumerate() {
                match s {
                    CanaryStep::SetWeight(w) => {
                        if *w > 100 {
                            return Err(FieldError {
                                field: format!("strategy.steps[{i}].set_weight"),
                                message: format!("{w} is not a percentage; use 0 to 100"),
                            });
                        }
                        last = *w;
                        steps.push(Step::SetWeight { weight: *w });
                        steps.extend(smoke_step());
                    }
                    CanaryStep::Pause { duration_seconds } => {
                        if let Some(seconds) = duration_seconds {
                            duration(&format!("strategy.steps[{i}].pause.duration_seconds"), *seconds)?;
                        }
                        steps.push(Step::Pause { duration_seconds: *duration_seconds });
                    }
                    CanaryStep::Analysis { metrics: names } => {
                        if names.is_empty() {
                            return Err(FieldError {
                                field: format!("strategy.steps[{i}].analysis.metrics"),
                                message: "name at least one metric".into(),
                            });
                        }
                        known(&format!("strategy.steps[{i}].analysis.metrics"), names)?;
                        steps.push(Step::Analysis { metrics: names.clone(), smoke: false });
                    }
                }
            }
            if last != 100 {
                steps.push(Step::SetWeight { weight: 100 });
                steps.extend(smoke_step());
            }
        }
        Strategy::BlueGreen { pre_promotion_analysis, post_promotion_analysis, auto_promote, scale_down_delay_seconds } => {
            known("strategy.pre_promotion_analysis", pre_promotion_analysis)?;
            known("strategy.post_promotion_analysis", post_promotion_analysis)?;
            duration("strategy.scale_down_delay_seconds", *scale_down_delay_seconds)?;
            steps.push(Step::Deploy { weight: 0 });
            steps.extend(smoke_step());
            steps.extend(analysis_step(pre_promotion_analysis));
            if !auto_promote {
                steps.push(Step::Pause { duration_seconds: None });
            }
            steps.push(Step::Switch);
            steps.extend(smoke_step());
            steps.extend(analysis_step(post_promotion_analysis));
            if *scale_down_delay_seconds > 0 {
                steps.push(Step::ScaleDownDelay { seconds: *scale_down_delay_seconds });
            }
        }
    }
    steps.push(Step::Finalize);
    Ok(steps)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    Progressing,
    Paused,
    /// A rollback action is being sent.
    RollingBack,
    Succeeded,
    /// Rolled back after a failure (analysis, driver, digest mismatch).
    RolledBack,
    /// Rolled back because a person aborted.
    Aborted,
    /// The rollback itself could not be completed; a person must act.
    Failed,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Progressing => "progressing",
            RolloutPhase::Paused => "paused",
            RolloutPhase::RollingBack => "rolling_back",
            RolloutPhase::Succeeded => "succeeded",
            RolloutPhase::RolledBack => "rolled_back",
            RolloutPhase::Aborted => "aborted",
            RolloutPhase::Failed => "failed",
        }
    }
    pub fn is_finished(self) -> bool {
        matches!(self, RolloutPhase::Succeeded | RolloutPhase::RolledBack | RolloutPhase::Aborted | RolloutPhase::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// A pause step.
    Step,
    /// An analysis was inconclusive: a person decides (resume continues, abort rolls back).
    Inconclusive,
    /// A person paused it.
    Manual,
    /// A freeze with effect `stop_at_next_step` began.
    Freeze,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pause {
    pub reason: PauseReason,
    pub since: DateTime<Utc>,
    /// When it ends by itself; None waits for a person.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    pub message: String,
}

/// A driver action decided by the machine: sent, possibly resent with the same key, then
/// finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionState {
    pub key: String,
    pub action: ActionKind,
    /// The plan step it belongs to (None for a rollback).
    #[serde(default)]
    pub step: Option<usize>,
    pub weight: u8,
    pub decided_at: DateTime<Utc>,
    /// Times it was handed to the driver (more than one after a crash or takeover).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_sent_at: Option<DateTime<Utc>>,
    /// `Accepted` by an asynchronous driver: completion comes as a report.
    #[serde(default)]
    pub accepted: bool,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub deployed_digest: Option<String>,
}

/// A metric's measurements within one analysis step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricRun {
    pub name: String,
    #[serde(default)]
    pub measurements: Vec<Measurement>,
    #[serde(default)]
    pub assessment: Option<MetricAssessment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnalysisState {
    pub step: usize,
    pub started_at: DateTime<Utc>,
    pub metrics: Vec<MetricRun>,
    #[serde(default)]
    pub phase: Option<Phase>,
}

/// A finished step, for the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepRecord {
    pub step: usize,
    pub generation: u32,
    pub description: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: String,
    /// The analysis of an analysis step, with every measurement.
    #[serde(default)]
    pub analysis: Option<AnalysisState>,
}

/// Where a rollout is. Persisted after every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutState {
    pub phase: RolloutPhase,
    /// Index into the plan of the current step.
    pub step: usize,
    pub step_started_at: DateTime<Utc>,
    /// Traffic percentage on the new artifact as last confirmed by the driver.
    pub weight: u8,
    /// Grows on every retry; part of every idempotency key.
    pub generation: u32,
    #[serde(default)]
    pub pause: Option<Pause>,
    #[serde(default)]
    pub action: Option<ActionState>,
    #[serde(default)]
    pub analysis: Option<AnalysisState>,
    /// Skip remaining pauses and analyses (promote-now).
    #[serde(default)]
    pub promoting_now: bool,
    #[serde(default)]
    pub history: Vec<StepRecord>,
    #[serde(default)]
    pub failure: Option<String>,
    /// When the failure was detected (analysis verdict, driver error).
    #[serde(default)]
    pub detected_at: Option<DateTime<Utc>>,
    /// When the rollback was first sent.
    #[serde(default)]
    pub rollback_requested_at: Option<DateTime<Utc>>,
    /// When the driver confirmed the rollback: service restored.
    #[serde(default)]
    pub restored_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
}

impl RolloutState {
    pub fn new(now: DateTime<Utc>) -> RolloutState {
        RolloutState {
            phase: RolloutPhase::Progressing,
            step: 0,
            step_started_at: now,
            weight: 0,
            generation: 1,
            pause: None,
            action: None,
            analysis: None,
            promoting_now: false,
            history: vec![],
            failure: None,
            detected_at: None,
            rollback_requested_at: None,
            restored_at: None,
            finished_at: None,
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Send this action (it is already recorded in the state with its key) and report the
    /// result with [`Rollout::action_finished`].
    Send(ActionState),
    /// The action was accepted by an asynchronous driver; wait for its report, at most until
    /// the given time, then resend it with the same key.
    AwaitReport(DateTime<Utc>),
    /// Read these metrics now and report with [`Rollout::record_measurements`].
    Measure(Vec<MetricSpec>),
    /// Nothing to do before this time; None waits for a person.
    WaitUntil(Option<DateTime<Utc>>),
    /// The rollout is over.
    Finished,
}

/// The result of a driver action as the application saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionResult {
    Completed {
        deployed_digest: Option<String>,
    },
    /// Asynchronous: completion will be reported later.
    Accepted,
    Failed {
        message: String,
    },
}

/// A refused manual control, as a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// How long an asynchronous driver may take to report before the action is resent.
pub const REPORT_TIMEOUT_SECONDS: i64 = 600;
/// How many times a rollback is attempted before a person must act.
pub const MAX_ROLLBACK_ATTEMPTS: u32 = 5;
/// How many times an action an asynchronous driver accepts but never reports on is sent (each
/// after [`REPORT_TIMEOUT_SECONDS`]) before it counts as failed, which rolls back.
pub const MAX_ACTION_ATTEMPTS: u32 = 5;

/// A rollout: its plan, the stage's metrics and its state. Methods change `state` only.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout<'a> {
    pub deployment_id: &'a str,
    pub plan: &'a [Step],
    pub metrics: &'a [MetricSpec],
    /// The digest the release pins; a driver reporting another one fails the step.
    pub expected_digest: &'a str,
    pub state: RolloutState,
}

impl<'a> Rollout<'a> {
    fn key(&self, step: Option<usize>, action: ActionKind) -> String {
        let step = step.map(|s| s.to_string()).unwrap_or_else(|| "rollback".into());
        format!("{}/{}/{}/{}", self.deployment_id, self.state.generation, step, action.as_str())
    }

    fn metric(&self, name: &str) -> Option<&MetricSpec> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// Moves through every step that needs no I/O at `now` and says what to do next. Call it
    /// again after every report.
    pub fn next(&mut self, now: DateTime<Utc>) -> Next {
        // Bounded: each pass either returns or moves to a later step.
        for _ in 0..=self.plan.len() * 2 + 4 {
            match self.state.phase {
                RolloutPhase::Succeeded | RolloutPhase::RolledBack | RolloutPhase::Aborted | RolloutPhase::Failed => return Next::Finished,
                RolloutPhase::RollingBack => return self.next_rollback(now),
                RolloutPhase::Paused => {
                    let pause = self.state.pause.clone();
                    match pause {
                        // A pause with an end is over: a pause step ends; any other pause (a
                        // freeze with an end) gives the current step back, which is not skipped.
                        Some(Pause { until: Some(until), reason, .. }) if until <= now => {
                            self.state.pause = None;
                            self.state.phase = RolloutPhase::Progressing;
                            if reason == PauseReason::Step {
                                self.finish_step(now, "waited");
                            }
                            continue;
                        }
                        Some(p) => return Next::WaitUntil(p.until),
                        None => {
                            self.state.phase = RolloutPhase::Progressing;
                            continue;
                        }
                    }
                }
                RolloutPhase::Progressing => {}
            }
            let Some(step) = self.plan.get(self.state.step).cloned() else {
                self.state.phase = RolloutPhase::Succeeded;
                self.state.finished_at = Some(now);
                return Next::Finished;
            };
            if let Some((kind, weight)) = step.action() {
                if self.state.promoting_now && kind == ActionKind::SetWeight && self.later_weight_step(self.state.step) {
                    self.finish_step(now, "skipped (promote now)");
                    continue;
                }
                match &self.state.action {
                    Some(a) if a.step == Some(self.state.step) && a.finished_at.is_none() => {
                        if a.accepted {
                            let deadline = report_deadline(a);
                            if deadline > now {
                                return Next::AwaitReport(deadline);
                            }
                            if a.attempts >= MAX_ACTION_ATTEMPTS {
                                // A driver that accepts and never reports has timed out: a
                                // failed action, which rolls back.
                                let (key, message) = (a.key.clone(), no_report(a));
                                let _ = self.action_finished(&key, ActionResult::Failed { message }, now);
                                continue;
                            }
                        }
                        // Decided (maybe sent) but not finished: send again with the same key.
                        let mut a = a.clone();
                        a.attempts += 1;
                        a.last_sent_at = Some(now);
                        a.accepted = false;
                        self.state.action = Some(a.clone());
                        return Next::Send(a);
                    }
                    _ => {
                        let a = ActionState {
                            key: self.key(Some(self.state.step), kind),
                            action: kind,
                            step: Some(self.state.step),
                            weight,
                            decided_at: now,
                            attempts: 1,
                            last_sent_at: Some(now),
                            accepted: false,
                            finished_at: None,
                            error: None,
                            deployed_digest: None,
                        };
                        self.state.action = Some(a.clone());
                        return Next::Send(a);
                    }
                }
            }
            match step {
                Step::Pause { duration_seconds } => {
                    if self.state.promoting_now {
                        self.finish_step(now, "skipped (promote now)");
                        continue;
                    }
                    let until = duration_seconds.map(|s| after(self.state.step_started_at, s));
                    if until.is_some_and(|u| u <= now) {
                        self.finish_step(now, "waited");
                        continue;
                    }
                    self.state.phase = RolloutPhase::Paused;
                    self.state.pause = Some(Pause {
                        reason: PauseReason::Step,
                        since: now,
                        until,
                        message: match until {
                            Some(u) => format!("pause step until {}", u.to_rfc3339()),
                            None => "pause step: waiting for a person to resume".into(),
                        },
                    });
                    return Next::WaitUntil(until);
                }
                Step::ScaleDownDelay { seconds } => {
                    let until = after(self.state.step_started_at, seconds);
                    if self.state.promoting_now || until <= now {
                        self.finish_step(now, "old side kept for the scale-down delay");
                        continue;
                    }
                    return Next::WaitUntil(Some(until));
                }
                Step::Analysis { metrics, smoke } => {
                    // Promote now: smoke checks run after the last traffic change only.
                    if self.state.promoting_now && (!smoke || self.later_weight_step(self.state.step)) {
                        self.finish_step(now, "skipped (promote now)");
                        continue;
                    }
                    match self.next_analysis(now, &metrics) {
                        AnalysisStep::Continue => continue,
                        AnalysisStep::Return(n) => return n,
                    }
                }
                _ => unreachable_step(),
            }
        }
        Next::WaitUntil(Some(after(now, 1)))
    }

    fn later_weight_step(&self, step: usize) -> bool {
        self.plan.iter().skip(step.saturating_add(1)).any(|s| matches!(s, Step::SetWeight { .. }))
    }

    /// True when `key` names the action of a step this generation has already left: a late
    /// duplicate of a report already applied (or of an action promote-now skipped).
    fn is_past_action(&self, key: &str) -> bool {
        let prefix = format!("{}/{}/", self.deployment_id, self.state.generation);
        let Some((step, action)) = key.strip_prefix(&prefix).and_then(|rest| rest.split_once('/')) else { return false };
        let Ok(step) = step.parse::<usize>() else { return false };
        step < self.state.step && self.plan.get(step).and_then(|s| s.action()).is_some_and(|(kind, _)| kind.as_str() == action)
    }

    fn next_analysis(&mut self, now: DateTime<Utc>, names: &[String]) -> AnalysisStep {
        let specs: Vec<MetricSpec> = names.iter().filter_map(|n| self.metric(n).cloned()).collect();
        if self.state.analysis.as_ref().map(|a| a.step) != Some(self.state.step) {
            self.state.analysis = Some(AnalysisState {
                step: self.state.step,
                started_at: now,
                metrics: specs.iter().map(|m| MetricRun { name: m.name.clone(), measurements: vec![], assessment: None }).collect(),
                phase: Some(Phase::Running),
            });
        }
        let Some(run) = self.state.analysis.clone() else { return AnalysisStep::Continue };
        // Assess every metric as things stand.
        let mut assessments = Vec::new();
        let mut due = Vec::new();
        let mut wake: Option<DateTime<Utc>> = None;
        for spec in &specs {
            let measured = run.metrics.iter().find(|m| m.name == spec.name).map(|m| m.measurements.as_slice()).unwrap_or(&[]);
            let a = analysis::assess(spec, measured, false);
            if !a.phase.is_completed() {
                if let Some(at) = analysis::next_measurement_due(spec, run.started_at, measured) {
                    if at <= now {
                        due.push(spec.clone());
                    } else {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                }
            }
            assessments.push(a);
        }
        let phase = analysis::run_phase(&assessments);
        if let Some(a) = self.state.analysis.as_mut() {
            for m in a.metrics.iter_mut() {
                m.assessment = assessments.iter().find(|x| x.metric == m.name).cloned();
            }
            a.phase = Some(phase);
        }
        match phase {
            Phase::Successful => {
                self.finish_step(now, "analysis successful");
                AnalysisStep::Continue
            }
            Phase::Failed | Phase::Error => {
                let why: Vec<String> = assessments
                    .iter()
                    .filter(|a| !a.dry_run && matches!(a.phase, Phase::Failed | Phase::Error))
                    .map(|a| format!("{}: {}", a.metric, a.reason))
                    .collect();
                self.fail(now, format!("analysis {}: {}", if phase == Phase::Failed { "failed" } else { "errored" }, why.join("; ")));
                AnalysisStep::Continue
            }
            Phase::Inconclusive => {
                let why: Vec<String> = assessments
                    .iter()
                    .filter(|a| !a.dry_run && a.phase == Phase::Inconclusive)
                    .map(|a| format!("{}: {}", a.metric, a.reason))
                    .collect();
                self.state.phase = RolloutPhase::Paused;
                self.state.pause = Some(Pause {
                    reason: PauseReason::Inconclusive,
                    since: now,
                    until: None,
                    message: format!("analysis inconclusive, a person decides (resume continues, abort rolls back): {}", why.join("; ")),
                });
                AnalysisStep::Return(Next::WaitUntil(None))
            }
            Phase::Pending | Phase::Running => {
                if !due.is_empty() {
                    return AnalysisStep::Return(Next::Measure(due));
                }
                match wake {
                    Some(w) => AnalysisStep::Return(Next::WaitUntil(Some(w))),
                    None => {
                        // Nothing is due and nothing will be: every open metric runs until the
                        // step ends, which is now (Argo: terminating assessment).
                        let finals: Vec<MetricAssessment> = specs
                            .iter()
                            .map(|spec| {
                                let measured =
                                    run.metrics.iter().find(|m| m.name == spec.name).map(|m| m.measurements.as_slice()).unwrap_or(&[]);
                                analysis::assess(spec, measured, true)
                            })
                            .collect();
                        let final_phase = analysis::run_phase(&finals);
                        if let Some(a) = self.state.analysis.as_mut() {
                            for m in a.metrics.iter_mut() {
                                m.assessment = finals.iter().find(|x| x.metric == m.name).cloned();
                            }
                            a.phase = Some(final_phase);
                        }
                        match final_phase {
                            Phase::Failed | Phase::Error => self.fail(now, "analysis failed when it ended".into()),
                            Phase::Inconclusive => {
                                self.state.phase = RolloutPhase::Paused;
                                self.state.pause = Some(Pause {
                                    reason: PauseReason::Inconclusive,
                                    since: now,
                                    until: None,
                                    message: "analysis inconclusive when it ended; a person decides".into(),
                                });
                                return AnalysisStep::Return(Next::WaitUntil(None));
                            }
                            _ => self.finish_step(now, "analysis successful"),
                        }
                        AnalysisStep::Continue
                    }
                }
            }
        }
    }

    /// Records readings taken for the current analysis step.
    pub fn record_measurements(&mut self, readings: Vec<(String, Reading)>, now: DateTime<Utc>) {
        let step = self.state.step;
        let specs: Vec<MetricSpec> = self.metrics.to_vec();
        let Some(run) = self.state.analysis.as_mut().filter(|a| a.step == step) else { return };
        for (name, reading) in readings {
            let Some(spec) = specs.iter().find(|m| m.name == name) else { continue };
            if let Some(m) = run.metrics.iter_mut().find(|m| m.name == name) {
                m.measurements.push(analysis::measure(spec, reading, now));
                trim_measurements(spec, &mut m.measurements);
            }
        }
    }

    /// Applies the result of the current action.
    pub fn action_finished(&mut self, key: &str, result: ActionResult, now: DateTime<Utc>) -> Result<(), Refused> {
        let Some(mut a) = self.state.action.clone() else {
            if self.is_past_action(key) {
                return Ok(()); // a late duplicate: already applied
            }
            return Err(Refused(format!("no driver action is in flight; {key} was not expected")));
        };
        if a.key != key {
            if self.is_past_action(key) {
                return Ok(()); // a late duplicate: already applied
            }
            return Err(Refused(format!("the action in flight is {}, not {key}", a.key)));
        }
        if a.finished_at.is_some() {
            return Ok(()); // a duplicate report: already applied
        }
        if self.state.phase == RolloutPhase::RollingBack && a.action != ActionKind::Rollback {
            // Aborted or failed while this action was in flight: note how it ended; the
            // rollback that follows decides the outcome.
            a.finished_at = Some(now);
            if let ActionResult::Failed { message } = &result {
                a.error = Some(message.clone());
            }
            self.state.action = Some(a);
            return Ok(());
        }
        if self.state.phase.is_finished() {
            return Err(Refused(format!("the rollout is already {}; the report for {key} changes nothing", self.state.phase.as_str())));
        }
        match result {
            ActionResult::Accepted => {
                a.accepted = true;
                self.state.action = Some(a);
                return Ok(());
            }
            ActionResult::Completed { deployed_digest } => {
                if let (Some(got), true) =
                    (&deployed_digest, matches!(a.action, ActionKind::Deploy | ActionKind::SetWeight | ActionKind::Switch))
                {
                    if got != self.expected_digest {
                        a.finished_at = Some(now);
                        a.error = Some(format!("the driver deployed {got}, but the release pins {}", self.expected_digest));
                        a.deployed_digest = Some(got.clone());
                        let msg = format!(
                            "digest mismatch on {}: the driver reports {got}, the release pins {}; never a rebuild",
                            a.action.as_str(),
                            self.expected_digest
                        );
                        self.state.action = Some(a);
                        self.fail(now, msg);
                        return Ok(());
                    }
                }
                a.finished_at = Some(now);
                a.deployed_digest = deployed_digest;
                let kind = a.action;
                let weight = a.weight;
                let a_step = a.step;
                self.state.action = Some(a);
                if kind == ActionKind::Rollback {
                    self.state.weight = 0;
                    self.state.restored_at = Some(now);
                    self.state.phase = if self.state.failure.as_deref().is_some_and(|f| f.starts_with("aborted")) {
                        RolloutPhase::Aborted
                    } else {
                        RolloutPhase::RolledBack
                    };
                    self.state.finished_at = Some(now);
                } else if a_step == Some(self.state.step) {
                    self.state.weight = weight;
                    self.finish_step(now, &format!("{} done", kind.as_str()));
                }
                // Otherwise the plan moved on without it (promote now skipped its step): it is
                // noted as finished and advances nothing.
            }
            ActionResult::Failed { message } => {
                a.finished_at = Some(now);
                a.error = Some(message.clone());
                let kind = a.action;
                let attempts = a.attempts;
                self.state.action = Some(a);
                if kind == ActionKind::Rollback {
                    if attempts >= MAX_ROLLBACK_ATTEMPTS {
                        self.state.phase = RolloutPhase::Failed;
                        self.state.finished_at = Some(now);
                        self.state.failure = Some(format!(
                            "{}; the rollback failed {attempts} times ({message}); a person must restore the service",
                            self.state.failure.clone().unwrap_or_default()
                        ));
                    } else {
                        // Leave it unfinished so it is resent with the same key.
                        if let Some(a) = self.state.action.as_mut() {
                            a.finished_at = None;
                        }
                    }
                } else {
                    self.fail(now, format!("{} failed: {message}", kind.as_str()));
                }
            }
        }
        Ok(())
    }

    fn next_rollback(&mut self, now: DateTime<Utc>) -> Next {
        match &self.state.action {
            Some(a) if a.action == ActionKind::Rollback && a.finished_at.is_none() => {
                if a.accepted {
                    let deadline = report_deadline(a);
                    if deadline > now {
                        return Next::AwaitReport(deadline);
                    }
                    if a.attempts >= MAX_ROLLBACK_ATTEMPTS {
                        let (key, message) = (a.key.clone(), no_report(a));
                        let _ = self.action_finished(&key, ActionResult::Failed { message }, now);
                        return if self.state.phase.is_finished() { Next::Finished } else { Next::WaitUntil(Some(after(now, 1))) };
                    }
                }
                let mut a = a.clone();
                a.attempts += 1;
                a.last_sent_at = Some(now);
                a.accepted = false;
                self.state.action = Some(a.clone());
                Next::Send(a)
            }
            _ => {
                let a = ActionState {
                    key: self.key(None, ActionKind::Rollback),
                    action: ActionKind::Rollback,
                    step: None,
                    weight: 0,
                    decided_at: now,
                    attempts: 1,
                    last_sent_at: Some(now),
                    accepted: false,
                    finished_at: None,
                    error: None,
                    deployed_digest: None,
                };
                self.state.rollback_requested_at.get_or_insert(now);
                self.state.action = Some(a.clone());
                Next::Send(a)
            }
        }
    }

    fn finish_step(&mut self, now: DateTime<Utc>, outcome: &str) {
        let description = self.plan.get(self.state.step).map(|s| s.describe()).unwrap_or_default();
        let analysis = self.state.analysis.take().filter(|a| a.step == self.state.step);
        self.state.history.push(StepRecord {
            step: self.state.step,
            generation: self.state.generation,
            description,
            started_at: self.state.step_started_at,
            finished_at: now,
            outcome: outcome.into(),
            analysis,
        });
        self.state.step += 1;
        self.state.step_started_at = now;
        if self.state.step >= self.plan.len() {
            self.state.phase = RolloutPhase::Succeeded;
            self.state.finished_at = Some(now);
        }
    }

    fn fail(&mut self, now: DateTime<Utc>, reason: String) {
        let description = self.plan.get(self.state.step).map(|s| s.describe()).unwrap_or_default();
        let analysis = self.state.analysis.take();
        self.state.history.push(StepRecord {
            step: self.state.step,
            generation: self.state.generation,
            description,
            started_at: self.state.step_started_at,
            finished_at: now,
            outcome: format!("failed: {reason}"),
            analysis,
        });
        self.state.failure = Some(reason);
        self.state.detected_at = Some(now);
        self.state.pause = None;
        self.state.phase = RolloutPhase::RollingBack;
    }

    /// A person pauses the rollout at the current step.
    pub fn pause(&mut self, now: DateTime<Utc>, who: &str, reason: Option<&str>) -> Result<(), Refused> {
        match self.state.phase {
            RolloutPhase::Progressing => {
                self.state.phase = RolloutPhase::Paused;
                self.state.pause = Some(Pause {
                    reason: PauseReason::Manual,
                    since: now,
                    until: None,
                    message: format!("paused by {who}{}", reason.map(|r| format!(": {r}")).unwrap_or_default()),
                });
                Ok(())
            }
            // A pause that would end by itself (a timed pause step, a freeze with an end) becomes
            // the person's: it lasts until they resume. The step is not finished: after the
            // resume a pause step whose time is up ends, otherwise it goes on to its end.
            RolloutPhase::Paused if self.state.pause.as_ref().is_some_and(|p| p.until.is_some()) => {
                self.state.pause = Some(Pause {
                    reason: PauseReason::Manual,
                    since: now,
                    until: None,
                    message: format!("held by {who}{}", reason.map(|r| format!(": {r}")).unwrap_or_default()),
                });
                Ok(())
            }
            RolloutPhase::Paused => Err(Refused("the rollout is already paused".into())),
            other => Err(Refused(format!("a {} rollout cannot be paused", other.as_str()))),
        }
    }

    /// A person resumes: a manual, freeze or indefinite pause ends; an inconclusive analysis is
    /// accepted and the rollout moves on.
    pub fn resume(&mut self, now: DateTime<Utc>) -> Result<(), Refused> {
        if self.state.phase != RolloutPhase::Paused {
            return Err(Refused(format!("only a paused rollout can be resumed; this one is {}", self.state.phase.as_str())));
        }
        let pause = self.state.pause.take();
        self.state.phase = RolloutPhase::Progressing;
        match pause.map(|p| p.reason) {
            Some(PauseReason::Step) => self.finish_step(now, "resumed by a person"),
            Some(PauseReason::Inconclusive) => self.finish_step(now, "inconclusive analysis accepted by a person"),
            _ => {}
        }
        Ok(())
    }

    /// A person aborts: the driver rolls back; the rollout ends `aborted`.
    pub fn abort(&mut self, now: DateTime<Utc>, who: &str, reason: &str) -> Result<(), Refused> {
        if self.state.phase.is_finished() || self.state.phase == RolloutPhase::RollingBack {
            return Err(Refused(format!("a {} rollout cannot be aborted", self.state.phase.as_str())));
        }
        self.fail(now, format!("aborted by {who}: {reason}"));
        Ok(())
    }

    /// Skip the remaining pauses and analyses: go straight to full traffic and finalize.
    pub fn promote_now(&mut self, _now: DateTime<Utc>) -> Result<(), Refused> {
        match self.state.phase {
            RolloutPhase::Progressing | RolloutPhase::Paused => {
                self.state.promoting_now = true;
                if self.state.phase == RolloutPhase::Paused {
                    self.state.phase = RolloutPhase::Progressing;
                    self.state.pause = None;
                }
                Ok(())
            }
            other => Err(Refused(format!("a {} rollout cannot be promoted", other.as_str()))),
        }
    }

    /// Start again from the first step, as a new generation (new idempotency keys).
    pub fn retry(&mut self, now: DateTime<Utc>) -> Result<(), Refused> {
        if !matches!(self.state.phase, RolloutPhase::RolledBack | RolloutPhase::Aborted | RolloutPhase::Failed) {
            return Err(Refused(format!(
                "only a rolled-back, aborted or failed rollout can be retried; this one is {}",
                self.state.phase.as_str()
            )));
        }
        let history = std::mem::take(&mut self.state.history);
        let generation = self.state.generation + 1;
        self.state = RolloutState::new(now);
        self.state.history = history;
        self.state.generation = generation;
        Ok(())
    }

    /// A freeze with effect `stop_at_next_step` is in force: pause before the next action.
    pub fn freeze_pause(&mut self, now: DateTime<Utc>, until: Option<DateTime<Utc>>, message: String) {
        if self.state.phase == RolloutPhase::Progressing {
            self.state.phase = RolloutPhase::Paused;
            self.state.pause = Some(Pause { reason: PauseReason::Freeze, since: now, until, message });
        }
    }

    /// True when the next thing `next` would do is start a new driver action (a step boundary,
    /// where freezes take effect).
    pub fn at_step_boundary(&self) -> bool {
        self.state.phase == RolloutPhase::Progressing
            && self.plan.get(self.state.step).and_then(|s| s.action()).is_some()
            && self.state.action.as_ref().is_none_or(|a| a.step != Some(self.state.step))
            && self.state.step > 0
    }
}

/// Latest measurements kept per metric per step, for a metric that runs until the step ends
/// (see [`trim_measurements`]); a metric with a count keeps all of its measurements, which its
/// count bounds.
pub const MAX_MEASUREMENTS_KEPT: usize = 50;

/// Bounds the stored measurements of a metric without a count without changing its verdict.
///
/// A metric's verdict is computed from its stored measurements every time, so dropping the
/// oldest ones blindly would change it: a `count` above the kept number would never be reached,
/// and failures further apart than the kept number would never add up to `failure_limit`. Only
/// a metric that runs until the step ends is trimmed, and only while it runs, when its verdict
/// depends on how many measurements failed or were inconclusive (each at most its limit while
/// it runs), on whether any succeeded and on the trailing run of errors. So the latest
/// [`MAX_MEASUREMENTS_KEPT`] and the trailing run of errors are kept, and of the older ones
/// every failed and inconclusive one and the first successful one (none of them an error, so no
/// two runs of errors are joined).
fn trim_measurements(spec: &MetricSpec, measurements: &mut Vec<Measurement>) {
    if spec.effective_count().is_some() || measurements.len() <= MAX_MEASUREMENTS_KEPT {
        return;
    }
    let trailing_errors = measurements.iter().rposition(|m| m.outcome != Outcome::Error).map_or(0, |i| i + 1);
    let latest = (measurements.len() - MAX_MEASUREMENTS_KEPT).min(trailing_errors);
    let mut kept_success = false;
    let mut index = 0;
    measurements.retain(|m| {
        let keep = index >= latest
            || match m.outcome {
                Outcome::Failed | Outcome::Inconclusive => true,
                Outcome::Successful if !kept_success => {
                    kept_success = true;
                    true
                }
                Outcome::Successful | Outcome::Error => false,
            };
        index += 1;
        keep
    });
}

/// The latest time a stored state holds: 9999-12-31T23:59:59Z (what every JSON and database
/// date parser reads back).
fn latest_time() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at` plus `seconds`, saturating at [`latest_time`] (or at `at`, past it) rather than
/// panicking on a duration a stored plan may hold.
fn after(at: DateTime<Utc>, seconds: u64) -> DateTime<Utc> {
    let cap = latest_time().max(at);
    i64::try_from(seconds).ok().and_then(Duration::try_seconds).and_then(|delta| at.checked_add_signed(delta)).map_or(cap, |t| t.min(cap))
}

/// When an accepted action is resent if no report came.
fn report_deadline(a: &ActionState) -> DateTime<Utc> {
    after(a.last_sent_at.unwrap_or(a.decided_at), REPORT_TIMEOUT_SECONDS.unsigned_abs())
}

fn no_report(a: &ActionState) -> String {
    format!("the driver accepted it but did not report within {REPORT_TIMEOUT_SECONDS} s, {} times", a.attempts)
}

enum AnalysisStep {
    Continue,
    Return(Next),
}

fn unreachable_step() {
    // Action steps returned above; the remaining variants are all matched. Nothing to do.
}
