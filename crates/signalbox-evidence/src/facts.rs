//! The facts a parser extracts from one evidence file: what gates read, never the raw file.
//!
//! Every type here serialises to the JSON the server shows and stores (`Facts` is tagged with
//! `kind`, matching `EvidenceKind`), and deserialises back to the same value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How many failing tests a `TestFacts` lists by name. The counts are always complete.
pub const MAX_LISTED_FAILURES: usize = 50;
/// How many findings a `FindingFacts` lists one by one. Counts and `max_score` are always complete.
pub const MAX_LISTED_FINDINGS: usize = 1000;
/// Longest failure or finding message kept, in characters; longer ones are cut and end in `…`.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// The facts of one evidence file, tagged with the kind it was parsed as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Facts {
    Junit(TestFacts),
    Sarif(FindingFacts),
    Cyclonedx(SbomFacts),
    Spdx(SbomFacts),
    Lcov(CoverageFacts),
    Cobertura(CoverageFacts),
    Performance(PerformanceFacts),
    Smoke(TestFacts),
    Signoff(SignoffFacts),
    DocumentLink(DocumentFacts),
}

/// Test results (JUnit XML, or smoke checks). Every test case counts exactly once:
/// `total = passed + failed + errored + skipped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TestFacts {
    /// The producer when the file says so: `pytest`, `cargo-nextest`, `maven-surefire`, `smoke-json`.
    pub tool: Option<String>,
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub errored: u64,
    pub skipped: u64,
    /// Test cases that passed only on a retry (Surefire `flakyFailure`/`flakyError`); also counted in `passed`.
    pub flaky: u64,
    pub duration_seconds: Option<f64>,
    /// The first `MAX_LISTED_FAILURES` failed or errored test cases, in file order.
    pub failures: Vec<TestFailure>,
    /// True when more test cases failed than `failures` lists.
    pub failures_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TestFailure {
    /// The enclosing test suite (JUnit `testsuite@name`), when there is one.
    pub suite: Option<String>,
    /// `classname.name` for JUnit test cases, the check name for smoke checks.
    pub name: String,
    pub message: Option<String>,
}

/// Static-analysis findings (SARIF results).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FindingFacts {
    /// The first run's `tool.driver.name`.
    pub tool: Option<String>,
    /// The first `MAX_LISTED_FINDINGS` findings, in file order.
    pub findings: Vec<Finding>,
    pub findings_truncated: bool,
    /// Counts over all findings, not only the listed ones.
    pub counts: SeverityCounts,
    /// The highest score of any finding, when any finding has one.
    pub max_score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    pub rule_id: Option<String>,
    pub level: Level,
    /// CVSS-like score 0.0–10.0 from `security-severity` (result property, else rule property).
    pub score: Option<f64>,
    pub severity: Severity,
    pub message: String,
    /// `uri:line:column` of the first location, or the first logical location's name.
    pub location: Option<String>,
}

/// SARIF 2.1.0 §3.27.10 `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Warning,
    Note,
    None,
}

/// Qualitative severity, the CVSS v3.1 rating scale (specification §5): none 0.0, low 0.1–3.9,
/// medium 4.0–6.9, high 7.0–8.9, critical 9.0–10.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The CVSS v3.1 qualitative rating of a score (scores are 0.0–10.0 with one decimal;
    /// anything between 0.0 and 0.1 is rated low, as it is above none).
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::None
        }
    }

    /// Our mapping for findings without a score: error → high, warning → medium, note → low,
    /// none → none (the same buckets GitHub code scanning shows for non-security alerts).
    pub fn from_level(level: Level) -> Severity {
        match level {
            Level::Error => Severity::High,
            Level::Warning => Severity::Medium,
            Level::Note => Severity::Low,
            Level::None => Severity::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct SeverityCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub none: u64,
}

impl SeverityCounts {
    pub fn add(&mut self, severity: Severity) {
        let slot = match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::None => &mut self.none,
        };
        *slot += 1;
    }

    pub fn total(&self) -> u64 {
        self.critical + self.high + self.medium + self.low + self.none
    }
}

/// A software bill of materials (CycloneDX or SPDX).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SbomFacts {
    pub format: SbomFormat,
    /// As the document gives it: `1.6` for CycloneDX, `SPDX-2.3` for SPDX.
    pub spec_version: String,
    /// Every component (CycloneDX, nested ones flattened) or package (SPDX), in file order.
    pub components: Vec<Component>,
    pub component_count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SbomFormat {
    Cyclonedx,
    Spdx,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Component {
    pub name: String,
    pub version: Option<String>,
    /// Package URL, when the document gives one.
    pub purl: Option<String>,
    /// SPDX license ids, license names or SPDX expressions, as the document gives them.
    /// Empty when the document makes no assertion (absent, `NOASSERTION`, `NONE`).
    pub licenses: Vec<String>,
}

/// Code coverage (LCOV tracefile or Cobertura XML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CoverageFacts {
    pub lines_total: u64,
    pub lines_covered: u64,
    /// `lines_covered / lines_total`, 0.0–1.0; 0.0 when there are no lines.
    pub line_rate: f64,
    pub branches_total: u64,
    pub branches_covered: u64,
    /// `branches_covered / branches_total`; absent when no branches were measured.
    pub branch_rate: Option<f64>,
    /// Number of distinct source files.
    pub files: u64,
}

impl CoverageFacts {
    pub(crate) fn from_counts(lines_total: u64, lines_covered: u64, branches_total: u64, branches_covered: u64, files: u64) -> Self {
        CoverageFacts {
            lines_total,
            lines_covered,
            line_rate: ratio(lines_covered, lines_total).unwrap_or(0.0),
            branches_total,
            branches_covered,
            branch_rate: ratio(branches_covered, branches_total),
            files,
        }
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    // u64 → f64 loses precision only above 2^53, far beyond any real line count.
    (whole > 0).then(|| (part as f64 / whole as f64).clamp(0.0, 1.0))
}

/// Performance results against a baseline (our JSON format, docs/EVIDENCE.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerformanceFacts {
    /// What the baseline was measured on (a version, commit or artifact), as given.
    pub baseline_ref: Option<String>,
    pub metrics: Vec<PerfMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PerfMetric {
    pub name: String,
    pub unit: String,
    pub baseline: f64,
    pub current: f64,
    pub better: Better,
    /// Relative change, signed so that positive is worse: `(current - baseline) / |baseline|`
    /// when lower is better, `(baseline - current) / |baseline|` when higher is better.
    pub change_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

/// A manual sign-off (our JSON format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignoffFacts {
    /// Who signed, as written in the file. The server records the uploading user separately.
    pub by: String,
    pub role: Option<String>,
    pub statement: String,
    pub signed_at: Option<DateTime<Utc>>,
}

/// A link to a release document (our JSON format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DocumentFacts {
    pub document: DocumentType,
    pub title: Option<String>,
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    RollbackPlan,
    BackoutCriteria,
    ImpactAssessment,
    ReleaseNotes,
    Other,
}

/// Cuts a message to `MAX_MESSAGE_CHARS` characters, trimmed; `None` when nothing is left.
pub(crate) fn clip_message(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut chars = trimmed.char_indices();
    match chars.nth(MAX_MESSAGE_CHARS) {
        None => Some(trimmed.to_string()),
        Some((cut, _)) => Some(format!("{}…", &trimmed[..cut])),
    }
}
