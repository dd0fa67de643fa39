//! The scheduler: the shared mechanism for work that must happen at a time, exactly once,
//! whatever the number of server replicas (issue 4; later controllers reuse it).
//!
//! **Jobs.** A job is a stored record (`Kind::Job`) with a kind (what to do), a subject, a due
//! time and a unique key (`<kind>:<subject>`: the idempotency key; planning the same job twice
//! finds the first). Jobs are planned in the same transaction as whatever makes them necessary
//! (a materialized departure plans its cut-off and its departure).
//!
//! **Exactly once.** A tick lists pending jobs that are due and fires each in its own
//! transaction: the job is first moved from `pending` to `done` with the version it was read
//! at (`UPDATE … WHERE version = $n`), then the job's effect is written, then everything commits
//! together with its audit entries. Two replicas firing the same job race on that row: on
//! PostgreSQL the second `UPDATE` waits for the first transaction, finds the version changed
//! and fails, so its whole transaction (effect included) rolls back; on SQLite writers are
//! serialized anyway. A crash before commit leaves the job pending: it fires on the next tick.
//!
//! **Late jobs.** A job due while no server ran fires on the first tick after start-up; its
//! audit entries say how late it is and why (`reason`).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use signalbox_calendar::train::{plan_carry_over, BoardedItem, DeparturePhase, TrainCadence};
use signalbox_domain::model::{Kind, Release};
use signalbox_store::ListQuery;
use utoipa::ToSchema;

use crate::calendar::{DepartureRecord, Train, TrainItem};
use crate::governance::Reader;
use crate::mutation::{decode, Mutation, Placement};
use crate::{new_id, App, AppError, AppResult, RequestContext, Versioned};

/// Freeze a departure at its cut-off.
pub const JOB_CUTOFF: &str = "departure.cutoff";
/// Let a departure leave, carrying over what is not ready.
pub const JOB_DEPART: &str = "departure.depart";
/// End a booking whose time range is over (subject: `<entry id>@v<entry version>`).
pub const JOB_BOOKING_EXPIRE: &str = "booking.expire";
/// How far ahead departures are materialized.
pub const MATERIALIZE_DAYS: i64 = 35;
/// A job fired later than this after its due time says so in its audit reason.
pub const LATE_AFTER_SECONDS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub kind: String,
    /// The record the job acts on (a departure id).
    pub subject: String,
    pub due: DateTime<Utc>,
    /// `pending` or `done`.
    pub state: String,
    #[serde(default)]
    pub fired_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub late_seconds: Option<i64>,
    #[serde(default)]
    pub outcome: Option<String>,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TickReport {
    /// Departures materialized ahead of time.
    pub materialized: Vec<String>,
    /// Jobs this tick fired (`<kind>:<subject>`).
    pub fired: Vec<String>,
    /// Jobs another replica fired first.
    pub lost_races: u32,
}

pub fn job_key(kind: &str, subject: &str) -> String {
    format!("{kind}:{subject}")
}

pub(crate) fn placement(job: &Job) -> Placement {
    Placement { key: Some(job_key(&job.kind, &job.subject)), parent: Some(job.subject.clone()), state: Some(job.state.clone()) }
}

/// Plans a job unless one with the same key exists (idempotent).
pub(crate) async fn plan_job(m: &mut Mutation<'_>, kind: &str, subject: &str, due: DateTime<Utc>) -> AppResult<()> {
    let job = Job {
        id: new_id(Kind::Job),
        kind: kind.into(),
        subject: subject.into(),
        due,
        state: "pending".into(),
        fired_at: None,
        late_seconds: None,
        outcome: None,
    };
    // The insert is the existence check: a job with the key makes it a no-op (nothing written,
    // nothing audited, the transaction still usable), one round trip instead of a read first.
    match m.insert("job.plan", Kind::Job, &job.id, placement(&job), &job).await {
        Ok(_) | Err(AppError::Conflict { code: "duplicate", .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A lost race or a concurrent materialization: another replica did it; not an error.
fn lost_race(e: &AppError) -> bool {
    matches!(
        e,
        AppError::PreconditionFailed { .. }
            | AppError::Conflict { code: "duplicate", .. }
            | AppError::Conflict { code: "idempotency-key-in-use", .. }
    )
}

impl App {
    /// One pass of the scheduler at `now`: materialize departures ahead of time, then fire every
    /// due job once. Safe to run concurrently on any number of replicas.
    pub async fn scheduler_tick(&self, now: DateTime<Utc>) -> AppResult<TickReport> {
        let ctx = RequestContext::system();
        let mut report = TickReport::default();
        let trains = self.store.list(&ListQuery::all(Kind::Train)).await?.items;
        for record in &trains {
            let train: Train = decode(record)?.value;
            let Ok(cadence) = TrainCadence::from_draft(&train.cadence) else { continue };
            let upcoming: Vec<_> =
                cadence.next_departures(now, 10).into_iter().filter(|d| d.departure <= now + Duration::days(MATERIALIZE_DAYS)).collect();
            for times in upcoming {
                if self.store.get(Kind::Departure, &crate::calendar::departure_key(&train.id, times.departure)).await?.is_some() {
                    continue;
                }
                let mut m = Mutation::begin(self, &ctx).await?;
                m.now = now;
                m.set_reason(Some(format!("materialized ahead of time for train {}", train.name)));
                let result = async {
                    if m.find::<DepartureRecord>(Kind::Departure, &crate::calendar::departure_key(&train.id, times.departure))
                        .await?
                        .is_some()
                    {
                        // Another replica (or a boarding) materialized it since we looked.
                        return Ok(None);
                    }
                    let dep = App::ensure_departure(&mut m, &train, &times).await?;
                    if m.is_unchanged() {
                        // Committed by another replica between our two reads (PostgreSQL's
                        // read committed gives each statement a fresh snapshot).
                        return Ok(None);
                    }
                    m.commit(200, &dep.value.id).await?;
                    Ok::<_, AppError>(Some(dep.value.id))
                }
                .await;
                match result {
                    Ok(Some(id)) => report.materialized.push(id),
                    Ok(None) => report.lost_races += 1,
                    Err(e) if lost_race(&e) => report.lost_races += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        let mut due: Vec<Job> = Vec::new();
        let mut q = ListQuery::all(Kind::Job).with_time_at_most("due", now);
        q.state = Some("pending".into());
        q.limit = 1000;
        loop {
            let page = self.store.list(&q).await?;
            for r in &page.items {
                let job: Job = decode(r)?.value;
                // Rollout and auto-promotion jobs belong to the rollout controller's faster loop.
                if job.due <= now && !crate::rollouts::is_controller_job(&job.kind) {
                    due.push(job);
                }
            }
            match page.next_after_seq {
                Some(seq) => q.after_seq = Some(seq),
                None => break,
            }
        }
        due.sort_by(|a, b| (a.due, &a.id).cmp(&(b.due, &b.id)));
        for job in due {
            match self.fire(&ctx, &job.id, now).await {
                Ok(Some(name)) => report.fired.push(name),
                Ok(None) => report.lost_races += 1,
                Err(e) if lost_race(&e) => report.lost_races += 1,
                Err(e) => {
                    tracing::warn!(job = %job.id, kind = %job.kind, error = %e, "scheduled job failed; it stays pending and is retried");
                }
            }
        }
        Ok(report)
    }

    /// Claims and runs one job in one transaction. `None` when it was no longer pending.
    async fn fire(&self, ctx: &RequestContext, job_id: &str, now: DateTime<Utc>) -> AppResult<Option<String>> {
        let mut m = Mutation::begin(self, ctx).await?;
        m.now = now;
        let current: Versioned<Job> = m.get(Kind::Job, job_id).await?;
        if current.value.state != "pending" {
            return Ok(None);
        }
        let late = (now - current.value.due).num_seconds();
        let reason = if late > LATE_AFTER_SECONDS {
            format!(
                "{} due at {} fired {}s late at {}: the scheduler was not running then",
                current.value.kind,
                stamp(current.value.due),
                late,
                stamp(now)
            )
        } else {
            format!("{} due at {}", current.value.kind, stamp(current.value.due))
        };
        m.set_reason(Some(reason.clone()));
        let mut done = current.value.clone();
        done.state = "done".into();
        done.fired_at = Some(now);
        done.late_seconds = Some(late.max(0));
        done.outcome = Some(reason.clone());
        // The claim: fails if another replica claimed it since we read it.
        m.update("job.fire", Kind::Job, job_id, placement(&done), &current, &done).await?;
        match current.value.kind.as_str() {
            JOB_CUTOFF => App::cut_off(&mut m, &current.value.subject, &reason).await?,
            JOB_DEPART => self.depart(&mut m, &current.value.subject, &reason).await?,
            JOB_BOOKING_EXPIRE => App::expire_booking(&mut m, &current.value.subject).await?,
            crate::flag_lifecycle::JOB_FLAG_CHANGE => self.fire_flag_change(&mut m, &current.value.subject, &reason).await?,
            other => tracing::warn!(kind = other, "no handler for scheduled job kind; marked done"),
        }
        m.commit(200, &done).await?;
        Ok(Some(job_key(&current.value.kind, &current.value.subject)))
    }

    async fn cut_off(m: &mut Mutation<'_>, departure: &str, reason: &str) -> AppResult<()> {
        let dep: Versioned<DepartureRecord> = m.get(Kind::Departure, departure).await?;
        if dep.value.phase != DeparturePhase::Boarding {
            return Ok(());
        }
        let mut next = dep.value.clone();
        next.phase = DeparturePhase::Frozen;
        next.notes.push(format!("frozen at the cut-off ({reason})"));
        save_departure(m, "departure.cutoff", &dep, &next).await
    }

    /// A departure leaves with the items that are marked ready and whose gates pass for every
    /// target environment of the train; the others are carried over with the failing rules.
    async fn depart(&self, m: &mut Mutation<'_>, departure: &str, reason: &str) -> AppResult<()> {
        let dep: Versioned<DepartureRecord> = m.get(Kind::Departure, departure).await?;
        if dep.value.phase == DeparturePhase::Departed {
            return Ok(());
        }
        let train: Train = m.get(Kind::Train, &dep.value.train_id).await?.value;
        let cadence = TrainCadence::from_draft(&train.cadence)?;
        let following = cadence.following(&dep.value.times);
        let release: Versioned<Release> = m.get(Kind::Release, &dep.value.release_id).await?;
        let mut boarded: Vec<BoardedItem> = Vec::with_capacity(dep.value.items.len());
        for item in &dep.value.items {
            let (failing_gates, failing_rules) = self.item_gate_failures(m, &release.value, item, &train.target_environments).await?;
            boarded.push(BoardedItem {
                id: item.id.clone(),
                ready: item.ready,
                blocker: item.blocker.clone(),
                failing_gates,
                failing_rules,
            });
        }
        let plan = plan_carry_over(&dep.value.times, &boarded, following.as_ref());
        let mut next = dep.value.clone();
        next.phase = DeparturePhase::Departed;
        next.items.retain(|i| plan.departing.contains(&i.id));
        next.carried_over = plan.carried_over.clone();
        next.notes.push(format!("departed with {} item(s), {} carried over ({reason})", plan.departing.len(), plan.carried_over.len()));
        for c in &plan.carried_over {
            next.notes.push(format!("{}: {}", c.id, c.reason));
        }
        if !plan.carried_over.is_empty() {
            // Announce what stays behind in the audit reason of the departure's writes.
            let held: Vec<String> = plan.carried_over.iter().map(|c| format!("{}: {}", c.id, c.reason)).collect();
            m.set_reason(Some(format!("{reason}; carried over: {}", held.join(" | "))));
            // Take the carried items out of this departure's release…
            let mut rel = release.value.clone();
            let carried: Vec<&String> = plan.carried_over.iter().map(|c| &c.id).collect();
            rel.components.retain(|c| !carried.contains(&&c.artifact_id));
            rel.change_ids.retain(|c| !carried.contains(&c));
            rel.content_digest = Release::compute_content_digest(&rel.components, &rel.change_ids);
            let place = Placement { key: Some(rel.key.clone()), parent: rel.domain_id.clone(), state: Some(rel.state.as_str().into()) };
            m.update("release.carry_over", Kind::Release, &rel.id.clone(), place, &release, &rel).await?;
        }
        save_departure(m, "departure.depart", &dep, &next).await?;
        // …and put them on the following departure, with the reason.
        if let Some(times) = following {
            if !plan.carried_over.is_empty() {
                let target = App::ensure_departure(m, &train, &times).await?;
                let items: Vec<TrainItem> = dep
                    .value
                    .items
                    .iter()
                    .filter_map(|i| {
                        let c = plan.carried_over.iter().find(|c| c.id == i.id)?;
                        // A person's "ready" mark travels with it; gates are evaluated again at the
                        // next departure.
                        Some(TrainItem { carried_from: Some(format!("{}: {}", dep.value.id, c.reason)), ..i.clone() })
                    })
                    .collect();
                App::add_items(m, &target, items).await?;
            }
        }
        Ok(())
    }

    /// The gate failures of one boarded item: the departure's release narrowed to that item
    /// alone (its component, or its change), evaluated for each target environment inside the
    /// departure's transaction. Release-wide rules (documents, sign-offs, smoke, soak) judge
    /// the departure's release, so they hold every item alike.
    async fn item_gate_failures(
        &self,
        m: &mut Mutation<'_>,
        release: &Release,
        item: &TrainItem,
        environments: &[String],
    ) -> AppResult<(Vec<String>, Vec<String>)> {
        let mut alone = release.clone();
        if item.item_kind == "artifact" {
            alone.components.retain(|c| c.artifact_id == item.id);
            alone.change_ids.clear();
        } else {
            alone.components.clear();
            alone.change_ids.retain(|c| c == &item.id);
        }
        alone.content_digest = Release::compute_content_digest(&alone.components, &alone.change_ids);
        let (mut sentences, mut rules) = (Vec::new(), Vec::new());
        let now = m.now;
        for env in environments {
            let decision = self.gate_decision(&mut Reader::Tx(m), &alone, env, now).await?;
            sentences.extend(decision.failure_reasons());
            for rule in decision.failing {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        Ok((sentences, rules))
    }
}

async fn save_departure(m: &mut Mutation<'_>, action: &str, current: &Versioned<DepartureRecord>, next: &DepartureRecord) -> AppResult<()> {
    let place = Placement {
        key: Some(crate::calendar::departure_key(&next.train_id, next.times.departure)),
        parent: Some(next.train_id.clone()),
        state: Some(crate::calendar::phase_name(next.phase).into()),
    };
    m.update(action, Kind::Departure, &next.id.clone(), place, current, next).await?;
    Ok(())
}

/// Runs [`App::scheduler_tick`] every `interval` until `stop` turns true; the first tick runs
/// at once, so work due while the server was down fires at start-up.
pub async fn run(app: App, interval: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match app.scheduler_tick(Utc::now()).await {
            Ok(report) if !report.fired.is_empty() || !report.materialized.is_empty() => {
                tracing::info!(fired = ?report.fired, materialized = report.materialized.len(), lost_races = report.lost_races, "scheduler tick");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "scheduler tick failed; retrying at the next one"),
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
