//! `signalbox demo` must always seed: one release in every lifecycle state, on a valid chain.

use signalbox_app::release_notes::NotesFormat;
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
    assert_eq!(summary.lifecycle_releases, ReleaseState::ALL.len());

    let ctx = RequestContext::system();
    let releases = app.list_releases(&ctx, None, None, &PageRequest { limit: Some(500), cursor: None }).await.unwrap();
    assert_eq!(summary.releases, releases.items.len(), "the banner counts every release the API lists (no scheduler ran)");
    assert!(summary.releases > summary.lifecycle_releases);
    let states: BTreeSet<&str> = releases.items.iter().map(|r| r.state.as_str()).collect();
    let all: BTreeSet<&str> = ReleaseState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(states, all);

    // Services backed by generated repositories: the release still in planning had its changes
    // imported from git, and its notes show them, the breaking change first.
    let fraud = releases.items.iter().find(|r| r.name == "Fraud scoring 2.0").unwrap();
    let notes = app.release_notes(&ctx, &fraud.key, NotesFormat::Json, Some("prod")).await.unwrap();
    let notes: serde_json::Value = serde_json::from_str(&notes.body).unwrap();
    assert_eq!(notes["source"], "changes", "{notes:#}");
    assert!(notes["breaking_changes"][0]["breaking_description"].as_str().unwrap().contains("/v2"), "{notes:#}");
    let commits = notes["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["changes"].as_array().unwrap())
        .filter(|c| c["reference"].as_str().unwrap().len() == 40);
    assert_eq!(commits.count(), 2, "{notes:#}");
    // A closed release of another repository-backed service reads its notes live.
    let checkout = releases.items.iter().find(|r| r.name == "Checkout 1.4 rollout").unwrap();
    let md = app.release_notes(&ctx, &checkout.key, NotesFormat::Markdown, None).await.unwrap().body;
    assert!(md.contains("close connections on shutdown"), "{md}");
    let next = signalbox_versioning::next_version(
        &app.demo_repository_root().join("fraud-scoring"),
        &Default::default(),
        &Default::default(),
        None,
    )
    .unwrap();
    assert_eq!(next.version, "2.0.0");

    // Flags in every state: on, off (DISABLED), a code default (no defaultVariant), a 5 % rollout in
    // prod (50 % in staging, 100 % before). (The prod ramp's schedule is refused when the demo
    // calendar's year-end freeze covers the next two days, so it is not asserted here.)
    let prod = app.export_flag_set(&ctx, &signalbox_app::flags::FlagSetRef { environment: "prod", service: None }).await.unwrap().value;
    let flags = prod["flags"].as_object().unwrap();
    let states: BTreeSet<&str> = flags.values().filter_map(|f| f["state"].as_str()).collect();
    assert_eq!(states, BTreeSet::from(["ENABLED", "DISABLED"]), "{prod:#}");
    assert!(flags.values().any(|f| f.get("defaultVariant").is_none_or(serde_json::Value::is_null)), "a flag with a code default");
    let rollout = |document: &serde_json::Value| document.to_string();
    assert!(rollout(&prod).contains(r#"["on",5]"#) && rollout(&prod).contains(r#"["off",95]"#), "prod opens to 5 %: {prod:#}");
    let staging =
        app.export_flag_set(&ctx, &signalbox_app::flags::FlagSetRef { environment: "staging", service: None }).await.unwrap().value;
    assert!(rollout(&staging).contains(r#"["on",50]"#), "staging at 50 %");

    let report = signalbox_app::audit::verify_store(app.store.as_ref()).await.unwrap();
    assert!(report.is_valid(), "{:?}", report.problems);
    assert!(report.entries > 200);

    // A second bootstrap on the same data prints nothing new.
    assert!(app.bootstrap(None).await.unwrap().created_secret.is_none());
}
