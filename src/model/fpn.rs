//! Feature pyramid P2..P5 (detectron2 `FPN`, sum fusion, nearest x2 top-down, no P6 since the
//! RoI pooler and the mask branch never read it).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::backbone::BackboneFeatures;
use super::config::ModelConfig;
use super::nn::{c2_xavier_fill as fpn_init, Conv2d, ConvSpec};

/// P2..P5, each (1, C, H/s, W/s), s = 4, 8, 16, 32.
pub struct FpnFeatures {
    pub p2: Tensor,
    pub p3: Tensor,
    pub p4: Tensor,
    pub p5: Tensor,
}

impl FpnFeatures {
    pub fn levels(&self) -> [Tensor; 4] {
        [
            self.p2.clone(),
            self.p3.clone(),
            self.p4.clone(),
            self.p5.clone(),
        ]
    }
}

pub struct Fpn {
    /// fpn_lateral2..5
    lateral: Vec<Conv2d>,
    /// fpn_output2..5
    output: Vec<Conv2d>,
}

impl Fpn {
    /// `vb` is `backbone`: keys `backbone.fpn_lateral{2..5}`, `backbone.fpn_output{2..5}`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.fpn_channels;
        let mut lateral = Vec::with_capacity(4);
        let mut output = Vec::with_capacity(4);
        // detectron2's FPN convs: bias, c2_xavier_fill, no norm.
        let conv = |cin: usize, k: usize, name: String| {
            Conv2d::new(
                ConvSpec::same(cin, c, k, 1).with_bias(),
                fpn_init(&[c, cin, k, k]),
                vb.pp(name),
                None,
            )
        };
        for (i, cin) in cfg.backbone_channels().into_iter().enumerate() {
            let level = i + 2;
            lateral.push(conv(cin, 1, format!("fpn_lateral{level}"))?);
            output.push(conv(c, 3, format!("fpn_output{level}"))?);
        }
        Ok(Self { lateral, output })
    }

    pub fn forward(&self, c: &BackboneFeatures) -> Result<FpnFeatures> {
        let inputs = [&c.c2, &c.c3, &c.c4, &c.c5];
        let mut prev = self.lateral[3].forward(inputs[3])?;
        let mut outs: Vec<Tensor> = vec![self.output[3].forward(&prev)?];
        for i in (0..3).rev() {
            let (_, _, h, w) = inputs[i].dims4()?;
            let top_down = prev.upsample_nearest2d(h, w)?; // exact x2: sizes are multiples of 32
            prev = (self.lateral[i].forward(inputs[i])? + top_down)?;
            outs.insert(0, self.output[i].forward(&prev)?);
        }
        let mut it = outs.into_iter();
        let mut next = || {
            it.next()
                .ok_or_else(|| candle_core::Error::Msg("FPN must yield four levels".into()))
        };
        Ok(FpnFeatures {
            p2: next()?,
            p3: next()?,
            p4: next()?,
            p5: next()?,
        })
    }
}
