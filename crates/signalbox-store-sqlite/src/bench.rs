//! The raw write ceiling of the storage engine under the store's own durability settings, for
//! comparing the server's throughput against what the database alone can do.

use crate::queries::db_err;
use signalbox_store::{StoreError, StoreResult};
use sqlx::sqlite::SqlitePoolOptions;
use std::path::Path;
use std::time::{Duration, Instant};

/// Scratch database file created (and removed again) by [`raw_insert_ceiling`].
pub const BENCH_DB_FILE: &str = "bench_raw.db";

pub use signalbox_store::{quantile, RawCeiling};

/// Runs `concurrency` tasks for `duration`, each committing single-row INSERTs into a scratch
/// table `bench_raw` in `DATA_DIR/bench_raw.db`, one transaction per row, through a one-connection
/// pool with the store's settings (WAL, `synchronous=FULL`, `BEGIN IMMEDIATE`). The scratch
/// file is removed afterwards.
pub async fn raw_insert_ceiling(data_dir: &Path, concurrency: usize, duration: Duration) -> StoreResult<RawCeiling> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::Unavailable(format!("cannot create data directory {}: {e}", data_dir.display())))?;
    let path = data_dir.join(BENCH_DB_FILE);
    remove_scratch(&path);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(crate::connect_options(&path).create_if_missing(true))
        .await
        .map_err(db_err)?;
    let result = run(&pool, concurrency.max(1), duration).await;
    pool.close().await;
    remove_scratch(&path);
    result
}

async fn run(pool: &sqlx::SqlitePool, concurrency: usize, duration: Duration) -> StoreResult<RawCeiling> {
    sqlx::query("CREATE TABLE bench_raw (id INTEGER PRIMARY KEY, payload TEXT)").execute(pool).await.map_err(db_err)?;
    let payload = "x".repeat(256);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let pool = pool.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed() < duration {
                let t0 = Instant::now();
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                sqlx::query("INSERT INTO bench_raw (payload) VALUES (?)").bind(&payload).execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                latencies.push(t0.elapsed());
            }
            Ok::<_, StoreError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(StoreError::Internal(format!("benchmark task failed: {e}"))),
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = failure {
        return Err(e);
    }
    latencies.sort_unstable();
    Ok(RawCeiling { ops: latencies.len() as u64, elapsed, p50: quantile(&latencies, 0.50), p99: quantile(&latencies, 0.99) })
}

fn remove_scratch(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&l, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&l, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&l[..1], 0.99), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
