//! SQLite backend for Signalbox, the embedded default.
//!
//! One database file, `DATA_DIR/signalbox.db`, in WAL mode with `synchronous=FULL`: a write is
//! acknowledged only once it is in the WAL on stable storage, so it survives SIGKILL and power
//! loss. Every [`Tx`] runs on the one write connection, inside a transaction begun with
//! `BEGIN IMMEDIATE`, so writers queue for the connection instead of meeting `SQLITE_BUSY` when a
//! read transaction tries to upgrade. Writers queued together share one `COMMIT` (group commit,
//! see [`writer`]). The [`Store`] read methods use a separate pool of `query_only` connections,
//! which WAL lets read while a write is in progress.
//!
//! Holding a [`Tx`] holds the only write connection: code that holds one must not call
//! [`Store::begin`] again before committing or dropping it (the second call would wait for the
//! writer's acquire timeout and fail with [`StoreError::Unavailable`]).

mod bench;
mod queries;
pub mod writer;

use async_trait::async_trait;
use signalbox_domain::audit::{AuditDraft, AuditEntry};
use signalbox_domain::model::Kind;
use signalbox_store::{
    AuditQuery, HeadQuery, IdempotencyRecord, ListQuery, NewRecord, Page, PoolStats, Readiness, Record, RecordHead, RecordUpdate, Store,
    StoreError, StoreResult, Tx,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
pub use writer::GroupCommitStats;
use writer::{Member, Writer, WRITE_ACQUIRE_TIMEOUT};

pub use bench::{quantile, raw_insert_ceiling, RawCeiling};

/// The migrations this binary carries, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "signalbox.db";

/// How long a connection waits on a lock held by another process before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the read pool.
pub const READ_POOL_SIZE: u32 = 4;

/// The highest migration version embedded in this binary.
pub fn expected_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The SQLite [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Writer>,
    read: SqlitePool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Connection settings shared by every pool, the benchmark's included.
pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
}

impl SqliteStore {
    /// Opens (creating the directory and the file if needed) `DATA_DIR/signalbox.db` and applies
    /// any pending migrations.
    pub async fn open(data_dir: &Path) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let path = data_dir.join(DB_FILE);
        let write = Self::write_pool(&path, true).await?;
        if let Err(e) = MIGRATOR.run(&write).await {
            write.close().await;
            return Err(queries::migrate_err(e));
        }
        let read = Self::read_pool(&path).await?;
        tracing::debug!(path = %path.display(), "opened SQLite store");
        Ok(SqliteStore { path, writer: Writer::new(write), read })
    }

    /// Opens an existing database for offline tools (`signalbox audit verify --data DIR`).
    ///
    /// Fails with [`StoreError::Unavailable`] when `DATA_DIR/signalbox.db` does not exist and with
    /// [`StoreError::Internal`] when the file is not an initialised Signalbox database. It does
    /// **not** run migrations: an inspection must not change the database. Check
    /// [`Store::readiness`] before writing through a store opened this way.
    pub async fn open_existing(data_dir: &Path) -> StoreResult<SqliteStore> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::Unavailable(format!("no Signalbox database at {}", path.display())));
        }
        let write = Self::write_pool(&path, false).await?;
        let read = match Self::read_pool(&path).await {
            Ok(read) => read,
            Err(e) => {
                write.close().await;
                return Err(e);
            }
        };
        let store = SqliteStore { path, writer: Writer::new(write), read };
        if store.applied_migration().await.is_none() {
            let path = store.path.display().to_string();
            store.close().await;
            return Err(StoreError::Internal(format!("{path} is not an initialised Signalbox database")));
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write_pool(path: &Path, create: bool) -> StoreResult<SqlitePool> {
        // A local file connection does not go stale; pinging it before every use would add a
        // round trip through sqlx's worker thread to every transaction.
        SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(WRITE_ACQUIRE_TIMEOUT)
            .connect_with(connect_options(path).create_if_missing(create))
            .await
            .map_err(queries::db_err)
    }

    async fn read_pool(path: &Path) -> StoreResult<SqlitePool> {
        SqlitePoolOptions::new()
            .max_connections(READ_POOL_SIZE)
            .test_before_acquire(false)
            .connect_with(connect_options(path).pragma("query_only", "ON"))
            .await
            .map_err(queries::db_err)
    }

    /// SQLite's query plan for [`Store::list`] with `query` (`EXPLAIN QUERY PLAN`, one step per
    /// line): which index answers it. For tests and diagnosis.
    pub async fn list_plan(&self, query: &ListQuery) -> StoreResult<String> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::query_plan(&mut conn, |qb| queries::push_list_select(qb, query)).await
    }

    /// [`SqliteStore::list_plan`] for [`Store::heads`].
    pub async fn heads_plan(&self, query: &HeadQuery) -> StoreResult<String> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::query_plan(&mut conn, |qb| queries::push_heads_select(qb, query)).await
    }

    /// How many groups and requests the writer has committed (see [`writer`]).
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.writer.stats()
    }

    /// Transactions waiting for the write connection right now.
    pub fn queued_writers(&self) -> usize {
        self.writer.queued()
    }

    async fn applied_migration(&self) -> Option<i64> {
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.read)
            .await
            .ok()
            .flatten()
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn get(&self, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::get(&mut conn, kind, id_or_key).await
    }

    async fn list(&self, query: &ListQuery) -> StoreResult<Page> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::list(&mut conn, query).await
    }

    async fn heads(&self, query: &HeadQuery) -> StoreResult<Vec<RecordHead>> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::heads(&mut conn, query).await
    }

    async fn heads_many(&self, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::heads_many(&mut conn, queries).await
    }

    async fn get_many(&self, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::get_many(&mut conn, kind, ids).await
    }

    async fn count(&self, kind: Kind) -> StoreResult<i64> {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM resources WHERE kind = ?")
            .bind(kind.as_str())
            .fetch_one(&self.read)
            .await
            .map_err(queries::db_err)
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx { phase: Phase::Writing(self.writer.begin().await?) }))
    }

    async fn begin_optimistic(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(SqliteTx { phase: Phase::Reading { read: self.read.clone(), writer: self.writer.clone(), seen: Vec::new() } }))
    }

    async fn idempotency_get(&self, actor: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::idempotency_get(&mut conn, actor, key).await
    }

    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        queries::audit_page(&mut conn, query).await
    }

    async fn audit_head(&self) -> StoreResult<Option<(i64, String)>> {
        let mut conn = self.read.acquire().await.map_err(queries::db_err)?;
        Ok(queries::audit_head(&mut conn).await?.filter(|(seq, _)| *seq > 0))
    }

    async fn readiness(&self) -> Readiness {
        let reachable = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&self.read).await.is_ok();
        let applied_migration = if reachable { self.applied_migration().await } else { None };
        Readiness { reachable, applied_migration, expected_migration: expected_migration() }
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.writer.pool().size() + self.read.size(),
            idle: (self.writer.pool().num_idle() + self.read.num_idle()) as u32,
            max: self.writer.pool().options().get_max_connections() + self.read.options().get_max_connections(),
        }
    }

    async fn close(&self) {
        self.read.close().await;
        // The last connection to close checkpoints the WAL into the database file.
        self.writer.close().await;
    }
}

/// A write transaction: one member of the write connection's open group, or (begun with
/// [`Store::begin_optimistic`]) a transaction still reading through the read pool that becomes
/// one at its first write.
struct SqliteTx {
    phase: Phase,
}

enum Phase {
    /// Before the first write: `get`s read committed state through the read pool, without the
    /// write connection, and what they found is noted for the check at the first write.
    Reading {
        read: SqlitePool,
        writer: Arc<Writer>,
        seen: Vec<SeenRead>,
    },
    Writing(Member),
    /// The check at the first write failed (this record had changed): the write connection was
    /// given back, and every later call fails the same way.
    Stale {
        kind: Kind,
        id: String,
    },
}

/// What an optimistic `get` found: `(id, version, seq)`, or nothing. `seq` tells a record
/// deleted and inserted again under the same id (back at version 1) from the one read.
struct SeenRead {
    kind: Kind,
    id_or_key: String,
    found: Option<(String, i64, i64)>,
}

/// Ids checked per validation statement, well under SQLite's bound-parameter limit.
const VALIDATION_CHUNK: usize = 500;

impl SqliteTx {
    /// The write-connection member, taken now if this transaction was still reading: the reads
    /// it made are then checked against the state its writes will see (which includes writes of
    /// earlier members of the group that the read pool cannot see yet).
    async fn member(&mut self) -> StoreResult<&mut Member> {
        if let Phase::Reading { writer, seen, .. } = &mut self.phase {
            let mut member = writer.begin().await?;
            let result = match member.conn() {
                Ok(conn) => still_as_read(conn, seen).await,
                Err(e) => Err(e),
            };
            match member.checked(result) {
                Ok(()) => self.phase = Phase::Writing(member),
                // The member is dropped (its savepoint rolled back): nothing was written.
                Err(StoreError::StaleRead { kind, id }) => self.phase = Phase::Stale { kind, id },
                // The reads stay noted, so a later call checks them again.
                Err(e) => return Err(e),
            }
        }
        match &mut self.phase {
            Phase::Writing(member) => Ok(member),
            Phase::Stale { kind, id } => Err(StoreError::StaleRead { kind: *kind, id: id.clone() }),
            Phase::Reading { .. } => Err(StoreError::Internal("an optimistic transaction did not take the write connection".into())),
        }
    }
}

/// `Ok` if every record in `seen` is still at the version read and every record not found is
/// still absent; [`StoreError::StaleRead`] naming the first that is not.
async fn still_as_read(conn: &mut sqlx::SqliteConnection, seen: &[SeenRead]) -> StoreResult<()> {
    let found: Vec<(&SeenRead, &str, i64, i64)> =
        seen.iter().filter_map(|read| read.found.as_ref().map(|(id, version, seq)| (read, id.as_str(), *version, *seq))).collect();
    let mut current = std::collections::HashMap::with_capacity(found.len());
    for chunk in found.chunks(VALIDATION_CHUNK) {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT id, kind, version, seq FROM resources WHERE id IN (");
        let mut ids = qb.separated(", ");
        for (_, id, _, _) in chunk {
            ids.push_bind(*id);
        }
        qb.push(")");
        let rows: Vec<(String, String, i64, i64)> = qb.build_query_as().fetch_all(&mut *conn).await.map_err(queries::db_err)?;
        current.extend(rows.into_iter().map(|(id, kind, version, seq)| (id, (kind, version, seq))));
    }
    for (read, id, version, seq) in found {
        let unchanged =
            current.get(id).is_some_and(|(kind, now, now_seq)| kind == read.kind.as_str() && *now == version && *now_seq == seq);
        if !unchanged {
            return Err(StoreError::StaleRead { kind: read.kind, id: id.to_owned() });
        }
    }
    for read in seen.iter().filter(|read| read.found.is_none()) {
        if let Some(appeared) = queries::get(conn, read.kind, &read.id_or_key).await? {
            return Err(StoreError::StaleRead { kind: read.kind, id: appeared.id });
        }
    }
    Ok(())
}

#[async_trait]
impl Tx for SqliteTx {
    async fn get(&mut self, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>> {
        if let Phase::Reading { read, seen, .. } = &mut self.phase {
            let mut conn = read.acquire().await.map_err(queries::db_err)?;
            let record = queries::get(&mut conn, kind, id_or_key).await?;
            seen.push(SeenRead { kind, id_or_key: id_or_key.to_owned(), found: record.as_ref().map(|r| (r.id.clone(), r.version, r.seq)) });
            return Ok(record);
        }
        let member = self.member().await?;
        let result = queries::get(member.conn()?, kind, id_or_key).await;
        member.checked(result)
    }

    async fn list(&mut self, query: &ListQuery) -> StoreResult<Page> {
        let member = self.member().await?;
        let result = queries::list(member.conn()?, query).await;
        member.checked(result)
    }

    async fn heads(&mut self, query: &HeadQuery) -> StoreResult<Vec<RecordHead>> {
        let member = self.member().await?;
        let result = queries::heads(member.conn()?, query).await;
        member.checked(result)
    }

    async fn heads_many(&mut self, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
        let member = self.member().await?;
        let result = queries::heads_many(member.conn()?, queries).await;
        member.checked(result)
    }

    async fn get_many(&mut self, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>> {
        let member = self.member().await?;
        let result = queries::get_many(member.conn()?, kind, ids).await;
        member.checked(result)
    }

    async fn insert(&mut self, record: NewRecord) -> StoreResult<Record> {
        let member = self.member().await?;
        let result = queries::insert(member.conn()?, record).await;
        member.checked(result)
    }

    async fn update(&mut self, kind: Kind, id: &str, expected_version: i64, update: RecordUpdate) -> StoreResult<Record> {
        let member = self.member().await?;
        let result = queries::update(member.conn()?, kind, id, expected_version, update).await;
        member.checked(result)
    }

    async fn delete(&mut self, kind: Kind, id: &str, expected_version: i64) -> StoreResult<()> {
        let member = self.member().await?;
        let result = queries::delete(member.conn()?, kind, id, expected_version).await;
        member.checked(result)
    }

    async fn next_number(&mut self, counter: &str) -> StoreResult<i64> {
        let member = self.member().await?;
        let result = queries::next_number(member.conn()?, counter).await;
        member.checked(result)
    }

    async fn commit(mut self: Box<Self>, audit: Vec<AuditDraft>, idempotency: Option<IdempotencyRecord>) -> StoreResult<Vec<AuditEntry>> {
        self.member().await?;
        match self.phase {
            Phase::Writing(member) => member.commit(audit, idempotency).await,
            Phase::Stale { kind, id } => Err(StoreError::StaleRead { kind, id }),
            Phase::Reading { .. } => Err(StoreError::Internal("an optimistic transaction did not take the write connection".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_use_the_durable_settings() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        for pool in [store.writer.pool(), &store.read] {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
            assert_eq!(sync, 2, "synchronous=FULL");
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(pool).await.unwrap();
            assert_eq!(fk, 1);
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(pool).await.unwrap();
            assert_eq!(busy, 5000);
        }
        let query_only: i64 = sqlx::query_scalar("PRAGMA query_only").fetch_one(&store.read).await.unwrap();
        assert_eq!(query_only, 1, "the read pool cannot write");
        assert_eq!(store.writer.pool().options().get_max_connections(), 1);
        store.close().await;
    }
}
