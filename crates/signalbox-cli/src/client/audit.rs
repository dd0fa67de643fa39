//! The audit log as the server serves it: query and export. (`signalbox audit verify`, which
//! checks an export offline, is a local command.)

use super::args::{parse_time, time_text, PageArgs};
use super::error::CliError;
use super::http::Api;
use super::output::{col, colf, note, table, write_failed, Col, Fmt};
use chrono::{DateTime, Utc};
use clap::builder::PossibleValuesParser;
use signalbox_domain::model::Kind;
use std::io::Write;

const AUDIT_COLS: &[Col] = &[
    col("seq", "seq"),
    colf("at", "at", Fmt::Time),
    col("actor", "actor"),
    col("action", "action"),
    col("kind", "subject_kind"),
    col("subject", "subject_id"),
    col("reason", "reason"),
];

// The audit commands that talk to a server. (A plain comment: clap would make a doc comment
// the `about` of the command this enum is merged into.)
#[derive(clap::Subcommand, Debug)]
pub enum AuditClientCmd {
    /// Query the audit log
    List {
        /// Only entries by this actor (user id)
        #[arg(long)]
        actor: Option<String>,
        /// Only entries with this action (e.g. release.transition)
        #[arg(long)]
        action: Option<String>,
        /// Only entries about this kind of resource
        #[arg(long, value_parser = PossibleValuesParser::new(Kind::ALL.map(Kind::as_str)))]
        subject_kind: Option<String>,
        /// Only entries about this resource id
        #[arg(long)]
        subject_id: Option<String>,
        /// Only entries at or after this time (RFC 3339 or YYYY-MM-DD)
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Only entries before this time (RFC 3339 or YYYY-MM-DD)
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Export the whole audit log as JSON Lines (for `signalbox audit verify`)
    Export {
        /// Write to this file instead of standard output
        #[arg(long)]
        file: Option<String>,
    },
}

pub async fn run(api: &Api, cmd: AuditClientCmd) -> Result<(), CliError> {
    match cmd {
        AuditClientCmd::List { actor, action, subject_kind, subject_id, since, until, page } => {
            let filters = [
                ("actor", actor),
                ("action", action),
                ("subject_kind", subject_kind),
                ("subject_id", subject_id),
                ("since", since.map(|t| time_text(&t))),
                ("until", until.map(|t| time_text(&t))),
            ];
            let list = api.list(&["audit"], &filters, &page).await?;
            list.print(api, "audit entries", |items| table(items, AUDIT_COLS))
        }
        AuditClientCmd::Export { file } => export(api, file.as_deref()).await,
    }
}

/// Streams the export to standard output, or to `file` through a `.partial` file renamed
/// into place only once the whole export has arrived.
async fn export(api: &Api, file: Option<&str>) -> Result<(), CliError> {
    let mut response = api.get(&["audit", "export"]).send_raw().await?;
    let url = api.url_for(&["audit".into(), "export".into()]).map(|u| u.to_string()).unwrap_or_default();
    let (mut sink, partial): (Box<dyn Write + Send>, Option<String>) = match file {
        None => (Box::new(std::io::stdout()), None),
        Some(path) => {
            let partial = format!("{path}.partial");
            let f = std::fs::File::create(&partial).map_err(|e| CliError::input("--file", format!("cannot create {partial:?}: {e}")))?;
            (Box::new(std::io::BufWriter::new(f)), Some(partial))
        }
    };
    let target = file.unwrap_or("standard output");
    let (mut bytes, mut lines) = (0u64, 0u64);
    let result: Result<(), CliError> = async {
        while let Some(chunk) = response.chunk().await.map_err(|e| CliError::from_reqwest(&url, &e))? {
            sink.write_all(&chunk).map_err(|e| write_failed(&e, target))?;
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        sink.flush().map_err(|e| write_failed(&e, target))
    }
    .await;
    drop(sink);
    if let Err(e) = result {
        if let Some(partial) = &partial {
            let _ = std::fs::remove_file(partial);
        }
        return Err(e);
    }
    if let (Some(partial), Some(path)) = (partial, file) {
        std::fs::rename(&partial, path).map_err(|e| CliError::input("--file", format!("cannot move {partial:?} to {path:?}: {e}")))?;
        note(&format!("Exported {lines} audit entries ({bytes} bytes) to {path}"));
    }
    Ok(())
}
