//! Feature flags (issue 7): flag sets in flagd format per environment, validation, audited
//! changes with diffs, revisions and revert, SDK keys, and the OFREP contract (status codes,
//! bodies, ETag/304, auth, rate limits), plus a change seen by a second replica.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use signalbox_app::App;
use signalbox_store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn document() -> Value {
    json!({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "metadata": {"flagSetId": "checkout", "version": "7"},
        "$evaluators": {"is-employee": {"ends_with": [{"var": "email"}, "@corp.example"]}},
        "flags": {
            "new-checkout": {
                "state": "ENABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "is-employee"}, "on", null]},
                "metadata": {"owner": "payments", "type": "release", "description": "New checkout"}
            },
            "color": {
                "state": "ENABLED",
                "variants": {"red": "#f00", "blue": "#00f"},
                "defaultVariant": "red"
            },
            "code-default": {
                "state": "ENABLED",
                "variants": {"a": 1, "b": 2},
                "defaultVariant": null
            },
            "retired": {
                "state": "DISABLED",
                "variants": {"on": true, "off": false},
                "defaultVariant": "on"
            }
        }
    })
}

async fn ofrep(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut req = app.client.post(format!("{}{}", app.base, path)).header("content-type", "application/json").body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

async fn sdk_key(app: &TestApp, environment: &str, rate: Option<u32>) -> (String, String) {
    let mut body = json!({"environment": environment, "name": "web"});
    if let Some(rate) = rate {
        body["rate_limit_per_second"] = json!(rate);
    }
    let issued = app.post("/api/v1/flags/sdk-keys", body).await;
    assert_eq!(issued.status.as_u16(), 201, "{}", issued.text);
    (issued.body["secret"].as_str().unwrap().to_string(), issued.body["key"]["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn flag_sets_import_export_validate_diff_audit_and_revert() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;

        // Import: created with revision 1; export gives the same document back.
        let created = app
            .request(Method::PUT, "/api/v1/flags/prod", Some(ADMIN_TOKEN), Some(document()), &[("x-signalbox-reason", "initial import")])
            .await;
        assert_eq!(created.status.as_u16(), 201, "{}", created.text);
        assert_eq!(created.etag().as_deref(), Some("\"1\""));
        assert_eq!(created.body["revision"], 1);
        let info = created.body["flags"].as_array().unwrap().iter().find(|f| f["key"] == "new-checkout").unwrap().clone();
        assert_eq!(info["owner"], "payments");
        assert_eq!(info["flag_type"], "release");
        assert_eq!(info["expected_lifetime_days"], 40, "release flags are expected to go within 40 days");
        let exported = app.get("/api/v1/flags/prod/export").await;
        assert_eq!(exported.ok(), &document(), "import then export is exact");

        // The array form round-trips too, in its own order.
        let array_form = json!({"flags": [
            {"key": "zeta", "state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"},
            {"key": "alpha", "state": "DISABLED", "variants": {"x": "x"}}
        ]});
        app.put("/api/v1/flags/dev", array_form.clone()).await.ok();
        assert_eq!(app.get("/api/v1/flags/dev/export").await.ok(), &array_form);

        // Validation: 422 naming the JSON path; nothing stored.
        let mut bad = document();
        bad["flags"]["new-checkout"]["defaultVariant"] = json!("onn");
        bad["flags"]["color"]["metadata"] = json!({"type": "forever"});
        let refused = app.put("/api/v1/flags/prod", bad).await;
        let problem = refused.problem(422);
        let fields: Vec<&str> = problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&"flags.new-checkout.defaultVariant"), "{fields:?}");
        assert!(fields.contains(&"flags.color.metadata.type"), "{fields:?}");
        assert_eq!(app.get("/api/v1/flags/prod").await.body["revision"], 1);

        // Per-flag change with If-Match: a diff of exactly what changed.
        let killed = app
            .request(
                Method::PATCH,
                "/api/v1/flags/prod/flags/new-checkout",
                Some(ADMIN_TOKEN),
                Some(json!({"state": "DISABLED"})),
                &[("if-match", "\"1\""), ("x-signalbox-reason", "incident INC-7")],
            )
            .await;
        assert_eq!(killed.ok()["revision"], 2, "{}", killed.text);
        assert_eq!(
            killed.body["changes"],
            json!([{"flag": "new-checkout", "change": "changed", "fields": [{"field": "state", "before": "ENABLED", "after": "DISABLED"}]}])
        );
        let stale = app
            .request(
                Method::PATCH,
                "/api/v1/flags/prod/flags/color",
                Some(ADMIN_TOKEN),
                Some(json!({"defaultVariant": "blue"})),
                &[("if-match", "\"1\"")],
            )
            .await;
        stale.problem(412);
        // A patch that breaks the flag is refused with the path.
        let broken = app.patch("/api/v1/flags/prod/flags/color", json!({"variants": {"green": 3}})).await;
        assert!(broken.problem(422)["errors"][0]["field"].as_str().unwrap().starts_with("flags.color"), "{}", broken.text);
        // A new flag through PATCH, and a removal.
        let added = app.patch("/api/v1/flags/prod/flags/extra", json!({"state": "ENABLED", "variants": {"on": true}})).await;
        assert_eq!(added.ok()["changes"][0]["change"], "added");
        let removed = app.request(Method::DELETE, "/api/v1/flags/prod/flags/extra", Some(ADMIN_TOKEN), None, &[]).await;
        assert_eq!(removed.ok()["changes"][0]["change"], "removed");
        assert_eq!(removed.body["revision"], 4);
        // Writing the same document again changes nothing and makes no revision.
        let same = app.put("/api/v1/flags/prod", app.get("/api/v1/flags/prod/export").await.body.clone()).await;
        assert_eq!(same.ok()["revision"], 4);

        // Revisions, newest first, each with who and why.
        let revisions = app.get("/api/v1/flags/prod/revisions").await;
        let revisions = revisions.ok().as_array().unwrap().clone();
        assert_eq!(revisions.iter().map(|r| r["revision"].as_i64().unwrap()).collect::<Vec<_>>(), vec![4, 3, 2, 1]);
        assert_eq!(revisions[2]["reason"], "incident INC-7");
        assert_eq!(revisions[2]["created_by"], "admin");

        // Revert to revision 1: a new revision with revision 1's document.
        let reverted = app.post("/api/v1/flags/prod/revert", json!({"revision": 1, "reason": "back to the import"})).await;
        assert_eq!(reverted.ok()["revision"], 5, "{}", reverted.text);
        assert_eq!(app.get("/api/v1/flags/prod/export").await.body, document());
        let unknown = app.post("/api/v1/flags/prod/revert", json!({"revision": 99})).await;
        assert_eq!(unknown.problem(422)["errors"][0]["field"], "revision");

        // Audit: each change is an entry with actor, reason, before and after.
        let audit = app.get("/api/v1/audit?action=flag_set.update&limit=50").await;
        let entries = audit.ok()["items"].as_array().unwrap().clone();
        assert_eq!(entries.len(), 4, "four updates after the import: {}", audit.text);
        let kill = entries.iter().find(|e| e["reason"] == "incident INC-7").expect("the kill switch is audited with its reason");
        assert_eq!(kill["actor"], "admin");
        assert_eq!(kill["before"]["document"]["flags"]["new-checkout"]["state"], "ENABLED");
        assert_eq!(kill["after"]["document"]["flags"]["new-checkout"]["state"], "DISABLED");
        let revision_entries = app.get("/api/v1/audit?action=flag_set.revision&limit=50").await;
        let with_diff = revision_entries.ok()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["after"]["changes"][0]["fields"][0]["field"] == "state" && e["reason"] == "incident INC-7");
        assert!(with_diff, "the revision entry carries the per-flag diff: {}", revision_entries.text);
        assert_eq!(app.verify_audit().await["valid"], true);

        // Listing and unknown environments.
        let list = app.get("/api/v1/flags").await;
        assert_eq!(list.ok().as_array().unwrap().len(), 2);
        app.get("/api/v1/flags/nowhere").await.problem(404);
        app.get("/api/v1/flags/staging").await.problem(404);
    }
}

#[tokio::test]
async fn ofrep_contract() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.put("/api/v1/flags/prod", document()).await.ok();
        let (secret, key_id) = sdk_key(&app, "prod", None).await;
        let with_key = [("x-api-key", secret.as_str())];
        let bearer = format!("Bearer {secret}");
        let ctx = br#"{"context": {"targetingKey": "user-1", "email": "ana@corp.example"}}"#;

        // Auth: none is 401, a wrong key 403, a user token 403; no bodies.
        let none = ofrep(&app, "/ofrep/v1/evaluate/flags/color", &[], ctx).await;
        assert_eq!(none.status.as_u16(), 401);
        assert!(none.text.is_empty());
        let wrong = ofrep(&app, "/ofrep/v1/evaluate/flags/color", &[("x-api-key", "sbf_nope")], ctx).await;
        assert_eq!(wrong.status.as_u16(), 403);
        assert!(wrong.text.is_empty());
        let user = ofrep(&app, "/ofrep/v1/evaluate/flags/color", &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))], ctx).await;
        assert_eq!(user.status.as_u16(), 403, "user API tokens are not SDK keys");

        // Success, by X-API-Key and by Bearer.
        let color = ofrep(&app, "/ofrep/v1/evaluate/flags/color", &with_key, ctx).await;
        assert_eq!(color.status.as_u16(), 200, "{}", color.text);
        assert_eq!(
            color.body,
            json!({"key": "color", "reason": "STATIC", "variant": "red", "value": "#f00", "metadata": {"flagSetId": "checkout", "version": "7"}})
        );
        let matched = ofrep(&app, "/ofrep/v1/evaluate/flags/new-checkout", &[("authorization", &bearer)], ctx).await;
        assert_eq!(matched.body["reason"], "TARGETING_MATCH", "{}", matched.text);
        assert_eq!(matched.body["value"], true);
        assert_eq!(matched.body["metadata"]["owner"], "payments", "flag metadata merged over set metadata");
        let outsider = ofrep(&app, "/ofrep/v1/evaluate/flags/new-checkout", &with_key, br#"{"context": {"targetingKey": "u2"}}"#).await;
        assert_eq!((outsider.body["reason"].as_str(), outsider.body["value"].as_bool()), (Some("DEFAULT"), Some(false)));
        let code_default = ofrep(&app, "/ofrep/v1/evaluate/flags/code-default", &with_key, ctx).await;
        assert_eq!(code_default.status.as_u16(), 200);
        assert_eq!(code_default.body["reason"], "DEFAULT");
        assert!(code_default.body.get("value").is_none() && code_default.body.get("variant").is_none(), "{}", code_default.text);
        let disabled = ofrep(&app, "/ofrep/v1/evaluate/flags/retired", &with_key, ctx).await;
        assert_eq!(disabled.body["reason"], "DISABLED");
        assert!(disabled.body.get("value").is_none());

        // Errors: 404 FLAG_NOT_FOUND; 400 INVALID_CONTEXT for bodies that are not requests.
        let missing = ofrep(&app, "/ofrep/v1/evaluate/flags/nope", &with_key, ctx).await;
        assert_eq!(missing.status.as_u16(), 404);
        assert_eq!(missing.body["key"], "nope");
        assert_eq!(missing.body["errorCode"], "FLAG_NOT_FOUND");
        for body in [&b"not json"[..], br#"{"context": 5}"#, br#"{"ctx": {}}"#, br#"{"context": {"targetingKey": 7}}"#] {
            let bad = ofrep(&app, "/ofrep/v1/evaluate/flags/color", &with_key, body).await;
            assert_eq!(bad.status.as_u16(), 400, "{}", bad.text);
            assert_eq!(bad.body["errorCode"], "INVALID_CONTEXT");
            assert_eq!(bad.body["key"], "color");
            assert!(bad.body["errorDetails"].as_str().is_some_and(|d| !d.is_empty()));
        }
        // PARSE_ERROR: a rule that exceeds the evaluation budget on this context.
        let plus: Vec<Value> = (0..60).map(|_| json!({"+": [{"var": ""}, 1]})).collect();
        app.patch(
            "/api/v1/flags/prod/flags/hostile",
            json!({"state": "ENABLED", "variants": {"on": true}, "targeting": {"if": [{"map": [{"var": "items"}, {"merge": plus}]}, "on", null]}}),
        )
        .await
        .ok();
        let items: Vec<u32> = (0..2000).collect();
        let hostile_ctx = serde_json::to_vec(&json!({"context": {"targetingKey": "u", "items": items}})).unwrap();
        let hostile = ofrep(&app, "/ofrep/v1/evaluate/flags/hostile", &with_key, &hostile_ctx).await;
        assert_eq!(hostile.status.as_u16(), 400, "{}", hostile.text);
        assert_eq!(hostile.body["errorCode"], "PARSE_ERROR");

        // Bulk: every flag, an ETag from version + context, 304 on If-None-Match.
        let bulk = ofrep(&app, "/ofrep/v1/evaluate/flags", &with_key, ctx).await;
        assert_eq!(bulk.status.as_u16(), 200, "{}", bulk.text);
        let etag = bulk.etag().expect("bulk responses carry an ETag");
        let flags = bulk.body["flags"].as_array().unwrap();
        assert_eq!(flags.len(), 5);
        assert!(flags.iter().any(|f| f["key"] == "color" && f["value"] == "#f00"));
        assert!(flags.iter().any(|f| f["key"] == "retired" && f["reason"] == "DISABLED" && f.get("value").is_none()));
        let same_ctx_reordered = br#"{"context": {"email": "ana@corp.example", "targetingKey": "user-1"}}"#;
        let not_modified = ofrep(
            &app,
            "/ofrep/v1/evaluate/flags",
            &[("x-api-key", secret.as_str()), ("if-none-match", etag.as_str())],
            same_ctx_reordered,
        )
        .await;
        assert_eq!(not_modified.status.as_u16(), 304);
        assert!(not_modified.text.is_empty(), "304 has no body");
        let other_ctx = ofrep(
            &app,
            "/ofrep/v1/evaluate/flags",
            &[("x-api-key", secret.as_str()), ("if-none-match", etag.as_str())],
            br#"{"context": {"targetingKey": "user-2"}}"#,
        )
        .await;
        assert_eq!(other_ctx.status.as_u16(), 200, "another context is another ETag");
        assert_ne!(other_ctx.etag(), Some(etag.clone()));
        let bad_bulk = ofrep(&app, "/ofrep/v1/evaluate/flags", &with_key, br#"{"context": []}"#).await;
        assert_eq!(bad_bulk.status.as_u16(), 400);
        assert_eq!(bad_bulk.body["errorCode"], "INVALID_CONTEXT");
        assert!(bad_bulk.body.get("flags").is_none());

        // Kill switch: the next evaluation is DISABLED, and the old ETag no longer matches.
        app.patch("/api/v1/flags/prod/flags/new-checkout", json!({"state": "DISABLED"})).await.ok();
        let killed = ofrep(&app, "/ofrep/v1/evaluate/flags/new-checkout", &with_key, ctx).await;
        assert_eq!(killed.body["reason"], "DISABLED", "{}", killed.text);
        let changed =
            ofrep(&app, "/ofrep/v1/evaluate/flags", &[("x-api-key", secret.as_str()), ("if-none-match", etag.as_str())], ctx).await;
        assert_eq!(changed.status.as_u16(), 200, "a new flag-set version is a new ETag");

        // An environment without flags: FLAG_NOT_FOUND and an empty bulk list.
        let (dev_secret, _) = sdk_key(&app, "dev", None).await;
        let empty = ofrep(&app, "/ofrep/v1/evaluate/flags/color", &[("x-api-key", dev_secret.as_str())], ctx).await;
        assert_eq!(empty.status.as_u16(), 404);
        assert_eq!(empty.body["errorCode"], "FLAG_NOT_FOUND");
        let empty_bulk = ofrep(&app, "/ofrep/v1/evaluate/flags", &[("x-api-key", dev_secret.as_str())], ctx).await;
        assert_eq!(empty_bulk.body["flags"], json!([]));

        // Rate limit: 429 with Retry-After in seconds.
        let (slow_secret, _) = sdk_key(&app, "prod", Some(1)).await;
        let mut limited = None;
        for _ in 0..10 {
            let r = ofrep(&app, "/ofrep/v1/evaluate/flags/color", &[("x-api-key", slow_secret.as_str())], ctx).await;
            if r.status.as_u16() == 429 {
                limited = Some(r);
                break;
            }
        }
        let limited = limited.expect("ten requests in a row exceed one per second");
        let retry: u64 =
            limited.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
        assert!(retry >= 1);

        // Revocation: the key stops working, and keys are listed without secrets.
        let listed = app.get("/api/v1/flags/sdk-keys?environment=prod").await;
        assert_eq!(listed.ok().as_array().unwrap().len(), 2);
        assert!(!listed.text.contains(&secret), "secrets are never listed");
        app.request(Method::DELETE, &format!("/api/v1/flags/sdk-keys/{key_id}"), Some(ADMIN_TOKEN), None, &[]).await.ok();
        let revoked = ofrep(&app, "/ofrep/v1/evaluate/flags/color", &with_key, ctx).await;
        assert_eq!(revoked.status.as_u16(), 403);

        // A viewer may read flags but not change them or issue keys.
        let viewer = app.user_with_role("vera", "viewer").await;
        let read = app.request(Method::GET, "/api/v1/flags/prod", Some(&viewer), None, &[]).await;
        read.ok();
        let write =
            app.request(Method::PATCH, "/api/v1/flags/prod/flags/color", Some(&viewer), Some(json!({"state": "DISABLED"})), &[]).await;
        write.problem(403);
    }
}

/// The bulk ETag stands for what the answer depends on: a set whose rules read
/// `$flagd.timestamp` gets a new ETag when the clock moves (an old one then answers 200, not 304);
/// a set that does not read it keeps its ETag. A body over the size limit is a problem response.
#[tokio::test]
async fn bulk_etag_follows_the_clock_only_for_rules_that_read_it_and_oversized_bodies_get_a_problem() {
    let app = spawn_app(Backend::Sqlite).await;
    app.seed_catalog().await;
    let clocked = json!({"flags": {"after-launch": {
        "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{">=": [{"var": "$flagd.timestamp"}, 1_900_000_000]}, "on", "off"]}
    }}});
    app.put("/api/v1/flags/prod", clocked).await.ok();
    app.put("/api/v1/flags/staging", document()).await.ok();
    let ctx = br#"{"context": {"targetingKey": "user-1"}}"#;
    let start = chrono::Utc::now();
    for (environment, reads_clock) in [("prod", true), ("staging", false)] {
        let (secret, _) = sdk_key(&app, environment, None).await;
        app.app.set_flags_now(Some(start));
        let first = ofrep(&app, "/ofrep/v1/evaluate/flags", &[("x-api-key", secret.as_str())], ctx).await;
        assert_eq!(first.status.as_u16(), 200, "{}", first.text);
        let etag = first.etag().unwrap();
        let again = ofrep(&app, "/ofrep/v1/evaluate/flags", &[("x-api-key", secret.as_str()), ("if-none-match", etag.as_str())], ctx).await;
        assert_eq!(again.status.as_u16(), 304, "{environment}: same second, same answer");
        app.app.set_flags_now(Some(start + chrono::Duration::seconds(1)));
        let later = ofrep(&app, "/ofrep/v1/evaluate/flags", &[("x-api-key", secret.as_str()), ("if-none-match", etag.as_str())], ctx).await;
        if reads_clock {
            assert_eq!(later.status.as_u16(), 200, "{environment}: the clock moved, the answer may have");
            assert_ne!(later.etag(), Some(etag));
        } else {
            assert_eq!(later.status.as_u16(), 304, "{environment}: no rule reads the clock");
        }
    }
    // After the launch time the clocked flag is on: the answer that the new ETag stands for.
    app.app.set_flags_now(chrono::DateTime::from_timestamp(1_900_000_000, 0));
    let (secret, _) = sdk_key(&app, "prod", None).await;
    let launched = ofrep(&app, "/ofrep/v1/evaluate/flags/after-launch", &[("x-api-key", secret.as_str())], ctx).await;
    assert_eq!(launched.body["value"], true, "{}", launched.text);
    app.app.set_flags_now(None);

    let huge = serde_json::to_vec(&json!({"context": {"targetingKey": "u", "blob": "x".repeat(80 * 1024)}})).unwrap();
    for path in ["/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/after-launch"] {
        let oversized = ofrep(&app, path, &[("x-api-key", secret.as_str())], &huge).await;
        assert_eq!(oversized.status.as_u16(), 413, "{path}: {}", oversized.text);
        assert_eq!(oversized.body["type"], "https://signalbox.dev/problems/payload-too-large", "{path}: {}", oversized.text);
        let unauthenticated = ofrep(&app, path, &[], &huge).await;
        assert_eq!(unauthenticated.status.as_u16(), 401, "{path}: the key is checked before the body is read");
    }
}

/// Two servers over one database (PostgreSQL when configured, else one SQLite file): a change
/// made through the first is served by the second without restarting it.
#[tokio::test]
async fn a_change_reaches_a_second_replica() {
    let backend = backends().into_iter().last().unwrap_or(Backend::Sqlite);
    let mut cleanup = None;
    let _dir;
    let (store_a, store_b): (Arc<dyn Store>, Arc<dyn Store>) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let a = signalbox_store_sqlite::SqliteStore::open(dir.path()).await.expect("open");
            let b = signalbox_store_sqlite::SqliteStore::open(dir.path()).await.expect("open again");
            _dir = Some(dir);
            (Arc::new(a), Arc::new(b))
        }
        Backend::Postgres => {
            _dir = None;
            let base = std::env::var("SIGNALBOX_TEST_POSTGRES_URL").expect("postgres url");
            let url = signalbox_store_postgres::testing::fresh_database(&base).await.expect("fresh database");
            let a = signalbox_store_postgres::PostgresStore::connect(&url, 5).await.expect("connect");
            let b = signalbox_store_postgres::PostgresStore::connect(&url, 5).await.expect("connect");
            cleanup = Some((base, url));
            (Arc::new(a), Arc::new(b))
        }
    };
    let mut bases = Vec::new();
    let mut shutdowns = Vec::new();
    for store in [store_a.clone(), store_b.clone()] {
        let app = App::new(store);
        app.bootstrap(Some(ADMIN_TOKEN)).await.expect("bootstrap");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        bases.push(format!("http://{}", listener.local_addr().expect("addr")));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        shutdowns.push(tx);
        tokio::spawn(signalbox_server::serve(app, listener, 64 * 1024, async move {
            let _ = rx.await;
        }));
    }
    let client = reqwest::Client::new();
    let call = |base: &str, method: Method, path: &str, body: Value| {
        client.request(method, format!("{base}{path}")).bearer_auth(ADMIN_TOKEN).json(&body).send()
    };
    call(&bases[0], Method::POST, "/api/v1/environments", json!({"name": "prod", "tier": "prod", "position": 40})).await.unwrap();
    let put = call(&bases[0], Method::PUT, "/api/v1/flags/prod", document()).await.unwrap();
    assert_eq!(put.status().as_u16(), 201);
    let issued: Value = call(&bases[0], Method::POST, "/api/v1/flags/sdk-keys", json!({"environment": "prod", "name": "b"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = issued["secret"].as_str().unwrap().to_string();
    let evaluate = || async {
        let r = client
            .post(format!("{}/ofrep/v1/evaluate/flags/color", bases[1]))
            .header("x-api-key", &secret)
            .json(&json!({"context": {"targetingKey": "u"}}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    // B learns about the new set by polling the store; wait for it (no timing assertion).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = evaluate().await;
    while first.0 != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        first = evaluate().await;
    }
    assert_eq!(first.0, 200, "replica B serves the set written through A: {first:?}");
    assert_eq!(first.1["reason"], "STATIC");

    // The kill switch flipped on A reaches B (B already holds a snapshot, so only its poller can tell it).
    let patched = call(&bases[0], Method::PATCH, "/api/v1/flags/prod/flags/color", json!({"state": "DISABLED"})).await.unwrap();
    assert_eq!(patched.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    while Instant::now() < deadline {
        if evaluate().await.1["reason"] == "DISABLED" {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "replica B serves the kill switch set through replica A");
    for tx in shutdowns {
        let _ = tx.send(());
    }
    drop((store_a, store_b));
    if let Some((base, url)) = cleanup {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = signalbox_store_postgres::testing::drop_database(&base, &url).await;
    }
}

/// Static, `in`, fractional, disabled, code-default and prerequisite flags (one prerequisite on a
/// static flag, met; one on the `in` flag, met or not by context), with set and flag metadata.
fn bulk_document() -> Value {
    json!({
        "metadata": {"flagSetId": "bulk", "version": "3"},
        "flags": {
            "static-color": {"state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "blue",
                "metadata": {"owner": "web"}},
            "in-country": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"in": [{"var": "country"}, ["de", "fr", "nl"]]}, "on", "off"]}},
            "split": {"state": "ENABLED", "variants": {"a": 1, "b": 2, "c": 3, "d": 4}, "defaultVariant": "a",
                "targeting": {"fractional": [["a", 25], ["b", 25], ["c", 25], ["d", 25]]}},
            "killed": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "code-default": {"state": "ENABLED", "variants": {"x": {"size": 1}, "y": {"size": 2}}, "defaultVariant": null},
            "needs-country": {"state": "ENABLED", "variants": {"on": "yes", "off": "no"}, "defaultVariant": "on",
                "prerequisites": [{"flag": "in-country", "variant": "on"}], "metadata": {"type": "release"}},
            "needs-static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
                "prerequisites": [{"flag": "static-color", "variant": "blue"}]}
        }
    })
}

/// The bulk endpoint (one prepared context per request, items written as they are evaluated)
/// answers exactly what evaluating each flag on its own gives, byte for byte, agrees with the
/// single endpoint, and still counts every evaluated flag per variant.
#[tokio::test]
async fn bulk_evaluation_equals_per_flag_evaluation_and_is_counted() {
    use signalbox_flags::ofrep::{bulk_item, BulkEvaluationSuccess};
    use signalbox_flags::{CompiledFlagSet, FlagSet};
    use std::collections::BTreeMap;

    for backend in backends() {
        let app = spawn_app(backend).await;
        app.seed_catalog().await;
        app.put("/api/v1/flags/prod", bulk_document()).await.ok();
        let (secret, _) = sdk_key(&app, "prod", None).await;
        let with_key = [("x-api-key", secret.as_str())];
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        app.app.set_flags_now(Some(now));
        let stored = app.get("/api/v1/flags/prod/export").await.ok().clone();
        let compiled = CompiledFlagSet::compile(&FlagSet::from_json(&stored).expect("valid")).expect("compiles");

        let contexts = [
            json!({"targetingKey": "user-1", "country": "de"}),
            json!({"targetingKey": "user-2", "country": "us", "plan": "pro"}),
            json!({"country": "fr"}),
            json!({"targetingKey": "", "country": 7}),
            json!({"targetingKey": "user-3", "country": ["de"], "nested": {"country": "nl"}}),
            json!({}),
        ];
        // Expected counts per flag: variant name (or "-" for none) -> evaluations.
        let mut expected: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut seen = BTreeMap::<String, BTreeMap<String, u64>>::new();
        for context in &contexts {
            let body = serde_json::to_vec(&json!({ "context": context })).unwrap();
            let bulk = ofrep(&app, "/ofrep/v1/evaluate/flags", &with_key, &body).await;
            assert_eq!(bulk.status.as_u16(), 200, "{}", bulk.text);
            assert_eq!(bulk.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
            assert!(bulk.etag().is_some());

            let mut items = Vec::new();
            for key in compiled.keys() {
                let resolution = compiled.evaluate(key, context, now.timestamp());
                let variant = resolution.variant.unwrap_or("-").to_string();
                *expected.entry(key.clone()).or_default().entry(variant).or_default() += 2; // bulk + single below
                *seen.entry(key.clone()).or_default().entry(resolution.reason.as_str().to_string()).or_default() += 1;
                items.push(bulk_item(key, &resolution));
            }
            let owned = BulkEvaluationSuccess {
                flags: items.clone(),
                metadata: Some(compiled.metadata().clone()),
                event_streams: serde_json::from_value(bulk.body["eventStreams"].clone()).expect("eventStreams"),
            };
            assert_eq!(bulk.text, serde_json::to_string(&owned).unwrap(), "bulk body for {context}");

            // The single endpoint gives each item on its own (same JSON), 200 for all of these.
            for item in &items {
                let key = serde_json::to_value(item).unwrap()["key"].as_str().unwrap().to_string();
                let single = ofrep(&app, &format!("/ofrep/v1/evaluate/flags/{key}"), &with_key, &body).await;
                assert_eq!(single.status.as_u16(), 200, "{}", single.text);
                assert_eq!(single.body, serde_json::to_value(item).unwrap(), "{key} for {context}");
            }
        }
        // The workload covers every kind of result it is meant to.
        assert_eq!(seen["static-color"].keys().collect::<Vec<_>>(), ["STATIC"]);
        assert_eq!(seen["killed"].keys().collect::<Vec<_>>(), ["DISABLED"]);
        assert_eq!(seen["code-default"].keys().collect::<Vec<_>>(), ["DEFAULT"]);
        assert_eq!(seen["needs-static"].keys().collect::<Vec<_>>(), ["STATIC"], "a met prerequisite");
        assert!(seen["needs-country"].contains_key("DISABLED") && seen["needs-country"].contains_key("STATIC"), "{seen:?}");
        assert!(seen["in-country"].contains_key("TARGETING_MATCH"));
        assert!(expected["split"].len() >= 3, "fractional spread over variants: {expected:?}");

        // Counters: every flag of every bulk request and every single request, per variant.
        assert_eq!(app.app.flush_flag_stats().await.expect("flush"), 1);
        let stats = app.get("/api/v1/flags/prod/stats").await;
        let flags = &stats.ok()[0]["flags"];
        for (key, variants) in &expected {
            let total: u64 = variants.values().sum();
            assert_eq!(flags[key]["evaluations"], total, "{key}: {}", stats.text);
            assert_eq!(flags[key]["no_variant"], variants.get("-").copied().unwrap_or(0), "{key}: {}", stats.text);
            let served: BTreeMap<String, u64> = variants.iter().filter(|(v, _)| *v != "-").map(|(v, n)| (v.clone(), *n)).collect();
            assert_eq!(flags[key]["variants"], json!(served), "{key}: {}", stats.text);
        }
        app.app.set_flags_now(None);
    }
}
