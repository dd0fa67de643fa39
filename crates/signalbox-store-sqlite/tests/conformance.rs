//! The shared store contract, and what only a file-backed store has to show: reopening.

use serde_json::json;
use signalbox_domain::audit::{verify_chain, AuditDraft};
use signalbox_domain::model::Kind;
use signalbox_store::{AuditQuery, NewRecord, Store, StoreError};
use signalbox_store_sqlite::{raw_insert_ceiling, SqliteStore, DB_FILE};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data")).await.expect("open");
    signalbox_store::conformance::run_all(&store).await;
    store.close().await;
}

fn draft(id: &str) -> AuditDraft {
    AuditDraft {
        actor: "tester".into(),
        action: "domain.create".into(),
        subject_kind: "domain".into(),
        subject_id: id.into(),
        before: None,
        after: Some(json!({ "id": id, "name": "ünïcødé 🚀" })),
        reason: Some("reopen test".into()),
        request_id: None,
    }
}

async fn insert(store: &SqliteStore, id: &str) {
    let mut tx = store.begin().await.unwrap();
    tx.insert(NewRecord {
        kind: Kind::Domain,
        id: id.into(),
        key: Some(format!("key-{id}")),
        parent: None,
        state: None,
        body: json!({ "id": id, "n": 1.5 }),
        at: chrono::Utc::now(),
    })
    .await
    .unwrap();
    tx.next_number("reopen").await.unwrap();
    tx.commit(vec![draft(id), draft(id)], None).await.unwrap();
}

#[tokio::test]
async fn reopening_keeps_records_and_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    for i in 0..5 {
        insert(&store, &format!("dom_{i}")).await;
    }
    let before = store.audit_page(&AuditQuery::default()).await.unwrap();
    let head = store.audit_head().await.unwrap();
    let record = store.get(Kind::Domain, "key-dom_3").await.unwrap().unwrap();
    store.close().await;

    // Reopen with migrations (the server), then as an offline tool.
    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(store.audit_page(&AuditQuery::default()).await.unwrap(), before);
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert_eq!(store.get(Kind::Domain, "dom_3").await.unwrap(), Some(record.clone()));
    insert(&store, "dom_after").await;
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.next_number("reopen").await.unwrap(), 7, "counters survive a reopen");
    drop(tx);
    store.close().await;

    let store = SqliteStore::open_existing(dir.path()).await.unwrap();
    assert!(store.readiness().await.is_ready());
    let entries = store.audit_page(&AuditQuery::default()).await.unwrap();
    assert_eq!(entries.len(), 12);
    assert_eq!(entries[..10], before[..]);
    let head = store.audit_head().await.unwrap().unwrap();
    let report = verify_chain(&entries, Some((head.0, &head.1)), true);
    assert!(report.is_valid(), "{:?}", report.problems);
    assert_eq!(store.count(Kind::Domain).await.unwrap(), 6);
    store.close().await;
}

#[tokio::test]
async fn open_existing_refuses_a_missing_or_foreign_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = SqliteStore::open_existing(&dir.path().join("nowhere")).await.unwrap_err();
    assert!(matches!(missing, StoreError::Unavailable(_)), "{missing:?}");
    assert!(!dir.path().join("nowhere").exists(), "nothing is created");

    // A SQLite file that is not a Signalbox database.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(foreign.join(DB_FILE)).create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::query("CREATE TABLE other (x INTEGER)").execute(&pool).await.unwrap();
    pool.close().await;
    let err = SqliteStore::open_existing(&foreign).await.unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
}

#[tokio::test]
async fn open_creates_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a").join("b");
    let store = SqliteStore::open(&data).await.unwrap();
    assert!(data.join(DB_FILE).is_file());
    assert_eq!(store.path(), data.join(DB_FILE));
    assert_eq!(store.audit_head().await.unwrap(), None, "an empty chain has no head");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ceiling_measures_committed_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let ceiling = raw_insert_ceiling(dir.path(), 4, Duration::from_millis(300)).await.unwrap();
    assert!(ceiling.ops > 0, "{ceiling:?}");
    assert!(ceiling.elapsed >= Duration::from_millis(300));
    assert!(ceiling.p50 <= ceiling.p99 && ceiling.p99 > Duration::ZERO, "{ceiling:?}");
    assert!(!dir.path().join("bench_raw.db").exists(), "the scratch database is removed");
}

/// Two stores on one data directory (a server and an offline tool, or a mistaken second
/// server) still append to one valid chain: each append reads the head inside its write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_directory_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = std::sync::Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let b = std::sync::Arc::new(SqliteStore::open_existing(dir.path()).await.unwrap());
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for c in 0..10 {
                insert(&store, &format!("dom_{w}_{c}")).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let entries = a.audit_page(&AuditQuery::default()).await.unwrap();
    assert_eq!(entries.len(), 80);
    let head = b.audit_head().await.unwrap().unwrap();
    let report = verify_chain(&entries, Some((head.0, &head.1)), true);
    assert!(report.is_valid(), "{:?}", report.problems);
    a.close().await;
    b.close().await;
}
