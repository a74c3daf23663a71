//! The CondInst mask path as ONNX (mirrors `model/mask.rs`): the mask branch on P3..P5 (P2..P5
//! at mask feature stride 4) with
//! `aligned_bilinear` as MatMuls with the same constant interpolation matrices, relative
//! coordinates computed in-graph with the soi of each box's RoI level, and the dynamic mask head
//! as batched MatMuls (N, out, in) @ (N, in, HW).

use super::backbone::{conv, ConvExport};
use super::fpn::PyramidValues;
use super::graph::Graph;
use super::head::{level_masks, select_by_level};
use super::{ExportError, Weights};
use crate::model::mask::{aligned_bilinear_matrix, REL_COORD_SOI};
use crate::model::nn::ConvSpec;
use crate::model::ModelConfig;

/// `aligned_bilinear(x, factor)` on the last two dims of x (..., h, w) → (..., f·h, f·w):
/// A_h (f·h, h) @ x @ A_wᵀ (w, f·w).
pub fn aligned_bilinear(g: &mut Graph, x: &str, h: usize, w: usize, factor: usize) -> String {
    if factor <= 1 {
        return x.to_string();
    }
    let a_h = aligned_bilinear_matrix(h, factor);
    let a_h = g.const_f32("aligned_bilinear_h", &[h * factor, h], &a_h);
    let a_w = aligned_bilinear_matrix(w, factor); // (f·w, w)
    let mut a_wt = vec![0f32; a_w.len()];
    for j in 0..w * factor {
        for i in 0..w {
            a_wt[i * w * factor + j] = a_w[j * w + i];
        }
    }
    let a_wt = g.const_f32("aligned_bilinear_wt", &[w, w * factor], &a_wt);
    let y = g.matmul(x, &a_wt);
    g.matmul(&a_h, &y)
}

/// CondInst `MaskBranch`: mask features (1, 8, Hp/f, Wp/f) at the mask feature stride f.
pub fn export_branch(
    g: &mut Graph,
    cfg: &ModelConfig,
    w: &Weights,
    pyramid: &PyramidValues,
) -> Result<String, ExportError> {
    g.push_scope("mask_branch");
    let (cin, c) = (cfg.fpn_channels, cfg.mask_branch_channels);
    let conv_bn = |g: &mut Graph, x: &str, prefix: String, cin: usize| {
        let norm = format!("{prefix}.1");
        let conv_prefix = format!("{prefix}.0");
        conv(
            g,
            w,
            x,
            &ConvExport {
                prefix: &conv_prefix,
                norm: Some(&norm),
                spec: ConvSpec::same(cin, c, 3, 1).with_relu(true),
            },
        )
    };
    let [wp, hp] = super::graph_size(cfg);
    let levels = cfg.mask_branch_levels();
    let first = levels.start;
    let mut x = conv_bn(
        g,
        &pyramid.levels[first],
        "mask_branch.refine.0".into(),
        cin,
    )?;
    for (i, level) in levels.enumerate().skip(1) {
        let y = conv_bn(
            g,
            &pyramid.levels[level],
            format!("mask_branch.refine.{i}"),
            cin,
        )?;
        let s = 1usize << (level + 2);
        let factor = s / cfg.mask_feat_stride;
        let y = aligned_bilinear(g, &y, hp / s, wp / s, factor);
        x = g.add(&x, &y);
    }
    debug_assert!(hp / cfg.mask_feat_stride > 0 && wp / cfg.mask_feat_stride > 0);
    for i in 0..cfg.mask_branch_convs {
        x = conv_bn(g, &x, format!("mask_branch.tower.{i}"), c)?;
    }
    let prefix = format!("mask_branch.tower.{}", cfg.mask_branch_convs);
    let out = conv(
        g,
        w,
        &x,
        &ConvExport {
            prefix: &prefix,
            norm: None,
            spec: ConvSpec::same(c, cfg.mask_out_channels, 1, 1).with_bias(),
        },
    )?;
    g.pop_scope();
    Ok(out)
}

/// Dynamic mask head: mask_feats (1, 8, h, w) at stride f, params (N, P), boxes (N, 4) → mask
/// logits (N, h·f/o, w·f/o) at the mask output stride o (`mask_out_stride`).
pub fn export_head(
    g: &mut Graph,
    cfg: &ModelConfig,
    mask_feats: &str,
    mask_head_params: &str,
    pred_boxes_xyxy: &str,
    (h, w): (usize, usize),
) -> Result<String, ExportError> {
    g.push_scope("mask_head");
    let n = cfg.num_queries as i64;
    let hw = h * w;
    // Relative coordinates (N, 2, HW): (centre − location) / soi(level of the box).
    let lo = g.slice(pred_boxes_xyxy, 1, 0, 2);
    let hi = g.slice(pred_boxes_xyxy, 1, 2, 4);
    let sum = g.add(&lo, &hi);
    let half = g.scalar(0.5);
    let centre = g.mul(&half, &sum);
    let centre = g.reshape(&centre, &[n, 2, 1]);
    let s = cfg.mask_feat_stride as f32;
    let mut loc = vec![0f32; 2 * hw];
    for iy in 0..h {
        for ix in 0..w {
            loc[iy * w + ix] = ix as f32 * s + s / 2.0;
            loc[hw + iy * w + ix] = iy as f32 * s + s / 2.0;
        }
    }
    let loc = g.const_f32("locations", &[1, 2, hw], &loc);
    let ge = level_masks(g, pred_boxes_xyxy);
    let soi = REL_COORD_SOI.map(|v| g.scalar(v));
    let soi = select_by_level(g, &ge, [&soi[0], &soi[1], &soi[2], &soi[3]]); // (N, 1)
    let soi = g.reshape(&soi, &[n, 1, 1]);
    let rel = g.sub(&centre, &loc);
    let rel = g.div(&rel, &soi); // (N, 2, HW)

    let c = cfg.mask_out_channels;
    let feats = g.reshape(mask_feats, &[1, c as i64, hw as i64]);
    let shape = g.ints(&[n, c as i64, hw as i64]);
    let feats = g.op("Expand", &[&feats, &shape], vec![]);
    let mut x = g.concat(&[&rel, &feats], 1); // (N, 10, HW)

    let (weight_nums, bias_nums) = cfg.mask_head_param_split();
    let mut offset = 0i64;
    let mut weights = Vec::new();
    let mut in_c = c + 2;
    for wn in &weight_nums {
        let out_c = wn / in_c;
        let p = g.slice(mask_head_params, 1, offset, offset + *wn as i64);
        weights.push(g.reshape(&p, &[n, out_c as i64, in_c as i64]));
        offset += *wn as i64;
        in_c = out_c;
    }
    let mut biases = Vec::new();
    for bn in &bias_nums {
        let p = g.slice(mask_head_params, 1, offset, offset + *bn as i64);
        biases.push(g.reshape(&p, &[n, *bn as i64, 1]));
        offset += *bn as i64;
    }
    let last = weights.len() - 1;
    for (i, (wt, b)) in weights.iter().zip(&biases).enumerate() {
        let y = g.matmul(wt, &x);
        x = g.add(&y, b); // (N, out, HW)
        if i < last {
            x = g.relu(&x);
        }
    }
    let logits = g.reshape(&x, &[n, h as i64, w as i64]);
    let factor = cfg.mask_feat_stride / cfg.mask_out_stride;
    let out = aligned_bilinear(g, &logits, h, w, factor);
    g.pop_scope();
    Ok(out)
}
