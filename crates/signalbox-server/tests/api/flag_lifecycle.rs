//! The lifecycle of feature flags (issue 7, part 4) over HTTP, on every backend: scheduled
//! changes (created, refused inside a freeze, listed, cancelled, fired exactly once by the
//! scheduler with an injected time, skipped by a freeze that appeared later, failed when the flag
//! was removed), evaluation counters incremented by OFREP and flushed, the stale report with a
//! fixed "now", and the OFREP SSE change stream.

use crate::helpers::*;
use chrono::{DateTime, Duration, DurationRound, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use signalbox_app::App;

fn rollout_document() -> Value {
    json!({
        "flags": {
            "new-checkout": {
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"fractional": [["on", 5], ["off", 95]]},
                "metadata": {"owner": "payments", "type": "release"}
            },
            "color": {
                "state": "ENABLED",
                "variants": {"red": "#f00", "blue": "#00f"},
                "defaultVariant": "red",
                "metadata": {"type": "experiment"}
            }
        }
    })
}

fn rollout(percent: i64) -> Value {
    json!({"targeting": {"fractional": [["on", percent], ["off", 100 - percent]]}})
}

fn freeze(title: &str, scope: Value, start: DateTime<Utc>, end: DateTime<Utc>) -> Value {
    json!({
        "kind": "freeze", "title": title, "reason": "Peak trading", "owner": "release-managers",
        "scope": scope, "zone": "UTC",
        "timing": {"type": "one_off", "start": start.to_rfc3339(), "end": end.to_rfc3339()}, "freeze_effect": "block_new"
    })
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().map(|e| e["field"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

async fn sdk_key(app: &TestApp, environment: &str) -> String {
    let issued = app.post("/api/v1/flags/sdk-keys", json!({"environment": environment, "name": "web"})).await;
    assert_eq!(issued.status.as_u16(), 201, "{}", issued.text);
    issued.body["secret"].as_str().unwrap().to_string()
}

async fn ofrep(app: &TestApp, path: &str, key: &str, context: Value) -> Reply {
    app.request(Method::POST, path, None, Some(json!({ "context": context })), &[("x-api-key", key)]).await
}

async fn schedule(app: &TestApp, flag: &str, patch: Value, at: DateTime<Utc>, reason: &str) -> Reply {
    app.post(&format!("/api/v1/flags/prod/flags/{flag}/schedule"), json!({"patch": patch, "at": at.to_rfc3339(), "reason": reason})).await
}

async fn actions(app: &TestApp, action: &str) -> Vec<Value> {
    app.get(&format!("/api/v1/audit?action={action}&limit=200")).await.ok()["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn scheduled_changes_fire_once_and_respect_freezes() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.put("/api/v1/flags/prod", rollout_document()).await.ok();
        // Days ahead of the real clock, at 09:00 UTC: "25 % on Tuesday, 100 % on Wednesday".
        let day = Utc::now().duration_trunc(Duration::days(1)).unwrap() + Duration::days(2) + Duration::hours(9);
        let (tuesday, wednesday) = (day, day + Duration::days(1));

        let a = schedule(&app, "new-checkout", rollout(25), tuesday, "ramp to 25%").await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        assert_eq!(a.body["state"], "pending");
        assert_eq!(a.body["base_revision"], 1);
        assert_eq!(a.body["created_by"], "admin");
        let b = schedule(&app, "new-checkout", rollout(100), wednesday, "ramp to 100%").await;
        assert_eq!(b.status.as_u16(), 201, "{}", b.text);
        let (a_id, b_id) = (a.body["id"].as_str().unwrap().to_string(), b.body["id"].as_str().unwrap().to_string());

        // Refusals name the field: in the past, not a time, a patch that does not validate, empty patch.
        let past = schedule(&app, "new-checkout", rollout(50), Utc::now() - Duration::hours(1), "late").await;
        assert_eq!(fields(past.problem(422)), vec!["at"]);
        let garbage = app.post("/api/v1/flags/prod/flags/new-checkout/schedule", json!({"patch": rollout(50), "at": "thursday"})).await;
        assert_eq!(fields(garbage.problem(422)), vec!["at"]);
        let bad = schedule(&app, "new-checkout", json!({"defaultVariant": "onn"}), tuesday, "typo").await;
        assert_eq!(fields(bad.problem(422)), vec!["patch: flags.new-checkout.defaultVariant"], "{}", bad.text);
        let empty = schedule(&app, "new-checkout", json!({}), tuesday, "nothing").await;
        assert_eq!(fields(empty.problem(422)), vec!["patch"]);
        let unknown_env =
            app.post("/api/v1/flags/nowhere/flags/x/schedule", json!({"patch": rollout(5), "at": tuesday.to_rfc3339()})).await;
        unknown_env.problem(404);

        // Inside a freeze of the prod tier: refused at creation, with the freeze named at `at`.
        let freeze_start = day + Duration::days(10);
        app.post(
            "/api/v1/calendar/entries",
            freeze("Year-end freeze", json!({"level": "environment_tier", "tier": "prod"}), freeze_start, freeze_start + Duration::days(3)),
        )
        .await
        .ok();
        let frozen = schedule(&app, "new-checkout", rollout(50), freeze_start + Duration::hours(5), "during the freeze").await;
        let problem = frozen.problem(422);
        assert_eq!(fields(problem), vec!["at"]);
        assert!(frozen.text.contains("Year-end freeze"), "{}", frozen.text);
        // A freeze of one service also holds the environment-wide set (every service reads it),
        // and the per-service set of another service is not held by it.
        let service_freeze = day + Duration::days(20);
        app.post(
            "/api/v1/calendar/entries",
            freeze(
                "Checkout freeze",
                json!({"level": "service", "service": "checkout-api"}),
                service_freeze,
                service_freeze + Duration::days(1),
            ),
        )
        .await
        .ok();
        let held = schedule(&app, "new-checkout", rollout(50), service_freeze + Duration::hours(1), "env-wide").await;
        assert!(held.problem(422)["detail"].as_str().unwrap().contains("Checkout freeze"), "{}", held.text);
        app.post("/api/v1/services", json!({"name": "search-api", "team": "checkout-squad", "criticality": "internal"})).await.ok();
        let other_service = app
            .post(
                "/api/v1/flags/prod/flags/ranking/schedule?service=search-api",
                json!({"patch": {"state": "ENABLED", "variants": {"a": "a"}, "defaultVariant": "a"}, "at": (service_freeze + Duration::hours(1)).to_rfc3339()}),
            )
            .await;
        assert_eq!(other_service.status.as_u16(), 201, "{}", other_service.text);
        assert_eq!(other_service.body["service"], "search-api");
        assert_eq!(other_service.body["flag_existed"], false);

        // Hostile shapes: a patch that is not an object, unknown fields, an absurd time.
        let not_object =
            app.post("/api/v1/flags/prod/flags/new-checkout/schedule", json!({"patch": [1], "at": tuesday.to_rfc3339()})).await;
        assert_eq!(fields(not_object.problem(422)), vec!["patch"]);
        app.post("/api/v1/flags/prod/flags/new-checkout/schedule", json!({"patch": {}, "at": "x", "when": 1})).await.problem(422);
        let far = schedule(&app, "new-checkout", rollout(1), Utc::now() + Duration::days(4000), "far").await;
        assert_eq!(fields(far.problem(422)), vec!["at"]);
        let huge = app.post("/api/v1/flags/prod/flags/new-checkout/schedule", json!({"patch": rollout(1), "at": "9".repeat(20_000)})).await;
        assert_eq!(fields(huge.problem(422)), vec!["at"]);
        assert!(huge.text.len() < 2_000, "the bad value is not echoed whole");

        // Another environment is not frozen.
        app.put("/api/v1/flags/staging", rollout_document()).await.ok();
        let staging = app
            .post(
                "/api/v1/flags/staging/flags/new-checkout/schedule",
                json!({"patch": rollout(50), "at": (freeze_start + Duration::hours(5)).to_rfc3339()}),
            )
            .await;
        assert_eq!(staging.status.as_u16(), 201, "{}", staging.text);

        // Cancel: audited, the job is settled, a second cancel is a 409.
        let c = schedule(&app, "color", json!({"defaultVariant": "blue"}), tuesday + Duration::minutes(30), "try blue").await;
        let c_id = c.body["id"].as_str().unwrap().to_string();
        let cancelled = app.post(&format!("/api/v1/flags/scheduled/{c_id}/cancel?reason=not%20now"), json!({})).await;
        assert_eq!(cancelled.ok()["state"], "cancelled");
        assert!(cancelled.body["outcome"].as_str().unwrap().contains("not now"));
        app.post(&format!("/api/v1/flags/scheduled/{c_id}/cancel"), json!({})).await.problem(409);
        app.post("/api/v1/flags/scheduled/fsc_nope/cancel", json!({})).await.problem(404);
        assert_eq!(actions(&app, "flag_schedule.cancel").await.len(), 1);

        let listed = app.get("/api/v1/flags/scheduled?environment=prod").await;
        let ids: Vec<&str> = listed.ok().as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
        let other_id = other_service.body["id"].as_str().unwrap();
        assert_eq!(ids, vec![a_id.as_str(), c_id.as_str(), b_id.as_str(), other_id], "soonest first");
        assert_eq!(app.get("/api/v1/flags/scheduled?environment=prod&state=pending").await.ok().as_array().unwrap().len(), 3);
        app.get("/api/v1/flags/scheduled?state=soon").await.problem(422);
        let colors = app.get("/api/v1/flags/scheduled?flag=color").await;
        assert_eq!(colors.ok().as_array().unwrap().len(), 1);

        // Not due yet: nothing happens.
        let early = app.app.scheduler_tick(tuesday - Duration::minutes(1)).await.expect("tick");
        assert!(!early.fired.iter().any(|f| f.starts_with("flag.change")), "{early:?}");

        // Tuesday: exactly one change fires (not the cancelled one), as an audited flag write.
        let fired = app.app.scheduler_tick(tuesday + Duration::minutes(45)).await.expect("tick");
        let flag_jobs: Vec<&String> = fired.fired.iter().filter(|f| f.starts_with("flag.change")).collect();
        assert_eq!(flag_jobs, vec![&format!("flag.change:{a_id}")]);
        let applied = app.get(&format!("/api/v1/flags/scheduled/{a_id}")).await;
        assert_eq!(applied.ok()["state"], "applied", "{}", applied.text);
        assert_eq!(applied.body["revision"], 2);
        let set = app.get("/api/v1/flags/prod").await;
        assert_eq!(set.ok()["revision"], 2);
        assert_eq!(set.body["document"]["flags"]["new-checkout"]["targeting"], rollout(25)["targeting"]);
        let revisions = app.get("/api/v1/flags/prod/revisions").await;
        let newest = &revisions.ok()[0];
        assert_eq!(newest["created_by"], "admin", "the author of the scheduled change");
        assert!(newest["reason"].as_str().unwrap().contains("ramp to 25%"), "{newest}");
        assert_eq!(newest["changes"][0]["flag"], "new-checkout");
        assert_eq!(newest["changes"][0]["fields"][0]["field"], "targeting");
        let applies = actions(&app, "flag_schedule.apply").await;
        assert_eq!(applies.len(), 1);
        assert_eq!(applies[0]["actor"], "system");
        assert!(actions(&app, "flag_set.update").await.iter().any(|e| e["reason"].as_str().unwrap_or("").contains(&a_id)));
        let again = app.app.scheduler_tick(tuesday + Duration::minutes(46)).await.expect("tick");
        assert!(!again.fired.iter().any(|f| f.starts_with("flag.change")), "fired once");
        app.post(&format!("/api/v1/flags/scheduled/{a_id}/cancel"), json!({})).await.problem(409);

        // Wednesday, two replicas ticking together: the change fires exactly once.
        let r1 = App::new(app.store.clone());
        let r2 = App::new(app.store.clone());
        let at = wednesday + Duration::seconds(5);
        let (t1, t2) = tokio::join!(r1.scheduler_tick(at), r2.scheduler_tick(at));
        let both: Vec<String> =
            t1.expect("tick 1").fired.into_iter().chain(t2.expect("tick 2").fired).filter(|f| f.starts_with("flag.change")).collect();
        assert_eq!(both, vec![format!("flag.change:{b_id}")]);
        let set = app.get("/api/v1/flags/prod").await;
        assert_eq!(set.ok()["revision"], 3);
        assert_eq!(set.body["document"]["flags"]["new-checkout"]["targeting"], rollout(100)["targeting"]);

        // A freeze created after the change was scheduled: the job skips, audited, nothing written.
        let friday = day + Duration::days(3);
        let d = schedule(&app, "new-checkout", rollout(0), friday, "back to 0").await;
        let d_id = d.body["id"].as_str().unwrap().to_string();
        app.post(
            "/api/v1/calendar/entries",
            freeze(
                "Incident freeze",
                json!({"level": "environment", "environment": "prod"}),
                friday - Duration::hours(1),
                friday + Duration::hours(1),
            ),
        )
        .await
        .ok();
        app.app.scheduler_tick(friday + Duration::seconds(1)).await.expect("tick");
        let skipped = app.get(&format!("/api/v1/flags/scheduled/{d_id}")).await;
        assert_eq!(skipped.ok()["state"], "skipped", "{}", skipped.text);
        let outcome = skipped.body["outcome"].as_str().unwrap();
        assert!(outcome.contains("blocked by freeze") && outcome.contains("Incident freeze"), "{outcome}");
        assert_eq!(app.get("/api/v1/flags/prod").await.ok()["revision"], 3, "nothing fired into the freeze");
        assert_eq!(actions(&app, "flag_schedule.skip").await.len(), 1);

        // The flag was removed in between: the change fails with the reason, nothing written.
        let saturday = day + Duration::days(4);
        let e = schedule(&app, "color", json!({"defaultVariant": "blue"}), saturday, "blue").await;
        let e_id = e.body["id"].as_str().unwrap().to_string();
        app.request(Method::DELETE, "/api/v1/flags/prod/flags/color", Some(ADMIN_TOKEN), None, &[]).await.ok();
        app.app.scheduler_tick(saturday + Duration::seconds(1)).await.expect("tick");
        let failed = app.get(&format!("/api/v1/flags/scheduled/{e_id}")).await;
        assert_eq!(failed.ok()["state"], "failed", "{}", failed.text);
        assert!(failed.body["outcome"].as_str().unwrap().contains("was removed"), "{}", failed.text);
        assert_eq!(app.get("/api/v1/flags/prod").await.ok()["revision"], 4, "only the delete");

        // A patch that no longer validates against the flag as it is then: fails, audited.
        let sunday = day + Duration::days(5);
        let f = schedule(&app, "new-checkout", json!({"defaultVariant": "on"}), sunday, "default on").await;
        let f_id = f.body["id"].as_str().unwrap().to_string();
        app.patch("/api/v1/flags/prod/flags/new-checkout", json!({"variants": {"on": null, "enabled": true}, "targeting": null}))
            .await
            .ok();
        app.app.scheduler_tick(sunday + Duration::seconds(1)).await.expect("tick");
        let failed = app.get(&format!("/api/v1/flags/scheduled/{f_id}")).await;
        assert_eq!(failed.ok()["state"], "failed", "{}", failed.text);
        assert!(failed.body["outcome"].as_str().unwrap().contains("no longer applies"), "{}", failed.text);
        assert_eq!(actions(&app, "flag_schedule.fail").await.len(), 2);

        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

fn lifecycle_document() -> Value {
    json!({
        "flags": {
            "done-rollout": {
                "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"fractional": [["on", 100], ["off", 0]]},
                "metadata": {"type": "release", "owner": "payments"}
            },
            "ramping": {
                "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"fractional": [["on", 50], ["off", 50]]},
                "metadata": {"type": "release", "expectedLifetimeDays": 400}
            },
            "plan-limit": {
                "state": "ENABLED", "variants": {"small": 50, "large": 200}, "defaultVariant": "small",
                "targeting": {"if": [{"in": [{"var": "plan"}, ["business"]]}, "large", null]},
                "metadata": {"type": "permission"}
            },
            "ops-kill": {
                "state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "metadata": {"type": "ops"}
            }
        }
    })
}

fn codes(report: &Value, flag: &str) -> Vec<String> {
    report["stale"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["flag"] == flag)
        .flat_map(|f| f["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn counters_are_flushed_and_the_stale_report_explains_itself() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.put("/api/v1/flags/staging", lifecycle_document()).await.ok();
        let key = sdk_key(&app, "staging").await;

        // Evaluations through OFREP: one bulk, three singles of one flag, one of an unknown flag.
        let bulk = ofrep(&app, "/ofrep/v1/evaluate/flags", &key, json!({"targetingKey": "user-1"})).await;
        assert_eq!(bulk.status.as_u16(), 200, "{}", bulk.text);
        for user in ["a", "b", "c"] {
            let r = ofrep(&app, "/ofrep/v1/evaluate/flags/ramping", &key, json!({"targetingKey": user})).await;
            assert_eq!(r.status.as_u16(), 200, "{}", r.text);
        }
        ofrep(&app, "/ofrep/v1/evaluate/flags/unknown", &key, json!({"targetingKey": "x"})).await;
        // Nothing is written per evaluation: no stats until the flush.
        assert!(app.get("/api/v1/flags/staging/stats").await.ok().as_array().unwrap().is_empty());
        assert_eq!(app.app.flush_flag_stats().await.expect("flush"), 1);
        assert_eq!(app.app.flush_flag_stats().await.expect("flush"), 0, "nothing new to write");
        let stats = app.get("/api/v1/flags/staging/stats").await;
        let flags = &stats.ok()[0]["flags"];
        assert_eq!(flags["ramping"]["evaluations"], 4, "{}", stats.text);
        let by_variant: u64 = flags["ramping"]["variants"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(by_variant, 4);
        assert_eq!(flags["done-rollout"]["variants"], json!({"on": 1}));
        assert_eq!(flags["ops-kill"]["no_variant"], 1);
        assert!(flags["ramping"]["last_evaluated"].is_string());
        assert!(flags.get("unknown").is_none(), "unknown keys are not counted");
        let flushes = actions(&app, "flag_stats.flush").await;
        assert_eq!(flushes.len(), 1);
        assert_eq!(flushes[0]["after"]["added_evaluations"], 7, "{}", flushes[0]);
        assert_eq!(flushes[0]["after"]["flags_evaluated"], 4);
        assert!(flushes[0]["before"].is_null());
        // A second flush adds to the same record.
        ofrep(&app, "/ofrep/v1/evaluate/flags/ramping", &key, json!({"targetingKey": "d"})).await;
        app.app.flush_flag_stats().await.expect("flush");
        assert_eq!(app.get("/api/v1/flags/staging/stats").await.ok()[0]["flags"]["ramping"]["evaluations"], 5);
        let flushes = actions(&app, "flag_stats.flush").await;
        assert_eq!(flushes.len(), 2);
        let second = flushes.last().unwrap();
        assert_eq!(second["before"]["evaluations"], 7, "{second}");
        assert_eq!(second["after"]["evaluations"], 8);
        assert_eq!(second["after"]["added_evaluations"], 1);

        // Ten days later: only the ops flag is past its expected lifetime (7 days).
        let now = Utc::now();
        app.app.set_flags_now(Some(now + Duration::days(10)));
        let report = app.get("/api/v1/flags/stale?environment=staging").await;
        let r = report.ok();
        assert_eq!(r["checked"], 4);
        let stale: Vec<&str> = r["stale"].as_array().unwrap().iter().map(|f| f["flag"].as_str().unwrap()).collect();
        assert_eq!(stale, vec!["ops-kill"], "{}", report.text);
        let reason = &r["stale"][0]["reasons"][0];
        assert_eq!(reason["code"], "past_expected_lifetime");
        assert_eq!(reason["days"], 10);
        assert_eq!(reason["threshold_days"], 7);

        // Forty-five days later, every reason with its numbers.
        app.app.set_flags_now(Some(now + Duration::days(45)));
        let report = app.get("/api/v1/flags/stale?environment=staging").await;
        let r = report.ok().clone();
        assert_eq!(
            codes(&r, "done-rollout"),
            vec!["fully_rolled_out", "unchanged", "not_evaluated", "past_expected_lifetime"],
            "{}",
            report.text
        );
        assert_eq!(codes(&r, "ramping"), vec!["unchanged", "not_evaluated"]);
        assert_eq!(codes(&r, "plan-limit"), vec!["not_evaluated"], "permission flags are not stale for being unchanged");
        assert_eq!(codes(&r, "ops-kill"), vec!["unchanged", "not_evaluated", "past_expected_lifetime"]);
        let done = r["stale"].as_array().unwrap().iter().find(|f| f["flag"] == "done-rollout").unwrap();
        assert_eq!(done["reasons"][0]["variant"], "on");
        assert_eq!(done["reasons"][0]["days"], 45);
        assert_eq!(done["reasons"][2]["days"], 45);
        assert_eq!(done["evaluations"], 1);
        assert!(done["reasons"][2]["message"].as_str().unwrap().contains("last evaluated 45 days ago"), "{done}");

        // Thresholds are parameters; bad ones name the field.
        let relaxed = app.get("/api/v1/flags/stale?environment=staging&unchanged_days=60&not_evaluated_days=60&rolled_out_days=60").await;
        let relaxed = relaxed.ok();
        assert_eq!(codes(relaxed, "done-rollout"), vec!["past_expected_lifetime"]);
        assert_eq!(codes(relaxed, "ramping"), Vec::<String>::new());
        assert_eq!(fields(app.get("/api/v1/flags/stale?unchanged_days=-1").await.problem(422)), vec!["unchanged_days"]);
        app.get("/api/v1/flags/stale?environment=nowhere").await.problem(404);
        app.get("/api/v1/flags/stale?colour=1").await.problem(400);

        // Evaluations at the fixed "now" count as recent.
        ofrep(&app, "/ofrep/v1/evaluate/flags/ramping", &key, json!({"targetingKey": "e"})).await;
        let report = app.get("/api/v1/flags/stale?environment=staging").await;
        assert_eq!(codes(report.ok(), "ramping"), vec!["unchanged"], "{}", report.text);
        app.app.set_flags_now(None);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

/// Reads an SSE response until `needle` shows up or `timeout` passes; returns what was read.
async fn read_until(resp: &mut reqwest::Response, needle: &str, timeout: std::time::Duration) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !text.contains(needle) {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    text
}

#[tokio::test]
async fn sse_stream_announces_changes() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.put("/api/v1/flags/prod", rollout_document()).await.ok();
        let key = sdk_key(&app, "prod").await;

        let bulk = ofrep(&app, "/ofrep/v1/evaluate/flags", &key, json!({"targetingKey": "u"})).await;
        assert_eq!(
            bulk.body["eventStreams"],
            json!([{"type": "sse", "endpoint": {"requestUri": "/ofrep/v1/events"}, "inactivityDelaySec": 120}])
        );

        let url = format!("{}/ofrep/v1/events", app.base);
        assert_eq!(app.client.get(&url).send().await.unwrap().status().as_u16(), 401);
        assert_eq!(app.client.get(&url).header("x-api-key", "sbf_nope").send().await.unwrap().status().as_u16(), 403);

        let mut stream = app.client.get(&url).bearer_auth(&key).send().await.expect("stream");
        assert_eq!(stream.status().as_u16(), 200);
        assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        // A change through this server.
        app.patch("/api/v1/flags/prod/flags/new-checkout", rollout(25)).await.ok();
        let text = read_until(&mut stream, "refetchEvaluation", std::time::Duration::from_secs(10)).await;
        assert!(text.contains("event: message"), "{text}");
        let set_id = app.get("/api/v1/flags/prod").await.ok()["id"].as_str().unwrap().to_string();
        assert!(text.contains(&format!("id: {set_id}:2")), "{text}");
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
        let event: Value = serde_json::from_str(data).expect("JSON data");
        assert_eq!(event["type"], "refetchEvaluation");
        assert_eq!(event["etag"], format!("{set_id}:2"));
        assert!(event["lastModified"].as_i64().unwrap() > 1_700_000_000);

        // A change through another replica (its own App on the same database): seen by this
        // server's poller, announced from the snapshot swap.
        let other = App::new(app.store.clone());
        let admin = other.authenticate(ADMIN_TOKEN).await.expect("admin");
        let ctx = signalbox_app::RequestContext::new(admin);
        other
            .patch_flag(&ctx, &signalbox_app::flags::FlagSetRef { environment: "prod", service: None }, "new-checkout", rollout(50), None)
            .await
            .expect("patch on the other replica");
        let text = read_until(&mut stream, &format!("{set_id}:3"), std::time::Duration::from_secs(10)).await;
        assert!(text.contains("refetchEvaluation"), "{text}");

        // Another environment's change is not announced to a prod key.
        app.put("/api/v1/flags/staging", rollout_document()).await.ok();
        app.patch("/api/v1/flags/prod/flags/color", json!({"defaultVariant": "blue"})).await.ok();
        let text = read_until(&mut stream, &format!("{set_id}:4"), std::time::Duration::from_secs(10)).await;
        assert!(!text.contains(":1\n") && text.contains(&format!("{set_id}:4")), "{text}");

        // Reconnecting with an old Last-Event-ID gets an event at once.
        let mut again = app.client.get(&url).header("x-api-key", &key).header("last-event-id", format!("{set_id}:2")).send().await.unwrap();
        let text = read_until(&mut again, "refetchEvaluation", std::time::Duration::from_secs(5)).await;
        assert!(text.contains(&format!("{set_id}:4")), "{text}");
        drop(stream);

        // A service's key follows its environment's set (its fallback) and its own set.
        let issued = app.post("/api/v1/flags/sdk-keys", json!({"environment": "prod", "service": "checkout-api", "name": "svc"})).await;
        let service_key = issued.ok()["secret"].as_str().unwrap().to_string();
        let mut service_stream = app.client.get(&url).header("x-api-key", &service_key).send().await.unwrap();
        app.patch("/api/v1/flags/prod/flags/color", json!({"defaultVariant": "red"})).await.ok();
        let text = read_until(&mut service_stream, &format!("{set_id}:5"), std::time::Duration::from_secs(10)).await;
        assert!(text.contains(&format!("{set_id}:5")), "{text}");
        let own = app.put("/api/v1/flags/prod?service=checkout-api", rollout_document()).await;
        let own_id = own.ok()["id"].as_str().unwrap().to_string();
        let text = read_until(&mut service_stream, &format!("{own_id}:1"), std::time::Duration::from_secs(10)).await;
        assert!(text.contains(&format!("{own_id}:1")), "{text}");
        drop(service_stream);

        // Shutting down ends open streams (the drain does not wait for them) and refuses new ones.
        app.app.close_flag_streams();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async { while let Ok(Some(_)) = again.chunk().await {} }).await;
        assert!(ended.is_ok(), "the stream ended at shutdown");
        assert_eq!(app.client.get(&url).header("x-api-key", &key).send().await.unwrap().status().as_u16(), 503);
    }
}

#[tokio::test]
async fn a_cancel_racing_the_scheduler_has_one_outcome() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.put("/api/v1/flags/prod", rollout_document()).await.ok();
        // Scheduled "an hour ago" by a clock set a day back, so they are due at once.
        let now = Utc::now();
        app.app.set_flags_now(Some(now - Duration::days(1)));
        let mut ids = Vec::new();
        for i in 0..6 {
            let r = schedule(&app, "new-checkout", rollout(10 + i), now - Duration::hours(1) + Duration::seconds(i), "race").await;
            assert_eq!(r.status.as_u16(), 201, "{}", r.text);
            ids.push(r.body["id"].as_str().unwrap().to_string());
        }
        app.app.set_flags_now(None);
        let replica = App::new(app.store.clone());
        let cancels = async {
            let mut statuses = Vec::new();
            for id in &ids {
                statuses.push(app.post(&format!("/api/v1/flags/scheduled/{id}/cancel"), json!({})).await.status.as_u16());
            }
            statuses
        };
        let (statuses, tick) = tokio::join!(cancels, replica.scheduler_tick(now));
        tick.expect("tick");
        app.app.scheduler_tick(now).await.expect("a second tick fires what is left");
        for (id, status) in ids.iter().zip(&statuses) {
            assert!([200, 409, 412].contains(status), "cancel answered {status}");
            let s = app.get(&format!("/api/v1/flags/scheduled/{id}")).await.ok().clone();
            match s["state"].as_str().unwrap() {
                "cancelled" => assert_eq!(*status, 200, "{s}"),
                "applied" => assert_ne!(*status, 200, "{s}"),
                other => panic!("unexpected state {other}: {s}"),
            }
        }
        let applied = app.get("/api/v1/flags/scheduled?state=applied").await.ok().as_array().unwrap().len();
        let revisions = app.get("/api/v1/flags/prod/revisions").await.ok().as_array().unwrap().len();
        assert_eq!(revisions, 1 + applied, "one revision per applied change, none for a cancelled one");
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}
