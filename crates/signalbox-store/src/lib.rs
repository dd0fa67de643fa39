//! The storage boundary. Everything above this crate talks to persistence only through
//! [`Store`] and [`Tx`]; each backend crate (`signalbox-store-sqlite`,
//! `signalbox-store-postgres`) implements them with its own SQL and migrations.
//!
//! Resources are kept as JSON bodies next to a few indexed columns (`kind`, `id`, a unique
//! natural `key`, `parent`, `state`, `version`). That keeps both backends small and identical
//! in behaviour; capabilities that need relational queries of their own add their own tables.
//!
//! **The one write path.** A [`Tx`] can only be committed together with the audit entries that
//! describe it ([`Tx::commit`]); the backend seals them onto the hash chain inside the same
//! database transaction. Dropping a `Tx` rolls it back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use signalbox_domain::audit::{AuditDraft, AuditEntry};
use signalbox_domain::model::Kind;

pub mod conformance;

/// A stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: Kind,
    pub id: String,
    /// Unique natural key within the kind (a name, `R-12`, `service/version`, a token hash).
    pub key: Option<String>,
    /// The owning resource's id (team → domain, artifact → service, binding → user).
    pub parent: Option<String>,
    /// A state to filter on (a release's lifecycle state).
    pub state: Option<String>,
    /// Incremented by every update; the API's `ETag`.
    pub version: i64,
    pub body: Value,
    /// Insertion order; list cursors are built on it.
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub kind: Kind,
    pub id: String,
    pub key: Option<String>,
    pub parent: Option<String>,
    pub state: Option<String>,
    pub body: Value,
    pub at: DateTime<Utc>,
}

/// The new content of a record; `key` and `parent` may change too (a rename).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUpdate {
    pub key: Option<String>,
    pub parent: Option<String>,
    pub state: Option<String>,
    pub body: Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub kind: Kind,
    pub parent: Option<String>,
    pub state: Option<String>,
    /// Equality filters on top-level string fields of the body, e.g. `("domain_id", "dom_1")`.
    pub fields: Vec<(String, String)>,
    /// Only records whose top-level field holds an RFC 3339 time at or before this one, e.g.
    /// `("due", now)` for the scheduler's due jobs; records without such a time do not match.
    /// Compared as instants by the database, so the application decodes only what matched.
    pub times_at_most: Vec<(String, DateTime<Utc>)>,
    /// Only records created strictly after this instant, e.g. the pushes a measurement has not
    /// read yet, so a reader's cost follows what is new rather than everything kept.
    pub created_after: Option<DateTime<Utc>>,
    /// Only records with `seq` greater than this (the cursor).
    pub after_seq: Option<i64>,
    pub limit: u32,
}

impl ListQuery {
    pub fn all(kind: Kind) -> Self {
        ListQuery {
            kind,
            parent: None,
            state: None,
            fields: vec![],
            times_at_most: vec![],
            created_after: None,
            after_seq: None,
            limit: 10_000,
        }
    }
    pub fn with_parent(mut self, parent: impl Into<String>) -> Self {
        self.parent = Some(parent.into());
        self
    }
    pub fn with_field(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((field.into(), value.into()));
        self
    }
    pub fn with_time_at_most(mut self, field: impl Into<String>, at: DateTime<Utc>) -> Self {
        self.times_at_most.push((field.into(), at));
        self
    }
    pub fn with_created_after(mut self, at: DateTime<Utc>) -> Self {
        self.created_after = Some(at);
        self
    }
}

/// Which records [`Store::heads`] describes: those of `kind` whose parent is one of `parents`,
/// whose state is one of `states`, whose id is one of `ids` and whose top-level string body
/// field is one of the listed values for every entry of `fields` (`None`: any parent, state or
/// id). An empty list matches nothing. There is no limit and no paging: heads are small.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadQuery {
    pub kind: Kind,
    pub parents: Option<Vec<String>>,
    pub states: Option<Vec<String>>,
    /// Record ids only, never keys.
    pub ids: Option<Vec<String>>,
    /// `(field, values)`: the body's top-level string `field` equals one of `values`.
    pub fields: Vec<(String, Vec<String>)>,
}

impl HeadQuery {
    pub fn all(kind: Kind) -> Self {
        HeadQuery { kind, parents: None, states: None, ids: None, fields: vec![] }
    }
    pub fn with_parents(mut self, parents: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.parents = Some(parents.into_iter().map(Into::into).collect());
        self
    }
    pub fn with_states(mut self, states: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.states = Some(states.into_iter().map(Into::into).collect());
        self
    }
    pub fn with_ids(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.ids = Some(ids.into_iter().map(Into::into).collect());
        self
    }
    pub fn with_field_in(mut self, field: impl Into<String>, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.fields.push((field.into(), values.into_iter().map(Into::into).collect()));
        self
    }
    /// Whether a record of this query's kind with `head` is one the query matches, as far as
    /// a head tells: body fields are checked by [`HeadQuery::matches_record`].
    pub fn matches(&self, head: &RecordHead) -> bool {
        let among = |list: &Option<Vec<String>>, value: Option<&String>| match (list, value) {
            (None, _) => true,
            (Some(list), Some(v)) => list.contains(v),
            (Some(_), None) => false,
        };
        among(&self.parents, head.parent.as_ref()) && among(&self.states, head.state.as_ref()) && among(&self.ids, Some(&head.id))
    }
    /// Whether the query matches `record`, body fields included.
    pub fn matches_record(&self, record: &Record) -> bool {
        record.kind == self.kind
            && self.matches(&RecordHead::from(record))
            && self.fields.iter().all(|(field, values)| match record.body.get(field) {
                Some(Value::String(v)) => values.contains(v),
                _ => false,
            })
    }
}

/// A record without its body: enough to tell whether something derived from the body earlier
/// still describes it. `(id, seq, version)` names one content of one record for good: every
/// update increments `version`, and `seq` is never reused, even after a delete.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordHead {
    pub id: String,
    pub parent: Option<String>,
    pub state: Option<String>,
    pub version: i64,
    pub seq: i64,
}

impl From<&Record> for RecordHead {
    fn from(r: &Record) -> Self {
        RecordHead { id: r.id.clone(), parent: r.parent.clone(), state: r.state.clone(), version: r.version, seq: r.seq }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Record>,
    /// `seq` of the last item when more may follow.
    pub next_after_seq: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditQuery {
    pub after_seq: Option<i64>,
    /// Entries up to this `seq`, inclusive.
    pub up_to_seq: Option<i64>,
    pub limit: u32,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub subject_kind: Option<String>,
    pub subject_id: Option<String>,
    /// RFC 3339 bounds, compared as text (entries store canonical UTC text).
    pub since: Option<String>,
    pub until: Option<String>,
}

/// The stored first response to a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub actor: String,
    pub key: String,
    /// Fingerprint of method, path and body: a replay with a different request is refused.
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    pub reachable: bool,
    /// Highest migration version applied in the database.
    pub applied_migration: Option<i64>,
    /// Highest migration version this binary carries.
    pub expected_migration: i64,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.reachable && self.applied_migration == Some(self.expected_migration)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    #[error("a {kind} with key {key:?} already exists")]
    Duplicate { kind: Kind, key: String },
    #[error("{kind} {id} was changed concurrently (expected version {expected})")]
    VersionConflict { kind: Kind, id: String, expected: i64 },
    #[error("{kind} {id} does not exist")]
    NotFound { kind: Kind, id: String },
    #[error("idempotency key {key:?} was used by a concurrent request")]
    IdempotencyKeyTaken { key: String },
    /// A record an optimistic transaction ([`Store::begin_optimistic`]) read before its first
    /// write changed (or appeared) before that write could begin; nothing was written. Running
    /// the operation again reads the new state.
    #[error("{kind} {id} changed while this transaction was reading it; run it again")]
    StaleRead { kind: Kind, id: String },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    async fn get(&self, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>>;
    async fn list(&self, query: &ListQuery) -> StoreResult<Page>;
    /// The heads (no bodies) of every record `query` matches, in `seq` order.
    async fn heads(&self, query: &HeadQuery) -> StoreResult<Vec<RecordHead>>;
    /// The records of `kind` with these ids (ids only, not keys), in `seq` order; unknown ids
    /// are left out.
    async fn get_many(&self, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>>;
    /// [`Store::heads`] of several queries at once, in one statement (one round trip), each
    /// answer in `seq` order. Reading a cached decision's inputs costs one call this way.
    async fn heads_many(&self, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            out.push(self.heads(q).await?);
        }
        Ok(out)
    }
    async fn count(&self, kind: Kind) -> StoreResult<i64>;
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;
    /// A transaction that reads before it writes without holding what a write holds, for
    /// operations that read a few records and then write. What it commits is what a
    /// [`Store::begin`] transaction would have committed; when that can no longer be promised
    /// (a record it read and writes changed in between, say), the write or the commit fails with
    /// [`StoreError::StaleRead`] and nothing is written: the caller runs the whole operation
    /// again with [`Store::begin`].
    ///
    /// - SQLite: reads go through the read pool without the one write connection (other reads
    ///   than [`Tx::get`] take it), noting what they found; the first write takes it and checks
    ///   that every record read is still the one read, at the version read, and every record
    ///   not found still absent — ordinary transactions read under the write lock.
    /// - PostgreSQL: reads run on the transaction's connection before any `BEGIN`; updates of
    ///   records read at the version expected wait in memory, and the commit sends the `BEGIN`,
    ///   the updates (each refused if its record changed), the audit seal and the `COMMIT` in one
    ///   message. A write it cannot defer opens the transaction first. Reads are not re-checked:
    ///   ordinary transactions run at READ COMMITTED and lock nothing they only read.
    ///
    /// The default, for backends with neither cost, begins an ordinary transaction.
    async fn begin_optimistic(&self) -> StoreResult<Box<dyn Tx>> {
        self.begin().await
    }
    async fn idempotency_get(&self, actor: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>>;
    /// Entries in sequence order, after `after_seq`, filtered.
    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
    /// `(seq, hash)` of the latest entry, as recorded beside the chain.
    async fn audit_head(&self) -> StoreResult<Option<(i64, String)>>;
    async fn readiness(&self) -> Readiness;
    fn pool_stats(&self) -> PoolStats;
    async fn close(&self);
}

#[async_trait]
pub trait Tx: Send {
    async fn get(&mut self, kind: Kind, id_or_key: &str) -> StoreResult<Option<Record>>;
    async fn list(&mut self, query: &ListQuery) -> StoreResult<Page>;
    /// [`Store::heads`], seeing this transaction's own writes.
    async fn heads(&mut self, query: &HeadQuery) -> StoreResult<Vec<RecordHead>>;
    /// [`Store::get_many`], seeing this transaction's own writes.
    async fn get_many(&mut self, kind: Kind, ids: &[String]) -> StoreResult<Vec<Record>>;
    /// [`Store::heads_many`], seeing this transaction's own writes.
    async fn heads_many(&mut self, queries: &[HeadQuery]) -> StoreResult<Vec<Vec<RecordHead>>> {
        let mut out = Vec::with_capacity(queries.len());
        for q in queries {
            out.push(self.heads(q).await?);
        }
        Ok(out)
    }
    /// Fails with [`StoreError::Duplicate`] when `(kind, key)` or the id already exists.
    async fn insert(&mut self, record: NewRecord) -> StoreResult<Record>;
    /// Fails with [`StoreError::VersionConflict`] unless the stored version is `expected_version`.
    async fn update(&mut self, kind: Kind, id: &str, expected_version: i64, update: RecordUpdate) -> StoreResult<Record>;
    async fn delete(&mut self, kind: Kind, id: &str, expected_version: i64) -> StoreResult<()>;
    /// The next value of a named counter (release keys `R-<n>`), starting at 1, never reused.
    async fn next_number(&mut self, counter: &str) -> StoreResult<i64>;
    /// Lets this transaction's commit return before its write-ahead log reaches the disk, for
    /// telemetry and bookkeeping that is re-created if lost (pushed metric values, a rollout's
    /// measurements). The commit stays atomic and ordered, audit entries included; only an
    /// operating-system crash within a fraction of a second can lose it. Backends whose commits
    /// are not serialized behind a disk flush may ignore it.
    async fn relax_durability(&mut self) -> StoreResult<()> {
        Ok(())
    }
    /// Appends `audit` to the hash chain and commits everything atomically, together with the
    /// idempotency record when the request carried a key. An empty `audit` is refused: every
    /// mutation is audited.
    async fn commit(self: Box<Self>, audit: Vec<AuditDraft>, idempotency: Option<IdempotencyRecord>) -> StoreResult<Vec<AuditEntry>>;
}

/// Refusal shared by backends for a commit without audit entries.
pub fn unaudited_commit() -> StoreError {
    StoreError::Internal("refusing to commit a write without an audit entry".into())
}

/// What a backend's `raw_insert_ceiling` benchmark helper measured: the database's own
/// single-row insert-and-commit rate, the reference the API is compared against.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCeiling {
    /// Committed single-row transactions.
    pub ops: u64,
    pub elapsed: std::time::Duration,
    /// Latency of one begin + insert + commit.
    pub p50: std::time::Duration,
    pub p99: std::time::Duration,
}

impl RawCeiling {
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }
}

/// The `q`-quantile (0..=1) of sorted latencies, nearest rank.
pub fn quantile(sorted: &[std::time::Duration], q: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
