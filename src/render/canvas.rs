//! Pixels to draw on and to read from: packed RGB-family frames and 4:2:0 YUV (planar and
//! semi-planar) through their planes and strides, converted with the ITU-R BT.601 / BT.709 /
//! BT.2020 equations. The element draws into GStreamer's mapped frames with it, the daemon and
//! `inspro segment` into packed RGB copies.

/// How a format stores its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One plane, `bpp` bytes per pixel, with R, G, B at these byte offsets.
    Packed {
        bpp: usize,
        r: usize,
        g: usize,
        b: usize,
    },
    /// Y plane plus quarter-size U and V planes (I420: U=1 V=2, YV12: U=2 V=1).
    Planar420 { u: usize, v: usize },
    /// Y plane plus one quarter-size interleaved chroma plane (NV12: U first, NV21: V first).
    SemiPlanar420 { u_first: bool },
}

impl Layout {
    /// Packed RGB, 3 bytes per pixel.
    pub const RGB: Layout = Layout::Packed {
        bpp: 3,
        r: 0,
        g: 1,
        b: 2,
    };

    pub fn is_yuv(&self) -> bool {
        !matches!(self, Layout::Packed { .. })
    }
}

/// The Y'CbCr matrix of a video (unknown ones are BT.601, as GStreamer assumes for
/// standard-definition YUV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrix {
    Bt601,
    Bt709,
    Bt2020,
    Smpte240m,
    Fcc,
}

impl Matrix {
    /// (Kr, Kb).
    pub fn coefficients(self) -> (f64, f64) {
        match self {
            Matrix::Bt601 => (0.299, 0.114),
            Matrix::Bt709 => (0.2126, 0.0722),
            Matrix::Bt2020 => (0.2627, 0.0593),
            Matrix::Smpte240m => (0.212, 0.087),
            Matrix::Fcc => (0.30, 0.11),
        }
    }
}

/// Y'CbCr <-> R'G'B' for one matrix and range, in 16.16 fixed point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yuv {
    kr: f64,
    kb: f64,
    full_range: bool,
    // Decoding coefficients (fixed point, 1 << 16).
    y_mul: i32,
    y_off: i32,
    v_r: i32,
    u_g: i32,
    v_g: i32,
    u_b: i32,
}

const ONE: f64 = 65536.0;

impl Yuv {
    /// The equations of `matrix` at full (0-255) or limited (16-235/240) range.
    pub fn new(matrix: Matrix, full_range: bool) -> Yuv {
        let (kr, kb) = matrix.coefficients();
        let (y_scale, c_scale, y_off) = if full_range {
            (1.0, 1.0, 0)
        } else {
            (255.0 / 219.0, 255.0 / 224.0, 16)
        };
        let kg = 1.0 - kr - kb;
        let fx = |v: f64| (v * ONE).round() as i32;
        Yuv {
            kr,
            kb,
            full_range,
            y_mul: fx(y_scale),
            y_off,
            v_r: fx(2.0 * (1.0 - kr) * c_scale),
            u_g: fx(2.0 * kb * (1.0 - kb) / kg * c_scale),
            v_g: fx(2.0 * kr * (1.0 - kr) / kg * c_scale),
            u_b: fx(2.0 * (1.0 - kb) * c_scale),
        }
    }

    #[inline]
    pub fn decode(self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let y = (i32::from(y) - self.y_off) * self.y_mul + (1 << 15);
        let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
        let c = |x: i32| (x >> 16).clamp(0, 255) as u8;
        [
            c(y + self.v_r * v),
            c(y - self.u_g * u - self.v_g * v),
            c(y + self.u_b * u),
        ]
    }

    /// The Y, U, V bytes of an RGB colour (for the overlay).
    pub fn encode(&self, rgb: [u8; 3]) -> [u8; 3] {
        let [r, g, b] = rgb.map(f64::from);
        let (kr, kb) = (self.kr, self.kb);
        let y = kr * r + (1.0 - kr - kb) * g + kb * b;
        let u = (b - y) / (2.0 * (1.0 - kb));
        let v = (r - y) / (2.0 * (1.0 - kr));
        let (y, u, v) = if self.full_range {
            (y, u, v)
        } else {
            (
                16.0 + y * 219.0 / 255.0,
                u * 224.0 / 255.0,
                v * 224.0 / 255.0,
            )
        };
        let q = |x: f64| x.round().clamp(0.0, 255.0) as u8;
        [q(y), q(u + 128.0), q(v + 128.0)]
    }
}

/// A frame's planes as the video frame API maps them.
pub struct Planes<'a> {
    pub layout: Layout,
    pub width: usize,
    pub height: usize,
    pub data: [&'a [u8]; 3],
    pub strides: [usize; 3],
}

/// The frame as tightly packed RGB (`width * height * 3` bytes) in `out`. `yuv` is used by the
/// YUV layouts only. Chroma is taken from the 2x2 block a pixel belongs to (nearest), which is
/// what the network sees after its own resize anyway.
pub fn to_rgb(p: &Planes<'_>, yuv: &Yuv, out: &mut Vec<u8>) {
    let (w, h) = (p.width, p.height);
    out.clear();
    out.resize(w * h * 3, 0);
    match p.layout {
        Layout::Packed { bpp, r, g, b } => {
            for (y, dst) in out.chunks_exact_mut(w * 3).enumerate() {
                let row = &p.data[0][y * p.strides[0]..];
                for (px, d) in row.chunks_exact(bpp).zip(dst.chunks_exact_mut(3)) {
                    d.copy_from_slice(&[px[r], px[g], px[b]]);
                }
            }
        }
        Layout::Planar420 { u, v } => {
            for (y, dst) in out.chunks_exact_mut(w * 3).enumerate() {
                let yrow = &p.data[0][y * p.strides[0]..];
                let urow = &p.data[u][(y / 2) * p.strides[u]..];
                let vrow = &p.data[v][(y / 2) * p.strides[v]..];
                for (x, d) in dst.chunks_exact_mut(3).enumerate() {
                    d.copy_from_slice(&yuv.decode(yrow[x], urow[x / 2], vrow[x / 2]));
                }
            }
        }
        Layout::SemiPlanar420 { u_first } => {
            let (ui, vi) = if u_first { (0, 1) } else { (1, 0) };
            for (y, dst) in out.chunks_exact_mut(w * 3).enumerate() {
                let yrow = &p.data[0][y * p.strides[0]..];
                let crow = &p.data[1][(y / 2) * p.strides[1]..];
                for (x, d) in dst.chunks_exact_mut(3).enumerate() {
                    let c = (x / 2) * 2;
                    d.copy_from_slice(&yuv.decode(yrow[x], crow[c + ui], crow[c + vi]));
                }
            }
        }
    }
}

/// A colour ready for one layout: RGB bytes, or Y, U, V bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ink([u8; 3]);

/// A mutable frame to draw on.
pub struct Canvas<'a> {
    pub layout: Layout,
    pub width: usize,
    pub height: usize,
    pub data: [&'a mut [u8]; 3],
    pub strides: [usize; 3],
    pub yuv: Yuv,
}

#[inline]
fn mix(dst: &mut u8, src: u8, alpha: u16) {
    let d = u16::from(*dst);
    *dst = ((d * (255 - alpha) + u16::from(src) * alpha + 127) / 255) as u8;
}

impl<'a> Canvas<'a> {
    /// A packed RGB frame of `width` x `height` (rows of `3·width` bytes).
    pub fn rgb(data: &'a mut [u8], width: usize, height: usize) -> Self {
        Canvas {
            layout: Layout::RGB,
            width,
            height,
            data: [data, &mut [], &mut []],
            strides: [width * 3, 0, 0],
            yuv: Yuv::new(Matrix::Bt601, true),
        }
    }

    pub fn ink(&self, rgb: [u8; 3]) -> Ink {
        if self.layout.is_yuv() {
            Ink(self.yuv.encode(rgb))
        } else {
            Ink(rgb)
        }
    }

    /// Blend `ink` over pixel (x, y) with opacity `alpha` (255 = opaque). Chroma of 4:2:0 frames
    /// is blended once per 2x2 block, from its top-left pixel (or from any pixel when opaque).
    #[inline]
    pub fn blend(&mut self, x: usize, y: usize, ink: Ink, alpha: u8) {
        if x >= self.width || y >= self.height {
            return;
        }
        let a = u16::from(alpha);
        let [c0, c1, c2] = ink.0;
        match self.layout {
            Layout::Packed { bpp, r, g, b } => {
                let o = y * self.strides[0] + x * bpp;
                let px = &mut self.data[0][o..o + bpp];
                mix(&mut px[r], c0, a);
                mix(&mut px[g], c1, a);
                mix(&mut px[b], c2, a);
            }
            Layout::Planar420 { u, v } => {
                mix(&mut self.data[0][y * self.strides[0] + x], c0, a);
                if alpha == 255 || (x.is_multiple_of(2) && y.is_multiple_of(2)) {
                    mix(&mut self.data[u][(y / 2) * self.strides[u] + x / 2], c1, a);
                    mix(&mut self.data[v][(y / 2) * self.strides[v] + x / 2], c2, a);
                }
            }
            Layout::SemiPlanar420 { u_first } => {
                mix(&mut self.data[0][y * self.strides[0] + x], c0, a);
                if alpha == 255 || (x.is_multiple_of(2) && y.is_multiple_of(2)) {
                    let o = (y / 2) * self.strides[1] + (x / 2) * 2;
                    let (cu, cv) = if u_first { (o, o + 1) } else { (o + 1, o) };
                    mix(&mut self.data[1][cu], c1, a);
                    mix(&mut self.data[1][cv], c2, a);
                }
            }
        }
    }

    /// An opaque filled rectangle `[x0, x1) x [y0, y1)`, clipped to the frame.
    pub fn fill(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, ink: Ink) {
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                self.blend(x, y, ink, 255);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt601_limited_primaries() {
        // BT.601 limited range: white (235,128,128), black (16,128,128), red (81,90,240).
        let m = Yuv::new(Matrix::Bt601, false);
        assert_eq!(m.decode(235, 128, 128), [255, 255, 255]);
        assert_eq!(m.decode(16, 128, 128), [0, 0, 0]);
        let red = m.decode(81, 90, 240);
        assert!(red[0] >= 253 && red[1] <= 2 && red[2] <= 2, "{red:?}");
        assert_eq!(m.encode([255, 0, 0]), [81, 90, 240]);
        assert_eq!(m.encode([255, 255, 255]), [235, 128, 128]);
    }

    #[test]
    fn round_trip_every_matrix() {
        for matrix in [Matrix::Bt601, Matrix::Bt709, Matrix::Bt2020] {
            for full_range in [true, false] {
                let m = Yuv::new(matrix, full_range);
                for rgb in [[10, 200, 30], [250, 250, 5], [128, 64, 192], [0, 0, 0]] {
                    let [y, u, v] = m.encode(rgb);
                    let back = m.decode(y, u, v);
                    for c in 0..3 {
                        let d = (i32::from(back[c]) - i32::from(rgb[c])).abs();
                        assert!(d <= 3, "{matrix:?} {full_range} {rgb:?} -> {back:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn packed_reorders_and_skips_row_padding() {
        // 2x2 BGRx with 4 bytes of padding per row.
        let data: Vec<u8> = vec![
            3, 2, 1, 0, 6, 5, 4, 0, 9, 9, 9, 9, //
            13, 12, 11, 0, 16, 15, 14, 0, 9, 9, 9, 9,
        ];
        let p = Planes {
            layout: Layout::Packed {
                bpp: 4,
                r: 2,
                g: 1,
                b: 0,
            },
            width: 2,
            height: 2,
            data: [&data, &[], &[]],
            strides: [12, 0, 0],
        };
        let mut out = Vec::new();
        to_rgb(&p, &Yuv::new(Matrix::Bt601, true), &mut out);
        assert_eq!(out, vec![1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16]);
    }

    #[test]
    fn i420_odd_size_uses_block_chroma() {
        // 3x3 I420: chroma is 2x2. Full-range BT.601 with neutral chroma is grey = Y.
        let yp = [10u8, 20, 30, 40, 50, 60, 70, 80, 90];
        let up = [128u8, 128, 128, 128];
        let vp = [128u8, 128, 128, 128];
        let p = Planes {
            layout: Layout::Planar420 { u: 1, v: 2 },
            width: 3,
            height: 3,
            data: [&yp, &up, &vp],
            strides: [3, 2, 2],
        };
        let mut out = Vec::new();
        to_rgb(&p, &Yuv::new(Matrix::Bt601, true), &mut out);
        let grey: Vec<u8> = yp.iter().flat_map(|&v| [v, v, v]).collect();
        assert_eq!(out, grey);
    }

    #[test]
    fn blend_writes_luma_and_block_chroma() {
        let mut y = vec![0u8; 16];
        let mut u = vec![128u8; 4];
        let mut v = vec![128u8; 4];
        let mut c = Canvas {
            layout: Layout::Planar420 { u: 1, v: 2 },
            width: 4,
            height: 4,
            data: [&mut y, &mut u, &mut v],
            strides: [4, 2, 2],
            yuv: Yuv::new(Matrix::Bt601, false),
        };
        let red = c.ink([255, 0, 0]);
        c.fill(2, 0, 4, 2, red);
        c.blend(9, 9, red, 255); // outside: ignored
        assert_eq!(&y[..8], &[0, 0, 81, 81, 0, 0, 81, 81]);
        assert_eq!(u, vec![128, 90, 128, 128]);
        assert_eq!(v, vec![128, 240, 128, 128]);
    }
}
