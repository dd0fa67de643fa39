//! Governance over HTTP: evidence in, gate decisions out, approvals with segregation of duties
//! attacked from every side, policy tightening, Rego failures, break-glass. Every backend.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../signalbox-evidence/tests/fixtures");

fn junit(passed: usize, failed: usize) -> String {
    let mut cases = String::new();
    for i in 0..passed {
        cases.push_str(&format!("<testcase classname=\"checkout\" name=\"ok_{i}\" time=\"0.01\"/>"));
    }
    for i in 0..failed {
        cases.push_str(&format!(
            "<testcase classname=\"checkout\" name=\"broken_{i}\" time=\"0.01\"><failure message=\"assertion failed\">boom</failure></testcase>"
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><testsuites><testsuite name=\"checkout\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\">{cases}</testsuite></testsuites>",
        passed + failed
    )
}

fn lcov(total: u32, hit: u32) -> String {
    let mut out = String::from("TN:\nSF:src/lib.rs\n");
    for line in 1..=total {
        out.push_str(&format!("DA:{line},{}\n", u32::from(line <= hit)));
    }
    out.push_str(&format!("LF:{total}\nLH:{hit}\nend_of_record\n"));
    out
}

async fn upload(app: &TestApp, token: &str, query: &str, body: &[u8]) -> Reply {
    let resp = app
        .client
        .request(Method::POST, format!("{}/api/v1/evidence?{query}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body.to_vec())
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

async fn post_as(app: &TestApp, token: &str, path: &str, body: Value) -> Reply {
    app.request(Method::POST, path, Some(token), Some(body), &[]).await
}

fn rule<'a>(decision: &'a Value, name: &str) -> &'a Value {
    decision["rules"].as_array().unwrap().iter().find(|r| r["rule"] == name).unwrap_or_else(|| panic!("no rule {name} in {decision}"))
}

#[tokio::test]
async fn evidence_decides_gates_and_a_failing_gate_blocks_until_the_evidence_is_good() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.register("checkout-api", "1.4.0").await;

        // Real-tool files ingest and their facts come back.
        let nextest = std::fs::read(format!("{FIXTURES}/nextest-junit.xml")).unwrap();
        let r = upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=junit&file_name=junit.xml", &nextest).await;
        let facts = &r.ok()["facts"];
        assert_eq!(facts["kind"], "junit");
        assert!(facts["total"].as_u64().unwrap() > 0, "{facts}");
        let id = r.body["id"].as_str().unwrap().to_string();
        // The raw file is kept byte for byte, with its digest.
        let raw = app.client.get(format!("{}/api/v1/evidence/{id}/file", app.base)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(raw.bytes().await.unwrap().to_vec(), nextest);
        let sarif = std::fs::read(format!("{FIXTURES}/ruff-with-security-severity.sarif")).unwrap();
        let r = upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=sarif", &sarif).await;
        assert_eq!(r.ok()["facts"]["kind"], "sarif");

        // A malformed file is refused with where it is wrong, and nothing is stored.
        let before = app.get("/api/v1/evidence?artifact=checkout-api@1.4.0").await.ok().as_array().unwrap().len();
        let bad = upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=junit", b"<testsuite><testcase name=\"x\">").await;
        let p = bad.problem(422);
        assert_eq!(p["errors"][0]["field"], "file", "{p}");
        assert!(p["errors"][0]["message"].as_str().unwrap().contains("line"), "{p}");
        let hostile = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">]><testsuite>&lol;</testsuite>";
        upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=junit", hostile.as_bytes()).await.problem(422);
        upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=pdf", b"x").await.problem(422);
        let after = app.get("/api/v1/evidence?artifact=checkout-api@1.4.0").await.ok().as_array().unwrap().len();
        assert_eq!(before, after);

        // The organization's production guardrail.
        let policy = json!({"level": "organization", "environment": "prod", "policy": {"gates": {
            "tests_passed": true, "coverage_min_percent": 80.0, "max_cvss": 9.5,
            "required_documents": ["rollback_plan"]
        }}});
        app.put("/api/v1/policies", policy).await.ok();

        let created = app
            .post(
                "/api/v1/releases",
                json!({"name": "Checkout 1.4", "domain": "payments", "components": ["checkout-api@1.4.0"], "target_environments": ["prod"]}),
            )
            .await;
        let key = created.ok()["key"].as_str().unwrap().to_string();

        upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=junit", junit(40, 2).as_bytes()).await.ok();
        upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=lcov", lcov(100, 62).as_bytes()).await.ok();
        let gates = app.get(&format!("/api/v1/releases/{key}/gates?environment=prod")).await;
        let d = gates.ok();
        assert_eq!(d["passed"], false);
        assert_eq!(rule(d, "tests_passed")["outcome"], "fail");
        assert_eq!(rule(d, "tests_passed")["details"]["failed"], 2);
        assert!(rule(d, "tests_passed")["summary"].as_str().unwrap().contains("broken_0"), "{d}");
        assert_eq!(rule(d, "coverage_min")["outcome"], "fail");
        assert!(rule(d, "coverage_min")["summary"].as_str().unwrap().contains("62.0%"), "{d}");
        assert_eq!(rule(d, "required_documents")["outcome"], "fail");
        assert_eq!(rule(d, "license_allow")["outcome"], "not_applicable");
        // The real scan has a finding scored 9.8, at or above the 9.5 threshold set here.
        assert_eq!(rule(d, "max_cvss")["outcome"], "fail", "{d}");
        assert_eq!(rule(d, "max_cvss")["details"]["max_score"], 9.8);
        assert!(rule(d, "max_cvss")["summary"].as_str().unwrap().contains("S602 (9.8)"), "{d}");

        // The lifecycle refuses approval while gates fail, quoting the failing rules.
        let path = format!("/api/v1/releases/{key}");
        app.post(&format!("{path}/transitions"), json!({"to": "testing"})).await.ok();
        for t in app.get(&format!("{path}/tasks")).await.ok().as_array().unwrap().clone() {
            app.patch(&format!("{path}/tasks/{}", t["key"].as_str().unwrap()), json!({"status": "skipped"})).await;
        }
        app.patch(
            &path,
            json!({"documents": {"rollback_plan": "redeploy 1.3.9", "release_notes": "notes",
            "impact_assessment": "low", "backout_criteria": "errors > 1%"}}),
        )
        .await
        .ok();
        app.post(&format!("{path}/transitions"), json!({"to": "awaiting_approval"})).await.ok();
        let refused = app.post(&format!("{path}/transitions"), json!({"to": "approved", "environment": "prod"})).await;
        let reasons = refused.problem(409)["reasons"].to_string();
        assert!(reasons.contains("gate tests_passed fails for prod"), "{reasons}");
        assert!(reasons.contains("gate coverage_min fails for prod"), "{reasons}");
        assert!(!reasons.contains("required_documents"), "documents were added: {reasons}");

        // Better evidence: the newest upload of a kind supersedes the earlier one.
        upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=junit", junit(42, 0).as_bytes()).await.ok();
        upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=lcov", lcov(100, 85).as_bytes()).await.ok();
        let clean_scan = br#"{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "ruff"}}, "results": []}]}"#;
        upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=sarif", clean_scan).await.ok();
        let d = app.get(&format!("/api/v1/releases/{key}/gates?environment=prod")).await.ok().clone();
        assert_eq!(d["passed"], true, "{d}");
        app.post(&format!("{path}/transitions"), json!({"to": "approved", "environment": "prod"})).await.ok();

        let readiness = app.get(&format!("{path}/readiness?environment=prod")).await.ok().clone();
        assert_eq!(readiness["gates"]["passed"], true);
        assert!(readiness["risk"]["score"].as_u64().is_some());
        assert!(readiness["risk"]["factors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "customer_facing" && f["contribution"].as_f64() > Some(0.0)));
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn segregation_of_duties_refuses_every_way_around_it() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.register("checkout-api", "1.4.0").await;
        app.register("checkout-api", "1.4.1").await;
        let rita = app.user_with_role("rita", "release_manager").await;
        let alice = app.user_with_role("alice", "tech_lead").await;
        let tess = app.user_with_role("tess", "tech_lead").await;
        // tess also holds sre: two roles, still one person.
        app.post("/api/v1/role-bindings", json!({"user": "tess", "role": "sre", "scope": {"type": "organization"}})).await.ok();
        let sam = app.user_with_role("sam", "tech_lead").await;
        let pat = app.user_with_role("pat", "product_owner").await;
        let dev = app.user_with_role("dev", "developer").await;

        app.put(
            "/api/v1/policies",
            json!({"level": "organization", "environment": "prod", "policy": {"approvals": {
                "groups": [{"name": "tech", "roles": ["tech_lead"], "min": 1},
                           {"name": "business", "roles": ["product_owner", "sre"], "min": 1}],
                "min_total": 2
            }}}),
        )
        .await
        .ok();
        let change = app
            .post(
                "/api/v1/changes",
                json!({"kind": "pull_request", "reference": "7", "title": "feat: x", "author": "alice", "service": "checkout-api"}),
            )
            .await;
        let change_id = change.ok()["id"].as_str().unwrap().to_string();
        let created = post_as(
            &app,
            &rita,
            "/api/v1/releases",
            json!({"name": "Checkout", "domain": "payments", "components": ["checkout-api@1.4.0"], "changes": [change_id], "target_environments": ["prod"]}),
        )
        .await;
        let key = created.ok()["key"].as_str().unwrap().to_string();
        let path = format!("/api/v1/releases/{key}");
        let approvals = format!("{path}/approvals");
        let vote = |d: &str| json!({"environment": "prod", "decision": d, "comment": "ok"});

        // Voting before anyone requested approval.
        post_as(&app, &sam, &approvals, vote("approve")).await.problem(409);

        // rita requests approval by moving the release to awaiting_approval.
        post_as(&app, &rita, &format!("{path}/transitions"), json!({"to": "testing"})).await.ok();
        for t in app.get(&format!("{path}/tasks")).await.ok().as_array().unwrap().clone() {
            app.patch(&format!("{path}/tasks/{}", t["key"].as_str().unwrap()), json!({"status": "skipped"})).await;
        }
        app.patch(
            &path,
            json!({"documents": {"rollback_plan": "r", "release_notes": "n", "impact_assessment": "i", "backout_criteria": "b"}}),
        )
        .await
        .ok();
        post_as(&app, &rita, &format!("{path}/transitions"), json!({"to": "awaiting_approval"})).await.ok();

        // The requester cannot approve their own request.
        let p = post_as(&app, &rita, &approvals, vote("approve")).await;
        assert_eq!(p.problem(403)["type"], "https://signalbox.dev/problems/segregation-of-duties");
        assert!(p.body["detail"].as_str().unwrap().contains("requested this approval"), "{}", p.text);
        // A change author cannot approve.
        let p = post_as(&app, &alice, &approvals, vote("approve")).await;
        assert!(p.problem(403)["detail"].as_str().unwrap().contains("authored a change"), "{}", p.text);
        // A developer has no approve permission at all.
        post_as(&app, &dev, &approvals, vote("approve")).await.problem(403);

        // tess approves once; a second approval under her other role is refused.
        let s = post_as(&app, &tess, &approvals, vote("approve")).await;
        assert_eq!(s.ok()["state"], "pending");
        assert_eq!(s.body["distinct_approvers"], 1);
        let p = post_as(&app, &tess, &approvals, vote("approve")).await;
        assert!(p.problem(403)["detail"].as_str().unwrap().contains("counts once"), "{}", p.text);

        // sam (tech_lead) approves: tess moves to the business group, sam fills tech.
        let s = post_as(&app, &sam, &approvals, vote("approve")).await;
        assert_eq!(s.ok()["state"], "approved", "{}", s.text);

        // Content changes: every approval stops counting.
        app.post(&format!("{path}/components"), json!({"artifact": "checkout-api@1.4.1"})).await.ok();
        let s = app.get(&format!("{approvals}?environment=prod")).await;
        assert_eq!(s.ok()["state"], "pending");
        assert_eq!(s.body["distinct_approvers"], 0);
        assert!(s.body["votes"].as_array().unwrap().iter().all(|v| v["standing"] == "content_changed"), "{}", s.text);
        let refused = post_as(&app, &rita, &format!("{path}/transitions"), json!({"to": "approved", "environment": "prod"})).await;
        assert!(refused.problem(409)["reasons"].to_string().contains("approvals for prod are not complete"), "{}", refused.text);

        // A rejection needs a comment and stops the round until a new request.
        post_as(&app, &pat, &approvals, json!({"environment": "prod", "decision": "reject"})).await.problem(422);
        post_as(&app, &pat, &approvals, json!({"environment": "prod", "decision": "reject", "comment": "pen test pending"})).await.ok();
        let p = post_as(&app, &sam, &approvals, vote("approve")).await;
        assert_eq!(p.problem(409)["type"], "https://signalbox.dev/problems/approval-rejected");
        let again = post_as(&app, &rita, &format!("{path}/approval-requests"), json!({"environment": "prod"})).await;
        assert_eq!(again.ok()["state"], "pending");
        assert_eq!(again.body["round"], 2);
        post_as(&app, &sam, &approvals, vote("approve")).await.ok();
        let s = post_as(&app, &pat, &approvals, vote("approve")).await;
        assert_eq!(s.ok()["state"], "approved", "{}", s.text);
        post_as(&app, &rita, &format!("{path}/transitions"), json!({"to": "approved", "environment": "prod"})).await.ok();

        // Every decision is on the audit chain.
        let audit = app.get("/api/v1/audit?action=approval.reject").await;
        assert!(audit.ok().to_string().contains("pen test pending"), "{}", audit.text);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn policies_only_tighten_and_rego_errors_never_pass() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.register("checkout-api", "1.4.0").await;
        app.put("/api/v1/policies", json!({"level": "organization", "environment": "prod", "policy": {"gates": {"tests_passed": true, "coverage_min_percent": 80.0}}}))
            .await
            .ok();
        let loosen = app
            .put("/api/v1/policies", json!({"level": "domain", "target": "payments", "environment": "prod", "policy": {"gates": {"coverage_min_percent": 70.0}}}))
            .await;
        let p = loosen.problem(422);
        assert_eq!(p["errors"][0]["field"], "policy/gates/coverage_min_percent", "{p}");
        assert!(p["errors"][0]["message"].as_str().unwrap().contains("the organization guardrail"), "{p}");
        let off = app
            .put(
                "/api/v1/policies",
                json!({"level": "service", "target": "checkout-api", "environment": "prod", "policy": {"gates": {"tests_passed": false}}}),
            )
            .await;
        assert_eq!(off.problem(422)["errors"][0]["field"], "policy/gates/tests_passed");
        app.put(
            "/api/v1/policies",
            json!({"level": "domain", "target": "payments", "environment": "prod", "policy": {"gates": {"coverage_min_percent": 90.0}}}),
        )
        .await
        .ok();
        // A service policy is checked against the organization and its domain combined.
        let below_domain = app
            .put("/api/v1/policies", json!({"level": "service", "target": "checkout-api", "environment": "prod", "policy": {"gates": {"coverage_min_percent": 85.0}}}))
            .await;
        assert!(below_domain.problem(422)["errors"][0]["message"].as_str().unwrap().contains("domain"), "{}", below_domain.text);

        // Rego: syntax errors are refused at save; runtime errors and wrong shapes fail the gate.
        let broken = app
            .put(
                "/api/v1/policies",
                json!({"level": "service", "target": "checkout-api", "environment": "prod",
                "policy": {"gates": {"rego": [{"name": "broken", "module": "package x\ndeny contains msg if {"}]}}}),
            )
            .await;
        assert_eq!(broken.problem(422)["errors"][0]["field"], "policy/gates/rego/0/module");
        let module = "package signalbox.checkout\nimport rego.v1\ndeny contains msg if {\n  some c in input.components\n  c.service == \"checkout-api\"\n  count(input.signoffs) == 0\n  msg := sprintf(\"%s needs a sign-off\", [c.service])\n}\n";
        let shape = "package signalbox.shape\nimport rego.v1\ndeny := 42\n";
        app.put(
            "/api/v1/policies",
            json!({"level": "service", "target": "checkout-api", "environment": "prod",
            "policy": {"gates": {"rego": [{"name": "signoff", "module": module}, {"name": "shape", "module": shape}]}}}),
        )
        .await
        .ok();
        let created =
            app.post("/api/v1/releases", json!({"name": "R", "components": ["checkout-api@1.4.0"], "target_environments": ["prod"]})).await;
        let key = created.ok()["key"].as_str().unwrap().to_string();
        let d = app.get(&format!("/api/v1/releases/{key}/gates?environment=prod")).await.ok().clone();
        assert_eq!(rule(&d, "rego:signoff")["outcome"], "fail");
        assert_eq!(rule(&d, "rego:signoff")["summary"], "checkout-api needs a sign-off");
        assert_eq!(rule(&d, "rego:shape")["outcome"], "error", "{d}");
        assert!(d["failing"].as_array().unwrap().contains(&json!("rego:shape")));
        // The effective coverage minimum is the strictest level's.
        upload(&app, ADMIN_TOKEN, "artifact=checkout-api@1.4.0&kind=lcov", lcov(100, 85).as_bytes()).await.ok();
        let d = app.get(&format!("/api/v1/releases/{key}/gates?environment=prod")).await.ok().clone();
        assert_eq!(rule(&d, "coverage_min")["details"]["minimum_percent"], 90.0);
        assert_eq!(rule(&d, "coverage_min")["outcome"], "fail");

        // A sign-off satisfies the Rego rule, and the evidence document shows what Rego saw.
        let signoff = br#"{"by": "qa-lead", "role": "qa", "statement": "exploratory testing done"}"#;
        upload(&app, ADMIN_TOKEN, &format!("release={key}&kind=signoff"), signoff).await.ok();
        let d = app.get(&format!("/api/v1/releases/{key}/gates?environment=prod")).await.ok().clone();
        assert_eq!(rule(&d, "rego:signoff")["outcome"], "pass", "{d}");
        let doc = app.get(&format!("/api/v1/releases/{key}/evidence-document?environment=prod")).await.ok().clone();
        assert_eq!(doc["signoffs"][0]["by"], "qa-lead");
        assert_eq!(doc["components"][0]["coverage"]["line_percent"], 85.0);
    }
}

#[tokio::test]
async fn break_glass_needs_a_reason_a_second_person_and_leaves_a_review() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.register("checkout-api", "1.4.0").await;
        let rita = app.user_with_role("rita", "release_manager").await;
        let ivan = app.user_with_role("ivan", "incident_commander").await;
        let sre = app.user_with_role("sid", "sre").await;
        app.put("/api/v1/policies", json!({"level": "organization", "environment": "prod", "policy": {"gates": {"tests_passed": true}}}))
            .await
            .ok();
        let created = app
            .post("/api/v1/releases", json!({"name": "Hotfix", "template": "emergency-hotfix", "components": ["checkout-api@1.4.0"], "target_environments": ["prod"]}))
            .await;
        let key = created.ok()["key"].as_str().unwrap().to_string();
        let path = format!("/api/v1/releases/{key}");

        let p = post_as(&app, &rita, &format!("{path}/break-glass"), json!({"environment": "prod", "rules": ["tests_passed", "nonsense"]}))
            .await;
        let fields: Vec<String> =
            p.problem(422)["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect();
        assert_eq!(fields, vec!["reason", "incident", "rules/1"]);

        let bg = post_as(
            &app,
            &rita,
            &format!("{path}/break-glass"),
            json!({"environment": "prod", "rules": ["tests_passed"], "reason": "payments down, fix is verified by hand", "incident": "INC-2041"}),
        )
        .await;
        assert_eq!(bg.ok()["state"], "pending");
        let id = bg.body["id"].as_str().unwrap().to_string();
        // Not active yet: the gate still fails.
        let d = app.get(&format!("{path}/gates?environment=prod")).await.ok().clone();
        assert_eq!(rule(&d, "tests_passed")["outcome"], "fail");

        let confirm = format!("/api/v1/break-glass/{id}/confirm");
        let own = post_as(&app, &rita, &confirm, json!({})).await;
        assert!(own.problem(403)["detail"].as_str().unwrap().contains("segregation of duties"), "{}", own.text);
        let wrong_role = post_as(&app, &sre, &confirm, json!({})).await;
        assert!(wrong_role.problem(403)["detail"].as_str().unwrap().contains("incident_commander"), "{}", wrong_role.text);
        let ok = post_as(&app, &ivan, &confirm, json!({})).await;
        assert_eq!(ok.ok()["state"], "active");
        assert_eq!(ok.body["confirmed_by"], "ivan");
        post_as(&app, &ivan, &confirm, json!({})).await.problem(403);

        let d = app.get(&format!("{path}/gates?environment=prod")).await.ok().clone();
        assert_eq!(rule(&d, "tests_passed")["outcome"], "bypassed");
        assert_eq!(d["passed"], true);

        // The review task blocks closing; the audit trail announces the bypass.
        let release = app.get(&path).await.ok().clone();
        let review = release["tasks"].as_array().unwrap().iter().find(|t| t["blocks_close"] == true).expect("review task").clone();
        assert!(review["key"].as_str().unwrap().starts_with("break-glass-review-"));
        let audit = app.get("/api/v1/audit?action=break_glass.confirm").await;
        assert!(audit.ok().to_string().contains("BREAK-GLASS ACTIVE"), "{}", audit.text);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn deploying_into_a_freeze_is_refused_until_a_break_glass_covers_the_freeze() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.register("checkout-api", "1.4.0").await;
        let rita = app.user_with_role("rita", "release_manager").await;
        let ivan = app.user_with_role("ivan", "incident_commander").await;
        let now = chrono::Utc::now();
        let freeze = json!({
            "kind": "freeze", "title": "Incident freeze", "reason": "stabilising after INC-7", "owner": "rita",
            "scope": {"level": "organization"}, "zone": "UTC", "freeze_effect": "block_new",
            "timing": {"type": "one_off", "start": (now - chrono::Duration::hours(1)).to_rfc3339(), "end": (now + chrono::Duration::hours(6)).to_rfc3339()}
        });
        app.post("/api/v1/calendar/entries", freeze).await.ok();
        let created = app
            .post("/api/v1/releases", json!({"name": "Hotfix", "template": "emergency-hotfix", "components": ["checkout-api@1.4.0"], "target_environments": ["prod"],
                "documents": {"rollback_plan": "r", "release_notes": "n", "impact_assessment": "i", "backout_criteria": "b"}}))
            .await;
        let key = created.ok()["key"].as_str().unwrap().to_string();
        let path = format!("/api/v1/releases/{key}");
        for to in ["testing", "awaiting_approval", "approved"] {
            for t in app.get(&format!("{path}/tasks")).await.ok().as_array().unwrap().clone() {
                app.patch(&format!("{path}/tasks/{}", t["key"].as_str().unwrap()), json!({"status": "skipped"})).await;
            }
            app.post(&format!("{path}/transitions"), json!({"to": to})).await.ok();
        }
        let refused = app.post(&format!("{path}/transitions"), json!({"to": "deploying", "environment": "prod"})).await;
        let reasons = refused.problem(409)["reasons"].to_string();
        assert!(reasons.contains("Incident freeze"), "{reasons}");

        let bg = post_as(
            &app,
            &rita,
            &format!("{path}/break-glass"),
            json!({"environment": "prod", "freeze": true, "reason": "the fix is the way out of the incident", "incident": "INC-7"}),
        )
        .await;
        let id = bg.ok()["id"].as_str().unwrap().to_string();
        // Requested but not confirmed: still refused.
        app.post(&format!("{path}/transitions"), json!({"to": "deploying", "environment": "prod"})).await.problem(409);
        post_as(&app, &ivan, &format!("/api/v1/break-glass/{id}/confirm"), json!({})).await.ok();
        let moved = app.post(&format!("{path}/transitions"), json!({"to": "deploying", "environment": "prod"})).await;
        assert_eq!(moved.ok()["state"], "deploying", "{}", moved.text);
    }
}
