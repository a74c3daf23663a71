//! `manifest.json` beside the exported graphs: what an engine needs to run them without the model
//! config (sizes, classes and names, T, K, N, C, opset, versions, file names).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{graph_size, names, ExportError, Pooler, OPSET};
use crate::model::{ModelConfig, ModelError};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const KEY_FILE: &str = "key.onnx";
pub const NON_KEY_FILE: &str = "non_key.onnx";
pub const TRUNK_FILE: &str = "trunk.onnx";
/// The learned initial state (`init_proposal_features.weight` (N, C), `init_proposal_boxes.weight`
/// (N, 4) cxcywh relative): a fresh stream starts from it.
pub const INIT_FILE: &str = "init_proposals.safetensors";
/// Bumped when the graphs' inputs or outputs change meaning.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphFiles {
    /// Every stage (key frames; every frame when K = 0).
    pub key: String,
    /// The last stage only (InsPro-lite non-key frames), when K > 0.
    pub non_key: Option<String>,
    /// The bare backbone trunk (benchmark reference), when exported.
    #[serde(default)]
    pub trunk: Option<String>,
    /// The learned initial proposals (safetensors).
    pub init_proposals: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub producer: String,
    pub opset: i64,
    /// The oldest ONNX Runtime the engine's API level (`ort` feature `api-17`) loads.
    pub min_onnxruntime: String,
    /// Frames are resized to fit inside this (width, height), keeping the aspect ratio.
    pub input_size: [usize; 2],
    /// The graphs' fixed spatial size (width, height): `input_size` padded to multiples of 32.
    pub graph_size: [usize; 2],
    /// Mask logits' size (width, height): `graph_size` over the model's `mask_out_stride`.
    pub mask_size: [usize; 2],
    pub num_queries: usize,
    pub hidden_dim: usize,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub num_stages: usize,
    pub bank_size: usize,
    pub key_frame_interval: usize,
    /// How the multi-level RoIAlign is written (`static` or `gather`).
    #[serde(default)]
    pub pooler: Pooler,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub graphs: GraphFiles,
    /// The full model config the graphs were made from.
    pub model: ModelConfig,
    /// INT8 graphs: how they were quantized; absent for float graphs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
}

/// How an INT8 engine was quantized (`inspro export --int8 --calibrate DIR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantization {
    /// `qdq-int8`: QuantizeLinear / DequantizeLinear pairs in the graphs.
    pub format: String,
    /// Whose kernels: `cpu` (ONNX Runtime) or `tensorrt`.
    #[serde(default)]
    pub scheme: super::quantize::Scheme,
    pub weights: String,
    pub activations: String,
    /// Graph scopes left in float (`inspro export --int8-keep-float`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_float: Vec<String>,
    /// The calibration folder, and frames and videos read from it.
    pub calibration_dir: String,
    pub calibration_frames: usize,
    pub calibration_videos: usize,
    /// What was quantized in each graph.
    pub key: super::quantize::QuantCounts,
    #[serde(default)]
    pub non_key: Option<super::quantize::QuantCounts>,
}

impl Manifest {
    pub fn new(cfg: &ModelConfig, graphs: GraphFiles, pooler: Pooler) -> Self {
        let [wp, hp] = graph_size(cfg);
        Self {
            format_version: FORMAT_VERSION,
            name: cfg.name.clone(),
            producer: format!("inspro {}", env!("CARGO_PKG_VERSION")),
            opset: OPSET,
            min_onnxruntime: "1.17".into(),
            input_size: cfg.input_size,
            graph_size: [wp, hp],
            mask_size: [wp / cfg.mask_out_stride, hp / cfg.mask_out_stride],
            num_queries: cfg.num_queries,
            hidden_dim: cfg.fpn_channels,
            num_classes: cfg.num_classes,
            class_names: (0..cfg.num_classes).map(|i| cfg.class_name(i)).collect(),
            num_stages: cfg.num_stages,
            bank_size: cfg.bank_size,
            key_frame_interval: cfg.key_frame_interval,
            pooler,
            inputs: names::INPUTS.iter().map(|s| s.to_string()).collect(),
            outputs: names::OUTPUTS.iter().map(|s| s.to_string()).collect(),
            graphs,
            model: cfg.clone(),
            quantization: None,
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), ExportError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| ModelError::Input(format!("serialising {}: {e}", path.display())))?;
        std::fs::write(path, text).map_err(|source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Read and check a manifest: a missing or wrong field is an error naming the file and the
    /// field; the numbers must agree with the embedded model config.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let m: Self = serde_path_to_error::deserialize(de).map_err(|e| ModelError::Config {
            file: file.clone(),
            field: e.path().to_string(),
            reason: e.inner().to_string(),
        })?;
        let bad = |field: &str, reason: String| ModelError::Config {
            file: file.clone(),
            field: field.into(),
            reason,
        };
        if m.format_version != FORMAT_VERSION {
            return Err(bad(
                "format_version",
                format!(
                    "{} but this inspro reads {FORMAT_VERSION}; re-export with `inspro export`",
                    m.format_version
                ),
            ));
        }
        m.model.validate().map_err(|e| match e {
            ModelError::Config { field, reason, .. } => bad(&format!("model.{field}"), reason),
            other => other,
        })?;
        let expect = Self::new(&m.model, m.graphs.clone(), m.pooler);
        let checks: [(&str, bool); 8] = [
            ("graph_size", m.graph_size == expect.graph_size),
            ("input_size", m.input_size == expect.input_size),
            ("num_queries", m.num_queries == expect.num_queries),
            ("hidden_dim", m.hidden_dim == expect.hidden_dim),
            ("num_classes", m.num_classes == expect.num_classes),
            ("bank_size", m.bank_size == expect.bank_size),
            (
                "key_frame_interval",
                m.key_frame_interval == expect.key_frame_interval,
            ),
            (
                "inputs",
                m.inputs == expect.inputs && m.outputs == expect.outputs,
            ),
        ];
        for (field, ok) in checks {
            if !ok {
                return Err(bad(
                    field,
                    "disagrees with the embedded `model` config".into(),
                ));
            }
        }
        if m.key_frame_interval > 0 && m.graphs.non_key.is_none() {
            return Err(bad(
                "graphs.non_key",
                "missing but key_frame_interval > 0 (InsPro-lite needs the non-key graph)".into(),
            ));
        }
        Ok(m)
    }
}
