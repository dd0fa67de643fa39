//! Hostile and broken inputs: refused with a location, quickly, without panicking.

use signalbox_evidence::{parse, EvidenceKind, MAX_INPUT_BYTES, MAX_XML_DEPTH};

use crate::{fixture, refuse};

const XML_KINDS: [EvidenceKind; 3] = [EvidenceKind::Junit, EvidenceKind::Cobertura, EvidenceKind::Smoke];
const JSON_KINDS: [EvidenceKind; 7] = [
    EvidenceKind::Sarif,
    EvidenceKind::Cyclonedx,
    EvidenceKind::Spdx,
    EvidenceKind::Performance,
    EvidenceKind::Smoke,
    EvidenceKind::Signoff,
    EvidenceKind::DocumentLink,
];

#[test]
fn billion_laughs_is_refused_at_the_doctype() {
    let mut laughs = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE testsuite [\n  <!ENTITY lol \"lol\">\n");
    for level in 1..10 {
        let previous = if level == 1 { "lol".to_string() } else { format!("lol{}", level - 1) };
        laughs.push_str(&format!("  <!ENTITY lol{level} \"{}\">\n", format!("&{previous};").repeat(10)));
    }
    laughs.push_str("]>\n<testsuite name=\"&lol9;\"><testcase name=\"&lol9;\"/></testsuite>\n");
    for kind in XML_KINDS {
        let error = refuse(kind, laughs.as_bytes());
        assert_eq!(error.location, "line 2, column 1", "{kind}");
        assert!(error.message.contains("DOCTYPE"), "{kind}: {}", error.message);
    }
}

#[test]
fn external_entities_are_refused() {
    let xxe =
        "<?xml version=\"1.0\"?>\n<!DOCTYPE coverage [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<coverage lines-valid=\"&xxe;\"/>";
    for kind in XML_KINDS {
        assert!(refuse(kind, xxe.as_bytes()).message.contains("DOCTYPE"));
    }
    // Without a DOCTYPE, a reference to an undeclared entity is an error, never expanded or kept.
    let undeclared = "<testsuite>\n<testcase name=\"&xxe;\"/></testsuite>";
    let error = refuse(EvidenceKind::Junit, undeclared.as_bytes());
    assert_eq!(error.location, "line 2, column 1");
}

#[test]
fn deep_xml_nesting_is_refused() {
    let deep = format!("<testsuites>{}", "<testsuite>".repeat(200_000));
    let error = refuse(EvidenceKind::Junit, deep.as_bytes());
    assert!(error.message.contains(&format!("more than {MAX_XML_DEPTH} deep")), "{}", error.message);
    let deep_unknown = format!("<coverage>{}", "<x>".repeat(200_000));
    assert!(refuse(EvidenceKind::Cobertura, deep_unknown.as_bytes()).message.contains("nested"));
}

#[test]
fn deep_json_nesting_is_refused() {
    // Wherever the nesting is, the document is refused (by serde_json's recursion limit, or
    // earlier by a type or unknown-field error) and the stack holds.
    for field in ["runs", "components", "packages", "metrics", "checks", "by", "url", "zzz"] {
        let deep = format!("{{\"{field}\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        for kind in JSON_KINDS {
            refuse(kind, deep.as_bytes());
        }
    }
    let whole = "[".repeat(100_000);
    for kind in JSON_KINDS {
        refuse(kind, whole.as_bytes());
    }
    let deep_components = format!(
        "{{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.6\",\"components\":{}{}}}",
        "[{\"name\":\"a\",\"components\":".repeat(5_000),
        "[]}]".repeat(5_000)
    );
    assert!(refuse(EvidenceKind::Cyclonedx, deep_components.as_bytes()).message.contains("recursion limit"));
}

#[test]
fn oversized_input_is_refused_whatever_the_kind() {
    let huge = vec![b'<'; MAX_INPUT_BYTES + 1];
    for kind in EvidenceKind::ALL {
        let error = refuse(kind, &huge);
        assert_eq!(error.location, "file");
    }
}

#[test]
fn large_valid_files_stream() {
    // About 4 MB of JUnit with 100,000 test cases: counted, and only 50 failures kept.
    let case = "<testcase classname=\"c\" name=\"t\"><failure message=\"m\"/></testcase>";
    let xml = format!("<testsuite name=\"big\">{}</testsuite>", case.repeat(100_000));
    let Ok(signalbox_evidence::Facts::Junit(facts)) = parse(EvidenceKind::Junit, xml.as_bytes()) else { panic!("big JUnit refused") };
    assert_eq!((facts.total, facts.failed, facts.failures.len(), facts.failures_truncated), (100_000, 100_000, 50, true));
}

#[test]
fn invalid_utf8_and_other_encodings_are_refused() {
    let mut latin1 = b"<testsuite name=\"caf".to_vec();
    latin1.extend_from_slice(b"\xe9\"/>");
    assert_eq!(refuse(EvidenceKind::Junit, &latin1).location, "line 1, column 21");
    let utf16: Vec<u8> = "\u{feff}<testsuite/>".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert!(refuse(EvidenceKind::Junit, &utf16).message.contains("UTF-8"));
    for kind in EvidenceKind::ALL {
        assert!(refuse(kind, b"{\"a\":\"\xc3\x28\"}").message.contains("UTF-8"), "{kind}");
    }
    // A UTF-8 byte-order mark is fine.
    assert!(parse(EvidenceKind::Junit, b"\xEF\xBB\xBF<testsuite/>").is_ok());
}

#[test]
fn empty_and_wrong_format_input_is_refused_for_every_kind() {
    for kind in EvidenceKind::ALL {
        refuse(kind, b"");
        refuse(kind, b"   \n");
    }
    // A file of one kind uploaded as another.
    refuse(EvidenceKind::Junit, &fixture("coverage-py-cobertura.xml"));
    refuse(EvidenceKind::Cobertura, &fixture("pytest-junit.xml"));
    refuse(EvidenceKind::Lcov, &fixture("pytest-junit.xml"));
    refuse(EvidenceKind::Sarif, &fixture("npm-sbom.cdx.json"));
    refuse(EvidenceKind::Cyclonedx, &fixture("npm-sbom.spdx.json"));
    refuse(EvidenceKind::Spdx, &fixture("npm-sbom.cdx.json"));
    refuse(EvidenceKind::Performance, &fixture("hand-smoke.json"));
    refuse(EvidenceKind::Signoff, &fixture("hand-document-link.json"));
    refuse(EvidenceKind::DocumentLink, &fixture("hand-signoff.json"));
    refuse(EvidenceKind::Smoke, &fixture("coverage-py.lcov"));
}

/// A file cut short is refused, not read as the part that arrived.
#[test]
fn truncated_real_files_are_refused() {
    let files = [
        (EvidenceKind::Junit, "pytest-junit.xml"),
        (EvidenceKind::Junit, "nextest-junit.xml"),
        (EvidenceKind::Junit, "hand-surefire.xml"),
        (EvidenceKind::Cobertura, "coverage-py-cobertura.xml"),
        (EvidenceKind::Lcov, "coverage-py.lcov"),
        (EvidenceKind::Sarif, "ruff.sarif"),
        (EvidenceKind::Cyclonedx, "cyclonedx-py-1.6.json"),
        (EvidenceKind::Spdx, "npm-sbom.spdx.json"),
        (EvidenceKind::Performance, "hand-performance.json"),
        (EvidenceKind::Smoke, "hand-smoke.json"),
    ];
    for (kind, name) in files {
        let bytes = fixture(name);
        let trimmed_len = bytes.trim_ascii_end().len();
        for cut in (1..trimmed_len).step_by((trimmed_len / 97).max(1)) {
            let head = &bytes[..cut];
            // An LCOV file cut right after an end_of_record is a complete, smaller tracefile.
            if kind == EvidenceKind::Lcov && head.trim_ascii_end().ends_with(b"end_of_record") {
                continue;
            }
            if let Ok(facts) = parse(kind, head) {
                panic!("{name} cut at byte {cut} of {} was accepted: {facts:?}", bytes.len());
            }
        }
    }
}
