//! Backbone trunks returning C2..C5 (strides 4..32): detectron2's ResNet (`build_resnet_backbone`,
//! STRIDE_IN_1X1 = False, FrozenBN folded at load) and a small strided-conv `tiny` trunk.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::{BackboneKind, ModelConfig};
use super::nn::{kaiming_normal_fan_out, Conv2d, ConvSpec};

/// C2..C5 feature maps, each (1, C, H/s, W/s).
pub struct BackboneFeatures {
    pub c2: Tensor,
    pub c3: Tensor,
    pub c4: Tensor,
    pub c5: Tensor,
}

fn conv_bn(
    vb: &VarBuilder,
    name: &str,
    (cin, cout, k, stride): (usize, usize, usize, usize),
    relu: bool,
) -> Result<Conv2d> {
    let vb = vb.pp(name);
    let spec = ConvSpec::same(cin, cout, k, stride).with_relu(relu);
    let init = kaiming_normal_fan_out(&[cout, cin, k, k]);
    let norm = vb.pp("norm");
    Conv2d::new(spec, init, vb, Some(norm))
}

/// One convolution of a ResNet block: its checkpoint key below the block, (cin, cout, kernel,
/// stride), and whether a ReLU follows its norm.
pub type BlockConv = (&'static str, (usize, usize, usize, usize), bool);

/// One residual block of detectron2's ResNet, in checkpoint order: the one layout the candle
/// network, its ONNX export and its FLOP count ([`crate::model::cost::macs`]) walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResBlock {
    /// Stage 0..=3 (checkpoint `res2`..`res5`) and the block's index in it.
    pub stage: usize,
    pub index: usize,
    pub cin: usize,
    pub cout: usize,
    /// Stride 2 in the first block of stages 1..=3 (in the 3x3: STRIDE_IN_1X1 = False).
    pub stride: usize,
    /// Bottleneck (R50: 1x1, 3x3, 1x1 at a quarter of `cout`) or basic (R18: two 3x3).
    pub bottleneck: bool,
}

impl ResBlock {
    /// The block's checkpoint key below the trunk: `res<stage + 2>.<index>`.
    pub fn key(&self) -> String {
        format!("res{}.{}", self.stage + 2, self.index)
    }

    /// The main path's convolutions, in order (the last has no ReLU: it comes after the sum).
    pub fn convs(&self) -> Vec<BlockConv> {
        let (cin, cout, s) = (self.cin, self.cout, self.stride);
        if self.bottleneck {
            let w = cout / 4;
            vec![
                ("conv1", (cin, w, 1, 1), true),
                ("conv2", (w, w, 3, s), true),
                ("conv3", (w, cout, 1, 1), false),
            ]
        } else {
            vec![
                ("conv1", (cin, cout, 3, s), true),
                ("conv2", (cout, cout, 3, 1), false),
            ]
        }
    }

    /// The projection shortcut (`shortcut`, 1x1 with the block's stride), where the identity
    /// does not fit.
    pub fn shortcut(&self) -> Option<BlockConv> {
        (self.cin != self.cout || self.stride != 1).then_some((
            "shortcut",
            (self.cin, self.cout, 1, self.stride),
            false,
        ))
    }
}

/// The blocks of ResNet-50 (3, 4, 6, 3 bottlenecks) or ResNet-18 (2, 2, 2, 2 basic blocks)
/// after the 64-channel stem; none for the `tiny` trunk.
pub fn resnet_blocks(kind: BackboneKind) -> Vec<ResBlock> {
    let (depths, bottleneck) = match kind {
        BackboneKind::Resnet50 => ([3, 4, 6, 3], true),
        BackboneKind::Resnet18 => ([2, 2, 2, 2], false),
        BackboneKind::Tiny => return Vec::new(),
    };
    let mut blocks = Vec::new();
    let mut cin = 64;
    for (stage, depth) in depths.into_iter().enumerate() {
        let cout = (64 << stage) * if bottleneck { 4 } else { 1 };
        for index in 0..depth {
            let stride = if index == 0 && stage > 0 { 2 } else { 1 };
            blocks.push(ResBlock {
                stage,
                index,
                cin,
                cout,
                stride,
                bottleneck,
            });
            cin = cout;
        }
    }
    blocks
}

/// A ResNet block's convolutions, built from its [`ResBlock`] layout.
struct Block {
    convs: Vec<Conv2d>,
    shortcut: Option<Conv2d>,
}

impl Block {
    fn new(vb: &VarBuilder, layout: &ResBlock) -> Result<Self> {
        let vb = vb.pp(layout.key());
        let convs = layout
            .convs()
            .into_iter()
            .map(|(name, dims, relu)| conv_bn(&vb, name, dims, relu))
            .collect::<Result<_>>()?;
        let shortcut = match layout.shortcut() {
            Some((name, dims, relu)) => Some(conv_bn(&vb, name, dims, relu)?),
            None => None,
        };
        Ok(Self { convs, shortcut })
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for conv in &self.convs {
            y = conv.forward(&y)?;
        }
        let identity = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        (y + identity)?.relu()
    }
}

struct ResNet {
    stem: Conv2d,
    stages: Vec<Vec<Block>>,
}

impl ResNet {
    fn new(kind: BackboneKind, vb: VarBuilder) -> Result<Self> {
        let stem = conv_bn(&vb.pp("stem"), "conv1", (3, 64, 7, 2), true)?;
        let mut stages: Vec<Vec<Block>> = (0..4).map(|_| Vec::new()).collect();
        for layout in resnet_blocks(kind) {
            stages[layout.stage].push(Block::new(&vb, &layout)?);
        }
        Ok(Self { stem, stages })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<BackboneFeatures> {
        let x = self.stem.forward(x)?; // (1, 64, H/2, W/2)
                                       // 3x3/2 max-pool with padding 1; the input is post-ReLU (>= 0), so zero padding equals -inf.
        let x = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        let mut x = x.max_pool2d_with_stride(3, 2)?; // (1, 64, H/4, W/4)
        let mut outs = Vec::with_capacity(4);
        for (i, stage) in self.stages.iter().enumerate() {
            for block in stage {
                x = block.forward(&x)?;
            }
            // detectron2 FREEZE_AT = 2: stem and res2 are frozen in training. Detaching here also
            // keeps the max-pool (no backward in candle for 3x3/s2) out of the graph.
            if i == 0 && train {
                x = x.detach();
            }
            outs.push(x.clone());
        }
        into_features(outs)
    }
}

/// One convolution of the `tiny` trunk: 3x3 with bias and ReLU, no norm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TinyConv {
    /// Checkpoint key below the trunk: `stem.conv1`, `res<2..5>.conv<1|2>`.
    pub key: String,
    pub cin: usize,
    pub cout: usize,
    pub stride: usize,
    /// The last convolution of a stage: its output is C2..C5.
    pub ends_stage: bool,
}

/// The `tiny` trunk's convolutions in order: a 3x3/2 stem of half the first stage's channels
/// (at least 8), then per stage a 3x3/2 and a 3x3. The layout the candle network, its export
/// and its FLOP count walk.
pub fn tiny_convs(channels: [usize; 4]) -> Vec<TinyConv> {
    let stem_c = (channels[0] / 2).max(8);
    let mut convs = vec![TinyConv {
        key: "stem.conv1".into(),
        cin: 3,
        cout: stem_c,
        stride: 2,
        ends_stage: false,
    }];
    let mut cin = stem_c;
    for (i, &c) in channels.iter().enumerate() {
        for (j, stride) in [2, 1].into_iter().enumerate() {
            convs.push(TinyConv {
                key: format!("res{}.conv{}", i + 2, j + 1),
                cin,
                cout: c,
                stride,
                ends_stage: j == 1,
            });
            cin = c;
        }
    }
    convs
}

/// `tiny`: [`tiny_convs`], each with bias and ReLU.
struct Tiny {
    convs: Vec<(Conv2d, bool)>,
}

impl Tiny {
    fn new(channels: [usize; 4], vb: VarBuilder) -> Result<Self> {
        let convs = tiny_convs(channels)
            .into_iter()
            .map(|c| {
                let spec = ConvSpec::same(c.cin, c.cout, 3, c.stride)
                    .with_bias()
                    .with_relu(true);
                let init = kaiming_normal_fan_out(&[c.cout, c.cin, 3, 3]);
                Ok((Conv2d::new(spec, init, vb.pp(&c.key), None)?, c.ends_stage))
            })
            .collect::<Result<_>>()?;
        Ok(Self { convs })
    }

    fn forward(&self, x: &Tensor) -> Result<BackboneFeatures> {
        let mut x = x.clone();
        let mut outs = Vec::with_capacity(4);
        for (conv, ends_stage) in &self.convs {
            x = conv.forward(&x)?;
            if *ends_stage {
                outs.push(x.clone());
            }
        }
        into_features(outs)
    }
}

fn into_features(outs: Vec<Tensor>) -> Result<BackboneFeatures> {
    let [c2, c3, c4, c5]: [Tensor; 4] = outs
        .try_into()
        .map_err(|_| candle_core::Error::Msg("backbone must yield four levels".into()))?;
    Ok(BackboneFeatures { c2, c3, c4, c5 })
}

/// The trunk selected by `ModelConfig::backbone`, at `backbone.bottom_up`.
pub struct Backbone {
    inner: Inner,
}

enum Inner {
    ResNet(ResNet),
    Tiny(Tiny),
}

impl Backbone {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let inner = match cfg.backbone {
            BackboneKind::Resnet50 | BackboneKind::Resnet18 => {
                Inner::ResNet(ResNet::new(cfg.backbone, vb)?)
            }
            BackboneKind::Tiny => Inner::Tiny(Tiny::new(cfg.tiny_channels, vb)?),
        };
        Ok(Self { inner })
    }

    /// x: normalised image (1, 3, H, W), H and W multiples of 32.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<BackboneFeatures> {
        match &self.inner {
            Inner::ResNet(r) => r.forward(x, train),
            Inner::Tiny(t) => t.forward(x),
        }
    }
}

/// Names of backbone parameters that the reference never trains: FrozenBN statistics and affine
/// parameters, and the stem and res2 of the ResNets (detectron2 FREEZE_AT = 2).
pub fn is_frozen_param(name: &str, kind: BackboneKind) -> bool {
    let Some(rest) = name.strip_prefix("backbone.bottom_up.") else {
        return false;
    };
    if kind == BackboneKind::Tiny {
        return false;
    }
    rest.contains(".norm.") || rest.starts_with("stem.") || rest.starts_with("res2.")
}
