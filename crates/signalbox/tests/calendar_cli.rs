//! End to end (issue 4): booking approval by an environment's owner and changing and deleting
//! release trains, through `signalbox environments`, `signalbox calendar` and `signalbox train`
//! against the real `signalbox serve`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Output;

fn cli(base: &str, token: &str, args: &[&str]) -> Output {
    let mut cmd = bin();
    for (k, _) in std::env::vars() {
        if k.starts_with("SIGNALBOX_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["--url", base, "--token", token]).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn failure(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).to_string()
}

async fn token_for(api: &Api, username: &str, role: &str) -> String {
    api.post("/api/v1/users", json!({"username": username})).await;
    api.post("/api/v1/role-bindings", json!({"user": username, "role": role, "scope": {"type": "organization"}})).await;
    api.post("/api/v1/tokens", json!({"name": "cli", "user": username})).await["secret"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn booking_approval_and_train_changes_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&ServerOptions {
        name: "calendar".into(),
        backend: Backend::Sqlite(dir.path().join("data")),
        config: None,
        env: vec![("SIGNALBOX_SCHEDULER".into(), "off".into())],
        log_dir: dir.path().to_path_buf(),
    })
    .await;
    let api = server.api();
    let base = server.base.as_str();
    api.post("/api/v1/domains", json!({"name": "payments"})).await;
    let tess = token_for(&api, "tess", "developer").await;
    let dave = token_for(&api, "dave", "developer").await;

    // An environment owned by Tess whose bookings need her approval.
    let refused = cli(
        base,
        TOKEN,
        &["environments", "create", "--name", "perf", "--tier", "staging", "--position", "35", "--booking-requires-approval"],
    );
    assert!(failure(&refused).contains("protection/booking_requires_approval"));
    stdout(&cli(
        base,
        TOKEN,
        &[
            "environments",
            "create",
            "--name",
            "perf",
            "--tier",
            "staging",
            "--position",
            "35",
            "--owner-user",
            "tess",
            "--booking-requires-approval",
        ],
    ));
    let shown = stdout(&cli(base, TOKEN, &["environments", "get", "perf"]));
    assert!(shown.contains("bookings need approval"), "{shown}");

    let booked = stdout(&cli(
        base,
        &dave,
        &[
            "calendar",
            "book",
            "--environment",
            "perf",
            "--start",
            "2027-03-01T10:00:00Z",
            "--end",
            "2027-03-01T12:00:00Z",
            "--title",
            "Load test",
            "--reason",
            "rehearsal",
        ],
    ));
    assert!(booked.contains("pending"), "{booked}");
    let bookings = api.get("/api/v1/calendar/entries?kind=booking").await;
    let id = bookings["items"][0]["id"].as_str().unwrap().to_string();
    let not_owner = failure(&cli(base, &dave, &["calendar", "approve-booking", &id]));
    assert!(not_owner.contains("owner"), "{not_owner}");
    let approved = stdout(&cli(base, &tess, &["calendar", "approve-booking", &id, "--reason", "ok"]));
    assert!(approved.contains("Approved") && approved.contains("perf"), "{approved}");
    assert_eq!(api.get(&format!("/api/v1/calendar/entries/{id}")).await["booking"]["state"], "confirmed");
    let twice = failure(&cli(base, &tess, &["calendar", "reject-booking", &id, "--reason", "changed my mind"]));
    assert!(twice.contains("not pending"), "{twice}");

    // Trains: update the cadence (merged with the rest), refuse a bad zone, delete.
    api.post(
        "/api/v1/trains",
        json!({"name": "payments-weekly", "domain": "payments",
               "cadence": {"zone": "Europe/Lisbon", "dtstart": "2026-01-01T10:00:00", "rrule": "FREQ=WEEKLY;BYDAY=TH", "cutoff_before": "PT40H"}}),
    )
    .await;
    let updated = stdout(&cli(base, TOKEN, &["train", "update", "payments-weekly", "--rrule", "FREQ=WEEKLY;BYDAY=FR"]));
    assert!(updated.contains("Updated train payments-weekly"), "{updated}");
    let train: Value = api.get("/api/v1/trains/payments-weekly").await;
    assert_eq!(train["train"]["cadence"]["rrule"], "FREQ=WEEKLY;BYDAY=FR");
    assert_eq!(train["train"]["cadence"]["zone"], "Europe/Lisbon", "the rest of the cadence is kept");
    let bad = failure(&cli(base, TOKEN, &["train", "update", "payments-weekly", "--zone", "Mars/Olympus"]));
    assert!(bad.contains("cadence/zone"), "{bad}");
    let stale = cli(base, TOKEN, &["train", "delete", "payments-weekly", "--if-match", "1"]);
    assert_eq!(stale.status.code(), Some(5), "{}", String::from_utf8_lossy(&stale.stderr));
    stdout(&cli(base, TOKEN, &["train", "delete", "payments-weekly"]));
    let (status, _) = api.send(reqwest::Method::GET, "/api/v1/trains/payments-weekly", None).await.unwrap();
    assert_eq!(status, 404);
}
