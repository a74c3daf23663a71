//! Training-only signals beyond the paper (ours, docs/model.md): denoising queries (DN-DETR) and
//! an auxiliary semantic loss on P2 (CondInst's auxiliary semantic branch, moved to P2). Neither
//! changes inference, export or the keys of the shipped weights: the semantic head's variables
//! live under [`AUX_PREFIX`] and are kept out of the weights file.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::matching::GtObject;
use crate::model::head::PRIOR_BIAS;
use crate::model::nn::{xavier_uniform, Linear};
use crate::model::weights::SplitMix64;
use crate::model::ModelConfig;

/// Checkpoint keys of training-only variables start with this.
pub const AUX_PREFIX: &str = "aux.";

/// A 1x1 convolution from P2 to per-pixel class logits (sigmoid per class, no background).
pub struct SemanticHead {
    proj: Linear,
}

impl SemanticHead {
    /// Variables under `aux.semantic.proj` of `vb`'s root.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (c, k) = (cfg.fpn_channels, cfg.num_classes);
        Ok(Self {
            proj: Linear::new(
                c,
                k,
                true,
                xavier_uniform(&[k, c]),
                Some(Init::Const(PRIOR_BIAS)),
                vb.pp("aux").pp("semantic").pp("proj"),
            )?,
        })
    }

    /// p2: (C, H, W) → logits (H·W, K).
    pub fn forward(&self, p2: &Tensor) -> Result<Tensor> {
        let (c, h, w) = p2.dims3()?;
        let x = p2.reshape((c, h * w))?.t()?.contiguous()?;
        candle_nn::Module::forward(&self.proj, &x)
    }
}

/// A linear classifier on the heads' own RoI features (C x R x R from the pooler) at jittered
/// ground-truth boxes, trained with softmax cross-entropy (ours): the direct, many-sample class
/// signal into the trunk that the feature probe measures, without going through the stages.
pub struct RoiClassifier {
    proj: Linear,
}

impl RoiClassifier {
    /// Variables under `aux.roi_class.proj` of `vb`'s root.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let r = cfg.pooler_resolution;
        let (d, k) = (cfg.fpn_channels * r * r, cfg.num_classes);
        Ok(Self {
            proj: Linear::new(
                d,
                k,
                true,
                xavier_uniform(&[k, d]),
                Some(Init::Const(0.0)),
                vb.pp("aux").pp("roi_class").pp("proj"),
            )?,
        })
    }

    /// rois: (G, C, R, R) → logits (G, K).
    pub fn forward(&self, rois: &Tensor) -> Result<Tensor> {
        let g = rois.dim(0)?;
        candle_nn::Module::forward(&self.proj, &rois.reshape((g, ()))?)
    }
}

/// Per-pixel class targets (P, K) on P2's `p2_h` x `p2_w` grid (stride 4) from a frame's
/// ground-truth masks (G, mask cells) on the grid of `mask_stride` (the model's
/// `mask_out_stride`; each P2 cell takes the mask cell under its centre) and their classes; also
/// the number of foreground pixels (the loss's normaliser).
pub fn semantic_targets(
    gt_masks: &Tensor,
    gts: &[GtObject],
    num_classes: usize,
    (p2_h, p2_w): (usize, usize),
    mask_stride: usize,
) -> Result<(Tensor, usize)> {
    const P2_STRIDE: usize = 4;
    let (g, cells) = gt_masks.dims2()?;
    let p = p2_h * p2_w;
    let mask_w = p2_w * P2_STRIDE / mask_stride;
    if mask_w * (p2_h * P2_STRIDE / mask_stride) != cells {
        candle_core::bail!(
            "semantic targets: {cells} mask cells are not P2's {p2_h}x{p2_w} at stride {mask_stride}"
        );
    }
    // The mask cell under each P2 cell's centre (pixel 4i + 2).
    let under = |i: usize| (P2_STRIDE * i + P2_STRIDE / 2) / mask_stride;
    let mut out = vec![0f32; p * num_classes];
    if g > 0 {
        let m = gt_masks.to_vec2::<f32>()?;
        for (obj, row) in gts.iter().zip(&m) {
            if obj.class >= num_classes {
                continue;
            }
            for y in 0..p2_h {
                for x in 0..p2_w {
                    if row[under(y) * mask_w + under(x)] > 0.5 {
                        out[(y * p2_w + x) * num_classes + obj.class] = 1.0;
                    }
                }
            }
        }
    }
    let fg = (0..p)
        .filter(|i| {
            out[i * num_classes..(i + 1) * num_classes]
                .iter()
                .any(|v| *v > 0.5)
        })
        .count();
    Ok((
        Tensor::from_vec(out, (p, num_classes), gt_masks.device())?,
        fg,
    ))
}

/// DN-DETR box noise: the centre moves by up to `lambda`·size/2 and the width and height change
/// by up to `lambda`·size, uniformly; the result is clipped to the `w` x `h` image and kept at
/// least one pixel wide.
pub fn jitter_box(b: [f32; 4], lambda: f32, rng: &mut SplitMix64, w: f32, h: f32) -> [f32; 4] {
    let (bw, bh) = ((b[2] - b[0]).max(1.0), (b[3] - b[1]).max(1.0));
    let (cx, cy) = (0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3]));
    let mut u = || (rng.next_f64() as f32) * 2.0 - 1.0;
    let cx = cx + u() * lambda * bw * 0.5;
    let cy = cy + u() * lambda * bh * 0.5;
    let nw = (bw + u() * lambda * bw).max(1.0);
    let nh = (bh + u() * lambda * bh).max(1.0);
    let x1 = (cx - nw * 0.5).clamp(0.0, (w - 1.0).max(0.0));
    let y1 = (cy - nh * 0.5).clamp(0.0, (h - 1.0).max(0.0));
    let x2 = (cx + nw * 0.5).clamp(x1 + 1.0, w.max(x1 + 1.0));
    let y2 = (cy + nh * 0.5).clamp(y1 + 1.0, h.max(y1 + 1.0));
    [x1, y1, x2, y2]
}
