//! The engine the daemon runs, chosen by `[engine] kind`: `candle` (pure Rust, CPU) or
//! `onnxruntime`. Without trained weights the candle model runs with random weights, and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;

use crate::edge::config::{ConfigError, EngineKind, EngineSection, ModelSection};
use crate::model::{InsPro, ModelConfig};
use crate::runtime::{CandleEngine, Engine};

pub struct BuiltEngine {
    pub engine: Arc<dyn Engine>,
    pub model: ModelConfig,
    /// No trained weights were found: detections are meaningless.
    pub random_weights: bool,
    /// For logs and stats: engine name plus weights.
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineBuildError {
    /// A configuration value the build cannot honour (exit 78).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Model(#[from] crate::model::ModelError),
}

/// The weights that `[model]` points at: `weights` when set, else
/// `engines/<model name>/model.safetensors` when it exists.
pub fn find_weights(model: &ModelSection, cfg: &ModelConfig) -> Option<PathBuf> {
    if let Some(w) = &model.weights {
        return Some(w.clone());
    }
    let guess = Path::new("engines")
        .join(&cfg.name)
        .join("model.safetensors");
    guess.exists().then_some(guess)
}

pub fn build_engine(
    model: &ModelSection,
    engine: &EngineSection,
) -> Result<BuiltEngine, EngineBuildError> {
    let cfg = ModelConfig::from_file(&model.config)
        .map_err(|e| ConfigError::new("model.config", e.to_string()))?;
    match engine.kind {
        EngineKind::Candle => {
            let device = Device::Cpu;
            let (inspro, random, weights) = match find_weights(model, &cfg) {
                Some(w) => (
                    // Missing, empty, truncated or of another model: a configuration error.
                    InsPro::load(&cfg, &w, &device).map_err(|e| {
                        ConfigError::new(
                            "model.weights",
                            format!(
                                "{} does not load with {}: {e}",
                                w.display(),
                                model.config.display()
                            ),
                        )
                    })?,
                    false,
                    w.display().to_string(),
                ),
                None => {
                    tracing::warn!(
                        model = %cfg.name,
                        seed = model.seed,
                        "model weights: RANDOM (no trained weights found) — detections are meaningless"
                    );
                    (
                        InsPro::random(&cfg, model.seed, &device)?.0,
                        true,
                        format!("random(seed={})", model.seed),
                    )
                }
            };
            let engine: Arc<dyn Engine> = Arc::new(CandleEngine::new(Arc::new(inspro)));
            Ok(BuiltEngine {
                description: format!("{} {} weights={weights}", engine.name(), cfg.name),
                engine,
                model: cfg,
                random_weights: random,
            })
        }
        EngineKind::Onnxruntime => {
            use crate::runtime::{OrtEngine, OrtOptions};
            let dir = engine
                .onnx
                .clone()
                .unwrap_or_else(|| Path::new("engines").join(&cfg.name));
            let provider = engine
                .provider
                .parse()
                .map_err(|r: String| ConfigError::new("engine.provider", r))?;
            let cache = engine.cache_dir.clone().or_else(|| {
                std::env::var_os("CACHE_DIRECTORY")
                    .map(|d| PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or("")))
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| p.join("trt_cache"))
            });
            let opts = OrtOptions {
                provider,
                trt_cache_dir: cache,
                ..OrtOptions::default()
            };
            let ort = OrtEngine::load(&dir, &opts)
                .map_err(|e| ConfigError::new("engine.onnx", format!("{}: {e}", dir.display())))?;
            let engine: Arc<dyn Engine> = Arc::new(ort);
            let model = engine.config().clone();
            Ok(BuiltEngine {
                description: format!("{} {} graphs={}", engine.name(), model.name, dir.display()),
                engine,
                model,
                random_weights: false,
            })
        }
    }
}
