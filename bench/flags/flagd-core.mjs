// Runs the bench/flags workload in @openfeature/flagd-core (flagd's JavaScript evaluator) and
// prints the same summary as `flags_bench run`. Usage: node flagd-core.mjs <workload.json> <variants.tsv> <seconds>
//
// What is timed, as on the Rust side: one `core.resolve(type, key, default, context)` call on a
// context parsed from the workload beforehand (value, variant, reason, type check). The caller's
// type and default for each pair are looked up before the timed loops, as the Rust side does.
import { readFileSync, writeFileSync } from 'node:fs';
import { FlagdCore } from '@openfeature/flagd-core';

const [workloadPath, variantsPath, secondsText] = process.argv.slice(2);
const seconds = Number(secondsText ?? '2');
const workload = JSON.parse(readFileSync(workloadPath, 'utf8'));
const silent = { error() {}, warn() {}, info() {}, debug() {} };
const core = new FlagdCore(undefined, silent);
core.setConfigurations(JSON.stringify(workload.document));

const KINDS = ['static', 'in', 'fractional', 'semver_prefix'];
const keys = Object.keys(workload.document.flags).sort();
const typeOf = (key) => {
  const first = Object.values(workload.document.flags[key].variants)[0];
  return typeof first === 'boolean' ? 'boolean' : typeof first === 'string' ? 'string' : typeof first === 'number' ? 'number' : 'object';
};
const defaults = { boolean: false, string: '', number: 0, object: {} };
const types = new Map(keys.map((key) => [key, typeOf(key)]));
// [key, type, default, context]: everything the caller knows before it asks.
const pair = (key, context) => [key, types.get(key), defaults[types.get(key)], context];

const lines = [];
workload.contexts.forEach((context, index) => {
  for (const key of keys) {
    const result = core.resolve(types.get(key), key, defaults[types.get(key)], context, silent);
    const value = result.variant === undefined ? '-' : JSON.stringify(result.value);
    lines.push(`${key}\t${index}\t${value}\t${result.variant ?? '-'}\t${result.reason}`);
  }
});
writeFileSync(variantsPath, lines.join('\n') + '\n');

const all = [];
for (const context of workload.contexts) for (const key of keys) all.push(pair(key, context));

let sink = 0;
// Evaluations per wall-clock second, and CPU time per evaluation (the whole process: V8's compiler
// and garbage-collector threads work for the evaluations too).
function throughput(pairs, budgetSeconds) {
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(budgetSeconds * 1e9));
  let evaluations = 0;
  while (process.hrtime.bigint() - start < budget || evaluations === 0) {
    for (const [key, type, fallback, context] of pairs) sink += core.resolve(type, key, fallback, context, silent).variant ? 1 : 0;
    evaluations += pairs.length;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  return { perSecond: evaluations / elapsed, cpuNsPerEvaluation: ((cpu.user + cpu.system) * 1e3) / evaluations };
}

const overall = throughput(all, seconds).perSecond;
const perKind = {};
const cpuPerKind = {};
for (const kind of KINDS) {
  const pairs = all.filter(([key]) => workload.kinds[key] === kind);
  const measured = throughput(pairs, seconds / 2);
  perKind[kind] = 1e9 / measured.perSecond;
  cpuPerKind[kind] = measured.cpuNsPerEvaluation;
}
const samples = new Float64Array(all.length);
all.forEach(([key, type, fallback, context], index) => {
  const start = process.hrtime.bigint();
  sink += core.resolve(type, key, fallback, context, silent).variant ? 1 : 0;
  samples[index] = Number(process.hrtime.bigint() - start);
});
samples.sort();
const overhead = new Float64Array(Math.min(all.length, 100000));
for (let index = 0; index < overhead.length; index++) {
  const start = process.hrtime.bigint();
  overhead[index] = Number(process.hrtime.bigint() - start);
}
overhead.sort();
const percentile = (sorted, fraction) => sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * fraction))];
console.log(JSON.stringify({
  implementation: '@openfeature/flagd-core',
  evaluations_per_second: overall,
  ns_per_evaluation_by_kind: perKind,
  cpu_ns_per_evaluation_by_kind: cpuPerKind,
  p50_ns: percentile(samples, 0.5),
  p99_ns: percentile(samples, 0.99),
  timer_overhead_p50_ns: percentile(overhead, 0.5),
  peak_rss_kib: process.resourceUsage().maxRSS,
  flags: keys.length,
  contexts: workload.contexts.length,
  sink: sink > 0,
}));
