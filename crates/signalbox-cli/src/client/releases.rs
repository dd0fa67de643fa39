//! Releases: planning, content, the lifecycle, the post-release review, tasks.

use super::args::{
    object, parse_action_item, parse_time, read_document, some_list, text_or_file, time_text, Idempotency, IfMatch, PageArgs, TASK_KINDS,
    TASK_STATUSES,
};
use super::common::{create, current, etag_row, update};
use super::error::CliError;
use super::http::{split_page, Api, Reply};
use super::output::{cell, col, colf, detail, emit, lookup, resource, table, text_at, Col, Fmt};
use chrono::{DateTime, Utc};
use clap::builder::PossibleValuesParser;
use serde_json::{json, Value};
use signalbox_domain::lifecycle::ReleaseState;

const RELEASE_COLS: &[Col] = &[
    col("key", "key"),
    col("name", "name"),
    col("version", "version"),
    col("state", "state"),
    col("owner", "owner"),
    col("domain", "domain_id"),
    colf("components", "components", Fmt::Count),
    colf("window start", "planned_window.start", Fmt::Time),
];

const RELEASE_ROWS: &[Col] = &[
    col("key", "key"),
    col("id", "id"),
    col("name", "name"),
    col("version", "version"),
    col("state", "state"),
    col("owner", "owner"),
    col("domain", "domain_id"),
    col("template", "template_id"),
    col("target environments", "target_environments"),
    colf("window start", "planned_window.start", Fmt::Time),
    colf("window end", "planned_window.end", Fmt::Time),
    col("depends on", "depends_on"),
    col("kill-switch flags", "kill_switch_flags"),
    colf("changes", "change_ids", Fmt::Count),
    col("required documents", "required_documents"),
    colf("content digest", "content_digest", Fmt::Short),
    col("created by", "created_by"),
    colf("created", "created_at", Fmt::Time),
];

const COMPONENT_COLS: &[Col] =
    &[col("service", "service_id"), col("version", "version"), colf("digest", "digest", Fmt::Short), col("artifact", "artifact_id")];

const TASK_COLS: &[Col] = &[
    col("key", "key"),
    col("phase", "phase"),
    col("name", "name"),
    col("kind", "kind"),
    col("status", "status"),
    col("assignee", "assignee"),
    col("after", "depends_on"),
];

const HISTORY_COLS: &[Col] = &[colf("at", "at", Fmt::Time), col("from", "from"), col("to", "to"), col("by", "by"), col("reason", "reason")];

const DOCUMENTS: [(&str, &str); 4] = [
    ("rollback_plan", "rollback plan"),
    ("backout_criteria", "backout criteria"),
    ("impact_assessment", "impact assessment"),
    ("release_notes", "release notes"),
];

fn state_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(ReleaseState::ALL.map(ReleaseState::as_str))
}

/// Release documents; `@PATH` reads the text from a file.
#[derive(clap::Args, Debug, Default)]
pub struct DocumentArgs {
    /// How to undo the release (text, or @FILE)
    #[arg(long, value_name = "TEXT|@FILE")]
    rollback_plan: Option<String>,
    /// When to back out (text, or @FILE)
    #[arg(long, value_name = "TEXT|@FILE")]
    backout_criteria: Option<String>,
    /// Who and what the release affects (text, or @FILE)
    #[arg(long, value_name = "TEXT|@FILE")]
    impact_assessment: Option<String>,
    /// Release notes (text, or @FILE)
    #[arg(long, value_name = "TEXT|@FILE")]
    release_notes: Option<String>,
}

impl DocumentArgs {
    /// The documents given, as `(field, text)`, files read.
    fn read(&self) -> Result<Vec<(&'static str, String)>, CliError> {
        let given = [
            ("rollback_plan", "--rollback-plan", &self.rollback_plan),
            ("backout_criteria", "--backout-criteria", &self.backout_criteria),
            ("impact_assessment", "--impact-assessment", &self.impact_assessment),
            ("release_notes", "--release-notes", &self.release_notes),
        ];
        let mut out = Vec::new();
        for (field, flag, value) in given {
            if let Some(raw) = value {
                out.push((field, text_or_file(flag, raw)?));
            }
        }
        Ok(out)
    }
}

/// The planned deployment window.
#[derive(clap::Args, Debug, Default)]
pub struct WindowArgs {
    /// Start of the planned window (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_parser = parse_time, requires = "window_end")]
    window_start: Option<DateTime<Utc>>,
    /// End of the planned window
    #[arg(long, value_parser = parse_time, requires = "window_start")]
    window_end: Option<DateTime<Utc>>,
}

impl WindowArgs {
    fn to_json(&self) -> Option<Value> {
        match (&self.window_start, &self.window_end) {
            (Some(start), Some(end)) => Some(json!({ "start": time_text(start), "end": time_text(end) })),
            _ => None,
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum ReleasesCmd {
    /// List releases
    List {
        /// Only releases in this state
        #[arg(long, value_parser = state_parser())]
        state: Option<String>,
        /// Only releases of this domain (id or name)
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one release (by id or key, e.g. R-12): content, tasks, history
    Get { id: String },
    /// Plan a new release
    // `--version` is the release's or artifact's, not the program's.
    #[command(disable_version_flag = true)]
    Create {
        /// Name, e.g. "June payments train"
        #[arg(long)]
        name: String,
        /// Version of the release (SemVer)
        #[arg(long)]
        version: Option<String>,
        /// Domain id or name
        #[arg(long)]
        domain: Option<String>,
        /// Template id or name (the server's `standard` when omitted)
        #[arg(long)]
        template: Option<String>,
        /// Owner's username (you when omitted)
        #[arg(long)]
        owner: Option<String>,
        /// Artifact id or service@version; repeatable
        #[arg(long = "component", value_name = "ARTIFACT")]
        components: Vec<String>,
        /// Change id; repeatable
        #[arg(long = "change", value_name = "CHANGE")]
        changes: Vec<String>,
        /// Target environment id or name; repeatable
        #[arg(long = "target-env", value_name = "ENV")]
        target_environments: Vec<String>,
        /// Release id or key this one depends on; repeatable
        #[arg(long = "depends-on", value_name = "RELEASE")]
        depends_on: Vec<String>,
        /// Flag switched off in an environment when this release's rollout there rolls back;
        /// repeatable
        #[arg(long = "kill-switch-flag", value_name = "FLAG")]
        kill_switch_flags: Vec<String>,
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        documents: DocumentArgs,
        #[command(flatten)]
        idempotency: Idempotency,
    },
    /// Change a release; fields not given are left alone, lists given replace the old ones
    // `--version` is the release's or artifact's, not the program's.
    #[command(disable_version_flag = true)]
    Update {
        /// Release id or key
        id: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// New version (SemVer)
        #[arg(long)]
        version: Option<String>,
        /// New owner's username
        #[arg(long)]
        owner: Option<String>,
        /// Replaces the components: artifact id or service@version; repeatable
        #[arg(long = "component", value_name = "ARTIFACT")]
        components: Vec<String>,
        /// Replaces the changes; repeatable
        #[arg(long = "change", value_name = "CHANGE")]
        changes: Vec<String>,
        /// Replaces the target environments; repeatable
        #[arg(long = "target-env", value_name = "ENV")]
        target_environments: Vec<String>,
        /// Replaces the dependencies; repeatable
        #[arg(long = "depends-on", value_name = "RELEASE")]
        depends_on: Vec<String>,
        /// Replaces the kill-switch flags (switched off when a rollout rolls back); repeatable
        #[arg(long = "kill-switch-flag", value_name = "FLAG")]
        kill_switch_flags: Vec<String>,
        #[command(flatten)]
        window: WindowArgs,
        /// Documents given are set; the others are kept
        #[command(flatten)]
        documents: DocumentArgs,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Pin an artifact into a release
    AddComponent {
        /// Release id or key
        id: String,
        /// Artifact id, or service@version
        artifact: String,
        #[command(flatten)]
        idempotency: Idempotency,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Show where a release can go next, and why not where it cannot
    Transitions {
        /// Release id or key
        id: String,
    },
    /// Move a release to another state
    Transition {
        /// Release id or key
        id: String,
        /// Target state
        #[arg(value_parser = state_parser())]
        to: String,
        /// Why (kept in the history and the audit log)
        #[arg(long)]
        reason: Option<String>,
        /// For approved and deploying: the environment whose gates and approvals decide
        #[arg(long)]
        environment: Option<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Go/no-go: gates, approvals, risk, open tasks and documents for one environment
    /// Release notes: changes by group, breaking changes first, impact, rollback steps, components
    Notes {
        /// Release id or key
        id: String,
        /// markdown (default), html or json
        #[arg(long, value_parser = ["markdown", "html", "json"])]
        format: Option<String>,
        /// Measure changes against what runs in this environment (when none are imported)
        #[arg(long)]
        environment: Option<String>,
    },
    /// Link the commits each component brings over what runs in an environment as the release's changes
    ImportChanges {
        /// Release id or key
        id: String,
        /// Environment id or name; without it, changes since the previous release tag
        #[arg(long)]
        environment: Option<String>,
    },
    Readiness {
        /// Release id or key
        id: String,
        #[arg(long)]
        environment: String,
        /// Exit with code 5 when the answer is no-go
        #[arg(long)]
        check: bool,
    },
    /// Gate decision for one environment, rule by rule with the numbers behind it
    Gates {
        id: String,
        #[arg(long)]
        environment: String,
    },
    /// Approval status for one environment: who approved, who is still needed
    Approvals {
        id: String,
        #[arg(long)]
        environment: String,
    },
    /// Approve a release for an environment
    Approve {
        id: String,
        #[arg(long)]
        environment: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a release for an environment (stops the round until approval is requested again)
    Reject {
        id: String,
        #[arg(long)]
        environment: String,
        /// What must change (required)
        #[arg(long)]
        comment: String,
    },
    /// Request approval again (a new round), e.g. after a rejection
    RequestApproval {
        id: String,
        #[arg(long)]
        environment: String,
    },
    /// Risk score and level with every factor's contribution
    Risk { id: String },
    /// Record the post-release review (needed to close a release)
    Review {
        /// Release id or key
        id: String,
        /// What happened, in a few sentences
        #[arg(long, required_unless_present = "file")]
        summary: Option<String>,
        /// Incident id or link; repeatable
        #[arg(long = "incident", value_name = "INCIDENT")]
        incidents: Vec<String>,
        /// Follow-up as OWNER:YYYY-MM-DD:DESCRIPTION; repeatable
        #[arg(long = "action-item", value_name = "OWNER:DUE:DESCRIPTION", value_parser = parse_action_item)]
        action_items: Vec<Value>,
        /// The whole review from a JSON or TOML file (`-` for standard input)
        #[arg(long, conflicts_with_all = ["summary", "incidents", "action_items"])]
        file: Option<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// List a release's tasks
    Tasks {
        /// Release id or key
        id: String,
    },
    /// Add a task to a release
    AddTask {
        /// Release id or key
        id: String,
        /// Unique within the release, e.g. smoke-tests
        #[arg(long)]
        key: String,
        /// What to do, in a few words
        #[arg(long)]
        name: String,
        /// What kind of task
        #[arg(long, value_parser = PossibleValuesParser::new(TASK_KINDS))]
        kind: String,
        /// Phase the task belongs to
        #[arg(long)]
        phase: Option<String>,
        /// Key of a task that must be done first; repeatable
        #[arg(long = "depends-on", value_name = "TASK")]
        depends_on: Vec<String>,
        /// Username of whoever does it
        #[arg(long)]
        assignee: Option<String>,
        #[command(flatten)]
        idempotency: Idempotency,
        #[command(flatten)]
        if_match: IfMatch,
    },
    /// Update a task: its status, assignee or note
    Task {
        /// Release id or key
        id: String,
        /// Task key, e.g. smoke-tests
        key: String,
        /// New status
        #[arg(long, value_parser = PossibleValuesParser::new(TASK_STATUSES))]
        status: Option<String>,
        /// Username of whoever does it
        #[arg(long)]
        assignee: Option<String>,
        /// A note (kept with the task)
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        if_match: IfMatch,
    },
}

pub async fn run(api: &Api, cmd: ReleasesCmd) -> Result<(), CliError> {
    match cmd {
        ReleasesCmd::List { state, domain, page } => {
            let list = api.list(&["releases"], &[("state", state), ("domain", domain)], &page).await?;
            list.print(api, "releases", |items| table(items, RELEASE_COLS))
        }
        ReleasesCmd::Get { id } => {
            let reply = api.get(&["releases", &id]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&release_view(&reply))
        }
        ReleasesCmd::Create {
            name,
            version,
            domain,
            template,
            owner,
            components,
            changes,
            target_environments,
            depends_on,
            kill_switch_flags,
            window,
            documents,
            idempotency,
        } => {
            let docs: serde_json::Map<String, Value> = documents.read()?.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let text = |v: Option<String>| v.map(|v| json!(v));
            let body = object(vec![
                ("name", Some(json!(name))),
                ("version", text(version)),
                ("domain", text(domain)),
                ("template", text(template)),
                ("owner", text(owner)),
                ("components", some_list(&components)),
                ("changes", some_list(&changes)),
                ("target_environments", some_list(&target_environments)),
                ("depends_on", some_list(&depends_on)),
                ("kill_switch_flags", some_list(&kill_switch_flags)),
                ("planned_window", window.to_json()),
                ("documents", (!docs.is_empty()).then_some(Value::Object(docs))),
            ]);
            let key = idempotency.idempotency_key.as_deref();
            create(api, &["releases"], body, key, "release", "key").await?;
            Ok(())
        }
        ReleasesCmd::Update {
            id,
            name,
            version,
            owner,
            components,
            changes,
            target_environments,
            depends_on,
            kill_switch_flags,
            window,
            documents,
            if_match,
        } => {
            let mut if_match = if_match.if_match;
            let given = documents.read()?;
            let mut docs = None;
            if !given.is_empty() {
                // The server replaces the documents whole: merge into the current ones and write
                // back only if the release did not change meanwhile.
                let (release, etag) = current(api, &["releases", &id]).await?;
                if if_match.is_none() {
                    if_match = etag;
                }
                let mut map = release.get("documents").and_then(Value::as_object).cloned().unwrap_or_default();
                for (k, v) in given {
                    map.insert(k.to_string(), json!(v));
                }
                docs = Some(Value::Object(map));
            }
            let text = |v: Option<String>| v.map(|v| json!(v));
            let body = object(vec![
                ("name", text(name)),
                ("version", text(version)),
                ("owner", text(owner)),
                ("components", some_list(&components)),
                ("changes", some_list(&changes)),
                ("target_environments", some_list(&target_environments)),
                ("depends_on", some_list(&depends_on)),
                ("kill_switch_flags", some_list(&kill_switch_flags)),
                ("planned_window", window.to_json()),
                ("documents", docs),
            ]);
            update(api, &["releases", &id], body, if_match.as_deref(), "release", "key").await?;
            Ok(())
        }
        ReleasesCmd::AddComponent { id, artifact, idempotency, if_match } => {
            let reply = api
                .post(&["releases", &id, "components"], json!({ "artifact": artifact }))
                .idempotency_key(idempotency.idempotency_key.as_deref())
                .if_match(if_match.if_match.as_deref())
                .send()
                .await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let r = resource(&reply.body);
            let count = lookup(r, "components").and_then(Value::as_array).map(Vec::len);
            match count {
                Some(n) => emit(&format!("Added {artifact} to {}; it now has {n} component(s)", label(r, &id))),
                None => emit(&format!("Added {artifact} to {id}")),
            }
        }
        ReleasesCmd::Transitions { id } => {
            let reply = api.get(&["releases", &id, "transitions"]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&transitions_view(&id, &reply.body))
        }
        ReleasesCmd::Notes { id, format, environment } => super::notes::notes(api, &id, format, environment).await,
        ReleasesCmd::ImportChanges { id, environment } => super::notes::import_changes(api, &id, environment).await,
        ReleasesCmd::Readiness { id, environment, check } => super::governance::readiness(api, &id, environment, check).await,
        ReleasesCmd::Gates { id, environment } => super::governance::gates(api, &id, environment).await,
        ReleasesCmd::Approvals { id, environment } => super::governance::approvals(api, &id, environment).await,
        ReleasesCmd::Approve { id, environment, comment } => super::governance::vote(api, &id, environment, "approve", comment).await,
        ReleasesCmd::Reject { id, environment, comment } => super::governance::vote(api, &id, environment, "reject", Some(comment)).await,
        ReleasesCmd::RequestApproval { id, environment } => super::governance::request_approval(api, &id, environment).await,
        ReleasesCmd::Risk { id } => super::governance::risk(api, &id).await,
        ReleasesCmd::Transition { id, to, reason, environment, if_match } => {
            let body =
                object(vec![("to", Some(json!(to))), ("reason", reason.map(|r| json!(r))), ("environment", environment.map(|e| json!(e)))]);
            let reply = api.post(&["releases", &id, "transitions"], body).if_match(if_match.if_match.as_deref()).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let r = resource(&reply.body);
            let state = lookup(r, "state").and_then(Value::as_str).unwrap_or(&to);
            emit(&format!("{} is now {}", label(r, &id), cell(Some(&json!(state)), Fmt::Text)))
        }
        ReleasesCmd::Review { id, summary, incidents, action_items, file, if_match } => {
            let body = match file {
                Some(path) => read_document("--file", &path)?,
                None => json!({
                    "summary": summary.unwrap_or_default(),
                    "incidents": incidents,
                    "action_items": action_items,
                }),
            };
            let reply = api.put(&["releases", &id, "review"], body).if_match(if_match.if_match.as_deref()).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("Recorded the post-release review of {}", label(resource(&reply.body), &id)))
        }
        ReleasesCmd::Tasks { id } => {
            let reply = api.get(&["releases", &id, "tasks"]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let (items, _) = split_page(&reply.body)?;
            if items.is_empty() {
                emit(&format!("{id} has no tasks."))
            } else {
                emit(&tasks_table(&items))
            }
        }
        ReleasesCmd::AddTask { id, key, name, kind, phase, depends_on, assignee, idempotency, if_match } => {
            let body = object(vec![
                ("key", Some(json!(key))),
                ("name", Some(json!(name))),
                ("kind", Some(json!(kind))),
                ("phase", phase.map(|p| json!(p))),
                ("depends_on", Some(json!(depends_on))),
                ("assignee", assignee.map(|a| json!(a))),
            ]);
            let reply = api
                .post(&["releases", &id, "tasks"], body)
                .idempotency_key(idempotency.idempotency_key.as_deref())
                .if_match(if_match.if_match.as_deref())
                .send()
                .await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&format!("Added task {key} to {id}"))
        }
        ReleasesCmd::Task { id, key, status, assignee, note, if_match } => {
            let body = object(vec![
                ("status", status.map(|s| json!(s))),
                ("assignee", assignee.map(|a| json!(a))),
                ("note", note.map(|n| json!(n))),
            ]);
            if body.as_object().is_some_and(|o| o.is_empty()) {
                return Err(CliError::input("task", "nothing to change; give --status, --assignee or --note"));
            }
            let reply = api.patch(&["releases", &id, "tasks", &key], body).if_match(if_match.if_match.as_deref()).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            emit(&task_confirmation(&reply, &id, &key))
        }
    }
}

/// `R-12`, or the id the user gave when the answer has no key.
fn label(release: &Value, given: &str) -> String {
    match lookup(release, "key").and_then(Value::as_str) {
        Some(key) => cell(Some(&json!(key)), Fmt::Text),
        None => given.to_string(),
    }
}

fn tasks_table(tasks: &[Value]) -> String {
    // Show the expected role where nobody is assigned yet.
    let rows: Vec<Value> = tasks
        .iter()
        .map(|t| {
            let mut t = t.clone();
            let assignee = lookup(&t, "assignee").filter(|a| !a.is_null()).cloned();
            let role = lookup(&t, "assignee_role").and_then(Value::as_str).map(|r| format!("role:{r}"));
            if let (None, Some(role), Some(map)) = (assignee, role, t.as_object_mut()) {
                map.insert("assignee".into(), json!(role));
            }
            t
        })
        .collect();
    table(&rows, TASK_COLS)
}

/// The detail view of a release: its fields, components, tasks, review and history.
pub fn release_view(reply: &Reply) -> String {
    let r = resource(&reply.body);
    let present: Vec<&str> = DOCUMENTS
        .iter()
        .filter(|(field, _)| {
            lookup(r, "documents").and_then(|d| d.get(*field)).and_then(Value::as_str).is_some_and(|t| !t.trim().is_empty())
        })
        .map(|(_, label)| *label)
        .collect();
    let mut extra = vec![("documents", if present.is_empty() { "-".to_string() } else { present.join(", ") })];
    extra.extend(etag_row(reply));
    let mut out = detail(r, RELEASE_ROWS, &extra);

    let section = |out: &mut String, title: &str, items: Option<&Value>, cols: &[Col]| {
        if let Some(items) = items.and_then(Value::as_array).filter(|i| !i.is_empty()) {
            out.push_str(&format!("\n\n{title}:\n"));
            out.push_str(&table(items, cols));
        }
    };
    section(&mut out, "Components", lookup(r, "components"), COMPONENT_COLS);
    if let Some(tasks) = lookup(r, "tasks").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        out.push_str("\n\nTasks:\n");
        out.push_str(&tasks_table(tasks));
    }
    if let Some(review) = lookup(r, "review").filter(|v| v.is_object()) {
        out.push_str(&format!(
            "\n\nReview (by {}, {}): {}",
            text_at(review, "recorded_by"),
            cell(lookup(review, "recorded_at"), Fmt::Time),
            text_at(review, "summary")
        ));
    }
    section(&mut out, "History", lookup(r, "history"), HISTORY_COLS);
    out
}

/// The answer of `GET /releases/{id}/transitions` as a table.
pub fn transitions_view(id: &str, body: &Value) -> String {
    let state = text_at(body, "state");
    let rows: Vec<Value> = lookup(body, "transitions")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter().map(|t| json!({ "to": lookup(t, "to"), "allowed": lookup(t, "allowed"), "reasons": lookup(t, "reasons") })).collect()
        })
        .unwrap_or_default();
    let cols = [col("to", "to"), colf("allowed", "allowed", Fmt::YesNo), colf("why not", "reasons", Fmt::Lines)];
    if rows.is_empty() {
        format!("{id} is {state}; no transition leaves this state.")
    } else {
        format!("{id} is {state}.\n{}", table(&rows, &cols))
    }
}

fn task_confirmation(reply: &Reply, id: &str, key: &str) -> String {
    let r = resource(&reply.body);
    let task = if lookup(r, "status").is_some() {
        Some(r)
    } else {
        lookup(r, "tasks")
            .and_then(Value::as_array)
            .and_then(|ts| ts.iter().find(|t| lookup(t, "key").and_then(Value::as_str) == Some(key)))
    };
    match task {
        Some(t) => format!("Task {key} of {id} is {}", text_at(t, "status")),
        None => format!("Updated task {key} of {id}"),
    }
}
