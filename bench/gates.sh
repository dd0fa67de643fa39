#!/usr/bin/env bash
# Gate evaluation benchmark (issue 3): stored facts vs re-reading and re-parsing raw evidence.
# Usage: bench/gates.sh [--backend sqlite|postgres] [--components 50] [--tests-per-component 200] [--iterations 300]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p signalbox-bench --bin gates-bench
exec "${CARGO_TARGET_DIR:-target}/release/gates-bench" "$@"
