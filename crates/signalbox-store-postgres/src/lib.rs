//! PostgreSQL backend for Signalbox: any number of server replicas share one database.
//!
//! Transactions run at READ COMMITTED. Appending to the audit chain takes the row lock on the
//! single `audit_head` row, so appends from all replicas are serialised; the append runs in a
//! database function sent in one message with the COMMIT (`queries::seal_and_commit`), so the
//! lock is held only while the server seals, inserts and commits, never across a round trip. Migrations run on [`PostgresStore::connect`]; sqlx's migrator
//! holds an advisory lock while it works, so replicas starting together are safe.
//!
//! Errors: connection failures, `40001` (serialization failure), `40P01` (deadlock detected),
//! `53300` (too many connections), `57014` (statement cancelled) and `57P0x` (server shutting
//! down) become [`StoreError::Unavailable`], which callers treat as retryable; everything else
//! unexpected is [`StoreError::Internal`].
//!
//! When the server's autovacuum is off, the store vacuums and analyzes its own tables
//! ([`upkeep`]): without it, generic plans made while a table was empty are never replanned.
//!
//! PostgreSQL cannot store U+0000 in text or JSONB: a record body or audit field containing it
//! fails with [`StoreError::Internal`].

mod bench;
mod queries;
pub mod testing;
pub mod upkeep;

use async_trait::async_trait;
use signalbox_domain::audit::{AuditDraft, AuditEntry};
use signalbox_domain::model::Kind;
use signalbox_store::{
    unaudited_commit, AuditQuery, HeadQuery, IdempotencyRecord, ListQuery, NewRecord, Page, PoolStats, Readiness, Record, RecordHead,
    RecordUpdate, Store, StoreError, StoreResult, Tx,
};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Postgres;
use std::str::FromStr;
use std::time::Duration;

pub use bench::{raw_insert_ceiling, RawCeiling};
pub use upkeep::UpkeepMode;

/// The migrations this binary carries, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long a request waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The highest migration version embedded in this binary.
pub fn expected_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The PostgreSQL [`Store`]. Its `Debug` output names the server and database, never the
/// password.
pub struct PostgresStore {
    pool: PgPool,
    /// Connections for `heads_many` only, handed out without the ping sqlx sends before every
    /// acquire from `pool` (`test_before_acquire`): see [`PostgresStore::heads_many`].
    unpinged: PgPool,
    target: String,
    /// The table upkeep task, when the server's autovacuum is off; aborted with the store.
    upkeep_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(task) = &self.upkeep_task {
            task.abort();
        }
    }
}

/// At most this many connections in the unpinged pool.
const UNPINGED_MAX_CONNECTIONS: u32 = 4;

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("max_connections", &self.pool.options().get_max_connections())
            .finish_non_exhaustive()
    }
}

/// `user@host:port/database`, for logs and `Debug`.
fn describe(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    format!("{}@{}/{}", options.get_username(), host, options.get_database().unwrap_or(""))
}

impl PostgresStore {
    /// Connects a pool of at most `max_connections` (at least 1) and applies any pending
    /// migrations. Fails with [`StoreError::Unavailable`] when the server cannot be reached
    /// within 30 seconds.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<PostgresStore> {
        Self::connect_with_timeout(url, max_connections, ACQUIRE_TIMEOUT).await
    }

    /// [`PostgresStore::connect`] with another limit on waiting for a connection, at startup
    /// and for every later request.
    pub async fn connect_with_timeout(url: &str, max_connections: u32, acquire_timeout: Duration) -> StoreResult<PostgresStore> {
        Self::connect_with(url, max_connections, acquire_timeout, UpkeepMode::WhenAutovacuumIsOff).await
    }

    /// [`PostgresStore::connect_with_timeout`], choosing whether the store vacuums and analyzes
    /// its own tables when the server's autovacuum is off ([`upkeep`]).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        upkeep: UpkeepMode,
    ) -> StoreResult<PostgresStore> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {}", queries::redact(&e.to_string()))))?;
        let target = describe(&options);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(queries::db_err)?;
        // Opened on first use, never pinged before use, and smaller: it serves one kind of read.
        let unpinged = PgPoolOptions::new()
            .max_connections(max_connections.clamp(1, UNPINGED_MAX_CONNECTIONS))
            .acquire_timeout(acquire_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        if let Err(e) = MIGRATOR.run(&pool).await {
            // Closing drops the connection, and with it the migrator's advisory lock.
            pool.close().await;
            return Err(queries::migrate_err(e));
        }
        let upkeep_task = upkeep::start_if_needed(&pool, upkeep).await;
        tracing::debug!(target = %target, "connected PostgreSQL store");
        Ok(PostgresStore { pool, unpinged, target, upkeep_task })
    }

    /// The pool, for tools and tests that need plain SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The generic plan of [`Store::list`] with `query`, sequential scans disabled
    /// (`EXPLAIN`, one line per row): the index it would use on a large table. For tests and
    /// diagnosis.
    pub async fn list_index_plan(&self, query: &ListQuery) -> StoreResult<String> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::generic_index_plan(&mut conn, |qb| queries::push_list_select(qb, query)).await
    }

    /// [`PostgresStore::list_index_plan`] for [`Store::heads`].
    pub async fn heads_index_plan(&self, query: &HeadQuery) -> StoreResult<String> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::generic_index_plan(&mut conn, |qb| queries::push_heads_select(qb, 0, query)).await
    }

    async fn applied_migration(&self) -> Option<i64> {
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .ok()
            .flatten()
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn get(&self, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::get(&mut conn, kind, id_or_key).await
    }

    async fn list(&self, query: &ListQuery) -> StoreResult<Page> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::list(&mut conn, query).await
    }

    async fn heads(&self, query: &HeadQuery) -> StoreResult<Vec<RecordHead>> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::heads(&mut conn, query).await
    }

    /// On a connection that is not pinged first: this call decides whether a kept gate decision
    /// may be used, and it is one statement, so the ping would double its round trips. A
    /// connection that died since its last use (a server restart, a dropped network path)
    /// fails its query; since this is a read, it is then closed and the query asked again on a
    /// connection from the pinged pool, so a restart costs a retry, not an error.
    async fn heads_many(&self, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
        if let Ok(mut conn) = self.unpinged.acquire().await {
            match queries::heads_many(&mut conn, queries).await {
                Err(StoreError::Unavailable(e)) => {
                    tracing::debug!(error = %e, "unpinged connection failed; asking again on a pinged one");
                    conn.close_on_drop();
                }
                answer => return answer,
            }
        }
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::heads_many(&mut conn, queries).await
    }

    async fn get_many(&self, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::get_many(&mut conn, kind, ids).await
    }

    async fn count(&self, kind: Kind) -> StoreResult<i64> {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM resources WHERE kind = $1")
            .bind(kind.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(queries::db_err)
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        let tx = self.pool.begin().await.map_err(queries::db_err)?;
        Ok(Box::new(PostgresTx { tx, relaxed: false }))
    }

    async fn idempotency_get(&self, actor: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::idempotency_get(&mut conn, actor, key).await
    }

    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        queries::audit_page(&mut conn, query).await
    }

    async fn audit_head(&self) -> StoreResult<Option<(i64, String)>> {
        let mut conn = self.pool.acquire().await.map_err(queries::db_err)?;
        Ok(queries::audit_head(&mut conn).await?.filter(|(seq, _)| *seq > 0))
    }

    async fn readiness(&self) -> Readiness {
        let reachable = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.pool).await.is_ok();
        let applied_migration = if reachable { self.applied_migration().await } else { None };
        Readiness { reachable, applied_migration, expected_migration: expected_migration() }
    }

    fn pool_stats(&self) -> PoolStats {
        let (pool, unpinged) = (&self.pool, &self.unpinged);
        PoolStats {
            size: pool.size() + unpinged.size(),
            idle: (pool.num_idle() + unpinged.num_idle()) as u32,
            max: pool.options().get_max_connections() + unpinged.options().get_max_connections(),
        }
    }

    async fn close(&self) {
        if let Some(task) = &self.upkeep_task {
            task.abort();
        }
        self.unpinged.close().await;
        self.pool.close().await;
    }
}

struct PostgresTx {
    tx: sqlx::Transaction<'static, Postgres>,
    /// `relax_durability` was called: the commit message starts with
    /// `SET LOCAL synchronous_commit = off` (one round trip fewer than sending it apart).
    relaxed: bool,
}

#[async_trait]
impl Tx for PostgresTx {
    async fn get(&mut self, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>> {
        queries::get(&mut self.tx, kind, id_or_key).await
    }

    async fn list(&mut self, query: &ListQuery) -> StoreResult<Page> {
        queries::list(&mut self.tx, query).await
    }

    async fn heads(&mut self, query: &HeadQuery) -> StoreResult<Vec<RecordHead>> {
        queries::heads(&mut self.tx, query).await
    }

    async fn heads_many(&mut self, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
        queries::heads_many(&mut self.tx, queries).await
    }

    async fn get_many(&mut self, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>> {
        queries::get_many(&mut self.tx, kind, ids).await
    }

    async fn insert(&mut self, record: NewRecord) -> StoreResult<Record> {
        queries::insert(&mut self.tx, record).await
    }

    async fn update(&mut self, kind: Kind, id: &str, expected_version: i64, update: RecordUpdate) -> StoreResult<Record> {
        queries::update(&mut self.tx, kind, id, expected_version, update).await
    }

    async fn delete(&mut self, kind: Kind, id: &str, expected_version: i64) -> StoreResult<()> {
        queries::delete(&mut self.tx, kind, id, expected_version).await
    }

    async fn next_number(&mut self, counter: &str) -> StoreResult<i64> {
        queries::next_number(&mut self.tx, counter).await
    }

    async fn relax_durability(&mut self) -> StoreResult<()> {
        self.relaxed = true;
        Ok(())
    }

    async fn commit(self: Box<Self>, audit: Vec<AuditDraft>, idempotency: Option<IdempotencyRecord>) -> StoreResult<Vec<AuditEntry>> {
        let relaxed = self.relaxed;
        let mut tx = self.tx;
        if audit.is_empty() {
            let _ = tx.rollback().await;
            return Err(unaudited_commit());
        }
        match queries::seal_and_commit(&mut tx, audit, idempotency, relaxed).await {
            Ok(entries) => {
                // The work is committed; this only ends the empty transaction the append opened.
                // A failure here must not report the committed work as failed (a caller could
                // then repeat it); sqlx discards a connection that broke.
                if let Err(e) = tx.commit().await {
                    tracing::warn!(error = %queries::db_err(e), "could not end the empty transaction after a committed append");
                }
                Ok(entries)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}
