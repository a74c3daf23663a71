//! Checkpoints: weights (model keys and training-only ones apart), optimiser moments and the
//! trainer's state; initialising from other weights; the trainable parameters.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::auxiliary::AUX_PREFIX;
use super::optim::AdamW;
use super::TrainError;
use crate::model::backbone::is_frozen_param;
use crate::model::ModelConfig;

/// Sets every variable of `varmap` that `path` (and its `.aux.safetensors` sibling) holds with
/// the same shape, after renaming the file's keys by the longest matching prefix of `rename`;
/// returns how many were set.
pub fn init_from(
    varmap: &VarMap,
    path: &Path,
    rename: &std::collections::BTreeMap<String, String>,
    device: &Device,
) -> Result<usize, TrainError> {
    let mut tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| TrainError::data(path.display(), e))?;
    let aux = path.with_extension("aux.safetensors");
    if aux.exists() {
        tensors.extend(candle_core::safetensors::load(&aux, device)?);
    }
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| {
            let renamed = rename
                .iter()
                .filter(|(from, _)| k.starts_with(from.as_str()))
                .max_by_key(|(from, _)| from.len())
                .map(|(from, to)| format!("{to}{}", &k[from.len()..]));
            (renamed.unwrap_or(k), t)
        })
        .collect();
    let vars = varmap.data().lock().map_err(|_| TrainError::Config {
        file: path.display().to_string(),
        reason: "variable map lock poisoned".into(),
    })?;
    let mut taken = 0;
    for (k, var) in vars.iter() {
        if let Some(t) = tensors.get(k) {
            if t.dims() == var.dims() {
                var.set(t)?;
                taken += 1;
            }
        }
    }
    Ok(taken)
}

/// Names of parameters the optimiser updates.
pub fn trainable_params(cfg: &ModelConfig, varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().map(|d| d.clone()).unwrap_or_default();
    let mut out: Vec<(String, candle_core::Var)> = data
        .into_iter()
        .filter(|(k, _)| {
            !(k.ends_with(".running_mean")
                || k.ends_with(".running_var")
                || is_frozen_param(k, cfg.backbone))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a checkpoint holds besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Iterations done.
    pub iteration: usize,
    pub optimizer_step: usize,
    /// Data-sampler PRNG state.
    pub rng_state: u64,
    /// Wall seconds of training (steps, checkpoints, evaluations) over every part of the run,
    /// resumed ones included: the x axis of a campaign's learning curve.
    #[serde(default)]
    pub train_seconds: f64,
}

/// Weights, optimiser moments and trainer state under `dir/<name>.{safetensors,optim.safetensors,json}`.
pub fn save_checkpoint(
    dir: &Path,
    name: &str,
    varmap: &VarMap,
    opt: &AdamW,
    state: &TrainerState,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let weights = dir.join(format!("{name}.safetensors"));
    // The weights file holds the model's keys only; training-only variables go beside it.
    let data = varmap.data().lock().map(|d| d.clone()).unwrap_or_default();
    let (aux, model): (HashMap<_, _>, HashMap<_, _>) = data
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .partition(|(k, _)| k.starts_with(AUX_PREFIX));
    candle_core::safetensors::save(&model, &weights)?;
    let aux_path = dir.join(format!("{name}.aux.safetensors"));
    if aux.is_empty() {
        std::fs::remove_file(&aux_path).ok();
    } else {
        candle_core::safetensors::save(&aux, &aux_path)?;
    }
    candle_core::safetensors::save(
        &opt.state_tensors(),
        dir.join(format!("{name}.optim.safetensors")),
    )?;
    let json = serde_json::to_string_pretty(state).map_err(|e| TrainError::Config {
        file: name.into(),
        reason: e.to_string(),
    })?;
    let p = dir.join(format!("{name}.json"));
    std::fs::write(&p, json).map_err(|e| TrainError::io(&p, e))?;
    Ok(weights)
}

/// Key → tensor copy of every variable (tests compare weights across runs).
pub fn snapshot(varmap: &VarMap) -> HashMap<String, Vec<f32>> {
    let data = varmap.data().lock().map(|d| d.clone()).unwrap_or_default();
    data.into_iter()
        .filter_map(|(k, v)| {
            v.as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .ok()
                .map(|t| (k, t))
        })
        .collect()
}
