//! The exported graphs (`inspro export`) run by ONNX Runtime through `ort` (`load-dynamic`): the
//! library is found at run time (config, `ORT_DYLIB_PATH`, or the venv `scripts/setup.sh` makes),
//! the execution provider is `cpu`, `cuda` or `tensorrt` (fp16, engine and timing caches), with a
//! warning and the CPU when the library cannot give the one asked for (ort_setup.rs). An engine
//! holds `OrtOptions::sessions` sessions of each graph sharing their prepacked weights, so that
//! streams run at once (ort_lanes.rs). The stream state stays host-side (`StreamState`, shared
//! with the candle engine): on the CPU provider the copies are ~2 MB per frame, far below a
//! millisecond (docs/perf.md).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ort::session::builder::PrepackedWeights;
use ort::value::TensorRef;

use crate::export::manifest::{Manifest, MANIFEST_FILE};
use crate::export::names;
use crate::frame::{resize_rgb, FrameRef};
use crate::model::preprocess::FrameGeometry;
use crate::model::{ModelConfig, ModelError};
use crate::runtime::{Engine, FrameOutput, StreamState};

pub use super::ort_bench::{profile_by_part, time_trunk_batch, time_trunk_graph, PARTS};
use super::ort_lanes::{Lane, Lanes};
use super::ort_setup::open_session;
pub use super::ort_setup::{
    available_cores, environment, find_library, offered_provider, OrtOptions, Provider,
    RuntimeError, SETUP_HINT,
};

/// Receives a graph's observation outputs by name (calibration).
pub type Observer<'a> = &'a mut dyn FnMut(&str, &[f32]);

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
        // `auto` not resolved by the factory (a benchmark opening graphs directly): here.
        let resolved = OrtOptions {
            provider: match opts.provider {
                Provider::Auto => offered_provider(&library)?,
                p => p,
            },
            ..opts.clone()
        };
        let opts = &resolved;
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
        observe: Option<Observer<'_>>,
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
        observe: Option<Observer<'_>>,
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
            .map(|row| m.model.class_probs(row))
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
