#!/usr/bin/env python3
"""Class-agnostic copies of a YouTube-VIS ground truth and results json, for `inspro eval`.

Every category becomes one ("object"); of the results that share one video and one mask track
(the (slot, class) pairs of one slot), only the best-scoring is kept. The video AP of these
copies measures finding, segmenting and tracking objects, whatever class they are given.

    scripts/class_agnostic.py GT.json RESULTS.json OUT_DIR
    inspro eval --gt OUT_DIR/gt.json --results OUT_DIR/results.json
"""
import json
import os
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    gt_path, res_path, out = sys.argv[1:]
    try:
        with open(gt_path) as f:
            gt = json.load(f)
        with open(res_path) as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"class_agnostic: {e}", file=sys.stderr)
        return 1
    gt["categories"] = [{"id": 1, "name": "object", "supercategory": "object"}]
    for a in gt.get("annotations", []):
        a["category_id"] = 1
    best = {}
    for r in results:
        key = (r["video_id"], json.dumps(r["segmentations"], sort_keys=True))
        if key not in best or r["score"] > best[key]["score"]:
            best[key] = dict(r, category_id=1)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gt.json"), "w") as f:
        json.dump(gt, f)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(list(best.values()), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
