#!/usr/bin/env bash
# Memory across source restarts (issue 32): the daemon with its default engine on a 3-frame clip
# looped as fast as the engine takes it, RESTARTS times (default 10,000), RSS sampled from /proc;
# prints the RSS after warm-up (the first fifth), the highest after it and the growth.
# tests/edge_soak.rs `source_restarts_keep_memory_flat` is the check; this runs it long on the
# release binary. docs/perf.md has the numbers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RESTARTS="${RESTARTS:-10000}"
cargo build --release --features edge --quiet
INSPRO_TEST_BIN="$PWD/target/release/inspro" INSPRO_SOAK_RESTARTS="$RESTARTS" \
  cargo test --release --features edge --test edge_soak source_restarts_keep_memory_flat -- --nocapture 2>&1 \
  | grep -E "restart soak|test result|panicked|RSS grew"
