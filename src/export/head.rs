//! One dynamic instance interaction stage as ONNX (mirrors `model/head.rs` and
//! `model/roi_align.rs`): static multi-level RoIAlign (every box pooled from P2..P5 with
//! `RoiAlign` half_pixel, then the detectron2 level selected in-graph), multi-head self-attention,
//! `DynamicConv` as batched MatMuls with runtime weights, FFN, towers, box deltas and the
//! CondInst weight generator.

use super::fpn::PyramidValues;
use super::graph::{Attr, Graph};
use super::proto::DataType;
use super::{layer_norm, linear_rows, ExportError, Pooler, Weights};
use crate::model::head::{BOX_DELTA_WEIGHTS, BOX_SCALE_CLAMP};
use crate::model::ModelConfig;

/// detectron2 `assign_boxes_to_levels`, k = floor(4 + log2(√area / 224)) clamped to 2..5, as
/// three masks (N, 1) bool: k ≥ 3, k ≥ 4, k ≥ 5, i.e. √area ≥ 112, 224, 448. A box with area ≤ 0
/// gets level 2, as in `assign_levels`.
pub fn level_masks(g: &mut Graph, boxes_xyxy: &str) -> [String; 3] {
    let lo = g.slice(boxes_xyxy, 1, 0, 2);
    let hi = g.slice(boxes_xyxy, 1, 2, 4);
    let wh = g.sub(&hi, &lo); // (N, 2)
    let w = g.slice(&wh, 1, 0, 1);
    let h = g.slice(&wh, 1, 1, 2);
    let area = g.mul(&w, &h);
    let zero = g.scalar(0.0);
    let area = g.op("Max", &[&area, &zero], vec![]);
    let size = g.op("Sqrt", &[&area], vec![]); // (N, 1)
    [112.0f32, 224.0, 448.0].map(|t| {
        let t = g.scalar(t);
        g.op("GreaterOrEqual", &[&size, &t], vec![])
    })
}

/// `Where`-select per box among four per-level values (each broadcastable against `ge`).
pub fn select_by_level(g: &mut Graph, ge: &[String; 3], by_level: [&str; 4]) -> String {
    let s = g.op("Where", &[&ge[0], by_level[1], by_level[0]], vec![]);
    let s = g.op("Where", &[&ge[1], by_level[2], &s], vec![]);
    g.op("Where", &[&ge[2], by_level[3], &s], vec![])
}

/// ROIPooler over P2..P5: (N, C, 7, 7).
fn pool(
    g: &mut Graph,
    cfg: &ModelConfig,
    pyramid: &PyramidValues,
    boxes_xyxy: &str,
    pooler: Pooler,
) -> String {
    let n = cfg.num_queries;
    let roi_align = |g: &mut Graph, level: usize, boxes: &str, batch: &str| {
        g.op(
            "RoiAlign",
            &[&pyramid.levels[level], boxes, batch],
            vec![
                (
                    "coordinate_transformation_mode",
                    Attr::Str("half_pixel".into()),
                ),
                ("mode", Attr::Str("avg".into())),
                ("output_height", Attr::Int(cfg.pooler_resolution as i64)),
                ("output_width", Attr::Int(cfg.pooler_resolution as i64)),
                (
                    "sampling_ratio",
                    Attr::Int(cfg.pooler_sampling_ratio as i64),
                ),
                (
                    "spatial_scale",
                    Attr::Float(1.0 / (1u32 << (level + 2)) as f32),
                ),
            ],
        )
    };
    let ge = level_masks(g, boxes_xyxy);
    match pooler {
        Pooler::Static => {
            // Every box from every level, then the box's level selected: static shapes, 4x
            // the pooling work.
            let batch = g.const_i64("batch_indices", &[n], &vec![0; n]);
            let pooled: Vec<String> = (0..4)
                .map(|l| roi_align(g, l, boxes_xyxy, &batch))
                .collect();
            let ge: [String; 3] = ge.map(|m| g.reshape(&m, &[n as i64, 1, 1, 1]));
            select_by_level(g, &ge, [&pooled[0], &pooled[1], &pooled[2], &pooled[3]])
        }
        Pooler::Gather => {
            // Each box from its own level only (data-dependent sizes inside, static outside):
            // level index 0..3 = Σ (k ≥ 3, 4, 5); per level NonZero → Gather → RoiAlign; the
            // pooled rows are put back in box order with the inverse permutation.
            let to_i64 = |g: &mut Graph, m: &str| {
                g.op(
                    "Cast",
                    &[m],
                    vec![("to", Attr::Int(DataType::Int64 as i64))],
                )
            };
            let a = to_i64(g, &ge[0]);
            let b = to_i64(g, &ge[1]);
            let c = to_i64(g, &ge[2]);
            let ab = g.add(&a, &b);
            let level = g.add(&ab, &c);
            let level = g.reshape(&level, &[n as i64]); // (N,) in 0..=3
            let mut order = Vec::with_capacity(4);
            let mut pooled = Vec::with_capacity(4);
            for l in 0..4usize {
                let lv = g.const_i64("level", &[], &[l as i64]);
                let here = g.op("Equal", &[&level, &lv], vec![]);
                let idx = g.op("NonZero", &[&here], vec![]); // (1, K_l)
                let idx = g.reshape(&idx, &[-1]); // (K_l,)
                let boxes = g.op("Gather", &[boxes_xyxy, &idx], vec![("axis", Attr::Int(0))]);
                let zero = g.const_i64("zero", &[], &[0]);
                let batch = g.mul(&idx, &zero);
                pooled.push(roi_align(g, l, &boxes, &batch));
                order.push(idx);
            }
            let order_refs: Vec<&str> = order.iter().map(String::as_str).collect();
            let pooled_refs: Vec<&str> = pooled.iter().map(String::as_str).collect();
            let order = g.concat(&order_refs, 0); // (N,): box index of each pooled row
            let pooled = g.concat(&pooled_refs, 0); // (N, C, 7, 7) grouped by level
            let order = g.reshape(&order, &[n as i64, 1]);
            let rows: Vec<i64> = (0..n as i64).collect();
            let rows = g.const_i64("rows", &[n], &rows);
            let zeros = g.const_i64("zeros", &[n], &vec![0; n]);
            // inverse[order[i]] = i
            let inverse = g.op("ScatterND", &[&zeros, &order, &rows], vec![]);
            g.op("Gather", &[&pooled, &inverse], vec![("axis", Attr::Int(0))])
        }
    }
}

/// `nn.MultiheadAttention` over the N queries (packed in_proj [W_q; W_k; W_v]).
fn self_attention(
    g: &mut Graph,
    cfg: &ModelConfig,
    w: &Weights,
    x: &str,
    prefix: &str,
) -> Result<String, ExportError> {
    let (n, c, h) = (cfg.num_queries, cfg.fpn_channels, cfg.num_attention_heads);
    let dh = c / h;
    let weight = w.get(&format!("{prefix}.in_proj_weight"), &[3 * c, c])?;
    let bias = w.get(&format!("{prefix}.in_proj_bias"), &[3 * c])?;
    let mut wt = vec![0f32; 3 * c * c];
    for o in 0..3 * c {
        for i in 0..c {
            wt[i * 3 * c + o] = weight[o * c + i];
        }
    }
    let wt = g.init_f32(&format!("{prefix}.in_proj_weight^T"), &[c, 3 * c], &wt);
    let b = g.init_f32(&format!("{prefix}.in_proj_bias"), &[3 * c], &bias);
    let qkv = g.matmul(x, &wt);
    let qkv = g.add(&qkv, &b); // (N, 3C)
    let (n, h, dh) = (n as i64, h as i64, dh as i64);
    let heads = |g: &mut Graph, i: i64, perm: &[i64]| {
        let s = g.slice(&qkv, 1, i * c as i64, (i + 1) * c as i64);
        let s = g.reshape(&s, &[n, h, dh]);
        g.transpose(&s, perm)
    };
    let q = heads(g, 0, &[1, 0, 2]); // (H, N, dh)
    let k = heads(g, 1, &[1, 2, 0]); // (H, dh, N)
    let v = heads(g, 2, &[1, 0, 2]); // (H, N, dh)
    let scale = g.scalar((1.0 / (dh as f64).sqrt()) as f32);
    let q = g.mul(&q, &scale);
    let logits = g.matmul(&q, &k); // (H, N, N)
    let attn = g.op("Softmax", &[&logits], vec![("axis", Attr::Int(-1))]);
    let out = g.matmul(&attn, &v); // (H, N, dh)
    let out = g.transpose(&out, &[1, 0, 2]);
    let out = g.reshape(&out, &[n, c as i64]);
    linear_rows(g, w, &out, &format!("{prefix}.out_proj"), (c, c), true)
}

/// Sparse R-CNN `DynamicConv`: pro_features (N, C), roi_features (N, 49, C) → (N, C).
fn dynamic_conv(
    g: &mut Graph,
    cfg: &ModelConfig,
    w: &Weights,
    x: &str,
    roi_features: &str,
    prefix: &str,
) -> Result<String, ExportError> {
    let (n, c, d) = (cfg.num_queries, cfg.fpn_channels, cfg.dynamic_dim);
    let s = cfg.pooler_resolution * cfg.pooler_resolution;
    let params = linear_rows(
        g,
        w,
        x,
        &format!("{prefix}.dynamic_layer"),
        (c, 2 * c * d),
        true,
    )?; // (N, 2·C·d)
    let cd = (c * d) as i64;
    let p1 = g.slice(&params, 1, 0, cd);
    let p1 = g.reshape(&p1, &[n as i64, c as i64, d as i64]); // W1[c_in, c_mid]
    let p2 = g.slice(&params, 1, cd, 2 * cd);
    let p2 = g.reshape(&p2, &[n as i64, d as i64, c as i64]); // W2[c_mid, c_out]
    let f = g.matmul(roi_features, &p1); // (N, S, d)
    let f = layer_norm(g, w, &f, &format!("{prefix}.norm1"), d)?;
    let f = g.relu(&f);
    let f = g.matmul(&f, &p2); // (N, S, C)
    let f = layer_norm(g, w, &f, &format!("{prefix}.norm2"), c)?;
    let f = g.relu(&f);
    let f = g.reshape(&f, &[n as i64, (s * c) as i64]); // index s·C + c
    let f = linear_rows(g, w, &f, &format!("{prefix}.out_layer"), (s * c, c), true)?;
    let f = layer_norm(g, w, &f, &format!("{prefix}.norm3"), c)?;
    Ok(g.relu(&f))
}

/// Sparse R-CNN `apply_deltas` (weights (2, 2, 1, 1), dw/dh clamped) on boxes (N, 4) xyxy.
pub fn apply_deltas(g: &mut Graph, deltas: &str, boxes_xyxy: &str) -> String {
    let lo = g.slice(boxes_xyxy, 1, 0, 2);
    let hi = g.slice(boxes_xyxy, 1, 2, 4);
    let wh = g.sub(&hi, &lo);
    let half = g.scalar(0.5);
    let half_wh = g.mul(&wh, &half);
    let centre = g.add(&lo, &half_wh);
    let [wx, wy, ww, wh_] = BOX_DELTA_WEIGHTS.map(|v| v as f32);
    let d_xy = g.slice(deltas, 1, 0, 2);
    let w_xy = g.const_f32("delta_weights_xy", &[2], &[wx, wy]);
    let d_xy = g.div(&d_xy, &w_xy);
    let d_wh = g.slice(deltas, 1, 2, 4);
    let w_wh = g.const_f32("delta_weights_wh", &[2], &[ww, wh_]);
    let d_wh = g.div(&d_wh, &w_wh);
    let clamp = g.scalar(BOX_SCALE_CLAMP as f32);
    let d_wh = g.op("Min", &[&d_wh, &clamp], vec![]);
    let shift = g.mul(&d_xy, &wh);
    let p_centre = g.add(&shift, &centre);
    let e = g.op("Exp", &[&d_wh], vec![]);
    let p_wh = g.mul(&e, &wh);
    let p_half = g.mul(&p_wh, &half);
    let a = g.sub(&p_centre, &p_half);
    let b = g.add(&p_centre, &p_half);
    g.concat(&[&a, &b], 1)
}

/// What one exported stage yields (value names).
#[derive(Debug, Clone)]
pub struct StageValues {
    pub class_logits: String,
    pub pred_boxes_xyxy: String,
    pub obj_features: String,
    pub mask_head_params: String,
}

/// What a stage reads: the pyramid and the previous stage's (or frame's) boxes and features.
pub struct StageInputs<'a> {
    pub pyramid: &'a PyramidValues,
    /// (N, 4) xyxy.
    pub proposal_boxes_xyxy: &'a str,
    /// (N, C).
    pub proposal_features: &'a str,
    pub pooler: Pooler,
}

/// Stage `index` (`head.head_series.{index}`).
pub fn export_stage(
    g: &mut Graph,
    cfg: &ModelConfig,
    w: &Weights,
    index: usize,
    inputs: &StageInputs<'_>,
) -> Result<StageValues, ExportError> {
    let StageInputs {
        pyramid,
        proposal_boxes_xyxy,
        proposal_features,
        pooler,
    } = *inputs;
    let prefix = format!("head.head_series.{index}");
    g.push_scope(prefix.clone());
    let (n, c) = (cfg.num_queries as i64, cfg.fpn_channels);
    let s = (cfg.pooler_resolution * cfg.pooler_resolution) as i64;
    let roi = pool(g, cfg, pyramid, proposal_boxes_xyxy, pooler); // (N, C, 7, 7)
    let roi = g.reshape(&roi, &[n, c as i64, s]);
    let roi_features = g.transpose(&roi, &[0, 2, 1]); // (N, 49, C)

    let x = proposal_features;
    let attn = self_attention(g, cfg, w, x, &format!("{prefix}.self_attn"))?;
    let x = g.add(x, &attn);
    let x = layer_norm(g, w, &x, &format!("{prefix}.norm1"), c)?;
    let dy = dynamic_conv(
        g,
        cfg,
        w,
        &x,
        &roi_features,
        &format!("{prefix}.inst_interact"),
    )?;
    let x2 = g.add(&x, &dy);
    let x = layer_norm(g, w, &x2, &format!("{prefix}.norm2"), c)?;
    // A linear layer of this stage by its key below `prefix`.
    let lin = |g: &mut Graph, x: &str, key: &str, dims: (usize, usize), bias: bool| {
        linear_rows(g, w, x, &format!("{prefix}.{key}"), dims, bias)
    };
    let h1 = lin(g, &x, "linear1", (c, cfg.ffn_dim), true)?;
    let h1 = g.relu(&h1);
    let ffn = lin(g, &h1, "linear2", (cfg.ffn_dim, c), true)?;
    let x3 = g.add(&x, &ffn);
    let obj = layer_norm(g, w, &x3, &format!("{prefix}.norm3"), c)?; // (N, C)

    let tower = |g: &mut Graph, name: &str, layers: usize| -> Result<String, ExportError> {
        let mut y = obj.clone();
        for i in 0..layers {
            y = lin(g, &y, &format!("{name}.{}", 3 * i), (c, c), false)?;
            y = layer_norm(g, w, &y, &format!("{prefix}.{name}.{}", 3 * i + 1), c)?;
            y = g.relu(&y);
        }
        Ok(y)
    };
    let cls = tower(g, "cls_module", cfg.num_cls_layers)?;
    let reg = tower(g, "reg_module", cfg.num_reg_layers)?;
    let class_logits = lin(g, &cls, "class_logits", (c, cfg.num_classes), true)?;
    let deltas = lin(g, &reg, "bboxes_delta", (c, 4), true)?;
    let pred = apply_deltas(g, &deltas, proposal_boxes_xyxy);
    let params = linear_rows(
        g,
        w,
        &obj,
        &format!("{prefix}.controller"),
        (c, cfg.mask_head_num_params()),
        true,
    )?;
    g.pop_scope();
    Ok(StageValues {
        class_logits,
        pred_boxes_xyxy: pred,
        obj_features: obj,
        mask_head_params: params,
    })
}
