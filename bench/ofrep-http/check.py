#!/usr/bin/env python3
"""Checks that both servers serve the same data set before the load starts.

    check.py SIGNALBOX_URL SDK_KEY UNLEASH_URL FRONTEND_TOKEN N

For 300 random contexts it asks Signalbox's OFREP bulk endpoint and unleash-edge's
/api/frontend/all, and requires: N flags from each; every flag whose country list excludes the
context's country off on both sides (the `in` constraint); and, among contexts that pass the
constraint, each side turning on between 40 % and 60 % of the flags (the 50 % rollout: the two
hash differently, MurmurHash3 of flagKey+targetingKey vs groupId:userId, so only the share can
agree, not the individual bucket). Exits non-zero on any mismatch.
"""
import json
import random
import sys
import urllib.request

COUNTRIES = ["NO", "SE", "DK", "FI", "DE", "FR", "NL", "BE", "ES", "IT"]


def post(url, headers, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def main() -> None:
    sb_url, sb_key, ue_url, ue_token, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    lists = {}
    with open(sys.argv[6] if len(sys.argv) > 6 else f"{__file__.rsplit('/', 1)[0]}/out/data/flagd-{n}.json") as f:
        for key, flag in json.load(f)["flags"].items():
            lists[key] = set(flag["targeting"]["if"][0]["in"][1])
    rng = random.Random(11)
    counts = {"sb_on": 0, "ue_on": 0, "eligible": 0, "constraint_violations": 0}
    for _ in range(300):
        user = f"user-{rng.randint(1, 10**9)}"
        country = rng.choice(COUNTRIES)
        sb = post(f"{sb_url}/ofrep/v1/evaluate/flags", {"X-API-Key": sb_key}, {"context": {"targetingKey": user, "country": country}})
        sb_flags = {f["key"]: f.get("value") is True for f in sb["flags"]}
        if ue_url == "-":  # the Signalbox side alone
            ue_flags = dict(sb_flags)
        else:
            ue = post(f"{ue_url}/api/frontend/all", {"Authorization": ue_token}, {"context": {"userId": user, "properties": {"country": country}}})
            ue_flags = {t["name"]: bool(t["enabled"]) for t in ue["toggles"]}
        if len(sb_flags) != n or len(ue_flags) != n or set(sb_flags) != set(ue_flags):
            sys.exit(f"check: flag sets differ: signalbox {len(sb_flags)}, unleash-edge {len(ue_flags)}, expected {n}")
        for key, allowed in lists.items():
            if country in allowed:
                counts["eligible"] += 1
                counts["sb_on"] += sb_flags[key]
                counts["ue_on"] += ue_flags[key]
            elif sb_flags[key] or ue_flags[key]:
                counts["constraint_violations"] += 1
    sb_share = counts["sb_on"] / max(counts["eligible"], 1)
    ue_share = counts["ue_on"] / max(counts["eligible"], 1)
    if ue_url == "-":
        print(f"check ({n} flags, 300 contexts, Signalbox only): {n} flags; constraint violations {counts['constraint_violations']}; on-share where the country matches {sb_share:.3f}")
    else:
        print(
            f"check ({n} flags, 300 contexts): both serve {n} flags; constraint violations {counts['constraint_violations']}; "
            f"on-share where the country matches: signalbox {sb_share:.3f}, unleash-edge {ue_share:.3f}"
        )
    if counts["constraint_violations"] or not (0.4 <= sb_share <= 0.6 and 0.4 <= ue_share <= 0.6):
        sys.exit("check: the two servers do not serve equivalent flags")


if __name__ == "__main__":
    main()
