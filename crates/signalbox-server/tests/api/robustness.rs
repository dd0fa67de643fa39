//! No input makes the server fail: arbitrary JSON to every write route is answered with a
//! 2xx or a 4xx problem, never a 5xx, and the audit chain stays valid.

use crate::helpers::*;
use proptest::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};
use signalbox_server::routes::api_routes;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,24}".prop_map(Value::String),
        prop::sample::select(vec![
            "payments",
            "checkout-api",
            "prod",
            "R-1",
            "standard",
            "testing",
            "sha256:",
            "1.0.0",
            "admin",
            "organization"
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "name",
                    "domain",
                    "team",
                    "service",
                    "version",
                    "digest",
                    "tier",
                    "position",
                    "components",
                    "to",
                    "reason",
                    "kind",
                    "reference",
                    "title",
                    "author",
                    "user",
                    "role",
                    "scope",
                    "type",
                    "id",
                    "phases",
                    "summary",
                    "status",
                    "documents",
                    "planned_window",
                    "start",
                    "end",
                    "depends_on",
                    "artifact",
                    "key",
                    "password",
                    "username",
                ])
                .prop_map(String::from),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn arbitrary_bodies_never_cause_a_server_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let app = runtime.block_on(async {
        let app = spawn_app(Backend::Sqlite).await;
        app.seed_catalog().await;
        app.register("checkout-api", "1.0.0").await;
        app.post("/api/v1/releases", json!({"name": "r", "components": ["checkout-api@1.0.0"]})).await.ok();
        app
    });
    let writes: Vec<(Method, String)> = api_routes()
        .iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PATCH" | "PUT"))
        .map(|r| {
            (Method::from_bytes(r.method.as_str().as_bytes()).unwrap(), r.path.replace("{id}", "R-1").replace("{key}", "regression-tests"))
        })
        .collect();
    let config = ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(route in 0..writes.len(), body in arb_json())| {
        let (method, path) = writes[route].clone();
        let reply = runtime.block_on(app.request(method.clone(), &path, Some(ADMIN_TOKEN), Some(body.clone()), &[]));
        prop_assert!(reply.status.as_u16() < 500, "{} {} with {} → {} {}", method, path, body, reply.status, reply.text);
        if !reply.status.is_success() {
            prop_assert_eq!(reply.content_type(), "application/problem+json");
        }
    });
    let report = runtime.block_on(app.verify_audit());
    assert_eq!(report["valid"], true, "{report}");
}
