//! JUnit XML test results, as pytest (`--junitxml`), cargo-nextest and Maven Surefire write them.
//!
//! There is no single JUnit XML standard; we read the common shape (the Ant/Surefire schema,
//! `surefire-test-report-3.0.xsd`): a `<testsuites>` or `<testsuite>` root, suites possibly
//! nested, `<testcase>` elements whose children tell the outcome:
//! - `<error>` → errored, else `<failure>` or `<rerunFailure>`/`<rerunError>` (failed on every
//!   retry) → failed, else `<skipped>` → skipped, else passed;
//! - `<flakyFailure>`/`<flakyError>` without a failure (Surefire and nextest: failed, then passed
//!   on a retry) → passed, and counted in `flaky`.
//!
//! Counts come from the test cases, never from the `tests=`/`failures=` attributes, which tools
//! compute differently (pytest counts errors apart from failures, Surefire counts flaky reruns).

use crate::facts::{clip_message, TestFacts, TestFailure, MAX_LISTED_FAILURES, MAX_MESSAGE_CHARS};
use crate::xml::{number_attr, Tag, XmlEvent, XmlReader};
use crate::{EvidenceKind, ParseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// The `<testsuites>` root: holds suites, not test cases.
    Suites,
    Suite,
    Case,
    /// A child of a test case that tells its outcome; its text may be the message.
    Outcome,
}

#[derive(Debug, Default)]
struct Case {
    suite: Option<String>,
    name: String,
    errored: bool,
    failed: bool,
    skipped: bool,
    flaky: bool,
    message: Option<String>,
    text: String,
}

#[derive(Debug, Default)]
struct Totals {
    passed: u64,
    failed: u64,
    errored: u64,
    skipped: u64,
    flaky: u64,
    failures: Vec<TestFailure>,
    failures_truncated: bool,
    root_seconds: Option<f64>,
    suite_seconds: Option<f64>,
    case_seconds: Option<f64>,
}

pub(crate) fn parse(kind: EvidenceKind, text: &str) -> Result<TestFacts, ParseError> {
    let mut reader = XmlReader::new(kind, text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut suites: Vec<Option<String>> = Vec::new();
    let mut case: Option<Case> = None;
    let mut totals = Totals::default();
    let mut tool: Option<String> = None;
    let mut root_is_testsuites = false;

    while let Some(event) = reader.next_event()? {
        match event {
            XmlEvent::Start(tag) => {
                if stack.is_empty() && suites.is_empty() && reader.depth() == 1 {
                    match tag.name.as_str() {
                        "testsuites" => {
                            root_is_testsuites = true;
                            if tag.attr("name") == Some("nextest-run") {
                                tool = Some("cargo-nextest".into());
                            }
                            totals.root_seconds = seconds(&reader, &tag)?;
                            stack.push(Frame::Suites);
                            continue;
                        }
                        "testsuite" => {}
                        other => {
                            return Err(reader.error_at(
                                tag.offset,
                                format!("the root element is <{other}>; JUnit XML has a <testsuites> or <testsuite> root"),
                            ))
                        }
                    }
                }
                match (tag.name.as_str(), stack.last()) {
                    ("testsuite", None | Some(Frame::Suites | Frame::Suite)) => {
                        if tool.is_none() {
                            tool = detect_tool(&tag);
                        }
                        let top_level = reader.depth() == 1 || (root_is_testsuites && reader.depth() == 2);
                        let time = seconds(&reader, &tag)?;
                        if top_level {
                            if reader.depth() == 1 {
                                totals.root_seconds = time;
                            } else {
                                add(&mut totals.suite_seconds, time);
                            }
                        }
                        suites.push(tag.attr("name").map(str::to_string));
                        stack.push(Frame::Suite);
                    }
                    ("testcase", Some(Frame::Suite)) => {
                        let Some(name) = tag.attr("name") else {
                            return Err(reader.error_at(tag.offset, "<testcase> has no name attribute: every test case needs name=\"…\""));
                        };
                        add(&mut totals.case_seconds, seconds(&reader, &tag)?);
                        let name = match tag.attr("classname").filter(|class| !class.is_empty()) {
                            Some(class) => format!("{class}.{name}"),
                            None => name.to_string(),
                        };
                        case = Some(Case { suite: suites.last().cloned().flatten(), name, ..Case::default() });
                        stack.push(Frame::Case);
                    }
                    ("testcase", _) => {
                        return Err(reader.error_at(tag.offset, "<testcase> must be directly inside a <testsuite>"));
                    }
                    ("testsuite", _) => {
                        return Err(reader.error_at(tag.offset, "<testsuite> must be the root or inside <testsuites>/<testsuite>"));
                    }
                    (outcome, Some(Frame::Case)) => {
                        let Some(current) = case.as_mut() else {
                            return Err(reader.error_at(tag.offset, "internal: outcome outside a test case"));
                        };
                        let keeps_message = match outcome {
                            "error" => {
                                current.errored = true;
                                true
                            }
                            "failure" | "rerunFailure" | "rerunError" => {
                                current.failed = true;
                                true
                            }
                            "skipped" => {
                                current.skipped = true;
                                false
                            }
                            "flakyFailure" | "flakyError" => {
                                current.flaky = true;
                                false
                            }
                            _ => {
                                // system-out, system-err, properties: not needed for the facts.
                                reader.skip_element()?;
                                continue;
                            }
                        };
                        if keeps_message && current.message.is_none() {
                            current.message = tag.attr("message").and_then(clip_message);
                        }
                        stack.push(Frame::Outcome);
                    }
                    (_, Some(Frame::Outcome | Frame::Suite | Frame::Suites) | None) => reader.skip_element()?,
                }
            }
            XmlEvent::Text(value) => {
                if stack.last() == Some(&Frame::Outcome) {
                    if let Some(current) = case.as_mut() {
                        if current.text.len() < MAX_MESSAGE_CHARS * 4 {
                            current.text.push_str(&value);
                        }
                    }
                }
            }
            XmlEvent::End => match stack.pop() {
                Some(Frame::Suite) => {
                    suites.pop();
                }
                Some(Frame::Case) => {
                    if let Some(finished) = case.take() {
                        totals.record(finished);
                    }
                }
                Some(Frame::Suites | Frame::Outcome) | None => {}
            },
        }
    }

    let total = totals.passed + totals.failed + totals.errored + totals.skipped;
    Ok(TestFacts {
        tool,
        total,
        passed: totals.passed,
        failed: totals.failed,
        errored: totals.errored,
        skipped: totals.skipped,
        flaky: totals.flaky,
        duration_seconds: totals.root_seconds.or(totals.suite_seconds).or(totals.case_seconds),
        failures: totals.failures,
        failures_truncated: totals.failures_truncated,
    })
}

impl Totals {
    fn record(&mut self, case: Case) {
        let failing = if case.errored {
            self.errored += 1;
            true
        } else if case.failed {
            self.failed += 1;
            true
        } else if case.skipped {
            self.skipped += 1;
            false
        } else {
            self.passed += 1;
            if case.flaky {
                self.flaky += 1;
            }
            false
        };
        if failing {
            if self.failures.len() < MAX_LISTED_FAILURES {
                let message = case.message.or_else(|| clip_message(&case.text));
                self.failures.push(TestFailure { suite: case.suite, name: case.name, message });
            } else {
                self.failures_truncated = true;
            }
        }
    }
}

fn add(sum: &mut Option<f64>, value: Option<f64>) {
    if let Some(value) = value {
        *sum = Some(sum.unwrap_or(0.0) + value);
    }
}

/// Longest `time` accepted, in seconds (about 31 years), so sums stay finite.
const MAX_SECONDS: f64 = 1e9;

/// The `time` attribute in seconds: a non-negative decimal number.
fn seconds(reader: &XmlReader<'_>, tag: &Tag) -> Result<Option<f64>, ParseError> {
    let time: Option<f64> = number_attr(reader, tag, "time", "a number of seconds such as 1.25")?;
    match time {
        Some(value) if !(0.0..=MAX_SECONDS).contains(&value) => Err(reader.error_at(
            tag.offset,
            format!("attribute time=\"{value}\" of <{}> must be a non-negative number of seconds (at most {MAX_SECONDS})", tag.name),
        )),
        other => Ok(other),
    }
}

fn detect_tool(suite: &Tag) -> Option<String> {
    if suite.attr("name") == Some("pytest") {
        return Some("pytest".into());
    }
    let schema = suite.attr("xsi:noNamespaceSchemaLocation").unwrap_or_default();
    schema.contains("surefire").then(|| "maven-surefire".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(xml: &str) -> TestFacts {
        parse(EvidenceKind::Junit, xml).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn outcomes_are_counted_per_test_case() {
        let xml = r#"<testsuite name="s" tests="99" time="2.5">
            <testcase classname="a.B" name="ok" time="1"/>
            <testcase name="fails"><failure message="boom">trace</failure></testcase>
            <testcase name="errs"><error>only text
second line</error></testcase>
            <testcase name="skip"><skipped/></testcase>
            <testcase name="flaky"><flakyFailure message="first try"/></testcase>
        </testsuite>"#;
        let facts = facts(xml);
        assert_eq!((facts.total, facts.passed, facts.failed, facts.errored, facts.skipped, facts.flaky), (5, 2, 1, 1, 1, 1));
        assert_eq!(facts.duration_seconds, Some(2.5));
        assert_eq!(facts.failures.len(), 2);
        assert_eq!(facts.failures[0], TestFailure { suite: Some("s".into()), name: "fails".into(), message: Some("boom".into()) });
        assert_eq!(facts.failures[1].message.as_deref(), Some("only text\nsecond line"));
    }

    #[test]
    fn nested_suites_and_durations_without_a_root_time() {
        let xml = r#"<testsuites><testsuite name="outer" time="1.5"><testsuite name="inner" time="1.0">
            <testcase name="t"><failure/></testcase></testsuite></testsuite><testsuite name="two" time="0.5"/></testsuites>"#;
        let facts = facts(xml);
        assert_eq!(facts.failed, 1);
        assert_eq!(facts.failures[0].suite.as_deref(), Some("inner"));
        assert_eq!(facts.duration_seconds, Some(2.0), "top-level suites only");
    }

    #[test]
    fn failures_listed_are_capped_but_counted() {
        let cases: String = (0..60).map(|i| format!("<testcase name=\"t{i}\"><failure/></testcase>")).collect();
        let facts = facts(&format!("<testsuite>{cases}</testsuite>"));
        assert_eq!(facts.failed, 60);
        assert_eq!(facts.failures.len(), MAX_LISTED_FAILURES);
        assert!(facts.failures_truncated);
    }

    #[test]
    fn malformed_files_are_refused_with_a_location() {
        let cases = [
            ("<report/>", "line 1, column 1", "root element"),
            ("<testsuite>\n  <testcase classname=\"x\"/>\n</testsuite>", "line 2, column 3", "no name"),
            ("<testsuite>\n<testcase name=\"t\" time=\"1,5\"/></testsuite>", "line 2, column 1", "seconds"),
            ("<testsuite>\n<testcase name=\"t\" time=\"-1\"/></testsuite>", "line 2, column 1", "non-negative"),
            ("<testsuite time=\"1e300\"/>", "line 1, column 1", "at most"),
            ("<testsuites>\n <testcase name=\"t\"/></testsuites>", "line 2, column 2", "directly inside"),
            ("<testsuite><testcase name=\"t\">\n<testsuite/></testcase></testsuite>", "line 2, column 1", "must be the root"),
        ];
        for (xml, location, words) in cases {
            let error = parse(EvidenceKind::Junit, xml).unwrap_err();
            assert_eq!(error.location, location, "{xml}");
            assert!(error.message.contains(words), "{xml}: {}", error.message);
        }
    }
}
