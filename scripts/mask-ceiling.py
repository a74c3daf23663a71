#!/usr/bin/env python3
"""What a mask grid of stride s can hold at all: every ground-truth mask of a YouTube-VIS json,
area-averaged to the stride-s grid, bilinearly resampled back (cell i at pixel s*i + s/2, as the
model's logits), thresholded at 0.5.

Prints (1) the mean IoU with the original (every 4th frame), per class and per object size, and
(2) the video AP ceiling: the ground truth itself as results (perfect class, identity and score
1), every mask through the grid, scored by the official evaluator (`inspro eval`), per stride.

Usage: .venv/bin/python scripts/mask-ceiling.py data/synth-val/instances.json [INSPRO_BIN]
(needs numpy; frame sizes must be multiples of 8; INSPRO_BIN defaults to target/release/inspro;
without it only the IoU table is printed)."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def decode(seg):
    h, w = seg["size"]
    counts = seg["counts"]
    if isinstance(counts, str):  # compressed COCO RLE
        out, p = [], 0
        while p < len(counts):
            x, k, more = 0, 0, 1
            while more:
                c = ord(counts[p]) - 48
                x |= (c & 0x1F) << (5 * k)
                more = c & 0x20
                p += 1
                k += 1
                if not more and (c & 0x10):
                    x |= -1 << (5 * k)
            if len(out) > 2:
                x += out[-2]
            out.append(x)
        counts = out
    flat = np.zeros(h * w, np.uint8)
    pos, val = 0, 0
    for n in counts:
        flat[pos:pos + n] = val
        pos += n
        val ^= 1
    return flat.reshape(w, h).T.astype(bool)


def resample(field, s, h, w):
    def axis(n_out, n):
        u = np.clip((np.arange(n_out) - s / 2 + 0.5) / s, 0, n - 1)
        lo = np.floor(u).astype(int)
        return lo, np.minimum(lo + 1, n - 1), u - lo

    ylo, yhi, ly = axis(h, field.shape[0])
    xlo, xhi, lx = axis(w, field.shape[1])
    top = field[ylo][:, xlo] * (1 - lx) + field[ylo][:, xhi] * lx
    bot = field[yhi][:, xlo] * (1 - lx) + field[yhi][:, xhi] * lx
    return top * (1 - ly[:, None]) + bot * ly[:, None]


def through_grid(g, s):
    h, w = g.shape
    p = g.reshape(h // s, s, w // s, s).mean(axis=(1, 3))
    return resample(p - 0.5, s, h, w) > 0


def encode(m):
    """Uncompressed COCO RLE (column-major runs, starting with zeros)."""
    flat = m.T.reshape(-1).astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": list(m.shape), "counts": runs}


def ap_ceiling(gt_path, gt, strides, binary):
    """Video AP of the ground truth passed through each stride's grid (official evaluator)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s in strides:
            results = []
            for a in gt["annotations"]:
                segs = []
                for seg in a["segmentations"]:
                    segs.append(encode(through_grid(decode(seg), s)) if seg else None)
                results.append({"video_id": a["video_id"], "category_id": a["category_id"],
                                "score": 1.0, "segmentations": segs})
            path = os.path.join(tmp, f"ceiling-{s}.json")
            with open(path, "w") as f:
                json.dump(results, f)
            r = subprocess.run([binary, "eval", "--gt", gt_path, "--results", path, "--json"],
                               capture_output=True, text=True, check=True)
            out[s] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def main():
    gt = json.load(open(sys.argv[1]))
    binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/inspro"
    names = {c["id"]: c["name"] for c in gt["categories"]}
    strides = (8, 4, 2)
    rows = {s: {} for s in strides}
    for a in gt["annotations"]:
        for f, seg in enumerate(a["segmentations"]):
            if not seg or f % 4:
                continue
            g = decode(seg)
            if g.sum() == 0:
                continue
            size = np.sqrt(g.sum())
            bucket = "size < 20" if size < 20 else "size 20-30" if size < 30 else "size >= 30"
            for s in strides:
                m = through_grid(g, s)
                iou = (g & m).sum() / (g | m).sum()
                for key in (names[a["category_id"]], bucket, "all"):
                    rows[s].setdefault(key, []).append(iou)
    keys = sorted(rows[strides[0]])
    print("mean IoU through the grid")
    print("stride  " + "  ".join(f"{k:>10s}" for k in keys))
    for s in strides:
        print(f"{s:6d}  " + "  ".join(f"{np.mean(rows[s][k]):10.3f}" for k in keys))
    if not os.path.exists(binary):
        print(f"(no {binary}: the AP ceiling needs `inspro eval`)")
        return
    print("video AP ceiling (ground truth through the grid, perfect class, identity and score)")
    print("stride      AP    AP50    AP75")
    for s, e in ap_ceiling(sys.argv[1], gt, strides, binary).items():
        print(f"{s:6d}  {100 * e['ap']:6.1f}  {100 * e['ap50']:6.1f}  {100 * e['ap75']:6.1f}")


if __name__ == "__main__":
    main()
