//! Which index answers the reads that must not scan: a service's deployments in an environment
//! (promotion, governance, change import) use the partial expression index of migration 0004, as
//! a list and as heads, in the generic plan a cached prepared statement settles on. Runs when
//! `SIGNALBOX_TEST_POSTGRES_URL` names a server; the test gets a database of its own.

use signalbox_domain::model::Kind;
use signalbox_store::{HeadQuery, ListQuery, Store};
use signalbox_store_postgres::{testing, PostgresStore};

const INDEX: &str = "resources_deployment_service_environment";

#[tokio::test]
async fn deployments_of_a_service_in_an_environment_are_read_through_their_index() {
    let Some(base) = testing::base_url("deployments_of_a_service_in_an_environment_are_read_through_their_index") else { return };
    let url = testing::fresh_database(&base).await.unwrap();
    let store = PostgresStore::connect(&url, 2).await.unwrap();

    let list = ListQuery::all(Kind::Deployment).with_field("service_id", "svc_1").with_field("environment_id", "env_1");
    let plan = store.list_index_plan(&list).await.unwrap();
    assert!(plan.contains(INDEX), "list plan does not use {INDEX}:\n{plan}");

    let heads = HeadQuery::all(Kind::Deployment)
        .with_field_in("service_id", ["svc_1", "svc_2"])
        .with_field_in("environment_id", ["env_1", "env_2"]);
    let plan = store.heads_index_plan(&heads).await.unwrap();
    assert!(plan.contains(INDEX), "heads plan does not use {INDEX}:\n{plan}");

    // The index is partial: another kind with the same fields cannot use it.
    let other = ListQuery::all(Kind::Release).with_field("service_id", "svc_1");
    let plan = store.list_index_plan(&other).await.unwrap();
    assert!(!plan.contains(INDEX), "a release query claims the deployment index:\n{plan}");

    store.close().await;
    testing::drop_database(&base, &url).await.unwrap();
}
