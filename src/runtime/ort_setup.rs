//! Loading ONNX Runtime (`ort`, `load-dynamic`): the options, the library (config,
//! `ORT_DYLIB_PATH`, or the venv `scripts/setup.sh` makes), the process's one environment, and
//! one session per graph with its execution provider (CPU, CUDA, or TensorRT with fp16/INT8
//! and its engine and timing caches), falling back to the CPU with a warning.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::ep::ExecutionProviderDispatch;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights, SessionBuilder};
use ort::session::Session;

use crate::model::ModelError;

/// The command that installs the library this engine loads.
pub const SETUP_HINT: &str =
    "run `scripts/setup.sh python` (or `make setup`), or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.17 or later";

/// Errors of loading the ONNX Runtime engine; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found (looked at: {}); {SETUP_HINT}", searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    LibraryNotFound { searched: Vec<PathBuf> },
    #[error("ONNX Runtime library {}: {reason}; {SETUP_HINT}", path.display())]
    Library { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Session { path: PathBuf, reason: String },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The fastest the loaded library offers: TensorRT, then CUDA, then the CPU
    /// ([`offered_provider`]); resolved before any session opens.
    Auto,
    Cpu,
    Cuda,
    Tensorrt,
}

crate::enum_names!(Provider {
    Auto => "auto",
    Cpu => "cpu",
    Cuda => "cuda",
    Tensorrt => "tensorrt" | "trt",
});

/// What `provider = auto` becomes with the library at `library` (loaded here if it is not yet):
/// TensorRT when the library was built with it, else CUDA, else the CPU. A GPU library whose
/// GPU or TensorRT is missing at run time still falls back to the CPU when the session opens
/// (warned there).
pub fn offered_provider(library: &Path) -> Result<Provider, RuntimeError> {
    use ort::ep::ExecutionProvider;
    environment(library)?;
    let offered = |r: ort::Result<bool>| r.unwrap_or(false);
    Ok(if offered(ort::ep::TensorRT::is_available()) {
        Provider::Tensorrt
    } else if offered(ort::ep::CUDA::is_available()) {
        Provider::Cuda
    } else {
        Provider::Cpu
    })
}

/// How to run the graphs.
#[derive(Debug, Clone)]
pub struct OrtOptions {
    /// libonnxruntime.so; `None`: `ORT_DYLIB_PATH`, then the venv of `scripts/setup.sh`.
    pub library: Option<PathBuf>,
    pub provider: Provider,
    /// Intra-op threads of each session; `None`: ONNX Runtime's default (one per physical core).
    pub threads: Option<usize>,
    /// Sessions per graph: how many frames (of different streams) run at once. The sessions
    /// share their prepacked weights; streams take the next free one in arrival order.
    pub sessions: usize,
    /// GPU index for CUDA / TensorRT.
    pub device_id: i32,
    /// TensorRT engine and timing caches; `None`: `<engine dir>/trt_cache`.
    pub trt_cache_dir: Option<PathBuf>,
    /// TensorRT in fp16 (LayerNorm kept in fp32).
    pub trt_fp16: bool,
    /// TensorRT INT8 (set for graphs with QDQ pairs; their scales are in the graph).
    pub trt_int8: bool,
    /// Per-node timings: ONNX Runtime writes `<prefix>_<date>.json` when a session closes
    /// (also `$INSPRO_ORT_PROFILE`).
    pub profile: Option<PathBuf>,
    /// Whether a session's waiting intra-op threads spin (ONNX Runtime's default) or sleep;
    /// `None`: spin with one session, sleep with several (they share the cores).
    pub spin: Option<bool>,
}

impl Default for OrtOptions {
    fn default() -> Self {
        Self {
            library: None,
            provider: Provider::Cpu,
            threads: None,
            sessions: 1,
            device_id: 0,
            trt_cache_dir: None,
            trt_fp16: true,
            trt_int8: false,
            profile: None,
            spin: None,
        }
    }
}

impl OrtOptions {
    /// The CPU split for `streams` streams running at once on `cores` cores, where the options do
    /// not say: a session per stream (at most four per core), the cores' intra-op threads divided
    /// among the sessions (at least one each). One stream keeps one session with a thread per
    /// core. Measured in docs/perf.md: a session per camera beats fewer sessions taken in turn
    /// and one batched call.
    pub fn share_cores(mut self, streams: usize, cores: usize, sessions: Option<usize>) -> Self {
        let cores = cores.max(1);
        self.sessions = sessions
            .unwrap_or_else(|| streams.clamp(1, 4 * cores))
            .max(1);
        if self.threads.is_none() {
            self.threads = Some((cores / self.sessions).max(1));
        }
        self
    }
}

/// Cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Where the setup script's venv keeps the library, below `base`.
fn venv_libraries(base: &Path) -> Vec<PathBuf> {
    let lib = base.join(".venv").join("lib");
    let mut found = Vec::new();
    let Ok(pythons) = std::fs::read_dir(&lib) else {
        return found;
    };
    for py in pythons.flatten() {
        let capi = py
            .path()
            .join("site-packages")
            .join("onnxruntime")
            .join("capi");
        if let Ok(files) = std::fs::read_dir(&capi) {
            let mut libs: Vec<PathBuf> = files
                .flatten()
                .map(|f| f.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                })
                .collect();
            // The versioned name (libonnxruntime.so.1.31.1) sorts after the bare one.
            libs.sort();
            found.extend(libs.into_iter().rev());
        }
    }
    found
}

/// The ONNX Runtime library to load: `configured`, else `ORT_DYLIB_PATH`, else the venv that
/// `scripts/setup.sh` makes (`.venv/lib/python3*/site-packages/onnxruntime/capi/`) in the
/// directories above the executable or above the working directory. A configured or
/// `ORT_DYLIB_PATH` file that does not exist is an error, not a reason to look elsewhere.
pub fn find_library(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let missing = |p: PathBuf, from: &str| RuntimeError::Library {
        path: p,
        reason: format!("does not exist (from {from})"),
    };
    if let Some(p) = configured {
        return if p.exists() {
            Ok(p.to_path_buf())
        } else {
            Err(missing(p.to_path_buf(), "the configuration"))
        };
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.exists() {
            Ok(p)
        } else {
            Err(missing(p, "ORT_DYLIB_PATH"))
        };
    }
    let mut searched = Vec::new();
    let mut bases: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        bases.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        bases.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    for base in bases {
        if let Some(lib) = venv_libraries(&base).into_iter().next() {
            return Ok(lib);
        }
        searched.push(base.join(".venv/lib/python3*/site-packages/onnxruntime/capi"));
    }
    searched.dedup();
    Err(RuntimeError::LibraryNotFound { searched })
}

/// The process's one ONNX Runtime environment (ONNX Runtime allows one), with the library it
/// was loaded from.
static ENVIRONMENT: OnceLock<Mutex<Option<(ort::environment::Environment, PathBuf)>>> =
    OnceLock::new();

/// Load the library (once per process) and make the environment.
pub fn environment(library: &Path) -> Result<ort::environment::Environment, RuntimeError> {
    let slot = ENVIRONMENT.get_or_init(|| Mutex::new(None));
    let mut slot = slot.lock().map_err(|_| RuntimeError::Library {
        path: library.to_path_buf(),
        reason: "environment lock poisoned".into(),
    })?;
    if let Some((env, loaded)) = slot.as_ref() {
        if loaded != library {
            tracing::warn!(
                loaded = %loaded.display(),
                asked = %library.display(),
                "ONNX Runtime is already loaded in this process; keeping the first library"
            );
        }
        return Ok(env.clone());
    }
    let builder = ort::init_from(library).map_err(|e| RuntimeError::Library {
        path: library.to_path_buf(),
        reason: match &e {
            ort::LoadDynamicError::BadVersion { version_str, .. } => format!(
                "version {version_str} is too old: inspro needs ONNX Runtime 1.{} or later",
                ort::MINOR_VERSION
            ),
            other => other.to_string(),
        },
    })?;
    let env = builder
        .with_name("inspro")
        .build()
        .map_err(|e| RuntimeError::Library {
            path: library.to_path_buf(),
            reason: e.to_string(),
        })?;
    // ONNX Runtime's INFO lines (arena growth, ...) are noise here; warnings and errors stay.
    env.set_log_level(ort::logging::LogLevel::Warning);
    *slot = Some((env.clone(), library.to_path_buf()));
    Ok(env)
}

pub(super) fn session_error(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Session {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Register `eps` (in order, failing loudly) or warn and keep the CPU.
fn with_providers(
    builder: SessionBuilder,
    provider: Provider,
    eps: Vec<ExecutionProviderDispatch>,
) -> (SessionBuilder, Provider) {
    if eps.is_empty() {
        return (builder, Provider::Cpu);
    }
    let eps: Vec<_> = eps.into_iter().map(|e| e.error_on_failure()).collect();
    match builder.with_execution_providers(eps) {
        Ok(b) => (b, provider),
        Err(e) => {
            tracing::warn!(
                provider = %provider,
                error = %e,
                "execution provider unavailable in this ONNX Runtime library; running on the CPU"
            );
            (e.recover(), Provider::Cpu)
        }
    }
}

/// Open one graph.
pub(super) fn open_session(
    env: &ort::environment::Environment,
    path: &Path,
    opts: &OrtOptions,
    cache_dir: &Path,
    shared: Option<&PrepackedWeights>,
) -> Result<(Session, Provider), RuntimeError> {
    let e = |e: ort::Error<SessionBuilder>| session_error(path, e);
    let mut b = Session::builder(env)
        .map_err(|e| session_error(path, e))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(e)?
        .with_inter_threads(1)
        .map_err(e)?;
    // Per-node timings for docs/perf.md: ONNX Runtime writes `<prefix>_<date>.json` when the
    // session is dropped.
    if let Some(prefix) = opts
        .profile
        .clone()
        .map(Into::into)
        .or_else(|| std::env::var_os("INSPRO_ORT_PROFILE"))
    {
        b = b.with_profiling(prefix).map_err(e)?;
    }
    if let Some(t) = opts.threads {
        b = b.with_intra_threads(t).map_err(e)?;
    }
    if let Some(w) = shared {
        b = b.with_prepacked_weights(w).map_err(e)?;
    }
    // Several sessions share the cores: a waiting pool must not spin on a core another
    // session's frame needs.
    if !opts.spin.unwrap_or(opts.sessions <= 1) {
        b = b.with_intra_op_spinning(false).map_err(e)?;
    }
    let eps = match opts.provider {
        // Not reached: `OrtEngine::load` resolves `auto` before it opens a session.
        Provider::Cpu | Provider::Auto => Vec::new(),
        Provider::Cuda => vec![ort::ep::CUDA::default()
            .with_device_id(opts.device_id)
            .build()],
        Provider::Tensorrt => {
            std::fs::create_dir_all(cache_dir).map_err(|e| session_error(cache_dir, e))?;
            let cache = cache_dir.display().to_string();
            vec![
                ort::ep::TensorRT::default()
                    .with_device_id(opts.device_id)
                    .with_fp16(opts.trt_fp16)
                    .with_int8(opts.trt_int8)
                    .with_layer_norm_fp32_fallback(true)
                    .with_engine_cache(true)
                    .with_engine_cache_path(&cache)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&cache)
                    .build(),
                // Nodes TensorRT does not take run on CUDA, not on the CPU.
                ort::ep::CUDA::default()
                    .with_device_id(opts.device_id)
                    .build(),
            ]
        }
    };
    let (mut b, provider) = with_providers(b, opts.provider, eps);
    let session = b
        .commit_from_file(path)
        .map_err(|e| session_error(path, e))?;
    Ok((session, provider))
}
