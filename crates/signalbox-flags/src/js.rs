//! JavaScript value semantics for JsonLogic, shared by the compiled evaluator and the test oracle.
//!
//! JsonLogic is defined by its JavaScript reference implementation, and flagd's JavaScript core
//! (`@openfeature/flagd-core`, on `json-logic-engine`) is the implementation we test against, so
//! truthiness, `==`, `<` and number conversion follow ECMAScript (ECMA-262 §7.1 ToBoolean,
//! ToNumber, ToString; §7.2.14 IsLooselyEqual; §7.2.13 IsLessThan) restricted to JSON values.
//! Deliberate simplifications: strings compare by Unicode scalar value rather than UTF-16 unit,
//! and a non-finite arithmetic result becomes JSON `null` (what `JSON.stringify(NaN)` gives).

use serde_json::{Number, Value};
use std::borrow::Cow;

/// ECMAScript ToBoolean, with JsonLogic's one deviation: an empty array is falsy.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0 && !n.is_nan()),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

/// ECMAScript ToNumber over JSON values (`NaN` when not convertible).
pub fn to_number(value: &Value) -> f64 {
    match value {
        Value::Null => 0.0,
        Value::Bool(flag) => f64::from(u8::from(*flag)),
        Value::Number(number) => number.as_f64().unwrap_or(f64::NAN),
        Value::String(text) => string_to_number(text),
        Value::Array(items) => match items.as_slice() {
            [] => 0.0,
            [only] => string_to_number(&to_js_string(only)),
            _ => f64::NAN,
        },
        Value::Object(_) => f64::NAN,
    }
}

/// ECMAScript StringToNumber for decimal literals (hex/octal/binary literals are accepted too).
pub fn string_to_number(text: &str) -> f64 {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = trimmed.strip_prefix(prefix) {
            return u64::from_str_radix(digits, radix).map(|n| n as f64).unwrap_or(f64::NAN);
        }
    }
    match trimmed {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    // Rust accepts "inf", "nan" and "infinity"; JavaScript does not.
    let body = trimmed.trim_start_matches(['+', '-']);
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return f64::NAN;
    }
    trimmed.parse::<f64>().unwrap_or(f64::NAN)
}

/// ECMAScript Number::toString for finite numbers as JSON would print them (integers without `.0`).
pub fn number_to_js_string(number: f64) -> String {
    if number.is_nan() {
        return "NaN".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 { "Infinity".to_owned() } else { "-Infinity".to_owned() };
    }
    if number == number.trunc() && number.abs() < 1e21 {
        // Exact for every integer below 2^53 and the same digits JavaScript prints above it.
        return format!("{number:.0}");
    }
    number.to_string()
}

/// ECMAScript ToString over JSON values.
pub fn to_js_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => json_number_to_js_string(number),
        Value::String(text) => text.clone(),
        // Array.prototype.join: null elements print as the empty string.
        Value::Array(items) => {
            items.iter().map(|item| if item.is_null() { String::new() } else { to_js_string(item) }).collect::<Vec<_>>().join(",")
        }
        Value::Object(_) => "[object Object]".to_owned(),
    }
}

/// Like [`to_js_string`] but borrows when the value already is a string.
pub fn as_js_str(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(text) => Cow::Borrowed(text.as_str()),
        other => Cow::Owned(to_js_string(other)),
    }
}

pub fn json_number_to_js_string(number: &Number) -> String {
    if let Some(integer) = number.as_i64() {
        return integer.to_string();
    }
    if let Some(integer) = number.as_u64() {
        return integer.to_string();
    }
    number_to_js_string(number.as_f64().unwrap_or(f64::NAN))
}

/// A computed number as JSON: integral values become JSON integers so they print like JavaScript;
/// non-finite values become `null`.
pub fn number_value(number: f64) -> Value {
    if !number.is_finite() {
        return Value::Null;
    }
    if number == number.trunc() && number.abs() <= 9_007_199_254_740_991.0 {
        // Integral and within the safe-integer range, so the conversion is exact; -0 prints as 0 like JavaScript.
        return Value::Number(Number::from(number as i64));
    }
    Number::from_f64(number).map(Value::Number).unwrap_or(Value::Null)
}

/// ECMAScript IsStrictlyEqual (`===`). Arrays and objects are compared by identity in JavaScript;
/// two JSON values never share identity here, so they are never strictly equal.
pub fn strict_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => numbers_equal(a, b),
        (Value::String(a), Value::String(b)) => a == b,
        _ => false,
    }
}

fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// ECMAScript IsLooselyEqual (`==`) over JSON values.
pub fn loose_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Bool(_), Value::Bool(_)) | (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) => {
            strict_equal(left, right)
        }
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => false,
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => n.as_f64().is_some_and(|x| x == string_to_number(s)),
        (Value::Bool(flag), other) | (other, Value::Bool(flag)) => {
            let as_number = number_value(f64::from(u8::from(*flag)));
            loose_equal(&as_number, other)
        }
        // An object or array against a primitive: compare its ToPrimitive (a string).
        (Value::Array(_) | Value::Object(_), primitive) | (primitive, Value::Array(_) | Value::Object(_)) => {
            let container = if matches!(left, Value::Array(_) | Value::Object(_)) { left } else { right };
            loose_equal(&Value::String(to_js_string(container)), primitive)
        }
    }
}

/// ECMAScript IsLessThan (`<`); `or_equal` gives `<=`. Undefined comparisons (NaN) are false.
pub fn less_than(left: &Value, right: &Value, or_equal: bool) -> bool {
    let left_primitive = to_primitive(left);
    let right_primitive = to_primitive(right);
    if let (Value::String(a), Value::String(b)) = (left_primitive.as_ref(), right_primitive.as_ref()) {
        return if or_equal { a <= b } else { a < b };
    }
    let a = to_number(&left_primitive);
    let b = to_number(&right_primitive);
    if or_equal {
        a <= b
    } else {
        a < b
    }
}

fn to_primitive(value: &Value) -> Cow<'_, Value> {
    match value {
        Value::Array(_) | Value::Object(_) => Cow::Owned(Value::String(to_js_string(value))),
        other => Cow::Borrowed(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness_follows_jsonlogic() {
        for falsy in [json!(null), json!(false), json!(0), json!(""), json!([])] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for truthy_value in [json!(true), json!(1), json!("0"), json!([0]), json!({})] {
            assert!(truthy(&truthy_value), "{truthy_value}");
        }
    }

    #[test]
    fn loose_equality_coerces_like_javascript() {
        assert!(loose_equal(&json!(1), &json!("1")));
        assert!(loose_equal(&json!(true), &json!(1)));
        assert!(loose_equal(&json!(false), &json!("")));
        assert!(loose_equal(&json!([1]), &json!("1")));
        assert!(!loose_equal(&json!(null), &json!(0)));
        assert!(!loose_equal(&json!("a"), &json!(0)));
        assert!(strict_equal(&json!(1), &json!(1.0)));
        assert!(!strict_equal(&json!(1), &json!("1")));
    }

    #[test]
    fn comparisons_and_numbers() {
        assert!(!less_than(&json!("10"), &json!(9), false));
        assert!(less_than(&json!("abc"), &json!("abd"), false));
        assert!(less_than(&json!(null), &json!(1), false));
        assert!(!less_than(&json!("x"), &json!(1), false));
        assert_eq!(string_to_number(" 12.5 "), 12.5);
        assert!(string_to_number("inf").is_nan());
        assert_eq!(number_to_js_string(3.0), "3");
        assert_eq!(number_to_js_string(0.5), "0.5");
        assert_eq!(number_value(2.0), json!(2));
        assert_eq!(number_value(f64::NAN), json!(null));
        assert_eq!(to_js_string(&json!([1, null, "a"])), "1,,a");
    }
}
