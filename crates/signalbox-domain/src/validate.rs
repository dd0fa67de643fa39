//! Parse-don't-validate value types, and the error shape every layer reports bad input with.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing wrong with one field of the input, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON-pointer-like path of the offending field, e.g. `components/0/digest`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A collection of field errors: input that is well-formed but not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid(vec![FieldError::new(field, message)])
    }
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `Ok(())` when nothing was collected, so validators can end with `errors.into_result()?`.
    pub fn into_result(self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
    /// Collects the error of a parse into this set, returning the value when it parsed.
    pub fn check<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.0);
                None
            }
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for Invalid {}

/// A resource name: lowercase letters, digits and dashes, starting with a letter, 1–63 chars.
/// Names appear in URLs, CLI arguments and YAML, so they are kept boring on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, raw: &str) -> Result<Name, Invalid> {
        let ok_chars = raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let starts_with_letter = raw.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if raw.is_empty() || raw.len() > 63 || !ok_chars || !starts_with_letter || raw.ends_with('-') {
            return Err(Invalid::one(
                field,
                format!(
                    "{raw:?} is not a valid name: use 1-63 lowercase letters, digits and dashes, \
                     starting with a letter and not ending with a dash (e.g. \"payments-api\")"
                ),
            ));
        }
        Ok(Name(raw.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Name::parse("name", &value)
    }
}
impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A content digest, `sha256:` followed by 64 lowercase hex digits. Artifacts are identified by
/// it: promotion moves a digest, never a rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(field: &str, raw: &str) -> Result<Digest, Invalid> {
        let Some(hex) = raw.strip_prefix("sha256:") else {
            return Err(Invalid::one(field, format!("{raw:?} is not a digest: it must start with \"sha256:\" followed by 64 hex digits")));
        };
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Invalid::one(
                field,
                format!("{raw:?} is not a sha256 digest: expected 64 hex digits after \"sha256:\", found {} characters", hex.len()),
            ));
        }
        Ok(Digest(format!("sha256:{}", hex.to_ascii_lowercase())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Digest {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Digest::parse("digest", &value)
    }
}
impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a SemVer 2.0.0 version, naming the field on failure. A leading `v` is refused rather
/// than silently stripped: `v1.2.3` is a tag name, not a version.
pub fn parse_version(field: &str, raw: &str) -> Result<semver::Version, Invalid> {
    semver::Version::parse(raw).map_err(|e| {
        let hint = if raw.starts_with('v') || raw.starts_with('V') {
            " (drop the leading \"v\": versions are bare, e.g. \"1.4.0\")"
        } else {
            " (expected MAJOR.MINOR.PATCH with optional -prerelease and +build, e.g. \"1.4.0-rc.1\")"
        };
        Invalid::one(field, format!("{raw:?} is not a SemVer 2.0.0 version: {e}{hint}"))
    })
}

/// Requires a non-blank string of bounded length.
pub fn require_text(field: &str, raw: &str, max: usize) -> Result<String, Invalid> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(Invalid::one(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Invalid::one(field, format!("must be at most {max} characters")));
    }
    Ok(trimmed.to_string())
}

/// Accepts an absolute http(s) URL (for build links, repositories, documents).
pub fn parse_url(field: &str, raw: &str) -> Result<String, Invalid> {
    let ok = (raw.starts_with("https://")
        || raw.starts_with("http://")
        || raw.starts_with("ssh://")
        || raw.starts_with("file://")
        || raw.starts_with("git@"))
        && raw.len() > 8
        && raw.len() <= 2048
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(raw.to_string())
    } else {
        Err(Invalid::one(field, format!("{raw:?} is not a URL: give an absolute https://, http://, ssh:// or file:// URL without spaces")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_accept_slugs_and_refuse_the_rest() {
        assert!(Name::parse("name", "payments-api").is_ok());
        assert!(Name::parse("name", "a").is_ok());
        for bad in ["", "Payments", "1api", "api-", "a b", "ünï", &"a".repeat(64)] {
            let err = Name::parse("name", bad).unwrap_err();
            assert_eq!(err.0[0].field, "name", "{bad}");
        }
    }

    #[test]
    fn digests_are_normalised_to_lowercase_and_checked() {
        let d = Digest::parse("digest", &format!("sha256:{}", "AB".repeat(32))).unwrap();
        assert_eq!(d.as_str(), format!("sha256:{}", "ab".repeat(32)));
        assert!(Digest::parse("digest", "sha256:abc").unwrap_err().0[0].message.contains("64 hex"));
        assert!(Digest::parse("digest", &"a".repeat(64)).unwrap_err().0[0].message.contains("sha256:"));
        assert!(Digest::parse("digest", &format!("sha256:{}", "g".repeat(64))).is_err());
    }

    #[test]
    fn versions_explain_a_leading_v() {
        let e = parse_version("version", "v1.2.3").unwrap_err();
        assert!(e.0[0].message.contains("leading"));
        assert!(parse_version("version", "1.2.3-rc.1+build.5").is_ok());
    }

    proptest! {
        #[test]
        fn name_parse_never_panics_and_roundtrips(s in "\\PC{0,80}") {
            if let Ok(n) = Name::parse("name", &s) {
                prop_assert_eq!(n.as_str(), s.as_str());
                prop_assert!(Name::parse("name", n.as_str()).is_ok());
            }
        }

        #[test]
        fn digest_parse_never_panics(s in "\\PC{0,90}") {
            if let Ok(d) = Digest::parse("digest", &s) {
                prop_assert!(d.as_str().starts_with("sha256:"));
                prop_assert_eq!(d.as_str().len(), 71);
            }
        }

        #[test]
        fn valid_digests_always_parse(hex in "[0-9a-fA-F]{64}") {
            let raw = format!("sha256:{hex}");
            prop_assert!(Digest::parse("digest", &raw).is_ok());
        }

        #[test]
        fn version_parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_version("version", &s);
        }
    }
}
