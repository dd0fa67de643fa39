//! iCalendar (RFC 5545) export of entries and train departures, and import of `.ics` files
//! (public-holiday calendars and the like) into entry drafts.
//!
//! Written by hand rather than with the `icalendar` crate: the export needs VTIMEZONE
//! components generated from the tz database and exact control of folding, and the import
//! needs line numbers in its errors; both are small.

use crate::duration::CalendarDuration;
use crate::model::{tier_name, CalendarEntry, EntryDraft, EntryKind, FreezeEffect, Scope, Timing, TimingDraft};
use crate::rule::{RecurrenceRule, Until};
use crate::train::Departure;
use crate::zone::{parse_zone, resolve_local, resolve_tzid, to_local};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use serde::{Deserialize, Serialize};
use signalbox_domain::validate::Invalid;
use std::collections::BTreeSet;
use utoipa::ToSchema;

/// Largest `.ics` file accepted.
pub const MAX_ICS_BYTES: usize = 5 * 1024 * 1024;
/// Most events one import accepts.
pub const MAX_IMPORTED_EVENTS: usize = 10_000;
/// Deepest component nesting accepted (VCALENDAR > VEVENT > VALARM is 3).
pub const MAX_NESTING: usize = 8;

/// A train departure to show in the feed: two VEVENTs, the departure
/// (`UID:<train>-<departure UTC>@…`) and, when the cadence has one, its cut-off
/// (`UID:<train>-<departure UTC>-cutoff@…`), both stable for a given departure instant.
#[derive(Debug, Clone)]
pub struct DepartureEvent {
    pub train_id: String,
    pub title: String,
    pub departure: Departure,
    /// Bumped when the departure changes, like an entry's version.
    pub version: u32,
}

/// Feed-wide settings.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// DTSTAMP of every event: when the feed was generated (a parameter: no clock here).
    pub dtstamp: DateTime<Utc>,
    pub calendar_name: String,
    /// Right-hand side of every UID (`<entry id>@<uid_domain>`), e.g. the server's host name.
    pub uid_domain: String,
}

/// Escapes a TEXT value (RFC 5545 section 3.3.11).
fn escape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds a content line at 75 octets without splitting a UTF-8 character (section 3.1).
fn fold(line: &str, out: &mut String) {
    let mut width = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

fn local_stamp(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%S").to_string()
}

fn utc_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    if s.is_multiple_of(60) {
        format!("{sign}{:02}{:02}", s / 3600, s / 60 % 60)
    } else {
        format!("{sign}{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60)
    }
}

fn utc_offset(zone: Tz, t: DateTime<Utc>) -> i32 {
    zone.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc()
}

/// VTIMEZONE for `zone` with one observance per transition in `[from_year, to_year]`, found by
/// sampling the tz database every six hours and bisecting to the second. Explicit observances
/// (rather than guessed yearly rules) are exact for any history the tz database has.
fn vtimezone(zone: Tz, from_year: i32, to_year: i32, lines: &mut Vec<String>) {
    lines.push("BEGIN:VTIMEZONE".into());
    lines.push(format!("TZID:{}", zone.name()));
    let start = Utc.with_ymd_and_hms(from_year, 1, 1, 0, 0, 0).single().unwrap_or_default();
    let end = Utc.with_ymd_and_hms(to_year + 1, 1, 1, 0, 0, 0).single().unwrap_or_default();
    let observance = |lines: &mut Vec<String>, at: DateTime<Utc>, from: i32| {
        let offset = zone.offset_from_utc_datetime(&at.naive_utc());
        let to = offset.fix().local_minus_utc();
        let kind = if offset.dst_offset().num_seconds() != 0 { "DAYLIGHT" } else { "STANDARD" };
        lines.push(format!("BEGIN:{kind}"));
        // DTSTART of an observance is the local time *before* the change (section 3.6.5).
        lines.push(format!("DTSTART:{}", local_stamp(at.naive_utc() + Duration::seconds(i64::from(from)))));
        lines.push(format!("TZOFFSETFROM:{}", offset_text(from)));
        lines.push(format!("TZOFFSETTO:{}", offset_text(to)));
        if let Some(name) = offset.abbreviation() {
            lines.push(format!("TZNAME:{}", escape_text(name)));
        }
        lines.push(format!("END:{kind}"));
    };
    let first = utc_offset(zone, start);
    observance(lines, start, first);
    let step = Duration::hours(6);
    let mut previous = start;
    let mut previous_offset = first;
    while previous < end {
        let next = previous + step;
        let next_offset = utc_offset(zone, next);
        if next_offset != previous_offset {
            let (mut lo, mut hi) = (previous, next);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if utc_offset(zone, mid) == previous_offset {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            observance(lines, hi, previous_offset);
        }
        previous = next;
        previous_offset = next_offset;
    }
    lines.push("END:VTIMEZONE".into());
}

fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::Organization => "organization".into(),
        Scope::Domain { domain } => format!("domain:{domain}"),
        Scope::Service { service } => format!("service:{service}"),
        Scope::Environment { environment } => format!("environment:{environment}"),
        Scope::EnvironmentTier { tier } => format!("environment_tier:{}", tier_name(tier)),
    }
}

fn effect_text(effect: FreezeEffect) -> &'static str {
    match effect {
        FreezeEffect::BlockNew => "block_new",
        FreezeEffect::StopAtNextStep => "stop_at_next_step",
        FreezeEffect::LetFinish => "let_finish",
    }
}

/// A time property in the entry's zone: `NAME;TZID=Zone:local`, or UTC for the UTC zone.
fn time_property(name: &str, zone: Tz, t: DateTime<Utc>) -> String {
    if zone == Tz::UTC {
        format!("{name}:{}", utc_stamp(t))
    } else {
        format!("{name};TZID={}:{}", zone.name(), local_stamp(to_local(zone, t)))
    }
}

fn entry_event(entry: &CalendarEntry, options: &ExportOptions, lines: &mut Vec<String>) {
    lines.push("BEGIN:VEVENT".into());
    lines.push(format!("UID:{}", escape_text(&format!("{}@{}", entry.id, options.uid_domain))));
    lines.push(format!("DTSTAMP:{}", utc_stamp(options.dtstamp)));
    lines.push(format!("SEQUENCE:{}", entry.version));
    lines.push(format!("SUMMARY:{}", escape_text(&entry.title)));
    let mut description = format!("{}\nOwner: {}\nScope: {}", entry.reason, entry.owner, scope_text(&entry.scope));
    if let Some(effect) = entry.freeze_effect {
        description.push_str(&format!("\nFreeze effect: {}", effect_text(effect)));
    }
    lines.push(format!("DESCRIPTION:{}", escape_text(&description)));
    lines.push(format!("CATEGORIES:{}", entry.kind.as_str().to_uppercase()));
    lines.push(format!("X-SIGNALBOX-KIND:{}", entry.kind.as_str()));
    lines.push(format!("X-SIGNALBOX-SCOPE:{}", escape_text(&scope_text(&entry.scope))));
    if let Some(effect) = entry.freeze_effect {
        lines.push(format!("X-SIGNALBOX-FREEZE-EFFECT:{}", effect_text(effect)));
    }
    match &entry.timing {
        Timing::OneOff(span) => {
            lines.push(time_property("DTSTART", entry.zone, span.start));
            lines.push(time_property("DTEND", entry.zone, span.end));
        }
        Timing::Recurring(r) => {
            let zone = r.zone();
            if zone == Tz::UTC {
                lines.push(format!("DTSTART:{}", utc_stamp(r.dtstart().and_utc())));
            } else {
                lines.push(format!("DTSTART;TZID={}:{}", zone.name(), local_stamp(r.dtstart())));
            }
            lines.push(format!("DURATION:{}", r.duration()));
            // UNTIL must be UTC when DTSTART has a zone (section 3.3.10).
            let mut rule = r.rule().clone();
            rule.until = r.until().map(Until::Utc);
            lines.push(format!("RRULE:{}", rule.to_rfc5545()));
            if !r.exdates().is_empty() {
                if zone == Tz::UTC {
                    let list: Vec<String> = r.exdates().iter().map(|t| utc_stamp(t.and_utc())).collect();
                    lines.push(format!("EXDATE:{}", list.join(",")));
                } else {
                    let list: Vec<String> = r.exdates().iter().map(|t| local_stamp(*t)).collect();
                    lines.push(format!("EXDATE;TZID={}:{}", zone.name(), list.join(",")));
                }
            }
        }
    }
    lines.push("END:VEVENT".into());
}

fn departure_event(event: &DepartureEvent, options: &ExportOptions, lines: &mut Vec<String>) {
    let d = &event.departure;
    lines.push("BEGIN:VEVENT".into());
    lines.push(format!("UID:{}", escape_text(&format!("{}-{}@{}", event.train_id, utc_stamp(d.departure), options.uid_domain))));
    lines.push(format!("DTSTAMP:{}", utc_stamp(options.dtstamp)));
    lines.push(format!("SEQUENCE:{}", event.version));
    lines.push(format!("SUMMARY:{}", escape_text(&event.title)));
    lines.push(format!("DESCRIPTION:{}", escape_text(&format!("Departure {}\nCut-off {}", d.local_departure, d.local_cutoff))));
    lines.push("CATEGORIES:TRAIN_DEPARTURE".into());
    lines.push("X-SIGNALBOX-KIND:train_departure".into());
    lines.push(format!("DTSTART:{}", utc_stamp(d.departure)));
    lines.push("END:VEVENT".into());
    if d.cutoff < d.departure {
        lines.push("BEGIN:VEVENT".into());
        lines.push(format!("UID:{}", escape_text(&format!("{}-{}-cutoff@{}", event.train_id, utc_stamp(d.departure), options.uid_domain))));
        lines.push(format!("DTSTAMP:{}", utc_stamp(options.dtstamp)));
        lines.push(format!("SEQUENCE:{}", event.version));
        lines.push(format!("SUMMARY:{}", escape_text(&format!("{}: cut-off", event.title))));
        lines.push(format!(
            "DESCRIPTION:{}",
            escape_text(&format!("Boarding closes: the departure at {} is frozen from {}", d.local_departure, d.local_cutoff))
        ));
        lines.push("CATEGORIES:TRAIN_CUTOFF".into());
        lines.push("X-SIGNALBOX-KIND:train_cutoff".into());
        lines.push(format!("DTSTART:{}", utc_stamp(d.cutoff)));
        lines.push("END:VEVENT".into());
    }
}

/// Renders a VCALENDAR with one VEVENT per entry (series stay series: RRULE, DURATION and
/// EXDATE are kept) and one per departure, plus a VTIMEZONE for each zone used.
pub fn export(entries: &[CalendarEntry], departures: &[DepartureEvent], options: &ExportOptions) -> String {
    let mut zones: BTreeSet<&'static str> = BTreeSet::new();
    let mut first_year = options.dtstamp.year();
    let mut last_year = options.dtstamp.year() + 5;
    for e in entries {
        if e.zone != Tz::UTC {
            zones.insert(e.zone.name());
        }
        let (a, b) = match &e.timing {
            Timing::OneOff(span) => (span.start.year(), span.end.year()),
            Timing::Recurring(r) => (r.dtstart().year(), r.until().map_or(r.dtstart().year(), |u| u.year())),
        };
        first_year = first_year.min(a);
        last_year = last_year.max(b);
    }
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_string(),
        "VERSION:2.0".into(),
        "PRODID:-//Signalbox//Release calendar//EN".into(),
        "CALSCALE:GREGORIAN".into(),
        "METHOD:PUBLISH".into(),
        format!("X-WR-CALNAME:{}", escape_text(&options.calendar_name)),
    ];
    for name in zones {
        if let Ok(zone) = name.parse::<Tz>() {
            vtimezone(zone, first_year - 1, last_year.min(first_year + 60), &mut lines);
        }
    }
    for e in entries {
        entry_event(e, options, &mut lines);
    }
    for d in departures {
        departure_event(d, options, &mut lines);
    }
    lines.push("END:VCALENDAR".into());
    let mut out = String::new();
    for line in &lines {
        fold(line, &mut out);
    }
    out
}

/// How imported events become entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportOptions {
    /// Usually `business_event` (holidays to see) or `freeze` (holidays nobody deploys on).
    pub kind: EntryKind,
    pub scope: Scope,
    pub owner: String,
    /// Zone for all-day and floating times.
    pub default_zone: String,
    #[serde(default)]
    pub freeze_effect: Option<FreezeEffect>,
}

/// One imported event, ready to be validated and saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportedEvent {
    pub uid: Option<String>,
    /// Line of its BEGIN:VEVENT.
    pub line: usize,
    pub draft: EntryDraft,
}

struct ContentLine {
    line: usize,
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl ContentLine {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn line_error(line: usize, message: impl Into<String>) -> Invalid {
    Invalid::one(format!("file/line/{line}"), message)
}

/// Unfolds and splits content lines, keeping the number of each one's first physical line.
fn content_lines(text: &str) -> Result<Vec<ContentLine>, Invalid> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t']) {
            match logical.last_mut() {
                Some((_, l)) => l.push_str(rest),
                None => return Err(line_error(i + 1, "a continuation line (starting with a space) with nothing before it")),
            }
        } else if !raw.is_empty() {
            logical.push((i + 1, raw.to_string()));
        }
    }
    logical.into_iter().map(|(line, text)| parse_content_line(line, &text)).collect()
}

fn parse_content_line(line: usize, text: &str) -> Result<ContentLine, Invalid> {
    // NAME *(;PARAM=VALUE) : VALUE, where a quoted parameter value may contain ':' and ';'.
    let mut in_quotes = false;
    let mut split_at = None;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                split_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(colon) = split_at else {
        return Err(line_error(line, format!("expected NAME:VALUE, found {:?}", text.chars().take(60).collect::<String>())));
    };
    let (head, value) = (&text[..colon], &text[colon + 1..]);
    let mut parts = head.split(';');
    let name = parts.next().unwrap_or("").trim().to_ascii_uppercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(line_error(line, format!("{name:?} is not a property name")));
    }
    let mut params = Vec::new();
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            return Err(line_error(line, format!("parameter {p:?} has no value")));
        };
        params.push((k.trim().to_ascii_uppercase(), v.trim_matches('"').to_string()));
    }
    Ok(ContentLine { line, name, params, value: value.to_string() })
}

fn unescape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') | Some('N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A DATE or DATE-TIME value as written.
#[derive(Debug, Clone, Copy)]
enum IcsTime {
    Date(NaiveDate),
    Utc(DateTime<Utc>),
    Local(NaiveDateTime, Tz),
}

fn parse_time(prop: &ContentLine, raw: &str, default_zone: Tz) -> Result<IcsTime, Invalid> {
    let raw = raw.trim();
    let bad = |why: &str| line_error(prop.line, format!("{}: {raw:?} {why}", prop.name));
    if prop.param("VALUE") == Some("DATE") || raw.len() == 8 {
        return NaiveDate::parse_from_str(raw, "%Y%m%d").map(IcsTime::Date).map_err(|_| bad("is not a DATE (YYYYMMDD)"));
    }
    if let Some(utc) = raw.strip_suffix('Z') {
        return NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S")
            .map(|t| IcsTime::Utc(t.and_utc()))
            .map_err(|_| bad("is not a DATE-TIME (YYYYMMDDTHHMMSSZ)"));
    }
    let zone = match prop.param("TZID") {
        Some(name) => resolve_tzid(name).ok_or_else(|| {
            line_error(
                prop.line,
                format!(
                    "{}: TZID {name:?} is neither an IANA zone (\"Europe/Berlin\") nor a Windows zone name CLDR maps \
                     (\"W. Europe Standard Time\"); change it to the IANA name",
                    prop.name
                ),
            )
        })?,
        None => default_zone,
    };
    NaiveDateTime::parse_from_str(raw, "%Y%m%dT%H%M%S")
        .map(|t| IcsTime::Local(t, zone))
        .map_err(|_| bad("is not a DATE-TIME (YYYYMMDDTHHMMSS)"))
}

/// The local wall-clock time of `t` in `zone`.
fn local_in(t: IcsTime, zone: Tz) -> NaiveDateTime {
    match t {
        IcsTime::Date(d) => d.and_hms_opt(0, 0, 0).unwrap_or_default(),
        IcsTime::Utc(u) => to_local(zone, u),
        IcsTime::Local(l, z) if z == zone => l,
        IcsTime::Local(l, z) => to_local(zone, resolve_local(z, l)),
    }
}

fn instant(t: IcsTime, zone: Tz) -> DateTime<Utc> {
    match t {
        IcsTime::Date(d) => resolve_local(zone, d.and_hms_opt(0, 0, 0).unwrap_or_default()),
        IcsTime::Utc(u) => u,
        IcsTime::Local(l, z) => resolve_local(z, l),
    }
}

#[derive(Default)]
struct EventProps {
    line: usize,
    props: Vec<ContentLine>,
}

impl EventProps {
    fn one(&self, name: &str) -> Result<Option<&ContentLine>, Invalid> {
        let mut found = self.props.iter().filter(|p| p.name == name);
        let first = found.next();
        if let Some(second) = found.next() {
            return Err(line_error(second.line, format!("{name} appears twice in the event that starts on line {}", self.line)));
        }
        Ok(first)
    }
}

fn convert_event(event: &EventProps, options: &ImportOptions, default_zone: Tz) -> Result<Option<ImportedEvent>, Invalid> {
    if event.one("STATUS")?.is_some_and(|s| s.value.trim().eq_ignore_ascii_case("CANCELLED")) {
        return Ok(None);
    }
    let Some(dtstart_prop) = event.one("DTSTART")? else {
        return Err(line_error(event.line, "the event has no DTSTART"));
    };
    let dtstart = parse_time(dtstart_prop, &dtstart_prop.value, default_zone)?;
    let zone = match dtstart {
        IcsTime::Local(_, z) => z,
        _ => default_zone,
    };
    let end = match (event.one("DTEND")?, event.one("DURATION")?) {
        (Some(_), Some(d)) => return Err(line_error(d.line, "DTEND and DURATION cannot both be given")),
        (Some(p), None) => Some(EndSpec::At(parse_time(p, &p.value, default_zone)?)),
        (None, Some(p)) => {
            Some(EndSpec::Lasting(CalendarDuration::parse("DURATION", p.value.trim()).map_err(|e| line_error(p.line, e.to_string()))?))
        }
        (None, None) => None,
    };
    let end = match (end, dtstart) {
        (Some(e), _) => e,
        // An all-day event without an end lasts that day (section 3.6.1).
        (None, IcsTime::Date(_)) => EndSpec::Lasting(CalendarDuration::from_parts(1, 0)),
        (None, _) => return Err(line_error(dtstart_prop.line, "a timed event needs DTEND or DURATION to become a calendar entry")),
    };
    let uid = event.one("UID")?.map(|p| unescape_text(&p.value));
    let title: String =
        event.one("SUMMARY")?.map(|p| unescape_text(&p.value)).unwrap_or_else(|| "(untitled)".into()).chars().take(200).collect();
    let title = title.replace(['\n', '\r', '\t'], " ");
    let reason = match &uid {
        Some(u) => format!("imported from iCalendar (UID {u})"),
        None => "imported from iCalendar".to_string(),
    };
    let timing = match event.one("RRULE")? {
        None => {
            let start = instant(dtstart, zone);
            let end = match end {
                EndSpec::At(t) => instant(t, zone),
                EndSpec::Lasting(d) => {
                    let local = local_in(dtstart, zone) + Duration::days(i64::from(d.days()));
                    let base = if d.days() == 0 { start } else { resolve_local(zone, local) };
                    base + Duration::seconds(i64::from(d.seconds()))
                }
            };
            TimingDraft::OneOff { start: start.to_rfc3339(), end: end.to_rfc3339() }
        }
        Some(rule_prop) => {
            let rule = RecurrenceRule::parse("RRULE", &rule_prop.value).map_err(|e| line_error(rule_prop.line, e.to_string()))?;
            let local_start = local_in(dtstart, zone);
            let duration = match end {
                EndSpec::Lasting(d) => d,
                EndSpec::At(t) => match (dtstart, t) {
                    (IcsTime::Date(a), IcsTime::Date(b)) => {
                        let days = u32::try_from((b - a).num_days()).unwrap_or(0);
                        CalendarDuration::from_parts(days, 0)
                    }
                    _ => {
                        let seconds = (instant(t, zone) - instant(dtstart, zone)).num_seconds();
                        CalendarDuration::from_parts(0, u32::try_from(seconds).unwrap_or(0))
                    }
                },
            };
            let mut exdates = Vec::new();
            for p in event.props.iter().filter(|p| p.name == "EXDATE") {
                for value in p.value.split(',') {
                    exdates.push(local_in(parse_time(p, value, default_zone)?, zone).format("%Y-%m-%dT%H:%M:%S").to_string());
                }
            }
            TimingDraft::Recurring {
                dtstart: local_start.format("%Y-%m-%dT%H:%M:%S").to_string(),
                rrule: rule.to_rfc5545(),
                duration: duration.to_string(),
                exdates,
            }
        }
    };
    let draft = EntryDraft {
        kind: options.kind,
        title,
        reason,
        owner: options.owner.clone(),
        scope: options.scope.clone(),
        zone: zone.name().to_string(),
        timing,
        freeze_effect: if options.kind == EntryKind::Freeze { options.freeze_effect } else { None },
    };
    // Refuse what would not validate now, with the event's line, rather than at save time.
    CalendarEntry::from_draft("import", 1, &draft).map_err(|e| {
        Invalid(
            e.0.into_iter()
                .map(|f| {
                    signalbox_domain::validate::FieldError::new(format!("file/line/{}", event.line), format!("{}: {}", f.field, f.message))
                })
                .collect(),
        )
    })?;
    Ok(Some(ImportedEvent { uid, line: event.line, draft }))
}

enum EndSpec {
    At(IcsTime),
    Lasting(CalendarDuration),
}

/// Parses an `.ics` file into entry drafts, one per VEVENT (cancelled events are skipped).
/// Anything malformed is refused with its line number in the field path (`file/line/12`).
pub fn import(text: &str, options: &ImportOptions) -> Result<Vec<ImportedEvent>, Invalid> {
    if text.len() > MAX_ICS_BYTES {
        return Err(Invalid::one("file", format!("the file is {} bytes; at most {MAX_ICS_BYTES}", text.len())));
    }
    let default_zone = parse_zone("default_zone", &options.default_zone)?;
    // Files saved by Windows tools often start with a byte-order mark.
    let lines = content_lines(text.strip_prefix('\u{feff}').unwrap_or(text))?;
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut events = Vec::new();
    let mut current: Option<EventProps> = None;
    let mut saw_calendar = false;
    for line in lines {
        match line.name.as_str() {
            "BEGIN" => {
                let component = line.value.trim().to_ascii_uppercase();
                if stack.is_empty() && component != "VCALENDAR" {
                    return Err(line_error(line.line, format!("expected BEGIN:VCALENDAR, found BEGIN:{component}")));
                }
                if stack.len() >= MAX_NESTING {
                    return Err(line_error(line.line, format!("components nested deeper than {MAX_NESTING}")));
                }
                if component == "VCALENDAR" {
                    if !stack.is_empty() {
                        return Err(line_error(line.line, "a VCALENDAR inside another component"));
                    }
                    saw_calendar = true;
                }
                if component == "VEVENT" {
                    if stack.len() != 1 {
                        return Err(line_error(line.line, "a VEVENT must sit directly inside the VCALENDAR"));
                    }
                    current = Some(EventProps { line: line.line, props: vec![] });
                }
                stack.push((component, line.line));
            }
            "END" => {
                let component = line.value.trim().to_ascii_uppercase();
                match stack.pop() {
                    Some((open, _)) if open == component => {}
                    Some((open, opened_at)) => {
                        return Err(line_error(line.line, format!("END:{component} does not close BEGIN:{open} from line {opened_at}")));
                    }
                    None => return Err(line_error(line.line, format!("END:{component} without a BEGIN"))),
                }
                if component == "VEVENT" {
                    if let Some(event) = current.take() {
                        if let Some(imported) = convert_event(&event, options, default_zone)? {
                            if events.len() >= MAX_IMPORTED_EVENTS {
                                return Err(line_error(line.line, format!("more than {MAX_IMPORTED_EVENTS} events")));
                            }
                            events.push(imported);
                        }
                    }
                }
            }
            _ => {
                if stack.is_empty() {
                    return Err(line_error(line.line, format!("{} outside BEGIN:VCALENDAR", line.name)));
                }
                // Properties of the event itself; those of nested VALARMs are not the event's.
                if let (Some(event), Some((top, _))) = (current.as_mut(), stack.last()) {
                    if top == "VEVENT" {
                        event.props.push(line);
                    }
                }
            }
        }
    }
    if let Some((open, opened_at)) = stack.last() {
        return Err(line_error(*opened_at, format!("BEGIN:{open} is never closed")));
    }
    if !saw_calendar {
        return Err(Invalid::one("file", "no BEGIN:VCALENDAR found; is this an iCalendar file?"));
    }
    Ok(events)
}

/// Turns imported all-day events (holidays) into EXDATEs for a recurring entry: every
/// occurrence starting on one of those local dates is skipped. Returns the local start times
/// to add to the entry's `exdates`.
pub fn holiday_exdates(entry: &CalendarEntry, holidays: &[ImportedEvent]) -> Vec<String> {
    let Some(recurrence) = entry.recurrence() else {
        return vec![];
    };
    let mut dates = BTreeSet::new();
    for h in holidays {
        match &h.draft.timing {
            TimingDraft::OneOff { start, .. } => {
                if let Ok(t) = DateTime::parse_from_rfc3339(start) {
                    dates.insert(to_local(recurrence.zone(), t.with_timezone(&Utc)).date());
                }
            }
            TimingDraft::Recurring { dtstart, .. } => {
                if let Ok(t) = NaiveDateTime::parse_from_str(dtstart, "%Y-%m-%dT%H:%M:%S") {
                    dates.insert(t.date());
                }
            }
        }
    }
    recurrence.starts_on_dates(&dates).into_iter().map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn options() -> ImportOptions {
        ImportOptions {
            kind: EntryKind::BusinessEvent,
            scope: Scope::Organization,
            owner: "calendar-team".into(),
            default_zone: "Europe/Berlin".into(),
            freeze_effect: None,
        }
    }

    const HOLIDAYS: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//Holidays//EN\r\nBEGIN:VEVENT\r\nUID:xmas@example.org\r\nDTSTAMP:20250101T000000Z\r\nSUMMARY:Christmas Day\\, public holiday\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261226\r\nRRULE:FREQ=YEARLY\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:x\r\nEND:VALARM\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:unity@example.org\r\nSUMMARY:German Unity\r\n  Day\r\nDTSTART;VALUE=DATE:20261003\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:gone@example.org\r\nSTATUS:CANCELLED\r\nSUMMARY:Cancelled\r\nDTSTART;VALUE=DATE:20261004\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn imports_a_holiday_calendar() {
        let events = import(HOLIDAYS, &options()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].draft.title, "Christmas Day, public holiday");
        assert_eq!(events[0].line, 4);
        assert_eq!(
            events[0].draft.timing,
            TimingDraft::Recurring {
                dtstart: "2026-12-25T00:00:00".into(),
                rrule: "FREQ=YEARLY".into(),
                duration: "P1D".into(),
                exdates: vec![]
            }
        );
        assert_eq!(events[1].draft.title, "German Unity Day");
        assert_eq!(
            events[1].draft.timing,
            TimingDraft::OneOff { start: "2026-10-02T22:00:00+00:00".into(), end: "2026-10-03T22:00:00+00:00".into() }
        );
    }

    #[test]
    fn byte_order_mark_and_bare_newlines_are_accepted() {
        let text = format!("\u{feff}{}", HOLIDAYS.replace("\r\n", "\n"));
        assert_eq!(import(&text, &options()).unwrap(), import(HOLIDAYS, &options()).unwrap());
    }

    #[test]
    fn holidays_become_exdates_of_a_series() {
        let draft = EntryDraft {
            kind: EntryKind::ReleaseWindow,
            title: "Daily window".into(),
            reason: "r".into(),
            owner: "o".into(),
            scope: Scope::Organization,
            zone: "Europe/Berlin".into(),
            timing: TimingDraft::Recurring {
                dtstart: "2026-09-01T10:00:00".into(),
                rrule: "FREQ=DAILY".into(),
                duration: "PT2H".into(),
                exdates: vec![],
            },
            freeze_effect: None,
        };
        let entry = CalendarEntry::from_draft("w", 1, &draft).unwrap();
        let holidays = import(HOLIDAYS, &options()).unwrap();
        assert_eq!(holiday_exdates(&entry, &holidays), ["2026-10-03T10:00:00", "2026-12-25T10:00:00"]);
    }

    #[test]
    fn imports_outlook_and_mozilla_tzids() {
        // As Outlook writes it: a Windows zone name, quoted, with its own VTIMEZONE (ignored: the
        // name is mapped to the IANA zone, whose rules are authoritative).
        let outlook = "BEGIN:VCALENDAR\r\nPRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r\nBEGIN:VTIMEZONE\r\n\
                       TZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\nDTSTART:16011028T030000\r\nTZOFFSETFROM:+0200\r\n\
                       TZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nSUMMARY:Change board\r\n\
                       DTSTART;TZID=\"W. Europe Standard Time\":20260602T100000\r\nDTEND;TZID=\"W. Europe Standard Time\":20260602T110000\r\n\
                       RRULE:FREQ=WEEKLY;BYDAY=TU\r\nEXDATE;TZID=\"W. Europe Standard Time\":20260616T100000\r\nEND:VEVENT\r\n\
                       BEGIN:VEVENT\r\nSUMMARY:Vendor call\r\nDTSTART;TZID=/mozilla.org/20071231_1/America/New_York:20260701T090000\r\n\
                       DTEND;TZID=/mozilla.org/20071231_1/America/New_York:20260701T093000\r\nEND:VEVENT\r\n\
                       BEGIN:VEVENT\r\nSUMMARY:Eastern\r\nDTSTART;TZID=Eastern Standard Time:20260105T090000\r\n\
                       DURATION:PT1H\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let events = import(outlook, &options()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].draft.zone, "Europe/Berlin");
        assert_eq!(
            events[0].draft.timing,
            TimingDraft::Recurring {
                dtstart: "2026-06-02T10:00:00".into(),
                rrule: "FREQ=WEEKLY;BYDAY=TU".into(),
                duration: "PT1H".into(),
                exdates: vec!["2026-06-16T10:00:00".into()]
            }
        );
        // Summer time in New York (-4): 09:00 local is 13:00Z.
        assert_eq!(events[1].draft.zone, "America/New_York");
        let vendor = CalendarEntry::from_draft("v", 1, &events[1].draft).unwrap();
        let (occ, _) = vendor.occurrences("2026-07-01T00:00:00Z".parse().unwrap(), "2026-07-02T00:00:00Z".parse().unwrap(), 10).unwrap();
        assert_eq!(occ[0].start, "2026-07-01T13:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // Winter in New York (-5).
        let eastern = CalendarEntry::from_draft("e", 1, &events[2].draft).unwrap();
        let (occ, _) = eastern.occurrences("2026-01-05T00:00:00Z".parse().unwrap(), "2026-01-06T00:00:00Z".parse().unwrap(), 10).unwrap();
        assert_eq!(occ[0].start, "2026-01-05T14:00:00Z".parse::<DateTime<Utc>>().unwrap());
    }

    #[test]
    fn malformed_input_names_the_line() {
        let cases = [
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:2026\nEND:VEVENT\nEND:VCALENDAR\n", "file/line/3", "is not a DATE-TIME"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\nEND:VTODO\n", "file/line/4", "does not close BEGIN:VEVENT from line 2"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY no colon\n", "file/line/3", "expected NAME:VALUE"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\nRRULE:FREQ=WEEKLY;BYDAY=XX\nEND:VEVENT\nEND:VCALENDAR\n", "file/line/4", "BYDAY"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;TZID=Mars Standard Time:20260101T100000\nDURATION:PT1H\nEND:VEVENT\nEND:VCALENDAR\n", "file/line/3", "IANA"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T100000Z\nEND:VEVENT\nEND:VCALENDAR\n", "file/line/3", "needs DTEND or DURATION"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260101T100000Z\nDTEND:20250101T100000Z\nEND:VEVENT\nEND:VCALENDAR\n", "file/line/2", "must be after"),
            ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\n", "file/line/2", "never closed"),
            (" folded\n", "file/line/1", "continuation"),
            ("BEGIN:VEVENT\nEND:VEVENT\n", "file/line/1", "expected BEGIN:VCALENDAR"),
        ];
        for (text, field, message) in cases {
            let err = import(text, &options()).unwrap_err();
            assert_eq!(err.0[0].field, field, "{text:?}: {err}");
            assert!(err.0[0].message.contains(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn folding_keeps_utf8_and_width() {
        let mut out = String::new();
        fold(&format!("SUMMARY:{}", "ä".repeat(100)), &mut out);
        for line in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(line.len() <= 75, "{} octets", line.len());
        }
        let unfolded = out.replace("\r\n ", "");
        assert_eq!(unfolded.trim_end(), format!("SUMMARY:{}", "ä".repeat(100)));
    }

    #[test]
    fn escaping_round_trips() {
        let text = "a;b,c\\d\nnext";
        assert_eq!(unescape_text(&escape_text(text)), text);
    }

    proptest! {
        #[test]
        fn import_never_panics(body in "(BEGIN:VCALENDAR|BEGIN:VEVENT|END:VEVENT|END:VCALENDAR|DTSTART[;VALUE=DATE]{0,1}:[0-9TZ]{0,16}|RRULE:FREQ=[A-Z]{0,7}|DTEND:[0-9TZ]{0,16}|DURATION:P[0-9A-Z]{0,5}| x|EXDATE:[0-9TZ,]{0,20}|\\PC{0,10})(\r?\n(BEGIN:VEVENT|END:VEVENT|END:VCALENDAR|DTSTART:[0-9TZ]{0,16}|RRULE:FREQ=DAILY;COUNT=[0-9]{1,3}| x|\\PC{0,10})){0,12}") {
            let _ = import(&body, &options());
        }
    }
}
