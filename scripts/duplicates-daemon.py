#!/usr/bin/env python3
"""Live duplicate tracks and identity switches through the daemon, with and without merging.

For each seed a synthetic clip (`inspro synth --clip`, ground truth beside it) goes through
`inspro run --exit-on-eos` on a private mosquitto, once per `merge_iou` setting, with the
shipped model and the thresholds `make demo` uses; the per-frame `tracks` topic is matched to
the ground truth (a track belongs to the object its box overlaps most, IoU >= 0.5):

  extra tracks   live tracks on one object beyond the first, per object-frame
  switches       changes of the track that covers an object, per object
  covered        object-frames with at least one track

  .venv/bin/python scripts/duplicates-daemon.py [--bin target/release/inspro] [--seeds 9101 9202]
      [--merge 1.0 0.7] [--frames 60] [--size 320x192]

Seeds must be ones no config under configs/ uses (held out). Prints one line per setting and
seed, and the totals.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: max(0.0, r[2] - r[0]) * max(0.0, r[3] - r[1])
    return inter / max(area(a) + area(b) - inter, 1e-9)


def run_daemon(args, work, port, clip, merge):
    w, h = args.size.split("x")
    cfg = os.path.join(work, f"edge-{merge}.toml")
    with open(cfg, "w") as f:
        f.write(f"""[model]
config = "{HERE}/configs/models/inspro-tiny.toml"

[[camera]]
name = "cam"
uri = "file://{clip}"
width = {w}
height = {h}

[tracking]
birth_score = 0.15
min_frames = 2
keep_score = 0.1
birth_nms_iou = 0.5
merge_iou = {merge}

[publish]
tracks = true

[mqtt]
url = "mqtt://127.0.0.1:{port}"
client_id = "dup-{merge}"
topic_prefix = "dup"

[service]
spool_dir = "{work}/spool-{merge}"
metrics_listen = ""
""")
    frames = {}
    ends = []
    done = threading.Event()

    def on_message(_c, _u, m):
        if not m.topic.endswith(("/tracks", "/events")):
            return
        v = json.loads(m.payload)
        if m.topic == "dup/cam/tracks":
            frames[v["frame"]["index"]] = v["tracks"]
        elif m.topic == "dup/cam/events" and v.get("type") == "end":
            ends.append(v.get("reason"))

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_connect = lambda c, *_: (c.subscribe("dup/#", qos=1), done.set())
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    done.wait(10)
    env = dict(os.environ, RUST_LOG="warn")
    subprocess.run([args.bin, "run", "--config", cfg, "--exit-on-eos"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    time.sleep(1.0)
    sub.loop_stop()
    sub.disconnect()
    return frames, ends


def score(frames, gt):
    extra = switches = covered = object_frames = 0
    objects = 0
    for ann in gt["annotations"]:
        last = None
        seen = False
        for i, b in enumerate(ann["bboxes"]):
            if b is None:
                continue
            g = [b[0], b[1], b[0] + b[2], b[1] + b[3]]
            object_frames += 1
            seen = True
            on = []
            for t in frames.get(i, []):
                # The track belongs to the object its box overlaps most.
                best = max(
                    (iou(t["box"], [o["bboxes"][i][0], o["bboxes"][i][1],
                                    o["bboxes"][i][0] + o["bboxes"][i][2],
                                    o["bboxes"][i][1] + o["bboxes"][i][3]]), j)
                    for j, o in enumerate(gt["annotations"]) if o["bboxes"][i] is not None)
                if best[1] == gt["annotations"].index(ann) and best[0] >= 0.5:
                    on.append((iou(t["box"], g), t["id"]))
            if on:
                covered += 1
                extra += len(on) - 1
                tid = max(on)[1]
                if last is not None and tid != last:
                    switches += 1
                last = tid
        objects += int(seen)
    return dict(objects=objects, object_frames=object_frames, covered=covered, extra=extra,
                switches=switches)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "target/release/inspro"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[9101, 9202, 9303])
    ap.add_argument("--merge", nargs="+", default=["1.0", "0.7"])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", default="320x192")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="inspro-dup-")
    port = free_port()
    conf = os.path.join(work, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        if os.getuid() == 0:
            f.write("user root\n")
    broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    totals = {m: dict(objects=0, object_frames=0, covered=0, extra=0, switches=0, merged=0)
              for m in args.merge}
    try:
        for seed in args.seeds:
            clip = os.path.join(work, f"clip-{seed}.mkv")
            subprocess.run([args.bin, "synth", "--clip", clip, "--frames", str(args.frames),
                            "--size", args.size, "--seed", str(seed)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            gt = json.load(open(clip[:-4] + ".json"))
            for merge in args.merge:
                frames, ends = run_daemon(args, work, port, clip, merge)
                s = score(frames, gt)
                s["merged"] = sum(1 for r in ends if r == "merged")
                for k, v in s.items():
                    totals[merge][k] += v
                print(f"seed {seed} merge_iou {merge}: {s['objects']} objects, "
                      f"extra tracks {s['extra'] / max(s['object_frames'], 1):.3f} per object-frame, "
                      f"switches {s['switches'] / max(s['objects'], 1):.2f} per object, "
                      f"covered {s['covered'] / max(s['object_frames'], 1):.1%}, merged {s['merged']}",
                      flush=True)
    finally:
        broker.terminate()
    for merge, t in totals.items():
        print(f"total merge_iou {merge}: {t['objects']} objects, {t['object_frames']} object-frames: "
              f"extra tracks {t['extra'] / max(t['object_frames'], 1):.3f} per object-frame, "
              f"switches {t['switches'] / max(t['objects'], 1):.2f} per object, "
              f"covered {t['covered'] / max(t['object_frames'], 1):.1%}, merged {t['merged']}")


if __name__ == "__main__":
    sys.exit(main())
