//! The conflict engine: hand-written scenarios for each rule, and the index checked against the
//! naive scan on random calendars.

mod support;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use signalbox_calendar::conflict::{
    check_naive, preview_with, BlockedHow, BlockedItemKind, CheckRequest, ConflictIndex, ConflictKind, NaiveScan, ReleaseStatus,
    ScheduledDeployment, ScheduledKind, Severity,
};
use signalbox_calendar::{CalendarEntry, EntryDraft, EntryKind, FreezeEffect, Scope, Target, TimingDraft};
use signalbox_domain::model::Tier;
use std::collections::HashMap;
use support::Rng;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn entry(id: &str, kind: EntryKind, scope: Scope, timing: TimingDraft) -> CalendarEntry {
    let draft = EntryDraft {
        kind,
        title: format!("{id} title"),
        reason: format!("{id} reason"),
        owner: "alice".into(),
        scope,
        zone: "Europe/Berlin".into(),
        timing,
        freeze_effect: (kind == EntryKind::Freeze).then_some(FreezeEffect::StopAtNextStep),
    };
    CalendarEntry::from_draft(id, 1, &draft).unwrap()
}

fn one_off(start: &str, end: &str) -> TimingDraft {
    TimingDraft::OneOff { start: start.into(), end: end.into() }
}

fn weekly(dtstart: &str, rule: &str, duration: &str) -> TimingDraft {
    TimingDraft::Recurring { dtstart: dtstart.into(), rrule: rule.into(), duration: duration.into(), exdates: vec![] }
}

fn payments_prod() -> Target {
    Target { service: "payments-api".into(), domain: "payments".into(), environment: "prod-eu".into(), tier: Tier::Prod }
}

fn request(start: &str, minutes: u32) -> CheckRequest {
    CheckRequest {
        target: payments_prod(),
        start: t(start),
        expected_duration_seconds: minutes * 60,
        requester: Some("bob".into()),
        release_id: Some("rel-1".into()),
        depends_on: vec![],
    }
}

fn index(entries: Vec<CalendarEntry>, deployments: Vec<ScheduledDeployment>, releases: Vec<ReleaseStatus>) -> ConflictIndex {
    ConflictIndex::build(entries, deployments, releases, t("2026-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z"))
}

fn kinds(index: &ConflictIndex, request: &CheckRequest) -> Vec<ConflictKind> {
    let indexed = index.check(request).unwrap();
    let naive = check_naive(index.entries(), index.deployments(), &[], request).unwrap();
    if request.depends_on.is_empty() {
        assert_eq!(indexed, naive);
    }
    indexed.iter().map(|c| c.kind).collect()
}

#[test]
fn freeze_inside_and_runway() {
    // Year-end freeze for the whole organization from 20 Dec 00:00 Berlin.
    let freeze =
        entry("year-end", EntryKind::Freeze, Scope::Organization, one_off("2026-12-20T00:00:00+01:00", "2027-01-04T00:00:00+01:00"));
    let idx = index(vec![freeze], vec![], vec![]);
    assert_eq!(kinds(&idx, &request("2026-12-21T10:00:00Z", 30)), [ConflictKind::InsideFreeze]);
    // Starts 22:00Z on the 19th, runs 2 h: runs into the freeze at 23:00Z.
    let conflicts = idx.check(&request("2026-12-19T22:00:00Z", 120)).unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].kind, ConflictKind::RunsIntoFreeze);
    assert_eq!(conflicts[0].freeze_effect, Some(FreezeEffect::StopAtNextStep));
    assert!(conflicts[0].reason.contains("2026-12-20T00:00:00+01:00"), "{}", conflicts[0].reason);
    assert!(conflicts[0].reason.contains("year-end reason"));
    // Ends exactly when the freeze begins: no conflict ([start, end) is half-open).
    assert!(kinds(&idx, &request("2026-12-19T22:00:00Z", 60)).is_empty());
}

#[test]
fn active_freezes_for_running_work() {
    let freeze = entry(
        "f",
        EntryKind::Freeze,
        Scope::Service { service: "payments-api".into() },
        one_off("2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z"),
    );
    let idx = index(vec![freeze], vec![], vec![]);
    assert!(idx.active_freezes(&payments_prod(), t("2026-05-31T23:59:59Z")).is_empty());
    let active = idx.active_freezes(&payments_prod(), t("2026-06-01T00:00:00Z"));
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].0.as_str(), active[0].1), ("f", FreezeEffect::StopAtNextStep));
    assert!(idx.active_freezes(&payments_prod(), t("2026-06-02T00:00:00Z")).is_empty(), "the end is exclusive");
}

#[test]
fn scopes_hit_what_they_name() {
    let t1 = one_off("2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z");
    let entries = vec![
        entry("d", EntryKind::Freeze, Scope::Domain { domain: "payments".into() }, t1.clone()),
        entry("d-other", EntryKind::Freeze, Scope::Domain { domain: "search".into() }, t1.clone()),
        entry("s", EntryKind::Freeze, Scope::Service { service: "payments-api".into() }, t1.clone()),
        entry("e", EntryKind::Freeze, Scope::Environment { environment: "prod-eu".into() }, t1.clone()),
        entry("e-other", EntryKind::Freeze, Scope::Environment { environment: "prod-us".into() }, t1.clone()),
        entry("tier", EntryKind::Freeze, Scope::EnvironmentTier { tier: Tier::Prod }, t1.clone()),
        entry("tier-other", EntryKind::Freeze, Scope::EnvironmentTier { tier: Tier::Staging }, t1),
    ];
    let idx = index(entries, vec![], vec![]);
    let hit: Vec<String> = idx.check(&request("2026-06-01T10:00:00Z", 10)).unwrap().into_iter().filter_map(|c| c.entry_id).collect();
    assert_eq!(hit, ["d", "e", "s", "tier"]);
}

#[test]
fn release_windows_only_when_they_exist_for_the_scope() {
    // Thursdays 10:00-14:00 Berlin for the payments domain.
    let window = entry(
        "thu",
        EntryKind::ReleaseWindow,
        Scope::Domain { domain: "payments".into() },
        weekly("2026-01-01T10:00:00", "FREQ=WEEKLY;BYDAY=TH", "PT4H"),
    );
    let idx = index(vec![window], vec![], vec![]);
    // Thursday 2026-07-02 10:00 CEST = 08:00Z.
    assert!(kinds(&idx, &request("2026-07-02T08:30:00Z", 60)).is_empty());
    assert_eq!(kinds(&idx, &request("2026-07-02T11:30:00Z", 60)), [ConflictKind::RunsPastReleaseWindow]);
    assert_eq!(kinds(&idx, &request("2026-07-03T08:30:00Z", 60)), [ConflictKind::OutsideReleaseWindow]);
    let mut other = request("2026-07-03T08:30:00Z", 60);
    other.target.domain = "search".into();
    assert!(kinds(&idx, &other).is_empty(), "no window for search means no window rule");
    // Outside the horizon the series is expanded on the fly and still found.
    assert!(kinds(&idx, &request("2027-07-01T08:30:00Z", 60)).is_empty());
    assert_eq!(kinds(&idx, &request("2027-07-02T08:30:00Z", 60)), [ConflictKind::OutsideReleaseWindow]);
}

#[test]
fn bookings_deployments_dependencies_and_warnings() {
    let booking_alice = entry(
        "book-a",
        EntryKind::Booking,
        Scope::Environment { environment: "prod-eu".into() },
        one_off("2026-05-01T08:00:00Z", "2026-05-01T12:00:00Z"),
    );
    let mut bob_draft_entry = entry(
        "book-b",
        EntryKind::Booking,
        Scope::Environment { environment: "prod-eu".into() },
        one_off("2026-05-01T08:00:00Z", "2026-05-01T12:00:00Z"),
    );
    bob_draft_entry.owner = "bob".into();
    // Carol asked for prod-eu too, awaiting the owner's approval: tentative, only a warning.
    let mut carol_pending = entry(
        "book-c",
        EntryKind::Booking,
        Scope::Environment { environment: "prod-eu".into() },
        one_off("2026-05-01T09:00:00Z", "2026-05-01T11:00:00Z"),
    );
    carol_pending.owner = "carol".into();
    carol_pending.tentative = true;
    let maintenance =
        entry("mw", EntryKind::MaintenanceWindow, Scope::Organization, weekly("2026-01-03T22:00:00", "FREQ=WEEKLY;BYDAY=SA", "PT4H"));
    let sale = entry(
        "sale",
        EntryKind::BusinessEvent,
        Scope::Domain { domain: "payments".into() },
        one_off("2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z"),
    );
    let deployments = vec![
        ScheduledDeployment {
            id: "dep-other".into(),
            kind: ScheduledKind::Deployment,
            release_id: Some("rel-2".into()),
            target: payments_prod(),
            start: t("2026-05-01T09:30:00Z"),
            end: t("2026-05-01T10:30:00Z"),
        },
        ScheduledDeployment {
            id: "dep-own".into(),
            kind: ScheduledKind::Deployment,
            release_id: Some("rel-1".into()),
            target: payments_prod(),
            start: t("2026-05-01T09:00:00Z"),
            end: t("2026-05-01T10:00:00Z"),
        },
        ScheduledDeployment {
            id: "train-1".into(),
            kind: ScheduledKind::TrainDeparture,
            release_id: None,
            target: Target { environment: "prod-us".into(), ..payments_prod() },
            start: t("2026-05-01T09:00:00Z"),
            end: t("2026-05-01T10:00:00Z"),
        },
    ];
    let releases = vec![
        ReleaseStatus { release_id: "done".into(), released_at: Some(t("2026-04-01T00:00:00Z")), scheduled_at: None },
        ReleaseStatus { release_id: "later".into(), released_at: None, scheduled_at: Some(t("2026-05-02T00:00:00Z")) },
        ReleaseStatus { release_id: "unplanned".into(), released_at: None, scheduled_at: None },
        ReleaseStatus { release_id: "earlier".into(), released_at: None, scheduled_at: Some(t("2026-04-30T00:00:00Z")) },
    ];
    let idx = index(vec![booking_alice, bob_draft_entry, carol_pending, maintenance, sale], deployments.clone(), releases.clone());
    let mut req = request("2026-05-01T09:00:00Z", 60);
    req.depends_on = ["done", "later", "unplanned", "earlier", "ghost"].map(String::from).to_vec();
    let conflicts = idx.check(&req).unwrap();
    let entries: Vec<CalendarEntry> = idx.entries().to_vec();
    assert_eq!(conflicts, check_naive(&entries, &deployments, &releases, &req).unwrap());
    let summary: Vec<(ConflictKind, Severity, Option<String>)> =
        conflicts.iter().map(|c| (c.kind, c.severity, c.entry_id.clone().or(c.item_id.clone()))).collect();
    assert_eq!(
        summary,
        [
            (ConflictKind::EnvironmentBooked, Severity::Blocking, Some("book-a".into())),
            (ConflictKind::EnvironmentBookingPending, Severity::Warning, Some("book-c".into())),
            (ConflictKind::EnvironmentBusy, Severity::Blocking, Some("dep-other".into())),
            (ConflictKind::DependencyNotReleased, Severity::Blocking, Some("unplanned".into())),
            (ConflictKind::DependencyNotReleased, Severity::Warning, Some("earlier".into())),
            (ConflictKind::DependencyScheduledLater, Severity::Blocking, Some("later".into())),
            (ConflictKind::DependencyUnknown, Severity::Blocking, Some("ghost".into())),
            (ConflictKind::BusinessEventOverlap, Severity::Warning, Some("sale".into())),
        ]
    );
    // Saturday 2026-05-02 22:00 Berlin = 20:00Z: the maintenance window is a warning.
    assert_eq!(kinds(&idx, &request("2026-05-02T20:30:00Z", 10)), [ConflictKind::MaintenanceOverlap]);
}

#[test]
fn what_a_new_freeze_would_block() {
    let deployments = vec![
        ScheduledDeployment {
            id: "starts-inside".into(),
            kind: ScheduledKind::Deployment,
            release_id: Some("r1".into()),
            target: payments_prod(),
            start: t("2026-12-21T09:00:00Z"),
            end: t("2026-12-21T10:00:00Z"),
        },
        ScheduledDeployment {
            id: "running".into(),
            kind: ScheduledKind::TrainDeparture,
            release_id: None,
            target: payments_prod(),
            start: t("2026-12-19T22:30:00Z"),
            end: t("2026-12-20T01:00:00Z"),
        },
        ScheduledDeployment {
            id: "staging".into(),
            kind: ScheduledKind::Deployment,
            release_id: None,
            target: Target { environment: "staging-eu".into(), tier: Tier::Staging, ..payments_prod() },
            start: t("2026-12-21T09:00:00Z"),
            end: t("2026-12-21T10:00:00Z"),
        },
    ];
    let bookings = vec![
        entry(
            "prod-booking",
            EntryKind::Booking,
            Scope::Environment { environment: "prod-eu".into() },
            one_off("2026-12-22T08:00:00Z", "2026-12-22T12:00:00Z"),
        ),
        entry(
            "staging-booking",
            EntryKind::Booking,
            Scope::Environment { environment: "staging-eu".into() },
            one_off("2026-12-22T08:00:00Z", "2026-12-22T12:00:00Z"),
        ),
    ];
    let idx = index(bookings, deployments, vec![]);
    let freeze = entry(
        "prod-freeze",
        EntryKind::Freeze,
        Scope::EnvironmentTier { tier: Tier::Prod },
        one_off("2026-12-20T00:00:00+01:00", "2027-01-04T00:00:00+01:00"),
    );
    let tiers: HashMap<String, Tier> = [("prod-eu".to_string(), Tier::Prod), ("staging-eu".to_string(), Tier::Staging)].into();
    let blocked = idx.preview_freeze(&freeze, t("2026-12-01T00:00:00Z"), t("2027-02-01T00:00:00Z"), &tiers).unwrap();
    let summary: Vec<_> = blocked.iter().map(|b| (b.item_kind, b.item_id.as_str(), b.how)).collect();
    assert_eq!(
        summary,
        [
            (BlockedItemKind::TrainDeparture, "running", BlockedHow::RunningWhenFreezeBegins),
            (BlockedItemKind::Deployment, "starts-inside", BlockedHow::CannotStart),
            (BlockedItemKind::Booking, "prod-booking", BlockedHow::CannotStart),
        ]
    );
    assert!(blocked.iter().all(|b| b.effect == FreezeEffect::StopAtNextStep));
}

/// A random small calendar over a few names, so that scopes and times collide often.
fn random_world(seed: u64) -> (Vec<CalendarEntry>, Vec<ScheduledDeployment>, Vec<ReleaseStatus>, Vec<CheckRequest>) {
    let mut rng = Rng::new(seed);
    let base = t("2026-03-01T00:00:00Z");
    let domains = ["pay", "search"];
    let services = ["pay-api", "pay-web", "search-api"];
    let environments = ["prod-eu", "prod-us", "staging"];
    let tiers = [Tier::Prod, Tier::Prod, Tier::Staging];
    let zones = ["Europe/Berlin", "America/New_York", "UTC"];
    let mut entries = Vec::new();
    for i in 0..rng.below(40) {
        let kind = *rng.pick(&EntryKind::ALL);
        let scope = match rng.below(5) {
            0 => Scope::Organization,
            1 => Scope::Domain { domain: rng.pick(&domains).to_string() },
            2 => Scope::Service { service: rng.pick(&services).to_string() },
            3 => Scope::Environment { environment: rng.pick(&environments).to_string() },
            _ => Scope::EnvironmentTier { tier: rng.pick(&tiers).clone() },
        };
        let start = base + Duration::minutes(rng.below(60 * 24 * 60) as i64);
        let timing = if rng.chance(40) {
            let rule = *rng.pick(&[
                "FREQ=DAILY",
                "FREQ=WEEKLY;BYDAY=MO,TH",
                "FREQ=DAILY;INTERVAL=3;COUNT=10",
                "FREQ=HOURLY;INTERVAL=7;BYMINUTE=0",
            ]);
            let duration = *rng.pick(&["PT30M", "PT3H", "P1D", "PT20H"]);
            let local = start.format("%Y-%m-%dT%H:00:00").to_string();
            TimingDraft::Recurring { dtstart: local, rrule: rule.into(), duration: duration.into(), exdates: vec![] }
        } else {
            let end = start + Duration::minutes(1 + rng.below(60 * 24 * 10) as i64);
            TimingDraft::OneOff { start: start.to_rfc3339(), end: end.to_rfc3339() }
        };
        let draft = EntryDraft {
            kind,
            title: format!("entry {i}"),
            reason: "random".into(),
            owner: rng.pick(&["alice", "bob"]).to_string(),
            scope,
            zone: rng.pick(&zones).to_string(),
            timing,
            freeze_effect: None,
        };
        let mut entry = CalendarEntry::from_draft(format!("e{i}"), 1, &draft).unwrap();
        entry.tentative = kind == EntryKind::Booking && rng.chance(30);
        entries.push(entry);
    }
    let target = |rng: &mut Rng| {
        let s = rng.below(3) as usize;
        let e = rng.below(3) as usize;
        Target { service: services[s].into(), domain: domains[s / 2].into(), environment: environments[e].into(), tier: tiers[e].clone() }
    };
    let mut deployments = Vec::new();
    for i in 0..rng.below(20) {
        let start = base + Duration::minutes(rng.below(60 * 24 * 60) as i64);
        deployments.push(ScheduledDeployment {
            id: format!("d{i}"),
            kind: if rng.chance(30) { ScheduledKind::TrainDeparture } else { ScheduledKind::Deployment },
            release_id: Some(format!("r{}", rng.below(6))),
            target: target(&mut rng),
            start,
            end: start + Duration::minutes(1 + rng.below(600) as i64),
        });
    }
    let releases: Vec<ReleaseStatus> = (0..5)
        .map(|i| ReleaseStatus {
            release_id: format!("r{i}"),
            released_at: rng.chance(30).then_some(base),
            scheduled_at: rng.chance(60).then(|| base + Duration::days(rng.below(60) as i64)),
        })
        .collect();
    let requests = (0..30)
        .map(|_| CheckRequest {
            target: target(&mut rng),
            start: base + Duration::minutes(rng.below(60 * 24 * 75) as i64) - Duration::days(5),
            expected_duration_seconds: rng.below(6 * 3600) as u32,
            requester: rng.chance(70).then(|| rng.pick(&["alice", "bob"]).to_string()),
            release_id: Some(format!("r{}", rng.below(6))),
            depends_on: (0..rng.below(3)).map(|_| format!("r{}", rng.below(7))).collect(),
        })
        .collect();
    (entries, deployments, releases, requests)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn index_agrees_with_the_naive_scan(seed in any::<u64>(), horizon_days in 0i64..90) {
        let (entries, deployments, releases, requests) = random_world(seed);
        // A horizon that covers only part of the requests exercises the on-the-fly path too.
        let from = t("2026-03-01T00:00:00Z");
        let idx = ConflictIndex::build(entries.clone(), deployments.clone(), releases.clone(), from, from + Duration::days(horizon_days + 1));
        let naive = NaiveScan { entries: &entries, deployments: &deployments, releases: &releases };
        let mut found = 0;
        for request in &requests {
            let conflicts = idx.check(request).unwrap();
            found += conflicts.len();
            prop_assert_eq!(conflicts, check_naive(&entries, &deployments, &releases, request).unwrap());
        }
        prop_assert!(entries.len() < 10 || found > 0, "a busy calendar produced no conflict at all");
        let tiers: HashMap<String, Tier> =
            [("prod-eu", Tier::Prod), ("prod-us", Tier::Prod), ("staging", Tier::Staging)].map(|(e, t)| (e.to_string(), t)).into();
        for freeze in entries.iter().filter(|e| e.kind == EntryKind::Freeze) {
            let (a, b) = (from - Duration::days(10), from + Duration::days(80));
            prop_assert_eq!(idx.preview_freeze(freeze, a, b, &tiers).unwrap(), preview_with(&naive, freeze, a, b, &tiers).unwrap());
        }
    }
}

#[test]
fn bad_requests_name_the_field() {
    let idx = index(vec![], vec![], vec![]);
    let mut req = request("2026-01-01T00:00:00Z", 60);
    req.expected_duration_seconds = 8 * 86_400;
    req.target.environment = String::new();
    let fields: Vec<String> = idx.check(&req).unwrap_err().0.into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["expected_duration_seconds", "target/environment"]);
}
