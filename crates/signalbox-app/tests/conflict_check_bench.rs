//! How long `POST /api/v1/calendar/check` takes in the application with a large calendar, with
//! the cached conflict facts (a hit: nothing changed since the last check) and right after a
//! write (a miss: everything is read, validated and indexed again), against the engine's own
//! validate-and-build cost. Not a regular test (it takes a while and asserts nothing about time):
//!
//! ```text
//! N=2000 cargo test --release -p signalbox-app --test conflict_check_bench -- --ignored --nocapture
//! ```

use signalbox_app::calendar::CheckInput;
use signalbox_app::{App, RequestContext};
use signalbox_calendar::conflict::ConflictIndex;
use signalbox_calendar::{CalendarEntry, EntryDraft, EntryRecord};
use signalbox_domain::model::Kind;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn draft(i: usize) -> EntryDraft {
    let value = if i.is_multiple_of(10) {
        serde_json::json!({"kind": "maintenance_window", "title": format!("mw {i}"), "reason": "r", "owner": "o",
          "scope": {"level": "organization"}, "zone": "Europe/Berlin",
          "timing": {"type": "recurring", "dtstart": "2026-01-03T22:00:00", "rrule": "FREQ=WEEKLY;BYDAY=SA", "duration": "PT2H"}})
    } else {
        let start = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z").unwrap() + chrono::Duration::days(1 + (i % 300) as i64);
        serde_json::json!({"kind": "business_event", "title": format!("event {i}"), "reason": "r", "owner": "o",
          "scope": {"level": "organization"}, "zone": "UTC",
          "timing": {"type": "one_off", "start": start.to_rfc3339(), "end": (start + chrono::Duration::hours(3)).to_rfc3339()}})
    };
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
#[ignore]
async fn conflict_check_with_a_large_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(Arc::new(signalbox_store_sqlite::SqliteStore::open(dir.path()).await.unwrap()));
    app.bootstrap(None).await.unwrap();
    app.seed_demo().await.unwrap();
    let ctx = RequestContext::system();
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    for i in 0..n {
        app.create_entry(&ctx, draft(i), false).await.unwrap().unwrap();
    }
    let input = || CheckInput {
        service: "checkout-api".into(),
        environment: "prod".into(),
        start: "2027-03-01T10:00:00Z".parse().unwrap(),
        expected_duration_seconds: 3600,
        requester: None,
        release: None,
        depends_on: vec![],
    };
    let runs = 20u32;
    let (mut hit, mut miss) = (Duration::ZERO, Duration::ZERO);
    for i in 0..runs {
        // A write: the next check misses.
        app.create_entry(&ctx, draft(n + i as usize), false).await.unwrap().unwrap();
        let t = Instant::now();
        let first = app.check_conflicts(&ctx, input()).await.unwrap();
        miss += t.elapsed();
        let t = Instant::now();
        let again = app.check_conflicts(&ctx, input()).await.unwrap();
        hit += t.elapsed();
        assert_eq!(first.conflicts, again.conflicts);
    }
    // The engine's part of a miss: validate every record and index it.
    let mut records: Vec<EntryRecord> = Vec::new();
    let mut q = signalbox_store::ListQuery::all(Kind::CalendarEntry);
    q.limit = 1000;
    loop {
        let page = app.store.list(&q).await.unwrap();
        records.extend(page.items.iter().map(|r| serde_json::from_value(r.body.clone()).unwrap()));
        match page.next_after_seq {
            Some(s) => q.after_seq = Some(s),
            None => break,
        }
    }
    let t = Instant::now();
    let now = chrono::Utc::now();
    let entries: Vec<CalendarEntry> = records.iter().map(|r| CalendarEntry::from_record(r).unwrap()).collect();
    let index = ConflictIndex::build(entries, vec![], vec![], now - chrono::Duration::days(31), now + chrono::Duration::days(400));
    let engine = t.elapsed();
    println!(
        "{} entries: check with the facts cached {:?}, right after a write {:?} (of which validating and indexing {:?}, {} indexed)",
        records.len(),
        hit / runs,
        miss / runs,
        engine,
        index.entries().len()
    );
}
