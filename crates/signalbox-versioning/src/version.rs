//! SemVer 2.0.0 (<https://semver.org/spec/v2.0.0.html>): precedence, tag patterns and the next
//! version from a bump level.
//!
//! Parsing uses the `semver` crate, which implements the spec's grammar. Its `Ord` also orders
//! build metadata (to be a total order usable in maps), while the spec's item 10 says build
//! metadata MUST be ignored for precedence, so [`precedence`] compares without it.

use regex::Regex;
use semver::{Prerelease, Version};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

use crate::Error;

/// SemVer precedence (spec item 11): major, minor, patch numerically, then pre-release
/// identifiers; build metadata ignored.
pub fn precedence(a: &Version, b: &Version) -> Ordering {
    (a.major, a.minor, a.patch).cmp(&(b.major, b.minor, b.patch)).then_with(|| a.pre.cmp(&b.pre))
}

/// How a release tag's name carries its version: `v{version}`, `pkg@{version}`,
/// `pkg-v{version}`, or any regex matching the whole tag name (with a `version` group, or the
/// version taken from the first digit on).
#[derive(Debug, Clone)]
pub struct TagPattern {
    regex: Regex,
    source: String,
}

impl TagPattern {
    /// `pattern` containing `{version}` is a template whose other characters are literal;
    /// anything else is a regular expression (anchored at both ends).
    pub fn new(pattern: &str) -> Result<TagPattern, Error> {
        let regex_source = if pattern.contains("{version}") {
            let parts: Vec<String> = pattern.split("{version}").map(regex::escape).collect();
            format!("^(?:{})$", parts.join(r"(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)"))
        } else {
            format!("^(?:{pattern})$")
        };
        let regex = regex::RegexBuilder::new(&regex_source).size_limit(1 << 20).build().map_err(|e| Error::Invalid {
            field: "tag pattern".into(),
            message: format!("`{pattern}` is not a valid regular expression: {e}"),
        })?;
        Ok(TagPattern { regex, source: pattern.to_string() })
    }

    /// The default pattern: `v1.2.3` or `1.2.3`.
    pub fn default_pattern() -> TagPattern {
        TagPattern::new(r"v?(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)").expect("the built-in pattern compiles")
    }

    /// Patterns for a monorepo package: `name@1.2.3` and `name-v1.2.3`.
    pub fn for_package(name: &str) -> TagPattern {
        let n = regex::escape(name);
        TagPattern::new(&format!(r"{n}(?:@|-v)(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)"))
            .expect("an escaped package name compiles")
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The SemVer version a tag name carries, if it matches the pattern and the version is valid.
    pub fn version_of(&self, tag: &str) -> Option<Version> {
        let caps = self.regex.captures(tag)?;
        let text = match caps.name("version") {
            Some(m) => m.as_str(),
            None => {
                let start = tag.find(|c: char| c.is_ascii_digit())?;
                &tag[start..]
            }
        };
        Version::parse(text).ok()
    }
}

/// What a set of commits asks for (ordered: a larger level wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    None,
    Patch,
    Minor,
    Major,
}

impl Bump {
    pub fn as_str(self) -> &'static str {
        match self {
            Bump::None => "none",
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        }
    }
}

/// Bump rules. Defaults match git-cliff's `[bump]` defaults so results compare: below 1.0.0 a
/// feature bumps the patch and a breaking change bumps the minor (SemVer item 4 leaves 0.y.z
/// open; git-cliff, release-plz and convco do this, release-please differs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BumpRules {
    /// At 0.y.z, a feature bumps the minor instead of the patch.
    pub features_always_bump_minor: bool,
    /// At 0.y.z, a breaking change bumps the major (to 1.0.0) instead of the minor.
    pub breaking_always_bump_major: bool,
    /// Commit types (lower case) that bump the minor.
    pub minor_types: Vec<String>,
    /// Commit types (lower case) that bump the patch.
    pub patch_types: Vec<String>,
    /// The version when no release tag exists yet.
    pub initial_version: String,
}

impl Default for BumpRules {
    fn default() -> Self {
        BumpRules {
            features_always_bump_minor: false,
            breaking_always_bump_major: false,
            minor_types: vec!["feat".into()],
            patch_types: vec!["fix".into(), "perf".into()],
            initial_version: "0.1.0".into(),
        }
    }
}

impl BumpRules {
    /// The level one commit asks for, before the 0.x rules.
    pub fn level(&self, commit_type: Option<&str>, breaking: bool) -> Bump {
        if breaking {
            return Bump::Major;
        }
        match commit_type {
            Some(t) if self.minor_types.iter().any(|m| m.eq_ignore_ascii_case(t)) => Bump::Minor,
            Some(t) if self.patch_types.iter().any(|m| m.eq_ignore_ascii_case(t)) => Bump::Patch,
            _ => Bump::None,
        }
    }

    /// The level actually applied to `base`, after the 0.x rules.
    pub fn effective(&self, base: &Version, level: Bump) -> Bump {
        if base.major > 0 {
            return level;
        }
        match level {
            Bump::Major if !self.breaking_always_bump_major => Bump::Minor,
            Bump::Minor if !self.features_always_bump_minor => Bump::Patch,
            other => other,
        }
    }

    /// `base` (a final release) raised by `level` after the 0.x rules.
    pub fn apply(&self, base: &Version, level: Bump) -> Version {
        let mut v = Version::new(base.major, base.minor, base.patch);
        match self.effective(base, level) {
            Bump::Major => {
                v.major = v.major.saturating_add(1);
                v.minor = 0;
                v.patch = 0;
            }
            Bump::Minor => {
                v.minor = v.minor.saturating_add(1);
                v.patch = 0;
            }
            Bump::Patch => v.patch = v.patch.saturating_add(1),
            Bump::None => {}
        }
        v
    }
}

/// The next pre-release of `target` on `channel`: `target-channel.N` with N one past the
/// highest existing `target-channel.M` among `existing` (1 when there is none).
pub fn next_prerelease(target: &Version, channel: &str, existing: &[Version]) -> Result<Version, Error> {
    let valid =
        !channel.is_empty() && channel.split('.').all(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !valid || channel.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Invalid {
            field: "--pre".into(),
            message: format!("`{channel}` is not a pre-release channel: use letters, digits and `-`, e.g. `rc` or `beta`"),
        });
    }
    let prefix = format!("{channel}.");
    let highest = existing
        .iter()
        .filter(|v| (v.major, v.minor, v.patch) == (target.major, target.minor, target.patch))
        .filter_map(|v| v.pre.as_str().strip_prefix(&prefix)?.parse::<u64>().ok())
        .max();
    let n = highest.map_or(1, |h| h.saturating_add(1));
    let mut v = Version::new(target.major, target.minor, target.patch);
    v.pre = Prerelease::new(&format!("{channel}.{n}"))
        .map_err(|e| Error::Invalid { field: "--pre".into(), message: format!("`{channel}.{n}` is not a SemVer pre-release: {e}") })?;
    Ok(v)
}
