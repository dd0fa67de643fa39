//! Files produced by real tools (tests/fixtures/regenerate.sh makes them) and the hand-written
//! samples (`hand-*`). Expected numbers come from the tools' own summaries or are computed here
//! from the file independently of the parser.

use serde_json::Value;
use signalbox_evidence::{parse, Better, Component, EvidenceKind, Facts, Level, SbomFormat, Severity, TestFacts};

use crate::{fixture, parse_fixture};

fn tests(facts: Facts) -> TestFacts {
    match facts {
        Facts::Junit(facts) | Facts::Smoke(facts) => facts,
        other => panic!("not test facts: {other:?}"),
    }
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
}

#[test]
fn pytest_junit_matches_pytests_own_summary() {
    // pytest printed: 2 failed, 6 passed, 1 skipped, 1 error.
    let facts = tests(parse_fixture(EvidenceKind::Junit, "pytest-junit.xml"));
    assert_eq!((facts.total, facts.passed, facts.failed, facts.errored, facts.skipped, facts.flaky), (10, 6, 2, 1, 1, 0));
    assert_eq!(facts.tool.as_deref(), Some("pytest"));
    let names: Vec<_> = facts.failures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["test_calc.test_deliberate_failure", "test_calc.test_error_in_test", "test_calc.test_setup_error"]);
    assert!(facts.failures[0].message.as_deref().unwrap().starts_with("AssertionError: two and two make four\nassert 4 == 5"));
    assert_eq!(facts.failures[2].message.as_deref(), Some("failed on setup with \"OSError: database unavailable\""));
    assert_eq!(facts.failures[0].suite.as_deref(), Some("pytest"));
    assert!(facts.duration_seconds.is_some_and(|seconds| seconds > 0.0));
}

#[test]
fn nextest_junit_counts_the_flaky_retry_as_a_pass() {
    let facts = tests(parse_fixture(EvidenceKind::Junit, "nextest-junit.xml"));
    // doubles passes, flaky fails then passes on its retry, fails fails on both attempts;
    // the #[ignore]d test is not in nextest's report.
    assert_eq!((facts.total, facts.passed, facts.failed, facts.errored, facts.skipped, facts.flaky), (3, 2, 1, 0, 0, 1));
    assert_eq!(facts.tool.as_deref(), Some("cargo-nextest"));
    assert_eq!(facts.failures.len(), 1);
    assert_eq!(facts.failures[0].name, "nextest-fixture.tests::fails");
    assert_eq!(facts.failures[0].suite.as_deref(), Some("nextest-fixture"));
    assert!(facts.failures[0].message.as_deref().unwrap().contains("panicked at src/lib.rs:7:26"));
}

#[test]
fn surefire_sample_with_reruns() {
    let facts = tests(parse_fixture(EvidenceKind::Junit, "hand-surefire.xml"));
    assert_eq!((facts.total, facts.passed, facts.failed, facts.errored, facts.skipped, facts.flaky), (7, 4, 1, 1, 1, 2));
    assert_eq!(facts.tool.as_deref(), Some("maven-surefire"));
    assert_eq!(facts.duration_seconds, Some(1.482));
    assert_eq!(facts.failures[0].message.as_deref(), Some("expected: <119.00> but was: <118.99>"));
    assert_eq!(facts.failures[1].name, "com.example.billing.InvoiceTest.loadsCustomer");
}

#[test]
fn smoke_accepts_junit_and_smoke_json() {
    let from_junit = tests(parse_fixture(EvidenceKind::Smoke, "pytest-junit.xml"));
    assert_eq!(from_junit, tests(parse_fixture(EvidenceKind::Junit, "pytest-junit.xml")));
    let from_json = tests(parse_fixture(EvidenceKind::Smoke, "hand-smoke.json"));
    assert_eq!((from_json.total, from_json.passed, from_json.failed), (3, 2, 1));
    assert_eq!(from_json.tool.as_deref(), Some("smoke.sh"));
    assert_eq!(from_json.failures[0].message.as_deref(), Some("POST /orders returned 502 Bad Gateway"));
    assert!((from_json.duration_seconds.unwrap() - 1.645).abs() < 1e-9);
}

#[test]
fn ruff_sarif_findings_take_the_level_ruff_gave() {
    let raw = json("ruff.sarif");
    let results = raw["runs"][0]["results"].as_array().unwrap();
    let Facts::Sarif(facts) = parse_fixture(EvidenceKind::Sarif, "ruff.sarif") else { panic!() };
    assert_eq!(facts.tool.as_deref(), Some("ruff"));
    assert_eq!(facts.findings.len(), results.len());
    for (finding, result) in facts.findings.iter().zip(results) {
        assert_eq!(finding.rule_id.as_deref(), result["ruleId"].as_str());
        assert_eq!(finding.message, result["message"]["text"].as_str().unwrap());
        let level = serde_json::to_value(finding.level).unwrap();
        assert_eq!(level, result["level"]);
        let uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
        let line = result["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64().unwrap();
        assert!(finding.location.as_deref().unwrap().starts_with(&format!("{uri}:{line}:")));
    }
    assert!(facts.findings.iter().all(|f| f.level == Level::Error && f.severity == Severity::High && f.score.is_none()));
    assert_eq!(facts.counts.high, results.len() as u64);
    assert_eq!(facts.max_score, None);
}

#[test]
fn security_severity_from_rules_and_results() {
    let Facts::Sarif(facts) = parse_fixture(EvidenceKind::Sarif, "ruff-with-security-severity.sarif") else { panic!() };
    let shell = facts.findings.iter().find(|f| f.rule_id.as_deref() == Some("S602")).unwrap();
    assert_eq!((shell.score, shell.severity), (Some(9.8), Severity::Critical), "rule property");
    let eval = facts.findings.iter().find(|f| f.rule_id.as_deref() == Some("S307")).unwrap();
    assert_eq!((eval.score, eval.severity), (Some(5.0), Severity::Medium), "the result's property overrides the rule's 7.3");
    assert_eq!((facts.counts.critical, facts.counts.medium), (1, 1));
    assert_eq!(facts.counts.high, facts.findings.len() as u64 - 2);
    assert_eq!(facts.max_score, Some(9.8));
}

/// The components of a CycloneDX document, flattened, computed straight from the JSON.
fn cyclonedx_components(value: &Value, out: &mut Vec<Component>) {
    for component in value["components"].as_array().into_iter().flatten() {
        let licenses = component["licenses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|choice| {
                choice["license"]["id"]
                    .as_str()
                    .or(choice["license"]["name"].as_str())
                    .or(choice["expression"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect();
        out.push(Component {
            name: component["name"].as_str().unwrap().into(),
            version: component["version"].as_str().map(Into::into),
            purl: component["purl"].as_str().map(Into::into),
            licenses,
        });
        cyclonedx_components(component, out);
    }
}

#[test]
fn cyclonedx_from_cyclonedx_py_and_npm() {
    for (name, version) in [
        ("cyclonedx-py-1.4.json", "1.4"),
        ("cyclonedx-py-1.6.json", "1.6"),
        ("npm-sbom.cdx.json", "1.5"),
        ("cargo-cyclonedx.cdx.json", "1.5"),
    ] {
        let Facts::Cyclonedx(facts) = parse_fixture(EvidenceKind::Cyclonedx, name) else { panic!() };
        let mut expected = Vec::new();
        cyclonedx_components(&json(name), &mut expected);
        assert_eq!((facts.format, facts.spec_version.as_str()), (SbomFormat::Cyclonedx, version), "{name}");
        assert_eq!(facts.components, expected, "{name}");
        assert_eq!(facts.component_count, expected.len() as u64);
        assert!(!expected.is_empty() && expected.iter().all(|c| c.purl.is_some()), "{name}");
    }
    let Facts::Cyclonedx(venv) = parse_fixture(EvidenceKind::Cyclonedx, "cyclonedx-py-1.6.json") else { panic!() };
    let pytest = venv.components.iter().find(|c| c.name == "pytest").expect("pytest is in the venv");
    assert_eq!((pytest.version.as_deref(), pytest.licenses.as_slice()), (Some("9.2.0"), ["MIT".to_string()].as_slice()));
    // cargo-cyclonedx on this crate: dependencies with SPDX expressions; the crate itself is the
    // BOM's subject (metadata.component), not one of its components.
    let Facts::Cyclonedx(ours) = parse_fixture(EvidenceKind::Cyclonedx, "cargo-cyclonedx.cdx.json") else { panic!() };
    assert!(ours.components.iter().all(|c| c.name != "signalbox-evidence"));
    let quick_xml = ours.components.iter().find(|c| c.name == "quick-xml").expect("quick-xml is a dependency");
    assert_eq!(quick_xml.licenses, ["MIT"]);
    assert!(quick_xml.purl.as_deref().unwrap().starts_with("pkg:cargo/quick-xml@0.37"));
    let Facts::Cyclonedx(npm) = parse_fixture(EvidenceKind::Cyclonedx, "npm-sbom.cdx.json") else { panic!() };
    let names: Vec<_> = npm.components.iter().map(|c| (c.name.as_str(), c.version.as_deref(), c.licenses.join(" "))).collect();
    assert_eq!(names, [("is-number", Some("7.0.0"), "MIT".to_string()), ("ms", Some("2.1.3"), "MIT".to_string())]);
}

#[test]
fn spdx_from_npm_and_spdx_tools_agree() {
    let Facts::Spdx(npm) = parse_fixture(EvidenceKind::Spdx, "npm-sbom.spdx.json") else { panic!() };
    let Facts::Spdx(converted) = parse_fixture(EvidenceKind::Spdx, "spdx-tools.spdx.json") else { panic!() };
    assert_eq!(npm, converted, "the same document written by two producers gives the same facts");
    assert_eq!(npm.spec_version, "SPDX-2.3");
    let summary: Vec<_> = npm.components.iter().map(|c| (c.name.as_str(), c.licenses.join(" "), c.purl.as_deref())).collect();
    assert_eq!(
        summary,
        [
            ("evidence-fixture", "Apache-2.0".to_string(), Some("pkg:npm/evidence-fixture@1.0.0")),
            ("is-number", "MIT".to_string(), Some("pkg:npm/is-number@7.0.0")),
            ("ms", "MIT".to_string(), Some("pkg:npm/ms@2.1.3")),
        ]
    );
}

#[test]
fn lcov_and_cobertura_from_one_coverage_run_agree() {
    let Facts::Lcov(lcov) = parse_fixture(EvidenceKind::Lcov, "coverage-py.lcov") else { panic!() };
    let Facts::Cobertura(cobertura) = parse_fixture(EvidenceKind::Cobertura, "coverage-py-cobertura.xml") else { panic!() };
    assert_eq!(lcov, cobertura, "coverage.py wrote both from the same data");

    // The tool's own totals: the sums of LF/LH and BRF/BRH, and the Cobertura root attributes.
    let text = String::from_utf8(fixture("coverage-py.lcov")).unwrap();
    let sum = |key: &str| text.lines().filter_map(|line| line.strip_prefix(key)).map(|n| n.parse::<u64>().unwrap()).sum::<u64>();
    assert_eq!((lcov.lines_total, lcov.lines_covered), (sum("LF:"), sum("LH:")));
    assert_eq!((lcov.branches_total, lcov.branches_covered), (sum("BRF:"), sum("BRH:")));
    assert_eq!(lcov.files, text.lines().filter(|line| line.starts_with("SF:")).count() as u64);
    let xml = String::from_utf8(fixture("coverage-py-cobertura.xml")).unwrap();
    assert!(xml.contains(&format!("lines-valid=\"{}\" lines-covered=\"{}\"", cobertura.lines_total, cobertura.lines_covered)));
    assert!(xml.contains(&format!("branches-valid=\"{}\" branches-covered=\"{}\"", cobertura.branches_total, cobertura.branches_covered)));
    assert!(lcov.lines_total > lcov.lines_covered && lcov.lines_covered > 0 && lcov.branches_total > 0);
}

#[test]
fn our_formats_hand_written_samples() {
    let Facts::Performance(perf) = parse_fixture(EvidenceKind::Performance, "hand-performance.json") else { panic!() };
    let ratios: Vec<_> = perf.metrics.iter().map(|m| (m.name.as_str(), m.better, (m.change_ratio * 1e6).round() / 1e6)).collect();
    assert_eq!(
        ratios,
        [("p99_latency_ms", Better::Lower, -0.016667), ("p50_latency_ms", Better::Lower, 0.15), ("throughput_rps", Better::Higher, 0.02)]
    );
    let Facts::Signoff(signoff) = parse_fixture(EvidenceKind::Signoff, "hand-signoff.json") else { panic!() };
    assert_eq!((signoff.by.as_str(), signoff.role.as_deref()), ("Ana Lima", Some("qa_lead")));
    let Facts::DocumentLink(link) = parse_fixture(EvidenceKind::DocumentLink, "hand-document-link.json") else { panic!() };
    assert_eq!(link.url, "https://wiki.example.com/payments/2.4/rollback");
}

/// Every example in docs/EVIDENCE.md marked `<!-- example: KIND -->` parses as that kind.
#[test]
fn documented_examples_parse() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/EVIDENCE.md");
    let doc = std::fs::read_to_string(&path).expect("docs/EVIDENCE.md exists");
    let mut documented = Vec::new();
    for (marker_at, _) in doc.match_indices("<!-- example: ") {
        let rest = &doc[marker_at + "<!-- example: ".len()..];
        let kind: EvidenceKind = rest[..rest.find(" -->").unwrap()].parse().unwrap();
        let block = &rest[rest.find("```").unwrap()..];
        let body_start = block.find('\n').unwrap() + 1;
        let body = &block[body_start..body_start + block[body_start..].find("```").unwrap()];
        if let Err(error) = parse(kind, body.as_bytes()) {
            panic!("docs/EVIDENCE.md example for {kind} does not parse: {error}\n{body}");
        }
        documented.push(kind);
    }
    for ours in [EvidenceKind::Performance, EvidenceKind::Smoke, EvidenceKind::Signoff, EvidenceKind::DocumentLink] {
        assert!(documented.contains(&ours), "docs/EVIDENCE.md has no example for {ours}");
    }
}
