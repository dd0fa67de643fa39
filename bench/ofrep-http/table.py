#!/usr/bin/env python3
"""Prints the Markdown table of bench/ofrep-http/run.sh from its results file (medians over rounds).

Ratios compare each Signalbox endpoint with unleash-edge's /api/frontend (the issue's baseline)
and, for the single-flag endpoint, also with unleash-edge's single-flag endpoint. The goal of
issue 7 is at least 2x the throughput at a lower p99 than /api/frontend on both data sets.
"""
import re
import statistics
import sys
from collections import defaultdict

LABELS = {
    "ofrep-bulk": ("signalbox", "POST /ofrep/v1/evaluate/flags (bulk, every flag)"),
    "ofrep-single": ("signalbox", "POST /ofrep/v1/evaluate/flags/{key}"),
    "unleash-frontend": ("unleash-edge", "POST /api/frontend (enabled flags)"),
    "unleash-all": ("unleash-edge", "POST /api/frontend/all (every flag)"),
    "unleash-single": ("unleash-edge", "POST /api/frontend/features/{key}"),
}
ORDER = ["ofrep-bulk", "ofrep-single", "unleash-frontend", "unleash-all", "unleash-single"]


def main() -> None:
    runs = defaultdict(list)
    rss = {}
    for line in open(sys.argv[1]):
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        if "rss" in line.split():
            rss[fields["size"]] = fields
        elif "rps" in fields:
            runs[(fields["size"], fields["target"])].append({k: float(v) for k, v in fields.items() if k not in ("size", "target")})
        elif "target" in fields:
            runs[(fields["size"], fields["target"])].append(None)

    def med(size, target, key):
        values = [r[key] for r in runs.get((size, target), []) if r is not None]
        return statistics.median(values) if values else None

    print()
    print("| flags | server | endpoint | requests/s | p50 ms | p99 ms | bytes/response | errors | peak RSS MiB | throughput vs /api/frontend | p99 vs /api/frontend | goal (>=2x, lower p99) |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    sizes = sorted({size for size, _ in runs}, key=int)
    verdicts = []
    for size in sizes:
        base_rps = med(size, "unleash-frontend", "rps")
        base_p99 = med(size, "unleash-frontend", "p99_ms")
        for target in ORDER:
            if (size, target) not in runs:
                continue
            server, endpoint = LABELS[target]
            rps, p50, p99 = (med(size, target, k) for k in ("rps", "p50_ms", "p99_ms"))
            size_b = med(size, target, "bytes_per_response")
            errors = sum(int(r["status_errors"] + r["socket_errors"]) for r in runs[(size, target)] if r is not None)
            failed = sum(1 for r in runs[(size, target)] if r is None)
            mem = rss.get(size, {}).get("signalbox_mib" if server == "signalbox" else "unleash_mib", "n/a")
            ratio_t = ratio_p = goal = ""
            if server == "signalbox" and rps and base_rps and base_p99:
                ratio_t = f"{rps / base_rps:.2f}x"
                ratio_p = f"{p99 / base_p99:.2f}x"
                met = rps >= 2 * base_rps and p99 < base_p99
                goal = "met" if met else "not met"
                verdicts.append((size, target, met))
            fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
            print(
                f"| {size} | {server} | {endpoint} | {fmt(rps, ',.0f')} | {fmt(p50, '.2f')} | {fmt(p99, '.2f')} | {fmt(size_b, ',.0f')} | "
                f"{errors}{f' ({failed} runs failed)' if failed else ''} | {mem} | {ratio_t} | {ratio_p} | {goal} |"
            )
        single, ue_single = med(size, "ofrep-single", "rps"), med(size, "unleash-single", "rps")
        if single and ue_single:
            print(
                f"| {size} | | single vs single | | | | | | | {single / ue_single:.2f}x vs /api/frontend/features | "
                f"{med(size, 'ofrep-single', 'p99_ms') / med(size, 'unleash-single', 'p99_ms'):.2f}x | |"
            )
        bulk, ue_all = med(size, "ofrep-bulk", "rps"), med(size, "unleash-all", "rps")
        if bulk and ue_all:
            print(
                f"| {size} | | bulk vs all | | | | | | | {bulk / ue_all:.2f}x vs /api/frontend/all | "
                f"{med(size, 'ofrep-bulk', 'p99_ms') / med(size, 'unleash-all', 'p99_ms'):.2f}x | |"
            )
    print()
    if verdicts:
        print("goal (issue 7: >= 2x unleash-edge /api/frontend throughput at a lower p99, both data sets):",
              "MET" if all(m for _, _, m in verdicts) else "NOT MET for " + ", ".join(f"{t} at {s} flags" for s, t, m in verdicts if not m))


if __name__ == "__main__":
    main()
