//! What one OFREP bulk request costs in the engine, before and after the server adopted the
//! prepared path: parsing the request body, the ETag, evaluating every flag and writing the
//! response body (everything the bulk handler does except HTTP, the SDK key and the counters).
//!
//! `cargo run --release -p signalbox-flags --example ofrep_bulk_body -- <flagd.json> [seconds]`
//! (data sets from `bench/ofrep-http/gen.py N DIR`). Prints, per variant, ns and heap allocations
//! per request, and fails if the two bodies differ.
//!
//! - `per_flag_owned`: the old handler: `CompiledFlagSet::evaluate` per key, an owned
//!   `ofrep::bulk_item` per flag, then `serde_json::to_vec(&BulkEvaluationSuccess { .. })` with the
//!   set metadata cloned.
//! - `prepared_ref`: the new handler: one `prepare`, `evaluate_all`, each `bulk_item_ref` written
//!   into one buffer, then the metadata and `eventStreams` written borrowed.

use serde_json::{json, Value};
use signalbox_flags::ofrep::{self, BulkEvaluationSuccess, EvaluationRequest, EventStream, EventStreamEndpoint, RequestPolicy};
use signalbox_flags::{CompiledFlagSet, FlagSet};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const NOW: i64 = 1_795_000_000;
const COUNTRIES: [&str; 10] = ["NO", "SE", "DK", "FI", "DE", "FR", "NL", "BE", "ES", "IT"];

fn streams() -> Vec<EventStream> {
    vec![EventStream {
        kind: "sse".into(),
        url: None,
        endpoint: Some(EventStreamEndpoint { origin: None, request_uri: "/ofrep/v1/events".into() }),
        inactivity_delay_sec: Some(120),
    }]
}

fn per_flag_owned(compiled: &CompiledFlagSet, body: &[u8]) -> (String, Vec<u8>) {
    let Ok(context) = EvaluationRequest::parse(body, RequestPolicy::default()) else { return (String::new(), Vec::new()) };
    let etag = ofrep::bulk_etag("set:1", &context);
    let flags = compiled.keys().iter().map(|key| ofrep::bulk_item(key, &compiled.evaluate(key, &context, NOW))).collect();
    let metadata = compiled.metadata();
    let success =
        BulkEvaluationSuccess { flags, metadata: (!metadata.is_empty()).then(|| metadata.clone()), event_streams: Some(streams()) };
    (etag, serde_json::to_vec(&success).unwrap_or_default())
}

fn prepared_ref(compiled: &CompiledFlagSet, body: &[u8], streams: &[EventStream]) -> (String, Vec<u8>) {
    let Ok(context) = EvaluationRequest::parse(body, RequestPolicy::default()) else { return (String::new(), Vec::new()) };
    let etag = ofrep::bulk_etag("set:1", &context);
    let mut out = Vec::with_capacity(64 + 160 * compiled.keys().len());
    out.extend_from_slice(b"{\"flags\":[");
    let mut first = true;
    compiled.prepare(&context).evaluate_all(NOW, |key, resolution| {
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = serde_json::to_writer(&mut out, &ofrep::bulk_item_ref(key, &resolution));
    });
    out.push(b']');
    let metadata = compiled.metadata();
    if !metadata.is_empty() {
        out.extend_from_slice(b",\"metadata\":");
        let _ = serde_json::to_writer(&mut out, metadata);
    }
    out.extend_from_slice(b",\"eventStreams\":");
    let _ = serde_json::to_writer(&mut out, streams);
    out.push(b'}');
    (etag, out)
}

/// This thread's CPU time in ns (`/proc/thread-self/schedstat`; 0 where there is none). On a
/// shared machine the wall-clock time includes time other processes held the core.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: ofrep_bulk_body <flagd.json> [seconds]");
        std::process::exit(2);
    };
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let document: Value =
        match std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
            Ok(document) => document,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(2);
            }
        };
    let compiled = match FlagSet::from_json(&document)
        .map_err(|e| format!("{e:?}"))
        .and_then(|set| CompiledFlagSet::compile(&set).map_err(|e| format!("{e:?}")))
    {
        Ok(compiled) => compiled,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    // Request bodies as the HTTP benchmark's load.lua sends them (random key, random country).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let bodies: Vec<Vec<u8>> = (0..1000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let body = json!({"context": {"targetingKey": format!("user-{}", seed % 1_000_000_000), "country": COUNTRIES[(seed >> 40) as usize % 10]}});
            serde_json::to_vec(&body).unwrap_or_default()
        })
        .collect();
    let streams = streams();
    for body in &bodies {
        if per_flag_owned(&compiled, body) != prepared_ref(&compiled, body, &streams) {
            eprintln!("bodies differ for {}", String::from_utf8_lossy(body));
            std::process::exit(1);
        }
    }
    let budget = Duration::from_secs_f64(seconds);
    let mut report = serde_json::Map::new();
    // The fixed part: parsing the body alone, and with the ETag.
    for name in ["parse", "parse_etag", "per_flag_owned", "prepared_ref"] {
        let run = |body: &[u8]| match name {
            "parse" => (String::new(), EvaluationRequest::parse(body, RequestPolicy::default()).map(|_| Vec::new()).unwrap_or_default()),
            "parse_etag" => match EvaluationRequest::parse(body, RequestPolicy::default()) {
                Ok(context) => (ofrep::bulk_etag("set:1", &context), Vec::new()),
                Err(_) => (String::new(), Vec::new()),
            },
            "per_flag_owned" => per_flag_owned(&compiled, body),
            _ => prepared_ref(&compiled, body, &streams),
        };
        let region = Region::new(GLOBAL);
        for body in &bodies {
            black_box(run(body));
        }
        let allocations = region.change().allocations as f64 / bodies.len() as f64;
        let start = Instant::now();
        let cpu_start = cpu_ns();
        let mut requests = 0u64;
        while start.elapsed() < budget {
            for body in &bodies {
                black_box(run(body));
            }
            requests += bodies.len() as u64;
        }
        let ns = start.elapsed().as_nanos() as f64 / requests as f64;
        let cpu = cpu_ns().saturating_sub(cpu_start) as f64 / requests as f64;
        report.insert(
            name.into(),
            json!({"ns_per_request": ns.round(), "cpu_ns_per_request": cpu.round(), "allocations_per_request": allocations, "requests": requests}),
        );
    }
    report.insert("flags".into(), json!(compiled.keys().len()));
    report.insert("body_bytes".into(), json!(prepared_ref(&compiled, &bodies[0], &streams).1.len()));
    println!("{}", serde_json::to_string_pretty(&Value::Object(report)).unwrap_or_default());
}
