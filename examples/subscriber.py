#!/usr/bin/env python3
"""A subscriber of InsPro Edge's events: prints one line per event and decodes its mask.

Subscribes to `<prefix>/+/events` (the daemon's track events: new, update, end, line), decodes
each COCO RLE mask with pycocotools into an `h x w` array (the box crop, placed at `origin` in
the frame; or the whole frame with `mask_region = "frame"`) and checks that the array has the
event's `mask.pixels` pixels. Exits after `--count` events or `--seconds` (0 = run until
interrupted); with `--check`, exits 1 when any mask did not decode to its size and area.

    .venv/bin/python examples/subscriber.py --host 127.0.0.1 --port 1883 --prefix inspro

Needs paho-mqtt (2.x) and pycocotools (`scripts/setup.sh python` installs both into .venv).
"""
import argparse
import json
import sys
import time

import numpy as np
import paho.mqtt.client as mqtt
from pycocotools import mask as coco_mask


def decode(m):
    """The event's mask as an array of 0/1 (h x w), or None for no or polygon masks."""
    if not m or m.get("format") != "coco_rle":
        return None
    h, w = m["size"]
    arr = coco_mask.decode({"size": [h, w], "counts": m["counts"].encode()})
    return np.asarray(arr, dtype=np.uint8)


def describe(e, arr):
    if e.get("type") == "line":
        a = e["after"]
        return f'{e["camera"]:<8} line   {e["line"]} {e["direction"]} track {a["id"]} {a["label"]}'
    a = e["after"]
    box = ",".join(f"{v:.0f}" for v in a["box"])
    mask = "no mask"
    if arr is not None:
        at = a["mask"].get("origin", [0, 0])
        mask = f"mask {arr.shape[1]}x{arr.shape[0]} at {at}, {int(arr.sum())} px"
    return (f'{e["camera"]:<8} {e["type"]:<6} track {a["id"]:<3} {a["label"]:<10} '
            f'score {a["score"]:.2f} box [{box}] {mask}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--prefix", default="inspro")
    ap.add_argument("--username")
    ap.add_argument("--password")
    ap.add_argument("--count", type=int, default=0, help="stop after this many events (0: no limit)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: no limit)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a mask does not match its event")
    args = ap.parse_args()

    seen = {"events": 0, "masks": 0, "bad": 0}

    def on_connect(client, _userdata, _flags, reason, _props):
        if reason.is_failure:
            print(f"connect failed: {reason}", file=sys.stderr)
            return
        # QoS 1: new and end events are published at QoS 1 by default.
        client.subscribe(f"{args.prefix}/+/events", qos=1)

    def on_subscribe(_client, _userdata, _mid, _reasons, _props):
        print(f"subscribed to {args.prefix}/+/events", file=sys.stderr, flush=True)

    def on_message(_client, _userdata, msg):
        try:
            e = json.loads(msg.payload)
        except ValueError as err:
            print(f"{msg.topic}: not JSON ({err})", file=sys.stderr)
            seen["bad"] += 1
            return
        m = (e.get("after") or {}).get("mask")
        arr = decode(m)
        if arr is not None:
            seen["masks"] += 1
            ok = list(arr.shape) == list(m["size"]) and int(arr.sum()) == m.get("pixels")
            if not ok:
                seen["bad"] += 1
                print(f"{msg.topic}: mask decodes to {arr.shape}, {int(arr.sum())} px; "
                      f"the event says {m['size']}, {m.get('pixels')} px", file=sys.stderr)
        seen["events"] += 1
        print(describe(e, arr), flush=True)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if args.username:
        client.username_pw_set(args.username, args.password)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    start = time.monotonic()
    try:
        while not (args.count and seen["events"] >= args.count):
            if args.seconds and time.monotonic() - start > args.seconds:
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    client.loop_stop()
    client.disconnect()
    print(f'{seen["events"]} events, {seen["masks"]} masks decoded, {seen["bad"]} bad',
          file=sys.stderr)
    if args.check and seen["bad"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
