//! Benchmark driver for bench/flags/run.sh: generates the shared workload and times
//! signalbox-flags on it. The Node side (bench/flags/flagd-core.mjs) runs the same workload.
//!
//! ```text
//! flags_bench generate <flags> <contexts> <workload.json>
//! flags_bench run <workload.json> <variants.tsv> <seconds-per-measurement>
//! ```

use serde_json::{json, Value};
use signalbox_flags::{CompiledFlagSet, FlagSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

const KINDS: [&str; 4] = ["static", "in", "fractional", "semver_prefix"];
const COUNTRIES: [&str; 12] = ["CA", "US", "GB", "DE", "FR", "JP", "BR", "IN", "AU", "NL", "SE", "MX"];

/// A small deterministic generator (SplitMix64) so both sides read the same workload file.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn flag(kind: &str, index: usize) -> Value {
    let on_off = json!({"on": true, "off": false});
    match kind {
        "static" => json!({"state": "ENABLED", "variants": on_off, "defaultVariant": "on"}),
        "in" => json!({"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
            "targeting": {"if": [{"in": [{"var": "country"}, ["CA", "US", "GB", "DE", "FR", "NL"]]}, "on", "off"]}}),
        "fractional" => json!({"state": "ENABLED", "variants": {"a": "A", "b": "B", "c": "C", "d": "D"}, "defaultVariant": "a",
            "targeting": {"fractional": [["a", 25], ["b", 25], ["c", 25], ["d", 25]]}}),
        _ => json!({"state": "ENABLED", "variants": on_off, "defaultVariant": "off",
        "targeting": {"if": [
            {"and": [{"sem_ver": [{"var": "appVersion"}, ">=", format!("2.{}.0", index % 5)]}, {"starts_with": [{"var": "email"}, "beta-"]}]},
            "on",
            {"if": [{"ends_with": [{"var": "email"}, "@corp.example"]}, "on",
                {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, ["on", 10], ["off", 90]]}]}
        ]}}),
    }
}

fn generate(flag_count: usize, context_count: usize) -> Value {
    let mut flags = serde_json::Map::new();
    let mut kinds = serde_json::Map::new();
    for index in 0..flag_count {
        let kind = KINDS[index % KINDS.len()];
        let key = format!("{kind}-{index}");
        flags.insert(key.clone(), flag(kind, index));
        kinds.insert(key, json!(kind));
    }
    let mut random = SplitMix(7);
    let contexts: Vec<Value> = (0..context_count)
        .map(|index| {
            let email = match random.below(4) {
                0 => format!("beta-{index}@mail.example"),
                1 => format!("user{index}@corp.example"),
                _ => format!("user{index}@mail.example"),
            };
            json!({
                "targetingKey": format!("user-{index}-{}", random.next() % 1_000_000),
                "email": email,
                "country": COUNTRIES[random.below(COUNTRIES.len() as u64) as usize],
                "appVersion": format!("{}.{}.{}", 1 + random.below(3), random.below(6), random.below(10)),
                "plan": if random.below(3) == 0 { "premium" } else { "free" },
            })
        })
        .collect();
    json!({"document": {"flags": flags, "metadata": {"flagSetId": "bench"}}, "kinds": kinds, "contexts": contexts})
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|line| line.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|line| line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()))
        .unwrap_or(0)
}

/// Evaluations per second over `pairs`, repeated for at least `budget`.
fn throughput(compiled: &CompiledFlagSet, pairs: &[(&str, &Value)], now: i64, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut evaluations = 0_u64;
    while start.elapsed() < budget || evaluations == 0 {
        for (key, context) in pairs {
            black_box(compiled.evaluate(black_box(key), black_box(context), now));
        }
        evaluations += pairs.len() as u64;
    }
    evaluations as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn run(workload_path: &str, variants_path: &str, seconds: f64) -> Result<Value, String> {
    let text = std::fs::read_to_string(workload_path).map_err(|error| format!("{workload_path}: {error}"))?;
    let workload: Value = serde_json::from_str(&text).map_err(|error| error.to_string())?;
    let set = FlagSet::from_json(&workload["document"]).map_err(|invalid| format!("{invalid:?}"))?;
    let compiled = CompiledFlagSet::compile(&set).map_err(|invalid| format!("{invalid:?}"))?;
    let contexts = workload["contexts"].as_array().cloned().unwrap_or_default();
    let kinds = workload["kinds"].as_object().cloned().unwrap_or_default();
    let now = 1_767_225_600;
    let keys: Vec<&str> = compiled.keys().iter().map(String::as_str).collect();
    let mut variants = String::new();
    for (index, context) in contexts.iter().enumerate() {
        for key in &keys {
            let resolution = compiled.evaluate(key, context, now);
            variants.push_str(&format!("{key}\t{index}\t{}\t{}\n", resolution.variant.unwrap_or("-"), resolution.reason.as_str()));
        }
    }
    std::fs::write(variants_path, variants).map_err(|error| format!("{variants_path}: {error}"))?;
    let budget = Duration::from_secs_f64(seconds);
    let all: Vec<(&str, &Value)> = contexts.iter().flat_map(|context| keys.iter().map(move |key| (*key, context))).collect();
    let overall = throughput(&compiled, &all, now, budget);
    let mut per_kind = serde_json::Map::new();
    for kind in KINDS {
        let pairs: Vec<(&str, &Value)> =
            all.iter().copied().filter(|(key, _)| kinds.get(*key).and_then(Value::as_str) == Some(kind)).collect();
        per_kind.insert(kind.to_owned(), json!(1e9 / throughput(&compiled, &pairs, now, budget / 2)));
    }
    // Latency: every pair once, timed one by one (includes the timer's own cost, reported apart).
    let mut samples: Vec<u64> = Vec::with_capacity(all.len());
    for (key, context) in &all {
        let start = Instant::now();
        black_box(compiled.evaluate(black_box(key), black_box(context), now));
        samples.push(start.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let mut overhead: Vec<u64> = (0..all.len().min(100_000))
        .map(|_| {
            let start = Instant::now();
            black_box(());
            start.elapsed().as_nanos() as u64
        })
        .collect();
    overhead.sort_unstable();
    Ok(json!({
        "implementation": "signalbox-flags",
        "evaluations_per_second": overall,
        "ns_per_evaluation_by_kind": per_kind,
        "p50_ns": percentile(&samples, 0.50),
        "p99_ns": percentile(&samples, 0.99),
        "timer_overhead_p50_ns": percentile(&overhead, 0.50),
        "peak_rss_kib": peak_rss_kib(),
        "flags": keys.len(),
        "contexts": contexts.len(),
    }))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("generate") if args.len() == 5 => {
            let flags = args[2].parse().unwrap_or(100);
            let contexts = args[3].parse().unwrap_or(1000);
            std::fs::write(&args[4], generate(flags, contexts).to_string())
                .map(|()| json!({"written": args[4]}))
                .map_err(|error| error.to_string())
        }
        Some("run") if args.len() == 5 => run(&args[2], &args[3], args[4].parse().unwrap_or(2.0)),
        _ => {
            Err("usage: flags_bench generate <flags> <contexts> <workload.json> | run <workload.json> <variants.tsv> <seconds>".to_owned())
        }
    };
    match result {
        Ok(summary) => println!("{summary}"),
        Err(message) => {
            eprintln!("flags_bench: {message}");
            std::process::exit(2);
        }
    }
}
