//! The one place an engine is built, for every front-end (daemon, `inspro segment`, `inspro
//! bench`, the GStreamer element): an [`EngineSpec`] in, an `Arc<dyn Engine>` out. It finds the
//! weights, falls back to random weights (and says so), exports the graphs for ONNX Runtime into a
//! temporary directory when no exported engine is given, and picks the pooler for the provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use tempfile::TempDir;

use super::onnxruntime::{find_library, offered_provider};
use super::{CandleEngine, Engine, OrtEngine, OrtOptions, Provider};
use crate::export::{self, manifest::MANIFEST_FILE, ExportError, ExportOptions, Pooler, Weights};
use crate::model::{InsPro, ModelConfig, ModelError};

/// Which engine runs the network.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The candle network (pure Rust reference, CPU).
    #[default]
    Candle,
    /// The exported graphs run by ONNX Runtime (CPU, CUDA or TensorRT).
    Onnxruntime,
}

crate::enum_names!(EngineKind {
    Candle => "candle",
    Onnxruntime => "onnxruntime" | "ort",
});

impl Pooler {
    /// The pooler the export recommends per provider: static shapes for TensorRT and CUDA, each
    /// box pooled from its own level on the CPU (4x less RoIAlign work).
    pub fn for_provider(provider: Provider) -> Self {
        match provider {
            Provider::Cpu | Provider::Auto => Pooler::Gather,
            Provider::Cuda | Provider::Tensorrt => Pooler::Static,
        }
    }
}

/// Everything a front-end knows about the engine it wants. The default: candle, random weights
/// (seed 0), the model config's K, ONNX Runtime on the CPU.
#[derive(Debug, Clone, Default)]
pub struct EngineSpec {
    pub kind: EngineKind,
    /// Model config (TOML). Needed unless `weights` or `engine_dir` is an exported engine, whose
    /// manifest holds the config.
    pub model: Option<PathBuf>,
    /// Trained weights: safetensors, or an exported engine (its directory, `manifest.json` or a
    /// graph in it). Unset: `<engines root>/<model name>/model.safetensors` ([`engines_root`]:
    /// `$INSPRO_ENGINES` or `engines/`) when `default_weights` and it exists, else random weights
    /// (warned).
    pub weights: Option<PathBuf>,
    /// Look for the shipped weights ([`default_weights`]) when `weights` is unset.
    pub default_weights: bool,
    /// Seed of the random weights.
    pub seed: u64,
    /// Exported graphs for ONNX Runtime; unset: exported from the weights into a temporary
    /// directory that lives as long as the engine.
    pub engine_dir: Option<PathBuf>,
    /// Overrides the model config's key-frame interval K (InsPro-lite); an exported engine of
    /// another K is an error.
    pub key_frame_interval: Option<usize>,
    /// ONNX Runtime settings (provider, threads, library, TensorRT cache).
    pub ort: OrtOptions,
    /// How a temporary export writes the RoIAlign; unset: [`Pooler::for_provider`].
    pub pooler: Option<Pooler>,
    /// A temporary export also writes the bare trunk graph (benchmarks).
    pub export_trunk: bool,
    /// `onnxruntime` with no library named (`ort.library` unset) and none that loads: run the
    /// candle engine instead, with one warning, rather than fail (the daemon and the element,
    /// whose default engine is ONNX Runtime).
    pub candle_fallback: bool,
}

/// What went wrong, with the setting to fix (`field`: model, weights, engine_dir, provider,
/// key_frame_interval).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EngineBuildError {
    pub field: &'static str,
    pub reason: String,
}

impl EngineBuildError {
    fn new(field: &'static str, reason: impl std::fmt::Display) -> Self {
        Self {
            field,
            reason: reason.to_string(),
        }
    }
}

/// A built engine and what a front-end reports about it.
pub struct BuiltEngine {
    pub engine: Arc<dyn Engine>,
    /// No trained weights: detections are meaningless.
    pub random_weights: bool,
    /// For logs and stats: engine, model and weights or graphs.
    pub description: String,
    /// Where the graphs are (ONNX Runtime).
    pub engine_dir: Option<PathBuf>,
    /// The graphs exported for this engine; removed when this is dropped. Declared after
    /// `engine`, so the sessions close before their files go.
    _exported: Option<TempDir>,
}

impl BuiltEngine {
    pub fn config(&self) -> &ModelConfig {
        self.engine.config()
    }
}

/// Where the shipped engines live: `$INSPRO_ENGINES`, else `engines/` (relative to the working
/// directory; the systemd unit's is `/usr/share/inspro`).
pub fn engines_root() -> PathBuf {
    std::env::var_os("INSPRO_ENGINES")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("engines"), PathBuf::from)
}

/// `<engines root>/<model name>/model.safetensors`, when it exists.
pub fn default_weights(cfg: &ModelConfig) -> Option<PathBuf> {
    let guess = engines_root().join(&cfg.name).join("model.safetensors");
    guess.exists().then_some(guess)
}

/// The directory of an exported engine that `path` names (the directory, its `manifest.json` or
/// a graph in it), or `None` for anything else (safetensors).
pub fn exported_dir(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        return Some(path.to_path_buf());
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    (ext == "json" || ext == "onnx").then(|| {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    })
}

impl EngineSpec {
    pub fn model_config(&self) -> Result<ModelConfig, EngineBuildError> {
        let path = self.model.as_ref().ok_or_else(|| {
            EngineBuildError::new(
                "model",
                "no model config (e.g. configs/models/inspro-small.toml)",
            )
        })?;
        let mut cfg =
            ModelConfig::from_file(path).map_err(|e| EngineBuildError::new("model", e))?;
        if let Some(k) = self.key_frame_interval {
            cfg.key_frame_interval = k;
        }
        Ok(cfg)
    }

    /// The trained weights to use, if any.
    fn weights_for(&self, cfg: &ModelConfig) -> Option<PathBuf> {
        self.weights
            .clone()
            .or_else(|| self.default_weights.then(|| default_weights(cfg)).flatten())
    }

    fn random_label(&self) -> String {
        format!("random(seed={})", self.seed)
    }
}

fn warn_random(cfg: &ModelConfig, seed: u64) {
    tracing::warn!(
        model = %cfg.name,
        seed,
        "model weights: RANDOM (no trained weights found): the model is RANDOMLY INITIALISED, its detections are meaningless"
    );
}

/// How much slower the candle engine is than ONNX Runtime on the CPU, for the fallback's
/// warning (docs/perf.md: 41.5 against 11.8 ms a frame for inspro-tiny on one thread).
const CANDLE_SLOWDOWN: &str = "about 3.5x";

/// Build the engine `spec` asks for. `onnxruntime` with `provider = auto` takes the fastest
/// provider the loaded library offers (logged once); with `candle_fallback`, a library that
/// cannot be found or loaded gives the candle engine and one warning.
pub fn build_engine(spec: &EngineSpec) -> Result<BuiltEngine, EngineBuildError> {
    match spec.kind {
        EngineKind::Candle => build_candle(spec),
        EngineKind::Onnxruntime => {
            let library = find_library(spec.ort.library.as_deref()).and_then(|lib| {
                let provider = offered_provider(&lib)?;
                Ok((lib, provider))
            });
            let (library, offered) = match library {
                Ok(found) => found,
                Err(e) if spec.candle_fallback && spec.ort.library.is_none() => {
                    tracing::warn!(
                        reason = %e,
                        "ONNX Runtime cannot be loaded; running the candle reference engine \
                         instead, {CANDLE_SLOWDOWN} slower on the CPU"
                    );
                    let mut candle = spec.clone();
                    candle.kind = EngineKind::Candle;
                    candle.ort.provider = Provider::Cpu;
                    return build_candle(&candle);
                }
                Err(e) => return Err(EngineBuildError::new("library", e)),
            };
            let mut resolved = spec.clone();
            if spec.ort.provider == Provider::Auto {
                resolved.ort.provider = offered;
                tracing::info!(
                    provider = %offered,
                    library = %library.display(),
                    "execution provider auto: the fastest this ONNX Runtime offers"
                );
            }
            build_onnxruntime(&resolved)
        }
    }
}

/// The candle network `spec` names (its weights, or random ones), the weights' label, and
/// whether they are random. The candle engine and the candle benchmark load it here.
pub fn load_network(spec: &EngineSpec) -> Result<(InsPro, String, bool), EngineBuildError> {
    let cfg = spec.model_config()?;
    let device = Device::Cpu;
    let weights = spec.weights_for(&cfg);
    if let Some(dir) = weights.as_deref().and_then(exported_dir) {
        return Err(EngineBuildError::new(
            "weights",
            format!(
                "{} is an exported ONNX engine; engine candle needs safetensors",
                dir.display()
            ),
        ));
    }
    match &weights {
        Some(w) => {
            let model = InsPro::load(&cfg, w, &device).map_err(|e| {
                EngineBuildError::new(
                    "weights",
                    format!(
                        "{} does not load with {}: {e}",
                        w.display(),
                        spec.model.as_deref().unwrap_or(Path::new("?")).display()
                    ),
                )
            })?;
            Ok((model, w.display().to_string(), false))
        }
        None => {
            warn_random(&cfg, spec.seed);
            let model = InsPro::random(&cfg, spec.seed, &device)
                .map_err(|e| EngineBuildError::new("model", e))?
                .0;
            Ok((model, spec.random_label(), true))
        }
    }
}

fn build_candle(spec: &EngineSpec) -> Result<BuiltEngine, EngineBuildError> {
    if !matches!(spec.ort.provider, Provider::Cpu | Provider::Auto) {
        return Err(EngineBuildError::new(
            "provider",
            format!(
                "engine candle runs on the CPU only; provider {} needs engine onnxruntime",
                spec.ort.provider
            ),
        ));
    }
    let (model, label, random_weights) = load_network(spec)?;
    let cfg = &model.cfg;
    let description = format!("candle {} weights={label}", cfg.name);
    let engine: Arc<dyn Engine> = Arc::new(CandleEngine::new(Arc::new(model)));
    Ok(BuiltEngine {
        description,
        engine,
        random_weights,
        engine_dir: None,
        _exported: None,
    })
}

/// The graphs for ONNX Runtime: `engine_dir`, an exported engine named by `weights`, the
/// exported `engines/<model name>/` (with `default_weights`), or a fresh export (of the weights, or random ones) into a temporary directory. Returns the directory,
/// the temporary directory to keep alive, and whether the weights are random.
pub fn prepare_graphs(
    spec: &EngineSpec,
) -> Result<(PathBuf, Option<TempDir>, bool), EngineBuildError> {
    if let Some(dir) = spec.engine_dir.clone() {
        return Ok((dir, None, false));
    }
    if let Some(dir) = spec.weights.as_deref().and_then(exported_dir) {
        return Ok((dir, None, false));
    }
    let cfg = spec.model_config()?;
    if spec.default_weights && spec.weights.is_none() {
        let shipped = engines_root().join(&cfg.name);
        if shipped.join(MANIFEST_FILE).exists() {
            return Ok((shipped, None, false));
        }
    }
    let found = spec.weights_for(&cfg);
    let weights = match &found {
        Some(w) => Weights::from_safetensors(w).map_err(|e| EngineBuildError::new("weights", e))?,
        None => {
            warn_random(&cfg, spec.seed);
            let (_, vars) = InsPro::random(&cfg, spec.seed, &Device::Cpu)
                .map_err(|e| EngineBuildError::new("model", e))?;
            Weights::from_varmap(&vars, &spec.random_label())
                .map_err(|e| EngineBuildError::new("model", e))?
        }
    };
    let temp = tempfile::Builder::new()
        .prefix("inspro-engine-")
        .tempdir()
        .map_err(|e| EngineBuildError::new("engine_dir", format!("temporary directory: {e}")))?;
    let opts = ExportOptions {
        pooler: spec
            .pooler
            .unwrap_or_else(|| Pooler::for_provider(spec.ort.provider)),
        trunk: spec.export_trunk,
    };
    let t0 = Instant::now();
    export::export(&cfg, &weights, temp.path(), &opts).map_err(|e| {
        // A missing or wrong-shape weight is the weights' fault, anything else the export's.
        let field = match &e {
            ExportError::Model(
                ModelError::MissingWeight { .. } | ModelError::WeightShape { .. },
            ) => "weights",
            _ => "engine_dir",
        };
        EngineBuildError::new(field, format!("exporting {}: {e}", cfg.name))
    })?;
    tracing::info!(
        dir = %temp.path().display(),
        seconds = t0.elapsed().as_secs_f64(),
        "exported {} for ONNX Runtime (`inspro export` once and point the engine directory at it to skip this)",
        cfg.name
    );
    Ok((temp.path().to_path_buf(), Some(temp), found.is_none()))
}

fn build_onnxruntime(spec: &EngineSpec) -> Result<BuiltEngine, EngineBuildError> {
    let (dir, temp, random_weights) = prepare_graphs(spec)?;
    if temp.is_none() && !dir.join(MANIFEST_FILE).exists() {
        return Err(EngineBuildError::new(
            "engine_dir",
            format!(
                "{} holds no exported engine ({MANIFEST_FILE}); run `inspro export` into it",
                dir.display()
            ),
        ));
    }
    let engine = OrtEngine::load(&dir, &spec.ort)
        .map_err(|e| EngineBuildError::new("engine_dir", format!("{}: {e}", dir.display())))?;
    if engine.provider() != spec.ort.provider {
        tracing::warn!(
            wanted = %spec.ort.provider,
            running = %engine.provider(),
            "the execution provider is not available from this ONNX Runtime; running on the fallback"
        );
    }
    let k = engine.manifest.key_frame_interval;
    if let Some(want) = spec.key_frame_interval.filter(|want| *want != k) {
        return Err(EngineBuildError::new(
            "key_frame_interval",
            format!(
                "{want} differs from the exported engine's {k} ({}); export again with that \
                 interval or leave it unset",
                dir.display()
            ),
        ));
    }
    if temp.is_none() {
        check_other_config(spec, &engine.manifest.model, &dir)?;
    }
    // Graphs exported at start say which weights they hold, as the candle engine does.
    let weights = match (&temp, random_weights) {
        (None, _) => String::new(),
        (Some(_), true) => format!(" weights={}", spec.random_label()),
        (Some(_), false) => spec
            .model_config()
            .ok()
            .and_then(|cfg| spec.weights_for(&cfg))
            .map(|w| format!(" weights={}", w.display()))
            .unwrap_or_default(),
    };
    let engine: Arc<dyn Engine> = Arc::new(engine);
    Ok(BuiltEngine {
        description: format!(
            "{} {}{weights} graphs={}",
            engine.name(),
            engine.config().name,
            dir.display()
        ),
        engine,
        random_weights,
        engine_dir: Some(dir),
        _exported: temp,
    })
}

/// An exported engine carries its own config: a model config the front-end names must still
/// read, and when it differs from the engine's the engine's wins (said in the log).
fn check_other_config(
    spec: &EngineSpec,
    engine_cfg: &ModelConfig,
    dir: &Path,
) -> Result<(), EngineBuildError> {
    let Some(path) = &spec.model else {
        return Ok(());
    };
    let mut cfg = ModelConfig::from_file(path).map_err(|e| EngineBuildError::new("model", e))?;
    cfg.key_frame_interval = spec.key_frame_interval.unwrap_or(cfg.key_frame_interval);
    if &cfg != engine_cfg {
        tracing::warn!(
            engine = %dir.display(),
            model = %path.display(),
            "the engine's manifest was made from a different model config; using the engine's"
        );
    }
    Ok(())
}
