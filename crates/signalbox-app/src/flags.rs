//! Feature-flag use cases (SPEC C8): flag sets per environment in flagd format, SDK keys,
//! audited changes, on top of `signalbox-flags`. (Being built; see issue 7.)

use crate::{App, AppResult, RequestContext};

impl App {
    /// Adds the demo's flag sets.
    pub(crate) async fn seed_flags_demo(&self, _ctx: &RequestContext) -> AppResult<()> {
        Ok(())
    }
}
