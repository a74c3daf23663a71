#!/usr/bin/env bash
# The paper's ablation (Table 2a-c) in miniature, on `inspro synth` data: variants A-E of
# configs/train/ablation/, each trained with the same data and budget for every seed, then scored
# on the held-out split (seed 1001) with the official video AP; E is scored with T = 1 / 9 / 18.
# Also scores each run class-agnostically (scripts/class_agnostic.py: one result per slot, one
# category): finding, segmenting and tracking objects whatever class they are given, and counts
# duplicate tracks there (pairs of slots of one video, both scoring >= 0.1, with spatio-temporal
# mask IoU >= 0.5: what the box deduplication loss is meant to remove).
#
#   scripts/ablation.sh [SEEDS...]        # default: 0 1
#   JOBS=2 scripts/ablation.sh 0 1        # two single-threaded trainings at once
#   INSPRO_BIN=path ITERATIONS=N          # a prebuilt binary (no cargo); a shorter smoke run
# Results: runs/ablation/results.jsonl (one line per run and T) and a table on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${INSPRO_BIN:-./target/release/inspro}"
iters=()
[ -n "${ITERATIONS:-}" ] && iters=(--iterations "$ITERATIONS")
if [ $# -gt 0 ]; then seeds=("$@"); else seeds=(0 1); fi
jobs="${JOBS:-1}"
out=runs/ablation
mkdir -p "$out"
: > "$out/results.jsonl" # every run is scored afresh (trainings with a final checkpoint are kept)
[ -n "${INSPRO_BIN:-}" ] || cargo build --release --quiet
# The splits the configs name, made once before the parallel runs (same options as their
# [data.synth_*] sections).
[ -f data/synth-train/instances.json ] || "$bin" synth --out data/synth-train --videos 200 --frames 24 --size 320x192 --seed 1
[ -f data/synth-val/instances.json ] || "$bin" synth --out data/synth-val --videos 20 --frames 24 --size 320x192 --seed 1001

model_with() { # variant T propagate -> path of a model config with those overrides
  local f="$out/model-$1-T$2.toml"
  grep -v -E '^(bank_size|propagate) *=' configs/models/inspro-tiny.toml > "$f"
  printf 'bank_size = %s\npropagate = %s\n' "$2" "$3" >> "$f"
  echo "$f"
}

run_one() { # variant seed
  local v=$1 s=$2 dir="$out/$1-s$2"
  if [ ! -f "$dir/final.safetensors" ]; then
    "$bin" train --config "configs/train/ablation/$v.toml" --seed "$s" --out-dir "$dir" "${iters[@]}" > "$dir.log" 2>&1
  fi
  local ts=1 prop=true
  [ "$v" = E ] && ts="1 9 18"
  [ "$v" = A ] && prop=false
  for t in $ts; do
    local m; m=$(model_with "$v" "$t" "$prop")
    "$bin" segment --ytvis data/synth-val --gt data/synth-val/instances.json --model "$m" \
      --weights "$dir/final.safetensors" --results "$dir/results-T$t.json" --threads 1 2>>"$dir.log"
    local ev; ev=$("$bin" eval --gt data/synth-val/instances.json --results "$dir/results-T$t.json" --json --duplicates)
    python3 scripts/class_agnostic.py data/synth-val/instances.json "$dir/results-T$t.json" "$dir/agnostic-T$t"
    local ag; ag=$("$bin" eval --gt "$dir/agnostic-T$t/gt.json" --results "$dir/agnostic-T$t/results.json" --json --duplicates --dup-score 0.1)
    printf '{"variant":"%s","seed":%s,"T":%s,"eval":%s,"agnostic":%s}\n' "$v" "$s" "$t" "$ev" "$ag" >> "$out/results.jsonl"
  done
}

pids=()
for v in A B C D E; do
  for s in "${seeds[@]}"; do
    run_one "$v" "$s" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
done
wait
python3 - "$out/results.jsonl" <<'PY'
import json, sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault((r["variant"], r["T"]), []).append(dict(r["eval"], agnostic=r.get("agnostic")))
print("| variant | T | seeds | AP (mean ± spread) | AP50 | AR1 | AR10 | class-agnostic AP | class-agnostic AR10 | duplicate tracks |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (v, t), evs in sorted(rows.items()):
    ap = [100 * e["ap"] for e in evs]
    spread = (max(ap) - min(ap)) / 2 if len(ap) > 1 else 0.0
    m = lambda k: st.mean(100 * e[k] for e in evs)
    ags = [e["agnostic"] for e in evs if e["agnostic"]]
    ag = [100 * a["ap"] for a in ags]
    ag_s = f"{st.mean(ag):.2f} ± {(max(ag) - min(ag)) / 2:.2f}" if ag else "-"
    ag_r = f"{st.mean(100 * a['ar10'] for a in ags):.1f}" if ags else "-"
    dup = f"{st.mean(a.get('duplicates', 0) for a in ags):.1f}" if ags else "-"
    print(f"| {v} | {t} | {len(evs)} | {st.mean(ap):.2f} ± {spread:.2f} | {m('ap50'):.2f} | {m('ar1'):.1f} | {m('ar10'):.1f} | {ag_s} | {ag_r} | {dup} |")
PY
