//! One integration-test binary for signalbox-flags (one link step keeps CI fast).

mod bucketing;
mod differential;
mod operators;
mod properties;
mod protocol;
mod roundtrip;
mod semantics;
mod support;
mod validation;
