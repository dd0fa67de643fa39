//! One integration-test binary (one link) for the evidence parsers: files produced by real tools,
//! hostile inputs, and property tests.

mod hostile;
mod properties;
mod real_tools;

use signalbox_evidence::{parse, EvidenceKind, Facts, ParseError};

/// Bytes of a committed fixture under tests/fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

pub fn parse_fixture(kind: EvidenceKind, name: &str) -> Facts {
    let facts = parse(kind, &fixture(name)).unwrap_or_else(|error| panic!("{name}: {error}"));
    // Facts roundtrip through their JSON form unchanged: that is what the server stores and shows.
    let json = serde_json::to_string(&facts).expect("facts serialise");
    let again: Facts = serde_json::from_str(&json).unwrap_or_else(|error| panic!("{name}: facts do not deserialise: {error}\n{json}"));
    assert_eq!(again, facts, "{name}: JSON roundtrip");
    facts
}

pub fn refuse(kind: EvidenceKind, bytes: &[u8]) -> ParseError {
    match parse(kind, bytes) {
        Ok(facts) => panic!("{kind} input was accepted: {facts:?}"),
        Err(error) => {
            assert_eq!(error.kind, kind);
            assert!(!error.location.is_empty() && !error.message.is_empty(), "{error:?}");
            error
        }
    }
}
