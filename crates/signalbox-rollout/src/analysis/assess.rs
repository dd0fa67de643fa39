//! See the contract in `analysis/mod.rs`. (Being written: these placeholders only keep the crate compiling.)
use super::*;

pub fn measure(_spec: &MetricSpec, _reading: Reading, at: DateTime<Utc>) -> Measurement {
    Measurement { at, outcome: Outcome::Error, values: vec![], baseline: None, no_data: false, condition: None, explanation: "not yet implemented".into(), judge: None }
}
pub fn assess(spec: &MetricSpec, _measurements: &[Measurement], _terminating: bool) -> MetricAssessment {
    MetricAssessment { metric: spec.name.clone(), phase: Phase::Pending, successful: 0, failed: 0, inconclusive: 0, errors: 0, consecutive_errors: 0, dry_run: spec.dry_run, reason: String::new() }
}
pub fn run_phase(_assessments: &[MetricAssessment]) -> Phase {
    Phase::Pending
}
pub fn next_measurement_due(_spec: &MetricSpec, _started_at: DateTime<Utc>, _measurements: &[Measurement]) -> Option<DateTime<Utc>> {
    None
}
