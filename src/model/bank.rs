//! Intra-query attention over the feature bank (InsPro §3.2, Eq. 1): the next query of slot i is
//! the ε-weighted average of its last T object features plus the current one.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::config::ModelConfig;
use super::nn::{softmax, xavier_uniform, Linear};

/// Added to the ε score of empty bank entries; exp() of it is exactly 0 in f32.
const EMPTY_SCORE: f64 = -1e9;

pub struct IntraQueryAttention {
    /// ε: Linear(C → 1) without bias (a bias shifts every score of a softmax equally, so it would
    /// never receive a gradient).
    epsilon: Linear,
    bank_size: usize,
}

impl IntraQueryAttention {
    /// Keys under `intra_query`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.fpn_channels;
        Ok(Self {
            epsilon: Linear::new(c, 1, false, xavier_uniform(&[1, c]), None, vb.pp("epsilon"))?,
            bank_size: cfg.bank_size,
        })
    }

    /// obj_features o_t (N, C); bank (T, N, C) of earlier object features of the same slots;
    /// bank_valid (T) with 1 for filled entries, 0 for empty. Returns the next queries (N, C):
    /// Σ_n softmax_n(ε(o_{t−n})) · o_{t−n} + o_t over the valid entries and o_t itself.
    /// With T = 1 the paper's "no intra-query attention": q = o_t.
    pub fn forward(
        &self,
        obj_features: &Tensor,
        bank: &Tensor,
        bank_valid: &Tensor,
    ) -> Result<Tensor> {
        if self.bank_size <= 1 {
            return Ok(obj_features.clone());
        }
        let (t, n, c) = bank.dims3()?;
        let feats = Tensor::cat(&[bank, &obj_features.unsqueeze(0)?], 0)?; // (T+1, N, C)
        let scores = self
            .epsilon
            .forward(&feats.reshape(((t + 1) * n, c))?)?
            .reshape((t + 1, n, 1))?; // (T+1, N, 1)
        let ones = Tensor::ones(1, bank_valid.dtype(), bank_valid.device())?;
        let valid = Tensor::cat(&[bank_valid, &ones], 0)?; // (T+1)
        let penalty = ((valid - 1.0)? * -EMPTY_SCORE)?.reshape((t + 1, 1, 1))?;
        // Softmax over the time axis: move it last for the composed softmax, then back.
        let scores_t = scores
            .broadcast_add(&penalty)?
            .permute((1, 2, 0))?
            .contiguous()?; // (N, 1, T+1)
        let w = softmax(&scores_t, D::Minus1)?.permute((2, 0, 1))?; // (T+1, N, 1)
        let pooled = feats.broadcast_mul(&w)?.sum(0)?; // (N, C)
        pooled + obj_features
    }
}
