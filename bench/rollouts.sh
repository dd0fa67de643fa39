#!/usr/bin/env bash
# Rollout controller benchmark (issue 6): scheduling lag and breach-to-rollback for many
# concurrent canaries analysing pushed metrics, with smaller populations in the same run.
# Usage: bench/rollouts.sh [--backend sqlite|postgres|both] [--rollouts 1000] [--interval 10] [--minutes 2]
#        [--compare 100,250,500] (see --help for the rest)
# PostgreSQL: SIGNALBOX_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p signalbox-bench --bin rollouts-bench
exec "${CARGO_TARGET_DIR:-target}/release/rollouts-bench" "$@"
