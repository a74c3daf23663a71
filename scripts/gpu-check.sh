#!/usr/bin/env bash
# The first session with an NVIDIA GPU fills docs/perf.md's GPU rows with this one command:
# exports every model config (static pooler, the TensorRT-friendly graphs, shipped weights where
# engines/<model>/ has them) as float graphs and as INT8 QDQ graphs for TensorRT (symmetric int8,
# calibrated on synthetic frames made here), runs `inspro bench` on the ONNX Runtime engine with
# the cpu, cuda and tensorrt providers (float) and tensorrt (INT8); each TensorRT run builds and
# keeps its engine cache in <export dir>/trt_cache, where the daemon looks by default; one table.
#
#   ORT_DYLIB_PATH=/path/to/onnxruntime-gpu/lib/libonnxruntime.so scripts/gpu-check.sh [RUNS]
#
# Needs: nvidia-smi, an ONNX Runtime GPU build (1.17+) with CUDA/TensorRT libraries on the
# loader path.
# NOT RUN in this project's environment so far (no GPU lent): the rows say "not measured".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-50}"
command -v nvidia-smi >/dev/null || { echo "gpu-check: no nvidia-smi: this needs an NVIDIA GPU" >&2; exit 2; }
: "${ORT_DYLIB_PATH:?gpu-check: set ORT_DYLIB_PATH to a GPU build of libonnxruntime.so}"
gpu="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
cargo build --release --quiet
bin=./target/release/inspro
out=out/gpu
mkdir -p "$out"
: > "$out/bench.jsonl"
calib="$out/calibration"
[ -d "$calib/JPEGImages" ] || "$bin" synth --out "$calib" --videos 4 --frames 8 --size 640x360 --seed 3 2>/dev/null
for model in inspro-tiny inspro-lite-r18 inspro-r50 inspro-lite-r50; do
  dir="$out/$model"
  weights=()
  [ -f "engines/$model/model.safetensors" ] && weights=(--weights "engines/$model/model.safetensors")
  "$bin" export --model "configs/models/$model.toml" "${weights[@]}" --out "$dir" --pooler static --trunk >&2
  "$bin" export --model "configs/models/$model.toml" "${weights[@]}" --out "$dir-int8" --pooler static \
    --int8 --int8-for tensorrt --calibrate "$calib" --calibration-frames 16 >&2
  for run in "$dir cpu" "$dir cuda" "$dir tensorrt" "$dir-int8 tensorrt"; do
    set -- $run
    echo "gpu-check: $model $1 $2" >&2
    "$bin" bench --engine onnxruntime --engine-dir "$1" --provider "$2" \
      --model "configs/models/$model.toml" --size 640x360 --threads 1 --runs "$runs" --json \
      | sed "s/^{/{\"requested_provider\":\"$2\",/" >> "$out/bench.jsonl"
  done
done
python3 - "$out/bench.jsonl" "$gpu" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"GPU: {sys.argv[2]}  (ms per 640x360 frame, median; fps = 1000 / average)")
print(f"{'model':<18} {'precision':<10} {'provider':<10} {'ran on':<22} {'key':>8} {'non-key':>8} {'avg':>8} {'fps':>7}")
for r in rows:
    avg = r["average_frame_ms"]
    precision = "int8" if r.get("int8") else ("fp16" if r["requested_provider"] == "tensorrt" else "fp32")
    print(f"{r['model']:<18} {precision:<10} {r['requested_provider']:<10} {r['engine']:<22} "
          f"{r['key_frame_ms']:>8.2f} {r['non_key_frame_ms']:>8.2f} {avg:>8.2f} {1000 / avg:>7.1f}")
PY
