//! The exported graphs (`inspro export`) run by ONNX Runtime through `ort` (`load-dynamic`): the
//! library is found at run time (config, `ORT_DYLIB_PATH`, or the venv `scripts/setup.sh` makes),
//! the execution provider is `cpu`, `cuda` or `tensorrt` (fp16, engine and timing caches), with a
//! warning and the CPU when the library cannot give the one asked for. The stream state stays
//! host-side (`StreamState`, shared with the candle engine): on the CPU provider the copies are
//! ~2 MB per frame, far below a millisecond (docs/perf.md).

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use candle_core::{Device, Tensor};
use ort::ep::ExecutionProviderDispatch;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights, SessionBuilder};
use ort::session::Session;
use ort::value::TensorRef;

use crate::export::manifest::{Manifest, MANIFEST_FILE};
use crate::export::names;
use crate::frame::{resize_rgb, FrameRef};
use crate::model::preprocess::FrameGeometry;
use crate::model::{ModelConfig, ModelError};
use crate::runtime::{Engine, FrameOutput, StreamState};

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
    Cpu,
    Cuda,
    Tensorrt,
}

crate::enum_names!(Provider {
    Cpu => "cpu",
    Cuda => "cuda",
    Tensorrt => "tensorrt" | "trt",
});

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
        }
    }
}

/// Where the setup script's venv keeps the library, below `base`.
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

fn session_error(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
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
fn open_session(
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
    if let Some(prefix) = std::env::var_os("INSPRO_ORT_PROFILE") {
        b = b.with_profiling(prefix).map_err(e)?;
    }
    if let Some(t) = opts.threads {
        b = b.with_intra_threads(t).map_err(e)?;
    }
    if let Some(w) = shared {
        b = b.with_prepacked_weights(w).map_err(e)?;
    }
    if opts.sessions > 1 {
        // Several sessions share the cores: a waiting pool must not spin on a core another
        // session's frame needs.
        b = b.with_intra_op_spinning(false).map_err(e)?;
    }
    let eps = match opts.provider {
        Provider::Cpu => Vec::new(),
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

/// The inputs of one per-frame graph run (host data).
pub struct GraphInputs<'a> {
    /// (1, Hp, Wp, 3) RGB.
    pub frame: &'a [u8],
    /// [resized height, resized width]: the valid area of `frame`.
    pub image_size_hw: [f32; 2],
    pub proposal_features: &'a [f32],
    pub proposal_boxes_xyxy: &'a [f32],
    pub bank: &'a [f32],
    pub bank_valid: &'a [f32],
}

/// The graphs' inputs as host buffers: the frame's pixels and the stream state's tensors.
#[derive(Debug, Clone)]
pub struct HostInputs {
    pub frame: Vec<u8>,
    pub image_size_hw: [f32; 2],
    pub proposal_features: Vec<f32>,
    pub proposal_boxes_xyxy: Vec<f32>,
    pub bank: Vec<f32>,
    pub bank_valid: Vec<f32>,
}

impl HostInputs {
    pub fn as_graph(&self) -> GraphInputs<'_> {
        GraphInputs {
            frame: &self.frame,
            image_size_hw: self.image_size_hw,
            proposal_features: &self.proposal_features,
            proposal_boxes_xyxy: &self.proposal_boxes_xyxy,
            bank: &self.bank,
            bank_valid: &self.bank_valid,
        }
    }
}

/// The outputs of one per-frame graph run (host data, row-major).
#[derive(Debug, Clone)]
pub struct GraphOutputs {
    /// (N, K).
    pub class_logits: Vec<f32>,
    /// (N, 4) network-input pixels.
    pub pred_boxes_xyxy: Vec<f32>,
    /// (N, Hp/4, Wp/4).
    pub mask_logits: Vec<f32>,
    /// (N, C).
    pub obj_features: Vec<f32>,
    /// (N, C).
    pub next_proposal_features: Vec<f32>,
}

/// One session of each graph: one frame at a time runs on it.
struct Lane {
    key: Session,
    non_key: Option<Session>,
}

/// The engine's lanes, handed out first come, first served (a ticket queue), so that no stream
/// waits behind another one twice.
struct Lanes {
    lanes: Vec<Mutex<Lane>>,
    queue: Mutex<TicketQueue>,
    turn: Condvar,
}

struct TicketQueue {
    free: Vec<usize>,
    next_ticket: u64,
    serving: u64,
}

impl Lanes {
    fn new(lanes: Vec<Lane>) -> Self {
        Self {
            queue: Mutex::new(TicketQueue {
                free: (0..lanes.len()).rev().collect(),
                next_ticket: 0,
                serving: 0,
            }),
            lanes: lanes.into_iter().map(Mutex::new).collect(),
            turn: Condvar::new(),
        }
    }

    fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Wait for this caller's turn and a free lane.
    fn acquire(&self) -> Result<LaneGuard<'_>, ModelError> {
        let poisoned = || ModelError::Runtime {
            engine: "onnxruntime",
            reason: "session lock poisoned".into(),
        };
        let mut q = self.queue.lock().map_err(|_| poisoned())?;
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        while q.serving != ticket || q.free.is_empty() {
            q = self.turn.wait(q).map_err(|_| poisoned())?;
        }
        q.serving += 1;
        let index = q.free.pop().ok_or_else(poisoned)?;
        drop(q);
        // The next ticket may find a lane free too.
        self.turn.notify_all();
        let lane = self.lanes[index].lock().map_err(|_| poisoned())?;
        Ok(LaneGuard {
            lanes: self,
            index,
            lane: Some(lane),
        })
    }
}

/// A lane taken from [`Lanes`]; it goes back on drop.
struct LaneGuard<'a> {
    lanes: &'a Lanes,
    index: usize,
    lane: Option<MutexGuard<'a, Lane>>,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        drop(self.lane.take());
        if let Ok(mut q) = self.lanes.queue.lock() {
            q.free.push(self.index);
        }
        self.lanes.turn.notify_all();
    }
}

/// ONNX Runtime running the exported graphs.
pub struct OrtEngine {
    pub manifest: Manifest,
    dir: PathBuf,
    lanes: Lanes,
    provider: Provider,
    /// init_proposal_features (N·C) and init_proposal_boxes cxcywh relative (N·4).
    init_features: Vec<f32>,
    init_boxes_cxcywh: Vec<f32>,
}

fn engine_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

impl OrtEngine {
    /// Open an exported engine: `path` is its directory (or any file in it, e.g. the manifest).
    pub fn load(path: &Path, opts: &OrtOptions) -> Result<Self, RuntimeError> {
        let dir = engine_dir(path);
        let manifest = Manifest::read(&dir.join(MANIFEST_FILE))?;
        let library = find_library(opts.library.as_deref())?;
        let env = environment(&library)?;
        if let Some(q) = &manifest.quantization {
            let for_trt = q.scheme == crate::export::quantize::Scheme::Tensorrt;
            if (opts.provider == Provider::Tensorrt) != for_trt {
                tracing::warn!(
                    engine = %dir.display(),
                    int8_for = %q.scheme,
                    provider = %opts.provider,
                    "these INT8 graphs were written for other kernels (export with --int8-for {}); they run, perhaps slower",
                    if opts.provider == Provider::Tensorrt { "tensorrt" } else { "cpu" }
                );
            }
        }
        let int8 = OrtOptions {
            trt_int8: manifest.quantization.is_some(),
            ..opts.clone()
        };
        let opts = &int8;
        let cache = opts
            .trt_cache_dir
            .clone()
            .unwrap_or_else(|| dir.join("trt_cache"));
        // One container for every session: the weights are prepacked once, not per session.
        let shared = PrepackedWeights::new();
        let mut lanes = Vec::new();
        let mut provider = opts.provider;
        for _ in 0..opts.sessions.max(1) {
            let (key, p) = open_session(
                &env,
                &dir.join(&manifest.graphs.key),
                opts,
                &cache,
                Some(&shared),
            )?;
            provider = p;
            let non_key = match (&manifest.graphs.non_key, manifest.key_frame_interval) {
                (Some(f), k) if k > 0 => {
                    Some(open_session(&env, &dir.join(f), opts, &cache, Some(&shared))?.0)
                }
                _ => None,
            };
            lanes.push(Lane { key, non_key });
        }
        let init_path = dir.join(&manifest.graphs.init_proposals);
        let init = candle_core::safetensors::load(&init_path, &Device::Cpu).map_err(|e| {
            ModelError::WeightFile {
                file: init_path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let (n, c) = (manifest.num_queries, manifest.hidden_dim);
        let get = |k: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
            let t = init.get(k).ok_or_else(|| ModelError::MissingWeight {
                file: init_path.display().to_string(),
                key: k.into(),
            })?;
            if t.dims() != shape {
                return Err(ModelError::WeightShape {
                    file: init_path.display().to_string(),
                    key: k.into(),
                    expected: shape.to_vec(),
                    got: t.dims().to_vec(),
                });
            }
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        let init_features = get("init_proposal_features.weight", &[n, c])?;
        let init_boxes_cxcywh = get("init_proposal_boxes.weight", &[n, 4])?;
        tracing::info!(
            engine = %dir.display(),
            library = %library.display(),
            provider = %provider,
            sessions = lanes.len(),
            threads = opts.threads,
            "ONNX Runtime engine loaded"
        );
        Ok(Self {
            manifest,
            dir,
            lanes: Lanes::new(lanes),
            provider,
            init_features,
            init_boxes_cxcywh,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The execution provider in use (the CPU when the one asked for was unavailable).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Sessions per graph: how many frames can run at once.
    pub fn sessions(&self) -> usize {
        self.lanes.len()
    }

    fn has_non_key(&self) -> bool {
        self.manifest.graphs.non_key.is_some() && self.manifest.key_frame_interval > 0
    }

    /// The geometry of a `width` x `height` stream on this engine: resized as the candle engine
    /// does, padded to the graphs' fixed size (≥ the 32-padding candle uses; equal for frames of
    /// the config's aspect ratio).
    pub fn geometry(&self, width: usize, height: usize) -> FrameGeometry {
        let mut g = FrameGeometry::new(&self.manifest.model, width, height);
        g.padded_width = self.manifest.graph_size[0];
        g.padded_height = self.manifest.graph_size[1];
        g
    }

    /// Run the key-frame (all stages) or non-key (last stage) graph once.
    pub fn run_graph(
        &self,
        key_frame: bool,
        inputs: &GraphInputs<'_>,
    ) -> Result<GraphOutputs, ModelError> {
        self.run_graph_observed(key_frame, inputs, None)
    }

    /// [`run_graph`](Self::run_graph), handing every float output beyond the graphs' own
    /// (calibration's observation outputs) to `observe`.
    pub fn run_graph_observed(
        &self,
        key_frame: bool,
        inputs: &GraphInputs<'_>,
        observe: Option<&mut dyn FnMut(&str, &[f32])>,
    ) -> Result<GraphOutputs, ModelError> {
        let m = &self.manifest;
        let [wp, hp] = m.graph_size;
        let (n, c, t) = (m.num_queries, m.hidden_dim, m.bank_size);
        let err = |e: ort::Error| ModelError::Runtime {
            engine: "onnxruntime",
            reason: e.to_string(),
        };
        let mut guard = self.lanes.acquire()?;
        let lane = guard
            .lane
            .as_deref_mut()
            .ok_or_else(|| ModelError::Runtime {
                engine: "onnxruntime",
                reason: "no session".into(),
            })?;
        let session = match (&mut lane.non_key, key_frame) {
            (Some(s), false) => s,
            _ => &mut lane.key,
        };
        let frame = TensorRef::from_array_view(([1usize, hp, wp, 3], inputs.frame)).map_err(err)?;
        let size =
            TensorRef::from_array_view(([2usize], &inputs.image_size_hw[..])).map_err(err)?;
        let q = TensorRef::from_array_view(([n, c], inputs.proposal_features)).map_err(err)?;
        let p =
            TensorRef::from_array_view(([n, 4usize], inputs.proposal_boxes_xyxy)).map_err(err)?;
        let bank = TensorRef::from_array_view(([t, n, c], inputs.bank)).map_err(err)?;
        let valid = TensorRef::from_array_view(([t], inputs.bank_valid)).map_err(err)?;
        let outputs = session
            .run(ort::inputs![
                names::FRAME => frame,
                names::IMAGE_SIZE_HW => size,
                names::PROPOSAL_FEATURES => q,
                names::PROPOSAL_BOXES_XYXY => p,
                names::BANK => bank,
                names::BANK_VALID => valid,
            ])
            .map_err(err)?;
        let get = |name: &str| -> Result<Vec<f32>, ModelError> {
            let v = outputs.get(name).ok_or_else(|| ModelError::Runtime {
                engine: "onnxruntime",
                reason: format!("no output `{name}`"),
            })?;
            let (_, data) = v.try_extract_tensor::<f32>().map_err(err)?;
            Ok(data.to_vec())
        };
        if let Some(observe) = observe {
            for (name, v) in outputs.iter() {
                if names::OUTPUTS.contains(&name) {
                    continue;
                }
                let (_, data) = v.try_extract_tensor::<f32>().map_err(err)?;
                observe(name, data);
            }
        }
        Ok(GraphOutputs {
            class_logits: get(names::CLASS_LOGITS)?,
            pred_boxes_xyxy: get(names::PRED_BOXES_XYXY)?,
            mask_logits: get(names::MASK_LOGITS)?,
            obj_features: get(names::OBJ_FEATURES)?,
            next_proposal_features: get(names::NEXT_PROPOSAL_FEATURES)?,
        })
    }

    /// A frame and a stream state as the graphs' host inputs.
    pub fn host_inputs(
        &self,
        frame: &FrameRef<'_>,
        state: &StreamState,
    ) -> Result<HostInputs, ModelError> {
        let g = state.geometry;
        Ok(HostInputs {
            frame: self.frame_input(frame, &g),
            image_size_hw: [g.resized_height as f32, g.resized_width as f32],
            proposal_features: state.proposal_features().flatten_all()?.to_vec1::<f32>()?,
            proposal_boxes_xyxy: state
                .proposal_boxes_xyxy()
                .flatten_all()?
                .to_vec1::<f32>()?,
            bank: state.bank().flatten_all()?.to_vec1::<f32>()?,
            bank_valid: state.bank_window(),
        })
    }

    /// The frame as the graph's `(1, Hp, Wp, 3)` input: resized as the candle engine does
    /// ([`resize_rgb`]), zero elsewhere (the graph zeroes the padding after normalising).
    pub fn frame_input(&self, frame: &FrameRef<'_>, g: &FrameGeometry) -> Vec<u8> {
        let (pw, ph) = (g.padded_width, g.padded_height);
        let (rw, rh) = (g.resized_width, g.resized_height);
        let rgb = resize_rgb(frame, rw, rh);
        let mut out = vec![0u8; ph * pw * 3];
        for y in 0..rh {
            out[y * pw * 3..y * pw * 3 + rw * 3]
                .copy_from_slice(&rgb[y * rw * 3..(y + 1) * rw * 3]);
        }
        out
    }
}

impl Engine for OrtEngine {
    fn name(&self) -> String {
        format!("onnxruntime/{}", self.provider)
    }

    fn config(&self) -> &ModelConfig {
        &self.manifest.model
    }

    fn init_state(&self, width: usize, height: usize) -> Result<StreamState, ModelError> {
        if width == 0 || height == 0 {
            return Err(ModelError::Input(format!(
                "cannot make a stream state for an empty {width}x{height} frame"
            )));
        }
        let g = self.geometry(width, height);
        let (n, c) = (self.manifest.num_queries, self.manifest.hidden_dim);
        // `InsPro::initial_proposals`, the same f32 operations on the host.
        let (w, h) = (g.resized_width as f32, g.resized_height as f32);
        let boxes: Vec<f32> = self
            .init_boxes_cxcywh
            .chunks_exact(4)
            .flat_map(|b| {
                let (hw, hh) = (b[2] * 0.5, b[3] * 0.5);
                [
                    (b[0] - hw) * w,
                    (b[1] - hh) * h,
                    (b[0] + hw) * w,
                    (b[1] + hh) * h,
                ]
            })
            .collect();
        let dev = Device::Cpu;
        StreamState::new(
            g,
            Tensor::from_vec(self.init_features.clone(), (n, c), &dev)?,
            Tensor::from_vec(boxes, (n, 4), &dev)?,
            self.manifest.bank_size,
        )
    }

    fn step(
        &self,
        frame: &FrameRef<'_>,
        state: &mut StreamState,
    ) -> Result<FrameOutput, ModelError> {
        self.step_observed(frame, state, None)
    }
}

impl OrtEngine {
    /// [`Engine::step`], handing the graph's observation outputs to `observe` (calibration).
    pub fn step_observed(
        &self,
        frame: &FrameRef<'_>,
        state: &mut StreamState,
        observe: Option<&mut dyn FnMut(&str, &[f32])>,
    ) -> Result<FrameOutput, ModelError> {
        let _span = tracing::trace_span!("step", engine = "onnxruntime", frame = state.frame_index)
            .entered();
        state.check_frame_size(frame)?;
        let g = state.geometry;
        if [g.padded_width, g.padded_height] != self.manifest.graph_size {
            return Err(ModelError::Input(format!(
                "the stream state is for a {}x{} network input but this engine's graphs are {}x{}; make the state with this engine",
                g.padded_width, g.padded_height, self.manifest.graph_size[0], self.manifest.graph_size[1]
            )));
        }
        frame.check()?;
        let m = &self.manifest;
        let (n, k) = (m.num_queries, m.num_classes);
        let key_frame = m.model.is_key_frame(state.frame_index);
        let inputs = {
            let _span = tracing::trace_span!("preprocess").entered();
            self.host_inputs(frame, state)?
        };
        let graph_span = tracing::trace_span!("graph", key_frame).entered();
        let out = self.run_graph_observed(key_frame, &inputs.as_graph(), observe)?;
        drop(graph_span);
        let _span = tracing::trace_span!("host_state").entered();
        let probs: Vec<Vec<f32>> = out
            .class_logits
            .chunks_exact(k)
            .map(|row| row.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect())
            .collect();
        let pred: Vec<Vec<f32>> = out
            .pred_boxes_xyxy
            .chunks_exact(4)
            .map(<[f32]>::to_vec)
            .collect();
        let [mw, mh] = m.mask_size;
        let stages_run = if key_frame || !self.has_non_key() {
            m.num_stages
        } else {
            1
        };
        let result = FrameOutput::from_network(
            state,
            key_frame,
            stages_run,
            probs,
            &pred,
            out.mask_logits,
            (mh, mw),
        );
        let dev = Device::Cpu;
        let c = m.hidden_dim;
        state.advance(
            &Tensor::from_vec(out.obj_features, (n, c), &dev)?,
            &Tensor::from_vec(out.next_proposal_features, (n, c), &dev)?,
            &pred,
        )?;
        Ok(result)
    }
}

/// Wall time (ms) of `runs` runs, after `warmup`, of a graph whose inputs are the normalising
/// front (`frame`, `image_size_hw`) alone, e.g. `trunk.onnx`: the benchmark's reference.
pub fn time_trunk_graph(
    path: &Path,
    opts: &OrtOptions,
    [wp, hp]: [usize; 2],
    warmup: usize,
    runs: usize,
) -> Result<Vec<f64>, RuntimeError> {
    time_trunk_batch(path, opts, 1, [wp, hp], warmup, runs, None)
}

/// [`time_trunk_graph`] for a graph that takes `batch` frames per call; with `start`, the timed
/// runs begin when every party of the barrier has warmed up.
pub fn time_trunk_batch(
    path: &Path,
    opts: &OrtOptions,
    batch: usize,
    [wp, hp]: [usize; 2],
    warmup: usize,
    runs: usize,
    start: Option<&std::sync::Barrier>,
) -> Result<Vec<f64>, RuntimeError> {
    let library = find_library(opts.library.as_deref())?;
    let env = environment(&library)?;
    let cache = engine_dir(path).join("trt_cache");
    let (mut session, _) = open_session(&env, path, opts, &cache, None)?;
    let pixels: Vec<u8> = (0..batch * hp * wp * 3)
        .map(|i| ((i * 31) % 251) as u8)
        .collect();
    let size = [hp as f32, wp as f32];
    let mut times = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        if i == warmup {
            if let Some(b) = start {
                b.wait();
            }
        }
        let t0 = std::time::Instant::now();
        let frame = TensorRef::from_array_view(([batch, hp, wp, 3], &pixels[..]))
            .map_err(|e| session_error(path, e))?;
        let s = TensorRef::from_array_view(([2usize], &size[..]))
            .map_err(|e| session_error(path, e))?;
        let out = session
            .run(ort::inputs![names::FRAME => frame, names::IMAGE_SIZE_HW => s])
            .map_err(|e| session_error(path, e))?;
        drop(out);
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}
