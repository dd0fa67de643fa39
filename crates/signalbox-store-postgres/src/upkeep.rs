//! Table upkeep for servers whose autovacuum is off.
//!
//! PostgreSQL relies on autovacuum to remove dead row versions and to keep planner statistics
//! current. Some servers run with it off (this project's CI machine does). Without it, the
//! resource table's dead versions pile up (every job claim and deployment step leaves one), and,
//! worse, a table created empty is never analysed: sqlx keeps prepared statements per pooled
//! connection, and the generic plans PostgreSQL settles on while the table is empty (scan every
//! record of a kind) are never replanned. Measured in the 1,000-rollout benchmark: one index scan
//! read 215 million index entries in three minutes.
//!
//! So when `SHOW autovacuum` says `off`, the store does the same work itself: every
//! [`UPKEEP_INTERVAL`] it reads `pg_stat_user_tables` for its own tables and runs `VACUUM` and
//! `ANALYZE` where autovacuum's default thresholds say it would have. `ANALYZE` also invalidates
//! the cached plans, so every connection replans with real statistics. One replica at a time does
//! it (a session advisory lock); with autovacuum on, nothing runs.

use crate::queries::db_err;
use signalbox_store::StoreResult;
use sqlx::{Executor, PgPool};
use std::time::Duration;

/// How often the upkeep task looks at the tables when autovacuum is off. A look is one small
/// query; the work it starts is bounded by the thresholds (a table that grows is analysed at every
/// 10 % of growth), so a short interval costs little and replans a new installation's statements
/// within seconds of its first data.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(2);

/// The advisory lock key (ASCII "sbupkeep") that keeps replicas from vacuuming together.
pub const UPKEEP_LOCK: i64 = 0x7362_7570_6b65_6570;

/// The tables the store owns.
const TABLES: [&str; 5] = ["resources", "audit_log", "audit_head", "idempotency_keys", "counters"];

/// What one upkeep pass did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableUpkeep {
    pub table: String,
    pub vacuumed: bool,
    pub analyzed: bool,
}

/// Whether the server's autovacuum launcher runs (`SHOW autovacuum`).
pub async fn autovacuum_enabled(pool: &PgPool) -> StoreResult<bool> {
    let setting: String = sqlx::query_scalar("SELECT current_setting('autovacuum')").fetch_one(pool).await.map_err(db_err)?;
    Ok(setting == "on")
}

/// The thresholds of autovacuum's defaults (`autovacuum_vacuum_threshold` 50 and scale factor
/// 0.2, the insert variants 1000 and 0.2, `autovacuum_analyze_threshold` 50 and scale factor 0.1),
/// plus: a table that has rows and was never analysed is analysed.
fn decide(live: i64, dead: i64, inserted_since_vacuum: i64, modified_since_analyze: i64, ever_analyzed: bool) -> (bool, bool) {
    let live = live.max(0) as f64;
    let vacuum = dead as f64 > 50.0 + 0.2 * live || inserted_since_vacuum as f64 > 1000.0 + 0.2 * live;
    let analyze = modified_since_analyze as f64 > 50.0 + 0.1 * live || (!ever_analyzed && (live > 0.0 || dead > 0));
    (vacuum, analyze)
}

/// One pass: vacuums and analyses the store's tables that need it, unless another replica holds
/// the upkeep lock. Returns what was done (nothing when another replica is at it).
pub async fn upkeep_pass(pool: &PgPool) -> StoreResult<Vec<TableUpkeep>> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(UPKEEP_LOCK).fetch_one(&mut *conn).await.map_err(db_err)?;
    if !locked {
        return Ok(vec![]);
    }
    let result = upkeep_locked(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)").bind(UPKEEP_LOCK).execute(&mut *conn).await.map_err(db_err);
    if unlocked.is_err() {
        // A session lock that could not be released must not outlive this pass.
        conn.close_on_drop();
    }
    result
}

async fn upkeep_locked(conn: &mut sqlx::PgConnection) -> StoreResult<Vec<TableUpkeep>> {
    let rows: Vec<(String, i64, i64, i64, i64, bool)> = sqlx::query_as(
        "SELECT relname::text, n_live_tup, n_dead_tup, n_ins_since_vacuum, n_mod_since_analyze, \
                (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL) \
         FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY($1) ORDER BY relname",
    )
    .bind(TABLES.as_slice())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    let mut done = Vec::new();
    for (table, live, dead, inserted, modified, ever_analyzed) in rows {
        let (vacuum, analyze) = decide(live, dead, inserted, modified, ever_analyzed);
        // The table names come from `TABLES`, never from input.
        let statement = match (vacuum, analyze) {
            (true, true) => format!("VACUUM (ANALYZE) {table}"),
            (true, false) => format!("VACUUM {table}"),
            (false, true) => format!("ANALYZE {table}"),
            (false, false) => continue,
        };
        conn.execute(statement.as_str()).await.map_err(db_err)?;
        done.push(TableUpkeep { table, vacuumed: vacuum, analyzed: analyze });
    }
    Ok(done)
}

/// Whether a store looks after its tables itself (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpkeepMode {
    /// Upkeep runs when the server's autovacuum is off.
    WhenAutovacuumIsOff,
    /// Never (tests that run [`upkeep_pass`] themselves).
    Off,
}

/// Starts the upkeep task if `mode` asks for it and the server's autovacuum is off; the first
/// pass runs one interval after start. The caller aborts the task when the store goes away.
pub(crate) async fn start_if_needed(pool: &PgPool, mode: UpkeepMode) -> Option<tokio::task::JoinHandle<()>> {
    if mode == UpkeepMode::Off {
        return None;
    }
    match autovacuum_enabled(pool).await {
        Ok(true) => None,
        Ok(false) => {
            tracing::warn!(
                every_seconds = UPKEEP_INTERVAL.as_secs(),
                "autovacuum is off on this PostgreSQL server; Signalbox vacuums and analyzes its own tables instead"
            );
            let pool = pool.clone();
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + UPKEEP_INTERVAL, UPKEEP_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if pool.is_closed() {
                        return;
                    }
                    match upkeep_pass(&pool).await {
                        Ok(done) if !done.is_empty() => tracing::debug!(?done, "table upkeep"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "table upkeep failed; trying again later"),
                    }
                }
            }))
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the autovacuum setting; no table upkeep");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn thresholds_follow_autovacuum_defaults() {
        // 1000 live rows: vacuum past 250 dead, analyze past 150 modified.
        assert_eq!(decide(1000, 250, 0, 150, true), (false, false));
        assert_eq!(decide(1000, 251, 0, 0, true), (true, false));
        assert_eq!(decide(1000, 0, 0, 151, true), (false, true));
        // Insert-only tables are vacuumed too (visibility map), past 1000 + 20 %.
        assert_eq!(decide(1000, 0, 1201, 0, true), (true, false));
        // Never analysed with rows: analysed at once; an empty table is left alone.
        assert_eq!(decide(3, 0, 3, 3, false), (false, true));
        assert_eq!(decide(0, 0, 0, 0, false), (false, false));
    }
}
