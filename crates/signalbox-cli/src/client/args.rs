//! Arguments shared by several commands, and the parsers that check values before anything
//! is sent (a value clap rejects is a usage error, exit code 2).

use super::error::CliError;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Value};
use signalbox_domain::access::Scope;
use signalbox_domain::model::Tier;

/// Paging of list commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PageArgs {
    /// Items per page (the server's default when omitted)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Continue from this cursor (printed after a page that has more)
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow the cursors and show every page
    #[arg(long)]
    pub all: bool,
}

/// `--if-match` of commands that change a resource.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct IfMatch {
    /// Only apply if the resource is still at this ETag (as shown by `get`); refused with
    /// exit code 5 otherwise
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
}

/// `--idempotency-key` of commands that create something.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Idempotency {
    /// Makes a retry safe: the server answers a repeated key with the first result and
    /// does nothing twice
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

/// The values of a domain enum, as the server spells them.
pub const TASK_STATUSES: [&str; 5] = ["pending", "in_progress", "done", "skipped", "failed"];
pub const TASK_KINDS: [&str; 6] = ["manual", "approval", "gate", "deploy", "wait_for_window", "notification"];
pub const CHANGE_KINDS: [&str; 3] = ["commit", "pull_request", "ticket"];
pub const CRITICALITIES: [&str; 2] = ["customer_facing", "internal"];
pub const DATA_CLASSIFICATIONS: [&str; 4] = ["public", "internal", "confidential", "restricted"];

/// A timestamp: RFC 3339 (`2025-06-01T09:00:00Z`) or a date (`2025-06-01`, midnight UTC).
pub fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(format!("{raw:?} is not a time; use RFC 3339 like 2025-06-01T09:00:00Z, or a date like 2025-06-01"))
}

/// A time as the API takes it.
pub fn time_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| format!("{raw:?} is not a date; use YYYY-MM-DD"))
}

/// A role-binding scope: `organization`, or `domain:ID`, `team:ID`, `service:ID`,
/// `environment:ID` (an id or a name).
pub fn parse_scope(raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    let scope = match raw.split_once(':') {
        None if raw == "organization" || raw == "org" => Scope::Organization,
        Some((kind, id)) if !id.trim().is_empty() => {
            let id = id.trim().to_string();
            match kind {
                "domain" => Scope::Domain(id),
                "team" => Scope::Team(id),
                "service" => Scope::Service(id),
                "environment" | "env" => Scope::Environment(id),
                _ => return Err(scope_help(raw)),
            }
        }
        _ => return Err(scope_help(raw)),
    };
    serde_json::to_value(scope).map_err(|e| e.to_string())
}

fn scope_help(raw: &str) -> String {
    format!(
        "{raw:?} is not a scope; use `organization`, or `domain:ID`, `team:ID`, `service:ID`, \
         `environment:ID`"
    )
}

/// An environment tier: `dev`, `test`, `staging`, `prod`, or any other name for a custom tier.
pub fn parse_tier(raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    let tier = match raw {
        "" => return Err("a tier cannot be empty".into()),
        "dev" => Tier::Dev,
        "test" => Tier::Test,
        "staging" => Tier::Staging,
        "prod" => Tier::Prod,
        other => Tier::Custom(other.strip_prefix("custom:").unwrap_or(other).to_string()),
    };
    serde_json::to_value(tier).map_err(|e| e.to_string())
}

/// `KEY=VALUE`.
pub fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{raw:?} is not KEY=VALUE")),
    }
}

/// A post-release review action item: `OWNER:YYYY-MM-DD:DESCRIPTION`.
pub fn parse_action_item(raw: &str) -> Result<Value, String> {
    let help = || format!("{raw:?} is not OWNER:YYYY-MM-DD:DESCRIPTION");
    let mut parts = raw.splitn(3, ':');
    let (Some(owner), Some(due), Some(description)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(help());
    };
    if owner.trim().is_empty() || description.trim().is_empty() {
        return Err(help());
    }
    let due = parse_date(due)?;
    Ok(json!({
        "description": description.trim(),
        "owner": owner.trim(),
        "due": due.format("%Y-%m-%d").to_string(),
    }))
}

/// Text given inline, or read from a file with `@PATH`.
pub fn text_or_file(flag: &str, raw: &str) -> Result<String, CliError> {
    match raw.strip_prefix('@') {
        Some(path) => read_file(flag, path),
        None => Ok(raw.to_string()),
    }
}

/// Reads a UTF-8 file (or standard input for `-`), naming `flag` in any error.
pub fn read_file(flag: &str, path: &str) -> Result<String, CliError> {
    if path == "-" {
        return read_stdin(flag, 16 * 1024 * 1024);
    }
    let bytes = std::fs::read(path).map_err(|e| CliError::input(flag, format!("cannot read {path:?}: {e}")))?;
    String::from_utf8(bytes).map_err(|_| CliError::input(flag, format!("{path:?} is not UTF-8 text")))
}

/// Reads standard input as text, up to `limit` bytes.
pub fn read_stdin(flag: &str, limit: u64) -> Result<String, CliError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::input(flag, format!("cannot read standard input: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(CliError::input(flag, format!("standard input is longer than {limit} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| CliError::input(flag, "standard input is not UTF-8 text"))
}

/// A password from standard input: one line, its line ending removed.
pub fn read_password(flag: &str) -> Result<String, CliError> {
    let text = read_stdin(flag, 64 * 1024)?;
    let password = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if password.is_empty() {
        return Err(CliError::input(flag, "standard input was empty; pipe the password in"));
    }
    if password.contains('\n') {
        return Err(CliError::input(flag, "standard input has more than one line; give the password alone"));
    }
    Ok(password.to_string())
}

/// A JSON or TOML document from a file, by extension (`.json`, `.toml`), or whichever parses.
pub fn read_document(flag: &str, path: &str) -> Result<Value, CliError> {
    let text = read_file(flag, path)?;
    let lower = path.to_ascii_lowercase();
    let from_toml = |text: &str| -> Result<Value, String> {
        let doc: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        serde_json::to_value(doc).map_err(|e| e.to_string())
    };
    let value = if lower.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| CliError::input(flag, format!("{path:?} is not valid JSON: {e}")))?
    } else if lower.ends_with(".toml") {
        from_toml(&text).map_err(|e| CliError::input(flag, format!("{path:?} is not valid TOML: {e}")))?
    } else {
        match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(json_err) => from_toml(&text).map_err(|toml_err| {
                CliError::input(flag, format!("{path:?} is neither JSON ({json_err}) nor TOML ({})", toml_err.trim()))
            })?,
        }
    };
    if !value.is_object() {
        return Err(CliError::input(flag, format!("{path:?} must hold an object (a table in TOML)")));
    }
    Ok(value)
}

/// A JSON object from the fields that were given (`None` fields are left out).
pub fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(fields.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect())
}

/// `Some(list)` when the list is not empty: update commands only send what was given.
pub fn some_list(items: &[String]) -> Option<Value> {
    (!items.is_empty()).then(|| json!(items))
}
