#!/usr/bin/env bash
# `make demo`: the daemon end to end on this machine, in about a minute.
#   1. a private mosquitto on a free loopback port (config and data in a temp dir),
#   2. a synthetic clip (`inspro synth --clip`, H.264 in Matroska, with its ground truth),
#   3. `inspro run --exit-on-eos --overlay-dir out/` on it, the events printed as they arrive,
#   4. out/demo-overlay.mkv (masks, boxes, track ids drawn) and out/demo-sheet.png.
# Everything it starts is stopped on exit. Environment: FRAMES (60), SIZE (320x192), SEED (7),
# MODEL (inspro-small, the shipped default; a name under configs/models/), BIRTH_SCORE,
# KEEP_SCORE, BIRTH_NMS_IOU (unset: the daemon's defaults, 0.5, 0.3 and 1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
frames="${FRAMES:-60}"
size="${SIZE:-320x192}"
seed="${SEED:-7}"
model="${MODEL:-inspro-small}"
out="$here/out"
work="$out/demo"
mkdir -p "$work"
rm -rf "$work/spool"

echo "demo: building inspro with the daemon (cargo build --release --features edge)"
cargo build --release --features edge --quiet
bin="$here/target/release/inspro"

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# mosquitto has no "port 0": ask the kernel for a free port, then write it into a config.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
{
  echo "listener $port 127.0.0.1"
  echo "allow_anonymous true"
  echo "persistence false"
  # As root mosquitto would drop to user `mosquitto`.
  [ "$(id -u)" -eq 0 ] && echo "user root"
} > "$tmp/mosquitto.conf"
mosquitto -c "$tmp/mosquitto.conf" > "$tmp/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
echo "demo: mosquitto on 127.0.0.1:$port"

"$bin" synth --clip "$work/clip.mkv" --frames "$frames" --size "$size" --seed "$seed" 2>/dev/null
echo "demo: clip $work/clip.mkv ($frames frames, $size; ground truth in clip.json)"

weights_note=""
# The shipped inspro-small runs at the daemon's own defaults (birth / keep score 0.5 / 0.3, no
# birth NMS; engines/inspro-small/README.md). BIRTH_SCORE, KEEP_SCORE and BIRTH_NMS_IOU override
# them, e.g. MODEL=inspro-tiny BIRTH_SCORE=0.15 KEEP_SCORE=0.1 BIRTH_NMS_IOU=0.5 for the older
# stride-8 model, whose scores rarely pass 0.3.
tracking=$'[tracking]\n'
[ -n "${BIRTH_SCORE:-}" ] && tracking+="birth_score = $BIRTH_SCORE"$'\n'
[ -n "${KEEP_SCORE:-}" ] && tracking+="keep_score = $KEEP_SCORE"$'\n'
[ -n "${BIRTH_NMS_IOU:-}" ] && tracking+="birth_nms_iou = $BIRTH_NMS_IOU"$'\n'
if ! ls "$here/engines/$model"/*.safetensors >/dev/null 2>&1; then
  # No trained model yet: random weights score every slot low, so let every slot be a track to
  # show the plumbing. The masks are then meaningless.
  weights_note="NOTE: no trained weights in engines/$model/ yet: RANDOM weights and zero thresholds, so the tracks and masks are meaningless (the plumbing is real)."
  tracking=$'[tracking]\nbirth_score = 0.0\nmin_frames = 1\nkeep_score = 0.0\n'
fi
w="${size%x*}"; h="${size#*x}"
cat > "$work/edge.toml" <<EOF
[model]
config = "$here/configs/models/$model.toml"

[[camera]]
name = "demo"
uri = "file://$work/clip.mkv"
width = $w
height = $h

$tracking
[mqtt]
url = "mqtt://127.0.0.1:$port"
client_id = "inspro-demo"
topic_prefix = "inspro"

[publish]
update_interval_s = 1.0
heartbeat_s = 2.0

[service]
spool_dir = "$work/spool"
metrics_listen = ""
stats_interval_s = 2.0
EOF
"$bin" config check "$work/edge.toml"
[ -n "$weights_note" ] && echo "demo: $weights_note"

# Print the events as they arrive: one line each (the full JSON is in out/demo/events.jsonl).
# mosquitto_sub writes into a FIFO; the printer ends when mosquitto_sub is stopped.
mkfifo "$tmp/events"
python3 -u -c '
import json, sys
out = open(sys.argv[1], "w")
for line in sys.stdin:
    topic, _, payload = line.rstrip("\n").partition(" ")
    if topic.endswith("/events"):
        out.write(payload + "\n"); out.flush()
        e = json.loads(payload); a = e["after"]; m = a.get("mask") or {}
        box = ",".join("%.0f" % v for v in a["box"])
        mask = "mask %s %sx%s at %s" % (m.get("format"), *(m.get("size") or ["?", "?"]), m.get("origin")) if m else "no mask"
        print("%-8s %-6s track %-3d %-8s score %.2f box [%s] %s" % (e["camera"], e["type"], a["id"], a["label"], a["score"], box, mask))
    elif topic.endswith("/stats"):
        s = json.loads(payload)
        for name, c in s["cameras"].items():
            print("%-8s stats  %.1f fps, engine %.1f ms/frame, %d tracks open" % (name, c["fps"], c["ms"]["engine"], c["tracks_active"]))
    else:
        print("%-15s %s" % (topic, payload))
' "$work/events.jsonl" < "$tmp/events" &
pids+=($!)
printer_pid=$!
mosquitto_sub -h 127.0.0.1 -p "$port" -t 'inspro/#' -v > "$tmp/events" 2>/dev/null &
pids+=($!)
sub_pid=$!
sleep 0.2

echo "demo: inspro run --config $work/edge.toml --exit-on-eos --overlay-dir $out"
RUST_LOG="${RUST_LOG:-warn}" "$bin" run --config "$work/edge.toml" --exit-on-eos --overlay-dir "$out"
sleep 0.5
kill "$sub_pid" 2>/dev/null || true
wait "$printer_pid" 2>/dev/null || true

n() { grep -c "\"type\":\"$1\"" "$work/events.jsonl" || true; }
echo
echo "demo: $(n new) new, $(n update) update, $(n end) end events (out/demo/events.jsonl)"
echo "demo: overlay video  $out/demo-overlay.mkv"
echo "demo: contact sheet  $out/demo-sheet.png"
[ -n "$weights_note" ] && echo "demo: $weights_note"
exit 0
