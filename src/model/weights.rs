//! Where parameters come from: a safetensors file whose keys are the Sparse R-CNN / CondInst
//! checkpoint keys (checked, with errors naming key and shapes), or a seeded random init that
//! follows the reference's initialisers and yields trainable variables.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use super::ModelError;

/// A safetensors file served to a `VarBuilder`; the first problem is kept as a typed error.
pub struct CheckedTensors {
    file: String,
    tensors: HashMap<String, Tensor>,
    used: Mutex<HashSet<String>>,
    first_error: Mutex<Option<ModelError>>,
}

impl CheckedTensors {
    pub fn open(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
            ModelError::WeightFile {
                file: file.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self::from_tensors(file, tensors))
    }

    pub fn from_tensors(file: String, tensors: HashMap<String, Tensor>) -> Self {
        Self {
            file,
            tensors,
            used: Mutex::new(HashSet::new()),
            first_error: Mutex::new(None),
        }
    }

    fn record(&self, err: ModelError) -> candle_core::Error {
        let msg = err.to_string();
        if let Ok(mut slot) = self.first_error.lock() {
            slot.get_or_insert(err);
        }
        candle_core::Error::Msg(msg)
    }

    /// The typed error behind a failed model construction, if it came from here.
    pub fn take_error(&self) -> Option<ModelError> {
        self.first_error.lock().ok().and_then(|mut e| e.take())
    }

    /// Keys present in the file that the model never asked for.
    pub fn unused_keys(&self) -> Vec<String> {
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        let mut keys: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        keys.sort();
        keys
    }
}

impl ParamSource for CheckedTensors {
    fn param(&self, req: ParamRequest<'_>) -> candle_core::Result<Tensor> {
        let Some(t) = self.tensors.get(req.name) else {
            return Err(self.record(ModelError::MissingWeight {
                file: self.file.clone(),
                key: req.name.to_string(),
            }));
        };
        if let Ok(mut used) = self.used.lock() {
            used.insert(req.name.to_string());
        }
        if t.shape() != &req.shape {
            return Err(self.record(ModelError::WeightShape {
                file: self.file.clone(),
                key: req.name.to_string(),
                expected: req.shape.dims().to_vec(),
                got: t.dims().to_vec(),
            }));
        }
        t.to_dtype(req.dtype)?.to_device(req.device)
    }

    fn stored(&self, name: &str) -> Option<Tensor> {
        self.tensors.get(name).cloned()
    }
}

pub use crate::rng::SplitMix64;

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Values for `init` of `shape`, from a stream seeded by (seed, parameter name): the same seed gives
/// the same weights whatever order the modules are built in.
pub fn init_values(init: Init, shape: &Shape, seed: u64, name: &str) -> Vec<f32> {
    let n = shape.elem_count();
    let mut rng = SplitMix64::new(seed ^ fnv1a(name));
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Uniform { lo, up } => (0..n)
            .map(|_| (lo + (up - lo) * rng.next_f64()) as f32)
            .collect(),
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| (mean + stdev * rng.next_normal()) as f32)
            .collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Normal => {
                    (0..n).map(|_| (std * rng.next_normal()) as f32).collect()
                }
                candle_nn::init::NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n)
                        .map(|_| (-bound + 2.0 * bound * rng.next_f64()) as f32)
                        .collect()
                }
            }
        }
    }
}

/// Seeded random init into a `VarMap`: every parameter becomes a trainable `Var`.
pub struct SeededInit {
    seed: u64,
    varmap: VarMap,
}

impl SeededInit {
    pub fn new(seed: u64, varmap: VarMap) -> Self {
        Self { seed, varmap }
    }

    fn vars(&self) -> candle_core::Result<std::sync::MutexGuard<'_, HashMap<String, Var>>> {
        self.varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))
    }
}

impl ParamSource for SeededInit {
    fn param(&self, req: ParamRequest<'_>) -> candle_core::Result<Tensor> {
        let mut vars = self.vars()?;
        let name = req.name;
        if let Some(var) = vars.get(name) {
            if var.shape() != &req.shape {
                candle_core::bail!(
                    "parameter `{name}` requested as {:?} and {:?}",
                    var.dims(),
                    req.shape.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let values = init_values(req.init, &req.shape, self.seed, name);
        let t = Tensor::from_vec(values, req.shape, req.device)?.to_dtype(req.dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn stored(&self, name: &str) -> Option<Tensor> {
        let vars = self.vars().ok()?;
        vars.get(name).map(|v| v.as_tensor().clone())
    }
}

/// A `VarBuilder` over a seeded init writing into `varmap`.
pub fn seeded_var_builder(seed: u64, varmap: &VarMap, device: &Device) -> VarBuilder<'static> {
    var_builder(Arc::new(SeededInit::new(seed, varmap.clone())), device)
}

/// One parameter a model asks for.
pub struct ParamRequest<'a> {
    pub name: &'a str,
    pub shape: Shape,
    /// The reference's initialiser (used by sources that make parameters).
    pub init: Init,
    pub dtype: DType,
    pub device: &'a Device,
}

/// Where a model's parameters come from: a checked file, a seeded init, a shape recorder.
pub trait ParamSource: Send + Sync + 'static {
    /// The parameter `req` names, of exactly its shape.
    fn param(&self, req: ParamRequest<'_>) -> candle_core::Result<Tensor>;
    /// A parameter the source already holds, whatever its shape.
    fn stored(&self, name: &str) -> Option<Tensor>;
}

/// A `VarBuilder` over `source`; the caller may keep a clone of the `Arc` to look at the source
/// afterwards (errors, unused keys, recorded shapes).
pub fn var_builder<S: ParamSource>(source: Arc<S>, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(Backend(source)), DType::F32, device.clone())
}

/// The one `SimpleBackend`: candle's three calls on a [`ParamSource`].
struct Backend<S>(Arc<S>);

impl<S: ParamSource> SimpleBackend for Backend<S> {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let req = ParamRequest {
            name,
            shape,
            init,
            dtype,
            device,
        };
        self.0.param(req)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.0.stored(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("parameter `{name}` has no shape hint"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.stored(name).is_some()
    }
}
