#!/usr/bin/env python3
"""What a mask grid of stride s can hold at all: every ground-truth mask of a YouTube-VIS json
(every 4th frame), area-averaged to the stride-s grid, bilinearly resampled back (cell i at pixel
s*i + s/2, as the model's logits), thresholded at 0.5; mean IoU with the original, per class and
per object size. Usage: .venv/bin/python scripts/mask-ceiling.py data/synth-val/instances.json
(needs numpy; frame sizes must be multiples of 8)."""
import json
import sys

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


def main():
    gt = json.load(open(sys.argv[1]))
    names = {c["id"]: c["name"] for c in gt["categories"]}
    strides = (8, 4, 2)
    rows = {s: {} for s in strides}
    for a in gt["annotations"]:
        for f, seg in enumerate(a["segmentations"]):
            if not seg or f % 4:
                continue
            g = decode(seg)
            h, w = g.shape
            if g.sum() == 0:
                continue
            size = np.sqrt(g.sum())
            bucket = "size < 20" if size < 20 else "size 20-30" if size < 30 else "size >= 30"
            for s in strides:
                p = g.reshape(h // s, s, w // s, s).mean(axis=(1, 3))
                m = resample(p - 0.5, s, h, w) > 0
                iou = (g & m).sum() / (g | m).sum()
                for key in (names[a["category_id"]], bucket, "all"):
                    rows[s].setdefault(key, []).append(iou)
    keys = sorted(rows[strides[0]])
    print("stride  " + "  ".join(f"{k:>10s}" for k in keys))
    for s in strides:
        print(f"{s:6d}  " + "  ".join(f"{np.mean(rows[s][k]):10.3f}" for k in keys))


if __name__ == "__main__":
    main()
