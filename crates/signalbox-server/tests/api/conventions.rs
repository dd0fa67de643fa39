//! API conventions: problem responses for bad input, ETag/If-Match, Idempotency-Key, cursor
//! pagination, concurrency on one release, health and metrics.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn bad_input_gets_a_problem_that_names_the_field() {
    let app = spawn_app(Backend::Sqlite).await;
    app.seed_catalog().await;

    let malformed = app.raw(Method::POST, "/api/v1/domains", "application/json", b"{\"name\": ").await;
    assert_eq!(malformed.problem(400)["type"], "https://signalbox.dev/problems/malformed-json");

    let wrong_type = app.post("/api/v1/environments", json!({"name": "qa", "tier": "test", "position": "first"})).await;
    let p = wrong_type.problem(422);
    assert_eq!(p["errors"][0]["field"], "position", "{p}");

    let unknown = app.post("/api/v1/domains", json!({"name": "x", "colour": "red"})).await;
    assert!(unknown.problem(422)["detail"].as_str().unwrap().contains("colour"));

    let missing = app.post("/api/v1/domains", json!({})).await;
    assert!(missing.problem(422)["detail"].as_str().unwrap().contains("name"));

    let bad_name = app.post("/api/v1/domains", json!({"name": "Payments Team"})).await;
    assert_eq!(bad_name.problem(422)["errors"][0]["field"], "name");

    let oversized = app
        .raw(
            Method::POST,
            "/api/v1/domains",
            "application/json",
            format!("{{\"name\":\"a\",\"description\":\"{}\"}}", "x".repeat(70 * 1024)).as_bytes(),
        )
        .await;
    oversized.problem(413);

    let not_json = app.raw(Method::POST, "/api/v1/domains", "text/plain", b"name=x").await;
    not_json.problem(415);

    let bad_digest = app.post("/api/v1/artifacts", json!({"service": "checkout-api", "version": "1.0.0", "digest": "sha256:1234"})).await;
    let p = bad_digest.problem(422);
    assert_eq!(p["errors"][0]["field"], "digest");
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("64 hex"));

    let bad_version = app
        .post("/api/v1/artifacts", json!({"service": "checkout-api", "version": "v1.2", "digest": format!("sha256:{}", hex_of("a"))}))
        .await;
    let p = bad_version.problem(422);
    assert_eq!(p["errors"][0]["field"], "version");

    let both = app.post("/api/v1/artifacts", json!({"service": "checkout-api", "version": "x", "digest": "y"})).await;
    assert_eq!(both.problem(422)["errors"].as_array().unwrap().len(), 2, "all field errors at once");

    let nul = app.post("/api/v1/domains", json!({"name": "ok", "description": "a\u{0}b"})).await;
    assert_eq!(nul.problem(422)["errors"][0]["field"], "description");

    let bad_query = app.get("/api/v1/releases?limit=lots").await;
    assert_eq!(bad_query.problem(400)["errors"][0]["field"], "limit");
    app.get("/api/v1/releases?state=shipped").await.problem(400);
    app.get("/api/v1/releases?cursor=garbage").await.problem(422);
    app.get("/api/v1/nowhere").await.problem(404);
    app.request(Method::DELETE, "/api/v1/domains", Some(ADMIN_TOKEN), None, &[]).await.problem(405);
    app.get("/api/v1/releases/R-999").await.problem(404);
}

#[tokio::test]
async fn artifacts_are_immutable() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let digest = format!("sha256:{}", hex_of("one"));
        let first = app.post("/api/v1/artifacts", json!({"service": "checkout-api", "version": "1.0.0", "digest": digest})).await;
        assert_eq!(first.status.as_u16(), 201);
        let again = app.post("/api/v1/artifacts", json!({"service": "checkout-api", "version": "1.0.0", "digest": digest})).await;
        assert_eq!(again.status.as_u16(), 200, "same digest again is a harmless retry");
        assert_eq!(again.body["id"], first.body["id"]);
        let other = app
            .post(
                "/api/v1/artifacts",
                json!({"service": "checkout-api", "version": "1.0.0", "digest": format!("sha256:{}", hex_of("two"))}),
            )
            .await;
        let p = other.problem(409);
        assert_eq!(p["type"], "https://signalbox.dev/problems/artifact-immutable");
        assert!(p["detail"].as_str().unwrap().contains(&digest));
        let dup = app.post("/api/v1/domains", json!({"name": "payments"})).await;
        dup.problem(409);
    }
}

#[tokio::test]
async fn stale_if_match_is_412_and_nothing_is_written() {
    let app = spawn_app(Backend::Sqlite).await;
    app.seed_catalog().await;
    let svc = app.get("/api/v1/services/checkout-api").await;
    let etag = svc.etag().expect("etag");
    let updated = app
        .request(
            Method::PATCH,
            "/api/v1/services/checkout-api",
            Some(ADMIN_TOKEN),
            Some(json!({"owners": ["a@example.com"]})),
            &[("if-match", &etag)],
        )
        .await;
    updated.ok();
    assert_ne!(updated.etag().unwrap(), etag);
    let stale = app
        .request(
            Method::PATCH,
            "/api/v1/services/checkout-api",
            Some(ADMIN_TOKEN),
            Some(json!({"owners": ["b@example.com"]})),
            &[("if-match", &etag)],
        )
        .await;
    stale.problem(412);
    assert_eq!(app.get("/api/v1/services/checkout-api").await.body["owners"], json!(["a@example.com"]));
    let garbage =
        app.request(Method::PATCH, "/api/v1/services/checkout-api", Some(ADMIN_TOKEN), Some(json!({})), &[("if-match", "yesterday")]).await;
    garbage.problem(400);
}

#[tokio::test]
async fn idempotency_key_replays_do_nothing_twice() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        let head_before = app.store.audit_head().await.unwrap().unwrap().0;
        let body = json!({"name": "Idempotent release", "domain": "payments"});
        let first =
            app.request(Method::POST, "/api/v1/releases", Some(ADMIN_TOKEN), Some(body.clone()), &[("idempotency-key", "k-1")]).await;
        assert_eq!(first.status.as_u16(), 201);
        // Retries, some concurrent.
        let mut handles = Vec::new();
        for _ in 0..8 {
            let client = app.client.clone();
            let url = format!("{}/api/v1/releases", app.base);
            let body = body.clone();
            handles.push(tokio::spawn(async move {
                let r = client.post(url).bearer_auth(ADMIN_TOKEN).header("idempotency-key", "k-1").json(&body).send().await.unwrap();
                (r.status().as_u16(), r.headers().get("idempotency-replayed").is_some(), r.json::<serde_json::Value>().await.unwrap())
            }));
        }
        for h in handles {
            let (status, replayed, value) = h.await.unwrap();
            assert_eq!(status, 201);
            assert!(replayed);
            assert_eq!(value["id"], first.body["id"]);
        }
        let list = app.get("/api/v1/releases").await;
        assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "one release, not nine");
        assert_eq!(app.store.audit_head().await.unwrap().unwrap().0, head_before + 1, "one audit entry");
        let reused = app
            .request(Method::POST, "/api/v1/releases", Some(ADMIN_TOKEN), Some(json!({"name": "Other"})), &[("idempotency-key", "k-1")])
            .await;
        assert_eq!(reused.problem(422)["type"], "https://signalbox.dev/problems/idempotency-key-reused");
    }
}

#[tokio::test]
async fn parallel_transitions_of_one_release_have_exactly_one_winner() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.register("checkout-api", "1.0.0").await;
        let r = app.post("/api/v1/releases", json!({"name": "Race", "components": ["checkout-api@1.0.0"]})).await;
        let key = r.ok()["key"].as_str().unwrap().to_string();
        let etag = r.etag().unwrap();
        for with_if_match in [true, false] {
            let target = if with_if_match { "testing" } else { "planning" };
            let current_etag = if with_if_match { etag.clone() } else { String::new() };
            let mut handles = Vec::new();
            for _ in 0..16 {
                let client = app.client.clone();
                let url = format!("{}/api/v1/releases/{key}/transitions", app.base);
                let tag = current_etag.clone();
                handles.push(tokio::spawn(async move {
                    let mut req = client.post(url).bearer_auth(ADMIN_TOKEN).json(&json!({"to": target}));
                    if !tag.is_empty() {
                        req = req.header("if-match", tag);
                    }
                    req.send().await.unwrap().status().as_u16()
                }));
            }
            let mut statuses = Vec::new();
            for h in handles {
                statuses.push(h.await.unwrap());
            }
            let winners = statuses.iter().filter(|s| **s == 200).count();
            assert_eq!(winners, 1, "{backend:?} {target}: {statuses:?}");
            assert!(statuses.iter().all(|s| [200, 409, 412].contains(s)), "{statuses:?}");
        }
        let release = app.get(&format!("/api/v1/releases/{key}")).await;
        assert_eq!(release.body["history"].as_array().unwrap().len(), 3);
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

/// Concurrent writes to one release that read it optimistically (SQLite reads outside the write
/// lock, then re-runs a stale or refused attempt under it): with `If-Match` and a distinct
/// `Idempotency-Key` each, exactly one wins and is the only write; a replay of the winner's key
/// returns its stored response and changes nothing, a loser's key stored nothing and its replay is
/// refused again. With one shared key, every concurrent request answers with the one response.
#[tokio::test]
async fn concurrent_conditional_idempotent_writes_have_one_winner_and_replay_exactly() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        for version in ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5", "1.0.6", "1.0.7", "2.0.0"] {
            app.register("checkout-api", version).await;
        }
        let created = app.post("/api/v1/releases", json!({"name": "Contended", "components": ["checkout-api@1.0.0"]})).await;
        let key = created.ok()["key"].as_str().unwrap().to_string();
        let etag = created.etag().unwrap();
        let head_before = app.store.audit_head().await.unwrap().unwrap().0;

        let send = |idempotency_key: String, version: &'static str, if_match: String| {
            let client = app.client.clone();
            let url = format!("{}/api/v1/releases/{key}/components", app.base);
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(ADMIN_TOKEN)
                    .header("if-match", if_match)
                    .header("idempotency-key", idempotency_key)
                    .json(&json!({"artifact": format!("checkout-api@{version}")}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let replayed = r.headers().get("idempotency-replayed").is_some();
                (status, replayed, r.json::<serde_json::Value>().await.unwrap())
            }
        };
        let versions = ["1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5", "1.0.6", "1.0.7"];
        let attempts: Vec<_> =
            versions.iter().map(|version| tokio::spawn(send(format!("distinct-{version}"), version, etag.clone()))).collect();
        let mut outcomes = Vec::new();
        for (version, attempt) in versions.iter().zip(attempts) {
            outcomes.push((*version, attempt.await.unwrap()));
        }
        let winners: Vec<_> = outcomes.iter().filter(|(_, (status, _, _))| *status == 200).collect();
        assert_eq!(winners.len(), 1, "{backend:?}: {:?}", outcomes.iter().map(|(v, (s, _, _))| (v, s)).collect::<Vec<_>>());
        assert!(outcomes.iter().all(|(_, (status, replayed, _))| [200, 409, 412].contains(status) && !replayed));
        let (winning_version, (_, _, winning_body)) = winners[0];
        assert_eq!(winning_body["components"][0]["version"], *winning_version);
        assert_eq!(app.store.audit_head().await.unwrap().unwrap().0, head_before + 1, "{backend:?}: the winner wrote once");

        for (version, (status, _, body)) in &outcomes {
            let (replay_status, replayed, replay_body) = send(format!("distinct-{version}"), version, etag.clone()).await;
            if *status == 200 {
                assert_eq!((replay_status, replayed), (200, true), "{backend:?}: the winner's key replays its response");
                assert_eq!(&replay_body, body);
            } else {
                assert_eq!(replay_status, 412, "{backend:?}: a loser stored nothing; its stale If-Match is refused again");
                assert!(!replayed);
            }
        }
        let current = app.get(&format!("/api/v1/releases/{key}")).await;
        assert_eq!(current.body["components"][0]["version"], *winning_version);
        assert_eq!(app.store.audit_head().await.unwrap().unwrap().0, head_before + 1, "{backend:?}: replays wrote nothing");

        // One key, sent concurrently: a single write. On PostgreSQL every answer is that write's
        // response: a duplicate that conflicted with it (409) or found the release past its
        // If-Match (412) finds the committed key and replays it. On SQLite the first request's
        // group may not have committed when a duplicate is refused, so a duplicate may answer
        // 409 or 412 (nothing written); a retry afterwards replays the response.
        let fresh_etag = current.etag().unwrap();
        let shared: Vec<_> = (0..6).map(|_| tokio::spawn(send("shared".into(), "2.0.0", fresh_etag.clone()))).collect();
        let mut bodies = Vec::new();
        for attempt in shared {
            let (status, _, body) = attempt.await.unwrap();
            match (backend, status) {
                (_, 200) => bodies.push(body),
                (Backend::Sqlite, 409 | 412) => {}
                _ => panic!("{backend:?}: a duplicate of a key answered {status}: {body}"),
            }
        }
        assert!(!bodies.is_empty());
        let (status, replayed, body) = send("shared".into(), "2.0.0", fresh_etag.clone()).await;
        assert_eq!((status, replayed), (200, true), "{backend:?}: {body}");
        assert!(bodies.iter().all(|answer| *answer == body && answer["components"][0]["version"] == "2.0.0"));
        assert_eq!(app.store.audit_head().await.unwrap().unwrap().0, head_before + 2, "{backend:?}: one write for one key");
        assert_eq!(app.verify_audit().await["valid"], true);
    }
}

#[tokio::test]
async fn cursor_pages_are_complete_and_stable_under_inserts() {
    let app = spawn_app(Backend::Sqlite).await;
    for i in 0..25 {
        app.post("/api/v1/domains", json!({"name": format!("d{i:02}")})).await.ok();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/domains?limit=10&cursor={c}"),
            None => "/api/v1/domains?limit=10".into(),
        };
        let page = app.get(&path).await;
        for item in page.ok()["items"].as_array().unwrap() {
            seen.push(item["name"].as_str().unwrap().to_string());
        }
        if pages == 0 {
            // Inserted while paging: appears at the end, never shifts earlier pages.
            app.post("/api/v1/domains", json!({"name": "late"})).await.ok();
        }
        pages += 1;
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..25).map(|i| format!("d{i:02}")).collect();
    expected.push("late".into());
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.request(Method::GET, "/healthz", None, None, &[]).await.ok();
        let ready = app.request(Method::GET, "/readyz", None, None, &[]).await;
        assert_eq!(ready.ok()["status"], "ready");
        app.get("/api/v1/domains").await.ok();
        let metrics = app.request(Method::GET, "/metrics", None, None, &[]).await;
        assert!(metrics.text.contains("signalbox_http_requests_total"), "{}", metrics.text);
        assert!(metrics.text.contains("route=\"/api/v1/domains\""));
        assert!(metrics.text.contains("signalbox_http_request_duration_seconds_bucket"));
        assert!(metrics.text.contains("signalbox_audit_sequence"));
        assert!(metrics.text.contains("signalbox_db_pool_connections"));
        let rid = app.request(Method::GET, "/healthz", None, None, &[("x-request-id", "abc-123")]).await;
        assert_eq!(rid.headers.get("x-request-id").unwrap(), "abc-123");
    }
}
