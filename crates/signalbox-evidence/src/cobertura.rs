//! Cobertura XML coverage (the `coverage-04.dtd` shape), as coverage.py (`coverage xml`),
//! JaCoCo-to-Cobertura converters, cargo-llvm-cov `--cobertura`, gcovr and istanbul write it.
//!
//! `<coverage>` root → `<packages>/<package>/<classes>/<class filename=…>/<lines>/<line number hits
//! [branch condition-coverage="50% (1/2)"]>`. Lines are counted from the `<line>` elements of each
//! class's `<lines>`; the copies under `<methods>` are ignored so no line counts twice. Branches are
//! the `(covered/total)` of `condition-coverage`. Only when a file has no `<line>` elements do the
//! root's `lines-valid`/`lines-covered` (and `branches-valid`/`branches-covered`) give the totals.

use std::collections::HashSet;

use crate::facts::CoverageFacts;
use crate::xml::{number_attr, Tag, XmlEvent, XmlReader};
use crate::{EvidenceKind, ParseError};

pub(crate) fn parse(kind: EvidenceKind, text: &str) -> Result<CoverageFacts, ParseError> {
    let mut reader = XmlReader::new(kind, text);
    // Names of the open elements we descended into; anything else is skipped whole.
    let mut path: Vec<String> = Vec::new();
    let mut root_totals = RootTotals::default();
    let mut files: HashSet<String> = HashSet::new();
    let (mut line_elements, mut lines_total, mut lines_covered) = (false, 0u64, 0u64);
    let (mut branches_total, mut branches_covered) = (0u64, 0u64);

    while let Some(event) = reader.next_event()? {
        let tag = match event {
            XmlEvent::Start(tag) => tag,
            XmlEvent::End => {
                path.pop();
                continue;
            }
            XmlEvent::Text(_) => continue,
        };
        let parent = path.last().map(String::as_str);
        match (parent, tag.name.as_str()) {
            (None, "coverage") => root_totals = RootTotals::read(&reader, &tag)?,
            (None, other) => {
                return Err(reader.error_at(tag.offset, format!("the root element is <{other}>; Cobertura XML has a <coverage> root")));
            }
            (Some("coverage"), "packages") | (Some("packages"), "package") | (Some("package"), "classes") | (Some("class"), "lines") => {}
            (Some("classes"), "class") => {
                let Some(filename) = tag.attr("filename") else {
                    return Err(reader.error_at(tag.offset, "<class> has no filename attribute: each class names its source file"));
                };
                if !files.contains(filename) {
                    files.insert(filename.to_string());
                }
            }
            (Some("lines"), "line") if path.len() >= 2 && path[path.len() - 2] == "class" => {
                line_elements = true;
                let (covered, branches) = read_line(&reader, &tag)?;
                lines_total += 1;
                lines_covered += u64::from(covered);
                if let Some((covered, total)) = branches {
                    branches_total = branches_total.saturating_add(total);
                    branches_covered = branches_covered.saturating_add(covered);
                }
            }
            _ => {
                reader.skip_element()?;
                continue;
            }
        }
        path.push(tag.name);
    }

    if !line_elements {
        match (root_totals.lines_valid, root_totals.lines_covered) {
            (Some(valid), Some(covered)) => {
                lines_total = valid;
                lines_covered = covered.min(valid);
            }
            // Classes without lines: files with nothing to cover, like an empty LCOV record.
            _ if !files.is_empty() => {}
            _ => {
                return Err(ParseError::new(
                    kind,
                    "line 1, column 1",
                    "no <class> or <line> elements and no lines-valid/lines-covered on <coverage>: the report has no line counts",
                ))
            }
        }
    }
    if branches_total == 0 {
        if let (Some(valid), Some(covered)) = (root_totals.branches_valid, root_totals.branches_covered) {
            branches_total = valid;
            branches_covered = covered.min(valid);
        }
    }
    Ok(CoverageFacts::from_counts(lines_total, lines_covered, branches_total, branches_covered, files.len() as u64))
}

#[derive(Debug, Default)]
struct RootTotals {
    lines_valid: Option<u64>,
    lines_covered: Option<u64>,
    branches_valid: Option<u64>,
    branches_covered: Option<u64>,
}

impl RootTotals {
    fn read(reader: &XmlReader<'_>, tag: &Tag) -> Result<Self, ParseError> {
        let whole = "a whole number";
        let totals = RootTotals {
            lines_valid: number_attr(reader, tag, "lines-valid", whole)?,
            lines_covered: number_attr(reader, tag, "lines-covered", whole)?,
            branches_valid: number_attr(reader, tag, "branches-valid", whole)?,
            branches_covered: number_attr(reader, tag, "branches-covered", whole)?,
        };
        for rate in ["line-rate", "branch-rate"] {
            let value: Option<f64> = number_attr(reader, tag, rate, "a number from 0 to 1")?;
            if value.is_some_and(|value| !(0.0..=1.0).contains(&value)) {
                return Err(reader.error_at(tag.offset, format!("attribute {rate} of <coverage> must be a number from 0 to 1")));
            }
        }
        Ok(totals)
    }
}

/// Whether the line was executed, and its `(covered, total)` branches when it is a branch line.
fn read_line(reader: &XmlReader<'_>, tag: &Tag) -> Result<(bool, Option<(u64, u64)>), ParseError> {
    let number: Option<u64> = number_attr(reader, tag, "number", "a line number")?;
    if number.is_none() {
        return Err(reader.error_at(tag.offset, "<line> has no number attribute"));
    }
    let Some(hits) = tag.attr("hits").map(str::trim) else {
        return Err(reader.error_at(tag.offset, "<line> has no hits attribute"));
    };
    // Hit counts can exceed any integer type; only whether they are zero matters.
    if hits.is_empty() || !hits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reader.error_at(tag.offset, format!("attribute hits=\"{hits}\" of <line> must be a whole number")));
    }
    let covered = hits.bytes().any(|b| b != b'0');
    if tag.attr("branch") != Some("true") {
        return Ok((covered, None));
    }
    let Some(condition) = tag.attr("condition-coverage") else {
        return Ok((covered, None));
    };
    parse_condition_coverage(condition)
        .map(|branches| (covered, Some(branches)))
        .ok_or_else(|| reader.error_at(tag.offset, format!("condition-coverage=\"{condition}\" must look like \"50% (1/2)\"")))
}

/// `"50% (1/2)"` → `(1, 2)`.
fn parse_condition_coverage(raw: &str) -> Option<(u64, u64)> {
    let inside = raw.split_once('(')?.1.strip_suffix(')')?;
    let (covered, total) = inside.split_once('/')?;
    let (covered, total) = (covered.trim().parse::<u64>().ok()?, total.trim().parse::<u64>().ok()?);
    (covered <= total).then_some((covered, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_from_classes_not_methods_and_root_totals_fill_in() {
        let xml = r#"<?xml version="1.0" ?>
<coverage lines-valid="999" lines-covered="1" branches-valid="7" branches-covered="7" line-rate="0.5">
  <packages><package name="p"><classes>
    <class name="A" filename="a.py">
      <methods><method name="m"><lines><line number="1" hits="1"/></lines></method></methods>
      <lines><line number="1" hits="1"/><line number="2" hits="0" branch="true" condition-coverage="50% (1/2)"/></lines>
    </class>
    <class name="A$Inner" filename="a.py"><lines><line number="3" hits="2"/></lines></class>
  </classes></package></packages>
</coverage>"#;
        let facts = parse(EvidenceKind::Cobertura, xml).unwrap();
        assert_eq!((facts.lines_total, facts.lines_covered, facts.files), (3, 2, 1));
        assert_eq!((facts.branches_total, facts.branches_covered, facts.branch_rate), (2, 1, Some(0.5)));

        let summary_only = r#"<coverage lines-valid="10" lines-covered="4" branches-valid="0" branches-covered="0"/>"#;
        let facts = parse(EvidenceKind::Cobertura, summary_only).unwrap();
        assert_eq!((facts.lines_total, facts.lines_covered, facts.line_rate, facts.branch_rate), (10, 4, 0.4, None));
    }

    #[test]
    fn condition_coverage_parses_only_its_shape() {
        assert_eq!(parse_condition_coverage("50% (1/2)"), Some((1, 2)));
        assert_eq!(parse_condition_coverage("100% (4/4)"), Some((4, 4)));
        for bad in ["50%", "(3/2)", "(a/2)", "(1/2", ""] {
            assert_eq!(parse_condition_coverage(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_reports_name_their_line() {
        let cases = [
            ("<report/>", "line 1, column 1", "root element"),
            ("<coverage line-rate=\"1.5\"/>", "line 1, column 1", "from 0 to 1"),
            ("<coverage/>", "line 1, column 1", "no line counts"),
            ("<coverage><packages><package><classes>\n<class name=\"x\"/></classes></package></packages></coverage>", "line 2, column 1", "filename"),
            (
                "<coverage><packages><package><classes><class filename=\"x\"><lines>\n  <line number=\"1\" hits=\"-1\"/></lines></class></classes></package></packages></coverage>",
                "line 2, column 3",
                "hits",
            ),
            (
                "<coverage><packages><package><classes><class filename=\"x\"><lines>\n<line number=\"1\" hits=\"1\" branch=\"true\" condition-coverage=\"half\"/></lines></class></classes></package></packages></coverage>",
                "line 2, column 1",
                "condition-coverage",
            ),
        ];
        for (xml, location, words) in cases {
            let error = parse(EvidenceKind::Cobertura, xml).unwrap_err();
            assert_eq!(error.location, location, "{xml}: {}", error.message);
            assert!(error.message.contains(words), "{xml}: {}", error.message);
        }
    }
}
