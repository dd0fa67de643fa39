#!/usr/bin/env bash
# Versions and changelogs benchmark: Signalbox vs git-cliff vs the `git log` floor.
#
#   bench/versioning/run.sh [COMMITS...]        default: 20000 100000
#
# For each size it generates a repository with ../shared/bench/make-history-repo.py (a tag every
# 200 commits, some pre-releases), then times on the same repository in the same run:
#   floor      git log --format=%B
#   changelog  signalbox changelog (Markdown and JSON)  vs  git-cliff (Markdown and --context JSON)
#   next       signalbox version next                   vs  git-cliff --bumped-version
# reporting wall time and peak RSS (/usr/bin/time -v) and the ratios, and checks that both tools
# list the same commits under each version (equivalent configuration: git-cliff's defaults with
# a tag pattern that leaves pre-release tags out, which is Signalbox's default).
#
# Environment: CLIFF_MAX_COMMITS (default 100000) skips git-cliff above that size;
# BENCH_DIR (default target/bench-versioning) holds repositories and outputs; SIGNALBOX_BIN
# names an already built release binary instead of building one.
# git-cliff is installed with `cargo install git-cliff --locked --root bench/versioning/.tools`
# (git-ignored) when it is not on PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(20000 100000)
CLIFF_MAX_COMMITS="${CLIFF_MAX_COMMITS:-100000}"
BENCH_DIR="${BENCH_DIR:-$ROOT/target/bench-versioning}"
GEN="$ROOT/../shared/bench/make-history-repo.py"
mkdir -p "$BENCH_DIR"

[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
[ -f "$GEN" ] || { echo "needs $GEN" >&2; exit 1; }

if [ -n "${SIGNALBOX_BIN:-}" ]; then
  SIGNALBOX="$SIGNALBOX_BIN" # an already built binary (a build with another package set rebuilds dependencies)
else
  echo "== building signalbox (release)" >&2
  (cd "$ROOT" && cargo build --release -p signalbox >&2)
  SIGNALBOX="${CARGO_TARGET_DIR:-$ROOT/target}/release/signalbox"
fi

# git-cliff from PATH, else built once into bench/versioning/.tools (git-ignored).
TOOLS="$ROOT/bench/versioning/.tools"
CLIFF="$(command -v git-cliff || true)"
if [ -z "$CLIFF" ]; then
  CLIFF="$TOOLS/bin/git-cliff"
  if [ ! -x "$CLIFF" ]; then
    echo "== installing git-cliff (cargo install git-cliff --locked --root $TOOLS)" >&2
    cargo install git-cliff --locked --root "$TOOLS" >&2
  fi
fi
echo "== $("$CLIFF" --version)" >&2

# git-cliff's default configuration, plus a tag pattern without pre-releases.
CLIFF_CONFIG="$BENCH_DIR/cliff.toml"
(cd "$BENCH_DIR" && rm -f cliff.toml && "$CLIFF" --init >/dev/null 2>&1)
sed -i 's/^\[git\]$/[git]\ntag_pattern = "^v[0-9]+\\\\.[0-9]+\\\\.[0-9]+$"/' "$CLIFF_CONFIG"

# measure LABEL OUTFILE CMD... -> prints "LABEL seconds rss_mb"
measure() {
  local label="$1" out="$2"; shift 2
  local stats="$BENCH_DIR/time.txt"
  /usr/bin/time -v -o "$stats" "$@" >"$out" 2>"$out.err" || { echo "$label failed: $(tail -3 "$out.err")" >&2; echo "$label NA NA"; return; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$stats" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$stats")
  echo "$label $wall $rss"
}

printf '\n| commits | tags | job | tool | wall s | peak RSS MB | git-cliff / signalbox (time) | git-cliff / signalbox (RSS) | signalbox / git log (time) |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for N in "${SIZES[@]}"; do
  REPO="$BENCH_DIR/repo-$N"
  if [ ! -d "$REPO/.git" ]; then
    python3 "$GEN" "$REPO" --commits "$N" >&2
  fi
  TAGS=$(git -C "$REPO" tag | wc -l)
  git -C "$REPO" log --format=%B >/dev/null # warm the page cache for everyone
  read -r _ floor_t floor_m < <(measure floor "$BENCH_DIR/floor-$N.txt" git -C "$REPO" log --format=%B)
  read -r _ sb_md_t sb_md_m < <(measure sb-md "$BENCH_DIR/sb-$N.md" "$SIGNALBOX" changelog --repo "$REPO")
  read -r _ sb_js_t sb_js_m < <(measure sb-json "$BENCH_DIR/sb-$N.json" "$SIGNALBOX" changelog --repo "$REPO" --format json)
  read -r _ sb_nx_t sb_nx_m < <(measure sb-next "$BENCH_DIR/sb-next-$N.txt" "$SIGNALBOX" version next --repo "$REPO")
  if [ "$N" -le "$CLIFF_MAX_COMMITS" ]; then
    read -r _ gc_md_t gc_md_m < <(measure gc-md "$BENCH_DIR/gc-$N.md" "$CLIFF" --config "$CLIFF_CONFIG" --repository "$REPO")
    read -r _ gc_js_t gc_js_m < <(measure gc-json "$BENCH_DIR/gc-$N.json" "$CLIFF" --config "$CLIFF_CONFIG" --repository "$REPO" --context)
    read -r _ gc_nx_t gc_nx_m < <(measure gc-next "$BENCH_DIR/gc-next-$N.txt" "$CLIFF" --config "$CLIFF_CONFIG" --repository "$REPO" --bumped-version)
  else
    gc_md_t=NA gc_md_m=NA gc_js_t=NA gc_js_m=NA gc_nx_t=NA gc_nx_m=NA
  fi
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a=="NA" || b=="NA" || b==0) print "n/a"; else printf "%.1fx", a/b }'; }
  printf '| %s | %s | history read | git log --format=%%B | %s | %s | | | |\n' "$N" "$TAGS" "$floor_t" "$floor_m"
  printf '| %s | %s | changelog (Markdown) | signalbox | %s | %s | %s | %s | %s |\n' "$N" "$TAGS" "$sb_md_t" "$sb_md_m" "$(ratio "$gc_md_t" "$sb_md_t")" "$(ratio "$gc_md_m" "$sb_md_m")" "$(ratio "$sb_md_t" "$floor_t")"
  printf '| %s | %s | changelog (Markdown) | git-cliff | %s | %s | | | |\n' "$N" "$TAGS" "$gc_md_t" "$gc_md_m"
  printf '| %s | %s | changelog (JSON) | signalbox | %s | %s | %s | %s | %s |\n' "$N" "$TAGS" "$sb_js_t" "$sb_js_m" "$(ratio "$gc_js_t" "$sb_js_t")" "$(ratio "$gc_js_m" "$sb_js_m")" "$(ratio "$sb_js_t" "$floor_t")"
  printf '| %s | %s | changelog (JSON) | git-cliff --context | %s | %s | | | |\n' "$N" "$TAGS" "$gc_js_t" "$gc_js_m"
  printf '| %s | %s | next version | signalbox (%s) | %s | %s | %s | %s | |\n' "$N" "$TAGS" "$(head -1 "$BENCH_DIR/sb-next-$N.txt")" "$sb_nx_t" "$sb_nx_m" "$(ratio "$gc_nx_t" "$sb_nx_t")" "$(ratio "$gc_nx_m" "$sb_nx_m")"
  printf '| %s | %s | next version | git-cliff --bumped-version (%s) | %s | %s | | | |\n' "$N" "$TAGS" "$(head -1 "$BENCH_DIR/gc-next-$N.txt" 2>/dev/null || echo n/a)" "$gc_nx_t" "$gc_nx_m"
  if [ "$gc_js_t" != NA ]; then
    python3 "$ROOT/bench/versioning/compare.py" "$BENCH_DIR/sb-$N.json" "$BENCH_DIR/gc-$N.json" >&2 || true
  fi
done
