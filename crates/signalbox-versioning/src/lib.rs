//! Versions and changelogs from git history: Conventional Commits 1.0.0 parsing, SemVer 2.0.0
//! next versions with documented 0.x rules and pre-release channels, and Keep a Changelog 1.1.0
//! changelogs (Markdown, JSON, minijinja templates), read with gix in one pass over history.
//! No server dependency: the CLI and the server both call in here.

pub mod changelog;
pub mod config;
pub mod history;
pub mod message;
pub mod render;
pub mod version;

pub use changelog::{
    changes_between, changes_between_in, check_scope, generate, generate_each, next_version, Changelog, Entry, NextVersion, RangeChanges,
    Release, Selection,
};
pub use config::ChangelogConfig;

/// Errors name the input at fault (a flag, a config key, a ref) and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("git: {0}")]
    Git(String),
}
