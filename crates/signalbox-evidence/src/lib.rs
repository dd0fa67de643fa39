//! Evidence parsers: the bytes a real tool produced in, the facts gates need out.
//!
//! This crate does no I/O and keeps no state. [`parse`] takes a kind and the file's bytes and
//! returns either complete [`Facts`] or a [`ParseError`] that names where the file is wrong
//! (`line 12, column 5` for XML and LCOV, a JSON path such as `runs[0].results[3].level` for
//! JSON). Nothing is ever half-parsed.
//!
//! Hostile input is refused, not survived by luck: inputs above [`MAX_INPUT_BYTES`], XML with a
//! document type declaration (so no entity can be declared, expanded or fetched) or nested
//! deeper than [`MAX_XML_DEPTH`], JSON nested deeper than serde_json's limit of 128, and
//! anything that is not UTF-8. Formats are described in docs/EVIDENCE.md.

mod cobertura;
pub mod facts;
mod json;
mod junit;
mod lcov;
mod ours;
mod sarif;
mod sbom;
mod xml;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use facts::*;
pub use xml::MAX_DEPTH as MAX_XML_DEPTH;

/// The largest evidence file accepted, in bytes (64 MiB).
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// What a file is evidence of, and so which parser reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// JUnit XML test results (pytest `--junitxml`, cargo-nextest, Maven Surefire).
    Junit,
    /// SARIF 2.1.0 static-analysis results.
    Sarif,
    /// CycloneDX 1.4–1.6 JSON SBOM.
    Cyclonedx,
    /// SPDX 2.2/2.3 JSON SBOM.
    Spdx,
    /// LCOV tracefile.
    Lcov,
    /// Cobertura XML coverage.
    Cobertura,
    /// Our performance-against-baseline JSON.
    Performance,
    /// Smoke-test results: JUnit XML or our smoke JSON (told apart by the first character).
    Smoke,
    /// Our manual sign-off JSON.
    Signoff,
    /// Our document link JSON.
    DocumentLink,
}

impl EvidenceKind {
    pub const ALL: [EvidenceKind; 10] = [
        EvidenceKind::Junit,
        EvidenceKind::Sarif,
        EvidenceKind::Cyclonedx,
        EvidenceKind::Spdx,
        EvidenceKind::Lcov,
        EvidenceKind::Cobertura,
        EvidenceKind::Performance,
        EvidenceKind::Smoke,
        EvidenceKind::Signoff,
        EvidenceKind::DocumentLink,
    ];

    /// The snake_case name used in JSON, the CLI and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Junit => "junit",
            EvidenceKind::Sarif => "sarif",
            EvidenceKind::Cyclonedx => "cyclonedx",
            EvidenceKind::Spdx => "spdx",
            EvidenceKind::Lcov => "lcov",
            EvidenceKind::Cobertura => "cobertura",
            EvidenceKind::Performance => "performance",
            EvidenceKind::Smoke => "smoke",
            EvidenceKind::Signoff => "signoff",
            EvidenceKind::DocumentLink => "document_link",
        }
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An evidence kind name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown evidence kind {given:?}: use one of {}", EvidenceKind::ALL.map(EvidenceKind::as_str).join(", "))]
pub struct UnknownKind {
    pub given: String,
}

impl FromStr for EvidenceKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvidenceKind::ALL.into_iter().find(|kind| kind.as_str() == s).ok_or_else(|| UnknownKind { given: s.to_string() })
    }
}

/// Why a file was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: EvidenceKind,
    /// `line 12, column 5` (XML, LCOV; 1-based, columns count characters), a JSON path such as
    /// `runs[0].results[3].level` (JSON; `.` is the document itself), or `file` for the file as a whole.
    pub location: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(kind: EvidenceKind, location: impl Into<String>, message: impl Into<String>) -> Self {
        ParseError { kind, location: location.into(), message: message.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} evidence is malformed at {}: {}", self.kind, self.location, self.message)
    }
}

impl std::error::Error for ParseError {}

impl From<ParseError> for signalbox_domain::validate::Invalid {
    fn from(error: ParseError) -> Self {
        signalbox_domain::validate::Invalid::one("file", format!("{} evidence at {}: {}", error.kind, error.location, error.message))
    }
}

/// Parses one evidence file. Returns complete facts or an error naming the place that is wrong.
pub fn parse(kind: EvidenceKind, bytes: &[u8]) -> Result<Facts, ParseError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ParseError::new(
            kind,
            "file",
            format!("the file is {} bytes; evidence files may be at most {MAX_INPUT_BYTES} bytes (64 MiB)", bytes.len()),
        ));
    }
    let text = utf8(kind, bytes)?;
    match kind {
        EvidenceKind::Junit => junit::parse(kind, text).map(Facts::Junit),
        EvidenceKind::Sarif => sarif::parse(kind, text).map(Facts::Sarif),
        EvidenceKind::Cyclonedx => sbom::parse_cyclonedx(kind, text).map(Facts::Cyclonedx),
        EvidenceKind::Spdx => sbom::parse_spdx(kind, text).map(Facts::Spdx),
        EvidenceKind::Lcov => lcov::parse(kind, text).map(Facts::Lcov),
        EvidenceKind::Cobertura => cobertura::parse(kind, text).map(Facts::Cobertura),
        EvidenceKind::Performance => ours::parse_performance(kind, text).map(Facts::Performance),
        EvidenceKind::Smoke => parse_smoke(kind, text).map(Facts::Smoke),
        EvidenceKind::Signoff => ours::parse_signoff(kind, text).map(Facts::Signoff),
        EvidenceKind::DocumentLink => ours::parse_document_link(kind, text).map(Facts::DocumentLink),
    }
}

/// Smoke results are JUnit XML when the file starts with `<`, our smoke JSON when it starts with `{`.
fn parse_smoke(kind: EvidenceKind, text: &str) -> Result<TestFacts, ParseError> {
    match text.trim_start().chars().next() {
        Some('<') => junit::parse(kind, text),
        Some('{') => ours::parse_smoke_json(kind, text),
        _ => Err(ParseError::new(
            kind,
            "line 1, column 1",
            "smoke results must be JUnit XML (starting with `<`) or smoke JSON (starting with `{`, see docs/EVIDENCE.md)",
        )),
    }
}

/// Every format we read is UTF-8 text; a leading byte-order mark is allowed and dropped.
fn utf8(kind: EvidenceKind, bytes: &[u8]) -> Result<&str, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = &bytes[..error.valid_up_to()];
        // The valid prefix is UTF-8 by definition, so this never fails.
        let prefix = std::str::from_utf8(valid).unwrap_or_default();
        ParseError::new(kind, line_column(prefix, prefix.len()), "the file is not valid UTF-8 text: save it as UTF-8")
    })
}

/// `line L, column C` (both 1-based, the column in characters) of a byte offset into `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    format!("line {line}, column {column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_names_and_unknown_ones_list_the_valid_names() {
        for kind in EvidenceKind::ALL {
            assert_eq!(kind.as_str().parse::<EvidenceKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::Value::String(kind.as_str().into()));
        }
        let error = "JUnit".parse::<EvidenceKind>().unwrap_err();
        let text = error.to_string();
        assert!(text.contains("\"JUnit\"") && text.contains("junit, sarif") && text.contains("document_link"), "{text}");
    }

    #[test]
    fn line_column_counts_lines_and_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), "line 1, column 1");
        assert_eq!(line_column(text, 3), "line 2, column 1");
        assert_eq!(line_column(text, 6), "line 2, column 3", "inside é: the character's start");
        assert_eq!(line_column(text, 7), "line 2, column 4");
        assert_eq!(line_column(text, 8), "line 3, column 1");
        assert_eq!(line_column(text, 999), "line 3, column 2");
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_position() {
        let error = parse(EvidenceKind::Lcov, b"SF:a.rs\nDA:1,\xff\n").unwrap_err();
        assert_eq!(error.location, "line 2, column 6");
        assert!(error.message.contains("UTF-8"));
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        let error = parse(EvidenceKind::Junit, &big).unwrap_err();
        assert_eq!(error.location, "file");
        assert!(error.message.contains("64 MiB"));
    }

    #[test]
    fn errors_become_field_errors_on_file_that_quote_the_location() {
        let error = ParseError::new(EvidenceKind::Sarif, "runs[0].results[3].level", "bad level");
        let invalid: signalbox_domain::validate::Invalid = error.into();
        assert_eq!(invalid.0.len(), 1);
        assert_eq!(invalid.0[0].field, "file");
        assert!(invalid.0[0].message.contains("runs[0].results[3].level") && invalid.0[0].message.contains("bad level"));
    }
}
