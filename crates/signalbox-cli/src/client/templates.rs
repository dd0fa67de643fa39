//! Release templates: phases with a task graph, required documents.

use super::args::{read_document, Idempotency, PageArgs};
use super::common::create;
use super::common::etag_row;
use super::error::CliError;
use super::http::Api;
use super::output::{col, colf, detail, emit, lookup, resource, table, Col, Fmt};
use serde_json::{json, Value};

const TEMPLATE_COLS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    colf("builtin", "builtin", Fmt::YesNo),
    colf("phases", "phases", Fmt::Count),
    col("required documents", "required_documents"),
    col("description", "description"),
];

const TEMPLATE_ROWS: &[Col] = &[
    col("id", "id"),
    col("name", "name"),
    col("description", "description"),
    colf("builtin", "builtin", Fmt::YesNo),
    col("required documents", "required_documents"),
    colf("created", "created_at", Fmt::Time),
];

const TEMPLATE_TASK_COLS: &[Col] = &[
    col("phase", "phase"),
    col("key", "key"),
    col("name", "name"),
    col("kind", "kind"),
    col("after", "depends_on"),
    col("role", "assignee_role"),
];

#[derive(clap::Subcommand, Debug)]
pub enum TemplatesCmd {
    /// List templates
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one template (by id or name) with its phases and tasks
    Get { id: String },
    /// Create a template from a file
    Create {
        /// JSON or TOML with name, description, phases (name, tasks) and required_documents;
        /// `-` reads standard input
        #[arg(long)]
        file: String,
        #[command(flatten)]
        idempotency: Idempotency,
    },
}

pub async fn run(api: &Api, cmd: TemplatesCmd) -> Result<(), CliError> {
    match cmd {
        TemplatesCmd::List { page } => {
            let list = api.list(&["templates"], &[], &page).await?;
            list.print(api, "templates", |items| table(items, TEMPLATE_COLS))
        }
        TemplatesCmd::Get { id } => {
            let reply = api.get(&["templates", &id]).send().await?;
            if reply.print_json(api)? {
                return Ok(());
            }
            let t = resource(&reply.body);
            let mut out = detail(t, TEMPLATE_ROWS, &etag_row(&reply));
            let tasks = template_tasks(t);
            if !tasks.is_empty() {
                out.push_str("\n\nTasks:\n");
                out.push_str(&table(&tasks, TEMPLATE_TASK_COLS));
            }
            emit(&out)
        }
        TemplatesCmd::Create { file, idempotency } => {
            let body = read_document("--file", &file)?;
            let key = idempotency.idempotency_key.as_deref();
            create(api, &["templates"], body, key, "template", "name").await?;
            Ok(())
        }
    }
}

/// Every task of every phase, each with its phase's name.
fn template_tasks(template: &Value) -> Vec<Value> {
    let Some(phases) = lookup(template, "phases").and_then(Value::as_array) else {
        return Vec::new();
    };
    phases
        .iter()
        .flat_map(|phase| {
            let name = lookup(phase, "name").cloned().unwrap_or(Value::Null);
            let tasks = lookup(phase, "tasks").and_then(Value::as_array).cloned().unwrap_or_default();
            tasks.into_iter().map(move |mut t| {
                if let Some(map) = t.as_object_mut() {
                    map.insert("phase".into(), name.clone());
                }
                t
            })
        })
        .map(|t| if t.is_object() { t } else { json!({ "name": t }) })
        .collect()
}
