#!/usr/bin/env bash
# `make bench`: the benchmarks whose numbers docs/perf.md records (with machine and date).
#   1. inspro bench: candle and ONNX Runtime (float, and INT8 QDQ graphs), every model config
#      at 640x360, 1 and 2 threads, key / non-key frames, by part
#   2. many cameras: inspro bench --cameras 1,2,4 (tiny and lite-R18, ONNX Runtime)
#   3. the daemon's overhead against the engine alone (scripts/daemon-overhead.sh, 1 and 4 cameras)
#   4. INT8 / float frames/s in alternation (scripts/int8-speed.sh, R50 and lite-R18)
#   5. cargo bench: RoIAlign and one training step
# JSON lines go to out/bench.jsonl (one run: the file is started afresh), the by-part picture to
# out/perf-parts.png. Run it on a quiet machine: other load distorts every number.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Refuse unless the 1-minute load average is below 0.5, or FORCE=1 (then every line says so).
. scripts/measure-common.sh
quiet_or_exit bench
export FORCE=1 # checked once, here: the load of our own benchmarks does not count
note="load=$load$([ "$quiet" = 1 ] || echo ' NOT QUIET (FORCE=1)')"
echo "bench: $(date -u +%FT%TZ) $(nproc) cores, $note" >&2
mkdir -p out
out=out/bench.jsonl
: > "$out"
release_bin bench "--features edge"
runs="${RUNS:-10}"
models="${MODELS:-inspro-small inspro-tiny inspro-lite-r18 inspro-r50 inspro-lite-r50}"
tag() { sed "s/^{/{\"load_average\":$load,\"quiet\":$([ "$quiet" = 1 ] && echo true || echo false),/"; }

# INT8 graphs are calibrated on synthetic frames made here (timing does not depend on the data).
calib=out/bench-calibration
[ -d "$calib/JPEGImages" ] || "$bin" synth --out "$calib" --videos 4 --frames 8 --size 640x360 --seed 3 2>/dev/null

for model in $models; do
  cfg="configs/models/$model.toml"
  echo "bench: candle $model" >&2
  "$bin" bench --engine candle --model "$cfg" --size 640x360 --threads 1,2 --runs "$runs" --json | tag | tee -a "$out"
  echo "bench: onnxruntime $model" >&2
  "$bin" bench --engine onnxruntime --model "$cfg" --size 640x360 --threads 1,2 --runs "$runs" --json | tag | tee -a "$out"
  echo "bench: onnxruntime int8 $model" >&2
  int8="out/engines/$model-int8"
  "$bin" export --model "$cfg" --out "$int8" --pooler gather --int8 --calibrate "$calib" \
    --calibration-frames 16 2>/dev/null
  "$bin" bench --engine onnxruntime --model "$cfg" --engine-dir "$int8" --size 640x360 \
    --threads 1,2 --runs "$runs" --json | tag | tee -a "$out"
done

for model in inspro-small inspro-lite-r18; do
  echo "bench: cameras $model" >&2
  "$bin" bench --engine onnxruntime --model "configs/models/$model.toml" --size 640x360 \
    --cameras 1,2,4 --seconds 15 --runs "$runs" --json | tag | tee -a "$out"
  "$bin" bench --engine onnxruntime --model "configs/models/$model.toml" --size 640x360 \
    --cameras 1,2 --session-threads 1 --seconds 15 --runs "$runs" --json | tag | tee -a "$out"
done

echo "bench: daemon overhead" >&2
scripts/daemon-overhead.sh 1 4 | tag | tee -a "$out"

echo "bench: INT8 / float in alternation" >&2
scripts/int8-speed.sh | tee -a "$out"

# INT8 / float frames/s per config and thread count, from this run's by-part lines (a minute
# apart; scripts/int8-speed.sh above measures the ratio in alternation).
python3 - "$out" <<'EOF' >&2
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ort = [r for r in rows if str(r.get("engine", "")).startswith("onnxruntime") and "average_frame_ms" in r]
for r in ort:
    if not r.get("int8"):
        continue
    f = [x for x in ort if not x.get("int8") and x["model"] == r["model"] and x["threads"] == r["threads"]]
    if f:
        print(f"int8 {r['model']} {r['threads']} threads: {f[0]['average_frame_ms'] / r['average_frame_ms']:.2f}x "
              f"the float frames/s ({f[0]['average_frame_ms']:.1f} -> {r['average_frame_ms']:.1f} ms/frame)")
EOF
"$bin" plot --bench "$out" --out out/perf-parts.png
cargo bench --bench roi_align
cargo bench --bench train_step
