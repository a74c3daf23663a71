#!/usr/bin/env bash
# Re-make the shipped weights from nothing on a 2-core CPU, in one command:
#   1. engines/inspro-tiny/model.safetensors (the stride-8 model, about 100 minutes): the paper's
#      recipe on 200 fixed synthetic videos (17,000 iterations), then 2,000 iterations with our
#      training signals (synthetic stream, denoising queries, semantic loss);
#   2. engines/inspro-small/model.safetensors (the shipped default, masks at stride 4): the
#      stride-4 campaign, configs/train/inspro-small-campaign.toml, 40,000 iterations from those
#      tiny weights, its weight average (about 7.5 hours alone on the 2-vCPU Xeon at 1.5
#      iterations/s; the shipped file took 10.7 wall-clock hours in six parts, resumed with
#      scripts/train-campaign.sh, with other work beside it).
# engines/inspro-tiny/README.md and engines/inspro-small/README.md have the numbers.
#   INSPRO_BIN=path    a prebuilt binary (no cargo)
#   ONLY=tiny|small    one of the two (small starts from the committed tiny weights)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${INSPRO_BIN:-./target/release/inspro}"
[ -n "${INSPRO_BIN:-}" ] || cargo build --release --quiet
only="${ONLY:-}"
if [ "$only" != small ]; then
  "$bin" train --config configs/train/inspro-tiny-synth.toml
  # Phase 2 starts from phase 1's weights (its config's `init` names the shipped file, so point
  # it at this run's instead).
  mkdir -p runs/inspro-tiny-finetune
  sed 's#^init = .*#init = "runs/inspro-tiny-synth/final.safetensors"#' \
    configs/train/inspro-tiny-finetune.toml > runs/inspro-tiny-finetune/from-phase-1.toml
  "$bin" train --config runs/inspro-tiny-finetune/from-phase-1.toml
  cp runs/inspro-tiny-finetune/final.safetensors engines/inspro-tiny/model.safetensors
  cp configs/models/inspro-tiny.toml engines/inspro-tiny/model.toml
  echo "engines/inspro-tiny/model.safetensors re-made"
fi
if [ "$only" != tiny ]; then
  # The campaign in one go, in its own folder (the committed campaign checkpoint is left alone).
  mkdir -p runs/inspro-small-shipped
  sed 's#^out_dir = .*#out_dir = "runs/inspro-small-shipped"#' \
    configs/train/inspro-small-campaign.toml > runs/inspro-small-shipped/campaign.toml
  "$bin" train --config runs/inspro-small-shipped/campaign.toml
  cp runs/inspro-small-shipped/final.ema.safetensors engines/inspro-small/model.safetensors
  cp configs/models/inspro-small.toml engines/inspro-small/model.toml
  echo "engines/inspro-small/model.safetensors re-made"
fi
