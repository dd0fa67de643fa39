#!/usr/bin/env python3
"""Writes one flag data set in both formats, with the same flags on both sides.

    gen.py N OUT_DIR   ->  OUT_DIR/flagd-N.json (Signalbox, flagd format)
                           OUT_DIR/unleash-N.json (unleash-edge offline bootstrap, client API format)
                           OUT_DIR/keys-N.txt (the flag keys, one a line, for the single-flag load)

Every flag is a 50 % rollout by targeting key behind one `in` constraint on a custom context
field `country`:

  Unleash: enabled, one `flexibleRollout` strategy (rollout 50, stickiness userId, groupId = flag
           name) with one constraint `country IN [...]`.
  flagd:   variants on/off (booleans), defaultVariant off, targeting
           {"if": [{"in": [{"var": "country"}, [...]]}, {"fractional": [["on", 50], ["off", 50]]}, "off"]}
           (`fractional` buckets flagKey + targetingKey, as Unleash buckets groupId:userId).

Each flag's list holds 5 of the 10 countries the load generator draws from (chosen per flag from
a fixed seed), so about half the requests pass the constraint and a quarter get the flag on.
"""
import json
import os
import random
import sys

COUNTRIES = ["NO", "SE", "DK", "FI", "DE", "FR", "NL", "BE", "ES", "IT"]


def main() -> None:
    n = int(sys.argv[1])
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    flagd_flags = {}
    unleash_features = []
    keys = []
    for i in range(n):
        key = f"flag-{i:03d}"
        countries = sorted(rng.sample(COUNTRIES, 5))
        keys.append(key)
        flagd_flags[key] = {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {
                "if": [
                    {"in": [{"var": "country"}, countries]},
                    {"fractional": [["on", 50], ["off", 50]]},
                    "off",
                ]
            },
        }
        unleash_features.append(
            {
                "name": key,
                "type": "release",
                "enabled": True,
                "project": "default",
                "stale": False,
                "impressionData": False,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {"rollout": "50", "stickiness": "userId", "groupId": key},
                        "constraints": [
                            {
                                "contextName": "country",
                                "operator": "IN",
                                "values": countries,
                                "caseInsensitive": False,
                                "inverted": False,
                            }
                        ],
                        "variants": [],
                    }
                ],
                "variants": [],
            }
        )
    with open(os.path.join(out, f"flagd-{n}.json"), "w") as f:
        json.dump({"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": flagd_flags}, f, indent=1)
    with open(os.path.join(out, f"unleash-{n}.json"), "w") as f:
        json.dump({"version": 2, "features": unleash_features, "query": None}, f, indent=1)
    with open(os.path.join(out, f"keys-{n}.txt"), "w") as f:
        f.write("\n".join(keys) + "\n")


if __name__ == "__main__":
    main()
