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
mod optimistic;
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
use sqlx::{Connection, Postgres};
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
    /// Connections are handed out without the ping sqlx would send before every acquire
    /// (`test_before_acquire`): that ping is one more round trip on every request. A connection
    /// that died while idle is found on its first statement instead (`read!`,
    /// [`Store::begin`]).
    pool: PgPool,
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

/// The retries left to a read or `BEGIN` that met dead connections ([`PostgresStore::retries`]).
pub(crate) struct Retries {
    left: u32,
    until: std::time::Instant,
}

impl Retries {
    /// Takes one retry, if any is left and there is still time.
    pub(crate) fn another(&mut self) -> bool {
        let allowed = self.left > 0 && std::time::Instant::now() < self.until;
        self.left = self.left.saturating_sub(u32::from(allowed));
        allowed
    }
}

/// Runs `$op` (an expression using `$conn`, a pooled connection) and answers it. A connection
/// that died while idle in the pool (a server restart, a dropped network path) fails its first
/// statement: when a statement fails as unavailable and a ping then fails too, the connection is
/// closed and the read asked again on another, as many times as the pool can hold dead
/// connections and within one acquire timeout. So a restart costs retries, not errors. Only for
/// reads: asking again must be harmless.
macro_rules! read {
    ($store:expr, |$conn:ident| $op:expr) => {{
        let mut retries = $store.retries();
        loop {
            let mut $conn = $store.pool.acquire().await.map_err(queries::db_err)?;
            match $op.await {
                Err(StoreError::Unavailable(e)) if retries.another() && $conn.ping().await.is_err() => {
                    tracing::debug!(error = %e, "a pooled connection had died; asking again on another");
                    $conn.close_on_drop();
                }
                answer => break answer,
            }
        }
    }};
}

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
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(queries::db_err)?;
        if let Err(e) = MIGRATOR.run(&pool).await {
            // Closing drops the connection, and with it the migrator's advisory lock.
            pool.close().await;
            return Err(queries::migrate_err(e));
        }
        let upkeep_task = upkeep::start_if_needed(&pool, upkeep).await;
        tracing::debug!(target = %target, "connected PostgreSQL store");
        Ok(PostgresStore { pool, target, upkeep_task })
    }

    /// How often a read or `BEGIN` may meet a dead connection before the error is the answer:
    /// every connection the pool holds may have died, so once per connection, and all within
    /// one acquire timeout (the retries' own waits for a connection do not add up).
    fn retries(&self) -> Retries {
        let options = self.pool.options();
        Retries { left: options.get_max_connections(), until: std::time::Instant::now() + options.get_acquire_timeout() }
    }

    /// The pool, for tools and tests that need plain SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The generic plan of [`Store::list`] with `query`, sequential scans disabled
    /// (`EXPLAIN`, one line per row): the index it would use on a large table. For tests and
    /// diagnosis.
    pub async fn list_index_plan(&self, query: &ListQuery) -> StoreResult<String> {
        read!(self, |conn| queries::generic_index_plan(&mut conn, |qb| queries::push_list_select(qb, query)))
    }

    /// [`PostgresStore::list_index_plan`] for [`Store::heads`].
    pub async fn heads_index_plan(&self, query: &HeadQuery) -> StoreResult<String> {
        read!(self, |conn| queries::generic_index_plan(&mut conn, |qb| queries::push_heads_select(qb, 0, query)))
    }

    async fn applied_migration(&self) -> StoreResult<Option<i64>> {
        read!(self, |conn| async {
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *conn)
                .await
                .map_err(queries::db_err)
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn get(&self, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>> {
        read!(self, |conn| queries::get(&mut conn, kind, id_or_key))
    }

    async fn list(&self, query: &ListQuery) -> StoreResult<Page> {
        read!(self, |conn| queries::list(&mut conn, query))
    }

    async fn heads(&self, query: &HeadQuery) -> StoreResult<Vec<RecordHead>> {
        read!(self, |conn| queries::heads(&mut conn, query))
    }

    async fn heads_many(&self, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
        read!(self, |conn| queries::heads_many(&mut conn, queries))
    }

    async fn get_many(&self, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>> {
        read!(self, |conn| queries::get_many(&mut conn, kind, ids))
    }

    async fn count(&self, kind: Kind) -> StoreResult<i64> {
        read!(self, |conn| async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM resources WHERE kind = $1")
                .bind(kind.as_str())
                .fetch_one(&mut *conn)
                .await
                .map_err(queries::db_err)
        })
    }

    /// A `BEGIN` that fails because its connection died while idle (see `read!`) is sent
    /// again on another; sqlx discards the dead one as it goes back to the pool.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        let mut retries = self.retries();
        loop {
            match self.pool.begin().await {
                Ok(tx) => return Ok(Box::new(PostgresTx { tx, relaxed: false })),
                Err(e) if queries::is_connection_lost(&e) && retries.another() => {
                    tracing::debug!(error = %queries::db_err(e), "a pooled connection had died; beginning on another");
                }
                Err(e) => return Err(queries::db_err(e)),
            }
        }
    }

    /// Reads run on the transaction's connection before any `BEGIN`, and updates of records it
    /// read wait in memory for the commit message, which re-checks the reads: see
    /// [`optimistic`]. One round trip for the commit instead of one each for the `BEGIN`, the
    /// updates and the commit.
    async fn begin_optimistic(&self) -> StoreResult<Box<dyn Tx>> {
        let conn = self.pool.acquire().await.map_err(queries::db_err)?;
        Ok(Box::new(optimistic::OptimisticTx::new(conn, self.pool.clone(), self.retries())))
    }

    async fn idempotency_get(&self, actor: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        read!(self, |conn| queries::idempotency_get(&mut conn, actor, key))
    }

    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        read!(self, |conn| queries::audit_page(&mut conn, query))
    }

    async fn audit_head(&self) -> StoreResult<Option<(i64, String)>> {
        Ok(read!(self, |conn| queries::audit_head(&mut conn))?.filter(|(seq, _)| *seq > 0))
    }

    async fn readiness(&self) -> Readiness {
        let ping: StoreResult<i32> = async {
            read!(self, |conn| async { sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *conn).await.map_err(queries::db_err) })
        }
        .await;
        let reachable = ping.is_ok();
        let applied_migration = if reachable { self.applied_migration().await.ok().flatten() } else { None };
        Readiness { reachable, applied_migration, expected_migration: expected_migration() }
    }

    fn pool_stats(&self) -> PoolStats {
        let pool = &self.pool;
        PoolStats { size: pool.size(), idle: pool.num_idle() as u32, max: pool.options().get_max_connections() }
    }

    async fn close(&self) {
        if let Some(task) = &self.upkeep_task {
            task.abort();
        }
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
                // The work is committed; what is left is the empty transaction the append's
                // trailing `BEGIN` opened. Dropping `tx` queues its `ROLLBACK` without waiting:
                // sqlx sends it with the ping that tests the connection as it goes back to the
                // pool, off this request's path, so the request does not wait for one more
                // round trip. A failure there cannot report the committed work as failed; sqlx
                // discards a connection that broke.
                drop(tx);
                Ok(entries)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}
