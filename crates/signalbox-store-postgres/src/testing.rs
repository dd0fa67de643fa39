//! Throwaway databases for tests and benchmarks.

use crate::queries::{db_err, redact};
use signalbox_store::{StoreError, StoreResult};
use sqlx::{Connection, Executor, PgConnection};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every database [`fresh_database`] creates.
pub const PREFIX: &str = "signalbox_test_";

/// The server tests run against: `SIGNALBOX_TEST_POSTGRES_URL`, or `None` (saying that `test` is
/// skipped) when it is unset or empty. CI always sets it.
pub fn base_url(test: &str) -> Option<String> {
    match std::env::var("SIGNALBOX_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("skipped {test}: SIGNALBOX_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// Creates an empty database `signalbox_test_<unique>` on the server at `base_url` (any
/// database the user can connect to, e.g. `postgres`) and returns `base_url` pointing at it.
pub async fn fresh_database(base_url: &str) -> StoreResult<String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let name = format!("{PREFIX}{}_{:x}_{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut conn = PgConnection::connect(base_url).await.map_err(db_err)?;
    // The name is made of ASCII letters, digits and underscores only.
    let created = conn.execute(format!("CREATE DATABASE {name}").as_str()).await.map_err(db_err);
    let _ = conn.close().await;
    created?;
    Ok(with_database(base_url, &name))
}

/// A database made by [`fresh_database`] that is dropped when this value is, however the test
/// that holds it ends (a failed assertion included).
pub struct ScratchDatabase {
    base_url: String,
    url: String,
}

impl ScratchDatabase {
    /// [`fresh_database`] on the server at `base_url`.
    pub async fn create(base_url: &str) -> StoreResult<ScratchDatabase> {
        let url = fresh_database(base_url).await?;
        Ok(ScratchDatabase { base_url: base_url.to_string(), url })
    }

    /// The URL of the scratch database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (base_url, url) = (self.base_url.clone(), self.url.clone());
        // Drop cannot await on the test's runtime; a short-lived one on its own thread can.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(drop_database(&base_url, &url)).ok()
        })
        .join();
    }
}

/// Drops the database `database_url` names (one made by [`fresh_database`]), connecting through
/// `base_url`; connections still open to it are terminated.
pub async fn drop_database(base_url: &str, database_url: &str) -> StoreResult<()> {
    let name = database_name(database_url)
        .filter(|n| n.starts_with(PREFIX) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| StoreError::Internal(format!("refusing to drop {}: not a test database", redact(database_url))))?;
    let mut conn = PgConnection::connect(base_url).await.map_err(db_err)?;
    let dropped = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.map_err(db_err);
    let _ = conn.close().await;
    dropped.map(|_| ())
}

/// Splits a URL into (before the path, path, query and fragment).
fn split_url(url: &str) -> (&str, &str, &str) {
    let authority_start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let suffix_start = url[authority_start..].find(['?', '#']).map(|i| i + authority_start).unwrap_or(url.len());
    let path_start = url[authority_start..suffix_start].find('/').map(|i| i + authority_start).unwrap_or(suffix_start);
    (&url[..path_start], &url[path_start..suffix_start], &url[suffix_start..])
}

/// `url` with its database (the path) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, _, suffix) = split_url(url);
    format!("{base}/{database}{suffix}")
}

/// The database a URL names, if any.
pub fn database_name(url: &str) -> Option<String> {
    let (_, path, _) = split_url(url);
    let name = path.trim_start_matches('/');
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_in_any_url_shape() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u:p@h/postgres?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
        assert_eq!(with_database("postgres://h?application_name=a", "x"), "postgres://h/x?application_name=a");
        assert_eq!(with_database("postgresql:///postgres?host=/run/postgresql", "x"), "postgresql:///x?host=/run/postgresql");
        assert_eq!(database_name("postgres://u@h/db_1?x=y").as_deref(), Some("db_1"));
        assert_eq!(database_name("postgres://u@h"), None);
    }
}
