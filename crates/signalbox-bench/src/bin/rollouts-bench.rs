//! `rollouts-bench`: the rollout controller under many concurrent canaries analysing pushed
//! metrics (issue 6's benchmark).
//!
//! For each population (the smaller comparison populations first, then `--rollouts`) it opens a
//! fresh store in-process (SQLite in a temporary directory, or a scratch PostgreSQL database),
//! creates one service per rollout with an artifact, a simulated fleet and a service path whose
//! one environment (staging) runs a canary `set_weight 10 → analysis(error-rate) → set_weight
//! 100`, and one release per service in `testing` (staging is not the release's last target, so
//! no approval is needed). Then it runs the real controller loop ([`rollouts::run`], the loop the
//! server runs) and a pusher that pushes every deployment's error rate every `--push-every`
//! seconds, as the applications would through `POST /deployments/{id}/metrics`, while the
//! releases are promoted, spread over `--stagger` seconds.
//!
//! Once every rollout is running, a measured window of `--minutes` starts. During its first half
//! `--breach-percent` of the rollouts start pushing a breaching value (0.05 ≥ 0.01) at a recorded
//! time T_b each. At the end the controller and the pusher stop and everything is read back from
//! the store:
//! - **scheduling lag** — how late each analysis measurement ran: `at − (previous.at + interval)`,
//!   and for the first one `at − (analysis start + max(initial delay, interval))` (the
//!   controller defers a pushed metric's first measurement by one interval); measurements taken
//!   inside the window, from the running analysis and from finished steps' history;
//! - **breach → rollback request** — `rollout.rollback_requested_at − T_b`, and the part of it
//!   after the failing measurement (the controller's own reaction);
//! - controller transactions per second (rollout jobs fired in the window) and audit entries
//!   per second (every write: controller and pushes);
//! - state: records and JSON bytes per kind (and of the audit log) per rollout;
//! - peak RSS of this process (VmHWM), and the cost of the controller's per-tick listing of
//!   pending jobs with the backlog of due-but-unclaimed jobs, sampled every second.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::json;
use signalbox_app::promotion::{Deployment, PromoteRequest, PushMetrics, PushedValue, PutPath};
use signalbox_app::requests::*;
use signalbox_app::rollouts::{self, JOB_ROLLOUT};
use signalbox_app::scheduler::Job;
use signalbox_app::{App, RequestContext};
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{Criticality, DataClassification, Kind, Protection, Tier};
use signalbox_rollout::plan::{AnalysisState, RolloutPhase};
use signalbox_store::{AuditQuery, ListQuery, Store};

#[derive(Parser, Debug, Clone)]
#[command(about = "Rollout controller: scheduling lag and breach-to-rollback under many concurrent canaries")]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Concurrent rollouts of the main run.
    #[arg(long, default_value_t = 1000)]
    rollouts: usize,
    /// Smaller populations run first in the same process for comparison (comma-separated;
    /// empty for none).
    #[arg(long, default_value = "100,250,500")]
    compare: String,
    /// The analysis interval, seconds.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Length of the measured window, minutes (after every rollout started).
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Seconds over which the promotions are spread (default: two intervals).
    #[arg(long)]
    stagger: Option<f64>,
    /// Seconds between two pushes for one deployment.
    #[arg(long, default_value_t = 2.0)]
    push_every: f64,
    /// Concurrent pushers (each pushes its share of the deployments one after another).
    #[arg(long, default_value_t = 8)]
    push_workers: usize,
    /// Percentage of rollouts that breach during the window.
    #[arg(long, default_value_t = 10.0)]
    breach_percent: f64,
    /// The controller's concurrency limit (the server uses 64).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The controller's tick, ms (the server's default is 250).
    #[arg(long, default_value_t = 250)]
    tick_ms: u64,
    /// PostgreSQL server to create a scratch database on.
    #[arg(long, env = "SIGNALBOX_BENCH_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// PostgreSQL pool size (the server's default max_connections is 16).
    #[arg(long, default_value_t = 16)]
    pg_connections: u32,
}

const METRIC: &str = "error-rate";
const HEALTHY: f64 = 0.002;
const BREACH: f64 = 0.05;

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Debug, Clone, Copy, Default)]
struct Dist {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

fn dist(mut v: Vec<f64>) -> Dist {
    v.sort_by(|a, b| a.total_cmp(b));
    Dist { n: v.len(), p50: quantile(&v, 0.5), p99: quantile(&v, 0.99), max: v.last().copied().unwrap_or(f64::NAN) }
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_microseconds().map(|us| us as f64 / 1e6).unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) this process used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the 12th
    // and 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// What one population's run measured.
#[derive(Debug, Clone, Default)]
struct Outcome {
    rollouts: usize,
    setup_s: f64,
    ramp_s: f64,
    /// Latency of each promotion (one release, one component) during the ramp, seconds.
    promote: Dist,
    window_s: f64,
    /// CPU cores this process used on average during the window.
    cores: f64,
    count: u32,
    lag: Dist,
    lag_over_1s: usize,
    no_data: usize,
    /// No-data measurements over the whole run: (first of an analysis, later ones).
    no_data_all: (usize, usize),
    errors: usize,
    breach: Dist,
    reaction: Dist,
    breached: usize,
    not_rolled_back: usize,
    false_rollbacks: usize,
    phases: Vec<(String, usize)>,
    fires_per_s: f64,
    audit_per_s: f64,
    pushes_per_s: f64,
    push_pass: Dist,
    push_errors: u64,
    listing_ms: Dist,
    backlog: Dist,
    overdue_s: Dist,
    state: Vec<(String, usize, u64)>,
    rss_kib: u64,
    hwm_kib: u64,
}

async fn open_store(args: &Args, backend: &str) -> anyhow::Result<(Arc<dyn Store>, Option<tempfile::TempDir>, Option<String>)> {
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir()?;
            let store = signalbox_store_sqlite::SqliteStore::open(dir.path()).await?;
            Ok((Arc::new(store), Some(dir), None))
        }
        "postgres" => {
            let url = signalbox_store_postgres::testing::fresh_database(&args.postgres_url).await?;
            let store = signalbox_store_postgres::PostgresStore::connect(&url, args.pg_connections).await?;
            Ok((Arc::new(store), None, Some(url)))
        }
        other => anyhow::bail!("--backend must be sqlite, postgres or both, not {other:?}"),
    }
}

fn path_for(service: &str, interval: u64, count: u32) -> serde_json::Value {
    json!({
        "name": format!("{service} staging"),
        "service": service,
        "stages": [{
            "environment": "staging",
            "strategy": {"type": "canary", "steps": [
                {"set_weight": 10},
                {"analysis": {"metrics": [METRIC]}},
                {"set_weight": 100}
            ]},
            "driver": {"type": "simulated", "fleet": format!("{service}-staging")},
            "metrics": [{
                "name": METRIC,
                "provider": {"type": "pushed"},
                "interval_seconds": interval,
                "count": count,
                "success_condition": "avg(result) < 0.01",
                "failure_condition": "avg(result) >= 0.01",
                "no_data": "inconclusive"
            }]
        }]
    })
}

/// Creates service `i` with its artifact, fleet, path and a release in `testing`; returns the
/// release id.
async fn seed_one(app: &App, ctx: &RequestContext, i: usize, interval: u64, count: u32) -> anyhow::Result<String> {
    let name = format!("svc-{i}");
    app.create_service(
        ctx,
        CreateService {
            name: name.clone(),
            team: "bench-team".into(),
            repo_url: None,
            owners: vec![],
            criticality: Criticality::Internal,
            data_classification: DataClassification::Internal,
        },
    )
    .await?;
    let stable = format!("sha256:{:064x}", 2 * i + 1);
    let digest = format!("sha256:{:064x}", 2 * i + 2);
    app.register_artifact(
        ctx,
        RegisterArtifact { service: name.clone(), version: "2.0.0".into(), digest, source_commit: None, build_url: None },
    )
    .await?;
    app.controller.fleets.add_fleet(
        &format!("{name}-staging"),
        Some(signalbox_drivers::ArtifactRef { name: name.clone(), version: "1.0.0".into(), digest: stable }),
    );
    let path: PutPath = serde_json::from_value(path_for(&name, interval, count))?;
    app.put_path(ctx, path).await?;
    let release = app
        .create_release(
            ctx,
            serde_json::from_value(json!({"name": format!("{name} 2.0.0"), "domain": "bench",
                "components": [format!("{name}@2.0.0")], "target_environments": ["staging", "prod"]}))?,
        )
        .await?;
    let release = app
        .transition_release(
            ctx,
            &release.value.id,
            Some(release.version),
            TransitionRequest { to: ReleaseState::Testing, reason: Some("bench".into()), environment: None },
        )
        .await?;
    Ok(release.value.id)
}

/// Every record of a kind, page by page.
async fn list_all(store: &dyn Store, mut q: ListQuery) -> anyhow::Result<Vec<signalbox_store::Record>> {
    q.limit = 1000;
    let mut out = Vec::new();
    loop {
        let page = store.list(&q).await?;
        out.extend(page.items);
        match page.next_after_seq {
            Some(seq) => q.after_seq = Some(seq),
            None => return Ok(out),
        }
    }
}

async fn audit_seq(store: &dyn Store) -> i64 {
    store.audit_head().await.ok().flatten().map(|(seq, _)| seq).unwrap_or(0)
}

struct Shared {
    /// Deployment ids in promotion order.
    ids: Mutex<Vec<String>>,
    breached: Mutex<HashSet<String>>,
    stop: AtomicBool,
    pushes: AtomicU64,
    push_errors: AtomicU64,
    /// (pass start, duration s) of every pusher pass.
    passes: Mutex<Vec<(Instant, f64)>>,
}

async fn pusher(app: App, shared: Arc<Shared>, worker: usize, workers: usize, every: Duration) {
    let ctx = RequestContext::system();
    while !shared.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        // Walk the live list, so that a deployment promoted while a pass runs is pushed in the
        // same pass (as its application would, within `every`), not a pass later.
        let mut i = worker;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(id) = shared.ids.lock().expect("ids").get(i).cloned() else { break };
            i += workers;
            let value = if shared.breached.lock().expect("breached").contains(&id) { BREACH } else { HEALTHY };
            let values = vec![PushedValue { metric: METRIC.into(), value, baseline: None }];
            match app.push_metrics(&ctx, &id, PushMetrics { values }).await {
                Ok(_) => shared.pushes.fetch_add(1, Ordering::Relaxed),
                Err(_) => shared.push_errors.fetch_add(1, Ordering::Relaxed),
            };
        }
        shared.passes.lock().expect("passes").push((started, started.elapsed().as_secs_f64()));
        let next = started + every;
        while Instant::now() < next && !shared.stop.load(Ordering::Relaxed) {
            tokio::time::sleep((next - Instant::now()).min(Duration::from_millis(200))).await;
        }
    }
}

/// (taken at, listing ms, due jobs, oldest overdue s).
type Samples = Arc<Mutex<Vec<(Instant, f64, usize, f64)>>>;

/// Every second: how long the controller's listing of pending rollout jobs takes, how many of
/// them are due, and how overdue the oldest is.
async fn sampler(store: Arc<dyn Store>, shared: Arc<Shared>, out: Samples) {
    while !shared.stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let mut q = ListQuery::all(Kind::Job).with_field("kind", JOB_ROLLOUT);
        q.state = Some("pending".into());
        if let Ok(records) = list_all(store.as_ref(), q).await {
            let took = t.elapsed().as_secs_f64() * 1000.0;
            let now = Utc::now();
            let mut due = 0;
            let mut overdue: f64 = 0.0;
            for r in &records {
                if let Ok(job) = serde_json::from_value::<Job>(r.body.clone()) {
                    if job.due <= now {
                        due += 1;
                        overdue = overdue.max(secs(now - job.due));
                    }
                }
            }
            out.lock().expect("samples").push((t, took, due, overdue));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        tokio::time::sleep(d).await;
    }
}

fn analyses(d: &Deployment) -> Vec<&AnalysisState> {
    d.rollout.history.iter().filter_map(|h| h.analysis.as_ref()).chain(d.rollout.analysis.as_ref()).collect()
}

async fn run_population(args: &Args, backend: &str, n: usize) -> anyhow::Result<Outcome> {
    let interval = args.interval;
    let window = Duration::from_secs_f64(args.minutes * 60.0);
    let stagger = args.stagger.unwrap_or(2.0 * interval as f64);
    // Long enough that the first rollouts are still analysing when the window ends, even when
    // promotion takes three times the planned stagger.
    let count = ((3.0 * stagger + window.as_secs_f64()) / interval as f64).ceil() as u32 + 3;
    let (store, dir, pg_url) = open_store(args, backend).await?;
    let app = App::new(store.clone());
    app.bootstrap(None).await?;
    let ctx = RequestContext::system();
    app.create_domain(&ctx, CreateDomain { name: "bench".into(), description: String::new() }).await?;
    app.create_team(&ctx, CreateTeam { name: "bench-team".into(), domain: "bench".into(), description: String::new() }).await?;
    for (tier, name, position) in [(Tier::Staging, "staging", 30), (Tier::Prod, "prod", 40)] {
        app.create_environment(
            &ctx,
            CreateEnvironment {
                name: name.into(),
                tier,
                position,
                protection: Protection::default(),
                config: Default::default(),
                owner: None,
            },
        )
        .await?;
    }
    let setup_started = Instant::now();
    let mut releases = vec![String::new(); n];
    {
        let workers = 4;
        let mut set = tokio::task::JoinSet::new();
        for w in 0..workers {
            let app = app.clone();
            set.spawn(async move {
                let ctx = RequestContext::system();
                let mut out = Vec::new();
                for i in (w..n).step_by(workers) {
                    out.push((i, seed_one(&app, &ctx, i, interval, count).await.with_context(|| format!("seeding svc-{i}"))?));
                }
                anyhow::Ok(out)
            });
        }
        while let Some(r) = set.join_next().await {
            for (i, id) in r?? {
                releases[i] = id;
            }
        }
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    eprintln!("[{backend} n={n}] seeded {n} services and releases in {setup_s:.1}s; analysis count {count}");

    // The controller, the pusher and the sampler run from here on.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(rollouts::run(app.clone(), Duration::from_millis(args.tick_ms), args.concurrency, stop_rx));
    let shared = Arc::new(Shared {
        ids: Mutex::new(Vec::with_capacity(n)),
        breached: Mutex::new(HashSet::new()),
        stop: AtomicBool::new(false),
        pushes: AtomicU64::new(0),
        push_errors: AtomicU64::new(0),
        passes: Mutex::new(Vec::new()),
    });
    let mut background = Vec::new();
    for w in 0..args.push_workers.max(1) {
        background.push(tokio::spawn(pusher(
            app.clone(),
            shared.clone(),
            w,
            args.push_workers.max(1),
            Duration::from_secs_f64(args.push_every),
        )));
    }
    let samples = Arc::new(Mutex::new(Vec::new()));
    background.push(tokio::spawn(sampler(store.clone(), shared.clone(), samples.clone())));

    // Promotions, spread evenly over the stagger (as fast as possible when behind).
    let ramp_started = Instant::now();
    let mut promote_s = Vec::with_capacity(n);
    for (i, release) in releases.iter().enumerate() {
        sleep_until(ramp_started + Duration::from_secs_f64(stagger * i as f64 / n as f64)).await;
        let t = Instant::now();
        let out = app
            .promote(&ctx, release, PromoteRequest { environment: "staging".into(), reason: Some("bench".into()) })
            .await
            .with_context(|| format!("promoting release {i}"))?;
        promote_s.push(t.elapsed().as_secs_f64());
        // The application reports as soon as its canary runs, then every `--push-every`
        // seconds with the pushers (whose next pass may be a while away during the ramp).
        let id = out.deployments[0].id.clone();
        let values = vec![PushedValue { metric: METRIC.into(), value: HEALTHY, baseline: None }];
        app.push_metrics(&ctx, &id, PushMetrics { values }).await.with_context(|| format!("first push for release {i}"))?;
        shared.ids.lock().expect("ids").push(id);
    }
    let ramp_s = ramp_started.elapsed().as_secs_f64();
    eprintln!("[{backend} n={n}] promoted {n} releases in {ramp_s:.1}s (planned {stagger:.0}s)");

    // Every rollout reaches its analysis and its first measurement falls due within an
    // interval of its promotion; the window starts after that.
    let window_start_i = Instant::now() + Duration::from_secs(interval + 2);
    sleep_until(window_start_i).await;
    let window_start = Utc::now();
    let audit_start = audit_seq(store.as_ref()).await;
    let cpu_start = cpu_seconds();
    let pushes_start = shared.pushes.load(Ordering::Relaxed);
    let window_end_i = window_start_i + window;
    eprintln!("[{backend} n={n}] measuring for {:.0}s", window.as_secs_f64());

    // Breaches: every k-th rollout, spread over the first half of the window.
    let ids: Vec<String> = shared.ids.lock().expect("ids").clone();
    let every = (100.0 / args.breach_percent.clamp(0.01, 100.0)).round().max(1.0) as usize;
    let subset: Vec<String> = ids.iter().step_by(every).cloned().collect();
    let mut breach_at: HashMap<String, DateTime<Utc>> = HashMap::new();
    for (k, id) in subset.iter().enumerate() {
        sleep_until(window_start_i + window.mul_f64(0.5 * k as f64 / subset.len() as f64)).await;
        shared.breached.lock().expect("breached").insert(id.clone());
        let values = vec![PushedValue { metric: METRIC.into(), value: BREACH, baseline: None }];
        match app.push_metrics(&ctx, id, PushMetrics { values }).await {
            Ok(record) => {
                breach_at.insert(id.clone(), record.at);
            }
            Err(e) => eprintln!("breach push for {id} failed: {e}"),
        }
    }
    sleep_until(window_end_i).await;
    let window_end = Utc::now();
    let window_s = secs(window_end - window_start);
    let audit_end = audit_seq(store.as_ref()).await;
    let cores = (cpu_seconds() - cpu_start) / window_s;
    let pushes_end = shared.pushes.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    shared.stop.store(true, Ordering::Relaxed);
    controller.await.ok();
    for h in background {
        h.await.ok();
    }
    // Jobs the controller had already spawned finish within their own transactions.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("[{backend} n={n}] stopped; reading the results back");

    // Scheduling lag and breach → rollback, from the deployments.
    let deployments = list_all(store.as_ref(), ListQuery::all(Kind::Deployment)).await?;
    let mut lags = Vec::new();
    let (mut no_data, mut errors) = (0, 0);
    let mut no_data_all = (0, 0);
    let mut breach = Vec::new();
    let mut reaction = Vec::new();
    let (mut not_rolled_back, mut false_rollbacks) = (0, 0);
    let mut phases: HashMap<String, usize> = HashMap::new();
    for r in &deployments {
        let d: Deployment = serde_json::from_value(r.body.clone())?;
        *phases.entry(d.rollout.phase.as_str().to_string()).or_default() += 1;
        let mut failing_at: Option<DateTime<Utc>> = None;
        for run in analyses(&d) {
            for m in run.metrics.iter().filter(|m| m.name == METRIC) {
                let mut due = run.started_at + chrono::Duration::seconds(interval as i64);
                for (k, x) in m.measurements.iter().enumerate() {
                    if x.no_data {
                        if k == 0 {
                            no_data_all.0 += 1;
                        } else {
                            no_data_all.1 += 1;
                        }
                    }
                    if x.at >= window_start && x.at <= window_end {
                        lags.push(secs(x.at - due));
                        no_data += usize::from(x.no_data);
                        errors += usize::from(x.outcome == signalbox_rollout::analysis::Outcome::Error);
                    }
                    if x.outcome == signalbox_rollout::analysis::Outcome::Failed && failing_at.is_none() {
                        failing_at = Some(x.at);
                    }
                    due = x.at + chrono::Duration::seconds(interval as i64);
                }
            }
        }
        let rolled_back = d.rollout.rollback_requested_at;
        match (breach_at.get(&d.id), rolled_back) {
            (Some(tb), Some(rb)) => {
                breach.push(secs(rb - *tb));
                if let Some(f) = failing_at {
                    reaction.push(secs(rb - f));
                }
            }
            (Some(_), None) => not_rolled_back += 1,
            (None, Some(_)) => false_rollbacks += 1,
            (None, None) => {}
        }
        if d.rollout.phase == RolloutPhase::Paused && phases.get("paused").is_some_and(|p| *p <= 3) {
            eprintln!("  paused: {} {:?}", d.key, d.rollout.pause.as_ref().map(|p| p.message.clone()));
        }
    }
    let lag_over_1s = lags.iter().filter(|l| **l > 1.0).count();

    // Controller transactions: rollout jobs fired in the window.
    let jobs = list_all(store.as_ref(), ListQuery::all(Kind::Job)).await?;
    let mut fires = 0usize;
    for r in &jobs {
        let job: Job = serde_json::from_value(r.body.clone())?;
        if job.kind == JOB_ROLLOUT && job.fired_at.is_some_and(|t| t >= window_start && t <= window_end) {
            fires += 1;
        }
    }

    // State: records and JSON bytes per kind, and the audit log.
    let mut state = Vec::new();
    for (name, kind, records) in [
        ("jobs", Kind::Job, Some(jobs)),
        ("deployments", Kind::Deployment, Some(deployments)),
        ("metric pushes", Kind::MetricPush, None),
        ("releases", Kind::Release, None),
    ] {
        let records = match records {
            Some(r) => r,
            None => list_all(store.as_ref(), ListQuery::all(kind)).await?,
        };
        let bytes: u64 = records.iter().map(|r| serde_json::to_vec(&r.body).map(|v| v.len() as u64).unwrap_or(0)).sum();
        state.push((name.to_string(), records.len(), bytes));
    }
    {
        let mut q = AuditQuery { limit: 1000, ..Default::default() };
        let (mut entries, mut bytes) = (0usize, 0u64);
        loop {
            let page = store.audit_page(&q).await?;
            let Some(last) = page.last() else { break };
            q.after_seq = Some(last.seq);
            entries += page.len();
            bytes += page.iter().map(|e| serde_json::to_vec(e).map(|v| v.len() as u64).unwrap_or(0)).sum::<u64>();
        }
        state.push(("audit entries".into(), entries, bytes));
    }

    let passes: Vec<f64> = shared.passes.lock().expect("passes").iter().filter(|(t, _)| *t >= window_start_i).map(|(_, d)| *d).collect();
    let samples = samples.lock().expect("samples").clone();
    let in_window: Vec<_> = samples.iter().filter(|(t, ..)| *t >= window_start_i && *t <= window_end_i).collect();
    let mut phases: Vec<(String, usize)> = phases.into_iter().collect();
    phases.sort();
    let out = Outcome {
        rollouts: n,
        setup_s,
        ramp_s,
        promote: dist(promote_s),
        window_s,
        cores,
        count,
        lag: dist(lags),
        lag_over_1s,
        no_data,
        no_data_all,
        errors,
        breached: breach_at.len(),
        breach: dist(breach),
        reaction: dist(reaction),
        not_rolled_back,
        false_rollbacks,
        phases,
        fires_per_s: fires as f64 / window_s,
        audit_per_s: (audit_end - audit_start) as f64 / window_s,
        pushes_per_s: (pushes_end - pushes_start) as f64 / window_s,
        push_pass: dist(passes),
        push_errors: shared.push_errors.load(Ordering::Relaxed),
        listing_ms: dist(in_window.iter().map(|s| s.1).collect()),
        backlog: dist(in_window.iter().map(|s| s.2 as f64).collect()),
        overdue_s: dist(in_window.iter().map(|s| s.3).collect()),
        state,
        rss_kib: proc_status_kib("VmRSS:"),
        hwm_kib: proc_status_kib("VmHWM:"),
    };
    drop(app);
    drop(store);
    drop(dir);
    if let Some(url) = pg_url {
        signalbox_store_postgres::testing::drop_database(&args.postgres_url, &url).await.ok();
    }
    Ok(out)
}

fn report(args: &Args, backend: &str, runs: &[Outcome]) {
    let interval = args.interval as f64;
    let mib = |k: u64| k as f64 / 1024.0;
    println!();
    println!(
        "### rollout controller, {backend}: canary with pushed `{METRIC}` every {}s, analysis interval {}s, {:.1} min window, \
         tick {} ms, concurrency {}, {}% breaching",
        args.push_every, args.interval, args.minutes, args.tick_ms, args.concurrency, args.breach_percent
    );
    println!();
    println!(
        "| rollouts | lag p50 s | lag p99 s | lag max s | measurements (>1 s late) | breach→rollback p50 / p99 / max s | \
         failing measurement→rollback p99 s | controller tx/s | audit entries/s | pushes/s | peak RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in runs {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {} ({}) | {:.2} / {:.2} / {:.2} ({} breached, {} not rolled back) | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} |",
            o.rollouts,
            o.lag.p50,
            o.lag.p99,
            o.lag.max,
            o.lag.n,
            o.lag_over_1s,
            o.breach.p50,
            o.breach.p99,
            o.breach.max,
            o.breached,
            o.not_rolled_back,
            o.reaction.p99,
            o.fires_per_s,
            o.audit_per_s,
            o.pushes_per_s,
            mib(o.hwm_kib),
        );
    }
    if let (Some(small), Some(big)) = (runs.first(), runs.last()) {
        if runs.len() > 1 {
            println!();
            println!(
                "ratio {} vs {} rollouts: lag p50 {:.2}x, lag p99 {:.2}x, breach→rollback p99 {:.2}x, controller tx/s {:.2}x (population {:.0}x)",
                big.rollouts,
                small.rollouts,
                big.lag.p50 / small.lag.p50,
                big.lag.p99 / small.lag.p99,
                big.breach.p99 / small.breach.p99,
                big.fires_per_s / small.fires_per_s,
                big.rollouts as f64 / small.rollouts as f64
            );
        }
    }
    println!();
    println!("State at the end of each run (records / JSON bytes per rollout):");
    println!();
    let names: Vec<String> = runs.first().map(|o| o.state.iter().map(|s| s.0.clone()).collect()).unwrap_or_default();
    println!("| rollouts | {} | total KiB/rollout |", names.iter().map(|n| format!("{n} rec / KiB")).collect::<Vec<_>>().join(" | "));
    println!("|---:|{}---:|", "---:|".repeat(names.len()));
    for o in runs {
        let n = o.rollouts as f64;
        let total: u64 = o.state.iter().map(|s| s.2).sum();
        println!(
            "| {} | {} | {:.1} |",
            o.rollouts,
            o.state.iter().map(|(_, c, b)| format!("{:.1} / {:.1}", *c as f64 / n, *b as f64 / n / 1024.0)).collect::<Vec<_>>().join(" | "),
            total as f64 / n / 1024.0
        );
    }
    println!();
    println!("Controller details (sampled every second in the window):");
    println!();
    println!(
        "| rollouts | setup s | promotion ramp s | one promotion p50 / max ms | window s | CPU cores used | analysis count | listing pending jobs p50 / max ms | due-unclaimed jobs p50 / max | \
         oldest overdue p50 / max s | push pass p50 / max s | push errors | no-data / error measurements (window) | no-data first / later (whole run) | phases at end | RSS at end MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for o in runs {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} / {:.0} | {:.0} | {:.2} | {} | {:.1} / {:.1} | {:.0} / {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {} / {} | {} / {} | {} | {:.1} |",
            o.rollouts,
            o.setup_s,
            o.ramp_s,
            o.promote.p50 * 1000.0,
            o.promote.max * 1000.0,
            o.window_s,
            o.cores,
            o.count,
            o.listing_ms.p50,
            o.listing_ms.max,
            o.backlog.p50,
            o.backlog.max,
            o.overdue_s.p50,
            o.overdue_s.max,
            o.push_pass.p50,
            o.push_pass.max,
            o.push_errors,
            o.no_data,
            o.errors,
            o.no_data_all.0,
            o.no_data_all.1,
            o.phases.iter().map(|(p, c)| format!("{p} {c}")).collect::<Vec<_>>().join(", "),
            mib(o.rss_kib),
        );
    }
    println!();
    for o in runs {
        let lag_ok = o.lag.p99 < 1.0;
        let breach_ok = o.breach.n > 0 && o.not_rolled_back == 0 && o.breach.max < interval + 1.0;
        println!(
            "n={}: lag p99 < 1 s: {}; breach→rollback < interval + 1 s (every breach, max): {}; false rollbacks: {}",
            o.rollouts,
            if lag_ok { "met" } else { "NOT met" },
            if breach_ok { "met" } else { "NOT met" },
            o.false_rollbacks
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backends: Vec<&str> = match args.backend.as_str() {
        "both" => vec!["sqlite", "postgres"],
        b => vec![b],
    };
    let mut populations: Vec<usize> =
        args.compare.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse()).collect::<Result<_, _>>()?;
    populations.retain(|p| *p < args.rollouts);
    populations.sort();
    populations.push(args.rollouts);
    for backend in backends {
        let mut runs = Vec::new();
        for &n in &populations {
            runs.push(run_population(&args, backend, n).await?);
        }
        report(&args, backend, &runs);
    }
    Ok(())
}
