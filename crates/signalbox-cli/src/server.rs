//! `serve`, `demo` and `audit verify`: the commands that run or read a Signalbox database.

use anyhow::{bail, Context};
use signalbox_app::App;
use signalbox_store::Store;
use signalbox_store_postgres::PostgresStore;
use signalbox_store_sqlite::SqliteStore;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{LogFormat, Settings};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (TOML); see `signalbox config default`.
    #[arg(long, env = "SIGNALBOX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded SQLite database.
    #[arg(long = "data", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…) instead of SQLite.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Directory for the demo database; emptied at every start.
    #[arg(long = "data", value_name = "DIR", default_value = "./signalbox-demo-data")]
    pub data_dir: PathBuf,
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    #[arg(long, value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct VerifySource {
    /// A SQLite data directory.
    #[arg(long = "data", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL database.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// An export file (JSON Lines from `signalbox audit export` or GET /api/v1/audit/export).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: VerifySource,
    /// The file is an excerpt that starts mid-chain, not a full export.
    #[arg(long, requires = "file")]
    pub partial: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let url = settings.database_url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(url, settings.max_connections).await.context("cannot open the PostgreSQL database")?;
        Ok(Arc::new(store))
    } else if !url.is_empty() {
        bail!("--database-url must start with postgres:// (for SQLite, use --data DIR instead)");
    } else {
        let store = SqliteStore::open(&settings.data_dir)
            .await
            .with_context(|| format!("cannot open the SQLite database in {}", settings.data_dir.display()))?;
        Ok(Arc::new(store))
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

async fn run_server(app: App, settings: &Settings) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(&settings.listen).await.with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend = app.store.backend(), "signalbox listening");
    eprintln!("Signalbox is listening on http://{addr} (API docs: http://{addr}/api/docs)");
    let store = app.store.clone();
    let grace = std::time::Duration::from_secs(settings.shutdown_grace_seconds);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let scheduler = settings.scheduler.options().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let server = tokio::spawn(signalbox_server::serve_with(app, listener, settings.max_body_bytes, scheduler, async move {
        shutdown_signal().await;
        let _ = done_tx.send(());
    }));
    // Graceful drain, bounded: after the grace period the process exits anyway.
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => { r??; }
        _ = async { let _ = done_rx.await; tokio::time::sleep(grace).await; } => {
            tracing::warn!("in-flight requests did not finish within {}s; exiting", grace.as_secs());
        }
    }
    store.close().await;
    Ok(())
}

fn print_bootstrap(secret: &str) {
    eprintln!();
    eprintln!("  ┌──────────────────────────────────────────────────────────────────────────────┐");
    eprintln!("  │ First start: an admin token was created. It is shown once; store it safely.  │");
    eprintln!("  └──────────────────────────────────────────────────────────────────────────────┘");
    eprintln!("    export SIGNALBOX_TOKEN={secret}");
    eprintln!();
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::load(args.config.as_deref()).map_err(anyhow::Error::msg)?;
    if let Some(d) = args.data_dir {
        settings.data_dir = d;
    }
    if let Some(u) = args.database_url {
        settings.database_url = u;
    }
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    if let Some(f) = args.log_format {
        settings.log_format = f;
    }
    init_logging(settings.log_format, &settings.log_level);
    let governance = settings.governance.settings().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    settings.scheduler.options().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let store = open_store(&settings).await?;
    let mut app = App::new(store);
    app.governance = std::sync::Arc::new(governance);
    let mut repositories = signalbox_app::repositories::RepositorySettings::new(settings.mirror_dir(), settings.changelog.clone());
    if let Some(secs) = settings.repositories.refresh_interval_secs {
        repositories.refresh_interval = std::time::Duration::from_secs(secs);
    }
    app.repositories = std::sync::Arc::new(repositories);
    if let Some(url) = settings.rollouts.prometheus_url.clone().filter(|u| !u.is_empty()) {
        if let Ok(mut address) = app.controller.prometheus_address.lock() {
            *address = Some(url);
        }
    }
    let preset = std::env::var("SIGNALBOX_BOOTSTRAP_TOKEN").ok().filter(|s| !s.is_empty());
    let boot = app.bootstrap(preset.as_deref()).await.map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;
    if let Some(secret) = &boot.created_secret {
        print_bootstrap(secret);
    }
    run_server(app, &settings).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format, "info");
    if args.data_dir.exists() {
        let marker = args.data_dir.join("signalbox.db");
        let empty = std::fs::read_dir(&args.data_dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !marker.exists() && !empty {
            bail!("--data {}: the directory is not empty and holds no Signalbox database; refusing to wipe it", args.data_dir.display());
        }
        std::fs::remove_dir_all(&args.data_dir).with_context(|| format!("cannot empty {}", args.data_dir.display()))?;
    }
    // The demo takes no configuration file; SIGNALBOX_SCHEDULER* still apply.
    let scheduler = Settings::load(None).map_err(anyhow::Error::msg)?.scheduler;
    let settings = Settings {
        data_dir: args.data_dir.clone(),
        listen: args.listen.clone(),
        log_format: args.log_format,
        scheduler,
        ..Settings::default()
    };
    let store = open_store(&settings).await?;
    let mut app = App::new(store);
    app.repositories = std::sync::Arc::new(signalbox_app::repositories::RepositorySettings::new(
        settings.mirror_dir(),
        signalbox_versioning::ChangelogConfig::default(),
    ));
    let preset = std::env::var("SIGNALBOX_BOOTSTRAP_TOKEN").ok().filter(|s| !s.is_empty());
    let boot = app.bootstrap(preset.as_deref()).await.map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;
    eprintln!("Seeding the demo organization…");
    let summary = app.seed_demo().await.map_err(|e| anyhow::anyhow!("seeding the demo failed: {e}"))?;
    eprintln!(
        "Demo ready: {} services, {} artifacts, {} releases ({} walked to every lifecycle state, one each; the others are being rolled out by the promotion example), and the release trains' upcoming departures (R-14 on) as soon as the scheduler runs. People: alice (release manager), bruno (developer), chen (tech lead), dara (sre), emma (product owner), farid (security), grace (compliance); each logs in with password <name>-demo-password.",
        summary.services, summary.artifacts, summary.releases, summary.lifecycle_releases
    );
    eprintln!(
        "Rollouts: search-api 1.5.0 and catalog-service 1.5.0 go to dev now and to staging in about 20 s (canary on a simulated fleet); catalog-service's canary fails 5 % of requests and is rolled back by itself. Follow them: signalbox rollout list"
    );
    let repos = app.demo_repository_root();
    if repos.exists() {
        eprintln!(
            "Git: checkout-api, search-api and fraud-scoring read their history from generated repositories in {}. Try: signalbox release notes R-8; signalbox version next --repo {}",
            repos.display(),
            repos.join("fraud-scoring").display()
        );
    }
    if let Some(secret) = &boot.created_secret {
        print_bootstrap(secret);
    }
    // The demo's stand-in for applications: pushes the simulated canaries' health.
    let (_traffic_stop, traffic_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(signalbox_app::demo::promotion::run_demo_traffic(app.clone(), traffic_rx));
    run_server(app, &settings).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (report, source) = if let Some(file) = &args.source.file {
        let text = std::fs::read_to_string(file).with_context(|| format!("--file {}: cannot read", file.display()))?;
        let report =
            signalbox_app::audit::verify_jsonl(&text, !args.partial).map_err(|e| anyhow::anyhow!("--file {}: {e}", file.display()))?;
        (report, file.display().to_string())
    } else if let Some(url) = &args.source.database_url {
        let store = PostgresStore::connect(url, 2).await.context("--database-url: cannot open the database")?;
        let report = signalbox_app::audit::verify_store(&store).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        store.close().await;
        (report, "the PostgreSQL database".to_string())
    } else {
        let dir = args.source.data_dir.clone().unwrap_or_else(crate::default_data_dir);
        let store =
            SqliteStore::open_existing(&dir).await.with_context(|| format!("--data {}: no Signalbox database there", dir.display()))?;
        let report = signalbox_app::audit::verify_store(&store).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        store.close().await;
        (report, dir.display().to_string())
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "valid": report.is_valid(),
                "entries": report.entries,
                "last_seq": report.last_seq,
                "last_hash": report.last_hash,
                "problems": report.problems,
            }))?
        );
    } else if report.is_valid() {
        println!(
            "audit chain OK: {} entries verified in {source}; head is entry {} ({})",
            report.entries,
            report.last_seq.unwrap_or(0),
            report.last_hash.as_deref().unwrap_or("-")
        );
    } else {
        println!("audit chain BROKEN in {source}: {} problem(s) among {} entries", report.problems.len(), report.entries);
        for p in &report.problems {
            println!("  - {p}");
        }
    }
    Ok(if report.is_valid() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
