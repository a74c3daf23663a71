#!/usr/bin/env bash
# What INT8 costs in accuracy: the shipped model exported as float and as INT8 graphs (calibrated
# on the training split's frames), both run by ONNX Runtime over held-out synthetic videos
# (seeds that appear in no config), scored with the official video AP.
#
#   scripts/int8-ap.sh [SEED...]        (default: 8484 4242 7373)
#
# Env: MODEL (engines/inspro-small/model.toml), WEIGHTS (its model.safetensors), CALIBRATE (a
# YouTube-VIS folder; default: data/synth-train, made with `inspro synth` if missing), INT8_FOR
# (cpu | tensorrt), INT8_ARGS (more `inspro export` flags, e.g. `--int8-keep-float mask_branch`
# or `--calibration-frames 256`). Prints one line per seed and engine, then the mean AP change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/measure-common.sh
release_bin int8-ap ""
CALIBRATE="${CALIBRATE:-data/synth-train}"
INT8_FOR="${INT8_FOR:-cpu}"
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(8484 4242 7373)
size="$(sed -n 's/^input_size *= *\[ *\([0-9]*\) *, *\([0-9]*\) *\].*/\1x\2/p' "$MODEL" | head -1)"
size="${size:-320x192}"
[ -d "$CALIBRATE/JPEGImages" ] || "$bin" synth --out "$CALIBRATE" --videos 8 --frames 8 --size "$size" --seed 1 2>/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" export --model "$MODEL" --weights "$WEIGHTS" --out "$work/fp32" --pooler gather 2>/dev/null
"$bin" export --model "$MODEL" --weights "$WEIGHTS" --out "$work/int8" --pooler gather \
  --int8 --int8-for "$INT8_FOR" --calibrate "$CALIBRATE" ${INT8_ARGS:-} 2>&1 | grep '^int8' >&2
for seed in "${seeds[@]}"; do
  data="data/synth-unseen-$seed"
  [ -f "$data/instances.json" ] || "$bin" synth --out "$data" --videos 12 --frames 24 --size "$size" --seed "$seed" 2>/dev/null
  for engine in fp32 int8; do
    "$bin" segment --ytvis "$data" --gt "$data/instances.json" --results "$work/$seed-$engine.json" \
      --model "$MODEL" --engine-dir "$work/$engine" >/dev/null 2>&1
    "$bin" eval --gt "$data/instances.json" --results "$work/$seed-$engine.json" --json 2>/dev/null \
      | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'seed': $seed, 'engine': '$engine', 'ap': 100*d['ap'], 'ap50': 100*d['ap50'], 'ap75': 100*d['ap75']}))"
  done
done | tee "$work/ap.jsonl"
python3 - "$work/ap.jsonl" <<'EOF' >&2
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["seed"], r["engine"]): r for r in rows}
deltas = [by[(s, "int8")]["ap"] - by[(s, "fp32")]["ap"] for s in sorted({r["seed"] for r in rows})]
for s, d in zip(sorted({r["seed"] for r in rows}), deltas):
    print(f"seed {s}: AP {by[(s, 'fp32')]['ap']:.2f} float, {by[(s, 'int8')]['ap']:.2f} int8 ({d:+.2f})")
print(f"mean AP change int8 - float: {sum(deltas) / len(deltas):+.2f} over {len(deltas)} seeds")
EOF
