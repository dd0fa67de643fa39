//! SARIF 2.1.0 (OASIS Static Analysis Results Interchange Format) logs.
//!
//! We read `runs[].results[]` (§3.14.23, §3.27) and the rules of `runs[].tool.driver` and
//! `runs[].tool.extensions` (§3.18.2, §3.19.23). For each result:
//! - `level` (§3.27.10): the result's own; else, when `kind` is present and not `fail`, `none`;
//!   else the rule's `defaultConfiguration.level` (§3.49.14); else `warning`.
//! - the rule: `ruleIndex` (or `rule.index`) into the driver's rules, else the rule whose `id`
//!   equals `ruleId` (or `rule.id`) in the driver or an extension.
//! - `score`: the `security-severity` property (GitHub code scanning's convention: a string
//!   holding a number 0.0–10.0, usually a CVSS base score) of the result, else of its rule.
//!   A plain JSON number is accepted too.
//! - `severity`: from the score by the CVSS v3.1 rating scale, else from the level.
//! - message: `message.text`, else `message.markdown`, else `message.id`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use crate::facts::{clip_message, Finding, FindingFacts, Level, Severity, SeverityCounts, MAX_LISTED_FINDINGS};
use crate::json::{at, from_str};
use crate::{EvidenceKind, ParseError};

#[derive(Deserialize)]
struct Log {
    version: String,
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    #[serde(default)]
    results: Option<Vec<SarifResult>>,
}

#[derive(Deserialize)]
struct Tool {
    driver: ToolComponent,
    #[serde(default)]
    extensions: Vec<ToolComponent>,
}

#[derive(Deserialize)]
struct ToolComponent {
    name: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    id: String,
    #[serde(default, rename = "defaultConfiguration")]
    default_configuration: Option<Configuration>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<Level>,
}

#[derive(Deserialize)]
struct Properties {
    #[serde(default, rename = "security-severity")]
    security_severity: Option<Score>,
}

#[derive(Deserialize)]
struct SarifResult {
    #[serde(default, rename = "ruleId")]
    rule_id: Option<String>,
    #[serde(default, rename = "ruleIndex")]
    rule_index: Option<i64>,
    #[serde(default)]
    rule: Option<RuleReference>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    level: Option<Level>,
    message: Message,
    #[serde(default)]
    locations: Vec<Location>,
    #[serde(default)]
    properties: Option<Properties>,
}

#[derive(Deserialize)]
struct RuleReference {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    index: Option<i64>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    markdown: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default, rename = "physicalLocation")]
    physical: Option<PhysicalLocation>,
    #[serde(default, rename = "logicalLocations")]
    logical: Vec<LogicalLocation>,
}

#[derive(Deserialize)]
struct PhysicalLocation {
    #[serde(default, rename = "artifactLocation")]
    artifact: Option<ArtifactLocation>,
    #[serde(default)]
    region: Option<Region>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    #[serde(default)]
    uri: Option<String>,
}

#[derive(Deserialize)]
struct Region {
    #[serde(default, rename = "startLine")]
    start_line: Option<u64>,
    #[serde(default, rename = "startColumn")]
    start_column: Option<u64>,
}

#[derive(Deserialize)]
struct LogicalLocation {
    #[serde(default, rename = "fullyQualifiedName")]
    fully_qualified_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// A security-severity score, 0.0–10.0, given as a string ("7.5") or a number.
struct Score(f64);

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScoreVisitor;
        impl Visitor<'_> for ScoreVisitor {
            type Value = Score;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a score from 0.0 to 10.0, as a string such as \"7.5\" or a number")
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Score, E> {
                if value.is_finite() && (0.0..=10.0).contains(&value) {
                    Ok(Score(value))
                } else {
                    Err(E::custom(format!("security-severity {value} is outside 0.0–10.0: give a CVSS-like score")))
                }
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Score, E> {
                self.visit_f64(value as f64)
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Score, E> {
                self.visit_f64(value as f64)
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Score, E> {
                match value.trim().parse::<f64>() {
                    Ok(number) => self.visit_f64(number),
                    Err(_) => Err(E::custom(format!("security-severity {value:?} is not a number: give a score such as \"7.5\""))),
                }
            }
        }
        deserializer.deserialize_any(ScoreVisitor)
    }
}

pub(crate) fn parse(kind: EvidenceKind, text: &str) -> Result<FindingFacts, ParseError> {
    let log: Log = from_str(kind, text)?;
    if log.version != "2.1.0" {
        return Err(ParseError::new(kind, "version", format!("SARIF version {:?} is not supported: only 2.1.0 is", log.version)));
    }
    let tool = log.runs.first().map(|run| run.tool.driver.name.clone());
    let mut findings = Vec::new();
    let mut findings_truncated = false;
    let mut counts = SeverityCounts::default();
    let mut max_score: Option<f64> = None;

    for (run_index, run) in log.runs.iter().enumerate() {
        for (result_index, result) in run.results.iter().flatten().enumerate() {
            let path = || at(&format!("runs[{run_index}].results"), result_index, "");
            let rule = find_rule(&run.tool, result).map_err(|message| ParseError::new(kind, path(), message))?;
            let level = result.level.unwrap_or_else(|| match result.kind.as_deref() {
                Some(kind) if kind != "fail" => Level::None,
                _ => rule.and_then(|rule| rule.default_configuration.as_ref()?.level).unwrap_or(Level::Warning),
            });
            let score = result
                .properties
                .as_ref()
                .and_then(|properties| properties.security_severity.as_ref())
                .or_else(|| rule?.properties.as_ref()?.security_severity.as_ref())
                .map(|score| score.0);
            let severity = score.map_or(Severity::from_level(level), Severity::from_score);
            counts.add(severity);
            if let Some(score) = score {
                max_score = Some(max_score.map_or(score, |max| max.max(score)));
            }
            let message = [&result.message.text, &result.message.markdown, &result.message.id]
                .into_iter()
                .flatten()
                .find_map(|text| clip_message(text))
                .ok_or_else(|| ParseError::new(kind, format!("{}.message", path()), "a result needs message.text (or markdown or id)"))?;
            if findings.len() >= MAX_LISTED_FINDINGS {
                findings_truncated = true;
                continue;
            }
            findings.push(Finding {
                rule_id: result.rule_id.clone().or_else(|| result.rule.as_ref()?.id.clone()).or_else(|| rule.map(|rule| rule.id.clone())),
                level,
                score,
                severity,
                message,
                location: describe_location(&result.locations),
            });
        }
    }
    Ok(FindingFacts { tool, findings, findings_truncated, counts, max_score })
}

/// The result's rule, if the log describes it. A `ruleIndex` outside the driver's rules is an error.
fn find_rule<'a>(tool: &'a Tool, result: &SarifResult) -> Result<Option<&'a Rule>, String> {
    let index = result.rule_index.or_else(|| result.rule.as_ref()?.index).filter(|index| *index >= 0);
    if let Some(index) = index {
        return usize::try_from(index)
            .ok()
            .and_then(|index| tool.driver.rules.get(index))
            .map(Some)
            .ok_or_else(|| format!("ruleIndex {index} points past the {} rules of tool.driver.rules", tool.driver.rules.len()));
    }
    let Some(id) = result.rule_id.as_deref().or_else(|| result.rule.as_ref()?.id.as_deref()) else {
        return Ok(None);
    };
    Ok(std::iter::once(&tool.driver).chain(&tool.extensions).flat_map(|component| &component.rules).find(|rule| rule.id == id))
}

fn describe_location(locations: &[Location]) -> Option<String> {
    let first = locations.first()?;
    if let Some(uri) = first.physical.as_ref().and_then(|physical| physical.artifact.as_ref()?.uri.clone()) {
        let region = first.physical.as_ref().and_then(|physical| physical.region.as_ref());
        return Some(match (region.and_then(|r| r.start_line), region.and_then(|r| r.start_column)) {
            (Some(line), Some(column)) => format!("{uri}:{line}:{column}"),
            (Some(line), None) => format!("{uri}:{line}"),
            _ => uri,
        });
    }
    first.logical.iter().find_map(|logical| logical.fully_qualified_name.clone().or_else(|| logical.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(results: &str) -> String {
        format!(
            r#"{{"version":"2.1.0","runs":[{{"tool":{{"driver":{{"name":"scanner","rules":[
                {{"id":"R0","defaultConfiguration":{{"level":"error"}},"properties":{{"security-severity":"9.8"}}}},
                {{"id":"R1"}}]}},
              "extensions":[{{"name":"pack","rules":[{{"id":"X1","properties":{{"security-severity":5}}}}]}}]}},
              "results":[{results}]}}]}}"#
        )
    }

    #[test]
    fn levels_scores_and_severities_follow_the_rules_and_defaults() {
        let results = r#"
            {"ruleId":"R0","message":{"text":"sql injection"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"src/db.rs"},"region":{"startLine":12,"startColumn":5}}}]},
            {"ruleIndex":1,"message":{"text":"style"}},
            {"ruleId":"R1","level":"note","message":{"markdown":"*minor*"},"properties":{"security-severity":"3.1"}},
            {"ruleId":"X1","message":{"text":"from an extension"},"locations":[{"logicalLocations":[{"fullyQualifiedName":"a::b"}]}]},
            {"ruleId":"R0","kind":"pass","message":{"text":"checked"}},
            {"message":{"id":"default"}}"#;
        let facts = parse(EvidenceKind::Sarif, &log(results)).unwrap();
        let summary: Vec<_> = facts.findings.iter().map(|f| (f.rule_id.as_deref(), f.level, f.score, f.severity)).collect();
        assert_eq!(
            summary,
            [
                (Some("R0"), Level::Error, Some(9.8), Severity::Critical),
                (Some("R1"), Level::Warning, None, Severity::Medium),
                (Some("R1"), Level::Note, Some(3.1), Severity::Low),
                (Some("X1"), Level::Warning, Some(5.0), Severity::Medium),
                (Some("R0"), Level::None, Some(9.8), Severity::Critical),
                (None, Level::Warning, None, Severity::Medium),
            ]
        );
        assert_eq!(facts.findings[0].location.as_deref(), Some("src/db.rs:12:5"));
        assert_eq!(facts.findings[3].location.as_deref(), Some("a::b"));
        assert_eq!(facts.findings[2].message, "*minor*");
        assert_eq!(facts.counts, SeverityCounts { critical: 2, high: 0, medium: 3, low: 1, none: 0 });
        assert_eq!(facts.max_score, Some(9.8));
        assert_eq!(facts.tool.as_deref(), Some("scanner"));
    }

    #[test]
    fn cvss_boundaries() {
        let cases = [(0.0, Severity::None), (0.1, Severity::Low), (3.9, Severity::Low), (4.0, Severity::Medium), (6.9, Severity::Medium)];
        for (score, severity) in
            cases.into_iter().chain([(7.0, Severity::High), (8.9, Severity::High), (9.0, Severity::Critical), (10.0, Severity::Critical)])
        {
            assert_eq!(Severity::from_score(score), severity, "{score}");
        }
    }

    #[test]
    fn malformed_logs_name_the_json_path() {
        let cases = [
            (log(r#"{"message":{"text":"x"}},{"level":"critical","message":{"text":"y"}}"#), "runs[0].results[1].level", "unknown variant"),
            (
                log(r#"{"message":{"text":"x"},"properties":{"security-severity":"high"}}"#),
                "runs[0].results[0].properties.security-severity",
                "not a number",
            ),
            (
                log(r#"{"message":{"text":"x"},"properties":{"security-severity":"11"}}"#),
                "runs[0].results[0].properties.security-severity",
                "outside",
            ),
            (log(r#"{"ruleIndex":7,"message":{"text":"x"}}"#), "runs[0].results[0]", "points past"),
            (log(r#"{"message":{}}"#), "runs[0].results[0].message", "message.text"),
            (log(r#"{"ruleId":"R0"}"#), "runs[0].results[0]", "missing field `message`"),
            (r#"{"version":"2.0.0","runs":[]}"#.to_string(), "version", "only 2.1.0"),
            (r#"{"version":"2.1.0"}"#.to_string(), "", "missing field `runs`"),
        ];
        for (text, location, words) in cases {
            let error = parse(EvidenceKind::Sarif, &text).unwrap_err();
            assert!(error.location.starts_with(location), "{}: {}", error.location, error.message);
            assert!(error.message.contains(words), "{}: {}", error.location, error.message);
        }
    }

    #[test]
    fn findings_listed_are_capped_but_counted() {
        let one = r#"{"ruleId":"R0","message":{"text":"x"}}"#;
        let results = vec![one; MAX_LISTED_FINDINGS + 5].join(",");
        let facts = parse(EvidenceKind::Sarif, &log(&results)).unwrap();
        assert_eq!(facts.findings.len(), MAX_LISTED_FINDINGS);
        assert!(facts.findings_truncated);
        assert_eq!(facts.counts.total(), MAX_LISTED_FINDINGS as u64 + 5);
    }
}
