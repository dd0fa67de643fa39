//! Signalbox's feature-flag engine (issue 7, SPEC C8). No I/O.

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
pub use evaluate::{CompiledFlagSet, ErrorCode, Reason, Resolution, TypedResolution};
