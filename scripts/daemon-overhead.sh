#!/usr/bin/env bash
# The daemon's overhead: frames/s of the whole daemon (GStreamer decode, engine, tracks, RLE
# masks, MQTT publish to a real mosquitto) against the engine alone (`inspro bench --cameras
# --clip`, the same engine path on the same clip's frames, decoded before timing, without
# GStreamer and MQTT), for 1 and 4 cameras, shipped weights.
#
#   scripts/daemon-overhead.sh [CAMERAS...]      (default: 1 4)
#
# Env: MODEL (default engines/inspro-small/model.toml), WEIGHTS (its model.safetensors; random
# weights when there is no such file), SIZE
# (320x192), FRAMES per clip (900: 7-20 s of daemon), KIND (onnxruntime; candle; or default:
# the daemon with no [engine] section, against the engine alone on ONNX Runtime), REPEAT
# (3: how many times each count is measured, the counts in alternation; the machine's speed
# drifts by up to 20 % between minutes, so the summary takes the median ratio and the ratio of
# the means). Prints one JSON line per measurement and a summary. Like scripts/bench.sh
# it refuses at a 1-minute load of 0.5 or more (FORCE=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/measure-common.sh
quiet_or_exit daemon-overhead
release_bin daemon-overhead "--features edge"
SIZE="${SIZE:-320x192}"
FRAMES="${FRAMES:-900}"
KIND="${KIND:-onnxruntime}"
# The engine alone runs ONNX Runtime for the daemon's default.
bench_kind="$([ "$KIND" = default ] && echo onnxruntime || echo "$KIND")"
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 4)

work="$(mktemp -d)"
broker=""
cleanup() { [ -n "$broker" ] && kill "$broker" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n%s' \
  "$port" "$([ "$(id -u)" = 0 ] && echo 'user root')" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
broker=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

"$bin" synth --clip "$work/clip.mkv" --frames "$FRAMES" --size "$SIZE" --seed 17 2>/dev/null
echo "daemon-overhead: $(date -u +%FT%TZ) $(nproc) cores, load=$load, $MODEL ($KIND), $FRAMES frames of $SIZE per camera" >&2

# Another config without trained weights runs with random ones (timing does not depend on them).
weights_flag=() weights_line=""
if [ -f "$WEIGHTS" ]; then
  weights_flag=(--weights "$WEIGHTS") weights_line="weights = \"$PWD/$WEIGHTS\""
else
  echo "daemon-overhead: no $WEIGHTS: random weights" >&2
fi
engine_alone() {
  "$bin" bench --engine "$bench_kind" --model "$MODEL" "${weights_flag[@]}" --clip "$work/clip.mkv" \
    --cameras "$1" --seconds 10 --json 2>/dev/null | tail -1
}
REPEAT="${REPEAT:-3}"
for rep in $(seq "$REPEAT"); do
for n in "${counts[@]}"; do
  # The engine alone before and after the daemon (the machine's speed drifts; their mean is
  # the reference, both are printed).
  before="$(engine_alone "$n")"
  {
    printf '[model]\nconfig = "%s"\n%s\n\n' "$PWD/$MODEL" "$weights_line"
    # KIND=default leaves [engine] out: the daemon's own default (ONNX Runtime, provider auto).
    [ "$KIND" = default ] || printf '[engine]\nkind = "%s"\n\n' "$KIND"
    printf '[mqtt]\nurl = "mqtt://127.0.0.1:%s"\nclient_id = "overhead"\ntopic_prefix = "o"\n\n' "$port"
    printf '[service]\nspool_dir = "%s"\nmetrics_listen = ""\n\n' "$work/spool-$n"
    for i in $(seq "$n"); do
      printf '[[camera]]\nname = "cam%s"\nuri = "file://%s"\n\n' "$i" "$work/clip.mkv"
    done
  } > "$work/edge-$n.toml"
  RUST_LOG=inspro=info "$bin" run --config "$work/edge-$n.toml" --exit-on-eos > "$work/daemon-$n.log" 2>&1 \
    || { echo "daemon-overhead: the daemon failed:" >&2; tail -20 "$work/daemon-$n.log" >&2; exit 1; }
  daemon="$(grep 'end of stream' "$work/daemon-$n.log" | sed 's/\x1b\[[0-9;]*m//g' \
    | sed -n 's/.*fps="\{0,1\}\([0-9.]*\)"\{0,1\} engine_ms="\{0,1\}\([0-9.]*\)"\{0,1\} events_ms="\{0,1\}\([0-9.]*\)"\{0,1\} queue_wait_ms="\{0,1\}\([0-9.]*\)"\{0,1\}.*/\1 \2 \3 \4/p')"
  [ -n "$daemon" ] || { echo "daemon-overhead: no end-of-stream lines in the log" >&2; tail -20 "$work/daemon-$n.log" >&2; exit 1; }
  after="$(engine_alone "$n")"
  python3 - "$n" "$load" "$before" "$after" <<EOF
import json, sys
n, load = int(sys.argv[1]), float(sys.argv[2])
alone = [json.loads(a)["aggregate_fps"] for a in sys.argv[3:5]]
engine = sum(alone) / 2
rows = [list(map(float, l.split())) for l in """$daemon""".strip().splitlines()]
fps = sum(r[0] for r in rows)
mean = lambda k: sum(r[k] for r in rows) / len(rows)
out = {"cameras": n, "repeat": $rep, "load_average": load, "daemon_fps": fps, "engine_fps": engine,
       "engine_fps_before_after": alone, "ratio": fps / engine,
       "daemon_per_camera_fps": [r[0] for r in rows],
       "ms_per_frame": {"engine_and_tracks": mean(1), "events_rle_publish": mean(2), "queue_wait": mean(3)}}
print(json.dumps(out))
print(f"{n} camera(s): daemon {fps:.2f} frames/s, engine alone {engine:.2f} frames/s ({alone[0]:.2f} before, {alone[1]:.2f} after) = {100*fps/engine:.1f} %; "
      f"per frame: engine+tracks {mean(1):.2f} ms, events+RLE+publish {mean(2):.2f} ms, queue wait {mean(3):.2f} ms", file=sys.stderr)
EOF
done
done | tee "$work/lines.jsonl"
python3 - "$work/lines.jsonl" <<'EOF' >&2
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for n in sorted({r["cameras"] for r in rows}):
    mine = [r for r in rows if r["cameras"] == n]
    ratios = [r["ratio"] for r in mine]
    means = statistics.mean(r["daemon_fps"] for r in mine) / statistics.mean(r["engine_fps"] for r in mine)
    print(f"{n} camera(s): daemon / engine alone, median of {len(ratios)}: {100 * statistics.median(ratios):.1f} % "
          f"(each: {', '.join(f'{100 * x:.1f}' for x in ratios)}); ratio of the means {100 * means:.1f} %")
EOF
