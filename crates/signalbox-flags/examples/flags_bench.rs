//! Benchmark driver for bench/flags/run.sh: generates the shared workload and times
//! signalbox-flags on it. The Node side (bench/flags/flagd-core.mjs) runs the same workload.
//!
//! ```text
//! flags_bench generate <flags> <contexts> <workload.json>
//! flags_bench run <workload.json> <variants.tsv> <seconds-per-measurement>
//! flags_bench time <workload.json> <kind> <seconds> [prepared]   one kind only, for profilers
//! ```
//!
//! What is timed, on both sides: one call that evaluates a flag key against a context that was
//! parsed from the workload beforehand (here a `serde_json::Value`, in Node a JavaScript object),
//! giving value, variant and reason, with the value's type checked against the caller's type as
//! flagd-core's `resolve` does (`evaluate_bool` / `evaluate_string` here). Rules are compiled once
//! per flag set, outside the timed region, on both sides.
//!
//! A second set of figures times the prepared-context path (`CompiledFlagSet::prepare`, then
//! `PreparedContext::evaluate_bool` / `evaluate_string`): the preparation is inside the timed
//! region, once per context for the flags evaluated with it in that loop (25 per kind, 100 for all
//! flags), as OFREP bulk evaluation prepares once per request for every flag of the set.

use serde_json::{json, Value};
use signalbox_flags::{CompiledFlagSet, FlagSet, PreparedContext, VariantType};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Counts every heap allocation the process makes, so each case reports allocations per evaluation.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

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

/// One evaluation as the benchmark times it: flag key, the type the caller asks for, context.
#[derive(Clone, Copy)]
struct Pair<'w> {
    key: &'w str,
    expected: VariantType,
    context: &'w Value,
}

/// Evaluates like flagd-core's `resolve(type, key, default, context)`: value, variant and reason,
/// `TYPE_MISMATCH` if the value is not of the caller's type. Returns whether a variant was chosen.
#[inline(always)]
fn evaluate(compiled: &CompiledFlagSet, pair: Pair<'_>, now: i64) -> bool {
    match pair.expected {
        VariantType::Boolean => {
            let resolution = compiled.evaluate_bool(pair.key, pair.context, now);
            black_box(&resolution).variant.is_some()
        }
        VariantType::String => {
            let resolution = compiled.evaluate_string(pair.key, pair.context, now);
            black_box(&resolution).variant.is_some()
        }
        VariantType::Number => {
            let resolution = compiled.evaluate_float(pair.key, pair.context, now);
            black_box(&resolution).variant.is_some()
        }
        VariantType::Object => {
            let resolution = compiled.evaluate_object(pair.key, pair.context, now);
            black_box(&resolution).variant.is_some()
        }
    }
}

/// [`evaluate`] on a prepared context.
#[inline(always)]
fn evaluate_prepared(prepared: &PreparedContext<'_, '_>, pair: Pair<'_>, now: i64) -> bool {
    match pair.expected {
        VariantType::Boolean => {
            let resolution = prepared.evaluate_bool(pair.key, now);
            black_box(&resolution).variant.is_some()
        }
        VariantType::String => {
            let resolution = prepared.evaluate_string(pair.key, now);
            black_box(&resolution).variant.is_some()
        }
        VariantType::Number => {
            let resolution = prepared.evaluate_float(pair.key, now);
            black_box(&resolution).variant.is_some()
        }
        VariantType::Object => {
            let resolution = prepared.evaluate_object(pair.key, now);
            black_box(&resolution).variant.is_some()
        }
    }
}

/// Consecutive pairs that share a context (the workload is context-major).
fn by_context<'w>(pairs: &[Pair<'w>]) -> Vec<(&'w Value, Vec<Pair<'w>>)> {
    let mut groups: Vec<(&'w Value, Vec<Pair<'w>>)> = Vec::new();
    for pair in pairs {
        match groups.last_mut() {
            Some((context, group)) if std::ptr::eq(*context, pair.context) => group.push(*pair),
            _ => groups.push((pair.context, vec![*pair])),
        }
    }
    groups
}

/// CPU time this process has used, in seconds (`/proc/self/stat` utime + stime, 10 ms ticks).
/// On a shared machine wall-clock time includes the time other processes held the cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name.split_whitespace().skip(11).take(2).filter_map(|field| field.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

struct Throughput {
    per_second: f64,
    cpu_ns_per_evaluation: f64,
}

/// Evaluations per wall-clock second over `pairs`, repeated for at least `budget`, and CPU time per evaluation.
fn throughput(compiled: &CompiledFlagSet, pairs: &[Pair<'_>], now: i64, budget: Duration) -> Throughput {
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let mut evaluations = 0_u64;
    let mut sink = 0_u64;
    while start.elapsed() < budget || evaluations == 0 {
        for pair in pairs {
            sink += u64::from(evaluate(compiled, *pair, now));
        }
        evaluations += pairs.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    black_box(sink);
    Throughput { per_second: evaluations as f64 / elapsed, cpu_ns_per_evaluation: cpu * 1e9 / evaluations as f64 }
}

/// [`throughput`] on the prepared path: each context is prepared inside the timed loop, once for
/// the pairs of its group.
fn throughput_prepared(compiled: &CompiledFlagSet, groups: &[(&Value, Vec<Pair<'_>>)], now: i64, budget: Duration) -> Throughput {
    let count: u64 = groups.iter().map(|(_, pairs)| pairs.len() as u64).sum();
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let mut evaluations = 0_u64;
    let mut sink = 0_u64;
    while start.elapsed() < budget || evaluations == 0 {
        for (context, pairs) in groups {
            let prepared = compiled.prepare(black_box(context));
            for pair in pairs {
                sink += u64::from(evaluate_prepared(&prepared, *pair, now));
            }
        }
        evaluations += count;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    black_box(sink);
    Throughput { per_second: evaluations as f64 / elapsed, cpu_ns_per_evaluation: cpu * 1e9 / evaluations as f64 }
}

/// Heap allocations per evaluation on the prepared path, preparation included.
fn allocations_per_evaluation_prepared(compiled: &CompiledFlagSet, groups: &[(&Value, Vec<Pair<'_>>)], now: i64) -> f64 {
    let count: usize = groups.iter().map(|(_, pairs)| pairs.len()).sum();
    let region = Region::new(GLOBAL);
    let mut sink = 0_u64;
    for (context, pairs) in groups {
        let prepared = compiled.prepare(context);
        for pair in pairs {
            sink += u64::from(evaluate_prepared(&prepared, *pair, now));
        }
    }
    let change = region.change();
    black_box(sink);
    change.allocations as f64 / count.max(1) as f64
}

/// Heap allocations per evaluation over one pass of `pairs` (counted, not timed).
fn allocations_per_evaluation(compiled: &CompiledFlagSet, pairs: &[Pair<'_>], now: i64) -> f64 {
    let region = Region::new(GLOBAL);
    let mut sink = 0_u64;
    for pair in pairs {
        sink += u64::from(evaluate(compiled, *pair, now));
    }
    let change = region.change();
    black_box(sink);
    change.allocations as f64 / pairs.len().max(1) as f64
}

/// Builds the `flags` array of an OFREP bulk body for every context: `owned` as the server does
/// today (`ofrep::bulk_item` per flag, then serde), otherwise borrowed items written into one
/// reused buffer (`PreparedContext::evaluate_all` + `ofrep::bulk_item_ref`). Returns the bytes written.
fn bulk_bodies(compiled: &CompiledFlagSet, contexts: &[Value], owned: bool, buffer: &mut Vec<u8>) -> usize {
    let mut written = 0;
    for context in contexts {
        buffer.clear();
        if owned {
            let items: Vec<signalbox_flags::ofrep::BulkItem> =
                compiled.keys().iter().map(|key| signalbox_flags::ofrep::bulk_item(key, &compiled.evaluate(key, context, NOW))).collect();
            serde_json::to_writer(&mut *buffer, &items).unwrap_or_default();
        } else {
            buffer.push(b'[');
            compiled.prepare(context).evaluate_all(NOW, |key, resolution| {
                if buffer.len() > 1 {
                    buffer.push(b',');
                }
                serde_json::to_writer(&mut *buffer, &signalbox_flags::ofrep::bulk_item_ref(key, &resolution)).unwrap_or_default();
            });
            buffer.push(b']');
        }
        written += buffer.len();
    }
    written
}

/// Heap allocations and ns per flag of [`bulk_bodies`], and whether both forms write the same bytes.
fn bulk_body_costs(compiled: &CompiledFlagSet, contexts: &[Value], budget: Duration) -> Value {
    let flags = (compiled.keys().len() * contexts.len()).max(1) as f64;
    let mut same = true;
    for context in contexts {
        let (mut owned, mut borrowed) = (Vec::new(), Vec::new());
        bulk_bodies(compiled, std::slice::from_ref(context), true, &mut owned);
        bulk_bodies(compiled, std::slice::from_ref(context), false, &mut borrowed);
        same &= owned == borrowed;
    }
    let mut result = serde_json::Map::new();
    for (name, owned) in [("owned_bulk_item", true), ("bulk_item_ref", false)] {
        let mut buffer = Vec::new();
        bulk_bodies(compiled, contexts, owned, &mut buffer);
        let region = Region::new(GLOBAL);
        black_box(bulk_bodies(compiled, contexts, owned, &mut buffer));
        let allocations = region.change().allocations as f64 / flags;
        let start = Instant::now();
        let mut passes = 0_u64;
        while start.elapsed() < budget || passes == 0 {
            black_box(bulk_bodies(compiled, contexts, owned, &mut buffer));
            passes += 1;
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / (passes as f64 * flags);
        result.insert(name.to_owned(), json!({"allocations_per_flag": allocations, "ns_per_flag": ns}));
    }
    result.insert("identical_bytes".to_owned(), json!(same));
    Value::Object(result)
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct Workload {
    compiled: CompiledFlagSet,
    contexts: Vec<Value>,
    kinds: serde_json::Map<String, Value>,
}

fn load(workload_path: &str) -> Result<Workload, String> {
    let text = std::fs::read_to_string(workload_path).map_err(|error| format!("{workload_path}: {error}"))?;
    let workload: Value = serde_json::from_str(&text).map_err(|error| error.to_string())?;
    let set = FlagSet::from_json(&workload["document"]).map_err(|invalid| format!("{invalid:?}"))?;
    let compiled = CompiledFlagSet::compile(&set).map_err(|invalid| format!("{invalid:?}"))?;
    let contexts = workload["contexts"].as_array().cloned().unwrap_or_default();
    let kinds = workload["kinds"].as_object().cloned().unwrap_or_default();
    Ok(Workload { compiled, contexts, kinds })
}

/// Every (flag, context) pair, context-major as the Node side builds them.
fn pairs(workload: &Workload) -> Vec<Pair<'_>> {
    let keys = workload.compiled.keys();
    workload
        .contexts
        .iter()
        .flat_map(|context| {
            keys.iter().map(move |key| Pair { key, expected: workload.compiled.variant_type(key).unwrap_or(VariantType::Object), context })
        })
        .collect()
}

fn of_kind<'w>(workload: &Workload, all: &[Pair<'w>], kind: &str) -> Vec<Pair<'w>> {
    all.iter().copied().filter(|pair| workload.kinds.get(pair.key).and_then(Value::as_str) == Some(kind)).collect()
}

const NOW: i64 = 1_767_225_600;

fn run(workload_path: &str, variants_path: &str, seconds: f64) -> Result<Value, String> {
    let workload = load(workload_path)?;
    let compiled = &workload.compiled;
    let mut variants = String::new();
    let mut prepared_mismatches = 0_u64;
    for (index, context) in workload.contexts.iter().enumerate() {
        let prepared = compiled.prepare(context);
        for key in compiled.keys() {
            let resolution = compiled.evaluate(key, context, NOW);
            if prepared.evaluate(key, NOW) != resolution {
                prepared_mismatches += 1;
            }
            let value = resolution.value.map_or_else(|| "-".to_owned(), Value::to_string);
            variants.push_str(&format!("{key}\t{index}\t{value}\t{}\t{}\n", resolution.variant.unwrap_or("-"), resolution.reason.as_str()));
        }
    }
    std::fs::write(variants_path, variants).map_err(|error| format!("{variants_path}: {error}"))?;
    let budget = Duration::from_secs_f64(seconds);
    let all = pairs(&workload);
    let overall = throughput(compiled, &all, NOW, budget);
    let mut per_kind = serde_json::Map::new();
    let mut cpu_per_kind = serde_json::Map::new();
    let mut allocations = serde_json::Map::new();
    let mut prepared_per_kind = serde_json::Map::new();
    let mut prepared_cpu_per_kind = serde_json::Map::new();
    let mut prepared_allocations = serde_json::Map::new();
    let prepared_overall = throughput_prepared(compiled, &by_context(&all), NOW, budget);
    for kind in KINDS {
        let pairs = of_kind(&workload, &all, kind);
        let measured = throughput(compiled, &pairs, NOW, budget / 2);
        per_kind.insert(kind.to_owned(), json!(1e9 / measured.per_second));
        cpu_per_kind.insert(kind.to_owned(), json!(measured.cpu_ns_per_evaluation));
        allocations.insert(kind.to_owned(), json!(allocations_per_evaluation(compiled, &pairs, NOW)));
        let groups = by_context(&pairs);
        let measured = throughput_prepared(compiled, &groups, NOW, budget / 2);
        prepared_per_kind.insert(kind.to_owned(), json!(1e9 / measured.per_second));
        prepared_cpu_per_kind.insert(kind.to_owned(), json!(measured.cpu_ns_per_evaluation));
        prepared_allocations.insert(kind.to_owned(), json!(allocations_per_evaluation_prepared(compiled, &groups, NOW)));
    }
    let bulk_body = bulk_body_costs(compiled, &workload.contexts, budget / 2);
    // Latency: every pair once, timed one by one (includes the timer's own cost, reported apart).
    let mut samples: Vec<u64> = Vec::with_capacity(all.len());
    for pair in &all {
        let start = Instant::now();
        black_box(evaluate(compiled, *pair, NOW));
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
        "evaluations_per_second": overall.per_second,
        "ns_per_evaluation_by_kind": per_kind,
        "cpu_ns_per_evaluation_by_kind": cpu_per_kind,
        "allocations_per_evaluation_by_kind": allocations,
        "prepared": {
            "evaluations_per_second": prepared_overall.per_second,
            "ns_per_evaluation_by_kind": prepared_per_kind,
            "cpu_ns_per_evaluation_by_kind": prepared_cpu_per_kind,
            "allocations_per_evaluation_by_kind": prepared_allocations,
            "mismatches_with_unprepared": prepared_mismatches,
        },
        "bulk_body": bulk_body,
        "p50_ns": percentile(&samples, 0.50),
        "p99_ns": percentile(&samples, 0.99),
        "timer_overhead_p50_ns": percentile(&overhead, 0.50),
        "peak_rss_kib": peak_rss_kib(),
        "flags": compiled.keys().len(),
        "contexts": workload.contexts.len(),
    }))
}

/// One kind only, for `perf record`: ns and allocations per evaluation.
fn time_kind(workload_path: &str, kind: &str, seconds: f64, prepared: bool) -> Result<Value, String> {
    let workload = load(workload_path)?;
    let all = pairs(&workload);
    let pairs = of_kind(&workload, &all, kind);
    if pairs.is_empty() {
        return Err(format!("no flags of kind {kind}; kinds are {}", KINDS.join(", ")));
    }
    let budget = Duration::from_secs_f64(seconds);
    let measured = if prepared {
        throughput_prepared(&workload.compiled, &by_context(&pairs), NOW, budget)
    } else {
        throughput(&workload.compiled, &pairs, NOW, budget)
    };
    Ok(json!({
        "kind": kind,
        "prepared": prepared,
        "ns_per_evaluation": 1e9 / measured.per_second,
        "cpu_ns_per_evaluation": measured.cpu_ns_per_evaluation,
        "allocations_per_evaluation": allocations_per_evaluation(&workload.compiled, &pairs, NOW),
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
        Some("time") if args.len() == 5 || args.len() == 6 => {
            time_kind(&args[2], &args[3], args[4].parse().unwrap_or(2.0), args.get(5).is_some_and(|mode| mode == "prepared"))
        }
        _ => {
            Err("usage: flags_bench generate <flags> <contexts> <workload.json> | run <workload.json> <variants.tsv> <seconds> | time <workload.json> <kind> <seconds> [prepared]".to_owned())
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
