//! The daemon's engine: `[model]` and `[engine]` turned into the runtime's one
//! [`EngineSpec`](crate::runtime::factory::EngineSpec); a setting the build cannot honour is a
//! configuration error naming the field (exit 78).

use std::path::PathBuf;

use crate::edge::config::{ConfigError, EngineSection, ModelSection};
use crate::runtime::factory::{self, BuiltEngine, EngineSpec};
use crate::runtime::onnxruntime::available_cores;
use crate::runtime::OrtOptions;

#[derive(Debug, thiserror::Error)]
pub enum EngineBuildError {
    /// A configuration value the build cannot honour (exit 78).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The TensorRT cache: `engine.cache_dir`, else systemd's `$CACHE_DIRECTORY/trt_cache`.
fn cache_dir(engine: &EngineSection) -> Option<PathBuf> {
    engine.cache_dir.clone().or_else(|| {
        std::env::var_os("CACHE_DIRECTORY")
            .map(|d| PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or("")))
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| p.join("trt_cache"))
    })
}

/// The runtime's spec for the daemon's sections, `cameras` streams at once.
pub fn engine_spec(
    model: &ModelSection,
    engine: &EngineSection,
    cameras: usize,
) -> Result<EngineSpec, ConfigError> {
    let provider = engine
        .provider
        .parse()
        .map_err(|r: String| ConfigError::new("engine.provider", r))?;
    Ok(EngineSpec {
        kind: engine.kind,
        model: Some(model.config.clone()),
        weights: model.weights.clone(),
        default_weights: true,
        seed: model.seed,
        engine_dir: engine.onnx.clone(),
        ort: OrtOptions {
            provider,
            library: engine.library.clone(),
            device_id: engine.device_id,
            trt_cache_dir: cache_dir(engine),
            threads: engine.threads,
            spin: engine.spin,
            ..OrtOptions::default()
        }
        .share_cores(cameras, available_cores(), engine.sessions),
        // No ONNX Runtime library at all: the candle engine, warned, rather than no daemon.
        candle_fallback: true,
        ..EngineSpec::default()
    })
}

pub fn build_engine(
    model: &ModelSection,
    engine: &EngineSection,
    cameras: usize,
) -> Result<BuiltEngine, EngineBuildError> {
    let spec = engine_spec(model, engine, cameras)?;
    factory::build_engine(&spec).map_err(|e| {
        let field = match e.field {
            "model" => "model.config",
            "weights" => "model.weights",
            "provider" => "engine.provider",
            "library" => "engine.library",
            _ => "engine.onnx",
        };
        EngineBuildError::Config(ConfigError::new(field, e.reason))
    })
}
