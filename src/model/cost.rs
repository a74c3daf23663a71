//! Parameter count and multiply-accumulate count of the network by part (backbone, FPN, heads,
//! mask), for `inspro info`. MACs are what detectron2/fvcore report as "FLOPs" — the convention of
//! the paper's 45.5 GFLOPs (Table 2d).

use std::collections::BTreeMap;
use std::sync::Mutex;

use candle_core::{Device, Tensor};

use super::backbone::{resnet_blocks, tiny_convs};
use super::config::{BackboneKind, ModelConfig};
use super::inspro::InsPro;
use super::weights::{var_builder, ParamRequest, ParamSource};
use super::ModelError;

/// The four parts `inspro info` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Backbone,
    Fpn,
    Heads,
    Mask,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Backbone, Part::Fpn, Part::Heads, Part::Mask];

    pub fn name(self) -> &'static str {
        match self {
            Part::Backbone => "backbone",
            Part::Fpn => "fpn",
            Part::Heads => "heads",
            Part::Mask => "mask",
        }
    }

    /// The part a checkpoint key belongs to.
    pub fn of_key(key: &str) -> Part {
        if key.starts_with("backbone.bottom_up.") {
            Part::Backbone
        } else if key.starts_with("backbone.fpn_") {
            Part::Fpn
        } else if key.starts_with("mask_branch.") || key.contains(".controller.") {
            Part::Mask
        } else {
            Part::Heads
        }
    }
}

/// Records the (key, shape) of every parameter a model asks for; hands out zeros.
struct ShapeRecorder(Mutex<Vec<(String, Vec<usize>)>>);

impl ParamSource for ShapeRecorder {
    fn param(&self, req: ParamRequest<'_>) -> candle_core::Result<Tensor> {
        if let Ok(mut v) = self.0.lock() {
            v.push((req.name.to_string(), req.shape.dims().to_vec()));
        }
        Tensor::zeros(req.shape, req.dtype, req.device)
    }

    fn stored(&self, _: &str) -> Option<Tensor> {
        None
    }
}

/// Every parameter key of the model with its shape, in construction order.
pub fn param_shapes(cfg: &ModelConfig) -> Result<Vec<(String, Vec<usize>)>, ModelError> {
    cfg.validate()?;
    let recorder = std::sync::Arc::new(ShapeRecorder(Mutex::new(Vec::new())));
    let vb = var_builder(recorder.clone(), &Device::Cpu);
    InsPro::new(cfg, vb)?;
    let shapes = recorder
        .0
        .lock()
        .map(|v| v.clone())
        .map_err(|_| ModelError::Input("shape recorder lock poisoned".into()))?;
    Ok(shapes)
}

/// Parameters per part.
pub fn param_counts(cfg: &ModelConfig) -> Result<BTreeMap<Part, usize>, ModelError> {
    let mut out: BTreeMap<Part, usize> = Part::ALL.iter().map(|p| (*p, 0)).collect();
    for (key, shape) in param_shapes(cfg)? {
        *out.entry(Part::of_key(&key)).or_default() += shape.iter().product::<usize>();
    }
    Ok(out)
}

/// Multiply-accumulates per part for one frame of `width` x `height` (the padded network input),
/// running `stages` stages.
pub fn macs(cfg: &ModelConfig, width: usize, height: usize, stages: usize) -> BTreeMap<Part, u64> {
    let conv = |cin: usize, cout: usize, k: usize, h: usize, w: usize| -> u64 {
        (cin * cout * k * k) as u64 * (h * w) as u64
    };
    let down = |v: usize, s: usize| v.div_ceil(s);
    let mut backbone = 0u64;
    let (h2, w2) = (down(height, 2), down(width, 2));
    let sizes: Vec<(usize, usize)> = (2..=5)
        .map(|l| (down(height, 1 << l), down(width, 1 << l)))
        .collect();
    match cfg.backbone {
        BackboneKind::Resnet50 | BackboneKind::Resnet18 => {
            backbone += conv(3, 64, 7, h2, w2);
            // Each convolution at its output size: a block's input is the previous stage's
            // size, its stride (in the first conv that has one) brings it to its own.
            for b in resnet_blocks(cfg.backbone) {
                let mut size = if b.stride > 1 {
                    sizes[b.stage - 1]
                } else {
                    sizes[b.stage]
                };
                for (_, (cin, cout, k, stride), _) in b.convs() {
                    size = (down(size.0, stride), down(size.1, stride));
                    backbone += conv(cin, cout, k, size.0, size.1);
                }
                if let Some((_, (cin, cout, k, _), _)) = b.shortcut() {
                    let (h, w) = sizes[b.stage];
                    backbone += conv(cin, cout, k, h, w);
                }
            }
        }
        BackboneKind::Tiny => {
            let mut size = (height, width);
            for c in tiny_convs(cfg.tiny_channels) {
                size = (down(size.0, c.stride), down(size.1, c.stride));
                backbone += conv(c.cin, c.cout, 3, size.0, size.1);
            }
        }
    }
    let c = cfg.fpn_channels;
    let mut fpn = 0u64;
    for (i, cin) in cfg.backbone_channels().into_iter().enumerate() {
        let (h, w) = sizes[i];
        fpn += conv(cin, c, 1, h, w) + conv(c, c, 3, h, w);
    }
    let n = cfg.num_queries as u64;
    let (cc, d, f, s) = (
        c as u64,
        cfg.dynamic_dim as u64,
        cfg.ffn_dim as u64,
        (cfg.pooler_resolution * cfg.pooler_resolution) as u64,
    );
    let k = cfg.num_classes as u64;
    let per_query = 4 * cc * cc                          // in_proj + out_proj
        + 2 * n * cc                                     // scores + weighted values
        + cc * 2 * cc * d + s * cc * d * 2               // dynamic_layer + two bmm
        + s * cc * cc                                    // out_layer
        + 2 * cc * f                                     // FFN
        + (cfg.num_cls_layers + cfg.num_reg_layers) as u64 * cc * cc
        + cc * k + cc * 4
        + s * cc * 4 * cfg.pooler_sampling_ratio.pow(2) as u64; // RoIAlign bilinear taps
    let heads = stages as u64 * n * per_query + n * cc * (cfg.bank_size as u64 + 1); // + ε
    let levels = cfg.mask_branch_levels();
    let (hm, wm) = sizes[levels.start];
    let mb = cfg.mask_branch_channels;
    let mut mask = 0u64;
    for (i, (h, w)) in sizes[levels].iter().enumerate() {
        mask += conv(c, mb, 3, *h, *w);
        if i > 0 {
            mask += (mb * hm * wm) as u64 * 2; // aligned_bilinear up to the finest level
        }
    }
    mask += cfg.mask_branch_convs as u64 * conv(mb, mb, 3, hm, wm);
    mask += conv(mb, cfg.mask_out_channels, 1, hm, wm);
    let p = cfg.mask_head_num_params() as u64;
    let (wn, _) = cfg.mask_head_param_split();
    // One mask head per frame (the last stage), plus the weight generator of every stage run.
    mask += n * ((wn.iter().sum::<usize>() * hm * wm) as u64 + 4 * (hm * wm) as u64);
    mask += stages as u64 * n * cc * p;
    [
        (Part::Backbone, backbone),
        (Part::Fpn, fpn),
        (Part::Heads, heads),
        (Part::Mask, mask),
    ]
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trunks' convolutions at 224x224 against the published counts of torchvision's
    /// ResNet-50 (v1.5, stride in the 3x3 like detectron2: 4.089 GMACs) and ResNet-18 (1.814
    /// GMACs), both less their fc layer (2.048 / 0.512 M): a layout error (a depth, a width,
    /// a shortcut or a stride in the wrong place) moves them by far more than the 0.5 % allowed.
    #[test]
    fn resnet_trunks_count_the_published_macs() {
        for (kind, published) in [
            (BackboneKind::Resnet50, 4.089e9 - 2.048e6),
            (BackboneKind::Resnet18, 1.814e9 - 0.512e6),
        ] {
            let cfg = ModelConfig {
                backbone: kind,
                ..ModelConfig::default()
            };
            let got = macs(&cfg, 224, 224, 1)[&Part::Backbone] as f64;
            assert!(
                (got / published - 1.0).abs() < 0.005,
                "{kind:?}: {got:.4e} MACs, published {published:.4e}"
            );
        }
    }
}
