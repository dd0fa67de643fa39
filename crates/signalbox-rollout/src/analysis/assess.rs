//! Validation of a [`MetricSpec`], one reading to a [`Measurement`] ([`measure`]), a metric's
//! measurements to a [`MetricAssessment`] ([`assess`](fn@assess)), all metrics to a run [`Phase`]
//! ([`run_phase`]), and when to measure next ([`next_measurement_due`]).
//!
//! **One measurement** ([`measure`]), following Argo Rollouts where it is sound:
//! - values: the failure condition first (true: failed), then the success condition (true:
//!   successful); neither true, or none defined: **inconclusive** — a metric without
//!   conditions is observed, never silently successful. Exception: an HTTP smoke check without
//!   conditions succeeds when it answered as expected (its expectations are its conditions).
//!   A condition that cannot be evaluated (e.g. `result < 1` on several values) is an error.
//! - with a judge and a baseline series: the failure condition stays a hard guard, then the
//!   judge decides (high/low in the bad direction: failed; pass: successful; too few values:
//!   the no-data rule). The success condition is not consulted. Without a baseline series the
//!   conditions decide as above and the explanation says the judge could not run.
//! - an empty vector or no data: the metric's `no_data` rule (`fail`, `inconclusive`, `pass`),
//!   flagged `no_data: true`; a provider error: error; a failed smoke check: failed.
//!
//! **A metric** ([`assess`](fn@assess)) walks its measurements in order and stops at the first that
//! completes it, so a completed metric stays completed whatever is appended later (Argo keeps
//! the phase it stored; this crate is stateless and gets the same effect):
//! 1. no measurement: pending, or successful when terminating (Argo: the analysis ended before
//!    anything was measured — the reason says nothing was observed);
//! 2. `failed > failure_limit`: failed; 3. `inconclusive > inconclusive_limit`: inconclusive;
//! 4. `consecutive_errors > consecutive_error_limit`: error (a non-error measurement resets
//!    the run of errors);
//! 5. `count` reached — counting non-error measurements, as Argo does, so an error is retried
//!    ([`ERROR_RETRY_SECONDS`]) rather than used up; without `interval_seconds` the count is 1:
//!    successful if at least one measurement was successful, otherwise the worst outcome seen
//!    (failed, then inconclusive). Argo reports successful there (argo-rollouts#2026, #4479);
//!    a metric that never once succeeded does not pass here.
//! 6. terminating (the step ended) before completion: the same rule as 5 on what was measured;
//!    otherwise running.
//!
//! **A run** ([`run_phase`]): dry-run metrics never count. A failed metric fails the run at
//! once, then an errored one; otherwise the run waits for every metric (pending while all are
//! pending), and ends inconclusive if any metric is, else successful. No metrics: successful.

use chrono::TimeDelta;

use super::judge::{self, Verdict};
use super::*;

/// The longest `interval_seconds` and `initial_delay_seconds` accepted: 30 days.
pub const MAX_DURATION_SECONDS: u64 = 30 * 24 * 60 * 60;
/// After an error the next measurement is due this soon (or after `interval_seconds`, if
/// shorter), as Argo Rollouts' error retry interval.
pub const ERROR_RETRY_SECONDS: u64 = 10;
/// The longest metric name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

const HTTP_METHODS: [&str; 4] = ["GET", "HEAD", "POST", "PUT"];

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: format!("metrics[].{field}"), message: message.into() }
}

fn check_url(field: &str, url: &str) -> Result<(), FieldError> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control()) => Ok(()),
        _ => Err(field_error(
            field,
            format!("must be an http:// or https:// URL without spaces, e.g. `https://app.example/healthz`; found `{url}`"),
        )),
    }
}

impl MetricSpec {
    /// Checks everything that can be checked before the first measurement; the error names the
    /// field (`metrics[].failure_condition`) and says how to fix it.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.name.trim().is_empty() {
            return Err(field_error("name", "must not be empty; name the metric, e.g. `error-rate`"));
        }
        if self.name.len() > MAX_NAME_LEN {
            return Err(field_error("name", format!("must be at most {MAX_NAME_LEN} bytes long")));
        }
        match &self.provider {
            ProviderSpec::Prometheus { address, query } => {
                if query.trim().is_empty() {
                    return Err(field_error(
                        "provider.query",
                        "must not be empty; give a PromQL query, e.g. `sum(rate(http_requests_total{code=~\"5..\"}[5m]))`",
                    ));
                }
                if let Some(address) = address {
                    check_url("provider.address", address)?;
                }
            }
            ProviderSpec::Pushed { name } => {
                if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                    return Err(field_error("provider.name", "must not be empty; omit it to use the metric's name"));
                }
            }
            ProviderSpec::Http { method, url, expect_status, max_latency_ms, timeout_seconds, .. } => {
                check_url("provider.url", url)?;
                if !HTTP_METHODS.contains(&method.as_str()) {
                    return Err(field_error("provider.method", format!("must be GET, HEAD, POST or PUT (upper case); found `{method}`")));
                }
                if !(100..=599).contains(expect_status) {
                    return Err(field_error(
                        "provider.expect_status",
                        format!("must be an HTTP status from 100 to 599; found {expect_status}"),
                    ));
                }
                if *timeout_seconds == 0 || *timeout_seconds > 300 {
                    return Err(field_error("provider.timeout_seconds", format!("must be from 1 to 300 seconds; found {timeout_seconds}")));
                }
                if *max_latency_ms == Some(0) {
                    return Err(field_error("provider.max_latency_ms", "must be at least 1 ms; omit it to not bound the latency"));
                }
            }
        }
        if let Some(interval) = self.interval_seconds {
            if interval == 0 || interval > MAX_DURATION_SECONDS {
                return Err(field_error(
                    "interval_seconds",
                    format!(
                        "must be from 1 to {MAX_DURATION_SECONDS} seconds (30 days); omit it for a single measurement; found {interval}"
                    ),
                ));
            }
        }
        if self.initial_delay_seconds > MAX_DURATION_SECONDS {
            return Err(field_error("initial_delay_seconds", format!("must be at most {MAX_DURATION_SECONDS} seconds (30 days)")));
        }
        match (self.count, self.interval_seconds) {
            (Some(0), _) => {
                return Err(field_error("count", "must be at least 1; omit it with an interval to measure until the step ends"))
            }
            (Some(count), None) if count > 1 => {
                return Err(field_error(
                    "interval_seconds",
                    format!(
                        "is required with count {count}: set the seconds between measurements, or use count 1 for a single measurement"
                    ),
                ))
            }
            _ => {}
        }
        for (field, condition) in [("success_condition", &self.success_condition), ("failure_condition", &self.failure_condition)] {
            if let Some(source) = condition {
                if let Err(e) = expr::parse(source) {
                    return Err(field_error(
                        field,
                        format!("`{}` is not a valid condition: at position {}, {}", shorten(source, 200), e.position, e.message),
                    ));
                }
            }
        }
        if let Some(judge) = &self.judge {
            if !(judge.confidence > 0.5 && judge.confidence < 1.0) {
                return Err(field_error(
                    "judge.confidence",
                    format!("must be between 0.5 and 1 (both excluded), e.g. 0.95 for a 5% false alarm rate; found {}", judge.confidence),
                ));
            }
            if judge.min_samples < 3 {
                return Err(field_error(
                    "judge.min_samples",
                    format!("must be at least 3: fewer values cannot show a significant difference; found {}", judge.min_samples),
                ));
            }
            if !(judge.allowed_change.is_finite() && judge.allowed_change >= 0.0) {
                return Err(field_error(
                    "judge.allowed_change",
                    format!("must be a fraction of at least 0, e.g. 0.1 to tolerate a 10% change; found {}", judge.allowed_change),
                ));
            }
        }
        Ok(())
    }

    /// How many non-error measurements complete the metric: `count`, or 1 without an interval;
    /// `None` means until the step ends.
    pub fn effective_count(&self) -> Option<u32> {
        match (self.count, self.interval_seconds) {
            (Some(count), _) => Some(count),
            (None, None) => Some(1),
            (None, Some(_)) => None,
        }
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!("{kept}…")
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Successful => "successful",
        Outcome::Inconclusive => "inconclusive",
        Outcome::Error => "error",
        Outcome::Failed => "failed",
    }
}

fn rule_word(rule: NoDataRule) -> &'static str {
    match rule {
        NoDataRule::Fail => "fail",
        NoDataRule::Inconclusive => "inconclusive",
        NoDataRule::Pass => "pass",
    }
}

fn rule_outcome(rule: NoDataRule) -> Outcome {
    match rule {
        NoDataRule::Fail => Outcome::Failed,
        NoDataRule::Inconclusive => Outcome::Inconclusive,
        NoDataRule::Pass => Outcome::Successful,
    }
}

fn direction_word(direction: Direction) -> &'static str {
    match direction {
        Direction::Increase => "increase",
        Direction::Decrease => "decrease",
        Direction::Either => "either",
    }
}

fn from_source(source: &Option<String>) -> String {
    match source {
        Some(s) if !s.trim().is_empty() => format!(" from `{}`", shorten(s.trim(), 160)),
        _ => String::new(),
    }
}

fn evaluate(source: &str, values: &[f64]) -> Result<bool, String> {
    let parsed = expr::parse(source).map_err(|e| format!("it does not parse ({e})"))?;
    expr::eval(&parsed, values).map_err(|e| e.message)
}

/// Turns one reading into a measurement with its explanation; see the module documentation.
pub fn measure(spec: &MetricSpec, reading: Reading, at: DateTime<Utc>) -> Measurement {
    let when = at.format("%H:%M:%SZ");
    let name = &spec.name;
    let mut m = Measurement {
        at,
        outcome: Outcome::Error,
        values: vec![],
        baseline: None,
        no_data: false,
        condition: None,
        explanation: String::new(),
        judge: None,
    };
    match reading {
        Reading::Values { values, baseline, source } if values.is_empty() => {
            m.baseline = baseline;
            apply_no_data(spec, &mut m, format!("{name}: no values{} at {when}", from_source(&source)));
        }
        Reading::NoData { source } => {
            apply_no_data(spec, &mut m, format!("{name}: no data{} at {when}", from_source(&source)));
        }
        Reading::Error { message } => {
            m.explanation = format!(
                "{name}: the measurement at {when} could not be taken: {} → error (more than {} in a row make the metric an error)",
                message.trim(),
                spec.consecutive_error_limit
            );
        }
        Reading::CheckFailed { message, latency_ms } => {
            m.outcome = Outcome::Failed;
            m.values = latency_ms.into_iter().collect();
            let latency = latency_ms.map(|l| format!(" after {} ms", judge::number(l))).unwrap_or_default();
            m.explanation = format!("{name}: the smoke check at {when} failed{latency}: {} → failed", message.trim());
        }
        Reading::Values { values, baseline, source } => {
            m.values = values;
            m.baseline = baseline;
            measure_values(spec, &mut m, &when.to_string(), &source);
        }
    }
    m
}

fn apply_no_data(spec: &MetricSpec, m: &mut Measurement, subject: String) {
    let rule = rule_word(spec.no_data);
    m.outcome = rule_outcome(spec.no_data);
    m.no_data = true;
    m.condition = Some(format!("no_data: {rule}"));
    m.explanation = format!("{subject}; no_data: {rule} → {}", outcome_word(m.outcome));
}

fn measure_values(spec: &MetricSpec, m: &mut Measurement, when: &str, source: &Option<String>) {
    let name = &spec.name;
    let from = from_source(source);
    let subject = format!("{name}: result = {}{from} at {when}", expr::list_values(&m.values));
    let decide = |m: &mut Measurement, outcome: Outcome, condition: Option<String>, text: String| {
        m.outcome = outcome;
        m.condition = condition;
        m.explanation = format!("{text} → {}", outcome_word(outcome));
    };
    let mut clauses: Vec<String> = Vec::new();

    if let Some(source) = &spec.failure_condition {
        match evaluate(source, &m.values) {
            Ok(true) => {
                return decide(m, Outcome::Failed, Some(source.clone()), format!("{subject}; failure condition `{source}` is true"));
            }
            Ok(false) => clauses.push(format!("failure condition `{source}` is false")),
            Err(e) => {
                return decide(
                    m,
                    Outcome::Error,
                    Some(source.clone()),
                    format!("{subject}; failure condition `{source}` cannot be evaluated: {e}"),
                );
            }
        }
    }

    if let Some(judge_spec) = &spec.judge {
        if let Some(baseline) = &m.baseline {
            let result = judge::compare(baseline, &m.values, judge_spec);
            let guard = clauses.first().map(|c| format!("; {c}")).unwrap_or_default();
            let subject = format!("{name}: canary against baseline{from} at {when}{guard}; judge: {}", result.explanation);
            let condition = format!("judge: {}, confidence {}", direction_word(judge_spec.direction), judge_spec.confidence);
            match result.verdict {
                Verdict::High | Verdict::Low => decide(m, Outcome::Failed, Some(condition), subject),
                Verdict::Pass => decide(m, Outcome::Successful, Some(condition), subject),
                Verdict::NoData => {
                    let rule = rule_word(spec.no_data);
                    m.no_data = true;
                    decide(m, rule_outcome(spec.no_data), Some(format!("no_data: {rule}")), format!("{subject}; no_data: {rule}"));
                }
            }
            m.judge = Some(result);
            return;
        }
        clauses.push("no baseline series was read, so the judge could not run".into());
    }

    if let Some(source) = &spec.success_condition {
        match evaluate(source, &m.values) {
            Ok(true) => {
                let text = std::iter::once(subject.clone()).chain(clauses).chain([format!("success condition `{source}` is true")]);
                return decide(m, Outcome::Successful, Some(source.clone()), text.collect::<Vec<_>>().join("; "));
            }
            Ok(false) => clauses.push(format!("success condition `{source}` is false")),
            Err(e) => {
                return decide(
                    m,
                    Outcome::Error,
                    Some(source.clone()),
                    format!("{subject}; success condition `{source}` cannot be evaluated: {e}"),
                );
            }
        }
    }

    let no_conditions = spec.success_condition.is_none() && spec.failure_condition.is_none();
    if no_conditions && spec.judge.is_none() {
        if let ProviderSpec::Http { method, url, expect_status, .. } = &spec.provider {
            let text =
                format!("{name}: {method} {} answered {expect_status} as expected in {} ms at {when}", shorten(url, 160), m.values_text());
            return decide(m, Outcome::Successful, Some("smoke check".into()), text);
        }
        let text = format!("{subject}; no success or failure condition and no judge is defined, so the value is only observed");
        return decide(m, Outcome::Inconclusive, None, text);
    }
    let nan_note = if m.values.iter().any(|v| v.is_nan()) {
        " (result contains NaN, and every comparison with NaN is false; test it with isNaN)"
    } else {
        ""
    };
    let text = format!("{subject}; {}{nan_note}", clauses.join(" and "));
    decide(m, Outcome::Inconclusive, None, text);
}

impl Measurement {
    fn values_text(&self) -> String {
        match self.values.as_slice() {
            [x] => judge::number(*x),
            values => expr::list_values(values),
        }
    }
}

/// Where the assessment stopped and why.
struct Decision {
    phase: Phase,
    reason: String,
}

/// Assesses a metric from its measurements (oldest first); see the module documentation.
pub fn assess(spec: &MetricSpec, measurements: &[Measurement], terminating: bool) -> MetricAssessment {
    let mut a = MetricAssessment {
        metric: spec.name.clone(),
        phase: Phase::Pending,
        successful: 0,
        failed: 0,
        inconclusive: 0,
        errors: 0,
        consecutive_errors: 0,
        dry_run: spec.dry_run,
        reason: String::new(),
    };
    let count = spec.effective_count();
    let mut taken = 0u32;
    let mut decision = None;
    let mut used = 0;
    for m in measurements {
        used += 1;
        match m.outcome {
            Outcome::Successful => a.successful += 1,
            Outcome::Failed => a.failed += 1,
            Outcome::Inconclusive => a.inconclusive += 1,
            Outcome::Error => a.errors += 1,
        }
        if m.outcome == Outcome::Error {
            a.consecutive_errors += 1;
        } else {
            a.consecutive_errors = 0;
            taken += 1;
        }
        decision = limit_crossed(spec, &a, m).or_else(|| {
            count
                .filter(|c| taken >= *c)
                .map(|c| Decision { phase: verdict_on_what_was_measured(&a), reason: format!("count {c} reached: {}", tally(spec, &a)) })
        });
        if decision.is_some() {
            break;
        }
    }
    let decision = decision.unwrap_or_else(|| {
        if measurements.is_empty() {
            if terminating {
                Decision {
                    phase: Phase::Successful,
                    reason: "the analysis ended before any measurement was taken, so nothing was observed; assessed successful, as Argo Rollouts does"
                        .into(),
                }
            } else {
                Decision { phase: Phase::Pending, reason: "no measurement yet".into() }
            }
        } else if terminating {
            Decision {
                phase: verdict_on_what_was_measured(&a),
                reason: format!("the analysis ended after {}: {}", plural(measurements.len(), "measurement"), tally(spec, &a)),
            }
        } else {
            let progress = match count {
                Some(c) => format!("{taken} of {c} measurements"),
                None => format!("{} so far, until the step ends", plural(taken as usize, "measurement")),
            };
            Decision { phase: Phase::Running, reason: format!("{progress}: {}", tally(spec, &a)) }
        }
    });
    a.phase = decision.phase;
    a.reason = decision.reason;
    let ignored = measurements.len() - used;
    if ignored > 0 {
        a.reason.push_str(&format!(" ({} taken after the metric completed do not change it)", plural(ignored, "measurement")));
    }
    a
}

fn limit_crossed(spec: &MetricSpec, a: &MetricAssessment, latest: &Measurement) -> Option<Decision> {
    let (phase, text) = if a.failed > spec.failure_limit {
        (Phase::Failed, format!("failed {} > failure_limit {}", a.failed, spec.failure_limit))
    } else if a.inconclusive > spec.inconclusive_limit {
        (Phase::Inconclusive, format!("inconclusive {} > inconclusive_limit {}", a.inconclusive, spec.inconclusive_limit))
    } else if a.consecutive_errors > spec.consecutive_error_limit {
        (Phase::Error, format!("consecutive errors {} > consecutive_error_limit {}", a.consecutive_errors, spec.consecutive_error_limit))
    } else {
        return None;
    };
    Some(Decision { phase, reason: format!("{text}; latest: {}", latest.explanation) })
}

/// Count reached or analysis ended within the limits: successful if anything succeeded,
/// otherwise the worst outcome seen.
fn verdict_on_what_was_measured(a: &MetricAssessment) -> Phase {
    if a.successful > 0 {
        Phase::Successful
    } else if a.failed > 0 {
        Phase::Failed
    } else if a.errors > 0 {
        Phase::Error
    } else {
        Phase::Inconclusive
    }
}

fn tally(spec: &MetricSpec, a: &MetricAssessment) -> String {
    let mut text = format!(
        "successful {}, failed {} (failure_limit {}), inconclusive {} (inconclusive_limit {}), errors {} ({} in a row, consecutive_error_limit {})",
        a.successful, a.failed, spec.failure_limit, a.inconclusive, spec.inconclusive_limit, a.errors, a.consecutive_errors, spec.consecutive_error_limit
    );
    if a.successful == 0 && a.successful + a.failed + a.inconclusive + a.errors > 0 {
        text.push_str("; not one measurement was successful");
    }
    text
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The phase of a run from its metrics' assessments; see the module documentation.
pub fn run_phase(assessments: &[MetricAssessment]) -> Phase {
    let phases: Vec<Phase> = assessments.iter().filter(|a| !a.dry_run).map(|a| a.phase).collect();
    for decisive in [Phase::Failed, Phase::Error] {
        if phases.contains(&decisive) {
            return decisive;
        }
    }
    if !phases.is_empty() && phases.iter().all(|p| *p == Phase::Pending) {
        return Phase::Pending;
    }
    if phases.iter().any(|p| !p.is_completed()) {
        return Phase::Running;
    }
    if phases.contains(&Phase::Inconclusive) {
        Phase::Inconclusive
    } else {
        Phase::Successful
    }
}

fn after(at: DateTime<Utc>, seconds: u64) -> DateTime<Utc> {
    i64::try_from(seconds)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When the next measurement of a metric is due: `started_at + initial_delay_seconds` for the
/// first, then the last measurement's time plus `interval_seconds` (after an error, plus
/// [`ERROR_RETRY_SECONDS`] or the interval if shorter). `None` once the metric has completed
/// (limits or count reached; a metric without interval completes after one non-error
/// measurement).
pub fn next_measurement_due(spec: &MetricSpec, started_at: DateTime<Utc>, measurements: &[Measurement]) -> Option<DateTime<Utc>> {
    if assess(spec, measurements, false).phase.is_completed() {
        return None;
    }
    let Some(last) = measurements.last() else {
        return Some(after(started_at, spec.initial_delay_seconds));
    };
    let wait = if last.outcome == Outcome::Error {
        spec.interval_seconds.map_or(ERROR_RETRY_SECONDS, |interval| interval.min(ERROR_RETRY_SECONDS))
    } else {
        spec.interval_seconds?
    };
    Some(after(last.at, wait))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 5, 1, 12, 0, 0).unwrap() + TimeDelta::seconds(seconds)
    }

    fn spec() -> MetricSpec {
        MetricSpec {
            name: "error-rate".into(),
            provider: ProviderSpec::Prometheus { address: None, query: "sum(rate(errors[1m]))".into() },
            interval_seconds: Some(60),
            count: Some(3),
            initial_delay_seconds: 30,
            success_condition: Some("result < 0.01".into()),
            failure_condition: Some("result > 0.05".into()),
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            no_data: NoDataRule::Fail,
            dry_run: false,
            judge: None,
        }
    }

    fn values(v: &[f64]) -> Reading {
        Reading::Values { values: v.to_vec(), baseline: None, source: None }
    }

    fn outcomes(spec: &MetricSpec, list: &[Outcome]) -> Vec<Measurement> {
        list.iter()
            .enumerate()
            .map(|(i, o)| Measurement {
                at: at(i as i64 * 60),
                outcome: *o,
                values: vec![],
                baseline: None,
                no_data: false,
                condition: None,
                explanation: format!("{}: measurement {i} was {}", spec.name, outcome_word(*o)),
                judge: None,
            })
            .collect()
    }

    use Outcome::{Error as E, Failed as F, Inconclusive as I, Successful as S};

    #[test]
    fn validate_names_the_field_and_the_fix() {
        assert_eq!(spec().validate(), Ok(()));
        let cases: Vec<(MetricSpec, &str, &str)> = vec![
            (MetricSpec { name: "  ".into(), ..spec() }, "metrics[].name", "must not be empty"),
            (
                MetricSpec { success_condition: Some("result >".into()), ..spec() },
                "metrics[].success_condition",
                "at position 8, expected a number",
            ),
            (
                MetricSpec { failure_condition: Some("result = 1".into()), ..spec() },
                "metrics[].failure_condition",
                "at position 7, expected `==`",
            ),
            (MetricSpec { interval_seconds: Some(0), ..spec() }, "metrics[].interval_seconds", "must be from 1"),
            (MetricSpec { count: Some(0), ..spec() }, "metrics[].count", "at least 1"),
            (MetricSpec { count: Some(3), interval_seconds: None, ..spec() }, "metrics[].interval_seconds", "is required with count 3"),
            (MetricSpec { initial_delay_seconds: u64::MAX, ..spec() }, "metrics[].initial_delay_seconds", "at most"),
            (
                MetricSpec { provider: ProviderSpec::Prometheus { address: None, query: " ".into() }, ..spec() },
                "metrics[].provider.query",
                "PromQL",
            ),
            (
                MetricSpec { provider: ProviderSpec::Prometheus { address: Some("prom:9090".into()), query: "up".into() }, ..spec() },
                "metrics[].provider.address",
                "http:// or https://",
            ),
            (MetricSpec { provider: ProviderSpec::Pushed { name: Some("".into()) }, ..spec() }, "metrics[].provider.name", "omit it"),
            (MetricSpec { provider: http("ftp://x", "GET"), ..spec() }, "metrics[].provider.url", "http:// or https://"),
            (MetricSpec { provider: http("https://", "GET"), ..spec() }, "metrics[].provider.url", "http:// or https://"),
            (MetricSpec { provider: http("https://app/healthz", "DELETE"), ..spec() }, "metrics[].provider.method", "found `DELETE`"),
            (MetricSpec { judge: Some(judge_spec(0.5, 5)), ..spec() }, "metrics[].judge.confidence", "between 0.5 and 1"),
            (MetricSpec { judge: Some(judge_spec(f64::NAN, 5)), ..spec() }, "metrics[].judge.confidence", "between 0.5 and 1"),
            (MetricSpec { judge: Some(judge_spec(1.0, 5)), ..spec() }, "metrics[].judge.confidence", "between 0.5 and 1"),
            (MetricSpec { judge: Some(judge_spec(0.95, 2)), ..spec() }, "metrics[].judge.min_samples", "at least 3"),
        ];
        for (spec, field, message) in cases {
            let err = spec.validate().unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(message), "{err}");
        }
        // A single measurement may say count 1 without an interval.
        assert_eq!(MetricSpec { count: Some(1), interval_seconds: None, ..spec() }.validate(), Ok(()));
        assert_eq!(MetricSpec { count: None, interval_seconds: None, ..spec() }.validate(), Ok(()));
        assert_eq!(MetricSpec { provider: http("http://app:8080/healthz", "HEAD"), ..spec() }.validate(), Ok(()));
    }

    fn http(url: &str, method: &str) -> ProviderSpec {
        ProviderSpec::Http {
            method: method.into(),
            url: url.into(),
            expect_status: 200,
            body_contains: None,
            max_latency_ms: Some(500),
            timeout_seconds: 10,
        }
    }

    fn judge_spec(confidence: f64, min_samples: usize) -> JudgeSpec {
        JudgeSpec { direction: Direction::Increase, confidence, allowed_change: 0.0, min_samples }
    }

    #[test]
    fn the_failure_condition_is_checked_first_and_explained() {
        let spec = MetricSpec { success_condition: Some("result < 1".into()), ..spec() };
        let reading = Reading::Values { values: vec![0.23], baseline: None, source: Some("sum(rate(errors[1m]))".into()) };
        let m = measure(&spec, reading, at(10));
        assert_eq!(m.outcome, Outcome::Failed);
        assert_eq!(m.condition.as_deref(), Some("result > 0.05"));
        assert_eq!(m.values, vec![0.23]);
        assert_eq!(
            m.explanation,
            "error-rate: result = [0.23] from `sum(rate(errors[1m]))` at 12:00:10Z; failure condition `result > 0.05` is true → failed"
        );
    }

    #[test]
    fn each_reading_gets_its_outcome() {
        let s = spec();
        let table: Vec<(MetricSpec, Reading, Outcome, &str)> = vec![
            (
                s.clone(),
                values(&[0.005]),
                S,
                "error-rate: result = [0.005] at 12:00:10Z; failure condition `result > 0.05` is false; success condition `result < 0.01` is true → successful",
            ),
            (
                s.clone(),
                values(&[0.02]),
                I,
                "error-rate: result = [0.02] at 12:00:10Z; failure condition `result > 0.05` is false and success condition `result < 0.01` is false → inconclusive",
            ),
            (
                s.clone(),
                values(&[f64::NAN]),
                I,
                "error-rate: result = [NaN] at 12:00:10Z; failure condition `result > 0.05` is false and success condition `result < 0.01` is false \
                 (result contains NaN, and every comparison with NaN is false; test it with isNaN) → inconclusive",
            ),
            (
                s.clone(),
                values(&[0.001, 0.002]),
                E,
                "error-rate: result = [0.001, 0.002] at 12:00:10Z; failure condition `result > 0.05` cannot be evaluated: result has 2 values",
            ),
            (
                MetricSpec { success_condition: None, failure_condition: None, ..s.clone() },
                values(&[0.001]),
                I,
                "error-rate: result = [0.001] at 12:00:10Z; no success or failure condition and no judge is defined, so the value is only observed → inconclusive",
            ),
            (
                MetricSpec { failure_condition: None, ..s.clone() },
                values(&[0.5]),
                I,
                "success condition `result < 0.01` is false → inconclusive",
            ),
            (s.clone(), Reading::NoData { source: Some("up".into()) }, F, "error-rate: no data from `up` at 12:00:10Z; no_data: fail → failed"),
            (MetricSpec { no_data: NoDataRule::Inconclusive, ..s.clone() }, values(&[]), I, "error-rate: no values at 12:00:10Z; no_data: inconclusive → inconclusive"),
            (MetricSpec { no_data: NoDataRule::Pass, ..s.clone() }, Reading::NoData { source: None }, S, "no_data: pass → successful"),
            (
                s.clone(),
                Reading::Error { message: "connection refused".into() },
                E,
                "error-rate: the measurement at 12:00:10Z could not be taken: connection refused → error (more than 4 in a row make the metric an error)",
            ),
            (
                s.clone(),
                Reading::CheckFailed { message: "status 503, expected 200".into(), latency_ms: Some(41.5) },
                F,
                "error-rate: the smoke check at 12:00:10Z failed after 41.5 ms: status 503, expected 200 → failed",
            ),
            (
                MetricSpec { success_condition: None, failure_condition: None, provider: http("https://app/healthz", "GET"), ..s.clone() },
                values(&[41.5]),
                S,
                "error-rate: GET https://app/healthz answered 200 as expected in 41.5 ms at 12:00:10Z → successful",
            ),
        ];
        for (spec, reading, outcome, explanation) in table {
            let m = measure(&spec, reading.clone(), at(10));
            assert_eq!(m.outcome, outcome, "{reading:?}: {}", m.explanation);
            assert!(m.explanation.contains(explanation), "{reading:?}:\n got {}\nwant {explanation}", m.explanation);
            assert_eq!(
                m.no_data,
                matches!(reading, Reading::NoData { .. }) || matches!(&reading, Reading::Values { values, .. } if values.is_empty())
            );
        }
        let m = measure(&s, Reading::NoData { source: None }, at(0));
        assert_eq!(m.condition.as_deref(), Some("no_data: fail"));
    }

    #[test]
    fn the_judge_decides_when_there_is_a_baseline() {
        let spec = MetricSpec {
            success_condition: Some("result < 0.0001".into()),
            failure_condition: Some("avg(result) > 0.5".into()),
            judge: Some(judge_spec(0.95, 5)),
            ..spec()
        };
        let baseline = vec![0.010, 0.012, 0.009, 0.011, 0.013, 0.010, 0.008, 0.012, 0.011, 0.010];
        let canary = vec![0.021, 0.025, 0.019, 0.030, 0.024, 0.022, 0.027, 0.026, 0.023, 0.028];
        let judged = |canary: Vec<f64>, baseline: Vec<f64>| {
            measure(&spec, Reading::Values { values: canary, baseline: Some(baseline), source: None }, at(10))
        };
        let m = judged(canary.clone(), baseline.clone());
        assert_eq!(m.outcome, F);
        assert_eq!(m.judge.as_ref().map(|j| j.verdict), Some(Verdict::High));
        assert_eq!(m.condition.as_deref(), Some("judge: increase, confidence 0.95"));
        assert!(
            m.explanation.starts_with("error-rate: canary against baseline at 12:00:10Z; failure condition `avg(result) > 0.5` is false; judge: canary mean 0.0245 is 2.3x"),
            "{}",
            m.explanation
        );
        assert!(m.explanation.ends_with("higher, which this metric counts as a failure → failed"), "{}", m.explanation);
        // The judge passes the same series as its own baseline, although the success condition is false.
        let m = judged(baseline.clone(), baseline.clone());
        assert_eq!(m.outcome, S, "{}", m.explanation);
        // The failure condition remains a hard guard.
        let m = judged(vec![0.9; 10], vec![0.9; 10]);
        assert_eq!((m.outcome, m.judge.is_none()), (F, true), "{}", m.explanation);
        // Too few values: the no-data rule, flagged.
        let m = judged(vec![0.01, 0.02], baseline.clone());
        assert_eq!((m.outcome, m.no_data, m.condition.as_deref()), (F, true, Some("no_data: fail")), "{}", m.explanation);
        assert!(m.explanation.contains("not enough data to compare") && m.explanation.ends_with("no_data: fail → failed"));
        // Without a baseline the conditions decide and the explanation says why the judge did not run.
        let m = measure(&spec, values(&[0.01]), at(10));
        assert_eq!(m.outcome, I);
        assert!(m.explanation.contains("no baseline series was read, so the judge could not run"), "{}", m.explanation);
    }

    fn assess_outcomes(spec: &MetricSpec, list: &[Outcome], terminating: bool) -> MetricAssessment {
        assess(spec, &outcomes(spec, list), terminating)
    }

    #[test]
    fn assessment_follows_the_limits_in_order() {
        let s = spec(); // count 3, failure_limit 0, inconclusive_limit 0, consecutive_error_limit 4
        let lenient = MetricSpec { failure_limit: 1, inconclusive_limit: 1, consecutive_error_limit: 1, ..spec() };
        let single = MetricSpec { interval_seconds: None, count: None, ..spec() };
        let endless = MetricSpec { count: None, ..spec() };
        let tolerant = MetricSpec { failure_limit: 3, ..spec() };
        // (case, spec, outcomes, terminating, phase, part of the reason)
        type Row<'a> = (&'a str, &'a MetricSpec, &'a [Outcome], bool, Phase, &'a str);
        let table: Vec<Row> = vec![
            ("nothing yet", &s, &[], false, Phase::Pending, "no measurement yet"),
            ("nothing at the end", &s, &[], true, Phase::Successful, "before any measurement was taken, so nothing was observed"),
            ("one failure", &s, &[S, F], false, Phase::Failed, "failed 1 > failure_limit 0; latest: error-rate: measurement 1 was failed"),
            ("within failure limit", &lenient, &[F], false, Phase::Running, "1 of 3 measurements"),
            ("over failure limit", &lenient, &[F, S, F], false, Phase::Failed, "failed 2 > failure_limit 1"),
            ("inconclusive", &s, &[I], false, Phase::Inconclusive, "inconclusive 1 > inconclusive_limit 0"),
            ("errors", &s, &[E, E, E, E, E], false, Phase::Error, "consecutive errors 5 > consecutive_error_limit 4"),
            ("errors reset", &lenient, &[E, E, S, E], false, Phase::Error, "consecutive errors 2 > consecutive_error_limit 1"),
            ("errors reset below", &lenient, &[E, S, E, S], false, Phase::Running, "2 of 3 measurements"),
            ("errors are not counted", &s, &[S, E, S], false, Phase::Running, "2 of 3 measurements"),
            ("count reached", &s, &[S, E, S, S], false, Phase::Successful, "count 3 reached: successful 3"),
            ("count reached with tolerated failure", &lenient, &[S, F, S], false, Phase::Successful, "failed 1 (failure_limit 1)"),
            (
                "count reached without success",
                &tolerant,
                &[F, F, F],
                false,
                Phase::Failed,
                "count 3 reached: successful 0, failed 3 (failure_limit 3), inconclusive 0 (inconclusive_limit 0), errors 0 (0 in a row, \
                 consecutive_error_limit 4); not one measurement was successful",
            ),
            ("single", &single, &[S], false, Phase::Successful, "count 1 reached"),
            ("single error is retried", &single, &[E], false, Phase::Running, "0 of 1 measurements"),
            ("endless runs", &endless, &[S, S, S, S], false, Phase::Running, "4 measurements so far, until the step ends"),
            ("endless ends", &endless, &[S, S, E], true, Phase::Successful, "the analysis ended after 3 measurements: successful 2"),
            ("endless ends with errors only", &endless, &[E, E], true, Phase::Error, "not one measurement was successful"),
            (
                "completed stays completed",
                &s,
                &[F, S, S, S],
                false,
                Phase::Failed,
                "(3 measurements taken after the metric completed do not change it)",
            ),
        ];
        for (case, spec, list, terminating, phase, reason) in table {
            let a = assess_outcomes(spec, list, terminating);
            assert_eq!(a.phase, phase, "{case}: {}", a.reason);
            assert!(a.reason.contains(reason), "{case}:\n got {}\nwant {reason}", a.reason);
        }
        let a = assess_outcomes(&lenient, &[E, S, E, F], false);
        assert_eq!((a.successful, a.failed, a.inconclusive, a.errors, a.consecutive_errors), (1, 1, 0, 2, 0));
        let a = assess_outcomes(&MetricSpec { dry_run: true, ..spec() }, &[F], false);
        assert!(a.dry_run && a.phase == Phase::Failed);
    }

    fn assessed(phase: Phase, dry_run: bool) -> MetricAssessment {
        MetricAssessment {
            metric: "m".into(),
            phase,
            successful: 0,
            failed: 0,
            inconclusive: 0,
            errors: 0,
            consecutive_errors: 0,
            dry_run,
            reason: String::new(),
        }
    }

    #[test]
    fn run_phase_takes_the_worst_and_ignores_dry_runs() {
        use Phase::*;
        let table: Vec<(&[(Phase, bool)], Phase)> = vec![
            (&[], Successful),
            (&[(Failed, true)], Successful),
            (&[(Successful, false), (Failed, true)], Successful),
            (&[(Pending, false), (Pending, false)], Pending),
            (&[(Pending, false), (Successful, false)], Running),
            (&[(Running, false), (Failed, false)], Failed),
            (&[(Running, false), (Error, false)], Error),
            (&[(Error, false), (Failed, false)], Failed),
            (&[(Running, false), (Inconclusive, false)], Running),
            (&[(Inconclusive, false), (Successful, false)], Inconclusive),
            (&[(Successful, false), (Successful, false)], Successful),
            (&[(Pending, true), (Successful, false)], Successful),
        ];
        for (phases, want) in table {
            let list: Vec<_> = phases.iter().map(|(p, d)| assessed(*p, *d)).collect();
            assert_eq!(run_phase(&list), want, "{phases:?}");
        }
    }

    #[test]
    fn next_measurement_due_follows_delay_interval_and_retries() {
        let s = spec(); // initial delay 30 s, interval 60 s, count 3
        let start = at(0);
        assert_eq!(next_measurement_due(&s, start, &[]), Some(at(30)));
        let taken = outcomes(&s, &[S]);
        assert_eq!(next_measurement_due(&s, start, &taken), Some(at(60)));
        let taken = outcomes(&s, &[S, E]);
        assert_eq!(next_measurement_due(&s, start, &taken), Some(at(70)), "an error is retried after 10 s");
        assert_eq!(next_measurement_due(&s, start, &outcomes(&s, &[S, S, S])), None, "count reached");
        assert_eq!(next_measurement_due(&s, start, &outcomes(&s, &[F])), None, "completed");
        let single = MetricSpec { interval_seconds: None, count: None, ..spec() };
        assert_eq!(next_measurement_due(&single, start, &outcomes(&single, &[S])), None);
        assert_eq!(next_measurement_due(&single, start, &outcomes(&single, &[E])), Some(at(10)));
        let fast = MetricSpec { interval_seconds: Some(3), count: None, ..spec() };
        assert_eq!(next_measurement_due(&fast, start, &outcomes(&fast, &[E])), Some(at(3)));
        let far = MetricSpec { initial_delay_seconds: u64::MAX, ..spec() };
        assert_eq!(next_measurement_due(&far, start, &[]), Some(DateTime::<Utc>::MAX_UTC));
    }

    #[test]
    fn a_nan_reading_survives_a_json_round_trip() {
        // serde_json writes NaN as null; the value lists read null back as NaN.
        let m = measure(&spec(), values(&[f64::NAN, 1.0]), at(0));
        let back: Measurement = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert!(back.values[0].is_nan() && back.values[1] == 1.0);
        assert_eq!(back.explanation, m.explanation);
        let reading: Reading = serde_json::from_str(r#"{"type":"values","values":[null,0.5],"baseline":[1,null]}"#).unwrap();
        let Reading::Values { values, baseline: Some(baseline), .. } = reading else { panic!("{reading:?}") };
        assert!(values[0].is_nan() && baseline[1].is_nan());
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![Just(S), Just(F), Just(I), Just(E)]
    }

    proptest! {
        #[test]
        fn a_failed_metric_stays_failed(
            list in proptest::collection::vec(outcome(), 0..12),
            more in proptest::collection::vec(outcome(), 0..6),
            failure_limit in 0u32..3,
            count in proptest::option::of(1u32..8),
            terminating in any::<bool>(),
        ) {
            let spec = MetricSpec { failure_limit, inconclusive_limit: 10, count, ..spec() };
            let before = assess_outcomes(&spec, &list, false);
            if before.phase == Phase::Failed {
                let mut longer = list.clone();
                longer.extend(more.iter().copied().chain([F]));
                prop_assert_eq!(assess_outcomes(&spec, &longer, terminating).phase, Phase::Failed);
            }
            // Any completed phase stays the same when measurements are appended.
            if before.phase.is_completed() {
                let mut longer = list.clone();
                longer.extend(more);
                prop_assert_eq!(assess_outcomes(&spec, &longer, false).phase, before.phase);
            }
        }

        #[test]
        fn counts_add_up(list in proptest::collection::vec(outcome(), 0..12)) {
            let spec = MetricSpec { count: None, failure_limit: 100, inconclusive_limit: 100, consecutive_error_limit: 100, ..spec() };
            let a = assess_outcomes(&spec, &list, false);
            prop_assert_eq!((a.successful + a.failed + a.inconclusive + a.errors) as usize, list.len());
        }

        #[test]
        fn measure_never_panics_and_always_explains(
            v in proptest::collection::vec(proptest::num::f64::ANY, 0..6),
            b in proptest::option::of(proptest::collection::vec(proptest::num::f64::ANY, 0..12)),
            condition in "[-+*/<>=!&|()\\[\\],#. 0-9a-z]{0,40}",
        ) {
            let spec = MetricSpec { success_condition: Some(condition), judge: Some(judge_spec(0.9, 3)), ..spec() };
            let m = measure(&spec, Reading::Values { values: v, baseline: b, source: None }, at(0));
            prop_assert!(m.explanation.starts_with("error-rate: "));
        }
    }
}
