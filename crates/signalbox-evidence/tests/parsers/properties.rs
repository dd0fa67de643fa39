//! Property tests: no input makes a parser panic, and generated files with known contents parse
//! to exactly those contents.

use proptest::prelude::*;
use signalbox_evidence::{parse, EvidenceKind, Facts};

use crate::fixture;

fn any_kind() -> impl Strategy<Value = EvidenceKind> {
    proptest::sample::select(EvidenceKind::ALL.to_vec())
}

/// Text made of the characters that matter to our formats, so generated input gets past the
/// first byte more often than arbitrary bytes do.
fn format_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("<testsuite>"),
            Just("</testsuite>"),
            Just("<testcase name=\"t\">"),
            Just("</testcase>"),
            Just("<failure/>"),
            Just("<skipped/>"),
            Just("<coverage lines-valid=\"3\" lines-covered=\"9\">"),
            Just("<line number=\"1\" hits=\"1\"/>"),
            Just("<class filename=\"a\">"),
            Just("<lines>"),
            Just("</lines>"),
            Just("&amp;"),
            Just("&lol;"),
            Just("<!DOCTYPE x>"),
            Just("SF:a\n"),
            Just("DA:1,1\n"),
            Just("BRDA:1,0,0,-\n"),
            Just("LF:2\n"),
            Just("LH:3\n"),
            Just("end_of_record\n"),
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(","),
            Just(":"),
            Just("\"runs\""),
            Just("\"results\""),
            Just("\"version\":\"2.1.0\""),
            Just("\"metrics\""),
            Just("\"checks\""),
            Just("\"name\":\"x\""),
            Just("1e308"),
            Just("-0"),
            Just("\"\\ud800\""),
            Just("é"),
            Just("\n"),
            Just(" "),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(kind in any_kind(), bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(kind, &bytes);
    }

    #[test]
    fn format_like_text_never_panics_and_errors_have_locations(kind in any_kind(), text in format_soup()) {
        if let Err(error) = parse(kind, text.as_bytes()) {
            prop_assert_eq!(error.kind, kind);
            prop_assert!(!error.location.is_empty() && !error.message.is_empty());
        }
    }

    #[test]
    fn mutated_real_files_never_panic(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let (kind, name) = [
            (EvidenceKind::Junit, "nextest-junit.xml"),
            (EvidenceKind::Cobertura, "coverage-py-cobertura.xml"),
            (EvidenceKind::Lcov, "coverage-py.lcov"),
            (EvidenceKind::Sarif, "ruff-with-security-severity.sarif"),
            (EvidenceKind::Spdx, "npm-sbom.spdx.json"),
            (EvidenceKind::Cyclonedx, "npm-sbom.cdx.json"),
        ][which];
        let mut bytes = fixture(name);
        for (at, byte, op) in edits {
            let i = at.index(bytes.len().max(1)).min(bytes.len());
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        if let Ok(facts) = parse(kind, &bytes) {
            // Whatever is accepted still serialises and keeps its invariants.
            prop_assert!(serde_json::to_string(&facts).is_ok());
            if let Facts::Junit(t) = &facts {
                prop_assert_eq!(t.total, t.passed + t.failed + t.errored + t.skipped);
            }
            if let Facts::Lcov(c) | Facts::Cobertura(c) = &facts {
                prop_assert!(c.lines_covered <= c.lines_total && (0.0..=1.0).contains(&c.line_rate));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Pass,
    Fail,
    Error,
    Skip,
    Flaky,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Pass), Just(Outcome::Fail), Just(Outcome::Error), Just(Outcome::Skip), Just(Outcome::Flaky)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Generated JUnit with known outcomes, spread over suites (some nested), reports exactly them.
    #[test]
    fn generated_junit_reports_its_outcomes(suites in proptest::collection::vec((proptest::collection::vec(outcome(), 0..30), any::<bool>()), 1..6), wrap in any::<bool>()) {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        if wrap { xml.push_str("<testsuites name=\"generated\">\n"); } else { xml.push_str("<testsuite name=\"root\">\n"); }
        let mut expected_failures = Vec::new();
        for (s, (cases, nested)) in suites.iter().enumerate() {
            xml.push_str(&format!("<testsuite name=\"suite{s}\">"));
            if *nested { xml.push_str(&format!("<testsuite name=\"inner{s}\">")); }
            for (c, case) in cases.iter().enumerate() {
                let body = match case {
                    Outcome::Pass => "",
                    Outcome::Fail => "<failure message=\"expected &lt;1&gt;\">trace</failure><system-out>log</system-out>",
                    Outcome::Error => "<error>boom &amp; bust</error>",
                    Outcome::Skip => "<skipped message=\"later\"/>",
                    Outcome::Flaky => "<flakyFailure message=\"once\"><stackTrace>x</stackTrace></flakyFailure>",
                };
                if matches!(case, Outcome::Fail | Outcome::Error) {
                    expected_failures.push(format!("C{s}.t{c}"));
                }
                xml.push_str(&format!("\n  <testcase classname=\"C{s}\" name=\"t{c}\" time=\"0.5\">{body}</testcase>"));
            }
            if *nested { xml.push_str("</testsuite>"); }
            xml.push_str("</testsuite>\n");
        }
        xml.push_str(if wrap { "</testsuites>\n" } else { "</testsuite>\n" });

        let all: Vec<Outcome> = suites.iter().flat_map(|(cases, _)| cases.iter().copied()).collect();
        let count = |o: Outcome| all.iter().filter(|x| **x == o).count() as u64;
        let Ok(Facts::Junit(facts)) = parse(EvidenceKind::Junit, xml.as_bytes()) else { panic!("refused:\n{xml}") };
        prop_assert_eq!(facts.total, all.len() as u64);
        prop_assert_eq!(facts.passed, count(Outcome::Pass) + count(Outcome::Flaky));
        prop_assert_eq!(facts.flaky, count(Outcome::Flaky));
        prop_assert_eq!(facts.failed, count(Outcome::Fail));
        prop_assert_eq!(facts.errored, count(Outcome::Error));
        prop_assert_eq!(facts.skipped, count(Outcome::Skip));
        let listed: Vec<String> = facts.failures.iter().map(|f| f.name.clone()).collect();
        expected_failures.truncate(50);
        prop_assert_eq!(listed, expected_failures.clone());
        prop_assert_eq!(facts.failures_truncated, count(Outcome::Fail) + count(Outcome::Error) > 50);
        if all.is_empty() || !wrap {
            // no root time and either no cases or a root <testsuite> without time: sum of the cases
        }
        prop_assert_eq!(facts.duration_seconds, if all.is_empty() { None } else { Some(0.5 * all.len() as f64) });
    }

    /// Generated LCOV with known per-line hits and branches parses to those counts, however the
    /// records are split across test names.
    #[test]
    fn generated_lcov_reports_its_counts(
        files in proptest::collection::vec(
            (proptest::collection::btree_map(1u64..500, 0u64..4, 0..40), proptest::collection::btree_map((1u64..500, 0u8..3), proptest::option::of(0u64..3), 0..10)),
            1..5,
        ),
        split in any::<bool>(),
    ) {
        let mut text = String::new();
        let (mut lines_total, mut lines_covered, mut branches_total, mut branches_taken) = (0, 0, 0, 0);
        for (index, (lines, branches)) in files.iter().enumerate() {
            lines_total += lines.len() as u64;
            lines_covered += lines.values().filter(|hits| **hits > 0).count() as u64;
            branches_total += branches.len() as u64;
            branches_taken += branches.values().filter(|taken| matches!(taken, Some(n) if *n > 0)).count() as u64;
            let record = |lines: &mut dyn Iterator<Item = (&u64, &u64)>, zero: bool| {
                let mut record = format!("TN:t\nSF:src/file{index}.rs\nFN:1,f\nFNDA:1,f\n");
                for (line, hits) in lines {
                    record.push_str(&format!("DA:{line},{}\n", if zero { 0 } else { *hits }));
                }
                record
            };
            if split {
                // The second record repeats every line unexecuted: merging must not change coverage.
                text.push_str(&record(&mut lines.iter(), false));
                text.push_str("end_of_record\n");
                text.push_str(&record(&mut lines.iter(), true));
            } else {
                text.push_str(&record(&mut lines.iter(), false));
            }
            for ((line, branch), taken) in branches {
                let taken = taken.map_or("-".to_string(), |n| n.to_string());
                text.push_str(&format!("BRDA:{line},0,{branch},{taken}\n"));
            }
            text.push_str(&format!("LF:{}\nLH:{}\nend_of_record\n", lines.len(), lines.values().filter(|h| **h > 0).count()));
        }
        let Ok(Facts::Lcov(facts)) = parse(EvidenceKind::Lcov, text.as_bytes()) else { panic!("refused:\n{text}") };
        prop_assert_eq!((facts.lines_total, facts.lines_covered), (lines_total, lines_covered));
        prop_assert_eq!((facts.branches_total, facts.branches_covered), (branches_total, branches_taken));
        prop_assert_eq!(facts.files, files.len() as u64);
        prop_assert_eq!(facts.branch_rate.is_some(), branches_total > 0);
    }

    /// Generated Cobertura with known lines gives the same counts as the equivalent LCOV.
    #[test]
    fn generated_cobertura_matches_equivalent_lcov(files in proptest::collection::vec(proptest::collection::btree_map(1u64..300, (0u64..3, proptest::option::of((0u64..3, 1u64..3))), 0..30), 1..4)) {
        let mut xml = String::from("<coverage><packages><package name=\"p\"><classes>");
        let mut lcov = String::new();
        for (index, lines) in files.iter().enumerate() {
            xml.push_str(&format!("<class name=\"c{index}\" filename=\"f{index}.py\"><methods/><lines>"));
            lcov.push_str(&format!("SF:f{index}.py\n"));
            for (line, (hits, branches)) in lines {
                match branches {
                    Some((covered, total)) => {
                        let covered = (*covered).min(*total);
                        xml.push_str(&format!("<line number=\"{line}\" hits=\"{hits}\" branch=\"true\" condition-coverage=\"{}% ({covered}/{total})\"/>", covered * 100 / total));
                        for branch in 0..*total {
                            lcov.push_str(&format!("BRDA:{line},0,{branch},{}\n", u64::from(branch < covered)));
                        }
                    }
                    None => xml.push_str(&format!("<line number=\"{line}\" hits=\"{hits}\"/>")),
                }
                lcov.push_str(&format!("DA:{line},{hits}\n"));
            }
            xml.push_str("</lines></class>");
            lcov.push_str("end_of_record\n");
        }
        xml.push_str("</classes></package></packages></coverage>");
        let Ok(Facts::Cobertura(from_xml)) = parse(EvidenceKind::Cobertura, xml.as_bytes()) else { panic!("refused:\n{xml}") };
        let Ok(Facts::Lcov(from_lcov)) = parse(EvidenceKind::Lcov, lcov.as_bytes()) else { panic!("refused:\n{lcov}") };
        prop_assert_eq!(from_xml, from_lcov);
    }
}
