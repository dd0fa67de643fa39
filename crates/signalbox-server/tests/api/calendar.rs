//! The calendar over HTTP (issue 4): entries with ETags, the expanded view, 422s naming the
//! field, the conflict check, a release's conflicts, freeze previews, bookings that refuse to
//! overlap and are released early, the iCalendar feed and `.ics` import. Every backend.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

fn freeze(start: &str, end: &str) -> Value {
    json!({
        "kind": "freeze", "title": "Year-end freeze", "reason": "Peak trading", "owner": "release-managers",
        "scope": {"level": "environment_tier", "tier": "prod"}, "zone": "Europe/Berlin",
        "timing": {"type": "one_off", "start": start, "end": end}, "freeze_effect": "stop_at_next_step"
    })
}

fn booking(env: &str, owner: &str, start: &str, end: &str) -> Value {
    json!({
        "kind": "booking", "title": "Load test", "reason": "campaign", "owner": owner,
        "scope": {"level": "environment", "environment": env}, "zone": "UTC",
        "timing": {"type": "one_off", "start": start, "end": end}
    })
}

fn kinds(conflicts: &Value) -> Vec<String> {
    conflicts.as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap().to_string()).collect()
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn entries_round_trip_with_etags_and_expand_across_dst() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let window = json!({
            "kind": "release_window", "title": "Thursday window", "reason": "On-call staffed", "owner": "payments-team",
            "scope": {"level": "domain", "domain": "payments"}, "zone": "Europe/Berlin",
            "timing": {"type": "recurring", "dtstart": "2026-03-19T10:00:00", "rrule": "FREQ=WEEKLY;BYDAY=TH", "duration": "PT4H",
                       "exdates": ["2026-04-02T10:00:00"]}
        });
        let created = app.post("/api/v1/calendar/entries", window.clone()).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.body["id"].as_str().unwrap().to_string();
        assert_eq!(created.body["version"], 1);
        let etag = created.etag().unwrap();

        // Expanded: 10:00 Berlin is 09:00Z before the DST change (29 March) and 08:00Z after; the
        // exdate (2 April) is skipped.
        let view = app.get("/api/v1/calendar?from=2026-03-16T00:00:00Z&to=2026-04-13T00:00:00Z&domain=payments").await;
        let occ: Vec<(String, String)> = view.ok()["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["start"].as_str().unwrap().to_string(), o["local_start"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            occ,
            vec![
                ("2026-03-19T09:00:00Z".to_string(), "2026-03-19T10:00:00+01:00".to_string()),
                ("2026-03-26T09:00:00Z".to_string(), "2026-03-26T10:00:00+01:00".to_string()),
                ("2026-04-09T08:00:00Z".to_string(), "2026-04-09T10:00:00+02:00".to_string()),
            ]
        );
        // Another domain's filter does not see it.
        let other = app.get("/api/v1/calendar?from=2026-03-16T00:00:00Z&to=2026-04-13T00:00:00Z&domain=search").await;
        assert_eq!(other.ok()["occurrences"].as_array().unwrap().len(), 0);

        // Replace with a stale ETag: 412; with the current one: version (SEQUENCE) goes up.
        let mut changed = window.clone();
        changed["title"] = json!("Thursday window (longer)");
        changed["timing"]["duration"] = json!("PT6H");
        let stale = app
            .request(
                Method::PUT,
                &format!("/api/v1/calendar/entries/{id}"),
                Some(ADMIN_TOKEN),
                Some(changed.clone()),
                &[("if-match", "\"99\"")],
            )
            .await;
        stale.problem(412);
        let put = app
            .request(Method::PUT, &format!("/api/v1/calendar/entries/{id}"), Some(ADMIN_TOKEN), Some(changed), &[("if-match", &etag)])
            .await;
        assert_eq!(put.ok()["version"], 2);
        assert_eq!(app.get(&format!("/api/v1/calendar/entries/{id}")).await.ok()["title"], "Thursday window (longer)");
        let list = app.get("/api/v1/calendar/entries?kind=release_window").await;
        assert_eq!(list.ok()["items"].as_array().unwrap().len(), 1);
        assert_eq!(app.get("/api/v1/calendar/entries?kind=freeze").await.ok()["items"].as_array().unwrap().len(), 0);

        let del = app.request(Method::DELETE, &format!("/api/v1/calendar/entries/{id}"), Some(ADMIN_TOKEN), None, &[]).await;
        assert_eq!(del.status, 204, "{}", del.text);
        app.get(&format!("/api/v1/calendar/entries/{id}")).await.problem(404);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn bad_entries_and_ranges_are_422_naming_the_field() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let mut bad_rule = freeze("2026-12-18T18:00:00+01:00", "2027-01-04T08:00:00+01:00");
        bad_rule["timing"] = json!({"type": "recurring", "dtstart": "2026-01-01T10:00:00", "rrule": "FREQ=SOMETIMES", "duration": "PT1H"});
        let r = app.post("/api/v1/calendar/entries", bad_rule).await;
        assert!(fields(r.problem(422)).contains(&"timing/rrule".to_string()), "{}", r.text);

        let mut bad_zone = freeze("2026-12-18T18:00:00+01:00", "2027-01-04T08:00:00+01:00");
        bad_zone["zone"] = json!("Europe/Atlantis");
        let r = app.post("/api/v1/calendar/entries", bad_zone).await;
        assert!(fields(r.problem(422)).contains(&"zone".to_string()), "{}", r.text);

        let r = app.post("/api/v1/calendar/entries", freeze("2027-01-04T08:00:00+01:00", "2026-12-18T18:00:00+01:00")).await;
        assert!(fields(r.problem(422)).iter().any(|f| f.starts_with("timing/")), "{}", r.text);

        let mut unknown_env = booking("nowhere", "admin", "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z");
        unknown_env["title"] = json!("x");
        let r = app.post("/api/v1/calendar/entries", unknown_env).await;
        assert_eq!(fields(r.problem(422)), vec!["scope/environment"]);

        let r = app.get("/api/v1/calendar?from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z").await;
        assert_eq!(fields(r.problem(422)), vec!["to"]);
        let r = app.get("/api/v1/calendar?from=yesterday").await;
        assert_eq!(fields(r.problem(422)), vec!["from"]);
        let r = app
            .post("/api/v1/calendar/check", json!({"service": "checkout-api", "environment": "prod", "start": "2026-12-20T10:00:00Z", "expected_duration_seconds": 9_000_000}))
            .await;
        assert_eq!(fields(r.problem(422)), vec!["expected_duration_seconds"]);
        let r = app
            .post(
                "/api/v1/calendar/check",
                json!({"service": "nope", "environment": "prod", "start": "2026-12-20T10:00:00Z", "expected_duration_seconds": 60}),
            )
            .await;
        assert_eq!(fields(r.problem(422)), vec!["service"]);
        // Nothing was stored.
        assert_eq!(app.get("/api/v1/calendar/entries").await.ok()["items"].as_array().unwrap().len(), 0);
    }
}

#[tokio::test]
async fn the_check_reports_every_conflict_with_its_reason() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.post("/api/v1/calendar/entries", freeze("2026-12-18T18:00:00+01:00", "2027-01-04T08:00:00+01:00")).await.ok();
        app.post("/api/v1/calendar/entries", booking("staging", "carol", "2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z")).await.ok();

        // Inside the freeze.
        let body =
            json!({"service": "checkout-api", "environment": "prod", "start": "2026-12-20T10:00:00Z", "expected_duration_seconds": 3600});
        let r = app.post("/api/v1/calendar/check", body).await;
        let result = r.ok();
        assert_eq!(result["clear"], false);
        assert_eq!(kinds(&result["conflicts"]), vec!["inside_freeze"]);
        let reason = result["conflicts"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("Year-end freeze") && reason.contains("Peak trading"), "{reason}");

        // Runway: starts two hours before the freeze, expected to take three.
        let body =
            json!({"service": "checkout-api", "environment": "prod", "start": "2026-12-18T15:00:00Z", "expected_duration_seconds": 10800});
        let r = app.post("/api/v1/calendar/check", body).await;
        assert_eq!(kinds(&r.ok()["conflicts"]), vec!["runs_into_freeze"]);

        // Staging is booked by carol: a conflict for others, not for carol.
        let body =
            json!({"service": "checkout-api", "environment": "staging", "start": "2026-12-02T10:00:00Z", "expected_duration_seconds": 600});
        let r = app.post("/api/v1/calendar/check", body.clone()).await;
        assert_eq!(kinds(&r.ok()["conflicts"]), vec!["environment_booked"]);
        let mut mine = body;
        mine["requester"] = json!("carol");
        let r = app.post("/api/v1/calendar/check", mine).await;
        assert_eq!(r.ok()["clear"], true);
        assert_eq!(kinds(&r.body["conflicts"]), Vec::<String>::new());

        // Dev is not prod-tier: no conflict.
        let body =
            json!({"service": "checkout-api", "environment": "dev", "start": "2026-12-20T10:00:00Z", "expected_duration_seconds": 3600});
        assert_eq!(app.post("/api/v1/calendar/check", body).await.ok()["clear"], true);
    }
}

#[tokio::test]
async fn a_release_plan_is_checked_and_a_new_freeze_previews_what_it_would_block() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.register("checkout-api", "1.0.0").await;
        let release = app
            .post(
                "/api/v1/releases",
                json!({"name": "Checkout 1.0", "domain": "payments", "components": ["checkout-api@1.0.0"], "target_environments": ["prod"],
                       "planned_window": {"start": "2026-12-21T09:00:00Z", "end": "2026-12-21T11:00:00Z"}}),
            )
            .await;
        let key = release.ok()["key"].as_str().unwrap().to_string();
        let clear = app.get(&format!("/api/v1/releases/{key}/conflicts")).await;
        assert_eq!(clear.ok()["checks"].as_array().unwrap().len(), 1);
        assert_eq!(clear.body["checks"][0]["clear"], true);

        // Preview (nothing saved) and dry run both list the release's deployment as blocked.
        let draft = freeze("2026-12-18T18:00:00+01:00", "2027-01-04T08:00:00+01:00");
        let preview = app.post("/api/v1/calendar/preview", draft.clone()).await;
        let blocked = preview.ok()["blocked"].as_array().unwrap().clone();
        assert_eq!(blocked.len(), 1, "{}", preview.text);
        assert_eq!(blocked[0]["item_kind"], "deployment");
        assert_eq!(blocked[0]["how"], "cannot_start");
        assert_eq!(blocked[0]["release_id"], release.body["id"]);
        let dry = app.post("/api/v1/calendar/entries?dry_run=true", draft.clone()).await;
        assert_eq!(dry.status, 200, "{}", dry.text);
        assert_eq!(dry.body["blocked"].as_array().unwrap().len(), 1);
        assert_eq!(app.get("/api/v1/calendar/entries").await.ok()["items"].as_array().unwrap().len(), 0, "a dry run saves nothing");

        app.post("/api/v1/calendar/entries", draft).await.ok();
        let conflicted = app.get(&format!("/api/v1/releases/{key}/conflicts")).await;
        assert_eq!(conflicted.ok()["checks"][0]["clear"], false);
        assert_eq!(kinds(&conflicted.body["checks"][0]["conflicts"]), vec!["inside_freeze"]);

        // A release without a planned window cannot be checked: the field is named.
        let bare = app.post("/api/v1/releases", json!({"name": "Bare"})).await;
        let r = app.get(&format!("/api/v1/releases/{}/conflicts", bare.ok()["key"].as_str().unwrap())).await;
        assert_eq!(fields(r.problem(422)), vec!["planned_window"]);
    }
}

#[tokio::test]
async fn overlapping_bookings_conflict_and_bookings_are_released_early() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let now = chrono::Utc::now();
        let iso = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let first = app
            .post(
                "/api/v1/calendar/entries",
                booking("staging", "admin", &iso(now - chrono::Duration::hours(1)), &iso(now + chrono::Duration::hours(5))),
            )
            .await;
        assert_eq!(first.status, 201, "{}", first.text);
        let id = first.body["id"].as_str().unwrap().to_string();

        let clash = app
            .post(
                "/api/v1/calendar/entries",
                booking("staging", "bob", &iso(now + chrono::Duration::hours(4)), &iso(now + chrono::Duration::hours(8))),
            )
            .await;
        let problem = clash.problem(409);
        assert!(problem["detail"].as_str().unwrap().contains(&id), "{}", clash.text);
        // A dry run says so without saving.
        let dry = app
            .post(
                "/api/v1/calendar/entries?dry_run=true",
                booking("staging", "bob", &iso(now + chrono::Duration::hours(4)), &iso(now + chrono::Duration::hours(8))),
            )
            .await;
        assert_eq!(dry.ok()["overlapping_bookings"].as_array().unwrap().len(), 1);
        // Another environment, or touching end to start, is fine.
        app.post("/api/v1/calendar/entries", booking("test", "bob", &iso(now), &iso(now + chrono::Duration::hours(2)))).await.ok();

        // Someone else cannot release it; the holder (admin here) can, and it ends now.
        let dev = app.user_with_role("dora", "release_manager").await;
        let refused = app.request(Method::POST, &format!("/api/v1/bookings/{id}/release"), Some(&dev), None, &[]).await;
        refused.problem(403);
        let released = app.request(Method::POST, &format!("/api/v1/bookings/{id}/release"), Some(ADMIN_TOKEN), None, &[]).await;
        let end = released.ok()["timing"]["end"].as_str().unwrap().to_string();
        let end = chrono::DateTime::parse_from_rfc3339(&end).unwrap();
        assert!(end < now + chrono::Duration::hours(1), "ended early: {end}");
        assert_eq!(released.body["version"], 2);
        // Now bob's booking fits.
        let later = app
            .post(
                "/api/v1/calendar/entries",
                booking("staging", "bob", &iso(now + chrono::Duration::hours(4)), &iso(now + chrono::Duration::hours(8))),
            )
            .await;
        assert_eq!(later.status, 201, "{}", later.text);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn the_ics_feed_needs_a_feed_token_and_imports_come_back_as_entries() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let window = json!({
            "kind": "release_window", "title": "Thursday; window, \"weekly\"", "reason": "On-call", "owner": "payments-team",
            "scope": {"level": "domain", "domain": "payments"}, "zone": "Europe/Berlin",
            "timing": {"type": "recurring", "dtstart": "2026-01-08T10:00:00", "rrule": "FREQ=WEEKLY;BYDAY=TH", "duration": "PT4H",
                       "exdates": ["2026-12-24T10:00:00"]}
        });
        let id = app.post("/api/v1/calendar/entries", window).await.ok()["id"].as_str().unwrap().to_string();
        app.post("/api/v1/calendar/entries", freeze("2026-12-18T18:00:00+01:00", "2027-01-04T08:00:00+01:00")).await.ok();

        let anonymous = app.request(Method::GET, "/calendar.ics?token=sbxf_wrong", None, None, &[]).await;
        anonymous.problem(403);
        let issued =
            app.post("/api/v1/calendar/feed-tokens", json!({"name": "team calendar", "filter": {"kinds": ["release_window"]}})).await;
        assert_eq!(issued.status, 201, "{}", issued.text);
        let secret = issued.body["secret"].as_str().unwrap().to_string();
        let feed = app.request(Method::GET, &format!("/calendar.ics?token={secret}"), None, None, &[]).await;
        assert_eq!(feed.status, 200, "{}", feed.text);
        assert!(feed.content_type().starts_with("text/calendar"));
        let text = feed.text.replace("\r\n ", "");
        assert!(text.starts_with("BEGIN:VCALENDAR\r\n") && text.contains("VERSION:2.0"), "{text}");
        assert!(text.contains(&format!("UID:{id}@signalbox")), "{text}");
        assert!(text.contains("RRULE:FREQ=WEEKLY;BYDAY=TH"), "{text}");
        assert!(text.contains("EXDATE;TZID=Europe/Berlin:20261224T100000"), "{text}");
        assert!(text.contains("BEGIN:VTIMEZONE") && text.contains("TZID:Europe/Berlin"), "{text}");
        assert!(!text.contains("Year-end freeze"), "the token's filter admits only release windows");
        // The feed token is not an API token.
        app.request(Method::GET, "/api/v1/calendar/entries", Some(&secret), None, &[]).await.problem(401);

        // Import the feed back as business events: same count, validated.
        let imported = app
            .post(
                "/api/v1/calendar/import",
                json!({"ics": feed.text, "kind": "business_event", "scope": {"level": "organization"}, "owner": "people-ops", "default_zone": "Europe/Berlin"}),
            )
            .await;
        assert_eq!(imported.status, 201, "{}", imported.text);
        let created = imported.body["created"].as_array().unwrap();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0]["kind"], "business_event");
        assert_eq!(created[0]["timing"]["rrule"], "FREQ=WEEKLY;BYDAY=TH");
        let bad = app
            .post(
                "/api/v1/calendar/import",
                json!({"ics": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:nonsense\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", "kind": "business_event",
                       "scope": {"level": "organization"}, "owner": "people-ops", "default_zone": "UTC"}),
            )
            .await;
        assert!(fields(bad.problem(422)).iter().any(|f| f.starts_with("file/line/")), "{}", bad.text);
    }
}

#[tokio::test]
async fn trains_board_depart_late_once_across_two_schedulers_and_carry_over() {
    use signalbox_calendar::train::{CadenceDraft, TrainCadence};
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let ready = app.register("checkout-api", "1.0.0").await;
        let late = app.register("checkout-api", "1.1.0").await;
        let cadence =
            json!({"zone": "Europe/Lisbon", "dtstart": "2026-01-01T10:00:00", "rrule": "FREQ=WEEKLY;BYDAY=TH", "cutoff_before": "PT40H"});
        let bad = app
            .post("/api/v1/trains", json!({"name": "bad", "domain": "payments", "cadence": {"zone": "Mars/Olympus", "dtstart": "2026-01-01T10:00:00", "rrule": "FREQ=WEEKLY"}}))
            .await;
        assert_eq!(fields(bad.problem(422)), vec!["cadence/zone"]);
        let train = app
            .post(
                "/api/v1/trains",
                json!({"name": "payments-weekly", "domain": "payments", "cadence": cadence, "target_environments": ["prod"]}),
            )
            .await;
        assert_eq!(train.status, 201, "{}", train.text);
        let train_id = train.body["id"].as_str().unwrap().to_string();

        // Boarding goes on the first departure whose cut-off is still ahead.
        let engine = TrainCadence::from_draft(&serde_json::from_value::<CadenceDraft>(cadence.clone()).unwrap()).unwrap();
        let before = chrono::Utc::now();
        let boarded = app.post("/api/v1/trains/payments-weekly/board", json!({"artifact": ready["id"], "ready": true})).await;
        let after = chrono::Utc::now();
        let dep = boarded.ok().clone();
        let expected: Vec<String> = [before, after]
            .iter()
            .map(|t| engine.departure_for_boarding(*t).unwrap().departure.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect();
        assert!(expected.contains(&dep["departure"].as_str().unwrap().to_string()), "{dep} vs {expected:?}");
        assert_eq!(dep["phase"], "boarding");
        let again = app.post("/api/v1/trains/payments-weekly/board", json!({"artifact": late["id"]})).await;
        assert_eq!(again.ok()["id"], dep["id"], "same departure");
        assert_eq!(again.body["items"].as_array().unwrap().len(), 2);
        app.post("/api/v1/trains/payments-weekly/board", json!({"artifact": late["id"]})).await.problem(409);
        let dep_id = dep["id"].as_str().unwrap().to_string();
        let release_id = dep["release_id"].as_str().unwrap().to_string();
        let release = app.get(&format!("/api/v1/releases/{release_id}")).await;
        assert_eq!(release.ok()["components"].as_array().unwrap().len(), 2);
        // Mark the late one not ready, with why.
        let marked = app
            .put(
                &format!("/api/v1/departures/{dep_id}/items/{}", late["id"].as_str().unwrap()),
                json!({"ready": false, "blocker": "load test failed"}),
            )
            .await;
        assert_eq!(marked.ok()["items"][1]["blocker"], "load test failed");

        // The servers were down through the cut-off and the departure: two scheduler replicas
        // start at once a day after it. Each job fires exactly once, late, and says so.
        let departure: chrono::DateTime<chrono::Utc> = dep["departure"].as_str().unwrap().parse().unwrap();
        let restart = departure + chrono::Duration::days(1);
        let a = signalbox_app::App::new(app.store.clone());
        let b = signalbox_app::App::new(app.store.clone());
        let (ra, rb) = tokio::join!(a.scheduler_tick(restart), b.scheduler_tick(restart));
        let (ra, rb) = (ra.expect("tick a"), rb.expect("tick b"));
        let mut fired: Vec<String> = ra.fired.iter().chain(rb.fired.iter()).cloned().collect();
        fired.sort();
        let mine: Vec<&String> = fired.iter().filter(|f| f.ends_with(&dep_id)).collect();
        assert_eq!(mine, vec![&format!("departure.cutoff:{dep_id}"), &format!("departure.depart:{dep_id}")], "{ra:?} {rb:?}");
        let mut dedup = fired.clone();
        dedup.dedup();
        assert_eq!(dedup, fired, "no job fired twice");
        let (ra, rb) = tokio::join!(a.scheduler_tick(restart), b.scheduler_tick(restart));
        assert!(ra.unwrap().fired.is_empty() && rb.unwrap().fired.is_empty(), "nothing left to fire");

        let departed = app.get(&format!("/api/v1/departures/{dep_id}")).await;
        let departed = departed.ok();
        assert_eq!(departed["phase"], "departed");
        assert_eq!(departed["items"].as_array().unwrap().len(), 1);
        let carried = &departed["carried_over"][0];
        assert_eq!(carried["id"], late["id"]);
        assert!(carried["reason"].as_str().unwrap().contains("load test failed"), "{carried}");
        let release = app.get(&format!("/api/v1/releases/{release_id}")).await;
        assert_eq!(release.ok()["components"].as_array().unwrap().len(), 1);

        // The item sits on the following departure, which was materialized with its release.
        let view = app.get(&format!("/api/v1/trains/{train_id}")).await;
        let next = view.ok()["departures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["items"].as_array().unwrap().iter().any(|i| i["id"] == late["id"]))
            .cloned()
            .expect("carried item on a later departure");
        assert_eq!(
            next["departure"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap(),
            departure + chrono::Duration::days(7)
        );
        assert!(next["items"][0]["carried_from"].as_str().unwrap().contains(&dep_id));

        // The audit trail records one departure, late, with the reason.
        let audit = app.get(&format!("/api/v1/audit?action=departure.depart&subject_id={dep_id}")).await;
        let entries = audit.ok()["items"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 1, "{}", audit.text);
        assert!(entries[0]["reason"].as_str().unwrap().contains("late"), "{}", entries[0]);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn departure_carries_over_an_item_whose_gates_fail_with_the_failing_rule() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        // Production requires passing JUnit evidence for every component.
        app.put("/api/v1/policies", json!({"level": "organization", "environment": "prod", "policy": {"gates": {"tests_passed": true}}}))
            .await
            .ok();
        let tested = app.register("checkout-api", "2.0.0").await;
        let untested = app.register("checkout-api", "2.1.0").await;
        let junit = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><testsuites><testsuite name=\"checkout\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"0\"><testcase classname=\"checkout\" name=\"ok\" time=\"0.01\"/></testsuite></testsuites>";
        app.raw(Method::POST, "/api/v1/evidence?artifact=checkout-api@2.0.0&kind=junit", "application/octet-stream", junit.as_bytes())
            .await
            .ok();
        let cadence =
            json!({"zone": "Europe/Lisbon", "dtstart": "2026-01-01T10:00:00", "rrule": "FREQ=WEEKLY;BYDAY=TH", "cutoff_before": "PT40H"});
        app.post("/api/v1/trains", json!({"name": "gated", "domain": "payments", "cadence": cadence, "target_environments": ["prod"]}))
            .await
            .ok();
        // Both are marked ready: only the gates tell them apart.
        let dep = app.post("/api/v1/trains/gated/board", json!({"artifact": tested["id"], "ready": true})).await.ok().clone();
        app.post("/api/v1/trains/gated/board", json!({"artifact": untested["id"], "ready": true})).await.ok();
        let dep_id = dep["id"].as_str().unwrap().to_string();
        let departure: chrono::DateTime<chrono::Utc> = dep["departure"].as_str().unwrap().parse().unwrap();
        let report = signalbox_app::App::new(app.store.clone()).scheduler_tick(departure + chrono::Duration::minutes(1)).await.unwrap();
        assert!(report.fired.contains(&format!("departure.depart:{dep_id}")), "{report:?}");

        let departed = app.get(&format!("/api/v1/departures/{dep_id}")).await.ok().clone();
        let left: Vec<&Value> = departed["items"].as_array().unwrap().iter().map(|i| &i["id"]).collect();
        assert_eq!(left, vec![&tested["id"]], "{departed}");
        let carried = departed["carried_over"].as_array().unwrap();
        assert_eq!(carried.len(), 1, "{departed}");
        assert_eq!(carried[0]["id"], untested["id"]);
        assert_eq!(carried[0]["failing_rules"], json!(["tests_passed"]));
        let reason = carried[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("gate tests_passed fails for prod") && reason.contains("no JUnit evidence for checkout-api 2.1.0"),
            "{reason}"
        );
        assert!(!reason.contains("not ready"), "it was marked ready: {reason}");
        // The departure's release keeps only the item that passed.
        let release = app.get(&format!("/api/v1/releases/{}", departed["release_id"].as_str().unwrap())).await;
        let components: Vec<&Value> = release.ok()["components"].as_array().unwrap().iter().map(|c| &c["artifact_id"]).collect();
        assert_eq!(components, vec![&tested["id"]]);

        // Announced: the departure's audit entry names the item and the rule; the next departure
        // holds it, still marked ready, with where it came from.
        let audit = app.get(&format!("/api/v1/audit?action=departure.depart&subject_id={dep_id}")).await;
        let entry = audit.ok()["items"][0].clone();
        let audit_reason = entry["reason"].as_str().unwrap();
        assert!(audit_reason.contains(untested["id"].as_str().unwrap()) && audit_reason.contains("tests_passed"), "{entry}");
        let view = app.get("/api/v1/trains/gated").await;
        let next = view.ok()["departures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] != dep_id.as_str() && d["items"].as_array().is_some_and(|items| !items.is_empty()))
            .cloned()
            .expect("the item is on another departure");
        assert_eq!(
            next["departure"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap(),
            departure + chrono::Duration::days(7)
        );
        assert_eq!(next["items"][0]["id"], untested["id"]);
        assert_eq!(next["items"][0]["ready"], true);
        assert!(next["items"][0]["carried_from"].as_str().unwrap().contains("tests_passed"));
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn bookings_of_an_owned_environment_wait_for_the_owner_and_the_requester_cannot_approve_them() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        // Validation: approval needs an owner; owners must exist.
        let env = |owner: Value| {
            json!({"name": "perf", "tier": "staging", "position": 35, "owner": owner,
                   "protection": {"booking_requires_approval": true}})
        };
        let no_owner = app.post("/api/v1/environments", env(Value::Null)).await;
        assert_eq!(fields(no_owner.problem(422)), vec!["protection/booking_requires_approval"]);
        let ghost = app.post("/api/v1/environments", env(json!({"team": "ghosts"}))).await;
        assert_eq!(fields(ghost.problem(422)), vec!["owner/team"]);
        let created = app.post("/api/v1/environments", env(json!({"team": "checkout-squad"}))).await;
        let team_id = app.get("/api/v1/teams/checkout-squad").await.ok()["id"].clone();
        assert_eq!(created.ok()["owner"], json!({"team": team_id}));

        // Tess is on the owning team; Dave is a developer elsewhere.
        let tess = app.user_with_role("tess", "developer").await;
        app.post("/api/v1/role-bindings", json!({"user": "tess", "role": "viewer", "scope": {"type": "team", "id": "checkout-squad"}}))
            .await
            .ok();
        let dave = app.user_with_role("dave", "developer").await;
        let as_user = |token: &str, path: &str, body: Value| {
            let (token, path) = (token.to_string(), path.to_string());
            let app = &app;
            async move { app.request(Method::POST, &path, Some(&token), Some(body), &[]).await }
        };

        let mine =
            as_user(&tess, "/api/v1/calendar/entries", booking("perf", "tess", "2027-03-01T10:00:00Z", "2027-03-01T12:00:00Z")).await;
        assert_eq!(mine.status, 201, "{}", mine.text);
        assert_eq!(mine.body["booking"]["state"], "pending");
        assert_eq!(mine.body["booking"]["requested_by"], "tess");
        let tess_booking = mine.body["id"].as_str().unwrap().to_string();
        // A pending booking does not hold the environment: an overlapping request is accepted.
        let his = as_user(&dave, "/api/v1/calendar/entries", booking("perf", "dave", "2027-03-01T11:00:00Z", "2027-03-01T13:00:00Z")).await;
        assert_eq!(his.status, 201, "{}", his.text);
        assert_eq!(his.body["booking"]["state"], "pending");
        let dave_booking = his.body["id"].as_str().unwrap().to_string();

        // Until approved they are tentative: warnings, never blocking.
        let check = json!({"service": "checkout-api", "environment": "perf", "start": "2027-03-01T11:30:00Z",
                           "expected_duration_seconds": 600, "requester": "someone-else"});
        let tentative = app.post("/api/v1/calendar/check", check.clone()).await.ok().clone();
        assert_eq!(tentative["clear"], true, "{tentative}");
        assert_eq!(kinds(&tentative["conflicts"]), vec!["environment_booking_pending", "environment_booking_pending"]);

        // Dave is not an owner; Tess may not decide her own request.
        let not_owner = as_user(&dave, &format!("/api/v1/bookings/{tess_booking}/approve"), json!({})).await;
        assert!(not_owner.problem(403)["detail"].as_str().unwrap().contains("owner"), "{}", not_owner.text);
        let own = as_user(&tess, &format!("/api/v1/bookings/{tess_booking}/approve"), json!({})).await;
        assert!(own.problem(403)["detail"].as_str().unwrap().contains("segregation"), "{}", own.text);
        let approved = as_user(&tess, &format!("/api/v1/bookings/{dave_booking}/approve"), json!({"reason": "go ahead"})).await;
        assert_eq!(approved.ok()["booking"]["state"], "confirmed");
        assert_eq!(approved.body["booking"]["decided_by"], "tess");
        assert_eq!(approved.body["version"], 2, "the feed's SEQUENCE goes up");
        let again = as_user(&tess, &format!("/api/v1/bookings/{dave_booking}/approve"), json!({})).await;
        assert_eq!(again.problem(409)["type"], "https://signalbox.dev/problems/booking-not-pending");

        // Now Dave holds it: blocking for others, and Tess's overlapping request cannot be approved.
        let held = app.post("/api/v1/calendar/check", check).await.ok().clone();
        assert_eq!(held["clear"], false);
        assert!(kinds(&held["conflicts"]).contains(&"environment_booked".to_string()), "{held}");
        let clash = app.post(&format!("/api/v1/bookings/{tess_booking}/approve"), json!({})).await;
        assert_eq!(clash.problem(409)["type"], "https://signalbox.dev/problems/booking-overlap");
        let no_reason = app.post(&format!("/api/v1/bookings/{tess_booking}/reject"), json!({})).await;
        assert_eq!(fields(no_reason.problem(422)), vec!["reason"]);
        let rejected = app.post(&format!("/api/v1/bookings/{tess_booking}/reject"), json!({"reason": "perf is Dave's that morning"})).await;
        assert_eq!(rejected.ok()["booking"]["state"], "rejected");
        assert_eq!(rejected.body["booking"]["note"], "perf is Dave's that morning");
        // A new request overlapping the confirmed booking is refused outright.
        let late =
            as_user(&tess, "/api/v1/calendar/entries", booking("perf", "tess", "2027-03-01T12:30:00Z", "2027-03-01T14:00:00Z")).await;
        late.problem(409);

        // An environment without the flag confirms bookings at once.
        let staging =
            app.post("/api/v1/calendar/entries", booking("staging", "admin", "2027-03-01T10:00:00Z", "2027-03-01T12:00:00Z")).await;
        assert_eq!(staging.status, 201, "{}", staging.text);
        assert_eq!(staging.body["booking"]["state"], "confirmed");

        // Audited: who decided, with the reason.
        let audit = app.get(&format!("/api/v1/audit?action=booking.approve&subject_id={dave_booking}")).await;
        let entries = audit.ok()["items"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 1, "{}", audit.text);
        assert_eq!(entries[0]["actor"], "tess");
        assert_eq!(entries[0]["reason"], "go ahead");
        let audit = app.get(&format!("/api/v1/audit?action=booking.reject&subject_id={tess_booking}")).await;
        assert_eq!(audit.ok()["items"].as_array().unwrap().len(), 1);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn bookings_expire_once_when_their_time_is_over_even_with_two_schedulers() {
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let created =
            app.post("/api/v1/calendar/entries", booking("staging", "admin", "2027-03-01T10:00:00Z", "2027-03-01T12:00:00Z")).await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.body["id"].as_str().unwrap().to_string();
        // Extended to 14:00 before it ends: the job planned for the first version must not end it.
        let mut longer = booking("staging", "admin", "2027-03-01T10:00:00Z", "2027-03-01T14:00:00Z");
        longer["title"] = json!("Load test (extended)");
        app.put(&format!("/api/v1/calendar/entries/{id}"), longer).await.ok();

        let a = signalbox_app::App::new(app.store.clone());
        let b = signalbox_app::App::new(app.store.clone());
        let (ra, rb) = tokio::join!(a.scheduler_tick(at("2027-03-01T12:30:00Z")), b.scheduler_tick(at("2027-03-01T12:30:00Z")));
        let fired: Vec<String> = ra.unwrap().fired.into_iter().chain(rb.unwrap().fired).collect();
        assert_eq!(fired, vec![format!("booking.expire:{id}@v1")], "the old version's job fires once and does nothing");
        let entry = app.get(&format!("/api/v1/calendar/entries/{id}")).await.ok().clone();
        assert_eq!(entry["booking"]["state"], "confirmed", "{entry}");

        let (ra, rb) = tokio::join!(a.scheduler_tick(at("2027-03-01T14:00:05Z")), b.scheduler_tick(at("2027-03-01T14:00:05Z")));
        let fired: Vec<String> = ra.unwrap().fired.into_iter().chain(rb.unwrap().fired).collect();
        assert_eq!(fired, vec![format!("booking.expire:{id}@v2")], "exactly once across the two replicas");
        let entry = app.get(&format!("/api/v1/calendar/entries/{id}")).await.ok().clone();
        assert_eq!(entry["booking"]["state"], "expired", "{entry}");
        assert_eq!(entry["booking"]["note"], "ended at 2027-03-01T14:00:00Z");
        let audit = app.get(&format!("/api/v1/audit?action=booking.expire&subject_id={id}")).await;
        let entries = audit.ok()["items"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 1, "{}", audit.text);
        assert_eq!(entries[0]["actor"], "system");
        // An expired booking cannot be released any more.
        app.post(&format!("/api/v1/bookings/{id}/release"), json!({})).await.problem(409);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn trains_are_patched_with_etags_and_deleted_only_without_boarded_departures() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let cadence =
            json!({"zone": "Europe/Lisbon", "dtstart": "2026-01-01T10:00:00", "rrule": "FREQ=WEEKLY;BYDAY=TH", "cutoff_before": "PT40H"});
        for name in ["boarded", "empty"] {
            app.post("/api/v1/trains", json!({"name": name, "domain": "payments", "cadence": cadence, "target_environments": ["prod"]}))
                .await
                .ok();
        }
        let shown = app.get("/api/v1/trains/empty").await;
        let etag = shown.etag().expect("a train has an ETag");
        let train_id = shown.ok()["train"]["id"].as_str().unwrap().to_string();

        // PATCH: 422 naming the field, 412 when stale, 200 with a new ETag.
        let bad = app
            .patch(
                "/api/v1/trains/empty",
                json!({"cadence": {"zone": "Mars/Olympus", "dtstart": "2026-01-01T10:00:00", "rrule": "FREQ=WEEKLY"}}),
            )
            .await;
        assert_eq!(fields(bad.problem(422)), vec!["cadence/zone"]);
        let bad = app.patch("/api/v1/trains/empty", json!({"target_environments": ["nowhere"]})).await;
        assert_eq!(fields(bad.problem(422)), vec!["target_environments/0"]);
        let friday =
            json!({"zone": "Europe/Lisbon", "dtstart": "2026-01-02T09:00:00", "rrule": "FREQ=WEEKLY;BYDAY=FR", "cutoff_before": "PT24H"});
        let patched = app
            .request(
                Method::PATCH,
                "/api/v1/trains/empty",
                Some(ADMIN_TOKEN),
                Some(json!({"cadence": friday, "target_environments": ["staging"]})),
                &[("if-match", &etag)],
            )
            .await;
        assert_eq!(patched.ok()["cadence"]["rrule"], "FREQ=WEEKLY;BYDAY=FR");
        assert_ne!(patched.etag().unwrap(), etag);
        let stale = app
            .request(Method::PATCH, "/api/v1/trains/empty", Some(ADMIN_TOKEN), Some(json!({"name": "renamed"})), &[("if-match", &etag)])
            .await;
        stale.problem(412);
        let view = app.get("/api/v1/trains/empty").await.ok().clone();
        let next = view["upcoming"][0]["local_departure"].as_str().unwrap().to_string();
        let weekday = chrono::DateTime::parse_from_rfc3339(&next).unwrap().format("%a %H:%M").to_string();
        assert_eq!(weekday, "Fri 09:00", "the new cadence governs the next departures: {next}");

        // The scheduler materializes empty departures of the patched train; deleting it removes
        // them with their jobs and cancels their releases.
        let now = chrono::Utc::now();
        let report = signalbox_app::App::new(app.store.clone()).scheduler_tick(now).await.unwrap();
        assert!(!report.materialized.is_empty());
        let departures = app.get("/api/v1/trains/empty").await.ok()["departures"].as_array().unwrap().clone();
        assert!(!departures.is_empty());
        let release_id = departures[0]["release_id"].as_str().unwrap().to_string();

        // A train with an item on a departure that has not left is refused, naming it.
        let artifact = app.register("checkout-api", "3.0.0").await;
        let dep = app.post("/api/v1/trains/boarded/board", json!({"artifact": artifact["id"]})).await.ok().clone();
        let refused = app.request(Method::DELETE, "/api/v1/trains/boarded", Some(ADMIN_TOKEN), None, &[]).await;
        let problem = refused.problem(409);
        assert_eq!(problem["type"], "https://signalbox.dev/problems/train-has-boarded-departures");
        assert!(problem["detail"].as_str().unwrap().contains(dep["id"].as_str().unwrap()), "{problem}");

        let deleted = app.request(Method::DELETE, "/api/v1/trains/empty", Some(ADMIN_TOKEN), None, &[]).await;
        assert_eq!(deleted.status, 204, "{}", deleted.text);
        app.get("/api/v1/trains/empty").await.problem(404);
        app.get(&format!("/api/v1/departures/{}", departures[0]["id"].as_str().unwrap())).await.problem(404);
        assert_eq!(app.get(&format!("/api/v1/releases/{release_id}")).await.ok()["state"], "cancelled");
        // No job of the deleted train is left to fire, even far in the future.
        let later = signalbox_app::App::new(app.store.clone()).scheduler_tick(now + chrono::Duration::days(60)).await.unwrap();
        assert!(later.fired.iter().all(|f| departures.iter().all(|d| !f.ends_with(d["id"].as_str().unwrap()))), "{later:?}");
        let audit = app.get(&format!("/api/v1/audit?action=train.delete&subject_id={train_id}")).await;
        assert_eq!(audit.ok()["items"].as_array().unwrap().len(), 1);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn the_ics_feed_shows_train_departures_and_their_cut_offs_with_stable_uids() {
    use signalbox_calendar::train::{CadenceDraft, TrainCadence};
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let cadence =
            json!({"zone": "Europe/Lisbon", "dtstart": "2026-01-01T10:00:00", "rrule": "FREQ=WEEKLY;BYDAY=TH", "cutoff_before": "PT40H"});
        let train = app
            .post(
                "/api/v1/trains",
                json!({"name": "payments-weekly", "domain": "payments", "cadence": cadence, "target_environments": ["prod"]}),
            )
            .await
            .ok()
            .clone();
        let train_id = train["id"].as_str().unwrap();
        let secret =
            app.post("/api/v1/calendar/feed-tokens", json!({"name": "everything"})).await.ok()["secret"].as_str().unwrap().to_string();
        let feed = |query: &str| {
            let path = format!("/calendar.ics?token={secret}{query}");
            let app = &app;
            async move {
                let reply = app.request(Method::GET, &path, None, None, &[]).await;
                assert_eq!(reply.status, 200, "{}", reply.text);
                reply.text.replace("\r\n ", "")
            }
        };
        let engine = TrainCadence::from_draft(&serde_json::from_value::<CadenceDraft>(cadence).unwrap()).unwrap();
        let next = &engine.next_departures(chrono::Utc::now(), 1)[0];
        let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
        let uid = format!("UID:{train_id}-{}@signalbox", stamp(next.departure));
        let cutoff_uid = format!("UID:{train_id}-{}-cutoff@signalbox", stamp(next.departure));

        let text = feed("").await;
        let departure_event =
            text.split("BEGIN:VEVENT").find(|e| e.contains(&format!("{uid}\r\n"))).unwrap_or_else(|| panic!("{uid} in {text}"));
        assert!(departure_event.contains(&format!("DTSTART:{}", stamp(next.departure))), "{departure_event}");
        assert!(departure_event.contains("SUMMARY:payments-weekly departure") && departure_event.contains("SEQUENCE:1"));
        let cutoff_event = text.split("BEGIN:VEVENT").find(|e| e.contains(&cutoff_uid)).unwrap_or_else(|| panic!("{cutoff_uid} in {text}"));
        assert!(cutoff_event.contains(&format!("DTSTART:{}", stamp(next.cutoff))), "{cutoff_event}");
        assert!(cutoff_event.contains("X-SIGNALBOX-KIND:train_cutoff"));
        // About 13 weeks ahead plus the last week, each a departure and a cut-off.
        let departures = text.matches("X-SIGNALBOX-KIND:train_departure").count();
        assert!((13..=15).contains(&departures), "{departures} departures");
        assert_eq!(text.matches("X-SIGNALBOX-KIND:train_cutoff").count(), departures);
        assert_eq!(feed("").await.matches(&uid).count(), 1, "stable: the same UID on every read");

        // Filters: the train's domain, target and tier admit it; others and entry kinds do not.
        for query in ["&domain=payments", "&environment=prod", "&tier=prod", "&service=checkout-api"] {
            assert!(feed(query).await.contains(&uid), "{query}");
        }
        for query in ["&environment=staging", "&tier=dev", "&kind=freeze"] {
            assert!(!feed(query).await.contains("train_departure"), "{query}");
        }

        // Changing the train bumps the SEQUENCE of its events.
        app.patch("/api/v1/trains/payments-weekly", json!({"name": "payments-thursday"})).await.ok();
        let text = feed("").await;
        let changed = text.split("BEGIN:VEVENT").find(|e| e.contains(&format!("{uid}\r\n"))).unwrap();
        assert!(changed.contains("SEQUENCE:2") && changed.contains("SUMMARY:payments-thursday departure"), "{changed}");
    }
}

#[tokio::test]
async fn outlook_files_with_windows_zone_names_import() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Change board\r\nDTSTART;TZID=\"W. Europe Standard Time\":20260602T100000\r\n\
                   DTEND;TZID=\"W. Europe Standard Time\":20260602T110000\r\nRRULE:FREQ=WEEKLY;BYDAY=TU\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nSUMMARY:Vendor call\r\nDTSTART;TZID=/mozilla.org/20071231_1/Europe/London:20260701T090000\r\n\
                   DURATION:PT30M\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let imported = app
            .post(
                "/api/v1/calendar/import",
                json!({"ics": ics, "kind": "business_event", "scope": {"level": "organization"}, "owner": "pmo", "default_zone": "UTC"}),
            )
            .await;
        assert_eq!(imported.status, 201, "{}", imported.text);
        let zones: Vec<&str> = imported.body["created"].as_array().unwrap().iter().map(|e| e["zone"].as_str().unwrap()).collect();
        assert_eq!(zones, vec!["Europe/Berlin", "Europe/London"]);
        // 10:00 in Berlin in June is 08:00Z.
        let view = app.get("/api/v1/calendar?from=2026-06-02T00:00:00Z&to=2026-06-03T00:00:00Z").await.ok().clone();
        assert_eq!(view["occurrences"][0]["start"], "2026-06-02T08:00:00Z", "{view}");
        let unknown = app
            .post(
                "/api/v1/calendar/import",
                json!({"ics": ics.replace("W. Europe Standard Time", "Mars Standard Time"), "kind": "business_event",
                       "scope": {"level": "organization"}, "owner": "pmo", "default_zone": "UTC"}),
            )
            .await;
        let problem = unknown.problem(422);
        assert_eq!(fields(problem), vec!["file/line/4"]);
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("Windows zone name"), "{problem}");
    }
}
