//! Optimistic transactions on PostgreSQL ([`Store::begin_optimistic`]): no `BEGIN` until it is
//! needed, and updates deferred into the message that commits.
//!
//! An ordinary transaction costs a round trip for its `BEGIN`, one per read, one per write and
//! one for the message that seals and commits. Most of the server's writes are "read a few
//! records, update one": here the reads run on the transaction's connection outside any
//! transaction, an update of a record read at the version it expects is kept in memory, and the
//! commit sends one message that opens the transaction, applies the updates
//! (`signalbox_optimistic_updates`, migration 0006), seals the audit entries and commits. An
//! update whose record is gone or at another version by then is refused with
//! [`StoreError::StaleRead`] and nothing is written; the caller runs the operation again in an
//! ordinary transaction (`signalbox_app::mutation::optimistically`), which answers the conflict.
//!
//! What it commits is what a [`Store::begin`] transaction would have: at READ COMMITTED every
//! statement of an ordinary transaction also sees the data committed when it starts, and nothing
//! it only read is locked, so reading before the `BEGIN` takes no guarantee away. (SQLite's
//! ordinary transactions read under its one write lock, which is why its optimistic ones
//! re-check their reads and these do not.)
//!
//! Anything the deferral cannot answer from memory opens the transaction first, in one message
//! that carries the `BEGIN` and the updates kept so far: an insert, a delete, a counter, an
//! update of a record not read (or read at another version, or renamed), a read after a
//! deferred update (so the transaction reads its own writes), or an `Idempotency-Key` to store.
//! From there on it is an ordinary transaction on the same connection.

use crate::queries::{self, DeferredUpdate};
use crate::Retries;
use async_trait::async_trait;
use signalbox_domain::audit::{AuditDraft, AuditEntry};
use signalbox_domain::model::Kind;
#[cfg(doc)]
use signalbox_store::Store;
use signalbox_store::{
    unaudited_commit, HeadQuery, IdempotencyRecord, ListQuery, NewRecord, Page, Record, RecordHead, RecordUpdate, StoreError, StoreResult,
    Tx,
};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgTransactionManager};
use sqlx::{Connection, Postgres, TransactionManager};

/// What the transaction knows of a record it read before opening (and may have updated in memory
/// since): enough to answer a deferred update.
struct Known {
    kind: Kind,
    id: String,
    key: Option<String>,
    seq: i64,
    version: i64,
    created_at: chrono::DateTime<chrono::Utc>,
}

pub(crate) struct OptimisticTx {
    /// `None` only after a dead connection was let go and no other could be had.
    conn: Option<PoolConnection<Postgres>>,
    pool: PgPool,
    /// Replacements left for a connection found dead by a read before anything was written.
    retries: Retries,
    known: Vec<Known>,
    deferred: Vec<DeferredUpdate>,
    /// The `BEGIN` was sent (sqlx counts the transaction on the connection).
    open: bool,
    relaxed: bool,
}

/// Runs a read (`$op`, using `$conn`) on the transaction's connection. Before the transaction
/// opens, a connection that died while idle in the pool is replaced and the read asked again, as
/// the store's pooled reads do (`read!` in the crate root).
macro_rules! early_read {
    ($tx:ident, |$conn:ident| $op:expr) => {{
        loop {
            let $conn: &mut sqlx::PgConnection = $tx.conn()?;
            match $op.await {
                Err(StoreError::Unavailable(e)) if !$tx.open && $tx.replace_dead_connection().await => {
                    tracing::debug!(error = %e, "a pooled connection had died; reading again on another");
                }
                answer => break answer,
            }
        }
    }};
}

impl OptimisticTx {
    pub(crate) fn new(conn: PoolConnection<Postgres>, pool: PgPool, retries: Retries) -> OptimisticTx {
        OptimisticTx { conn: Some(conn), pool, retries, known: Vec::new(), deferred: Vec::new(), open: false, relaxed: false }
    }

    fn conn(&mut self) -> StoreResult<&mut sqlx::PgConnection> {
        match self.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(StoreError::Unavailable("this transaction lost its database connection".into())),
        }
    }

    /// When the connection's ping fails too, closes it, takes another from the pool and answers
    /// true. Only before anything was written: nothing is lost with the connection. The dead
    /// connection goes first, so that even a pool of one has room for its replacement.
    async fn replace_dead_connection(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        if conn.ping().await.is_ok() || !self.retries.another() {
            return false;
        }
        if let Some(mut dead) = self.conn.take() {
            dead.close_on_drop();
        }
        self.conn = self.pool.acquire().await.ok();
        self.conn.is_some()
    }

    fn note_read(&mut self, record: &Record) {
        if !self.known.iter().any(|k| k.kind == record.kind && k.id == record.id) {
            self.known.push(Known {
                kind: record.kind,
                id: record.id.clone(),
                key: record.key.clone(),
                seq: record.seq,
                version: record.version,
                created_at: record.created_at,
            });
        }
    }

    /// Sends `BEGIN` and the updates kept so far, in one message.
    /// Refused ([`StoreError::StaleRead`] or any other error), it leaves the connection outside
    /// any transaction and the transaction unusable: the caller drops it.
    async fn open_transaction(&mut self) -> StoreResult<()> {
        if self.open {
            return Ok(());
        }
        let mut begin = String::from("BEGIN; ");
        if !self.deferred.is_empty() {
            begin.push_str(&queries::optimistic_updates_statement(&self.deferred)?);
        }
        loop {
            match PgTransactionManager::begin(self.conn()?, Some(begin.clone().into())).await {
                Ok(()) => {
                    self.open = true;
                    self.deferred.clear();
                    self.known.clear();
                    return Ok(());
                }
                Err(e) => {
                    let error = queries::stale_or_db_err(e);
                    // A first statement on a connection that died while idle: asked again on
                    // another, as `PostgresStore::begin` does.
                    if matches!(error, StoreError::Unavailable(_)) && self.deferred.is_empty() && self.replace_dead_connection().await {
                        continue;
                    }
                    // The `BEGIN` may have opened a transaction that the refusal then aborted;
                    // sqlx does not count it, so it is ended here, or the connection is not
                    // reused.
                    self.end_failed_transaction().await;
                    return Err(error);
                }
            }
        }
    }

    /// After a message that failed part-way, leaves the connection outside any transaction, or
    /// marks it to be closed rather than returned to the pool.
    async fn end_failed_transaction(&mut self) {
        let Some(conn) = self.conn.as_mut() else { return };
        if sqlx::Executor::execute(&mut **conn, sqlx::raw_sql("ROLLBACK")).await.is_err() {
            conn.close_on_drop();
        }
    }

    /// Before a read that must see this transaction's deferred updates.
    async fn before_read(&mut self) -> StoreResult<()> {
        if !self.open && !self.deferred.is_empty() {
            self.open_transaction().await?;
        }
        Ok(())
    }
}

impl Drop for OptimisticTx {
    fn drop(&mut self) {
        if let (true, Some(conn)) = (self.open, self.conn.as_mut()) {
            // As sqlx's own transactions do: the `ROLLBACK` is queued and goes with the ping
            // that tests the connection on its way back to the pool.
            PgTransactionManager::start_rollback(conn);
        }
    }
}

#[async_trait]
impl Tx for OptimisticTx {
    async fn get(&mut self, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>> {
        self.before_read().await?;
        if self.open {
            return queries::get(self.conn()?, kind, id_or_key).await;
        }
        let found = early_read!(self, |conn| queries::get(conn, kind, id_or_key))?;
        if let Some(record) = &found {
            self.note_read(record);
        }
        Ok(found)
    }

    async fn list(&mut self, query: &ListQuery) -> StoreResult<Page> {
        self.before_read().await?;
        early_read!(self, |conn| queries::list(conn, query))
    }

    async fn heads(&mut self, query: &HeadQuery) -> StoreResult<Vec<RecordHead>> {
        self.before_read().await?;
        early_read!(self, |conn| queries::heads(conn, query))
    }

    async fn heads_many(&mut self, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
        self.before_read().await?;
        early_read!(self, |conn| queries::heads_many(conn, queries))
    }

    async fn get_many(&mut self, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>> {
        self.before_read().await?;
        early_read!(self, |conn| queries::get_many(conn, kind, ids))
    }

    async fn insert(&mut self, record: NewRecord) -> StoreResult<Record> {
        self.open_transaction().await?;
        queries::insert(self.conn()?, record).await
    }

    async fn update(&mut self, kind: Kind, id: &str, expected_version: i64, update: RecordUpdate) -> StoreResult<Record> {
        if !self.open {
            let known = self.known.iter_mut().find(|k| k.kind == kind && k.id == id);
            if let Some(known) = known.filter(|k| k.version == expected_version && k.key == update.key) {
                let body = serde_json::to_string(&update.body)
                    .map_err(|e| StoreError::Internal(format!("cannot encode the body of {kind} {id}: {e}")))?;
                let at = queries::micros(update.at);
                known.version += 1;
                let record = Record {
                    kind,
                    id: id.to_string(),
                    key: update.key.clone(),
                    parent: update.parent.clone(),
                    state: update.state.clone(),
                    version: known.version,
                    body: update.body,
                    seq: known.seq,
                    created_at: known.created_at,
                    updated_at: at,
                };
                self.deferred.push(DeferredUpdate {
                    kind,
                    id: id.to_string(),
                    seq: known.seq,
                    expected_version,
                    key: update.key,
                    parent: update.parent,
                    state: update.state,
                    body,
                    at,
                });
                return Ok(record);
            }
            self.open_transaction().await?;
        }
        queries::update(self.conn()?, kind, id, expected_version, update).await
    }

    async fn delete(&mut self, kind: Kind, id: &str, expected_version: i64) -> StoreResult<()> {
        self.open_transaction().await?;
        queries::delete(self.conn()?, kind, id, expected_version).await
    }

    async fn next_number(&mut self, counter: &str) -> StoreResult<i64> {
        self.open_transaction().await?;
        queries::next_number(self.conn()?, counter).await
    }

    async fn relax_durability(&mut self) -> StoreResult<()> {
        self.relaxed = true;
        Ok(())
    }

    async fn commit(mut self: Box<Self>, audit: Vec<AuditDraft>, idempotency: Option<IdempotencyRecord>) -> StoreResult<Vec<AuditEntry>> {
        if audit.is_empty() {
            return Err(unaudited_commit());
        }
        if idempotency.is_some() {
            self.open_transaction().await?;
        }
        let relaxed = self.relaxed;
        if self.open {
            return match queries::seal_and_commit(self.conn()?, audit, idempotency, relaxed).await {
                // The message ended with a `BEGIN` for the transaction sqlx still counts; `Drop`
                // queues its `ROLLBACK`, as `PostgresTx::commit` does.
                Ok(entries) => Ok(entries),
                Err(e) => {
                    self.open = false;
                    if let Some(conn) = self.conn.as_mut() {
                        if PgTransactionManager::rollback(conn).await.is_err() {
                            conn.close_on_drop();
                        }
                    }
                    Err(e)
                }
            };
        }
        // Nothing sent but reads: one message opens, writes, seals and commits.
        let mut opening = String::from("BEGIN; ");
        opening.push_str(&queries::optimistic_updates_statement(&self.deferred)?);
        let entries = queries::entries_from(audit);
        let sql = queries::append_statement(&opening, &entries, relaxed, false)?;
        match queries::run_append(self.conn()?, &sql, entries, relaxed).await {
            Ok((entries, _)) => Ok(entries),
            Err(e) => {
                self.end_failed_transaction().await;
                Err(e)
            }
        }
    }
}
