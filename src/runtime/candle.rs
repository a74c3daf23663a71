//! The candle network as an engine: `InsPro::init_state` / `InsPro::step` (paper §3.1, Fig. 2).
//! All N slots propagate every frame; the last stage's boxes, clipped to the frame, are the next
//! proposals; the intra-query attention over a ring of the last T object features gives the next
//! queries; with K > 0 (InsPro-lite) only key frames run every stage.

use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;

use super::state::{FrameOutput, StreamState};
use super::Engine;
use crate::frame::FrameRef;
use crate::model::preprocess::{preprocess, FrameGeometry};
use crate::model::{FrameOptions, InsPro, ModelConfig, ModelError};

/// The candle network as an engine.
pub struct CandleEngine {
    pub model: Arc<InsPro>,
}

impl CandleEngine {
    pub fn new(model: Arc<InsPro>) -> Self {
        Self { model }
    }
}

impl Engine for CandleEngine {
    fn name(&self) -> String {
        "candle".into()
    }

    fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    fn init_state(&self, width: usize, height: usize) -> Result<StreamState, ModelError> {
        self.model.init_state(width, height)
    }

    fn step(
        &self,
        frame: &FrameRef<'_>,
        state: &mut StreamState,
    ) -> Result<FrameOutput, ModelError> {
        self.model.step(frame, state)
    }
}

impl InsPro {
    /// A fresh state for a stream of `width` x `height` frames: learned init features and
    /// whole-image proposals, an empty bank.
    pub fn init_state(&self, width: usize, height: usize) -> Result<StreamState, ModelError> {
        if width == 0 || height == 0 {
            return Err(ModelError::Input(format!(
                "cannot make a stream state for an empty {width}x{height} frame"
            )));
        }
        let geometry = FrameGeometry::new(&self.cfg, width, height);
        let (features, boxes) =
            self.initial_proposals(geometry.resized_width, geometry.resized_height)?;
        let state = StreamState::new(
            geometry,
            features.detach(),
            boxes.detach(),
            self.cfg.bank_size,
        )?;
        Ok(if self.cfg.propagate {
            state
        } else {
            state.restart_every_frame()
        })
    }

    /// Segment one frame and advance the stream's state.
    pub fn step(
        &self,
        frame: &FrameRef<'_>,
        state: &mut StreamState,
    ) -> Result<FrameOutput, ModelError> {
        let _span =
            tracing::trace_span!("step", engine = "candle", frame = state.frame_index).entered();
        state.check_frame_size(frame)?;
        let g = state.geometry;
        let image = {
            let _span = tracing::trace_span!("preprocess").entered();
            preprocess(&self.cfg, frame, &g, self.device())?
        };
        let key_frame = self.cfg.is_key_frame(state.frame_index);
        let t = state.bank_valid.len();
        let bank_valid = Tensor::from_vec(state.bank_window(), t, self.device())?;
        let fwd = self.forward_frame(
            &image,
            &state.proposal_features,
            &state.proposal_boxes_xyxy,
            &state.bank,
            &bank_valid,
            FrameOptions::inference(key_frame),
        )?;
        let last = fwd.last()?;
        let pred = last.pred_boxes_xyxy.detach().to_vec2::<f32>()?;
        let probs: Vec<Vec<f32>> = last
            .class_logits
            .to_vec2::<f32>()?
            .iter()
            .map(|row| self.cfg.class_probs(row))
            .collect();
        let masks = fwd
            .mask_logits
            .last()
            .ok_or_else(|| ModelError::Input("the last stage produced no masks".into()))?;
        let (_, mask_h, mask_w) = masks.dims3()?;
        let out = FrameOutput::from_network(
            state,
            key_frame,
            fwd.stages.len(),
            probs,
            &pred,
            masks.flatten_all()?.to_vec1::<f32>()?,
            (mask_h, mask_w),
        );
        state.advance(
            &last.obj_features.detach(),
            &fwd.next_proposal_features.detach(),
            &pred,
        )?;
        Ok(out)
    }
}

impl InsPro {
    /// Read a state written by `StreamState::save`, checking it fits this model.
    pub fn load_state(&self, path: impl AsRef<Path>) -> Result<StreamState, ModelError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let bad = |field: &str, reason: String| ModelError::Config {
            file: file.clone(),
            field: field.into(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let tensors =
            candle_core::safetensors::load_buffer(&bytes, self.device()).map_err(|e| {
                ModelError::WeightFile {
                    file: file.clone(),
                    reason: e.to_string(),
                }
            })?;
        let get = |k: &str| {
            tensors
                .get(k)
                .cloned()
                .ok_or_else(|| bad(k, "missing".into()))
        };
        let meta = get("meta")?.to_vec1::<i64>()?;
        if meta.len() != 4 || meta.iter().any(|v| *v < 0) {
            return Err(bad("meta", format!("{meta:?} is not a valid header")));
        }
        let (n, c, t) = (
            self.cfg.num_queries,
            self.cfg.fpn_channels,
            self.cfg.bank_size,
        );
        let check = |k: &str, want: &[usize]| -> Result<Tensor, ModelError> {
            let x = get(k)?;
            if x.dims() != want {
                return Err(bad(
                    k,
                    format!("shape {:?}, this model needs {want:?}", x.dims()),
                ));
            }
            Ok(x)
        };
        let mut state = self.init_state(meta[2] as usize, meta[3] as usize)?;
        state.frame_index = meta[0] as u64;
        state.bank_next = meta[1] as usize;
        if state.bank_next >= t {
            return Err(bad("meta", format!("bank position {} >= T = {t}", meta[1])));
        }
        state.proposal_features = check("proposal_features", &[n, c])?;
        state.proposal_boxes_xyxy = check("proposal_boxes_xyxy", &[n, 4])?;
        state.bank = check("bank", &[t, n, c])?;
        state.bank_valid = check("bank_valid", &[t])?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|v| v > 0.5)
            .collect();
        Ok(state)
    }
}
