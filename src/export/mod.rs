//! The network written out as ONNX graphs, module by module, from the same weights (spec model.md
//! §6): per-frame graphs with the temporal state outside (inputs: the frame, the proposal features
//! and boxes, the feature bank and its valid mask; outputs: class logits, boxes, mask logits,
//! object features and the next proposal features); a key-frame graph with every stage and, for
//! InsPro-lite, a non-key graph with the last stage only; and a manifest beside them.

pub mod backbone;
pub mod bank;
pub mod fpn;
pub mod graph;
pub mod head;
pub mod manifest;
pub mod mask;
pub mod proto;
pub mod quantize;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::model::preprocess::SIZE_DIVISIBILITY;
use crate::model::{ModelConfig, ModelError};
use graph::{Attr, Graph};
pub use manifest::{GraphFiles, Manifest};
use proto::DataType;

/// The opset the graphs import: 17 has `RoiAlign` with `coordinate_transformation_mode` (16) and
/// `LayerNormalization`; ONNX Runtime supports it from 1.13, TensorRT from 8.6.
pub const OPSET: i64 = 17;

/// Graph input and output names (the manifest repeats them).
pub mod names {
    pub const FRAME: &str = "frame";
    pub const IMAGE_SIZE_HW: &str = "image_size_hw";
    pub const PROPOSAL_FEATURES: &str = "proposal_features";
    pub const PROPOSAL_BOXES_XYXY: &str = "proposal_boxes_xyxy";
    pub const BANK: &str = "bank";
    pub const BANK_VALID: &str = "bank_valid";
    pub const CLASS_LOGITS: &str = "class_logits";
    pub const PRED_BOXES_XYXY: &str = "pred_boxes_xyxy";
    pub const MASK_LOGITS: &str = "mask_logits";
    pub const OBJ_FEATURES: &str = "obj_features";
    pub const NEXT_PROPOSAL_FEATURES: &str = "next_proposal_features";
    pub const INPUTS: [&str; 6] = [
        FRAME,
        IMAGE_SIZE_HW,
        PROPOSAL_FEATURES,
        PROPOSAL_BOXES_XYXY,
        BANK,
        BANK_VALID,
    ];
    pub const OUTPUTS: [&str; 5] = [
        CLASS_LOGITS,
        PRED_BOXES_XYXY,
        MASK_LOGITS,
        OBJ_FEATURES,
        NEXT_PROPOSAL_FEATURES,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A missing weight or one of the wrong shape ([`ModelError::MissingWeight`],
    /// [`ModelError::WeightShape`]), and the model's own errors.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// INT8 quantization could not be done (calibration data, ranges).
    #[error("int8 quantization: {0}")]
    Quantize(String),
}

/// Checkpoint tensors by key, from a safetensors file or a `VarMap`.
pub struct Weights {
    file: String,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    pub fn from_safetensors(path: impl AsRef<Path>) -> Result<Self, ExportError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
            ModelError::WeightFile {
                file: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            file: path.display().to_string(),
            tensors,
        })
    }

    /// The variables of a model made by `InsPro::random` (or being trained).
    pub fn from_varmap(varmap: &VarMap, label: &str) -> Result<Self, ExportError> {
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| ModelError::Input("variable map lock poisoned".into()))?;
        let tensors = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        Ok(Self {
            file: label.to_string(),
            tensors,
        })
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The f32 values of `key`, which must have `shape`.
    pub fn get(&self, key: &str, shape: &[usize]) -> Result<Vec<f32>, ExportError> {
        let t = self
            .tensors
            .get(key)
            .ok_or_else(|| ModelError::MissingWeight {
                file: self.file.clone(),
                key: key.to_string(),
            })?;
        if t.dims() != shape {
            return Err(ModelError::WeightShape {
                file: self.file.clone(),
                key: key.to_string(),
                expected: shape.to_vec(),
                got: t.dims().to_vec(),
            }
            .into());
        }
        Ok(t.to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }
}

/// A `Linear` (PyTorch layout, weight (out, in)) applied to `x` (..., in): MatMul with the
/// transposed weight, then the bias.
pub fn linear(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    prefix: &str,
    (in_dim, out_dim): (usize, usize),
    bias: bool,
) -> Result<String, ExportError> {
    let (wt, b) = linear_weights(g, w, prefix, (in_dim, out_dim), bias)?;
    let y = g.matmul(x, &wt);
    Ok(match b {
        Some(b) => g.add(&y, &b),
        None => y,
    })
}

/// [`linear`] for a 2-D `x` (rows, in), as one `Gemm` with the bias inside: the same numbers,
/// and the form whose INT8 rewrite (QGemm) keeps the bias in the integer product.
pub fn linear_rows(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    prefix: &str,
    dims: (usize, usize),
    bias: bool,
) -> Result<String, ExportError> {
    let (wt, b) = linear_weights(g, w, prefix, dims, bias)?;
    Ok(match b {
        Some(b) => g.op("Gemm", &[x, &wt, &b], vec![]),
        None => g.op("Gemm", &[x, &wt], vec![]),
    })
}

/// A `Linear`'s weight transposed to (in, out) and its bias, as initializers.
fn linear_weights(
    g: &mut Graph,
    w: &Weights,
    prefix: &str,
    (in_dim, out_dim): (usize, usize),
    bias: bool,
) -> Result<(String, Option<String>), ExportError> {
    let weight = w.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
    let mut wt = vec![0f32; in_dim * out_dim];
    for o in 0..out_dim {
        for i in 0..in_dim {
            wt[i * out_dim + o] = weight[o * in_dim + i];
        }
    }
    let wt = g.init_f32(&format!("{prefix}.weight^T"), &[in_dim, out_dim], &wt);
    let b = if bias {
        let b = w.get(&format!("{prefix}.bias"), &[out_dim])?;
        Some(g.init_f32(&format!("{prefix}.bias"), &[out_dim], &b))
    } else {
        None
    };
    Ok((wt, b))
}

/// LayerNorm over the last dim (eps 1e-5), as ONNX `LayerNormalization`.
pub fn layer_norm(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    prefix: &str,
    dim: usize,
) -> Result<String, ExportError> {
    let gamma = w.get(&format!("{prefix}.weight"), &[dim])?;
    let beta = w.get(&format!("{prefix}.bias"), &[dim])?;
    let gamma = g.init_f32(&format!("{prefix}.weight"), &[dim], &gamma);
    let beta = g.init_f32(&format!("{prefix}.bias"), &[dim], &beta);
    Ok(g.op(
        "LayerNormalization",
        &[x, &gamma, &beta],
        vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(1e-5))],
    ))
}

/// The padded network input of a config: `input_size` rounded up to multiples of 32 (width, height).
pub fn graph_size(cfg: &ModelConfig) -> [usize; 2] {
    let pad = |v: usize| v.div_ceil(SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY;
    [pad(cfg.input_size[0]), pad(cfg.input_size[1])]
}

/// How the multi-level RoIAlign is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    /// Every box pooled from all four levels, the box's level selected in-graph: static shapes
    /// throughout (TensorRT-friendly), four times the RoIAlign work.
    #[default]
    Static,
    /// Each box pooled from its own level only (`NonZero` / `Gather` / `ScatterND`, sizes
    /// data-dependent inside the graph, static at its inputs and outputs): the CPU's choice.
    Gather,
}

crate::enum_names!(Pooler {
    Static => "static",
    Gather => "gather",
});

/// What `export` writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    pub pooler: Pooler,
    /// Also write `trunk.onnx`, the bare backbone (benchmark reference).
    pub trunk: bool,
}

/// Which stages a per-frame graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphKind {
    /// Every stage (key frames; every frame when K = 0).
    Key,
    /// The last stage only (InsPro-lite non-key frames).
    NonKey,
}

/// The frame input `(1, Hp, Wp, 3)` uint8 RGB and the valid size `[h, w]` → the normalised image
/// `(1, 3, Hp, Wp)`, zero outside the valid area: exactly what `preprocess` makes from a frame
/// already at the resized size (`(v − mean) · (1 / std)`, then zero padding).
fn normalise(g: &mut Graph, cfg: &ModelConfig, batch: usize, hp: usize, wp: usize) -> String {
    let frame = g.input(names::FRAME, DataType::Uint8, &[batch, hp, wp, 3]);
    let size = g.input(names::IMAGE_SIZE_HW, DataType::Float, &[2]);
    let x = g.op(
        "Cast",
        &[&frame],
        vec![("to", Attr::Int(DataType::Float as i64))],
    );
    let mean = g.const_f32("pixel_mean", &[3], &cfg.pixel_mean);
    let inv_std: Vec<f32> = cfg.pixel_std.iter().map(|s| 1.0 / s).collect();
    let inv_std = g.const_f32("pixel_inv_std", &[3], &inv_std);
    let x = g.sub(&x, &mean);
    let x = g.mul(&x, &inv_std); // (1, Hp, Wp, 3)
    let rows: Vec<f32> = (0..hp).map(|i| i as f32).collect();
    let cols: Vec<f32> = (0..wp).map(|i| i as f32).collect();
    let rows = g.const_f32("rows", &[hp], &rows);
    let cols = g.const_f32("cols", &[wp], &cols);
    let h = g.slice(&size, 0, 0, 1);
    let w = g.slice(&size, 0, 1, 2);
    let row_ok = g.op("Less", &[&rows, &h], vec![]);
    let col_ok = g.op("Less", &[&cols, &w], vec![]);
    let to_f = |g: &mut Graph, v: &str| {
        g.op(
            "Cast",
            &[v],
            vec![("to", Attr::Int(DataType::Float as i64))],
        )
    };
    let row_ok = to_f(g, &row_ok);
    let col_ok = to_f(g, &col_ok);
    let row_ok = g.reshape(&row_ok, &[1, hp as i64, 1, 1]);
    let col_ok = g.reshape(&col_ok, &[1, 1, wp as i64, 1]);
    let valid = g.mul(&row_ok, &col_ok); // (1, Hp, Wp, 1)
    let x = g.mul(&x, &valid);
    g.transpose(&x, &[0, 3, 1, 2]) // (B, 3, Hp, Wp)
}

/// One frame of InsPro (key: every stage; non-key: the last stage) as an ONNX graph.
pub fn frame_graph(
    cfg: &ModelConfig,
    w: &Weights,
    kind: GraphKind,
    pooler: Pooler,
) -> Result<Graph, ExportError> {
    cfg.validate()?;
    let [wp, hp] = graph_size(cfg);
    let (n, c, t, k) = (
        cfg.num_queries,
        cfg.fpn_channels,
        cfg.bank_size,
        cfg.num_classes,
    );
    let mut g = Graph::new(match kind {
        GraphKind::Key => "inspro_key_frame",
        GraphKind::NonKey => "inspro_non_key_frame",
    });
    let image = normalise(&mut g, cfg, 1, hp, wp);
    let q = g.input(names::PROPOSAL_FEATURES, DataType::Float, &[n, c]);
    let p = g.input(names::PROPOSAL_BOXES_XYXY, DataType::Float, &[n, 4]);
    let bank_in = g.input(names::BANK, DataType::Float, &[t, n, c]);
    let bank_valid = g.input(names::BANK_VALID, DataType::Float, &[t]);

    let feats = backbone::export(&mut g, cfg, w, &image)?;
    let pyramid = fpn::export(&mut g, cfg, w, &feats)?;
    let mask_feats = mask::export_branch(&mut g, cfg, w, &pyramid)?; // (1, 8, Hp/f, Wp/f)

    let stages: Vec<usize> = match kind {
        GraphKind::Key => (0..cfg.num_stages).collect(),
        GraphKind::NonKey => vec![cfg.num_stages - 1],
    };
    let (mut features, mut boxes) = (q, p);
    let mut last = None;
    for i in stages {
        let out = head::export_stage(
            &mut g,
            cfg,
            w,
            i,
            &head::StageInputs {
                pyramid: &pyramid,
                proposal_boxes_xyxy: &boxes,
                proposal_features: &features,
                pooler,
            },
        )?;
        features = out.obj_features.clone();
        boxes = out.pred_boxes_xyxy.clone();
        last = Some(out);
    }
    let last = last.ok_or_else(|| ModelError::Input("a graph needs at least one stage".into()))?;
    let masks = mask::export_head(
        &mut g,
        cfg,
        &mask_feats,
        &last.mask_head_params,
        &last.pred_boxes_xyxy,
        (hp / cfg.mask_feat_stride, wp / cfg.mask_feat_stride),
    )?; // (N, Hp/o, Wp/o), o = mask_out_stride
    let next = bank::export(&mut g, cfg, w, &last.obj_features, &bank_in, &bank_valid)?;

    g.output(
        &last.class_logits,
        names::CLASS_LOGITS,
        DataType::Float,
        &[n, k],
    );
    g.output(
        &last.pred_boxes_xyxy,
        names::PRED_BOXES_XYXY,
        DataType::Float,
        &[n, 4],
    );
    g.output(
        &masks,
        names::MASK_LOGITS,
        DataType::Float,
        &[n, hp / cfg.mask_out_stride, wp / cfg.mask_out_stride],
    );
    g.output(
        &last.obj_features,
        names::OBJ_FEATURES,
        DataType::Float,
        &[n, c],
    );
    g.output(
        &next,
        names::NEXT_PROPOSAL_FEATURES,
        DataType::Float,
        &[n, c],
    );
    Ok(g)
}

/// The bare backbone trunk (normalisation + ResNet/tiny, outputs C2..C5): the benchmark's
/// reference for effective GFLOP/s on the same engine.
pub fn trunk_graph(cfg: &ModelConfig, w: &Weights) -> Result<Graph, ExportError> {
    trunk_graph_batch(cfg, w, 1)
}

/// [`trunk_graph`] over `batch` frames at once (`(B, Hp, Wp, 3)`, one valid size for all): the
/// benchmark's measure of batching streams through one call.
pub fn trunk_graph_batch(
    cfg: &ModelConfig,
    w: &Weights,
    batch: usize,
) -> Result<Graph, ExportError> {
    cfg.validate()?;
    let [wp, hp] = graph_size(cfg);
    let mut g = Graph::new("inspro_trunk");
    let image = normalise(&mut g, cfg, batch.max(1), hp, wp);
    let f = backbone::export(&mut g, cfg, w, &image)?;
    let ch = cfg.backbone_channels();
    for (i, (v, s)) in [&f.c2, &f.c3, &f.c4, &f.c5]
        .into_iter()
        .zip([4, 8, 16, 32])
        .enumerate()
    {
        g.output(
            v,
            &format!("c{}", i + 2),
            DataType::Float,
            &[batch.max(1), ch[i], hp / s, wp / s],
        );
    }
    Ok(g)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    std::fs::write(path, bytes).map_err(|source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Write `key.onnx` (and `non_key.onnx` for K > 0), optionally `trunk.onnx`, and
/// `manifest.json` into `out_dir`.
pub fn export(
    cfg: &ModelConfig,
    w: &Weights,
    out_dir: &Path,
    opts: &ExportOptions,
) -> Result<Manifest, ExportError> {
    export_with(cfg, w, out_dir, opts, &mut |_, _| Ok(()))
}

/// [`export`] with `rewrite` applied to each per-frame graph before it is written (INT8:
/// observation outputs for calibration, then the QDQ rewrite).
pub fn export_with(
    cfg: &ModelConfig,
    w: &Weights,
    out_dir: &Path,
    opts: &ExportOptions,
    rewrite: &mut dyn FnMut(GraphKind, &mut Graph) -> Result<(), ExportError>,
) -> Result<Manifest, ExportError> {
    std::fs::create_dir_all(out_dir).map_err(|source| ExportError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let meta = vec![
        ("inspro.model".to_string(), cfg.name.clone()),
        ("inspro.weights".to_string(), w.file().to_string()),
    ];
    // One graph at a time in memory: built, serialised, written, dropped.
    let write_graph = |file: &str, graph: Graph, doc: &str| -> Result<String, ExportError> {
        write(
            &out_dir.join(file),
            &graph.to_model_bytes(OPSET, doc, &meta),
        )?;
        Ok(file.to_string())
    };
    let mut frame = |kind: GraphKind| -> Result<Graph, ExportError> {
        let mut g = frame_graph(cfg, w, kind, opts.pooler)?;
        rewrite(kind, &mut g)?;
        Ok(g)
    };
    write_graph(
        manifest::KEY_FILE,
        frame(GraphKind::Key)?,
        "InsPro key frame: every stage",
    )?;
    let non_key = (cfg.key_frame_interval > 0)
        .then(|| {
            write_graph(
                manifest::NON_KEY_FILE,
                frame(GraphKind::NonKey)?,
                "InsPro-lite non-key frame: the last stage",
            )
        })
        .transpose()?;
    let trunk = opts
        .trunk
        .then(|| {
            write_graph(
                manifest::TRUNK_FILE,
                trunk_graph(cfg, w)?,
                "backbone trunk only (benchmark reference)",
            )
        })
        .transpose()?;
    let (n, c) = (cfg.num_queries, cfg.fpn_channels);
    let init: HashMap<String, Tensor> = [
        ("init_proposal_features.weight", vec![n, c]),
        ("init_proposal_boxes.weight", vec![n, 4]),
    ]
    .into_iter()
    .map(|(k, shape)| {
        let v = w.get(k, &shape)?;
        Ok((k.to_string(), Tensor::from_vec(v, shape, &Device::Cpu)?))
    })
    .collect::<Result<_, ExportError>>()?;
    candle_core::safetensors::save(&init, out_dir.join(manifest::INIT_FILE))?;
    let m = Manifest::new(
        cfg,
        GraphFiles {
            key: manifest::KEY_FILE.to_string(),
            non_key,
            trunk,
            init_proposals: manifest::INIT_FILE.to_string(),
        },
        opts.pooler,
    );
    m.write(&out_dir.join(manifest::MANIFEST_FILE))?;
    Ok(m)
}
