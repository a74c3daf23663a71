//! `ModelConfig`: every number of the network, with the paper's defaults (InsPro §4.2; Sparse R-CNN
//! `config.py` and `sparsercnn.res50.100pro.3x.yaml`; AdelaiDet CondInst `defaults.py`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Backbone trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// torchvision/detectron2 ResNet-50 (bottleneck, stride in the 3x3, FrozenBN).
    Resnet50,
    /// ResNet-18 (basic blocks, FrozenBN).
    Resnet18,
    /// A small strided-conv trunk for synthetic data and tests: no max-pool, no norm.
    Tiny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Human-readable name, written into exported manifests.
    pub name: String,
    pub backbone: BackboneKind,
    /// Output channels of every stage of the `tiny` trunk (C2..C5); ignored by the ResNets.
    pub tiny_channels: [usize; 4],
    /// FPN output channels; also the query width (Sparse R-CNN HIDDEN_DIM).
    pub fpn_channels: usize,
    /// Sparse R-CNN NUM_PROPOSALS: number of instance queries / proposal boxes (slots).
    pub num_queries: usize,
    /// Sparse R-CNN NUM_HEADS: number of iterative dynamic instance interaction stages.
    pub num_stages: usize,
    /// Sparse R-CNN NHEADS: attention heads of the self-attention over queries.
    pub num_attention_heads: usize,
    /// Sparse R-CNN DIM_FEEDFORWARD.
    pub ffn_dim: usize,
    /// Sparse R-CNN DIM_DYNAMIC: the middle width of DynamicConv.
    pub dynamic_dim: usize,
    /// Sparse R-CNN NUM_CLS: layers of the classification tower.
    pub num_cls_layers: usize,
    /// Sparse R-CNN NUM_REG: layers of the box-regression tower.
    pub num_reg_layers: usize,
    /// ROIAlignV2 output resolution.
    pub pooler_resolution: usize,
    /// ROIAlignV2 sampling ratio.
    pub pooler_sampling_ratio: usize,
    /// Foreground classes (sigmoid, no background column).
    pub num_classes: usize,
    /// Class names, in class-index order; may be empty (then `class_<i>`).
    pub class_names: Vec<String>,
    /// CondInst MASK_BRANCH.CHANNELS.
    pub mask_branch_channels: usize,
    /// CondInst MASK_BRANCH.NUM_CONVS: convs of the mask tower.
    pub mask_branch_convs: usize,
    /// Stride of the mask features: 8 (CondInst: the branch on P3..P5, the dynamic head at
    /// stride 8, its logits up-sampled x2 to stride 4) or 4 (ours: the branch on P2..P5 and the
    /// dynamic head directly at stride 4; for objects of a few dozen pixels, docs/model.md).
    pub mask_feat_stride: usize,
    /// Stride of the mask logits (CondInst MASK_OUT_STRIDE, 4): the dynamic head's output is
    /// up-sampled from `mask_feat_stride` to this. The one setting the training targets, the
    /// exported shapes, the manifest and every engine's mask read (2, 4 or 8, at most
    /// `mask_feat_stride`).
    pub mask_out_stride: usize,
    /// CondInst MASK_BRANCH.OUT_CHANNELS: mask feature channels.
    pub mask_out_channels: usize,
    /// CondInst MASK_HEAD.NUM_LAYERS.
    pub mask_head_layers: usize,
    /// CondInst MASK_HEAD.CHANNELS.
    pub mask_head_channels: usize,
    /// Feature bank length T (intra-query attention, Eq. 1). 1 means no attention (q = o).
    pub bank_size: usize,
    /// InsPro-lite key-frame interval K; 0 runs every stage on every frame.
    pub key_frame_interval: usize,
    /// Carry (query, box) pairs to the next frame (InsPro). Off restarts every frame from the
    /// learned init, ids by slot: the paper's "no propagation" ablation (Table 2a).
    pub propagate: bool,
    /// Input size (width, height): frames are resized to fit inside it, keeping aspect ratio.
    pub input_size: [usize; 2],
    /// Pixel mean / std, RGB, 0..255.
    pub pixel_mean: [f32; 3],
    pub pixel_std: [f32; 3],
    /// Score calibration `[a, b]` of these weights (Platt scaling): every engine reports class
    /// probabilities `sigmoid(a * logit + b)`, so that a score reads as the chance that the
    /// track is right and the tracker's birth and keep scores mean what they say. `[1, 0]`
    /// (the default) is the network's own sigmoid; `inspro eval --fit-scores` fits it on
    /// held-out videos (docs/model.md, "score calibration"). Monotone (a > 0): the
    /// ranking, and so AP, hardly moves.
    pub score_calibration: [f32; 2],
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "inspro-r50".into(),
            backbone: BackboneKind::Resnet50,
            tiny_channels: [32, 64, 128, 256],
            fpn_channels: 256,
            num_queries: 100,
            num_stages: 6,
            num_attention_heads: 8,
            ffn_dim: 2048,
            dynamic_dim: 64,
            num_cls_layers: 1,
            num_reg_layers: 3,
            pooler_resolution: 7,
            pooler_sampling_ratio: 2,
            num_classes: 40,
            class_names: Vec::new(),
            mask_branch_channels: 128,
            mask_branch_convs: 4,
            mask_feat_stride: 8,
            mask_out_stride: crate::model::mask::MASK_OUT_STRIDE,
            mask_out_channels: 8,
            mask_head_layers: 3,
            mask_head_channels: 8,
            bank_size: 18,
            key_frame_interval: 0,
            propagate: true,
            input_size: [640, 360],
            pixel_mean: [123.675, 116.28, 103.53],
            pixel_std: [58.395, 57.12, 57.375],
            score_calibration: [1.0, 0.0],
        }
    }
}

impl ModelConfig {
    /// Read a TOML file; every missing key takes the paper's default.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Self = toml::from_str(&text).map_err(|e| ModelError::Config {
            file: path.display().to_string(),
            field: e
                .span()
                .map(|s| field_at(&text, s.start))
                .unwrap_or_default(),
            reason: e.message().to_string(),
        })?;
        cfg.validate().map_err(|e| match e {
            ModelError::Config { field, reason, .. } => ModelError::Config {
                file: path.display().to_string(),
                field,
                reason,
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Check the numbers that the network's shapes depend on.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &str, reason: String| {
            Err(ModelError::Config {
                file: String::new(),
                field: field.into(),
                reason,
            })
        };
        if self.fpn_channels == 0
            || !self
                .fpn_channels
                .is_multiple_of(self.num_attention_heads.max(1))
        {
            return bad(
                "fpn_channels",
                format!(
                    "{} must be a positive multiple of num_attention_heads ({})",
                    self.fpn_channels, self.num_attention_heads
                ),
            );
        }
        for (field, v) in [
            ("num_queries", self.num_queries),
            ("num_stages", self.num_stages),
            ("num_attention_heads", self.num_attention_heads),
            ("ffn_dim", self.ffn_dim),
            ("dynamic_dim", self.dynamic_dim),
            ("pooler_resolution", self.pooler_resolution),
            ("num_classes", self.num_classes),
            ("mask_branch_channels", self.mask_branch_channels),
            ("mask_out_channels", self.mask_out_channels),
            ("mask_head_channels", self.mask_head_channels),
            ("bank_size", self.bank_size),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if ![4, 8].contains(&self.mask_feat_stride) {
            return bad(
                "mask_feat_stride",
                format!("{} is not 4 or 8", self.mask_feat_stride),
            );
        }
        if ![2, 4, 8].contains(&self.mask_out_stride)
            || self.mask_out_stride > self.mask_feat_stride
        {
            return bad(
                "mask_out_stride",
                format!(
                    "{} is not 2, 4 or 8 at most mask_feat_stride ({})",
                    self.mask_out_stride, self.mask_feat_stride
                ),
            );
        }
        if self.mask_head_layers < 2 {
            return bad("mask_head_layers", "must be at least 2".into());
        }
        if self.input_size[0] < 32 || self.input_size[1] < 32 {
            return bad(
                "input_size",
                format!("{:?} is smaller than 32x32", self.input_size),
            );
        }
        if !self.class_names.is_empty() && self.class_names.len() != self.num_classes {
            return bad(
                "class_names",
                format!(
                    "{} names for num_classes = {}",
                    self.class_names.len(),
                    self.num_classes
                ),
            );
        }
        if self.pixel_std.iter().any(|s| *s <= 0.0) {
            return bad("pixel_std", "every entry must be positive".into());
        }
        let [a, b] = self.score_calibration;
        if !(a.is_finite() && b.is_finite() && a > 0.0) {
            return bad(
                "score_calibration",
                format!("[{a}, {b}]: a must be positive and both finite"),
            );
        }
        Ok(())
    }

    /// Class probabilities of one slot's class logits, through [`Self::score_calibration`]:
    /// what every engine reports.
    pub fn class_probs(&self, logits: &[f32]) -> Vec<f32> {
        let [a, b] = self.score_calibration;
        logits
            .iter()
            .map(|x| 1.0 / (1.0 + (-(a * x + b)).exp()))
            .collect()
    }

    /// Name of class `i` (config name or `class_<i>`).
    pub fn class_name(&self, i: usize) -> String {
        self.class_names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class_{i}"))
    }

    /// FPN levels the mask branch reads, finest first (P3..P5, or P2..P5 at stride 4), as
    /// indices into P2..P5.
    pub fn mask_branch_levels(&self) -> std::ops::Range<usize> {
        let first = if self.mask_feat_stride == 4 { 0 } else { 1 };
        first..4
    }

    /// Number of CondInst dynamic mask head parameters per instance (169 for the defaults).
    pub fn mask_head_num_params(&self) -> usize {
        let (w, b) = self.mask_head_param_split();
        w.iter().sum::<usize>() + b.iter().sum::<usize>()
    }

    /// CondInst `weight_nums` and `bias_nums`: input 2 rel-coords + mask features.
    pub fn mask_head_param_split(&self) -> (Vec<usize>, Vec<usize>) {
        let c = self.mask_head_channels;
        let in_c = self.mask_out_channels + 2;
        let mut w = Vec::with_capacity(self.mask_head_layers);
        let mut b = Vec::with_capacity(self.mask_head_layers);
        for l in 0..self.mask_head_layers {
            let (i, o) = match l {
                0 => (in_c, c),
                l if l + 1 == self.mask_head_layers => (c, 1),
                _ => (c, c),
            };
            w.push(i * o);
            b.push(o);
        }
        (w, b)
    }

    /// Channels of C2..C5 of the backbone trunk.
    pub fn backbone_channels(&self) -> [usize; 4] {
        match self.backbone {
            BackboneKind::Resnet50 => [256, 512, 1024, 2048],
            BackboneKind::Resnet18 => [64, 128, 256, 512],
            BackboneKind::Tiny => self.tiny_channels,
        }
    }

    /// Whether frame `index` (0-based, since the stream's state was created) is a key frame.
    pub fn is_key_frame(&self, index: u64) -> bool {
        self.key_frame_interval == 0 || index.is_multiple_of(self.key_frame_interval as u64)
    }
}

/// The dotted key around byte `pos` of a TOML text, for error messages.
fn field_at(text: &str, pos: usize) -> String {
    let line = text[..pos.min(text.len())]
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .to_string();
    let line_full = text[pos.min(text.len()) - line.len()..]
        .lines()
        .next()
        .unwrap_or_default();
    line_full
        .split('=')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_calibration_maps_logits_and_is_checked() {
        let mut cfg = ModelConfig::default();
        let plain = cfg.class_probs(&[0.0, 2.0]);
        assert!((plain[0] - 0.5).abs() < 1e-6);
        cfg.score_calibration = [2.0, -1.0];
        let p = cfg.class_probs(&[0.0, 2.0]);
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        assert!((p[0] - sigmoid(-1.0)).abs() < 1e-6);
        assert!((p[1] - sigmoid(3.0)).abs() < 1e-6);
        assert!(cfg.validate().is_ok());
        cfg.score_calibration = [0.0, 1.0];
        match cfg.validate() {
            Err(ModelError::Config { field, .. }) => assert_eq!(field, "score_calibration"),
            other => panic!("a flat calibration passed: {other:?}"),
        }
    }
}
