//! Deny by default: every route in the table, with every built-in role and with no token.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;
use signalbox_domain::access::Role;
use signalbox_server::routes::api_routes;

fn concrete(path: &str) -> String {
    path.replace("{id}", "does-not-exist").replace("{key}", "no-task")
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_permission_table_says() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        let name = role.as_str().replace('_', "-");
        tokens.push((role, app.user_with_role(&format!("u-{name}"), role.as_str()).await));
    }
    let routes = api_routes();
    assert!(routes.len() >= 40, "the table lists every API route");
    let mut checked = 0;
    for spec in &routes {
        let method = Method::from_bytes(spec.method.as_str().as_bytes()).unwrap();
        let path = concrete(spec.path);
        let body = matches!(spec.method.as_str(), "POST" | "PATCH" | "PUT").then(|| json!({}));

        let anonymous = app.request(method.clone(), &path, None, body.clone(), &[]).await;
        match spec.permission {
            Some(_) => {
                anonymous.problem(401);
            }
            None => assert_ne!(anonymous.status.as_u16(), 401, "{} {} is public", spec.method, spec.path),
        }

        for (role, token) in &tokens {
            let reply = app.request(method.clone(), &path, Some(token), body.clone(), &[]).await;
            let allowed = spec.permission.is_none_or(|p| role.permissions().contains(&p));
            if allowed {
                assert!(
                    reply.status.as_u16() != 401 && reply.status.as_u16() != 403,
                    "{role:?} should pass the gate of {} {}: {} {}",
                    spec.method,
                    spec.path,
                    reply.status,
                    reply.text
                );
            } else {
                let problem = reply.problem(403);
                assert!(problem["detail"].as_str().unwrap().contains(spec.permission.unwrap().as_str()));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes.len() * Role::ALL.len());
}

#[tokio::test]
async fn a_bad_or_revoked_token_is_refused_not_downgraded() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let r = app.request(Method::GET, "/api/v1/domains", Some("sbx_not_a_real_token_at_all_000000000000"), None, &[]).await;
        assert!(r.problem(401)["detail"].as_str().unwrap().contains("unknown"));
        let r = app.request(Method::GET, "/api/v1/domains", None, None, &[("authorization", "Basic abc")]).await;
        r.problem(401);

        let token = app.user_with_role("temp", "viewer").await;
        app.request(Method::GET, "/api/v1/domains", Some(&token), None, &[]).await.ok();
        let mine = app.request(Method::GET, "/api/v1/tokens", Some(&token), None, &[]).await;
        let id = mine.ok()["items"][0]["id"].as_str().unwrap().to_string();
        app.request(Method::DELETE, &format!("/api/v1/tokens/{id}"), Some(&token), None, &[]).await.ok();
        let after = app.request(Method::GET, "/api/v1/domains", Some(&token), None, &[]).await;
        assert!(after.problem(401)["detail"].as_str().unwrap().contains("revoked"));
    }
}

#[tokio::test]
async fn scoped_roles_apply_inside_their_scope_only() {
    let app = spawn_app(Backend::Sqlite).await;
    app.seed_catalog().await;
    app.post("/api/v1/domains", json!({"name": "search"})).await.ok();
    app.post("/api/v1/teams", json!({"name": "search-squad", "domain": "search"})).await.ok();
    app.post("/api/v1/services", json!({"name": "search-api", "team": "search-squad"})).await.ok();
    app.post("/api/v1/users", json!({"username": "dev"})).await.ok();
    app.post("/api/v1/role-bindings", json!({"user": "dev", "role": "developer", "scope": {"type": "domain", "id": "payments"}}))
        .await
        .ok();
    let token = app.post("/api/v1/tokens", json!({"name": "t", "user": "dev"})).await.ok()["secret"].as_str().unwrap().to_string();

    let digest = format!("sha256:{}", hex_of("x"));
    let inside = app
        .request(
            Method::POST,
            "/api/v1/artifacts",
            Some(&token),
            Some(json!({"service": "checkout-api", "version": "1.0.0", "digest": digest})),
            &[],
        )
        .await;
    assert_eq!(inside.status.as_u16(), 201, "{}", inside.text);
    let outside = app
        .request(
            Method::POST,
            "/api/v1/artifacts",
            Some(&token),
            Some(json!({"service": "search-api", "version": "1.0.0", "digest": digest})),
            &[],
        )
        .await;
    assert!(outside.problem(403)["detail"].as_str().unwrap().contains("register_artifact"));
    // Reading is organization-wide.
    app.request(Method::GET, "/api/v1/services/search-api", Some(&token), None, &[]).await.ok();
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_route_table() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = app.request(Method::GET, "/api/v1/openapi.json", None, None, &[]).await;
    let doc = doc.ok().clone();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    let mut routed: Vec<String> = api_routes().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed);
    let docs = app.request(Method::GET, "/api/docs", None, None, &[]).await;
    assert!(docs.text.contains("/api/v1/openapi.json") && !docs.text.contains("cdn"), "docs page is self-contained");
}

#[tokio::test]
async fn passwords_log_in_and_are_never_shown() {
    for backend in backends() {
        let app = spawn_app(backend).await;
        let created = app.post("/api/v1/users", json!({"username": "ana", "password": "correct horse battery"})).await;
        assert!(!created.ok().to_string().contains("argon2"), "no hash in the response");
        let short = app.post("/api/v1/users", json!({"username": "bo", "password": "short"})).await;
        assert_eq!(short.problem(422)["errors"][0]["field"], "password");
        let wrong = app.request(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "ana", "password": "nope"})), &[]).await;
        wrong.problem(401);
        let login = app
            .request(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "ana", "password": "correct horse battery"})), &[])
            .await;
        let secret = login.ok()["secret"].as_str().unwrap().to_string();
        // ana holds no role: authenticated, but every protected route is forbidden.
        app.request(Method::GET, "/api/v1/domains", Some(&secret), None, &[]).await.problem(403);
        let audit = app.get("/api/v1/audit/export").await;
        assert!(!audit.text.contains("$argon2"), "the audit trail never holds a password hash");
        assert!(audit.text.contains("credential.set"));
    }
}
