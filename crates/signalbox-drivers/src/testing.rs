//! Test harness: a real Prometheus scraping a target whose numbers the test controls.
//!
//! Enabled by the cargo feature `testing`; other crates take it as a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! signalbox-drivers = { workspace = true, features = ["testing"] }
//! ```
//!
//! ```no_run
//! # async fn demo() {
//! use signalbox_drivers::testing::PrometheusHarness;
//! let harness = PrometheusHarness::start().await.unwrap_or_else(|e| panic!("{e}"));
//! harness.target.set_error_rate(0.25);
//! let query = r#"sum(rate(http_requests_total{code="500"}[10s])) / sum(rate(http_requests_total[10s]))"#;
//! let values = harness.wait_for(query, std::time::Duration::from_secs(30), |v| (v[0] - 0.25).abs() < 0.01).await;
//! // Give harness.address() to the code under test as its Prometheus address.
//! # }
//! ```
//!
//! Why a real Prometheus rather than a fake `/api/v1/query`: PromQL semantics (rate windows,
//! staleness, empty vectors, parse errors) are exactly what rollout analysis must get right.
//!
//! The target ([`MetricsTarget`]) serves `/metrics` on 127.0.0.1 with
//! `http_requests_total{code="200"|"500"}` (counters that grow at `request_rate` per second,
//! `error_rate` of it with code 500), `latency_p99_seconds` (a gauge), and any gauges added with
//! [`MetricsTarget::set_gauge`]. Prometheus scrapes it every second as job
//! `signalbox-test-target` and evaluates every second.
//!
//! The binary is `$SIGNALBOX_PROMETHEUS_BIN`, else `prometheus` on `PATH`, else
//! `/usr/bin/prometheus`. When none exists, [`PrometheusHarness::start`] fails with a message
//! saying how to install it: these tests must fail loudly, never skip.
//! Each harness has its own port, config and data directory (removed on drop); the process is
//! killed when the harness is dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::providers::{prometheus_query, ProviderReading};

/// The scrape job name of the target in the generated `prometheus.yml`.
pub const TARGET_JOB: &str = "signalbox-test-target";
const START_ATTEMPTS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "Prometheus is not installed (looked for {0}); these tests need a real Prometheus. Install it with \
         `sudo apt-get install prometheus` (Debian/Ubuntu), or set SIGNALBOX_PROMETHEUS_BIN to a prometheus binary"
    )]
    NotInstalled(String),
    #[error("the Prometheus test harness could not start: {0}")]
    Start(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// A `/metrics` endpoint whose numbers the test sets.
#[derive(Debug)]
pub struct MetricsTarget {
    state: Arc<Mutex<TargetState>>,
    address: SocketAddr,
    server: JoinHandle<()>,
}

#[derive(Debug)]
struct TargetState {
    request_rate: f64,
    error_rate: f64,
    latency_p99_seconds: f64,
    ok_total: f64,
    error_total: f64,
    last: Instant,
    gauges: BTreeMap<String, f64>,
}

impl TargetState {
    /// Grows the counters for the time since the last update, at the current rates.
    fn advance(&mut self) {
        let now = Instant::now();
        let seconds = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let requests = self.request_rate * seconds;
        self.error_total += requests * self.error_rate;
        self.ok_total += requests * (1.0 - self.error_rate);
    }

    fn render(&mut self) -> String {
        self.advance();
        let mut text = String::new();
        let _ = writeln!(text, "# HELP http_requests_total Requests served, by status code.");
        let _ = writeln!(text, "# TYPE http_requests_total counter");
        let _ = writeln!(text, "http_requests_total{{code=\"200\"}} {}", self.ok_total);
        let _ = writeln!(text, "http_requests_total{{code=\"500\"}} {}", self.error_total);
        let _ = writeln!(text, "# HELP latency_p99_seconds The 99th percentile of request latency.");
        let _ = writeln!(text, "# TYPE latency_p99_seconds gauge");
        let _ = writeln!(text, "latency_p99_seconds {}", self.latency_p99_seconds);
        for (name, value) in &self.gauges {
            let _ = writeln!(text, "# TYPE {name} gauge");
            let _ = writeln!(text, "{name} {value}");
        }
        text
    }
}

fn lock(state: &Mutex<TargetState>) -> std::sync::MutexGuard<'_, TargetState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MetricsTarget {
    /// Serves `/metrics` on 127.0.0.1 (a free port): 100 requests/s, no errors, p99 0.1 s.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(TargetState {
            request_rate: 100.0,
            error_rate: 0.0,
            latency_p99_seconds: 0.1,
            ok_total: 0.0,
            error_total: 0.0,
            last: Instant::now(),
            gauges: BTreeMap::new(),
        }));
        let shared = Arc::clone(&state);
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let shared = Arc::clone(&shared);
                async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], lock(&shared).render()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics target stopped");
            }
        });
        Ok(MetricsTarget { state, address, server })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Share of requests answered 500 from now on (clamped to 0..=1).
    pub fn set_error_rate(&self, ratio: f64) {
        let mut state = lock(&self.state);
        state.advance();
        state.error_rate = if ratio.is_nan() { 0.0 } else { ratio.clamp(0.0, 1.0) };
    }

    /// Requests per second from now on (at least 0).
    pub fn set_request_rate(&self, per_second: f64) {
        let mut state = lock(&self.state);
        state.advance();
        state.request_rate = if per_second.is_nan() { 0.0 } else { per_second.max(0.0) };
    }

    /// The `latency_p99_seconds` gauge.
    pub fn set_latency_p99(&self, seconds: f64) {
        lock(&self.state).latency_p99_seconds = seconds;
    }

    /// Any other gauge without labels; `name` must be a Prometheus metric name.
    pub fn set_gauge(&self, name: &str, value: f64) -> Result<(), String> {
        let mut chars = name.chars();
        let valid_start = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
        if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return Err(format!("{name:?} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"));
        }
        if matches!(name, "http_requests_total" | "latency_p99_seconds") {
            return Err(format!("{name} is managed by the target; use its own setter"));
        }
        lock(&self.state).gauges.insert(name.to_owned(), value);
        Ok(())
    }
}

impl Drop for MetricsTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A Prometheus process scraping a [`MetricsTarget`] every second.
#[derive(Debug)]
pub struct PrometheusHarness {
    // Field order is drop order: the process goes before its data directory.
    process: Child,
    pub target: MetricsTarget,
    address: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl PrometheusHarness {
    /// Starts the target and Prometheus, and waits until Prometheus has scraped the target once.
    pub async fn start() -> Result<Self, HarnessError> {
        let mut binary = find_binary();
        if !binary.is_file() && std::env::var_os("SIGNALBOX_PROMETHEUS_BIN").is_none() {
            // The project installs what its tests need: Prometheus comes from the Debian
            // registry when this runs as root with apt-get (CI and fresh machines).
            install_from_debian().await;
            binary = find_binary();
        }
        Self::start_with(&binary).await
    }

    /// [`PrometheusHarness::start`] with an explicit binary.
    pub async fn start_with(binary: &Path) -> Result<Self, HarnessError> {
        if !binary.is_file() {
            return Err(HarnessError::NotInstalled(binary.display().to_string()));
        }
        let target = MetricsTarget::start().await.map_err(|e| HarnessError::Start(format!("metrics target: {e}")))?;
        let client = reqwest::Client::builder().build().map_err(|e| HarnessError::Start(format!("HTTP client: {e}")))?;
        let dir = tempfile::Builder::new()
            .prefix("signalbox-prometheus-")
            .tempdir()
            .map_err(|e| HarnessError::Start(format!("temporary directory: {e}")))?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(target.address()))
            .map_err(|e| HarnessError::Start(format!("writing {}: {e}", config.display())))?;
        let (process, address) = start_process(binary, &client, dir.path(), &config).await?;
        let harness = PrometheusHarness { process, target, address, client, dir };
        harness.wait_for(&format!("up{{job=\"{TARGET_JOB}\"}}"), READY_TIMEOUT, |v| v.first() == Some(&1.0)).await?;
        Ok(harness)
    }

    /// The base URL to give to code under test, e.g. `http://127.0.0.1:41234`.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The temporary directory holding `prometheus.yml`, the data and `prometheus-*.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// [`prometheus_query`] against this Prometheus with a 10 s timeout.
    pub async fn query(&self, query: &str) -> ProviderReading {
        prometheus_query(&self.client, &self.address, query, Duration::from_secs(10)).await
    }

    /// Polls `query` until it yields values satisfying `accept` (e.g. once a new error rate has
    /// filled the rate window); the error carries the last reading.
    pub async fn wait_for(&self, query: &str, timeout: Duration, accept: impl Fn(&[f64]) -> bool) -> Result<Vec<f64>, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let reading = self.query(query).await;
            if let ProviderReading::Values { values, .. } = &reading {
                if accept(values) {
                    return Ok(values.clone());
                }
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout(format!(
                    "{query} did not give an accepted value within {} s; last reading: {reading:?}",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for PrometheusHarness {
    fn drop(&mut self) {
        // kill_on_drop would do it too; saying so here keeps the intent visible.
        let _ = self.process.start_kill();
    }
}

fn find_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIGNALBOX_PROMETHEUS_BIN") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("prometheus")).find(|candidate| candidate.is_file()))
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

fn config_yaml(target: SocketAddr) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: {TARGET_JOB}\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts Prometheus on a free port and waits for `/-/ready`, retrying when the port was taken
/// in between.
async fn start_process(binary: &Path, client: &reqwest::Client, dir: &Path, config: &Path) -> Result<(Child, String), HarnessError> {
    let mut last_error = String::new();
    for attempt in 1..=START_ATTEMPTS {
        let port = free_port().map_err(|e| HarnessError::Start(format!("finding a free port: {e}")))?;
        let address = format!("http://127.0.0.1:{port}");
        let log_path = dir.join(format!("prometheus-{attempt}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| HarnessError::Start(format!("creating {}: {e}", log_path.display())))?;
        let log_err = log.try_clone().map_err(|e| HarnessError::Start(format!("log file: {e}")))?;
        let mut process = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join(format!("data-{attempt}")).display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HarnessError::Start(format!("running {}: {e}", binary.display())))?;
        match wait_until_ready(&mut process, client, &address).await {
            Ok(()) => return Ok((process, address)),
            Err(reason) => {
                let _ = process.start_kill();
                let _ = process.wait().await;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                last_error = format!("{reason}; its log ends with:\n{}", crate::tail_chars(&log, 2000));
            }
        }
    }
    Err(HarnessError::Start(format!("Prometheus did not become ready in {START_ATTEMPTS} attempts: {last_error}")))
}

async fn wait_until_ready(process: &mut Child, client: &reqwest::Client, address: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let url = format!("{address}/-/ready");
    loop {
        if let Ok(Some(status)) = process.try_wait() {
            return Err(format!("Prometheus exited with {status}"));
        }
        if let Ok(response) = client.get(&url).timeout(Duration::from_secs(2)).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("{url} was not ready within {} s", READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `apt-get install prometheus`, once per process, when running as root on a Debian-like
/// system; failures are left to [`PrometheusHarness::start_with`] to report.
async fn install_from_debian() {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        if !root || !Path::new("/usr/bin/apt-get").is_file() {
            return;
        }
        eprintln!("prometheus is not installed: running apt-get install -y prometheus");
        let _ = tokio::process::Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .await;
    })
    .await;
}
