//! SemVer 2.0.0: the specification's precedence examples, a reference implementation of item 11
//! checked against the `semver` crate on random versions, bump and pre-release rules.

use proptest::prelude::*;
use semver::Version;
use signalbox_versioning::version::{next_prerelease, precedence, Bump, BumpRules, TagPattern};
use std::cmp::Ordering;

/// Item 11 written out from the spec text, independent of the `semver` crate.
fn reference_cmp(a: &str, b: &str) -> Ordering {
    let strip = |s: &str| s.split('+').next().unwrap_or("").to_string();
    let (a, b) = (strip(a), strip(b));
    let split = |s: &str| -> (Vec<u64>, Option<String>) {
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c.to_string(), Some(p.to_string())),
            None => (s.to_string(), None),
        };
        (core.split('.').map(|n| n.parse().unwrap()).collect(), pre)
    };
    let (ca, pa) = split(&a);
    let (cb, pb) = split(&b);
    match ca.cmp(&cb) {
        Ordering::Equal => {}
        o => return o,
    }
    match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(pa), Some(pb)) => {
            let ia: Vec<&str> = pa.split('.').collect();
            let ib: Vec<&str> = pb.split('.').collect();
            for (x, y) in ia.iter().zip(ib.iter()) {
                let nx = x.chars().all(|c| c.is_ascii_digit());
                let ny = y.chars().all(|c| c.is_ascii_digit());
                let o = match (nx, ny) {
                    (true, true) => x.parse::<u64>().unwrap().cmp(&y.parse::<u64>().unwrap()),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            ia.len().cmp(&ib.len())
        }
    }
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

#[test]
fn the_specification_orderings_hold() {
    let chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"];
    for w in chain.windows(2) {
        assert_eq!(precedence(&v(w[0]), &v(w[1])), Ordering::Less, "{} < {}", w[0], w[1]);
    }
    for w in ["1.0.0", "2.0.0", "2.1.0", "2.1.1"].windows(2) {
        assert_eq!(precedence(&v(w[0]), &v(w[1])), Ordering::Less);
    }
    assert_eq!(precedence(&v("1.9.0"), &v("1.10.0")), Ordering::Less);
    // Item 10: build metadata is ignored (the crate's Ord does not ignore it).
    assert_eq!(precedence(&v("1.0.0+20130313144700"), &v("1.0.0+exp.sha.5114f85")), Ordering::Equal);
    assert_eq!(precedence(&v("1.0.0-beta+exp.sha.5114f85"), &v("1.0.0-beta")), Ordering::Equal);
}

#[test]
fn the_specification_rejects_what_it_says_is_not_semver() {
    for bad in ["1.2", "v1.2.3", "01.2.3", "1.02.3", "1.2.3-01", "1.2.3-", "1.2.3-a..b", "1.2.3+", "1.2.3-a_b"] {
        assert!(Version::parse(bad).is_err(), "{bad} must be rejected");
    }
    for good in [
        "0.0.4",
        "1.2.3",
        "10.20.30",
        "1.1.2-prerelease+meta",
        "1.0.0-alpha.beta.1",
        "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
        "1.2.3----RC-SNAPSHOT.12.9.1--.12+788",
    ] {
        assert!(Version::parse(good).is_ok(), "{good} must parse");
    }
}

fn version_strategy() -> impl Strategy<Value = String> {
    let ident = prop_oneof!["(0|[1-9][0-9]{0,2})", "[a-zA-Z-][0-9a-zA-Z-]{0,4}"];
    (0u64..4, 0u64..4, 0u64..4, prop::option::of(prop::collection::vec(ident, 1..4)), prop::option::of("[0-9a-z]{1,4}")).prop_map(
        |(a, b, c, pre, build)| {
            let mut s = format!("{a}.{b}.{c}");
            if let Some(p) = pre {
                s.push('-');
                s.push_str(&p.join("."));
            }
            if let Some(b) = build {
                s.push('+');
                s.push_str(&b);
            }
            s
        },
    )
}

proptest! {
    #[test]
    fn precedence_matches_the_spec_algorithm(a in version_strategy(), b in version_strategy()) {
        prop_assert_eq!(precedence(&v(&a), &v(&b)), reference_cmp(&a, &b), "{} vs {}", a, b);
    }

    #[test]
    fn precedence_is_a_total_preorder(a in version_strategy(), b in version_strategy(), c in version_strategy()) {
        let (a, b, c) = (v(&a), v(&b), v(&c));
        prop_assert_eq!(precedence(&a, &b), precedence(&b, &a).reverse());
        if precedence(&a, &b).is_le() && precedence(&b, &c).is_le() {
            prop_assert!(precedence(&a, &c).is_le());
        }
    }

    #[test]
    fn a_bump_never_goes_backwards(a in version_strategy(), level in 0u8..4, minor in any::<bool>(), major in any::<bool>()) {
        let base = v(&a);
        let rules = BumpRules { features_always_bump_minor: minor, breaking_always_bump_major: major, ..BumpRules::default() };
        let level = [Bump::None, Bump::Patch, Bump::Minor, Bump::Major][level as usize];
        let next = rules.apply(&base, level);
        prop_assert!(next.pre.is_empty());
        if level == Bump::None { prop_assert_eq!((next.major, next.minor, next.patch), (base.major, base.minor, base.patch)); }
        else { prop_assert!(precedence(&next, &Version::new(base.major, base.minor, base.patch)).is_gt()); }
    }
}

#[test]
fn bump_rules_and_the_zero_major_policy() {
    let rules = BumpRules::default();
    assert_eq!(rules.level(Some("feat"), false), Bump::Minor);
    assert_eq!(rules.level(Some("FIX"), false), Bump::Patch);
    assert_eq!(rules.level(Some("perf"), false), Bump::Patch);
    assert_eq!(rules.level(Some("docs"), false), Bump::None);
    assert_eq!(rules.level(Some("docs"), true), Bump::Major);
    assert_eq!(rules.level(None, false), Bump::None);
    // 1.x: the usual rules.
    assert_eq!(rules.apply(&v("1.2.3"), Bump::Major), v("2.0.0"));
    assert_eq!(rules.apply(&v("1.2.3"), Bump::Minor), v("1.3.0"));
    assert_eq!(rules.apply(&v("1.2.3"), Bump::Patch), v("1.2.4"));
    // 0.x, git-cliff's defaults: breaking → minor, feature → patch.
    assert_eq!(rules.apply(&v("0.4.1"), Bump::Major), v("0.5.0"));
    assert_eq!(rules.apply(&v("0.4.1"), Bump::Minor), v("0.4.2"));
    let strict = BumpRules { features_always_bump_minor: true, breaking_always_bump_major: true, ..BumpRules::default() };
    assert_eq!(strict.apply(&v("0.4.1"), Bump::Major), v("1.0.0"));
    assert_eq!(strict.apply(&v("0.4.1"), Bump::Minor), v("0.5.0"));
}

#[test]
fn pre_release_channels_count_up_per_target_and_channel() {
    let existing = [v("1.3.0-rc.1"), v("1.3.0-rc.2"), v("1.3.0-beta.7"), v("1.2.0-rc.9")];
    assert_eq!(next_prerelease(&v("1.3.0"), "rc", &existing).unwrap(), v("1.3.0-rc.3"));
    assert_eq!(next_prerelease(&v("1.3.0"), "beta", &existing).unwrap(), v("1.3.0-beta.8"));
    assert_eq!(next_prerelease(&v("1.4.0"), "rc", &existing).unwrap(), v("1.4.0-rc.1"));
    for bad in ["", "r c", "rc..x", "12", "ü"] {
        let err = next_prerelease(&v("1.0.0"), bad, &[]).unwrap_err().to_string();
        assert!(err.starts_with("--pre"), "{err}");
    }
}

#[test]
fn tag_patterns_extract_versions() {
    let default = TagPattern::default_pattern();
    assert_eq!(default.version_of("v1.2.3"), Some(v("1.2.3")));
    assert_eq!(default.version_of("1.2.3-rc.1"), Some(v("1.2.3-rc.1")));
    assert_eq!(default.version_of("release-1.2.3"), None);
    assert_eq!(default.version_of("v1.2"), None);
    assert_eq!(default.version_of("v01.2.3"), None);
    let pkg = TagPattern::for_package("api");
    assert_eq!(pkg.version_of("api@2.0.0"), Some(v("2.0.0")));
    assert_eq!(pkg.version_of("api-v2.0.1"), Some(v("2.0.1")));
    assert_eq!(pkg.version_of("web@2.0.0"), None);
    assert_eq!(pkg.version_of("apix@2.0.0"), None);
    let template = TagPattern::new("pkg.name-v{version}").unwrap();
    assert_eq!(template.version_of("pkg.name-v3.1.4"), Some(v("3.1.4")));
    assert_eq!(template.version_of("pkgXname-v3.1.4"), None, "template literals are escaped");
    let regex = TagPattern::new("v[0-9].*").unwrap();
    assert_eq!(regex.version_of("v1.0.0"), Some(v("1.0.0")));
    let err = TagPattern::new("v(").unwrap_err().to_string();
    assert!(err.contains("not a valid regular expression"), "{err}");
}
