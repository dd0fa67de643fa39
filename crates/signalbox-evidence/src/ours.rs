//! Signalbox's own small JSON formats: performance against a baseline, smoke checks, sign-offs and
//! document links (docs/EVIDENCE.md shows each with an example). Unknown fields are refused so a
//! typo (`"baseline_ms"`) is an error, not a silently missing value.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::facts::{
    clip_message, Better, DocumentFacts, DocumentType, PerfMetric, PerformanceFacts, SignoffFacts, TestFacts, TestFailure,
    MAX_LISTED_FAILURES,
};
use crate::json::{at, from_str};
use crate::{EvidenceKind, ParseError};

/// Most metrics in one performance file, and most checks in one smoke file.
pub const MAX_ENTRIES: usize = 10_000;
const MAX_NAME_CHARS: usize = 200;
const MAX_STATEMENT_CHARS: usize = 10_000;
/// Longest check duration accepted (about 31 years), so sums stay finite.
const MAX_DURATION_MS: f64 = 1e12;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceFile {
    #[serde(default)]
    baseline_ref: Option<String>,
    metrics: Vec<MetricInput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricInput {
    name: String,
    unit: String,
    baseline: f64,
    current: f64,
    better: Better,
}

pub(crate) fn parse_performance(kind: EvidenceKind, text: &str) -> Result<PerformanceFacts, ParseError> {
    let file: PerformanceFile = from_str(kind, text)?;
    let baseline_ref = optional_text(kind, "baseline_ref", file.baseline_ref, MAX_NAME_CHARS)?;
    count_entries(kind, "metrics", file.metrics.len())?;
    let mut seen = HashSet::new();
    let mut metrics = Vec::with_capacity(file.metrics.len());
    for (index, metric) in file.metrics.into_iter().enumerate() {
        let name = required_text(kind, &at("metrics", index, "name"), &metric.name, MAX_NAME_CHARS)?;
        if !seen.insert(name.clone()) {
            return Err(ParseError::new(
                kind,
                at("metrics", index, "name"),
                format!("metric {name:?} appears twice: give each metric once"),
            ));
        }
        let unit = required_text(kind, &at("metrics", index, "unit"), &metric.unit, 50)?;
        if metric.baseline == 0.0 {
            return Err(ParseError::new(
                kind,
                at("metrics", index, "baseline"),
                "the baseline is 0, so no relative change can be computed: give the measured baseline",
            ));
        }
        let change = match metric.better {
            Better::Lower => metric.current - metric.baseline,
            Better::Higher => metric.baseline - metric.current,
        };
        let change_ratio = change / metric.baseline.abs();
        if !change_ratio.is_finite() {
            return Err(ParseError::new(kind, at("metrics", index, ""), "baseline and current are too far apart to compare"));
        }
        metrics.push(PerfMetric { name, unit, baseline: metric.baseline, current: metric.current, better: metric.better, change_ratio });
    }
    Ok(PerformanceFacts { baseline_ref, metrics })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmokeFile {
    #[serde(default)]
    tool: Option<String>,
    checks: Vec<CheckInput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInput {
    name: String,
    passed: bool,
    #[serde(default)]
    duration_ms: Option<f64>,
    #[serde(default)]
    detail: Option<String>,
}

pub(crate) fn parse_smoke_json(kind: EvidenceKind, text: &str) -> Result<TestFacts, ParseError> {
    let file: SmokeFile = from_str(kind, text)?;
    let tool = optional_text(kind, "tool", file.tool, MAX_NAME_CHARS)?.or_else(|| Some("smoke-json".into()));
    count_entries(kind, "checks", file.checks.len())?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut duration_ms: Option<f64> = None;
    let mut failures = Vec::new();
    let mut failures_truncated = false;
    for (index, check) in file.checks.into_iter().enumerate() {
        let name = required_text(kind, &at("checks", index, "name"), &check.name, MAX_NAME_CHARS)?;
        if let Some(ms) = check.duration_ms {
            if !(0.0..=MAX_DURATION_MS).contains(&ms) {
                return Err(ParseError::new(
                    kind,
                    at("checks", index, "duration_ms"),
                    format!("a duration must be from 0 to {MAX_DURATION_MS} milliseconds, not {ms}"),
                ));
            }
            duration_ms = Some(duration_ms.unwrap_or(0.0) + ms);
        }
        if check.passed {
            passed += 1;
        } else {
            failed += 1;
            if failures.len() < MAX_LISTED_FAILURES {
                failures.push(TestFailure { suite: None, name, message: check.detail.as_deref().and_then(clip_message) });
            } else {
                failures_truncated = true;
            }
        }
    }
    Ok(TestFacts {
        tool,
        total: passed + failed,
        passed,
        failed,
        errored: 0,
        skipped: 0,
        flaky: 0,
        duration_seconds: duration_ms.map(|ms| ms / 1000.0),
        failures,
        failures_truncated,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignoffInput {
    by: String,
    #[serde(default)]
    role: Option<String>,
    statement: String,
    #[serde(default)]
    signed_at: Option<DateTime<Utc>>,
}

pub(crate) fn parse_signoff(kind: EvidenceKind, text: &str) -> Result<SignoffFacts, ParseError> {
    let input: SignoffInput = from_str(kind, text)?;
    Ok(SignoffFacts {
        by: required_text(kind, "by", &input.by, MAX_NAME_CHARS)?,
        role: optional_text(kind, "role", input.role, MAX_NAME_CHARS)?,
        statement: required_text(kind, "statement", &input.statement, MAX_STATEMENT_CHARS)?,
        signed_at: input.signed_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentInput {
    document: DocumentType,
    #[serde(default)]
    title: Option<String>,
    url: String,
}

pub(crate) fn parse_document_link(kind: EvidenceKind, text: &str) -> Result<DocumentFacts, ParseError> {
    let input: DocumentInput = from_str(kind, text)?;
    let url = signalbox_domain::validate::parse_url("url", &input.url)
        .ok()
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
        .ok_or_else(|| {
            ParseError::new(kind, "url", format!("{:?} is not a link: give an absolute https:// or http:// URL without spaces", input.url))
        })?;
    Ok(DocumentFacts { document: input.document, title: optional_text(kind, "title", input.title, MAX_NAME_CHARS)?, url })
}

fn required_text(kind: EvidenceKind, path: &str, raw: &str, max: usize) -> Result<String, ParseError> {
    signalbox_domain::validate::require_text(path, raw, max).map_err(|invalid| {
        let message = invalid.0.into_iter().next().map_or_else(|| "is not acceptable".to_string(), |error| error.message);
        ParseError::new(kind, path, message)
    })
}

fn optional_text(kind: EvidenceKind, path: &str, raw: Option<String>, max: usize) -> Result<Option<String>, ParseError> {
    raw.map(|raw| required_text(kind, path, &raw, max)).transpose()
}

fn count_entries(kind: EvidenceKind, path: &str, count: usize) -> Result<(), ParseError> {
    if count == 0 {
        return Err(ParseError::new(kind, path, format!("{path} is empty: give at least one")));
    }
    if count > MAX_ENTRIES {
        return Err(ParseError::new(kind, path, format!("{count} {path} are more than the {MAX_ENTRIES} one file may hold")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_ratio_is_positive_when_worse_whichever_direction_is_better() {
        let text = r#"{"baseline_ref":"v1.4.0","metrics":[
            {"name":"p99_latency_ms","unit":"ms","baseline":120,"current":132,"better":"lower"},
            {"name":"throughput_rps","unit":"req/s","baseline":1000,"current":1100,"better":"higher"},
            {"name":"delta","unit":"ms","baseline":-10,"current":-5,"better":"lower"}]}"#;
        let facts = parse_performance(EvidenceKind::Performance, text).unwrap();
        let ratios: Vec<f64> = facts.metrics.iter().map(|m| m.change_ratio).collect();
        assert!((ratios[0] - 0.1).abs() < 1e-12 && (ratios[1] + 0.1).abs() < 1e-12 && (ratios[2] - 0.5).abs() < 1e-12, "{ratios:?}");
        assert_eq!(facts.baseline_ref.as_deref(), Some("v1.4.0"));
    }

    #[test]
    fn smoke_checks_become_test_facts() {
        let text = r#"{"checks":[{"name":"health","passed":true,"duration_ms":120},{"name":"login","passed":false,"duration_ms":80,"detail":"HTTP 502"}]}"#;
        let facts = parse_smoke_json(EvidenceKind::Smoke, text).unwrap();
        assert_eq!((facts.total, facts.passed, facts.failed), (2, 1, 1));
        assert_eq!(facts.duration_seconds, Some(0.2));
        assert_eq!(facts.failures, [TestFailure { suite: None, name: "login".into(), message: Some("HTTP 502".into()) }]);
        assert_eq!(facts.tool.as_deref(), Some("smoke-json"));
    }

    #[test]
    fn signoffs_and_document_links() {
        let signoff = parse_signoff(
            EvidenceKind::Signoff,
            r#"{"by":" Ana Lima ","role":"qa_lead","statement":"Exploratory testing done","signed_at":"2026-11-29T10:00:00+01:00"}"#,
        )
        .unwrap();
        assert_eq!(signoff.by, "Ana Lima");
        assert_eq!(signoff.signed_at.map(|at| at.to_rfc3339()).as_deref(), Some("2026-11-29T09:00:00+00:00"));
        let link =
            parse_document_link(EvidenceKind::DocumentLink, r#"{"document":"rollback_plan","url":"https://wiki.example.com/rb"}"#).unwrap();
        assert_eq!((link.document, link.url.as_str(), link.title), (DocumentType::RollbackPlan, "https://wiki.example.com/rb", None));
    }

    #[test]
    fn malformed_files_name_the_json_path() {
        let perf =
            |metric: &str| format!(r#"{{"metrics":[{{"name":"a","unit":"ms","baseline":1,"current":1,"better":"lower"}},{metric}]}}"#);
        let cases: Vec<(EvidenceKind, String, &str, &str)> = vec![
            (
                EvidenceKind::Performance,
                perf(r#"{"name":"b","unit":"ms","baseline":0,"current":1,"better":"lower"}"#),
                "metrics[1].baseline",
                "baseline is 0",
            ),
            (
                EvidenceKind::Performance,
                perf(r#"{"name":"a","unit":"ms","baseline":2,"current":1,"better":"lower"}"#),
                "metrics[1].name",
                "twice",
            ),
            (
                EvidenceKind::Performance,
                perf(r#"{"name":"b","unit":"ms","baseline":2,"current":1,"better":"smaller"}"#),
                "metrics[1].better",
                "unknown variant",
            ),
            (
                EvidenceKind::Performance,
                perf(r#"{"name":"b","unit":"ms","baseline_ms":2,"current":1,"better":"lower"}"#),
                "metrics[1].baseline_ms",
                "unknown field",
            ),
            (
                EvidenceKind::Performance,
                perf(r#"{"name":" ","unit":"ms","baseline":2,"current":1,"better":"lower"}"#),
                "metrics[1].name",
                "empty",
            ),
            (
                EvidenceKind::Performance,
                perf(r#"{"name":"b","unit":"ms","baseline":"2","current":1,"better":"lower"}"#),
                "metrics[1].baseline",
                "invalid type",
            ),
            (EvidenceKind::Performance, r#"{"metrics":[]}"#.into(), "metrics", "at least one"),
            (EvidenceKind::Smoke, r#"{"checks":[{"name":"a","passed":"yes"}]}"#.into(), "checks[0].passed", "invalid type"),
            (
                EvidenceKind::Smoke,
                r#"{"checks":[{"name":"a","passed":true,"duration_ms":-1}]}"#.into(),
                "checks[0].duration_ms",
                "from 0 to",
            ),
            (
                EvidenceKind::Signoff,
                r#"{"by":"a","statement":"ok","signed_at":"yesterday"}"#.into(),
                "signed_at",
                "input contains invalid characters",
            ),
            (EvidenceKind::Signoff, r#"{"by":"a","statement":""}"#.into(), "statement", "empty"),
            (EvidenceKind::Signoff, r#"{"by":"a"}"#.into(), "", "missing field `statement`"),
            (EvidenceKind::DocumentLink, r#"{"document":"runbook","url":"https://x.example"}"#.into(), "document", "unknown variant"),
            (EvidenceKind::DocumentLink, r#"{"document":"other","url":"file:///etc/passwd"}"#.into(), "url", "https://"),
        ];
        for (kind, text, location, words) in cases {
            let error = crate::parse(kind, text.as_bytes()).unwrap_err();
            assert!(error.location.starts_with(location), "{text}: {} / {}", error.location, error.message);
            assert!(error.message.contains(words), "{text}: {} / {}", error.location, error.message);
        }
    }
}
