//! Frame preprocessing as detectron2 does it for InsPro's test protocol: resize to fit the input
//! size keeping the aspect ratio (MaskTrack R-CNN's 640x360), normalise by pixel mean/std, zero-pad
//! bottom/right to a multiple of 32.

use candle_core::{Device, Result, Tensor};

use super::config::ModelConfig;

/// Pad divisibility of the FPN (detectron2 `size_divisibility`).
pub const SIZE_DIVISIBILITY: usize = 32;

/// A packed or strided RGB8 frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub width: usize,
    pub height: usize,
    /// Bytes per row (>= 3·width).
    pub stride: usize,
    pub data: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// A tightly packed RGB frame.
    pub fn packed(width: usize, height: usize, data: &'a [u8]) -> Self {
        Self {
            width,
            height,
            stride: width * 3,
            data,
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.width == 0 || self.height == 0 {
            return Err(format!("empty frame {}x{}", self.width, self.height));
        }
        if self.stride < self.width * 3 {
            return Err(format!(
                "stride {} is less than 3 x width {}",
                self.stride, self.width
            ));
        }
        let need = self.stride * (self.height - 1) + self.width * 3;
        if self.data.len() < need {
            return Err(format!(
                "{}x{} frame with stride {} needs {} bytes, got {}",
                self.width,
                self.height,
                self.stride,
                need,
                self.data.len()
            ));
        }
        Ok(())
    }
}

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

/// The frame resized to `width` x `height` (bilinear, half-pixel centres, no antialiasing) and
/// rounded to 8 bits, packed RGB; a copy when the size already matches. Both engines take their
/// pixels from here, so they see the same input.
pub fn resize_rgb(frame: &FrameRef<'_>, width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; width * height * 3];
    if frame.width == width && frame.height == height {
        for y in 0..height {
            let src = &frame.data[y * frame.stride..y * frame.stride + width * 3];
            out[y * width * 3..(y + 1) * width * 3].copy_from_slice(src);
        }
        return out;
    }
    let (sx, sy) = (
        frame.width as f32 / width as f32,
        frame.height as f32 / height as f32,
    );
    let px = |x: usize, y: usize, c: usize| frame.data[y * frame.stride + x * 3 + c] as f32;
    for y in 0..height {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (frame.height - 1) as f32);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(frame.height - 1);
        let ly = fy - y0 as f32;
        for x in 0..width {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (frame.width - 1) as f32);
            let x0 = fx.floor() as usize;
            let x1 = (x0 + 1).min(frame.width - 1);
            let lx = fx - x0 as f32;
            for c in 0..3 {
                let v = (1.0 - ly) * ((1.0 - lx) * px(x0, y0, c) + lx * px(x1, y0, c))
                    + ly * ((1.0 - lx) * px(x0, y1, c) + lx * px(x1, y1, c));
                out[(y * width + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Resize ([`resize_rgb`]), normalise and pad. Returns (1, 3, Hp, Wp).
pub fn preprocess(
    cfg: &ModelConfig,
    frame: &FrameRef<'_>,
    geometry: &FrameGeometry,
    device: &Device,
) -> std::result::Result<Tensor, String> {
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
    Tensor::from_vec(out, (1, 3, ph, pw), device).map_err(|e: candle_core::Error| e.to_string())
}

/// Turn (B, 3, H, W) already-normalised images into padded multiples of 32 (training path).
pub fn pad_to_divisible(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let ph = h.div_ceil(SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY;
    let pw = w.div_ceil(SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY;
    x.pad_with_zeros(2, 0, ph - h)?.pad_with_zeros(3, 0, pw - w)
}
