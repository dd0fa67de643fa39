//! Canonical JSON: the one byte encoding that audit hashes and content digests are computed
//! over. Object keys are sorted by their UTF-16 code units (as RFC 8785 does), there is no
//! insignificant whitespace, and strings and numbers use serde_json's deterministic forms.
//! Sorting is done here rather than trusting `serde_json::Map`'s order, because a dependency
//! enabling serde_json's `preserve_order` feature would silently change every hash.

use serde_json::Value;

pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends the canonical encoding of `value` to `out`.
pub fn write_canonical(out: &mut String, value: &Value) {
    write_value(out, value);
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, &map[*key]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::String(s) => write_string(out, s),
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string literal, escaped exactly as serde_json does (so hashes of existing entries
/// are unchanged), without going through `Display`.
pub fn write_string(out: &mut String, s: &str) {
    let mut buf = Vec::with_capacity(s.len() + 2);
    if serde_json::to_writer(&mut buf, s).is_ok() {
        // serde_json writes valid UTF-8 for a &str.
        out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
    }
}

/// `sha256:` digest of a value's canonical encoding.
pub fn digest_of(value: &Value) -> String {
    use sha2::{Digest as _, Sha256};
    let bytes = to_canonical_string(value);
    format!("sha256:{}", hex::encode(Sha256::digest(bytes.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_and_whitespace_is_dropped() {
        let v = json!({"b": 1, "a": {"z": [1, {"y": null, "x": "s"}], "c": true}});
        assert_eq!(to_canonical_string(&v), r#"{"a":{"c":true,"z":[1,{"x":"s","y":null}]},"b":1}"#);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        for s in ["plain", "quote\" and \\ backslash", "tab\t newline\n", "\u{1}\u{1f}", "ünïcødé ✓", "emoji 🚀"] {
            let v = Value::String(s.to_string());
            assert_eq!(to_canonical_string(&v), v.to_string());
            let obj = serde_json::json!({ s: s });
            assert_eq!(to_canonical_string(&obj), obj.to_string());
        }
    }

    #[test]
    fn equal_values_have_equal_digests_whatever_the_insertion_order() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":[2,3]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "y" : [2,3], "x" : 1 }"#).unwrap();
        assert_eq!(digest_of(&a), digest_of(&b));
        assert_ne!(digest_of(&a), digest_of(&json!({"x": 1, "y": [3, 2]})));
    }

    proptest::proptest! {
        /// Audit entries are hashed in memory and verified after a trip through the database's
        /// JSON text: every float must read back as the same value, or the chain breaks
        /// (serde_json's `float_roundtrip` feature; without it sums such as 0.1 + 0.2 came
        /// back one ulp off).
        #[test]
        fn floats_survive_a_trip_through_json_text(x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let v = json!({"rate": x, "sum": x + 0.1 + 0.2});
            let back: Value = serde_json::from_str(&v.to_string()).unwrap();
            proptest::prop_assert_eq!(to_canonical_string(&back), to_canonical_string(&v));
        }
    }
}
