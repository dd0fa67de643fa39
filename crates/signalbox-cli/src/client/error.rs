//! Failures of client commands, the exit code each maps to, and the rendering of RFC 9457
//! problem documents.

use serde_json::Value;
use std::fmt;

/// The exit codes of client commands. See the table at the top of `client/mod.rs`.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// Any failure not covered below (including unexpected answers from the server).
    pub const FAILURE: u8 = 1;
    /// The command line could not be parsed (clap exits with this code itself).
    pub const USAGE: u8 = 2;
    /// No token, a token the server does not accept (401), or not allowed (403).
    pub const AUTH: u8 = 3;
    /// The resource does not exist (404).
    pub const NOT_FOUND: u8 = 4;
    /// Conflict (409) or a failed precondition (412): a refused transition, an `If-Match` that
    /// no longer matches, a duplicate name.
    pub const CONFLICT: u8 = 5;
    /// Invalid input: refused by the server (400, 422), or local input that cannot be used
    /// (an unreadable file, a malformed value).
    pub const INVALID: u8 = 6;
    /// The server could not be reached, or failed (5xx).
    pub const UNAVAILABLE: u8 = 7;
}

/// The exit code for an HTTP status the server answered with.
pub fn exit_code_for_status(status: u16) -> u8 {
    match status {
        200..=299 => exit::OK,
        401 | 403 => exit::AUTH,
        404 => exit::NOT_FOUND,
        409 | 412 => exit::CONFLICT,
        400 | 422 => exit::INVALID,
        500..=599 => exit::UNAVAILABLE,
        _ => exit::FAILURE,
    }
}

/// A failed client command: what to print on standard error, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: u8,
    /// The complete text for standard error, starting with `error: `.
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError { code, message: format!("error: {}", message.into()) }
    }

    /// Local input that cannot be used; `flag` names where it came from (`--file`, `<ID>`).
    pub fn input(flag: &str, message: impl fmt::Display) -> CliError {
        CliError::new(exit::INVALID, format!("{flag}: {message}"))
    }

    pub fn other(message: impl Into<String>) -> CliError {
        CliError::new(exit::FAILURE, message)
    }

    /// The command needs a token and none was given.
    pub fn missing_token() -> CliError {
        CliError::new(
            exit::AUTH,
            "this command needs an API token: set SIGNALBOX_TOKEN or pass --token \
             (get one with `signalbox login --username NAME --password-stdin`, or use the admin \
             token `signalbox serve` printed on first start)",
        )
    }

    /// The server answered with an error status. (The caller adds hints it alone can give,
    /// such as which token was refused.)
    pub fn from_response(status: u16, body: &str) -> CliError {
        CliError { code: exit_code_for_status(status), message: render_problem(status, body) }
    }

    /// A transport failure talking to `url`.
    pub fn from_reqwest(url: &str, err: &reqwest::Error) -> CliError {
        let cause = error_chain(err);
        if err.is_builder() {
            return CliError::other(format!("cannot build the request to {url}: {cause}"));
        }
        if err.is_decode() {
            return CliError::other(format!("cannot read the answer from {url}: {cause}"));
        }
        let mut e = CliError::new(exit::UNAVAILABLE, format!("cannot reach the server at {url}: {cause}"));
        e.message.push_str("\n  hint: is the server running? Its address comes from --url or SIGNALBOX_URL");
        e
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// `err` and its sources, joined with `: ` (reqwest's own message alone rarely says why).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Renders an error answer for standard error:
///
/// ```text
/// error: <title>: <detail>
///   - <field>: <message>
/// ```
///
/// followed by any extension members that are text or lists of text. A body that is not a
/// problem document is shown (shortened) after the status line.
pub fn render_problem(status: u16, body: &str) -> String {
    let status_line = status_line(status);
    let problem = serde_json::from_str::<Value>(body).ok().filter(Value::is_object);
    let Some(Value::Object(problem)) = problem else {
        let text = clean(body.trim());
        return if text.is_empty() { format!("error: {status_line}") } else { format!("error: {status_line}: {}", shorten(&text, 500)) };
    };

    let text_of = |key: &str| problem.get(key).and_then(Value::as_str).map(clean).filter(|s| !s.trim().is_empty());
    let title = text_of("title").unwrap_or(status_line);
    let detail = text_of("detail");
    let mut out = match &detail {
        Some(detail) if *detail != title => format!("error: {title}: {detail}"),
        _ => format!("error: {title}"),
    };

    if let Some(Value::Array(errors)) = problem.get("errors") {
        for e in errors {
            let line = match e {
                Value::Object(fe) => {
                    let field = fe.get("field").and_then(Value::as_str).map(clean);
                    let message = fe.get("message").and_then(Value::as_str).map(clean);
                    match (field, message) {
                        (Some(f), Some(m)) => format!("{f}: {m}"),
                        (None, Some(m)) => m,
                        (Some(f), None) => format!("{f}: invalid"),
                        (None, None) => clean(&e.to_string()),
                    }
                }
                Value::String(s) => clean(s),
                other => clean(&other.to_string()),
            };
            // A lone field error is often the detail itself; say it once.
            if detail.as_deref() != Some(line.as_str()) {
                out.push_str(&format!("\n  - {line}"));
            }
        }
    }

    for (key, value) in &problem {
        if matches!(key.as_str(), "type" | "title" | "status" | "detail" | "instance" | "errors") {
            continue;
        }
        match value {
            Value::String(s) if !s.is_empty() => out.push_str(&format!("\n  {}: {}", clean(key), clean(s))),
            Value::Number(n) => out.push_str(&format!("\n  {}: {n}", clean(key))),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
                out.push_str(&format!("\n  {}:", clean(key)));
                for item in items.iter().filter_map(Value::as_str) {
                    out.push_str(&format!("\n  - {}", clean(item)));
                }
            }
            _ => {}
        }
    }
    out
}

/// Text from the server with control characters (terminal escapes included) made harmless.
pub fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect::<String>().replace('\n', " ")
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max).collect();
    s.push('…');
    s
}

/// `HTTP 404 Not Found`, or `HTTP 599` for a status without a standard reason.
fn status_line(status: u16) -> String {
    match reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()) {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}
