//! Against a real Prometheus (`signalbox_drivers::testing`). Fails, never skips, when Prometheus
//! is not installed.

use std::time::Duration;

use signalbox_drivers::providers::{prometheus_query, ProviderReading};
use signalbox_drivers::testing::{HarnessError, PrometheusHarness};

const ERROR_RATIO: &str = r#"sum(rate(http_requests_total{code="500"}[5s])) / sum(rate(http_requests_total[5s]))"#;

#[tokio::test]
async fn prometheus_queries_read_what_the_target_serves() {
    let harness = PrometheusHarness::start().await.unwrap_or_else(|e| panic!("{e}"));

    harness.target.set_error_rate(0.25);
    let values = harness.wait_for(ERROR_RATIO, Duration::from_secs(60), |v| v.len() == 1 && (v[0] - 0.25).abs() < 0.005).await;
    values.unwrap_or_else(|e| panic!("{e}"));
    match prometheus_query(harness.client(), harness.address(), ERROR_RATIO, Duration::from_secs(10)).await {
        ProviderReading::Values { values, source } => {
            assert!((values[0] - 0.25).abs() < 0.05, "{values:?}");
            assert!(source.contains(ERROR_RATIO), "{source}");
        }
        other => panic!("{other:?}"),
    }

    harness.target.set_latency_p99(0.35);
    harness.wait_for("latency_p99_seconds", Duration::from_secs(30), |v| v == [0.35]).await.unwrap_or_else(|e| panic!("{e}"));
    harness.target.set_gauge("queue_depth", 7.0).unwrap();
    harness.wait_for("queue_depth", Duration::from_secs(30), |v| v == [7.0]).await.unwrap_or_else(|e| panic!("{e}"));

    let no_data = harness.query(r#"http_requests_total{code="404"}"#).await;
    assert!(matches!(no_data, ProviderReading::NoData { .. }), "{no_data:?}");

    match harness.query("sum(rate(http_requests_total[5s]").await {
        ProviderReading::Error { message } => {
            assert!(message.starts_with("Prometheus rejected the query (bad_data, HTTP 400): "), "{message}");
            assert!(message.contains("parse error"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match harness.query("http_requests_total[5s]").await {
        ProviderReading::Error { message } => assert!(message.contains("range vector"), "{message}"),
        other => panic!("{other:?}"),
    }
    match harness.query("scalar(sum(latency_p99_seconds))").await {
        ProviderReading::Values { values, .. } => assert_eq!(values, vec![0.35]),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_prometheus_is_an_error_reading() {
    let address = crate::support::closed_port_url().trim_end_matches("/hook").to_owned();
    match prometheus_query(&reqwest::Client::new(), &address, "up", Duration::from_secs(5)).await {
        ProviderReading::Error { message } => assert!(message.contains("could not be reached"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_missing_prometheus_fails_with_install_instructions() {
    let err = PrometheusHarness::start_with(std::path::Path::new("/nonexistent/prometheus")).await.unwrap_err();
    assert!(matches!(err, HarnessError::NotInstalled(_)));
    assert!(err.to_string().contains("apt-get install prometheus"), "{err}");
}
