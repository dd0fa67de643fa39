//! Conflict-check and expansion benchmark: 100,000 calendar entries (a tenth recurring),
//! 20,000 scheduled deployments, the indexed check against the naive scan in the same run.
//!
//! Run: `cargo run --release -p signalbox-calendar --example conflict_bench`
//! (`-- --entries N --naive-checks M` to change the sizes).

use chrono::{DateTime, Duration, Utc};
use signalbox_calendar::conflict::{check_naive, CheckRequest, ConflictIndex, ReleaseStatus, ScheduledDeployment, ScheduledKind};
use signalbox_calendar::{CalendarEntry, EntryDraft, EntryKind, Scope, Target, TimingDraft};
use signalbox_domain::model::Tier;
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

const DOMAINS: u64 = 20;
const SERVICES: u64 = 500;
const ENVIRONMENTS: u64 = 200;
const TIERS: [Tier; 4] = [Tier::Dev, Tier::Test, Tier::Staging, Tier::Prod];

fn target(rng: &mut Rng) -> Target {
    let service = rng.below(SERVICES);
    let environment = rng.below(ENVIRONMENTS);
    Target {
        service: format!("svc-{service}"),
        domain: format!("dom-{}", service % DOMAINS),
        environment: format!("env-{environment}"),
        tier: TIERS[(environment % 4) as usize].clone(),
    }
}

fn scope(rng: &mut Rng) -> Scope {
    match rng.below(1000) {
        0..=2 => Scope::Organization,
        3..=50 => Scope::Domain { domain: format!("dom-{}", rng.below(DOMAINS)) },
        51..=60 => Scope::EnvironmentTier { tier: TIERS[rng.below(4) as usize].clone() },
        61..=500 => Scope::Service { service: format!("svc-{}", rng.below(SERVICES)) },
        _ => Scope::Environment { environment: format!("env-{}", rng.below(ENVIRONMENTS)) },
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let total = arg("--entries", 100_000);
    let naive_checks = arg("--naive-checks", 40);
    let indexed_checks = arg("--checks", 5_000);
    let year: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("literal");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let kinds = [
        (EntryKind::Freeze, 15),
        (EntryKind::ReleaseWindow, 10),
        (EntryKind::Booking, 35),
        (EntryKind::MaintenanceWindow, 15),
        (EntryKind::BusinessEvent, 15),
        (EntryKind::VendorRelease, 10),
    ];
    let zones = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Tokyo"];
    let rules = [
        "FREQ=WEEKLY;BYDAY=TH",
        "FREQ=DAILY",
        "FREQ=MONTHLY;BYDAY=-1FR",
        "FREQ=WEEKLY;BYDAY=MO,WE;INTERVAL=2",
        "FREQ=MONTHLY;BYMONTHDAY=1,15",
    ];

    let started = Instant::now();
    let mut entries = Vec::with_capacity(total);
    for i in 0..total {
        let mut pick = rng.below(100);
        let kind = kinds
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or(EntryKind::Booking, |(k, _)| *k);
        let timing = if i % 10 == 0 {
            let start = year - Duration::days(365) + Duration::minutes(rng.below(365 * 24 * 60) as i64);
            TimingDraft::Recurring {
                dtstart: start.format("%Y-%m-%dT%H:00:00").to_string(),
                rrule: rules[rng.below(rules.len() as u64) as usize].into(),
                duration: ["PT1H", "PT2H", "PT4H", "PT30M"][rng.below(4) as usize].into(),
                exdates: vec![],
            }
        } else {
            let start = year + Duration::minutes(rng.below(365 * 24 * 60) as i64);
            let end = start + Duration::minutes(30 + rng.below(3 * 24 * 60) as i64);
            TimingDraft::OneOff { start: start.to_rfc3339(), end: end.to_rfc3339() }
        };
        let draft = EntryDraft {
            kind,
            title: format!("entry {i}"),
            reason: "benchmark".into(),
            owner: format!("user-{}", rng.below(50)),
            scope: scope(&mut rng),
            zone: zones[rng.below(zones.len() as u64) as usize].into(),
            timing,
            freeze_effect: None,
        };
        entries.push(CalendarEntry::from_draft(format!("e{i}"), 1, &draft).expect("generated entries are valid"));
    }
    let deployments: Vec<ScheduledDeployment> = (0..20_000)
        .map(|i| {
            let start = year + Duration::minutes(rng.below(365 * 24 * 60) as i64);
            ScheduledDeployment {
                id: format!("d{i}"),
                kind: if i % 5 == 0 { ScheduledKind::TrainDeparture } else { ScheduledKind::Deployment },
                release_id: Some(format!("r{}", rng.below(5_000))),
                target: target(&mut rng),
                start,
                end: start + Duration::minutes(10 + rng.below(120) as i64),
            }
        })
        .collect();
    let releases: Vec<ReleaseStatus> = (0..5_000)
        .map(|i| ReleaseStatus {
            release_id: format!("r{i}"),
            released_at: (i % 3 == 0).then_some(year),
            scheduled_at: Some(year + Duration::days(rng.below(365) as i64)),
        })
        .collect();
    println!("generated and validated {total} entries ({} recurring) in {:.2?}", total / 10, started.elapsed());

    // Expansion throughput: every series over the year.
    let started = Instant::now();
    let mut occurrences = 0usize;
    for e in entries.iter().filter(|e| e.is_recurring()) {
        e.spans_overlapping(year, year + Duration::days(365), |_| {
            occurrences += 1;
            true
        });
    }
    let expand_secs = started.elapsed().as_secs_f64();
    println!(
        "expansion: {occurrences} occurrences of {} series over one year in {expand_secs:.2}s = {:.0} occurrences/s",
        total / 10,
        occurrences as f64 / expand_secs
    );

    // Worst-case validation: a rule that never matches is only found empty after the
    // expansion engine's bounded search.
    let never = EntryDraft {
        kind: EntryKind::Freeze,
        title: "never".into(),
        reason: "benchmark".into(),
        owner: "bench".into(),
        scope: Scope::Organization,
        zone: "Europe/Berlin".into(),
        timing: TimingDraft::Recurring {
            dtstart: "2026-01-01T10:00:00".into(),
            rrule: "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30".into(),
            duration: "PT1H".into(),
            exdates: vec![],
        },
        freeze_effect: None,
    };
    let started = Instant::now();
    let refused = CalendarEntry::from_draft("never", 1, &never).is_err();
    println!("worst-case validation (a rule that never matches, refused: {refused}): {:.2?}", started.elapsed());

    let started = Instant::now();
    let index = ConflictIndex::build(entries.clone(), deployments.clone(), releases.clone(), year, year + Duration::days(366));
    println!("index build (series pre-expanded over one year): {:.2?}", started.elapsed());

    let requests: Vec<CheckRequest> = (0..indexed_checks.max(naive_checks))
        .map(|_| CheckRequest {
            target: target(&mut rng),
            start: year + Duration::minutes(rng.below(360 * 24 * 60) as i64),
            expected_duration_seconds: (15 + rng.below(180) as u32) * 60,
            requester: Some(format!("user-{}", rng.below(50))),
            release_id: Some(format!("r{}", rng.below(5_000))),
            depends_on: (0..rng.below(3)).map(|_| format!("r{}", rng.below(5_000))).collect(),
        })
        .collect();

    let mut indexed = Vec::with_capacity(requests.len());
    let mut found = 0;
    for r in &requests {
        let t = Instant::now();
        let conflicts = index.check(r).expect("valid request");
        indexed.push(t.elapsed().as_secs_f64() * 1e6);
        found += conflicts.len();
    }
    let mut naive = Vec::with_capacity(naive_checks);
    for r in requests.iter().take(naive_checks) {
        let t = Instant::now();
        let slow = check_naive(&entries, &deployments, &releases, r).expect("valid request");
        naive.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(slow, index.check(r).expect("valid request"), "index and naive scan disagree");
    }
    let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.total_cmp(b));
    sort(&mut indexed);
    sort(&mut naive);
    let (ip50, ip99) = (percentile(&indexed, 0.5), percentile(&indexed, 0.99));
    let (np50, np99) = (percentile(&naive, 0.5), percentile(&naive, 0.99));
    println!("conflicts found: {found} over {} indexed checks ({:.1} per check)", indexed.len(), found as f64 / indexed.len() as f64);
    println!("indexed check: p50 {ip50:.1} µs, p99 {ip99:.1} µs ({} checks)", indexed.len());
    println!("naive scan:    p50 {:.1} µs, p99 {:.1} µs ({} checks, results identical)", np50, np99, naive.len());
    println!("ratio naive/indexed: p50 {:.0}x, p99 {:.0}x", np50 / ip50, np99 / ip99);
    println!(
        "goal p99 < 1 ms: {}; goal >= 100x: {}",
        if ip99 < 1000.0 { "met" } else { "MISSED" },
        if np50 / ip50 >= 100.0 && np99 / ip99 >= 100.0 { "met" } else { "MISSED" }
    );
}
