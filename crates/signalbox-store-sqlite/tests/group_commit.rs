//! Group commit on the write connection: writers queued together share one `COMMIT`, each
//! still atomic and acknowledged only once durable.

mod common;

use common::{draft, record, until_queued};
use signalbox_domain::audit::verify_chain;
use signalbox_domain::model::Kind;
use signalbox_store::{AuditQuery, IdempotencyRecord, Store, StoreError, Tx};
use signalbox_store_sqlite::SqliteStore;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn idempotency(key: &str, body: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        actor: "tester".into(),
        key: key.into(),
        request_hash: "h".into(),
        status: 201,
        body: body.into(),
        created_at: chrono::Utc::now(),
    }
}

type MemberWork = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

async fn assert_chain_valid(store: &SqliteStore) -> usize {
    let entries = store.audit_page(&AuditQuery::default()).await.unwrap();
    let head = store.audit_head().await.unwrap();
    let report = verify_chain(&entries, head.as_ref().map(|(s, h)| (*s, h.as_str())), true);
    assert!(report.is_valid(), "{:?}", report.problems);
    entries.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_writers_share_one_commit_and_each_returns_only_once_durable() {
    const QUEUED: usize = 15;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let before = store.group_commit_stats();

    // The first writer holds the connection until every other one is queued behind it.
    let mut first = store.begin().await.unwrap();
    first.insert(record("dom_first")).await.unwrap();
    let writers: Vec<_> = (0..QUEUED)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("dom_{n}");
                let mut tx = store.begin().await.unwrap();
                tx.insert(record(&id)).await.unwrap();
                let entries = tx.commit(vec![draft(&id, "domain.create")], None).await.unwrap();
                // Acknowledged means committed: a fresh read connection sees the record.
                assert!(store.get(Kind::Domain, &id).await.unwrap().is_some(), "{id} was acknowledged before it was durable");
                entries[0].seq
            })
        })
        .collect();
    until_queued(&store, QUEUED).await;
    let entries = first.commit(vec![draft("dom_first", "domain.create")], None).await.unwrap();
    assert!(store.get(Kind::Domain, "dom_first").await.unwrap().is_some(), "the first writer was acknowledged before it was durable");
    let mut seqs = vec![entries[0].seq];
    for writer in writers {
        seqs.push(writer.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=QUEUED as i64 + 1).collect::<Vec<_>>(), "one gapless chain");

    let stats = store.group_commit_stats();
    let (groups, members) = (stats.groups - before.groups, stats.members - before.members);
    assert_eq!(members, QUEUED as u64 + 1);
    assert!(groups < members, "{members} queued writers made {groups} commits: none shared one");
    assert_eq!(assert_chain_valid(&store).await, QUEUED + 1);
    assert_eq!(store.count(Kind::Domain).await.unwrap(), QUEUED as i64 + 1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_failed_member_leaves_nothing_while_its_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let mut setup = store.begin().await.unwrap();
    setup.insert(record("dom_taken")).await.unwrap();
    setup.commit(vec![draft("dom_taken", "domain.create")], None).await.unwrap();

    let mut first = store.begin().await.unwrap();
    first.insert(record("dom_a")).await.unwrap();
    let spawn = |f: fn(Box<dyn Tx>) -> MemberWork| {
        let store = store.clone();
        tokio::spawn(async move { f(store.begin().await.unwrap()).await })
    };
    // Each of these starts after `first` and so joins its group.
    let dropped = spawn(|mut tx| {
        Box::pin(async move {
            tx.insert(record("dom_dropped")).await.unwrap();
            tx.next_number("dropped").await.unwrap();
            drop(tx);
            Ok(())
        })
    });
    let failed = spawn(|mut tx| {
        Box::pin(async move {
            tx.insert(record("dom_before_failure")).await.unwrap();
            let mut duplicate = record("dom_other");
            duplicate.key = Some("key-dom_taken".into());
            tx.insert(duplicate).await.map(|_| ())
        })
    });
    let unaudited = spawn(|mut tx| {
        Box::pin(async move {
            tx.insert(record("dom_unaudited")).await.unwrap();
            tx.commit(vec![], None).await.map(|_| ())
        })
    });
    let kept = spawn(|mut tx| {
        Box::pin(async move {
            tx.insert(record("dom_b")).await.unwrap();
            tx.commit(vec![draft("dom_b", "domain.create")], None).await.map(|_| ())
        })
    });
    until_queued(&store, 4).await;
    first.commit(vec![draft("dom_a", "domain.create")], None).await.unwrap();

    dropped.await.unwrap().unwrap();
    assert!(matches!(failed.await.unwrap(), Err(StoreError::Duplicate { .. })));
    assert!(unaudited.await.unwrap().is_err());
    kept.await.unwrap().unwrap();

    for id in ["dom_a", "dom_b", "dom_taken"] {
        assert!(store.get(Kind::Domain, id).await.unwrap().is_some(), "{id} was committed");
    }
    for id in ["dom_dropped", "dom_before_failure", "dom_other", "dom_unaudited"] {
        assert_eq!(store.get(Kind::Domain, id).await.unwrap(), None, "{id} was rolled back");
    }
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.next_number("dropped").await.unwrap(), 1, "the dropped member's counter was rolled back");
    drop(tx);
    assert_eq!(assert_chain_valid(&store).await, 3);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loser_of_an_idempotency_key_answers_once_the_winner_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let mut winner = store.begin().await.unwrap();
    winner.insert(record("dom_winner")).await.unwrap();
    let loser = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            tx.insert(record("dom_loser")).await.unwrap();
            let err = tx.commit(vec![draft("dom_loser", "domain.create")], Some(idempotency("k", "loser"))).await.unwrap_err();
            // What the server's idempotency layer does next: replay the stored response.
            (err, store.idempotency_get("tester", "k").await.unwrap())
        })
    };
    // A third writer, queued after the loser, keeps the group open after the loser finishes, so
    // the loser meets the winner's key while it is not yet committed and nobody has to commit it.
    until_queued(&store, 1).await;
    let third = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            tx.insert(record("dom_third")).await.unwrap();
            // Long enough that a loser answering at once would replay before the commit.
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.commit(vec![draft("dom_third", "domain.create")], None).await.unwrap();
        })
    };
    until_queued(&store, 2).await;
    winner.commit(vec![draft("dom_winner", "domain.create")], Some(idempotency("k", "winner"))).await.unwrap();
    let (err, replay) = loser.await.unwrap();
    assert_eq!(err, StoreError::IdempotencyKeyTaken { key: "k".into() });
    assert_eq!(replay.map(|r| r.body).as_deref(), Some("winner"), "the replay finds the winner's response");
    third.await.unwrap();
    assert_eq!(store.get(Kind::Domain, "dom_loser").await.unwrap(), None);
    assert_eq!(assert_chain_valid(&store).await, 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_given_up_while_queued_neither_blocks_nor_leaks_into_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let mut holder = store.begin().await.unwrap();
    holder.insert(record("dom_holder")).await.unwrap();
    // A caller that gives up while it waits for the write connection (a request timing out).
    let gave_up = tokio::time::timeout(Duration::from_millis(50), store.begin()).await;
    assert!(gave_up.is_err(), "the connection is held, so the begin cannot finish");
    holder.commit(vec![draft("dom_holder", "domain.create")], None).await.unwrap();

    // The abandoned begin still ran to completion in its own task and was rolled back; the
    // writer goes on serving and the chain stays whole.
    let mut tx = tokio::time::timeout(Duration::from_secs(10), store.begin()).await.expect("the writer is free again").unwrap();
    tx.insert(record("dom_after")).await.unwrap();
    tx.commit(vec![draft("dom_after", "domain.create")], None).await.unwrap();
    assert!(store.get(Kind::Domain, "dom_holder").await.unwrap().is_some());
    assert!(store.get(Kind::Domain, "dom_after").await.unwrap().is_some());
    assert_eq!(assert_chain_valid(&store).await, 2);
    store.close().await;
}

/// One link of a chain of writers that each take the connection, make sure the next one is
/// queued behind them, and then give up without committing: the queue never empties.
fn give_up_after_the_next_is_queued(store: Arc<SqliteStore>, done: Arc<std::sync::atomic::AtomicBool>, links: Arc<AtomicUsize>) {
    tokio::spawn(async move {
        let Ok(mut tx) = store.begin().await else { return };
        links.fetch_add(1, Ordering::SeqCst);
        if done.load(Ordering::SeqCst) {
            return;
        }
        tx.next_number("given-up").await.unwrap();
        give_up_after_the_next_is_queued(store.clone(), done, links);
        until_queued(&store, 1).await;
        drop(tx);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_member_is_committed_even_while_writers_that_give_up_keep_the_queue_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let links = Arc::new(AtomicUsize::new(0));
    let mut finished = store.begin().await.unwrap();
    finished.insert(record("dom_finished")).await.unwrap();
    give_up_after_the_next_is_queued(store.clone(), done.clone(), links.clone());
    until_queued(&store, 1).await;
    // Someone is queued, so the member leaves its group open and waits; everyone after it gives
    // up. Without a bound on how long a finished member waits, nobody would ever commit.
    let committed =
        tokio::time::timeout(Duration::from_secs(20), finished.commit(vec![draft("dom_finished", "domain.create")], None)).await;
    done.store(true, Ordering::SeqCst);
    committed.expect("the finished member's commit never returned").unwrap();
    assert!(links.load(Ordering::SeqCst) >= 1, "the chain of writers ran");
    assert!(store.get(Kind::Domain, "dom_finished").await.unwrap().is_some());
    let mut tx = tokio::time::timeout(Duration::from_secs(20), store.begin()).await.expect("the writer is free again").unwrap();
    assert_eq!(tx.next_number("given-up").await.unwrap(), 1, "no given-up writer's counter was committed");
    drop(tx);
    assert_eq!(assert_chain_valid(&store).await, 1);
    store.close().await;
}

#[test]
fn a_store_dropped_after_its_runtime_stopped_closes_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let store = runtime.block_on(async {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.insert(record("dom_kept")).await.unwrap();
        tx.commit(vec![draft("dom_kept", "domain.create")], None).await.unwrap();
        store
    });
    // Outside any runtime: the write connection the writer holds must not need one to close.
    drop(store);
    drop(runtime);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert!(store.get(Kind::Domain, "dom_kept").await.unwrap().is_some());
        assert_eq!(assert_chain_valid(&store).await, 1);
        store.close().await;
    });
}
