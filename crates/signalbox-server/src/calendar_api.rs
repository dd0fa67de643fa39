//! HTTP for the calendar (issue 4): entries, conflicts, trains, bookings, the iCalendar feed.
//! (Being built.)

use crate::routes::RouteSpec;

/// The calendar's `/api/v1` routes, each with its permission.
pub fn routes() -> Vec<RouteSpec> {
    vec![]
}

#[derive(utoipa::OpenApi)]
#[openapi()]
pub struct CalendarApiDoc;
