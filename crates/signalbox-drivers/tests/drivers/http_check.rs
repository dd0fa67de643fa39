use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use signalbox_drivers::providers::{http_check, ProviderReading};

use crate::support::closed_port_url;

async fn service() -> String {
    let app = Router::new()
        .route("/ok", get(|| async { "status: healthy" }))
        .route("/fail", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "status: healthy"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn http_checks() {
    let base = service().await;
    let client = reqwest::Client::new();
    let check = |path: &str, status: u16, contains: Option<&'static str>, max: Option<f64>, timeout: u64| {
        let client = client.clone();
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{base}{path}") };
        async move { http_check(&client, reqwest::Method::GET, &url, status, contains, max, Duration::from_millis(timeout)).await }
    };

    match check("/ok", 200, Some("healthy"), Some(5000.0), 5000).await {
        ProviderReading::Values { values, source } => {
            assert_eq!(values.len(), 1);
            assert!(values[0] >= 0.0);
            assert!(source.starts_with("GET http://"), "{source}");
        }
        other => panic!("{other:?}"),
    }
    let failed = |reading: ProviderReading, needle: &str| match reading {
        ProviderReading::CheckFailed { message, latency_ms: Some(_) } => assert!(message.contains(needle), "{message} lacks {needle}"),
        other => panic!("{other:?}"),
    };
    failed(check("/fail", 200, None, None, 5000).await, "answered HTTP 503, expected 200");
    failed(check("/ok", 200, Some("ready"), None, 5000).await, "does not contain");
    failed(check("/slow", 200, None, Some(100.0), 5000).await, "more than the 100 ms allowed");

    for (reading, needle) in [
        (check(&closed_port_url(), 200, None, None, 5000).await, "could not be reached"),
        (check("/slow", 200, None, None, 50).await, "did not answer within 50 ms"),
        (check("not a url", 200, None, None, 50).await, "not a URL"),
    ] {
        match reading {
            ProviderReading::Error { message } => assert!(message.contains(needle), "{message} lacks {needle}"),
            other => panic!("{other:?}"),
        }
    }
}
