//! The one write path. A [`Mutation`] wraps a store transaction; every write through it
//! records an audit draft (before/after, actor, reason, request id), and [`Mutation::commit`]
//! hands all drafts to the store, which seals them onto the hash chain in the same
//! transaction. There is no other way for this crate to write.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use signalbox_domain::audit::AuditDraft;
use signalbox_domain::model::Kind;
use signalbox_store::{HeadQuery, IdempotencyRecord, ListQuery, NewRecord, Record, RecordHead, RecordUpdate, Tx};

use crate::error::{AppError, AppResult};
use crate::{App, RequestContext, Versioned};

/// Where a record sits: its natural key, parent and filterable state.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub key: Option<String>,
    pub parent: Option<String>,
    pub state: Option<String>,
}

pub struct Mutation<'a> {
    tx: Box<dyn Tx>,
    ctx: &'a RequestContext,
    drafts: Vec<AuditDraft>,
    /// A reason given in the request body (a transition's `reason`), which wins over the
    /// `X-Signalbox-Reason` header for this mutation's audit entries.
    reason: Option<String>,
    pub now: DateTime<Utc>,
}

pub fn decode<T: DeserializeOwned>(record: &Record) -> AppResult<Versioned<T>> {
    let value = serde_json::from_value(record.body.clone())
        .map_err(|e| AppError::Internal(format!("stored {} {} does not decode: {e}", record.kind, record.id)))?;
    Ok(Versioned { version: record.version, value })
}

fn to_value<T: Serialize>(value: &T) -> AppResult<Value> {
    serde_json::to_value(value).map_err(|e| AppError::Internal(format!("cannot encode: {e}")))
}

impl<'a> Mutation<'a> {
    pub async fn begin(app: &App, ctx: &'a RequestContext) -> AppResult<Mutation<'a>> {
        let tx = app.store.begin().await?;
        Ok(Mutation { tx, ctx, drafts: Vec::new(), reason: ctx.reason.clone(), now: Utc::now() })
    }

    /// [`Mutation::begin`], or with `optimistic` a transaction that reads before it holds what a
    /// write holds ([`signalbox_store::Store::begin_optimistic`]); run such a mutation through
    /// [`optimistically`], which runs it again if a record it read changed before it wrote.
    pub async fn begin_with(app: &App, ctx: &'a RequestContext, optimistic: bool) -> AppResult<Mutation<'a>> {
        let tx = if optimistic { app.store.begin_optimistic().await? } else { app.store.begin().await? };
        Ok(Mutation { tx, ctx, drafts: Vec::new(), reason: ctx.reason.clone(), now: Utc::now() })
    }

    /// See [`signalbox_store::Tx::relax_durability`]: for writes that are re-created if lost.
    pub async fn relax_durability(&mut self) -> AppResult<()> {
        Ok(self.tx.relax_durability().await?)
    }

    /// True while nothing has been written (there is nothing to commit).
    pub fn is_unchanged(&self) -> bool {
        self.drafts.is_empty()
    }

    pub fn context(&self) -> &RequestContext {
        self.ctx
    }

    /// Records `reason` on the audit entries of the writes that follow.
    pub fn set_reason(&mut self, reason: Option<String>) {
        if reason.is_some() {
            self.reason = reason;
        }
    }

    pub async fn find<T: DeserializeOwned>(&mut self, kind: Kind, id_or_key: &str) -> AppResult<Option<Versioned<T>>> {
        match self.tx.get(kind, id_or_key).await? {
            Some(r) => Ok(Some(decode(&r)?)),
            None => Ok(None),
        }
    }

    pub async fn get<T: DeserializeOwned>(&mut self, kind: Kind, id_or_key: &str) -> AppResult<Versioned<T>> {
        self.find(kind, id_or_key).await?.ok_or_else(|| AppError::not_found(kind, id_or_key))
    }

    pub async fn list<T: DeserializeOwned>(&mut self, query: &ListQuery) -> AppResult<Vec<T>> {
        let page = self.tx.list(query).await?;
        page.items.iter().map(|r| decode(r).map(|v| v.value)).collect()
    }

    pub(crate) async fn get_record(&mut self, kind: Kind, id_or_key: &str) -> AppResult<Option<Record>> {
        Ok(self.tx.get(kind, id_or_key).await?)
    }

    pub(crate) async fn list_records(&mut self, query: &ListQuery) -> AppResult<Vec<Record>> {
        Ok(self.tx.list(query).await?.items)
    }

    pub(crate) async fn heads(&mut self, query: &HeadQuery) -> AppResult<Vec<RecordHead>> {
        Ok(self.tx.heads(query).await?)
    }

    pub(crate) async fn heads_many(&mut self, queries: &[HeadQuery]) -> AppResult<Vec<Vec<RecordHead>>> {
        Ok(self.tx.heads_many(queries).await?)
    }

    pub(crate) async fn get_many_records(&mut self, kind: Kind, ids: &[String]) -> AppResult<Vec<Record>> {
        Ok(self.tx.get_many(kind, ids).await?)
    }

    pub async fn next_number(&mut self, counter: &str) -> AppResult<i64> {
        Ok(self.tx.next_number(counter).await?)
    }

    fn draft(&mut self, action: &str, kind: Kind, id: &str, before: Option<Value>, after: Option<Value>) {
        self.drafts.push(AuditDraft {
            actor: self.ctx.actor.username.clone(),
            action: action.to_string(),
            subject_kind: kind.as_str().to_string(),
            subject_id: id.to_string(),
            before,
            after,
            reason: self.reason.clone(),
            request_id: self.ctx.request_id.clone(),
        });
    }

    /// Inserts a new resource and records `action` (e.g. `service.create`).
    pub async fn insert<T: Serialize>(&mut self, action: &str, kind: Kind, id: &str, place: Placement, value: &T) -> AppResult<i64> {
        let body = to_value(value)?;
        let record = self
            .tx
            .insert(NewRecord {
                kind,
                id: id.to_string(),
                key: place.key,
                parent: place.parent,
                state: place.state,
                body: body.clone(),
                at: self.now,
            })
            .await?;
        self.draft(action, kind, id, None, Some(body));
        Ok(record.version)
    }

    /// Inserts a resource whose body holds a secret: the audit entry records `audit_after`
    /// (a redacted form) instead of the body.
    pub async fn insert_secret<T: Serialize>(
        &mut self,
        action: &str,
        kind: Kind,
        id: &str,
        place: Placement,
        value: &T,
        audit_after: Value,
    ) -> AppResult<i64> {
        let body = to_value(value)?;
        let record = self
            .tx
            .insert(NewRecord { kind, id: id.to_string(), key: place.key, parent: place.parent, state: place.state, body, at: self.now })
            .await?;
        self.draft(action, kind, id, None, Some(audit_after));
        Ok(record.version)
    }

    /// Replaces a resource if it is still at the version it was read at (`before.version`),
    /// recording before and after.
    pub async fn update<T: Serialize>(
        &mut self,
        action: &str,
        kind: Kind,
        id: &str,
        place: Placement,
        before: &Versioned<T>,
        after: &T,
    ) -> AppResult<i64> {
        let expected_version = before.version;
        let before = to_value(&before.value)?;
        let body = to_value(after)?;
        let record = self
            .tx
            .update(
                kind,
                id,
                expected_version,
                RecordUpdate { key: place.key, parent: place.parent, state: place.state, body: body.clone(), at: self.now },
            )
            .await?;
        self.draft(action, kind, id, Some(before), Some(body));
        Ok(record.version)
    }

    /// Replaces the before/after of the audit draft of the last write with a summary: for records
    /// that accumulate data (evaluation counters), whose entries must stay small.
    pub fn summarize_last(&mut self, before: Option<Value>, after: Option<Value>) {
        if let Some(draft) = self.drafts.last_mut() {
            draft.before = before;
            draft.after = after;
        }
    }

    pub async fn delete<T: Serialize>(&mut self, action: &str, kind: Kind, id: &str, expected_version: i64, before: &T) -> AppResult<()> {
        let before = to_value(before)?;
        self.tx.delete(kind, id, expected_version).await?;
        self.draft(action, kind, id, Some(before), None);
        Ok(())
    }

    /// Commits every write and its audit entries atomically. When the request carried an
    /// `Idempotency-Key`, `response` (with `status`) is stored in the same transaction so a
    /// replay returns it without doing anything twice.
    pub async fn commit<R: Serialize>(self, status: u16, response: &R) -> AppResult<()> {
        let idempotency = match &self.ctx.idempotency {
            Some(idem) => Some(IdempotencyRecord {
                actor: self.ctx.actor.user_id.clone(),
                key: idem.key.clone(),
                request_hash: idem.request_hash.clone(),
                status,
                body: serde_json::to_string(response).map_err(|e| AppError::Internal(e.to_string()))?,
                created_at: self.now,
            }),
            None => None,
        };
        self.tx.commit(self.drafts, idempotency).await?;
        Ok(())
    }
}

/// Runs `operation(true)`, a mutation begun with [`Mutation::begin_with`] optimistically. Its
/// success stands: it committed what an ordinary transaction would have (SQLite re-checks every
/// record read at the first write, under the write lock; PostgreSQL's deferred updates take
/// effect only on the record and version read).
/// Any other answer is not final: a refusal (403, 404, 409, 412, 422, a refused transition) may
/// rest on reads that were not one snapshot, and a stale read ([`STALE_READ`]) wrote nothing, so
/// the operation runs again as `operation(false)`, in an ordinary transaction, and that answer
/// stands. Nothing is written twice: a refused or stale run writes nothing (its transaction is
/// dropped), and an `Idempotency-Key` is stored only by a commit. Refusals pay a second run; the
/// common case, a success on unchanged records, never holds SQLite's write connection while it
/// reads, and costs PostgreSQL no round trip for its `BEGIN` or its updates.
pub async fn optimistically<T, F, Fut>(mut operation: F) -> AppResult<T>
where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = AppResult<T>>,
{
    match operation(true).await {
        Ok(done) => Ok(done),
        Err(_) => operation(false).await,
    }
}

/// The conflict code of [`signalbox_store::StoreError::StaleRead`].
pub const STALE_READ: &str = "concurrent-change";

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Runs `optimistically` over an operation that answers `first` when optimistic and 7
    /// otherwise; returns the answer and the `optimistic` flag of every run.
    async fn run(first: AppResult<i32>) -> (AppResult<i32>, Vec<bool>) {
        let runs = Mutex::new(Vec::new());
        let first = Mutex::new(Some(first));
        let answer = optimistically(|optimistic| {
            runs.lock().unwrap().push(optimistic);
            let answer = if optimistic { first.lock().unwrap().take().unwrap_or(Ok(0)) } else { Ok(7) };
            async move { answer }
        })
        .await;
        (answer, runs.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_stale_read_runs_the_operation_again_under_the_write_lock() {
        let stale =
            AppError::from(signalbox_store::StoreError::StaleRead { kind: signalbox_domain::model::Kind::Release, id: "rel_1".into() });
        let (answer, runs) = run(Err(stale)).await;
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(runs, [true, false]);
    }

    #[tokio::test]
    async fn a_success_is_final_and_a_refusal_is_decided_again_under_the_write_lock() {
        let (answer, runs) = run(Ok(3)).await;
        assert_eq!(answer.unwrap(), 3);
        assert_eq!(runs, [true]);
        let refused = AppError::Conflict { code: "release-final", detail: "R-1 is closed".into() };
        let (answer, runs) = run(Err(refused)).await;
        assert_eq!(answer.unwrap(), 7, "the locked run's answer stands");
        assert_eq!(runs, [true, false]);
    }
}
