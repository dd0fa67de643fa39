//! Shared builders and a scripted webhook receiver.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use signalbox_drivers::{ArtifactRef, DriverAction, DriverRequest};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn v1() -> ArtifactRef {
    ArtifactRef { name: "ghcr.io/acme/api".into(), version: "1.3.2".into(), digest: format!("sha256:{}", "1".repeat(64)) }
}

pub fn v2() -> ArtifactRef {
    ArtifactRef { name: "ghcr.io/acme/api".into(), version: "1.4.0".into(), digest: format!("sha256:{}", "2".repeat(64)) }
}

pub fn request(action: DriverAction, key: &str) -> DriverRequest {
    DriverRequest {
        action,
        idempotency_key: key.to_owned(),
        deployment_id: "dep-42".into(),
        release_key: "2026.05.1".into(),
        service: "api".into(),
        environment: "production".into(),
        artifact: v2(),
        previous: Some(v1()),
        strategy: "canary".into(),
        step: 2,
    }
}

/// What the receiver answers to one delivery.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Reply { status, body: body.to_owned(), delay: Duration::ZERO }
    }
}

/// One delivery as received.
pub struct Seen {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Clone)]
struct ReceiverState {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A receiver answering with `replies` in order (the last one repeats).
pub struct Receiver {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    pub async fn start(replies: Vec<Reply>) -> Receiver {
        let state = ReceiverState { replies: Arc::new(Mutex::new(replies.into())), seen: Arc::new(Mutex::new(Vec::new())) };
        let seen = Arc::clone(&state.seen);
        let app = Router::new().route("/hook", post(receive)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, seen }
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.seen.lock().unwrap()
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    state.seen.lock().unwrap().push(Seen { headers, body: body.to_vec() });
    let reply = {
        let mut replies = state.replies.lock().unwrap();
        if replies.len() > 1 {
            replies.pop_front().unwrap()
        } else {
            replies.front().cloned().unwrap_or(Reply::new(200, ""))
        }
    };
    tokio::time::sleep(reply.delay).await;
    (StatusCode::from_u16(reply.status).unwrap(), reply.body)
}

/// An address nothing listens on.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}/hook")
}
