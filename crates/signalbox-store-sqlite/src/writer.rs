//! Group commit on SQLite's one write connection.
//!
//! SQLite has one writer, and with `synchronous=FULL` every `COMMIT` waits for an `fsync` of the
//! WAL. One transaction per request therefore caps a busy server at one request per `fsync`, with
//! the writer idle while the disk works. Here the write connection keeps one database
//! transaction, a *group*, open while requests are queued for it. Each request's [`Tx`] is a
//! `SAVEPOINT` inside the group: it runs alone on the connection, its audit entries are sealed
//! onto the chain in order, and `RELEASE` ends it; a `Tx` that fails or is dropped is rolled back
//! to its savepoint and leaves nothing behind. The group commits (one `fsync`) when nobody is
//! queued, when it holds [`MAX_GROUP_MEMBERS`] requests, or when its first finished request has
//! waited [`MAX_GROUP_AGE`], and only then does any of its members' `commit` return. An
//! acknowledged write is on stable storage, exactly as with one transaction per request; a group
//! whose `COMMIT` fails fails every member.
//!
//! A task that holds a [`Tx`] must therefore not wait for another write's result: that write
//! may be a finished member waiting for this one to end its group.
//!
//! What a member sees: the writes of the members before it in its group (one connection, in
//! order), which are not yet visible to the read pool. So a request that loses a race to a member
//! of the same group (a version conflict) may, for a millisecond, re-read the old version through
//! the read pool. A taken idempotency key is the exception that is handled: the loser waits for
//! the group to settle before it answers, so the caller's replay finds the winner's response.

use signalbox_domain::audit::{AuditDraft, AuditEntry};
use signalbox_store::{unaudited_commit, IdempotencyRecord, StoreError, StoreResult};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Executor, Sqlite};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use crate::queries;

/// A group commits once it holds this many requests, even while more are queued.
pub const MAX_GROUP_MEMBERS: usize = 128;

/// A group commits once its first finished member has waited this long, even while more
/// requests are queued: the latency a member pays for sharing an `fsync` stays bounded.
pub const MAX_GROUP_AGE: Duration = Duration::from_millis(10);

/// How long `begin` waits for the write connection before reporting the store unavailable.
pub(crate) const WRITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome of a group's `COMMIT`, once known: `Err` carries the reason every member fails.
type Outcome = Option<Result<(), String>>;

/// The write side of the store: the connection, its open group, and how many are queued for it.
pub(crate) struct Writer {
    pool: SqlitePool,
    state: Arc<Mutex<WriterState>>,
    /// Tasks waiting for `state` (members to begin, settlers): while any is queued, a finished
    /// member leaves the group open for them instead of committing.
    queued: AtomicUsize,
    groups_committed: AtomicU64,
    members_committed: AtomicU64,
    groups_begun: AtomicU64,
}

/// What the writer has committed since the store opened: the average group size is
/// `members / groups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCommitStats {
    pub groups: u64,
    pub members: u64,
}

pub(crate) struct WriterState {
    conn: Option<PoolConnection<Sqlite>>,
    group: Option<Group>,
    /// The chain's last `(seq, hash)` while a group is open: read once when the group begins
    /// (under its write lock, so no other process appends meanwhile), advanced by each member,
    /// and stored once before the group commits.
    head: (i64, String),
    /// A member's savepoint is open: its `Tx` was dropped (or its task cancelled) before it
    /// finished. Whoever holds the connection next rolls it back first.
    abandoned_member: bool,
    /// A statement failed in a way after which SQLite may have rolled the whole transaction
    /// back (I/O error, disk full, out of memory, busy): the group must not go on, since the
    /// connection may be back in autocommit mode, where every statement commits by itself.
    poisoned: bool,
    closed: bool,
}

struct Group {
    /// Distinguishes this group from later ones on the same connection.
    id: u64,
    members: usize,
    /// When the first member finished: how long the longest-waiting member has waited.
    first_finished: Option<Instant>,
    outcome: watch::Sender<Outcome>,
}

impl Group {
    /// Full, or its first finished member has waited long enough: commit now, queue or not.
    fn is_due(&self) -> bool {
        self.members >= MAX_GROUP_MEMBERS || self.first_finished.is_some_and(|at| at.elapsed() >= MAX_GROUP_AGE)
    }
}

/// Counts a task as queued for the write connection for as long as it lives, so that a waiter
/// that is cancelled or times out is never counted for ever.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Queued(counter)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Writer {
    pub(crate) fn new(pool: SqlitePool) -> Arc<Writer> {
        Arc::new(Writer {
            pool,
            state: Arc::new(Mutex::new(WriterState {
                conn: None,
                group: None,
                head: (0, String::new()),
                abandoned_member: false,
                poisoned: false,
                closed: false,
            })),
            queued: AtomicUsize::new(0),
            groups_committed: AtomicU64::new(0),
            members_committed: AtomicU64::new(0),
            groups_begun: AtomicU64::new(0),
        })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats { groups: self.groups_committed.load(Ordering::SeqCst), members: self.members_committed.load(Ordering::SeqCst) }
    }

    /// Tasks waiting for the write connection right now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    async fn lock(self: &Arc<Self>) -> StoreResult<OwnedMutexGuard<WriterState>> {
        let queued = Queued::new(&self.queued);
        let guard = tokio::time::timeout(WRITE_ACQUIRE_TIMEOUT, self.state.clone().lock_owned()).await;
        drop(queued);
        let guard = guard
            .map_err(|_| StoreError::Unavailable(format!("the write connection stayed busy for {} s", WRITE_ACQUIRE_TIMEOUT.as_secs())))?;
        if guard.closed {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        Ok(guard)
    }

    /// Starts a member: the group is opened if none is, and the member gets its savepoint.
    /// Runs as its own task, like [`Member::commit`]: a caller that goes away while the group's
    /// head or the savepoint is half set up cannot leave the connection in a state the next
    /// member would build on (a member that nobody receives is dropped, and so rolled back).
    pub(crate) async fn begin(self: &Arc<Self>) -> StoreResult<Member> {
        let writer = self.clone();
        match tokio::spawn(async move { writer.start_member().await }).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Internal(format!("the begin task failed: {e}"))),
        }
    }

    async fn start_member(self: &Arc<Self>) -> StoreResult<Member> {
        let guard = self.lock().await?;
        let mut member = Member { writer: self.clone(), guard: Some(guard) };
        let state = member.state();
        state.roll_back_abandoned_member().await;
        if state.group.as_ref().is_some_and(Group::is_due) {
            let _ = state.settle(self).await;
        }
        if state.conn.is_none() {
            state.conn = Some(self.pool.acquire().await.map_err(queries::db_err)?);
        }
        if state.group.is_none() {
            state.execute("BEGIN IMMEDIATE").await?;
            let id = self.groups_begun.fetch_add(1, Ordering::SeqCst);
            state.group = Some(Group { id, members: 0, first_finished: None, outcome: watch::channel(None).0 });
            match queries::stored_head(state.conn()?).await {
                Ok(head) => state.head = head,
                Err(e) => {
                    state.fail_group(&e.to_string()).await;
                    return Err(e);
                }
            }
        }
        // From here on, dropping the member leaves a savepoint to roll back.
        state.abandoned_member = true;
        if let Err(e) = state.execute("SAVEPOINT member").await {
            state.abandoned_member = false;
            state.fail_group(&e.to_string()).await;
            return Err(e);
        }
        Ok(member)
    }

    /// Commits whatever group is open and gives the connection back to the pool, so that the
    /// pool's close checkpoints the WAL.
    pub(crate) async fn close(self: &Arc<Self>) {
        // Its own task, like `begin` and `commit`: a cancelled close must not stop between the
        // head's update and the `COMMIT`.
        let writer = self.clone();
        let _ = tokio::spawn(async move { writer.close_now().await }).await;
    }

    async fn close_now(self: &Arc<Self>) {
        let mut state = self.state.clone().lock_owned().await;
        state.roll_back_abandoned_member().await;
        if let Err(reason) = state.settle(self).await {
            tracing::error!(%reason, "the last group did not commit at close");
        }
        state.conn = None;
        state.closed = true;
        drop(state);
        self.pool.close().await;
    }

    /// After a member is abandoned: someone must roll its savepoint back and, if nobody else
    /// is coming, settle the group, or finished members would wait for ever.
    fn settle_later(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the next `begin` rolls the savepoint back
        };
        let writer = self.clone();
        runtime.spawn(async move {
            if let Ok(mut state) = writer.lock().await {
                state.roll_back_abandoned_member().await;
                // A failed outcome reaches the members; nobody here is waiting for it.
                settle_if_idle_or_due(&writer, &mut state).await;
            }
        });
    }
}

impl Drop for WriterState {
    /// A store dropped without [`Writer::close`] (a test that drops it after its runtime has
    /// stopped): the connection is closed here rather than handed back to its pool, which would
    /// need a Tokio runtime to do it. An open group is rolled back by the close.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.leak());
        }
    }
}

impl WriterState {
    fn conn(&mut self) -> StoreResult<&mut SqliteConnection> {
        self.conn.as_deref_mut().ok_or_else(|| StoreError::Internal("the write connection is not open".into()))
    }

    async fn execute(&mut self, sql: &str) -> StoreResult<()> {
        self.conn()?.execute(sql).await.map_err(queries::db_err)?;
        Ok(())
    }

    async fn roll_back_abandoned_member(&mut self) {
        if self.poisoned {
            self.abandoned_member = false;
            self.poisoned = false;
            self.fail_group("a statement failed in a way that may have rolled the group's transaction back").await;
            return;
        }
        if !self.abandoned_member {
            return;
        }
        self.abandoned_member = false;
        if let Err(e) = self.execute("ROLLBACK TO member; RELEASE member").await {
            // The whole transaction is gone (SQLite rolls back on some I/O errors).
            self.fail_group(&format!("the group transaction was lost: {e}")).await;
        }
    }

    /// Ends the open group: `COMMIT` if it holds members, `ROLLBACK` if it holds none.
    async fn settle(&mut self, writer: &Writer) -> Result<(), String> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let outcome = if group.members == 0 {
            let _ = self.execute("ROLLBACK").await;
            Ok(())
        } else {
            let head = self.head.clone();
            let committed = match self.conn() {
                Ok(conn) => queries::move_head(conn, &head).await,
                Err(e) => Err(e),
            };
            let committed = match committed {
                Ok(()) => self.execute("COMMIT").await,
                Err(e) => Err(e),
            };
            match committed {
                Ok(()) => {
                    writer.groups_committed.fetch_add(1, Ordering::SeqCst);
                    writer.members_committed.fetch_add(group.members as u64, Ordering::SeqCst);
                    Ok(())
                }
                Err(e) => {
                    let _ = self.execute("ROLLBACK").await;
                    Err(format!("committing a group of {} writes failed: {e}", group.members))
                }
            }
        };
        group.outcome.send_replace(Some(outcome.clone()));
        outcome
    }

    /// Rolls the whole group back and fails every member that already finished.
    async fn fail_group(&mut self, reason: &str) {
        let _ = self.execute("ROLLBACK").await;
        if let Some(group) = self.group.take() {
            group.outcome.send_replace(Some(Err(reason.to_string())));
        }
    }
}

/// One request's transaction: a savepoint in the open group, holding the write connection.
pub(crate) struct Member {
    writer: Arc<Writer>,
    guard: Option<OwnedMutexGuard<WriterState>>,
}

impl Member {
    fn state(&mut self) -> &mut WriterState {
        self.guard.as_mut().expect("a member holds the connection until it finishes")
    }

    pub(crate) fn conn(&mut self) -> StoreResult<&mut SqliteConnection> {
        match self.guard.as_mut() {
            Some(state) if state.poisoned => Err(poisoned()),
            Some(state) => state.conn(),
            None => Err(StoreError::Internal("this transaction has finished".into())),
        }
    }

    /// Passes `result` through; an error after which SQLite may have rolled back the whole
    /// transaction poisons the group, so nothing more runs in it and it fails as a whole.
    pub(crate) fn checked<T>(&mut self, result: StoreResult<T>) -> StoreResult<T> {
        if let (Err(StoreError::Unavailable(_)), Some(state)) = (&result, self.guard.as_mut()) {
            state.poisoned = true;
        }
        result
    }

    /// Seals `audit` onto the chain, ends the savepoint and returns once the group holding this
    /// member is durable. Runs as its own task: a caller that goes away mid-commit cannot leave
    /// the group half-settled.
    pub(crate) async fn commit(self, audit: Vec<AuditDraft>, idempotency: Option<IdempotencyRecord>) -> StoreResult<Vec<AuditEntry>> {
        match tokio::spawn(self.finish(audit, idempotency)).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Internal(format!("the commit task failed: {e}"))),
        }
    }

    async fn finish(mut self, audit: Vec<AuditDraft>, idempotency: Option<IdempotencyRecord>) -> StoreResult<Vec<AuditEntry>> {
        let writer = self.writer.clone();
        let mut state = self.guard.take().expect("an unfinished member holds the connection");
        if audit.is_empty() {
            state.roll_back_abandoned_member().await;
            settle_if_idle_or_due(&writer, &mut state).await;
            return Err(unaudited_commit());
        }
        if state.poisoned {
            state.roll_back_abandoned_member().await;
            return Err(poisoned());
        }
        let head = state.head.clone();
        let appended = match state.conn() {
            Ok(conn) => queries::append(conn, audit, idempotency, &head).await,
            Err(e) => Err(e),
        };
        let entries = match appended {
            Ok(entries) => entries,
            Err(e) => {
                if matches!(e, StoreError::Unavailable(_)) {
                    state.poisoned = true;
                }
                state.roll_back_abandoned_member().await;
                if matches!(e, StoreError::IdempotencyKeyTaken { .. }) {
                    // The key's holder may be a finished member of this very group: answer once
                    // it is durable, so the caller's replay can read its response.
                    if state.group.is_some() {
                        let _ = settle_or_wait(&writer, state).await;
                        return Err(e);
                    }
                }
                settle_if_idle_or_due(&writer, &mut state).await;
                return Err(e);
            }
        };
        if let Err(e) = state.execute("RELEASE member").await {
            state.abandoned_member = false;
            state.fail_group(&format!("ending a savepoint failed: {e}")).await;
            return Err(e);
        }
        state.abandoned_member = false;
        if let Some(last) = entries.last() {
            state.head = (last.seq, last.hash.clone());
        }
        let Some(group) = state.group.as_mut() else {
            return Err(StoreError::Internal("a member finished outside a group".into()));
        };
        group.members += 1;
        group.first_finished.get_or_insert_with(Instant::now);
        settle_or_wait(&writer, state).await?;
        Ok(entries)
    }
}

/// Returns once the open group is settled: at once if nobody is queued or the group is due,
/// otherwise after whoever is queued commits it (or, if they abandon it, their settler does; if
/// neither happens in time, this member commits it itself, see [`wait_for`]).
async fn settle_or_wait(writer: &Arc<Writer>, mut state: OwnedMutexGuard<WriterState>) -> StoreResult<()> {
    let Some(group) = state.group.as_ref() else {
        return Ok(());
    };
    let (id, outcome, due) = (group.id, group.outcome.subscribe(), group.is_due());
    if due || writer.queued.load(Ordering::SeqCst) == 0 {
        return state.settle(writer).await.map_err(StoreError::Unavailable);
    }
    drop(state);
    wait_for(writer, id, outcome).await
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("an earlier statement failed in a way that may have rolled the transaction back".into())
}

async fn settle_if_idle_or_due(writer: &Writer, state: &mut WriterState) {
    if writer.queued.load(Ordering::SeqCst) == 0 || state.group.as_ref().is_some_and(Group::is_due) {
        let _ = state.settle(writer).await;
    }
}

/// Waits for the outcome of group `id`. Whoever is queued normally settles it; if nobody has
/// after [`MAX_GROUP_AGE`] (the queued task gave up, failed, or keeps being followed by others
/// that do), the member queues for the connection itself and commits the group if it is still
/// open, so no finished member can wait for ever.
async fn wait_for(writer: &Arc<Writer>, id: u64, mut outcome: watch::Receiver<Outcome>) -> StoreResult<()> {
    if tokio::time::timeout(MAX_GROUP_AGE, outcome.wait_for(Option::is_some)).await.is_err() {
        if let Ok(mut state) = writer.lock().await {
            if state.group.as_ref().is_some_and(|group| group.id == id) {
                state.roll_back_abandoned_member().await;
                let _ = state.settle(writer).await;
            }
        }
    }
    match outcome.wait_for(Option::is_some).await {
        Ok(settled) => match settled.as_ref() {
            Some(Ok(())) => Ok(()),
            Some(Err(reason)) => Err(StoreError::Unavailable(reason.clone())),
            None => Err(StoreError::Internal("a group settled without an outcome".into())),
        },
        Err(_) => Err(StoreError::Internal("a group ended without an outcome".into())),
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(state) = self.guard.take() {
            // `abandoned_member` is still set: the savepoint is rolled back before anything else
            // runs on the connection.
            drop(state);
            self.writer.settle_later();
        }
    }
}
