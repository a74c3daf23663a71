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

/// A ResNet block: bottleneck (R50) or basic (R18); stride in the 3x3.
struct Block {
    convs: Vec<Conv2d>,
    shortcut: Option<Conv2d>,
}

impl Block {
    fn bottleneck(
        vb: VarBuilder,
        cin: usize,
        bottleneck: usize,
        cout: usize,
        stride: usize,
    ) -> Result<Self> {
        let convs = vec![
            conv_bn(&vb, "conv1", (cin, bottleneck, 1, 1), true)?,
            conv_bn(&vb, "conv2", (bottleneck, bottleneck, 3, stride), true)?,
            conv_bn(&vb, "conv3", (bottleneck, cout, 1, 1), false)?,
        ];
        let shortcut = if cin != cout {
            Some(conv_bn(&vb, "shortcut", (cin, cout, 1, stride), false)?)
        } else {
            None
        };
        Ok(Self { convs, shortcut })
    }

    fn basic(vb: VarBuilder, cin: usize, cout: usize, stride: usize) -> Result<Self> {
        let convs = vec![
            conv_bn(&vb, "conv1", (cin, cout, 3, stride), true)?,
            conv_bn(&vb, "conv2", (cout, cout, 3, 1), false)?,
        ];
        let shortcut = if cin != cout || stride != 1 {
            Some(conv_bn(&vb, "shortcut", (cin, cout, 1, stride), false)?)
        } else {
            None
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
        let (depths, bottleneck) = match kind {
            BackboneKind::Resnet50 => ([3, 4, 6, 3], true),
            _ => ([2, 2, 2, 2], false),
        };
        let mut stages = Vec::with_capacity(4);
        let mut cin = 64;
        for (i, depth) in depths.iter().enumerate() {
            let stage_vb = vb.pp(format!("res{}", i + 2));
            let width = 64 << i;
            let cout = if bottleneck { width * 4 } else { width };
            let mut blocks = Vec::with_capacity(*depth);
            for b in 0..*depth {
                let stride = if b == 0 && i > 0 { 2 } else { 1 };
                let bvb = stage_vb.pp(b);
                blocks.push(if bottleneck {
                    Block::bottleneck(bvb, cin, width, cout, stride)?
                } else {
                    Block::basic(bvb, cin, cout, stride)?
                });
                cin = cout;
            }
            stages.push(blocks);
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

/// `tiny`: stem 3x3/2 then, per stage, a 3x3/2 conv and a 3x3 conv, all with bias and ReLU.
struct Tiny {
    stem: Conv2d,
    stages: Vec<[Conv2d; 2]>,
}

fn tiny_conv(
    vb: &VarBuilder,
    name: &str,
    cin: usize,
    cout: usize,
    stride: usize,
) -> Result<Conv2d> {
    let spec = ConvSpec::same(cin, cout, 3, stride)
        .with_bias()
        .with_relu(true);
    Conv2d::new(
        spec,
        kaiming_normal_fan_out(&[cout, cin, 3, 3]),
        vb.pp(name),
        None,
    )
}

impl Tiny {
    fn new(channels: [usize; 4], vb: VarBuilder) -> Result<Self> {
        let stem_c = (channels[0] / 2).max(8);
        let stem = tiny_conv(&vb.pp("stem"), "conv1", 3, stem_c, 2)?;
        let mut stages = Vec::with_capacity(4);
        let mut cin = stem_c;
        for (i, &c) in channels.iter().enumerate() {
            let svb = vb.pp(format!("res{}", i + 2));
            stages.push([
                tiny_conv(&svb, "conv1", cin, c, 2)?,
                tiny_conv(&svb, "conv2", c, c, 1)?,
            ]);
            cin = c;
        }
        Ok(Self { stem, stages })
    }

    fn forward(&self, x: &Tensor) -> Result<BackboneFeatures> {
        let mut x = self.stem.forward(x)?; // (1, C, H/2, W/2)
        let mut outs = Vec::with_capacity(4);
        for [a, b] in &self.stages {
            x = b.forward(&a.forward(&x)?)?;
            outs.push(x.clone());
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
