//! Differential test against flagd's own JavaScript evaluator, `@openfeature/flagd-core` (npm).
//!
//! The test installs the package into `$CARGO_TARGET_TMPDIR/flagd-core` with the machine's npm
//! (once; later runs reuse it), evaluates the same flag file for 100,000 generated contexts in
//! Node.js and here, and requires identical variant, reason and value for every one. It fails,
//! rather than skips, when Node.js or npm is unavailable.
//!
//! Deliberate differences (docs/FLAGS.md, "Differences from flagd-core") are kept out of the
//! workload: flagd-core's JsonLogic engine raises an error where a comparison or arithmetic meets a
//! non-numeric string, or `some`/`substr` meet a value of the wrong type; we evaluate those with
//! classic JsonLogic coercion. So the contexts here are well-typed for the rules that use them.

use serde_json::{json, Map, Value};
use signalbox_flags::{CompiledFlagSet, FlagSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const FLAGD_CORE_VERSION: &str = "4.0.1";
const CONTEXTS: usize = 100_000;

fn flag_file() -> Value {
    let on_off = json!({"on": true, "off": false});
    json!({
        "metadata": {"flagSetId": "differential"},
        "$evaluators": {"is-staff": {"ends_with": [{"var": "email"}, "@corp.example"]}},
        "flags": {
            "static": {"state": "ENABLED", "variants": on_off, "defaultVariant": "on"},
            "killed": {"state": "DISABLED", "variants": on_off, "defaultVariant": "on"},
            "countries": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"if": [{"in": [{"var": "country"}, ["CA", "US", "GB"]]}, "on", "off"]}},
            "bool-result": {"state": "ENABLED", "variants": {"true": "yes", "false": "no"}, "defaultVariant": "false",
                "targeting": {"in": [{"var": "country"}, ["CA", "US"]]}},
            "quarters": {"state": "ENABLED", "variants": {"a": "A", "b": "B", "c": "C", "d": "D"}, "defaultVariant": "a",
                "targeting": {"fractional": [["a", 25], ["b", 25], ["c", 25], ["d", 25]]}},
            "by-email": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, ["on", 10], ["off", 90]]}},
            "nested-fractional": {"state": "ENABLED", "variants": {"premium": 3, "standard": 1}, "defaultVariant": "standard",
                "targeting": {"fractional": [[{"if": [{"==": [{"var": "plan"}, "pro"]}, "premium", "standard"]}, 50], ["standard", 50]]}},
            "versions": {"state": "ENABLED", "variants": {"major2": "2", "minor14": "1.4", "other": "?"}, "defaultVariant": "other",
                "targeting": {"if": [{"sem_ver": [{"var": "appVersion"}, "^", "2.0.0"]}, "major2",
                    {"if": [{"sem_ver": [{"var": "appVersion"}, "~", "1.4.0"]}, "minor14",
                        {"if": [{"sem_ver": [{"var": "appVersion"}, ">=", "1.2.0"]}, "other", null]}]}]}},
            "staff-or-beta": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"if": [{"or": [{"$ref": "is-staff"}, {"starts_with": [{"var": "email"}, "beta-"]}]}, "on", "off"]}},
            "adults": {"state": "ENABLED", "variants": {"adult": {"tier": "adult"}, "other": {"tier": "other"}}, "defaultVariant": "other",
                "targeting": {"if": [{"<=": [18, {"var": "age"}, 65]}, "adult", "other"]}},
            "loose-equality": {"state": "ENABLED", "variants": {"one": 1, "other": 0}, "defaultVariant": "other",
                "targeting": {"if": [{"==": [{"var": "tier"}, 1]}, "one", "other"]}},
            "logic": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"if": [{"and": [{"!": {"var": "beta"}}, {"or": [{"===": [{"var": "plan"}, "pro"]}, {">": [{"var": "seats"}, 10]}]}]}, "on", "off"]}},
            "opt-in-or-default": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"if": [{"var": "optIn"}, "on", null]}},
            "code-default": {"state": "ENABLED", "variants": {"x": "X", "y": "Y"}, "defaultVariant": null,
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "x", null]}},
            "complete-profile": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"if": [{"missing": ["email", "plan"]}, "off", "on"]}},
            "admins": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"if": [{"some": [{"var": "groups"}, {"==": [{"var": ""}, "admin"]}]}, "on", "off"]}},
            "prefix": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"substr": [{"var": ["email", ""]}, 0, 4]}, "beta"]}, "on", "off"]}},
            "arithmetic": {"state": "ENABLED", "variants": {"big": "big", "small": "small"}, "defaultVariant": "small",
                "targeting": {"if": [{">": [{"+": [{"var": "age"}, {"*": [{"var": "seats"}, 2]}]}, 50]}, "big", "small"]}},
            "since": {"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
                "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, 1_600_000_000]}, "on", "off"]}}
        }
    })
}

/// SplitMix64: deterministic contexts without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'v>(&mut self, values: &'v [Value]) -> &'v Value {
        &values[(self.next() % values.len() as u64) as usize]
    }
}

fn contexts() -> Vec<Value> {
    let mut random = Random(2026);
    let emails = [json!("beta-1@mail.example"), json!("ann@corp.example"), json!("bob@mail.example"), json!("beta@x.io"), Value::Null];
    let countries = [json!("CA"), json!("US"), json!("GB"), json!("FR"), json!("JP"), Value::Null];
    let versions = [
        json!("2.1.0"),
        json!("1.4.7"),
        json!("1.3.0"),
        json!("1.2.0-rc.1"),
        json!("v2.0.0"),
        json!("0.9.9"),
        json!("1.2"),
        json!(3),
        Value::Null,
    ];
    let ages = [json!(17), json!(18), json!(40), json!(65), json!(66), json!("30"), json!(""), Value::Null];
    let tiers = [json!(1), json!("1"), json!(true), json!(2), json!(false), Value::Null];
    let plans = [json!("pro"), json!("free"), json!(""), Value::Null];
    let seats = [json!(0), json!(5), json!(11), json!("12"), Value::Null];
    let flags = [json!(true), json!(false), json!(0), json!("yes"), Value::Null];
    let groups = [json!(["admin", "dev"]), json!(["dev"]), json!([]), Value::Null];
    (0..CONTEXTS)
        .map(|index| {
            let mut context = Map::new();
            context.insert("targetingKey".to_owned(), json!(format!("user-{index}-{}", random.next() % 100_000)));
            for (name, values) in [
                ("email", &emails[..]),
                ("country", &countries[..]),
                ("appVersion", &versions[..]),
                ("age", &ages[..]),
                ("tier", &tiers[..]),
                ("plan", &plans[..]),
                ("seats", &seats[..]),
                ("beta", &flags[..]),
                ("optIn", &flags[..]),
                ("groups", &groups[..]),
            ] {
                let value = random.pick(values);
                if !value.is_null() {
                    context.insert(name.to_owned(), value.clone());
                }
            }
            Value::Object(context)
        })
        .collect()
}

const NODE_SCRIPT: &str = r#"
import { readFileSync, writeFileSync } from 'node:fs';
import { FlagdCore } from '@openfeature/flagd-core';
const [flagsPath, casesPath, outPath] = process.argv.slice(2);
const silent = { error() {}, warn() {}, info() {}, debug() {} };
const core = new FlagdCore(undefined, silent);
core.setConfigurations(readFileSync(flagsPath, 'utf8'));
const { cases, types } = JSON.parse(readFileSync(casesPath, 'utf8'));
const defaults = { boolean: false, string: '', number: 0, object: {} };
const lines = cases.map(([key, context]) => {
  try {
    const r = core.resolve(types[key], key, defaults[types[key]], context, silent);
    return JSON.stringify({ variant: r.variant ?? null, reason: r.reason, value: r.variant === undefined ? null : r.value, errorCode: r.errorCode ?? null });
  } catch (e) {
    return JSON.stringify({ variant: null, reason: 'ERROR', value: null, errorCode: e.code ?? String(e) });
  }
});
writeFileSync(outPath, lines.join('\n') + '\n');
"#;

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|error| panic!("{what}: cannot start ({error}); Node.js and npm are required"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn install_flagd_core() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flagd-core");
    std::fs::create_dir_all(&dir).expect("create the npm directory");
    let installed = dir.join("node_modules/@openfeature/flagd-core/package.json");
    let version_ok = std::fs::read_to_string(&installed).is_ok_and(|text| text.contains(&format!("\"version\": \"{FLAGD_CORE_VERSION}\"")));
    if !version_ok {
        let package = json!({"name": "signalbox-flags-differential", "private": true, "type": "module",
            "dependencies": {"@openfeature/flagd-core": FLAGD_CORE_VERSION, "@openfeature/core": "^1.9.0"}});
        std::fs::write(dir.join("package.json"), package.to_string()).expect("write package.json");
        run(
            Command::new("npm").args(["install", "--no-audit", "--no-fund", "--silent"]).current_dir(&dir),
            "npm install @openfeature/flagd-core",
        );
    }
    std::fs::write(dir.join("evaluate.mjs"), NODE_SCRIPT).expect("write the Node script");
    dir
}

#[test]
fn agrees_with_flagd_core_on_100_000_contexts() {
    let dir = install_flagd_core();
    let document = flag_file();
    let set = FlagSet::from_json(&document).expect("valid flag file");
    let compiled = CompiledFlagSet::compile(&set).expect("compiles");
    let keys: Vec<String> = compiled.keys().to_vec();
    let types: Map<String, Value> =
        keys.iter().map(|key| (key.clone(), json!(compiled.variant_type(key).map(|kind| kind.as_str()).unwrap_or("object")))).collect();
    let contexts = contexts();
    let cases: Vec<Value> = contexts.iter().enumerate().map(|(index, context)| json!([keys[index % keys.len()], context])).collect();
    std::fs::write(dir.join("flags.json"), document.to_string()).expect("write flags");
    std::fs::write(dir.join("cases.json"), json!({"cases": cases, "types": types}).to_string()).expect("write cases");
    run(Command::new("node").args(["evaluate.mjs", "flags.json", "cases.json", "results.jsonl"]).current_dir(&dir), "node evaluate.mjs");
    let results = std::fs::read_to_string(dir.join("results.jsonl")).expect("read results");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let mut mismatches = Vec::new();
    let mut lines = 0;
    for (index, line) in results.lines().enumerate() {
        lines += 1;
        let theirs: Value = serde_json::from_str(line).expect("a JSON line");
        let key = &keys[index % keys.len()];
        let ours = compiled.evaluate(key, &contexts[index], now);
        let ours = json!({
            "variant": ours.variant,
            "reason": ours.reason.as_str(),
            "value": ours.value,
            "errorCode": ours.error_code.map(|code| code.as_str()),
        });
        if ours != theirs {
            mismatches.push(format!("{key} {}: ours {ours} flagd-core {theirs}", contexts[index]));
        }
    }
    assert_eq!(lines, CONTEXTS, "one result per context");
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first ones:\n{}",
        mismatches.len(),
        mismatches.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
}
