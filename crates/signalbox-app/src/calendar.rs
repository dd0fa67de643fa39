//! Calendar use cases (SPEC C6): entries, trains, bookings, the conflict engine and the
//! iCalendar feed, on top of `signalbox-calendar`. (Being built; see issue 4.)

use crate::{App, AppResult, RequestContext};

impl App {
    /// Adds the demo's trains, freezes, windows, holidays and bookings.
    pub(crate) async fn seed_calendar_demo(&self, _ctx: &RequestContext) -> AppResult<()> {
        Ok(())
    }
}
