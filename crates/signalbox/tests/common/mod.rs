//! Shared helpers of the end-to-end rollout tests (issue 6): the real `signalbox serve` binary
//! as a child process (SIGKILL-able), a small API client, the catalog a promotion needs, and a
//! webhook receiver that verifies Standard Webhooks signatures and records every delivery.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// The admin token every test server is bootstrapped with.
pub const TOKEN: &str = "sbx_rollout_e2e_token_0123456789abcdef0123456789abcdef";

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_signalbox"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

/// Where a server keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

/// How to start one `signalbox serve`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Names the log file (`<name>-<n>.log`) and the replica in messages.
    pub name: String,
    pub backend: Backend,
    /// A `--config` TOML file.
    pub config: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Directory of the log files.
    pub log_dir: PathBuf,
}

/// A running `signalbox serve`; SIGKILLed on drop.
pub struct Server {
    pub name: String,
    pub port: u16,
    pub base: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Starts the binary on a free port and waits until `/readyz` answers.
    pub async fn start(opts: &ServerOptions) -> Server {
        let port = free_port();
        let mut n = 1;
        let log = loop {
            let candidate = opts.log_dir.join(format!("{}-{n}.log", opts.name));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        let log_file = std::fs::File::create(&log).expect("create the server log");
        let mut cmd = bin();
        cmd.arg("serve");
        match &opts.backend {
            Backend::Sqlite(dir) => {
                cmd.arg("--data").arg(dir);
            }
            Backend::Postgres(url) => {
                cmd.args(["--database-url", url]);
            }
        }
        if let Some(config) = &opts.config {
            cmd.arg("--config").arg(config);
        }
        cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
            .env("SIGNALBOX_BOOTSTRAP_TOKEN", TOKEN)
            .env("SIGNALBOX_ROLLOUT_INTERVAL_MS", "100")
            .env("SIGNALBOX_LOG_LEVEL", "info")
            .env_remove("SIGNALBOX_DATABASE_URL")
            .env_remove("SIGNALBOX_CONFIG")
            .env_remove("SIGNALBOX_SCHEDULER")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start signalbox serve");
        let mut server = Server { name: opts.name.clone(), port, base: format!("http://127.0.0.1:{port}"), child: Some(child), log };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("server {} exited with {status} before it was ready; log:\n{}", self.name, self.log_tail());
                }
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).timeout(Duration::from_secs(2)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server {} never became ready; log:\n{}", self.name, self.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL (std's `Child::kill` sends SIGKILL on Unix) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    /// The last lines of this process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A JSON client for one server, authenticated as the bootstrap admin.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Api { base: base.to_string(), client }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let mut req = self.client.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// A request that must succeed (2xx); returns the body.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.send(method.clone(), path, body).await.unwrap_or_else(|e| panic!("{e}"));
        assert!((200..300).contains(&status), "{method} {path}: expected success, got {status}: {body}");
        body
    }

    pub async fn get(&self, path: &str) -> Value {
        self.ok(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.ok(reqwest::Method::PUT, path, Some(body)).await
    }
}

/// What [`seed_release`] created.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub release: String,
    pub service: String,
    pub environment: String,
    pub digest: String,
}

/// A domain, team, service, one environment, an artifact and a release pinning it.
pub async fn seed_release(api: &Api, service: &str, environment: &str) -> Seeded {
    api.post("/api/v1/domains", json!({"name": "payments"})).await;
    api.post("/api/v1/teams", json!({"name": "checkout-squad", "domain": "payments"})).await;
    api.post("/api/v1/services", json!({"name": service, "team": "checkout-squad", "criticality": "customer_facing"})).await;
    api.post("/api/v1/environments", json!({"name": environment, "tier": "staging", "position": 10})).await;
    let digest = format!("sha256:{}", "0b31".repeat(16));
    api.post("/api/v1/artifacts", json!({"service": service, "version": "1.4.0", "digest": digest})).await;
    let release = api
        .post(
            "/api/v1/releases",
            json!({"name": format!("{service} 1.4.0"), "domain": "payments", "components": [format!("{service}@1.4.0")]}),
        )
        .await;
    let key = release["key"].as_str().unwrap_or_else(|| panic!("release without a key: {release}")).to_string();
    Seeded { release: key, service: service.into(), environment: environment.into(), digest }
}

/// Sets the service's promotion path to one stage and promotes the release into it; returns
/// the deployment id.
pub async fn promote_with(api: &Api, seeded: &Seeded, stage: Value) -> String {
    let mut stage = stage;
    stage["environment"] = json!(seeded.environment);
    api.put("/api/v1/promotion-paths", json!({"name": "e2e", "service": seeded.service, "stages": [stage]})).await;
    let promoted = api
        .post(&format!("/api/v1/releases/{}/promote", seeded.release), json!({"environment": seeded.environment, "reason": "e2e"}))
        .await;
    let deployments = promoted["deployments"].as_array().unwrap_or_else(|| panic!("promotion without deployments: {promoted}"));
    assert_eq!(deployments.len(), 1, "one component, one deployment: {promoted}");
    deployments[0]["id"].as_str().expect("deployment id").to_string()
}

/// Polls the deployment until `done` accepts it; Err carries the last state seen.
pub async fn wait_for_deployment(api: &Api, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match api.send(reqwest::Method::GET, &format!("/api/v1/deployments/{id}"), None).await {
            Ok((200, d)) => {
                if done(&d) {
                    return Ok(d);
                }
                last = d;
            }
            Ok((status, body)) => last = json!({"status": status, "body": body}),
            Err(e) => last = json!({"error": e}),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "deployment {id} did not reach the expected state within {} s; last seen:\n{}",
                timeout.as_secs(),
                serde_json::to_string_pretty(&last).unwrap_or_default()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn phase(d: &Value) -> &str {
    d["rollout"]["phase"].as_str().unwrap_or("")
}

/// Finished, or paused (these tests' plans have no pause steps unless they say so).
pub fn settled(d: &Value) -> bool {
    matches!(phase(d), "succeeded" | "rolled_back" | "aborted" | "failed" | "paused")
}

pub fn finished(d: &Value) -> bool {
    matches!(phase(d), "succeeded" | "rolled_back" | "aborted" | "failed")
}

/// Every step record of the rollout's history: (step, generation) appears once, steps in order.
pub fn assert_history_once(d: &Value) {
    let history = d["rollout"]["history"].as_array().cloned().unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut last: Option<(u64, u64)> = None;
    for record in &history {
        let at = (record["generation"].as_u64().unwrap_or(0), record["step"].as_u64().unwrap_or(0));
        assert!(seen.insert(at), "step {at:?} was applied twice; history:\n{}", serde_json::to_string_pretty(&history).unwrap_or_default());
        if let Some(prev) = last {
            assert!(at > prev, "history out of order at {at:?}:\n{}", serde_json::to_string_pretty(&history).unwrap_or_default());
        }
        last = Some(at);
    }
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver.

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: usize,
    /// `webhook-id`.
    pub key: String,
    /// `Idempotency-Key` (must equal `webhook-id`).
    pub idempotency_key: String,
    /// Label of the secret that verified the signature; None when none did (answered 401).
    pub signer: Option<String>,
    pub deployment: String,
    pub action: String,
    pub step: u64,
    pub weight: u64,
    pub received: Instant,
    pub answered: bool,
}

impl Delivery {
    /// The logical action: (deployment, action, step).
    pub fn logical(&self) -> (String, String, u64) {
        (self.deployment.clone(), self.action.clone(), self.step)
    }
}

#[derive(Default)]
struct ReceiverState {
    deliveries: Vec<Delivery>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<ReceiverState>>,
    secrets: Arc<Vec<(String, String)>>,
    delay: Duration,
}

/// An HTTP receiver on 127.0.0.1 for the webhook driver.
pub struct Receiver {
    pub url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// `secrets`: (label, whsec_…) pairs; a delivery verified by one is attributed to its label.
    /// Every delivery is answered after `delay` with `{"status": "completed", "deployed_digest"}`.
    pub async fn start(secrets: &[(&str, &str)], delay: Duration) -> Receiver {
        let shared = Shared {
            state: Arc::new(Mutex::new(ReceiverState::default())),
            secrets: Arc::new(secrets.iter().map(|(l, s)| (l.to_string(), s.to_string())).collect()),
            delay,
        };
        let app = Router::new().route("/hook", post(hook)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url: format!("http://{addr}/hook"), shared, server }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner).deliveries.clone()
    }

    /// Deliveries received and not answered yet.
    pub fn in_flight(&self) -> Vec<Delivery> {
        self.deliveries().into_iter().filter(|d| !d.answered).collect()
    }

    /// Waits for a delivery still being answered, received less than `fresh` ago, that `pick`
    /// accepts.
    pub async fn wait_in_flight(&self, timeout: Duration, fresh: Duration, pick: impl Fn(&Delivery) -> bool) -> Option<Delivery> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(d) = self.in_flight().into_iter().find(|d| d.received.elapsed() < fresh && pick(d)) {
                return Some(d);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    pub fn describe(&self) -> String {
        self.deliveries()
            .iter()
            .map(|d| {
                format!(
                    "#{} key={} signer={:?} {} step {} weight {} answered={}",
                    d.seq, d.key, d.signer, d.action, d.step, d.weight, d.answered
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let signer = shared
        .secrets
        .iter()
        .find(|(_, secret)| signalbox_drivers::webhook::verify(secret, &headers, &body, Duration::from_secs(300)).is_ok())
        .map(|(label, _)| label.clone());
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let content = &event["subject"]["content"];
    let seq = {
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = state.deliveries.len();
        state.deliveries.push(Delivery {
            seq,
            key: header("webhook-id"),
            idempotency_key: header("idempotency-key"),
            signer: signer.clone(),
            deployment: content["deploymentId"].as_str().unwrap_or_default().to_string(),
            action: content["action"].as_str().unwrap_or_default().to_string(),
            step: content["step"].as_u64().unwrap_or(u64::MAX),
            weight: content["weight"].as_u64().unwrap_or(u64::MAX),
            received: Instant::now(),
            answered: false,
        });
        seq
    };
    let json = [("content-type", "application/json")];
    if signer.is_none() {
        mark_answered(&shared, seq);
        return (StatusCode::UNAUTHORIZED, json, json!({"error": "bad signature"}).to_string());
    }
    tokio::time::sleep(shared.delay).await;
    mark_answered(&shared, seq);
    let digest = content["artifact"]["digest"].as_str().unwrap_or_default();
    (StatusCode::OK, json, json!({"status": "completed", "deployed_digest": digest}).to_string())
}

fn mark_answered(shared: &Shared, seq: usize) {
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(d) = state.deliveries.get_mut(seq) {
        d.answered = true;
    }
}

/// The heart of "nothing sent twice": every delivery is signed, `webhook-id` equals
/// `Idempotency-Key`, each logical action (deployment, action, step) reached the receiver
/// under exactly one key (in the documented `<deployment>/<generation>/<step>/<action>` shape),
/// each key names one logical action, and the logical actions are exactly `expected`
/// ((action, step) pairs).
pub fn assert_each_action_under_one_key(deliveries: &[Delivery], expected: &[(&str, u64)], context: &str) {
    let listing = || {
        deliveries
            .iter()
            .map(|d| format!("#{} key={} signer={:?} {} step {} weight {}", d.seq, d.key, d.signer, d.action, d.step, d.weight))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for d in deliveries {
        assert!(d.signer.is_some(), "delivery #{} failed signature verification\n{}\n{context}", d.seq, listing());
        assert_eq!(d.key, d.idempotency_key, "webhook-id and Idempotency-Key differ on #{}\n{context}", d.seq);
        let parts: Vec<&str> = d.key.rsplitn(4, '/').collect();
        assert_eq!(parts.len(), 4, "key {} is not <deployment>/<generation>/<step>/<action>\n{context}", d.key);
        let (action, step, generation, deployment) = (parts[0], parts[1], parts[2], parts[3]);
        assert_eq!(deployment, d.deployment, "key {} names another deployment than the body\n{context}", d.key);
        assert_eq!(action, d.action, "key {} names another action than the body ({})\n{context}", d.key, d.action);
        if action != "rollback" {
            assert_eq!(step, d.step.to_string(), "key {} names another step than the body ({})\n{context}", d.key, d.step);
        }
        assert!(generation.parse::<u32>().is_ok(), "key {} has no generation\n{context}", d.key);
    }
    let mut keys_per_action: BTreeMap<(String, String, u64), BTreeSet<String>> = BTreeMap::new();
    let mut actions_per_key: BTreeMap<String, BTreeSet<(String, String, u64)>> = BTreeMap::new();
    for d in deliveries {
        keys_per_action.entry(d.logical()).or_default().insert(d.key.clone());
        actions_per_key.entry(d.key.clone()).or_default().insert(d.logical());
    }
    for (action, keys) in &keys_per_action {
        assert_eq!(keys.len(), 1, "{action:?} was sent under {} different keys: {keys:?}\n{}\n{context}", keys.len(), listing());
    }
    for (key, actions) in &actions_per_key {
        assert_eq!(actions.len(), 1, "key {key} was used for several actions: {actions:?}\n{}\n{context}", listing());
    }
    let got: BTreeSet<(String, u64)> = keys_per_action.keys().map(|(_, a, s)| (a.clone(), *s)).collect();
    let want: BTreeSet<(String, u64)> = expected.iter().map(|(a, s)| (a.to_string(), *s)).collect();
    assert_eq!(got, want, "the receiver saw other actions than the plan's\n{}\n{context}", listing());
}

/// The receiver-side effect count: how many distinct keys were applied per (action, step).
pub fn applied_per_action(deliveries: &[Delivery]) -> BTreeMap<(String, u64), usize> {
    let mut keys: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    for d in deliveries.iter().filter(|d| d.signer.is_some()) {
        keys.entry((d.action.clone(), d.step)).or_default().insert(d.key.clone());
    }
    keys.into_iter().map(|(k, v)| (k, v.len())).collect()
}

/// `signalbox audit verify` with the given source arguments; panics with its output on failure.
pub fn audit_verify(args: &[&str]) {
    let out = bin().args(["audit", "verify"]).args(args).output().expect("run signalbox audit verify");
    assert!(
        out.status.success(),
        "audit verify {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The canary of the crash and replica tests: set_weight 10, pause 1s, set_weight 50, pause
/// 1s, set_weight 100, driven by the webhook at `url` with the secret in `secret_env`. One
/// attempt of at most 3 s keeps the takeover lease short (3 × 1 + backoff + 10 s, see
/// `lease_for_action`) while leaving the receiver's 1.5 s answers a wide margin on a busy machine.
pub fn webhook_canary_stage(url: &str, secret_env: &str) -> Value {
    json!({
        "strategy": {"type": "canary", "steps": [
            {"set_weight": 10},
            {"pause": {"duration_seconds": 1}},
            {"set_weight": 50},
            {"pause": {"duration_seconds": 1}},
            {"set_weight": 100}
        ]},
        "driver": {"type": "webhook", "url": url, "secret": format!("env:{secret_env}"), "timeout_seconds": 3, "max_attempts": 1}
    })
}

/// The plan's driver actions as (action, step): deploy, set_weight 10 / 50 / 100, finalize.
pub const CANARY_ACTIONS: [(&str, u64); 5] = [("deploy", 0), ("set_weight", 1), ("set_weight", 3), ("set_weight", 5), ("finalize", 6)];
