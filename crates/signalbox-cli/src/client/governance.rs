//! Governance from the command line: evidence uploads, policies, gate decisions, approvals,
//! risk, break-glass and the go/no-go readiness summary.

use super::error::{exit, CliError};
use super::http::Api;
use super::output::{col, colf, emit, table, text_at, Col, Fmt};
use serde_json::{json, Value};

const EVIDENCE_COLS: &[Col] = &[
    col("id", "id"),
    col("kind", "kind"),
    col("file", "file_name"),
    colf("digest", "file_digest", Fmt::Short),
    col("size", "size"),
    col("by", "uploaded_by"),
    colf("at", "created_at", Fmt::Time),
];

const RULE_COLS: &[Col] = &[col("rule", "rule"), col("outcome", "outcome"), col("summary", "summary")];
const GROUP_COLS: &[Col] =
    &[col("group", "name"), col("roles", "roles"), col("min", "min"), col("approvers", "approvers"), col("missing", "missing")];
const VOTE_COLS: &[Col] =
    &[col("who", "username"), col("decision", "decision"), col("standing", "standing"), col("group", "group"), colf("at", "at", Fmt::Time)];
const FACTOR_COLS: &[Col] = &[col("category", "category"), col("factor", "name"), col("points", "contribution"), col("why", "explanation")];
const POLICY_COLS: &[Col] = &[
    col("id", "id"),
    col("level", "level.level"),
    col("target", "level.id"),
    col("environment", "environment_id"),
    col("by", "updated_by"),
];
const BREAK_GLASS_COLS: &[Col] = &[
    col("id", "id"),
    col("state", "state"),
    col("environment", "environment_id"),
    col("rules", "rules"),
    col("incident", "incident"),
    col("requested by", "requested_by"),
    col("confirmed by", "confirmed_by"),
    colf("expires", "expires_at", Fmt::Time),
];

#[derive(clap::Subcommand, Debug)]
pub enum EvidenceCmd {
    /// Upload a file a tool produced (JUnit XML, SARIF, CycloneDX, SPDX, LCOV, Cobertura, …)
    Add {
        /// Artifact id or service@version the evidence is about
        #[arg(long, conflicts_with = "release", required_unless_present = "release")]
        artifact: Option<String>,
        /// Release id or key (sign-offs, smoke results, document links)
        #[arg(long)]
        release: Option<String>,
        /// junit, sarif, cyclonedx, spdx, lcov, cobertura, performance, smoke, signoff or document_link
        #[arg(long)]
        kind: String,
        /// Environment the evidence was produced in (required for smoke results)
        #[arg(long)]
        environment: Option<String>,
        /// The file
        file: std::path::PathBuf,
    },
    /// Evidence attached to an artifact or a release
    List {
        #[arg(long, conflicts_with = "release", required_unless_present = "release")]
        artifact: Option<String>,
        #[arg(long)]
        release: Option<String>,
    },
    /// One evidence record with its parsed facts
    Get { id: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum PoliciesCmd {
    /// Set the gate and approval policy of one level for one environment (from a JSON file)
    Set {
        /// organization, domain or service
        #[arg(long, value_parser = ["organization", "domain", "service"])]
        level: String,
        /// Domain or service (id or name); not for the organization level
        #[arg(long)]
        target: Option<String>,
        /// Environment id or name
        #[arg(long)]
        environment: String,
        /// JSON file with {"gates": {…}, "approvals": {…}} (docs/GOVERNANCE.md)
        file: std::path::PathBuf,
    },
    /// List policies, optionally for one environment
    List {
        #[arg(long)]
        environment: Option<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum BreakGlassCmd {
    /// Request an emergency bypass of named gates for one release and environment
    Request {
        /// Release id or key
        release: String,
        #[arg(long)]
        environment: String,
        /// Gate rule to bypass (tests_passed, max_cvss, rego:<name>, * for all); repeatable
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
        /// Also bypass a freeze
        #[arg(long)]
        freeze: bool,
        /// Why (required)
        #[arg(long, default_value = "")]
        reason: String,
        /// Incident reference, e.g. INC-2041 (required)
        #[arg(long, default_value = "")]
        incident: String,
        /// Hours the bypass lasts once confirmed (default 4)
        #[arg(long)]
        ttl_hours: Option<u32>,
    },
    /// Confirm someone else's break-glass (incident_commander or release_manager)
    Confirm { id: String },
    /// Break-glass requests of a release
    List { release: String },
}

fn read_file(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::input(flag, format!("cannot read {}: {e}", path.display())))
}

pub async fn evidence(api: &Api, cmd: EvidenceCmd) -> Result<(), CliError> {
    match cmd {
        EvidenceCmd::Add { artifact, release, kind, environment, file } => {
            let bytes = read_file("FILE", &file)?;
            let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let reply = api
                .request(reqwest::Method::POST, &["evidence"])
                .query("artifact", artifact)
                .query("release", release)
                .query("kind", Some(kind))
                .query("environment", environment)
                .query("file_name", file_name)
                .raw_body(bytes)
                .send()
                .await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let b = &reply.body;
            emit(&format!(
                "evidence {} stored ({} {}, {} bytes)\nfacts:\n{}",
                text_at(b, "id"),
                text_at(b, "kind"),
                text_at(b, "file_digest"),
                text_at(b, "size"),
                facts_summary(&b["facts"])
            ))
        }
        EvidenceCmd::List { artifact, release } => {
            let reply = api.get(&["evidence"]).query("artifact", artifact).query("release", release).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&table(reply.body.as_array().map(Vec::as_slice).unwrap_or_default(), EVIDENCE_COLS))
        }
        EvidenceCmd::Get { id } => {
            let reply = api.get(&["evidence", &id]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let b = &reply.body;
            emit(&format!("{}\nfacts:\n{}", table(std::slice::from_ref(b), EVIDENCE_COLS), facts_summary(&b["facts"])))
        }
    }
}

/// A few lines people read; `--output json` has everything.
fn facts_summary(f: &Value) -> String {
    let n = |k: &str| f[k].as_u64().map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    match f["kind"].as_str().unwrap_or("") {
        "junit" | "smoke" => format!(
            "  tests {}: {} passed, {} failed, {} errored, {} skipped",
            n("total"),
            n("passed"),
            n("failed"),
            n("errored"),
            n("skipped")
        ),
        "sarif" => format!(
            "  findings: {} critical, {} high, {} medium, {} low; max score {}",
            f["counts"]["critical"], f["counts"]["high"], f["counts"]["medium"], f["counts"]["low"], f["max_score"]
        ),
        "cyclonedx" | "spdx" => format!("  {} components", n("component_count")),
        "lcov" | "cobertura" => {
            format!("  lines {}/{} covered ({:.1}%)", n("lines_covered"), n("lines_total"), f["line_rate"].as_f64().unwrap_or(0.0) * 100.0)
        }
        _ => format!("  {f}"),
    }
}

pub async fn policies(api: &Api, cmd: PoliciesCmd) -> Result<(), CliError> {
    match cmd {
        PoliciesCmd::Set { level, target, environment, file } => {
            let raw = read_file("FILE", &file)?;
            let policy: Value = serde_json::from_slice(&raw).map_err(|e| CliError::input("FILE", format!("is not JSON: {e}")))?;
            let mut body = json!({"level": level, "environment": environment, "policy": policy});
            if let Some(t) = target {
                body["target"] = json!(t);
            }
            let reply = api.put(&["policies"], body).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("policy {} saved", text_at(&reply.body, "id")))
        }
        PoliciesCmd::List { environment } => {
            let reply = api.get(&["policies"]).query("environment", environment).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&table(reply.body.as_array().map(Vec::as_slice).unwrap_or_default(), POLICY_COLS))
        }
    }
}

pub async fn break_glass(api: &Api, cmd: BreakGlassCmd) -> Result<(), CliError> {
    let reply = match cmd {
        BreakGlassCmd::Request { release, environment, rules, freeze, reason, incident, ttl_hours } => {
            let mut body = json!({"environment": environment, "rules": rules, "freeze": freeze, "reason": reason, "incident": incident});
            if let Some(t) = ttl_hours {
                body["ttl_hours"] = json!(t);
            }
            api.post(&["releases", &release, "break-glass"], body).send().await?
        }
        BreakGlassCmd::Confirm { id } => api.post(&["break-glass", &id, "confirm"], json!({})).send().await?,
        BreakGlassCmd::List { release } => {
            let reply = api.get(&["releases", &release, "break-glass"]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            return emit(&table(reply.body.as_array().map(Vec::as_slice).unwrap_or_default(), BREAK_GLASS_COLS));
        }
    };
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&table(std::slice::from_ref(&reply.body), BREAK_GLASS_COLS))
}

fn gates_text(d: &Value) -> String {
    let verdict = if d["passed"] == json!(true) { "PASS" } else { "FAIL" };
    format!(
        "gates for {}: {verdict}\n{}",
        text_at(d, "environment"),
        table(d["rules"].as_array().map(Vec::as_slice).unwrap_or_default(), RULE_COLS)
    )
}

fn approvals_text(a: &Value) -> String {
    let mut out = format!("approvals: {}", text_at(a, "state"));
    if let Some(r) = a["rejection"].as_str() {
        out.push_str(&format!(" ({r})"));
    }
    out.push('\n');
    if let Some(groups) = a["groups"].as_array().filter(|g| !g.is_empty()) {
        out.push_str(&table(groups, GROUP_COLS));
        out.push('\n');
    }
    if let Some(votes) = a["votes"].as_array().filter(|v| !v.is_empty()) {
        out.push_str(&table(votes, VOTE_COLS));
        out.push('\n');
    }
    for need in a["still_needed"].as_array().into_iter().flatten() {
        out.push_str(&format!("  still needed: {}\n", need.as_str().unwrap_or_default()));
    }
    out
}

fn risk_text(r: &Value) -> String {
    format!(
        "risk: {} ({}/100)\n{}",
        text_at(r, "level"),
        text_at(r, "score"),
        table(r["factors"].as_array().map(Vec::as_slice).unwrap_or_default(), FACTOR_COLS)
    )
}

pub async fn gates(api: &Api, release: &str, environment: String) -> Result<(), CliError> {
    let reply = api.get(&["releases", release, "gates"]).query("environment", Some(environment)).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&gates_text(&reply.body))
}

pub async fn approvals(api: &Api, release: &str, environment: String) -> Result<(), CliError> {
    let reply = api.get(&["releases", release, "approvals"]).query("environment", Some(environment)).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&approvals_text(&reply.body))
}

pub async fn vote(api: &Api, release: &str, environment: String, decision: &str, comment: Option<String>) -> Result<(), CliError> {
    let reply = api
        .post(&["releases", release, "approvals"], json!({"environment": environment, "decision": decision, "comment": comment}))
        .send()
        .await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&approvals_text(&reply.body))
}

pub async fn request_approval(api: &Api, release: &str, environment: String) -> Result<(), CliError> {
    let reply = api.post(&["releases", release, "approval-requests"], json!({"environment": environment})).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&approvals_text(&reply.body))
}

pub async fn risk(api: &Api, release: &str) -> Result<(), CliError> {
    let reply = api.get(&["releases", release, "risk"]).send().await?;
    if reply.print_json(api)? {
        return Ok(());
    }
    emit(&risk_text(&reply.body))
}

/// The go/no-go summary. With `check`, a no-go exits with the conflict code (5) so a pipeline
/// can stop on it.
pub async fn readiness(api: &Api, release: &str, environment: String, check: bool) -> Result<(), CliError> {
    let reply = api.get(&["releases", release, "readiness"]).query("environment", Some(environment)).send().await?;
    let go = reply.body["decision"] == json!("go");
    if !reply.print_json(api)? {
        let b = &reply.body;
        let mut out = format!("{} → {}: {}\n", text_at(b, "release"), text_at(b, "environment"), if go { "GO" } else { "NO-GO" });
        for blocker in b["blockers"].as_array().into_iter().flatten() {
            out.push_str(&format!("  ✗ {}\n", blocker.as_str().unwrap_or_default()));
        }
        out.push('\n');
        out.push_str(&gates_text(&b["gates"]));
        out.push_str("\n\n");
        out.push_str(&approvals_text(&b["approvals"]));
        out.push('\n');
        out.push_str(&risk_text(&b["risk"]));
        emit(&out)?;
    }
    if check && !go {
        return Err(CliError::new(exit::CONFLICT, String::new()));
    }
    Ok(())
}
