//! Promotion and progressive delivery over HTTP (issue 6): promotion paths validated field by
//! field, refusals with every reason, canaries on the simulated fleet driven by pushed metrics
//! (healthy, failing, without data), manual controls with their permissions, the command and
//! webhook drivers failing clearly, asynchronous driver reports, recorded deployments, the
//! environment matrix, configuration parity and auto-promotion. Every backend.
//!
//! The rollout controller runs inside the test server (250 ms tick), so rollouts advance by
//! themselves: tests poll the deployment until it reaches a phase, never assert timings.

use crate::helpers::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SERVICE: &str = "checkout-api";
const WAIT: Duration = Duration::from_secs(30);
/// A Standard Webhooks secret; paths name it as `env:SIGNALBOX_TEST_WEBHOOK_SECRET`.
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The pushed error rate, measured every second, three times. Several values may arrive in one
/// interval, so the conditions quantify over them.
fn error_rate(no_data: &str, count: u32) -> Value {
    json!({
        "name": "error-rate", "provider": {"type": "pushed"}, "interval_seconds": 1, "count": count,
        "success_condition": "all(result, # < 0.01)", "failure_condition": "any(result, # >= 0.01)", "no_data": no_data
    })
}

fn simulated(fleet: &str) -> Value {
    json!({"type": "simulated", "fleet": fleet})
}

fn all_at_once(env: &str, driver: Value) -> Value {
    json!({"environment": env, "strategy": {"type": "all_at_once"}, "driver": driver})
}

/// set_weight 20, analysis of the error rate, set_weight 100.
fn canary(env: &str, driver: Value, metric: Value) -> Value {
    json!({
        "environment": env,
        "strategy": {"type": "canary", "steps": [{"set_weight": 20}, {"analysis": {"metrics": ["error-rate"]}}, {"set_weight": 100}]},
        "driver": driver,
        "metrics": [metric]
    })
}

async fn set_path(app: &TestApp, stages: Vec<Value>) -> Value {
    let r = app.put("/api/v1/promotion-paths", json!({"name": "checkout", "stages": stages})).await;
    r.ok().clone()
}

/// Registers `checkout-api@version` and creates a release of it for `targets`, approved when
/// asked (no policies: the emergency template's tasks are skipped). Returns (key, digest).
async fn release(app: &TestApp, version: &str, targets: &[&str], approve: bool) -> (String, String) {
    let artifact = app.register(SERVICE, version).await;
    let digest = artifact["digest"].as_str().unwrap().to_string();
    let created = app
        .post(
            "/api/v1/releases",
            json!({"name": format!("Checkout {version}"), "template": "emergency-hotfix", "components": [format!("{SERVICE}@{version}")],
                "target_environments": targets,
                "documents": {"rollback_plan": "r", "release_notes": "n", "impact_assessment": "i", "backout_criteria": "b"}}),
        )
        .await;
    let key = created.ok()["key"].as_str().unwrap().to_string();
    if approve {
        let path = format!("/api/v1/releases/{key}");
        for to in ["testing", "awaiting_approval", "approved"] {
            for t in app.get(&format!("{path}/tasks")).await.ok().as_array().unwrap().clone() {
                app.patch(&format!("{path}/tasks/{}", t["key"].as_str().unwrap()), json!({"status": "skipped"})).await;
            }
            app.post(&format!("{path}/transitions"), json!({"to": to})).await.ok();
        }
    }
    (key, digest)
}

async fn promote(app: &TestApp, key: &str, env: &str) -> Reply {
    app.post(&format!("/api/v1/releases/{key}/promote"), json!({"environment": env, "reason": "test"})).await
}

/// Promotes and returns the id of the one deployment created.
async fn promote_ok(app: &TestApp, key: &str, env: &str) -> String {
    let r = promote(app, key, env).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let deployments = r.body["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1, "{}", r.text);
    deployments[0]["id"].as_str().unwrap().to_string()
}

async fn deployment(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/v1/deployments/{id}")).await.ok().clone()
}

/// Polls the deployment until `done` holds (at most [`WAIT`]).
async fn wait_until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let d = deployment(app, id).await;
        if done(&d) {
            return d;
        }
        assert!(started.elapsed() < WAIT, "deployment {id} never reached {what}: {d:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_phase(app: &TestApp, id: &str, phase: &str) -> Value {
    wait_until(app, id, phase, |d| d["rollout"]["phase"] == phase).await
}

fn phase(d: &Value) -> &str {
    d["rollout"]["phase"].as_str().unwrap()
}

fn finished(d: &Value) -> bool {
    matches!(phase(d), "succeeded" | "rolled_back" | "aborted" | "failed")
}

/// Pushes `value` for the error rate every 200 ms until the rollout finishes or pauses.
async fn push_until_settled(app: &TestApp, id: &str, value: f64) -> Value {
    let started = Instant::now();
    loop {
        let d = deployment(app, id).await;
        if finished(&d) || phase(&d) == "paused" {
            return d;
        }
        assert!(started.elapsed() < WAIT, "deployment {id} never settled: {d:#}");
        let r = app.post(&format!("/api/v1/deployments/{id}/metrics"), json!({"values": [{"metric": "error-rate", "value": value}]})).await;
        // The rollout may finish between the read above and this push: a finished deployment
        // refuses values, and the next pass returns it.
        if r.status.as_u16() == 409 {
            assert_eq!(r.problem(409)["type"], "https://signalbox.dev/problems/deployment-finished", "{}", r.text);
        } else {
            r.ok();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn control(app: &TestApp, token: &str, id: &str, body: Value) -> Reply {
    app.request(Method::POST, &format!("/api/v1/deployments/{id}/control"), Some(token), Some(body), &[]).await
}

/// The actions a simulated fleet received: (action, idempotency key).
fn fleet_actions(app: &TestApp, fleet: &str) -> Vec<(String, String)> {
    app.app.controller.fleets.fleet(fleet).actions().iter().map(|a| (a.action.name().to_string(), a.idempotency_key.clone())).collect()
}

fn reasons(problem: &Value) -> Vec<String> {
    problem["reasons"].as_array().unwrap_or_else(|| panic!("no reasons in {problem}")).iter().map(|r| r.as_str().unwrap().into()).collect()
}

#[track_caller]
fn refused(reply: &Reply) -> Vec<String> {
    let p = reply.problem(409);
    assert_eq!(p["type"], "https://signalbox.dev/problems/promotion-refused", "{p}");
    reasons(p)
}

fn field(reply: &Reply) -> String {
    reply.problem(422)["errors"][0]["field"].as_str().unwrap().to_string()
}

async fn audit_count(app: &TestApp, action: &str) -> usize {
    app.get(&format!("/api/v1/audit?action={action}&limit=500")).await.ok()["items"].as_array().unwrap().len()
}

fn history_states(release: &Value) -> Vec<String> {
    release["history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap().to_string()).collect()
}

fn matrix_cell(matrix: &Value, service: &str, env: &str) -> Value {
    let envs = matrix["environments"].as_array().unwrap();
    let i = envs.iter().position(|e| e == env).unwrap_or_else(|| panic!("no {env} in {matrix}"));
    let row = matrix["rows"].as_array().unwrap().iter().find(|r| r["service"] == service).unwrap_or_else(|| panic!("no {service}"));
    row["cells"][i].clone()
}

#[tokio::test]
async fn paths_are_validated_field_by_field_and_replaced_in_place() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let put = |stages: Value| app.put("/api/v1/promotion-paths", json!({"name": "checkout", "stages": stages}));

        let r = put(json!([all_at_once("qa", simulated("f"))])).await;
        assert_eq!(field(&r), "stages[0].environment", "{}", r.text);
        let r = put(json!([all_at_once("dev", simulated("f")), all_at_once("dev", simulated("g"))])).await;
        assert_eq!(field(&r), "stages[1].environment", "{}", r.text);
        assert!(r.text.contains("twice"), "{}", r.text);
        // The strategy names a metric the stage does not define.
        let mut unknown = canary("dev", simulated("f"), error_rate("fail", 3));
        unknown["metrics"] = json!([]);
        let r = put(json!([unknown])).await;
        assert_eq!(field(&r), "stages[0].strategy.steps[1].analysis.metrics", "{}", r.text);
        assert!(r.text.contains("error-rate"), "{}", r.text);
        let mut smoke = all_at_once("dev", simulated("f"));
        smoke["smoke"] = json!(["homepage"]);
        assert_eq!(field(&put(json!([smoke])).await), "stages[0].smoke");
        // Soak time on the first stage has nothing to soak in.
        let mut soak = all_at_once("dev", simulated("f"));
        soak["required_soak_seconds"] = json!(60);
        assert_eq!(field(&put(json!([soak])).await), "stages[0].required_soak_seconds");
        // A webhook secret is a reference to a variable, never the secret itself.
        let hook = |secret: &str| json!({"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": secret});
        let r = put(json!([all_at_once("dev", hook(WEBHOOK_SECRET))])).await;
        assert_eq!(field(&r), "stages[0].driver.secret", "{}", r.text);
        assert!(!r.text.contains("MfKQ9r8G"), "the secret is not echoed: {}", r.text);
        assert_eq!(field(&put(json!([all_at_once("dev", hook("env:NOT A NAME"))])).await), "stages[0].driver.secret");
        let mut bad_url = hook("env:X");
        bad_url["url"] = json!("ftp://x");
        assert_eq!(field(&put(json!([all_at_once("dev", bad_url)])).await), "stages[0].driver.url");
        assert_eq!(field(&put(json!([all_at_once("dev", json!({"type": "simulated", "fleet": " "}))])).await), "stages[0].driver.fleet");
        // A condition that does not parse names the metric's field.
        let mut bad = error_rate("fail", 3);
        bad["success_condition"] = json!("result <");
        let r = put(json!([canary("dev", simulated("f"), bad)])).await;
        assert_eq!(field(&r), "stages[0].metrics[0].success_condition", "{}", r.text);
        let r = put(json!([])).await;
        assert_eq!(field(&r), "stages");
        assert!(app.get("/api/v1/promotion-paths").await.ok().as_array().unwrap().is_empty(), "nothing stored by refusals");

        // Stored, listed, then replaced in place: same id, new content.
        let first = set_path(&app, vec![all_at_once("dev", simulated("f")), canary("prod", simulated("g"), error_rate("fail", 3))]).await;
        let id = first["id"].as_str().unwrap().to_string();
        assert_eq!(first["stages"][1]["environment"], "prod");
        assert!(first["stages"][1]["environment_id"].as_str().unwrap().starts_with("env_"), "{first}");
        let listed = app.get("/api/v1/promotion-paths").await.ok().clone();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["id"], id.as_str());
        let second = set_path(&app, vec![all_at_once("dev", simulated("f")), all_at_once("staging", simulated("s"))]).await;
        assert_eq!(second["id"], id.as_str());
        let listed = app.get("/api/v1/promotion-paths").await.ok().clone();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["stages"][1]["environment"], "staging");
        assert_eq!(audit_count(&app, "promotion_path.create").await, 1);
        assert_eq!(audit_count(&app, "promotion_path.update").await, 1);
    }
}

#[tokio::test]
async fn a_refused_promotion_lists_every_reason_and_writes_nothing() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let mut waits = json!({
            "environment": "dev", "driver": simulated("checkout-dev"),
            "strategy": {"type": "canary", "steps": [{"set_weight": 50}, {"pause": {}}]}
        });
        waits["auto_promote"] = json!(false);
        let mut soaked = all_at_once("staging", simulated("checkout-staging"));
        soaked["required_soak_seconds"] = json!(3600);
        set_path(&app, vec![waits, soaked, all_at_once("prod", simulated("checkout-prod"))]).await;
        let (key, _) = release(&app, "1.4.0", &["dev", "staging", "prod"], false).await;

        let audit_before = app.verify_audit().await["entries"].as_u64().unwrap();
        let r = refused(&promote(&app, &key, "test").await);
        assert!(r.iter().any(|x| x.contains("test is not on checkout-api's path checkout (dev → staging → prod)")), "{r:?}");
        let r = refused(&promote(&app, &key, "staging").await);
        assert!(r.iter().any(|x| x.contains("has not been deployed to dev yet")), "{r:?}");
        // Every reason at once: not upstream yet, and not approved for its last environment.
        let r = refused(&promote(&app, &key, "prod").await);
        assert!(r.iter().any(|x| x.contains("has not been deployed to staging yet")), "{r:?}");
        assert!(r.iter().any(|x| x.contains("must be approved first")), "{r:?}");
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(field(&promote(&app, &key, "nowhere").await), "environment");
        // Nothing was written.
        assert!(app.get("/api/v1/deployments").await.ok().as_array().unwrap().is_empty());
        assert_eq!(app.verify_audit().await["entries"].as_u64().unwrap(), audit_before);

        // Into dev; the canary stops at its pause step and a second promotion is refused.
        let id = promote_ok(&app, &key, "dev").await;
        let d = wait_phase(&app, &id, "paused").await;
        assert_eq!(d["rollout"]["pause"]["reason"], "step");
        assert_eq!(d["trigger"], "manual");
        let r = refused(&promote(&app, &key, "dev").await);
        assert!(r.iter().any(|x| x.contains("already has a paused rollout in dev")), "{r:?}");
        // Not succeeded in dev yet: staging is refused for that.
        let r = refused(&promote(&app, &key, "staging").await);
        assert!(r.iter().any(|x| x.contains("is paused in dev, not succeeded")), "{r:?}");
        control(&app, ADMIN_TOKEN, &id, json!({"action": "resume"})).await.ok();
        wait_phase(&app, &id, "succeeded").await;

        // Succeeded, but not soaked long enough.
        let r = refused(&promote(&app, &key, "staging").await);
        assert!(r.iter().any(|x| x.contains("has soaked") && x.contains("requires 3600s")), "{r:?}");

        // A freeze in force.
        let now = chrono::Utc::now();
        let freeze = json!({
            "kind": "freeze", "title": "Incident freeze", "reason": "stabilising after INC-7", "owner": "rita",
            "scope": {"level": "organization"}, "zone": "UTC", "freeze_effect": "block_new",
            "timing": {"type": "one_off", "start": (now - chrono::Duration::hours(1)).to_rfc3339(), "end": (now + chrono::Duration::hours(6)).to_rfc3339()}
        });
        app.post("/api/v1/calendar/entries", freeze).await.ok();
        let deployments_before = app.get("/api/v1/deployments").await.ok().as_array().unwrap().len();
        let r = refused(&promote(&app, &key, "dev").await);
        assert!(r.iter().any(|x| x.contains("Incident freeze")), "{r:?}");
        assert_eq!(app.get("/api/v1/deployments").await.ok().as_array().unwrap().len(), deployments_before);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn a_healthy_canary_promotes_through_dev_to_prod_and_releases_the_release() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        set_path(
            &app,
            vec![all_at_once("dev", simulated("checkout-dev")), canary("prod", simulated("checkout-prod"), error_rate("fail", 3))],
        )
        .await;
        let (key, digest) = release(&app, "1.4.0", &["dev", "prod"], true).await;

        let dev = promote_ok(&app, &key, "dev").await;
        let d = wait_phase(&app, &dev, "succeeded").await;
        assert_eq!(d["rollout"]["weight"], 100);
        assert_eq!(d["artifact"]["digest"], digest.as_str());
        assert_eq!(app.get(&format!("/api/v1/releases/{key}")).await.ok()["state"], "approved", "dev is not the last target");

        let prod = promote_ok(&app, &key, "prod").await;
        assert_eq!(app.get(&format!("/api/v1/releases/{key}")).await.ok()["state"], "deploying");
        let d = push_until_settled(&app, &prod, 0.002).await;
        assert_eq!(phase(&d), "succeeded", "{d:#}");
        assert_eq!(d["rollout"]["weight"], 100);
        assert_eq!(d["in_flight"], false);
        // The analysis step kept its measurements, each with its numbers and condition.
        let analysis =
            d["rollout"]["history"].as_array().unwrap().iter().find_map(|s| s["analysis"].as_object().cloned()).expect("analysis");
        let run = &analysis["metrics"][0];
        assert_eq!(run["assessment"]["phase"], "successful", "{run:#}");
        assert_eq!(run["measurements"].as_array().unwrap().len(), 3, "{run:#}");
        let m = &run["measurements"][0];
        assert_eq!(m["outcome"], "successful", "{m}");
        assert!(m["explanation"].as_str().unwrap().contains("0.002"), "{m}");

        let rel = app.get(&format!("/api/v1/releases/{key}")).await.ok().clone();
        assert_eq!(rel["state"], "released", "{rel:#}");
        let states = history_states(&rel);
        assert_eq!(states[states.len() - 4..], ["approved", "deploying", "verifying", "released"], "{states:?}");

        // The fleet saw each action once, with distinct keys, in order.
        let actions = fleet_actions(&app, "checkout-prod");
        let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["deploy", "set_weight", "set_weight", "finalize"], "{actions:?}");
        let keys: HashSet<&String> = actions.iter().map(|(_, k)| k).collect();
        assert_eq!(keys.len(), actions.len(), "{actions:?}");
        let fleet = app.app.controller.fleets.fleet("checkout-prod").state();
        assert_eq!(fleet.stable.map(|s| s.digest), Some(digest.clone()));
        let dev_actions = fleet_actions(&app, "checkout-dev");
        assert_eq!(dev_actions.first().map(|a| a.0.as_str()), Some("deploy"));
        assert_eq!(dev_actions.last().map(|a| a.0.as_str()), Some("finalize"));

        // The matrix shows the version in both environments.
        let matrix = app.get("/api/v1/environments/matrix").await.ok().clone();
        for env in ["dev", "prod"] {
            let cell = matrix_cell(&matrix, SERVICE, env);
            assert_eq!(cell["running"]["version"], "1.4.0", "{env}: {cell}");
            assert_eq!(cell["running"]["digest"], digest.as_str());
            assert_eq!(cell["status"], "succeeded");
            assert_eq!(cell["deployed_by"], "admin");
        }
        assert!(matrix_cell(&matrix, SERVICE, "staging").is_null());

        let listed = app.get(&format!("/api/v1/deployments?release={key}")).await.ok().clone();
        assert_eq!(listed.as_array().unwrap().len(), 2);
        let by_key = app.get(&format!("/api/v1/deployments/{}", d["key"].as_str().unwrap())).await.ok().clone();
        assert_eq!(by_key["id"], prod.as_str());
        for action in ["deployment.create", "deployment.advance", "job.fire", "deployment.metrics.push"] {
            assert!(audit_count(&app, action).await > 0, "{action} is audited");
        }
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn an_error_rate_above_one_percent_rolls_back_and_says_why() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        // The stage links a flag: its kill switch goes off when the rollout rolls back.
        let flags = json!({"flags": {"new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
                "new-cart": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}});
        app.put("/api/v1/flags/prod", flags).await.ok();
        let mut stage = canary("prod", simulated("checkout-prod"), error_rate("fail", 3));
        stage["kill_switch_flags"] = json!(["new-checkout"]);
        set_path(&app, vec![stage]).await;
        let (key, _) = release(&app, "1.4.0", &["prod"], true).await;
        // The release links a flag of its own (not content: allowed after approval).
        let r = app.patch(&format!("/api/v1/releases/{key}"), json!({"kill_switch_flags": ["new cart"]})).await;
        assert_eq!(field(&r), "kill_switch_flags/0");
        app.patch(&format!("/api/v1/releases/{key}"), json!({"kill_switch_flags": ["new-cart", "new-checkout"]})).await.ok();
        let id = promote_ok(&app, &key, "prod").await;
        assert_eq!(deployment(&app, &id).await["kill_switch_flags"], json!(["new-checkout", "new-cart"]));
        let exported = app.get("/api/v1/flags/prod/export").await.ok().clone();
        assert_eq!(exported["flags"]["new-checkout"]["state"], "ENABLED", "{exported:#}");
        let d = push_until_settled(&app, &id, 0.05).await;
        let d = if finished(&d) { d } else { wait_until(&app, &id, "the end", finished).await };
        assert_eq!(phase(&d), "rolled_back", "{d:#}");
        let r = &d["rollout"];
        for t in ["detected_at", "rollback_requested_at", "restored_at", "finished_at"] {
            assert!(r[t].is_string(), "{t} is set: {r:#}");
        }
        assert!(r["detected_at"].as_str() <= r["rollback_requested_at"].as_str());
        assert_eq!(r["weight"], 0);
        let failure = r["failure"].as_str().unwrap();
        assert!(failure.contains("error-rate"), "{failure}");
        assert!(failure.contains("0.05"), "the measured value: {failure}");
        assert!(failure.contains("any(result, # >= 0.01)"), "the condition: {failure}");
        let exported = app.get("/api/v1/flags/prod/export").await.ok().clone();
        assert_eq!(exported["flags"]["new-checkout"]["state"], "DISABLED", "the kill switch went off: {exported:#}");
        assert_eq!(exported["flags"]["new-cart"]["state"], "DISABLED", "the release's kill switch went off too: {exported:#}");
        assert_eq!(audit_count(&app, "flag_set.update").await, 1, "one audited write disables both flags");

        let rel = app.get(&format!("/api/v1/releases/{key}")).await.ok().clone();
        assert_eq!(rel["state"], "rolled_back", "{rel:#}");
        let actions = fleet_actions(&app, "checkout-prod");
        let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["deploy", "set_weight", "rollback"], "{actions:?}");
        let matrix = app.get("/api/v1/environments/matrix").await.ok().clone();
        let cell = matrix_cell(&matrix, SERVICE, "prod");
        assert_eq!(cell["status"], "rolled_back");
        assert!(cell["running"].is_null(), "nothing ran before: {cell}");
        // A rolled-back release is not promoted again, nor retried, until it is re-planned.
        let r = refused(&promote(&app, &key, "prod").await);
        assert!(r.iter().any(|x| x.contains("rolled_back")), "{r:?}");
        let r = control(&app, ADMIN_TOKEN, &id, json!({"action": "retry"})).await;
        assert!(r.problem(409)["detail"].as_str().unwrap().contains("re-plan"), "{}", r.text);
    }
}

#[tokio::test]
async fn a_metric_without_data_follows_its_no_data_rule() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        // Inconclusive: the rollout pauses for a person; resume accepts and moves on.
        set_path(&app, vec![canary("dev", simulated("checkout-dev"), error_rate("inconclusive", 3))]).await;
        let (key, _) = release(&app, "1.4.0", &["dev", "prod"], false).await;
        let id = promote_ok(&app, &key, "dev").await;
        let d = wait_phase(&app, &id, "paused").await;
        assert_eq!(d["rollout"]["pause"]["reason"], "inconclusive", "{d:#}");
        let message = d["rollout"]["pause"]["message"].as_str().unwrap();
        assert!(message.contains("no data") && message.contains("no_data: inconclusive"), "{message}");
        assert_eq!(d["rollout"]["weight"], 20);
        control(&app, ADMIN_TOKEN, &id, json!({"action": "resume"})).await.ok();
        let d = wait_phase(&app, &id, "succeeded").await;
        assert!(d["notes"].to_string().contains("resume by admin"), "{}", d["notes"]);

        // Fail: rolled back.
        set_path(&app, vec![canary("dev", simulated("checkout-dev"), error_rate("fail", 3))]).await;
        let (key, _) = release(&app, "1.5.0", &["dev", "prod"], false).await;
        let id = promote_ok(&app, &key, "dev").await;
        let d = wait_until(&app, &id, "the end", finished).await;
        assert_eq!(phase(&d), "rolled_back", "{d:#}");
        assert!(d["rollout"]["failure"].as_str().unwrap().contains("no_data: fail"), "{d:#}");
        // What ran before (1.4.0) is what the rollback returned to.
        assert_eq!(d["previous"]["version"], "1.4.0");
        let fleet = app.app.controller.fleets.fleet("checkout-dev").state();
        assert_eq!(fleet.stable.map(|s| s.version).as_deref(), Some("1.4.0"));
        assert!(fleet.canary.is_none());
    }
}

#[tokio::test]
async fn manual_controls_need_reasons_and_permissions() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let developer = app.user_with_role("dora", "developer").await;
        let commander = app.user_with_role("ivan", "incident_commander").await;
        // A long analysis (no data passes) keeps the rollout progressing.
        set_path(&app, vec![canary("dev", simulated("checkout-dev"), error_rate("pass", 60))]).await;
        let (key, _) = release(&app, "1.4.0", &["dev", "prod"], false).await;
        let id = promote_ok(&app, &key, "dev").await;
        wait_until(&app, &id, "analysis", |d| d["rollout"]["analysis"].is_object()).await;

        control(&app, &developer, &id, json!({"action": "pause"})).await.problem(403);
        let paused = control(&app, ADMIN_TOKEN, &id, json!({"action": "pause", "reason": "looking at dashboards"})).await;
        assert_eq!(paused.ok()["rollout"]["phase"], "paused");
        assert_eq!(paused.body["rollout"]["pause"]["reason"], "manual");
        let again = control(&app, ADMIN_TOKEN, &id, json!({"action": "pause"})).await;
        assert_eq!(again.problem(409)["type"], "https://signalbox.dev/problems/rollout-control-refused");
        app.request(Method::POST, &format!("/api/v1/deployments/{id}/control"), Some(ADMIN_TOKEN), Some(json!({"action": "explode"})), &[])
            .await
            .problem(422);
        let resumed = control(&app, ADMIN_TOKEN, &id, json!({"action": "resume"})).await;
        assert_eq!(resumed.ok()["rollout"]["phase"], "progressing");
        control(&app, ADMIN_TOKEN, &id, json!({"action": "retry"})).await.problem(409);

        // Abort needs a reason and ends aborted after the rollback.
        let r = control(&app, ADMIN_TOKEN, &id, json!({"action": "abort"})).await;
        assert_eq!(field(&r), "reason");
        control(&app, ADMIN_TOKEN, &id, json!({"action": "abort", "reason": "wrong build"})).await.ok();
        let d = wait_until(&app, &id, "the end", finished).await;
        assert_eq!(phase(&d), "aborted", "{d:#}");
        assert!(d["rollout"]["failure"].as_str().unwrap().contains("aborted by admin: wrong build"), "{d:#}");
        assert!(fleet_actions(&app, "checkout-dev").iter().any(|(a, _)| a == "rollback"));
        control(&app, ADMIN_TOKEN, &id, json!({"action": "abort", "reason": "again"})).await.problem(409);

        // Retry starts generation 2 with new keys.
        let retried = control(&app, ADMIN_TOKEN, &id, json!({"action": "retry", "reason": "new attempt"})).await;
        assert_eq!(retried.ok()["rollout"]["generation"], 2);
        wait_until(&app, &id, "analysis", |d| d["rollout"]["analysis"].is_object() && d["rollout"]["generation"] == 2).await;

        // Promote-now skips analysis: a reason and override_rollout are required.
        let r = control(&app, ADMIN_TOKEN, &id, json!({"action": "promote_now"})).await;
        assert_eq!(field(&r), "reason");
        let r = control(&app, &commander, &id, json!({"action": "promote_now", "reason": "hotfix"})).await;
        assert!(r.problem(403)["detail"].as_str().unwrap().contains("override_rollout"), "{}", r.text);
        control(&app, &developer, &id, json!({"action": "promote_now", "reason": "hotfix"})).await.problem(403);
        control(&app, ADMIN_TOKEN, &id, json!({"action": "promote_now", "reason": "verified by hand"})).await.ok();
        let d = wait_phase(&app, &id, "succeeded").await;
        let history = d["rollout"]["history"].to_string();
        assert!(history.contains("skipped (promote now)"), "{history}");
        let actions = fleet_actions(&app, "checkout-dev");
        let second: Vec<&str> = actions.iter().filter(|(_, k)| k.contains("/2/")).map(|(a, _)| a.as_str()).collect();
        assert_eq!(second, ["deploy", "set_weight", "set_weight", "finalize"], "{actions:?}");
        let keys: HashSet<&String> = actions.iter().map(|(_, k)| k).collect();
        assert_eq!(keys.len(), actions.len(), "no key sent twice: {actions:?}");
        let audit = app.get(&format!("/api/v1/audit?action=deployment.control&subject_id={id}&limit=100")).await;
        let text = audit.ok().to_string();
        assert!(text.contains("verified by hand") && text.contains("wrong build"), "{text}");
    }
}

fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn the_command_driver_fails_clearly_on_a_wrong_digest_a_timeout_and_an_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let other = format!("sha256:{}", hex_of("something else"));
    let mismatch = script(dir.path(), "mismatch.sh", &format!("echo \"deploying $SIGNALBOX_VERSION\"\necho deployed_digest={other}"));
    let slow = script(dir.path(), "slow.sh", "if [ \"$SIGNALBOX_ACTION\" = deploy ]; then exec sleep 10; fi\necho done");
    let exit3 =
        script(dir.path(), "exit3.sh", "if [ \"$SIGNALBOX_ACTION\" = deploy ]; then echo 'kubectl: cluster unreachable'; exit 3; fi");
    let ok = script(dir.path(), "ok.sh", "echo \"deployed_digest=$SIGNALBOX_DIGEST\"");
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let (key, digest) = release(&app, "1.4.0", &["dev", "prod"], false).await;
        let run = |argv: &str| {
            let app = &app;
            let key = key.clone();
            let argv = argv.to_string();
            async move {
                set_path(app, vec![all_at_once("dev", json!({"type": "command", "argv": [argv], "timeout_seconds": 1}))]).await;
                let id = promote_ok(app, &key, "dev").await;
                wait_until(app, &id, "the end", finished).await
            }
        };

        let d = run(&mismatch).await;
        assert_eq!(phase(&d), "rolled_back", "{d:#}");
        let first = d["id"].as_str().unwrap().to_string();
        let failure = d["rollout"]["failure"].as_str().unwrap();
        assert!(failure.contains(&other) && failure.contains(&digest), "names both digests: {failure}");

        let d = run(&slow).await;
        assert_eq!(phase(&d), "rolled_back", "{d:#}");
        let failure = d["rollout"]["failure"].as_str().unwrap();
        assert!(failure.contains("did not finish within 1000 ms"), "{failure}");

        let d = run(&exit3).await;
        assert_eq!(phase(&d), "rolled_back", "{d:#}");
        let failure = d["rollout"]["failure"].as_str().unwrap();
        assert!(failure.contains("exited with status 3") && failure.contains("cluster unreachable"), "{failure}");

        let d = run(&ok).await;
        assert_eq!(phase(&d), "succeeded", "{d:#}");
        let deploy = d["rollout"]["history"][0].to_string();
        assert!(deploy.contains("deploy done"), "{deploy}");
        // An older rollout is not retried over the one that replaced it.
        let r = control(&app, ADMIN_TOKEN, &first, json!({"action": "retry"})).await;
        let detail = r.problem(409)["detail"].as_str().unwrap().to_string();
        assert!(detail.contains("has since been replaced in dev by") && detail.contains(d["key"].as_str().unwrap()), "{detail}");
    }
}

/// A local deploy receiver: answers `status` and logs (action, idempotency key) per request.
#[derive(Clone)]
struct Receiver {
    status: u16,
    log: Arc<Mutex<Vec<(String, String)>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let action = event["subject"]["content"]["action"].as_str().unwrap_or("?").to_string();
    let key = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(headers.get("webhook-signature").is_some_and(|s| s.to_str().unwrap().starts_with("v1,")));
    r.log.lock().unwrap().push((action, key));
    StatusCode::from_u16(r.status).unwrap()
}

async fn start_receiver(status: u16) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(Receiver { status, log: log.clone() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/hook"), log)
}

fn webhook(url: &str) -> Value {
    json!({"type": "webhook", "url": url, "secret": "env:SIGNALBOX_TEST_WEBHOOK_SECRET", "timeout_seconds": 5, "max_attempts": 2, "backoff_ms": 10})
}

#[tokio::test]
async fn the_webhook_driver_retries_waits_for_reports_and_refuses_malformed_ones() {
    std::env::set_var("SIGNALBOX_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let (key, digest) = release(&app, "1.4.0", &["dev", "prod"], false).await;

        // A receiver that always fails: the deploy fails after its retries, the rollback is
        // sent too and fails until a person must act. The release (dev is its last target)
        // failed: it was not rolled back.
        let (url, log) = start_receiver(500).await;
        set_path(&app, vec![all_at_once("dev", webhook(&url))]).await;
        let (broken, _) = release(&app, "1.3.0", &["dev"], true).await;
        let id = promote_ok(&app, &broken, "dev").await;
        let d = wait_until(&app, &id, "the end", finished).await;
        assert_eq!(phase(&d), "failed", "{d:#}");
        let failure = d["rollout"]["failure"].as_str().unwrap();
        assert!(failure.contains("deploy failed") && failure.contains("status 500"), "{failure}");
        assert!(failure.contains("the rollback failed 5 times"), "{failure}");
        let sent = log.lock().unwrap().clone();
        let deploys: Vec<&(String, String)> = sent.iter().filter(|(a, _)| a == "deploy").collect();
        let rollbacks: Vec<&(String, String)> = sent.iter().filter(|(a, _)| a == "rollback").collect();
        assert_eq!(deploys.len(), 2, "max_attempts: {sent:?}");
        assert_eq!(rollbacks.len(), 10, "5 rollback attempts of 2 deliveries: {sent:?}");
        assert!(deploys.iter().all(|(_, k)| k == &deploys[0].1), "retries keep the key: {sent:?}");
        assert!(rollbacks.iter().all(|(_, k)| k == &rollbacks[0].1), "retries keep the key: {sent:?}");
        assert!(d["rollout"]["rollback_requested_at"].is_string() && d["rollout"]["restored_at"].is_null(), "{d:#}");
        let rel = app.get(&format!("/api/v1/releases/{broken}")).await.ok().clone();
        assert_eq!(history_states(&rel)[history_states(&rel).len() - 2..], ["deploying", "failed"], "{rel:#}");

        // A receiver that accepts: the rollout waits for the report of each action.
        let (url, log) = start_receiver(202).await;
        set_path(&app, vec![all_at_once("dev", webhook(&url))]).await;
        let id = promote_ok(&app, &key, "dev").await;
        let accepted = |d: &Value| d["in_flight"] == false && d["rollout"]["action"]["accepted"] == true;
        let d = wait_until(&app, &id, "an accepted deploy", accepted).await;
        assert_eq!(d["rollout"]["action"]["action"], "deploy");
        assert_eq!(phase(&d), "progressing");
        let deploy_key = d["rollout"]["action"]["key"].as_str().unwrap().to_string();
        let report_path = format!("/api/v1/deployments/{id}/report");
        let report = |body: Value| app.post(&report_path, body);

        let r = report(json!({"idempotency_key": deploy_key, "status": "done"})).await;
        assert_eq!(field(&r), "status");
        let r = report(json!({"idempotency_key": " ", "status": "completed"})).await;
        assert_eq!(field(&r), "idempotency_key");
        let r = report(json!({"status": "completed"})).await;
        r.problem(422);
        let r = report(json!({"idempotency_key": format!("{id}/1/9/finalize"), "status": "completed"})).await;
        let p = r.problem(409);
        assert_eq!(p["type"], "https://signalbox.dev/problems/report-refused");
        assert!(p["detail"].as_str().unwrap().contains(&deploy_key), "{p}");
        assert_eq!(phase(&deployment(&app, &id).await), "progressing", "malformed reports change nothing");

        report(json!({"idempotency_key": deploy_key, "status": "completed", "deployed_digest": digest})).await.ok();
        let d =
            wait_until(&app, &id, "an accepted finalize", |d| accepted(d) && d["rollout"]["action"]["action"] == "finalize" || finished(d))
                .await;
        assert_eq!(d["rollout"]["action"]["action"], "finalize", "{d:#}");
        let finalize_key = d["rollout"]["action"]["key"].as_str().unwrap().to_string();
        assert_ne!(finalize_key, deploy_key);
        report(json!({"idempotency_key": finalize_key, "status": "completed"})).await.ok();
        let d = wait_phase(&app, &id, "succeeded").await;
        assert!(d["notes"].to_string().contains("driver report for"), "{}", d["notes"]);
        // A receiver repeating its reports (late duplicates) changes and writes nothing.
        for k in [&finalize_key, &deploy_key] {
            let r = report(json!({"idempotency_key": k, "status": "completed"})).await;
            assert_eq!(r.ok()["rollout"]["phase"], "succeeded");
        }
        assert_eq!(deployment(&app, &id).await["notes"], d["notes"]);
        let r = report(json!({"idempotency_key": format!("{id}/1/7/set_weight"), "status": "completed"})).await;
        assert_eq!(r.problem(409)["type"], "https://signalbox.dev/problems/report-refused");
        let sent: Vec<String> = log.lock().unwrap().iter().map(|(a, _)| a.clone()).collect();
        assert_eq!(sent, ["deploy", "finalize"]);

        // A report naming another digest fails the step: never a rebuild.
        let (key2, _) = release(&app, "1.5.0", &["dev", "prod"], false).await;
        let id = promote_ok(&app, &key2, "dev").await;
        let d = wait_until(&app, &id, "an accepted deploy", accepted).await;
        let k = d["rollout"]["action"]["key"].as_str().unwrap().to_string();
        let other = format!("sha256:{}", hex_of("rebuilt"));
        let report_path = format!("/api/v1/deployments/{id}/report");
        app.post(&report_path, json!({"idempotency_key": k, "status": "completed", "deployed_digest": other})).await.ok();
        let d = wait_until(&app, &id, "an accepted rollback", |d| d["rollout"]["action"]["action"] == "rollback" && accepted(d)).await;
        assert!(d["rollout"]["failure"].as_str().unwrap().contains(&other), "{d:#}");
        let k = d["rollout"]["action"]["key"].as_str().unwrap().to_string();
        app.post(&report_path, json!({"idempotency_key": k, "status": "completed"})).await.ok();
        assert_eq!(phase(&wait_until(&app, &id, "the end", finished).await), "rolled_back");
    }
}

#[tokio::test]
async fn a_deployment_recorded_by_external_ci_checks_the_digest() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        set_path(&app, vec![all_at_once("dev", json!({"type": "record"})), all_at_once("prod", json!({"type": "record"}))]).await;
        let (key, digest) = release(&app, "1.4.0", &["dev", "prod"], false).await;
        let record = |env: &str, digest: &str| {
            app.post("/api/v1/deployments/record", json!({"release": key, "environment": env, "digest": digest, "reason": "pipeline #42"}))
        };
        let rebuilt = format!("sha256:{}", hex_of("rebuilt"));
        let r = record("dev", &rebuilt).await;
        assert_eq!(field(&r), "digest");
        assert!(r.text.contains(&rebuilt) && r.text.contains(&digest), "{}", r.text);
        let r = app
            .post("/api/v1/deployments/record", json!({"release": key, "environment": "dev", "digest": digest, "status": "maybe"}))
            .await;
        assert_eq!(field(&r), "status");
        // The same checks as a promotion: order of the path.
        let r = refused(&record("prod", &digest).await);
        assert!(r.iter().any(|x| x.contains("has not been deployed to dev yet")), "{r:?}");
        assert!(app.get("/api/v1/deployments").await.ok().as_array().unwrap().is_empty());

        let r = record("dev", &digest).await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text);
        let d = &r.body["deployments"][0];
        assert_eq!(d["trigger"], "recorded");
        assert_eq!(d["rollout"]["phase"], "succeeded");
        let id = d["id"].as_str().unwrap().to_string();
        // The controller finds nothing to do afterwards.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let d = deployment(&app, &id).await;
        assert_eq!(phase(&d), "succeeded");
        assert_eq!(d["reason"], "pipeline #42");
        let matrix = app.get("/api/v1/environments/matrix").await.ok().clone();
        let cell = matrix_cell(&matrix, SERVICE, "dev");
        assert_eq!(cell["running"]["version"], "1.4.0", "{cell}");
        assert_eq!(cell["status"], "succeeded");
        assert_eq!(audit_count(&app, "deployment.record").await, 1);
    }
}

#[tokio::test]
async fn parity_reports_drift_between_environment_configs() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.patch(
            "/api/v1/environments/staging",
            json!({"config": {"POOL": "10", "FEATURE_X": "on", "DB_PASSWORD": "secret://staging/db", "URL": "https://s", "SAME": "1"}}),
        )
        .await
        .ok();
        app.patch(
            "/api/v1/environments/prod",
            json!({"config": {"POOL": "20", "DB_PASSWORD": "secret://prod/db", "NEW": "1", "URL": "https://p", "SAME": "1"}}),
        )
        .await
        .ok();
        let r = app.get("/api/v1/environments/parity?from=staging&to=prod&ignore=URL").await.ok().clone();
        let found: Vec<(String, String)> = r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["key"].as_str().unwrap().to_string(), f["finding"].as_str().unwrap().to_string()))
            .collect();
        let expected: Vec<(String, String)> = [("FEATURE_X", "missing"), ("NEW", "extra"), ("POOL", "different")]
            .iter()
            .map(|(k, f)| (k.to_string(), f.to_string()))
            .collect();
        assert_eq!(found, expected, "{r:#}");
        assert_eq!(r["matching"], 3, "SAME, both DB_PASSWORD references, URL ignored: {r:#}");
        assert_eq!(r["ignored"], json!(["URL"]));
        let pool = r["findings"].as_array().unwrap().iter().find(|f| f["key"] == "POOL").unwrap();
        assert_eq!((pool["from_value"].as_str(), pool["to_value"].as_str()), (Some("10"), Some("20")));
        assert!(!r.to_string().contains("secret://staging"), "secret references are not shown: {r}");
        let without = app.get("/api/v1/environments/parity?from=staging&to=prod").await.ok().clone();
        assert!(without["findings"].to_string().contains("\"URL\""), "{without}");
        app.get("/api/v1/environments/parity?from=staging&to=nowhere").await.problem(404);
        app.get("/api/v1/environments/parity?from=staging").await.problem(400);
    }
}

#[tokio::test]
async fn auto_promotion_moves_a_soaked_release_on_by_itself() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let mut prod = all_at_once("prod", simulated("checkout-prod"));
        prod["auto_promote"] = json!(true);
        prod["required_soak_seconds"] = json!(1);
        set_path(&app, vec![all_at_once("dev", simulated("checkout-dev")), prod]).await;

        // Not approved for prod: the auto-promotion is refused once, and says why.
        let (blocked, _) = release(&app, "1.3.0", &["dev", "prod"], false).await;
        let id = promote_ok(&app, &blocked, "dev").await;
        wait_phase(&app, &id, "succeeded").await;
        let started = Instant::now();
        loop {
            let fired = app.get("/api/v1/audit?action=job.fire&limit=500").await.ok().to_string();
            if fired.contains("not promoted") {
                assert!(fired.contains("must be approved first"), "{fired}");
                break;
            }
            assert!(started.elapsed() < WAIT, "the auto-promotion never ran: {fired}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(app.get("/api/v1/deployments?environment=prod").await.ok().as_array().unwrap().is_empty());

        // Approved: prod gets a deployment by itself after the soak.
        let (key, _) = release(&app, "1.4.0", &["dev", "prod"], true).await;
        let id = promote_ok(&app, &key, "dev").await;
        wait_phase(&app, &id, "succeeded").await;
        let started = Instant::now();
        let auto = loop {
            let list = app.get(&format!("/api/v1/deployments?environment=prod&release={key}")).await.ok().clone();
            if let Some(d) = list.as_array().unwrap().first() {
                break d.clone();
            }
            assert!(started.elapsed() < WAIT, "no auto-promotion to prod");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(auto["trigger"], "auto");
        assert_eq!(auto["created_by"], "system");
        let d = wait_phase(&app, auto["id"].as_str().unwrap(), "succeeded").await;
        assert_eq!(d["artifact"]["version"], "1.4.0");
        let rel = app.get(&format!("/api/v1/releases/{key}")).await.ok().clone();
        assert_eq!(rel["state"], "released", "{rel:#}");
        assert_eq!(app.get("/api/v1/deployments?environment=prod").await.ok().as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn deployer_roles_are_enforced_and_finished_deployments_take_no_metrics() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let manager = app.user_with_role("rita", "release_manager").await;
        let sre = app.user_with_role("sam", "sre").await;
        // dev accepts deployments from SREs only.
        app.patch("/api/v1/environments/dev", json!({"protection": {"protected": false, "deployer_roles": ["sre"]}})).await.ok();
        let stages = vec![all_at_once("dev", simulated("checkout-dev")), all_at_once("prod", simulated("checkout-prod"))];

        // Turning auto-promotion on into dev needs a dev deployer too.
        let mut auto = stages.clone();
        auto[0]["auto_promote"] = json!(true);
        let r = app
            .request(Method::PUT, "/api/v1/promotion-paths", Some(&manager), Some(json!({"name": "checkout", "stages": auto})), &[])
            .await;
        let detail = r.problem(403)["detail"].as_str().unwrap().to_string();
        assert!(detail.contains("stages[0].auto_promote") && detail.contains("deployer_roles"), "{detail}");
        set_path(&app, stages).await;

        let (key, digest) = release(&app, "1.4.0", &["dev", "prod"], false).await;
        let body = json!({"environment": "dev", "reason": "test"});
        let r = app.request(Method::POST, &format!("/api/v1/releases/{key}/promote"), Some(&manager), Some(body.clone()), &[]).await;
        let detail = r.problem(403)["detail"].as_str().unwrap().to_string();
        assert!(detail.contains("only from the roles sre") && detail.contains("rita holds release_manager"), "{detail}");
        assert!(app.get("/api/v1/deployments").await.ok().as_array().unwrap().is_empty());
        // Recording a pipeline's deployment is deploying too.
        let record = json!({"release": key, "environment": "dev", "digest": digest});
        app.request(Method::POST, "/api/v1/deployments/record", Some(&manager), Some(record), &[]).await.problem(403);

        let r = app.request(Method::POST, &format!("/api/v1/releases/{key}/promote"), Some(&sre), Some(body), &[]).await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text);
        let id = r.body["deployments"][0]["id"].as_str().unwrap().to_string();
        wait_phase(&app, &id, "succeeded").await;

        // Metrics for a finished deployment are refused, and nothing is stored.
        let pushes_before = audit_count(&app, "deployment.metrics.push").await;
        let r = app.post(&format!("/api/v1/deployments/{id}/metrics"), json!({"values": [{"metric": "error-rate", "value": 0.5}]})).await;
        let p = r.problem(409);
        assert_eq!(p["type"], "https://signalbox.dev/problems/deployment-finished", "{p}");
        assert!(p["detail"].as_str().unwrap().contains("succeeded"), "{p}");
        assert_eq!(audit_count(&app, "deployment.metrics.push").await, pushes_before);

        // A succeeded rollout cannot be retried; and nothing else can be pushed to it.
        let retry = control(&app, &sre, &id, json!({"action": "retry", "reason": "again"})).await;
        assert_eq!(retry.problem(409)["type"], "https://signalbox.dev/problems/rollout-control-refused", "{}", retry.text);
        assert_eq!(deployment(&app, &id).await["rollout"]["generation"], 1);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn a_retry_passes_the_freeze_check_a_promotion_passes() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        set_path(&app, vec![canary("dev", simulated("checkout-dev"), error_rate("fail", 2))]).await;
        let (key, _) = release(&app, "1.4.0", &["dev", "prod"], false).await;
        let id = promote_ok(&app, &key, "dev").await;
        let d = push_until_settled(&app, &id, 0.2).await;
        assert_eq!(phase(&d), "rolled_back", "{d:#}");

        let now = chrono::Utc::now();
        let freeze = json!({
            "kind": "freeze", "title": "Quarter-end freeze", "reason": "finance close", "owner": "rita",
            "scope": {"level": "organization"}, "zone": "UTC", "freeze_effect": "block_new",
            "timing": {"type": "one_off", "start": (now - chrono::Duration::hours(1)).to_rfc3339(), "end": (now + chrono::Duration::hours(6)).to_rfc3339()}
        });
        let entry = app.post("/api/v1/calendar/entries", freeze).await.ok().clone();
        let r = refused(&control(&app, ADMIN_TOKEN, &id, json!({"action": "retry", "reason": "fixed config"})).await);
        assert!(r.iter().any(|x| x.contains("Quarter-end freeze")), "{r:?}");
        assert_eq!(deployment(&app, &id).await["rollout"]["generation"], 1, "nothing written");

        // Once the freeze is gone the retry goes through as generation 2.
        let entry_id = entry["id"].as_str().unwrap();
        app.request(Method::DELETE, &format!("/api/v1/calendar/entries/{entry_id}"), Some(ADMIN_TOKEN), None, &[]).await.ok();
        let retried = control(&app, ADMIN_TOKEN, &id, json!({"action": "retry", "reason": "fixed config"})).await;
        assert_eq!(retried.ok()["rollout"]["generation"], 2, "{}", retried.text);
    }
}

#[tokio::test]
async fn a_pipeline_recording_a_release_of_several_services_must_name_the_service() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.post("/api/v1/services", json!({"name": "ledger", "team": "checkout-squad", "criticality": "internal"})).await.ok();
        app.put("/api/v1/promotion-paths", json!({"name": "org", "stages": [all_at_once("dev", json!({"type": "record"}))]})).await.ok();
        let a = app.register(SERVICE, "1.4.0").await;
        app.register("ledger", "2.0.0").await;
        let created = app
            .post(
                "/api/v1/releases",
                json!({"name": "Two", "template": "emergency-hotfix", "components": [format!("{SERVICE}@1.4.0"), "ledger@2.0.0"],
                    "target_environments": ["dev", "prod"]}),
            )
            .await;
        let key = created.ok()["key"].as_str().unwrap().to_string();
        let digest = a["digest"].as_str().unwrap();
        let r = app.post("/api/v1/deployments/record", json!({"release": key, "environment": "dev", "digest": digest})).await;
        assert_eq!(field(&r), "service");
        assert!(r.text.contains("checkout-api") && r.text.contains("ledger"), "{}", r.text);
        let r = app
            .post("/api/v1/deployments/record", json!({"release": key, "environment": "dev", "digest": digest, "service": SERVICE}))
            .await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.text);
        assert_eq!(r.body["deployments"].as_array().unwrap().len(), 1);
    }
}
