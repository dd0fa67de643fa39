//! `signalbox flags …` (issue 7): flag sets in flagd format per environment — import, export,
//! list, get, state changes and the kill switch, revisions and revert — and SDK keys for OFREP.

use super::error::{exit, CliError};
use super::http::Api;
use super::output::{col, colf, emit, table, text_at, Col, Fmt};
use serde_json::{json, Value};

const SET_COLS: &[Col] = &[
    col("environment", "environment"),
    col("service", "service"),
    col("revision", "revision"),
    col("by", "updated_by"),
    colf("at", "updated_at", Fmt::Time),
    col("reason", "reason"),
];
const FLAG_COLS: &[Col] = &[
    col("flag", "key"),
    col("state", "state"),
    col("type", "variant_type"),
    col("default", "default_variant"),
    col("targeting", "has_targeting"),
    col("kind", "flag_type"),
    col("owner", "owner"),
    col("lifetime (days)", "expected_lifetime_days"),
];
const REVISION_COLS: &[Col] = &[
    col("revision", "revision"),
    col("by", "created_by"),
    colf("at", "created_at", Fmt::Time),
    col("reverted to", "reverted_to"),
    col("reason", "reason"),
];
const KEY_COLS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    col("environment", "environment"),
    col("service", "service"),
    col("prefix", "prefix"),
    col("rate/s", "rate_limit_per_second"),
    colf("revoked", "revoked_at", Fmt::Time),
];

#[derive(clap::Subcommand, Debug)]
pub enum FlagsCmd {
    /// List flag sets (one per environment, or per service in an environment)
    List,
    /// Show one environment's flags
    Get {
        #[arg(long)]
        environment: String,
        /// Service id or name, for a per-service flag set
        #[arg(long)]
        service: Option<String>,
    },
    /// Create or replace an environment's flag set from a flagd JSON file
    Import {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        service: Option<String>,
        /// Only if the set is still at this revision (its ETag)
        #[arg(long)]
        if_match: Option<String>,
        /// Why (recorded in the audit trail)
        #[arg(long)]
        reason: Option<String>,
        /// A flagd flag-set file (https://flagd.dev/schema/v0/flags.json)
        file: std::path::PathBuf,
    },
    /// Print an environment's flag set as flagd JSON (exactly as imported)
    Export {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        service: Option<String>,
    },
    /// Enable or disable one flag
    SetState {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        service: Option<String>,
        flag: String,
        /// ENABLED or DISABLED
        #[arg(value_parser = ["ENABLED", "DISABLED"])]
        state: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Kill switch: disable one flag now (SDKs fall back to their code default)
    Kill {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        service: Option<String>,
        flag: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revisions of a flag set, newest first
    Revisions {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        service: Option<String>,
    },
    /// Make an earlier revision current again (as a new revision)
    Revert {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        revision: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// SDK keys for the OFREP endpoints
    #[command(subcommand)]
    SdkKeys(SdkKeysCmd),
    /// Schedule a change of one flag (a merge patch of its flagd definition) at a time
    Schedule {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        service: Option<String>,
        flag: String,
        /// When, RFC 3339 (e.g. 2026-12-01T09:00:00Z); refused inside a freeze
        #[arg(long)]
        at: String,
        /// JSON merge patch of the flag, e.g. '{"targeting": {"fractional": [["on", 25], ["off", 75]]}}'
        #[arg(long, required_unless_present = "state", conflicts_with = "state")]
        patch: Option<String>,
        /// Shortcut for --patch '{"state": STATE}'
        #[arg(long, value_parser = ["ENABLED", "DISABLED"])]
        state: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Scheduled flag changes, soonest first
    Scheduled {
        #[arg(long)]
        environment: Option<String>,
        /// pending, applied, skipped, failed or cancelled
        #[arg(long)]
        state: Option<String>,
        /// One flag's changes only
        #[arg(long)]
        flag: Option<String>,
    },
    /// Cancel a pending scheduled change
    CancelScheduled {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Stale flags (fully rolled out, unchanged, not evaluated, past their expected lifetime);
    /// exits with 8 when there are any, so CI can fail a build on them
    Stale {
        #[arg(long)]
        environment: Option<String>,
        /// Days without a change (default 30)
        #[arg(long)]
        unchanged_days: Option<i64>,
        /// Days without an evaluation (default 30)
        #[arg(long)]
        not_evaluated_days: Option<i64>,
        /// Days a flag serving one variant to everyone may stay unchanged (default 30)
        #[arg(long)]
        rolled_out_days: Option<i64>,
    },
}

/// Exit code of `signalbox flags stale` when it found stale flags.
pub const STALE_FLAGS: u8 = 8;

const SCHEDULE_COLS: &[Col] = &[
    col("id", "id"),
    col("environment", "environment"),
    col("service", "service"),
    col("flag", "flag"),
    colf("due", "due", Fmt::Time),
    col("state", "state"),
    col("by", "created_by"),
    col("outcome", "outcome"),
];

#[derive(clap::Subcommand, Debug)]
pub enum SdkKeysCmd {
    /// Issue a read-only key for one environment (the secret is printed once)
    Create {
        #[arg(long)]
        environment: String,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        name: String,
        /// Requests per second before 429 (default 1000)
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    List {
        #[arg(long)]
        environment: Option<String>,
    },
    /// Revoke a key (its SDKs get 403 within a second)
    Revoke { id: String },
}

fn changes_text(body: &Value) -> String {
    let changes = body["changes"].as_array().cloned().unwrap_or_default();
    if changes.is_empty() {
        return "no changes".into();
    }
    changes
        .iter()
        .map(|c| {
            let fields: Vec<String> = c["fields"].as_array().map(|f| f.iter().map(|x| text_at(x, "field")).collect()).unwrap_or_default();
            format!("  {} {} ({})", text_at(c, "change"), text_at(c, "flag"), fields.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn written(api: &Api, reply: &super::http::Reply) -> Result<(), CliError> {
    if reply.print_json(api)? {
        return Ok(());
    }
    let b = &reply.body;
    emit(&format!("flags of {} at revision {}\n{}", text_at(b, "environment"), text_at(b, "revision"), changes_text(b)))
}

pub async fn flags(api: &Api, cmd: FlagsCmd) -> Result<(), CliError> {
    match cmd {
        FlagsCmd::List => {
            let reply = api.get(&["flags"]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&table(reply.body.as_array().map(Vec::as_slice).unwrap_or_default(), SET_COLS))
        }
        FlagsCmd::Get { environment, service } => {
            let reply = api.get(&["flags", &environment]).query("service", service).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let b = &reply.body;
            emit(&format!(
                "{}\n{}",
                table(std::slice::from_ref(b), SET_COLS),
                table(b["flags"].as_array().map(Vec::as_slice).unwrap_or_default(), FLAG_COLS)
            ))
        }
        FlagsCmd::Import { environment, service, if_match, reason, file } => {
            let raw = std::fs::read(&file).map_err(|e| CliError::input("FILE", format!("cannot read {}: {e}", file.display())))?;
            let document: Value = serde_json::from_slice(&raw).map_err(|e| CliError::input("FILE", format!("is not JSON: {e}")))?;
            let reply = api
                .put(&["flags", &environment], document)
                .query("service", service)
                .query("reason", reason)
                .if_match(if_match.as_deref())
                .send()
                .await?;
            written(api, &reply)
        }
        FlagsCmd::Export { environment, service } => {
            let reply = api.request(reqwest::Method::GET, &["flags", &environment, "export"]).query("service", service).send().await?;
            let pretty = serde_json::to_string_pretty(&reply.body)
                .map_err(|e| CliError::new(exit::FAILURE, format!("cannot print the flag set: {e}")))?;
            emit(&pretty)
        }
        FlagsCmd::SetState { environment, service, flag, state, reason } => {
            let reply = api
                .patch(&["flags", &environment, "flags", &flag], json!({"state": state}))
                .query("service", service)
                .query("reason", reason)
                .send()
                .await?;
            written(api, &reply)
        }
        FlagsCmd::Kill { environment, service, flag, reason } => {
            let reply = api
                .patch(&["flags", &environment, "flags", &flag], json!({"state": "DISABLED"}))
                .query("service", service)
                .query("reason", reason)
                .send()
                .await?;
            written(api, &reply)
        }
        FlagsCmd::Revisions { environment, service } => {
            let reply = api.get(&["flags", &environment, "revisions"]).query("service", service).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&table(reply.body.as_array().map(Vec::as_slice).unwrap_or_default(), REVISION_COLS))
        }
        FlagsCmd::Revert { environment, service, revision, reason } => {
            let reply = api
                .post(&["flags", &environment, "revert"], json!({"revision": revision, "reason": reason}))
                .query("service", service)
                .send()
                .await?;
            written(api, &reply)
        }
        FlagsCmd::SdkKeys(cmd) => sdk_keys(api, cmd).await,
        FlagsCmd::Schedule { environment, service, flag, at, patch, state, reason } => {
            let patch: Value = match (patch, state) {
                (Some(p), _) => serde_json::from_str(&p).map_err(|e| CliError::input("--patch", format!("is not JSON: {e}")))?,
                (None, Some(state)) => json!({"state": state}),
                (None, None) => return Err(CliError::input("--patch", "give --patch JSON or --state ENABLED|DISABLED")),
            };
            let reply = api
                .post(&["flags", &environment, "flags", &flag, "schedule"], json!({"patch": patch, "at": at, "reason": reason}))
                .query("service", service)
                .send()
                .await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let b = &reply.body;
            emit(&format!(
                "scheduled {}: {} in {} at {}",
                text_at(b, "id"),
                text_at(b, "flag"),
                text_at(b, "environment"),
                text_at(b, "due")
            ))
        }
        FlagsCmd::Scheduled { environment, state, flag } => {
            let reply =
                api.get(&["flags", "scheduled"]).query("environment", environment).query("state", state).query("flag", flag).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&table(reply.body.as_array().map(Vec::as_slice).unwrap_or_default(), SCHEDULE_COLS))
        }
        FlagsCmd::CancelScheduled { id, reason } => {
            let reply = api.post(&["flags", "scheduled", &id, "cancel"], json!({})).query("reason", reason).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("scheduled change {} cancelled", text_at(&reply.body, "id")))
        }
        FlagsCmd::Stale { environment, unchanged_days, not_evaluated_days, rolled_out_days } => {
            let reply = api
                .get(&["flags", "stale"])
                .query("environment", environment)
                .query("unchanged_days", unchanged_days.map(|d| d.to_string()))
                .query("not_evaluated_days", not_evaluated_days.map(|d| d.to_string()))
                .query("rolled_out_days", rolled_out_days.map(|d| d.to_string()))
                .send()
                .await?;
            let stale = reply.body["stale"].as_array().cloned().unwrap_or_default();
            if !reply.print_json(api)? {
                emit(&stale_text(&reply.body, &stale))?;
            }
            if stale.is_empty() {
                Ok(())
            } else {
                Err(CliError {
                    code: STALE_FLAGS,
                    message: format!("error: {} stale flag(s); remove them or raise the thresholds", stale.len()),
                })
            }
        }
    }
}

fn stale_text(body: &Value, stale: &[Value]) -> String {
    let mut out = format!("{} flag(s) checked, {} stale\n", body["checked"].as_u64().unwrap_or(0), stale.len());
    for flag in stale {
        let service = flag["service"].as_str().map(|s| format!(" ({s})")).unwrap_or_default();
        out.push_str(&format!(
            "\n{} in {}{service}  type {}  owner {}\n",
            text_at(flag, "flag"),
            text_at(flag, "environment"),
            text_at(flag, "flag_type"),
            text_at(flag, "owner")
        ));
        for reason in flag["reasons"].as_array().into_iter().flatten() {
            out.push_str(&format!("  ✗ {}: {}\n", text_at(reason, "code"), text_at(reason, "message")));
        }
    }
    out.trim_end().to_string()
}

async fn sdk_keys(api: &Api, cmd: SdkKeysCmd) -> Result<(), CliError> {
    match cmd {
        SdkKeysCmd::Create { environment, service, name, rate_limit } => {
            let mut body = json!({"environment": environment, "name": name});
            if let Some(s) = service {
                body["service"] = json!(s);
            }
            if let Some(r) = rate_limit {
                body["rate_limit_per_second"] = json!(r);
            }
            let reply = api.post(&["flags", "sdk-keys"], body).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!(
                "SDK key {} for {} (shown once; send it as X-API-Key to /ofrep/v1):\n{}",
                text_at(&reply.body, "key.id"),
                text_at(&reply.body, "key.environment"),
                text_at(&reply.body, "secret")
            ))
        }
        SdkKeysCmd::List { environment } => {
            let reply = api.get(&["flags", "sdk-keys"]).query("environment", environment).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&table(reply.body.as_array().map(Vec::as_slice).unwrap_or_default(), KEY_COLS))
        }
        SdkKeysCmd::Revoke { id } => {
            let reply = api.delete(&["flags", "sdk-keys", &id]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("SDK key {} revoked", text_at(&reply.body, "id")))
        }
    }
}
