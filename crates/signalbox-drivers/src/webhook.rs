//! The webhook driver: one signed HTTP POST per action, carrying a CDEvent.
//!
//! Why this shape: receivers already exist for CloudEvents and CDEvents (cdviz, Tekton,
//! Keptn-style tooling), and Standard Webhooks gives every language a ready-made verifier, so a
//! team can write a receiver without reading Signalbox code.
//!
//! # Request
//!
//! `POST <url>` with `Content-Type: application/json` and this body (one `deploy`, `set_weight`,
//! `switch`, `rollback` or `finalize` request):
//!
//! ```json
//! {
//!   "context": {
//!     "specversion": "0.5.1",
//!     "id": "<idempotency key>",
//!     "source": "signalbox",
//!     "type": "dev.cdeventsx.signalbox-deployment.requested.0.1.0",
//!     "timestamp": "2026-05-01T12:00:00.000Z"
//!   },
//!   "subject": {
//!     "id": "<deployment id>",
//!     "source": "signalbox",
//!     "content": {
//!       "action": "set_weight",
//!       "weight": 25,
//!       "environment": { "id": "production", "source": "signalbox" },
//!       "artifactId": "pkg:oci/api@sha256%3A0b31...?repository_url=ghcr.io/acme/api&tag=1.4.0",
//!       "previousArtifactId": "pkg:oci/api@sha256%3A77aa...?repository_url=ghcr.io/acme/api&tag=1.3.2",
//!       "deploymentId": "<deployment id>",
//!       "release": "<release key>",
//!       "service": "api",
//!       "strategy": "canary",
//!       "step": 2,
//!       "artifact": { "name": "ghcr.io/acme/api", "version": "1.4.0", "digest": "sha256:0b31..." },
//!       "previous": { "name": "ghcr.io/acme/api", "version": "1.3.2", "digest": "sha256:77aa..." }
//!     }
//!   }
//! }
//! ```
//!
//! `weight` is the share of traffic (percent) the new artifact has once the action is done
//! ([`DriverAction::target_weight`]); `previousArtifactId` and `previous` are omitted when there
//! is nothing to roll back to. `context.timestamp` is set once per delivery and is unchanged on
//! retries, as CDEvents requires for retransmissions.
//!
//! **What follows CDEvents 0.5.1:** the envelope (`context` with `specversion`, `id`, `source`,
//! `type`, `timestamp`; `subject` with `id`, `source`, `content`), the custom type grammar
//! `dev.cdeventsx.<tool>-<subject>.<predicate>.<version>`, and inside `content` the fields shared
//! with `service.deployed/upgraded/rolledback`: `environment` as `{id, source}` and `artifactId`
//! as a purl (`pkg:oci/<name>@<percent-encoded digest>`).
//! **Our extension:** the event type itself (a *request* to act, which CDEvents has no type for;
//! it only reports what happened, see [`completion_event_type`]) and the content fields `action`,
//! `weight`, `previousArtifactId`, `deploymentId`, `release`, `service`, `strategy`, `step`,
//! `artifact` and `previous`.
//!
//! The request is also a valid CloudEvent in HTTP *binary* mode, following the CDEvents
//! CloudEvents binding: `ce-specversion: 1.0`, `ce-id` = `context.id`, `ce-source`, `ce-type` =
//! `context.type`, `ce-subject` = `subject.id`, `ce-time` = `context.timestamp`, and the whole
//! CDEvent as the data.
//!
//! Signing follows Standard Webhooks (<https://www.standardwebhooks.com/>): `webhook-id` (the
//! idempotency key, the same on every retry), `webhook-timestamp` (unix seconds of this attempt)
//! and `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` where `key`
//! is the base64-decoded part of the `whsec_` secret. `Idempotency-Key` repeats the key for
//! receivers that deduplicate on that header instead. Use [`verify`] in our own receivers.
//!
//! # Response
//!
//! - `202`: [`ActionStatus::Accepted`]; the receiver reports completion later through the API.
//! - other `2xx`: [`ActionStatus::Completed`]. An empty body is fine; otherwise it must be a JSON
//!   object `{"status": "completed"|"accepted", "deployed_digest": "...", "message": "..."}`
//!   (all optional; `status` in the body wins over the status code). Anything else is
//!   [`DriverError::MalformedResponse`].
//! - `3xx` and `4xx`: [`DriverError::Rejected`], never retried (redirects are not followed:
//!   a POST must not silently turn into a GET elsewhere).
//! - `5xx`, timeouts and connection failures are retried with the same `webhook-id` up to
//!   `max_attempts` times, waiting `backoff_ms`, then twice as long each time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{
    elapsed_ms, excerpt, head_bytes, ActionStatus, ArtifactRef, DriverAction, DriverError, DriverOutcome, DriverRequest, FieldError,
    WebhookSecret, MAX_OUTPUT_BYTES,
};

/// The CDEvents specification release our envelope follows.
pub const CDEVENTS_SPEC_VERSION: &str = "0.5.1";
/// `context.type` of every request we send.
pub const EVENT_TYPE: &str = "dev.cdeventsx.signalbox-deployment.requested.0.1.0";
/// `context.source`, `subject.source` and `environment.source`.
pub const EVENT_SOURCE: &str = "signalbox";

pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
pub const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_VERSION: &str = "v1,";
/// Longest wait between two attempts, however large the backoff grows.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The CDEvent we POST (see the module documentation for the JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentEvent {
    pub context: EventContext,
    pub subject: EventSubject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventContext {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339, UTC, milliseconds.
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSubject {
    pub id: String,
    pub source: String,
    pub content: DeploymentContent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentContent {
    pub action: String,
    pub weight: u8,
    pub environment: EnvironmentRef,
    pub artifact_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_artifact_id: Option<String>,
    pub deployment_id: String,
    pub release: String,
    pub service: String,
    pub strategy: String,
    pub step: u32,
    pub artifact: ArtifactRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<ArtifactRef>,
}

/// CDEvents' reference to an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRef {
    pub id: String,
    pub source: String,
}

/// Builds the event for `req`; `timestamp` is when the delivery began.
pub fn deployment_event(req: &DriverRequest, timestamp: DateTime<Utc>) -> DeploymentEvent {
    DeploymentEvent {
        context: EventContext {
            specversion: CDEVENTS_SPEC_VERSION.to_owned(),
            id: req.idempotency_key.clone(),
            source: EVENT_SOURCE.to_owned(),
            event_type: EVENT_TYPE.to_owned(),
            timestamp: timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        },
        subject: EventSubject {
            id: req.deployment_id.clone(),
            source: EVENT_SOURCE.to_owned(),
            content: DeploymentContent {
                action: req.action.name().to_owned(),
                weight: req.action.target_weight(),
                environment: EnvironmentRef { id: req.environment.clone(), source: EVENT_SOURCE.to_owned() },
                artifact_id: purl(&req.artifact),
                previous_artifact_id: req.previous.as_ref().map(purl),
                deployment_id: req.deployment_id.clone(),
                release: req.release_key.clone(),
                service: req.service.clone(),
                strategy: req.strategy.clone(),
                step: req.step,
                artifact: req.artifact.clone(),
                previous: req.previous.clone(),
            },
        },
    }
}

/// The standard CDEvents type the application should emit once `action` has *completed*
/// (`had_previous`: something ran before this deployment). Steps in between (deploy at weight 0,
/// set_weight, switch) have no standard type.
pub fn completion_event_type(action: DriverAction, had_previous: bool) -> Option<&'static str> {
    match action {
        DriverAction::Finalize if had_previous => Some("dev.cdevents.service.upgraded.0.3.0"),
        DriverAction::Finalize => Some("dev.cdevents.service.deployed.0.3.0"),
        DriverAction::Rollback => Some("dev.cdevents.service.rolledback.0.3.0"),
        DriverAction::Deploy | DriverAction::SetWeight { .. } | DriverAction::Switch => None,
    }
}

/// The artifact as a package URL: `pkg:oci/<last name segment>@<digest>`, with the full
/// repository as `repository_url` and the version as `tag` when they add information. Falls back
/// to the version when the digest is empty.
pub fn purl(artifact: &ArtifactRef) -> String {
    let full = artifact.name.trim().trim_matches('/');
    let (has_namespace, name) = match full.rsplit_once('/') {
        Some((_, last)) => (true, last),
        None => (false, full),
    };
    let digest = artifact.digest.trim();
    let version = artifact.version.trim();
    let at = if digest.is_empty() { version } else { digest };
    let mut purl = format!("pkg:oci/{}@{}", percent_encode(&name.to_lowercase(), false), percent_encode(at, false));
    let mut qualifiers = Vec::new();
    if has_namespace {
        qualifiers.push(format!("repository_url={}", percent_encode(full, true)));
    }
    if !digest.is_empty() && !version.is_empty() {
        qualifiers.push(format!("tag={}", percent_encode(version, false)));
    }
    if !qualifiers.is_empty() {
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
    }
    purl
}

fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') || (keep_slash && byte == b'/');
        if unreserved {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The HMAC key of a `whsec_<base64>` secret.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, FieldError> {
    let Some(encoded) = secret.strip_prefix(SECRET_PREFIX) else {
        return Err(FieldError::new(
            "secret",
            "a Standard Webhooks secret starts with whsec_ followed by base64 (e.g. whsec_ plus 32 random bytes in base64)",
        ));
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(encoded).or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded)).map_err(|e| {
        FieldError::new("secret", format!("the part after whsec_ is not base64 ({e}); generate it with e.g. `openssl rand -base64 32`"))
    })?;
    if key.is_empty() {
        return Err(FieldError::new("secret", "the key after whsec_ is empty; use at least 24 random bytes"));
    }
    Ok(key)
}

/// The `webhook-signature` header value for one delivery attempt: `v1,<base64>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, FieldError> {
    let key = decode_secret(secret)?;
    Ok(sign_with_key(&key, id, timestamp, body))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; an empty MAC would fail verification.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn sign_with_key(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, id, timestamp, body).finalize().into_bytes();
    format!("{SIGNATURE_VERSION}{}", base64::engine::general_purpose::STANDARD.encode(tag))
}

/// Why a delivery failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing or not text")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a unix time in seconds")]
    InvalidTimestamp,
    #[error("webhook-timestamp is {skew_seconds} s away from now, more than the {tolerance_seconds} s allowed; check the clocks, or this is a replay")]
    OutsideTolerance { skew_seconds: u64, tolerance_seconds: u64 },
    #[error("no v1 signature in webhook-signature matches the body; the secret differs or the body was changed")]
    NoMatchingSignature,
    #[error("the verification secret is unusable: {0}")]
    Secret(FieldError),
}

/// Verifies a Standard Webhooks delivery: `body` must be the raw bytes received. `tolerance`
/// bounds the clock skew (5 minutes is customary).
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8], tolerance: Duration) -> Result<(), VerifyError> {
    verify_at(secret, headers, body, tolerance, Utc::now().timestamp())
}

/// [`verify`] with an explicit current time (unix seconds).
pub fn verify_at(secret: &str, headers: &HeaderMap, body: &[u8], tolerance: Duration, now: i64) -> Result<(), VerifyError> {
    let header = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok()).ok_or(VerifyError::MissingHeader(name));
    let id = header(HEADER_WEBHOOK_ID)?;
    let timestamp: i64 = header(HEADER_WEBHOOK_TIMESTAMP)?.trim().parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    let signatures = header(HEADER_WEBHOOK_SIGNATURE)?;
    let skew = now.abs_diff(timestamp);
    if skew > tolerance.as_secs() {
        return Err(VerifyError::OutsideTolerance { skew_seconds: skew, tolerance_seconds: tolerance.as_secs() });
    }
    let key = decode_secret(secret).map_err(VerifyError::Secret)?;
    let engine = base64::engine::general_purpose::STANDARD;
    let expected = mac(&key, id, timestamp, body);
    for candidate in signatures.split_ascii_whitespace() {
        let Some(encoded) = candidate.strip_prefix(SIGNATURE_VERSION) else { continue };
        let Ok(tag) = engine.decode(encoded) else { continue };
        // verify_slice compares in constant time.
        if expected.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

/// Where and how to deliver; [`crate::execute`] builds it from a validated `DriverSpec::Webhook`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: WebhookSecret,
    /// Per attempt, from connecting until the response body has been read.
    pub timeout: Duration,
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles after each further one.
    pub backoff: Duration,
}

/// One client for all deliveries (connection pool, TLS roots loaded once).
pub(crate) fn shared_client() -> Result<reqwest::Client, DriverError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("signalbox-drivers/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DriverError::Unreachable(format!("the HTTP client could not be set up ({})", error_chain(&e))))?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

/// Delivers `req` to `config.url`, retrying transient failures with the same `webhook-id`.
///
/// `client` should not follow redirects (a 3xx is reported as [`DriverError::Rejected`]
/// either way, since a followed redirect would turn the POST into a GET).
pub async fn deliver(client: &reqwest::Client, config: &WebhookConfig, req: &DriverRequest) -> Result<DriverOutcome, DriverError> {
    let started = Instant::now();
    let key = decode_secret(config.secret.expose()).map_err(DriverError::Misconfigured)?;
    let event = deployment_event(req, Utc::now());
    let body = serde_json::to_vec(&event)
        .map_err(|e| DriverError::Misconfigured(FieldError::new("request", format!("the event could not be serialised: {e}"))))?;
    let fixed_headers = fixed_headers(&event)?;
    let attempts = config.max_attempts.max(1);
    let mut backoff = config.backoff;
    let mut attempt = 1;
    loop {
        let timestamp = Utc::now().timestamp();
        let signature = sign_with_key(&key, &req.idempotency_key, timestamp, &body);
        let result = attempt_once(client, config, &fixed_headers, timestamp, &signature, &body).await;
        match result {
            Ok(mut outcome) => {
                outcome.duration_ms = elapsed_ms(started);
                return Ok(outcome);
            }
            Err(error) if error.is_retryable() && attempt < attempts => {
                tracing::warn!(
                    url = %config.url,
                    idempotency_key = %req.idempotency_key,
                    attempt,
                    max_attempts = attempts,
                    %error,
                    "webhook delivery failed; retrying with the same webhook-id"
                );
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn fixed_headers(event: &DeploymentEvent) -> Result<HeaderMap, DriverError> {
    let value = |field: &str, text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| DriverError::Misconfigured(FieldError::new(field, "must be visible ASCII to travel in an HTTP header")))
    };
    let mut headers = HeaderMap::new();
    let id = value("idempotency_key", &event.context.id)?;
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(HeaderName::from_static(HEADER_WEBHOOK_ID), id.clone());
    headers.insert(HeaderName::from_static(HEADER_IDEMPOTENCY_KEY), id.clone());
    headers.insert(HeaderName::from_static("ce-specversion"), HeaderValue::from_static("1.0"));
    headers.insert(HeaderName::from_static("ce-id"), id);
    headers.insert(HeaderName::from_static("ce-source"), HeaderValue::from_static(EVENT_SOURCE));
    headers.insert(HeaderName::from_static("ce-type"), HeaderValue::from_static(EVENT_TYPE));
    headers.insert(HeaderName::from_static("ce-subject"), value("deployment_id", &event.subject.id)?);
    headers.insert(HeaderName::from_static("ce-time"), value("timestamp", &event.context.timestamp)?);
    headers.insert(USER_AGENT, HeaderValue::from_static(concat!("signalbox-drivers/", env!("CARGO_PKG_VERSION"))));
    Ok(headers)
}

async fn attempt_once(
    client: &reqwest::Client,
    config: &WebhookConfig,
    fixed_headers: &HeaderMap,
    timestamp: i64,
    signature: &str,
    body: &[u8],
) -> Result<DriverOutcome, DriverError> {
    let timeout_error = || DriverError::Timeout { after_ms: u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX) };
    let transport_error = |e: reqwest::Error| if e.is_timeout() { timeout_error() } else { DriverError::Unreachable(error_chain(&e)) };
    let signature = HeaderValue::from_str(signature)
        .map_err(|_| DriverError::Misconfigured(FieldError::new("secret", "the signature is not a valid header value")))?;
    let mut response = client
        .post(&config.url)
        .headers(fixed_headers.clone())
        .header(HEADER_WEBHOOK_TIMESTAMP, timestamp)
        .header(HEADER_WEBHOOK_SIGNATURE, signature)
        .timeout(config.timeout)
        .body(body.to_vec())
        .send()
        .await
        .map_err(transport_error)?;
    let status = response.status();
    let mut raw = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        let room = MAX_OUTPUT_BYTES.saturating_sub(raw.len());
        raw.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if raw.len() >= MAX_OUTPUT_BYTES {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = status.as_u16();
    if status.is_server_error() {
        return Err(DriverError::ServerError { status: code, body: excerpt(&text) });
    }
    if status.is_redirection() {
        return Err(DriverError::Rejected {
            status: code,
            body: format!("redirects are not followed; configure the final URL (Location: {})", location(response.headers())),
        });
    }
    if status.is_client_error() {
        return Err(DriverError::Rejected { status: code, body: excerpt(&text) });
    }
    if !status.is_success() {
        return Err(DriverError::MalformedResponse(format!("unexpected HTTP status {code}")));
    }
    interpret_success(code, &text)
}

fn location(headers: &HeaderMap) -> String {
    headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| head_bytes(l, 200).to_owned())
        .unwrap_or_else(|| "none".to_owned())
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    deployed_digest: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Reads a 2xx answer (see the module documentation).
fn interpret_success(code: u16, text: &str) -> Result<DriverOutcome, DriverError> {
    let by_code = if code == 202 { ActionStatus::Accepted } else { ActionStatus::Completed };
    let output = if text.trim().is_empty() { None } else { Some(text.to_owned()) };
    if text.trim().is_empty() {
        return Ok(DriverOutcome { status: by_code, deployed_digest: None, message: None, output, duration_ms: 0 });
    }
    let reply: Reply = serde_json::from_str(text).map_err(|e| {
        DriverError::MalformedResponse(format!(
            "HTTP {code} with a body that is not the expected JSON object ({e}): {}; answer with an empty body or \
             {{\"status\": \"completed\"|\"accepted\", \"deployed_digest\": \"...\", \"message\": \"...\"}}",
            excerpt(text)
        ))
    })?;
    let status = match reply.status.as_deref() {
        None => by_code,
        Some("completed") => ActionStatus::Completed,
        Some("accepted") => ActionStatus::Accepted,
        Some(other) => {
            return Err(DriverError::MalformedResponse(format!(
                "\"status\": {:?} is neither \"completed\" nor \"accepted\"",
                head_bytes(other, 100)
            )))
        }
    };
    let deployed_digest = reply.deployed_digest.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
    Ok(DriverOutcome { status, deployed_digest, message: reply.message, output, duration_ms: 0 })
}

/// An error with its causes, e.g. "error sending request: connection refused".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER_WEBHOOK_ID, HeaderValue::from_str(id).unwrap());
        h.insert(HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from_str(&ts.to_string()).unwrap());
        h.insert(HEADER_WEBHOOK_SIGNATURE, HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks reference libraries' test suites.
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, &format!("v1,bogus {sig}"));
        assert_eq!(verify_at(SECRET, &h, body, Duration::from_secs(300), 1614265330 + 10), Ok(()));
        assert_eq!(
            verify_at(SECRET, &h, br#"{"test": 2432232315}"#, Duration::from_secs(300), 1614265330),
            Err(VerifyError::NoMatchingSignature)
        );
        assert!(matches!(
            verify_at(SECRET, &h, body, Duration::from_secs(300), 1614265330 + 301),
            Err(VerifyError::OutsideTolerance { .. })
        ));
        assert_eq!(
            verify_at(SECRET, &HeaderMap::new(), body, Duration::from_secs(300), 0),
            Err(VerifyError::MissingHeader(HEADER_WEBHOOK_ID))
        );
        assert!(matches!(verify_at("nope", &h, body, Duration::from_secs(300), 1614265330), Err(VerifyError::Secret(_))));
    }

    #[test]
    fn purl_encodes_the_digest() {
        let artifact = ArtifactRef { name: "ghcr.io/Acme/API".into(), version: "1.4.0+b1".into(), digest: "sha256:0b31".into() };
        assert_eq!(purl(&artifact), "pkg:oci/api@sha256%3A0b31?repository_url=ghcr.io/Acme/API&tag=1.4.0%2Bb1");
        let bare = ArtifactRef { name: "api".into(), version: "1.0".into(), digest: String::new() };
        assert_eq!(purl(&bare), "pkg:oci/api@1.0");
    }

    #[test]
    fn success_bodies() {
        let ok = interpret_success(200, "").unwrap();
        assert_eq!((ok.status, ok.deployed_digest), (ActionStatus::Completed, None));
        assert_eq!(interpret_success(202, "").unwrap().status, ActionStatus::Accepted);
        let ok = interpret_success(200, r#"{"status":"accepted","deployed_digest":"sha256:ab","extra":1}"#).unwrap();
        assert_eq!((ok.status, ok.deployed_digest.as_deref()), (ActionStatus::Accepted, Some("sha256:ab")));
        assert!(matches!(interpret_success(200, "<html>ok</html>"), Err(DriverError::MalformedResponse(_))));
        assert!(matches!(interpret_success(200, "[1]"), Err(DriverError::MalformedResponse(_))));
        assert!(matches!(interpret_success(200, r#"{"status":"done"}"#), Err(DriverError::MalformedResponse(_))));
        assert!(matches!(interpret_success(200, r#"{"deployed_digest":5}"#), Err(DriverError::MalformedResponse(_))));
    }

    #[test]
    fn completion_types() {
        assert_eq!(completion_event_type(DriverAction::Finalize, true), Some("dev.cdevents.service.upgraded.0.3.0"));
        assert_eq!(completion_event_type(DriverAction::Finalize, false), Some("dev.cdevents.service.deployed.0.3.0"));
        assert_eq!(completion_event_type(DriverAction::Rollback, true), Some("dev.cdevents.service.rolledback.0.3.0"));
        assert_eq!(completion_event_type(DriverAction::SetWeight { weight: 5 }, true), None);
    }
}
