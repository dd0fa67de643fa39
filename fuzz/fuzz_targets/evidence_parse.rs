//! Evidence files are outside input: any bytes, parsed as every kind, never panic, and whatever
//! is accepted keeps the invariants gates rely on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use signalbox_evidence::{parse, EvidenceKind, Facts, MAX_LISTED_FAILURES, MAX_LISTED_FINDINGS};

fuzz_target!(|data: &[u8]| {
    for kind in EvidenceKind::ALL {
        match parse(kind, data) {
            Err(error) => {
                assert_eq!(error.kind, kind);
                assert!(!error.location.is_empty(), "{error:?}");
                assert!(!error.message.is_empty(), "{error:?}");
            }
            Ok(facts) => {
                check(&facts);
                let json = serde_json::to_string(&facts).expect("facts serialise");
                let again: Facts = serde_json::from_str(&json).expect("facts deserialise");
                check(&again);
            }
        }
    }
});

fn check(facts: &Facts) {
    match facts {
        Facts::Junit(t) | Facts::Smoke(t) => {
            assert_eq!(t.total, t.passed + t.failed + t.errored + t.skipped);
            assert!(t.flaky <= t.passed);
            assert!(t.failures.len() <= MAX_LISTED_FAILURES);
            assert_eq!(t.failures_truncated, t.failed + t.errored > t.failures.len() as u64);
            assert!(t.duration_seconds.is_none_or(|s| s >= 0.0));
        }
        Facts::Sarif(f) => {
            assert!(f.findings.len() <= MAX_LISTED_FINDINGS);
            assert!(f.counts.total() >= f.findings.len() as u64);
            assert_eq!(f.findings_truncated, f.counts.total() > f.findings.len() as u64);
            assert!(f.max_score.is_none_or(|s| (0.0..=10.0).contains(&s)));
            for finding in &f.findings {
                assert!(finding.score.is_none_or(|s| (0.0..=10.0).contains(&s)));
            }
        }
        Facts::Cyclonedx(s) | Facts::Spdx(s) => assert_eq!(s.component_count, s.components.len() as u64),
        Facts::Lcov(c) | Facts::Cobertura(c) => {
            assert!(c.lines_covered <= c.lines_total);
            assert!(c.branches_covered <= c.branches_total);
            assert!((0.0..=1.0).contains(&c.line_rate));
            assert_eq!(c.branch_rate.is_some(), c.branches_total > 0);
        }
        Facts::Performance(p) => {
            assert!(!p.metrics.is_empty());
            assert!(p.metrics.iter().all(|m| m.change_ratio.is_finite() && m.baseline != 0.0));
        }
        Facts::Signoff(s) => assert!(!s.by.trim().is_empty() && !s.statement.trim().is_empty()),
        Facts::DocumentLink(d) => assert!(d.url.starts_with("https://") || d.url.starts_with("http://")),
    }
}
