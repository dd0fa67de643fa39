//! What goes into releases: artifacts (builds) and changes (commits, pull requests, tickets).

use super::args::{object, parse_time, time_text, Idempotency, PageArgs, CHANGE_KINDS};
use super::common::{create, show};
use super::error::CliError;
use super::http::Api;
use super::output::{col, colf, table, Col, Fmt};
use chrono::{DateTime, Utc};
use clap::builder::PossibleValuesParser;
use serde_json::json;

const ARTIFACT_COLS: &[Col] = &[
    col("id", "id"),
    col("service", "service_id"),
    col("version", "version"),
    colf("digest", "digest", Fmt::Short),
    colf("commit", "source_commit", Fmt::Short),
    colf("created", "created_at", Fmt::Time),
];

const ARTIFACT_ROWS: &[Col] = &[
    col("id", "id"),
    col("service", "service_id"),
    col("version", "version"),
    col("digest", "digest"),
    col("source commit", "source_commit"),
    col("build", "build_url"),
    colf("created", "created_at", Fmt::Time),
];

const CHANGE_COLS: &[Col] = &[
    col("id", "id"),
    col("kind", "kind"),
    colf("reference", "reference", Fmt::Short),
    col("type", "change_type"),
    col("title", "title"),
    col("author", "author"),
    col("service", "service_id"),
];

const CHANGE_ROWS: &[Col] = &[
    col("id", "id"),
    col("kind", "kind"),
    col("reference", "reference"),
    col("title", "title"),
    col("type", "change_type"),
    col("author", "author"),
    col("service", "service_id"),
    colf("authored", "authored_at", Fmt::Time),
    colf("committed", "committed_at", Fmt::Time),
    colf("merged", "merged_at", Fmt::Time),
    col("links", "links"),
    col("risk flags", "risk_flags"),
    colf("recorded", "created_at", Fmt::Time),
];

#[derive(clap::Subcommand, Debug)]
pub enum ArtifactsCmd {
    /// List artifacts
    List {
        /// Only artifacts of this service (id or name)
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one artifact (by id)
    Get { id: String },
    /// Register a build of a service
    // `--version` is the release's or artifact's, not the program's.
    #[command(disable_version_flag = true)]
    Register {
        /// Service id or name
        #[arg(long)]
        service: String,
        /// SemVer version, without a leading `v`
        #[arg(long)]
        version: String,
        /// `sha256:` and 64 hex digits
        #[arg(long)]
        digest: String,
        /// Source commit the build was made from
        #[arg(long)]
        commit: Option<String>,
        /// Link to the build (CI run)
        #[arg(long)]
        build_url: Option<String>,
        #[command(flatten)]
        idempotency: Idempotency,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum ChangesCmd {
    /// List changes
    List {
        /// Only changes of this service (id or name)
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one change (by id)
    Get { id: String },
    /// Record a commit, pull request or ticket
    Record {
        /// What the change is
        #[arg(long, value_parser = PossibleValuesParser::new(CHANGE_KINDS))]
        kind: String,
        /// The commit sha, pull request number or ticket key
        #[arg(long)]
        reference: String,
        /// One-line summary
        #[arg(long)]
        title: String,
        /// Who made the change
        #[arg(long)]
        author: String,
        /// Conventional Commit type (feat, fix, …)
        #[arg(long = "type", value_name = "TYPE")]
        change_type: Option<String>,
        /// Service id or name
        #[arg(long)]
        service: Option<String>,
        /// When it was written (RFC 3339 or YYYY-MM-DD)
        #[arg(long, value_parser = parse_time)]
        authored_at: Option<DateTime<Utc>>,
        /// When it was committed
        #[arg(long, value_parser = parse_time)]
        committed_at: Option<DateTime<Utc>>,
        /// When it was merged
        #[arg(long, value_parser = parse_time)]
        merged_at: Option<DateTime<Utc>>,
        /// A link (pull request, ticket); repeatable
        #[arg(long = "link", value_name = "URL")]
        links: Vec<String>,
        /// A risk flag such as schema_migration; repeatable
        #[arg(long = "risk-flag", value_name = "FLAG")]
        risk_flags: Vec<String>,
        #[command(flatten)]
        idempotency: Idempotency,
    },
}

pub async fn artifacts(api: &Api, cmd: ArtifactsCmd) -> Result<(), CliError> {
    match cmd {
        ArtifactsCmd::List { service, page } => {
            let list = api.list(&["artifacts"], &[("service", service)], &page).await?;
            list.print(api, "artifacts", |items| table(items, ARTIFACT_COLS))
        }
        ArtifactsCmd::Get { id } => show(api, &["artifacts", &id], ARTIFACT_ROWS).await,
        ArtifactsCmd::Register { service, version, digest, commit, build_url, idempotency } => {
            let body = object(vec![
                ("service", Some(json!(service))),
                ("version", Some(json!(version))),
                ("digest", Some(json!(digest))),
                ("source_commit", commit.map(|c| json!(c))),
                ("build_url", build_url.map(|u| json!(u))),
            ]);
            let key = idempotency.idempotency_key.as_deref();
            create(api, &["artifacts"], body, key, "artifact", "version").await?;
            Ok(())
        }
    }
}

pub async fn changes(api: &Api, cmd: ChangesCmd) -> Result<(), CliError> {
    match cmd {
        ChangesCmd::List { service, page } => {
            let list = api.list(&["changes"], &[("service", service)], &page).await?;
            list.print(api, "changes", |items| table(items, CHANGE_COLS))
        }
        ChangesCmd::Get { id } => show(api, &["changes", &id], CHANGE_ROWS).await,
        ChangesCmd::Record {
            kind,
            reference,
            title,
            author,
            change_type,
            service,
            authored_at,
            committed_at,
            merged_at,
            links,
            risk_flags,
            idempotency,
        } => {
            let time = |t: Option<DateTime<Utc>>| t.map(|t| json!(time_text(&t)));
            let body = object(vec![
                ("kind", Some(json!(kind))),
                ("reference", Some(json!(reference))),
                ("title", Some(json!(title))),
                ("author", Some(json!(author))),
                ("change_type", change_type.map(|t| json!(t))),
                ("service", service.map(|s| json!(s))),
                ("authored_at", time(authored_at)),
                ("committed_at", time(committed_at)),
                ("merged_at", time(merged_at)),
                ("links", Some(json!(links))),
                ("risk_flags", Some(json!(risk_flags))),
            ]);
            let key = idempotency.idempotency_key.as_deref();
            create(api, &["changes"], body, key, "change", "reference").await?;
            Ok(())
        }
    }
}
