//! PostgreSQL's optimistic transactions (`Store::begin_optimistic`): an update of a record read
//! at the version it expects is deferred to the commit's message, and a refused message leaves
//! the connection clean. The shared contract is in `signalbox_store::conformance`
//! (`optimistic_transactions`); this is what only this backend's way of meeting it can get wrong.
//! Runs when `SIGNALBOX_TEST_POSTGRES_URL` names a server; CI always sets it.

use serde_json::json;
use signalbox_domain::audit::{verify_chain, AuditDraft};
use signalbox_domain::model::Kind;
use signalbox_store::{AuditQuery, NewRecord, RecordUpdate, Store, StoreError};
use signalbox_store_postgres::testing::{self, ScratchDatabase};
use signalbox_store_postgres::PostgresStore;
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;

fn draft(id: &str, action: &str) -> AuditDraft {
    AuditDraft {
        actor: "optimistic-test".into(),
        action: action.into(),
        subject_kind: "domain".into(),
        subject_id: id.into(),
        before: None,
        after: Some(json!({ "id": id })),
        reason: None,
        request_id: None,
    }
}

fn change(id: &str, note: &str) -> RecordUpdate {
    RecordUpdate { key: Some(format!("key-{id}")), parent: None, state: None, body: json!({ "note": note }), at: chrono::Utc::now() }
}

async fn create(store: &PostgresStore, id: &str) {
    let mut tx = store.begin().await.unwrap();
    let record = NewRecord {
        kind: Kind::Domain,
        id: id.into(),
        key: Some(format!("key-{id}")),
        parent: None,
        state: None,
        body: json!({ "note": "new" }),
        at: chrono::Utc::now(),
    };
    tx.insert(record).await.unwrap();
    tx.commit(vec![draft(id, "domain.create")], None).await.unwrap();
}

/// A store on a scratch database with `connections` pooled connections, or `None` (the test is
/// skipped) when no PostgreSQL is configured.
async fn store(test: &str, connections: u32) -> Option<(ScratchDatabase, PostgresStore)> {
    let base = testing::base_url(test)?;
    let database = ScratchDatabase::create(&base).await.expect("create a scratch database");
    let store = PostgresStore::connect_with_timeout(database.url(), connections, Duration::from_secs(5)).await.expect("connect");
    Some((database, store))
}

async fn assert_chain_valid(store: &PostgresStore) -> Vec<String> {
    let entries = store.audit_page(&AuditQuery::default()).await.unwrap();
    let head = store.audit_head().await.unwrap();
    let report = verify_chain(&entries, head.as_ref().map(|(s, h)| (*s, h.as_str())), true);
    assert!(report.is_valid(), "{:?}", report.problems);
    entries.into_iter().map(|e| format!("{} {}", e.action, e.subject_id)).collect()
}

/// The deferred update holds no row lock before the commit: another writer updates the same
/// record meanwhile without waiting (a `lock_timeout` would fail it otherwise), and the
/// optimistic commit is then refused as stale and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_update_locks_nothing_until_the_commit_and_a_stale_one_writes_nothing() {
    let Some((_database, store)) = store("a_deferred_update_locks_nothing_until_the_commit", 4).await else { return };
    create(&store, "dom_a").await;

    let mut optimistic = store.begin_optimistic().await.unwrap();
    let read = optimistic.get(Kind::Domain, "key-dom_a").await.unwrap().expect("found by key");
    let deferred = optimistic.update(Kind::Domain, "dom_a", read.version, change("dom_a", "optimistic")).await.unwrap();
    assert_eq!((deferred.version, deferred.seq, deferred.created_at), (2, read.seq, read.created_at));

    let mut other = store.pool().acquire().await.unwrap();
    sqlx::query("SET lock_timeout = '2s'").execute(&mut *other).await.unwrap();
    let touched = sqlx::query("UPDATE resources SET version = version + 1, body = '{\"note\":\"other\"}' WHERE id = 'dom_a'")
        .execute(&mut *other)
        .await
        .expect("the deferred update held the row's lock");
    assert_eq!(touched.rows_affected(), 1);
    drop(other);

    let refused = optimistic.commit(vec![draft("dom_a", "domain.update")], None).await.unwrap_err();
    assert_eq!(refused, StoreError::StaleRead { kind: Kind::Domain, id: "dom_a".into() });
    let stored = store.get(Kind::Domain, "dom_a").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.body), (2, json!({ "note": "other" })));
    assert_eq!(assert_chain_valid(&store).await, ["domain.create dom_a"]);
    store.close().await;
}

/// On a pool of one connection, every way an optimistic transaction can end leaves that
/// connection usable by the next: refused in the commit's message, refused when a write opens
/// the transaction, dropped after opening it, dropped with a deferred update. A connection left
/// inside an aborted or open transaction would fail or hang the next transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ending_leaves_the_one_connection_clean() {
    let Some((database, store)) = store("every_ending_leaves_the_one_connection_clean", 1).await else { return };
    create(&store, "dom_a").await;

    // Refused in the commit's message (the update was deferred). The record changes meanwhile:
    // only another connection could do that, and the pool has one, so a connection of its own.
    let mut outside = sqlx::postgres::PgConnection::connect(database.url()).await.unwrap();
    let mut tx = store.begin_optimistic().await.unwrap();
    tx.get(Kind::Domain, "dom_a").await.unwrap().unwrap();
    tx.update(Kind::Domain, "dom_a", 1, change("dom_a", "stale")).await.unwrap();
    sqlx::query("UPDATE resources SET version = version + 1 WHERE id = 'dom_a'").execute(&mut outside).await.unwrap();
    let refused = tx.commit(vec![draft("dom_a", "domain.update")], None).await.unwrap_err();
    assert_eq!(refused, StoreError::StaleRead { kind: Kind::Domain, id: "dom_a".into() });
    touch(&store, "dom_a", 2, "after a refused commit").await;

    // Refused when an insert opens the transaction with the deferred update.
    let mut tx = store.begin_optimistic().await.unwrap();
    tx.get(Kind::Domain, "dom_a").await.unwrap().unwrap();
    tx.update(Kind::Domain, "dom_a", 3, change("dom_a", "stale")).await.unwrap();
    sqlx::query("UPDATE resources SET version = version + 1 WHERE id = 'dom_a'").execute(&mut outside).await.unwrap();
    let record =
        NewRecord { kind: Kind::Domain, id: "dom_b".into(), key: None, parent: None, state: None, body: json!({}), at: chrono::Utc::now() };
    let refused = tx.insert(record.clone()).await.unwrap_err();
    assert_eq!(refused, StoreError::StaleRead { kind: Kind::Domain, id: "dom_a".into() });
    drop(tx);
    touch(&store, "dom_a", 4, "after a refused opening").await;

    // Dropped after opening, and dropped with a deferred update.
    let mut tx = store.begin_optimistic().await.unwrap();
    tx.insert(record).await.unwrap();
    drop(tx);
    let mut tx = store.begin_optimistic().await.unwrap();
    tx.get(Kind::Domain, "dom_a").await.unwrap().unwrap();
    tx.update(Kind::Domain, "dom_a", 5, change("dom_a", "dropped")).await.unwrap();
    drop(tx);
    touch(&store, "dom_a", 5, "after two drops").await;

    assert!(store.get(Kind::Domain, "dom_b").await.unwrap().is_none());
    assert_eq!(store.get(Kind::Domain, "dom_a").await.unwrap().unwrap().body, json!({ "note": "after two drops" }));
    assert_eq!(
        assert_chain_valid(&store).await,
        ["domain.create dom_a", "domain.update dom_a", "domain.update dom_a", "domain.update dom_a"]
    );
    store.close().await;
}

/// Many optimistic transactions read one record and update it at once: exactly one commits,
/// every other is refused as stale, and the chain holds one entry for the one that won.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_concurrent_deferred_updates_of_one_record_exactly_one_commits() {
    let Some((_database, store)) = store("of_many_concurrent_deferred_updates_of_one_record", 8).await else { return };
    let store = Arc::new(store);
    create(&store, "dom_a").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut tx = store.begin_optimistic().await.unwrap();
                let read = tx.get(Kind::Domain, "dom_a").await.unwrap().unwrap();
                barrier.wait().await;
                tx.update(Kind::Domain, "dom_a", read.version, change("dom_a", &format!("writer {i}"))).await.unwrap();
                tx.commit(vec![draft("dom_a", "domain.update")], None).await
            })
        })
        .collect();
    let mut committed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => committed += 1,
            Err(StoreError::StaleRead { kind: Kind::Domain, id }) => assert_eq!(id, "dom_a"),
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(committed, 1);
    assert_eq!(store.get(Kind::Domain, "dom_a").await.unwrap().unwrap().version, 2);
    assert_eq!(assert_chain_valid(&store).await, ["domain.create dom_a", "domain.update dom_a"]);
    store.close().await;
}

/// Updates `id` from `version` in an ordinary transaction, with an audit entry.
async fn touch(store: &PostgresStore, id: &str, version: i64, note: &str) {
    let mut tx = tokio::time::timeout(Duration::from_secs(10), store.begin()).await.expect("the one connection came back").unwrap();
    tx.update(Kind::Domain, id, version, change(id, note)).await.unwrap();
    tx.commit(vec![draft(id, "domain.update")], None).await.unwrap();
}
