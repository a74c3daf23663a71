#!/usr/bin/env bash
# One part of a training campaign longer than one sitting (issue 29): resume the run from the
# checkpoint committed in the repository, train for MINUTES, and put the new checkpoint, the
# metrics and the picture back there, ready to commit for the next part.
#
#   scripts/train-campaign.sh [MINUTES]        # default 60
#   CONFIG=configs/train/inspro-small-campaign.toml   (the campaign's training config)
#   CAMPAIGN=engines/inspro-small/campaign             (where its checkpoint is committed)
#   INSPRO_BIN=path                                    (a prebuilt binary; else cargo builds one)
#
# The first part starts from the config's `init`; every later part continues exactly where the
# last stopped (weights, optimiser moments, moving average, data-stream position and the hours
# trained so far: `inspro train --resume`). The checkpoint is `last.*` (about 27 MB for
# inspro-small); metrics.jsonl holds the learning curve (held-out AP against `train_hours`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
minutes="${1:-60}"
config="${CONFIG:-configs/train/inspro-small-campaign.toml}"
campaign="${CAMPAIGN:-engines/inspro-small/campaign}"
bin="${INSPRO_BIN:-./target/release/inspro}"
# The same features as `make demo`, so the two share one build.
[ -n "${INSPRO_BIN:-}" ] || cargo build --release --features edge --quiet
out="$(sed -n 's/^out_dir *= *"\(.*\)"/\1/p' "$config" | head -n1)"
[ -n "$out" ] || { echo "train-campaign: no out_dir in $config" >&2; exit 2; }
mkdir -p "$out" "$campaign"
resume=()
if [ -f "$campaign/last.json" ]; then
  # The committed checkpoint is the campaign's truth; a newer one in the run folder (a part that
  # was stopped before it copied back) wins.
  if [ ! -f "$out/last.json" ] || [ "$campaign/last.json" -nt "$out/last.json" ]; then
    cp -p "$campaign"/last.* "$out"/
    [ -f "$campaign/metrics.jsonl" ] && cp -p "$campaign/metrics.jsonl" "$out/metrics.jsonl"
  fi
  resume=(--resume)
elif [ -f "$out/last.json" ]; then
  resume=(--resume)
fi
echo "train-campaign: $config, ${minutes} min, ${resume[*]:-from init}"
"$bin" train --config "$config" "${resume[@]}" --max-minutes "$minutes"
cp -p "$out"/last.* "$out/metrics.jsonl" "$campaign"/
[ -f "$out/training.png" ] && cp -p "$out/training.png" "$campaign"/
python3 - "$campaign/last.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("train-campaign: iteration %d, %.2f hours of training; commit %s" % (s["iteration"], s.get("train_seconds", 0) / 3600, sys.argv[1].rsplit("/", 1)[0]))
PY
