#!/usr/bin/env bash
# Re-make the shipped weights (engines/inspro-tiny/model.safetensors) from nothing, on a 2-core
# CPU: (1) dense pre-training of the trunk with the semantic loss, (2) the whole InsPro from that
# trunk with denoising queries and the semantic loss, both on synthetic videos made on the fly,
# then (3) the held-out evaluation with either engine. Numbers: engines/inspro-tiny/README.md.
#
#   scripts/train-shipped.sh             # build, train both phases, evaluate, copy the weights
#   INSPRO_BIN=path                      # a prebuilt binary (no cargo)
#   MAX_MINUTES=M                        # stop phase 2 after M minutes (a checkpoint + evaluation)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${INSPRO_BIN:-./target/release/inspro}"
[ -n "${INSPRO_BIN:-}" ] || cargo build --release --quiet
limit=()
[ -n "${MAX_MINUTES:-}" ] && limit=(--max-minutes "$MAX_MINUTES")

# Phase 1: the trunk (configs/train/inspro-tiny-trunk.toml writes runs/inspro-tiny-trunk/).
[ -f runs/inspro-tiny-trunk/final.safetensors ] || "$bin" train --config configs/train/inspro-tiny-trunk.toml
# Phase 2: the whole model from that trunk (its `init`).
"$bin" train --config configs/train/inspro-tiny-synth.toml "${limit[@]}"

# The held-out evaluation the README reports (official video AP, tracks vs objects), with ONNX
# Runtime when the set-up's library is there (candle gives the same numbers).
engine=(--engine candle)
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH="$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)"
  export ORT_DYLIB_PATH
fi
[ -n "$ORT_DYLIB_PATH" ] && engine=(--engine onnxruntime)
mkdir -p out
"$bin" segment --ytvis data/synth-val --gt data/synth-val/instances.json --results out/shipped-val.json \
  --model configs/models/inspro-tiny.toml --weights runs/inspro-tiny-synth/final.safetensors "${engine[@]}"
"$bin" eval --gt data/synth-val/instances.json --results out/shipped-val.json --duplicates
cp runs/inspro-tiny-synth/final.safetensors engines/inspro-tiny/model.safetensors
cp configs/models/inspro-tiny.toml engines/inspro-tiny/model.toml
echo "engines/inspro-tiny/model.safetensors updated"
