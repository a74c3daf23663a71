#!/usr/bin/env python3
"""Masks apart from tracking, broken down: for every ground-truth object on every frame where it
is visible, the best mask IoU among all results of its video on that frame (what perfect
tracking would get), by object size (sqrt of the area, pixels), by how much of the object is
visible (its area over its largest area in the video), by class and by frame position.

Usage: .venv/bin/python scripts/mask-breakdown.py GT.json RESULTS.json [GT2.json RESULTS2.json ...]
(needs numpy; several pairs are pooled). docs/training.md has the tables it made."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from importlib import import_module

decode = import_module("mask-ceiling").decode


def rows(gt_path, res_path):
    gt = json.load(open(gt_path))
    res = json.load(open(res_path))
    names = {c["id"]: c["name"] for c in gt["categories"]}
    by_video = {}
    for r in res:
        by_video.setdefault(r["video_id"], []).append(r)
    # A slot's (slot, class) results share their masks: decode each distinct sequence once.
    for v in gt["videos"]:
        seqs, seen = [], set()
        for r in by_video.get(v["id"], []):
            key = json.dumps(r["segmentations"])
            if key not in seen:
                seen.add(key)
                seqs.append([decode(s) if s else None for s in r["segmentations"]])
        for a in (a for a in gt["annotations"] if a["video_id"] == v["id"]):
            masks = [decode(s) if s else None for s in a["segmentations"]]
            areas = [int(m.sum()) if m is not None else 0 for m in masks]
            top = max(areas) or 1
            n = len(masks)
            for f, g in enumerate(masks):
                if g is None or areas[f] == 0:
                    continue
                best = 0.0
                for s in seqs:
                    d = s[f] if f < len(s) else None
                    if d is None:
                        continue
                    inter = np.logical_and(d, g).sum()
                    union = np.logical_or(d, g).sum()
                    if union:
                        best = max(best, inter / union)
                yield {
                    "iou": best,
                    "size": areas[f] ** 0.5,
                    "visible": areas[f] / top,
                    "class": names[a["category_id"]],
                    "third": min(2, 3 * f // max(n, 1)),
                }


def table(rs):
    def line(name, sel):
        xs = [r["iou"] for r in rs if sel(r)]
        if not xs:
            return
        x = np.array(xs)
        print("| %s | %d | %.3f | %.0f %% | %.0f %% |"
              % (name, len(x), x.mean(), 100 * (x >= 0.75).mean(), 100 * (x < 0.3).mean()))

    print("| object-frames | count | mean best IoU | >= 0.75 | < 0.3 |")
    print("|---|---|---|---|---|")
    line("all", lambda r: True)
    for lo, hi in [(0, 15), (15, 25), (25, 35), (35, 50), (50, 1e9)]:
        line("size %s-%s px" % (lo, hi if hi < 1e9 else ""), lambda r, lo=lo, hi=hi: lo <= r["size"] < hi)
    for lo, hi, name in [(0, 0.5, "visible < 50 %"), (0.5, 0.8, "visible 50-80 %"),
                         (0.8, 0.95, "visible 80-95 %"), (0.95, 2, "visible >= 95 %")]:
        line(name, lambda r, lo=lo, hi=hi: lo <= r["visible"] < hi)
    for t, name in enumerate(["first third of the video", "middle third", "last third"]):
        line(name, lambda r, t=t: r["third"] == t)
    for c in sorted({r["class"] for r in rs}):
        line("class %s" % c, lambda r, c=c: r["class"] == c)


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    rs = []
    for gt_path, res_path in zip(args[::2], args[1::2]):
        rs.extend(rows(gt_path, res_path))
    table(rs)


if __name__ == "__main__":
    main()
