//! Frame preprocessing as detectron2 does it for InsPro's test protocol: resize to fit the input
//! size keeping the aspect ratio (MaskTrack R-CNN's 640x360), normalise by pixel mean/std, zero-pad
//! bottom/right to a multiple of 32.

use candle_core::{Device, Result, Tensor};

use super::config::ModelConfig;
use super::ModelError;
pub use crate::frame::{resize_rgb, FrameRef};

/// Pad divisibility of the FPN (detectron2 `size_divisibility`).
pub const SIZE_DIVISIBILITY: usize = 32;

/// Where a frame's pixels land in the network input.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrameGeometry {
    pub orig_width: usize,
    pub orig_height: usize,
    /// resized / original.
    pub scale: f32,
    pub resized_width: usize,
    pub resized_height: usize,
    pub padded_width: usize,
    pub padded_height: usize,
}

impl FrameGeometry {
    /// Fit (w, h) inside `cfg.input_size` keeping the aspect ratio.
    pub fn new(cfg: &ModelConfig, width: usize, height: usize) -> Self {
        let [in_w, in_h] = cfg.input_size;
        let scale = (in_w as f32 / width as f32).min(in_h as f32 / height as f32);
        let rw = ((width as f32 * scale).round() as usize).clamp(1, in_w);
        let rh = ((height as f32 * scale).round() as usize).clamp(1, in_h);
        let pad = |v: usize| v.div_ceil(SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY;
        Self {
            orig_width: width,
            orig_height: height,
            scale,
            resized_width: rw,
            resized_height: rh,
            padded_width: pad(rw),
            padded_height: pad(rh),
        }
    }

    /// Per-axis factors original → resized.
    pub fn scale_xy(&self) -> (f32, f32) {
        (
            self.resized_width as f32 / self.orig_width as f32,
            self.resized_height as f32 / self.orig_height as f32,
        )
    }
}

/// Resize ([`resize_rgb`]), normalise and pad. Returns (1, 3, Hp, Wp).
pub fn preprocess(
    cfg: &ModelConfig,
    frame: &FrameRef<'_>,
    geometry: &FrameGeometry,
    device: &Device,
) -> std::result::Result<Tensor, ModelError> {
    frame.check()?;
    let (pw, ph) = (geometry.padded_width, geometry.padded_height);
    let (rw, rh) = (geometry.resized_width, geometry.resized_height);
    let rgb = resize_rgb(frame, rw, rh);
    let mut out = vec![0f32; 3 * ph * pw];
    let inv_std = cfg.pixel_std.map(|s| 1.0 / s);
    for y in 0..rh {
        for x in 0..rw {
            for c in 0..3 {
                let v = f32::from(rgb[(y * rw + x) * 3 + c]);
                out[c * ph * pw + y * pw + x] = (v - cfg.pixel_mean[c]) * inv_std[c];
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, 3, ph, pw), device)?)
}

/// Turn (B, 3, H, W) already-normalised images into padded multiples of 32 (training path).
pub fn pad_to_divisible(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let ph = h.div_ceil(SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY;
    let pw = w.div_ceil(SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY;
    x.pad_with_zeros(2, 0, ph - h)?.pad_with_zeros(3, 0, pw - w)
}
