//! `spawn_app`: a real server on port 0 over a fresh database, with request helpers.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signalbox_app::App;
use signalbox_store::Store;
use std::sync::Arc;

pub const ADMIN_TOKEN: &str = "sbx_test_admin_token_0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends this run covers.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if std::env::var("SIGNALBOX_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        out.push(Backend::Postgres);
    } else {
        eprintln!("SIGNALBOX_TEST_POSTGRES_URL is not set: this test ran on SQLite only");
    }
    out
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The server's application (shares its store and process-local state: simulated fleets).
    pub app: App,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL test database, dropped after the server is told to stop (fields drop
    /// after `Drop::drop`).
    _pg_database: Option<signalbox_store_postgres::testing::ScratchDatabase>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let mut pg_database = None;
    let (store, dir): (Arc<dyn Store>, Option<tempfile::TempDir>) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = signalbox_store_sqlite::SqliteStore::open(dir.path()).await.expect("open sqlite");
            (Arc::new(store), Some(dir))
        }
        Backend::Postgres => {
            let base = std::env::var("SIGNALBOX_TEST_POSTGRES_URL").expect("postgres url");
            let database = signalbox_store_postgres::testing::ScratchDatabase::create(&base).await.expect("fresh database");
            // `SIGNALBOX_TEST_POSTGRES_POOL=1` runs every request on one connection, with a short
            // wait for it: a request that needs a second connection while it holds one (a
            // deadlock once the pool is exhausted) then fails instead of passing on a large pool.
            let pool: u32 = match std::env::var("SIGNALBOX_TEST_POSTGRES_POOL") {
                Ok(v) => v.parse().expect("SIGNALBOX_TEST_POSTGRES_POOL must be a number of connections"),
                Err(_) => 20,
            };
            let wait = if pool < 4 { std::time::Duration::from_secs(5) } else { std::time::Duration::from_secs(30) };
            let store =
                signalbox_store_postgres::PostgresStore::connect_with_timeout(database.url(), pool, wait).await.expect("connect postgres");
            pg_database = Some(database);
            (Arc::new(store), None)
        }
    };
    let app = App::new(store.clone());
    app.bootstrap(Some(ADMIN_TOKEN)).await.expect("bootstrap");
    let handle = app.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(signalbox_server::serve(app, listener, 64 * 1024, async move {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        store,
        app: handle,
        _dir: dir,
        _pg_database: pg_database,
        shutdown: Some(tx),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn etag(&self) -> Option<String> {
        self.headers.get("etag").and_then(|v| v.to_str().ok()).map(String::from)
    }
    pub fn content_type(&self) -> String {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }
    /// Asserts a problem response of `status` and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "expected {status}, got {}: {}", self.status, self.text);
        assert_eq!(self.content_type(), "application/problem+json", "{}", self.text);
        assert!(self.body["type"].as_str().is_some_and(|t| t.starts_with("https://signalbox.dev/problems/")), "{}", self.text);
        assert_eq!(self.body["status"], status);
        &self.body
    }
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(self.status.is_success(), "expected success, got {}: {}", self.status, self.text);
        &self.body
    }
}

impl TestApp {
    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, Some(ADMIN_TOKEN), None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(ADMIN_TOKEN), Some(body), &[]).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.request(Method::PATCH, path, Some(ADMIN_TOKEN), Some(body), &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.request(Method::PUT, path, Some(ADMIN_TOKEN), Some(body), &[]).await
    }
    pub async fn raw(&self, method: Method, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let resp = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    /// A small organization: one domain, team, service, the four environments.
    pub async fn seed_catalog(&self) {
        self.post("/api/v1/domains", json!({"name": "payments"})).await.ok();
        self.post("/api/v1/teams", json!({"name": "checkout-squad", "domain": "payments"})).await.ok();
        self.post("/api/v1/services", json!({"name": "checkout-api", "team": "checkout-squad", "criticality": "customer_facing"}))
            .await
            .ok();
        for (i, env) in ["dev", "test", "staging", "prod"].iter().enumerate() {
            let tier = if *env == "prod" { "prod" } else { env };
            self.post("/api/v1/environments", json!({"name": env, "tier": tier, "position": (i as i32 + 1) * 10})).await.ok();
        }
    }

    pub async fn register(&self, service: &str, version: &str) -> Value {
        let digest = format!("sha256:{}", hex_of(&format!("{service}{version}")));
        self.post("/api/v1/artifacts", json!({"service": service, "version": version, "digest": digest})).await.ok().clone()
    }

    /// Creates a user holding `role` at organization scope and returns a token for it.
    pub async fn user_with_role(&self, username: &str, role: &str) -> String {
        self.post("/api/v1/users", json!({"username": username})).await.ok();
        self.post("/api/v1/role-bindings", json!({"user": username, "role": role, "scope": {"type": "organization"}})).await.ok();
        let issued = self.post("/api/v1/tokens", json!({"name": "test", "user": username})).await;
        issued.ok()["secret"].as_str().expect("secret").to_string()
    }

    pub async fn verify_audit(&self) -> Value {
        let r = self.get("/api/v1/audit/verify").await;
        r.ok().clone()
    }
}

pub fn hex_of(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(seed.as_bytes()))
}
