//! Signalbox's domain: the nouns of release management and the rules that hold between them.
//!
//! This crate does no I/O. It knows nothing of HTTP, SQL, clocks or randomness: callers pass
//! the current time and fresh identifiers in. That keeps every rule here testable as a pure
//! function, and lets the same rules run in the server, the CLI and offline tools
//! (`signalbox audit verify`).

pub mod access;
pub mod audit;
pub mod canonical;
pub mod lifecycle;
pub mod model;
pub mod tasks;
pub mod templates;
pub mod validate;

pub use validate::{FieldError, Invalid};
