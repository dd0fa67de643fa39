//! Reading and verifying the audit trail.

use signalbox_domain::access::{Permission, ResourceScopes};
use signalbox_domain::audit::{verify_chain, AuditEntry, ChainReport};
use signalbox_store::{AuditQuery, Store};

use crate::error::AppResult;
use crate::{encode_cursor, App, PageRequest, Paged, RequestContext};

/// Filters clients may apply to the audit list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub subject_kind: Option<String>,
    pub subject_id: Option<String>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

const EXPORT_BATCH: u32 = 1000;

impl App {
    pub async fn list_audit(&self, ctx: &RequestContext, filter: AuditFilter, page: &PageRequest) -> AppResult<Paged<AuditEntry>> {
        ctx.actor.require(Permission::ReadAudit, &ResourceScopes::organization())?;
        let (limit, after) = page.resolve()?;
        let query = AuditQuery {
            after_seq: after,
            up_to_seq: None,
            limit: limit + 1,
            actor: filter.actor,
            action: filter.action,
            subject_kind: filter.subject_kind,
            subject_id: filter.subject_id,
            since: filter.since.map(signalbox_domain::audit::format_time),
            until: filter.until.map(signalbox_domain::audit::format_time),
        };
        let mut items = self.store.audit_page(&query).await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|e| encode_cursor(e.seq))
        } else {
            None
        };
        Ok(Paged { items, next_cursor })
    }

    /// Checks that the caller may export; the export itself streams with [`export_batch`].
    pub fn authorize_audit_export(&self, ctx: &RequestContext) -> AppResult<()> {
        ctx.actor.require(Permission::ReadAudit, &ResourceScopes::organization())
    }
}

/// One batch of the full export after `after_seq`, in sequence order; empty at the end.
pub async fn export_batch(store: &dyn Store, after_seq: i64) -> AppResult<Vec<AuditEntry>> {
    Ok(store.audit_page(&AuditQuery { after_seq: Some(after_seq), limit: EXPORT_BATCH, ..Default::default() }).await?)
}

/// Reads the whole chain from a store and verifies it against the recorded head.
pub async fn verify_store(store: &dyn Store) -> AppResult<ChainReport> {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let batch = export_batch(store, after).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        entries.extend(batch);
    }
    let head = store.audit_head().await?;
    Ok(verify_chain(&entries, head.as_ref().map(|(s, h)| (*s, h.as_str())), true))
}

/// Verifies an export file: one JSON entry per line. A full export starts at the genesis;
/// `from_genesis = false` accepts an excerpt that starts mid-chain.
pub fn verify_jsonl(text: &str, from_genesis: bool) -> Result<ChainReport, String> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: AuditEntry = serde_json::from_str(line).map_err(|e| format!("line {}: not an audit entry: {e}", i + 1))?;
        entries.push(entry);
    }
    Ok(verify_chain(&entries, None, from_genesis))
}
