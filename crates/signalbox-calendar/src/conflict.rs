//! One conflict engine over freezes, release windows, bookings, maintenance windows, business
//! events, vendor releases, scheduled deployments and train departures, and release
//! dependencies (reference gaps 2, 4 and 13).
//!
//! The rules live in one place ([`check_with`], [`preview_with`]) and read their facts through
//! [`Facts`]. Two implementations answer those questions: [`ConflictIndex`] (time-sorted
//! interval sets per scope and kind, recurring entries pre-expanded over a horizon) and
//! [`NaiveScan`] (walk every entry, expand every series). The naive one is the oracle for the
//! property tests and the baseline of the benchmark.

use crate::model::{check_window, tier_name, CalendarEntry, EntryKind, FreezeEffect, Scope, Span, Target, Timing};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use signalbox_domain::model::Tier;
use signalbox_domain::validate::Invalid;
use std::collections::{BTreeMap, HashMap};
use utoipa::ToSchema;

/// Longest expected duration a check accepts: a week.
pub const MAX_CHECK_SECONDS: u32 = 7 * 86_400;
/// Most dependencies one check accepts.
pub const MAX_DEPENDENCIES: usize = 200;
/// Most freeze occurrences one preview expands.
pub const MAX_PREVIEW_OCCURRENCES: usize = 10_000;

/// What is planned on an environment and occupies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduledKind {
    Deployment,
    TrainDeparture,
}

/// A deployment (or a train departure's deployment) planned on an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduledDeployment {
    pub id: String,
    pub kind: ScheduledKind,
    #[serde(default)]
    pub release_id: Option<String>,
    pub target: Target,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Where a release stands, for dependency checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseStatus {
    pub release_id: String,
    #[serde(default)]
    pub released_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/calendar/check`: may this deployment run then?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckRequest {
    pub target: Target,
    pub start: DateTime<Utc>,
    pub expected_duration_seconds: u32,
    /// Who asks: their own bookings do not conflict. `None` conflicts with every booking.
    #[serde(default)]
    pub requester: Option<String>,
    /// The release being deployed: its own scheduled deployments do not conflict.
    #[serde(default)]
    pub release_id: Option<String>,
    /// Releases that must be released before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

impl CheckRequest {
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut errors = Invalid::default();
        if self.expected_duration_seconds > MAX_CHECK_SECONDS {
            errors.push(
                "expected_duration_seconds",
                format!("{} is longer than a week ({MAX_CHECK_SECONDS})", self.expected_duration_seconds),
            );
        }
        if self.depends_on.len() > MAX_DEPENDENCIES {
            errors.push("depends_on", format!("{} dependencies; at most {MAX_DEPENDENCIES}", self.depends_on.len()));
        }
        for (field, value) in [("target/service", &self.target.service), ("target/environment", &self.target.environment)] {
            if value.trim().is_empty() {
                errors.push(field, "must not be empty");
            }
        }
        errors.into_result()
    }

    fn end(&self) -> DateTime<Utc> {
        self.start + Duration::seconds(i64::from(self.expected_duration_seconds.max(1)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// The start falls inside a freeze.
    InsideFreeze,
    /// Runway: starts before a freeze but is expected to still run when it begins.
    RunsIntoFreeze,
    /// Release windows exist for this scope and none is open at the start.
    OutsideReleaseWindow,
    /// Starts inside a release window but is expected to run past its end.
    RunsPastReleaseWindow,
    /// Someone else holds a booking of the environment.
    EnvironmentBooked,
    /// Someone else asked to book the environment and awaits the owner's approval: tentative.
    EnvironmentBookingPending,
    /// Another deployment or train departure is scheduled on the same environment.
    EnvironmentBusy,
    /// A release this one depends on is neither released nor scheduled before it.
    DependencyNotReleased,
    /// A release this one depends on is scheduled at or after this start.
    DependencyScheduledLater,
    /// A release this one depends on is unknown.
    DependencyUnknown,
    /// A maintenance window overlaps.
    MaintenanceOverlap,
    /// A business event overlaps.
    BusinessEventOverlap,
    /// A vendor release overlaps.
    VendorReleaseOverlap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The deployment must not go ahead (break-glass is the only way through).
    Blocking,
    /// Worth knowing; does not stop the deployment.
    Warning,
}

/// One reason a deployment should not (or should carefully) run when planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub severity: Severity,
    /// A sentence for people, naming the entry, its times (UTC and local) and its reason.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// The conflicting occurrence or item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_effect: Option<FreezeEffect>,
}

/// What a new freeze would hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockedItemKind {
    Deployment,
    TrainDeparture,
    Booking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockedHow {
    /// It would start inside the freeze: it cannot start.
    CannotStart,
    /// It would be running when the freeze begins: the freeze's effect applies.
    RunningWhenFreezeBegins,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockedItem {
    pub item_kind: BlockedItemKind,
    pub item_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    pub item_start: DateTime<Utc>,
    pub item_end: DateTime<Utc>,
    pub freeze_start: DateTime<Utc>,
    pub freeze_end: DateTime<Utc>,
    pub how: BlockedHow,
    pub effect: FreezeEffect,
}

/// The questions the conflict rules ask. Entry and deployment handles are indices.
pub trait Facts {
    fn entry(&self, index: u32) -> &CalendarEntry;
    fn deployment(&self, index: u32) -> &ScheduledDeployment;
    /// Occurrences of entries of `kind` whose scope covers `target` and that overlap `[from, to)`.
    fn entry_spans(&self, kind: EntryKind, target: &Target, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<(u32, Span)>);
    /// Whether any entry of `kind` covers `target`, at any time.
    fn any_entry_covers(&self, kind: EntryKind, target: &Target) -> bool;
    /// Deployments on `environment` overlapping `[from, to)`.
    fn deployments_on(&self, environment: &str, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<u32>);
    /// Every deployment overlapping `[from, to)`.
    fn all_deployments(&self, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<u32>);
    /// Every booking occurrence overlapping `[from, to)`, whatever its scope.
    fn all_bookings(&self, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<(u32, Span)>);
    fn release(&self, release_id: &str) -> Option<&ReleaseStatus>;
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn describe(entry: &CalendarEntry, span: Span) -> String {
    let o = entry.occurrence(span);
    format!("{:?} ({} to {}, {} to {} {})", entry.title, stamp(span.start), stamp(span.end), o.local_start, o.local_end, o.zone)
}

/// Earliest occurrence per entry, in entry order, so each entry is reported once.
fn earliest_per_entry(spans: &[(u32, Span)]) -> BTreeMap<u32, Span> {
    let mut out: BTreeMap<u32, Span> = BTreeMap::new();
    for (index, span) in spans {
        out.entry(*index).and_modify(|s| *s = (*s).min(*span)).or_insert(*span);
    }
    out
}

/// The conflict rules, over any [`Facts`]. Results are sorted, so two implementations of the
/// facts give equal vectors.
pub fn check_with(facts: &impl Facts, request: &CheckRequest) -> Result<Vec<Conflict>, Invalid> {
    request.validate()?;
    let (start, end) = (request.start, request.end());
    let target = &request.target;
    let mut conflicts = Vec::new();
    let mut spans = Vec::new();

    facts.entry_spans(EntryKind::Freeze, target, start, end, &mut spans);
    for (index, span) in earliest_per_entry(&spans) {
        let entry = facts.entry(index);
        let effect = entry.freeze_effect.unwrap_or_default();
        let (kind, reason) = if span.start <= start {
            (ConflictKind::InsideFreeze, format!("starts inside freeze {}: {}", describe(entry, span), entry.reason))
        } else {
            (
                ConflictKind::RunsIntoFreeze,
                format!(
                    "expected to run until {}, but freeze {} begins before that (effect {:?}): {}",
                    stamp(end),
                    describe(entry, span),
                    effect,
                    entry.reason
                ),
            )
        };
        conflicts.push(Conflict {
            kind,
            severity: Severity::Blocking,
            reason,
            entry_id: Some(entry.id.clone()),
            item_id: None,
            start: Some(span.start),
            end: Some(span.end),
            freeze_effect: Some(effect),
        });
    }

    if facts.any_entry_covers(EntryKind::ReleaseWindow, target) {
        spans.clear();
        facts.entry_spans(EntryKind::ReleaseWindow, target, start, start + Duration::seconds(1), &mut spans);
        let open = spans.iter().filter(|(_, s)| s.start <= start).max_by_key(|(i, s)| (s.end, std::cmp::Reverse(*i)));
        match open {
            None => conflicts.push(Conflict {
                kind: ConflictKind::OutsideReleaseWindow,
                severity: Severity::Blocking,
                reason: format!(
                    "release windows exist for {} in {} and none is open at {}",
                    target.service,
                    target.environment,
                    stamp(start)
                ),
                entry_id: None,
                item_id: None,
                start: None,
                end: None,
                freeze_effect: None,
            }),
            Some((index, span)) if span.end < end => {
                let entry = facts.entry(*index);
                conflicts.push(Conflict {
                    kind: ConflictKind::RunsPastReleaseWindow,
                    severity: Severity::Blocking,
                    reason: format!("expected to run until {}, after release window {} closes", stamp(end), describe(entry, *span)),
                    entry_id: Some(entry.id.clone()),
                    item_id: None,
                    start: Some(span.start),
                    end: Some(span.end),
                    freeze_effect: None,
                });
            }
            Some(_) => {}
        }
    }

    spans.clear();
    facts.entry_spans(EntryKind::Booking, target, start, end, &mut spans);
    for (index, span) in earliest_per_entry(&spans) {
        let entry = facts.entry(index);
        if request.requester.as_deref() == Some(entry.owner.as_str()) {
            continue;
        }
        let (kind, severity, reason) = if entry.tentative {
            (
                ConflictKind::EnvironmentBookingPending,
                Severity::Warning,
                format!(
                    "tentatively booked by {} (awaiting the environment owner's approval): {}: {}",
                    entry.owner,
                    describe(entry, span),
                    entry.reason
                ),
            )
        } else {
            (
                ConflictKind::EnvironmentBooked,
                Severity::Blocking,
                format!("booked by {}: {}: {}", entry.owner, describe(entry, span), entry.reason),
            )
        };
        conflicts.push(Conflict {
            kind,
            severity,
            reason,
            entry_id: Some(entry.id.clone()),
            item_id: None,
            start: Some(span.start),
            end: Some(span.end),
            freeze_effect: None,
        });
    }

    for (kind, conflict_kind, what) in [
        (EntryKind::MaintenanceWindow, ConflictKind::MaintenanceOverlap, "maintenance window"),
        (EntryKind::BusinessEvent, ConflictKind::BusinessEventOverlap, "business event"),
        (EntryKind::VendorRelease, ConflictKind::VendorReleaseOverlap, "vendor release"),
    ] {
        spans.clear();
        facts.entry_spans(kind, target, start, end, &mut spans);
        for (index, span) in earliest_per_entry(&spans) {
            let entry = facts.entry(index);
            conflicts.push(Conflict {
                kind: conflict_kind,
                severity: Severity::Warning,
                reason: format!("overlaps {what} {}: {}", describe(entry, span), entry.reason),
                entry_id: Some(entry.id.clone()),
                item_id: None,
                start: Some(span.start),
                end: Some(span.end),
                freeze_effect: None,
            });
        }
    }

    let mut items = Vec::new();
    facts.deployments_on(&target.environment, start, end, &mut items);
    for index in items {
        let item = facts.deployment(index);
        if item.release_id.is_some() && item.release_id == request.release_id {
            continue;
        }
        let what = match item.kind {
            ScheduledKind::Deployment => "deployment",
            ScheduledKind::TrainDeparture => "train departure",
        };
        conflicts.push(Conflict {
            kind: ConflictKind::EnvironmentBusy,
            severity: Severity::Blocking,
            reason: format!(
                "{what} {} of {} is scheduled on {} from {} to {}",
                item.id,
                item.target.service,
                item.target.environment,
                stamp(item.start),
                stamp(item.end)
            ),
            entry_id: None,
            item_id: Some(item.id.clone()),
            start: Some(item.start),
            end: Some(item.end),
            freeze_effect: None,
        });
    }

    for dependency in &request.depends_on {
        let (kind, severity, reason, at) = match facts.release(dependency) {
            None => {
                (ConflictKind::DependencyUnknown, Severity::Blocking, format!("depends on release {dependency}, which is unknown"), None)
            }
            Some(ReleaseStatus { released_at: Some(_), .. }) => continue,
            Some(ReleaseStatus { scheduled_at: None, .. }) => (
                ConflictKind::DependencyNotReleased,
                Severity::Blocking,
                format!("depends on release {dependency}, which is neither released nor scheduled"),
                None,
            ),
            Some(ReleaseStatus { scheduled_at: Some(at), .. }) if *at >= start => (
                ConflictKind::DependencyScheduledLater,
                Severity::Blocking,
                format!("depends on release {dependency}, which is scheduled for {}, not before {}", stamp(*at), stamp(start)),
                Some(*at),
            ),
            Some(ReleaseStatus { scheduled_at: Some(at), .. }) => (
                ConflictKind::DependencyNotReleased,
                Severity::Warning,
                format!("depends on release {dependency}, scheduled for {} but not released yet", stamp(*at)),
                Some(*at),
            ),
        };
        conflicts.push(Conflict {
            kind,
            severity,
            reason,
            entry_id: None,
            item_id: Some(dependency.clone()),
            start: at,
            end: None,
            freeze_effect: None,
        });
    }

    conflicts.sort_by(|a, b| (a.kind, a.start, &a.entry_id, &a.item_id).cmp(&(b.kind, b.start, &b.entry_id, &b.item_id)));
    Ok(conflicts)
}

/// Whether a freeze with `scope` hits a booking with `booking_scope`: bookings hold
/// environments, so only organization, environment and tier freezes reach them.
fn freeze_hits_booking(scope: &Scope, booking_scope: &Scope, environment_tiers: &HashMap<String, Tier>) -> bool {
    match (scope, booking_scope) {
        (Scope::Organization, _) => true,
        (Scope::EnvironmentTier { tier }, Scope::Environment { environment }) => {
            environment_tiers.get(environment).is_some_and(|t| tier_name(t) == tier_name(tier))
        }
        (a, b) => a == b,
    }
}

/// "What would be blocked": the scheduled deployments, departures and bookings a freeze
/// (typically a draft not saved yet) would hit in `[from, to)`. Each item is listed once,
/// against the first freeze occurrence that hits it.
pub fn preview_with(
    facts: &impl Facts,
    freeze: &CalendarEntry,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    environment_tiers: &HashMap<String, Tier>,
) -> Result<Vec<BlockedItem>, Invalid> {
    check_window(from, to)?;
    if freeze.kind != EntryKind::Freeze {
        return Err(Invalid::one("kind", "only a freeze can be previewed for what it would block"));
    }
    let effect = freeze.freeze_effect.unwrap_or_default();
    let mut occurrences = Vec::new();
    freeze.spans_overlapping(from, to, |span| {
        occurrences.push(span);
        occurrences.len() < MAX_PREVIEW_OCCURRENCES
    });
    let how = |item_start: DateTime<Utc>, freeze: Span| {
        if item_start >= freeze.start {
            BlockedHow::CannotStart
        } else {
            BlockedHow::RunningWhenFreezeBegins
        }
    };
    let mut seen: BTreeMap<(BlockedItemKind, String), BlockedItem> = BTreeMap::new();
    let mut items = Vec::new();
    let mut bookings = Vec::new();
    for occurrence in occurrences {
        items.clear();
        facts.all_deployments(occurrence.start, occurrence.end, &mut items);
        for &index in &items {
            let d = facts.deployment(index);
            if !freeze.scope.covers(&d.target) {
                continue;
            }
            let item_kind = match d.kind {
                ScheduledKind::Deployment => BlockedItemKind::Deployment,
                ScheduledKind::TrainDeparture => BlockedItemKind::TrainDeparture,
            };
            seen.entry((item_kind, d.id.clone())).or_insert_with(|| BlockedItem {
                item_kind,
                item_id: d.id.clone(),
                release_id: d.release_id.clone(),
                item_start: d.start,
                item_end: d.end,
                freeze_start: occurrence.start,
                freeze_end: occurrence.end,
                how: how(d.start, occurrence),
                effect,
            });
        }
        bookings.clear();
        facts.all_bookings(occurrence.start, occurrence.end, &mut bookings);
        for (index, span) in earliest_per_entry(&bookings) {
            let booking = facts.entry(index);
            if !freeze_hits_booking(&freeze.scope, &booking.scope, environment_tiers) {
                continue;
            }
            seen.entry((BlockedItemKind::Booking, booking.id.clone())).or_insert_with(|| BlockedItem {
                item_kind: BlockedItemKind::Booking,
                item_id: booking.id.clone(),
                release_id: None,
                item_start: span.start,
                item_end: span.end,
                freeze_start: occurrence.start,
                freeze_end: occurrence.end,
                how: how(span.start, occurrence),
                effect,
            });
        }
    }
    let mut out: Vec<BlockedItem> = seen.into_values().collect();
    out.sort_by(|a, b| (a.item_start, a.item_kind, &a.item_id).cmp(&(b.item_start, b.item_kind, &b.item_id)));
    Ok(out)
}

/// The naive implementation of [`Facts`]: every question walks every entry and expands every
/// series. Correct by inspection; used as the oracle and the benchmark baseline.
pub struct NaiveScan<'a> {
    pub entries: &'a [CalendarEntry],
    pub deployments: &'a [ScheduledDeployment],
    pub releases: &'a [ReleaseStatus],
}

impl Facts for NaiveScan<'_> {
    fn entry(&self, index: u32) -> &CalendarEntry {
        &self.entries[index as usize]
    }
    fn deployment(&self, index: u32) -> &ScheduledDeployment {
        &self.deployments[index as usize]
    }
    fn entry_spans(&self, kind: EntryKind, target: &Target, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<(u32, Span)>) {
        for (i, e) in self.entries.iter().enumerate() {
            if e.kind == kind && e.scope.covers(target) {
                e.spans_overlapping(from, to, |span| {
                    out.push((i as u32, span));
                    true
                });
            }
        }
    }
    fn any_entry_covers(&self, kind: EntryKind, target: &Target) -> bool {
        self.entries.iter().any(|e| e.kind == kind && e.scope.covers(target))
    }
    fn deployments_on(&self, environment: &str, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<u32>) {
        for (i, d) in self.deployments.iter().enumerate() {
            if d.target.environment == environment && d.start < to && d.end > from {
                out.push(i as u32);
            }
        }
    }
    fn all_deployments(&self, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<u32>) {
        for (i, d) in self.deployments.iter().enumerate() {
            if d.start < to && d.end > from {
                out.push(i as u32);
            }
        }
    }
    fn all_bookings(&self, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<(u32, Span)>) {
        for (i, e) in self.entries.iter().enumerate() {
            if e.kind == EntryKind::Booking {
                e.spans_overlapping(from, to, |span| {
                    out.push((i as u32, span));
                    true
                });
            }
        }
    }
    fn release(&self, release_id: &str) -> Option<&ReleaseStatus> {
        self.releases.iter().find(|r| r.release_id == release_id)
    }
}

/// The naive check: [`check_with`] over [`NaiveScan`].
pub fn check_naive(
    entries: &[CalendarEntry],
    deployments: &[ScheduledDeployment],
    releases: &[ReleaseStatus],
    request: &CheckRequest,
) -> Result<Vec<Conflict>, Invalid> {
    check_with(&NaiveScan { entries, deployments, releases }, request)
}

/// Intervals sorted by start, split into classes by length (each class holds intervals at most
/// `2^k` seconds long), so a query looks back only as far as the class's longest interval.
#[derive(Debug, Default, Clone)]
struct IntervalSet {
    classes: Vec<LengthClass>,
}

#[derive(Debug, Default, Clone)]
struct LengthClass {
    max_len: i64,
    starts: Vec<i64>,
    ends: Vec<i64>,
    ids: Vec<u32>,
}

impl IntervalSet {
    fn build(mut items: Vec<(i64, i64, u32)>) -> IntervalSet {
        items.sort_unstable();
        let mut by_class: BTreeMap<u32, LengthClass> = BTreeMap::new();
        for (start, end, id) in items {
            let len = (end - start).max(1);
            let class = 64 - (len - 1).leading_zeros();
            let c = by_class.entry(class).or_default();
            c.max_len = c.max_len.max(len);
            c.starts.push(start);
            c.ends.push(end);
            c.ids.push(id);
        }
        IntervalSet { classes: by_class.into_values().collect() }
    }

    /// Ids of intervals overlapping `[from, to)`, with their bounds.
    fn query(&self, from: i64, to: i64, mut visit: impl FnMut(u32, i64, i64)) {
        for c in &self.classes {
            let lo = c.starts.partition_point(|&s| s <= from - c.max_len);
            let hi = c.starts.partition_point(|&s| s < to);
            for i in lo..hi {
                if c.ends[i] > from {
                    visit(c.ids[i], c.starts[i], c.ends[i]);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// The entries of one kind in one scope bucket.
#[derive(Debug, Default)]
struct Bucket {
    one_off: IntervalSet,
    /// Occurrences of the series inside the horizon.
    expanded: IntervalSet,
    /// The series themselves, expanded on the fly for queries outside the horizon.
    series: Vec<u32>,
    count: usize,
}

const SCOPE_LEVELS: usize = 5;

fn scope_slot(scope: &Scope) -> (usize, String) {
    match scope {
        Scope::Organization => (0, String::new()),
        Scope::Domain { domain } => (1, domain.clone()),
        Scope::Service { service } => (2, service.clone()),
        Scope::Environment { environment } => (3, environment.clone()),
        Scope::EnvironmentTier { tier } => (4, tier_name(tier).to_string()),
    }
}

fn target_keys(target: &Target) -> [&str; SCOPE_LEVELS] {
    ["", &target.domain, &target.service, &target.environment, tier_name(&target.tier)]
}

fn kind_slot(kind: EntryKind) -> usize {
    EntryKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn from_ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// The indexed implementation of [`Facts`]. Entries are bucketed by scope level and name and
/// by kind; within a bucket, one-off entries and the occurrences of series inside the
/// horizon sit in [`IntervalSet`]s. A query outside the horizon expands only the series of the
/// few buckets that cover the target.
pub struct ConflictIndex {
    entries: Vec<CalendarEntry>,
    deployments: Vec<ScheduledDeployment>,
    releases: HashMap<String, ReleaseStatus>,
    horizon: (DateTime<Utc>, DateTime<Utc>),
    levels: [HashMap<String, [Bucket; 6]>; SCOPE_LEVELS],
    deployments_by_environment: HashMap<String, IntervalSet>,
    every_deployment: IntervalSet,
    every_booking: Bucket,
}

impl ConflictIndex {
    /// Builds the index, pre-expanding series over `[horizon_from, horizon_to)`. Checks inside
    /// the horizon never expand a rule; checks outside it still give the right answer, slower.
    pub fn build(
        entries: Vec<CalendarEntry>,
        deployments: Vec<ScheduledDeployment>,
        releases: Vec<ReleaseStatus>,
        horizon_from: DateTime<Utc>,
        horizon_to: DateTime<Utc>,
    ) -> ConflictIndex {
        #[derive(Default)]
        struct Pending {
            one_off: Vec<(i64, i64, u32)>,
            expanded: Vec<(i64, i64, u32)>,
            series: Vec<u32>,
            count: usize,
        }
        let mut pending: [HashMap<String, [Pending; 6]>; SCOPE_LEVELS] = Default::default();
        let mut bookings = Pending::default();
        for (i, entry) in entries.iter().enumerate() {
            let (level, key) = scope_slot(&entry.scope);
            let slot = &mut pending[level].entry(key).or_default()[kind_slot(entry.kind)];
            let mut targets: Vec<&mut Pending> = vec![slot];
            if entry.kind == EntryKind::Booking {
                targets.push(&mut bookings);
            }
            match &entry.timing {
                Timing::OneOff(span) => {
                    for p in targets {
                        p.count += 1;
                        p.one_off.push((ts(span.start), ts(span.end), i as u32));
                    }
                }
                Timing::Recurring(_) => {
                    let mut spans = Vec::new();
                    entry.spans_overlapping(horizon_from, horizon_to, |span| {
                        spans.push((ts(span.start), ts(span.end), i as u32));
                        true
                    });
                    for p in targets {
                        p.count += 1;
                        p.series.push(i as u32);
                        p.expanded.extend_from_slice(&spans);
                    }
                }
            }
        }
        let seal = |p: Pending| Bucket {
            one_off: IntervalSet::build(p.one_off),
            expanded: IntervalSet::build(p.expanded),
            series: p.series,
            count: p.count,
        };
        let levels = pending.map(|level| level.into_iter().map(|(key, buckets)| (key, buckets.map(seal))).collect());
        let mut by_environment: HashMap<String, Vec<(i64, i64, u32)>> = HashMap::new();
        let mut every = Vec::with_capacity(deployments.len());
        for (i, d) in deployments.iter().enumerate() {
            let item = (ts(d.start), ts(d.end), i as u32);
            by_environment.entry(d.target.environment.clone()).or_default().push(item);
            every.push(item);
        }
        ConflictIndex {
            entries,
            releases: releases.into_iter().map(|r| (r.release_id.clone(), r)).collect(),
            deployments,
            horizon: (horizon_from, horizon_to),
            levels,
            deployments_by_environment: by_environment.into_iter().map(|(k, v)| (k, IntervalSet::build(v))).collect(),
            every_deployment: IntervalSet::build(every),
            every_booking: seal(bookings),
        }
    }

    pub fn entries(&self) -> &[CalendarEntry] {
        &self.entries
    }
    pub fn deployments(&self) -> &[ScheduledDeployment] {
        &self.deployments
    }
    pub fn horizon(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        self.horizon
    }

    /// `POST /api/v1/calendar/check`.
    pub fn check(&self, request: &CheckRequest) -> Result<Vec<Conflict>, Invalid> {
        check_with(self, request)
    }

    /// Freezes covering `target` that are in force at `at`, with their effect: what a running
    /// deployment controller asks before each step (reference gap 3: `stop_at_next_step` stops
    /// it there, `let_finish` and `block_new` let it go on).
    pub fn active_freezes(&self, target: &Target, at: DateTime<Utc>) -> Vec<(String, FreezeEffect, Span)> {
        let mut spans = Vec::new();
        self.entry_spans(EntryKind::Freeze, target, at, at + Duration::seconds(1), &mut spans);
        earliest_per_entry(&spans)
            .into_iter()
            .filter(|(_, span)| span.start <= at)
            .map(|(i, span)| {
                let entry = self.entry(i);
                (entry.id.clone(), entry.freeze_effect.unwrap_or_default(), span)
            })
            .collect()
    }

    /// What a freeze would block in `[from, to)`.
    pub fn preview_freeze(
        &self,
        freeze: &CalendarEntry,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        environment_tiers: &HashMap<String, Tier>,
    ) -> Result<Vec<BlockedItem>, Invalid> {
        preview_with(self, freeze, from, to, environment_tiers)
    }

    fn bucket_spans(&self, bucket: &Bucket, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<(u32, Span)>) {
        let (f, t) = (ts(from), ts(to));
        let mut push = |id: u32, s: i64, e: i64| out.push((id, Span { start: from_ts(s), end: from_ts(e) }));
        bucket.one_off.query(f, t, &mut push);
        if from >= self.horizon.0 && to <= self.horizon.1 {
            bucket.expanded.query(f, t, &mut push);
        } else {
            for &i in &bucket.series {
                self.entries[i as usize].spans_overlapping(from, to, |span| {
                    out.push((i, span));
                    true
                });
            }
        }
    }
}

impl Facts for ConflictIndex {
    fn entry(&self, index: u32) -> &CalendarEntry {
        &self.entries[index as usize]
    }
    fn deployment(&self, index: u32) -> &ScheduledDeployment {
        &self.deployments[index as usize]
    }
    fn entry_spans(&self, kind: EntryKind, target: &Target, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<(u32, Span)>) {
        for (level, key) in target_keys(target).into_iter().enumerate() {
            if let Some(buckets) = self.levels[level].get(key) {
                self.bucket_spans(&buckets[kind_slot(kind)], from, to, out);
            }
        }
    }
    fn any_entry_covers(&self, kind: EntryKind, target: &Target) -> bool {
        target_keys(target)
            .into_iter()
            .enumerate()
            .any(|(level, key)| self.levels[level].get(key).is_some_and(|b| b[kind_slot(kind)].count > 0))
    }
    fn deployments_on(&self, environment: &str, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<u32>) {
        if let Some(set) = self.deployments_by_environment.get(environment) {
            set.query(ts(from), ts(to), |id, _, _| out.push(id));
        }
    }
    fn all_deployments(&self, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<u32>) {
        if !self.every_deployment.is_empty() {
            self.every_deployment.query(ts(from), ts(to), |id, _, _| out.push(id));
        }
    }
    fn all_bookings(&self, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<(u32, Span)>) {
        self.bucket_spans(&self.every_booking, from, to, out);
    }
    fn release(&self, release_id: &str) -> Option<&ReleaseStatus> {
        self.releases.get(release_id)
    }
}
