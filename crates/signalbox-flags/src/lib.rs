//! Signalbox's feature-flag engine (issue 7, SPEC C8): flagd flag sets, compiled JsonLogic
//! targeting, flagd-compatible evaluation, and the OFREP wire types. No I/O: storage, HTTP and
//! change streams are built on top by the server. See docs/FLAGS.md for the semantics and the
//! deliberate differences from flagd.
//!
//! - [`FlagSet`] parses and validates a flagd document (errors carry JSON paths) and exports it
//!   back exactly.
//! - [`CompiledFlagSet`] compiles every flag's targeting once ([`logic::Rule`], then against the
//!   flag's variants) and evaluates flags into [`Resolution`]s that borrow from it, without heap
//!   allocation on the success paths; build one per flag-set version and share it.
//! - [`ofrep`] turns resolutions into OFREP bodies and status codes, parses requests, and derives
//!   bulk ETags.
//! - [`oracle`] is a plain interpreter that the property tests compare the compiled form against.

pub mod document;
pub mod evaluate;
mod fasthash;
pub mod js;
pub mod logic;
pub mod murmur3;
pub mod ofrep;
pub mod oracle;
pub mod semver_op;

pub use document::{DefaultVariant, Flag, FlagSet, FlagState, Prerequisite, VariantType};
pub use evaluate::{CompiledFlagSet, ErrorCode, PreparedContext, Reason, Resolution, TypedResolution};
