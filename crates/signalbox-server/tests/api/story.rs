//! The story: build an organization, walk a release through its whole lifecycle, and check
//! that every step was audited on a chain that verifies. Runs on every backend.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn a_release_walks_its_lifecycle_and_everything_is_audited() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.post("/api/v1/services", json!({"name": "ledger", "team": "checkout-squad"})).await.ok();
        let a1 = app.register("checkout-api", "1.4.0").await;
        let a2 = app.register("ledger", "2.0.0").await;
        assert_eq!(a1["version"], "1.4.0");

        // A dependency release that must be released first.
        let dep = app
            .post(
                "/api/v1/releases",
                json!({"name": "Ledger schema", "domain": "payments", "components": ["ledger@2.0.0"], "target_environments": ["prod"]}),
            )
            .await;
        let dep_key = dep.ok()["key"].as_str().unwrap().to_string();

        let change = app.post("/api/v1/changes", json!({"kind": "pull_request", "reference": "42", "title": "feat: retries", "change_type": "feat", "author": "bruno", "service": "checkout-api"})).await;
        let change_id = change.ok()["id"].as_str().unwrap().to_string();

        let created = app
            .post(
                "/api/v1/releases",
                json!({
                    "name": "Checkout 1.4", "domain": "payments", "template": "standard",
                    "components": [a1["id"]], "changes": [change_id],
                    "target_environments": ["staging", "prod"], "depends_on": [dep_key],
                    "documents": {"rollback_plan": "redeploy 1.3.9"}
                }),
            )
            .await;
        let release = created.ok().clone();
        let key = release["key"].as_str().unwrap().to_string();
        assert_eq!(release["state"], "planning");
        assert_eq!(release["components"][0]["digest"], a1["digest"]);
        assert!(release["tasks"].as_array().unwrap().len() >= 4, "template tasks instantiated");
        let path = format!("/api/v1/releases/{key}");

        // Pin the second service too; the content digest changes with the content.
        let before_digest = release["content_digest"].clone();
        let with_ledger = app.post(&format!("{path}/components"), json!({"artifact": a2["id"]})).await;
        assert_ne!(with_ledger.ok()["content_digest"], before_digest);

        let step = |to: &'static str| {
            let app = &app;
            let path = path.clone();
            async move { app.post(&format!("{path}/transitions"), json!({"to": to, "reason": format!("moving to {to}")})).await }
        };
        step("testing").await.ok();

        // Refused with every reason: release notes missing, regression tests not done.
        let refused = step("awaiting_approval").await;
        let problem = refused.problem(409);
        assert_eq!(problem["type"], "https://signalbox.dev/problems/transition-refused");
        let reasons = problem["reasons"].as_array().unwrap();
        assert!(reasons.iter().any(|r| r.as_str().unwrap().contains("release notes")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.as_str().unwrap().contains("Regression tests")), "{reasons:?}");

        // A task cannot finish before its predecessors.
        let blocked = app.patch(&format!("{path}/tasks/tech-lead-approval"), json!({"status": "done"})).await;
        assert!(blocked.problem(409)["detail"].as_str().unwrap().contains("regression-tests"));

        app.patch(&path, json!({"documents": {"rollback_plan": "redeploy 1.3.9", "release_notes": "Retries."}})).await.ok();
        app.patch(&format!("{path}/tasks/regression-tests"), json!({"status": "done"})).await.ok();
        step("awaiting_approval").await.ok();
        app.patch(&format!("{path}/tasks/tech-lead-approval"), json!({"status": "done"})).await.ok();
        step("approved").await.ok();

        // Content is locked after approval.
        app.patch(&path, json!({"components": []})).await.problem(409);

        // Deploying waits for the dependency.
        let waiting = step("deploying").await;
        let reasons = waiting.problem(409)["reasons"].clone();
        assert_eq!(reasons, json!([format!("dependency release {dep_key} is not released yet (it is planning)")]));

        // Release the dependency (all the way), then deploy.
        let dep_path = format!("/api/v1/releases/{dep_key}");
        for (task, to) in [
            (None, "testing"),
            (Some("regression-tests"), "awaiting_approval"),
            (Some("tech-lead-approval"), "approved"),
            (None, "deploying"),
            (Some("deploy-prod"), "verifying"),
            (None, "released"),
        ] {
            if to == "awaiting_approval" {
                app.patch(&dep_path, json!({"documents": {"rollback_plan": "x", "release_notes": "y"}})).await.ok();
            }
            if let Some(task) = task {
                if task == "deploy-prod" {
                    app.patch(&format!("{dep_path}/tasks/wait-for-window"), json!({"status": "done"})).await.ok();
                }
                app.patch(&format!("{dep_path}/tasks/{task}"), json!({"status": "done"})).await.ok();
            }
            app.post(&format!("{dep_path}/transitions"), json!({"to": to})).await.ok();
        }
        step("deploying").await.ok();
        app.patch(&format!("{path}/tasks/wait-for-window"), json!({"status": "done"})).await.ok();
        app.patch(&format!("{path}/tasks/deploy-prod"), json!({"status": "done"})).await.ok();
        step("verifying").await.ok();
        step("released").await.ok();

        let closing = step("closed").await;
        assert_eq!(closing.problem(409)["reasons"], json!(["a release cannot be closed before its post-release review is recorded"]));
        app.put(
            &format!("{path}/review"),
            json!({"summary": "Went fine.", "action_items": [{"description": "tune alert", "owner": "dara", "due": "2026-12-01"}]}),
        )
        .await
        .ok();
        let closed = step("closed").await;
        assert_eq!(closed.ok()["state"], "closed");
        let history: Vec<&str> = closed.body["history"].as_array().unwrap().iter().map(|h| h["to"].as_str().unwrap()).collect();
        assert_eq!(history, ["planning", "testing", "awaiting_approval", "approved", "deploying", "verifying", "released", "closed"]);

        // Final: nothing leaves closed.
        step("planning").await.problem(409);

        // The audit trail recorded every transition with its reason, and verifies.
        let audit =
            app.get(&format!("/api/v1/audit?subject_id={}&action=release.transition&limit=100", release["id"].as_str().unwrap())).await;
        let entries = audit.ok()["items"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 7, "{:?}", backend);
        assert_eq!(entries[0]["reason"], "moving to testing");
        assert_eq!(entries[0]["before"]["state"], "planning");
        assert_eq!(entries[0]["after"]["state"], "testing");
        assert_eq!(entries[0]["actor"], "admin");
        assert!(entries[0]["request_id"].as_str().is_some_and(|r| !r.is_empty()));
        let report = app.verify_audit().await;
        assert_eq!(report["valid"], true, "{report}");
        assert!(report["entries"].as_u64().unwrap() > 20);

        // The export is the same chain, line by line, and verifies offline.
        let export = app.get("/api/v1/audit/export").await;
        assert_eq!(export.status.as_u16(), 200);
        let offline = signalbox_app::audit::verify_jsonl(&export.text, true).unwrap();
        assert!(offline.is_valid(), "{:?}", offline.problems);
        assert_eq!(offline.entries as u64, report["entries"].as_u64().unwrap());
    }
}
