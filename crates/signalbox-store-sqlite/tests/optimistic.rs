//! Optimistic transactions (`Store::begin_optimistic`): reads before the first write go through
//! the read pool without the write connection, and the first write refuses to go on if any of
//! them no longer holds.

mod common;

use common::{draft, record, until_queued};
use serde_json::json;
use signalbox_domain::audit::verify_chain;
use signalbox_domain::model::Kind;
use signalbox_store::{AuditQuery, RecordUpdate, Store, StoreError};
use signalbox_store_sqlite::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

fn change(id: &str, note: &str) -> RecordUpdate {
    RecordUpdate {
        key: Some(format!("key-{id}")),
        parent: None,
        state: None,
        body: json!({ "id": id, "note": note }),
        at: chrono::Utc::now(),
    }
}

async fn create(store: &SqliteStore, id: &str) {
    let mut tx = store.begin().await.unwrap();
    tx.insert(record(id)).await.unwrap();
    tx.commit(vec![draft(id, "domain.create")], None).await.unwrap();
}

async fn touch(store: &SqliteStore, id: &str, expected_version: i64) {
    let mut tx = store.begin().await.unwrap();
    tx.update(Kind::Domain, id, expected_version, change(id, "touched")).await.unwrap();
    tx.commit(vec![draft(id, "domain.update")], None).await.unwrap();
}

/// The audit actions on the chain, after checking the chain.
async fn audited(store: &SqliteStore) -> Vec<String> {
    let entries = store.audit_page(&AuditQuery::default()).await.unwrap();
    let head = store.audit_head().await.unwrap();
    let report = verify_chain(&entries, head.as_ref().map(|(s, h)| (*s, h.as_str())), true);
    assert!(report.is_valid(), "{:?}", report.problems);
    entries.into_iter().map(|e| format!("{} {}", e.action, e.subject_id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_hold_no_write_connection_and_an_unchanged_read_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    create(&store, "dom_a").await;

    let mut optimistic = store.begin_optimistic().await.unwrap();
    let read = optimistic.get(Kind::Domain, "key-dom_a").await.unwrap().expect("found by key");
    assert_eq!(read.version, 1);
    assert!(optimistic.get(Kind::Domain, "dom_missing").await.unwrap().is_none());
    // While it reads, other writers are not held up: with `begin` this would wait for ever.
    tokio::time::timeout(Duration::from_secs(10), create(&store, "dom_b")).await.expect("a writer was blocked by optimistic reads");

    optimistic.insert(record("dom_c")).await.unwrap();
    optimistic.commit(vec![draft("dom_c", "domain.create")], None).await.unwrap();
    assert!(store.get(Kind::Domain, "dom_c").await.unwrap().is_some());
    assert_eq!(audited(&store).await, ["domain.create dom_a", "domain.create dom_b", "domain.create dom_c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_after_it_was_read_stops_the_first_write_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    create(&store, "dom_a").await;

    let mut optimistic = store.begin_optimistic().await.unwrap();
    assert_eq!(optimistic.get(Kind::Domain, "dom_a").await.unwrap().unwrap().version, 1);
    touch(&store, "dom_a", 1).await;

    let refused = optimistic.insert(record("dom_c")).await.unwrap_err();
    assert!(matches!(&refused, StoreError::StaleRead { kind: Kind::Domain, id } if id == "dom_a"), "{refused:?}");
    // It stays refused: no later call writes on the stale reads.
    let again = optimistic.insert(record("dom_e")).await.unwrap_err();
    assert!(matches!(again, StoreError::StaleRead { .. }), "{again:?}");
    let commit = optimistic.commit(vec![draft("dom_e", "domain.create")], None).await.unwrap_err();
    assert!(matches!(commit, StoreError::StaleRead { .. }), "{commit:?}");

    assert!(store.get(Kind::Domain, "dom_c").await.unwrap().is_none());
    assert!(store.get(Kind::Domain, "dom_e").await.unwrap().is_none());
    assert_eq!(audited(&store).await, ["domain.create dom_a", "domain.update dom_a"]);
    // The write connection is free again.
    create(&store, "dom_d").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_appears_after_it_was_not_found_stops_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();

    let mut optimistic = store.begin_optimistic().await.unwrap();
    assert!(optimistic.get(Kind::Domain, "key-dom_a").await.unwrap().is_none());
    create(&store, "dom_a").await;

    // A transaction that only read still checks at commit.
    let refused = optimistic.commit(vec![draft("dom_a", "domain.noted")], None).await.unwrap_err();
    assert!(matches!(&refused, StoreError::StaleRead { kind: Kind::Domain, id } if id == "dom_a"), "{refused:?}");
    assert_eq!(audited(&store).await, ["domain.create dom_a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_an_earlier_member_of_the_open_group_is_seen_before_it_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    create(&store, "dom_a").await;

    // The first member changes dom_a and holds the connection: the change is in the group, not
    // yet committed, so the read pool still answers version 1.
    let mut first = store.begin().await.unwrap();
    first.update(Kind::Domain, "dom_a", 1, change("dom_a", "in the group")).await.unwrap();
    let mut optimistic = store.begin_optimistic().await.unwrap();
    assert_eq!(optimistic.get(Kind::Domain, "dom_a").await.unwrap().unwrap().version, 1);

    let second = tokio::spawn(async move {
        optimistic.insert(record("dom_c")).await?;
        optimistic.commit(vec![draft("dom_c", "domain.create")], None).await.map(|_| ())
    });
    until_queued(&store, 1).await;
    first.commit(vec![draft("dom_a", "domain.update")], None).await.unwrap();

    let refused = second.await.unwrap().unwrap_err();
    assert!(matches!(&refused, StoreError::StaleRead { kind: Kind::Domain, id } if id == "dom_a"), "{refused:?}");
    assert!(store.get(Kind::Domain, "dom_c").await.unwrap().is_none());
    assert_eq!(store.get(Kind::Domain, "dom_a").await.unwrap().unwrap().version, 2);
    assert_eq!(audited(&store).await, ["domain.create dom_a", "domain.update dom_a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_deleted_or_deleted_and_created_again_since_it_was_read_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    create(&store, "dom_a").await;
    create(&store, "dom_b").await;

    let mut gone = store.begin_optimistic().await.unwrap();
    assert!(gone.get(Kind::Domain, "dom_a").await.unwrap().is_some());
    let mut again = store.begin_optimistic().await.unwrap();
    assert_eq!(again.get(Kind::Domain, "key-dom_b").await.unwrap().unwrap().version, 1);

    for id in ["dom_a", "dom_b"] {
        let mut tx = store.begin().await.unwrap();
        tx.delete(Kind::Domain, id, 1).await.unwrap();
        tx.commit(vec![draft(id, "domain.delete")], None).await.unwrap();
    }
    // dom_b comes back under the same id and key, at version 1 again: only its place in the
    // table (`seq`) tells it from the record that was read.
    create(&store, "dom_b").await;

    let refused = gone.insert(record("dom_c")).await.unwrap_err();
    assert!(matches!(&refused, StoreError::StaleRead { id, .. } if id == "dom_a"), "{refused:?}");
    let refused = again.insert(record("dom_d")).await.unwrap_err();
    assert!(matches!(&refused, StoreError::StaleRead { id, .. } if id == "dom_b"), "{refused:?}");
    drop((gone, again));
    assert!(store.get(Kind::Domain, "dom_c").await.unwrap().is_none());
    assert!(store.get(Kind::Domain, "dom_d").await.unwrap().is_none());
}

/// The first write of an optimistic transaction waits for the write connection before it checks
/// its reads. Cancelled there (a client that went away, a timeout), it leaves no savepoint and no
/// write behind, and its waiting task ends once it gets the connection; its reads stay noted,
/// so a later write still checks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_write_cancelled_while_it_waits_to_check_its_reads_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    create(&store, "dom_a").await;

    let mut optimistic = store.begin_optimistic().await.unwrap();
    assert_eq!(optimistic.get(Kind::Domain, "dom_a").await.unwrap().unwrap().version, 1);
    // Another transaction holds the write connection, so the first write has to wait.
    let mut holder = store.begin().await.unwrap();
    holder.insert(record("dom_h")).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(100), optimistic.insert(record("dom_c"))).await;
    assert!(waited.is_err(), "the write did not wait for the connection: {waited:?}");
    // The wait runs as its own task, so that a member half set up is never left on the
    // connection: it stays queued, takes the connection when the holder is done, and its member,
    // which nobody receives, is rolled back.
    until_queued(&store, 1).await;
    holder.commit(vec![draft("dom_h", "domain.create")], None).await.unwrap();
    for _ in 0..2000 {
        if store.queued_writers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.queued_writers(), 0, "the cancelled write's task ended");

    // The reads are still checked: dom_a changes, and the next write is refused.
    touch(&store, "dom_a", 1).await;
    let refused = optimistic.insert(record("dom_c")).await.unwrap_err();
    assert!(matches!(&refused, StoreError::StaleRead { kind: Kind::Domain, id } if id == "dom_a"), "{refused:?}");
    drop(optimistic);
    assert!(store.get(Kind::Domain, "dom_c").await.unwrap().is_none());
    assert_eq!(audited(&store).await, ["domain.create dom_a", "domain.create dom_h", "domain.update dom_a"]);

    // Cancelled the same way with its reads unchanged, a transaction goes on and commits once.
    let mut optimistic = store.begin_optimistic().await.unwrap();
    assert_eq!(optimistic.get(Kind::Domain, "dom_a").await.unwrap().unwrap().version, 2);
    let mut holder = store.begin().await.unwrap();
    holder.insert(record("dom_i")).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), optimistic.insert(record("dom_c"))).await.is_err());
    holder.commit(vec![draft("dom_i", "domain.create")], None).await.unwrap();
    optimistic.insert(record("dom_c")).await.unwrap();
    optimistic.commit(vec![draft("dom_c", "domain.create")], None).await.unwrap();
    assert_eq!(store.get(Kind::Domain, "dom_c").await.unwrap().unwrap().version, 1);
    assert_eq!(
        audited(&store).await,
        ["domain.create dom_a", "domain.create dom_h", "domain.update dom_a", "domain.create dom_i", "domain.create dom_c"]
    );
}

/// A store that cannot give the first write its connection (here: closed) answers the write
/// with `Unavailable`, which callers retry, never with a stale read; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_write_that_cannot_get_the_write_connection_is_unavailable_not_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    create(&store, "dom_a").await;

    let mut optimistic = store.begin_optimistic().await.unwrap();
    assert!(optimistic.get(Kind::Domain, "dom_a").await.unwrap().is_some());
    store.close().await;
    let refused = optimistic.insert(record("dom_c")).await.unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    let refused = optimistic.commit(vec![draft("dom_c", "domain.create")], None).await.unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");

    let reopened = SqliteStore::open(dir.path()).await.unwrap();
    assert!(reopened.get(Kind::Domain, "dom_c").await.unwrap().is_none());
    assert_eq!(audited(&reopened).await, ["domain.create dom_a"]);
}
