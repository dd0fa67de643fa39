//! Which index answers the reads that must not scan: a service's deployments in an environment
//! (promotion, governance, change import) use the partial expression index of migration 0002,
//! both as a list and as heads. The plan is SQLite's own (`EXPLAIN QUERY PLAN`) for the exact
//! statement the store sends.

use signalbox_domain::model::Kind;
use signalbox_store::{HeadQuery, ListQuery, Store};
use signalbox_store_sqlite::SqliteStore;
use tempfile::TempDir;

const INDEX: &str = "resources_deployment_service_environment";

#[tokio::test]
async fn deployments_of_a_service_in_an_environment_are_read_through_their_index() {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();

    let list = ListQuery::all(Kind::Deployment).with_field("service_id", "svc_1").with_field("environment_id", "env_1");
    let plan = store.list_plan(&list).await.unwrap();
    assert!(plan.contains(INDEX), "list plan does not use {INDEX}:\n{plan}");

    let heads = HeadQuery::all(Kind::Deployment)
        .with_field_in("service_id", ["svc_1", "svc_2"])
        .with_field_in("environment_id", ["env_1", "env_2"]);
    let plan = store.heads_plan(&heads).await.unwrap();
    assert!(plan.contains(INDEX), "heads plan does not use {INDEX}:\n{plan}");

    // The index is partial: another kind with the same fields cannot use it.
    let other = ListQuery::all(Kind::Release).with_field("service_id", "svc_1");
    let plan = store.list_plan(&other).await.unwrap();
    assert!(!plan.contains(INDEX), "a release query claims the deployment index:\n{plan}");
    store.close().await;
}
