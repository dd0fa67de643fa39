//! `signalbox-bench api`: the release write flow over HTTP against the store's raw ceiling.
//!
//! For each backend it starts the release binary (`target/release/signalbox serve`) as its own
//! process, drives `--clients` concurrent clients through the flow *create release → add a
//! component → transition planning → testing* (three write requests, three transactions) for
//! `--duration` seconds, and reports requests/s, p50/p99 latency and the server's peak RSS
//! (VmHWM). In the same run it measures the reference: the same store's single-row
//! insert-and-commit rate with the same durability settings and concurrency. The ratio is
//! API write requests/s ÷ raw commits/s. Beside each it reports how busy the machine's CPUs
//! were (`/proc/stat`) and, for the API, the server process's CPU time per request, which tell a
//! run limited by CPU from one limited by waiting (a lock, an `fsync`). When PostgreSQL runs on
//! this machine, it also reports the CPU time of its processes per request (API) and per commit
//! (reference): what the database itself spends on each.

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "sbx_bench_token_0123456789abcdef0123456789abcdef01";

#[derive(Parser, Debug)]
#[command(about = "Signalbox benchmarks")]
struct Args {
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    backend: String,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// PostgreSQL server to create a scratch database on.
    #[arg(long, env = "SIGNALBOX_TEST_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// The signalbox binary to measure.
    #[arg(long, default_value = "target/release/signalbox")]
    binary: PathBuf,
}

struct Measured {
    requests: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    peak_rss_kib: Option<u64>,
    /// Share of the machine's CPU time that was busy while the clients ran.
    machine_busy: Option<f64>,
    /// The server process's CPU time (user + system) while the clients ran.
    server_cpu: Option<Duration>,
    /// The CPU time of this machine's PostgreSQL processes while the clients ran.
    database_cpu: Option<Duration>,
}

/// The CPU time so far of this machine's PostgreSQL: every live process named `postgres`, and
/// the children they have reaped (a backend that ended is counted in the postmaster's), so the
/// difference of two readings holds backends that came and went in between. `None` when no
/// PostgreSQL process runs here.
fn database_cpu() -> Option<Duration> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .collect();
    (!pids.is_empty()).then(|| pids.iter().filter_map(|pid| process_cpu_with_children(*pid)).sum())
}

fn database_cpu_since(before: Option<Duration>) -> Option<Duration> {
    Some(database_cpu()?.saturating_sub(before?))
}

/// `(busy, total)` clock ticks of the whole machine since boot (`/proc/stat`); busy is all
/// but idle and iowait.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

fn busy_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (before?, after?);
    (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
}

/// A process's user + system CPU time so far (`/proc/PID/stat`, in USER_HZ = 100 ticks/s).
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A process's CPU time and that of its children it has waited for (`cutime`, `cstime`).
fn process_cpu_with_children(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = (11..=14).map(|i| fields.get(i)?.parse::<u64>().ok()).sum::<Option<u64>>()?;
    Some(Duration::from_millis(ticks * 10))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start(binary: &PathBuf, args: &[String]) -> anyhow::Result<(Child, u16)> {
    let port = free_port()?;
    let child = Command::new(binary)
        .arg("serve")
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("SIGNALBOX_BOOTSTRAP_TOKEN", TOKEN)
        .env("SIGNALBOX_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} (build it with cargo build --release)", binary.display()))?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            if r.status().is_success() {
                return Ok((child, port));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server never became ready")
}

async fn seed(base: &str, clients: usize) -> anyhow::Result<()> {
    let c = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| c.post(format!("{base}{path}")).bearer_auth(TOKEN).json(&body).send();
    post("/api/v1/domains", json!({"name": "bench"})).await?.error_for_status()?;
    post("/api/v1/teams", json!({"name": "bench-team", "domain": "bench"})).await?.error_for_status()?;
    for i in 0..clients {
        post("/api/v1/services", json!({"name": format!("svc-{i}"), "team": "bench-team"})).await?.error_for_status()?;
        post("/api/v1/artifacts", json!({"service": format!("svc-{i}"), "version": "1.0.0", "digest": format!("sha256:{:064x}", i + 1)}))
            .await?
            .error_for_status()?;
    }
    Ok(())
}

async fn drive(base: String, clients: usize, duration: Duration) -> anyhow::Result<(u64, Duration, Vec<Duration>)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < duration {
                let t = Instant::now();
                let r = c
                    .post(format!("{base}/api/v1/releases"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"name": format!("bench {i}-{n}"), "domain": "bench"}))
                    .send()
                    .await?;
                if r.status().as_u16() != 201 {
                    bail!("create release: {}", r.text().await?);
                }
                latencies.push(t.elapsed());
                let key = r.json::<serde_json::Value>().await?["key"].as_str().unwrap_or_default().to_string();
                let t = Instant::now();
                let r = c
                    .post(format!("{base}/api/v1/releases/{key}/components"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"artifact": format!("svc-{i}@1.0.0")}))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("add component: {}", r.text().await?);
                }
                latencies.push(t.elapsed());
                let t = Instant::now();
                let r = c
                    .post(format!("{base}/api/v1/releases/{key}/transitions"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"to": "testing"}))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("transition: {}", r.text().await?);
                }
                latencies.push(t.elapsed());
                n += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed();
    all.sort();
    Ok((all.len() as u64, elapsed, all))
}

async fn measure_api(args: &Args, serve_args: Vec<String>) -> anyhow::Result<Measured> {
    let (mut child, port) = start(&args.binary, &serve_args).await?;
    let base = format!("http://127.0.0.1:{port}");
    let pid = child.id();
    let result = async {
        seed(&base, args.clients).await?;
        let (machine, server, database) = (machine_ticks(), process_cpu(pid), database_cpu());
        let driven = drive(base.clone(), args.clients, Duration::from_secs(args.duration)).await?;
        let busy = busy_share(machine, machine_ticks());
        let server = process_cpu(pid).zip(server).map(|(after, before)| after.saturating_sub(before));
        let database = if serve_args.iter().any(|a| a == "--database-url") { database_cpu_since(database) } else { None };
        Ok::<_, anyhow::Error>((driven, busy, server, database))
    }
    .await;
    let rss = peak_rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    let ((requests, elapsed, latencies), machine_busy, server_cpu, database_cpu) = result?;
    Ok(Measured {
        requests,
        elapsed,
        p50: signalbox_store_sqlite::quantile(&latencies, 0.5),
        p99: signalbox_store_sqlite::quantile(&latencies, 0.99),
        peak_rss_kib: rss,
        machine_busy,
        server_cpu,
        database_cpu,
    })
}

fn percent(share: Option<f64>) -> String {
    share.map(|s| format!("{:.0} %", s * 100.0)).unwrap_or_else(|| "n/a".into())
}

/// What the reference measured: its commits, how long, latency, and where the CPU went.
struct RawMeasured {
    ops: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    machine_busy: Option<f64>,
    database_cpu: Option<Duration>,
}

/// `cpu` spread over `ops`, in microseconds, or "n/a".
fn per_op(cpu: Option<Duration>, ops: u64) -> String {
    cpu.map(|cpu| format!("{:.0} µs", cpu.as_secs_f64() * 1e6 / ops.max(1) as f64)).unwrap_or_else(|| "n/a".into())
}

fn report(backend: &str, api: &Measured, raw: &RawMeasured) {
    let api_rate = api.requests as f64 / api.elapsed.as_secs_f64();
    let raw_rate = raw.ops as f64 / raw.elapsed.as_secs_f64();
    let server_cpu = per_op(api.server_cpu, api.requests);
    let (api_db, raw_db) = (per_op(api.database_cpu, api.requests), per_op(raw.database_cpu, raw.ops));
    println!(
        "| {backend} | API write flow | {api_rate:.0} req/s ({:.0} flows/s) | {:.2} ms | {:.2} ms | {} | {} | {server_cpu} | {api_db} |",
        api_rate / 3.0,
        api.p50.as_secs_f64() * 1e3,
        api.p99.as_secs_f64() * 1e3,
        api.peak_rss_kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "n/a".into()),
        percent(api.machine_busy),
    );
    println!(
        "| {backend} | raw insert+commit (reference) | {raw_rate:.0} commits/s | {:.2} ms | {:.2} ms | – | {} | – | {raw_db} |",
        raw.p50.as_secs_f64() * 1e3,
        raw.p99.as_secs_f64() * 1e3,
        percent(raw.machine_busy),
    );
    println!("| {backend} | **ratio API ÷ raw** | **{:.2}** | | | | | | |", api_rate / raw_rate);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let which: Vec<&str> = match args.backend.as_str() {
        "both" => vec!["sqlite", "postgres"],
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        other => bail!("--backend {other:?}: use sqlite, postgres or both"),
    };
    println!("clients: {}, duration: {} s per measurement, binary: {}", args.clients, args.duration, args.binary.display());
    println!();
    println!(
        "| backend | workload | throughput | p50 | p99 | peak RSS | machine CPU busy | server CPU per request | database CPU per op |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let duration = Duration::from_secs(args.duration);
    for backend in which {
        match backend {
            "sqlite" => {
                let dir = tempfile::tempdir()?;
                let api = measure_api(&args, vec!["--data".into(), dir.path().join("api").display().to_string()]).await?;
                let before = machine_ticks();
                let raw = signalbox_store_sqlite::raw_insert_ceiling(&dir.path().join("raw"), args.clients, duration)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let raw = RawMeasured {
                    ops: raw.ops,
                    elapsed: raw.elapsed,
                    p50: raw.p50,
                    p99: raw.p99,
                    machine_busy: busy_share(before, machine_ticks()),
                    database_cpu: None,
                };
                report("SQLite", &api, &raw);
            }
            _ => {
                let url =
                    signalbox_store_postgres::testing::fresh_database(&args.postgres_url).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let api = measure_api(&args, vec!["--database-url".into(), url.clone()]).await?;
                let raw_url =
                    signalbox_store_postgres::testing::fresh_database(&args.postgres_url).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let (before, database) = (machine_ticks(), database_cpu());
                let raw = signalbox_store_postgres::raw_insert_ceiling(&raw_url, args.clients, duration)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let machine_busy = busy_share(before, machine_ticks());
                // The reference closed its connections as it returned: let their backends exit
                // and the postmaster reap them, so each is counted once, in its children's time.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let raw = RawMeasured {
                    ops: raw.ops,
                    elapsed: raw.elapsed,
                    p50: raw.p50,
                    p99: raw.p99,
                    machine_busy,
                    database_cpu: database_cpu_since(database),
                };
                report("PostgreSQL", &api, &raw);
                let _ = signalbox_store_postgres::testing::drop_database(&args.postgres_url, &url).await;
                let _ = signalbox_store_postgres::testing::drop_database(&args.postgres_url, &raw_url).await;
            }
        }
    }
    Ok(())
}
