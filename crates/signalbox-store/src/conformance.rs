//! The behaviour every backend must show, as plain async functions. Each backend crate's tests
//! call [`run_all`] against a fresh store, so SQLite and PostgreSQL are held to one contract.
//!
//! The checks panic (like `assert!`) on the first deviation. Each one uses its own kinds, ids,
//! actors and counters, so they can run one after another on one store; they all append to the
//! one audit chain and only ever assume it is valid, never how long it is. The store must allow
//! at least two connections at once: some checks read through the [`Store`] while a [`Tx`] is
//! open.
//!
//! Contract points beyond the trait's own documentation, which both backends implement:
//! - a `limit` of 0 in [`ListQuery`] or [`AuditQuery`] means "no limit";
//! - `fields` filters of a [`ListQuery`] match top-level **string** fields only, and field names
//!   must look like identifiers (`[a-z_][a-z0-9_]*`), otherwise the query fails;
//! - [`AuditQuery::since`] and [`AuditQuery::until`] are inclusive, and any RFC 3339 form is
//!   accepted (it is normalised to the stored UTC text before comparing);
//! - a [`StoreError::Duplicate`], [`StoreError::VersionConflict`] or [`StoreError::NotFound`]
//!   from a [`Tx`] leaves the transaction usable;
//! - ids are unique across kinds.

use crate::{
    unaudited_commit, AuditQuery, HeadQuery, IdempotencyRecord, ListQuery, NewRecord, Record, RecordHead, RecordUpdate, Store, StoreError,
};
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::{json, Value};
use signalbox_domain::audit::{verify_chain, AuditDraft, AuditEntry, GENESIS_HASH};
use signalbox_domain::model::Kind;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Runs every conformance check against `store`, which must be empty and migrated.
pub async fn run_all(store: &dyn Store) {
    readiness(store).await;
    insert_and_get(store).await;
    duplicates(store).await;
    optimistic_concurrency(store).await;
    optimistic_transactions(store).await;
    list_pagination_and_filters(store).await;
    time_filters(store).await;
    created_after_filter(store).await;
    heads_and_get_many(store).await;
    heads_by_id_field_and_many(store).await;
    unaudited_commit_is_refused(store).await;
    dropped_tx_writes_nothing(store).await;
    relaxed_durability_commits_atomically(store).await;
    counters(store).await;
    audit_chain(store).await;
    audit_json_round_trip(store).await;
    idempotency(store).await;
    concurrent_idempotency(store).await;
    concurrent_commits(store).await;
    audit_page_filters(store).await;
    whole_chain_verifies(store).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn new_record(kind: Kind, id: &str, key: Option<&str>, body: Value) -> NewRecord {
    NewRecord { kind, id: id.to_string(), key: key.map(str::to_string), parent: None, state: None, body, at: Utc::now() }
}

fn draft(actor: &str, action: &str, subject_kind: &str, subject_id: &str) -> AuditDraft {
    AuditDraft {
        actor: actor.to_string(),
        action: action.to_string(),
        subject_kind: subject_kind.to_string(),
        subject_id: subject_id.to_string(),
        before: None,
        after: Some(json!({ "id": subject_id })),
        reason: None,
        request_id: Some(format!("req-{subject_id}")),
    }
}

fn draft_for(record: &Record) -> AuditDraft {
    draft("conformance", &format!("{}.create", record.kind), record.kind.as_str(), &record.id)
}

/// Inserts one record and commits it with one audit entry.
async fn commit_insert(store: &dyn Store, record: NewRecord) -> (Record, Vec<AuditEntry>) {
    let mut tx = store.begin().await.expect("begin");
    let inserted = tx.insert(record).await.expect("insert");
    let entries = tx.commit(vec![draft_for(&inserted)], None).await.expect("commit");
    (inserted, entries)
}

async fn head_seq(store: &dyn Store) -> i64 {
    store.audit_head().await.expect("audit_head").map(|(seq, _)| seq).unwrap_or(0)
}

/// Every audit entry, read page by page.
async fn full_chain(store: &dyn Store) -> Vec<AuditEntry> {
    let mut out: Vec<AuditEntry> = Vec::new();
    loop {
        let query = AuditQuery { after_seq: out.last().map(|e| e.seq), limit: 100, ..AuditQuery::default() };
        let page = store.audit_page(&query).await.expect("audit_page");
        let done = page.len() < 100;
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// The whole chain verifies from the genesis against the recorded head, with no gaps.
async fn assert_chain_valid(store: &dyn Store) -> Vec<AuditEntry> {
    let entries = full_chain(store).await;
    let head = store.audit_head().await.expect("audit_head");
    let report = verify_chain(&entries, head.as_ref().map(|(s, h)| (*s, h.as_str())), true);
    assert!(report.is_valid(), "the audit chain does not verify: {:?}", report.problems);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "audit sequence numbers have a gap");
    }
    match (entries.last(), head) {
        (Some(last), Some((seq, hash))) => {
            assert_eq!((last.seq, last.hash.as_str()), (seq, hash.as_str()), "the head is not the last entry");
        }
        (None, None) => {}
        (last, head) => panic!("chain end {last:?} and head {head:?} disagree"),
    }
    entries
}

fn assert_entries_follow(entries: &[AuditEntry], prev_seq: i64, prev_hash: &str) {
    let mut seq = prev_seq;
    let mut hash = prev_hash.to_string();
    for e in entries {
        assert_eq!(e.seq, seq + 1, "entries are numbered consecutively");
        assert_eq!(e.prev_hash, hash, "entry {} links to its predecessor", e.seq);
        assert_eq!(e.compute_hash(), e.hash, "entry {} is sealed", e.seq);
        seq = e.seq;
        hash = e.hash.clone();
    }
}

fn assert_close(actual: DateTime<Utc>, expected: DateTime<Utc>) {
    let diff = (actual - expected).num_microseconds().unwrap_or(i64::MAX).abs();
    assert!(diff <= 1, "time {actual} is not {expected} to the microsecond");
}

/// Polls all futures concurrently on the current task (the trait crate has no runtime to spawn
/// on) and returns their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(std::mem::take(&mut outputs).into_iter().flatten().collect())
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Checks

/// The store is reachable, fully migrated, and reports sane pool numbers.
pub async fn readiness(store: &dyn Store) {
    let readiness = store.readiness().await;
    assert!(readiness.reachable, "{readiness:?}");
    assert!(readiness.expected_migration >= 1, "{readiness:?}");
    assert!(readiness.is_ready(), "{readiness:?}");
    assert!(matches!(store.backend(), "sqlite" | "postgres"), "backend {}", store.backend());
    let stats = store.pool_stats();
    assert!(stats.max >= 1 && stats.size <= stats.max && stats.idle <= stats.size, "{stats:?}");
}

/// Insert, then get by id and by key; uncommitted writes are visible to their own transaction
/// only. Uses kind `domain`.
pub async fn insert_and_get(store: &dyn Store) {
    let at = Utc::now();
    let body = json!({ "name": "conf-payments", "n": 1, "nested": { "a": [1, 2], "b": null } });
    let mut tx = store.begin().await.expect("begin");
    let rec = tx
        .insert(NewRecord {
            kind: Kind::Domain,
            id: "dom_conf_1".into(),
            key: Some("conf-payments".into()),
            parent: Some("org_1".into()),
            state: Some("active".into()),
            body: body.clone(),
            at,
        })
        .await
        .expect("insert");
    assert_eq!(rec.kind, Kind::Domain);
    assert_eq!(rec.id, "dom_conf_1");
    assert_eq!(rec.key.as_deref(), Some("conf-payments"));
    assert_eq!(rec.parent.as_deref(), Some("org_1"));
    assert_eq!(rec.state.as_deref(), Some("active"));
    assert_eq!(rec.version, 1, "new records start at version 1");
    assert_eq!(rec.body, body);
    assert!(rec.seq > 0);
    assert_close(rec.created_at, at);
    assert_eq!(rec.created_at, rec.updated_at);

    assert_eq!(tx.get(Kind::Domain, "dom_conf_1").await.expect("tx get"), Some(rec.clone()));
    assert_eq!(tx.get(Kind::Domain, "conf-payments").await.expect("tx get by key"), Some(rec.clone()));
    assert_eq!(store.get(Kind::Domain, "dom_conf_1").await.expect("get"), None, "uncommitted write is visible");
    tx.commit(vec![draft_for(&rec)], None).await.expect("commit");

    assert_eq!(store.get(Kind::Domain, "dom_conf_1").await.expect("get"), Some(rec.clone()));
    assert_eq!(store.get(Kind::Domain, "conf-payments").await.expect("get by key"), Some(rec.clone()));
    assert_eq!(store.get(Kind::Team, "dom_conf_1").await.expect("get other kind"), None);
    assert_eq!(store.get(Kind::Team, "conf-payments").await.expect("get other kind"), None);
    assert_eq!(store.get(Kind::Domain, "dom_conf_missing").await.expect("get missing"), None);

    let (keyless, _) = commit_insert(store, new_record(Kind::Domain, "dom_conf_2", None, json!({}))).await;
    assert!(keyless.seq > rec.seq, "seq grows with insertion order");
    assert_eq!(keyless.key, None);
    assert_eq!(store.get(Kind::Domain, "dom_conf_2").await.expect("get"), Some(keyless));
    assert_eq!(store.count(Kind::Domain).await.expect("count"), 2);
}

/// Duplicate keys and ids are refused with `Duplicate` and leave the transaction usable. Uses
/// kinds `team` and `service`.
pub async fn duplicates(store: &dyn Store) {
    let mut tx = store.begin().await.expect("begin");
    let first = tx.insert(new_record(Kind::Team, "team_conf_1", Some("conf-core"), json!({}))).await.expect("insert");
    let err = tx.insert(new_record(Kind::Team, "team_conf_2", Some("conf-core"), json!({}))).await.unwrap_err();
    assert_eq!(err, StoreError::Duplicate { kind: Kind::Team, key: "conf-core".into() });
    let err = tx.insert(new_record(Kind::Team, "team_conf_1", Some("conf-other"), json!({}))).await.unwrap_err();
    assert_eq!(err, StoreError::Duplicate { kind: Kind::Team, key: "team_conf_1".into() });
    // The transaction goes on: the same key in another kind, and any number of keyless records.
    let svc = tx.insert(new_record(Kind::Service, "svc_conf_1", Some("conf-core"), json!({}))).await.expect("same key, other kind");
    tx.insert(new_record(Kind::Team, "team_conf_3", None, json!({}))).await.expect("keyless");
    tx.insert(new_record(Kind::Team, "team_conf_4", None, json!({}))).await.expect("keyless");
    tx.commit(vec![draft_for(&first), draft_for(&svc)], None).await.expect("commit after duplicates");
    assert_eq!(store.count(Kind::Team).await.expect("count"), 3);
    assert_eq!(store.get(Kind::Team, "team_conf_2").await.expect("get"), None);

    // Against committed rows too, ids across kinds included.
    let mut tx = store.begin().await.expect("begin");
    let err = tx.insert(new_record(Kind::Team, "team_conf_5", Some("conf-core"), json!({}))).await.unwrap_err();
    assert_eq!(err, StoreError::Duplicate { kind: Kind::Team, key: "conf-core".into() });
    let err = tx.insert(new_record(Kind::Team, "svc_conf_1", Some("conf-fresh"), json!({}))).await.unwrap_err();
    assert_eq!(err, StoreError::Duplicate { kind: Kind::Team, key: "svc_conf_1".into() });
    // A rename onto a taken key.
    let keyless = tx.get(Kind::Team, "team_conf_3").await.expect("get").expect("team_conf_3");
    let rename =
        RecordUpdate { key: Some("conf-core".into()), parent: None, state: None, body: json!({ "renamed": true }), at: Utc::now() };
    let err = tx.update(Kind::Team, "team_conf_3", keyless.version, rename).await.unwrap_err();
    assert_eq!(err, StoreError::Duplicate { kind: Kind::Team, key: "conf-core".into() });
    assert_eq!(tx.get(Kind::Team, "team_conf_3").await.expect("get after refused rename"), Some(keyless.clone()));
    let other = tx.insert(new_record(Kind::Team, "team_conf_6", Some("conf-six"), json!({}))).await.expect("insert after refusals");
    tx.commit(vec![draft_for(&other)], None).await.expect("commit after refusals");
    assert_eq!(store.get(Kind::Team, "team_conf_3").await.expect("get"), Some(keyless));
    assert_eq!(store.get(Kind::Team, "team_conf_5").await.expect("get"), None);
    assert_eq!(store.count(Kind::Team).await.expect("count"), 4);
}

/// Updates and deletes are guarded by the version. Uses kind `environment`.
pub async fn optimistic_concurrency(store: &dyn Store) {
    let (original, _) =
        commit_insert(store, new_record(Kind::Environment, "env_conf_1", Some("conf-staging"), json!({ "name": "conf-staging" }))).await;

    let at = Utc::now();
    let mut tx = store.begin().await.expect("begin");
    let updated = tx
        .update(
            Kind::Environment,
            "env_conf_1",
            1,
            RecordUpdate {
                key: Some("conf-stage".into()),
                parent: Some("dom_conf_1".into()),
                state: Some("frozen".into()),
                body: json!({ "name": "conf-stage", "v": 2 }),
                at,
            },
        )
        .await
        .expect("update with the right version");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.key.as_deref(), Some("conf-stage"));
    assert_eq!(updated.parent.as_deref(), Some("dom_conf_1"));
    assert_eq!(updated.state.as_deref(), Some("frozen"));
    assert_eq!(updated.body, json!({ "name": "conf-stage", "v": 2 }));
    assert_eq!(updated.seq, original.seq, "an update keeps the record's place");
    assert_eq!(updated.created_at, original.created_at);
    assert_close(updated.updated_at, at);
    tx.commit(vec![draft_for(&updated)], None).await.expect("commit");
    assert_eq!(store.get(Kind::Environment, "conf-stage").await.expect("get"), Some(updated.clone()));
    assert_eq!(store.get(Kind::Environment, "conf-staging").await.expect("get old key"), None);

    // Stale versions and missing records; the transaction goes on and commits, writing nothing
    // for the refused operations.
    let mut tx = store.begin().await.expect("begin");
    let stale = RecordUpdate { key: Some("conf-stale".into()), parent: None, state: None, body: json!({ "stale": true }), at: Utc::now() };
    let err = tx.update(Kind::Environment, "env_conf_1", 1, stale.clone()).await.unwrap_err();
    assert_eq!(err, StoreError::VersionConflict { kind: Kind::Environment, id: "env_conf_1".into(), expected: 1 });
    let err = tx.update(Kind::Environment, "env_conf_missing", 1, stale.clone()).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound { kind: Kind::Environment, id: "env_conf_missing".into() });
    let err = tx.update(Kind::Team, "env_conf_1", 2, stale).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound { kind: Kind::Team, id: "env_conf_1".into() }, "kind is part of the identity");
    let err = tx.delete(Kind::Environment, "env_conf_1", 1).await.unwrap_err();
    assert_eq!(err, StoreError::VersionConflict { kind: Kind::Environment, id: "env_conf_1".into(), expected: 1 });
    let err = tx.delete(Kind::Environment, "env_conf_missing", 1).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound { kind: Kind::Environment, id: "env_conf_missing".into() });
    assert_eq!(tx.get(Kind::Environment, "env_conf_1").await.expect("get"), Some(updated.clone()));
    tx.commit(vec![draft("conformance", "environment.noop", "environment", "env_conf_1")], None).await.expect("commit after conflicts");
    assert_eq!(store.get(Kind::Environment, "env_conf_1").await.expect("get"), Some(updated.clone()));
    assert_eq!(store.get(Kind::Environment, "conf-stale").await.expect("get"), None);

    // Delete with the right version.
    let mut tx = store.begin().await.expect("begin");
    tx.delete(Kind::Environment, "env_conf_1", 2).await.expect("delete");
    assert_eq!(tx.get(Kind::Environment, "env_conf_1").await.expect("get"), None);
    assert_eq!(store.get(Kind::Environment, "env_conf_1").await.expect("get"), Some(updated), "uncommitted delete");
    tx.commit(vec![draft("conformance", "environment.delete", "environment", "env_conf_1")], None).await.expect("commit delete");
    assert_eq!(store.get(Kind::Environment, "env_conf_1").await.expect("get"), None);
    assert_eq!(store.count(Kind::Environment).await.expect("count"), 0);
}

/// Writes `note` into `id` (kind `policy`) at `version` in an ordinary transaction.
async fn commit_policy_note(store: &dyn Store, id: &str, version: i64, note: &str) -> Record {
    let mut tx = store.begin().await.expect("begin");
    let update =
        RecordUpdate { key: Some(id.replace("pol_", "conf-")), parent: None, state: None, body: json!({ "note": note }), at: Utc::now() };
    let updated = tx.update(Kind::Policy, id, version, update).await.expect("update");
    tx.commit(vec![draft("conformance", "policy.update", "policy", id)], None).await.expect("commit");
    updated
}

/// The update of a record an optimistic transaction read, after that record changed: refused as a
/// stale read naming it, at the write or at the commit (backends check at either), and nothing
/// written.
async fn assert_stale_update(mut tx: Box<dyn crate::Tx>, id: &str) {
    let update = RecordUpdate {
        key: Some(id.replace("pol_", "conf-")),
        parent: None,
        state: None,
        body: json!({ "note": "stale" }),
        at: Utc::now(),
    };
    let refused = match tx.update(Kind::Policy, id, 1, update).await {
        Err(e) => e,
        Ok(_) => tx.commit(vec![draft("conformance", "policy.update", "policy", id)], None).await.expect_err("a stale read committed"),
    };
    assert!(matches!(&refused, StoreError::StaleRead { kind: Kind::Policy, id: stale } if stale == id), "{refused:?}");
}

/// [`Store::begin_optimistic`], what every backend guarantees: what it commits is what an
/// ordinary transaction would have; an update of a record it read that changed, or was deleted
/// and created again under its id, before the update took effect is a stale read and nothing is
/// written; the transaction reads its own writes; a dropped one writes nothing. (Whether a
/// record only read is re-checked depends on what the backend's ordinary transactions
/// guarantee: SQLite's tests cover its checks.) Uses kind `policy`.
pub async fn optimistic_transactions(store: &dyn Store) {
    for id in ["pol_conf_a", "pol_conf_b", "pol_conf_c"] {
        commit_insert(store, new_record(Kind::Policy, id, Some(&id.replace("pol_", "conf-")), json!({ "note": "new" }))).await;
    }

    // Read by key, updated at the version read, committed: the record the update answered is
    // the one stored, and the chain holds the entry.
    let head = head_seq(store).await;
    let mut tx = store.begin_optimistic().await.expect("begin_optimistic");
    let read = tx.get(Kind::Policy, "conf-conf_a").await.expect("get").expect("found by key");
    assert_eq!(tx.get(Kind::Policy, "pol_conf_missing").await.expect("get"), None);
    let at = Utc::now();
    let update =
        RecordUpdate { key: read.key.clone(), parent: Some("dom_x".into()), state: Some("on".into()), body: json!({ "note": "one" }), at };
    let updated = tx.update(Kind::Policy, &read.id, read.version, update.clone()).await.expect("update");
    assert_eq!((updated.version, updated.seq, updated.created_at), (2, read.seq, read.created_at));
    assert_close(updated.updated_at, at);
    // Twice in one transaction: the second update expects the first one's version.
    let again = RecordUpdate { body: json!({ "note": "two" }), ..update };
    let updated = tx.update(Kind::Policy, &read.id, 2, again).await.expect("second update");
    assert_eq!(updated.version, 3);
    let entries = tx.commit(vec![draft("conformance", "policy.update", "policy", "pol_conf_a")], None).await.expect("commit");
    assert_eq!(entries[0].seq, head + 1);
    assert_eq!(store.get(Kind::Policy, "pol_conf_a").await.expect("get"), Some(updated));

    // A record changed after it was read.
    let mut tx = store.begin_optimistic().await.expect("begin_optimistic");
    tx.get(Kind::Policy, "pol_conf_b").await.expect("get").expect("found");
    commit_policy_note(store, "pol_conf_b", 1, "changed").await;
    assert_stale_update(tx, "pol_conf_b").await;
    assert_eq!(
        store.get(Kind::Policy, "pol_conf_b").await.expect("get").map(|r| (r.version, r.body)),
        Some((2, json!({ "note": "changed" })))
    );

    // A record deleted and created again under the same id, at version 1 again.
    let mut tx = store.begin_optimistic().await.expect("begin_optimistic");
    tx.get(Kind::Policy, "pol_conf_c").await.expect("get").expect("found");
    let mut del = store.begin().await.expect("begin");
    del.delete(Kind::Policy, "pol_conf_c", 1).await.expect("delete");
    del.commit(vec![draft("conformance", "policy.delete", "policy", "pol_conf_c")], None).await.expect("commit");
    commit_insert(store, new_record(Kind::Policy, "pol_conf_c", Some("conf-conf_c"), json!({ "note": "reborn" }))).await;
    assert_stale_update(tx, "pol_conf_c").await;
    assert_eq!(store.get(Kind::Policy, "pol_conf_c").await.expect("get").map(|r| r.body), Some(json!({ "note": "reborn" })));

    // Reads after a write see it; an insert after an update commits both.
    let mut tx = store.begin_optimistic().await.expect("begin_optimistic");
    let read = tx.get(Kind::Policy, "pol_conf_c").await.expect("get").expect("found");
    let update =
        RecordUpdate { key: read.key.clone(), parent: None, state: Some("seen".into()), body: json!({ "note": "own" }), at: Utc::now() };
    let updated = tx.update(Kind::Policy, "pol_conf_c", read.version, update).await.expect("update");
    assert_eq!(tx.get(Kind::Policy, "pol_conf_c").await.expect("get own write"), Some(updated.clone()));
    let listed = tx.heads(&HeadQuery { states: Some(vec!["seen".into()]), ..HeadQuery::all(Kind::Policy) }).await.expect("heads");
    assert_eq!(listed.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["pol_conf_c"]);
    let inserted = tx.insert(new_record(Kind::Policy, "pol_conf_d", None, json!({}))).await.expect("insert");
    tx.commit(vec![draft("conformance", "policy.update", "policy", "pol_conf_c"), draft_for(&inserted)], None).await.expect("commit");
    assert_eq!(store.get(Kind::Policy, "pol_conf_c").await.expect("get"), Some(updated));
    assert!(store.get(Kind::Policy, "pol_conf_d").await.expect("get").is_some());

    // Dropped after writing: nothing written, before or after the transaction opened.
    let head = head_seq(store).await;
    for open in [false, true] {
        let mut tx = store.begin_optimistic().await.expect("begin_optimistic");
        let read = tx.get(Kind::Policy, "pol_conf_d").await.expect("get").expect("found");
        let update = RecordUpdate { key: None, parent: None, state: None, body: json!({ "note": "dropped" }), at: Utc::now() };
        tx.update(Kind::Policy, "pol_conf_d", read.version, update).await.expect("update");
        if open {
            tx.insert(new_record(Kind::Policy, "pol_conf_dropped", None, json!({}))).await.expect("insert");
        }
        drop(tx);
        assert_eq!(store.get(Kind::Policy, "pol_conf_d").await.expect("get").map(|r| r.version), Some(1));
        assert_eq!(store.get(Kind::Policy, "pol_conf_dropped").await.expect("get"), None);
    }
    assert_eq!(head_seq(store).await, head);
    assert_chain_valid(store).await;
}

fn change_parent(i: usize) -> &'static str {
    match i % 3 {
        0 => "svc_conf_a",
        _ => "svc_conf_b",
    }
}

fn change_state(i: usize) -> &'static str {
    match i % 2 {
        0 => "open",
        _ => "merged",
    }
}

async fn all_pages(store: &dyn Store, mut query: ListQuery) -> Vec<Vec<Record>> {
    let mut pages = Vec::new();
    for _ in 0..1000 {
        let page = store.list(&query).await.expect("list");
        assert!(page.items.len() <= query.limit as usize || query.limit == 0, "page larger than the limit");
        let next = page.next_after_seq;
        if let Some(next) = next {
            assert_eq!(page.items.len(), query.limit as usize, "only a full page has a cursor");
            assert_eq!(Some(next), page.items.last().map(|r| r.seq), "the cursor is the last item's seq");
        }
        pages.push(page.items);
        match next {
            Some(next) => query.after_seq = Some(next),
            None => return pages,
        }
    }
    panic!("pagination does not end");
}

fn ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

fn change_ids(filter: impl Fn(usize) -> bool) -> Vec<String> {
    (0..21).filter(|i| filter(*i)).map(|i| format!("chg_conf_{i:02}")).collect()
}

/// Cursor pagination is complete and stable; parent, state and body-field filters work. Uses
/// kind `change`.
pub async fn list_pagination_and_filters(store: &dyn Store) {
    let mut tx = store.begin().await.expect("begin");
    for i in 0..21 {
        let mut record = new_record(
            Kind::Change,
            &format!("chg_conf_{i:02}"),
            Some(&format!("conf-chg-{i}")),
            json!({
                "title": format!("change {i}"),
                "repo": if i % 4 == 0 { "alpha" } else { "beta" },
                "author": if i % 5 == 0 { "ann" } else { "bob" },
                "n": i,
                "meta": { "repo": "alpha" },
            }),
        );
        record.parent = Some(change_parent(i).into());
        record.state = Some(change_state(i).into());
        tx.insert(record).await.expect("insert");
    }
    // A transaction lists its own writes.
    let in_tx = tx.list(&ListQuery::all(Kind::Change).with_parent("svc_conf_a")).await.expect("tx list");
    assert_eq!(ids(&in_tx.items), change_ids(|i| i % 3 == 0));
    tx.commit(vec![draft("conformance", "change.import", "change", "chg_conf_00")], None).await.expect("commit");

    let everything = change_ids(|_| true);
    for limit in [1u32, 5, 7, 20, 21, 22, 0] {
        let mut query = ListQuery::all(Kind::Change);
        query.limit = limit;
        let pages = all_pages(store, query).await;
        let flat: Vec<Record> = pages.iter().flatten().cloned().collect();
        assert_eq!(ids(&flat), everything, "pages of {limit} are complete, in order, without duplicates");
        assert!(flat.windows(2).all(|w| w[0].seq < w[1].seq), "ascending seq");
        let expected_pages = if limit == 0 { 1 } else { 21usize.div_ceil(limit as usize) };
        assert_eq!(pages.len(), expected_pages, "pages of {limit}");
    }
    let mut past_the_end = ListQuery::all(Kind::Change);
    past_the_end.after_seq = store.list(&ListQuery::all(Kind::Change)).await.expect("list").items.last().map(|r| r.seq);
    let page = store.list(&past_the_end).await.expect("list");
    assert!(page.items.is_empty() && page.next_after_seq.is_none());

    let list = |q: ListQuery| async move { ids(&store.list(&q).await.expect("list").items) };
    assert_eq!(list(ListQuery::all(Kind::Change).with_parent("svc_conf_a")).await, change_ids(|i| i % 3 == 0));
    let mut open = ListQuery::all(Kind::Change);
    open.state = Some("open".into());
    assert_eq!(list(open.clone()).await, change_ids(|i| i % 2 == 0));
    assert_eq!(list(open.clone().with_parent("svc_conf_b")).await, change_ids(|i| i % 2 == 0 && i % 3 != 0));
    assert_eq!(list(ListQuery::all(Kind::Change).with_field("repo", "alpha")).await, change_ids(|i| i % 4 == 0));
    assert_eq!(
        list(ListQuery::all(Kind::Change).with_field("repo", "alpha").with_field("author", "ann")).await,
        change_ids(|i| i % 20 == 0)
    );
    assert_eq!(list(open.with_field("author", "ann")).await, change_ids(|i| i % 10 == 0));
    assert!(list(ListQuery::all(Kind::Change).with_field("n", "3")).await.is_empty(), "only string fields match");
    assert!(list(ListQuery::all(Kind::Change).with_field("missing", "x")).await.is_empty());
    assert!(list(ListQuery::all(Kind::Change).with_field("meta", "alpha")).await.is_empty(), "top-level fields only");
    assert!(list(ListQuery::all(Kind::Change).with_parent("svc_conf_none")).await.is_empty());
    assert!(list(ListQuery::all(Kind::Team).with_field("repo", "alpha")).await.is_empty(), "kind filters");
    for bad in ["bad-name", "a.b", "x') OR 1=1 --", "", "Repo"] {
        let result = store.list(&ListQuery::all(Kind::Change).with_field(bad, "alpha")).await;
        assert!(result.is_err(), "field name {bad:?} must be refused");
    }

    // Filtered pagination.
    let mut query = ListQuery::all(Kind::Change).with_parent("svc_conf_b");
    query.limit = 4;
    let flat: Vec<Record> = all_pages(store, query).await.into_iter().flatten().collect();
    assert_eq!(ids(&flat), change_ids(|i| i % 3 != 0));
}

fn evidence_id(i: usize) -> String {
    format!("ev_conf_{i:02}")
}

fn head_ids(heads: &[RecordHead]) -> Vec<String> {
    heads.iter().map(|h| h.id.clone()).collect()
}

/// `times_at_most` compares instants, not text: fractions of a second and offsets count, and
/// records whose field is not an RFC 3339 time never match. Uses kind `job`.
pub async fn time_filters(store: &dyn Store) {
    let bodies = [
        ("job_conf_t1", json!({"due": "2026-03-01T10:00:00Z"})),
        ("job_conf_t2", json!({"due": "2026-03-01T10:00:00.250Z"})),
        ("job_conf_t3", json!({"due": "2026-03-01T10:00:00.750000Z"})),
        // 09:30 UTC written with an offset: due before 10:00 UTC though it sorts after as text.
        ("job_conf_t4", json!({"due": "2026-03-01T10:30:00+01:00"})),
        ("job_conf_t5", json!({"due": "2026-03-01T11:00:00Z"})),
        ("job_conf_t6", json!({"due": "soon"})),
        ("job_conf_t7", json!({"due": 1_700_000_000})),
        ("job_conf_t8", json!({"other": "2026-03-01T09:00:00Z"})),
    ];
    let mut tx = store.begin().await.expect("begin");
    for (id, body) in &bodies {
        tx.insert(new_record(Kind::Job, id, None, body.clone())).await.expect("insert");
    }
    tx.commit(vec![draft("conformance", "job.plan", "job", "job_conf_t1")], None).await.expect("commit");
    let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
    let due = |t: &'static str| async move {
        let page = store.list(&ListQuery::all(Kind::Job).with_time_at_most("due", at(t))).await.expect("list");
        page.items.into_iter().map(|r| r.id).filter(|id| id.starts_with("job_conf_t")).collect::<Vec<_>>()
    };
    assert_eq!(due("2026-03-01T09:00:00Z").await, Vec::<String>::new());
    assert_eq!(due("2026-03-01T09:30:00Z").await, vec!["job_conf_t4"]);
    assert_eq!(due("2026-03-01T10:00:00Z").await, vec!["job_conf_t1", "job_conf_t4"]);
    assert_eq!(due("2026-03-01T10:00:00.500Z").await, vec!["job_conf_t1", "job_conf_t2", "job_conf_t4"]);
    assert_eq!(due("2026-03-01T12:00:00+01:00").await, vec!["job_conf_t1", "job_conf_t2", "job_conf_t3", "job_conf_t4", "job_conf_t5"]);
    let bad = store.list(&ListQuery::all(Kind::Job).with_time_at_most("due'; --", at("2026-03-01T10:00:00Z"))).await;
    assert!(matches!(bad, Err(StoreError::Internal(_))), "{bad:?}");
}

/// `created_after` keeps records created strictly after an instant, compared as instants to the
/// microsecond, together with the other filters. Uses kind `metric_push` under one parent.
pub async fn created_after_filter(store: &dyn Store) {
    let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
    let stamps = ["2026-04-01T10:00:00Z", "2026-04-01T10:00:00.000001Z", "2026-04-01T10:00:00.5Z", "2026-04-01T11:00:00Z"];
    let mut tx = store.begin().await.expect("begin");
    for (i, stamp) in stamps.iter().enumerate() {
        let mut record = new_record(Kind::MetricPush, &format!("push_conf_c{i}"), None, json!({ "n": i }));
        record.parent = Some("dep_conf_created".into());
        record.at = at(stamp);
        tx.insert(record).await.expect("insert");
    }
    let mut other = new_record(Kind::MetricPush, "push_conf_other", None, json!({}));
    other.parent = Some("dep_conf_elsewhere".into());
    other.at = at("2026-04-01T12:00:00Z");
    tx.insert(other).await.expect("insert");
    tx.commit(vec![draft("conformance", "deployment.metrics.push", "metric_push", "push_conf_c0")], None).await.expect("commit");
    let after = |t: &'static str| async move {
        let q = ListQuery::all(Kind::MetricPush).with_parent("dep_conf_created").with_created_after(at(t));
        store.list(&q).await.expect("list").items.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(after("2026-04-01T09:59:59Z").await, vec!["push_conf_c0", "push_conf_c1", "push_conf_c2", "push_conf_c3"]);
    assert_eq!(after("2026-04-01T10:00:00Z").await, vec!["push_conf_c1", "push_conf_c2", "push_conf_c3"], "strictly after");
    assert_eq!(after("2026-04-01T10:00:00.000001Z").await, vec!["push_conf_c2", "push_conf_c3"], "microseconds count");
    // 10:30 UTC written with an offset.
    assert_eq!(after("2026-04-01T11:30:00+01:00").await, vec!["push_conf_c3"]);
    assert_eq!(after("2026-04-01T11:00:00Z").await, Vec::<String>::new());
}

/// `heads` lists id, parent, state, version and seq without bodies, filtered by any of several
/// parents and states, in seq order; `get_many` fetches bodies by id only; a transaction sees its
/// own writes in both. Uses kinds `evidence` and `evidence_file`.
pub async fn heads_and_get_many(store: &dyn Store) {
    let parent = |i: usize| ["art_conf_a", "art_conf_b", "art_conf_c"][i % 3];
    let state = |i: usize| if i.is_multiple_of(2) { "junit" } else { "lcov" };
    let mut tx = store.begin().await.expect("begin");
    for i in 0..9 {
        let mut record = new_record(Kind::Evidence, &evidence_id(i), Some(&format!("conf-ev-{i}")), json!({ "n": i }));
        record.parent = Some(parent(i).into());
        record.state = Some(state(i).into());
        tx.insert(record).await.expect("insert");
    }
    tx.insert(new_record(Kind::Evidence, &evidence_id(9), None, json!({ "n": 9 }))).await.expect("insert without parent or state");
    let mut other_kind = new_record(Kind::EvidenceFile, "evf_conf_0", None, json!({}));
    other_kind.parent = Some("art_conf_a".into());
    other_kind.state = Some("junit".into());
    tx.insert(other_kind).await.expect("insert");
    // A transaction sees its own writes.
    let in_tx = tx.heads(&HeadQuery::all(Kind::Evidence).with_parents(["art_conf_a"])).await.expect("tx heads");
    assert_eq!(head_ids(&in_tx), [0, 3, 6].map(evidence_id));
    let in_tx = tx.get_many(Kind::Evidence, &[evidence_id(3), evidence_id(0)]).await.expect("tx get_many");
    assert_eq!(ids(&in_tx), [0, 3].map(evidence_id));
    tx.commit(vec![draft("conformance", "evidence.import", "evidence", &evidence_id(0))], None).await.expect("commit");

    // An update moves the version and the state; the head follows.
    let mut tx = store.begin().await.expect("begin");
    let update = RecordUpdate {
        key: None,
        parent: Some("art_conf_b".into()),
        state: Some("sarif".into()),
        body: json!({ "n": 1, "v": 2 }),
        at: Utc::now(),
    };
    tx.update(Kind::Evidence, &evidence_id(1), 1, update).await.expect("update");
    tx.commit(vec![draft("conformance", "evidence.update", "evidence", &evidence_id(1))], None).await.expect("commit");

    let all = store.heads(&HeadQuery::all(Kind::Evidence)).await.expect("heads");
    let listed = store.list(&ListQuery::all(Kind::Evidence)).await.expect("list").items;
    let expected: Vec<RecordHead> = listed.iter().map(RecordHead::from).collect();
    assert_eq!(all, expected, "heads agree with the records, in seq order");
    assert_eq!(head_ids(&all), (0..10).map(evidence_id).collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "ascending seq");
    let one = &all[1];
    assert_eq!((one.version, one.parent.as_deref(), one.state.as_deref()), (2, Some("art_conf_b"), Some("sarif")));
    assert_eq!((all[9].parent.as_deref(), all[9].state.as_deref(), all[9].version), (None, None, 1));

    let heads = |q: HeadQuery| async move { head_ids(&store.heads(&q).await.expect("heads")) };
    let expect = |f: &dyn Fn(usize) -> bool| (0..9).filter(|i| f(*i)).map(evidence_id).collect::<Vec<_>>();
    let is_b = |i: usize| i == 1 || parent(i) == "art_conf_b";
    let state_now = |i: usize| if i == 1 { "sarif" } else { state(i) };
    assert_eq!(heads(HeadQuery::all(Kind::Evidence).with_parents(["art_conf_b"])).await, expect(&is_b));
    assert_eq!(
        heads(HeadQuery::all(Kind::Evidence).with_parents(["art_conf_c", "art_conf_a", "art_conf_none"])).await,
        expect(&|i| !is_b(i))
    );
    assert_eq!(heads(HeadQuery::all(Kind::Evidence).with_states(["junit"])).await, expect(&|i| state_now(i) == "junit"));
    assert_eq!(heads(HeadQuery::all(Kind::Evidence).with_states(["sarif", "lcov"])).await, expect(&|i| state_now(i) != "junit"));
    assert_eq!(
        heads(HeadQuery::all(Kind::Evidence).with_parents(["art_conf_a", "art_conf_b"]).with_states(["junit"])).await,
        expect(&|i| parent(i) != "art_conf_c" && state_now(i) == "junit")
    );
    assert!(heads(HeadQuery::all(Kind::Evidence).with_parents(Vec::<String>::new())).await.is_empty(), "no parents match nothing");
    assert!(heads(HeadQuery::all(Kind::Evidence).with_states(Vec::<String>::new())).await.is_empty(), "no states match nothing");
    assert!(heads(HeadQuery::all(Kind::Team).with_parents(["art_conf_a"])).await.is_empty(), "kind filters");
    // Any number of parents is one query parameter, not one each.
    let many: Vec<String> = (0..40_000).map(|i| format!("art_conf_many_{i}")).chain(["art_conf_c".to_string()]).collect();
    assert_eq!(heads(HeadQuery::all(Kind::Evidence).with_parents(many)).await, expect(&|i| parent(i) == "art_conf_c" && i != 1));

    // get_many: ids only (not keys), this kind only, seq order, unknown ids left out.
    let asked = [evidence_id(7), "evf_conf_0".into(), "conf-ev-2".into(), evidence_id(1), "ev_conf_none".into(), evidence_id(7)];
    let got = store.get_many(Kind::Evidence, &asked).await.expect("get_many");
    assert_eq!(ids(&got), [1, 7].map(evidence_id));
    for r in &got {
        assert_eq!(Some(r), store.get(Kind::Evidence, &r.id).await.expect("get").as_ref(), "get_many returns what get returns");
    }
    assert!(store.get_many(Kind::Evidence, &[]).await.expect("get_many").is_empty());
    let many: Vec<String> = (0..40_000).map(|i| format!("ev_conf_many_{i}")).chain([evidence_id(4)]).collect();
    assert_eq!(ids(&store.get_many(Kind::Evidence, &many).await.expect("get_many")), [evidence_id(4)]);

    // A deleted record leaves both.
    let mut tx = store.begin().await.expect("begin");
    tx.delete(Kind::Evidence, &evidence_id(4), 1).await.expect("delete");
    tx.commit(vec![draft("conformance", "evidence.delete", "evidence", &evidence_id(4))], None).await.expect("commit");
    assert!(!head_ids(&store.heads(&HeadQuery::all(Kind::Evidence)).await.expect("heads")).contains(&evidence_id(4)));
    assert!(store.get_many(Kind::Evidence, &[evidence_id(4)]).await.expect("get_many").is_empty());
}

/// `heads` filters by ids (never keys) and by top-level string body fields (any of several
/// values, strings only); `heads_many` answers several queries in one call exactly as `heads`
/// answers each, in and outside a transaction. Uses kind `deployment`.
pub async fn heads_by_id_field_and_many(store: &dyn Store) {
    let mut tx = store.begin().await.expect("begin");
    let bodies = [
        json!({"service_id": "svc_a", "environment_id": "env_1"}),
        json!({"service_id": "svc_b", "environment_id": "env_1"}),
        json!({"service_id": "svc_a", "environment_id": "env_2"}),
        json!({"service_id": 7, "environment_id": "env_1"}),
        json!({"service_id": {"nested": "svc_a"}, "environment_id": "env_1"}),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let mut record = new_record(Kind::Deployment, &format!("dep_conf_{i}"), Some(&format!("D-conf-{i}")), body);
        record.parent = Some("rel_conf".into());
        record.state = Some(if i == 1 { "running" } else { "succeeded" }.into());
        tx.insert(record).await.expect("insert");
    }
    let in_tx = tx.heads_many(&[HeadQuery::all(Kind::Deployment).with_field_in("service_id", ["svc_a"])]).await.expect("tx heads_many");
    assert_eq!(in_tx.len(), 1);
    assert_eq!(head_ids(&in_tx[0]), ["dep_conf_0", "dep_conf_2"], "a transaction sees its own writes");
    tx.commit(vec![draft("conformance", "deployment.create", "deployment", "dep_conf_0")], None).await.expect("commit");

    let heads = |q: HeadQuery| async move { head_ids(&store.heads(&q).await.expect("heads")) };
    let q = HeadQuery::all(Kind::Deployment);
    assert_eq!(heads(q.clone().with_ids(["dep_conf_3", "D-conf-1", "dep_conf_1", "dep_conf_none"])).await, ["dep_conf_1", "dep_conf_3"]);
    assert!(heads(q.clone().with_ids(Vec::<String>::new())).await.is_empty(), "no ids match nothing");
    assert_eq!(heads(q.clone().with_field_in("service_id", ["svc_a", "svc_b"])).await, ["dep_conf_0", "dep_conf_1", "dep_conf_2"]);
    assert_eq!(
        heads(q.clone().with_field_in("service_id", ["svc_a", "7"]).with_field_in("environment_id", ["env_1"])).await,
        ["dep_conf_0"],
        "every field filter applies; numbers and objects never equal text"
    );
    assert!(heads(q.clone().with_field_in("service_id", Vec::<String>::new())).await.is_empty());
    assert_eq!(heads(q.clone().with_field_in("service_id", ["svc_a"]).with_states(["running"])).await, Vec::<String>::new());
    for bad in ["bad-name", "a.b", "x') OR 1=1 --", ""] {
        assert!(store.heads(&q.clone().with_field_in(bad, ["x"])).await.is_err(), "field name {bad:?} must be refused");
        assert!(store.heads_many(&[q.clone().with_field_in(bad, ["x"])]).await.is_err());
    }

    let queries = vec![
        q.clone().with_field_in("environment_id", ["env_1"]),
        HeadQuery::all(Kind::Team).with_ids(["dep_conf_0"]),
        q.clone().with_ids(["dep_conf_4", "dep_conf_2"]),
        q.clone().with_parents(["rel_conf"]).with_states(["running"]),
        q.clone(),
    ];
    let many = store.heads_many(&queries).await.expect("heads_many");
    assert_eq!(many.len(), queries.len());
    for (query, got) in queries.iter().zip(&many) {
        assert_eq!(got, &store.heads(query).await.expect("heads"), "heads_many answers {query:?} as heads does");
    }
    assert!(many[1].is_empty(), "kind filters");
    assert!(store.heads_many(&[]).await.expect("heads_many").is_empty());
    // What `matches_record` says agrees with the store.
    for r in store.list(&ListQuery::all(Kind::Deployment)).await.expect("list").items {
        for (query, got) in queries.iter().zip(&many) {
            assert_eq!(query.matches_record(&r), got.iter().any(|h| h.id == r.id), "{query:?} on {}", r.id);
        }
    }
}

/// A commit without audit entries is refused and writes nothing. Uses kind `template`.
pub async fn unaudited_commit_is_refused(store: &dyn Store) {
    let head = store.audit_head().await.expect("audit_head");
    let mut tx = store.begin().await.expect("begin");
    tx.insert(new_record(Kind::Template, "tpl_conf_unaudited", Some("conf-unaudited"), json!({}))).await.expect("insert");
    tx.next_number("conf-unaudited").await.expect("next_number");
    let idem = IdempotencyRecord {
        actor: "conf-unaudited".into(),
        key: "k".into(),
        request_hash: "h".into(),
        status: 201,
        body: "{}".into(),
        created_at: Utc::now(),
    };
    let err = tx.commit(vec![], Some(idem)).await.unwrap_err();
    assert_eq!(err, unaudited_commit());
    assert_eq!(store.get(Kind::Template, "tpl_conf_unaudited").await.expect("get"), None);
    assert_eq!(store.idempotency_get("conf-unaudited", "k").await.expect("idempotency_get"), None);
    assert_eq!(store.audit_head().await.expect("audit_head"), head);
    let mut tx = store.begin().await.expect("begin after refusal");
    assert_eq!(tx.next_number("conf-unaudited").await.expect("next_number"), 1, "the counter was rolled back");
}

/// Dropping a transaction rolls it back. Uses kind `template`.
pub async fn dropped_tx_writes_nothing(store: &dyn Store) {
    let head = store.audit_head().await.expect("audit_head");
    let mut tx = store.begin().await.expect("begin");
    tx.insert(new_record(Kind::Template, "tpl_conf_dropped", Some("conf-dropped"), json!({}))).await.expect("insert");
    assert_eq!(tx.next_number("conf-dropped").await.expect("next_number"), 1);
    drop(tx);
    assert_eq!(store.get(Kind::Template, "tpl_conf_dropped").await.expect("get"), None);
    assert_eq!(store.get(Kind::Template, "conf-dropped").await.expect("get"), None);
    assert_eq!(store.audit_head().await.expect("audit_head"), head);
    assert_eq!(store.count(Kind::Template).await.expect("count"), 0);

    let mut tx = store.begin().await.expect("begin after drop");
    assert_eq!(tx.get(Kind::Template, "tpl_conf_dropped").await.expect("get"), None);
    assert_eq!(tx.next_number("conf-dropped").await.expect("next_number"), 1, "the counter was rolled back");
    // The key is free again.
    let rec = tx.insert(new_record(Kind::Template, "tpl_conf_kept", Some("conf-dropped"), json!({}))).await.expect("insert");
    tx.commit(vec![draft_for(&rec)], None).await.expect("commit");
    assert_eq!(store.count(Kind::Template).await.expect("count"), 1);
}

/// A transaction with relaxed durability still commits everything with its audit entries, in
/// chain order, and one that is dropped still writes nothing.
pub async fn relaxed_durability_commits_atomically(store: &dyn Store) {
    let head = head_seq(store).await;
    let mut tx = store.begin().await.expect("begin");
    tx.relax_durability().await.expect("relax_durability");
    let rec = tx.insert(new_record(Kind::MetricPush, "chg_conf_relaxed", Some("conf-relaxed"), json!({"n": 1}))).await.expect("insert");
    let entries = tx.commit(vec![draft_for(&rec)], None).await.expect("commit");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, head + 1, "appended to the chain in order");
    assert_eq!(store.get(Kind::MetricPush, "conf-relaxed").await.expect("get").map(|r| r.body), Some(json!({"n": 1})));

    let mut tx = store.begin().await.expect("begin");
    tx.relax_durability().await.expect("relax_durability");
    tx.insert(new_record(Kind::MetricPush, "chg_conf_relaxed_dropped", None, json!({}))).await.expect("insert");
    drop(tx);
    assert_eq!(store.get(Kind::MetricPush, "chg_conf_relaxed_dropped").await.expect("get"), None);
    assert_eq!(head_seq(store).await, head + 1);
    assert_chain_valid(store).await;
}

/// Counters count 1, 2, 3… per name, across transactions.
pub async fn counters(store: &dyn Store) {
    let mut tx = store.begin().await.expect("begin");
    for expected in 1..=3 {
        assert_eq!(tx.next_number("conf-release").await.expect("next_number"), expected);
    }
    assert_eq!(tx.next_number("conf-other").await.expect("next_number"), 1);
    tx.commit(vec![draft("conformance", "counter.bump", "counter", "conf-release")], None).await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(tx.next_number("conf-release").await.expect("next_number"), 4);
    assert_eq!(tx.next_number("conf-other").await.expect("next_number"), 2);
    tx.commit(vec![draft("conformance", "counter.bump", "counter", "conf-release")], None).await.expect("commit");
}

/// Commits seal consecutive, linked entries; the head follows; the page reads them back
/// byte-identical. Uses kind `release`.
pub async fn audit_chain(store: &dyn Store) {
    let start = store.audit_head().await.expect("audit_head");
    let (mut seq, mut hash) = start.clone().unwrap_or((0, GENESIS_HASH.to_string()));
    let mut sealed = Vec::new();
    for (n, drafts) in [1usize, 3, 2].into_iter().enumerate() {
        let mut tx = store.begin().await.expect("begin");
        let rec = tx
            .insert(new_record(Kind::Release, &format!("rel_conf_chain_{n}"), Some(&format!("conf-R-{n}")), json!({ "n": n })))
            .await
            .expect("insert");
        let mut batch: Vec<AuditDraft> = (0..drafts)
            .map(|d| {
                let mut draft = draft_for(&rec);
                draft.action = format!("release.step{d}");
                draft.reason = (d % 2 == 1).then(|| format!("reason {d}"));
                draft
            })
            .collect();
        batch[0].before = Some(json!({ "state": "draft" }));
        let before_commit = Utc::now();
        let entries = tx.commit(batch.clone(), None).await.expect("commit");
        assert_eq!(entries.len(), drafts);
        assert_entries_follow(&entries, seq, &hash);
        for (entry, draft) in entries.iter().zip(&batch) {
            assert_eq!(entry.actor, draft.actor);
            assert_eq!(entry.action, draft.action);
            assert_eq!(entry.subject_kind, draft.subject_kind);
            assert_eq!(entry.subject_id, draft.subject_id);
            assert_eq!(entry.before, draft.before);
            assert_eq!(entry.after, draft.after);
            assert_eq!(entry.reason, draft.reason);
            assert_eq!(entry.request_id, draft.request_id);
            let at = DateTime::parse_from_rfc3339(&entry.at).expect("at is RFC 3339").with_timezone(&Utc);
            assert_eq!(entry.at, at.to_rfc3339_opts(SecondsFormat::Micros, true), "at is UTC with microseconds");
            assert!(at >= before_commit.trunc_subsecs(6), "at is the commit time");
        }
        let last = entries.last().expect("entries");
        seq = last.seq;
        hash = last.hash.clone();
        assert_eq!(store.audit_head().await.expect("audit_head"), Some((seq, hash.clone())));
        sealed.extend(entries);
    }
    let query = AuditQuery { after_seq: start.map(|(s, _)| s), ..AuditQuery::default() };
    let read = store.audit_page(&query).await.expect("audit_page");
    assert_eq!(read, sealed, "entries read back exactly as sealed");
    assert_chain_valid(store).await;
}

/// Audit `before`/`after` survive storage exactly, so hashes recompute. Uses kind `release`.
pub async fn audit_json_round_trip(store: &dyn Store) {
    let start = head_seq(store).await;
    let awkward = json!({
        "nested": { "deeper": { "list": [1, 2, { "x": null, "y": [[], {}] }], "empty": {} } },
        "unicode": "héllo wörld — 日本語 — 🚀 — e\u{301} — \u{2028} — ключ",
        "escapes": "quote\" backslash\\ slash/ newline\n tab\t nul-ish\u{1} del\u{7f}",
        "ints": [0, -1, i64::MAX, i64::MIN, u64::MAX],
        "floats": [0.1, -2.5, 1e300, 1.5e-10, 3.0, 123456.789],
        "bools": [true, false],
        "null": null,
        "zz": 1, "aa": 2, "Ab": 3, "ключ": "значение", "🚀": "rocket",
    });
    let drafts = vec![
        AuditDraft {
            actor: "conf-json-ünïcødé".into(),
            action: "release.update".into(),
            subject_kind: "release".into(),
            subject_id: "rel_conf_json".into(),
            before: Some(awkward.clone()),
            after: Some(json!([awkward.clone(), "tail", 42])),
            reason: Some("why? it's — «because» 🚦 '); SELECT 1; -- \\' E'x'".into()),
            request_id: Some("req-json".into()),
        },
        AuditDraft {
            actor: "conf-json".into(),
            action: "release.create".into(),
            subject_kind: "release".into(),
            subject_id: "rel_conf_json".into(),
            before: None,
            after: Some(json!("just a string")),
            reason: None,
            request_id: None,
        },
        AuditDraft {
            actor: "conf-json".into(),
            action: "release.delete".into(),
            subject_kind: "release".into(),
            subject_id: "rel_conf_json".into(),
            before: Some(Value::Null),
            after: None,
            reason: Some(String::new()),
            request_id: None,
        },
    ];
    let mut tx = store.begin().await.expect("begin");
    tx.insert(new_record(Kind::Release, "rel_conf_json", None, awkward.clone())).await.expect("insert");
    let sealed = tx.commit(drafts, None).await.expect("commit");
    let read = store.audit_page(&AuditQuery { after_seq: Some(start), limit: 10, ..AuditQuery::default() }).await.expect("audit_page");
    assert_eq!(read, sealed);
    for (r, s) in read.iter().zip(&sealed) {
        assert_eq!(r.canonical_body(), s.canonical_body(), "entry {} re-encodes identically", r.seq);
        assert_eq!(r.compute_hash(), r.hash, "entry {} verifies after the round trip", r.seq);
    }
    let stored = store.get(Kind::Release, "rel_conf_json").await.expect("get").expect("record");
    assert_eq!(stored.body, awkward, "record bodies round-trip too");
    assert_chain_valid(store).await;
}

fn idempotency_record(actor: &str, key: &str, body: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        actor: actor.into(),
        key: key.into(),
        request_hash: format!("sha256:{body}"),
        status: 201,
        body: body.into(),
        created_at: Utc::now().trunc_subsecs(6),
    }
}

/// Idempotency records are stored with their commit, round-trip, and a second use of a key
/// rolls its whole transaction back. Uses kind `user`.
pub async fn idempotency(store: &dyn Store) {
    let first = idempotency_record("conf-idem-alice", "key-1", r#"{"id":"usr_conf_1","name":"Ünïcødé"}"#);
    let mut tx = store.begin().await.expect("begin");
    let rec = tx.insert(new_record(Kind::User, "usr_conf_1", Some("conf-alice"), json!({}))).await.expect("insert");
    tx.commit(vec![draft_for(&rec)], Some(first.clone())).await.expect("commit");
    assert_eq!(store.idempotency_get("conf-idem-alice", "key-1").await.expect("idempotency_get"), Some(first.clone()));
    assert_eq!(store.idempotency_get("conf-idem-bob", "key-1").await.expect("idempotency_get"), None);
    assert_eq!(store.idempotency_get("conf-idem-alice", "key-2").await.expect("idempotency_get"), None);

    let head = store.audit_head().await.expect("audit_head");
    let mut tx = store.begin().await.expect("begin");
    let rec = tx.insert(new_record(Kind::User, "usr_conf_2", Some("conf-mallory"), json!({}))).await.expect("insert");
    let replay = idempotency_record("conf-idem-alice", "key-1", r#"{"id":"usr_conf_2"}"#);
    let err = tx.commit(vec![draft_for(&rec)], Some(replay)).await.unwrap_err();
    assert_eq!(err, StoreError::IdempotencyKeyTaken { key: "key-1".into() });
    assert_eq!(store.get(Kind::User, "usr_conf_2").await.expect("get"), None, "the refused commit rolled back");
    assert_eq!(store.audit_head().await.expect("audit_head"), head, "no audit entry for the refused commit");
    assert_eq!(store.idempotency_get("conf-idem-alice", "key-1").await.expect("idempotency_get"), Some(first));

    // The same key for another actor is a different key.
    let bob = idempotency_record("conf-idem-bob", "key-1", "{}");
    let mut tx = store.begin().await.expect("begin");
    let rec = tx.insert(new_record(Kind::User, "usr_conf_3", Some("conf-bob"), json!({}))).await.expect("insert");
    tx.commit(vec![draft_for(&rec)], Some(bob.clone())).await.expect("commit");
    assert_eq!(store.idempotency_get("conf-idem-bob", "key-1").await.expect("idempotency_get"), Some(bob));
    assert_eq!(store.count(Kind::User).await.expect("count"), 2);
}

/// Two requests racing with one key: exactly one commits. Uses kind `user`.
pub async fn concurrent_idempotency(store: &dyn Store) {
    let attempts = (0..2).map(|n| async move {
        let mut tx = store.begin().await.expect("begin");
        let rec = tx
            .insert(new_record(Kind::User, &format!("usr_conf_race_{n}"), Some(&format!("conf-race-{n}")), json!({})))
            .await
            .expect("insert");
        tx.commit(vec![draft_for(&rec)], Some(idempotency_record("conf-idem-race", "key-race", &n.to_string()))).await
    });
    let results = join_all(attempts.collect()).await;
    let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(n, _)| n).collect();
    assert_eq!(winners.len(), 1, "exactly one commit wins: {results:?}");
    for result in &results {
        if let Err(e) = result {
            assert_eq!(e, &StoreError::IdempotencyKeyTaken { key: "key-race".into() });
        }
    }
    let winner = winners[0];
    let stored = store.idempotency_get("conf-idem-race", "key-race").await.expect("idempotency_get").expect("record");
    assert_eq!(stored.body, winner.to_string());
    for n in 0..2 {
        let found = store.get(Kind::User, &format!("usr_conf_race_{n}")).await.expect("get");
        assert_eq!(found.is_some(), n == winner, "only the winner's record exists");
    }
    assert_chain_valid(store).await;
}

/// 16 writers committing 10 audited inserts each, concurrently, leave a gapless valid chain.
/// Uses kind `artifact`.
pub async fn concurrent_commits(store: &dyn Store) {
    const WRITERS: usize = 16;
    const COMMITS: usize = 10;
    let start = head_seq(store).await;
    let writers = (0..WRITERS).map(|w| async move {
        let mut sealed = Vec::new();
        for c in 0..COMMITS {
            let mut tx = store.begin().await.expect("begin");
            let id = format!("art_conf_{w:02}_{c:02}");
            let rec = tx
                .insert(new_record(Kind::Artifact, &id, Some(&format!("conf-art-{w}-{c}")), json!({ "w": w, "c": c })))
                .await
                .expect("insert");
            let drafts = if c % 3 == 0 { vec![draft_for(&rec), draft_for(&rec)] } else { vec![draft_for(&rec)] };
            let n = drafts.len();
            let entries = tx.commit(drafts, None).await.expect("concurrent commit");
            assert_eq!(entries.len(), n);
            assert!(entries.windows(2).all(|p| p[1].seq == p[0].seq + 1 && p[1].prev_hash == p[0].hash));
            sealed.extend(entries);
        }
        sealed
    });
    let sealed: Vec<AuditEntry> = join_all(writers.collect()).await.into_iter().flatten().collect();
    let per_writer = (0..COMMITS).map(|c| if c % 3 == 0 { 2 } else { 1 }).sum::<usize>();
    assert_eq!(sealed.len(), WRITERS * per_writer);
    let seqs: BTreeSet<i64> = sealed.iter().map(|e| e.seq).collect();
    let expected: BTreeSet<i64> = (start + 1..=start + sealed.len() as i64).collect();
    assert_eq!(seqs, expected, "concurrent commits got distinct, gapless sequence numbers");
    let chain = assert_chain_valid(store).await;
    for entry in &sealed {
        assert_eq!(&chain[(entry.seq - 1) as usize], entry, "the stored entry is the one returned");
    }
    assert_eq!(store.count(Kind::Artifact).await.expect("count"), (WRITERS * COMMITS) as i64);
}

/// `audit_page` filters by actor, action, subject, time and `after_seq`, and honours the limit.
pub async fn audit_page_filters(store: &dyn Store) {
    let mut sealed = Vec::new();
    for n in 0..6 {
        let actor = if n % 2 == 0 { "conf-page-alice" } else { "conf-page-bob" };
        let subject = if n < 3 { "rel_conf_page_a" } else { "rel_conf_page_b" };
        let action = if n % 3 == 0 { "conf.create" } else { "conf.update" };
        let mut tx = store.begin().await.expect("begin");
        tx.next_number("conf-page").await.expect("next_number");
        sealed.extend(tx.commit(vec![draft(actor, action, "release", subject)], None).await.expect("commit"));
    }
    let page = |q: AuditQuery| async move { store.audit_page(&q).await.expect("audit_page") };
    let pick = |f: &dyn Fn(&AuditEntry) -> bool| sealed.iter().filter(|e| f(e)).cloned().collect::<Vec<_>>();
    let alice = || AuditQuery { actor: Some("conf-page-alice".into()), ..AuditQuery::default() };

    assert_eq!(page(alice()).await, pick(&|e| e.actor == "conf-page-alice"));
    let q = AuditQuery { subject_kind: Some("release".into()), subject_id: Some("rel_conf_page_a".into()), ..AuditQuery::default() };
    assert_eq!(page(q).await, pick(&|e| e.subject_id == "rel_conf_page_a"));
    let q = AuditQuery { subject_id: Some("rel_conf_page_b".into()), action: Some("conf.update".into()), ..AuditQuery::default() };
    assert_eq!(page(q).await, pick(&|e| e.subject_id == "rel_conf_page_b" && e.action == "conf.update"));
    let q = AuditQuery { subject_kind: Some("team".into()), subject_id: Some("rel_conf_page_a".into()), ..AuditQuery::default() };
    assert!(page(q).await.is_empty(), "subject kind filters");
    let q = AuditQuery { after_seq: Some(sealed[2].seq), ..alice() };
    assert_eq!(page(q).await, pick(&|e| e.actor == "conf-page-alice" && e.seq > sealed[2].seq));
    let q = AuditQuery { limit: 2, ..alice() };
    assert_eq!(page(q).await, pick(&|e| e.actor == "conf-page-alice")[..2].to_vec());
    let q = AuditQuery { after_seq: Some(sealed[1].seq), limit: 3, ..AuditQuery::default() };
    assert_eq!(page(q).await, sealed[2..5].to_vec());
    let q = AuditQuery { after_seq: Some(sealed[0].seq), up_to_seq: Some(sealed[3].seq), ..AuditQuery::default() };
    assert_eq!(page(q).await, sealed[1..4].to_vec(), "up_to_seq is inclusive");
    let q = AuditQuery { after_seq: Some(sealed[0].seq), up_to_seq: Some(sealed[3].seq), ..alice() };
    assert_eq!(page(q).await, pick(&|e| e.actor == "conf-page-alice" && e.seq > sealed[0].seq && e.seq <= sealed[3].seq));

    // Time bounds are inclusive and accept any RFC 3339 form.
    let since = sealed[3].at.clone();
    let until = sealed[2].at.clone();
    let q = AuditQuery { since: Some(since.clone()), ..alice() };
    assert_eq!(page(q).await, pick(&|e| e.actor == "conf-page-alice" && e.at >= since));
    let q = AuditQuery { until: Some(until.clone()), ..alice() };
    assert_eq!(page(q).await, pick(&|e| e.actor == "conf-page-alice" && e.at <= until));
    let offset = DateTime::parse_from_rfc3339(&since)
        .expect("at")
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"))
        .to_rfc3339_opts(SecondsFormat::Nanos, false);
    let q = AuditQuery { since: Some(offset), ..alice() };
    assert_eq!(page(q).await, pick(&|e| e.actor == "conf-page-alice" && e.at >= since));

    let everything = page(AuditQuery::default()).await;
    assert_eq!(everything.len() as i64, head_seq(store).await, "limit 0 reads everything");
}

/// The chain as a whole, from the genesis, against the recorded head.
pub async fn whole_chain_verifies(store: &dyn Store) {
    let chain = assert_chain_valid(store).await;
    assert!(!chain.is_empty());
    assert_eq!(chain[0].prev_hash, GENESIS_HASH);
}
