//! Tampering with the audit trail behind the store's back. Each test writes a ten-entry chain
//! through the [`Store`] API, changes `audit_log` with plain SQL on a separate connection to the
//! same database, reads the chain back through the API in pages (as `verify_store` does) and
//! checks that `verify_chain` names exactly what was done, and where. Runs when
//! `SIGNALBOX_TEST_POSTGRES_URL` names a server (e.g. `postgres://postgres@127.0.0.1:5432/postgres`);
//! each test gets a database of its own, dropped afterwards.

use serde_json::json;
use signalbox_domain::audit::{verify_chain, AuditDraft, AuditEntry, ChainProblem, ChainReport};
use signalbox_domain::canonical::to_canonical_string;
use signalbox_domain::model::Kind;
use signalbox_store::{AuditQuery, NewRecord, Store};
use signalbox_store_postgres::{testing, PostgresStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// Entries written before tampering; each transaction commits one.
const ENTRIES: i64 = 10;

/// A small page, so reading the chain back crosses several pages.
const PAGE: u32 = 3;

struct Fixture {
    store: PostgresStore,
    /// A connection of the tamperer's own, not the store's.
    raw: PgPool,
}

impl Fixture {
    async fn close(self) {
        self.raw.close().await;
        self.store.close().await;
    }
}

fn draft(i: i64) -> AuditDraft {
    AuditDraft {
        actor: format!("user{}", i % 3),
        action: "domain.create".into(),
        subject_kind: "domain".into(),
        subject_id: format!("dom_{i}"),
        before: None,
        after: Some(json!({ "id": format!("dom_{i}"), "name": format!("Domain {i}"), "n": i })),
        reason: (i % 2 == 0).then(|| "tamper test".to_string()),
        request_id: Some(format!("req-{i}")),
    }
}

/// Runs `test` against a fresh database and drops the database afterwards, even on failure.
async fn with_fresh_database<F, Fut>(base: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let url = testing::fresh_database(base).await.expect("create a test database");
    let outcome = tokio::spawn(test(url.clone())).await;
    testing::drop_database(base, &url).await.expect("drop the test database");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A store on the database `url` holding a valid chain of [`ENTRIES`] entries, and a raw pool
/// on the same database.
async fn fixture(url: &str) -> Fixture {
    let store = PostgresStore::connect(url, 4).await.expect("connect");
    for i in 1..=ENTRIES {
        let mut tx = store.begin().await.unwrap();
        tx.insert(NewRecord {
            kind: Kind::Domain,
            id: format!("dom_{i}"),
            key: Some(format!("domain-{i}")),
            parent: None,
            state: None,
            body: json!({ "id": format!("dom_{i}"), "name": format!("Domain {i}") }),
            at: chrono::Utc::now(),
        })
        .await
        .unwrap();
        let entries = tx.commit(vec![draft(i)], None).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].seq, i);
    }
    let raw = PgPoolOptions::new().max_connections(1).connect(url).await.expect("raw connection");
    let fixture = Fixture { store, raw };
    let report = verify(&fixture.store).await;
    assert!(report.is_valid(), "the chain is valid before tampering: {:?}", report.problems);
    assert_eq!(report.entries, ENTRIES as usize);
    fixture
}

/// What `signalbox_app::audit::verify_store` does: the whole chain, page by page, against the
/// recorded head.
async fn verify(store: &dyn Store) -> ChainReport {
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.audit_page(&AuditQuery { after_seq: Some(after), limit: PAGE, ..Default::default() }).await.unwrap();
        assert!(batch.len() <= PAGE as usize);
        let Some(last) = batch.last() else { break };
        after = last.seq;
        entries.extend(batch);
    }
    let head = store.audit_head().await.unwrap();
    verify_chain(&entries, head.as_ref().map(|(seq, hash)| (*seq, hash.as_str())), true)
}

/// The stored entry with sequence number `seq`, read through the API.
async fn entry(store: &dyn Store, seq: i64) -> AuditEntry {
    let page = store.audit_page(&AuditQuery { after_seq: Some(seq - 1), limit: 1, ..Default::default() }).await.unwrap();
    let entry = page.into_iter().next().expect("the entry exists");
    assert_eq!(entry.seq, seq);
    entry
}

/// Writes `entry` straight into `audit_log`, leaving `audit_head` alone.
async fn insert_raw(raw: &PgPool, entry: &AuditEntry) {
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, subject_kind, subject_id, before_json, after_json, reason, request_id, \
         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(entry.seq)
    .bind(&entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.subject_kind)
    .bind(&entry.subject_id)
    .bind(entry.before.as_ref().map(to_canonical_string))
    .bind(entry.after.as_ref().map(to_canonical_string))
    .bind(&entry.reason)
    .bind(&entry.request_id)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(raw)
    .await
    .unwrap();
}

async fn execute(raw: &PgPool, sql: &str) -> u64 {
    sqlx::query(sql).execute(raw).await.unwrap().rows_affected()
}

fn forged_draft() -> AuditDraft {
    AuditDraft {
        actor: "mallory".into(),
        action: "release.approve".into(),
        subject_kind: "release".into(),
        subject_id: "rel_forged".into(),
        before: Some(json!({ "state": "awaiting_approval" })),
        after: Some(json!({ "state": "approved" })),
        reason: Some("looks fine".into()),
        request_id: None,
    }
}

fn messages(report: &ChainReport) -> Vec<String> {
    report.problems.iter().map(ToString::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_chain_verifies() {
    let Some(base) = testing::base_url("an_untouched_chain_verifies") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let f = fixture(&url).await;
        let report = verify(&f.store).await;
        assert_eq!(report.problems, vec![]);
        assert!(report.is_valid());
        assert_eq!(report.entries, 10);
        assert_eq!(report.last_seq, Some(10));
        let head = f.store.audit_head().await.unwrap().unwrap();
        assert_eq!(head.0, 10);
        assert_eq!(report.last_hash.as_deref(), Some(head.1.as_str()));
        f.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_entry_is_located() {
    let Some(base) = testing::base_url("an_edited_entry_is_located") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let f = fixture(&url).await;
        assert_eq!(execute(&f.raw, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 5").await, 1);
        assert_eq!(entry(&f.store, 5).await.actor, "mallory", "the edit is visible through the store");

        let report = verify(&f.store).await;
        assert_eq!(report.problems, vec![ChainProblem::Edited { seq: 5, detail: "its content does not match its hash".into() }]);
        assert_eq!(messages(&report), vec!["entry 5 was edited: its content does not match its hash"]);
        f.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_and_rehashed_entry_is_located_by_the_broken_link() {
    let Some(base) = testing::base_url("an_edited_and_rehashed_entry_is_located_by_the_broken_link") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let f = fixture(&url).await;
        let mut forged = entry(&f.store, 5).await;
        forged.actor = "mallory".into();
        forged.hash = forged.compute_hash();
        let changed = sqlx::query("UPDATE audit_log SET actor = $1, hash = $2 WHERE seq = 5")
            .bind(&forged.actor)
            .bind(&forged.hash)
            .execute(&f.raw)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(changed, 1);
        assert_eq!(entry(&f.store, 5).await, forged, "the stored entry is self-consistent again");

        let report = verify(&f.store).await;
        assert_eq!(report.problems, vec![ChainProblem::Edited { seq: 5, detail: "entry 6 recorded a different hash for it".into() }]);
        assert_eq!(messages(&report), vec!["entry 5 was edited: entry 6 recorded a different hash for it"]);
        f.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_entry_is_located() {
    let Some(base) = testing::base_url("a_deleted_entry_is_located") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let f = fixture(&url).await;
        assert_eq!(execute(&f.raw, "DELETE FROM audit_log WHERE seq = 5").await, 1);

        let report = verify(&f.store).await;
        assert_eq!(report.entries, 9);
        assert_eq!(report.problems, vec![ChainProblem::Deleted { from_seq: 5, to_seq: 5 }]);
        assert_eq!(messages(&report), vec!["entry 5 was deleted"]);
        f.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_entries_is_caught_by_the_head() {
    let Some(base) = testing::base_url("deleting_the_newest_entries_is_caught_by_the_head") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let f = fixture(&url).await;
        assert_eq!(execute(&f.raw, "DELETE FROM audit_log WHERE seq IN (9, 10)").await, 2);
        assert_eq!(f.store.audit_head().await.unwrap().map(|(seq, _)| seq), Some(10), "the head still records entry 10");

        let report = verify(&f.store).await;
        assert_eq!(report.entries, 8);
        assert_eq!(report.problems, vec![ChainProblem::Truncated { last_seq: 8, head_seq: 10 }]);
        assert_eq!(messages(&report), vec!["the chain ends at entry 8 but the recorded head is entry 10: trailing entries were deleted"]);
        f.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_entry_appended_after_the_head_is_inserted() {
    let Some(base) = testing::base_url("a_forged_entry_appended_after_the_head_is_inserted") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let f = fixture(&url).await;
        let head = f.store.audit_head().await.unwrap().unwrap();
        let last = entry(&f.store, 10).await;
        assert_eq!(head, (10, last.hash.clone()));
        // Well-formed and correctly linked: only the recorded head gives it away.
        let forged = AuditEntry::seal(forged_draft(), 11, chrono::Utc::now(), &last.hash);
        insert_raw(&f.raw, &forged).await;
        assert_eq!(entry(&f.store, 11).await, forged);
        assert_eq!(f.store.audit_head().await.unwrap(), Some(head), "audit_head is not moved");

        let report = verify(&f.store).await;
        assert_eq!(report.entries, 11);
        assert_eq!(report.problems, vec![ChainProblem::Inserted { seq: 11, position: 10 }]);
        assert_eq!(messages(&report), vec!["an entry claiming sequence 11 was inserted at position 10: it is not linked into the chain"]);
        f.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_entry_with_a_bogus_link_is_inserted() {
    let Some(base) = testing::base_url("a_forged_entry_with_a_bogus_link_is_inserted") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let f = fixture(&url).await;
        let head = f.store.audit_head().await.unwrap().unwrap();
        // Its own hash is right, but it links to nothing in the chain.
        let bogus_prev = "ab".repeat(32);
        let forged = AuditEntry::seal(forged_draft(), 11, chrono::Utc::now(), &bogus_prev);
        insert_raw(&f.raw, &forged).await;
        assert_eq!(entry(&f.store, 11).await, forged);
        assert_eq!(f.store.audit_head().await.unwrap(), Some(head), "audit_head is not moved");

        let report = verify(&f.store).await;
        assert_eq!(report.entries, 11);
        // Entry 10 is intact (it is the recorded head, hash and all); only the forgery is wrong.
        assert_eq!(report.problems, vec![ChainProblem::Inserted { seq: 11, position: 10 }]);
        assert_eq!(messages(&report), vec!["an entry claiming sequence 11 was inserted at position 10: it is not linked into the chain"]);
        f.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_sequence_numbers_are_reported_as_reordering() {
    let Some(base) = testing::base_url("swapped_sequence_numbers_are_reported_as_reordering") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let f = fixture(&url).await;
        let (five, six) = (entry(&f.store, 5).await, entry(&f.store, 6).await);
        // Through a temporary number, as the primary key forbids two rows numbered alike.
        let mut tx = f.raw.begin().await.unwrap();
        for sql in [
            "UPDATE audit_log SET seq = -1 WHERE seq = 5",
            "UPDATE audit_log SET seq = 5 WHERE seq = 6",
            "UPDATE audit_log SET seq = 6 WHERE seq = -1",
        ] {
            assert_eq!(sqlx::query(sql).execute(&mut *tx).await.unwrap().rows_affected(), 1, "{sql}");
        }
        tx.commit().await.unwrap();
        let (now_five, now_six) = (entry(&f.store, 5).await, entry(&f.store, 6).await);
        assert_eq!((now_five.hash, now_six.hash), (six.hash, five.hash), "the rows exchanged their numbers");

        let report = verify(&f.store).await;
        assert_eq!(report.entries, 10);
        assert_eq!(report.problems, vec![ChainProblem::Reordered { seq: 5, other_seq: 6 }]);
        assert_eq!(messages(&report), vec!["entries 5 and 6 were reordered"]);
        f.close().await;
    })
    .await;
}
