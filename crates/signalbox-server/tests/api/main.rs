//! One integration-test binary for the HTTP API (one link step instead of many).
//! Every test runs against SQLite, and against PostgreSQL when `SIGNALBOX_TEST_POSTGRES_URL`
//! is set (CI always sets it).

mod helpers;

mod authorization;
mod calendar;
mod conventions;
mod flag_lifecycle;
mod flags;
mod governance;
mod promotion;
mod robustness;
mod story;
mod versioning;
