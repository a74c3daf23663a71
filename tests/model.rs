//! Issue 2 tests: numerics of the network's parts against hand-derived values, the parameter
//! count against Sparse R-CNN's, the state loop (online equals replay, the lite schedule), odd
//! frame sizes, weight loading errors, and gradients reaching every trainable parameter.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, D};
use inspro::model::cost::{param_shapes, Part};
use inspro::model::head::{apply_deltas, BOX_SCALE_CLAMP};
use inspro::model::mask::{aligned_bilinear, aligned_bilinear_matrix, DynamicMaskHead};
use inspro::model::{
    FrameOptions, FrameRef, InsPro, MaskSchedule, ModelConfig, ModelError, StageSchedule,
};

fn tiny() -> ModelConfig {
    ModelConfig::from_file("configs/models/inspro-tiny.toml").expect("tiny config parses")
}

/// A deterministic test frame: a gradient background with a bright square at (x, y).
fn frame(w: usize, h: usize, x: usize, y: usize) -> Vec<u8> {
    let mut data = vec![0u8; w * h * 3];
    for j in 0..h {
        for i in 0..w {
            let o = (j * w + i) * 3;
            data[o] = (i * 255 / w) as u8;
            data[o + 1] = (j * 255 / h) as u8;
            data[o + 2] = 60;
            if (x..x + 12).contains(&i) && (y..y + 12).contains(&j) {
                data[o..o + 3].copy_from_slice(&[250, 250, 250]);
            }
        }
    }
    data
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn box_deltas_decode_with_weights_and_clamp() {
    let dev = Device::Cpu;
    // Box [10, 20, 50, 100]: w 40, h 80, centre (30, 60).
    let boxes = Tensor::new(&[[10f32, 20., 50., 100.]], &dev).unwrap();
    // dx = 0.2/2 → cx += 0.1·40 = 4; dy = −0.4/2 → cy −= 0.2·80 = 16; dw = ln 2 → w 80; dh = 0.
    let deltas = Tensor::new(&[[0.2f32, -0.4, std::f32::consts::LN_2, 0.0]], &dev).unwrap();
    let out = apply_deltas(&deltas, &boxes)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let want = [34.0 - 40.0, 44.0 - 40.0, 34.0 + 40.0, 44.0 + 40.0];
    assert!(max_abs_diff(&out[0], &want) < 1e-4, "{:?}", out[0]);

    // A huge dw is clamped at ln(1e5/16): the width becomes 40·e^8.7403 = 40·6250.
    let deltas = Tensor::new(&[[0f32, 0., 50.0, -1.0]], &dev).unwrap();
    let out = apply_deltas(&deltas, &boxes)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let w = out[0][2] - out[0][0];
    let want_w = 40.0 * BOX_SCALE_CLAMP.exp() as f32;
    assert!((w - want_w).abs() / want_w < 1e-5, "{w} vs {want_w}");
    assert!((want_w - 250_000.0).abs() < 1.0);
    let h = out[0][3] - out[0][1];
    assert!((h - 80.0 * (-1f32).exp()).abs() < 1e-3);
}

/// AdelaiDet `aligned_bilinear` step by step (pad, resize with align_corners, pad, crop), on one
/// axis, as the reference for the matrix form.
fn aligned_bilinear_1d_reference(x: &[f32], f: usize) -> Vec<f32> {
    let n = x.len();
    let mut padded = x.to_vec();
    padded.push(x[n - 1]); // replicate right
    let m = f * n + 1;
    let resized: Vec<f32> = (0..m)
        .map(|r| {
            let src = r as f32 * (n as f32) / ((m - 1) as f32); // align_corners: (n+1−1)/(m−1)
            let lo = src.floor() as usize;
            let hi = (lo + 1).min(n);
            let t = src - lo as f32;
            padded[lo] * (1.0 - t) + padded[hi] * t
        })
        .collect();
    let mut front = vec![resized[0]; f / 2];
    front.extend(resized);
    front.truncate(f * n);
    front
}

#[test]
fn aligned_bilinear_matches_pad_resize_pad_crop() {
    let x = [1.0f32, 4.0, -2.0, 0.5, 3.0];
    for f in [2usize, 4] {
        let m = aligned_bilinear_matrix(x.len(), f);
        let ours: Vec<f32> = (0..f * x.len())
            .map(|j| (0..x.len()).map(|i| m[j * x.len() + i] * x[i]).sum())
            .collect();
        let want = aligned_bilinear_1d_reference(&x, f);
        assert!(
            max_abs_diff(&ours, &want) < 1e-6,
            "f={f}: {ours:?} vs {want:?}"
        );
    }
    // ×2 by hand: [1, 4] → pad [1,4,4] → resize to 5 (align corners) [1, 2.5, 4, 4, 4]
    // → front pad 1 → [1, 1, 2.5, 4, 4, 4] → crop 4: [1, 1, 2.5, 4].
    let m = aligned_bilinear_matrix(2, 2);
    let got: Vec<f32> = (0..4).map(|j| m[j * 2] + 4.0 * m[j * 2 + 1]).collect();
    assert_eq!(got, vec![1.0, 1.0, 2.5, 4.0]);

    // 2-D: separable, so the tensor op equals rows then columns of the 1-D reference.
    let dev = Device::Cpu;
    let vals: Vec<f32> = (0..12).map(|v| ((v * 7) % 5) as f32 - 1.0).collect();
    let t = Tensor::from_vec(vals.clone(), (1, 1, 3, 4), &dev).unwrap();
    let up = aligned_bilinear(&t, 2).unwrap();
    assert_eq!(up.dims(), &[1, 1, 6, 8]);
    let up = up.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let rows: Vec<Vec<f32>> = vals
        .chunks(4)
        .map(|r| aligned_bilinear_1d_reference(r, 2))
        .collect();
    for c in 0..8 {
        let col: Vec<f32> = rows.iter().map(|r| r[c]).collect();
        let want = aligned_bilinear_1d_reference(&col, 2);
        for (r, w) in want.iter().enumerate() {
            assert!((up[r * 8 + c] - w).abs() < 1e-5);
        }
    }
}

#[test]
fn mask_head_params_split_in_condinst_order() {
    let cfg = ModelConfig::default();
    assert_eq!(cfg.mask_head_num_params(), 169);
    let head = DynamicMaskHead::new(&cfg);
    // Parameter p has value p: each block must start where CondInst's split puts it.
    let params = Tensor::arange(0f32, 169., &Device::Cpu)
        .unwrap()
        .reshape((1, 169))
        .unwrap();
    let (w, b) = head.split_params(&params).unwrap();
    let dims: Vec<Vec<usize>> = w.iter().chain(&b).map(|t| t.dims().to_vec()).collect();
    assert_eq!(
        dims,
        vec![
            vec![1, 8, 10],
            vec![1, 8, 8],
            vec![1, 1, 8],
            vec![1, 8, 1],
            vec![1, 8, 1],
            vec![1, 1, 1]
        ]
    );
    let first = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    let starts: Vec<f32> = w.iter().chain(&b).map(first).collect();
    // w0(80) | w1(64) | w2(8) | b0(8) | b1(8) | b2(1)
    assert_eq!(starts, vec![0., 80., 144., 152., 160., 168.]);
    // w0 is (out 8, in 10) row-major: w0[1][0] = 10.
    let w0 = w[0].squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(w0[1][0], 10.0);
}

fn trainable(key: &str) -> bool {
    !(key.ends_with("running_mean") || key.ends_with("running_var"))
}

#[test]
fn r50_parameter_count_matches_sparse_rcnn() {
    let cfg = ModelConfig::from_file("configs/models/inspro-r50.toml").unwrap();
    let shapes = param_shapes(&cfg).unwrap();
    let mut by_part: BTreeMap<Part, usize> = BTreeMap::new();
    let mut stage0_without_controller = 0;
    for (key, shape) in &shapes {
        let n: usize = shape.iter().product();
        // FrozenBN tensors are buffers in detectron2, not parameters.
        if key.starts_with("backbone.bottom_up.") && key.contains(".norm.") || !trainable(key) {
            continue;
        }
        *by_part.entry(Part::of_key(key)).or_default() += n;
        if key.starts_with("head.head_series.0.") && !key.contains(".controller.") {
            stage0_without_controller += n;
        }
    }
    // torchvision resnet50: 25,557,032 − fc 2,049,000 − BN 53,120.
    assert_eq!(by_part[&Part::Backbone], 23_454_912);
    assert_eq!(by_part[&Part::Fpn], 3_344_384);
    // Spec §1.9: one Sparse R-CNN stage with 40 classes.
    assert_eq!(stage0_without_controller, 13_225_132);
    // 6 stages + init features/boxes (100·256 + 100·4) + ε (256).
    assert_eq!(by_part[&Part::Heads], 6 * 13_225_132 + 26_000 + 256);
    // CondInst mask branch (1,477,384) + six Linear(256→169).
    assert_eq!(by_part[&Part::Mask], 1_477_384 + 6 * 43_433);
    let sparse_rcnn = 23_454_912 + 3_344_384 + 6 * 13_225_132 + 26_000;
    assert_eq!(sparse_rcnn, 106_176_088); // the paper's 106.1 M
}

#[test]
fn intra_query_attention_by_hand_over_two_frames() {
    let mut cfg = tiny();
    cfg.fpn_channels = 4;
    cfg.num_attention_heads = 1;
    cfg.num_queries = 1;
    cfg.bank_size = 3;
    let dev = Device::Cpu;
    // ε weight (1, 4) = [1, 0, 0, 0]: the score of a feature is its first entry.
    let mut tensors = std::collections::HashMap::new();
    tensors.insert(
        "intra_query.epsilon.weight".to_string(),
        Tensor::new(&[[1f32, 0., 0., 0.]], &dev).unwrap(),
    );
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &dev);
    let attn = inspro::model::bank::IntraQueryAttention::new(&cfg, vb.pp("intra_query")).unwrap();
    let o0 = [0f32, 1., 2., 3.];
    let o1 = [1f32, -1., 0., 5.];
    // Bank holds o0 in slot 0; slots 1, 2 empty (garbage that must be ignored).
    let bank = Tensor::new(&[[o0], [[9f32, 9., 9., 9.]], [[-7f32, 3., 1., 0.]]], &dev).unwrap();
    let valid = Tensor::new(&[1f32, 0., 0.], &dev).unwrap();
    let o_t = Tensor::new(&[o1], &dev).unwrap();
    let q = attn
        .forward(&o_t, &bank, &valid)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    // softmax over scores (0, 1): w0 = 1/(1+e), w1 = e/(1+e); q = w0·o0 + w1·o1 + o1.
    let e = std::f32::consts::E;
    let (w0, w1) = (1.0 / (1.0 + e), e / (1.0 + e));
    let want: Vec<f32> = (0..4).map(|i| w0 * o0[i] + w1 * o1[i] + o1[i]).collect();
    assert!(max_abs_diff(&q[0], &want) < 1e-6, "{:?} vs {want:?}", q[0]);

    // T = 1 is the paper's "no intra-query attention": q = o_t.
    cfg.bank_size = 1;
    let mut tensors = std::collections::HashMap::new();
    tensors.insert(
        "intra_query.epsilon.weight".to_string(),
        Tensor::new(&[[1f32, 0., 0., 0.]], &dev).unwrap(),
    );
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &dev);
    let attn = inspro::model::bank::IntraQueryAttention::new(&cfg, vb.pp("intra_query")).unwrap();
    let bank1 = Tensor::zeros((1, 1, 4), DType::F32, &dev).unwrap();
    let valid1 = Tensor::zeros(1, DType::F32, &dev).unwrap();
    let q = attn
        .forward(&o_t, &bank1, &valid1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(q[0], o1.to_vec());
}

#[test]
fn five_steps_equal_two_steps_save_restore_three_steps() {
    let cfg = tiny();
    let (model, _) = InsPro::random(&cfg, 7, &Device::Cpu).unwrap();
    let (w, h) = (96, 64);
    let frames: Vec<Vec<u8>> = (0..5)
        .map(|i| frame(w, h, 10 + 8 * i, 20 + 3 * i))
        .collect();
    let mut online = model.init_state(w, h).unwrap();
    let mut outs = Vec::new();
    for f in &frames {
        outs.push(model.step(&FrameRef::packed(w, h, f), &mut online).unwrap());
    }
    let mut state = model.init_state(w, h).unwrap();
    for f in &frames[..2] {
        model.step(&FrameRef::packed(w, h, f), &mut state).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.safetensors");
    state.save(&path).unwrap();
    drop(state);
    let mut restored = model.load_state(&path).unwrap();
    assert_eq!(restored.frame_index, 2);
    assert_eq!(restored.bank_len(), 2);
    for (i, f) in frames[2..].iter().enumerate() {
        let out = model
            .step(&FrameRef::packed(w, h, f), &mut restored)
            .unwrap();
        let want = &outs[2 + i];
        assert_eq!(out.frame_index, want.frame_index);
        assert_eq!(out.boxes_xyxy, want.boxes_xyxy);
        assert_eq!(out.class_probs, want.class_probs);
        assert_eq!(out.mask_logits, want.mask_logits);
    }
    // A state for another model shape is refused with the field named.
    let mut other = cfg.clone();
    other.num_queries = 8;
    let (small, _) = InsPro::random(&other, 7, &Device::Cpu).unwrap();
    let err = small.load_state(&path).unwrap_err().to_string();
    assert!(
        err.contains("proposal_features") && err.contains("[8, 64]"),
        "{err}"
    );
}

#[test]
fn lite_schedule_runs_all_stages_on_key_frames_only() {
    let mut cfg = tiny();
    cfg.key_frame_interval = 10;
    let (model, _) = InsPro::random(&cfg, 3, &Device::Cpu).unwrap();
    let (w, h) = (64, 48);
    let data = frame(w, h, 5, 5);
    let mut state = model.init_state(w, h).unwrap();
    for i in 0..21u64 {
        let out = model
            .step(&FrameRef::packed(w, h, &data), &mut state)
            .unwrap();
        let key = i % 10 == 0;
        assert_eq!(out.key_frame, key, "frame {i}");
        assert_eq!(
            out.stages_run,
            if key { cfg.num_stages } else { 1 },
            "frame {i}"
        );
    }
    // The bank is a ring of the last T object features.
    assert_eq!(state.bank_len(), 18);

    let mut full = cfg.clone();
    full.key_frame_interval = 0;
    let (model, _) = InsPro::random(&full, 3, &Device::Cpu).unwrap();
    let mut state = model.init_state(w, h).unwrap();
    for _ in 0..3 {
        let out = model
            .step(&FrameRef::packed(w, h, &data), &mut state)
            .unwrap();
        assert_eq!(out.stages_run, full.num_stages);
    }
}

#[test]
fn odd_frame_sizes_report_in_original_pixels() {
    odd_frame_sizes(&tiny());
}

#[test]
fn odd_frame_sizes_with_stride_4_mask_features() {
    odd_frame_sizes(&ModelConfig {
        mask_feat_stride: 4,
        ..tiny()
    });
}

fn odd_frame_sizes(cfg: &ModelConfig) {
    let (model, _) = InsPro::random(cfg, 5, &Device::Cpu).unwrap();
    for (w, h) in [(97usize, 61usize), (33, 250), (641, 359)] {
        // A strided frame: rows padded to a multiple of 4 bytes, as GStreamer's RGB.
        let stride = (w * 3).div_ceil(4) * 4;
        let packed = frame(w, h, w / 3, h / 3);
        let mut data = vec![0u8; stride * h];
        for y in 0..h {
            data[y * stride..y * stride + w * 3]
                .copy_from_slice(&packed[y * w * 3..(y + 1) * w * 3]);
        }
        let f = FrameRef {
            width: w,
            height: h,
            stride,
            data: &data,
        };
        let mut state = model.init_state(w, h).unwrap();
        let g = state.geometry;
        assert_eq!(g.padded_width % 32, 0);
        assert_eq!(g.padded_height % 32, 0);
        assert!(g.resized_width <= cfg.input_size[0] && g.resized_height <= cfg.input_size[1]);
        // Frame 0's proposals are the whole image: after one step, boxes come back in the frame's
        // pixels (the scale is undone), and the propagated proposals stay inside the frame.
        let out = model.step(&f, &mut state).unwrap();
        assert_eq!(out.mask_h * 4, g.padded_height);
        assert_eq!(out.mask_w * 4, g.padded_width);
        assert_eq!(out.mask_at_original(0).len(), w * h);
        let props = state.proposal_boxes_xyxy().to_vec2::<f32>().unwrap();
        for p in &props {
            assert!(p[0] >= 0.0 && p[2] <= g.resized_width as f32 + 1e-3);
            assert!(p[1] >= 0.0 && p[3] <= g.resized_height as f32 + 1e-3);
            assert!(p[2] - p[0] >= 4.0 - 1e-3 && p[3] - p[1] >= 4.0 - 1e-3);
        }
        let (sx, sy) = g.scale_xy();
        for (b, p) in out.boxes_xyxy.iter().zip(&props) {
            // Unclipped predictions map back by 1/scale.
            if p[0] > 0.0 && p[2] < g.resized_width as f32 && p[2] - p[0] > 4.0 {
                assert!((b[0] * sx - p[0]).abs() < 1e-2);
            }
            let _ = sy;
        }
        // A frame of another size is an error, not a panic.
        let other = vec![0u8; 10 * 10 * 3];
        let err = model
            .step(&FrameRef::packed(10, 10, &other), &mut state)
            .unwrap_err();
        assert!(err.to_string().contains("reset the state"));
    }
    // A short buffer is an error naming the sizes.
    let mut state = model.init_state(40, 40).unwrap();
    let err = model
        .step(&FrameRef::packed(40, 40, &[0u8; 100]), &mut state)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs 4800 bytes, got 100"), "{err}");
}

#[test]
fn weights_round_trip_and_errors_name_the_key() {
    let cfg = tiny();
    let dev = Device::Cpu;
    let (model, vars) = InsPro::random(&cfg, 11, &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    vars.save(&path).unwrap();
    let loaded = InsPro::load(&cfg, &path, &dev).unwrap();
    let (w, h) = (64, 64);
    let data = frame(w, h, 20, 30);
    let mut s1 = model.init_state(w, h).unwrap();
    let mut s2 = loaded.init_state(w, h).unwrap();
    for _ in 0..2 {
        let a = model.step(&FrameRef::packed(w, h, &data), &mut s1).unwrap();
        let b = loaded
            .step(&FrameRef::packed(w, h, &data), &mut s2)
            .unwrap();
        // Loading folds nothing here (tiny has no norm), so outputs agree to rounding.
        assert!(max_abs_diff(&a.mask_logits, &b.mask_logits) < 1e-4);
        assert!(max_abs_diff(&a.class_probs.concat(), &b.class_probs.concat()) < 1e-5);
    }
    // Keys are the Sparse R-CNN / CondInst checkpoint names.
    let keys: Vec<String> = vars.data().lock().unwrap().keys().cloned().collect();
    for k in [
        "init_proposal_features.weight",
        "init_proposal_boxes.weight",
        "backbone.fpn_lateral2.weight",
        "backbone.fpn_output5.bias",
        "head.head_series.0.self_attn.in_proj_weight",
        "head.head_series.0.inst_interact.dynamic_layer.weight",
        "head.head_series.2.reg_module.3.weight",
        "head.head_series.1.cls_module.1.bias",
        "head.head_series.0.class_logits.bias",
        "head.head_series.0.bboxes_delta.weight",
        "mask_branch.refine.0.0.weight",
        "mask_branch.refine.2.1.running_var",
        "mask_branch.tower.2.weight",
    ] {
        assert!(keys.iter().any(|x| x == k), "missing key {k}");
    }

    // Missing key.
    let mut tensors = candle_core::safetensors::load(&path, &dev).unwrap();
    tensors.remove("head.head_series.1.linear1.weight");
    let bad = dir.path().join("missing.safetensors");
    candle_core::safetensors::save(&tensors, &bad).unwrap();
    let err = InsPro::load(&cfg, &bad, &dev).err().unwrap();
    assert!(
        matches!(err, ModelError::MissingWeight { ref key, .. } if key == "head.head_series.1.linear1.weight")
    );
    assert!(err.to_string().contains("missing.safetensors"));

    // Misshaped key: both shapes in the message.
    let mut tensors = candle_core::safetensors::load(&path, &dev).unwrap();
    tensors.insert(
        "head.head_series.0.class_logits.weight".into(),
        Tensor::zeros((7, 64), DType::F32, &dev).unwrap(),
    );
    let bad = dir.path().join("shape.safetensors");
    candle_core::safetensors::save(&tensors, &bad).unwrap();
    let err = InsPro::load(&cfg, &bad, &dev).err().unwrap().to_string();
    assert!(
        err.contains("head.head_series.0.class_logits.weight")
            && err.contains("[7, 64]")
            && err.contains("[6, 64]"),
        "{err}"
    );

    // Not a safetensors file.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a model").unwrap();
    let err = InsPro::load(&cfg, &junk, &dev).err().unwrap().to_string();
    assert!(
        err.contains("junk.safetensors") && err.contains("safetensors"),
        "{err}"
    );
}

#[test]
fn random_init_follows_the_reference() {
    let cfg = tiny();
    let (_, vars) = InsPro::random(&cfg, 2, &Device::Cpu).unwrap();
    let data = vars.data().lock().unwrap();
    let get = |k: &str| {
        data[k]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert!(get("head.head_series.0.class_logits.bias")
        .iter()
        .all(|v| (v + 4.59512).abs() < 1e-4));
    assert_eq!(get("init_proposal_boxes.weight")[..4], [0.5, 0.5, 1.0, 1.0]);
    // xavier_uniform bound for (32768·… ) dynamic_layer: sqrt(6 / (64 + 2·64·16)).
    let bound = (6.0f32 / (64.0 + 2048.0)).sqrt();
    let w = get("head.head_series.0.inst_interact.dynamic_layer.weight");
    let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max <= bound && max > 0.9 * bound, "{max} vs {bound}");
    // Same seed, same weights; another seed, other weights.
    drop(data);
    let (_, again) = InsPro::random(&cfg, 2, &Device::Cpu).unwrap();
    let (_, other) = InsPro::random(&cfg, 3, &Device::Cpu).unwrap();
    let key = "head.head_series.1.linear1.weight";
    let a = vars.data().lock().unwrap()[key]
        .as_tensor()
        .to_vec2::<f32>()
        .unwrap();
    let b = again.data().lock().unwrap()[key]
        .as_tensor()
        .to_vec2::<f32>()
        .unwrap();
    let c = other.data().lock().unwrap()[key]
        .as_tensor()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn every_trainable_parameter_gets_a_gradient() {
    let cfg = tiny();
    let dev = Device::Cpu;
    let (model, vars) = InsPro::random(&cfg, 4, &dev).unwrap();
    // A 3-frame clip (as training uses), 64x64: even sizes at every stride.
    let (w, h) = (64usize, 64usize);
    let (mut features, mut boxes) = model.initial_proposals(w, h).unwrap();
    let mut bank: Vec<Tensor> = Vec::new();
    let mut loss = Tensor::zeros((), DType::F32, &dev).unwrap();
    let (n, c, t) = (cfg.num_queries, cfg.fpn_channels, cfg.bank_size);
    for i in 0..3 {
        let data = frame(w, h, 8 + 10 * i, 16);
        let img = inspro::model::preprocess::preprocess(
            &cfg,
            &FrameRef::packed(w, h, &data),
            &inspro::model::FrameGeometry::new(
                &ModelConfig {
                    input_size: [64, 64],
                    ..cfg.clone()
                },
                w,
                h,
            ),
            &dev,
        )
        .unwrap();
        // Bank (T, N, C): this clip's earlier object features, the rest empty.
        let mut entries = bank.clone();
        let filled = entries.len();
        entries.resize(t, Tensor::zeros((n, c), DType::F32, &dev).unwrap());
        let bank_t = Tensor::stack(&entries, 0).unwrap();
        let valid: Vec<f32> = (0..t).map(|j| f32::from(u8::from(j < filled))).collect();
        let valid = Tensor::from_vec(valid, t, &dev).unwrap();
        let opts = FrameOptions {
            stages: StageSchedule::All,
            masks: MaskSchedule::Every,
            train: true,
        };
        let fwd = model
            .forward_frame(&img, &features, &boxes, &bank_t, &valid, opts)
            .unwrap();
        for (s, m) in fwd.stages.iter().zip(&fwd.mask_logits) {
            let part = (s.class_logits.sqr().unwrap().mean_all().unwrap()
                + (s.pred_boxes_xyxy.clone() / 64.0)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .mean_all()
                    .unwrap())
            .unwrap();
            let part = (part + m.tanh().unwrap().mean_all().unwrap()).unwrap();
            loss = (loss + part).unwrap();
        }
        let last = fwd.last().unwrap();
        bank.push(last.obj_features.clone());
        features = fwd.next_proposal_features.clone();
        boxes = last.pred_boxes_xyxy.detach();
    }
    let grads = loss.backward().unwrap();
    let data = vars.data().lock().unwrap();
    let mut missing = Vec::new();
    for (name, var) in data.iter() {
        if !trainable(name) {
            continue;
        }
        let ok = grads.get(var.as_tensor()).is_some_and(|g| {
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        });
        if !ok {
            missing.push(name.clone());
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "no gradient for {missing:?}");
    let _ = D::Minus1;
}

#[test]
fn config_errors_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "name = \"x\"\nnum_queries = \"many\"\n").unwrap();
    let err = ModelConfig::from_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("bad.toml") && err.contains("num_queries"),
        "{err}"
    );
    std::fs::write(&p, "backbone = \"tiny\"\nnum_classes = 0\n").unwrap();
    let err = ModelConfig::from_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("num_classes") && err.contains("at least 1"),
        "{err}"
    );
    std::fs::write(&p, "backbone = \"vgg\"\n").unwrap();
    let err = ModelConfig::from_file(&p).unwrap_err().to_string();
    assert!(err.contains("backbone"), "{err}");
    std::fs::write(&p, "num_querys = 3\n").unwrap();
    let err = ModelConfig::from_file(&p).unwrap_err().to_string();
    assert!(err.contains("num_querys"), "{err}");
    for f in [
        "inspro-r50",
        "inspro-lite-r50",
        "inspro-lite-r18",
        "inspro-tiny",
    ] {
        ModelConfig::from_file(format!("configs/models/{f}.toml")).unwrap();
    }
}

#[test]
fn im2col_conv_equals_candle_conv_and_its_gradients() {
    let dev = Device::Cpu;
    // candle's own conv2d is the reference (its backward is right when H and W share parity).
    for &(c, o, h, w, k, s, p) in &[
        (3usize, 5usize, 12usize, 16usize, 3usize, 1usize, 1usize),
        (4, 6, 16, 20, 3, 2, 1),
        (6, 4, 10, 14, 1, 1, 0),
        (6, 4, 10, 14, 1, 2, 0),
        (3, 8, 16, 16, 7, 2, 3),
    ] {
        let x =
            candle_core::Var::from_tensor(&Tensor::randn(0f32, 1., (1, c, h, w), &dev).unwrap())
                .unwrap();
        let wt =
            candle_core::Var::from_tensor(&Tensor::randn(0f32, 0.3, (o, c, k, k), &dev).unwrap())
                .unwrap();
        let ya = x.as_tensor().conv2d(wt.as_tensor(), p, s, 1, 1).unwrap();
        let yb = inspro::model::conv::conv2d(x.as_tensor(), wt.as_tensor(), s, p).unwrap();
        assert_eq!(ya.dims(), yb.dims());
        let fa = ya.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let fb = yb.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(max_abs_diff(&fa, &fb) < 1e-4);
        // A loss that weights every output differently, so that both gradients are exercised.
        let wts = Tensor::randn(0f32, 1., ya.dims(), &dev).unwrap();
        let ga = (ya * &wts).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (yb * &wts).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &wt] {
            let a = ga
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let b = gb
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(max_abs_diff(&a, &b) < 1e-3, "{c}->{o} k{k} s{s}");
        }
    }
}

#[test]
fn without_propagation_every_frame_starts_from_the_learned_init() {
    let mut cfg = tiny();
    cfg.key_frame_interval = 0;
    cfg.propagate = false;
    let (model, _) = InsPro::random(&cfg, 21, &Device::Cpu).unwrap();
    let (w, h) = (64, 48);
    let (a, b) = (frame(w, h, 5, 5), frame(w, h, 30, 20));
    let mut state = model.init_state(w, h).unwrap();
    model.step(&FrameRef::packed(w, h, &a), &mut state).unwrap();
    let second = model.step(&FrameRef::packed(w, h, &b), &mut state).unwrap();
    let mut fresh = model.init_state(w, h).unwrap();
    let alone = model.step(&FrameRef::packed(w, h, &b), &mut fresh).unwrap();
    assert_eq!(second.boxes_xyxy, alone.boxes_xyxy);
    assert_eq!(second.class_probs, alone.class_probs);
    assert_eq!(state.bank_len(), 0);
    // With propagation the second frame depends on the first.
    cfg.propagate = true;
    let (model, _) = InsPro::random(&cfg, 21, &Device::Cpu).unwrap();
    let mut state = model.init_state(w, h).unwrap();
    model.step(&FrameRef::packed(w, h, &a), &mut state).unwrap();
    let second = model.step(&FrameRef::packed(w, h, &b), &mut state).unwrap();
    assert_ne!(second.boxes_xyxy, alone.boxes_xyxy);
}
