#!/usr/bin/env python3
"""Compare the commits Signalbox and git-cliff list under each version.

Usage: compare.py SIGNALBOX_JSON GIT_CLIFF_CONTEXT_JSON

Signalbox's `changelog --format json` gives {"releases":[{"version","commits":[{"id"}]}]};
git-cliff's `--context` gives a list of releases with "version" (the tag name) and "commits".
Exits 1 and names the first differing releases if the sets differ.
"""
import json, sys


def main():
    ours = json.load(open(sys.argv[1]))["releases"]
    theirs = json.load(open(sys.argv[2]))
    a = {r["version"]: {c["id"] for c in r["commits"]} for r in ours}
    b = {}
    for r in theirs:
        v = r.get("version")
        if v is not None and v.startswith("v"):
            v = v[1:]
        ids = {c["id"] for c in r.get("commits", [])}
        if ids or v is not None:
            b[v] = ids
    a = {k: v for k, v in a.items() if v or k is not None}
    diffs = [k for k in set(a) | set(b) if a.get(k, set()) != b.get(k, set())]
    total = sum(len(v) for v in a.values())
    if diffs:
        for k in sorted(diffs, key=str)[:5]:
            only_a = a.get(k, set()) - b.get(k, set())
            only_b = b.get(k, set()) - a.get(k, set())
            print(f"compare: release {k}: {len(only_a)} only in signalbox, {len(only_b)} only in git-cliff", file=sys.stderr)
        print(f"compare: {len(diffs)} of {len(set(a) | set(b))} releases differ", file=sys.stderr)
        sys.exit(1)
    print(f"compare: identical commit sets in all {len(a)} releases ({total} commits)", file=sys.stderr)


if __name__ == "__main__":
    main()
