use std::time::{Duration, Instant};

use serde_json::Value;
use signalbox_drivers::webhook::{self, VerifyError};
use signalbox_drivers::{execute, ActionStatus, DriverAction, DriverError, DriverSpec, SimulatedFleets};

use crate::support::{closed_port_url, request, Receiver, Reply, SECRET};

fn spec(url: &str, timeout_seconds: u64, max_attempts: u32) -> DriverSpec {
    DriverSpec::Webhook { url: url.to_owned(), secret: SECRET.into(), timeout_seconds, max_attempts, backoff_ms: 10 }
}

#[tokio::test]
async fn delivery_is_signed_cdevent_and_returns_the_digest() {
    let receiver =
        Receiver::start(vec![Reply::new(200, r#"{"status":"completed","deployed_digest":"sha256:abc","message":"rolled"}"#)]).await;
    let req = request(DriverAction::SetWeight { weight: 25 }, "dep-42/step-2/set_weight");

    let outcome = execute(&spec(&receiver.url, 5, 3), &req, &SimulatedFleets::new()).await.unwrap();

    assert_eq!(outcome.status, ActionStatus::Completed);
    assert_eq!(outcome.deployed_digest.as_deref(), Some("sha256:abc"));
    assert_eq!(outcome.message.as_deref(), Some("rolled"));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let delivery = &seen[0];
    assert_eq!(webhook::verify(SECRET, &delivery.headers, &delivery.body, Duration::from_secs(300)), Ok(()));
    let mut tampered = delivery.body.clone();
    tampered.push(b' ');
    assert_eq!(webhook::verify(SECRET, &delivery.headers, &tampered, Duration::from_secs(300)), Err(VerifyError::NoMatchingSignature));
    let other_secret = "whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";
    assert_eq!(
        webhook::verify(other_secret, &delivery.headers, &delivery.body, Duration::from_secs(300)),
        Err(VerifyError::NoMatchingSignature)
    );

    let header = |name: &str| delivery.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header("webhook-id"), "dep-42/step-2/set_weight");
    assert_eq!(header("idempotency-key"), "dep-42/step-2/set_weight");
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("ce-specversion"), "1.0");
    assert_eq!(header("ce-type"), webhook::EVENT_TYPE);
    assert_eq!(header("ce-subject"), "dep-42");

    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["context"]["specversion"], "0.5.1");
    assert_eq!(body["context"]["id"], "dep-42/step-2/set_weight");
    assert_eq!(body["context"]["source"], "signalbox");
    assert_eq!(body["context"]["type"], "dev.cdeventsx.signalbox-deployment.requested.0.1.0");
    assert_eq!(header("ce-time"), body["context"]["timestamp"].as_str().unwrap());
    let content = &body["subject"]["content"];
    assert_eq!(body["subject"]["id"], "dep-42");
    assert_eq!(content["action"], "set_weight");
    assert_eq!(content["weight"], 25);
    assert_eq!(content["environment"]["id"], "production");
    let purl = content["artifactId"].as_str().unwrap();
    assert!(purl.starts_with(&format!("pkg:oci/api@sha256%3A{}", "2".repeat(64))), "{purl}");
    assert!(content["previousArtifactId"].as_str().unwrap().contains(&"1".repeat(64)));
    let typed: webhook::DeploymentEvent = serde_json::from_value(body).unwrap();
    assert_eq!(typed.subject.content.release, "2026.05.1");
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_webhook_id() {
    let receiver = Receiver::start(vec![Reply::new(500, "db down"), Reply::new(503, ""), Reply::new(200, "")]).await;
    let req = request(DriverAction::Deploy, "dep-42/step-1/deploy");

    let outcome = execute(&spec(&receiver.url, 5, 3), &req, &SimulatedFleets::new()).await.unwrap();

    assert_eq!((outcome.status, outcome.deployed_digest), (ActionStatus::Completed, None));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    for delivery in seen.iter() {
        assert_eq!(delivery.headers["webhook-id"], "dep-42/step-1/deploy");
        assert_eq!(delivery.body, seen[0].body, "the event (and its timestamp) must not change between retries");
        assert_eq!(webhook::verify(SECRET, &delivery.headers, &delivery.body, Duration::from_secs(300)), Ok(()));
    }
}

#[tokio::test]
async fn server_errors_give_up_after_max_attempts() {
    let receiver = Receiver::start(vec![Reply::new(502, "bad gateway")]).await;
    let err = execute(&spec(&receiver.url, 5, 2), &request(DriverAction::Deploy, "k"), &SimulatedFleets::new()).await.unwrap_err();
    assert_eq!(err, DriverError::ServerError { status: 502, body: "bad gateway".into() });
    assert_eq!(receiver.seen().len(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let receiver = Receiver::start(vec![Reply::new(422, "unknown service api"), Reply::new(200, "")]).await;
    let err = execute(&spec(&receiver.url, 5, 3), &request(DriverAction::Deploy, "k"), &SimulatedFleets::new()).await.unwrap_err();
    assert_eq!(err, DriverError::Rejected { status: 422, body: "unknown service api".into() });
    assert!(err.to_string().contains("not retried"), "{err}");
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_slow_receiver_times_out_after_the_configured_time() {
    let receiver = Receiver::start(vec![Reply { status: 200, body: String::new(), delay: Duration::from_secs(4) }]).await;
    let started = Instant::now();
    let err = execute(&spec(&receiver.url, 1, 1), &request(DriverAction::Deploy, "k"), &SimulatedFleets::new()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err, DriverError::Timeout { after_ms: 1000 });
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3500), "{elapsed:?}");
}

#[tokio::test]
async fn accepted_and_malformed_answers() {
    let receiver = Receiver::start(vec![Reply::new(202, "")]).await;
    let outcome = execute(&spec(&receiver.url, 5, 1), &request(DriverAction::Switch, "k"), &SimulatedFleets::new()).await.unwrap();
    assert_eq!(outcome.status, ActionStatus::Accepted);

    let receiver = Receiver::start(vec![Reply::new(200, "<html>OK</html>")]).await;
    let err = execute(&spec(&receiver.url, 5, 3), &request(DriverAction::Switch, "k"), &SimulatedFleets::new()).await.unwrap_err();
    assert!(matches!(&err, DriverError::MalformedResponse(m) if m.contains("<html>OK</html>")), "{err}");
    assert_eq!(receiver.seen().len(), 1, "a malformed answer is not retried");
}

#[tokio::test]
async fn unreachable_receivers_are_retried_then_reported() {
    let err = execute(&spec(&closed_port_url(), 5, 2), &request(DriverAction::Deploy, "k"), &SimulatedFleets::new()).await.unwrap_err();
    assert!(matches!(err, DriverError::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn an_invalid_spec_sends_nothing() {
    let receiver = Receiver::start(vec![Reply::new(200, "")]).await;
    let spec = DriverSpec::Webhook {
        url: receiver.url.clone(),
        secret: "not-a-secret".into(),
        timeout_seconds: 5,
        max_attempts: 1,
        backoff_ms: 0,
    };
    let err = execute(&spec, &request(DriverAction::Deploy, "k"), &SimulatedFleets::new()).await.unwrap_err();
    assert!(matches!(&err, DriverError::Misconfigured(f) if f.field == "secret"), "{err}");
    assert_eq!(receiver.seen().len(), 0);
}
