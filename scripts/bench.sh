#!/usr/bin/env bash
# `make bench`: the benchmarks whose numbers docs/perf.md records (with machine and date).
#   - inspro bench: candle and ONNX Runtime, tiny / lite-R18 / R50 / lite-R50 at 640x360, 1 and 2 threads
#   - cargo bench: RoIAlign and one training step
# JSON lines go to out/bench.jsonl. Run it on a quiet machine: other load distorts every number.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Numbers taken under load are 2-5x off (docs/perf.md): refuse unless the 1-minute load average
# is below 0.5, or FORCE=1 (then every line says so).
load="$(cut -d' ' -f1 /proc/loadavg)"
quiet="$(awk -v l="$load" 'BEGIN { print (l < 0.5) ? 1 : 0 }')"
if [ "$quiet" != 1 ] && [ "${FORCE:-0}" != 1 ]; then
  echo "bench: 1-minute load average $load >= 0.5: not recording (wait for a quiet machine, or FORCE=1)" >&2
  exit 3
fi
note="load=$load$([ "$quiet" = 1 ] || echo ' NOT QUIET (FORCE=1)')"
echo "bench: $(date -u +%FT%TZ) $(nproc) cores, $note" >&2
mkdir -p out
bin=./target/release/inspro
runs="${RUNS:-20}"
for engine in candle onnxruntime; do
  for model in inspro-tiny inspro-lite-r18 inspro-r50 inspro-lite-r50; do
    echo "bench: $engine $model" >&2
    "$bin" bench --engine "$engine" --model "configs/models/$model.toml" --size 640x360 \
      --threads 1,2 --runs "$runs" --json \
      | sed "s/^{/{\"load_average\":$load,\"quiet\":$([ "$quiet" = 1 ] && echo true || echo false),/" \
      | tee -a out/bench.jsonl
  done
done
cargo bench --bench roi_align
cargo bench --bench train_step
