//! Promotion from the command line (issue 6): promotion paths, `signalbox promote`, rollouts
//! with a live progress view and their controls, deployments recorded by external CI, the
//! environment matrix and configuration parity.

use super::error::CliError;
use super::http::Api;
use super::output::{col, colf, emit, table, text_at, Col, Fmt};
use serde_json::{json, Value};

const DEPLOYMENT_COLS: &[Col] = &[
    col("deployment", "key"),
    col("release", "release_key"),
    col("service", "service"),
    col("environment", "environment"),
    col("version", "artifact.version"),
    col("phase", "rollout.phase"),
    col("weight", "rollout.weight"),
    col("trigger", "trigger"),
    colf("started", "created_at", Fmt::Time),
];

const PATH_COLS: &[Col] = &[col("name", "name"), col("service", "service_id"), col("domain", "domain_id"), col("by", "updated_by")];

#[derive(clap::Subcommand, Debug)]
pub enum PathsCmd {
    /// Create or replace a promotion path from a JSON file (docs/PROMOTION.md)
    Set {
        /// JSON file: {"name": …, "service"|"domain": …, "stages": [{"environment": …, "strategy": …, "driver": …, "metrics": […]}]}
        file: std::path::PathBuf,
    },
    /// List promotion paths
    List,
}

#[derive(clap::Subcommand, Debug)]
pub enum RolloutCmd {
    /// Deployments and their rollouts, optionally of one release or environment
    List {
        #[arg(long)]
        release: Option<String>,
        #[arg(long)]
        environment: Option<String>,
    },
    /// Steps, traffic weight and each metric's latest value against its condition
    Status {
        /// Deployment id or key (D-12)
        deployment: String,
        /// Keep refreshing until the rollout finishes
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Pause at the current step
    Pause {
        deployment: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused rollout (accepts an inconclusive analysis)
    Resume {
        deployment: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Abort: the driver rolls back (reason required)
    Abort {
        deployment: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Skip the remaining steps and analyses (needs override_rollout; reason required)
    Promote {
        deployment: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Start a rolled-back or aborted rollout again
    Retry {
        deployment: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum DeployCmd {
    /// Record a deployment your own pipeline made: gates, calendar and path rules still apply
    Record {
        /// Release id or key
        #[arg(long)]
        release: String,
        /// Environment id or name
        #[arg(long)]
        environment: String,
        /// The digest the pipeline deployed (must be the one the release pins)
        #[arg(long)]
        digest: String,
        /// One service of the release (default: every component)
        #[arg(long)]
        service: Option<String>,
        /// succeeded or failed
        #[arg(long, default_value = "succeeded", value_parser = ["succeeded", "failed"])]
        status: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

fn read_json(flag: &str, path: &std::path::Path) -> Result<Value, CliError> {
    let raw = std::fs::read(path).map_err(|e| CliError::input(flag, format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&raw).map_err(|e| CliError::input(flag, format!("is not JSON: {e}")))
}

pub async fn paths(api: &Api, cmd: PathsCmd) -> Result<(), CliError> {
    match cmd {
        PathsCmd::Set { file } => {
            let body = read_json("FILE", &file)?;
            let reply = api.put(&["promotion-paths"], body).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("path {} saved: {}", text_at(&reply.body, "name"), stages_line(&reply.body)))
        }
        PathsCmd::List => {
            let reply = api.get(&["promotion-paths"]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let items = reply.body.as_array().map(Vec::as_slice).unwrap_or_default();
            let mut out = table(items, PATH_COLS);
            for p in items {
                out.push_str(&format!("\n{}: {}", text_at(p, "name"), stages_line(p)));
            }
            emit(&out)
        }
    }
}

fn stages_line(path: &Value) -> String {
    let stages: Vec<String> = path["stages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let mut label = format!("{} ({}", text_at(s, "environment"), text_at(s, "strategy.type"));
            if s["auto_promote"] == json!(true) {
                label.push_str(", auto");
            }
            if let Some(soak) = s["required_soak_seconds"].as_u64().filter(|v| *v > 0) {
                label.push_str(&format!(", soak {soak}s"));
            }
            label.push(')');
            label
        })
        .collect();
    stages.join(" → ")
}

/// `signalbox promote RELEASE --environment ENV`.
pub async fn promote(api: &Api, release: String, environment: String, reason: Option<String>) -> Result<(), CliError> {
    let mut body = json!({ "environment": environment });
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    let reply = api.post(&["releases", &release, "promote"], body).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    let items = reply.body["deployments"].as_array().map(Vec::as_slice).unwrap_or_default();
    let keys: Vec<String> = items.iter().map(|d| text_at(d, "key")).collect();
    emit(&format!(
        "{} is rolling out to {}\n{}\nfollow it: signalbox rollout status {} --watch",
        text_at(&reply.body, "release"),
        text_at(&reply.body, "environment"),
        table(items, DEPLOYMENT_COLS),
        keys.first().cloned().unwrap_or_default()
    ))
}

pub async fn deploy(api: &Api, cmd: DeployCmd) -> Result<(), CliError> {
    let DeployCmd::Record { release, environment, digest, service, status, reason } = cmd;
    let mut body = json!({"release": release, "environment": environment, "digest": digest, "status": status});
    if let Some(s) = service {
        body["service"] = json!(s);
    }
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    let reply = api.post(&["deployments", "record"], body).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&table(reply.body["deployments"].as_array().map(Vec::as_slice).unwrap_or_default(), DEPLOYMENT_COLS))
}

pub async fn rollout(api: &Api, cmd: RolloutCmd) -> Result<(), CliError> {
    let (deployment, action, reason) = match cmd {
        RolloutCmd::List { release, environment } => {
            let reply = api.get(&["deployments"]).query("release", release).query("environment", environment).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            return emit(&table(reply.body.as_array().map(Vec::as_slice).unwrap_or_default(), DEPLOYMENT_COLS));
        }
        RolloutCmd::Status { deployment, watch } => return status(api, &deployment, watch).await,
        RolloutCmd::Pause { deployment, reason } => (deployment, "pause", reason),
        RolloutCmd::Resume { deployment, reason } => (deployment, "resume", reason),
        RolloutCmd::Abort { deployment, reason } => (deployment, "abort", Some(reason).filter(|r| !r.is_empty())),
        RolloutCmd::Promote { deployment, reason } => (deployment, "promote_now", Some(reason).filter(|r| !r.is_empty())),
        RolloutCmd::Retry { deployment, reason } => (deployment, "retry", reason),
    };
    let mut body = json!({ "action": action });
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    let reply = api.post(&["deployments", &deployment, "control"], body).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&progress(&reply.body))
}

async fn status(api: &Api, deployment: &str, watch: bool) -> Result<(), CliError> {
    let mut last = String::new();
    loop {
        let reply = api.get(&["deployments", deployment]).send().await?;
        if reply.print_json(api)? && !watch {
            return Ok(());
        }
        let view = progress(&reply.body);
        if view != last && !api.json() {
            emit(&view)?;
            if watch {
                emit("")?;
            }
            last = view;
        }
        let phase = text_at(&reply.body, "rollout.phase");
        if !watch || matches!(phase.as_str(), "succeeded" | "rolled_back" | "aborted" | "failed") {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The live progress view: one line per step with a marker, then the current analysis with
/// each metric's latest value against its condition.
pub fn progress(d: &Value) -> String {
    let r = &d["rollout"];
    let current = r["step"].as_u64().unwrap_or(0) as usize;
    let phase = text_at(r, "phase");
    let mut out = format!(
        "{} {} {} → {}: {} (weight {}%, generation {})\n",
        text_at(d, "key"),
        text_at(d, "service"),
        text_at(d, "artifact.version"),
        text_at(d, "environment"),
        phase.to_uppercase(),
        text_at(r, "weight"),
        text_at(r, "generation"),
    );
    let history = r["history"].as_array().map(Vec::as_slice).unwrap_or_default();
    let generation = r["generation"].as_u64().unwrap_or(1);
    for (i, step) in d["plan"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        let done = history.iter().rev().find(|h| h["step"].as_u64() == Some(i as u64) && h["generation"].as_u64() == Some(generation));
        let (mark, note) = match done {
            Some(h) => (if text_at(h, "outcome").starts_with("failed") { "✗" } else { "✓" }, text_at(h, "outcome")),
            None if i == current && !matches!(phase.as_str(), "succeeded" | "rolled_back" | "aborted" | "failed") => ("▶", String::new()),
            None => (" ", String::new()),
        };
        out.push_str(&format!(
            "  {mark} {:>2}. {}{}\n",
            i + 1,
            describe_step(step),
            if note.is_empty() { String::new() } else { format!("  — {note}") }
        ));
    }
    if let Some(pause) = r["pause"].as_object() {
        out.push_str(&format!(
            "paused ({}): {}\n",
            pause.get("reason").and_then(Value::as_str).unwrap_or(""),
            pause.get("message").and_then(Value::as_str).unwrap_or("")
        ));
    }
    if let Some(analysis) = r["analysis"].as_object() {
        out.push_str("analysis:\n");
        for m in analysis.get("metrics").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            let spec = d["metrics"].as_array().and_then(|all| all.iter().find(|s| s["name"] == m["name"])).cloned().unwrap_or(Value::Null);
            let latest = m["measurements"].as_array().and_then(|ms| ms.last());
            let value = latest.map(|x| x["values"].to_string()).unwrap_or_else(|| "no measurement yet".into());
            out.push_str(&format!(
                "  {}: {} — success if `{}`, failure if `{}`, no data → {}; {}\n",
                text_at(m, "name"),
                value,
                spec["success_condition"].as_str().unwrap_or("-"),
                spec["failure_condition"].as_str().unwrap_or("-"),
                spec["no_data"].as_str().unwrap_or("-"),
                m["assessment"]["reason"].as_str().unwrap_or("running"),
            ));
        }
    }
    if let Some(f) = r["failure"].as_str() {
        out.push_str(&format!("failure: {f}\n"));
    }
    for (label, key) in [("detected", "detected_at"), ("rollback requested", "rollback_requested_at"), ("restored", "restored_at")] {
        if let Some(t) = r[key].as_str() {
            out.push_str(&format!("{label}: {t}\n"));
        }
    }
    out.trim_end().to_string()
}

fn describe_step(step: &Value) -> String {
    let metrics =
        || step["metrics"].as_array().map(|m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    match step["type"].as_str().unwrap_or("") {
        "deploy" => format!("deploy ({}% traffic)", text_at(step, "weight")),
        "set_weight" => format!("set weight {}%", text_at(step, "weight")),
        "switch" => "switch traffic to the new side".into(),
        "pause" => match step["duration_seconds"].as_u64() {
            Some(s) => format!("pause {s}s"),
            None => "pause until resumed".into(),
        },
        "analysis" if step["smoke"] == json!(true) => format!("smoke checks ({})", metrics()),
        "analysis" => format!("analysis ({})", metrics()),
        "scale_down_delay" => format!("keep the old side {}s", text_at(step, "seconds")),
        "finalize" => "finalize".into(),
        other => other.to_string(),
    }
}

/// `signalbox environments matrix`.
pub async fn matrix(api: &Api) -> Result<(), CliError> {
    let reply = api.get(&["environments", "matrix"]).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    let envs: Vec<String> =
        reply.body["environments"].as_array().map(|e| e.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default();
    let mut rows = vec![std::iter::once("service".to_string()).chain(envs.iter().cloned()).collect::<Vec<_>>()];
    for row in reply.body["rows"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let mut line = vec![text_at(row, "service")];
        for cell in row["cells"].as_array().map(Vec::as_slice).unwrap_or_default() {
            line.push(if cell.is_null() {
                "-".into()
            } else {
                let running = cell["running"]["version"].as_str().unwrap_or("none");
                let status = text_at(cell, "status");
                if status == "succeeded" {
                    running.to_string()
                } else {
                    format!("{running} ({status} {})", text_at(cell, "latest_deployment"))
                }
            });
        }
        rows.push(line);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r.get(i).map(|c| c.chars().count()).unwrap_or(0)).max().unwrap_or(0)).collect();
    let text: Vec<String> = rows
        .iter()
        .map(|r| r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect::<Vec<_>>().join("  ").trim_end().to_string())
        .collect();
    emit(&text.join("\n"))
}

/// `signalbox environments parity --from staging --to production`.
pub async fn parity(api: &Api, from: String, to: String, ignore: Vec<String>) -> Result<(), CliError> {
    let ignore = (!ignore.is_empty()).then(|| ignore.join(","));
    let reply = api.get(&["environments", "parity"]).query("from", Some(from)).query("to", Some(to)).query("ignore", ignore).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    let b = &reply.body;
    let findings = b["findings"].as_array().map(Vec::as_slice).unwrap_or_default();
    let cols: &[Col] = &[col("key", "key"), col("finding", "finding"), col("from", "from_value"), col("to", "to_value")];
    emit(&format!(
        "{} → {}: {} matching, {} finding(s)\n{}",
        text_at(b, "from"),
        text_at(b, "to"),
        text_at(b, "matching"),
        findings.len(),
        table(findings, cols)
    ))
}
