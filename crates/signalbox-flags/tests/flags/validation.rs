//! Validation: every problem is reported with its JSON path and a fix.

use crate::support::{error_messages, error_paths};
use serde_json::json;
use signalbox_flags::FlagSet;

#[test]
fn error_paths_table() {
    let cases = vec![
        (json!([]), vec![""]),
        (json!({}), vec!["flags"]),
        (json!({"flags": []}), vec![]),
        (json!({"flags": 3}), vec!["flags"]),
        (json!({"flags": {"f": {"variants": {"on": true}}}}), vec!["flags.f.state"]),
        (json!({"flags": {"f": {"state": "ON", "variants": {"on": true}}}}), vec!["flags.f.state"]),
        (json!({"flags": {"f": {"state": "ENABLED"}}}), vec!["flags.f.variants"]),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {}}}}), vec!["flags.f.variants"]),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": true, "b": "x"}}}}), vec!["flags.f.variants.b"]),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": [1]}}}}), vec!["flags.f.variants.a"]),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 9007199254740993_u64}}}}), vec!["flags.f.variants.a"]),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 9007199254740991_u64}}}}), vec![]),
        (
            json!({"flags": {"new-checkout": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "of"}}}),
            vec!["flags.new-checkout.defaultVariant"],
        ),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": 1}}}), vec!["flags.f.defaultVariant"]),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "targeting": "on"}}}), vec!["flags.f.targeting"]),
        (
            json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"if": [{"nope": 1}, "on", null]}}}}),
            vec!["flags.f.targeting.if[0].nope"],
        ),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "metadata": {"x": {"y": 1}}}}}), vec!["flags.f.metadata.x"]),
        (json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}}}, "metadata": {"version": 3}}), vec!["metadata.version"]),
        (
            json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"$ref": "missing"}}}}),
            vec!["flags.f.targeting.$ref"],
        ),
        (json!({"flags": {}, "$evaluators": {"a": {"$ref": "b"}, "b": {"var": "x"}}}), vec!["$evaluators.a.$ref"]),
        (json!({"flags": {}, "$evaluators": {"a": "text"}}), vec!["$evaluators.a"]),
        (json!({"flags": [{"state": "ENABLED", "variants": {"on": true}}]}), vec!["flags[0].key"]),
        (
            json!({"flags": [{"key": "a", "state": "ENABLED", "variants": {"on": true}}, {"key": "a", "state": "ENABLED", "variants": {"on": true}}]}),
            vec!["flags[1].key"],
        ),
    ];
    for (document, expected) in cases {
        assert_eq!(error_paths(document.clone()), expected, "{document}");
    }
}

#[test]
fn prerequisites_are_one_level_and_acyclic() {
    let flag = |prerequisites: serde_json::Value| json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "prerequisites": prerequisites});
    let cases = vec![
        (json!({"flags": {"a": flag(json!([{"flag": "a", "variant": "on"}]))}}), vec!["flags.a.prerequisites[0].flag"]),
        (json!({"flags": {"a": flag(json!([{"flag": "zzz", "variant": "on"}]))}}), vec!["flags.a.prerequisites[0].flag"]),
        (
            json!({"flags": {"a": flag(json!([{"flag": "b", "variant": "maybe"}])), "b": flag(json!([]))}}),
            vec!["flags.a.prerequisites[0].variant"],
        ),
        (
            json!({"flags": {"a": flag(json!([{"flag": "b", "variant": "on"}])), "b": flag(json!([{"flag": "a", "variant": "on"}]))}}),
            vec!["flags.a.prerequisites[0].flag", "flags.b.prerequisites[0].flag"],
        ),
        (
            json!({"flags": {"a": flag(json!([{"flag": "b", "variant": "on"}])), "b": flag(json!([{"flag": "c", "variant": "on"}])), "c": flag(json!([]))}}),
            vec!["flags.a.prerequisites[0].flag"],
        ),
        (json!({"flags": {"a": flag(json!([{"flag": "b"}])), "b": flag(json!([]))}}), vec!["flags.a.prerequisites[0]"]),
        (json!({"flags": {"a": flag(json!([{"flag": "b", "variant": "off"}])), "b": flag(json!([]))}}), vec![]),
        // An invalid prerequisite flag is reported once, at its own path.
        (
            json!({"flags": {"a": flag(json!([{"flag": "b", "variant": "on"}])), "b": {"state": "ON", "variants": {"on": true}}}}),
            vec!["flags.b.state"],
        ),
    ];
    for (document, expected) in cases {
        assert_eq!(error_paths(document.clone()), expected, "{document}");
    }
}

#[test]
fn messages_say_how_to_fix() {
    let messages = error_messages(
        json!({"flags": {"new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "onn"}}}),
    );
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0, "flags.new-checkout.defaultVariant");
    assert!(messages[0].1.contains("use one of off, on or null"), "{}", messages[0].1);
    let messages = error_messages(json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": true, "b": "x"}}}}));
    assert!(messages[0].1.contains("all variants of a flag have one type"), "{}", messages[0].1);
}

#[test]
fn every_problem_is_reported_at_once() {
    let paths = error_paths(json!({"flags": {
        "a": {"state": "ON", "variants": {"on": true}},
        "b": {"state": "ENABLED", "variants": {}},
    }, "metadata": []}));
    assert_eq!(paths, vec!["metadata", "flags.a.state", "flags.b.variants"]);
}

#[test]
fn bytes_that_are_not_json_or_not_utf8_are_refused_clearly() {
    let error = FlagSet::parse(b"{\"flags\": {").expect_err("truncated");
    assert!(error.0[0].message.contains("not valid JSON"), "{:?}", error);
    let error = FlagSet::parse(b"{\"flags\": {\"\xff\": 1}}").expect_err("not UTF-8");
    assert!(error.0[0].message.contains("line 1"), "{:?}", error);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(FlagSet::parse(deep.as_bytes()).is_err(), "serde_json's recursion limit refuses it without overflowing the stack");
}
