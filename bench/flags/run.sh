#!/usr/bin/env bash
# Flag-evaluation benchmark: signalbox-flags (Rust, release) against @openfeature/flagd-core
# (flagd's JavaScript evaluator, Node.js) on the same generated workload, in the same run.
#
#   bench/flags/run.sh [FLAGS] [CONTEXTS] [SECONDS]     defaults: 100 flags, 1000 contexts, 2 s per measurement
#   ROUNDS=N (default 5): both sides run N times, alternating; the summary gives every round and medians.
#
# Prints evaluations/s, ns and heap allocations per evaluation by rule kind, p50/p99 per evaluation
# (each timed individually, timer cost shown apart), peak RSS, the Rust/Node ratios, and any value,
# variant or reason mismatch between the two on the workload (exit status 1 if there is one).
# Rust is timed twice: per call on a serde_json context, and on a prepared context
# (`CompiledFlagSet::prepare`, counted once per context inside the timed loop); the prepared
# resolutions must equal the unprepared ones exactly (exit status 1 otherwise).
# Needs cargo, node and npm.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
flags="${1:-100}"
contexts="${2:-1000}"
seconds="${3:-2}"
rounds="${ROUNDS:-5}"
out="$here/out"
mkdir -p "$out"

if [ ! -d "$here/node_modules/@openfeature/flagd-core" ]; then
  echo "installing @openfeature/flagd-core into bench/flags/node_modules ..." >&2
  (cd "$here" && npm install --no-audit --no-fund --silent)
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --quiet --release -p signalbox-flags --example flags_bench)
bin="$CARGO_TARGET_DIR/release/examples/flags_bench"

"$bin" generate "$flags" "$contexts" "$out/workload.json" >/dev/null
# Both sides run ROUNDS times, alternating, so a slow spell of the machine or of V8's JIT shows up
# as spread between rounds instead of deciding a ratio; the summary reports each round and medians.
rm -f "$out"/summary-rust-*.json "$out"/summary-node-*.json
for round in $(seq 1 "$rounds"); do
  "$bin" run "$out/workload.json" "$out/variants-rust.tsv" "$seconds" >"$out/summary-rust-$round.json"
  (cd "$here" && node flagd-core.mjs "$out/workload.json" "$out/variants-node.tsv" "$seconds") >"$out/summary-node-$round.json"
done
cp "$out/summary-rust-$rounds.json" "$out/summary-rust.json"
cp "$out/summary-node-$rounds.json" "$out/summary-node.json"

node - "$out" "$rounds" <<'JS'
const fs = require('node:fs');
const out = process.argv[2];
const rounds = Number(process.argv[3]);
const rust = JSON.parse(fs.readFileSync(`${out}/summary-rust.json`, 'utf8'));
const node = JSON.parse(fs.readFileSync(`${out}/summary-node.json`, 'utf8'));
const fmt = (n, digits = 0) => Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
console.log(`workload: ${rust.flags} flags x ${rust.contexts} contexts (static, in, fractional 4x25%, sem_ver+starts_with+ends_with+fractional)`);
console.log('');
console.log('| metric | signalbox-flags | flagd-core (Node) | ratio |');
console.log('|---|---:|---:|---:|');
console.log(`| evaluations/s (all flags) | ${fmt(rust.evaluations_per_second)} | ${fmt(node.evaluations_per_second)} | ${fmt(rust.evaluations_per_second / node.evaluations_per_second, 1)}x |`);
for (const kind of Object.keys(rust.ns_per_evaluation_by_kind)) {
  const r = rust.ns_per_evaluation_by_kind[kind], n = node.ns_per_evaluation_by_kind[kind];
  console.log(`| ns/evaluation, ${kind} | ${fmt(r, 1)} | ${fmt(n, 1)} | ${fmt(n / r, 1)}x |`);
}
for (const kind of Object.keys(rust.cpu_ns_per_evaluation_by_kind ?? {})) {
  const r = rust.cpu_ns_per_evaluation_by_kind[kind], n = node.cpu_ns_per_evaluation_by_kind[kind];
  console.log(`| CPU ns/evaluation, ${kind} | ${fmt(r, 1)} | ${fmt(n, 1)} | ${fmt(n / r, 1)}x |`);
}
for (const kind of Object.keys(rust.allocations_per_evaluation_by_kind ?? {})) {
  console.log(`| heap allocations/evaluation, ${kind} | ${fmt(rust.allocations_per_evaluation_by_kind[kind], 2)} | not counted | |`);
}
// The prepared-context path: CompiledFlagSet::prepare once per context, inside the timed loop, for
// the flags evaluated with that context in the loop (25 per kind, every flag for "all flags").
const prepared = rust.prepared;
if (prepared) {
  console.log(`| prepared context: evaluations/s (all flags) | ${fmt(prepared.evaluations_per_second)} | ${fmt(node.evaluations_per_second)} | ${fmt(prepared.evaluations_per_second / node.evaluations_per_second, 1)}x |`);
  for (const kind of Object.keys(prepared.ns_per_evaluation_by_kind)) {
    const r = prepared.ns_per_evaluation_by_kind[kind], n = node.ns_per_evaluation_by_kind[kind];
    console.log(`| prepared context: ns/evaluation, ${kind} | ${fmt(r, 1)} | ${fmt(n, 1)} | ${fmt(n / r, 1)}x |`);
  }
  for (const kind of Object.keys(prepared.cpu_ns_per_evaluation_by_kind)) {
    const r = prepared.cpu_ns_per_evaluation_by_kind[kind], n = node.cpu_ns_per_evaluation_by_kind[kind];
    console.log(`| prepared context: CPU ns/evaluation, ${kind} | ${fmt(r, 1)} | ${fmt(n, 1)} | ${fmt(n / r, 1)}x |`);
  }
  for (const kind of Object.keys(prepared.allocations_per_evaluation_by_kind)) {
    console.log(`| prepared context: heap allocations/evaluation, ${kind} | ${fmt(prepared.allocations_per_evaluation_by_kind[kind], 2)} | not counted | |`);
  }
}
console.log(`| p50 per evaluation (ns, timed singly) | ${fmt(rust.p50_ns)} | ${fmt(node.p50_ns)} | ${fmt(node.p50_ns / Math.max(rust.p50_ns, 1), 1)}x |`);
console.log(`| p99 per evaluation (ns, timed singly) | ${fmt(rust.p99_ns)} | ${fmt(node.p99_ns)} | ${fmt(node.p99_ns / Math.max(rust.p99_ns, 1), 1)}x |`);
console.log(`| timer overhead p50 (ns) | ${fmt(rust.timer_overhead_p50_ns)} | ${fmt(node.timer_overhead_p50_ns)} | |`);
console.log(`| peak RSS (MiB) | ${fmt(rust.peak_rss_kib / 1024, 1)} | ${fmt(node.peak_rss_kib / 1024, 1)} | ${fmt(node.peak_rss_kib / rust.peak_rss_kib, 1)}x |`);
const a = fs.readFileSync(`${out}/variants-rust.tsv`, 'utf8').trim().split('\n');
const b = fs.readFileSync(`${out}/variants-node.tsv`, 'utf8').trim().split('\n');
let mismatches = 0;
for (let i = 0; i < Math.max(a.length, b.length); i++) {
  if (a[i] !== b[i]) {
    if (mismatches < 20) console.log(`MISMATCH rust=[${a[i]}] node=[${b[i]}]`);
    mismatches++;
  }
}
const bulk = rust.bulk_body;
if (bulk) {
  console.log('');
  console.log('OFREP bulk body, per flag (Rust only; the flags array for each context, serialized):');
  console.log(`- ofrep::bulk_item + serde (the server today): ${fmt(bulk.owned_bulk_item.ns_per_flag, 1)} ns, ${fmt(bulk.owned_bulk_item.allocations_per_flag, 2)} heap allocations`);
  console.log(`- prepare + evaluate_all + ofrep::bulk_item_ref into a reused buffer: ${fmt(bulk.bulk_item_ref.ns_per_flag, 1)} ns, ${fmt(bulk.bulk_item_ref.allocations_per_flag, 2)} heap allocations`);
  console.log(`- identical bytes: ${bulk.identical_bytes}`);
}
// Every round, per kind: ns per evaluation on each side and the ratio flagd-core / Signalbox, then
// the medians (ratio of the medians; each side's median over the rounds).
const median = (values) => { const sorted = [...values].sort((x, y) => x - y); const mid = sorted.length >> 1; return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2; };
const rustRounds = [], nodeRounds = [];
for (let r = 1; r <= rounds; r++) {
  rustRounds.push(JSON.parse(fs.readFileSync(`${out}/summary-rust-${r}.json`, 'utf8')));
  nodeRounds.push(JSON.parse(fs.readFileSync(`${out}/summary-node-${r}.json`, 'utf8')));
}
console.log('');
console.log(`${rounds} rounds, alternating (ns per evaluation; ratio = flagd-core / Signalbox of the same round):`);
console.log('');
console.log('| case | Signalbox per call ns (rounds) | Signalbox prepared ns (rounds) | flagd-core ns (rounds) | median per call | median prepared | median flagd-core | ratio per call: rounds | ratio prepared: rounds | **ratio of medians: per call / prepared** |');
console.log('|---|---|---|---|---:|---:|---:|---|---|---:|');
for (const kind of Object.keys(rust.ns_per_evaluation_by_kind)) {
  const r = rustRounds.map((s) => s.ns_per_evaluation_by_kind[kind]);
  const p = rustRounds.map((s) => s.prepared.ns_per_evaluation_by_kind[kind]);
  const n = nodeRounds.map((s) => s.ns_per_evaluation_by_kind[kind]);
  const list = (values) => values.map((v) => fmt(v, 1)).join(' / ');
  const ratios = (ours) => ours.map((v, i) => `${fmt(n[i] / v, 1)}x`).join(' / ');
  console.log(`| ${kind} | ${list(r)} | ${list(p)} | ${list(n)} | ${fmt(median(r), 1)} | ${fmt(median(p), 1)} | ${fmt(median(n), 1)} | ${ratios(r)} | ${ratios(p)} | **${fmt(median(n) / median(r), 1)}x / ${fmt(median(n) / median(p), 1)}x** |`);
}
const preparedMismatches = (prepared ? prepared.mismatches_with_unprepared : 0) + (bulk && !bulk.identical_bytes ? 1 : 0);
console.log('');
console.log(`value/variant/reason agreement: ${a.length - mismatches}/${a.length} evaluations identical, ${mismatches} mismatches`);
console.log(`prepared-context resolutions differing from unprepared ones (whole resolution compared): ${preparedMismatches}`);
process.exitCode = mismatches === 0 && preparedMismatches === 0 ? 0 : 1;
JS
