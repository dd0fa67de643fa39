//! A replica's flag poller finds every committed change at its next poll, including a commit
//! that inserts no record whose `seq` is above what the poller has seen. On PostgreSQL that is
//! what a commit landing out of `seq` order looks like (a revision record's `seq` is taken when
//! it is inserted, not when its transaction commits); the poller reads the audit chain, which
//! becomes visible in sequence order, instead.

use serde_json::{json, Value};
use signalbox_app::flags::{CreateSdkKey, FlagSetRef};
use signalbox_app::requests::CreateEnvironment;
use signalbox_app::{App, RequestContext};
use signalbox_domain::audit::AuditDraft;
use signalbox_domain::model::Kind;
use signalbox_store::{RecordUpdate, Store};
use std::sync::Arc;

/// A store, the PostgreSQL (server URL, database URL) to drop afterwards, the SQLite directory to keep.
type TestStore = (Arc<dyn Store>, Option<(String, String)>, Option<tempfile::TempDir>);

async fn stores() -> Vec<TestStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = signalbox_store_sqlite::SqliteStore::open(dir.path()).await.expect("open sqlite");
    let mut stores: Vec<TestStore> = vec![(Arc::new(sqlite), None, Some(dir))];
    if let Ok(base) = std::env::var("SIGNALBOX_TEST_POSTGRES_URL") {
        let url = signalbox_store_postgres::testing::fresh_database(&base).await.expect("fresh database");
        let pg = signalbox_store_postgres::PostgresStore::connect(&url, 5).await.expect("connect");
        stores.push((Arc::new(pg), Some((base, url)), None));
    }
    stores
}

fn color(snapshot: &signalbox_app::flags::FlagSnapshot) -> Value {
    snapshot.evaluate("color", &json!({"targetingKey": "u"}), 0).value.cloned().unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_commit_that_adds_no_newer_record_is_found_at_the_next_poll() {
    for (store, postgres, _dir) in stores().await {
        let ctx = RequestContext::system();
        let writer = App::new(store.clone());
        writer.bootstrap(None).await.expect("bootstrap");
        let environment: CreateEnvironment = serde_json::from_value(json!({"name": "prod", "tier": "prod", "position": 40})).unwrap();
        writer.create_environment(&ctx, environment).await.expect("environment");
        let document =
            json!({"flags": {"color": {"state": "ENABLED", "variants": {"red": "red", "blue": "blue"}, "defaultVariant": "red"}}});
        writer.put_flag_set(&ctx, &FlagSetRef { environment: "prod", service: None }, document, None).await.expect("put");
        let sdk: CreateSdkKey = serde_json::from_value(json!({"environment": "prod", "name": "replica"})).unwrap();
        let issued = writer.create_sdk_key(&ctx, sdk).await.expect("sdk key");

        // The second replica loads the set (its first poll is a full load).
        let reader = App::new(store.clone());
        let key = reader.authenticate_sdk_key(&issued.secret).await.expect("authenticate").expect("known key");
        let poller = reader.flag_poller();
        assert!(poller.tick().await);
        assert_eq!(color(&reader.flag_snapshot(&key).await.unwrap().unwrap()), "red");

        // Another writer edits the current set in place and commits: no record with a higher `seq`.
        let mut tx = store.begin().await.expect("begin");
        let current = tx.get(Kind::FlagSet, &key.environment_id).await.expect("get").expect("the current set");
        let mut body = current.body.clone();
        body["document"]["flags"]["color"]["defaultVariant"] = json!("blue");
        let update = RecordUpdate {
            key: current.key.clone(),
            parent: current.parent.clone(),
            state: current.state.clone(),
            body,
            at: chrono::Utc::now(),
        };
        tx.update(Kind::FlagSet, &current.id, current.version, update).await.expect("update");
        let draft = AuditDraft {
            actor: "another-replica".into(),
            action: "flag_set.update".into(),
            subject_kind: Kind::FlagSet.as_str().into(),
            subject_id: current.id.clone(),
            before: Some(current.body.clone()),
            after: None,
            reason: None,
            request_id: None,
        };
        tx.commit(vec![draft], None).await.expect("commit");

        // One poll, well inside the full-reload interval: the change is served.
        assert!(poller.tick().await);
        let snapshot = reader.flag_snapshot(&key).await.unwrap().unwrap();
        assert_eq!(color(&snapshot), "blue", "{:?}", store.backend());

        // And an unrelated commit is not mistaken for a flag change: the snapshot is kept.
        writer
            .create_environment(&ctx, serde_json::from_value(json!({"name": "dev", "tier": "dev", "position": 10})).unwrap())
            .await
            .expect("environment");
        assert!(poller.tick().await);
        assert!(
            Arc::ptr_eq(&snapshot, &reader.flag_snapshot(&key).await.unwrap().unwrap()),
            "a commit to something else keeps the snapshot"
        );

        drop((writer, reader, poller, store));
        if let Some((base, url)) = postgres {
            let _ = signalbox_store_postgres::testing::drop_database(&base, &url).await;
        }
    }
}
