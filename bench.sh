#!/usr/bin/env bash
# One command for the benchmarks: builds the release binary, then runs the harness.
# Usage: ./bench.sh [--backend sqlite|postgres|both] [--clients N] [--duration SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release -p signalbox -p signalbox-bench
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/signalbox-bench" --binary "$target/release/signalbox" "$@"
