//! Helpers shared by the write-connection tests.

use serde_json::json;
use signalbox_domain::audit::AuditDraft;
use signalbox_domain::model::Kind;
use signalbox_store::NewRecord;
use signalbox_store_sqlite::SqliteStore;
use std::time::Duration;

/// A new domain record with id `id` and key `key-<id>`.
pub fn record(id: &str) -> NewRecord {
    NewRecord {
        kind: Kind::Domain,
        id: id.into(),
        key: Some(format!("key-{id}")),
        parent: None,
        state: None,
        body: json!({ "id": id }),
        at: chrono::Utc::now(),
    }
}

/// Waits until `n` transactions are queued for the write connection.
pub async fn until_queued(store: &SqliteStore, n: usize) {
    for _ in 0..2000 {
        if store.queued_writers() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("only {} of {n} writers queued", store.queued_writers());
}

/// An audit draft by `tester` recording `action` on domain `id`.
pub fn draft(id: &str, action: &str) -> AuditDraft {
    AuditDraft {
        actor: "tester".into(),
        action: action.into(),
        subject_kind: "domain".into(),
        subject_id: id.into(),
        before: None,
        after: Some(json!({ "id": id })),
        reason: None,
        request_id: None,
    }
}
