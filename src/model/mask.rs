//! CondInst mask path (AdelaiDet `mask_branch.py`, `dynamic_mask_head.py`): the mask branch on
//! P3..P5 (or P2..P5 with `mask_feat_stride = 4`), relative coordinates from the predicted box
//! centre (InsPro §3.2), the dynamic mask head as batched matmuls, and `aligned_bilinear`
//! up-sampling written as matmuls (candle has no bilinear backward).

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::ModelConfig;
use super::nn::{c2_xavier_fill, Conv2d, ConvSpec};
use super::roi_align::assign_levels;

/// CondInst MASK_OUT_STRIDE, the default of `ModelConfig::mask_out_stride`: mask logits at
/// stride 4 of the padded input whatever the stride of the mask features
/// (`ModelConfig::mask_feat_stride`, 8 or 4).
pub const MASK_OUT_STRIDE: usize = 4;
/// Rel-coord normaliser per RoI level P2..P5 (our choice, docs/model.md): CondInst's sizes of
/// interest shifted to the pooler's levels.
pub const REL_COORD_SOI: [f32; 4] = [64.0, 128.0, 256.0, 512.0];

/// CondInst `MaskBranch`: per-level refine (3x3 conv + BN + ReLU), sum at the finest level's
/// resolution (P3, or P2 at mask feature stride 4), a tower of 3x3 convs, then 1x1 to the mask
/// feature channels. Keys under `mask_branch`; `refine.i` is the i-th level read, finest first.
pub struct MaskBranch {
    refine: Vec<Conv2d>,
    tower: Vec<Conv2d>,
}

impl MaskBranch {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (c_in, c) = (cfg.fpn_channels, cfg.mask_branch_channels);
        let conv_bn = |vb: VarBuilder, cin: usize| -> Result<Conv2d> {
            let spec = ConvSpec::same(cin, c, 3, 1).with_relu(true);
            Conv2d::new(
                spec,
                c2_xavier_fill(&[c, cin, 3, 3]),
                vb.pp(0),
                Some(vb.pp(1)),
            )
        };
        let refine = (0..cfg.mask_branch_levels().len())
            .map(|i| conv_bn(vb.pp("refine").pp(i), c_in))
            .collect::<Result<Vec<_>>>()?;
        let mut tower = (0..cfg.mask_branch_convs)
            .map(|i| conv_bn(vb.pp("tower").pp(i), c))
            .collect::<Result<Vec<_>>>()?;
        let out = cfg.mask_out_channels;
        let spec = ConvSpec::same(c, out, 1, 1).with_bias();
        tower.push(Conv2d::new(
            spec,
            c2_xavier_fill(&[out, c, 1, 1]),
            vb.pp("tower").pp(cfg.mask_branch_convs),
            None,
        )?);
        Ok(Self { refine, tower })
    }

    /// `pyramid`: P2..P5, each (1, C, H/s, W/s). Returns mask features (1, 8, H/f, W/f) at the
    /// mask feature stride f.
    pub fn forward(&self, pyramid: [&Tensor; 4]) -> Result<Tensor> {
        // One refine conv per level read, the coarsest being P5.
        let inputs = &pyramid[pyramid.len() - self.refine.len()..];
        let mut x = self.refine[0].forward(inputs[0])?;
        let (_, _, h, _) = x.dims4()?;
        for (refine, p) in self.refine[1..].iter().zip(&inputs[1..]) {
            let y = refine.forward(p)?;
            let factor = h / y.dim(2)?;
            x = (x + aligned_bilinear(&y, factor)?)?;
        }
        for conv in &self.tower {
            x = conv.forward(&x)?;
        }
        Ok(x)
    }
}

/// The matrix (f·n, n) of AdelaiDet `aligned_bilinear` along one axis of length n: replicate-pad
/// the end by one, bilinear resize to f·n + 1 with align_corners, replicate-pad the front by
/// f / 2, keep the first f·n samples.
pub fn aligned_bilinear_matrix(n: usize, factor: usize) -> Vec<f32> {
    let m = n * factor;
    let mut a = vec![0f32; m * n];
    for j in 0..m {
        let r = j.saturating_sub(factor / 2);
        let src = r as f64 / factor as f64;
        let lo = src.floor() as usize;
        let frac = (src - lo as f64) as f32;
        let lo_c = lo.min(n - 1);
        let hi_c = (lo + 1).min(n - 1);
        a[j * n + lo_c] += 1.0 - frac;
        if frac > 0.0 {
            a[j * n + hi_c] += frac;
        }
    }
    a
}

/// `aligned_bilinear(x, factor)`: (B, C, h, w) → (B, C, f·h, f·w), as two matmuls (differentiable).
pub fn aligned_bilinear(x: &Tensor, factor: usize) -> Result<Tensor> {
    if factor <= 1 {
        return Ok(x.clone());
    }
    let (b, c, h, w) = x.dims4()?;
    let dev = x.device();
    let a_h = Tensor::from_vec(aligned_bilinear_matrix(h, factor), (h * factor, h), dev)?;
    let a_w = Tensor::from_vec(aligned_bilinear_matrix(w, factor), (w * factor, w), dev)?;
    let y = x
        .reshape((b * c, h, w))?
        .broadcast_matmul(&a_w.t()?.contiguous()?)?; // (BC, h, f·w)
    let y = y
        .transpose(1, 2)?
        .contiguous()?
        .broadcast_matmul(&a_h.t()?.contiguous()?)?; // (BC, f·w, f·h)
    y.transpose(1, 2)?
        .contiguous()?
        .reshape((b, c, h * factor, w * factor))
}

/// Relative coordinates (N, 2, H·W) of every location of the mask features (stride `stride`)
/// to each box centre, `(centre − location) / soi(level of the box)`, x first. Boxes are read on
/// the host (detached).
pub fn rel_coords(
    pred_boxes_xyxy: &Tensor,
    (feat_h, feat_w, stride): (usize, usize, usize),
    device: &Device,
) -> Result<Tensor> {
    let boxes = pred_boxes_xyxy.detach().to_vec2::<f32>()?;
    let boxes4: Vec<[f32; 4]> = boxes.iter().map(|b| [b[0], b[1], b[2], b[3]]).collect();
    let levels = assign_levels(&boxes4, 2, 5);
    let hw = feat_h * feat_w;
    let mut out = vec![0f32; boxes4.len() * 2 * hw];
    let s = stride as f32;
    for (i, (b, level)) in boxes4.iter().zip(levels).enumerate() {
        let soi = REL_COORD_SOI[level.clamp(2, 5) - 2];
        let cx = 0.5 * (b[0] + b[2]);
        let cy = 0.5 * (b[1] + b[3]);
        let (xs, ys) = out[i * 2 * hw..(i + 1) * 2 * hw].split_at_mut(hw);
        for iy in 0..feat_h {
            let ly = iy as f32 * s + s / 2.0;
            for ix in 0..feat_w {
                let lx = ix as f32 * s + s / 2.0;
                xs[iy * feat_w + ix] = (cx - lx) / soi;
                ys[iy * feat_w + ix] = (cy - ly) / soi;
            }
        }
    }
    Tensor::from_vec(out, (boxes4.len(), 2, hw), device)
}

/// CondInst dynamic mask head: per instance, `layers` 1x1 convs whose weights are the instance's
/// generated parameters, split `w0 | w1 | … | b0 | b1 | …`; ReLU between layers.
pub struct DynamicMaskHead {
    weight_nums: Vec<usize>,
    bias_nums: Vec<usize>,
    in_channels: usize,
    feat_stride: usize,
    out_stride: usize,
}

impl DynamicMaskHead {
    pub fn new(cfg: &ModelConfig) -> Self {
        let (weight_nums, bias_nums) = cfg.mask_head_param_split();
        Self {
            weight_nums,
            bias_nums,
            in_channels: cfg.mask_out_channels + 2,
            feat_stride: cfg.mask_feat_stride,
            out_stride: cfg.mask_out_stride,
        }
    }

    /// Split (N, P) parameters into per-layer weights (N, out, in) and biases (N, out, 1).
    pub fn split_params(&self, params: &Tensor) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let n = params.dim(0)?;
        let mut offset = 0;
        let mut weights = Vec::with_capacity(self.weight_nums.len());
        let mut in_c = self.in_channels;
        for &wn in &self.weight_nums {
            let out_c = wn / in_c;
            weights.push(params.narrow(1, offset, wn)?.reshape((n, out_c, in_c))?);
            offset += wn;
            in_c = out_c;
        }
        let mut biases = Vec::with_capacity(self.bias_nums.len());
        for &bn in &self.bias_nums {
            biases.push(params.narrow(1, offset, bn)?.reshape((n, bn, 1))?);
            offset += bn;
        }
        Ok((weights, biases))
    }

    /// mask_feats (1, 8, h, w) at the mask feature stride f; params (N, P); boxes (N, 4) → mask
    /// logits (N, h·f/o, w·f/o) at the mask output stride o.
    pub fn forward(
        &self,
        mask_feats: &Tensor,
        mask_head_params: &Tensor,
        pred_boxes_xyxy: &Tensor,
    ) -> Result<Tensor> {
        let (_, c, h, w) = mask_feats.dims4()?;
        let n = mask_head_params.dim(0)?;
        let rel = rel_coords(
            pred_boxes_xyxy,
            (h, w, self.feat_stride),
            mask_feats.device(),
        )?; // (N, 2, HW)
        let feats = mask_feats.reshape((1, c, h * w))?.repeat((n, 1, 1))?; // (N, 8, HW)
        let mut x = Tensor::cat(&[rel, feats], 1)?; // (N, 10, HW)
        let (weights, biases) = self.split_params(mask_head_params)?;
        let last = weights.len() - 1;
        for (i, (wt, b)) in weights.iter().zip(&biases).enumerate() {
            x = wt.matmul(&x)?.broadcast_add(b)?; // (N, out, HW)
            if i < last {
                x = x.relu()?;
            }
        }
        let logits = x.reshape((n, 1, h, w))?;
        let factor = self.feat_stride / self.out_stride;
        aligned_bilinear(&logits, factor)?.reshape((n, h * factor, w * factor))
    }
}
