//! JsonLogic and flagd operator behaviour, as a table: (rule, data, expected result). Every row is
//! also checked against the oracle interpreter.

use crate::support::NOW;
use serde_json::{json, Map, Value};
use signalbox_flags::logic::Rule;
use signalbox_flags::oracle::interpret;

fn run(rule: &Value, data: &Value) -> Value {
    let evaluators: Map<String, Value> =
        json!({"is-beta": {"in": [{"var": "email"}, ["a@x.io", "b@x.io"]]}}).as_object().cloned().unwrap_or_default();
    let compiled = Rule::compile(rule, &evaluators, "targeting").unwrap_or_else(|error| panic!("{rule} should compile: {error:?}"));
    let result = compiled.evaluate(data, "my-flag", NOW).expect("evaluates").into_owned();
    let oracle = interpret(rule, &evaluators, data, "my-flag", NOW);
    assert_eq!(result, oracle, "compiled and oracle disagree on {rule} with {data}");
    result
}

#[test]
fn operator_table() {
    let data = json!({
        "targetingKey": "user-1", "email": "ann@example.com", "age": 42, "plan": "premium", "tags": ["a", "b"],
        "nested": {"list": [10, 20, 30], "empty": ""}, "version": "1.4.2", "zero": 0, "text": "hello world"
    });
    let rows: Vec<(Value, Value)> = vec![
        // var
        (json!({"var": "email"}), json!("ann@example.com")),
        (json!({"var": "nested.list.1"}), json!(20)),
        (json!({"var": ["missing.path", "fallback"]}), json!("fallback")),
        (json!({"var": "missing"}), json!(null)),
        (json!({"var": "$flagd.flagKey"}), json!("my-flag")),
        (json!({"var": "$flagd.timestamp"}), json!(NOW)),
        (json!({"var": "$flagd.other"}), json!(null)),
        (json!({"var": {"cat": ["pl", "an"]}}), json!("premium")),
        // if / logic
        (json!({"if": [{"==": [{"var": "plan"}, "premium"]}, "gold", "basic"]}), json!("gold")),
        (json!({"if": [false, "x"]}), json!(null)),
        (json!({"if": [{"var": "zero"}, "yes", "no"]}), json!("no")),
        (json!({"if": [{"$ref": "is-beta"}, "beta", null]}), json!(null)),
        (json!({"or": [0, "", "first", "second"]}), json!("first")),
        (json!({"or": [0, false]}), json!(false)),
        (json!({"and": [1, "x", 0, "never"]}), json!(0)),
        (json!({"and": [1, "last"]}), json!("last")),
        (json!({"!": [[]]}), json!(true)),
        (json!({"!!": ["0"]}), json!(true)),
        // equality
        (json!({"==": [1, "1"]}), json!(true)),
        (json!({"===": [1, "1"]}), json!(false)),
        (json!({"!=": [null, 0]}), json!(true)),
        (json!({"!==": [1, 1.0]}), json!(false)),
        (json!({"==": [true, 1]}), json!(true)),
        // comparison
        (json!({"<": [1, 2, 3]}), json!(true)),
        (json!({"<": [1, 3, 3]}), json!(false)),
        (json!({"<=": [1, 3, 3]}), json!(true)),
        (json!({">": [{"var": "age"}, 18]}), json!(true)),
        (json!({">=": ["10", 9]}), json!(true)),
        (json!({"<": ["a", "b"]}), json!(true)),
        // in
        (json!({"in": [{"var": "plan"}, ["free", "premium"]]}), json!(true)),
        (json!({"in": [{"var": "age"}, ["42"]]}), json!(false)),
        (json!({"in": ["world", {"var": "text"}]}), json!(true)),
        (json!({"in": ["a", {"var": "tags"}]}), json!(true)),
        (json!({"in": ["x", 5]}), json!(false)),
        // strings
        (json!({"cat": ["a", 1, null, true]}), json!("a1nulltrue")),
        (json!({"substr": ["hello", 1, 3]}), json!("ell")),
        (json!({"substr": ["hello", -3]}), json!("llo")),
        (json!({"substr": ["hello", 1, -1]}), json!("ell")),
        (json!({"starts_with": [{"var": "email"}, "ann@"]}), json!(true)),
        (json!({"ends_with": [{"var": "email"}, "@example.com"]}), json!(true)),
        (json!({"ends_with": [{"var": "email"}, "@other.com"]}), json!(false)),
        (json!({"starts_with": [{"var": "age"}, "4"]}), json!(null)),
        // arithmetic
        (json!({"+": [1, "2", 3.5]}), json!(6.5)),
        (json!({"-": [10, 4]}), json!(6)),
        (json!({"-": [3]}), json!(-3)),
        (json!({"*": [2, 3, 4]}), json!(24)),
        (json!({"/": [1, 4]}), json!(0.25)),
        (json!({"/": [1, 0]}), json!(null)),
        (json!({"%": [10, 3]}), json!(1)),
        (json!({"min": [3, 1, 2]}), json!(1)),
        (json!({"max": [3, "9", 2]}), json!(9)),
        (json!({"max": [3, "x"]}), json!(null)),
        // arrays
        (json!({"merge": [[1, 2], 3, [[4]]]}), json!([1, 2, 3, [4]])),
        (json!({"map": [{"var": "nested.list"}, {"*": [{"var": ""}, 2]}]}), json!([20, 40, 60])),
        (json!({"filter": [{"var": "nested.list"}, {">": [{"var": ""}, 15]}]}), json!([20, 30])),
        (json!({"reduce": [{"var": "nested.list"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}), json!(60)),
        (json!({"all": [{"var": "nested.list"}, {">": [{"var": ""}, 5]}]}), json!(true)),
        (json!({"all": [[], {">": [{"var": ""}, 5]}]}), json!(false)),
        (json!({"some": [{"var": "tags"}, {"==": [{"var": ""}, "b"]}]}), json!(true)),
        (json!({"none": [{"var": "tags"}, {"==": [{"var": ""}, "z"]}]}), json!(true)),
        (json!({"map": ["not an array", {"var": ""}]}), json!([])),
        // missing
        (json!({"missing": ["email", "phone", "nested.empty", "nested.absent"]}), json!(["phone", "nested.absent"])),
        (json!({"missing": [["age", "nope"]]}), json!(["nope"])),
        (json!({"missing_some": [1, ["phone", "email"]]}), json!([])),
        (json!({"missing_some": [2, ["phone", "email"]]}), json!(["phone"])),
        // sem_ver
        (json!({"sem_ver": [{"var": "version"}, ">=", "1.4.0"]}), json!(true)),
        (json!({"sem_ver": [{"var": "version"}, "^", "1.0.0"]}), json!(true)),
        (json!({"sem_ver": [{"var": "version"}, "~", "1.3.0"]}), json!(false)),
        (json!({"sem_ver": [{"var": "email"}, "=", "1.0.0"]}), json!(null)),
        (json!({"sem_ver": [{"var": "age"}, "=", "42.0.0"]}), json!(true)),
        (json!({"sem_ver": [{"var": "tags"}, "=", "1.0.0"]}), json!(null)),
        (json!({"sem_ver": ["v2.0.0", {"var": "plan"}, "1.0.0"]}), json!(null)),
        // fractional used as a value inside other operators
        (json!({"in": [{"fractional": [["x", 1]]}, ["x"]]}), json!(true)),
    ];
    for (rule, expected) in rows {
        assert_eq!(run(&rule, &data), expected, "{rule}");
    }
}

/// `in` over a constant list is compiled to a lookup by type (a probe scan for up to 8 strings, a
/// hash table beyond). It must keep `Array.prototype.includes` semantics: strings match only equal
/// strings, numbers only equal numbers (`1` and `1.0` alike, never `"1"`), booleans and `null` only
/// themselves, arrays and objects never. Each row is also checked against the oracle (which scans).
#[test]
fn in_over_constant_lists_table() {
    let long = "a-rather-long-country-name-that-exceeds-16-bytes";
    let long_twin = "a-rather-long-country-name-that-exceedz-16-bytes";
    // (An object in a rule is an operator, so lists hold none; a needle from the context may be one.)
    let few = json!(["CA", "US", 1, 2.5, true, null, [1], long]);
    let many = json!(["a", "bb", "ccc", "dddd", "eeeee", "ffffffff", "ggggggggg", "hhhhhhhhhhhhhhhh", "iiiiiiiiiiiiiiiii", long, 0, false]);
    let needles = [
        json!("CA"),
        json!("US"),
        json!("ca"),
        json!("C"),
        json!("CAN"),
        json!(""),
        json!(1),
        json!(1.0),
        json!("1"),
        json!(2.5),
        json!("2.5"),
        json!(0),
        json!(-0.0),
        json!(true),
        json!(false),
        json!("true"),
        json!(null),
        json!([1]),
        json!({"a": 1}),
        json!(long),
        json!(long_twin),
        json!("ffffffff"),
        json!("fffffff"),
        json!("ggggggggg"),
        json!("hhhhhhhhhhhhhhhh"),
        json!("iiiiiiiiiiiiiiiii"),
        json!("iiiiiiiiiiiiiiii"),
        json!("dddd"),
    ];
    let mut hits = 0;
    for list in [&few, &many] {
        for needle in &needles {
            let data = json!({ "needle": needle });
            let by_var = run(&json!({"in": [{"var": "needle"}, list]}), &data);
            let by_literal = if needle.is_object() { json!(false) } else { run(&json!({"in": [needle, list]}), &data) };
            let in_if = run(&json!({"if": [{"in": [{"var": "needle"}, list]}, "yes", "no"]}), &data);
            assert_eq!(by_var, by_literal, "{needle} in {list}");
            assert_eq!(in_if, json!(if by_var == json!(true) { "yes" } else { "no" }));
            hits += usize::from(by_var == json!(true));
        }
        // An absent variable is `null`.
        assert_eq!(
            run(&json!({"in": [{"var": "missing"}, list]}), &json!({})),
            json!(list.as_array().is_some_and(|items| items.contains(&Value::Null)))
        );
    }
    assert!(hits >= 15, "the table exercises both outcomes ({hits} hits)");
}

#[test]
fn flagd_injection_overrides_a_caller_supplied_flagd_property() {
    let data = json!({"$flagd": {"flagKey": "spoofed"}, "targetingKey": "u"});
    assert_eq!(run(&json!({"var": "$flagd.flagKey"}), &data), json!("my-flag"));
    let whole = run(&json!({"var": ""}), &data);
    assert_eq!(whole["$flagd"]["flagKey"], json!("my-flag"));
}

#[test]
fn hostile_rules_are_stopped() {
    // A reduce that rebuilds a growing string hits the output cap instead of eating memory.
    let big: Vec<Value> = (0..30_000).map(|index| json!(index)).collect();
    let data = json!({ "items": big });
    let rule = json!({"reduce": [{"var": "items"}, {"cat": [{"var": "accumulator"}, "0123456789012345678901234567890123456789"]}, ""]});
    let compiled = Rule::compile(&rule, &Map::new(), "targeting").expect("compiles");
    assert!(compiled.evaluate(&data, "f", NOW).is_err(), "the output cap (or the step budget) stops it");
    // Nested map over map over a 1,000-element array exceeds the step budget.
    let thousand: Vec<Value> = (0..5_000).map(|index| json!(index)).collect();
    let data = json!({ "items": thousand });
    let rule = json!({"map": [{"var": "items"}, {"map": [{"var": "$items"}, {"+": [1, 1]}]}]});
    let compiled = Rule::compile(&rule, &Map::new(), "targeting").expect("compiles");
    assert!(compiled.evaluate(&data, "f", NOW).is_ok(), "inner var on an element yields no array, so this is cheap");
    let rule = json!({"map": [{"var": "items"}, {"merge": [{"var": "missing"}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}, {"+": [1, 1]}]}]});
    let compiled = Rule::compile(&rule, &Map::new(), "targeting").expect("compiles");
    assert!(compiled.evaluate(&data, "f", NOW).is_err(), "about 100 operations per element over 5,000 elements exceeds the budget");
}

#[test]
fn deep_nesting_is_refused_at_compile_time() {
    let mut rule = json!({"var": "x"});
    for _ in 0..100 {
        rule = json!({"!": [rule]});
    }
    let error = Rule::compile(&rule, &Map::new(), "flags.f.targeting").expect_err("too deep");
    assert!(error.message.contains("nested deeper"), "{error:?}");
    assert!(error.path.starts_with("flags.f.targeting.!"), "{error:?}");
}

#[test]
fn compile_errors_name_the_path_and_the_fix() {
    let cases = [
        (json!({"nope": [1]}), "targeting.nope", "unknown operator"),
        (json!({"if": [{"==": [1]}, "a", "b"]}), "targeting.if[0].==", "takes 2 arguments"),
        (json!({"sem_ver": [{"var": "v"}, "=>", "1.0.0"]}), "targeting.sem_ver[1]", "unknown sem_ver operator"),
        (json!({"sem_ver": [{"var": "v"}, ">", "1.0"]}), "targeting.sem_ver[2]", "not a semantic version"),
        (json!({"fractional": [["a", 1.5], ["b", 1]]}), "targeting.fractional[0][1]", "whole number"),
        (json!({"fractional": [["a", -1], ["b", 1]]}), "targeting.fractional[0][1]", "must not be negative"),
        (json!({"fractional": [["a", 2147483647], ["b", 1]]}), "targeting.fractional", "add up to"),
        (json!({"fractional": [{"var": "email"}]}), "targeting.fractional", "at least one"),
        (json!({"$ref": "unknown"}), "targeting.$ref", "unknown evaluator"),
        (json!({"==": [1, 2], "!=": [1, 2]}), "targeting", "exactly one operator"),
    ];
    for (rule, path, message) in cases {
        let error = Rule::compile(&rule, &Map::new(), "targeting").expect_err("should not compile");
        assert_eq!(error.path, path, "{rule}");
        assert!(error.message.contains(message), "{rule}: {}", error.message);
    }
}
