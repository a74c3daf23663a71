"""A short, line-by-line port of youtubevos/cocoapi ytvoseval.py (segm, default Params) used to
cross-check `inspro eval` (tests/ytvis_eval_oracle.rs). Needs numpy and pycocotools only.

    python scripts/ytvoseval_reference.py GT.json RESULTS.json   # prints the 12 stats as json
"""
import json
import sys
from collections import defaultdict

import numpy as np
from pycocotools import mask as mu


def to_rle(seg, h, w):
    if isinstance(seg, list):
        return mu.merge(mu.frPyObjects(seg, h, w))
    if isinstance(seg["counts"], list):
        return mu.frPyObjects(seg, h, w)
    return seg


def main(gt_path, res_path):
    gt = json.load(open(gt_path))
    res = json.load(open(res_path))
    vids = {v["id"]: v for v in gt["videos"]}
    vid_ids = sorted(vids)
    cat_ids = sorted(c["id"] for c in gt["categories"])
    for i, r in enumerate(res):  # loadRes
        r["areas"] = [int(mu.area(s)) if s else None for s in r["segmentations"]]
        r["id"], r["iscrowd"] = i + 1, 0
    gts, dts = defaultdict(list), defaultdict(list)
    for store, anns in ((gts, gt["annotations"]), (dts, res)):
        by_vid = defaultdict(list)
        for a in anns:
            by_vid[a["video_id"]].append(a)
        for v in vid_ids:
            for a in by_vid[v]:
                if a["category_id"] not in cat_ids:
                    continue
                h, w = vids[v]["height"], vids[v]["width"]
                a["segmentations"] = [to_rle(s, h, w) if s else s for s in a["segmentations"]]
                l = [x for x in a["areas"] if x]
                a["avg_area"] = 0 if len(l) == 0 else np.array(l).mean()
                a["ignore"] = "iscrowd" in a and a["iscrowd"]
                store[v, a["category_id"]].append(a)

    def iou_seq(d_seq, g_seq):
        i = u = 0.0
        for d, g in zip(d_seq, g_seq):
            if d and g:
                i += mu.area(mu.merge([d, g], True))
                u += mu.area(mu.merge([d, g], False))
            elif not d and g:
                u += mu.area(g)
            elif d and not g:
                u += mu.area(d)
        return i / u if u > 0.0 else 0.0

    def compute_iou(v, c):
        g, d = gts[v, c], dts[v, c]
        if len(g) == 0 and len(d) == 0:
            return []
        d = [d[i] for i in np.argsort([-x["score"] for x in d], kind="mergesort")][:100]
        ious = np.zeros([len(d), len(g)])
        for i, j in np.ndindex(ious.shape):
            ious[i, j] = iou_seq(d[i]["segmentations"], g[j]["segmentations"])
        return ious

    iou_thrs = np.linspace(0.5, 0.95, 10, endpoint=True)
    rec_thrs = np.linspace(0.0, 1.00, 101, endpoint=True)
    max_dets = [1, 10, 100]
    area_rng = [[0, 1e10], [0, 128**2], [128**2, 256**2], [256**2, 1e10]]
    ious = {(v, c): compute_iou(v, c) for v in vid_ids for c in cat_ids}

    def evaluate_vid(v, c, a_rng, max_det):
        gt_, dt = gts[v, c], dts[v, c]
        if len(gt_) == 0 and len(dt) == 0:
            return None
        for g in gt_:
            g["_ignore"] = 1 if g["ignore"] or g["avg_area"] < a_rng[0] or g["avg_area"] > a_rng[1] else 0
        gtind = np.argsort([g["_ignore"] for g in gt_], kind="mergesort")
        gt_ = [gt_[i] for i in gtind]
        dt = [dt[i] for i in np.argsort([-d["score"] for d in dt], kind="mergesort")[0:max_det]]
        iscrowd = [int(o.get("iscrowd", 0)) for o in gt_]
        io = ious[v, c][:, gtind] if len(ious[v, c]) > 0 else ious[v, c]
        T, G, D = len(iou_thrs), len(gt_), len(dt)
        gtm, dtm, dtig = np.zeros((T, G)), np.zeros((T, D)), np.zeros((T, D))
        gtig = np.array([g["_ignore"] for g in gt_])
        if not len(io) == 0:
            for ti, t in enumerate(iou_thrs):
                for di, d in enumerate(dt):
                    iou, m = min([t, 1 - 1e-10]), -1
                    for gi, g in enumerate(gt_):
                        if gtm[ti, gi] > 0 and not iscrowd[gi]:
                            continue
                        if m > -1 and gtig[m] == 0 and gtig[gi] == 1:
                            break
                        if io[di, gi] < iou:
                            continue
                        iou, m = io[di, gi], gi
                    if m == -1:
                        continue
                    dtig[ti, di], dtm[ti, di], gtm[ti, m] = gtig[m], gt_[m]["id"], d["id"]
        a = np.array([d["avg_area"] < a_rng[0] or d["avg_area"] > a_rng[1] for d in dt]).reshape((1, len(dt)))
        dtig = np.logical_or(dtig, np.logical_and(dtm == 0, np.repeat(a, T, 0)))
        return {"dtScores": [d["score"] for d in dt], "dtMatches": dtm, "dtIgnore": dtig, "gtIgnore": gtig}

    evals = [evaluate_vid(v, c, a, max_dets[-1]) for c in cat_ids for a in area_rng for v in vid_ids]
    T, R, K, A, M = len(iou_thrs), len(rec_thrs), len(cat_ids), len(area_rng), len(max_dets)
    precision, recall = -np.ones((T, R, K, A, M)), -np.ones((T, K, A, M))
    I0 = len(vid_ids)
    for k in range(K):
        for a in range(A):
            for m, max_det in enumerate(max_dets):
                E = [e for e in evals[k * A * I0 + a * I0:k * A * I0 + (a + 1) * I0] if e is not None]
                if len(E) == 0:
                    continue
                scores = np.concatenate([e["dtScores"][0:max_det] for e in E])
                inds = np.argsort(-scores, kind="mergesort")
                dtm = np.concatenate([e["dtMatches"][:, 0:max_det] for e in E], axis=1)[:, inds]
                dtig = np.concatenate([e["dtIgnore"][:, 0:max_det] for e in E], axis=1)[:, inds]
                npig = np.count_nonzero(np.concatenate([e["gtIgnore"] for e in E]) == 0)
                if npig == 0:
                    continue
                tps = np.cumsum(np.logical_and(dtm, np.logical_not(dtig)), axis=1).astype(float)
                fps = np.cumsum(np.logical_and(np.logical_not(dtm), np.logical_not(dtig)), axis=1).astype(float)
                for t, (tp, fp) in enumerate(zip(tps, fps)):
                    nd = len(tp)
                    rc, pr = tp / npig, (tp / (fp + tp + np.spacing(1))).tolist()
                    recall[t, k, a, m] = rc[-1] if nd else 0
                    q = np.zeros((R,)).tolist()
                    for i in range(nd - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    try:
                        for ri, pi in enumerate(np.searchsorted(rc, rec_thrs, side="left")):
                            q[ri] = pr[pi]
                    except IndexError:
                        pass
                    precision[t, :, k, a, m] = np.array(q)

    def summarize(ap, iou_thr=None, area=0, max_det=100):
        mi = [max_dets.index(max_det)]
        s = precision if ap else recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == iou_thrs)[0]]
        s = s[:, :, :, [area], mi] if ap else s[:, :, [area], mi]
        return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

    stats = {
        "ap": summarize(1), "ap50": summarize(1, 0.5), "ap75": summarize(1, 0.75),
        "aps": summarize(1, area=1), "apm": summarize(1, area=2), "apl": summarize(1, area=3),
        "ar1": summarize(0, max_det=1), "ar10": summarize(0, max_det=10), "ar100": summarize(0),
        "ars": summarize(0, area=1), "arm": summarize(0, area=2), "arl": summarize(0, area=3),
    }
    print(json.dumps({k: repr(v) for k, v in stats.items()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
