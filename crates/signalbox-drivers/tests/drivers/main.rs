//! One integration-test binary (one link) for the whole crate; modules by behaviour.
//!
//! Every test talks to real local processes: axum receivers on 127.0.0.1:0, scripts in temporary
//! directories, and a real Prometheus (`signalbox_drivers::testing`).

mod command;
mod http_check;
mod prometheus;
mod simulated;
mod support;
mod webhook;
