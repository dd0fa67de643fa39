//! The lifecycle of feature flags (issue 7, part 4): scheduled changes, evaluation counters,
//! the stale report, the change feed behind the OFREP SSE stream, and the clock the flag use
//! cases read (injectable, so tests use a fixed "now" instead of waiting 30 days).
//!
//! **Scheduled changes** (`Kind::FlagSchedule`, parent the environment, state `pending`,
//! `applied`, `skipped`, `failed` or `cancelled`): a JSON merge patch of one flag with a due time,
//! an author and a reason. Creating one plans a scheduler job (`flag.change:<schedule id>`) in the
//! same transaction; the scheduler fires it exactly once across replicas, and the job's claim,
//! the flag write (set, revision with its diff) and the schedule's outcome commit together. A due
//! time inside a freeze is refused at creation; a freeze in force when the job fires (one created
//! afterwards) makes it **skip**, audited with the freeze named: it never fires into a freeze and
//! is not postponed (people re-schedule it). A patch that no longer applies (the flag was removed,
//! or the patched flag no longer validates) fails, audited with the reason.
//!
//! **Counters**: each compiled snapshot carries one set of atomic counters per flag (per variant,
//! plus results without a variant, plus the last evaluation time), incremented with relaxed atomic
//! operations on the OFREP path. A background task drains them every
//! [`DEFAULT_STATS_FLUSH_SECONDS`] and adds them to one stats record per flag set
//! (`Kind::FlagSet`, key `<set key>#stats`, state `stats`) in one transaction, through `Mutation`
//! like every write (one `flag_stats.flush` audit entry per set with new counts per flush, holding
//! totals rather than the whole record); no evaluation writes to the database.
//!
//! **Stale report**: a flag is stale when it serves one variant to everyone and has not changed
//! for `rolled_out_days`; has not changed for `unchanged_days` (permission flags are exempt: they
//! are permanent by design); has not been evaluated for `not_evaluated_days`; or is older than the
//! expected lifetime of its type.

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use signalbox_domain::access::{Permission, ResourceScopes, Scope};
use signalbox_domain::model::{Environment, Kind, Service};
use signalbox_flags::{Flag, FlagSet, FlagState};
use signalbox_store::ListQuery;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

use crate::flags::{edit_flag, flags_of, merge_patch, set_key, validate_document, FlagSetRecord, FlagSetRevision, FlagSnapshot, Located};
use crate::governance::Reader;
use crate::mutation::{decode, Mutation, Placement};
use crate::scheduler::{job_key, plan_job, Job};
use crate::{new_id, App, AppError, AppResult, RequestContext, Versioned};

/// The scheduler job kind of a scheduled flag change; its subject is the schedule id.
pub const JOB_FLAG_CHANGE: &str = "flag.change";
/// How often counters are written to the store by default (`SIGNALBOX_FLAG_STATS_FLUSH_SECONDS`).
pub const DEFAULT_STATS_FLUSH_SECONDS: u64 = 60;
/// How far ahead a change may be scheduled.
pub const MAX_SCHEDULE_DAYS: i64 = 400;
/// SSE streams one process serves at most; more are refused with 503 until some close.
pub const MAX_EVENT_STREAMS: usize = 10_000;
/// Default stale thresholds (days).
pub const DEFAULT_UNCHANGED_DAYS: i64 = 30;
pub const DEFAULT_NOT_EVALUATED_DAYS: i64 = 30;
pub const DEFAULT_ROLLED_OUT_DAYS: i64 = 30;

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---- process state: clock, counters waiting for a flush, change feed ------------------------

/// A flag set changed (new revision): what an SSE `refetchEvaluation` event carries.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagChangeEvent {
    /// The store key of the set (`<environment id>` or `<environment id>/<service id>`).
    pub set_key: String,
    /// `<set id>:<revision>`, what bulk ETags are derived from (`flagConfigEtag`).
    pub etag: String,
    pub revision: i64,
    /// Unix seconds of the change (`flagConfigLastModified`).
    pub last_modified: i64,
}

#[derive(Debug, Clone, Default)]
struct PendingFlag {
    variants: BTreeMap<String, u64>,
    no_variant: u64,
    last: i64,
}

#[derive(Debug, Clone, Default)]
struct PendingSet {
    environment_id: String,
    service_id: Option<String>,
    flags: BTreeMap<String, PendingFlag>,
}

/// The lifecycle part of [`crate::flags::FlagRuntime`].
pub struct LifecycleState {
    /// Milliseconds since the epoch of a fixed "now", or `i64::MIN` for the system clock.
    fixed_now_ms: AtomicI64,
    /// Replaced snapshots whose counters may still move (an evaluation that held the old `Arc`).
    retired: Mutex<Vec<Arc<FlagSnapshot>>>,
    /// Drained counts not yet written (a failed flush keeps them for the next one).
    pending: Mutex<HashMap<String, PendingSet>>,
    events: tokio::sync::broadcast::Sender<FlagChangeEvent>,
    /// Open SSE streams.
    pub(crate) streams: AtomicUsize,
    /// Whether bulk responses advertise the SSE stream (`eventStreams`).
    streams_enabled: std::sync::atomic::AtomicBool,
    /// Turns true when the server shuts down: open SSE streams end so the drain does not wait.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for LifecycleState {
    fn default() -> Self {
        let (events, _) = tokio::sync::broadcast::channel(256);
        LifecycleState {
            fixed_now_ms: AtomicI64::new(i64::MIN),
            retired: Mutex::default(),
            pending: Mutex::default(),
            events,
            streams: AtomicUsize::new(0),
            streams_enabled: std::sync::atomic::AtomicBool::new(true),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

impl LifecycleState {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        match self.fixed_now_ms.load(Ordering::Relaxed) {
            i64::MIN => Utc::now(),
            ms => Utc.timestamp_millis_opt(ms).single().unwrap_or_else(Utc::now),
        }
    }

    pub(crate) fn after_swap(&self, previous: &HashMap<String, Arc<FlagSnapshot>>, next: &HashMap<String, Arc<FlagSnapshot>>) {
        let mut retired = Vec::new();
        for (key, old) in previous {
            match next.get(key) {
                Some(new) if Arc::ptr_eq(old, new) => {}
                _ => retired.push(old.clone()),
            }
        }
        if !retired.is_empty() {
            if let Ok(mut list) = self.retired.lock() {
                list.extend(retired);
            }
        }
        for (key, snapshot) in next {
            let changed = previous.get(key).is_none_or(|old| old.set_id != snapshot.set_id || old.revision != snapshot.revision);
            if changed {
                // No receiver is not an error: nobody is listening.
                let _ = self.events.send(FlagChangeEvent {
                    set_key: key.clone(),
                    etag: snapshot.etag_version.clone(),
                    revision: snapshot.revision,
                    last_modified: snapshot.updated_at.timestamp(),
                });
            }
        }
    }

    fn add_pending(&self, snapshot: &FlagSnapshot, drained: Vec<(String, PendingFlag)>) {
        if drained.is_empty() {
            return;
        }
        let Ok(mut pending) = self.pending.lock() else { return };
        let set = pending.entry(snapshot.set_key.clone()).or_insert_with(|| PendingSet {
            environment_id: snapshot.environment_id.clone(),
            service_id: snapshot.service_id.clone(),
            flags: BTreeMap::new(),
        });
        for (flag, delta) in drained {
            merge_pending(set.flags.entry(flag).or_default(), &delta);
        }
    }
}

fn merge_pending(into: &mut PendingFlag, delta: &PendingFlag) {
    for (variant, n) in &delta.variants {
        *into.variants.entry(variant.clone()).or_default() += n;
    }
    into.no_variant += delta.no_variant;
    into.last = into.last.max(delta.last);
}

/// Evaluation counters of one snapshot, aligned with `CompiledFlagSet::keys()`.
#[derive(Default)]
pub struct FlagCounters {
    flags: Vec<FlagCounter>,
}

struct FlagCounter {
    key: String,
    /// In variant name order; flags have a handful, so a scan is cheapest.
    variants: Vec<(String, AtomicU64)>,
    /// Results without a variant: disabled, code default, errors.
    no_variant: AtomicU64,
    /// Unix seconds of the last evaluation, 0 when none since the snapshot was built.
    last: AtomicI64,
}

impl FlagCounters {
    pub(crate) fn for_set(set: &FlagSet) -> FlagCounters {
        FlagCounters {
            flags: set
                .flags
                .iter()
                .map(|(key, flag)| FlagCounter {
                    key: key.clone(),
                    variants: flag.variants.keys().map(|v| (v.clone(), AtomicU64::new(0))).collect(),
                    no_variant: AtomicU64::new(0),
                    last: AtomicI64::new(0),
                })
                .collect(),
        }
    }

    pub(crate) fn record(&self, index: usize, variant: Option<&str>, now: i64) {
        let Some(flag) = self.flags.get(index) else { return };
        match variant.and_then(|v| flag.variants.iter().find(|(name, _)| name == v)) {
            Some((_, counter)) => counter.fetch_add(1, Ordering::Relaxed),
            None => flag.no_variant.fetch_add(1, Ordering::Relaxed),
        };
        if flag.last.load(Ordering::Relaxed) < now {
            flag.last.store(now, Ordering::Relaxed);
        }
    }

    /// Takes the counts (leaving zeros) of flags evaluated since the last drain.
    fn drain(&self) -> Vec<(String, PendingFlag)> {
        let mut out = Vec::new();
        for flag in &self.flags {
            let mut delta = PendingFlag { no_variant: flag.no_variant.swap(0, Ordering::Relaxed), ..PendingFlag::default() };
            for (name, counter) in &flag.variants {
                let n = counter.swap(0, Ordering::Relaxed);
                if n > 0 {
                    delta.variants.insert(name.clone(), n);
                }
            }
            delta.last = flag.last.load(Ordering::Relaxed);
            if delta.no_variant > 0 || !delta.variants.is_empty() {
                out.push((flag.key.clone(), delta));
            }
        }
        out
    }

    /// The last evaluation per flag, without draining.
    fn last_evaluated(&self) -> impl Iterator<Item = (&str, i64)> {
        self.flags.iter().map(|f| (f.key.as_str(), f.last.load(Ordering::Relaxed))).filter(|(_, t)| *t > 0)
    }
}

// ---- stored records --------------------------------------------------------------------------

/// Counted evaluations of one flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlagStat {
    pub evaluations: u64,
    /// Evaluations per variant served.
    pub variants: BTreeMap<String, u64>,
    /// Evaluations without a variant (disabled, code default, errors).
    pub no_variant: u64,
    pub last_evaluated: Option<DateTime<Utc>>,
}

/// The evaluation counters of one flag set, as flushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlagStatsRecord {
    pub id: String,
    pub set_key: String,
    pub environment_id: String,
    #[serde(default)]
    pub service_id: Option<String>,
    /// When counting started for this set (the first flush).
    pub since: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub flags: BTreeMap<String, FlagStat>,
}

fn stats_key(set_key: &str) -> String {
    format!("{set_key}#stats")
}

/// A scheduled change of one flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlagSchedule {
    pub id: String,
    pub set_key: String,
    pub environment_id: String,
    pub environment: String,
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    pub flag: String,
    /// JSON merge patch (RFC 7386) of the flag's flagd definition, as for `PATCH …/flags/{key}`.
    #[schema(value_type = Object)]
    pub patch: Value,
    pub due: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub reason: Option<String>,
    /// `pending`, `applied`, `skipped` (a freeze was in force), `failed` (no longer applies) or `cancelled`.
    pub state: String,
    /// The flag-set revision when the change was scheduled (`None`: no set yet).
    #[serde(default)]
    pub base_revision: Option<i64>,
    /// Whether the flag existed when the change was scheduled.
    pub flag_existed: bool,
    /// What happened, in a sentence (also the reason of the audit entry).
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub settled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub settled_by: Option<String>,
    /// The revision the change produced, when applied.
    #[serde(default)]
    pub revision: Option<i64>,
}

fn schedule_placement(s: &FlagSchedule) -> Placement {
    Placement { key: None, parent: Some(s.environment_id.clone()), state: Some(s.state.clone()) }
}

/// `POST /api/v1/flags/{environment}/flags/{key}/schedule`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFlagChange {
    /// The merge patch to apply, e.g. `{"targeting": {"fractional": [["on", 25], ["off", 75]]}}`.
    #[schema(value_type = Object)]
    pub patch: Value,
    /// When (RFC 3339, e.g. `2026-12-01T09:00:00Z`); must be in the future and outside freezes.
    pub at: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelFlagSchedule {
    #[serde(default)]
    pub reason: Option<String>,
}

// ---- the stale report -----------------------------------------------------------------------

/// Stale thresholds in days (query parameters of the report; defaults 30).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StaleThresholds {
    pub unchanged_days: i64,
    pub not_evaluated_days: i64,
    pub rolled_out_days: i64,
}

impl Default for StaleThresholds {
    fn default() -> Self {
        StaleThresholds {
            unchanged_days: DEFAULT_UNCHANGED_DAYS,
            not_evaluated_days: DEFAULT_NOT_EVALUATED_DAYS,
            rolled_out_days: DEFAULT_ROLLED_OUT_DAYS,
        }
    }
}

/// One reason a flag is stale, with its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StaleReason {
    /// `fully_rolled_out`, `unchanged`, `not_evaluated` or `past_expected_lifetime`.
    pub code: String,
    pub message: String,
    /// The measured number of days (since the last change, evaluation or creation).
    pub days: i64,
    pub threshold_days: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StaleFlag {
    pub environment: String,
    #[serde(default)]
    pub service: Option<String>,
    pub flag: String,
    pub flag_type: Option<String>,
    pub owner: Option<String>,
    pub state: String,
    pub created_at: Option<DateTime<Utc>>,
    pub last_changed_at: Option<DateTime<Utc>>,
    pub last_evaluated_at: Option<DateTime<Utc>>,
    /// Counted evaluations (all variants).
    pub evaluations: u64,
    pub reasons: Vec<StaleReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StaleReport {
    pub now: DateTime<Utc>,
    pub thresholds: StaleThresholds,
    /// Flags looked at.
    pub checked: usize,
    pub stale: Vec<StaleFlag>,
}

/// The variants a flag can serve when that can be read from its definition: static flags,
/// `if` chains of variant names, `fractional` with constant names and weights (only those with a
/// weight above 0). `None` when it depends on something else.
fn served_variants(flag: &Flag, evaluators: Option<&Map<String, Value>>) -> Option<BTreeSet<String>> {
    if flag.prerequisites.as_ref().is_some_and(|p| !p.is_empty()) {
        return None;
    }
    let default = flag.default_variant.name().map(str::to_string);
    match flag.effective_targeting() {
        None => default.map(|d| BTreeSet::from([d])),
        Some(rule) => rule_variants(rule, default.as_deref(), evaluators, 0),
    }
}

fn rule_variants(rule: &Value, default: Option<&str>, evaluators: Option<&Map<String, Value>>, depth: u32) -> Option<BTreeSet<String>> {
    if depth > 16 {
        return None;
    }
    match rule {
        Value::Null => default.map(|d| BTreeSet::from([d.to_string()])),
        Value::String(s) => Some(BTreeSet::from([s.clone()])),
        Value::Bool(b) => Some(BTreeSet::from([b.to_string()])),
        Value::Object(map) if map.len() == 1 => {
            let (op, args) = map.iter().next()?;
            match op.as_str() {
                "$ref" => rule_variants(evaluators?.get(args.as_str()?)?, default, evaluators, depth + 1),
                "if" => {
                    let args = args.as_array()?;
                    let mut out = BTreeSet::new();
                    for (i, arg) in args.iter().enumerate() {
                        // Odd positions and the last of an odd-length list are results.
                        if i % 2 == 1 || (i == args.len() - 1 && args.len() % 2 == 1 && args.len() > 1) {
                            out.extend(rule_variants(arg, default, evaluators, depth + 1)?);
                        }
                    }
                    if args.len() % 2 == 0 {
                        out.extend(rule_variants(&Value::Null, default, evaluators, depth + 1)?);
                    }
                    Some(out)
                }
                "fractional" => {
                    let args = args.as_array()?;
                    let mut out = BTreeSet::new();
                    for arg in args.iter().filter(|a| a.is_array()) {
                        let bucket = arg.as_array()?;
                        let name = bucket.first()?.as_str()?;
                        let weight = match bucket.get(1) {
                            None => 1.0,
                            Some(w) => w.as_f64()?,
                        };
                        if weight > 0.0 {
                            out.insert(name.to_string());
                        }
                    }
                    Some(out)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

// ---- use cases ------------------------------------------------------------------------------

impl App {
    /// The time the flag use cases read: the system clock, or the one set by [`App::set_flags_now`].
    pub fn flags_now(&self) -> DateTime<Utc> {
        self.flags.lifecycle.now()
    }

    /// Fixes the flag clock (`None`: back to the system clock). For tests and simulations: the
    /// stale report, schedule validation and the last-evaluated time read it.
    pub fn set_flags_now(&self, now: Option<DateTime<Utc>>) {
        self.flags.lifecycle.fixed_now_ms.store(now.map(|t| t.timestamp_millis()).unwrap_or(i64::MIN), Ordering::Relaxed);
    }

    /// Whether OFREP bulk responses advertise the SSE change stream (default on;
    /// `SIGNALBOX_FLAGS_SSE=off` turns it off in `serve`).
    pub fn flag_streams_enabled(&self) -> bool {
        self.flags.lifecycle.streams_enabled.load(Ordering::Relaxed)
    }

    pub fn set_flag_streams_enabled(&self, enabled: bool) {
        self.flags.lifecycle.streams_enabled.store(enabled, Ordering::Relaxed);
    }

    /// A receiver of flag-set changes as this process's snapshots see them (the SSE stream).
    pub fn flag_changes(&self) -> tokio::sync::broadcast::Receiver<FlagChangeEvent> {
        self.flags.lifecycle.events.subscribe()
    }

    /// Ends every open SSE stream and refuses new ones (called when the server shuts down).
    pub fn close_flag_streams(&self) {
        self.flags.lifecycle.closing.send_replace(true);
    }

    /// Turns true when [`App::close_flag_streams`] is called.
    pub fn flag_streams_closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.flags.lifecycle.closing.subscribe()
    }

    /// Counts an open SSE stream; `None` when [`MAX_EVENT_STREAMS`] are open. Dropping the guard
    /// releases the slot.
    pub fn open_flag_stream(&self) -> Option<StreamGuard> {
        let runtime = self.flags.clone();
        let open = runtime.lifecycle.streams.fetch_add(1, Ordering::AcqRel);
        if open >= MAX_EVENT_STREAMS {
            runtime.lifecycle.streams.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(StreamGuard { runtime })
    }

    // ---- scheduled changes -------------------------------------------------------------------

    pub async fn schedule_flag_change(
        &self,
        ctx: &RequestContext,
        set: &crate::flags::FlagSetRef<'_>,
        flag_key: &str,
        req: ScheduleFlagChange,
    ) -> AppResult<FlagSchedule> {
        if !req.patch.is_object() || req.patch.as_object().is_some_and(Map::is_empty) {
            return Err(AppError::invalid(
                "patch",
                "must be a non-empty JSON object: a merge patch of the flag, e.g. {\"state\": \"DISABLED\"}",
            ));
        }
        let flag = signalbox_domain::validate::require_text("flag", flag_key, 200)?;
        let due = DateTime::parse_from_rfc3339(req.at.trim())
            .map_err(|e| {
                let shown: String = req.at.chars().take(64).collect();
                AppError::invalid("at", format!("{shown:?} is not an RFC 3339 time ({e}); write e.g. 2026-12-01T09:00:00Z"))
            })?
            .with_timezone(&Utc);
        let now = self.flags_now();
        if due <= now {
            return Err(AppError::invalid("at", format!("{} is not in the future (now is {}); pick a later time", stamp(due), stamp(now))));
        }
        if due > now + Duration::days(MAX_SCHEDULE_DAYS) {
            return Err(AppError::invalid("at", format!("{} is more than {MAX_SCHEDULE_DAYS} days ahead", stamp(due))));
        }
        let reason = match req.reason.or_else(|| ctx.reason.clone()) {
            Some(r) => Some(signalbox_domain::validate::require_text("reason", &r, 2000)?),
            None => None,
        };
        let located = self.locate_flag_set(set).await?;
        ctx.actor.require(Permission::ManageFlags, &located.scopes)?;
        let mut m = Mutation::begin(self, ctx).await?;
        m.now = now;
        m.set_reason(reason.clone());
        // The patch must apply to the flag as it is now (typos are caught today, not on Thursday).
        let current: Option<Versioned<FlagSetRecord>> = m.find(Kind::FlagSet, &located.key).await?;
        let document = current.as_ref().map(|c| c.value.document.clone()).unwrap_or_else(|| serde_json::json!({"flags": {}}));
        let flag_existed = flags_of(&document).contains_key(&flag);
        let mut patched = document.clone();
        apply_patch(&mut patched, &flag, &req.patch);
        validate_document(&patched).map_err(|e| prefix_fields(e, "patch"))?;
        let freezes = self
            .flag_freezes(&mut Reader::Tx(&mut m), &located.environment.id, located.service.as_ref().map(|s| s.id.as_str()), due)
            .await?;
        if !freezes.is_empty() {
            let names: Vec<String> = freezes.iter().map(|c| c.reason.clone()).collect();
            return Err(AppError::invalid(
                "at",
                format!(
                    "{} falls inside a freeze for {}: {}; pick a time outside it",
                    stamp(due),
                    where_text(&located.environment, located.service.as_ref()),
                    names.join("; ")
                ),
            ));
        }
        let schedule = FlagSchedule {
            id: new_id(Kind::FlagSchedule),
            set_key: located.key.clone(),
            environment_id: located.environment.id.clone(),
            environment: located.environment.name.clone(),
            service_id: located.service.as_ref().map(|s| s.id.clone()),
            service: located.service.as_ref().map(|s| s.name.clone()),
            flag,
            patch: req.patch,
            due,
            created_by: ctx.actor.username.clone(),
            created_at: now,
            reason,
            state: "pending".into(),
            base_revision: current.as_ref().map(|c| c.version),
            flag_existed,
            outcome: None,
            settled_at: None,
            settled_by: None,
            revision: None,
        };
        m.insert("flag_schedule.create", Kind::FlagSchedule, &schedule.id.clone(), schedule_placement(&schedule), &schedule).await?;
        plan_job(&mut m, JOB_FLAG_CHANGE, &schedule.id, due).await?;
        m.commit(201, &schedule).await?;
        Ok(schedule)
    }

    /// Scheduled changes, soonest first; `environment` (id or name), `state` and `flag` narrow the list.
    pub async fn list_flag_schedules(
        &self,
        ctx: &RequestContext,
        environment: Option<&str>,
        state: Option<&str>,
        flag: Option<&str>,
    ) -> AppResult<Vec<FlagSchedule>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        if let Some(s) = state {
            if !["pending", "applied", "skipped", "failed", "cancelled"].contains(&s) {
                return Err(AppError::invalid("state", "must be one of pending, applied, skipped, failed or cancelled"));
            }
        }
        let mut query = ListQuery::all(Kind::FlagSchedule);
        if let Some(env) = environment {
            let located = self.locate_flag_set(&crate::flags::FlagSetRef { environment: env, service: None }).await?;
            query = query.with_parent(located.environment.id);
        }
        query.state = state.map(str::to_string);
        query.limit = 1000;
        let mut out: Vec<FlagSchedule> = Vec::new();
        loop {
            let page = self.store.list(&query).await?;
            for r in &page.items {
                out.push(decode(r)?.value);
            }
            match page.next_after_seq {
                Some(seq) => query.after_seq = Some(seq),
                None => break,
            }
        }
        if let Some(flag) = flag {
            out.retain(|s| s.flag == flag);
        }
        out.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        Ok(out)
    }

    pub async fn get_flag_schedule(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<FlagSchedule>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let record = self.store.get(Kind::FlagSchedule, id).await?.ok_or_else(|| AppError::not_found(Kind::FlagSchedule, id))?;
        decode(&record)
    }

    /// Cancels a pending scheduled change: the schedule and its job are settled together, audited.
    pub async fn cancel_flag_schedule(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: CancelFlagSchedule,
    ) -> AppResult<Versioned<FlagSchedule>> {
        let current = self.get_flag_schedule(ctx, id).await?;
        let mut scopes = match &current.value.service_id {
            Some(s) => match self.store.get(Kind::Service, s).await? {
                Some(r) => crate::catalog::service_scopes(&decode::<Service>(&r)?.value),
                None => ResourceScopes::organization(),
            },
            None => ResourceScopes::organization(),
        };
        scopes = scopes.with(Scope::Environment(current.value.environment_id.clone()));
        ctx.actor.require(Permission::ManageFlags, &scopes)?;
        let mut m = Mutation::begin(self, ctx).await?;
        m.now = self.flags_now();
        if req.reason.is_some() {
            m.set_reason(req.reason.clone());
        }
        let current: Versioned<FlagSchedule> = m.get(Kind::FlagSchedule, id).await?;
        if current.value.state != "pending" {
            return Err(AppError::Conflict {
                code: "schedule-settled",
                detail: format!(
                    "scheduled change {id} is already {} ({}); only a pending change can be cancelled",
                    current.value.state,
                    current.value.outcome.clone().unwrap_or_default()
                ),
            });
        }
        let by = ctx.actor.username.clone();
        let outcome = match &req.reason {
            Some(r) => format!("cancelled by {by}: {r}"),
            None => format!("cancelled by {by}"),
        };
        let mut next = current.value.clone();
        next.state = "cancelled".into();
        next.outcome = Some(outcome.clone());
        next.settled_at = Some(m.now);
        next.settled_by = Some(by);
        // Settle the job first (the order the scheduler's firing takes: job, then the schedule, so
        // the two never wait on each other's rows): a replica firing it right now makes this
        // update lose the race (412), and the change is applied or skipped as it fires.
        if let Some(job) = m.find::<Job>(Kind::Job, &job_key(JOB_FLAG_CHANGE, id)).await? {
            if job.value.state == "pending" {
                let mut done = job.value.clone();
                done.state = "done".into();
                done.outcome = Some(outcome);
                m.update("job.cancel", Kind::Job, &done.id.clone(), crate::scheduler::placement(&done), &job, &done).await?;
            }
        }
        let version = m.update("flag_schedule.cancel", Kind::FlagSchedule, id, schedule_placement(&next), &current, &next).await?;
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        Ok(out)
    }

    /// The effect of a `flag.change` job, inside the job's transaction (see `scheduler::fire`).
    pub(crate) async fn fire_flag_change(&self, m: &mut Mutation<'_>, schedule_id: &str, job_reason: &str) -> AppResult<()> {
        let Some(current) = m.find::<FlagSchedule>(Kind::FlagSchedule, schedule_id).await? else {
            tracing::warn!(schedule = schedule_id, "a flag.change job names no scheduled change; nothing to do");
            return Ok(());
        };
        if current.value.state != "pending" {
            return Ok(());
        }
        let s = current.value.clone();
        let now = m.now;
        let author_reason = match &s.reason {
            Some(r) => format!("scheduled by {} at {}: {r}", s.created_by, stamp(s.created_at)),
            None => format!("scheduled by {} at {}", s.created_by, stamp(s.created_at)),
        };
        let environment: Environment = m.get(Kind::Environment, &s.environment_id).await?.value;
        let service: Option<Service> = match &s.service_id {
            Some(id) => m.find(Kind::Service, id).await?.map(|v| v.value),
            None => None,
        };
        let freezes = self.flag_freezes(&mut Reader::Tx(m), &s.environment_id, s.service_id.as_deref(), now).await?;
        let (state, outcome, revision) = if !freezes.is_empty() {
            let named: Vec<String> = freezes.iter().map(|c| format!("{} ({})", c.entry_id.clone().unwrap_or_default(), c.reason)).collect();
            (
                "skipped",
                format!(
                    "blocked by freeze {}: not applied at {}; schedule it again after the freeze ({job_reason})",
                    named.join("; "),
                    stamp(now)
                ),
                None,
            )
        } else {
            let document: Option<Versioned<FlagSetRecord>> = m.find(Kind::FlagSet, &s.set_key).await?;
            let exists_now = document.as_ref().is_some_and(|d| flags_of(&d.value.document).contains_key(&s.flag));
            if s.flag_existed && !exists_now {
                (
                    "failed",
                    format!(
                        "flag {} was removed from {} after the change was scheduled (at revision {}); nothing applied",
                        s.flag,
                        where_text(&environment, service.as_ref()),
                        s.base_revision.unwrap_or(0)
                    ),
                    None,
                )
            } else {
                let located = Located {
                    key: s.set_key.clone(),
                    scopes: ResourceScopes::organization(),
                    environment: environment.clone(),
                    service: service.clone(),
                };
                let (flag, patch) = (s.flag.clone(), s.patch.clone());
                let apply = move |current: Option<&Value>| {
                    let mut document = current.cloned().unwrap_or_else(|| serde_json::json!({"flags": {}}));
                    apply_patch(&mut document, &flag, &patch);
                    Ok(validate_document(&document)?.1)
                };
                let reason = format!("scheduled change {} of {} ({author_reason})", s.id, s.flag);
                m.set_reason(Some(format!("{reason}; {job_reason}")));
                match App::write_flag_set_in(m, &s.created_by, Some(reason), &located, None, apply, None).await {
                    Ok(write) => match write.changed {
                        Some((_, view)) => {
                            ("applied", format!("applied as revision {} at {}", view.version, stamp(now)), Some(view.version))
                        }
                        None => {
                            ("applied", format!("the flag was already in the scheduled state at {}; no new revision", stamp(now)), None)
                        }
                    },
                    Err(AppError::Invalid(errors)) => {
                        let list: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
                        (
                            "failed",
                            format!("the patch no longer applies to the flag as it is now: {}; nothing applied", list.join("; ")),
                            None,
                        )
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        m.set_reason(Some(outcome.clone()));
        let mut next = s;
        next.state = state.into();
        next.outcome = Some(outcome);
        next.settled_at = Some(now);
        next.settled_by = Some("system".into());
        next.revision = revision;
        let action = match state {
            "applied" => "flag_schedule.apply",
            "skipped" => "flag_schedule.skip",
            _ => "flag_schedule.fail",
        };
        m.update(action, Kind::FlagSchedule, &next.id.clone(), schedule_placement(&next), &current, &next).await?;
        Ok(())
    }

    // ---- counters ----------------------------------------------------------------------------

    /// Writes the evaluation counts gathered since the last flush (one transaction, one stats
    /// record and audit entry per set with new counts). Returns how many sets were written.
    /// On failure the counts are kept for the next flush.
    pub async fn flush_flag_stats(&self) -> AppResult<usize> {
        let lifecycle = &self.flags.lifecycle;
        for snapshot in self.flags.current().values() {
            lifecycle.add_pending(snapshot, snapshot.counters.drain());
        }
        let retired: Vec<Arc<FlagSnapshot>> = lifecycle.retired.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
        let mut keep = Vec::new();
        for snapshot in retired {
            lifecycle.add_pending(&snapshot, snapshot.counters.drain());
            // Someone still evaluating against it may count once more: drain it next time too.
            if Arc::strong_count(&snapshot) > 1 {
                keep.push(snapshot);
            }
        }
        if !keep.is_empty() {
            if let Ok(mut r) = lifecycle.retired.lock() {
                r.extend(keep);
            }
        }
        let pending: HashMap<String, PendingSet> = lifecycle.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        if pending.is_empty() {
            return Ok(0);
        }
        let mut result = Err(AppError::Internal("not attempted".into()));
        for _ in 0..3 {
            result = self.write_stats(&pending).await;
            match &result {
                Err(AppError::PreconditionFailed { .. }) | Err(AppError::Conflict { code: "duplicate", .. }) => continue,
                _ => break,
            }
        }
        if result.is_err() {
            if let Ok(mut p) = lifecycle.pending.lock() {
                for (key, set) in pending {
                    let into = p.entry(key).or_insert_with(|| PendingSet { flags: BTreeMap::new(), ..set.clone() });
                    for (flag, delta) in &set.flags {
                        merge_pending(into.flags.entry(flag.clone()).or_default(), delta);
                    }
                }
            }
        }
        result
    }

    async fn write_stats(&self, pending: &HashMap<String, PendingSet>) -> AppResult<usize> {
        let ctx = RequestContext::system();
        let mut m = Mutation::begin(self, &ctx).await?;
        m.now = self.flags_now();
        m.set_reason(Some("flag evaluation counters flushed".into()));
        let mut keys: Vec<&String> = pending.keys().collect();
        keys.sort();
        for key in &keys {
            let set = &pending[*key];
            let existing: Option<Versioned<FlagStatsRecord>> = m.find(Kind::FlagSet, &stats_key(key)).await?;
            let mut next = existing.as_ref().map(|e| e.value.clone()).unwrap_or_else(|| FlagStatsRecord {
                id: new_id(Kind::FlagSet),
                set_key: (*key).clone(),
                environment_id: set.environment_id.clone(),
                service_id: set.service_id.clone(),
                since: m.now,
                updated_at: m.now,
                flags: BTreeMap::new(),
            });
            next.updated_at = m.now;
            for (flag, delta) in &set.flags {
                let stat = next.flags.entry(flag.clone()).or_default();
                for (variant, n) in &delta.variants {
                    *stat.variants.entry(variant.clone()).or_default() += n;
                    stat.evaluations += n;
                }
                stat.no_variant += delta.no_variant;
                stat.evaluations += delta.no_variant;
                if let Some(t) = Utc.timestamp_opt(delta.last, 0).single().filter(|_| delta.last > 0) {
                    stat.last_evaluated = Some(stat.last_evaluated.map_or(t, |old| old.max(t)));
                }
            }
            let place = Placement { key: Some(stats_key(key)), parent: Some(set.environment_id.clone()), state: Some("stats".into()) };
            // The audit entry says what this flush added, in totals, not the whole record: it
            // stays a few hundred bytes whatever the number of flags.
            let added: u64 = set.flags.values().map(|d| d.no_variant + d.variants.values().sum::<u64>()).sum();
            let summary = |record: &FlagStatsRecord| {
                serde_json::json!({
                    "set_key": record.set_key,
                    "flags": record.flags.len(),
                    "evaluations": record.flags.values().map(|f| f.evaluations).sum::<u64>(),
                })
            };
            let mut after = summary(&next);
            after["added_evaluations"] = Value::from(added);
            after["flags_evaluated"] = Value::from(set.flags.len());
            match &existing {
                Some(e) => m.update("flag_stats.flush", Kind::FlagSet, &next.id.clone(), place, e, &next).await?,
                None => m.insert("flag_stats.flush", Kind::FlagSet, &next.id.clone(), place, &next).await?,
            };
            m.summarize_last(existing.as_ref().map(|e| summary(&e.value)), Some(after));
        }
        m.commit(200, &keys.len()).await?;
        Ok(keys.len())
    }

    /// The stored counters of an environment's sets (plus this process's unflushed last-evaluated times).
    pub async fn flag_stats(&self, ctx: &RequestContext, environment: &str) -> AppResult<Vec<FlagStatsRecord>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let located = self.locate_flag_set(&crate::flags::FlagSetRef { environment, service: None }).await?;
        let mut query = ListQuery::all(Kind::FlagSet).with_parent(located.environment.id);
        query.state = Some("stats".into());
        self.store.list(&query).await?.items.iter().map(|r| decode(r).map(|v| v.value)).collect()
    }

    // ---- the stale report --------------------------------------------------------------------

    pub async fn stale_flags(
        &self,
        ctx: &RequestContext,
        environment: Option<&str>,
        thresholds: StaleThresholds,
    ) -> AppResult<StaleReport> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        for (field, value) in [
            ("unchanged_days", thresholds.unchanged_days),
            ("not_evaluated_days", thresholds.not_evaluated_days),
            ("rolled_out_days", thresholds.rolled_out_days),
        ] {
            if !(0..=3650).contains(&value) {
                return Err(AppError::invalid(field, "must be a whole number of days from 0 (every flag) to 3650"));
            }
        }
        let environment_id = match environment {
            Some(env) => Some(self.locate_flag_set(&crate::flags::FlagSetRef { environment: env, service: None }).await?.environment.id),
            None => None,
        };
        let now = self.flags_now();
        let mut query = ListQuery::all(Kind::FlagSet);
        query.state = Some("current".into());
        if let Some(env) = &environment_id {
            query = query.with_parent(env.clone());
        }
        let sets: Vec<FlagSetRecord> =
            self.store.list(&query).await?.items.iter().map(|r| decode(r).map(|v| v.value)).collect::<AppResult<_>>()?;
        let snapshots = self.flags.current();
        let mut report = StaleReport { now, thresholds, checked: 0, stale: vec![] };
        for set in sets {
            let key = set_key(&set.environment_id, set.service_id.as_deref());
            let Ok(parsed) = FlagSet::from_json(&set.document) else { continue };
            // History per flag from the revisions: created (first added) and last changed.
            let mut rq = ListQuery::all(Kind::FlagSet).with_parent(set.id.clone());
            rq.state = Some("revision".into());
            rq.limit = 1000;
            let mut revisions: Vec<FlagSetRevision> = Vec::new();
            loop {
                let page = self.store.list(&rq).await?;
                for r in &page.items {
                    revisions.push(decode(r)?.value);
                }
                match page.next_after_seq {
                    Some(seq) => rq.after_seq = Some(seq),
                    None => break,
                }
            }
            revisions.sort_by_key(|r| r.revision);
            let mut created: HashMap<&str, DateTime<Utc>> = HashMap::new();
            let mut changed: HashMap<&str, DateTime<Utc>> = HashMap::new();
            for rev in &revisions {
                for c in &rev.changes {
                    if c.change == "added" {
                        created.insert(c.flag.as_str(), rev.created_at);
                    }
                    changed.insert(c.flag.as_str(), rev.created_at);
                }
            }
            let stats: Option<FlagStatsRecord> = match self.store.get(Kind::FlagSet, &stats_key(&key)).await? {
                Some(r) => Some(decode(&r)?.value),
                None => None,
            };
            let mut live: HashMap<&str, i64> = HashMap::new();
            if let Some(snapshot) = snapshots.get(&key) {
                live.extend(snapshot.counters.last_evaluated());
            }
            let pending_last: HashMap<String, i64> = self
                .flags
                .lifecycle
                .pending
                .lock()
                .map(|p| p.get(&key).map(|s| s.flags.iter().map(|(f, d)| (f.clone(), d.last)).collect()).unwrap_or_default())
                .unwrap_or_default();
            let infos = crate::flags::flag_infos(&parsed);
            for info in infos {
                report.checked += 1;
                let Some(flag) = parsed.flags.get(&info.key) else { continue };
                let created_at = created.get(info.key.as_str()).copied().or(Some(set.updated_at));
                let changed_at = changed.get(info.key.as_str()).copied().or(created_at);
                let stat = stats.as_ref().and_then(|s| s.flags.get(&info.key));
                let unflushed = live.get(info.key.as_str()).copied().into_iter().chain(pending_last.get(&info.key).copied()).max();
                let last_evaluated = [stat.and_then(|s| s.last_evaluated), unflushed.and_then(|t| Utc.timestamp_opt(t, 0).single())]
                    .into_iter()
                    .flatten()
                    .max();
                let days = |t: DateTime<Utc>| (now - t).num_days();
                let mut reasons = Vec::new();
                let since_change = changed_at.map(days).unwrap_or(0);
                if flag.state == FlagState::Enabled {
                    if let Some(only) =
                        served_variants(flag, parsed.evaluators.as_ref()).filter(|v| v.len() == 1).and_then(|v| v.into_iter().next())
                    {
                        if since_change >= thresholds.rolled_out_days {
                            reasons.push(StaleReason {
                                code: "fully_rolled_out".into(),
                                message: format!(
                                    "serves variant {only:?} to everyone and has not changed for {since_change} days (threshold {}); remove the flag and keep that code path",
                                    thresholds.rolled_out_days
                                ),
                                days: since_change,
                                threshold_days: thresholds.rolled_out_days,
                                variant: Some(only),
                                since: changed_at,
                            });
                        }
                    }
                }
                if info.flag_type.as_deref() != Some("permission") && since_change >= thresholds.unchanged_days {
                    reasons.push(StaleReason {
                        code: "unchanged".into(),
                        message: format!("has not changed for {since_change} days (threshold {})", thresholds.unchanged_days),
                        days: since_change,
                        threshold_days: thresholds.unchanged_days,
                        variant: None,
                        since: changed_at,
                    });
                }
                let idle_since = last_evaluated.or(created_at);
                let idle = idle_since.map(days).unwrap_or(0);
                if idle >= thresholds.not_evaluated_days {
                    let message = match last_evaluated {
                        Some(t) => format!(
                            "last evaluated {idle} days ago ({}; threshold {}); nothing reads it any more",
                            stamp(t),
                            thresholds.not_evaluated_days
                        ),
                        None => format!(
                            "never evaluated in the {idle} days since it was created (threshold {}); nothing reads it",
                            thresholds.not_evaluated_days
                        ),
                    };
                    reasons.push(StaleReason {
                        code: "not_evaluated".into(),
                        message,
                        days: idle,
                        threshold_days: thresholds.not_evaluated_days,
                        variant: None,
                        since: idle_since,
                    });
                }
                if let (Some(lifetime), Some(created_at)) = (info.expected_lifetime_days, created_at) {
                    let age = days(created_at);
                    if age > lifetime {
                        reasons.push(StaleReason {
                            code: "past_expected_lifetime".into(),
                            message: format!(
                                "created {age} days ago; a {} flag is expected to live {lifetime} days",
                                info.flag_type.as_deref().unwrap_or("flag of this kind")
                            ),
                            days: age,
                            threshold_days: lifetime,
                            variant: None,
                            since: Some(created_at),
                        });
                    }
                }
                if !reasons.is_empty() {
                    report.stale.push(StaleFlag {
                        environment: set.environment.clone(),
                        service: set.service.clone(),
                        flag: info.key.clone(),
                        flag_type: info.flag_type.clone(),
                        owner: info.owner.clone(),
                        state: info.state.clone(),
                        created_at,
                        last_changed_at: changed_at,
                        last_evaluated_at: last_evaluated,
                        evaluations: stat.map(|s| s.evaluations).unwrap_or(0),
                        reasons,
                    });
                }
            }
        }
        report.stale.sort_by(|a, b| (&a.environment, &a.service, &a.flag).cmp(&(&b.environment, &b.service, &b.flag)));
        Ok(report)
    }
}

/// Releases an SSE stream slot when dropped.
pub struct StreamGuard {
    runtime: Arc<crate::flags::FlagRuntime>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.runtime.lifecycle.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

fn apply_patch(document: &mut Value, flag: &str, patch: &Value) {
    edit_flag(document, flag, |current| {
        let mut current = current.unwrap_or_else(|| Value::Object(Map::new()));
        merge_patch(&mut current, patch);
        Some(current)
    });
}

fn where_text(environment: &Environment, service: Option<&Service>) -> String {
    match service {
        Some(s) => format!("{} in {}", s.name, environment.name),
        None => environment.name.clone(),
    }
}

fn prefix_fields(e: AppError, prefix: &str) -> AppError {
    match e {
        AppError::Invalid(errors) => AppError::Invalid(
            errors
                .into_iter()
                .map(|mut f| {
                    f.field = format!("{prefix}: {}", f.field);
                    f
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(doc: Value) -> (Flag, Option<Map<String, Value>>) {
        let set = FlagSet::from_json(&serde_json::json!({"flags": {"f": doc}})).expect("valid");
        (set.flags["f"].clone(), set.evaluators.clone())
    }

    #[test]
    fn served_variants_reads_static_if_and_fractional() {
        let (f, e) = flag(serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}));
        assert_eq!(served_variants(&f, e.as_ref()), Some(BTreeSet::from(["on".to_string()])));
        let (f, e) = flag(serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"fractional": [["on", 100], ["off", 0]]}}));
        assert_eq!(served_variants(&f, e.as_ref()), Some(BTreeSet::from(["on".to_string()])));
        let (f, e) = flag(serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"fractional": [["on", 5], ["off", 95]]}}));
        assert_eq!(served_variants(&f, e.as_ref()).map(|v| v.len()), Some(2));
        let (f, e) = flag(serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "a"}, 1]}, "on", null]}}));
        assert_eq!(served_variants(&f, e.as_ref()).map(|v| v.len()), Some(2));
        let (f, e) = flag(serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "a"}, 1]}, "on", {"fractional": [["on", 1]]}]}}));
        assert_eq!(served_variants(&f, e.as_ref()), Some(BTreeSet::from(["on".to_string()])));
        let (f, e) = flag(serde_json::json!({"state": "ENABLED", "variants": {"on": true, "off": false},
            "targeting": {"var": "x"}}));
        assert_eq!(served_variants(&f, e.as_ref()), None);
    }

    #[test]
    fn counters_count_per_variant_and_drain() {
        let set = FlagSet::from_json(&serde_json::json!({"flags": {
            "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "b": {"state": "DISABLED", "variants": {"x": "x"}, "defaultVariant": "x"}}}))
        .expect("valid");
        let counters = FlagCounters::for_set(&set);
        counters.record(0, Some("on"), 100);
        counters.record(0, Some("on"), 105);
        counters.record(0, Some("nope"), 103);
        counters.record(1, None, 99);
        counters.record(7, Some("on"), 1);
        let drained: BTreeMap<String, PendingFlag> = counters.drain().into_iter().collect();
        assert_eq!(drained["a"].variants.get("on"), Some(&2));
        assert_eq!(drained["a"].no_variant, 1);
        assert_eq!(drained["a"].last, 105);
        assert_eq!(drained["b"].no_variant, 1);
        assert!(counters.drain().is_empty(), "a second drain has nothing new");
    }
}
