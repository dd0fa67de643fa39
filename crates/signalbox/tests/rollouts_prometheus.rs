//! Issue 6, "Tests that must exist": a real Prometheus (the Debian package `prometheus`, started
//! by `signalbox_drivers::testing::PrometheusHarness`) scrapes a test service whose error rate
//! and latency each test sets; the real `signalbox serve` binary, pointed at it through
//! `[rollouts] prometheus_url` in its config file, runs a canary on the simulated driver and
//! judges it from PromQL:
//! a healthy canary promotes; an error rate above 1 % rolls back; a latency spike rolls back; a
//! metric without data follows its `no_data` rule (`fail` rolls back, `pass` succeeds); an
//! inconclusive value pauses for a person.
//!
//! Without Prometheus these tests fail with the harness's install message; they never skip.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use signalbox_drivers::testing::PrometheusHarness;

/// Share of requests answered 500 over the last 5 s, from the harness's target.
const ERROR_RATIO: &str = r#"sum(rate(http_requests_total{code="500"}[5s])) / sum(rate(http_requests_total[5s]))"#;
/// The target's p99 latency gauge, in seconds.
const LATENCY_P99: &str = "max(latency_p99_seconds)";
/// A series the target never exposes: an empty vector, i.e. no data.
const NO_SUCH_SERIES: &str = r#"sum(rate(http_requests_total{code="503"}[5s]))"#;

const SETTLE: Duration = Duration::from_secs(90);

/// One test's world: Prometheus and its target, a server configured to use it, a release.
struct World {
    harness: PrometheusHarness,
    server: Server,
    api: Api,
    seeded: Seeded,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let harness = PrometheusHarness::start().await.unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("signalbox.toml");
    std::fs::write(&config, format!("[rollouts]\nprometheus_url = \"{}\"\n", harness.address())).expect("write the config");
    let server = Server::start(&ServerOptions {
        name: "signalbox".into(),
        backend: Backend::Sqlite(data),
        config: Some(config),
        env: vec![],
        log_dir: dir.path().to_path_buf(),
    })
    .await;
    let api = server.api();
    let seeded = seed_release(&api, "checkout-api", "staging").await;
    World { harness, server, api, seeded, _dir: dir }
}

/// A Prometheus metric measured 3 times, 2 s apart.
fn metric(name: &str, query: &str, success: &str, failure: &str, no_data: &str) -> Value {
    json!({
        "name": name,
        "provider": {"type": "prometheus", "query": query},
        "interval_seconds": 2,
        "count": 3,
        "success_condition": success,
        "failure_condition": failure,
        "no_data": no_data
    })
}

/// Canary on the simulated fleet: set_weight 20, analysis of every metric, (set_weight 100,
/// finalize). Plan: deploy 0, set_weight 1, analysis 2, set_weight 3, finalize 4.
fn canary(metrics: Vec<Value>) -> Value {
    let names: Vec<Value> = metrics.iter().map(|m| m["name"].clone()).collect();
    json!({
        "strategy": {"type": "canary", "steps": [{"set_weight": 20}, {"analysis": {"metrics": names}}]},
        "driver": {"type": "simulated", "fleet": "checkout-staging"},
        "metrics": metrics
    })
}

impl World {
    /// Waits until Prometheus answers `query` with one value within `tolerance` of `want`
    /// (the rate window has filled with the target's current numbers).
    async fn settle(&self, query: &str, want: f64, tolerance: f64) {
        self.harness
            .wait_for(query, Duration::from_secs(60), |v| v.len() == 1 && (v[0] - want).abs() <= tolerance)
            .await
            .unwrap_or_else(|e| panic!("Prometheus never showed {want} for {query}: {e}"));
    }

    /// Promotes with `stage` and waits until the rollout has finished or paused.
    async fn rollout(&self, stage: Value) -> Value {
        let id = promote_with(&self.api, &self.seeded, stage).await;
        wait_for_deployment(&self.api, &id, SETTLE, settled)
            .await
            .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", self.server.log_tail()))
    }
}

/// The analysis record of the rollout: from the history (finished) or the current state (paused).
fn analysis(d: &Value) -> Value {
    if !d["rollout"]["analysis"].is_null() {
        return d["rollout"]["analysis"].clone();
    }
    d["rollout"]["history"]
        .as_array()
        .and_then(|h| h.iter().rev().find(|r| !r["analysis"].is_null()))
        .map(|r| r["analysis"].clone())
        .unwrap_or_else(|| panic!("no analysis in the rollout:\n{}", pretty(d)))
}

fn measurements(d: &Value, metric: &str) -> Vec<Value> {
    let a = analysis(d);
    a["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == metric))
        .and_then(|m| m["measurements"].as_array().cloned())
        .unwrap_or_else(|| panic!("no measurements of {metric}:\n{}", pretty(d)))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The text shows `result = [x]` (or `result = x`) with x within 0.005 of `want`.
#[track_caller]
fn assert_shows_value(text: &str, want: f64) {
    let shown = text.split_once("result = ").map(|(_, rest)| {
        rest.trim_start_matches('[')
            .chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
            .collect::<String>()
    });
    let value = shown.as_deref().and_then(|v| v.parse::<f64>().ok());
    assert!(value.is_some_and(|v| (v - want).abs() < 0.005), "the text shows the measured value (~{want}): {text}");
}

fn first_value(m: &Value) -> f64 {
    m["values"][0].as_f64().unwrap_or_else(|| panic!("a measurement without a value: {m}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_promotes() {
    let w = world().await;
    w.harness.target.set_error_rate(0.0);
    w.settle(ERROR_RATIO, 0.0, 0.0001).await;
    let d = w.rollout(canary(vec![metric("error-rate", ERROR_RATIO, "result < 0.01", "result >= 0.01", "fail")])).await;
    assert_eq!(phase(&d), "succeeded", "{}", pretty(&d));
    assert_eq!(d["rollout"]["weight"], 100, "{}", pretty(&d));
    let ms = measurements(&d, "error-rate");
    assert_eq!(ms.len(), 3, "count 3: three measurements\n{}", pretty(&d));
    for m in &ms {
        assert_eq!(m["outcome"], "successful", "{}", pretty(m));
        assert_eq!(m["condition"], "result < 0.01", "{}", pretty(m));
        assert_eq!(m["no_data"], false, "{}", pretty(m));
        assert!(first_value(m).abs() < 0.001, "the healthy error ratio is ~0: {}", pretty(m));
    }
    assert_history_once(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_rate_above_one_percent_rolls_back_and_shows_its_numbers() {
    let w = world().await;
    w.harness.target.set_error_rate(0.05);
    w.settle(ERROR_RATIO, 0.05, 0.002).await;
    let d = w.rollout(canary(vec![metric("error-rate", ERROR_RATIO, "result < 0.01", "result >= 0.01", "fail")])).await;
    assert_eq!(phase(&d), "rolled_back", "{}", pretty(&d));
    let failure = d["rollout"]["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("error-rate"), "the failure names the metric: {failure}");
    assert!(failure.contains("result >= 0.01"), "the failure names the condition: {failure}");
    assert_shows_value(failure, 0.05);
    let ms = measurements(&d, "error-rate");
    let failed = ms.iter().find(|m| m["outcome"] == "failed").unwrap_or_else(|| panic!("no failed measurement:\n{}", pretty(&d)));
    assert!((first_value(failed) - 0.05).abs() < 0.005, "the measured ratio is ~0.05: {}", pretty(failed));
    assert_eq!(failed["condition"], "result >= 0.01", "{}", pretty(failed));
    let explanation = failed["explanation"].as_str().unwrap_or_default();
    assert!(explanation.contains("result >= 0.01"), "explained with its condition: {explanation}");
    assert_shows_value(explanation, 0.05);
    assert!(failed["at"].is_string(), "the time is recorded: {}", pretty(failed));
    // Rolled back by the driver, with recovery timestamps.
    assert_eq!(d["rollout"]["action"]["action"], "rollback", "{}", pretty(&d));
    for field in ["detected_at", "rollback_requested_at", "restored_at"] {
        assert!(d["rollout"][field].is_string(), "{field} is recorded:\n{}", pretty(&d));
    }
    assert_eq!(d["rollout"]["weight"], 0, "traffic is back on the stable side\n{}", pretty(&d));
    assert_history_once(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_spike_rolls_back() {
    let w = world().await;
    w.harness.target.set_error_rate(0.0);
    w.harness.target.set_latency_p99(0.8);
    w.settle(ERROR_RATIO, 0.0, 0.0001).await;
    w.settle(LATENCY_P99, 0.8, 0.0001).await;
    let d = w
        .rollout(canary(vec![
            metric("error-rate", ERROR_RATIO, "result < 0.01", "result >= 0.01", "fail"),
            metric("latency-p99", LATENCY_P99, "result < 0.3", "result >= 0.3", "fail"),
        ]))
        .await;
    assert_eq!(phase(&d), "rolled_back", "{}", pretty(&d));
    let failure = d["rollout"]["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("latency-p99"), "the failure names the latency metric: {failure}");
    assert!(!failure.contains("error-rate:"), "the healthy error rate is not blamed: {failure}");
    let ms = measurements(&d, "latency-p99");
    let failed = ms.iter().find(|m| m["outcome"] == "failed").unwrap_or_else(|| panic!("no failed latency measurement:\n{}", pretty(&d)));
    assert!((first_value(failed) - 0.8).abs() < 0.001, "{}", pretty(failed));
    assert_eq!(failed["condition"], "result >= 0.3", "{}", pretty(failed));
    assert_history_once(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_without_data_and_rule_fail_rolls_back() {
    let w = world().await;
    w.settle(ERROR_RATIO, 0.0, 0.0001).await;
    let d = w.rollout(canary(vec![metric("server-unavailable", NO_SUCH_SERIES, "result < 1", "result >= 1", "fail")])).await;
    assert_eq!(phase(&d), "rolled_back", "{}", pretty(&d));
    let ms = measurements(&d, "server-unavailable");
    let m = &ms[0];
    assert_eq!(m["no_data"], true, "{}", pretty(m));
    assert_eq!(m["outcome"], "failed", "{}", pretty(m));
    assert_eq!(m["condition"], "no_data: fail", "{}", pretty(m));
    let failure = d["rollout"]["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("server-unavailable") && failure.contains("no_data"), "{failure}");
    assert_history_once(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_without_data_and_rule_pass_succeeds() {
    let w = world().await;
    w.settle(ERROR_RATIO, 0.0, 0.0001).await;
    let d = w.rollout(canary(vec![metric("server-unavailable", NO_SUCH_SERIES, "result < 1", "result >= 1", "pass")])).await;
    assert_eq!(phase(&d), "succeeded", "{}", pretty(&d));
    let ms = measurements(&d, "server-unavailable");
    assert_eq!(ms.len(), 3, "{}", pretty(&d));
    for m in &ms {
        assert_eq!(m["no_data"], true, "{}", pretty(m));
        assert_eq!(m["outcome"], "successful", "{}", pretty(m));
        assert_eq!(m["condition"], "no_data: pass", "{}", pretty(m));
    }
    assert_history_once(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconclusive_value_pauses_for_a_person() {
    let w = world().await;
    w.harness.target.set_error_rate(0.03);
    w.settle(ERROR_RATIO, 0.03, 0.002).await;
    let d = w.rollout(canary(vec![metric("error-rate", ERROR_RATIO, "result < 0.01", "result > 0.05", "fail")])).await;
    assert_eq!(phase(&d), "paused", "{}", pretty(&d));
    let pause = &d["rollout"]["pause"];
    assert_eq!(pause["reason"], "inconclusive", "{}", pretty(&d));
    assert!(pause["until"].is_null(), "waits for a person: {}", pretty(pause));
    assert_eq!(d["rollout"]["weight"], 20, "traffic stays at the canary weight\n{}", pretty(&d));
    let ms = measurements(&d, "error-rate");
    let m = ms.iter().find(|m| m["outcome"] == "inconclusive").unwrap_or_else(|| panic!("no inconclusive measurement:\n{}", pretty(&d)));
    assert!((first_value(m) - 0.03).abs() < 0.005, "{}", pretty(m));
    let explanation = m["explanation"].as_str().unwrap_or_default();
    assert!(
        explanation.contains("result < 0.01") && explanation.contains("result > 0.05"),
        "both conditions are named as false: {explanation}"
    );

    // It stays paused (nothing decides for the person) ...
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = w.api.get(&format!("/api/v1/deployments/{}", d["id"].as_str().unwrap_or_default())).await;
    assert_eq!(phase(&still), "paused", "{}", pretty(&still));
    // ... until a person resumes: the inconclusive analysis is accepted and the rollout finishes.
    let id = d["id"].as_str().unwrap_or_default().to_string();
    w.api.post(&format!("/api/v1/deployments/{id}/control"), json!({"action": "resume", "reason": "0.03 is acceptable today"})).await;
    let done = wait_for_deployment(&w.api, &id, SETTLE, finished).await.unwrap_or_else(|e| panic!("{e}\n{}", w.server.log_tail()));
    assert_eq!(phase(&done), "succeeded", "{}", pretty(&done));
    assert_history_once(&done);
}
