//! `fractional` v2 bucketing vectors (reference §2.1 table; flagd-testbed
//! `evaluator/gherkin/fractional.feature`, `@fractional-v2`, flags rebuilt from the scenario text).

use crate::support::{compile, NOW};
use serde_json::{json, Value};
use signalbox_flags::murmur3::murmur3_x86_32;
use signalbox_flags::Reason;

fn suits(bucket_by: Value, names: [&str; 4]) -> Value {
    json!({
        "fractional": [
            bucket_by,
            [names[0], 25], [names[1], 25], [names[2], 25], [names[3], 25]
        ]
    })
}

fn string_flag(variants: &[&str], targeting: Value) -> Value {
    let variants: serde_json::Map<String, Value> = variants.iter().map(|name| (name.to_string(), json!(name))).collect();
    json!({ "state": "ENABLED", "variants": variants, "defaultVariant": variants.keys().next(), "targeting": targeting })
}

fn testbed_flags() -> Value {
    let cards = ["clubs", "diamonds", "hearts", "spades"];
    let aces = ["ace-of-clubs", "ace-of-diamonds", "ace-of-hearts", "ace-of-spades"];
    json!({ "flags": {
        "fractional-flag": string_flag(&cards, suits(json!({"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]}), cards)),
        "fractional-flag-A-shared-seed": string_flag(&cards, suits(json!({"cat": ["shared-seed", {"var": "user.name"}]}), cards)),
        "fractional-flag-B-shared-seed": string_flag(&aces, suits(json!({"cat": ["shared-seed", {"var": "user.name"}]}), aces)),
        "fractional-flag-shorthand": string_flag(&["heads", "tails"], json!({"fractional": [["heads"], ["tails"]]})),
        "fractional-hash-edge-flag": string_flag(&["lower", "upper"], json!({"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]})),
    }})
}

#[test]
fn reference_table_hashes_and_buckets() {
    // Reference §2.1: murmur3 u32 of "fractional-flag" + name, and the v2 bucket out of 100.
    let rows = [
        ("jack", 2_682_799_072_u32, 62_u64),
        ("queen", 4_278_517_551, 99),
        ("ten", 801_845_258, 18),
        ("nine", 1_406_129_861, 32),
        ("3", 604_371_928, 14),
    ];
    for (name, hash, bucket) in rows {
        let computed = murmur3_x86_32(&[b"fractional-flag", name.as_bytes()]);
        assert_eq!(computed, hash, "hash of {name}");
        assert_eq!((u64::from(computed) * 100) >> 32, bucket, "bucket of {name}");
    }
}

#[test]
fn hash_edge_keys_hit_the_boundaries() {
    let rows = [("ejOoVL", 0_u32), ("bY9fO-", 1), ("SI7p-", 2_147_483_647), ("6LvT0", 2_147_483_648), ("ceQdGm", 4_294_967_295)];
    for (key, hash) in rows {
        assert_eq!(murmur3_x86_32(&[key.as_bytes()]), hash, "{key}");
    }
}

#[test]
fn testbed_v2_vectors() {
    let flags = compile(testbed_flags());
    let nested = |name: &str| json!({"user": {"name": name}});
    let keyed = |key: &str| json!({"targetingKey": key});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("fractional-flag", nested("jack"), "hearts"),
        ("fractional-flag", nested("queen"), "spades"),
        ("fractional-flag", nested("ten"), "clubs"),
        ("fractional-flag", nested("nine"), "diamonds"),
        ("fractional-flag", nested("3"), "clubs"),
        ("fractional-flag-shorthand", keyed("jon@company.com"), "heads"),
        ("fractional-flag-shorthand", keyed("jane@company.com"), "tails"),
        ("fractional-flag-A-shared-seed", nested("seven"), "hearts"),
        ("fractional-flag-A-shared-seed", nested("eight"), "diamonds"),
        ("fractional-flag-A-shared-seed", nested("nine"), "clubs"),
        ("fractional-flag-A-shared-seed", nested("two"), "spades"),
        ("fractional-flag-B-shared-seed", nested("seven"), "ace-of-hearts"),
        ("fractional-flag-B-shared-seed", nested("eight"), "ace-of-diamonds"),
        ("fractional-flag-B-shared-seed", nested("nine"), "ace-of-clubs"),
        ("fractional-flag-B-shared-seed", nested("two"), "ace-of-spades"),
        ("fractional-hash-edge-flag", keyed("ejOoVL"), "lower"),
        ("fractional-hash-edge-flag", keyed("bY9fO-"), "lower"),
        ("fractional-hash-edge-flag", keyed("SI7p-"), "lower"),
        ("fractional-hash-edge-flag", keyed("6LvT0"), "upper"),
        ("fractional-hash-edge-flag", keyed("ceQdGm"), "upper"),
    ];
    for (flag, context, expected) in cases {
        let resolution = flags.evaluate(flag, &context, NOW);
        assert_eq!(resolution.variant, Some(expected), "{flag} {context}");
        assert_eq!(resolution.value, Some(&json!(expected)));
        // Documented choice: fractional reports TARGETING_MATCH, like flagd.
        assert_eq!(resolution.reason, Reason::TargetingMatch);
    }
}

#[test]
fn four_quarters_stay_within_half_a_percent_and_are_sticky() {
    let flags = compile(
        json!({ "flags": { "split": string_flag(&["a", "b", "c", "d"], json!({"fractional": [["a", 25], ["b", 25], ["c", 25], ["d", 25]]})) }}),
    );
    let total = 1_000_000;
    let mut counts = std::collections::HashMap::new();
    let mut context = json!({"targetingKey": ""});
    for index in 0..total {
        context["targetingKey"] = json!(format!("user-{index}"));
        let variant = flags.evaluate("split", &context, NOW).variant.expect("a variant");
        *counts.entry(variant).or_insert(0_u32) += 1;
        if index % 9973 == 0 {
            // Re-evaluation gives the same bucket (sticky).
            assert_eq!(flags.evaluate("split", &context, NOW + 86_400).variant, Some(variant));
        }
    }
    for name in ["a", "b", "c", "d"] {
        let share = f64::from(counts[name]) / f64::from(total);
        assert!((share - 0.25).abs() <= 0.005, "{name}: {share}");
    }
}

#[test]
fn missing_targeting_key_falls_back_to_the_default() {
    let flags = compile(json!({ "flags": { "split": string_flag(&["a", "b"], json!({"fractional": [["a", 50], ["b", 50]]})) }}));
    for context in [json!({}), json!({"targetingKey": ""}), json!({"targetingKey": null}), json!({"targetingKey": 7})] {
        let resolution = flags.evaluate("split", &context, NOW);
        assert_eq!(resolution.reason, Reason::Default, "{context}");
        assert_eq!(resolution.variant, Some("a"), "defaultVariant is the first name: {context}");
    }
}

#[test]
fn weights_clamp_negative_and_reject_invalid_dynamic_weights() {
    let flags = compile(json!({ "flags": {
        "ramp": string_flag(&["new", "old"], json!({"fractional": [["new", {"-": [0, 5]}], ["old", 10]]})),
        "bad": string_flag(&["new", "old"], json!({"fractional": [["new", {"/": [1, 2]}], ["old", 10]]})),
        "zero": string_flag(&["new", "old"], json!({"fractional": [["new", {"*": [0, 1]}], ["old", 0]]})),
    }}));
    let context = json!({"targetingKey": "someone"});
    assert_eq!(flags.evaluate("ramp", &context, NOW).variant, Some("old"), "a negative weight counts as 0");
    assert_eq!(flags.evaluate("bad", &context, NOW).reason, Reason::Default, "a fractional weight makes fractional null");
    assert_eq!(flags.evaluate("zero", &context, NOW).reason, Reason::Default, "all-zero weights make fractional null");
}
