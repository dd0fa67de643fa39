//! `signalbox demo` must always seed: one release in every lifecycle state, on a valid chain.

use signalbox_app::{App, PageRequest, RequestContext};
use signalbox_domain::lifecycle::ReleaseState;
use std::collections::BTreeSet;
use std::sync::Arc;

#[tokio::test]
async fn the_demo_seeds_every_lifecycle_state_on_a_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = signalbox_store_sqlite::SqliteStore::open(dir.path()).await.unwrap();
    let app = App::new(Arc::new(store));
    let boot = app.bootstrap(None).await.unwrap();
    assert!(boot.created_secret.as_deref().is_some_and(|s| s.starts_with("sbx_")));
    let summary = app.seed_demo().await.unwrap();
    assert_eq!(summary.services, 12);
    assert_eq!(summary.releases, ReleaseState::ALL.len());

    let ctx = RequestContext::system();
    let releases = app.list_releases(&ctx, None, None, &PageRequest { limit: Some(500), cursor: None }).await.unwrap();
    let states: BTreeSet<&str> = releases.items.iter().map(|r| r.state.as_str()).collect();
    let all: BTreeSet<&str> = ReleaseState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(states, all);

    let report = signalbox_app::audit::verify_store(app.store.as_ref()).await.unwrap();
    assert!(report.is_valid(), "{:?}", report.problems);
    assert!(report.entries > 200);

    // A second bootstrap on the same data prints nothing new.
    assert!(app.bootstrap(None).await.unwrap().created_secret.is_none());
}
