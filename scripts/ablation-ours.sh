#!/usr/bin/env bash
# Our training changes (docs/model.md "Ours"), one row each, at an equal budget of 1,000
# iterations: the paper's recipe on 200 fixed videos, + the synthetic stream, + denoising queries,
# + the semantic loss, and the paper's recipe started from the pre-trained trunk. Each row ends
# with the official video AP on the held-out videos (seed 1001), the class accuracy of each
# object's best-overlapping track and the linear probe of the RoI features.
#
#   scripts/ablation-ours.sh [SEED]       # default 0
#   INSPRO_BIN=path                       # a prebuilt binary (no cargo)
# Results: runs/ablation/ours.jsonl (one line per row) and a table on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${INSPRO_BIN:-./target/release/inspro}"
seed="${1:-0}"
[ -n "${INSPRO_BIN:-}" ] || cargo build --release --quiet
[ -f runs/inspro-tiny-trunk/final.safetensors ] || "$bin" train --config configs/train/inspro-tiny-trunk.toml
mkdir -p runs/ablation
for row in paper stream dn semantic pretrained; do
  dir="runs/ablation/ours-$row-s$seed"
  [ -f "$dir/final.safetensors" ] || "$bin" train --config "configs/train/ablation/ours-$row.toml" \
    --seed "$seed" --out-dir "$dir" > "$dir.log" 2>&1
done
python3 - "$seed" <<'PY'
import json, sys
seed = sys.argv[1]
out = open("runs/ablation/ours.jsonl", "a")
print(f"{'row':<11} {'it/s':>5} {'AP':>6} {'AP50':>6} {'class':>6} {'probe':>6} {'chance':>6}")
for row in ["paper", "stream", "dn", "semantic", "pretrained"]:
    lines = [json.loads(l) for l in open(f"runs/ablation/ours-{row}-s{seed}/metrics.jsonl")]
    ev = [l for l in lines if "eval" in l][-1]
    pr = [l for l in lines if "probe" in l][-1]
    ips = [l["iter_per_s"] for l in lines if "iter_per_s" in l]
    r = {"row": row, "seed": int(seed), "iterations": ev["iteration"],
         "ap": ev["eval"]["ap"], "ap50": ev["eval"]["ap50"],
         "class_accuracy": ev["tracks"]["best_track_class_accuracy"],
         "probe": pr["probe"]["test_accuracy"], "chance": pr["probe"]["majority_accuracy"],
         "iter_per_s": sorted(ips)[len(ips) // 2]}
    out.write(json.dumps(r) + "\n")
    print(f"{row:<11} {r['iter_per_s']:5.2f} {100*r['ap']:6.2f} {100*r['ap50']:6.2f} "
          f"{100*r['class_accuracy']:6.1f} {100*r['probe']:6.1f} {100*r['chance']:6.1f}")
PY
