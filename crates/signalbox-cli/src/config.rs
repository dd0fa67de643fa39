//! Server configuration: built-in defaults, then a TOML file (`--config` or
//! `SIGNALBOX_CONFIG`), then `SIGNALBOX_*` environment variables, then command-line flags.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL; empty for SQLite in `data_dir`.
    pub database_url: String,
    /// The PostgreSQL pool's size; [`default_max_connections`] unless set.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    pub log_format: LogFormat,
    pub log_level: String,
    pub max_body_bytes: usize,
    pub shutdown_grace_seconds: u64,
    /// `signalbox changelog` and `signalbox version next` (docs/VERSIONING.md).
    #[serde(default)]
    pub changelog: signalbox_versioning::ChangelogConfig,
    /// Risk weights and the Rego time limit (docs/GOVERNANCE.md).
    #[serde(default)]
    pub governance: GovernanceConfig,
    /// The rollout controller (docs/PROMOTION.md).
    #[serde(default)]
    pub rollouts: RolloutsConfig,
    /// Services' git repositories (docs/VERSIONING.md, "In the server").
    #[serde(default)]
    pub repositories: RepositoriesConfig,
    /// The background scheduler (docs/CALENDAR.md, "Trains and the scheduler").
    #[serde(default)]
    pub scheduler: SchedulerConfig,
}

/// The `[scheduler]` section. `SIGNALBOX_SCHEDULER` sets `mode` and
/// `SIGNALBOX_SCHEDULER_INTERVAL_SECS` sets `interval_secs`, overriding the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// `on`, or `off` on a process that must not run timed work (nor the rollout controller).
    pub mode: SchedulerMode,
    /// Seconds between two ticks, 1 to 3600.
    pub interval_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerMode {
    On,
    Off,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { mode: SchedulerMode::On, interval_secs: 15 }
    }
}

impl SchedulerConfig {
    /// Refuses an interval that is zero (a busy loop) or over an hour (departures late by it).
    pub fn options(&self) -> Result<signalbox_server::SchedulerOptions, String> {
        if !(1..=3600).contains(&self.interval_secs) {
            return Err(format!(
                "scheduler.interval_secs: {} is not between 1 and 3600 seconds (SIGNALBOX_SCHEDULER_INTERVAL_SECS overrides the file)",
                self.interval_secs
            ));
        }
        Ok(signalbox_server::SchedulerOptions {
            enabled: self.mode == SchedulerMode::On,
            interval: std::time::Duration::from_secs(self.interval_secs),
        })
    }
}

/// The `[repositories]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RepositoriesConfig {
    /// Where remote repositories are mirrored; empty: `<data_dir>/repositories`.
    pub mirror_dir: String,
    /// A mirror last fetched longer ago than this is fetched before change import and live
    /// release notes read it; unset: 60 s; 0: before every read.
    pub refresh_interval_secs: Option<u64>,
}

impl Settings {
    /// The mirror directory in effect.
    pub fn mirror_dir(&self) -> PathBuf {
        if self.repositories.mirror_dir.is_empty() {
            self.data_dir.join("repositories")
        } else {
            PathBuf::from(&self.repositories.mirror_dir)
        }
    }
}

/// The `[rollouts]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutsConfig {
    /// Prometheus for metrics whose provider names no `address`, e.g. `http://127.0.0.1:9090`.
    pub prometheus_url: Option<String>,
}

/// The `[governance]` section: configuration, not policy (policies live in the database).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// Wall-clock limit for one Rego rule's evaluation, in milliseconds.
    pub rego_time_limit_ms: u64,
    /// `[governance.risk_weights]`: points per risk factor and the level thresholds.
    pub risk_weights: signalbox_governance::risk::RiskWeights,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            rego_time_limit_ms: signalbox_governance::rego::DEFAULT_TIME_LIMIT.as_millis() as u64,
            risk_weights: signalbox_governance::risk::RiskWeights::default(),
        }
    }
}

impl GovernanceConfig {
    /// Refuses settings that would make decisions meaningless.
    pub fn settings(&self) -> Result<signalbox_app::governance::GovernanceSettings, String> {
        if self.rego_time_limit_ms == 0 || self.rego_time_limit_ms > 60_000 {
            return Err("governance.rego_time_limit_ms: must be between 1 and 60000".into());
        }
        let w = &self.risk_weights;
        if !(w.medium_from < w.high_from && w.high_from < w.critical_from) {
            return Err("governance.risk_weights: medium_from < high_from < critical_from must hold".into());
        }
        Ok(signalbox_app::governance::GovernanceSettings {
            risk_weights: w.clone(),
            rego_time_limit: std::time::Duration::from_millis(self.rego_time_limit_ms),
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./signalbox-data"),
            database_url: String::new(),
            max_connections: default_max_connections(),
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_seconds: 30,
            changelog: signalbox_versioning::ChangelogConfig::default(),
            governance: GovernanceConfig::default(),
            rollouts: RolloutsConfig::default(),
            repositories: RepositoriesConfig::default(),
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// The environment variables that configure the server (the client's `SIGNALBOX_URL` and
/// `SIGNALBOX_TOKEN`, and `SIGNALBOX_BOOTSTRAP_TOKEN`, are read elsewhere).
pub const ENV_KEYS: [&str; 8] =
    ["listen", "data_dir", "database_url", "max_connections", "log_format", "log_level", "max_body_bytes", "shutdown_grace_seconds"];

/// The `[changelog]` keys that environment variables may set (`SIGNALBOX_CHANGELOG_TAG_PATTERN`, …).
pub const CHANGELOG_ENV_KEYS: [&str; 7] =
    ["tag_pattern", "include_prereleases", "filter_unconventional", "include_merge_commits", "issue_url", "commit_url", "contributors"];

/// The PostgreSQL pool's default size on this host: [`pool_size_for`] its CPU cores.
pub fn default_max_connections() -> u32 {
    pool_size_for(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// Four connections per CPU core, at least 4 and at most 16.
///
/// Why not more: a request holds its connection only while its statements run, so past a few
/// per core more connections do not add work done; they move the queue of waiting requests from
/// the pool (a cheap async wait in this process) into PostgreSQL's row-lock queues (the audit
/// chain's head, the release counter), where every wait and wake-up costs database CPU. On a
/// 2-core host, 8 instead of 16 raised the benchmark's throughput by 6–8 % and cut its p99 from
/// about 65 ms to about 20 ms (docs/BENCHMARKS.md, "Eleventh session"). At most 16 so that a few
/// replicas stay within PostgreSQL's default `max_connections` (100).
pub fn pool_size_for(cores: usize) -> u32 {
    u32::try_from(cores.saturating_mul(4)).unwrap_or(u32::MAX).clamp(4, 16)
}

impl Settings {
    pub fn load(file: Option<&Path>) -> Result<Settings, String> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!("--config {}: file not found", path.display()));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("SIGNALBOX_").only(&ENV_KEYS));
        // `SIGNALBOX_CHANGELOG_<KEY>` sets a scalar key of the `[changelog]` section.
        figment = figment.merge(Env::prefixed("SIGNALBOX_CHANGELOG_").only(&CHANGELOG_ENV_KEYS).map(|k| format!("changelog.{k}").into()));
        // `SIGNALBOX_PROMETHEUS_URL` sets `[rollouts] prometheus_url`.
        figment = figment.merge(Env::prefixed("SIGNALBOX_").only(&["prometheus_url"]).map(|k| format!("rollouts.{k}").into()));
        // `SIGNALBOX_MIRROR_DIR` sets `[repositories] mirror_dir`.
        figment = figment.merge(Env::prefixed("SIGNALBOX_").only(&["mirror_dir"]).map(|k| format!("repositories.{k}").into()));
        // `SIGNALBOX_SCHEDULER` sets `[scheduler] mode`, `SIGNALBOX_SCHEDULER_INTERVAL_SECS` its interval.
        figment = figment.merge(Env::prefixed("SIGNALBOX_").only(&["scheduler"]).map(|_| "scheduler.mode".into()));
        figment = figment.merge(Env::prefixed("SIGNALBOX_SCHEDULER_").only(&["interval_secs"]).map(|k| format!("scheduler.{k}").into()));
        let settings: Settings = figment.extract().map_err(|e| {
            let mut msg = String::from("invalid configuration");
            for err in e {
                msg.push_str(&format!("\n  - {err}"));
            }
            msg
        })?;
        if settings.max_connections == 0 {
            return Err("invalid configuration\n  - max_connections is 0: the pool needs at least 1 connection (SIGNALBOX_MAX_CONNECTIONS or max_connections in the file)".into());
        }
        Ok(settings)
    }
}

/// The annotated defaults `signalbox config default` prints.
pub fn annotated_defaults() -> String {
    let d = Settings::default();
    format!(
        r#"# Signalbox server configuration.
# Precedence: these defaults < this file (--config FILE or SIGNALBOX_CONFIG) < SIGNALBOX_* variables < flags.
# Every key can be set from the environment as SIGNALBOX_<KEY IN UPPER CASE>, e.g. SIGNALBOX_LISTEN.

# Address the HTTP server listens on. (--listen, SIGNALBOX_LISTEN)
listen = "{listen}"

# Directory of the embedded SQLite database (signalbox.db, WAL mode, synchronous=FULL).
# (--data, SIGNALBOX_DATA_DIR)
data_dir = "{data_dir}"

# PostgreSQL URL, e.g. "postgres://signalbox@db.internal/signalbox". When set, data_dir is not
# used and any number of replicas may share the database. (--database-url, SIGNALBOX_DATABASE_URL)
database_url = ""

# Connections in the database pool (PostgreSQL), per replica. Unset, it is 4 per CPU core of the
# host it runs on, between 4 and 16 ({max_connections} here). More only moves waiting requests into
# PostgreSQL's lock queues; keep replicas x max_connections below the server's max_connections.
# (SIGNALBOX_MAX_CONNECTIONS)
# max_connections = {max_connections}

# "pretty" for people, "json" for log collectors; every request line carries its request id.
# (--log-format, SIGNALBOX_LOG_FORMAT)
log_format = "pretty"

# tracing filter, e.g. "info" or "signalbox_server=debug,info". (SIGNALBOX_LOG_LEVEL; RUST_LOG wins)
log_level = "{log_level}"

# Largest accepted request body in bytes; larger bodies get 413. (SIGNALBOX_MAX_BODY_BYTES)
max_body_bytes = {max_body_bytes}

# Seconds to let in-flight requests finish after SIGTERM. (SIGNALBOX_SHUTDOWN_GRACE_SECONDS)
shutdown_grace_seconds = {grace}

# Changelogs and next versions (`signalbox changelog`, `signalbox version next`) read a [changelog]
# section; its keys and defaults (git-cliff's default groups) are in docs/VERSIONING.md.

# Governance settings; policies themselves live in the database (PUT /api/v1/policies).
# [governance]
# rego_time_limit_ms = {rego_ms}     # wall-clock limit for one Rego rule
# [governance.risk_weights]        # points per factor; every key and default is in docs/GOVERNANCE.md
# customer_facing = 20.0
# schema_migration and other flags: [governance.risk_weights.flags] schema_migration = 15.0

# The rollout controller (docs/PROMOTION.md).
# [rollouts]
# prometheus_url = "http://127.0.0.1:9090"   # for metrics whose provider names no address (SIGNALBOX_PROMETHEUS_URL)

# Services' git repositories (docs/VERSIONING.md, "In the server"): file://, https:// and ssh://
# repositories are mirrored here (bare clones, fetched when a commit is missing or the mirror is
# older than refresh_interval_secs). Empty means
# <data_dir>/repositories. On PostgreSQL set it to a local disk of each replica; mirrors are caches
# and are never shared. Release notes and change import use the [changelog] section's groups.
# [repositories]
# mirror_dir = "/var/lib/signalbox/repositories"   # (SIGNALBOX_MIRROR_DIR)
# refresh_interval_secs = 60   # fetch a mirror older than this before reading it; 0: every time

# Not in this file on purpose: SIGNALBOX_BOOTSTRAP_TOKEN (sbx_ + at least 32 characters) sets the
# admin token created at first start instead of printing a random one.

# The background scheduler (docs/CALENDAR.md): train cut-offs and departures, booking expiry,
# scheduled flag changes; every replica runs it and each job fires once. "off" keeps a process
# from running timed work and the rollout controller. (SIGNALBOX_SCHEDULER=off)
[scheduler]
mode = "on"
# Seconds between two ticks, 1 to 3600. (SIGNALBOX_SCHEDULER_INTERVAL_SECS)
interval_secs = {scheduler_secs}
"#,
        listen = d.listen,
        data_dir = d.data_dir.display(),
        max_connections = d.max_connections,
        log_level = d.log_level,
        max_body_bytes = d.max_body_bytes,
        grace = d.shutdown_grace_seconds,
        rego_ms = d.governance.rego_time_limit_ms,
        scheduler_secs = d.scheduler.interval_secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_weights_and_the_rego_limit_come_from_the_governance_section() {
        let dir = std::env::temp_dir().join(format!("signalbox-governance-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("signalbox.toml");
        std::fs::write(&file, "[governance]\nrego_time_limit_ms = 40\n[governance.risk_weights]\ncustomer_facing = 35.0\n").unwrap();
        let settings = Settings::load(Some(&file)).unwrap();
        let g = settings.governance.settings().unwrap();
        assert_eq!(g.rego_time_limit, std::time::Duration::from_millis(40));
        assert_eq!(g.risk_weights.customer_facing, 35.0);
        // Keys not given keep their defaults.
        assert_eq!(g.risk_weights.sensitive_data, signalbox_governance::risk::RiskWeights::default().sensitive_data);

        std::fs::write(&file, "[governance.risk_weights]\nhigh_from = 90.0\n").unwrap();
        let err = Settings::load(Some(&file)).unwrap().governance.settings().unwrap_err();
        assert!(err.contains("high_from"), "{err}");
        std::fs::write(&file, "[governance]\nrego_limit = 3\n").unwrap();
        assert!(Settings::load(Some(&file)).unwrap_err().contains("rego_limit"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_annotated_defaults_parse_back_to_the_defaults() {
        let dir = std::env::temp_dir().join(format!("signalbox-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("signalbox.toml");
        std::fs::write(&file, annotated_defaults()).unwrap();
        let parsed: Settings = Figment::from(Toml::file(&file)).extract().unwrap();
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    fn the_prometheus_url_comes_from_the_rollouts_section() {
        let dir = std::env::temp_dir().join(format!("signalbox-rollouts-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("signalbox.toml");
        std::fs::write(&file, "[rollouts]\nprometheus_url = \"http://prom:9090\"\n").unwrap();
        assert_eq!(Settings::load(Some(&file)).unwrap().rollouts.prometheus_url.as_deref(), Some("http://prom:9090"));
        std::fs::write(&file, "[rollouts]\nprometheus = \"x\"\n").unwrap();
        assert!(Settings::load(Some(&file)).unwrap_err().contains("prometheus"), "unknown keys are refused");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_mirror_directory_defaults_under_the_data_directory() {
        let dir = std::env::temp_dir().join(format!("signalbox-mirror-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("signalbox.toml");
        std::fs::write(&file, "data_dir = \"/d\"\n").unwrap();
        assert_eq!(Settings::load(Some(&file)).unwrap().mirror_dir(), PathBuf::from("/d/repositories"));
        std::fs::write(&file, "[repositories]\nmirror_dir = \"/m\"\n").unwrap();
        assert_eq!(Settings::load(Some(&file)).unwrap().mirror_dir(), PathBuf::from("/m"));
        std::fs::write(&file, "[repositories]\nmirror = \"/m\"\n").unwrap();
        assert!(Settings::load(Some(&file)).unwrap_err().contains("mirror"), "unknown keys are refused");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_scheduler_comes_from_its_section_and_its_interval_is_bounded() {
        let dir = std::env::temp_dir().join(format!("signalbox-scheduler-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("signalbox.toml");
        std::fs::write(&file, "[scheduler]\nmode = \"off\"\ninterval_secs = 40\n").unwrap();
        let options = Settings::load(Some(&file)).unwrap().scheduler.options().unwrap();
        assert_eq!(options, signalbox_server::SchedulerOptions { enabled: false, interval: std::time::Duration::from_secs(40) });
        assert_eq!(Settings::default().scheduler.options().unwrap(), signalbox_server::SchedulerOptions::default());
        for bad in ["interval_secs = 0", "interval_secs = 3601"] {
            std::fs::write(&file, format!("[scheduler]\n{bad}\n")).unwrap();
            let err = Settings::load(Some(&file)).unwrap().scheduler.options().unwrap_err();
            assert!(err.contains("scheduler.interval_secs"), "{err}");
        }
        std::fs::write(&file, "[scheduler]\nmode = \"sometimes\"\n").unwrap();
        assert!(Settings::load(Some(&file)).unwrap_err().contains("sometimes"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_pool_size_follows_the_file_and_an_empty_pool_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("signalbox-pool-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("signalbox.toml");
        assert_eq!([1, 2, 3, 4, 64].map(pool_size_for), [4, 8, 12, 16, 16]);
        assert_eq!(Settings::default().max_connections, default_max_connections());
        std::fs::write(&file, "listen = \"127.0.0.1:9\"\n").unwrap();
        assert_eq!(Settings::load(Some(&file)).unwrap().max_connections, default_max_connections(), "unset means this host's default");
        std::fs::write(&file, "max_connections = 3\n").unwrap();
        assert_eq!(Settings::load(Some(&file)).unwrap().max_connections, 3);
        std::fs::write(&file, "max_connections = 0\n").unwrap();
        let err = Settings::load(Some(&file)).unwrap_err();
        assert!(err.contains("max_connections") && err.contains("at least 1"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("signalbox-config-test2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "lisen = \"0.0.0.0:1\"\n").unwrap();
        let err = Settings::load(Some(&file)).unwrap_err();
        assert!(err.contains("lisen"), "{err}");
    }
}
