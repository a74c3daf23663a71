# Sourced by the measuring scripts (bench.sh, daemon-overhead.sh, int8-ap.sh): the quiet-machine
# rule, the release binary and the ONNX Runtime library, one way.

# `quiet_or_exit NAME`: sets `load` (the 1-minute load average) and `quiet` (1 or 0); exits 3
# unless the load is below 0.5 or FORCE=1. Numbers taken under load are 2-5x off (docs/perf.md).
quiet_or_exit() {
  load="$(cut -d' ' -f1 /proc/loadavg)"
  quiet="$(awk -v l="$load" 'BEGIN { print (l < 0.5) ? 1 : 0 }')"
  if [ "$quiet" != 1 ] && [ "${FORCE:-0}" != 1 ]; then
    echo "$1: 1-minute load average $load >= 0.5: not recording (wait for a quiet machine, or FORCE=1)" >&2
    exit 3
  fi
}

# `release_bin NAME FEATURES`: sets `bin`, or exits 2 saying how to build it.
release_bin() {
  bin=./target/release/inspro
  [ -x "$bin" ] || { echo "$1: build first (cargo build --release $2)" >&2; exit 2; }
}

# The shipped model (inspro-small) unless MODEL / WEIGHTS say otherwise; the library of scripts/setup.sh's
# venv unless ORT_DYLIB_PATH is set.
MODEL="${MODEL:-engines/inspro-small/model.toml}"
WEIGHTS="${WEIGHTS:-$(dirname "$MODEL")/model.safetensors}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$PWD"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1)}"
