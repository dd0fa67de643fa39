//! The client commands of `signalbox`: they talk to a running server over its HTTP API
//! (`/api/v1`), print tables for people or the server's JSON for scripts (`--output json`),
//! and exit with a code that CI can branch on.
//!
//! The server comes from `--url` / `SIGNALBOX_URL` (default `http://127.0.0.1:8080`), the
//! token from `--token` / `SIGNALBOX_TOKEN`. `signalbox login --username NAME
//! --password-stdin` exchanges a password (read from standard input, never from the command
//! line) for a token.
//!
//! # Exit codes
//!
//! | code | meaning                                                                    |
//! |------|----------------------------------------------------------------------------|
//! | 0    | success                                                                    |
//! | 1    | any other failure (an unexpected answer, a write error, a closed pipe)     |
//! | 2    | usage error: the command line could not be parsed (clap)                   |
//! | 3    | not authenticated or not allowed: no token, HTTP 401 or 403                |
//! | 4    | not found: HTTP 404                                                        |
//! | 5    | conflict or refused transition: HTTP 409, or 412 (stale `--if-match`)      |
//! | 6    | invalid input: HTTP 400 or 422, or local input that cannot be used (an     |
//! |      | unreadable `--file`, an empty `--password-stdin`, a bad `--url`)           |
//! | 7    | server unreachable (connection refused, timeout) or failing: HTTP 5xx      |
//! | 8    | `signalbox flags stale` found stale flags (the report is printed)          |
//!
//! Any other HTTP error status exits with 1. The constants are in [`exit`]; the mapping from
//! HTTP statuses is [`exit_code_for_status`].
//!
//! Errors are printed on standard error as `error: <title>: <detail>`, followed by one
//! `  - <field>: <message>` line per field error of the server's problem document
//! ([`render_problem`]).

mod access;
mod args;
mod audit;
mod builds;
mod calendar;
mod catalog;
mod common;
mod error;
mod flags;
mod governance;
mod http;
mod notes;
mod output;
mod promotion;
mod releases;
mod templates;
#[cfg(test)]
mod tests;

pub use access::{RoleBindingsCmd, TokensCmd, UsersCmd};
pub use args::{Idempotency, IfMatch, PageArgs};
pub use audit::AuditClientCmd;
pub use builds::{ArtifactsCmd, ChangesCmd};
pub use calendar::{CalendarCmd, TrainCmd};
pub use catalog::{DomainsCmd, EnvironmentsCmd, ServicesCmd, TeamsCmd};
pub use error::{exit, exit_code_for_status, render_problem, CliError};
pub use flags::FlagsCmd;
pub use governance::{BreakGlassCmd, EvidenceCmd, PoliciesCmd};
pub use output::reindent_json;
pub use promotion::{DeployCmd, PathsCmd, RolloutCmd};
pub use releases::ReleasesCmd;
pub use templates::TemplatesCmd;

use http::Api;
use std::io::Write;
use std::process::ExitCode;

// Where the server is, who is calling, and how to print; global, so valid after any
// subcommand. (A plain comment: clap would make a doc comment the `about` of the command
// these options are flattened into.)
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOpts {
    /// Server URL
    #[arg(long, env = "SIGNALBOX_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// API token
    #[arg(long, env = "SIGNALBOX_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: OutputFormat,
}

/// How client commands print their results.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Tables for people
    #[default]
    Table,
    /// The server's JSON, pretty-printed, for scripts
    Json,
}

// The client commands (`signalbox audit list|export` are separate: see `AuditClientCmd`).
// Plain comments, not doc comments: clap would make a doc comment the `about` of whatever
// command this enum is flattened into.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Business domains
    #[command(subcommand)]
    Domains(DomainsCmd),
    /// Teams, each in a domain
    #[command(subcommand)]
    Teams(TeamsCmd),
    /// Services (deployable components), each owned by a team
    #[command(subcommand, alias = "service")]
    Services(ServicesCmd),
    /// Environments along the promotion path
    #[command(subcommand)]
    Environments(EnvironmentsCmd),
    /// Artifacts: builds of services, identified by digest
    #[command(subcommand)]
    Artifacts(ArtifactsCmd),
    /// Changes: commits, pull requests and tickets
    #[command(subcommand)]
    Changes(ChangesCmd),
    /// Releases and their lifecycle, tasks, review, gates, approvals and readiness
    #[command(subcommand, alias = "release")]
    Releases(ReleasesCmd),
    /// Evidence: test results, scans, SBOMs, coverage, sign-offs
    #[command(subcommand)]
    Evidence(EvidenceCmd),
    /// Gate and approval policies per environment
    #[command(subcommand, alias = "policy")]
    Policies(PoliciesCmd),
    /// Emergency bypass of gates: request, confirm, list
    #[command(subcommand)]
    BreakGlass(BreakGlassCmd),
    /// The release calendar: windows, freezes, bookings, conflicts
    #[command(subcommand)]
    Calendar(CalendarCmd),
    /// Release trains: departures, boarding
    #[command(subcommand, alias = "trains")]
    Train(TrainCmd),
    /// Feature flags (flagd format) per environment
    #[command(subcommand)]
    Flags(FlagsCmd),
    /// Promotion paths: the environments releases move through, with their rules
    #[command(subcommand, alias = "path")]
    Paths(PathsCmd),
    /// Promote a release's components into an environment (one rollout per component)
    Promote {
        /// Release id or key
        release: String,
        /// Environment id or name
        #[arg(long)]
        environment: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Rollouts: status with live progress, pause, resume, abort, promote now, retry
    #[command(subcommand, alias = "rollouts")]
    Rollout(RolloutCmd),
    /// Deployments made by your own pipelines
    #[command(subcommand)]
    Deploy(DeployCmd),
    /// Release templates
    #[command(subcommand)]
    Templates(TemplatesCmd),
    /// Users
    #[command(subcommand)]
    Users(UsersCmd),
    /// API tokens
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Role bindings: who holds which role where
    #[command(subcommand)]
    RoleBindings(RoleBindingsCmd),
    /// Log in with a username and password and get an API token
    Login {
        /// Your username
        #[arg(long)]
        username: String,
        /// Read the password from standard input (it is never taken from the command line)
        #[arg(long)]
        password_stdin: bool,
        /// Name of the token to create
        #[arg(long)]
        token_name: Option<String>,
    },
}

/// Runs a client command. Failures are printed on standard error here; the exit code says
/// which kind (see the table at the top of this module). Never returns `Err`.
pub async fn run(cmd: ClientCommand, opts: &ClientOpts) -> anyhow::Result<ExitCode> {
    Ok(finish(dispatch(cmd, opts).await))
}

/// Runs `signalbox audit list|export`.
pub async fn run_audit(cmd: AuditClientCmd, opts: &ClientOpts) -> anyhow::Result<ExitCode> {
    let result = match Api::new(opts) {
        Ok(api) => audit::run(&api, cmd).await,
        Err(e) => Err(e),
    };
    Ok(finish(result))
}

async fn dispatch(cmd: ClientCommand, opts: &ClientOpts) -> Result<(), CliError> {
    if let ClientCommand::Login { username, password_stdin, token_name } = cmd {
        if !password_stdin {
            return Err(CliError::new(
                exit::USAGE,
                "login reads the password from standard input: pass --password-stdin, e.g.\n  \
                 printf '%s' \"$PASSWORD\" | signalbox login --username NAME --password-stdin",
            ));
        }
        let api = Api::anonymous(opts)?;
        return access::login(&api, username, token_name).await;
    }
    let api = Api::new(opts)?;
    match cmd {
        ClientCommand::Domains(c) => catalog::domains(&api, c).await,
        ClientCommand::Teams(c) => catalog::teams(&api, c).await,
        ClientCommand::Services(c) => catalog::services(&api, c).await,
        ClientCommand::Environments(c) => catalog::environments(&api, c).await,
        ClientCommand::Artifacts(c) => builds::artifacts(&api, c).await,
        ClientCommand::Changes(c) => builds::changes(&api, c).await,
        ClientCommand::Releases(c) => releases::run(&api, c).await,
        ClientCommand::Evidence(c) => governance::evidence(&api, c).await,
        ClientCommand::Policies(c) => governance::policies(&api, c).await,
        ClientCommand::BreakGlass(c) => governance::break_glass(&api, c).await,
        ClientCommand::Calendar(c) => calendar::calendar(&api, c).await,
        ClientCommand::Train(c) => calendar::train(&api, c).await,
        ClientCommand::Flags(c) => flags::flags(&api, c).await,
        ClientCommand::Paths(c) => promotion::paths(&api, c).await,
        ClientCommand::Promote { release, environment, reason } => promotion::promote(&api, release, environment, reason).await,
        ClientCommand::Rollout(c) => promotion::rollout(&api, c).await,
        ClientCommand::Deploy(c) => promotion::deploy(&api, c).await,
        ClientCommand::Templates(c) => templates::run(&api, c).await,
        ClientCommand::Users(c) => access::users(&api, c).await,
        ClientCommand::Tokens(c) => access::tokens(&api, c).await,
        ClientCommand::RoleBindings(c) => access::role_bindings(&api, c).await,
        ClientCommand::Login { .. } => Ok(()),
    }
}

fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                let _ = writeln!(std::io::stderr(), "{}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}
