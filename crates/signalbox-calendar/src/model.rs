//! Calendar entries: the JSON shapes the API takes and returns, and their validated form.

use crate::duration::CalendarDuration;
use crate::rule::{RecurrenceRule, Until};
use crate::zone::{parse_zone, resolve_local};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use signalbox_domain::model::Tier;
use signalbox_domain::validate::Invalid;
use std::collections::BTreeSet;
use utoipa::ToSchema;

/// Earliest year an entry may touch.
pub const MIN_YEAR: i32 = 1970;
/// Latest year an entry may touch.
pub const MAX_YEAR: i32 = 2200;
/// Longest `[from, to)` one expansion call accepts (400 days: a year plus slack for a view
/// that starts mid-month).
pub const MAX_EXPANSION_DAYS: i64 = 400;
/// Most EXDATEs on one entry.
pub const MAX_EXDATES: usize = 1_000;
/// Longest title, owner and scope name.
pub const MAX_SHORT_TEXT: usize = 200;
/// Longest reason.
pub const MAX_REASON: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Deployments in scope must start inside one of these, when any exist.
    ReleaseWindow,
    /// Deployments in scope must not run inside one.
    Freeze,
    /// Planned maintenance: reported as a warning when a deployment overlaps it.
    MaintenanceWindow,
    /// An environment reserved by its owner: other people's deployments conflict.
    Booking,
    /// A date the business cares about (a sale, a holiday): a warning.
    BusinessEvent,
    /// A supplier's release (an OS, a SaaS upgrade): a warning.
    VendorRelease,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::ReleaseWindow => "release_window",
            EntryKind::Freeze => "freeze",
            EntryKind::MaintenanceWindow => "maintenance_window",
            EntryKind::Booking => "booking",
            EntryKind::BusinessEvent => "business_event",
            EntryKind::VendorRelease => "vendor_release",
        }
    }
    pub const ALL: [EntryKind; 6] = [
        EntryKind::ReleaseWindow,
        EntryKind::Freeze,
        EntryKind::MaintenanceWindow,
        EntryKind::Booking,
        EntryKind::BusinessEvent,
        EntryKind::VendorRelease,
    ];
}

/// What a freeze does to work already running when it begins (reference gap 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum FreezeEffect {
    /// Nothing new starts; running deployments carry on.
    #[default]
    BlockNew,
    /// Running deployments stop at their next step boundary.
    StopAtNextStep,
    /// Running deployments finish, including steps not yet started.
    LetFinish,
}

/// What an entry applies to. Wider scopes hit everything inside them: an organization freeze
/// hits every service in every environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "level", rename_all = "snake_case")]
pub enum Scope {
    Organization,
    Domain { domain: String },
    Service { service: String },
    Environment { environment: String },
    EnvironmentTier { tier: Tier },
}

/// Name of a tier as it is matched: custom tiers by their own name.
pub fn tier_name(tier: &Tier) -> &str {
    match tier {
        Tier::Dev => "dev",
        Tier::Test => "test",
        Tier::Staging => "staging",
        Tier::Prod => "prod",
        Tier::Custom(name) => name,
    }
}

/// What a deployment targets, with the facts scope matching needs (the caller looks up the
/// service's domain and the environment's tier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Target {
    pub service: String,
    pub domain: String,
    pub environment: String,
    pub tier: Tier,
}

impl Scope {
    /// Whether an entry with this scope applies to a deployment of `target`.
    pub fn covers(&self, target: &Target) -> bool {
        match self {
            Scope::Organization => true,
            Scope::Domain { domain } => *domain == target.domain,
            Scope::Service { service } => *service == target.service,
            Scope::Environment { environment } => *environment == target.environment,
            Scope::EnvironmentTier { tier } => tier_name(tier) == tier_name(&target.tier),
        }
    }

    fn validate(&self, errors: &mut Invalid) {
        let (field, value) = match self {
            Scope::Organization => return,
            Scope::Domain { domain } => ("scope/domain", domain.as_str()),
            Scope::Service { service } => ("scope/service", service.as_str()),
            Scope::Environment { environment } => ("scope/environment", environment.as_str()),
            Scope::EnvironmentTier { tier } => ("scope/tier", tier_name(tier)),
        };
        check_short_text(errors, field, value);
    }
}

/// When an entry happens, as sent by a client. Times are strings so that a bad one is reported
/// against its field instead of failing the whole JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimingDraft {
    /// A single stretch of time: RFC 3339 instants with an offset (`2026-12-20T00:00:00+01:00`).
    OneOff { start: String, end: String },
    /// A series: `dtstart` is a local wall-clock time in the entry's zone, without an offset
    /// (`2026-01-08T10:00:00`); `rrule` an RFC 5545 RRULE; `duration` an RFC 5545 duration;
    /// `exdates` local start times (same form as `dtstart`) of occurrences to skip.
    Recurring {
        dtstart: String,
        rrule: String,
        duration: String,
        #[serde(default)]
        exdates: Vec<String>,
    },
}

fn default_zone() -> String {
    "UTC".to_string()
}

/// A calendar entry as a client creates or replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EntryDraft {
    pub kind: EntryKind,
    pub title: String,
    /// Why the entry exists; shown with every conflict it causes.
    pub reason: String,
    /// Who answers for it; for a booking, who holds the environment.
    pub owner: String,
    pub scope: Scope,
    /// IANA zone the entry is defined in (`Europe/Berlin`); occurrences are also shown in it.
    #[serde(default = "default_zone")]
    pub zone: String,
    pub timing: TimingDraft,
    /// Only for freezes; defaults to `block_new`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_effect: Option<FreezeEffect>,
}

/// An entry as stored and returned: the draft plus identity and version (the version becomes
/// the iCalendar SEQUENCE, so it must go up on every change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EntryRecord {
    pub id: String,
    pub version: u32,
    #[serde(flatten)]
    pub draft: EntryDraft,
    /// Bookings only: where the booking stands (absent on bookings saved before states existed,
    /// which count as `confirmed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<BookingStatus>,
}

/// The life of a booking. Only `confirmed` bookings hold the environment; `pending` ones show
/// as tentative; `rejected` ones are ignored; `expired` ones are over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingState {
    /// Waiting for the environment owner's approval.
    Pending,
    Confirmed,
    Rejected,
    /// Its time range is over (set by the scheduler's `booking.expire` job).
    Expired,
}

impl BookingState {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingState::Pending => "pending",
            BookingState::Confirmed => "confirmed",
            BookingState::Rejected => "rejected",
            BookingState::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BookingStatus {
    pub state: BookingState,
    /// Who made the booking (a username); they may not approve it themselves.
    pub requested_by: String,
    /// Who approved or rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// Why it was rejected, or when it expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl EntryRecord {
    /// The booking state (`confirmed` for bookings without one); `None` for other kinds.
    pub fn booking_state(&self) -> Option<BookingState> {
        (self.draft.kind == EntryKind::Booking).then(|| self.booking.as_ref().map_or(BookingState::Confirmed, |b| b.state))
    }
}

/// One occurrence of an entry, in UTC and in the entry's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Occurrence {
    pub entry_id: String,
    pub kind: EntryKind,
    pub title: String,
    pub scope: Scope,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub zone: String,
    /// RFC 3339 with the zone's offset at that moment, e.g. `2026-03-29T03:30:00+02:00`.
    pub local_start: String,
    pub local_end: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_effect: Option<FreezeEffect>,
}

/// A stretch of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Span {
    pub fn overlaps(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.start < to && self.end > from
    }
}

/// A validated recurring series.
#[derive(Debug, Clone)]
pub struct Recurrence {
    dtstart: NaiveDateTime,
    zone: Tz,
    rule: RecurrenceRule,
    duration: CalendarDuration,
    exdates: BTreeSet<NaiveDateTime>,
    until: Option<DateTime<Utc>>,
    engine: rrule::RRuleSet,
}

/// When a validated entry happens.
#[derive(Debug, Clone)]
pub enum Timing {
    OneOff(Span),
    Recurring(Box<Recurrence>),
}

/// A validated entry: every time parsed, the zone known, the rule compiled.
#[derive(Debug, Clone)]
pub struct CalendarEntry {
    pub id: String,
    pub version: u32,
    pub kind: EntryKind,
    pub title: String,
    pub reason: String,
    pub owner: String,
    pub scope: Scope,
    pub zone: Tz,
    pub timing: Timing,
    pub freeze_effect: Option<FreezeEffect>,
    /// A booking awaiting approval: reported as a warning, never blocking.
    pub tentative: bool,
}

fn check_short_text(errors: &mut Invalid, field: &str, value: &str) {
    if value.trim().is_empty() {
        errors.push(field, "must not be empty");
    } else if value.chars().count() > MAX_SHORT_TEXT {
        errors.push(field, format!("is longer than {MAX_SHORT_TEXT} characters"));
    } else if value.chars().any(char::is_control) {
        errors.push(field, "must not contain control characters (line breaks, tabs)");
    }
}

fn check_year(errors: &mut Invalid, field: &str, year: i32) -> bool {
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        errors.push(field, format!("year {year} is outside {MIN_YEAR}..{MAX_YEAR}"));
        return false;
    }
    true
}

/// Parses a local wall-clock time `YYYY-MM-DDTHH:MM[:SS]` without offset.
pub fn parse_local(field: &str, raw: &str) -> Result<NaiveDateTime, Invalid> {
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok(t);
        }
    }
    let hint = if DateTime::parse_from_rfc3339(raw).is_ok() {
        "it has an offset; give the local wall-clock time without one (the zone field says where)"
    } else {
        "expected a local time like \"2026-01-08T10:00:00\""
    };
    Err(Invalid::one(field, format!("{raw:?} is not a local date-time: {hint}")))
}

fn parse_instant(field: &str, raw: &str) -> Result<DateTime<Utc>, Invalid> {
    DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        Invalid::one(field, format!("{raw:?} is not an RFC 3339 date-time with offset; write e.g. \"2026-12-20T00:00:00+01:00\" or \"…Z\""))
    })
}

impl CalendarEntry {
    /// Validates a draft. Every problem is collected with its JSON path, so a client sees all
    /// of them at once.
    pub fn from_draft(id: impl Into<String>, version: u32, draft: &EntryDraft) -> Result<CalendarEntry, Invalid> {
        let mut errors = Invalid::default();
        check_short_text(&mut errors, "title", &draft.title);
        check_short_text(&mut errors, "owner", &draft.owner);
        if draft.reason.trim().is_empty() {
            errors.push("reason", "must not be empty: say why this entry exists");
        } else if draft.reason.chars().count() > MAX_REASON {
            errors.push("reason", format!("is longer than {MAX_REASON} characters"));
        }
        draft.scope.validate(&mut errors);
        let freeze_effect = match (draft.kind, draft.freeze_effect) {
            (EntryKind::Freeze, effect) => Some(effect.unwrap_or_default()),
            (_, None) => None,
            (kind, Some(_)) => {
                errors.push("freeze_effect", format!("only freezes have an effect; remove it from this {}", kind.as_str()));
                None
            }
        };
        let zone = errors.check(parse_zone("zone", &draft.zone));
        let timing = match (&draft.timing, zone) {
            (TimingDraft::OneOff { start, end }, _) => {
                let start = errors.check(parse_instant("timing/start", start));
                let end = errors.check(parse_instant("timing/end", end));
                match (start, end) {
                    (Some(start), Some(end)) => {
                        let years_ok =
                            check_year(&mut errors, "timing/start", start.year()) & check_year(&mut errors, "timing/end", end.year());
                        if end <= start {
                            errors.push("timing/end", "must be after timing/start");
                            None
                        } else if (end - start).num_seconds() > crate::duration::MAX_DURATION_SECONDS {
                            errors.push("timing/end", "the entry is longer than 367 days; split it or use a recurring entry");
                            None
                        } else {
                            years_ok.then_some(Timing::OneOff(Span { start, end }))
                        }
                    }
                    _ => None,
                }
            }
            (TimingDraft::Recurring { dtstart, rrule, duration, exdates }, zone) => {
                let dtstart = errors.check(parse_local("timing/dtstart", dtstart));
                let rule = errors.check(RecurrenceRule::parse("timing/rrule", rrule));
                let duration = errors.check(CalendarDuration::parse("timing/duration", duration));
                if exdates.len() > MAX_EXDATES {
                    errors.push("timing/exdates", format!("{} exception dates; at most {MAX_EXDATES}", exdates.len()));
                }
                let mut parsed_exdates = BTreeSet::new();
                for (i, raw) in exdates.iter().enumerate().take(MAX_EXDATES) {
                    if let Some(t) = errors.check(parse_local(&format!("timing/exdates/{i}"), raw)) {
                        parsed_exdates.insert(t);
                    }
                }
                match (dtstart, rule, duration, zone) {
                    (Some(dtstart), Some(rule), Some(duration), Some(zone)) => {
                        if check_year(&mut errors, "timing/dtstart", dtstart.year()) {
                            errors
                                .check(Recurrence::new(dtstart, zone, rule, duration, parsed_exdates))
                                .map(|r| Timing::Recurring(Box::new(r)))
                        } else {
                            None
                        }
                    }
                    _ => None,
                }
            }
        };
        errors.into_result()?;
        let (Some(zone), Some(timing)) = (zone, timing) else {
            return Err(Invalid::one("timing", "could not be validated"));
        };
        Ok(CalendarEntry {
            id: id.into(),
            version,
            kind: draft.kind,
            title: draft.title.clone(),
            reason: draft.reason.clone(),
            owner: draft.owner.clone(),
            scope: draft.scope.clone(),
            zone,
            timing,
            freeze_effect,
            tentative: false,
        })
    }

    /// Validates a stored record; a pending booking becomes a tentative entry.
    pub fn from_record(record: &EntryRecord) -> Result<CalendarEntry, Invalid> {
        let entry = CalendarEntry::from_draft(record.id.clone(), record.version, &record.draft)?;
        Ok(CalendarEntry { tentative: record.booking_state() == Some(BookingState::Pending), ..entry })
    }

    pub fn is_recurring(&self) -> bool {
        matches!(self.timing, Timing::Recurring(_))
    }

    /// The recurrence, if the entry is a series.
    pub fn recurrence(&self) -> Option<&Recurrence> {
        match &self.timing {
            Timing::Recurring(r) => Some(r),
            Timing::OneOff(_) => None,
        }
    }

    /// Calls `visit` with every occurrence overlapping `[from, to)`, in start order, stopping
    /// early when it returns `false`. No window limit: internal callers bound it themselves.
    pub fn spans_overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>, mut visit: impl FnMut(Span) -> bool) {
        match &self.timing {
            Timing::OneOff(span) => {
                if span.overlaps(from, to) {
                    visit(*span);
                }
            }
            Timing::Recurring(r) => r.spans_overlapping(from, to, &mut visit),
        }
    }

    /// Occurrences overlapping `[from, to)`, for the API. Refuses windows longer than
    /// [`MAX_EXPANSION_DAYS`] and returns at most `limit` occurrences (the bool says whether
    /// more were left out).
    pub fn occurrences(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Result<(Vec<Occurrence>, bool), Invalid> {
        check_window(from, to)?;
        let mut out = Vec::new();
        let mut truncated = false;
        self.spans_overlapping(from, to, |span| {
            if out.len() >= limit {
                truncated = true;
                return false;
            }
            out.push(self.occurrence(span));
            true
        });
        Ok((out, truncated))
    }

    /// Presents one span of this entry.
    pub fn occurrence(&self, span: Span) -> Occurrence {
        let local = |t: DateTime<Utc>| t.with_timezone(&self.zone).to_rfc3339_opts(SecondsFormat::Secs, false);
        Occurrence {
            entry_id: self.id.clone(),
            kind: self.kind,
            title: self.title.clone(),
            scope: self.scope.clone(),
            start: span.start,
            end: span.end,
            zone: self.zone.name().to_string(),
            local_start: local(span.start),
            local_end: local(span.end),
            freeze_effect: self.freeze_effect,
        }
    }

    /// Upper bound of the length of one occurrence in seconds.
    pub fn max_span_seconds(&self) -> i64 {
        match &self.timing {
            Timing::OneOff(span) => (span.end - span.start).num_seconds(),
            Timing::Recurring(r) => r.duration.max_real_seconds(),
        }
    }
}

/// Checks an API expansion window `[from, to)`.
pub fn check_window(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), Invalid> {
    if to <= from {
        return Err(Invalid::one("to", "must be after from"));
    }
    if (to - from).num_days() > MAX_EXPANSION_DAYS {
        return Err(Invalid::one("to", format!("the window is longer than {MAX_EXPANSION_DAYS} days; ask for a shorter range")));
    }
    Ok(())
}

impl Recurrence {
    /// Checks and compiles a series. Refuses rules that never produce an occurrence.
    pub fn new(
        dtstart: NaiveDateTime,
        zone: Tz,
        rule: RecurrenceRule,
        duration: CalendarDuration,
        exdates: BTreeSet<NaiveDateTime>,
    ) -> Result<Recurrence, Invalid> {
        if dtstart.and_utc().timestamp_subsec_nanos() != 0 {
            return Err(Invalid::one("timing/dtstart", "must be a whole second"));
        }
        let until = rule.until.map(|u| match u {
            Until::Utc(t) => t,
            // A DATE UNTIL includes that whole local day.
            Until::Date(d) => resolve_local(zone, d.and_hms_opt(23, 59, 59).unwrap_or_default()),
            Until::Local(t) => resolve_local(zone, t),
        });
        if let Some(until) = until {
            if until < resolve_local(zone, dtstart) {
                return Err(Invalid::one("timing/rrule", "UNTIL is before dtstart; the series would be empty"));
            }
        }
        let engine = rule.to_engine(dtstart).map_err(|e| Invalid::one("timing/rrule", format!("the rule cannot be expanded: {e}")))?;
        let recurrence = Recurrence { dtstart, zone, rule, duration, exdates, until, engine };
        let mut any = false;
        recurrence.for_each_start(|_, _| {
            any = true;
            false
        });
        if !any {
            let why = if recurrence.exdates.is_empty() { "" } else { ", and that the exdates do not remove every occurrence" };
            return Err(Invalid::one(
                "timing/rrule",
                format!("the rule produces no occurrence (check that its BYxxx parts can coincide, e.g. not BYMONTH=2;BYMONTHDAY=30{why})"),
            ));
        }
        Ok(recurrence)
    }

    pub fn dtstart(&self) -> NaiveDateTime {
        self.dtstart
    }
    pub fn zone(&self) -> Tz {
        self.zone
    }
    pub fn rule(&self) -> &RecurrenceRule {
        &self.rule
    }
    pub fn duration(&self) -> CalendarDuration {
        self.duration
    }
    pub fn exdates(&self) -> &BTreeSet<NaiveDateTime> {
        &self.exdates
    }
    /// UNTIL as an instant, if the rule has one.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        self.until
    }

    /// End of an occurrence that starts at `local` (resolved to `start`): nominal days on the
    /// wall clock, then exact seconds (RFC 5545 section 3.3.6).
    pub fn end_of(&self, local: NaiveDateTime, start: DateTime<Utc>) -> DateTime<Utc> {
        let after_days = if self.duration.days() == 0 {
            start
        } else {
            resolve_local(self.zone, local + Duration::days(i64::from(self.duration.days())))
        };
        after_days + Duration::seconds(i64::from(self.duration.seconds()))
    }

    /// Calls `visit(local_start, start)` for every occurrence start from DTSTART on, in order,
    /// until it returns `false` or the series ends. EXDATEs and UNTIL are applied here, after
    /// the wall-clock time is resolved, because UNTIL is an instant.
    pub fn for_each_start(&self, mut visit: impl FnMut(NaiveDateTime, DateTime<Utc>) -> bool) {
        for floating in &self.engine {
            let local = floating.naive_utc();
            if self.exdates.contains(&local) {
                continue;
            }
            let start = resolve_local(self.zone, local);
            // The series ends at the first occurrence after UNTIL, as in python-dateutil.
            // (Inside a spring-forward gap resolved instants can step back by up to the gap's
            // length, so a sub-hourly series could differ from a pure set filter there.)
            if self.until.is_some_and(|until| start > until) {
                return;
            }
            if !visit(local, start) {
                return;
            }
        }
    }

    /// Occurrences overlapping `[from, to)`, in order.
    pub fn spans_overlapping(&self, from: DateTime<Utc>, to: DateTime<Utc>, visit: &mut dyn FnMut(Span) -> bool) {
        // Stop once the wall clock is a day past `to` in any offset.
        let local_stop = to.naive_utc() + Duration::days(2);
        self.for_each_start(|local, start| {
            if local > local_stop {
                return false;
            }
            let end = self.end_of(local, start);
            if start < to && end > from {
                return visit(Span { start, end });
            }
            true
        });
    }

    /// Local start times that fall on `dates` (in the entry's zone), for turning a holiday list
    /// into EXDATEs. Looks at most `MAX_EXPANSION_DAYS` past the last date.
    pub fn starts_on_dates(&self, dates: &BTreeSet<NaiveDate>) -> Vec<NaiveDateTime> {
        let Some(last) = dates.iter().next_back().copied() else {
            return vec![];
        };
        let mut out = Vec::new();
        self.for_each_start(|local, _| {
            if local.date() > last {
                return false;
            }
            if dates.contains(&local.date()) {
                out.push(local);
            }
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recurring(zone: &str, dtstart: &str, rrule: &str, duration: &str, exdates: &[&str]) -> EntryDraft {
        EntryDraft {
            kind: EntryKind::Freeze,
            title: "Weekly freeze".into(),
            reason: "batch jobs".into(),
            owner: "ops".into(),
            scope: Scope::Organization,
            zone: zone.into(),
            timing: TimingDraft::Recurring {
                dtstart: dtstart.into(),
                rrule: rrule.into(),
                duration: duration.into(),
                exdates: exdates.iter().map(|s| s.to_string()).collect(),
            },
            freeze_effect: None,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn weekly_window_keeps_local_time_across_dst() {
        let e = CalendarEntry::from_draft("e1", 1, &recurring("Europe/Berlin", "2026-03-19T10:00:00", "FREQ=WEEKLY;BYDAY=TH", "PT2H", &[]))
            .unwrap();
        let (occ, truncated) = e.occurrences(t("2026-03-18T00:00:00Z"), t("2026-04-03T00:00:00Z"), 100).unwrap();
        assert!(!truncated);
        let starts: Vec<_> = occ.iter().map(|o| o.start.to_rfc3339()).collect();
        // 10:00 CET is 09:00Z; after 29 March 10:00 CEST is 08:00Z.
        assert_eq!(starts, ["2026-03-19T09:00:00+00:00", "2026-03-26T09:00:00+00:00", "2026-04-02T08:00:00+00:00"]);
        assert_eq!(occ[2].local_start, "2026-04-02T10:00:00+02:00");
        assert_eq!(e.freeze_effect, Some(FreezeEffect::BlockNew));
    }

    #[test]
    fn nominal_day_is_23_hours_on_spring_forward() {
        let e = CalendarEntry::from_draft("e", 1, &recurring("Europe/Berlin", "2026-03-28T00:00:00", "FREQ=DAILY;COUNT=2", "P1D", &[]))
            .unwrap();
        let (occ, _) = e.occurrences(t("2026-03-27T00:00:00Z"), t("2026-03-31T00:00:00Z"), 10).unwrap();
        assert_eq!((occ[0].end - occ[0].start).num_hours(), 24);
        assert_eq!((occ[1].end - occ[1].start).num_hours(), 23);
        assert_eq!(occ[1].local_end, "2026-03-30T00:00:00+02:00");
    }

    #[test]
    fn exdate_skips_and_occurrences_overlapping_the_window_start_are_included() {
        let e = CalendarEntry::from_draft("e", 1, &recurring("UTC", "2026-01-01T22:00:00", "FREQ=DAILY", "PT4H", &["2026-01-03T22:00:00"]))
            .unwrap();
        let (occ, _) = e.occurrences(t("2026-01-03T01:00:00Z"), t("2026-01-05T00:00:00Z"), 10).unwrap();
        let starts: Vec<_> = occ.iter().map(|o| o.start.to_rfc3339()).collect();
        assert_eq!(starts, ["2026-01-02T22:00:00+00:00", "2026-01-04T22:00:00+00:00"]);
    }

    #[test]
    fn validation_collects_every_field() {
        let mut d = recurring("Mars/Base", "2026-01-01T10:00:00+01:00", "FREQ=FORTNIGHTLY", "2h", &["yesterday"]);
        d.title = String::new();
        d.reason = " ".into();
        let err = CalendarEntry::from_draft("e", 1, &d).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        for f in ["title", "reason", "zone", "timing/dtstart", "timing/rrule", "timing/duration", "timing/exdates/0"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        let dtstart = err.0.iter().find(|e| e.field == "timing/dtstart").unwrap();
        assert!(dtstart.message.contains("has an offset"), "{}", dtstart.message);
    }

    #[test]
    fn one_off_refusals() {
        let mut d = recurring("UTC", "", "", "", &[]);
        d.timing = TimingDraft::OneOff { start: "2026-01-02T00:00:00Z".into(), end: "2026-01-01T00:00:00Z".into() };
        let err = CalendarEntry::from_draft("e", 1, &d).unwrap_err();
        assert_eq!(err.0[0].field, "timing/end");
        assert!(err.0[0].message.contains("after"));
        d.timing = TimingDraft::OneOff { start: "2026-01-01T00:00:00Z".into(), end: "2029-01-01T00:00:00Z".into() };
        assert!(CalendarEntry::from_draft("e", 1, &d).unwrap_err().0[0].message.contains("367 days"));
        d.timing = TimingDraft::OneOff { start: "1900-01-01T00:00:00Z".into(), end: "1900-01-02T00:00:00Z".into() };
        assert!(CalendarEntry::from_draft("e", 1, &d).unwrap_err().0[0].message.contains("1970"));
        d.kind = EntryKind::Booking;
        d.freeze_effect = Some(FreezeEffect::LetFinish);
        d.timing = TimingDraft::OneOff { start: "2026-01-01T00:00:00Z".into(), end: "2026-01-02T00:00:00Z".into() };
        assert_eq!(CalendarEntry::from_draft("e", 1, &d).unwrap_err().0[0].field, "freeze_effect");
    }

    #[test]
    fn rules_without_occurrences_are_refused() {
        let err =
            CalendarEntry::from_draft("e", 1, &recurring("UTC", "2026-01-01T10:00:00", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "PT1H", &[]))
                .unwrap_err();
        assert!(err.0[0].message.contains("no occurrence"), "{}", err.0[0].message);
    }

    #[test]
    fn window_limits() {
        let e = CalendarEntry::from_draft("e", 1, &recurring("UTC", "2026-01-01T10:00:00", "FREQ=DAILY", "PT1H", &[])).unwrap();
        assert_eq!(e.occurrences(t("2026-01-01T00:00:00Z"), t("2028-01-01T00:00:00Z"), 10).unwrap_err().0[0].field, "to");
        let (occ, truncated) = e.occurrences(t("2026-01-01T00:00:00Z"), t("2026-02-01T00:00:00Z"), 10).unwrap();
        assert_eq!(occ.len(), 10);
        assert!(truncated);
    }

    #[test]
    fn record_json_round_trips() {
        let record = EntryRecord {
            id: "e1".into(),
            version: 3,
            draft: recurring("Europe/Berlin", "2026-01-01T10:00:00", "FREQ=DAILY", "PT1H", &[]),
            booking: None,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("\"type\":\"recurring\""), "{json}");
        let back: EntryRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        let scope: Scope = serde_json::from_str(r#"{"level":"environment_tier","tier":"prod"}"#).unwrap();
        assert_eq!(scope, Scope::EnvironmentTier { tier: Tier::Prod });
    }
}

/// Scope filters of `GET /api/v1/calendar`: each given field narrows the entries of that scope
/// level to the named one; levels not given are not narrowed, and organization entries always
/// pass (they apply to everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScopeFilter {
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub tier: Option<Tier>,
    #[serde(default)]
    pub kinds: Vec<EntryKind>,
}

impl ScopeFilter {
    pub fn admits(&self, entry: &CalendarEntry) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&entry.kind) {
            return false;
        }
        match &entry.scope {
            Scope::Organization => true,
            Scope::Domain { domain } => self.domain.as_ref().is_none_or(|d| d == domain),
            Scope::Service { service } => self.service.as_ref().is_none_or(|s| s == service),
            Scope::Environment { environment } => self.environment.as_ref().is_none_or(|e| e == environment),
            Scope::EnvironmentTier { tier } => self.tier.as_ref().is_none_or(|t| tier_name(t) == tier_name(tier)),
        }
    }
}

/// Most occurrences one calendar view returns.
pub const MAX_VIEW_OCCURRENCES: usize = 50_000;

/// `GET /api/v1/calendar?from=…&to=…`: occurrences of the admitted entries overlapping
/// `[from, to)`, sorted by start then entry id. The bool says whether the list was cut at
/// [`MAX_VIEW_OCCURRENCES`].
pub fn calendar_view(
    entries: &[CalendarEntry],
    filter: &ScopeFilter,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(Vec<Occurrence>, bool), Invalid> {
    check_window(from, to)?;
    let mut spans: Vec<(Span, usize)> = Vec::new();
    let mut truncated = false;
    for (i, entry) in entries.iter().enumerate().filter(|(_, e)| filter.admits(e)) {
        entry.spans_overlapping(from, to, |span| {
            if spans.len() >= MAX_VIEW_OCCURRENCES {
                truncated = true;
                return false;
            }
            spans.push((span, i));
            true
        });
    }
    spans.sort_by(|a, b| (a.0.start, &entries[a.1].id).cmp(&(b.0.start, &entries[b.1].id)));
    Ok((spans.into_iter().map(|(span, i)| entries[i].occurrence(span)).collect(), truncated))
}

#[cfg(test)]
mod view_tests {
    use super::*;

    #[test]
    fn view_filters_by_scope_and_sorts() {
        let mk = |id: &str, scope: Scope, start: &str| {
            let draft = EntryDraft {
                kind: EntryKind::BusinessEvent,
                title: id.into(),
                reason: "r".into(),
                owner: "o".into(),
                scope,
                zone: "UTC".into(),
                timing: TimingDraft::OneOff { start: start.into(), end: "2026-02-01T00:00:00Z".into() },
                freeze_effect: None,
            };
            CalendarEntry::from_draft(id, 1, &draft).unwrap()
        };
        let entries = vec![
            mk("b", Scope::Domain { domain: "pay".into() }, "2026-01-10T00:00:00Z"),
            mk("a", Scope::Organization, "2026-01-20T00:00:00Z"),
            mk("c", Scope::Domain { domain: "search".into() }, "2026-01-05T00:00:00Z"),
            mk("d", Scope::Environment { environment: "prod".into() }, "2026-01-01T00:00:00Z"),
        ];
        let filter = ScopeFilter { domain: Some("pay".into()), ..ScopeFilter::default() };
        let from: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let (view, truncated) = calendar_view(&entries, &filter, from, from + Duration::days(40)).unwrap();
        assert!(!truncated);
        let ids: Vec<_> = view.iter().map(|o| o.entry_id.as_str()).collect();
        assert_eq!(ids, ["d", "b", "a"]);
        let only_kind = ScopeFilter { kinds: vec![EntryKind::Freeze], ..ScopeFilter::default() };
        assert!(calendar_view(&entries, &only_kind, from, from + Duration::days(40)).unwrap().0.is_empty());
    }
}
