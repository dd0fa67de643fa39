//! First start: `bootstrap` creates the admin and its token once, and never again once anyone
//! has been set up, including when `admin` was removed or renamed. On PostgreSQL it runs on a
//! pool of one connection with a short wait for it: bootstrap holds its transaction's connection
//! throughout, so a pooled read inside it would wait for ever and fail here.

use serde_json::json;
use signalbox_app::requests::CreateUser;
use signalbox_app::{App, RequestContext};
use signalbox_domain::model::Kind;
use signalbox_store::Store;
use signalbox_store_postgres::testing::ScratchDatabase;
use std::sync::Arc;
use std::time::Duration;

/// SQLite, then PostgreSQL when `SIGNALBOX_TEST_POSTGRES_URL` is set (on a pool of one
/// connection, which waits at most 5 s for it), each opened only when its turn comes.
fn backends() -> Vec<&'static str> {
    if std::env::var("SIGNALBOX_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        vec!["sqlite", "postgres"]
    } else {
        eprintln!("SIGNALBOX_TEST_POSTGRES_URL is not set: this test ran on SQLite only");
        vec!["sqlite"]
    }
}

/// The store, and what keeps its data alive (and removes it afterwards).
async fn open(backend: &str) -> (Arc<dyn Store>, Option<tempfile::TempDir>, Option<ScratchDatabase>) {
    if backend == "sqlite" {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = signalbox_store_sqlite::SqliteStore::open(dir.path()).await.expect("open sqlite");
        return (Arc::new(sqlite), Some(dir), None);
    }
    let base = std::env::var("SIGNALBOX_TEST_POSTGRES_URL").expect("postgres url");
    let scratch = ScratchDatabase::create(&base).await.expect("fresh database");
    let pg =
        signalbox_store_postgres::PostgresStore::connect_with_timeout(scratch.url(), 1, Duration::from_secs(5)).await.expect("connect");
    (Arc::new(pg), None, Some(scratch))
}

#[tokio::test]
async fn bootstrap_creates_the_admin_once_and_not_again_after_admin_is_gone() {
    for backend in backends() {
        let (store, _dir, scratch) = open(backend).await;
        let app = App::new(store.clone());
        let first = app.bootstrap(None).await.unwrap_or_else(|e| panic!("{backend}: first bootstrap: {e}"));
        assert!(first.created_secret.is_some(), "{backend}: the first start creates the admin's token");
        assert!(app.bootstrap(None).await.expect("second bootstrap").created_secret.is_none(), "{backend}: only once");

        // Someone else is set up, and `admin` is renamed: a restart must not create a new admin.
        let ctx = RequestContext::system();
        let ops: CreateUser = serde_json::from_value(json!({"username": "ops", "display_name": "Operations"})).unwrap();
        app.create_user(&ctx, ops).await.expect("create ops");
        let mut tx = store.begin().await.expect("begin");
        let admin = tx.get(Kind::User, "admin").await.expect("get").expect("admin exists");
        let mut body = admin.body.clone();
        body["username"] = json!("root");
        let update = signalbox_store::RecordUpdate {
            key: Some("root".into()),
            parent: admin.parent.clone(),
            state: admin.state.clone(),
            body,
            at: chrono::Utc::now(),
        };
        tx.update(Kind::User, &admin.id, admin.version, update).await.expect("rename admin");
        let draft = signalbox_domain::audit::AuditDraft {
            actor: "test".into(),
            action: "user.update".into(),
            subject_kind: "user".into(),
            subject_id: admin.id.clone(),
            before: None,
            after: None,
            reason: None,
            request_id: None,
        };
        tx.commit(vec![draft], None).await.expect("commit");

        let again = app.bootstrap(None).await.unwrap_or_else(|e| panic!("{backend}: bootstrap with admin renamed: {e}"));
        assert!(again.created_secret.is_none(), "{backend}: no second admin once others exist");
        assert!(store.get(Kind::User, "admin").await.expect("get").is_none(), "{backend}: no user named admin was created");
        assert_eq!(store.count(Kind::User).await.expect("count"), 2, "{backend}: root and ops, nobody else");
        store.close().await;
        drop(scratch);
    }
}
