#!/usr/bin/env python3
"""Print the tracks the `inspro` element attaches to every buffer (GstCustomMeta
"InsProTracksMeta"), read by name with PyGObject only (no gst-python overrides needed).

    GST_PLUGIN_PATH=target/release python3 gst/examples/read_meta.py \
        "filesrc location=clip.mkv ! decodebin ! videoconvert ! inspro model=... ! fakesink name=sink"

The pipeline must have an element named `sink`; the meta is read on its sink pad.
"""
import sys
import warnings

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

# GValueArray.get_nth is the only way to index a GstValueArray without gst-python's overrides.
warnings.filterwarnings("ignore", "GObject.ValueArray.get_nth is deprecated", DeprecationWarning)


def values(structure, field):
    """A GstValueArray field as a Python list."""
    ok, array = structure.get_array(field)
    if not ok:
        raise KeyError(field)
    return [array.get_nth(i) for i in range(array.n_values)]


def on_buffer(pad, info):
    buf = info.get_buffer()
    meta = buf.get_custom_meta("InsProTracksMeta")
    if meta is None:
        print("no InsProTracksMeta on buffer", buf.pts)
        return Gst.PadProbeReturn.OK
    s = meta.get_structure()
    ids = values(s, "ids")
    labels = values(s, "labels")
    scores = values(s, "scores")
    boxes = values(s, "boxes")  # x0, y0, x1, y1 per track, frame pixels
    rects = values(s, "mask-rects")  # x, y, w, h of each mask's crop
    masks = values(s, "masks")  # COCO compressed RLE counts, size [h, w] of the crop
    tracks = [
        f"id {i} {label} {score:.2f} box {boxes[4*k:4*k+4]} mask {rects[4*k+2]}x{rects[4*k+3]} rle {len(masks[k])} chars"
        for k, (i, label, score) in enumerate(zip(ids, labels, scores))
    ]
    print(f"frame {s.get_value('frame')}: {len(ids)} tracks; ended {values(s, 'ended-ids')}; " + "; ".join(tracks))
    return Gst.PadProbeReturn.OK


def main():
    Gst.init(None)
    launch = sys.argv[1] if len(sys.argv) > 1 else (
        "videotestsrc num-buffers=30 ! video/x-raw,width=320,height=192 "
        "! inspro model=configs/models/inspro-tiny.toml ! fakesink name=sink"
    )
    pipeline = Gst.parse_launch(launch)
    sink = pipeline.get_by_name("sink")
    sink.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_buffer)
    loop = GLib.MainLoop()
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    status = {"code": 0}

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            print(f"error: {err.message} ({debug})", file=sys.stderr)
            status["code"] = 1
            loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            loop.quit()

    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        loop.run()
    finally:
        pipeline.set_state(Gst.State.NULL)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
