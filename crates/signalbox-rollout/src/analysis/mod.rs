//! Metric analysis: what a metric is ([`MetricSpec`]), one reading of it ([`Reading`]), how a
//! reading becomes a [`Measurement`] with its explanation, and how a metric's measurements
//! become a verdict ([`MetricAssessment`]). The semantics follow Argo Rollouts' analysis (field
//! names and defaults: failure_limit 0, inconclusive_limit 0, consecutive_error_limit 4) with
//! the no-data rule made explicit, as `../shared/reference/progressive-delivery.md` §5 asks.
//!
//! CONTRACT (used by the application; keep these names and shapes):
//! - `MetricSpec::validate(&self) -> Result<(), FieldError>`
//! - `measure(spec: &MetricSpec, reading: Reading, at: DateTime<Utc>) -> Measurement`
//! - `assess(spec: &MetricSpec, measurements: &[Measurement], terminating: bool) -> MetricAssessment`
//! - `run_phase(assessments: &[MetricAssessment]) -> Phase`
//! - `next_measurement_due(spec: &MetricSpec, started_at: DateTime<Utc>, measurements: &[Measurement]) -> Option<DateTime<Utc>>`
//!   (None once the metric has completed or taken `count` measurements)
//! - `judge::compare(baseline: &[f64], canary: &[f64], spec: &JudgeSpec) -> JudgeResult`
//!
//! The exact semantics (outcome of a reading, order of the limits, what `count` counts, the
//! deliberate differences from Argo) are in [`assess`](mod@assess); the condition language in [`expr`];
//! the judge's procedure in [`judge`].
//!
//! **JSON and NaN.** JSON has no NaN or infinity and serde_json writes them as `null`; the
//! value lists below read `null` back as NaN, so a stored measurement of a NaN reading loads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

pub mod assess;
pub mod expr;
pub mod judge;

pub use assess::{assess, measure, next_measurement_due, run_phase};
pub use judge::{JudgeResult, Verdict};

/// A list of numbers in which `null` (how serde_json writes NaN and infinities) reads as NaN.
fn floats_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
    let values: Vec<Option<f64>> = Vec::deserialize(deserializer)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

fn optional_floats_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<f64>>, D::Error> {
    let values: Option<Vec<Option<f64>>> = Option::deserialize(deserializer)?;
    Ok(values.map(|values| values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect()))
}

/// Where a metric's values come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderSpec {
    /// A PromQL query against Prometheus' HTTP API (`/api/v1/query`); every sample of the
    /// resulting vector (or the scalar) is one value of `result`.
    Prometheus {
        /// Base URL, e.g. `http://127.0.0.1:9090`; absent means the server's configured one.
        #[serde(default)]
        address: Option<String>,
        query: String,
    },
    /// Values pushed to `POST /api/v1/deployments/{id}/metrics` under this name since the last
    /// measurement.
    Pushed {
        #[serde(default)]
        name: Option<String>,
    },
    /// An HTTP smoke / synthetic check: the value is the latency in milliseconds; a wrong status,
    /// a body mismatch or a latency above the bound fails the measurement.
    Http {
        #[serde(default = "default_get")]
        method: String,
        url: String,
        #[serde(default = "default_status")]
        expect_status: u16,
        #[serde(default)]
        body_contains: Option<String>,
        #[serde(default)]
        max_latency_ms: Option<u64>,
        #[serde(default = "default_http_timeout")]
        timeout_seconds: u64,
    },
}

fn default_get() -> String {
    "GET".into()
}
fn default_status() -> u16 {
    200
}
fn default_http_timeout() -> u64 {
    10
}

/// What a measurement without data means. Required on every metric: there is no silent default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoDataRule {
    Fail,
    Inconclusive,
    Pass,
}

/// One metric of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricSpec {
    pub name: String,
    pub provider: ProviderSpec,
    /// Seconds between measurements; absent means a single measurement.
    #[serde(default)]
    pub interval_seconds: Option<u64>,
    /// How many measurements; absent with an interval means until the step ends (then the
    /// metric is assessed as terminating).
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub initial_delay_seconds: u64,
    /// E.g. `result < 0.01`, `all(result, # < 0.01)`; see [`expr`] for the language.
    #[serde(default)]
    pub success_condition: Option<String>,
    #[serde(default)]
    pub failure_condition: Option<String>,
    #[serde(default)]
    pub failure_limit: u32,
    #[serde(default)]
    pub inconclusive_limit: u32,
    #[serde(default = "default_consecutive_error_limit")]
    pub consecutive_error_limit: u32,
    pub no_data: NoDataRule,
    /// Measured and shown, never part of the verdict.
    #[serde(default)]
    pub dry_run: bool,
    /// Canary-versus-baseline comparison, for metrics that have both series.
    #[serde(default)]
    pub judge: Option<JudgeSpec>,
}

pub fn default_consecutive_error_limit() -> u32 {
    4
}

/// Which change of the canary against the baseline counts as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
    Either,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JudgeSpec {
    /// A higher canary is bad (`increase`, e.g. error rate, latency), a lower one (`decrease`,
    /// e.g. throughput), or both.
    pub direction: Direction,
    /// Confidence level of the Mann-Whitney U test, e.g. 0.95.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Relative change of the means tolerated even when significant, e.g. 0.1 = 10 %.
    #[serde(default)]
    pub allowed_change: f64,
    /// Fewer values than this in either series gives `no_data` (judged by the no-data rule).
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
}

fn default_confidence() -> f64 {
    0.95
}
fn default_min_samples() -> usize {
    5
}

/// One reading from a provider, before conditions are applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reading {
    /// The values of `result` (a vector; a scalar is a vector of one).
    Values {
        #[serde(deserialize_with = "floats_or_null")]
        values: Vec<f64>,
        /// For judged metrics: the baseline series read at the same time.
        #[serde(default, deserialize_with = "optional_floats_or_null")]
        baseline: Option<Vec<f64>>,
        /// The query or URL as sent, for the explanation.
        #[serde(default)]
        source: Option<String>,
    },
    /// The provider answered, with nothing (an empty vector, no pushed values).
    NoData {
        #[serde(default)]
        source: Option<String>,
    },
    /// The provider failed (unreachable, HTTP error, malformed answer, failed smoke check
    /// transport); counts towards `consecutive_error_limit`.
    Error { message: String },
    /// A smoke check answered but failed its expectations (status, body, latency): a failed
    /// measurement whatever the conditions.
    CheckFailed {
        message: String,
        #[serde(default)]
        latency_ms: Option<f64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Successful,
    Inconclusive,
    Error,
    Failed,
}

/// One measurement with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Measurement {
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    /// The values the conditions saw (empty when there was no data or an error).
    #[serde(default, deserialize_with = "floats_or_null")]
    pub values: Vec<f64>,
    #[serde(default, deserialize_with = "optional_floats_or_null")]
    pub baseline: Option<Vec<f64>>,
    /// True when the provider answered without data; `outcome` is then the no-data rule's.
    #[serde(default)]
    pub no_data: bool,
    /// The condition that decided, as written (`result < 0.01`), or the rule (`no_data: fail`).
    #[serde(default)]
    pub condition: Option<String>,
    /// A full sentence: what was measured, against what, and why this outcome.
    pub explanation: String,
    #[serde(default)]
    pub judge: Option<judge::JudgeResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    Running,
    Successful,
    Inconclusive,
    Error,
    Failed,
}

impl Phase {
    pub fn is_completed(self) -> bool {
        !matches!(self, Phase::Pending | Phase::Running)
    }
}

/// A metric's verdict so far, with its counts and the reason in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricAssessment {
    pub metric: String,
    pub phase: Phase,
    pub successful: u32,
    pub failed: u32,
    pub inconclusive: u32,
    pub errors: u32,
    pub consecutive_errors: u32,
    pub dry_run: bool,
    pub reason: String,
}

/// A bad specification, naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}
