#!/usr/bin/env bash
# INT8 against float frames/s, measured as a ratio in alternation: float, INT8, float, INT8, ...
# (ROUNDS pairs per model and thread count), so that the machine's drift between minutes hits
# both sides alike; prints one JSON line per pair and the median ratio per model and thread count.
#
#   scripts/int8-speed.sh            (MODELS="inspro-r50 inspro-lite-r18", THREADS="1 2",
#                                     ROUNDS=5, RUNS=6 timed frames per call, 640x360)
#
# The float and INT8 engines are exported once into out/engines/<model>-{float,int8} (gather
# pooler, INT8 calibrated on synthetic frames made here: timing does not depend on the data).
# Like scripts/bench.sh it refuses at a 1-minute load of 0.5 or more (FORCE=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/measure-common.sh
quiet_or_exit int8-speed
release_bin int8-speed "--features edge"
models="${MODELS:-inspro-r50 inspro-lite-r18}"
threads="${THREADS:-1 2}"
rounds="${ROUNDS:-5}"
runs="${RUNS:-6}"
size="${SIZE:-640x360}"
echo "int8-speed: $(date -u +%FT%TZ) $(nproc) cores, load=$load, $rounds rounds of $runs frames, $size" >&2

calib=out/bench-calibration
[ -d "$calib/JPEGImages" ] || "$bin" synth --out "$calib" --videos 4 --frames 8 --size 640x360 --seed 3 2>/dev/null
ms() {
  "$bin" bench --engine onnxruntime --model "$1" --engine-dir "$2" --size "$size" --threads "$3" \
    --runs "$runs" --json 2>/dev/null | tail -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["average_frame_ms"])'
}
for model in $models; do
  cfg="configs/models/$model.toml"
  float="out/engines/$model-float"
  int8="out/engines/$model-int8"
  [ -f "$float/manifest.json" ] || "$bin" export --model "$cfg" --out "$float" --pooler gather 2>/dev/null
  [ -f "$int8/manifest.json" ] || "$bin" export --model "$cfg" --out "$int8" --pooler gather --int8 \
    --calibrate "$calib" --calibration-frames 16 2>/dev/null
  for t in $threads; do
    ratios=()
    for r in $(seq "$rounds"); do
      f="$(ms "$cfg" "$float" "$t")"
      q="$(ms "$cfg" "$int8" "$t")"
      ratio="$(python3 -c "print(f'{$f / $q:.3f}')")"
      ratios+=("$ratio")
      echo "{\"int8_speed\":true,\"model\":\"$model\",\"threads\":$t,\"round\":$r,\"float_ms\":$f,\"int8_ms\":$q,\"ratio\":$ratio,\"load_average\":$load}"
    done
    python3 -c "
import statistics, sys
r = [float(x) for x in sys.argv[1:]]
print(f'int8-speed: $model, $t thread(s): INT8 / float frames/s median {statistics.median(r):.2f}x (each: {\", \".join(f\"{x:.2f}\" for x in r)})', file=sys.stderr)
" "${ratios[@]}"
  done
done
