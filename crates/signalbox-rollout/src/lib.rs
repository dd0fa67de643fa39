//! Progressive delivery without I/O (issue 6).
//!
//! - [`plan`]: a strategy (all at once, rolling, canary steps, blue-green) compiled into a flat
//!   list of steps, and the rollout state machine that walks it ([`plan::Rollout::next`]).
//! - [`analysis`]: metric specifications, the condition language, measurement assessment with
//!   explicit no-data rules, and the canary-versus-baseline judge.
//!
//! The application persists a [`plan::RolloutState`] after every step and performs the I/O the
//! machine asks for (driver actions, measurements); this crate decides, it never waits or sends.

pub mod analysis;
pub mod plan;
