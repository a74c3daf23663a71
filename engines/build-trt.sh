#!/usr/bin/env bash
# Build and cache the TensorRT engines of an exported InsPro engine on THIS device, ahead of the
# first real start: runs `inspro segment` with the TensorRT provider on a short synthetic clip,
# which makes ONNX Runtime's TensorRT execution provider build and store its engine and timing
# caches. Optionally checks the graphs with trtexec too.
#
#   engines/build-trt.sh engines/inspro-lite-r50 [--trtexec]
#
# Needs: an NVIDIA GPU, CUDA + TensorRT, an ONNX Runtime GPU build (ORT_DYLIB_PATH), gst-launch-1.0.
# NOT RUN in this project's environment (no GPU anywhere): see engines/README.md.
set -euo pipefail

dir="${1:?usage: $0 ENGINE_DIR [--trtexec]}"
use_trtexec="${2:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
inspro="${INSPRO:-$here/target/release/inspro}"
[ -x "$inspro" ] || inspro="$(command -v inspro)" || { echo "build inspro first (make build)" >&2; exit 1; }
[ -f "$dir/manifest.json" ] || { echo "$dir/manifest.json missing: run inspro export first" >&2; exit 1; }
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this needs an NVIDIA GPU" >&2; exit 1; }
: "${ORT_DYLIB_PATH:?set ORT_DYLIB_PATH to a GPU build of libonnxruntime.so (1.17 or later)}"

gpu="$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader | head -1 | tr ' ,.' '__-' | tr -s _)"
trt="$(ls /usr/lib/*/libnvinfer.so.* 2>/dev/null | sed -n 's/.*libnvinfer\.so\.\([0-9]*\.[0-9]*\).*/\1/p' | sort -V | tail -1)"
ort="$(basename "$(readlink -f "$ORT_DYLIB_PATH")" | sed -n 's/libonnxruntime\.so\.//p')"
# Where the daemon and `inspro segment` look by default (`<engine dir>/trt_cache`; the daemon's
# `engine.cache_dir` / $CACHE_DIRECTORY/trt_cache when set: pass CACHE=... to warm that one).
# ONNX Runtime names its engine files by graph hash and compute capability, so one directory
# serves several GPUs; a TensorRT or ONNX Runtime upgrade rebuilds them.
cache="${CACHE:-$dir/trt_cache}"
mkdir -p "$cache"
echo "TensorRT caches: $cache (GPU $gpu, TensorRT ${trt:-unknown}, ONNX Runtime ${ort:-unknown})"

model="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["name"])' "$dir/manifest.json")"
read -r w h < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(*m["input_size"])' "$dir/manifest.json")
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
# The config is in the manifest; write it out for --model.
python3 - "$dir/manifest.json" "$tmp/model.toml" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["model"]
def v(x):
    return json.dumps(x)
open(sys.argv[2], "w").write("".join(f"{k} = {v(x)}\n" for k, x in m.items()))
PY
"$inspro" synth --clip "$tmp/warmup.mkv" --size "${w}x$((h / 2 * 2))" --frames 12
time "$inspro" segment "$tmp/warmup.mkv" --model "$tmp/model.toml" --engine-dir "$dir" \
  --provider tensorrt --trt-cache "$cache"
echo "second run (should load the cached engines):"
time "$inspro" segment "$tmp/warmup.mkv" --model "$tmp/model.toml" --engine-dir "$dir" \
  --provider tensorrt --trt-cache "$cache"

if [ "$use_trtexec" = "--trtexec" ]; then
  command -v trtexec >/dev/null || { echo "trtexec not on PATH (it is in /usr/src/tensorrt/bin on JetPack)" >&2; exit 1; }
  for g in key non_key; do
    [ -f "$dir/$g.onnx" ] || continue
    trtexec --onnx="$dir/$g.onnx" --fp16 --saveEngine="$cache/$g.plan" \
      --timingCacheFile="$cache/trtexec.timing" | tail -20
  done
fi
echo "model $model: TensorRT engines cached in $cache"
