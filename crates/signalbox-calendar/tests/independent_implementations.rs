//! The calendar engine checked against independent implementations from PyPI, each run as
//! one batch process: python-dateutil's rrule (with PEP 495 `zoneinfo` for local times) for
//! recurrence, and the `icalendar` package for the exported feed.

mod support;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use serde_json::json;
use signalbox_calendar::{CalendarEntry, EntryDraft, EntryKind, Scope, TimingDraft};
use support::{run_python, Rng};

const ZONES: &[&str] = &["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"];

/// Local times next to daylight-saving changes (in the gap, in the overlap, just around them)
/// and on leap days; the generator also draws plain random ones.
const TRICKY_STARTS: &[&str] = &[
    "2026-03-29T02:30:00", // Berlin gap
    "2026-10-25T02:30:00", // Berlin overlap
    "2026-03-28T02:30:00",
    "2026-03-08T02:30:00", // New York gap
    "2026-11-01T01:30:00", // New York overlap
    "2026-03-07T02:00:00",
    "2026-10-04T02:15:00", // Lord Howe 30-minute gap
    "2026-04-05T01:45:00", // Lord Howe 30-minute overlap
    "2026-10-03T02:15:00",
    "2024-02-29T10:00:00", // leap days
    "2028-02-29T02:30:00",
    "2025-12-31T23:30:00",
    "2026-01-31T09:00:00",
];

const DAYS: &[&str] = &["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
const LIMIT: usize = 40;

struct Case {
    zone: &'static str,
    dtstart: String,
    rrule: String,
    exdates: Vec<String>,
}

fn random_start(rng: &mut Rng) -> String {
    if rng.chance(60) {
        return rng.pick(TRICKY_STARTS).to_string();
    }
    let day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + Duration::days(rng.below(365 * 5) as i64);
    let time = [(0, 0), (1, 30), (2, 30), (10, 0), (23, 45)][rng.below(5) as usize];
    day.and_hms_opt(time.0, time.1, 0).unwrap().format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn list(rng: &mut Rng, values: &[i64], max: u64) -> String {
    let n = 1 + rng.below(max) as usize;
    let mut picked: Vec<i64> = (0..n).map(|_| *rng.pick(values)).collect();
    picked.sort_unstable();
    picked.dedup();
    picked.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

fn random_case(rng: &mut Rng) -> Case {
    let zone = *rng.pick(ZONES);
    let dtstart = random_start(rng);
    let freq = *rng.pick(&["YEARLY", "MONTHLY", "MONTHLY", "WEEKLY", "WEEKLY", "DAILY", "HOURLY"]);
    let mut parts = vec![format!("FREQ={freq}")];
    if rng.chance(40) {
        parts.push(format!("INTERVAL={}", 1 + rng.below(3)));
    }
    let mut has_by = false;
    if freq == "YEARLY" && rng.chance(50) {
        parts.push(format!("BYMONTH={}", list(rng, &[1, 2, 3, 10, 11, 12], 2)));
        has_by = true;
    }
    if matches!(freq, "YEARLY" | "MONTHLY" | "DAILY") && rng.chance(40) {
        parts.push(format!("BYMONTHDAY={}", list(rng, &[1, 15, 28, 29, 30, 31, -1, -2], 3)));
        has_by = true;
    }
    if rng.chance(50) {
        // Ordinal weekdays together with month days are mostly impossible (the 15th is never
        // the last Sunday); the engine refuses those only after a long search, so they are
        // left to the unit tests.
        let with_month_day = parts.iter().any(|p| p.starts_with("BYMONTHDAY"));
        let ordinal = matches!(freq, "MONTHLY" | "YEARLY") && !with_month_day && rng.chance(50);
        let n = 1 + rng.below(3) as usize;
        let mut days: Vec<String> = (0..n)
            .map(|_| {
                let d = rng.pick(DAYS);
                if ordinal {
                    format!("{}{d}", rng.pick(&[1, 2, -1, 4]))
                } else {
                    d.to_string()
                }
            })
            .collect();
        days.sort();
        days.dedup();
        parts.push(format!("BYDAY={}", days.join(",")));
        has_by = true;
    }
    if freq != "HOURLY" && rng.chance(30) {
        parts.push(format!("BYHOUR={}", list(rng, &[0, 1, 2, 3, 9, 17], 2)));
        has_by = true;
    }
    if freq == "HOURLY" {
        parts.push(format!("BYMINUTE={}", list(rng, &[0, 15, 30], 2)));
        has_by = true;
    }
    if has_by && freq != "HOURLY" && rng.chance(35) {
        parts.push(format!("BYSETPOS={}", list(rng, &[1, 2, -1, -2], 2)));
    }
    match rng.below(3) {
        0 => parts.push(format!("COUNT={}", 1 + rng.below(30))),
        1 => {
            let base = NaiveDateTime::parse_from_str(&dtstart, "%Y-%m-%dT%H:%M:%S").unwrap();
            let until = base + Duration::hours(rng.below(24 * 400) as i64);
            parts.push(format!("UNTIL={}", until.format("%Y%m%dT%H%M%SZ")));
        }
        _ => {}
    }
    let mut exdates = Vec::new();
    if rng.chance(40) {
        let base = NaiveDateTime::parse_from_str(&dtstart, "%Y-%m-%dT%H:%M:%S").unwrap();
        for _ in 0..1 + rng.below(3) {
            let step = match freq {
                "HOURLY" => Duration::hours(rng.below(48) as i64),
                "DAILY" => Duration::days(rng.below(20) as i64),
                _ => Duration::weeks(rng.below(10) as i64),
            };
            exdates.push((base + step).format("%Y-%m-%dT%H:%M:%S").to_string());
        }
    }
    Case { zone, dtstart, rrule: parts.join(";"), exdates }
}

fn draft(case: &Case) -> EntryDraft {
    EntryDraft {
        kind: EntryKind::ReleaseWindow,
        title: "generated".into(),
        reason: "oracle comparison".into(),
        owner: "tests".into(),
        scope: Scope::Organization,
        zone: case.zone.into(),
        timing: TimingDraft::Recurring {
            dtstart: case.dtstart.clone(),
            rrule: case.rrule.clone(),
            duration: "PT1H".into(),
            exdates: case.exdates.clone(),
        },
        freeze_effect: None,
    }
}

const DATEUTIL: &str = r#"
import json, sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from dateutil.rrule import rrulestr, rruleset

out = []
for case in json.load(sys.stdin):
    zone = ZoneInfo(case["zone"])
    start = datetime.fromisoformat(case["dtstart"]).replace(tzinfo=zone)
    stop = datetime.fromisoformat(case["stop_local"])
    rules = rruleset()
    rules.rrule(rrulestr(case["rrule"], dtstart=start))
    for ex in case["exdates"]:
        rules.exdate(datetime.fromisoformat(ex).replace(tzinfo=zone))
    starts = []
    for occurrence in rules:
        if occurrence.replace(tzinfo=None) > stop or len(starts) >= case["limit"]:
            break
        starts.append(occurrence.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    out.append(starts)
json.dump(out, sys.stdout)
"#;

fn stop_local(case: &Case) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(&case.dtstart, "%Y-%m-%dT%H:%M:%S").unwrap() + Duration::days(3 * 366)
}

fn ours(entry: &CalendarEntry, stop: NaiveDateTime) -> Vec<String> {
    let mut starts = Vec::new();
    let recurrence = entry.recurrence().expect("recurring");
    recurrence.for_each_start(|local, start: DateTime<Utc>| {
        if local > stop || starts.len() >= LIMIT {
            return false;
        }
        starts.push(start.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        true
    });
    starts
}

#[test]
fn recurrence_matches_python_dateutil_on_generated_rules() {
    let clock = std::time::Instant::now();
    let mut rng = Rng::new(0x5167_4e41_4c42_4f58);
    let mut cases = Vec::new();
    let mut entries = Vec::new();
    let mut refused = 0;
    while cases.len() < 1_500 {
        let case = random_case(&mut rng);
        match CalendarEntry::from_draft("gen", 1, &draft(&case)) {
            Ok(entry) => {
                entries.push(entry);
                cases.push(case);
            }
            Err(_) => refused += 1,
        }
    }
    // Refusals are only rules that produce nothing (e.g. BYMONTHDAY=31 with BYMONTH=2).
    assert!(refused < cases.len() / 5, "{refused} generated rules refused");
    let input: Vec<_> = cases
        .iter()
        .map(|c| {
            json!({"zone": c.zone, "dtstart": c.dtstart, "rrule": c.rrule, "exdates": c.exdates,
                   "stop_local": stop_local(c).format("%Y-%m-%dT%H:%M:%S").to_string(), "limit": LIMIT})
        })
        .collect();
    let expected: Vec<Vec<String>> = serde_json::from_str(&run_python(DATEUTIL, &serde_json::to_string(&input).unwrap())).unwrap();
    assert_eq!(expected.len(), cases.len());
    let mut mismatches = Vec::new();
    let mut compared_occurrences = 0;
    for ((case, entry), theirs) in cases.iter().zip(&entries).zip(&expected) {
        let ours = ours(entry, stop_local(case));
        compared_occurrences += theirs.len();
        if &ours != theirs {
            mismatches.push(format!(
                "{} DTSTART={} RRULE:{} EXDATE={:?}\n  ours:     {:?}\n  dateutil: {:?}",
                case.zone,
                case.dtstart,
                case.rrule,
                case.exdates,
                &ours[..ours.len().min(6)],
                &theirs[..theirs.len().min(6)]
            ));
        }
    }
    eprintln!(
        "compared {} rules, {compared_occurrences} occurrences, {refused} generated rules refused, in {:?}",
        cases.len(),
        clock.elapsed()
    );
    assert!(compared_occurrences > 10_000, "only {compared_occurrences} occurrences compared");
    assert!(
        mismatches.is_empty(),
        "{} of {} rules differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches[..mismatches.len().min(8)].join("\n")
    );
}

const ICALENDAR: &str = r#"
import json, sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from icalendar import Calendar

cal = Calendar.from_ical(sys.stdin.read())
out = {"events": {}, "timezones": {}}
def utc(value):
    if value.tzinfo is None:
        raise SystemExit(f"floating time {value}")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
for tz in cal.walk("VTIMEZONE"):
    name = str(tz["TZID"])
    ours = tz.to_tz(lookup_tzid=False)  # build it from our observances, not by name
    real = ZoneInfo(name)
    # Our VTIMEZONE must give the tz database's offset at every hour of two years.
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    wrong = []
    for h in range(0, 2 * 366 * 24):
        t = start + timedelta(hours=h)
        if t.astimezone(ours).utcoffset() != t.astimezone(real).utcoffset():
            wrong.append(t.isoformat())
    out["timezones"][name] = wrong[:3]
for ev in cal.walk("VEVENT"):
    start = ev.decoded("DTSTART")
    item = {
        "summary": str(ev["SUMMARY"]),
        "description": str(ev.get("DESCRIPTION", "")),
        "sequence": int(ev["SEQUENCE"]),
        "dtstamp": utc(ev.decoded("DTSTAMP")),
        "dtstart": utc(start),
        "tzid": ev["DTSTART"].params.get("TZID"),
    }
    if "DTEND" in ev:
        item["dtend"] = utc(ev.decoded("DTEND"))
    if "DURATION" in ev:
        item["duration_seconds"] = int(ev.decoded("DURATION").total_seconds())
    if "RRULE" in ev:
        item["rrule"] = ev["RRULE"].to_ical().decode()
    exdates = []
    ex = ev.get("EXDATE")
    for prop in (ex if isinstance(ex, list) else [ex] if ex is not None else []):
        exdates.extend(utc(d.dt) for d in prop.dts)
    item["exdates"] = sorted(exdates)
    out["events"][str(ev["UID"])] = item
json.dump(out, sys.stdout)
"#;

#[test]
fn exported_feed_parses_back_with_python_icalendar() {
    use signalbox_calendar::ics::{export, DepartureEvent, ExportOptions};
    use signalbox_calendar::train::{CadenceDraft, TrainCadence};
    use signalbox_calendar::FreezeEffect;
    let entry = |id: &str, version: u32, kind: EntryKind, zone: &str, title: &str, timing: TimingDraft| {
        let draft = EntryDraft {
            kind,
            title: title.into(),
            reason: "why; with, punctuation\nand a second line".into(),
            owner: "release-managers".into(),
            scope: Scope::Domain { domain: "payments".into() },
            zone: zone.into(),
            timing,
            freeze_effect: (kind == EntryKind::Freeze).then_some(FreezeEffect::LetFinish),
        };
        CalendarEntry::from_draft(id, version, &draft).unwrap()
    };
    let recurring = |dtstart: &str, rrule: &str, duration: &str, exdates: &[&str]| TimingDraft::Recurring {
        dtstart: dtstart.into(),
        rrule: rrule.into(),
        duration: duration.into(),
        exdates: exdates.iter().map(|s| s.to_string()).collect(),
    };
    let entries = vec![
        entry(
            "weekly-window",
            3,
            EntryKind::ReleaseWindow,
            "Europe/Berlin",
            "Thursday window — Zählerstände, très long titre qui doit être plié sur plusieurs lignes",
            recurring("2026-03-05T10:00:00", "FREQ=WEEKLY;BYDAY=TH", "PT4H", &["2026-03-26T10:00:00", "2026-04-02T10:00:00"]),
        ),
        entry(
            "lord-howe",
            1,
            EntryKind::MaintenanceWindow,
            "Australia/Lord_Howe",
            "Half-hour DST",
            recurring("2026-10-04T02:15:00", "FREQ=DAILY;UNTIL=20261010T000000Z", "PT1H", &[]),
        ),
        entry(
            "year-end",
            7,
            EntryKind::Freeze,
            "America/New_York",
            "Year-end freeze",
            TimingDraft::OneOff { start: "2026-12-18T17:00:00-05:00".into(), end: "2027-01-04T09:00:00-05:00".into() },
        ),
        entry(
            "utc-monthly",
            2,
            EntryKind::VendorRelease,
            "UTC",
            "Vendor patch day",
            recurring("2026-01-13T18:00:00", "FREQ=MONTHLY;BYDAY=2TU;COUNT=12", "P1D", &["2026-02-10T18:00:00"]),
        ),
    ];
    let train = TrainCadence::from_draft(&CadenceDraft {
        zone: "Europe/Lisbon".into(),
        dtstart: "2026-01-01T10:00:00".into(),
        rrule: "FREQ=WEEKLY;BYDAY=TH".into(),
        exdates: vec![],
        cutoff_before: Some("PT40H".into()),
    })
    .unwrap();
    let departures: Vec<DepartureEvent> = train
        .next_departures("2026-07-01T00:00:00Z".parse().unwrap(), 2)
        .into_iter()
        .map(|d| DepartureEvent { train_id: "payments-train".into(), title: "Payments train".into(), departure: d, version: 1 })
        .collect();
    let options = ExportOptions {
        dtstamp: "2026-06-01T12:00:00Z".parse().unwrap(),
        calendar_name: "Signalbox, payments".into(),
        uid_domain: "signalbox.example".into(),
    };
    let feed = export(&entries, &departures, &options);
    assert_eq!(feed, export(&entries, &departures, &options), "the feed is deterministic");
    assert!(feed.split("\r\n").all(|l| l.len() <= 75), "every line folded to 75 octets");

    let parsed: serde_json::Value = serde_json::from_str(&run_python(ICALENDAR, &feed)).unwrap();
    for (zone, wrong) in parsed["timezones"].as_object().unwrap() {
        assert_eq!(wrong, &json!([]), "VTIMEZONE {zone} disagrees with the tz database");
    }
    let zones: Vec<&String> = parsed["timezones"].as_object().unwrap().keys().collect();
    assert_eq!(zones, ["America/New_York", "Australia/Lord_Howe", "Europe/Berlin"]);
    let events = parsed["events"].as_object().unwrap();
    assert_eq!(events.len(), 8, "four entries, two departures and their two cut-offs");
    let window = &events["weekly-window@signalbox.example"];
    assert_eq!(window["summary"], entries[0].title.as_str());
    assert_eq!(window["sequence"], 3);
    assert_eq!(window["dtstamp"], "2026-06-01T12:00:00Z");
    assert_eq!(window["tzid"], "Europe/Berlin");
    assert_eq!(window["dtstart"], "2026-03-05T09:00:00Z");
    assert_eq!(window["duration_seconds"], 4 * 3600);
    assert_eq!(window["rrule"], "FREQ=WEEKLY;BYDAY=TH");
    // 26 March is CET (09:00Z), 2 April CEST (08:00Z).
    assert_eq!(window["exdates"], json!(["2026-03-26T09:00:00Z", "2026-04-02T08:00:00Z"]));
    assert!(window["description"].as_str().unwrap().starts_with("why; with, punctuation\nand a second line"));
    let lord_howe = &events["lord-howe@signalbox.example"];
    assert_eq!(lord_howe["rrule"], "FREQ=DAILY;UNTIL=20261010T000000Z");
    assert_eq!(lord_howe["dtstart"], "2026-10-03T15:45:00Z", "02:15 in the gap is read with the offset before it");
    let freeze = &events["year-end@signalbox.example"];
    assert_eq!(
        (&freeze["dtstart"], &freeze["dtend"], &freeze["sequence"]),
        (&json!("2026-12-18T22:00:00Z"), &json!("2027-01-04T14:00:00Z"), &json!(7))
    );
    assert!(freeze["description"].as_str().unwrap().contains("Freeze effect: let_finish"));
    let vendor = &events["utc-monthly@signalbox.example"];
    assert_eq!(vendor["rrule"], "FREQ=MONTHLY;COUNT=12;BYDAY=2TU");
    assert_eq!(vendor["exdates"], json!(["2026-02-10T18:00:00Z"]));
    assert_eq!(vendor["duration_seconds"], 86_400);
    assert_eq!(events["payments-train-20260702T090000Z@signalbox.example"]["dtstart"], "2026-07-02T09:00:00Z");
    assert!(events["payments-train-20260709T090000Z@signalbox.example"]["description"]
        .as_str()
        .unwrap()
        .contains("Cut-off 2026-07-07T18:00:00+01:00"));
    // Each departure's cut-off is an event of its own: 40 h before Thursday 10:00 Lisbon.
    let cutoff = &events["payments-train-20260709T090000Z-cutoff@signalbox.example"];
    assert_eq!(cutoff["dtstart"], "2026-07-07T17:00:00Z");
    assert_eq!(cutoff["summary"], "Payments train: cut-off");
    assert_eq!(cutoff["sequence"], 1);
    assert_eq!(events["payments-train-20260702T090000Z-cutoff@signalbox.example"]["dtstart"], "2026-06-30T17:00:00Z");
}
