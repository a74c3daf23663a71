//! One dynamic instance interaction stage: Sparse R-CNN `RCNNHead` (self-attention over the
//! queries, `DynamicConv`, FFN, cls/reg towers, box deltas) plus InsPro's weight generator for the
//! CondInst mask head (paper §3.2, Eq. 2).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::config::ModelConfig;
use super::nn::{softmax, xavier_uniform, LayerNorm, Linear};
use super::roi_align::RoiPooler;

/// Sparse R-CNN `_DEFAULT_SCALE_CLAMP` = ln(100000 / 16).
pub const BOX_SCALE_CLAMP: f64 = 8.740_336_742_730_447;
/// `RCNNHead.bbox_weights`.
pub const BOX_DELTA_WEIGHTS: [f64; 4] = [2.0, 2.0, 1.0, 1.0];
/// Focal prior 0.01 → class-logit bias −ln((1 − 0.01) / 0.01).
pub const PRIOR_BIAS: f64 = -4.595_119_850_134_589;

/// `nn.MultiheadAttention` with PyTorch's packed `in_proj_weight` = [W_q; W_k; W_v].
pub struct MultiheadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: Linear,
    num_heads: usize,
}

impl MultiheadAttention {
    pub fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        let in_proj_weight = vb.get_with_hints(
            (3 * dim, dim),
            "in_proj_weight",
            xavier_uniform(&[3 * dim, dim]),
        )?;
        let in_proj_bias = vb.get_with_hints(3 * dim, "in_proj_bias", Init::Const(0.0))?;
        let out_proj = Linear::new(
            dim,
            dim,
            true,
            xavier_uniform(&[dim, dim]),
            Some(Init::Const(0.0)),
            vb.pp("out_proj"),
        )?;
        Ok(Self {
            in_proj_weight,
            in_proj_bias,
            out_proj,
            num_heads,
        })
    }

    /// x: (N, C) — the queries of one image attend to each other. Returns (N, C).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c) = x.dims2()?;
        let h = self.num_heads;
        let dh = c / h;
        let qkv = x
            .matmul(&self.in_proj_weight.t()?)?
            .broadcast_add(&self.in_proj_bias)?; // (N, 3C)
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(1, i * c, c)?
                .reshape((n, h, dh))?
                .transpose(0, 1)?
                .contiguous() // (H, N, dh)
        };
        let q = (split(0)? * (1.0 / (dh as f64).sqrt()))?;
        let k = split(1)?;
        let v = split(2)?;
        let attn = softmax(&q.matmul(&k.t()?.contiguous()?)?, D::Minus1)?; // (H, N, N)
        let out = attn.matmul(&v)?; // (H, N, dh)
        let out = out.transpose(0, 1)?.contiguous()?.reshape((n, c))?;
        self.out_proj.forward(&out)
    }
}

/// Sparse R-CNN `DynamicConv`: two per-query 1x1 "convs" generated from the query, then a Linear
/// over the flattened 7x7 map.
pub struct DynamicConv {
    dynamic_layer: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    out_layer: Linear,
    norm3: LayerNorm,
    dim: usize,
    dynamic_dim: usize,
}

impl DynamicConv {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.fpn_channels;
        let d = cfg.dynamic_dim;
        let r2 = cfg.pooler_resolution * cfg.pooler_resolution;
        Ok(Self {
            dynamic_layer: Linear::xavier(c, 2 * c * d, true, vb.pp("dynamic_layer"))?,
            norm1: LayerNorm::new(d, vb.pp("norm1"))?,
            norm2: LayerNorm::new(c, vb.pp("norm2"))?,
            out_layer: Linear::xavier(c * r2, c, true, vb.pp("out_layer"))?,
            norm3: LayerNorm::new(c, vb.pp("norm3"))?,
            dim: c,
            dynamic_dim: d,
        })
    }

    /// pro_features (N, C); roi_features (N, S, C) with S = 7·7 spatial-major. Returns (N, C).
    pub fn forward(&self, pro_features: &Tensor, roi_features: &Tensor) -> Result<Tensor> {
        let (n, s, c) = roi_features.dims3()?;
        let (cd, d) = (self.dim * self.dynamic_dim, self.dynamic_dim);
        let params = self.dynamic_layer.forward(pro_features)?; // (N, 2·C·d)
        let param1 = params.narrow(1, 0, cd)?.reshape((n, c, d))?; // W1[c_in, c_mid]
        let param2 = params.narrow(1, cd, cd)?.reshape((n, d, c))?; // W2[c_mid, c_out]
        let f = roi_features.matmul(&param1)?; // (N, S, d)
        let f = self.norm1.forward(&f)?.relu()?;
        let f = f.matmul(&param2)?; // (N, S, C)
        let f = self.norm2.forward(&f)?.relu()?;
        let f = f.reshape((n, s * c))?; // index s·C + c
        let f = self.out_layer.forward(&f)?; // (N, C)
        self.norm3.forward(&f)?.relu()
    }
}

/// What one stage predicts for the N slots of one frame.
#[derive(Debug, Clone)]
pub struct StageOutput {
    /// (N, K) logits, sigmoid per class, no background column.
    pub class_logits: Tensor,
    /// (N, 4) decoded boxes, network-input pixels.
    pub pred_boxes_xyxy: Tensor,
    /// (N, C) object features o (the next stage's and the bank's input).
    pub obj_features: Tensor,
    /// (N, P) CondInst dynamic mask head parameters.
    pub mask_head_params: Tensor,
}

/// Sparse R-CNN `RCNNHead` + InsPro weight generator (`controller`). Field names are the
/// checkpoint keys under `head.head_series.{i}`.
pub struct RcnnHead {
    self_attn: MultiheadAttention,
    inst_interact: DynamicConv,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
    cls_module: Vec<(Linear, LayerNorm)>,
    reg_module: Vec<(Linear, LayerNorm)>,
    class_logits: Linear,
    bboxes_delta: Linear,
    controller: Linear,
    pooler_resolution: usize,
}

fn tower(cfg: &ModelConfig, layers: usize, vb: VarBuilder) -> Result<Vec<(Linear, LayerNorm)>> {
    let c = cfg.fpn_channels;
    // nn.ModuleList of [Linear, LayerNorm, ReLU] per layer: keys 3·i and 3·i + 1.
    (0..layers)
        .map(|i| {
            Ok((
                Linear::xavier(c, c, false, vb.pp(3 * i))?,
                LayerNorm::new(c, vb.pp(3 * i + 1))?,
            ))
        })
        .collect()
}

impl RcnnHead {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.fpn_channels;
        let k = cfg.num_classes;
        let p = cfg.mask_head_num_params();
        Ok(Self {
            self_attn: MultiheadAttention::new(c, cfg.num_attention_heads, vb.pp("self_attn"))?,
            inst_interact: DynamicConv::new(cfg, vb.pp("inst_interact"))?,
            linear1: Linear::xavier(c, cfg.ffn_dim, true, vb.pp("linear1"))?,
            linear2: Linear::xavier(cfg.ffn_dim, c, true, vb.pp("linear2"))?,
            norm1: LayerNorm::new(c, vb.pp("norm1"))?,
            norm2: LayerNorm::new(c, vb.pp("norm2"))?,
            norm3: LayerNorm::new(c, vb.pp("norm3"))?,
            cls_module: tower(cfg, cfg.num_cls_layers, vb.pp("cls_module"))?,
            reg_module: tower(cfg, cfg.num_reg_layers, vb.pp("reg_module"))?,
            class_logits: Linear::new(
                c,
                k,
                true,
                xavier_uniform(&[k, c]),
                Some(Init::Const(PRIOR_BIAS)),
                vb.pp("class_logits"),
            )?,
            bboxes_delta: Linear::xavier(c, 4, true, vb.pp("bboxes_delta"))?,
            // IDOL's generator init: xavier weight, zero bias.
            controller: Linear::new(
                c,
                p,
                true,
                xavier_uniform(&[p, c]),
                Some(Init::Const(0.0)),
                vb.pp("controller"),
            )?,
            pooler_resolution: cfg.pooler_resolution,
        })
    }

    /// levels: P2..P5 (C, H, W); proposal_boxes_xyxy (N, 4); proposal_features (N, C).
    pub fn forward(
        &self,
        levels: &[Tensor],
        proposal_boxes_xyxy: &Tensor,
        proposal_features: &Tensor,
        pooler: &RoiPooler,
    ) -> Result<StageOutput> {
        let (n, c) = proposal_features.dims2()?;
        let s = self.pooler_resolution * self.pooler_resolution;
        let roi = pooler.forward(levels, &proposal_boxes_xyxy.detach())?; // (N, C, 7, 7)
        let roi_features = roi.reshape((n, c, s))?.transpose(1, 2)?.contiguous()?; // (N, 49, C)

        let x = proposal_features;
        let x = self.norm1.forward(&(x + self.self_attn.forward(x)?)?)?;
        let x = self
            .norm2
            .forward(&(&x + self.inst_interact.forward(&x, &roi_features)?)?)?;
        let ffn = self.linear2.forward(&self.linear1.forward(&x)?.relu()?)?;
        let obj_features = self.norm3.forward(&(&x + ffn)?)?; // (N, C)

        let mut cls = obj_features.clone();
        for (linear, norm) in &self.cls_module {
            cls = norm.forward(&linear.forward(&cls)?)?.relu()?;
        }
        let mut reg = obj_features.clone();
        for (linear, norm) in &self.reg_module {
            reg = norm.forward(&linear.forward(&reg)?)?.relu()?;
        }
        let class_logits = self.class_logits.forward(&cls)?; // (N, K)
        let deltas = self.bboxes_delta.forward(&reg)?; // (N, 4)
        let pred_boxes_xyxy = apply_deltas(&deltas, proposal_boxes_xyxy)?;
        let mask_head_params = self.controller.forward(&obj_features)?; // (N, P)
        Ok(StageOutput {
            class_logits,
            pred_boxes_xyxy,
            obj_features,
            mask_head_params,
        })
    }
}

/// Sparse R-CNN `apply_deltas`: deltas (N, 4) with weights (2, 2, 1, 1) and the scale clamp,
/// applied to boxes (N, 4) xyxy.
pub fn apply_deltas(deltas: &Tensor, boxes_xyxy: &Tensor) -> Result<Tensor> {
    let col = |t: &Tensor, i: usize| t.narrow(1, i, 1);
    let (x1, y1, x2, y2) = (
        col(boxes_xyxy, 0)?,
        col(boxes_xyxy, 1)?,
        col(boxes_xyxy, 2)?,
        col(boxes_xyxy, 3)?,
    );
    let w = (&x2 - &x1)?;
    let h = (&y2 - &y1)?;
    let cx = (&x1 + (&w * 0.5)?)?;
    let cy = (&y1 + (&h * 0.5)?)?;
    let [wx, wy, ww, wh] = BOX_DELTA_WEIGHTS;
    let dx = (col(deltas, 0)? / wx)?;
    let dy = (col(deltas, 1)? / wy)?;
    let dw = (col(deltas, 2)? / ww)?.minimum(BOX_SCALE_CLAMP)?;
    let dh = (col(deltas, 3)? / wh)?.minimum(BOX_SCALE_CLAMP)?;
    let pcx = ((dx * &w)? + cx)?;
    let pcy = ((dy * &h)? + cy)?;
    let pw = (dw.exp()? * w)?;
    let ph = (dh.exp()? * h)?;
    let half_w = (&pw * 0.5)?;
    let half_h = (&ph * 0.5)?;
    Tensor::cat(
        &[
            (&pcx - &half_w)?,
            (&pcy - &half_h)?,
            (&pcx + &half_w)?,
            (&pcy + &half_h)?,
        ],
        1,
    )
}
