//! flagd resolution semantics (reference §2.1), data-driven: one flag set, one table of
//! (flag, context, expected value, variant, reason, error code).

use crate::support::{compile, NOW};
use serde_json::{json, Value};
use signalbox_flags::{ErrorCode, Reason};

fn flag_set() -> Value {
    json!({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "metadata": {"flagSetId": "checkout", "version": "7", "team": "payments"},
        "$evaluators": {
            "is-employee": {"ends_with": [{"var": "email"}, "@corp.example"]}
        },
        "flags": {
            "static-on": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "empty-targeting": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {}},
            "killed": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "no-default": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}},
            "null-default": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": null},
            "null-default-rule": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": null,
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "b", null]}},
            "rule": {"state": "ENABLED", "variants": {"gold": "G", "basic": "B"}, "defaultVariant": "basic",
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "gold", null]},
                "metadata": {"team": "growth", "owner": "ann"}},
            "unknown-variant": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                "targeting": {"if": [true, "zzz"]}},
            "object-result": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"merge": [1]}},
            "bool-result": {"state": "ENABLED", "variants": {"true": "yes", "false": "no"}, "defaultVariant": "false",
                "targeting": {"in": [{"var": "country"}, ["CA", "US"]]}},
            "number-result": {"state": "ENABLED", "variants": {"1": "one", "2": "two"}, "defaultVariant": "1",
                "targeting": {"+": [1, 1]}},
            "employees": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "is-employee"}, "on", "off"]}},
            "timed": {"state": "ENABLED", "variants": {"before": 0, "after": 1}, "defaultVariant": "before",
                "targeting": {"if": [{">=": [{"var": "$flagd.timestamp"}, 1767225600]}, "after", "before"]}},
            "parent": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", "off"]}},
            "child": {"state": "ENABLED", "variants": {"v1": "one", "v2": "two"}, "defaultVariant": "v2",
                "prerequisites": [{"flag": "parent", "variant": "on"}]},
            "child-of-killed": {"state": "ENABLED", "variants": {"x": 1.5}, "defaultVariant": "x",
                "prerequisites": [{"flag": "killed", "variant": "on"}]}
        }
    })
}

struct Row {
    flag: &'static str,
    context: Value,
    value: Option<Value>,
    variant: Option<&'static str>,
    reason: Reason,
    error: Option<ErrorCode>,
}

fn row(
    flag: &'static str,
    context: Value,
    value: Option<Value>,
    variant: Option<&'static str>,
    reason: Reason,
    error: Option<ErrorCode>,
) -> Row {
    Row { flag, context, value, variant, reason, error }
}

#[test]
fn resolution_table() {
    use Reason::*;
    let flags = compile(flag_set());
    let pro = json!({"targetingKey": "u1", "plan": "pro"});
    let free = json!({"targetingKey": "u1", "plan": "free"});
    let rows = vec![
        row("static-on", json!({}), Some(json!(true)), Some("on"), Static, None),
        row("empty-targeting", json!({}), Some(json!(false)), Some("off"), Static, None),
        row("killed", pro.clone(), None, None, Disabled, None),
        row("no-default", json!({}), None, None, Default, None),
        row("null-default", json!({}), None, None, Default, None),
        row("null-default-rule", pro.clone(), Some(json!("B")), Some("b"), TargetingMatch, None),
        row("null-default-rule", free.clone(), None, None, Default, None),
        row("rule", pro.clone(), Some(json!("G")), Some("gold"), TargetingMatch, None),
        row("rule", free.clone(), Some(json!("B")), Some("basic"), Default, None),
        row("unknown-variant", json!({}), None, None, Error, Some(ErrorCode::General)),
        row("object-result", json!({}), None, None, Error, Some(ErrorCode::General)),
        row("bool-result", json!({"country": "CA"}), Some(json!("yes")), Some("true"), TargetingMatch, None),
        row("bool-result", json!({"country": "FR"}), Some(json!("no")), Some("false"), TargetingMatch, None),
        row("number-result", json!({}), Some(json!("two")), Some("2"), TargetingMatch, None),
        row("employees", json!({"email": "bo@corp.example"}), Some(json!(true)), Some("on"), TargetingMatch, None),
        row("employees", json!({"email": "bo@else.example"}), Some(json!(false)), Some("off"), TargetingMatch, None),
        row("timed", json!({}), Some(json!(1)), Some("after"), TargetingMatch, None),
        row("child", pro.clone(), Some(json!("two")), Some("v2"), Static, None),
        row("child", free.clone(), None, None, Disabled, None),
        row("child-of-killed", json!({}), None, None, Disabled, None),
        row("does-not-exist", json!({}), None, None, Error, Some(ErrorCode::FlagNotFound)),
        row("static-on", json!("not an object"), None, None, Error, Some(ErrorCode::InvalidContext)),
    ];
    for Row { flag, context, value, variant, reason, error } in rows {
        let resolution = flags.evaluate(flag, &context, NOW);
        assert_eq!(resolution.value.cloned(), value, "{flag} {context}: value");
        assert_eq!(resolution.variant, variant, "{flag} {context}: variant");
        assert_eq!(resolution.reason, reason, "{flag} {context}: reason");
        assert_eq!(resolution.error_code, error, "{flag} {context}: error code");
        assert_eq!(resolution.error_message.is_some(), error.is_some(), "{flag}: an error comes with a message");
    }
}

#[test]
fn time_is_an_input() {
    let flags = compile(flag_set());
    assert_eq!(flags.evaluate("timed", &json!({}), NOW - 1).variant, Some("before"));
}

#[test]
fn metadata_merges_with_flag_keys_winning() {
    let flags = compile(flag_set());
    let metadata = flags.evaluate("rule", &json!({}), NOW).flag_metadata.clone();
    assert_eq!(Value::Object(metadata), json!({"flagSetId": "checkout", "version": "7", "team": "growth", "owner": "ann"}));
    let set_only = flags.evaluate("static-on", &json!({}), NOW).flag_metadata.clone();
    assert_eq!(Value::Object(set_only), json!({"flagSetId": "checkout", "version": "7", "team": "payments"}));
    let missing = flags.evaluate("nope", &json!({}), NOW).flag_metadata.clone();
    assert_eq!(missing.get("flagSetId"), Some(&json!("checkout")), "unknown flags carry the set metadata");
}

#[test]
fn unsatisfied_prerequisite_is_named() {
    let flags = compile(flag_set());
    let resolution = flags.evaluate("child", &json!({"plan": "free"}), NOW);
    assert_eq!(resolution.unsatisfied_prerequisite, Some("parent"));
    assert_eq!(flags.evaluate("child", &json!({"plan": "pro"}), NOW).unsatisfied_prerequisite, None);
}

#[test]
fn typed_helpers_report_type_mismatch() {
    let flags = compile(flag_set());
    let context = json!({"plan": "pro"});
    assert_eq!(flags.evaluate_bool("static-on", &context, NOW).value, Some(true));
    let mismatch = flags.evaluate_string("static-on", &context, NOW);
    assert_eq!((mismatch.value, mismatch.reason, mismatch.error_code), (None, Reason::Error, Some(ErrorCode::TypeMismatch)));
    assert_eq!(flags.evaluate_string("rule", &context, NOW).value, Some("G"));
    assert_eq!(flags.evaluate_int("unknown-variant", &json!({}), NOW).error_code, Some(ErrorCode::General));
    assert_eq!(flags.evaluate_int("timed", &context, NOW).value, Some(1));
    assert_eq!(flags.evaluate_float("timed", &context, NOW).value, Some(1.0));
    let fractional_int = flags.evaluate_int("child-of-killed", &context, NOW);
    assert_eq!(fractional_int.reason, Reason::Disabled, "no value, so no type check");
    assert_eq!(flags.evaluate_object("static-on", &context, NOW).error_code, Some(ErrorCode::TypeMismatch));
    let disabled = flags.evaluate_bool("killed", &context, NOW);
    assert_eq!((disabled.value, disabled.reason, disabled.error_code), (None, Reason::Disabled, None));
}

#[test]
fn integers_only_from_whole_numbers() {
    let flags = compile(json!({"flags": {"f": {"state": "ENABLED", "variants": {"half": 0.5, "one": 1}, "defaultVariant": "half"}}}));
    assert_eq!(flags.evaluate_int("f", &json!({}), NOW).error_code, Some(ErrorCode::TypeMismatch));
    assert_eq!(flags.evaluate_float("f", &json!({}), NOW).value, Some(0.5));
}

#[test]
fn compiled_sets_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let flags = compile(flag_set());
    shareable(&flags);
    let shared = std::sync::Arc::new(flags);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let shared = std::sync::Arc::clone(&shared);
            std::thread::spawn(move || shared.evaluate("rule", &json!({"plan": "pro"}), NOW).variant.map(str::to_owned))
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().expect("thread"), Some("gold".to_owned()));
    }
}

/// A set reads the clock when some rule may read `$flagd.timestamp`: by its path, through the
/// whole `$flagd` object or the whole data, or through a path computed at evaluation time. Caches
/// keyed on the set and the context (the OFREP bulk ETag) must then include the time.
#[test]
fn sets_that_may_read_the_clock_are_known() {
    let set = |targeting: Value| {
        compile(
            json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": targeting}}}),
        )
    };
    for (targeting, reads_clock) in [
        (json!({"if": [{">": [{"var": "$flagd.timestamp"}, 0]}, "on", "off"]}), true),
        (json!({"if": [{"var": "$flagd"}, "on", "off"]}), true),
        (json!({"if": [{"var": ""}, "on", "off"]}), true),
        (json!({"if": [{"var": {"cat": ["$flagd.", "timestamp"]}}, "on", "off"]}), true),
        (json!({"if": [{"in": [{"var": "country"}, ["CA", "US"]]}, "on", "off"]}), false),
        (json!({"if": [{"==": [{"var": "$flagd.flagKey"}, "f"]}, "on", "off"]}), false),
        (json!({"fractional": [["on", 50], ["off", 50]]}), false),
    ] {
        assert_eq!(set(targeting.clone()).reads_clock(), reads_clock, "{targeting}");
    }
    let without_targeting = compile(json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}));
    assert!(!without_targeting.reads_clock());
}
