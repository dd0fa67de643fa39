//! flagd's `sem_ver` operator: `["1.2.3", op, "1.0.0"]` with op one of `=`, `!=`, `<`, `<=`, `>`, `>=`,
//! `^` (same major) and `~` (same major and minor) (reference §2.1; flagd-schemas `targeting.json` `ruleSemVer`).
//!
//! Versions parse like `semver.parse` in flagd's JavaScript core: surrounding whitespace and one
//! leading `v` are tolerated, everything else must be strict SemVer 2.0.0. Ordering is SemVer
//! precedence, which ignores build metadata (semver.org §11).

use semver::Version;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SemVerOp {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    SameMajor,
    SameMinor,
}

impl SemVerOp {
    pub const ALL: [&'static str; 8] = ["=", "!=", "<", "<=", ">", ">=", "^", "~"];

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "=" => Self::Equal,
            "!=" => Self::NotEqual,
            "<" => Self::Less,
            "<=" => Self::LessOrEqual,
            ">" => Self::Greater,
            ">=" => Self::GreaterOrEqual,
            "^" => Self::SameMajor,
            "~" => Self::SameMinor,
            _ => return None,
        })
    }

    pub fn holds(self, left: &Version, right: &Version) -> bool {
        let order = left.cmp_precedence(right);
        match self {
            Self::Equal => order == Ordering::Equal,
            Self::NotEqual => order != Ordering::Equal,
            Self::Less => order == Ordering::Less,
            Self::LessOrEqual => order != Ordering::Greater,
            Self::Greater => order == Ordering::Greater,
            Self::GreaterOrEqual => order != Ordering::Less,
            Self::SameMajor => left.major == right.major,
            Self::SameMinor => left.major == right.major && left.minor == right.minor,
        }
    }
}

/// Parses a version literal written in a rule: strict SemVer 2.0.0 with an optional leading `v`
/// (what the flagd schema's `semVerString` pattern accepts, plus the `v` every flagd parser tolerates).
pub fn parse_version(text: &str) -> Option<Version> {
    let trimmed = text.trim();
    let bare = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
    if bare.len() > 256 {
        return None;
    }
    Version::parse(bare).ok()
}

/// Parses a version taken from the evaluation context the way flagd-core 4.x does
/// (`normalizeVersion` in `targeting/sem-ver`): numbers count as their text, a leading `v`/`V` is
/// dropped, strict SemVer is tried first, and partial versions "1" and "1.2" are completed with
/// zeros. Anything else (including booleans and null) is not a version.
pub fn parse_context_version(value: &serde_json::Value) -> Option<Version> {
    let text = match value {
        serde_json::Value::String(text) => std::borrow::Cow::Borrowed(text.as_str()),
        serde_json::Value::Number(number) => std::borrow::Cow::Owned(crate::js::json_number_to_js_string(number)),
        _ => return None,
    };
    if let Some(version) = parse_version(&text) {
        return Some(version);
    }
    let bare = text.strip_prefix(['v', 'V']).unwrap_or(&text);
    let mut parts = bare.split('.');
    let numeric = |part: &str| !part.is_empty() && part.len() <= 16 && part.bytes().all(|byte| byte.is_ascii_digit());
    let major = parts.next().filter(|part| numeric(part))?;
    let minor = match parts.next() {
        Some(part) if numeric(part) => part,
        Some(_) => return None,
        None => "0",
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Version::new(major.parse().ok()?, minor.parse().ok()?, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(left: &str, op: &str, right: &str) -> bool {
        let op = SemVerOp::parse(op).expect("operator");
        op.holds(&parse_version(left).expect("left"), &parse_version(right).expect("right"))
    }

    #[test]
    fn operators() {
        let cases = [
            ("1.2.3", "=", "1.2.3", true),
            ("v1.2.3", "=", "1.2.3", true),
            ("1.2.3+build.1", "=", "1.2.3+build.2", true),
            ("1.2.3", "!=", "1.2.4", true),
            ("1.2.3", "!=", "1.2.3", false),
            ("1.0.0-alpha", "<", "1.0.0", true),
            ("1.0.0-alpha", "<", "1.0.0-alpha.1", true),
            ("1.0.0-alpha.beta", "<", "1.0.0-beta", true),
            ("1.0.0-rc.1", ">", "1.0.0-beta.11", true),
            ("2.0.0", "<=", "2.0.0", true),
            ("2.0.1", "<=", "2.0.0", false),
            ("10.0.0", ">", "9.0.0", true),
            ("1.5.0", ">=", "1.5.0", true),
            ("1.4.9", ">=", "1.5.0", false),
            ("3.7.1", "^", "3.0.0", true),
            ("4.0.0", "^", "3.9.9", false),
            ("3.7.1", "~", "3.7.0", true),
            ("3.8.0", "~", "3.7.0", false),
        ];
        for (left, op, right, expected) in cases {
            assert_eq!(check(left, op, right), expected, "{left} {op} {right}");
        }
    }

    #[test]
    fn rejects_what_strict_semver_rejects() {
        for bad in ["1.2", "01.2.3", "1.2.3.4", "", "vv1.2.3", "=1.2.3", "1.2.x"] {
            assert!(parse_version(bad).is_none(), "{bad:?} should not parse");
        }
        use serde_json::json;
        for (context_value, expected) in [
            (json!("1.2"), Some("1.2.0")),
            (json!("V3"), Some("3.0.0")),
            (json!(3), Some("3.0.0")),
            (json!(1.5), Some("1.5.0")),
            (json!("v2.0.0-rc.1"), Some("2.0.0-rc.1")),
            (json!("1.2.3.4"), None),
            (json!("myVersion_1"), None),
            (json!("1."), None),
            (json!(true), None),
            (json!(null), None),
        ] {
            let parsed = parse_context_version(&context_value).map(|version| version.to_string());
            assert_eq!(parsed.as_deref(), expected, "{context_value}");
        }
        assert!(parse_version(" v1.2.3-rc.1+b ").is_some());
        assert!(SemVerOp::parse("==").is_none());
    }
}
