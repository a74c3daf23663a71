#!/usr/bin/env bash
# The dense recipe from nothing, on a 2-core CPU (~100 min): (1) pre-training of the trunk with
# the semantic loss and the RoI classifier (configs/train/inspro-tiny-trunk.toml, then
# inspro-tiny-trunk2.toml), (2) the whole InsPro from that trunk with denoising queries, the
# semantic loss, the RoI classifier, two data-parallel workers and a moving average of the
# weights (configs/train/inspro-tiny-dense.toml), all on synthetic videos made on the fly, (3) the
# held-out evaluation of the averaged weights and of the shipped model (official video AP, tracks
# vs objects), (4) engines/inspro-tiny/model.safetensors replaced only when the new weights score
# a higher video AP. Numbers: docs/training.md "A RoI classifier, a weight average and both cores".
#
#   scripts/train-dense.sh               # build, train both phases, evaluate, ship if better
#   INSPRO_BIN=path                      # a prebuilt binary (no cargo)
#   MAX_MINUTES=M                        # stop phase 2 after M minutes (a checkpoint + evaluation)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${INSPRO_BIN:-./target/release/inspro}"
[ -n "${INSPRO_BIN:-}" ] || cargo build --release --quiet
limit=()
[ -n "${MAX_MINUTES:-}" ] && limit=(--max-minutes "$MAX_MINUTES")

# Phase 1: the trunk (writes runs/inspro-tiny-trunk/, then runs/inspro-tiny-trunk2/).
[ -f runs/inspro-tiny-trunk/final.safetensors ] || "$bin" train --config configs/train/inspro-tiny-trunk.toml
[ -f runs/inspro-tiny-trunk2/final.safetensors ] || "$bin" train --config configs/train/inspro-tiny-trunk2.toml
# Phase 2: the whole model from that trunk (its `init`; writes runs/inspro-tiny-dense/).
"$bin" train --config configs/train/inspro-tiny-dense.toml "${limit[@]}"

# The held-out evaluation, with ONNX Runtime when the set-up's library is there (candle gives the
# same numbers).
engine=(--engine candle)
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH="$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)"
  export ORT_DYLIB_PATH
fi
[ -n "$ORT_DYLIB_PATH" ] && engine=(--engine onnxruntime)
mkdir -p out
score() { # weights results-json -> video AP
  "$bin" segment --ytvis data/synth-val --gt data/synth-val/instances.json --results "$2" \
    --model configs/models/inspro-tiny.toml --weights "$1" "${engine[@]}" >&2
  "$bin" eval --gt data/synth-val/instances.json --results "$2" --duplicates >&2
  "$bin" eval --gt data/synth-val/instances.json --results "$2" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["ap"])'
}
new="$(score runs/inspro-tiny-dense/final.ema.safetensors out/dense-val.json)"
old="$(score engines/inspro-tiny/model.safetensors out/shipped-val.json)"
echo "video AP on the held-out videos: dense recipe $new, shipped model $old"
if python3 -c "import sys; sys.exit(0 if float('$new') > float('$old') else 1)"; then
  cp runs/inspro-tiny-dense/final.ema.safetensors engines/inspro-tiny/model.safetensors
  cp configs/models/inspro-tiny.toml engines/inspro-tiny/model.toml
  echo "engines/inspro-tiny/model.safetensors replaced (update engines/inspro-tiny/README.md)"
else
  echo "engines/inspro-tiny/ kept: the dense recipe does not beat it yet"
fi
