//! The raw write ceiling of the database under the server's default durability settings, for
//! comparing the store's throughput against what PostgreSQL alone can do.

use crate::queries::db_err;
use signalbox_store::{StoreError, StoreResult};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::{Duration, Instant};

pub use signalbox_store::{quantile, RawCeiling};

/// Runs `concurrency` tasks for `duration`, each on its own connection committing single-row
/// INSERTs into a scratch table `bench_raw` in the database at `url`, one transaction per row.
/// The table is dropped afterwards.
pub async fn raw_insert_ceiling(url: &str, concurrency: usize, duration: Duration) -> StoreResult<RawCeiling> {
    let concurrency = concurrency.max(1);
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .map_err(db_err)?;
    let result = run(&pool, concurrency, duration).await;
    let _ = sqlx::query("DROP TABLE IF EXISTS bench_raw").execute(&pool).await;
    pool.close().await;
    result
}

async fn run(pool: &PgPool, concurrency: usize, duration: Duration) -> StoreResult<RawCeiling> {
    sqlx::query("DROP TABLE IF EXISTS bench_raw").execute(pool).await.map_err(db_err)?;
    sqlx::query("CREATE TABLE bench_raw (id BIGSERIAL PRIMARY KEY, payload TEXT)").execute(pool).await.map_err(db_err)?;
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
                let mut tx = pool.begin().await.map_err(db_err)?;
                sqlx::query("INSERT INTO bench_raw (payload) VALUES ($1)").bind(&payload).execute(&mut *tx).await.map_err(db_err)?;
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
