#!/usr/bin/env python3
"""One-off cross-check of src/model/roi_align.rs against onnxruntime's RoiAlign (opset 16).

Writes random features/boxes and ORT outputs as .npy into DIR; the ignored Rust test
`ort_cross_check` in tests/roi_align.rs reads them and prints the max abs difference.

    python3 -m venv /tmp/ortvenv && /tmp/ortvenv/bin/pip install onnxruntime onnx numpy
    /tmp/ortvenv/bin/python scripts/roi_align_ort_check.py /tmp/roi_ort
    INSPRO_ROI_ALIGN_ORT_DIR=/tmp/roi_ort cargo test --test roi_align -- --ignored --nocapture
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

# name: (output_size, sampling_ratio, spatial_scale, aligned)
CONFIGS = {
    "v2_s2": (7, 2, 0.25, True),
    "v2_adaptive": (7, 0, 0.25, True),
    "legacy_s2": (5, 2, 0.125, False),
    "legacy_adaptive": (4, 0, 0.5, False),
}


def roi_align_ort(x, rois, out, sr, scale, aligned):
    node = helper.make_node(
        "RoiAlign", ["X", "rois", "batch_indices"], ["Y"],
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg", output_height=out, output_width=out, sampling_ratio=sr, spatial_scale=scale)
    graph = helper.make_graph(
        [node], "roi_align",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape)),
         helper.make_tensor_value_info("rois", TensorProto.FLOAT, list(rois.shape)),
         helper.make_tensor_value_info("batch_indices", TensorProto.INT64, [rois.shape[0]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    idx = np.zeros(rois.shape[0], dtype=np.int64)
    return sess.run(None, {"X": x, "rois": rois, "batch_indices": idx})[0]


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(7)
    c, h, w = 16, 23, 37
    feats = rng.standard_normal((c, h, w)).astype(np.float32)
    # Boxes in image pixels of a 4x canvas, some partly or wholly outside, some tiny.
    img_w, img_h = w * 4.0, h * 4.0
    cx = rng.uniform(-0.3, 1.3, 64) * img_w
    cy = rng.uniform(-0.3, 1.3, 64) * img_h
    bw = rng.uniform(0.5, 1.2, 64) ** 4 * img_w
    bh = rng.uniform(0.5, 1.2, 64) ** 4 * img_h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
    np.save(os.path.join(out_dir, "features.npy"), feats)
    np.save(os.path.join(out_dir, "boxes.npy"), boxes)
    for name, (out, sr, scale, aligned) in CONFIGS.items():
        y = roi_align_ort(feats[None], boxes, out, sr, scale, aligned)
        np.save(os.path.join(out_dir, f"ort_{name}.npy"), y.astype(np.float32))
        print(name, y.shape)
    print("onnxruntime", ort.__version__)


if __name__ == "__main__":
    main()
