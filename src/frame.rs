//! The one frame type every front-end hands to an engine (a packed or strided RGB8 image) and the
//! one resize both engines take their pixels from.

/// A frame that does not describe its own pixels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame {width}x{height}")]
    Empty { width: usize, height: usize },
    #[error("stride {stride} is less than 3 x width {width}")]
    Stride { stride: usize, width: usize },
    #[error("{width}x{height} frame with stride {stride} needs {need} bytes, got {got}")]
    Short {
        width: usize,
        height: usize,
        stride: usize,
        need: usize,
        got: usize,
    },
}

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

    /// The size, stride and buffer agree.
    pub fn check(&self) -> Result<(), FrameError> {
        let (width, height, stride) = (self.width, self.height, self.stride);
        if width == 0 || height == 0 {
            return Err(FrameError::Empty { width, height });
        }
        if stride < width * 3 {
            return Err(FrameError::Stride { stride, width });
        }
        let need = stride * (height - 1) + width * 3;
        if self.data.len() < need {
            return Err(FrameError::Short {
                width,
                height,
                stride,
                need,
                got: self.data.len(),
            });
        }
        Ok(())
    }

    /// Row `y`'s `3·width` bytes.
    pub fn row(&self, y: usize) -> &'a [u8] {
        &self.data[y * self.stride..y * self.stride + self.width * 3]
    }

    /// The frame as packed RGB (rows without padding).
    pub fn to_packed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.width * self.height * 3);
        for y in 0..self.height {
            out.extend_from_slice(self.row(y));
        }
        out
    }
}

/// The frame resized to `width` x `height` (bilinear, half-pixel centres, no antialiasing) and
/// rounded to 8 bits, packed RGB; a copy when the size already matches. Both engines take their
/// pixels from here, so they see the same input.
pub fn resize_rgb(frame: &FrameRef<'_>, width: usize, height: usize) -> Vec<u8> {
    if frame.width == width && frame.height == height {
        return frame.to_packed();
    }
    let mut out = vec![0u8; width * height * 3];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strided_frame_reads_its_rows_and_rejects_short_buffers() {
        // 2x2 RGB with rows padded to 8 bytes.
        let data = [1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0];
        let f = FrameRef {
            width: 2,
            height: 2,
            stride: 8,
            data: &data,
        };
        assert_eq!(f.check(), Ok(()));
        assert_eq!(f.to_packed(), (1..=12).collect::<Vec<u8>>());
        assert_eq!(resize_rgb(&f, 2, 2), f.to_packed());
        let short = FrameRef {
            data: &data[..12],
            ..f
        };
        assert!(matches!(
            short.check(),
            Err(FrameError::Short {
                need: 14,
                got: 12,
                ..
            })
        ));
        let narrow = FrameRef { stride: 5, ..f };
        assert_eq!(
            narrow.check(),
            Err(FrameError::Stride {
                stride: 5,
                width: 2
            })
        );
    }
}
