//! Table upkeep (`signalbox_store_postgres::upkeep`): a pass vacuums and analyzes the store's
//! tables that autovacuum's thresholds say need it, does nothing when none do, and stands aside
//! while another replica holds the upkeep lock. Runs when `SIGNALBOX_TEST_POSTGRES_URL` names a
//! server; each test gets a database of its own, dropped afterwards.

use serde_json::json;
use signalbox_domain::audit::AuditDraft;
use signalbox_domain::model::Kind;
use signalbox_store::{NewRecord, Store};
use signalbox_store_postgres::upkeep::{autovacuum_enabled, upkeep_pass, UPKEEP_LOCK};
use signalbox_store_postgres::{testing, PostgresStore, UpkeepMode};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::time::{Duration, Instant};

const RECORDS: i64 = 300;

/// `(n_dead_tup, vacuumed, analyzed)` of `resources` as the statistics system reports them.
async fn resources_stats(raw: &PgPool) -> (i64, bool, bool) {
    sqlx::query_as(
        "SELECT n_dead_tup, last_vacuum IS NOT NULL OR last_autovacuum IS NOT NULL, last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL \
         FROM pg_stat_user_tables WHERE relname = 'resources' AND schemaname = current_schema()",
    )
    .fetch_one(raw)
    .await
    .expect("pg_stat_user_tables")
}

/// Writes `RECORDS` records through the store, then rewrites every one of them with plain SQL,
/// leaving as many dead row versions, and waits until the statistics system has seen them
/// (backends report their counts at most once a second, or when idle).
async fn make_dead_rows(store: &PostgresStore, raw: &PgPool) {
    let mut tx = store.begin().await.expect("begin");
    for i in 0..RECORDS {
        let body = json!({ "id": format!("dom_up{i}"), "name": format!("Domain {i}") });
        let record =
            NewRecord { kind: Kind::Domain, id: format!("dom_up{i}"), key: None, parent: None, state: None, body, at: chrono::Utc::now() };
        tx.insert(record).await.expect("insert");
    }
    let draft = AuditDraft {
        actor: "upkeep-test".into(),
        action: "domain.create".into(),
        subject_kind: "domain".into(),
        subject_id: "dom_up0".into(),
        before: None,
        after: None,
        reason: None,
        request_id: None,
    };
    tx.commit(vec![draft], None).await.expect("commit");
    sqlx::query("UPDATE resources SET version = version + 1 WHERE id LIKE 'dom_up%'").execute(raw).await.expect("update");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (dead, _, _) = resources_stats(raw).await;
        if dead >= RECORDS {
            return;
        }
        assert!(Instant::now() < deadline, "the statistics system never reported the dead rows ({dead})");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn with_store<F, Fut>(test: &str, body: F)
where
    F: FnOnce(PostgresStore, PgPool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(base) = testing::base_url(test) else { return };
    let url = testing::fresh_database(&base).await.expect("create a test database");
    let store = PostgresStore::connect_with(&url, 4, Duration::from_secs(30), UpkeepMode::Off).await.expect("connect");
    let raw = PgPoolOptions::new().max_connections(2).connect(&url).await.expect("raw pool");
    body(store, raw.clone()).await;
    raw.close().await;
    testing::drop_database(&base, &url).await.expect("drop the test database");
}

#[tokio::test]
async fn a_pass_vacuums_and_analyzes_a_table_with_dead_rows_and_then_leaves_it_alone() {
    with_store("upkeep_pass", |store, raw| async move {
        // Whatever the server's setting, this table is left to the pass alone.
        sqlx::query("ALTER TABLE resources SET (autovacuum_enabled = false)").execute(&raw).await.expect("alter");
        make_dead_rows(&store, &raw).await;
        let (_, vacuumed, analyzed) = resources_stats(&raw).await;
        assert!(!vacuumed && !analyzed, "nothing has vacuumed or analyzed the table yet");

        let done = upkeep_pass(store.pool()).await.expect("pass");
        let resources = done.iter().find(|t| t.table == "resources").expect("resources is looked after");
        assert!(resources.vacuumed && resources.analyzed, "{done:?}");
        let (dead, vacuumed, analyzed) = resources_stats(&raw).await;
        assert_eq!(dead, 0, "the dead versions are gone");
        assert!(vacuumed && analyzed);

        let again = upkeep_pass(store.pool()).await.expect("second pass");
        assert!(!again.iter().any(|t| t.table == "resources"), "nothing left to do on resources: {again:?}");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_pass_stands_aside_while_another_replica_holds_the_upkeep_lock() {
    with_store("upkeep_lock", |store, raw| async move {
        sqlx::query("ALTER TABLE resources SET (autovacuum_enabled = false)").execute(&raw).await.expect("alter");
        make_dead_rows(&store, &raw).await;
        let mut other_replica = raw.acquire().await.expect("connection");
        sqlx::query("SELECT pg_advisory_lock($1)").bind(UPKEEP_LOCK).execute(&mut *other_replica).await.expect("lock");
        assert_eq!(upkeep_pass(store.pool()).await.expect("pass"), vec![], "the other replica is at it");
        assert!(resources_stats(&raw).await.0 >= RECORDS, "and the rows are still there");
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(UPKEEP_LOCK).execute(&mut *other_replica).await.expect("unlock");
        drop(other_replica);
        let done = upkeep_pass(store.pool()).await.expect("pass");
        assert!(done.iter().any(|t| t.table == "resources" && t.vacuumed), "{done:?}");
        // The setting is readable whichever way the server is configured.
        autovacuum_enabled(store.pool()).await.expect("SHOW autovacuum");
        store.close().await;
    })
    .await;
}
