#!/usr/bin/env bash
# Re-make the shipped weights (engines/inspro-tiny/model.safetensors) from nothing on a 2-core CPU,
# about 100 minutes of training: the paper's recipe on 200 fixed synthetic videos (17,000
# iterations), then 2,000 iterations with our training signals (synthetic stream, denoising
# queries, semantic loss). engines/inspro-tiny/README.md has the numbers.
#   INSPRO_BIN=path    a prebuilt binary (no cargo)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${INSPRO_BIN:-./target/release/inspro}"
[ -n "${INSPRO_BIN:-}" ] || cargo build --release --quiet
"$bin" train --config configs/train/inspro-tiny-synth.toml
# Phase 2 starts from phase 1's weights (its config's `init` names the shipped file, so point it
# at this run's instead).
mkdir -p runs/inspro-tiny-finetune
sed 's#^init = .*#init = "runs/inspro-tiny-synth/final.safetensors"#' \
  configs/train/inspro-tiny-finetune.toml > runs/inspro-tiny-finetune/from-phase-1.toml
"$bin" train --config runs/inspro-tiny-finetune/from-phase-1.toml
cp runs/inspro-tiny-finetune/final.safetensors engines/inspro-tiny/model.safetensors
cp configs/models/inspro-tiny.toml engines/inspro-tiny/model.toml
echo "engines/inspro-tiny/model.safetensors re-made"
