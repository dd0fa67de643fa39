//! LCOV tracefiles, the format described in geninfo(1) ("TRACEFILE FORMAT") and written by lcov,
//! coverage.py (`coverage lcov`), grcov, cargo-llvm-cov, c8/istanbul and others.
//!
//! One record per source file, from `SF:<path>` to `end_of_record`. We read `DA:<line>,<count>[,<checksum>]`,
//! `BRDA:<line>,<block>,<branch>,<taken or ->`, and the summaries `LF`/`LH`, `BRF`/`BRH`.
//! When a file has `DA`/`BRDA` lines, coverage is computed from them (so the summaries cannot
//! disagree with the detail); only files without detail use their summaries. Records for the same
//! path (one per test name, `TN:`) are merged: a line is covered when any record covered it.
//! `TN`, `VER`, `FN`, `FNDA`, `FNF`, `FNH`, `FNL`, `FNA` and any other `UPPERCASE:` record are
//! accepted and not used, so newer lcov versions still parse.

use std::collections::HashMap;

use crate::facts::CoverageFacts;
use crate::{EvidenceKind, ParseError};

/// What the records for one source file say. Detail is collected as it comes (a line may repeat
/// across records) and deduplicated once at the end, which costs less memory than a map per file.
#[derive(Debug, Default)]
struct FileCoverage {
    /// (line number, executed) per `DA`.
    lines: Vec<(u64, bool)>,
    /// ((line, block, branch), taken) per `BRDA`.
    branches: Vec<((u64, String, String), bool)>,
    lines_summary: Option<(u64, u64)>,
    branches_summary: Option<(u64, u64)>,
}

impl FileCoverage {
    fn absorb(&mut self, record: FileCoverage) {
        self.lines.extend(record.lines);
        self.branches.extend(record.branches);
        self.lines_summary = record.lines_summary.or(self.lines_summary);
        self.branches_summary = record.branches_summary.or(self.branches_summary);
    }

    /// (found, hit) lines: from the detail when there is any, else from `LF`/`LH`.
    fn line_counts(&mut self) -> (u64, u64) {
        if self.lines.is_empty() {
            return self.lines_summary.map_or((0, 0), |(found, hit)| (found, hit.min(found)));
        }
        distinct_and_hit(&mut self.lines)
    }

    fn branch_counts(&mut self) -> (u64, u64) {
        if self.branches.is_empty() {
            return self.branches_summary.map_or((0, 0), |(found, hit)| (found, hit.min(found)));
        }
        distinct_and_hit(&mut self.branches)
    }
}

/// Number of distinct keys, and of those with any `true`.
fn distinct_and_hit<K: Ord>(entries: &mut [(K, bool)]) -> (u64, u64) {
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let (mut distinct, mut hit) = (0u64, 0u64);
    let mut index = 0;
    while index < entries.len() {
        let mut any = false;
        let mut end = index;
        while end < entries.len() && entries[end].0 == entries[index].0 {
            any |= entries[end].1;
            end += 1;
        }
        distinct += 1;
        hit += u64::from(any);
        index = end;
    }
    (distinct, hit)
}

/// The record between `SF:` and `end_of_record` being read.
struct OpenRecord {
    path: String,
    started: usize,
    coverage: FileCoverage,
}

struct Line<'a> {
    number: usize,
    text: &'a str,
}

impl Line<'_> {
    /// An error pointing at a byte offset within this line.
    fn error_at(&self, kind: EvidenceKind, byte: usize, message: impl Into<String>) -> ParseError {
        let column = self.text.get(..byte).map_or(1, |before| before.chars().count() + 1);
        ParseError::new(kind, format!("line {}, column {column}", self.number), message)
    }
}

pub(crate) fn parse(kind: EvidenceKind, text: &str) -> Result<CoverageFacts, ParseError> {
    let mut files: HashMap<String, FileCoverage> = HashMap::new();
    let mut open: Option<OpenRecord> = None;
    let mut last_line = 0;

    for (index, raw) in text.split('\n').enumerate() {
        let line = Line { number: index + 1, text: raw.strip_suffix('\r').unwrap_or(raw) };
        if line.text.trim().is_empty() {
            continue;
        }
        last_line = line.number;
        if line.text == "end_of_record" {
            let Some(record) = open.take() else {
                return Err(line.error_at(kind, 0, "end_of_record without an SF: record before it"));
            };
            files.entry(record.path).or_default().absorb(record.coverage);
            continue;
        }
        let Some((key, value)) = line.text.split_once(':') else {
            return Err(line.error_at(kind, 0, "not an LCOV record: expected KEY:VALUE (SF:, DA:, BRDA:, LF:, …) or end_of_record"));
        };
        let value_at = key.len() + 1;
        if key == "SF" {
            if let Some(OpenRecord { path, started, .. }) = &open {
                return Err(line.error_at(
                    kind,
                    0,
                    format!("SF: while the record for {path} (line {started}) is still open: add end_of_record before it"),
                ));
            }
            if value.trim().is_empty() {
                return Err(line.error_at(kind, value_at, "SF: needs the source file path"));
            }
            open = Some(OpenRecord { path: value.to_string(), started: line.number, coverage: FileCoverage::default() });
            continue;
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(line.error_at(
                kind,
                0,
                format!("{key:?} is not an LCOV record type: record types are upper-case, such as DA or BRDA"),
            ));
        }
        if !matches!(key, "DA" | "BRDA" | "LF" | "LH" | "BRF" | "BRH") {
            continue;
        }
        let Some(file) = open.as_mut().map(|record| &mut record.coverage) else {
            return Err(line.error_at(kind, 0, format!("{key}: outside a file record: put it between SF: and end_of_record")));
        };
        let fields = Fields { line: &line, kind, value, value_at };
        match key {
            "DA" => {
                let parts = fields.split(2, 3, "DA:<line number>,<execution count>[,<checksum>]")?;
                let number = fields.line_number(parts[0])?;
                let hit = fields.count(parts[1], false)?;
                file.lines.push((number, hit));
            }
            "BRDA" => {
                let parts = fields.split(4, 4, "BRDA:<line number>,<block>,<branch>,<taken count or ->")?;
                let number = fields.line_number(parts[0])?;
                let taken = fields.count(parts[3], true)?;
                file.branches.push(((number, parts[1].1.to_string(), parts[2].1.to_string()), taken));
            }
            "LF" => file.lines_summary = Some((fields.whole(value)?, file.lines_summary.map_or(0, |(_, hit)| hit))),
            "LH" => file.lines_summary = Some((file.lines_summary.map_or(0, |(found, _)| found), fields.whole(value)?)),
            "BRF" => file.branches_summary = Some((fields.whole(value)?, file.branches_summary.map_or(0, |(_, hit)| hit))),
            _ /* BRH */ => file.branches_summary = Some((file.branches_summary.map_or(0, |(found, _)| found), fields.whole(value)?)),
        }
        let summary = if matches!(key, "LF" | "LH") { file.lines_summary } else { file.branches_summary };
        if let (Some((found, hit)), "LF" | "LH" | "BRF" | "BRH") = (summary, key) {
            if hit > found && found > 0 {
                return Err(line.error_at(
                    kind,
                    value_at,
                    format!("{key}:{hit} is more than the {found} found: the summary is inconsistent"),
                ));
            }
        }
    }
    if let Some(OpenRecord { path, started, .. }) = open {
        return Err(ParseError::new(
            kind,
            format!("line {}, column 1", last_line.max(started)),
            format!("the record for {path} started on line {started} has no end_of_record: the file is truncated"),
        ));
    }
    if files.is_empty() {
        return Err(ParseError::new(kind, "line 1, column 1", "no SF: record: this is not an LCOV tracefile, or it covers no files"));
    }

    let (mut lines_total, mut lines_covered, mut branches_total, mut branches_covered) = (0u64, 0u64, 0u64, 0u64);
    for file in files.values_mut() {
        let (found, hit) = file.line_counts();
        lines_total = lines_total.saturating_add(found);
        lines_covered = lines_covered.saturating_add(hit);
        let (found, hit) = file.branch_counts();
        branches_total = branches_total.saturating_add(found);
        branches_covered = branches_covered.saturating_add(hit);
    }
    Ok(CoverageFacts::from_counts(lines_total, lines_covered, branches_total, branches_covered, files.len() as u64))
}

struct Fields<'a> {
    line: &'a Line<'a>,
    kind: EvidenceKind,
    value: &'a str,
    /// Byte offset of `value` within the line.
    value_at: usize,
}

impl<'a> Fields<'a> {
    /// Splits the value on commas into `min..=max` parts, each with its byte offset in the line.
    fn split(&self, min: usize, max: usize, shape: &str) -> Result<[(usize, &'a str); 4], ParseError> {
        let mut parts = [(0, ""); 4];
        let mut count = 0;
        let mut at = self.value_at;
        for part in self.value.splitn(max.min(4), ',') {
            parts[count] = (at, part);
            count += 1;
            at += part.len() + 1;
        }
        if count < min {
            return Err(self.line.error_at(self.kind, self.value_at, format!("expected {shape}")));
        }
        Ok(parts)
    }

    fn line_number(&self, (at, raw): (usize, &str)) -> Result<u64, ParseError> {
        match raw.trim().parse::<u64>() {
            Ok(number) if number > 0 => Ok(number),
            _ => Err(self.line.error_at(self.kind, at, format!("{raw:?} is not a line number (a whole number from 1)"))),
        }
    }

    /// Whether an execution count is non-zero. Counts may be larger than any integer type, so
    /// only their digits are checked; `-` (branch not taken) is allowed where `dash_allowed`.
    fn count(&self, (at, raw): (usize, &str), dash_allowed: bool) -> Result<bool, ParseError> {
        let raw = raw.trim();
        if dash_allowed && raw == "-" {
            return Ok(false);
        }
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            let allowed = if dash_allowed { "a whole number of times taken, or -" } else { "a whole number of executions" };
            return Err(self.line.error_at(self.kind, at, format!("{raw:?} is not {allowed}")));
        }
        Ok(raw.bytes().any(|b| b != b'0'))
    }

    fn whole(&self, raw: &str) -> Result<u64, ParseError> {
        raw.trim().parse::<u64>().map_err(|_| self.line.error_at(self.kind, self.value_at, format!("{raw:?} is not a whole number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(text: &str) -> CoverageFacts {
        parse(EvidenceKind::Lcov, text).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn detail_lines_are_counted_and_records_for_one_file_merge() {
        let text = "TN:unit\nSF:src/a.rs\nFN:1,main\nDA:1,3\nDA:2,0\nDA:3,0,abc\nBRDA:2,0,0,1\nBRDA:2,0,1,-\nLF:3\nLH:1\nend_of_record\n\
                    TN:integration\nSF:src/a.rs\nDA:2,5\nBRDA:2,0,1,0\nend_of_record\nSF:src/b.rs\nLF:10\nLH:4\nBRF:2\nBRH:2\nend_of_record\n";
        let facts = facts(text);
        assert_eq!((facts.lines_total, facts.lines_covered, facts.files), (13, 6, 2));
        assert_eq!((facts.branches_total, facts.branches_covered), (4, 3));
        assert_eq!(facts.branch_rate, Some(0.75));
        assert!((facts.line_rate - 6.0 / 13.0).abs() < 1e-12);
    }

    #[test]
    fn no_lines_means_rate_zero_and_no_branch_rate() {
        let facts = facts("SF:empty.rs\r\nend_of_record\r\n");
        assert_eq!((facts.lines_total, facts.line_rate, facts.branch_rate), (0, 0.0, None));
    }

    #[test]
    fn huge_counts_are_fine_and_coverage_py_branch_names_are_kept_apart() {
        let facts = facts("SF:x.py\nDA:1,99999999999999999999999\nBRDA:9,0,jump to line 10,0\nBRDA:9,0,jump to line 11,1\nend_of_record\n");
        assert_eq!((facts.lines_covered, facts.branches_total, facts.branches_covered), (1, 2, 1));
    }

    #[test]
    fn malformed_tracefiles_name_line_and_column() {
        let cases = [
            ("DA:1,1\n", "line 1, column 1", "outside a file record"),
            ("SF:a\nDA:x,1\nend_of_record\n", "line 2, column 4", "not a line number"),
            ("SF:a\nDA:0,1\nend_of_record\n", "line 2, column 4", "not a line number"),
            ("SF:a\nDA:3,-2\nend_of_record\n", "line 2, column 6", "executions"),
            ("SF:a\nDA:3\nend_of_record\n", "line 2, column 4", "DA:<line number>"),
            ("SF:a\nBRDA:3,0,0,yes\nend_of_record\n", "line 2, column 12", "or -"),
            ("SF:a\nLF:3\nLH:4\nend_of_record\n", "line 3, column 4", "inconsistent"),
            ("SF:a\nLF:three\nend_of_record\n", "line 2, column 4", "whole number"),
            ("SF:a\nDA:1,1\n", "line 2, column 1", "no end_of_record"),
            ("SF:a\nSF:b\n", "line 2, column 1", "still open"),
            ("end_of_record\n", "line 1, column 1", "without an SF"),
            ("SF:a\nhello world\nend_of_record\n", "line 2, column 1", "not an LCOV record"),
            ("SF:a\nda:1,1\nend_of_record\n", "line 2, column 1", "upper-case"),
            ("\n\n", "line 1, column 1", "no SF"),
            ("<?xml version=\"1.0\"?><coverage/>", "line 1, column 1", ""),
        ];
        for (text, location, words) in cases {
            let error = parse(EvidenceKind::Lcov, text).unwrap_err();
            assert_eq!(error.location, location, "{text:?}: {}", error.message);
            assert!(error.message.contains(words), "{text:?}: {}", error.message);
        }
    }
}
