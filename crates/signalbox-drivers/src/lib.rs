//! Deploy drivers and metric providers: the I/O a rollout performs.
//!
//! The rollout engine (`signalbox-rollout`) decides *what* should happen next; the application
//! asks this crate to make it happen on a real target and to measure the result:
//!
//! - [`execute`] performs one [`DriverAction`] for one deployment with the driver a
//!   [`DriverSpec`] describes: a signed CDEvents [`webhook`], a local [`command`], nothing at all
//!   (`record`, when external CI deploys and reports back), or an in-process [`simulated`] fleet
//!   for demos and tests.
//! - [`providers`] reads metrics: a Prometheus instant query or an HTTP smoke check.
//! - `testing` (cargo feature `testing`) starts a real Prometheus scraping a controllable target,
//!   for this crate's tests and for end-to-end rollout tests elsewhere.
//!
//! **Architecture Invariant:** this crate knows nothing of the Signalbox database or HTTP
//! server. Everything it needs arrives in a [`DriverRequest`]; everything it learns leaves in a
//! [`DriverOutcome`], a [`DriverError`] or a [`providers::ProviderReading`]. The application
//! persists them.
//!
//! **Architecture Invariant:** every action carries an idempotency key that stays the same
//! across retries (ours and the application's), so a target may safely see an action twice.
//!
//! **Architecture Invariant:** no input can make this crate panic: responses, command output and
//! specs are external data and are parsed, bounded and reported as errors.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub mod command;
pub mod providers;
pub mod simulated;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook;

pub use simulated::{FleetSample, SimulatedFleet, SimulatedFleets};

/// Captured output (command stdout+stderr, webhook response body) kept in an outcome or error.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// What the target should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DriverAction {
    /// Install the new artifact beside the old one, receiving no traffic yet.
    Deploy,
    /// Send `weight` percent of traffic to the new artifact.
    SetWeight { weight: u8 },
    /// Blue-green: the new side becomes the active one (all traffic).
    Switch,
    /// Send all traffic back to the previous artifact and remove the new one.
    Rollback,
    /// The new artifact is stable: scale the old side down.
    Finalize,
}

impl DriverAction {
    /// The stable snake_case name, as in the serde tag and `SIGNALBOX_ACTION`.
    pub fn name(self) -> &'static str {
        match self {
            DriverAction::Deploy => "deploy",
            DriverAction::SetWeight { .. } => "set_weight",
            DriverAction::Switch => "switch",
            DriverAction::Rollback => "rollback",
            DriverAction::Finalize => "finalize",
        }
    }

    /// The share of traffic (percent) the *new* artifact has once the action is done: `0` after
    /// deploy and rollback, `100` after switch and finalize. Sent as `weight` / `SIGNALBOX_WEIGHT`
    /// so a target never has to infer it.
    pub fn target_weight(self) -> u8 {
        match self {
            DriverAction::Deploy | DriverAction::Rollback => 0,
            DriverAction::SetWeight { weight } => weight.min(100),
            DriverAction::Switch | DriverAction::Finalize => 100,
        }
    }
}

impl fmt::Display for DriverAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverAction::SetWeight { weight } => write!(f, "set_weight({weight}%)"),
            other => f.write_str(other.name()),
        }
    }
}

/// An artifact as the target knows it; `digest` is the content address (`sha256:...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub name: String,
    pub version: String,
    pub digest: String,
}

/// One action for one deployment, with everything a target needs to perform it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverRequest {
    pub action: DriverAction,
    /// Stable across retries of the same action; targets deduplicate on it.
    pub idempotency_key: String,
    pub deployment_id: String,
    pub release_key: String,
    pub service: String,
    pub environment: String,
    pub artifact: ArtifactRef,
    /// What a rollback returns to; `None` for a first deployment.
    pub previous: Option<ArtifactRef>,
    /// The rollout strategy's name (`all_at_once`, `canary`, `blue_green`, ...), for the target's logs.
    pub strategy: String,
    /// The rollout step this action belongs to.
    pub step: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// The action is done.
    Completed,
    /// The target took the action on and reports completion later through the Signalbox API.
    Accepted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverOutcome {
    pub status: ActionStatus,
    /// The digest the target says it now runs, when it says so.
    pub deployed_digest: Option<String>,
    pub message: Option<String>,
    /// Captured output (command stdout+stderr, webhook response body), at most [`MAX_OUTPUT_BYTES`].
    pub output: Option<String>,
    pub duration_ms: u64,
}

/// Why an action failed. [`DriverError::is_retryable`] says whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error(
        "the deploy target did not finish within {after_ms} ms; raise timeout_seconds in the driver spec, or let the \
         target answer 202 Accepted at once and report completion through the Signalbox API"
    )]
    Timeout { after_ms: u64 },
    #[error("the deploy target could not be reached: {0}; check the URL, DNS and that the receiver is running")]
    Unreachable(String),
    #[error(
        "the deploy target rejected the request with status {status} (not retried): {body}; fix the receiver's \
         configuration or the driver spec"
    )]
    Rejected { status: u16, body: String },
    #[error("the deploy target failed with status {status} after all retries: {body}; check the receiver's logs")]
    ServerError { status: u16, body: String },
    #[error("the deploy target answered something Signalbox cannot read: {0}")]
    MalformedResponse(String),
    #[error("the deploy command {}; its output ends with: {}", describe_exit(*exit_code), output_tail(output))]
    CommandFailed { exit_code: Option<i32>, output: String },
    #[error("the deploy command could not be started: {0}; check that argv[0] exists and is executable")]
    Spawn(String),
    #[error("the driver spec is invalid: {0}")]
    Misconfigured(FieldError),
}

impl DriverError {
    /// Whether the same request may succeed later (timeouts, connection failures, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(self, DriverError::Timeout { .. } | DriverError::Unreachable(_) | DriverError::ServerError { .. })
    }
}

fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    }
}

fn output_tail(output: &str) -> String {
    let trimmed = output.trim_end();
    if trimmed.is_empty() {
        return "(no output)".to_owned();
    }
    let tail = tail_chars(trimmed, 500);
    if tail.len() < trimmed.len() {
        format!("...{tail}")
    } else {
        tail.to_owned()
    }
}

/// A spec field that is wrong, with a sentence saying how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// A Standard Webhooks signing secret (`whsec_<base64>`). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        WebhookSecret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_***)")
    }
}

impl From<String> for WebhookSecret {
    fn from(secret: String) -> Self {
        WebhookSecret(secret)
    }
}

impl From<&str> for WebhookSecret {
    fn from(secret: &str) -> Self {
        WebhookSecret(secret.to_owned())
    }
}

/// How a deployment target is driven, as configured per service and environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DriverSpec {
    /// POST a signed CDEvent to `url` (see [`webhook`]).
    Webhook {
        url: String,
        secret: WebhookSecret,
        #[serde(default = "default_webhook_timeout")]
        timeout_seconds: u64,
        #[serde(default = "default_max_attempts")]
        max_attempts: u32,
        #[serde(default = "default_backoff_ms")]
        backoff_ms: u64,
    },
    /// Run `argv` (no shell) with `SIGNALBOX_*` variables (see [`command`]).
    Command {
        argv: Vec<String>,
        #[serde(default = "default_command_timeout")]
        timeout_seconds: u64,
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
    /// External CI deploys and records the deployment through the API; the driver does nothing.
    Record {},
    /// An in-process fleet (see [`simulated`]), for demos and tests.
    Simulated { fleet: String },
}

fn default_webhook_timeout() -> u64 {
    30
}
fn default_max_attempts() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_command_timeout() -> u64 {
    600
}

const MAX_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;

impl DriverSpec {
    /// Checks what can be checked without I/O; the application calls this when a spec is saved.
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            DriverSpec::Webhook { url, secret, timeout_seconds, max_attempts, backoff_ms } => {
                match reqwest::Url::parse(url) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {}
                    Ok(_) => return Err(FieldError::new("url", "use an absolute http:// or https:// URL with a host")),
                    Err(e) => return Err(FieldError::new("url", format!("not a URL ({e}); use e.g. https://deploy.example.com/hook"))),
                }
                webhook::decode_secret(secret.expose())?;
                check_timeout(*timeout_seconds)?;
                if !(1..=10).contains(max_attempts) {
                    return Err(FieldError::new("max_attempts", "use between 1 and 10 attempts"));
                }
                if *backoff_ms > 60_000 {
                    return Err(FieldError::new("backoff_ms", "use at most 60000 ms; the backoff doubles after every attempt"));
                }
                Ok(())
            }
            DriverSpec::Command { argv, timeout_seconds, env } => {
                match argv.first() {
                    None => return Err(FieldError::new("argv", "name the program to run, e.g. [\"/usr/local/bin/deploy\", \"--wait\"]")),
                    Some(program) if program.trim().is_empty() => {
                        return Err(FieldError::new("argv", "argv[0] is empty; name the program to run"))
                    }
                    Some(_) => {}
                }
                if argv.iter().any(|arg| arg.contains('\0')) {
                    return Err(FieldError::new("argv", "arguments cannot contain NUL characters"));
                }
                check_timeout(*timeout_seconds)?;
                for key in env.keys() {
                    if key.is_empty() || key.contains(['=', '\0']) {
                        return Err(FieldError::new(format!("env.{key}"), "variable names must be non-empty without '=' or NUL"));
                    }
                    if key.starts_with("SIGNALBOX_") {
                        return Err(FieldError::new(format!("env.{key}"), "SIGNALBOX_* variables are set by Signalbox; pick another name"));
                    }
                }
                if env.values().any(|value| value.contains('\0')) {
                    return Err(FieldError::new("env", "values cannot contain NUL characters"));
                }
                Ok(())
            }
            DriverSpec::Record {} => Ok(()),
            DriverSpec::Simulated { fleet } => {
                if fleet.trim().is_empty() {
                    return Err(FieldError::new("fleet", "name the simulated fleet, e.g. \"checkout-prod\""));
                }
                Ok(())
            }
        }
    }
}

fn check_timeout(seconds: u64) -> Result<(), FieldError> {
    if (1..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(FieldError::new("timeout_seconds", format!("use between 1 and {MAX_TIMEOUT_SECONDS} seconds")))
    }
}

/// Performs `req` with the driver `spec` describes. `fleets` is only used by `simulated` specs.
///
/// The spec is validated first, so an invalid spec fails with [`DriverError::Misconfigured`]
/// before anything is sent or started.
pub async fn execute(spec: &DriverSpec, req: &DriverRequest, fleets: &SimulatedFleets) -> Result<DriverOutcome, DriverError> {
    spec.validate().map_err(DriverError::Misconfigured)?;
    let started = Instant::now();
    let mut outcome = match spec {
        DriverSpec::Webhook { url, secret, timeout_seconds, max_attempts, backoff_ms } => {
            let config = webhook::WebhookConfig {
                url: url.clone(),
                secret: secret.clone(),
                timeout: std::time::Duration::from_secs(*timeout_seconds),
                max_attempts: *max_attempts,
                backoff: std::time::Duration::from_millis(*backoff_ms),
            };
            webhook::deliver(&webhook::shared_client()?, &config, req).await?
        }
        DriverSpec::Command { argv, timeout_seconds, env } => {
            command::run(argv, env, std::time::Duration::from_secs(*timeout_seconds), req).await?
        }
        DriverSpec::Record {} => DriverOutcome {
            status: ActionStatus::Accepted,
            deployed_digest: None,
            message: Some("recorded; external CI performs the action and reports completion through the API".to_owned()),
            output: None,
            duration_ms: 0,
        },
        DriverSpec::Simulated { fleet } => fleets.apply(fleet, req)?,
    };
    outcome.duration_ms = elapsed_ms(started);
    Ok(outcome)
}

pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a char boundary.
pub(crate) fn head_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// The last `max_chars` characters of `text`.
pub(crate) fn tail_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().rev().nth(max_chars.saturating_sub(1)) {
        Some((index, _)) if max_chars > 0 => text.get(index..).unwrap_or(text),
        _ if max_chars == 0 => "",
        _ => text,
    }
}

/// A short excerpt of an external body for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "(empty body)".to_owned();
    }
    let head = head_bytes(trimmed, 512);
    if head.len() < trimmed.len() {
        format!("{head}...")
    } else {
        head.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_and_tag() {
        let spec: DriverSpec =
            serde_json::from_str(r#"{"type":"webhook","url":"https://x.example/hook","secret":"whsec_c2VjcmV0c2VjcmV0c2VjcmV0"}"#).unwrap();
        assert_eq!(
            spec,
            DriverSpec::Webhook {
                url: "https://x.example/hook".into(),
                secret: "whsec_c2VjcmV0c2VjcmV0c2VjcmV0".into(),
                timeout_seconds: 30,
                max_attempts: 3,
                backoff_ms: 500
            }
        );
        assert!(spec.validate().is_ok());
        assert!(!format!("{spec:?}").contains("c2Vj"), "Debug must not show the secret");

        let spec: DriverSpec = serde_json::from_str(r#"{"type":"command","argv":["/bin/deploy"]}"#).unwrap();
        assert_eq!(spec, DriverSpec::Command { argv: vec!["/bin/deploy".into()], timeout_seconds: 600, env: BTreeMap::new() });
        let spec: DriverSpec = serde_json::from_str(r#"{"type":"record"}"#).unwrap();
        assert_eq!(spec, DriverSpec::Record {});
        let spec: DriverSpec = serde_json::from_str(r#"{"type":"simulated","fleet":"api"}"#).unwrap();
        assert_eq!(spec, DriverSpec::Simulated { fleet: "api".into() });
        let typo = serde_json::from_str::<DriverSpec>(r#"{"type":"command","argv":["x"],"timeout_secs":5}"#);
        assert!(typo.unwrap_err().to_string().contains("timeout_secs"), "a misspelt field must not be ignored");
    }

    #[test]
    fn validate_names_the_field() {
        let cases: Vec<(DriverSpec, &str)> = vec![
            (
                DriverSpec::Webhook {
                    url: "ftp://x".into(),
                    secret: "whsec_c2VjcmV0".into(),
                    timeout_seconds: 30,
                    max_attempts: 3,
                    backoff_ms: 500,
                },
                "url",
            ),
            (
                DriverSpec::Webhook {
                    url: "https://x".into(),
                    secret: "secret".into(),
                    timeout_seconds: 30,
                    max_attempts: 3,
                    backoff_ms: 500,
                },
                "secret",
            ),
            (
                DriverSpec::Webhook {
                    url: "https://x".into(),
                    secret: "whsec_c2VjcmV0".into(),
                    timeout_seconds: 0,
                    max_attempts: 3,
                    backoff_ms: 500,
                },
                "timeout_seconds",
            ),
            (
                DriverSpec::Webhook {
                    url: "https://x".into(),
                    secret: "whsec_c2VjcmV0".into(),
                    timeout_seconds: 30,
                    max_attempts: 0,
                    backoff_ms: 500,
                },
                "max_attempts",
            ),
            (DriverSpec::Command { argv: vec![], timeout_seconds: 10, env: BTreeMap::new() }, "argv"),
            (
                DriverSpec::Command {
                    argv: vec!["x".into()],
                    timeout_seconds: 10,
                    env: BTreeMap::from([("SIGNALBOX_ACTION".to_owned(), "x".to_owned())]),
                },
                "env.SIGNALBOX_ACTION",
            ),
            (DriverSpec::Simulated { fleet: " ".into() }, "fleet"),
        ];
        for (spec, field) in cases {
            let err = spec.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn action_serde_and_weight() {
        assert_eq!(serde_json::to_string(&DriverAction::SetWeight { weight: 25 }).unwrap(), r#"{"type":"set_weight","weight":25}"#);
        assert_eq!(serde_json::to_string(&DriverAction::Deploy).unwrap(), r#"{"type":"deploy"}"#);
        let back: DriverAction = serde_json::from_str(r#"{"type":"rollback"}"#).unwrap();
        assert_eq!(back, DriverAction::Rollback);
        assert_eq!(DriverAction::SetWeight { weight: 250 }.target_weight(), 100);
        assert_eq!(DriverAction::Switch.target_weight(), 100);
        assert_eq!(DriverAction::Rollback.target_weight(), 0);
    }

    #[test]
    fn text_helpers_respect_char_boundaries() {
        assert_eq!(head_bytes("héllo", 2), "h");
        assert_eq!(head_bytes("héllo", 3), "hé");
        assert_eq!(tail_chars("héllo", 4), "éllo");
        assert_eq!(tail_chars("hi", 10), "hi");
        assert_eq!(tail_chars("hi", 0), "");
        assert_eq!(excerpt("   "), "(empty body)");
    }

    #[test]
    fn errors_are_sentences() {
        let err = DriverError::CommandFailed { exit_code: Some(3), output: "boom\n".into() };
        assert_eq!(err.to_string(), "the deploy command exited with status 3; its output ends with: boom");
        assert!(!err.is_retryable());
        assert!(DriverError::ServerError { status: 503, body: String::new() }.is_retryable());
    }
}
