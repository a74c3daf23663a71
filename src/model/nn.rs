//! Layers shared by the network, written so that candle's autograd reaches every parameter
//! (docs/model.md, "Autograd": composed layer norm and softmax, no fused kernels).

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// `xavier_uniform_` (PyTorch) for a weight of `shape` (out, in, ...).
pub fn xavier_uniform(shape: &[usize]) -> Init {
    let receptive: usize = shape.iter().skip(2).product::<usize>().max(1);
    let fan_out = shape.first().copied().unwrap_or(1) * receptive;
    let fan_in = shape.get(1).copied().unwrap_or(1) * receptive;
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// PyTorch's default `nn.Linear` bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pub fn linear_bias_init(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// detectron2 `c2_xavier_fill` / AdelaiDet `kaiming_uniform_(a=1)`: U(±sqrt(3 / fan_in)).
pub fn c2_xavier_fill(shape: &[usize]) -> Init {
    let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
    let bound = (3.0 / fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// torchvision ResNet conv init: kaiming normal, fan_out, ReLU gain.
pub fn kaiming_normal_fan_out(shape: &[usize]) -> Init {
    let receptive: usize = shape.iter().skip(2).product::<usize>().max(1);
    let fan_out = shape.first().copied().unwrap_or(1) * receptive;
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / fan_out as f64).sqrt(),
    }
}

/// `nn.Linear`: weight (out, in), y = x W^T + b. Accepts inputs of any rank >= 2.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Weight init as the caller says; bias (if any) as PyTorch's default unless `bias_init` is given.
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        weight_init: Init,
        bias_init: Option<Init>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", weight_init)?;
        let bias = if bias {
            let init = bias_init.unwrap_or_else(|| linear_bias_init(in_dim));
            Some(vb.get_with_hints(out_dim, "bias", init)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// A Linear with xavier-uniform weight (Sparse R-CNN's `_reset_parameters`).
    pub fn xavier(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        Self::new(
            in_dim,
            out_dim,
            bias,
            xavier_uniform(&[out_dim, in_dim]),
            None,
            vb,
        )
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.weight.t()?;
        let y = match x.rank() {
            2 => x.matmul(&w)?,
            _ => x.broadcast_matmul(&w)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// LayerNorm over the last dim, composed from differentiable ops (candle's fused kernel has no
/// backward). eps 1e-5 as PyTorch.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps: 1e-5,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax that backpropagates (candle's `softmax_last_dim` drops gradients).
pub fn softmax(x: &Tensor, dim: D) -> Result<Tensor> {
    candle_nn::ops::softmax(x, dim)
}

/// Frozen BatchNorm parameters (detectron2 `FrozenBatchNorm2d`, eps 1e-5) or a BatchNorm used with
/// its running statistics (CondInst mask branch at inference).
#[derive(Debug, Clone)]
pub struct BatchNormStats {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f64,
}

impl BatchNormStats {
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Init::Const(0.0))?,
            // Running statistics are buffers: never differentiated.
            running_mean: vb
                .get_with_hints(channels, "running_mean", Init::Const(0.0))?
                .detach(),
            running_var: vb
                .get_with_hints(channels, "running_var", Init::Const(1.0))?
                .detach(),
            eps: 1e-5,
        })
    }

    /// Per-channel (scale, shift) with y = x * scale + shift.
    fn scale_shift(&self) -> Result<(Tensor, Tensor)> {
        let scale = self
            .weight
            .broadcast_div(&(&self.running_var + self.eps)?.sqrt()?)?;
        let shift = (&self.bias - (&self.running_mean * &scale)?)?;
        Ok((scale, shift))
    }
}

/// A 2-D convolution with an optional bias and an optional BatchNorm after it, and an optional
/// ReLU. When no tensor is a trainable variable the norm is folded into the conv at load
/// (inference); otherwise it is applied per forward so that optimiser updates are seen.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub norm: Option<BatchNormStats>,
    pub stride: usize,
    pub padding: usize,
    pub relu: bool,
    folded: Option<(Tensor, Tensor)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
    pub relu: bool,
}

impl ConvSpec {
    /// A `kernel` x `kernel` conv with "same" padding (kernel / 2), no bias, no ReLU.
    pub fn same(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding: kernel / 2,
            bias: false,
            relu: false,
        }
    }

    pub fn with_bias(self) -> Self {
        Self { bias: true, ..self }
    }

    pub fn with_relu(self, relu: bool) -> Self {
        Self { relu, ..self }
    }
}

impl Conv2d {
    /// `vb` holds `weight` (and `bias`); `norm_vb`, when given, holds the BatchNorm parameters.
    pub fn new(
        spec: ConvSpec,
        weight_init: Init,
        vb: VarBuilder,
        norm_vb: Option<VarBuilder>,
    ) -> Result<Self> {
        let shape = (
            spec.out_channels,
            spec.in_channels,
            spec.kernel,
            spec.kernel,
        );
        let weight = vb.get_with_hints(shape, "weight", weight_init)?;
        let bias = if spec.bias {
            Some(vb.get_with_hints(spec.out_channels, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        let norm = match norm_vb {
            Some(nvb) => Some(BatchNormStats::new(spec.out_channels, nvb)?),
            None => None,
        };
        let mut conv = Self {
            weight,
            bias,
            norm,
            stride: spec.stride,
            padding: spec.padding,
            relu: spec.relu,
            folded: None,
        };
        let trainable = conv.weight.is_variable()
            || conv.bias.as_ref().is_some_and(|b| b.is_variable())
            || conv
                .norm
                .as_ref()
                .is_some_and(|n| n.weight.is_variable() || n.bias.is_variable());
        if !trainable {
            conv.folded = Some(conv.fold()?);
        }
        Ok(conv)
    }

    /// (weight, bias) with the norm folded in.
    fn fold(&self) -> Result<(Tensor, Tensor)> {
        let out_c = self.weight.dim(0)?;
        let bias = match &self.bias {
            Some(b) => b.clone(),
            None => Tensor::zeros(out_c, self.weight.dtype(), self.weight.device())?,
        };
        match &self.norm {
            None => Ok((self.weight.clone(), bias)),
            Some(norm) => {
                let (scale, shift) = norm.scale_shift()?;
                let weight = self
                    .weight
                    .broadcast_mul(&scale.reshape((out_c, 1, 1, 1))?)?;
                let bias = ((bias * &scale)? + shift)?;
                Ok((weight, bias))
            }
        }
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }
}

impl Module for Conv2d {
    /// x: (B, C_in, H, W) -> (B, C_out, H', W').
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight, bias) = match &self.folded {
            Some((w, b)) => (w.clone(), b.clone()),
            None => self.fold()?,
        };
        let y = super::conv::conv2d(x, &weight, self.stride, self.padding)?;
        let y = y.broadcast_add(&bias.reshape((1, bias.dim(0)?, 1, 1))?)?;
        if self.relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

/// Cast helper used by tests and loaders.
pub fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}
