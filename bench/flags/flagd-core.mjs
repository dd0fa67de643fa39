// Runs the bench/flags workload in @openfeature/flagd-core (flagd's JavaScript evaluator) and
// prints the same summary as `flags_bench run`. Usage: node flagd-core.mjs <workload.json> <variants.tsv> <seconds>
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
const evaluate = (key, context) => core.resolve(types.get(key), key, defaults[types.get(key)], context, silent);

const lines = [];
workload.contexts.forEach((context, index) => {
  for (const key of keys) {
    const result = evaluate(key, context);
    lines.push(`${key}\t${index}\t${result.variant ?? '-'}\t${result.reason}`);
  }
});
writeFileSync(variantsPath, lines.join('\n') + '\n');

const all = [];
for (const context of workload.contexts) for (const key of keys) all.push([key, context]);

let sink = 0;
function throughput(pairs, budgetSeconds) {
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(budgetSeconds * 1e9));
  let evaluations = 0;
  while (process.hrtime.bigint() - start < budget || evaluations === 0) {
    for (const [key, context] of pairs) sink += evaluate(key, context).variant ? 1 : 0;
    evaluations += pairs.length;
  }
  return evaluations / (Number(process.hrtime.bigint() - start) / 1e9);
}

const overall = throughput(all, seconds);
const perKind = {};
for (const kind of KINDS) {
  const pairs = all.filter(([key]) => workload.kinds[key] === kind);
  perKind[kind] = 1e9 / throughput(pairs, seconds / 2);
}
const samples = new Float64Array(all.length);
all.forEach(([key, context], index) => {
  const start = process.hrtime.bigint();
  sink += evaluate(key, context).variant ? 1 : 0;
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
  p50_ns: percentile(samples, 0.5),
  p99_ns: percentile(samples, 0.99),
  timer_overhead_p50_ns: percentile(overhead, 0.5),
  peak_rss_kib: process.resourceUsage().maxRSS,
  flags: keys.length,
  contexts: workload.contexts.length,
  sink: sink > 0,
}));
