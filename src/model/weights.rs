//! Where parameters come from: a safetensors file whose keys are the Sparse R-CNN / CondInst
//! checkpoint keys (checked, with errors naming key and shapes), or a seeded random init that
//! follows the reference's initialisers and yields trainable variables.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

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

impl SimpleBackend for CheckedTensors {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(self.record(ModelError::WeightShape {
                file: self.file.clone(),
                key: name.to_string(),
                expected: s.dims().to_vec(),
                got: t.dims().to_vec(),
            }));
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let Some(t) = self.tensors.get(name) else {
            return Err(self.record(ModelError::MissingWeight {
                file: self.file.clone(),
                key: name.to_string(),
            }));
        };
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
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
}

impl SimpleBackend for SeededInit {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        if let Some(var) = vars.get(name) {
            if var.shape() != &s {
                candle_core::bail!(
                    "parameter `{name}` requested as {:?} and {:?}",
                    var.dims(),
                    s.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let values = init_values(h, &s, self.seed, name);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let vars = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        match vars.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("parameter `{name}` has no shape hint"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|v| v.contains_key(name))
            .unwrap_or(false)
    }
}

/// A `VarBuilder` over a seeded init writing into `varmap`.
pub fn seeded_var_builder(seed: u64, varmap: &VarMap, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededInit::new(seed, varmap.clone())),
        DType::F32,
        device.clone(),
    )
}

/// Lets the caller keep a handle on a backend after handing it to a `VarBuilder`.
pub struct Shared<B>(pub std::sync::Arc<B>);

impl<B: SimpleBackend> SimpleBackend for Shared<B> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}
