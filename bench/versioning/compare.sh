#!/usr/bin/env bash
# Signalbox vs git-cliff, commit by commit, on small generated histories (issue 5: "with the
# equivalent configuration, the set of commits Signalbox lists under each version equals
# git-cliff's, on generated repositories"). One command:
#
#   bench/versioning/compare.sh [COMMITS]          default 2000; SEEDS="7 11 23" by default
#
# For each seed it builds a repository with shared/bench/make-history-repo.py (a release tag every
# TAG_EVERY=150 commits, some with an rc.1 tag on the same commit), then writes
#   signalbox: the library's `--format json` changelog (the `changelog` example of
#              signalbox-versioning, so only that crate is built; SIGNALBOX_BIN=path/to/signalbox
#              uses the CLI instead)
#   git-cliff: `git-cliff --context` with its default cliff.toml plus a tag pattern that leaves
#              pre-release tags out (Signalbox's default)
# and checks with compare.py that every version lists the same set of commit ids. Exits 1 on the
# first difference. git-cliff must be on PATH (`pip install git-cliff`, `cargo install git-cliff
# --locked`, or a release binary); `cargo test` never needs it.
#
# Environment: WORK_DIR (default: a temporary directory, removed at the end), TAG_EVERY, SEEDS.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
COMMITS="${1:-2000}"
SEEDS="${SEEDS:-7 11 23}"
TAG_EVERY="${TAG_EVERY:-150}"

GEN=""
for candidate in "${SIGNALBOX_SHARED_DIR:-/nonexistent}/bench/make-history-repo.py" "$ROOT/../shared/bench/make-history-repo.py" /work/shared/bench/make-history-repo.py; do
  if [ -f "$candidate" ]; then GEN="$candidate"; break; fi
done
[ -n "$GEN" ] || { echo "compare.sh: needs shared/bench/make-history-repo.py beside the repository (or SIGNALBOX_SHARED_DIR)" >&2; exit 2; }
command -v git-cliff >/dev/null || { echo "compare.sh: needs git-cliff on PATH (pip install git-cliff, or cargo install git-cliff --locked)" >&2; exit 2; }

if [ -n "${WORK_DIR:-}" ]; then
  mkdir -p "$WORK_DIR"
else
  WORK_DIR="$(mktemp -d)"
  trap 'rm -rf "$WORK_DIR"' EXIT
fi

if [ -n "${SIGNALBOX_BIN:-}" ]; then
  signalbox_json() { "$SIGNALBOX_BIN" changelog --repo "$1" --format json; }
else
  echo "== building the changelog example of signalbox-versioning" >&2
  (cd "$ROOT" && cargo build --quiet --release -p signalbox-versioning --example changelog >&2)
  EXAMPLE="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/changelog"
  signalbox_json() { "$EXAMPLE" "$1" json; }
fi

# git-cliff's default configuration, plus a tag pattern without pre-releases.
(cd "$WORK_DIR" && rm -f cliff.toml && git-cliff --init >/dev/null 2>&1)
sed -i 's/^\[git\]$/[git]\ntag_pattern = "^v[0-9]+\\\\.[0-9]+\\\\.[0-9]+$"/' "$WORK_DIR/cliff.toml"
grep -q '^tag_pattern' "$WORK_DIR/cliff.toml" || { echo "compare.sh: could not set tag_pattern in git-cliff's default config" >&2; exit 2; }

status=0
for seed in $SEEDS; do
  repo="$WORK_DIR/repo-$COMMITS-$seed"
  [ -d "$repo/.git" ] || python3 "$GEN" "$repo" --commits "$COMMITS" --tag-every "$TAG_EVERY" --seed "$seed" >/dev/null
  signalbox_json "$repo" >"$WORK_DIR/signalbox-$seed.json"
  git-cliff --config "$WORK_DIR/cliff.toml" --repository "$repo" --context >"$WORK_DIR/git-cliff-$seed.json" 2>"$WORK_DIR/git-cliff-$seed.err" \
    || { echo "git-cliff failed: $(tail -3 "$WORK_DIR/git-cliff-$seed.err")" >&2; exit 2; }
  echo -n "seed $seed, $COMMITS commits, $(git -C "$repo" tag | wc -l) tags: " >&2
  python3 "$ROOT/bench/versioning/compare.py" "$WORK_DIR/signalbox-$seed.json" "$WORK_DIR/git-cliff-$seed.json" || status=1
done
exit $status
