//! The shared store contract against a real PostgreSQL, plus what only a shared server has to
//! show: replicas migrating at once. Runs when `SIGNALBOX_TEST_POSTGRES_URL` names a server
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`); CI always sets it.

use signalbox_store::Store;
use signalbox_store_postgres::{raw_insert_ceiling, testing, PostgresStore};
use std::sync::Arc;
use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some(base) = testing::base_url("postgres_store_conforms") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let store = Arc::new(PostgresStore::connect(&url, 8).await.expect("connect"));
        signalbox_store::conformance::run_all(store.as_ref()).await;
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(base) = testing::base_url("replicas_starting_together_migrate_once") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PostgresStore::connect(&url, 2).await })
            })
            .collect();
        let mut stores = Vec::new();
        for start in starts {
            stores.push(start.await.expect("task").expect("every replica connects and migrates"));
        }
        for store in &stores {
            assert!(store.readiness().await.is_ready());
        }
        let pool = stores[0].pool();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(pool).await.unwrap();
        assert_eq!(applied, signalbox_store_postgres::MIGRATOR.iter().count() as i64, "each migration applied once");
        let heads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_head").fetch_one(pool).await.unwrap();
        assert_eq!(heads, 1);
        assert_eq!(stores[0].audit_head().await.unwrap(), None);
        for store in stores {
            store.close().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_never_shows_the_password() {
    let Some(base) = testing::base_url("debug_output_never_shows_the_password") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        // Trust authentication ignores the password, so one can be added for the test.
        let with_password = url.replacen("://postgres@", "://postgres:hunter2secret@", 1);
        let store = PostgresStore::connect(&with_password, 1).await.expect("connect");
        let shown = format!("{store:?}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("signalbox_test_"), "{shown}");
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    let url = "postgres://postgres:pw@127.0.0.1:1/nothing";
    let err = PostgresStore::connect_with_timeout(url, 1, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, signalbox_store::StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains(":pw@"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ceiling_measures_committed_inserts() {
    let Some(base) = testing::base_url("raw_ceiling_measures_committed_inserts") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let ceiling = raw_insert_ceiling(&url, 4, Duration::from_millis(300)).await.unwrap();
        assert!(ceiling.ops > 0, "{ceiling:?}");
        assert!(ceiling.p50 <= ceiling.p99 && ceiling.p99 > Duration::ZERO, "{ceiling:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_append_to_one_chain() {
    let Some(base) = testing::base_url("replicas_append_to_one_chain") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        let a = Arc::new(PostgresStore::connect(&url, 4).await.expect("replica a"));
        let b = Arc::new(PostgresStore::connect(&url, 4).await.expect("replica b"));
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                for c in 0..10 {
                    let mut tx = store.begin().await.unwrap();
                    let n = tx.next_number("shared").await.unwrap();
                    let draft = signalbox_domain::audit::AuditDraft {
                        actor: format!("writer-{w}"),
                        action: "counter.bump".into(),
                        subject_kind: "counter".into(),
                        subject_id: format!("{w}-{c}"),
                        before: None,
                        after: Some(serde_json::json!({ "n": n })),
                        reason: None,
                        request_id: None,
                    };
                    tx.commit(vec![draft], None).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let entries = b.audit_page(&signalbox_store::AuditQuery::default()).await.unwrap();
        assert_eq!(entries.len(), 80);
        let head = a.audit_head().await.unwrap().unwrap();
        let report = signalbox_domain::audit::verify_chain(&entries, Some((head.0, &head.1)), true);
        assert!(report.is_valid(), "{:?}", report.problems);
        let mut numbers: Vec<i64> = entries.iter().map(|e| e.after.as_ref().unwrap()["n"].as_i64().unwrap()).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=80).collect::<Vec<_>>(), "the shared counter never repeats");
        a.close().await;
        b.close().await;
    })
    .await;
}

/// Pooled connections are not pinged before use. One the server has dropped since (as after a
/// restart) fails its first statement; reads are then asked again on another connection and a
/// `BEGIN` is sent again, so every caller sees an answer, not an error, even when every idle
/// connection in the pool is dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_transactions_survive_connections_the_server_dropped() {
    let Some(base) = testing::base_url("reads_and_transactions_survive_connections_the_server_dropped") else {
        return;
    };
    with_fresh_database(&base, |url| async move {
        use signalbox_domain::audit::AuditDraft;
        use signalbox_domain::model::Kind;
        use signalbox_store::{HeadQuery, ListQuery, NewRecord};
        let store = PostgresStore::connect(&url, 6).await.expect("connect");
        let mut tx = store.begin().await.expect("begin");
        tx.insert(NewRecord {
            kind: Kind::Domain,
            id: "dom_1".into(),
            key: Some("payments".into()),
            parent: None,
            state: None,
            body: serde_json::json!({"name": "payments"}),
            at: chrono::Utc::now(),
        })
        .await
        .expect("insert");
        let draft = AuditDraft {
            actor: "admin".into(),
            action: "domain.create".into(),
            subject_kind: "domain".into(),
            subject_id: "dom_1".into(),
            before: None,
            after: None,
            reason: None,
            request_id: None,
        };
        tx.commit(vec![draft.clone()], None).await.expect("commit");
        let queries = [HeadQuery::all(Kind::Domain), HeadQuery::all(Kind::Release)];
        let domains = ListQuery::all(Kind::Domain);
        for round in 0..2 {
            // Fill the pool with idle connections, then have the server drop all of them.
            let (a, b, c, d, e) = tokio::join!(
                store.heads_many(&queries),
                store.get(Kind::Domain, "payments"),
                store.list(&domains),
                store.audit_head(),
                store.heads(&queries[0]),
            );
            assert!(a.is_ok() && b.is_ok() && c.is_ok() && d.is_ok() && e.is_ok(), "round {round}: reads before the drop");
            // The timeout makes each call wait until its backend has exited.
            sqlx::query(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .execute(store.pool())
            .await
            .expect("terminate");
            if round == 0 {
                let found = store.get(Kind::Domain, "payments").await.expect("get after the drop");
                assert_eq!(found.map(|r| r.id).as_deref(), Some("dom_1"));
                assert_eq!(store.list(&domains).await.expect("list after the drop").items.len(), 1);
                assert_eq!(store.heads_many(&queries).await.map(|a| a.len()), Ok(2), "heads_many after the drop");
                assert_eq!(store.count(Kind::Domain).await, Ok(1), "count after the drop");
                assert!(store.readiness().await.reachable, "readiness after the drop");
            } else {
                // A transaction begun on a dropped connection begins again on another.
                let mut tx = store.begin().await.expect("begin after the drop");
                let record = tx.get(Kind::Domain, "dom_1").await.expect("read in the transaction").expect("found");
                tx.update(
                    Kind::Domain,
                    "dom_1",
                    record.version,
                    signalbox_store::RecordUpdate {
                        key: record.key,
                        parent: None,
                        state: None,
                        body: serde_json::json!({"name": "payments", "renamed": true}),
                        at: chrono::Utc::now(),
                    },
                )
                .await
                .expect("update");
                tx.commit(vec![AuditDraft { action: "domain.update".into(), ..draft.clone() }], None).await.expect("commit after the drop");
                let head = store.audit_head().await.expect("head").expect("two entries");
                assert_eq!(head.0, 2);
            }
        }
        store.close().await;
    })
    .await;
}
