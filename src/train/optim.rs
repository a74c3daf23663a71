//! AdamW with PyTorch's semantics (decoupled weight decay), full-model gradient clipping by L2
//! norm, and detectron2's warm-up + step learning-rate schedule. The moments are ours so that a
//! checkpoint holds them and `--resume` continues exactly.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Linear warm-up iterations, from `warmup_factor` x lr.
    pub warmup_iters: usize,
    pub warmup_factor: f64,
    /// Iterations at which the lr is divided by 10.
    pub steps: [usize; 2],
    /// Full-model gradient L2 clip (0 = off).
    pub grad_clip: f64,
    /// Ours: decay of an exponential moving average of the weights (0 = off). The average is
    /// what evaluations score and what `<checkpoint>.ema.safetensors` holds.
    pub ema: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 2.5e-5,
            weight_decay: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_iters: 1000,
            warmup_factor: 0.01,
            steps: [24_000, 28_000],
            grad_clip: 1.0,
            ema: 0.0,
        }
    }
}

impl OptimConfig {
    /// detectron2 WarmupMultiStepLR at iteration `it` (0-based).
    pub fn lr_at(&self, it: usize) -> f64 {
        let warm = if it < self.warmup_iters {
            let a = it as f64 / self.warmup_iters as f64;
            self.warmup_factor * (1.0 - a) + a
        } else {
            1.0
        };
        let decays = self.steps.iter().filter(|s| it >= **s).count() as i32;
        self.lr * warm * 0.1f64.powi(decays)
    }
}

pub struct AdamW {
    cfg: OptimConfig,
    /// (name, variable) in a fixed order.
    params: Vec<(String, Var)>,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
    pub step: usize,
}

impl AdamW {
    pub fn new(cfg: OptimConfig, mut params: Vec<(String, Var)>) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            cfg,
            params,
            m: HashMap::new(),
            v: HashMap::new(),
            step: 0,
        }
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// L2 norm of all gradients, before clipping.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0f64;
        for (_, var) in &self.params {
            if let Some(g) = grads.get(var.as_tensor()) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        Ok(sq.sqrt())
    }

    /// One update with learning rate `lr`; clips the gradients first. Returns the pre-clip norm.
    /// A non-finite norm skips the update (the weights stay finite) and is returned as is.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<f64> {
        let norm = self.grad_norm(grads)?;
        if !norm.is_finite() {
            tracing::warn!(step = self.step, "non-finite gradient norm: update skipped");
            return Ok(norm);
        }
        let clip = if self.cfg.grad_clip > 0.0 && norm > self.cfg.grad_clip {
            self.cfg.grad_clip / (norm + 1e-6)
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for (name, var) in &self.params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Gradients carry the backward graph (their ops reference the iteration's
            // activations); a moment built from them would keep every iteration's graph alive
            // through the chain m_t -> m_{t-1} -> ... Detached, the moments are plain data.
            let g = (g.detach() * clip)?;
            let m = match self.m.get(name) {
                Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
                None => (&g * (1.0 - b1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                None => (g.sqr()? * (1.0 - b2))?,
            };
            let theta = var.as_tensor();
            let decayed = (theta * (1.0 - lr * self.cfg.weight_decay))?;
            let denom = ((&v / bc2)?.sqrt()? + self.cfg.eps)?;
            let update = ((&m / bc1)? / denom)?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.m.insert(name.clone(), m.detach());
            self.v.insert(name.clone(), v.detach());
        }
        Ok(norm)
    }

    /// Moments as named tensors (`m.<param>`, `v.<param>`) for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        out
    }

    pub fn load_state_tensors(&mut self, tensors: HashMap<String, Tensor>, step: usize) {
        for (k, t) in tensors {
            if let Some(name) = k.strip_prefix("m.") {
                self.m.insert(name.to_string(), t);
            } else if let Some(name) = k.strip_prefix("v.") {
                self.v.insert(name.to_string(), t);
            }
        }
        self.step = step;
    }
}

/// An exponential moving average of the weights (ours; Polyak averaging as in timm's ModelEmaV2):
/// after each optimiser step, `avg = d·avg + (1 − d)·w` with `d = min(decay, (1 + n) / (10 + n))`
/// for the n-th update, so the early average is not dominated by the random init. Batch-1 training
/// is noisy; the average is the cheap equivalent of the lr drops that gave the head its jumps.
pub struct Ema {
    decay: f64,
    /// (name, variable, average) in the optimiser's order.
    shadow: Vec<(String, Var, Tensor)>,
    pub updates: usize,
}

impl Ema {
    pub fn new(decay: f64, params: &[(String, Var)]) -> Result<Self> {
        let shadow = params
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            decay,
            shadow,
            updates: 0,
        })
    }

    /// The decay used by the next update.
    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    pub fn update(&mut self) -> Result<()> {
        let d = self.current_decay();
        for (_, var, avg) in &mut self.shadow {
            // Detached: a graph through the averages would keep every earlier one alive.
            *avg = ((&*avg * d)? + (var.as_tensor().detach() * (1.0 - d))?)?.detach();
        }
        self.updates += 1;
        Ok(())
    }

    /// Exchanges the variables' values with the averages; a second call undoes it.
    pub fn swap(&mut self) -> Result<()> {
        for (_, var, avg) in &mut self.shadow {
            let current = var.as_tensor().detach().copy()?;
            var.set(avg)?;
            *avg = current;
        }
        Ok(())
    }

    /// The averages by parameter name (a checkpoint's `.ema.safetensors`).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.shadow
            .iter()
            .map(|(k, _, t)| (k.clone(), t.clone()))
            .collect()
    }

    /// Takes the averages a checkpoint holds (missing names keep theirs).
    pub fn load(&mut self, tensors: &HashMap<String, Tensor>, updates: usize) -> Result<()> {
        for (k, _, avg) in &mut self.shadow {
            if let Some(t) = tensors.get(k.as_str()) {
                *avg = t.detach().copy()?;
            }
        }
        self.updates = updates;
        Ok(())
    }
}
