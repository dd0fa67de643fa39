//! The `signalbox` command line. Server commands (`serve`, `demo`), local commands that need
//! no server (`audit verify`, `config default`, `completions`) and client commands that talk to
//! a server over HTTP (`client`).
//!
//! Exit codes: 0 success; 1 failure (including an audit chain that does not verify); 2 usage
//! error; 3–7 as documented in [`client`] for client commands.

pub mod client;
pub mod config;
pub mod server;
pub mod versioning;

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "signalbox", version, about = "Release management and orchestration", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Server URL, token and output format for client commands (global flags).
    #[command(flatten)]
    pub client: client::ClientOpts,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (SQLite in --data unless --database-url is given).
    Serve(server::ServeArgs),
    /// Run the server on a fresh SQLite database seeded with a believable organization.
    Demo(server::DemoArgs),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Audit trail: verify locally, or list and export from a server.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Versions from git history (Conventional Commits since the last release tag).
    #[command(subcommand)]
    Version(versioning::VersionCmd),
    /// A Keep a Changelog 1.1.0 changelog (or JSON, or a template) from git history.
    Changelog(versioning::ChangelogArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the annotated default configuration (TOML).
    Default,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Verify the hash chain in a database or an export file; exits 1 and names each edited,
    /// deleted, inserted or reordered entry if it does not verify.
    Verify(server::VerifyArgs),
    #[command(flatten)]
    Remote(client::AuditClientCmd),
}

/// Entry point of the binary.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = cli.client.clone();
    runtime.block_on(async move {
        let result = match cli.command {
            Command::Serve(args) => server::serve(args).await,
            Command::Demo(args) => server::demo(args).await,
            Command::Config(ConfigCmd::Default) => {
                print!("{}", config::annotated_defaults());
                Ok(ExitCode::SUCCESS)
            }
            Command::Audit(AuditCmd::Verify(args)) => server::verify(args).await,
            Command::Audit(AuditCmd::Remote(cmd)) => client::run_audit(cmd, &opts).await,
            Command::Version(versioning::VersionCmd::Next(args)) => versioning::version_next(args),
            Command::Changelog(args) => versioning::changelog(args),
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "signalbox", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
            Command::Client(cmd) => client::run(cmd, &opts).await,
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./signalbox-data")
}
