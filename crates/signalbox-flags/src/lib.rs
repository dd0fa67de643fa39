//! Signalbox's feature-flag engine (issue 7, SPEC C8). No I/O.

pub mod js;
pub mod logic;
pub mod murmur3;
pub mod semver_op;
pub mod document;
pub mod evaluate;

pub use document::{DefaultVariant, Flag, FlagSet, FlagState, Prerequisite, VariantType};
pub use evaluate::{CompiledFlagSet, ErrorCode, Reason, Resolution, TypedResolution};
