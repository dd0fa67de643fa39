//! Import then export gives an equal JSON value.

use serde_json::{json, Value};
use signalbox_flags::FlagSet;

fn round_trip(document: &Value) -> Value {
    FlagSet::from_json(document).unwrap_or_else(|invalid| panic!("{invalid:?}")).to_json()
}

#[test]
fn documents_round_trip_exactly() {
    let documents = [
        json!({"flags": {}}),
        json!({
            "$schema": "https://flagd.dev/schema/v0/flags.json",
            "metadata": {"flagSetId": "shop", "version": "3", "beta": true, "weight": 1.5},
            "$evaluators": {"emails": {"in": [{"var": "email"}, ["a@x.io"]]}},
            "x-owner": {"anything": ["kept"]},
            "flags": {
                "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
                "b": {"state": "DISABLED", "variants": {"x": {"deep": [1, 2]}}, "defaultVariant": null, "metadata": {"owner": "bo"}},
                "c": {"state": "ENABLED", "variants": {"one": 1, "big": 9007199254740991_u64, "half": 0.5},
                      "targeting": {"if": [{"$ref": "emails"}, "one", {"fractional": [["half", 50], ["big", 50]]}]}},
                "d": {"state": "ENABLED", "variants": {"s": "S"}, "targeting": {}, "description": "unknown keys survive"},
                "e": {"state": "ENABLED", "variants": {"s": "S"}, "defaultVariant": "s", "prerequisites": [{"flag": "a", "variant": "on"}]}
            }
        }),
        json!({"flags": [
            {"key": "z", "state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"},
            {"key": "a", "state": "DISABLED", "variants": {"on": true}}
        ]}),
    ];
    for document in documents {
        assert_eq!(round_trip(&document), document);
        // Idempotent: the export imports to an equal flag set.
        let set = FlagSet::from_json(&document).expect("valid");
        assert_eq!(FlagSet::from_json(&set.to_json()).expect("valid"), set);
    }
}
