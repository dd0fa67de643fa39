//! Signalbox's calendar engine (SPEC C6): calendar entries with RFC 5545 recurrence in IANA
//! zones, release-train cadences, one conflict engine over freezes, windows, bookings,
//! scheduled deployments and release dependencies, and iCalendar export and import.
//!
//! Everything here is pure: no database, no network, no clock. "Now" is always a parameter,
//! so the server decides what time it is and tests can pick any moment.

pub mod conflict;
pub mod duration;
pub mod ics;
pub mod model;
pub mod rule;
pub mod train;
pub mod zone;

pub use duration::CalendarDuration;
pub use model::{
    calendar_view, BookingState, BookingStatus, CalendarEntry, EntryDraft, EntryKind, EntryRecord, FreezeEffect, Occurrence, Recurrence,
    Scope, ScopeFilter, Span, Target, Timing, TimingDraft,
};
pub use rule::RecurrenceRule;
