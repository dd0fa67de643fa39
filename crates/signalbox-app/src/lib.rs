//! Signalbox's use cases. Every command and query the server and CLI offer lives here,
//! independent of HTTP: handlers translate a request into a call on [`App`], and the answer
//! (or [`AppError`]) back into a response.
//!
//! Every mutation goes through [`mutation::Mutation`], which checks nothing itself but is the
//! only way to obtain a writable transaction, records an audit draft for every write it
//! performs, and commits them together (see `signalbox_store::Tx::commit`).

pub mod access;
pub mod artifacts;
pub mod audit;
pub mod calendar;
pub mod catalog;
pub mod context;
pub mod demo;
pub mod environments;
pub mod error;
pub mod evidence;
pub mod flag_lifecycle;
pub mod flags;
pub(crate) mod gather_cache;
pub mod governance;
pub mod mutation;
pub mod promotion;
pub mod release_notes;
pub mod releases;
pub mod repositories;
pub mod requests;
pub mod rollouts;
pub mod scheduler;
pub mod templates;

use signalbox_store::Store;
use std::sync::Arc;

pub use context::{Actor, IdempotencyContext, RequestContext};
pub use error::{AppError, AppResult};

/// A resource with the version the store holds it at (the HTTP `ETag`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Versioned<T> {
    pub version: i64,
    pub value: T,
}

/// One page of a list, with the cursor for the next.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Paging parameters as clients give them.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

impl PageRequest {
    pub fn resolve(&self) -> AppResult<(u32, Option<i64>)> {
        let limit = match self.limit {
            None => DEFAULT_PAGE_SIZE,
            Some(0) => return Err(AppError::invalid("limit", "must be at least 1")),
            Some(l) if l > MAX_PAGE_SIZE => return Err(AppError::invalid("limit", format!("must be at most {MAX_PAGE_SIZE}"))),
            Some(l) => l,
        };
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                AppError::invalid("cursor", "is not a cursor this server issued; pass the next_cursor of a previous page")
            })?),
        };
        Ok((limit, after))
    }
}

/// Cursors are opaque to clients: the insertion sequence of the last item, lightly wrapped so
/// nobody builds them by hand and depends on their form.
pub fn encode_cursor(seq: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{seq}"))
}

pub fn decode_cursor(cursor: &str) -> Option<i64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("after:")?.parse().ok()
}

/// The application: a store and the settings use cases need.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub(crate) auth_cache: Arc<access::AuthCache>,
    pub governance: Arc<governance::GovernanceSettings>,
    pub(crate) rego_cache: Arc<governance::RegoCache>,
    /// What gate evaluation derives from evidence and earlier releases, by record version.
    pub(crate) gather_cache: Arc<gather_cache::GatherCache>,
    /// Compiled flag snapshots, the SDK key cache and rate limits (issue 7).
    pub(crate) flags: Arc<flags::FlagRuntime>,
    /// The rollout controller's process-local state: simulated fleets, the HTTP client for
    /// metric providers, the Prometheus address (issue 6).
    pub controller: Arc<rollouts::ControllerState>,
    /// Services' git repositories: the mirror directory and the changelog rules (issue 5).
    pub repositories: Arc<repositories::RepositorySettings>,
    /// The conflict check's inputs at the last calendar version seen (issue 4).
    pub(crate) calendar_cache: Arc<calendar::CalendarCache>,
}

impl App {
    pub fn new(store: Arc<dyn Store>) -> App {
        App {
            store,
            auth_cache: Arc::new(access::AuthCache::default()),
            governance: Arc::new(governance::GovernanceSettings::default()),
            rego_cache: Arc::new(governance::RegoCache::default()),
            gather_cache: Arc::new(gather_cache::GatherCache::default()),
            flags: Arc::new(flags::FlagRuntime::default()),
            controller: Arc::new(rollouts::ControllerState::default()),
            repositories: Arc::new(repositories::RepositorySettings::default()),
            calendar_cache: Arc::new(calendar::CalendarCache::default()),
        }
    }
}

/// A fresh identifier for a resource of `kind`: its prefix and a time-ordered UUID.
pub fn new_id(kind: signalbox_domain::model::Kind) -> String {
    format!("{}_{}", kind.id_prefix(), uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cursors_roundtrip(seq in any::<i64>()) {
            prop_assert_eq!(decode_cursor(&encode_cursor(seq)), Some(seq));
        }

        #[test]
        fn arbitrary_cursors_never_panic(s in "\\PC{0,40}") {
            let _ = decode_cursor(&s);
        }
    }
}
