//! Property tests: parsing and evaluation never panic on arbitrary input, compiled evaluation
//! equals the oracle interpreter, and valid documents round-trip.

use crate::support::NOW;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use signalbox_flags::logic::{Rule, OPERATORS};
use signalbox_flags::oracle::interpret;
use signalbox_flags::{CompiledFlagSet, FlagSet};

const WORDS: &[&str] = &[
    "",
    "a",
    "b",
    "on",
    "off",
    "1",
    "2.5",
    "1.2.3",
    "2.0.0-rc.1",
    "user-1",
    "email",
    "age",
    "tags",
    "targetingKey",
    "$flagd",
    "$flagd.flagKey",
    "$flagd.timestamp",
    "nested.x",
    "tags.0",
    "=",
    ">=",
    "^",
    "~",
    "current",
    "accumulator",
    "ann@corp.example",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(WORDS).prop_map(str::to_owned), "[a-z@.]{0,6}"]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5_i64..120).prop_map(Value::from),
        prop::sample::select(vec![0.5, -1.25, 1e3, 2.0]).prop_map(Value::from),
        word().prop_map(Value::String),
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(word(), inner, 0..4).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Rules made of real operators (with some junk) so most of them compile.
fn rule() -> impl Strategy<Value = Value> {
    let operators: Vec<&'static str> = OPERATORS.iter().copied().chain(["$ref", "bogus"]).collect();
    let var = word().prop_map(|path| json!({"var": path}));
    prop_oneof![leaf(), var].prop_recursive(4, 48, 4, move |inner| {
        let operators = operators.clone();
        prop_oneof![
            4 => (prop::sample::select(operators), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(operator, args)| json!({ operator: args })),
            1 => prop::collection::vec(inner.clone(), 1..3).prop_map(|arms| json!({"fractional": arms.into_iter().map(|arm| json!([arm, 1])).collect::<Vec<_>>()})),
            1 => prop::collection::vec(inner, 0..3).prop_map(Value::Array),
        ]
    })
}

fn context() -> impl Strategy<Value = Value> {
    (prop::collection::btree_map(word(), arbitrary_json(), 0..6), prop::option::of(word())).prop_map(|(map, key)| {
        let mut object: Map<String, Value> = map.into_iter().collect();
        if let Some(key) = key {
            object.insert("targetingKey".to_owned(), Value::String(key));
        }
        Value::Object(object)
    })
}

/// Rules shaped like real targeting, so the flag-level compilation (constant outcomes as variant
/// indexes, `in` tested directly, two-way `if` without a branch, constant `fractional`) is exercised.
fn targeting_rule() -> impl Strategy<Value = Value> {
    let outcome =
        prop_oneof![leaf(), prop::sample::select(VARIANT_NAMES).prop_map(|name| json!(name)), word().prop_map(|path| json!({"var": path}))]
            .boxed();
    let list = prop::collection::vec(leaf(), 0..12).prop_map(Value::Array).boxed();
    let condition = prop_oneof![
        (word(), list.clone()).prop_map(|(path, list)| json!({"in": [{"var": path}, list]})),
        (leaf(), list).prop_map(|(needle, list)| json!({"in": [needle, list]})),
        rule(),
    ]
    .boxed();
    let arms = prop::collection::vec((outcome.clone(), 0_u32..4), 1..5)
        .prop_map(|arms| arms.into_iter().map(|(variant, weight)| json!([variant, weight])).collect::<Vec<_>>())
        .boxed();
    let bucket = prop_oneof![
        word().prop_map(|path| json!({"var": path})),
        word().prop_map(|text| json!({"cat": [{"var": "$flagd.flagKey"}, text]}))
    ];
    prop_oneof![
        (condition.clone(), outcome.clone(), outcome.clone())
            .prop_map(|(condition, then, otherwise)| json!({"if": [condition, then, otherwise]})),
        (condition.clone(), outcome.clone(), condition, outcome.clone(), outcome.clone())
            .prop_map(|(first, then, second, then2, otherwise)| json!({"if": [first, then, {"if": [second, then2, otherwise]}]})),
        arms.clone().prop_map(|arms| json!({"fractional": arms})),
        (bucket, arms).prop_map(|(bucket, arms)| {
            let mut all = vec![bucket];
            all.extend(arms);
            json!({"fractional": all})
        }),
        outcome,
        rule(),
    ]
}

const VARIANT_NAMES: &[&str] = &["on", "off", "a", "1", "2.5", "true", "false", "user-1"];

/// What flagd does with a rule's value: null → default, a string (or the text of a boolean or
/// number) names a variant, anything else (or an unknown name) is an error.
fn reference_resolution(
    rule: &Value,
    variants: &Map<String, Value>,
    context: &Value,
) -> Option<(Option<Value>, Option<String>, &'static str)> {
    let compiled = Rule::compile(rule, &Map::new(), "t").ok()?;
    Some(match compiled.evaluate(context, "prop-flag", NOW) {
        Err(_) => (None, None, "ERROR"),
        Ok(result) => {
            let name = match result.as_ref() {
                Value::Null => return Some((Some(variants["off"].clone()), Some("off".to_owned()), "DEFAULT")),
                Value::String(name) => Some(name.clone()),
                Value::Bool(flag) => Some(flag.to_string()),
                Value::Number(number) => Some(signalbox_flags::js::json_number_to_js_string(number)),
                _ => None,
            };
            match name.and_then(|name| variants.get(&name).map(|value| (name, value))) {
                Some((name, value)) => (Some(value.clone()), Some(name), "TARGETING_MATCH"),
                None => (None, None, "ERROR"),
            }
        }
    })
}

type TypedSummary<T> = (Option<T>, Option<String>, &'static str, Option<&'static str>);

/// What a typed helper must return, derived from the untyped resolution: a value of another type
/// is a `TYPE_MISMATCH` without value or variant; anything else passes through.
fn typed_reference<'v, T>(resolution: &signalbox_flags::Resolution<'v>, extract: impl Fn(&'v Value) -> Option<T>) -> TypedSummary<T> {
    match resolution.value.map(extract) {
        Some(None) => (None, None, "ERROR", Some("TYPE_MISMATCH")),
        extracted => (
            extracted.flatten(),
            resolution.variant.map(str::to_owned),
            resolution.reason.as_str(),
            resolution.error_code.map(|code| code.as_str()),
        ),
    }
}

fn typed_summary<T: Clone>(typed: &signalbox_flags::TypedResolution<'_, T>) -> TypedSummary<T> {
    (typed.value.clone(), typed.variant.map(str::to_owned), typed.reason.as_str(), typed.error_code.map(|code| code.as_str()))
}

fn evaluators() -> Map<String, Value> {
    json!({"is-beta": {"in": [{"var": "email"}, ["a", "ann@corp.example"]]}}).as_object().cloned().unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_equals_oracle(rule in rule(), context in context()) {
        let evaluators = evaluators();
        if let Ok(compiled) = Rule::compile(&rule, &evaluators, "targeting") {
            if let Ok(result) = compiled.evaluate(&context, "prop-flag", NOW) {
                let expected = interpret(&rule, &evaluators, &context, "prop-flag", NOW);
                prop_assert_eq!(result.into_owned(), expected, "rule {} context {}", rule, context);
            }
        }
    }

    #[test]
    fn flag_resolution_equals_rule_value_then_variant_by_name(rule in targeting_rule(), context in context()) {
        let variants: Map<String, Value> = VARIANT_NAMES.iter().map(|name| ((*name).to_owned(), json!(format!("value of {name}")))).collect();
        let document = json!({"flags": {"prop-flag": {"state": "ENABLED", "variants": variants, "defaultVariant": "off", "targeting": rule}}});
        if let (Ok(set), Some(expected)) = (FlagSet::from_json(&document), reference_resolution(&rule, &variants, &context)) {
            let compiled = CompiledFlagSet::compile(&set).expect("validated sets compile");
            let resolution = compiled.evaluate("prop-flag", &context, NOW);
            let actual = (resolution.value.cloned(), resolution.variant.map(str::to_owned), resolution.reason.as_str());
            prop_assert_eq!(actual, expected, "rule {} context {}", rule, context);
        }
    }

    /// A context prepared for a set evaluates every flag exactly as the plain context does:
    /// untyped and typed, one key at a time and all at once, with rules shaped like real
    /// targeting (including `$ref`s and nested paths), a static flag, a prerequisite, an
    /// unknown key, and contexts that are not objects.
    #[test]
    fn prepared_contexts_evaluate_like_plain_ones(
        rules in prop::collection::vec(prop_oneof![targeting_rule(), Just(json!({"$ref": "is-beta"}))], 1..5),
        context in prop_oneof![4 => context(), 1 => arbitrary_json()],
        wanted in prop::sample::select(VARIANT_NAMES),
    ) {
        let variants: Map<String, Value> = VARIANT_NAMES.iter().map(|name| ((*name).to_owned(), json!(format!("value of {name}")))).collect();
        let mut flags = Map::new();
        for (index, rule) in rules.iter().enumerate() {
            flags.insert(format!("rule-{index}"), json!({"state": "ENABLED", "variants": variants, "defaultVariant": "off", "targeting": rule}));
        }
        flags.insert("static".to_owned(), json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}));
        flags.insert("dependent".to_owned(), json!({"state": "ENABLED", "variants": variants, "defaultVariant": "a",
            "targeting": rules[0], "prerequisites": [{"flag": "rule-1", "variant": wanted}]}));
        let document = json!({"$evaluators": evaluators(), "flags": flags});
        let Ok(set) = FlagSet::from_json(&document) else { return Ok(()) };
        let compiled = CompiledFlagSet::compile(&set).expect("validated sets compile");
        let prepared = compiled.prepare(&context);
        let mut all = Vec::new();
        prepared.evaluate_all(NOW, |key, resolution| all.push((key.to_owned(), resolution)));
        prop_assert_eq!(all.len(), compiled.keys().len());
        for ((key, from_all), expected_key) in all.iter().zip(compiled.keys()) {
            prop_assert_eq!(key, expected_key);
            let plain = compiled.evaluate(key, &context, NOW);
            prop_assert_eq!(&prepared.evaluate(key, NOW), &plain, "{} with {}", key, context);
            prop_assert_eq!(from_all, &plain, "{} with {}", key, context);
            let string = compiled.evaluate_string(key, &context, NOW);
            prop_assert_eq!(typed_summary(&string), typed_reference(&plain, Value::as_str), "{} with {}", key, context);
            let boolean = compiled.evaluate_bool(key, &context, NOW);
            prop_assert_eq!(typed_summary(&boolean), typed_reference(&plain, Value::as_bool), "{} with {}", key, context);
            prop_assert_eq!(prepared.evaluate_string(key, NOW), string);
            prop_assert_eq!(prepared.evaluate_bool(key, NOW), boolean);
            prop_assert_eq!(prepared.evaluate_int(key, NOW), compiled.evaluate_int(key, &context, NOW));
            prop_assert_eq!(prepared.evaluate_float(key, NOW), compiled.evaluate_float(key, &context, NOW));
            prop_assert_eq!(prepared.evaluate_object(key, NOW), compiled.evaluate_object(key, &context, NOW));
        }
        prop_assert_eq!(prepared.evaluate("no-such-flag", NOW), compiled.evaluate("no-such-flag", &context, NOW));
    }

    /// The borrowed bulk item serializes to the same JSON as the owned one, for every kind of
    /// resolution: matches, defaults, errors (unknown flag, non-object context, rule errors),
    /// disabled flags, unmet prerequisites, with set and flag metadata.
    #[test]
    fn borrowed_bulk_items_serialize_like_owned_ones(
        rule in targeting_rule(),
        context in prop_oneof![4 => context(), 1 => arbitrary_json()],
        wanted in prop::sample::select(VARIANT_NAMES),
        disabled in any::<bool>(),
        set_metadata in prop::collection::btree_map(prop_oneof![Just("unsatisfiedPrerequisite".to_owned()), "[a-z]{1,4}"], "[a-z]{0,3}", 0..3),
        flag_metadata in prop::collection::btree_map(prop_oneof![Just("unsatisfiedPrerequisite".to_owned()), "[a-z]{1,4}"], "[a-z]{0,3}", 0..3),
    ) {
        let variants: Map<String, Value> = VARIANT_NAMES.iter().map(|name| ((*name).to_owned(), json!(format!("value of {name}")))).collect();
        let document = json!({
            "metadata": set_metadata,
            "flags": {
                "ruled": {"state": if disabled { "DISABLED" } else { "ENABLED" }, "variants": variants, "targeting": rule, "metadata": flag_metadata},
                "dependent": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
                    "prerequisites": [{"flag": "ruled", "variant": wanted}]},
                "static": {"state": "ENABLED", "variants": {"x": {"nested": [1, "two"]}}, "defaultVariant": "x"},
            }
        });
        let Ok(set) = FlagSet::from_json(&document) else { return Ok(()) };
        let compiled = CompiledFlagSet::compile(&set).expect("validated sets compile");
        for key in ["ruled", "dependent", "static", "missing"] {
            let resolution = compiled.evaluate(key, &context, NOW);
            let owned = serde_json::to_string(&signalbox_flags::ofrep::bulk_item(key, &resolution)).expect("serializes");
            let borrowed = serde_json::to_string(&signalbox_flags::ofrep::bulk_item_ref(key, &resolution)).expect("serializes");
            prop_assert_eq!(&borrowed, &owned);
            // The single endpoint answers with the borrowed item and `single_status`: the same
            // JSON and status as `single_response`.
            let single = signalbox_flags::ofrep::single_response(key, &resolution);
            prop_assert_eq!(signalbox_flags::ofrep::single_status(&resolution), single.status());
            prop_assert_eq!(serde_json::from_str::<Value>(&borrowed).expect("JSON"), single.to_json());
        }
    }

    /// `bulk_etag` hashes the canonical context as it writes it; the ETag is exactly the one of
    /// the written-out form (SHA-256 over the prefix, the version and `write_canonical`), so
    /// ETags clients hold stay valid across the change.
    #[test]
    fn bulk_etags_hash_the_canonical_form(context in arbitrary_json(), version in "[a-z0-9:]{0,12}") {
        use sha2::{Digest, Sha256};
        let mut canonical = String::new();
        signalbox_flags::ofrep::write_canonical(&context, &mut canonical);
        let mut hasher = Sha256::new();
        hasher.update(b"ofrep-bulk\0");
        hasher.update((version.len() as u64).to_be_bytes());
        hasher.update(version.as_bytes());
        hasher.update(canonical.as_bytes());
        let expected = format!("\"{}\"", hex::encode(&hasher.finalize()[..16]));
        prop_assert_eq!(signalbox_flags::ofrep::bulk_etag(&version, &context), expected);
    }

    #[test]
    fn arbitrary_targeting_never_panics(targeting in arbitrary_json(), context in arbitrary_json()) {
        let document = json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": targeting}}});
        if let Ok(set) = FlagSet::from_json(&document) {
            let compiled = CompiledFlagSet::compile(&set).expect("validated sets compile");
            let resolution = compiled.evaluate("f", &context, NOW);
            prop_assert_eq!(resolution.error_code.is_some(), resolution.error_message.is_some());
        }
    }

    #[test]
    fn arbitrary_documents_never_panic(document in arbitrary_json()) {
        let _ = FlagSet::from_json(&json!({"flags": document.clone()}));
        let _ = FlagSet::from_json(&document);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = FlagSet::parse(&bytes);
        let _ = signalbox_flags::ofrep::EvaluationRequest::parse(&bytes, Default::default());
    }

    #[test]
    fn valid_documents_round_trip(
        flags in prop::collection::btree_map("[a-z][a-z0-9-]{0,8}", (any::<bool>(), 0_u8..4, prop::collection::btree_map("[a-z]{1,5}", leaf(), 1..4), any::<bool>(), prop::option::of(rule())), 0..5),
        metadata in prop::option::of(prop::collection::btree_map("[a-zA-Z]{1,6}", prop_oneof![any::<bool>().prop_map(Value::Bool), "[a-z]{0,4}".prop_map(Value::String)], 0..3)),
        array_form in any::<bool>(),
    ) {
        let mut entries = Vec::new();
        for (key, (enabled, kind, names, with_default, targeting)) in flags {
            let variants: Map<String, Value> = names.keys().enumerate().map(|(index, name)| {
                let value = match kind {
                    0 => json!(index % 2 == 0),
                    1 => json!(format!("value-{index}")),
                    2 => json!(index as f64 * 1.5),
                    _ => json!({"index": index}),
                };
                (name.clone(), value)
            }).collect();
            let mut flag = json!({"state": if enabled { "ENABLED" } else { "DISABLED" }, "variants": variants});
            if with_default {
                flag["defaultVariant"] = json!(names.keys().next());
            }
            if let Some(targeting) = targeting.filter(|rule| Rule::compile(rule, &Map::new(), "t").is_ok() && rule.is_object()) {
                flag["targeting"] = targeting;
            }
            entries.push((key, flag));
        }
        let flags_json = if array_form {
            Value::Array(entries.into_iter().map(|(key, mut flag)| { flag["key"] = json!(key); flag }).collect())
        } else {
            Value::Object(entries.into_iter().collect())
        };
        let mut document = json!({"flags": flags_json});
        if let Some(metadata) = metadata {
            document["metadata"] = Value::Object(metadata.into_iter().collect());
        }
        let set = FlagSet::from_json(&document).map_err(|invalid| TestCaseError::fail(format!("{invalid:?} for {document}")))?;
        prop_assert_eq!(set.to_json(), document);
    }
}
