//! What one stream carries between frames (any engine): each slot's (instance query, proposal
//! box) pair and the feature-bank ring (paper §3.1, Fig. 2), and a frame's result for every slot;
//! slot i is object i.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::frame::FrameRef;
use crate::model::preprocess::FrameGeometry;
use crate::model::ModelError;

/// Propagated boxes keep at least this width and height (network pixels) after clipping, so that a
/// slot whose object left the frame can still grow onto a new one (docs/model.md).
pub const MIN_PROPOSAL_SIZE: f32 = 4.0;

/// Everything one stream carries between frames. Cheap to clone (tensors are shared, immutable).
#[derive(Debug, Clone)]
pub struct StreamState {
    pub geometry: FrameGeometry,
    /// Frames stepped since the state was made.
    pub frame_index: u64,
    /// q: (N, C).
    pub(super) proposal_features: Tensor,
    /// p: (N, 4) xyxy, network-input pixels.
    pub(super) proposal_boxes_xyxy: Tensor,
    /// Ring of the last T object features: (T, N, C).
    pub(super) bank: Tensor,
    pub(super) bank_valid: Vec<bool>,
    /// Ring slot the next object features go to.
    pub(super) bank_next: usize,
    /// Set for the "no propagation" ablation: every frame starts again from these proposals.
    pub(super) restart: Option<(Tensor, Tensor)>,
}

/// One frame's result for every slot; slot i is object i.
#[derive(Debug, Clone)]
pub struct FrameOutput {
    pub frame_index: u64,
    pub key_frame: bool,
    pub stages_run: usize,
    pub geometry: FrameGeometry,
    /// N rows of K sigmoid class probabilities.
    pub class_probs: Vec<Vec<f32>>,
    /// N boxes xyxy in the original frame's pixels.
    pub boxes_xyxy: Vec<[f32; 4]>,
    /// Mask logits at the model's `mask_out_stride` of the padded network input: N x (mask_h x mask_w), row-major.
    pub mask_logits: Vec<f32>,
    pub mask_h: usize,
    pub mask_w: usize,
}

impl FrameOutput {
    pub fn num_slots(&self) -> usize {
        self.boxes_xyxy.len()
    }

    /// Best class of a slot and its probability.
    pub fn best_class(&self, slot: usize) -> (usize, f32) {
        self.class_probs[slot]
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &p)| {
                if p > best.1 {
                    (i, p)
                } else {
                    best
                }
            })
    }

    /// Mask logits of a slot at the original frame size (row-major, orig_height x orig_width),
    /// bilinear from stride 4: CondInst's aligned up-sampling puts logit cell i at pixel 4i + 2.
    pub fn mask_logits_at_original(&self, slot: usize) -> Vec<f32> {
        let g = &self.geometry;
        self.mask_logits_in(slot, [0, 0, g.orig_width, g.orig_height])
    }

    /// The stride of the mask logits in the padded network input (the model's
    /// `mask_out_stride`): the padded height over the mask's.
    pub fn mask_stride(&self) -> usize {
        self.geometry.padded_height / self.mask_h.max(1)
    }

    /// Mask logits of a slot over the pixel rectangle `[x0, y0, x1, y1)` of the original frame
    /// (clamped to it), row-major.
    pub fn mask_logits_in(&self, slot: usize, rect: [usize; 4]) -> Vec<f32> {
        let g = &self.geometry;
        let x1 = rect[2].min(g.orig_width);
        let y1 = rect[3].min(g.orig_height);
        let (x0, y0) = (rect[0].min(x1), rect[1].min(y1));
        let (mh, mw) = (self.mask_h, self.mask_w);
        let plane = &self.mask_logits[slot * mh * mw..(slot + 1) * mh * mw];
        let (sx, sy) = g.scale_xy();
        let stride = self.mask_stride();
        let s = stride as f32;
        let off = (stride / 2) as f32;
        let axis = |i: usize, scale: f32, n: usize| {
            let r = (i as f32 + 0.5) * scale - 0.5;
            let u = ((r - off) / s).clamp(0.0, (n - 1) as f32);
            let lo = u.floor() as usize;
            (lo, (lo + 1).min(n - 1), u - lo as f32)
        };
        let xs: Vec<_> = (x0..x1).map(|x| axis(x, sx, mw)).collect();
        let mut out = Vec::with_capacity((x1 - x0) * (y1 - y0));
        for y in y0..y1 {
            let (ya, yb, ly) = axis(y, sy, mh);
            for &(xa, xb, lx) in &xs {
                let top = plane[ya * mw + xa] * (1.0 - lx) + plane[ya * mw + xb] * lx;
                let bot = plane[yb * mw + xa] * (1.0 - lx) + plane[yb * mw + xb] * lx;
                out.push(top * (1.0 - ly) + bot * ly);
            }
        }
        out
    }

    /// The pixel rectangle `[x0, y0, x1, y1)` of the original frame covered by a box, clamped.
    pub fn box_rect(&self, box_xyxy: &[f32; 4]) -> [usize; 4] {
        let g = &self.geometry;
        let clamp = |v: f32, hi: usize| (v.max(0.0) as usize).min(hi);
        let x0 = clamp(box_xyxy[0].floor(), g.orig_width);
        let y0 = clamp(box_xyxy[1].floor(), g.orig_height);
        let x1 = clamp(box_xyxy[2].ceil(), g.orig_width).max(x0);
        let y1 = clamp(box_xyxy[3].ceil(), g.orig_height).max(y0);
        [x0, y0, x1, y1]
    }

    /// Binary mask of a slot at the original size: sigmoid > 0.5, i.e. logit > 0.
    pub fn mask_at_original(&self, slot: usize) -> Vec<bool> {
        self.mask_logits_at_original(slot)
            .into_iter()
            .map(|v| v > 0.0)
            .collect()
    }
}

impl FrameOutput {
    /// A frame's output from the network's last-stage results (any engine): `class_probs` N rows
    /// of K sigmoid probabilities, `pred_boxes_xyxy` N boxes in network-input pixels, mask logits
    /// (N, mask_h, mask_w) row-major at one stride (`mask_out_stride`) of the padded input.
    pub fn from_network(
        state: &StreamState,
        key_frame: bool,
        stages_run: usize,
        class_probs: Vec<Vec<f32>>,
        pred_boxes_xyxy: &[Vec<f32>],
        mask_logits: Vec<f32>,
        (mask_h, mask_w): (usize, usize),
    ) -> Self {
        let g = state.geometry;
        debug_assert_eq!(
            g.padded_height / mask_h.max(1) * mask_w,
            g.padded_width,
            "mask logits of one stride on both axes"
        );
        let (sx, sy) = g.scale_xy();
        let boxes_xyxy = pred_boxes_xyxy
            .iter()
            .map(|b| [b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy])
            .collect();
        FrameOutput {
            frame_index: state.frame_index,
            key_frame,
            stages_run,
            geometry: g,
            class_probs,
            boxes_xyxy,
            mask_logits,
            mask_h,
            mask_w,
        }
    }
}

/// Clip a box to [0, w] x [0, h], keeping at least `MIN_PROPOSAL_SIZE` per side inside the frame.
pub fn clip_box(b: [f32; 4], w: f32, h: f32) -> [f32; 4] {
    let axis = |lo: f32, hi: f32, size: f32| {
        let (lo, hi) = if lo.is_finite() && hi.is_finite() {
            (lo.clamp(0.0, size), hi.clamp(0.0, size))
        } else {
            (0.0, size)
        };
        let min = MIN_PROPOSAL_SIZE.min(size);
        if hi - lo >= min {
            return (lo, hi);
        }
        let centre = (0.5 * (lo + hi)).clamp(0.5 * min, size - 0.5 * min);
        (centre - 0.5 * min, centre + 0.5 * min)
    };
    let (x1, x2) = axis(b[0], b[2], w);
    let (y1, y2) = axis(b[1], b[3], h);
    [x1, y1, x2, y2]
}

impl StreamState {
    /// A frame of another size than the state was made for is an error (the caller resets).
    pub fn check_frame_size(&self, frame: &FrameRef<'_>) -> Result<(), ModelError> {
        let g = &self.geometry;
        if frame.width != g.orig_width || frame.height != g.orig_height {
            return Err(ModelError::Input(format!(
                "frame is {}x{} but the stream state was made for {}x{}; reset the state",
                frame.width, frame.height, g.orig_width, g.orig_height
            )));
        }
        Ok(())
    }

    /// A fresh state (any engine): the learned proposal features (N, C) and boxes (N, 4) xyxy for
    /// this geometry, an empty bank of `bank_size` entries.
    pub fn new(
        geometry: FrameGeometry,
        proposal_features: Tensor,
        proposal_boxes_xyxy: Tensor,
        bank_size: usize,
    ) -> Result<Self, ModelError> {
        let (n, c) = proposal_features.dims2()?;
        if proposal_boxes_xyxy.dims() != [n, 4] || bank_size == 0 {
            return Err(ModelError::Input(format!(
                "stream state: proposal boxes {:?} do not fit {n} proposals, or bank size {bank_size} is 0",
                proposal_boxes_xyxy.dims()
            )));
        }
        let device = proposal_features.device().clone();
        Ok(Self {
            geometry,
            frame_index: 0,
            proposal_features,
            proposal_boxes_xyxy,
            bank: Tensor::zeros((bank_size, n, c), DType::F32, &device)?,
            bank_valid: vec![false; bank_size],
            bank_next: 0,
            restart: None,
        })
    }

    /// The paper's "no propagation" ablation (Table 2a): after every frame the state returns to
    /// its initial proposals with an empty bank; slot i is still reported as object i.
    pub fn restart_every_frame(mut self) -> Self {
        self.restart = Some((
            self.proposal_features.clone(),
            self.proposal_boxes_xyxy.clone(),
        ));
        self
    }

    /// The feature bank (T, N, C), a ring; `bank_window` says which entries count.
    pub fn bank(&self) -> &Tensor {
        &self.bank
    }

    /// The bank-valid mask (T) for the coming frame: 1 for the entries that stay in the window
    /// after this frame's object features enter it. The entry at the ring position is
    /// overwritten by this frame's features, so it is not part of the window.
    pub fn bank_window(&self) -> Vec<f32> {
        (0..self.bank_valid.len())
            .map(|i| f32::from(u8::from(self.bank_valid[i] && i != self.bank_next)))
            .collect()
    }

    /// Advance past a frame (any engine): its last-stage object features (N, C) enter the bank
    /// ring, the intra-query attention's output becomes the queries, and the last-stage boxes
    /// (network pixels), clipped to the frame, the proposals.
    pub fn advance(
        &mut self,
        obj_features: &Tensor,
        next_proposal_features: &Tensor,
        pred_boxes_xyxy: &[Vec<f32>],
    ) -> Result<(), ModelError> {
        let (n, c) = obj_features.dims2()?;
        let t = self.bank_valid.len();
        self.bank = self.bank.slice_assign(
            &[self.bank_next..self.bank_next + 1, 0..n, 0..c],
            &obj_features.unsqueeze(0)?,
        )?;
        self.bank_valid[self.bank_next] = true;
        self.bank_next = (self.bank_next + 1) % t;
        self.proposal_features = next_proposal_features.clone();
        let g = self.geometry;
        let clipped: Vec<f32> = pred_boxes_xyxy
            .iter()
            .flat_map(|b| {
                clip_box(
                    [b[0], b[1], b[2], b[3]],
                    g.resized_width as f32,
                    g.resized_height as f32,
                )
            })
            .collect();
        self.proposal_boxes_xyxy =
            Tensor::from_vec(clipped, (n, 4), self.proposal_features.device())?;
        if let Some((features, boxes)) = &self.restart {
            self.proposal_features = features.clone();
            self.proposal_boxes_xyxy = boxes.clone();
            self.bank_valid.fill(false);
        }
        self.frame_index += 1;
        Ok(())
    }

    pub fn proposal_boxes_xyxy(&self) -> &Tensor {
        &self.proposal_boxes_xyxy
    }

    pub fn proposal_features(&self) -> &Tensor {
        &self.proposal_features
    }

    /// Number of filled bank entries.
    pub fn bank_len(&self) -> usize {
        self.bank_valid.iter().filter(|v| **v).count()
    }

    /// Write the state to a safetensors file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let dev = Device::Cpu;
        let g = &self.geometry;
        let meta = Tensor::from_vec(
            vec![
                self.frame_index as i64,
                self.bank_next as i64,
                g.orig_width as i64,
                g.orig_height as i64,
            ],
            4,
            &dev,
        )?;
        let valid: Vec<f32> = self
            .bank_valid
            .iter()
            .map(|v| f32::from(u8::from(*v)))
            .collect();
        let n = valid.len();
        let tensors: HashMap<String, Tensor> = [
            ("meta".to_string(), meta),
            (
                "proposal_features".to_string(),
                self.proposal_features.clone(),
            ),
            (
                "proposal_boxes_xyxy".to_string(),
                self.proposal_boxes_xyxy.clone(),
            ),
            ("bank".to_string(), self.bank.clone()),
            ("bank_valid".to_string(), Tensor::from_vec(valid, n, &dev)?),
        ]
        .into_iter()
        .collect();
        candle_core::safetensors::save(&tensors, path.as_ref())?;
        Ok(())
    }
}
