//! Pixel layouts the element accepts, read and written through the planes and strides of the
//! mapped `GstVideoFrame`: packed RGB-family frames go to the engine as they are (RGB) or
//! reordered, 4:2:0 YUV is converted to RGB here with the caps' matrix and range (ITU-R BT.601 /
//! BT.709 / BT.2020 equations), and the overlay is blended back in the frame's own format.

use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat};

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

/// Every format in the pad templates, in caps order (preferred first).
pub const FORMATS: [VideoFormat; 14] = [
    VideoFormat::Rgb,
    VideoFormat::I420,
    VideoFormat::Nv12,
    VideoFormat::Bgr,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Yv12,
    VideoFormat::Nv21,
];

impl Layout {
    pub fn of(format: VideoFormat) -> Option<Layout> {
        let packed = |bpp, r, g, b| Some(Layout::Packed { bpp, r, g, b });
        match format {
            VideoFormat::Rgb => packed(3, 0, 1, 2),
            VideoFormat::Bgr => packed(3, 2, 1, 0),
            VideoFormat::Rgbx | VideoFormat::Rgba => packed(4, 0, 1, 2),
            VideoFormat::Bgrx | VideoFormat::Bgra => packed(4, 2, 1, 0),
            VideoFormat::Xrgb | VideoFormat::Argb => packed(4, 1, 2, 3),
            VideoFormat::Xbgr | VideoFormat::Abgr => packed(4, 3, 2, 1),
            VideoFormat::I420 => Some(Layout::Planar420 { u: 1, v: 2 }),
            VideoFormat::Yv12 => Some(Layout::Planar420 { u: 2, v: 1 }),
            VideoFormat::Nv12 => Some(Layout::SemiPlanar420 { u_first: true }),
            VideoFormat::Nv21 => Some(Layout::SemiPlanar420 { u_first: false }),
            _ => None,
        }
    }

    pub fn is_yuv(&self) -> bool {
        !matches!(self, Layout::Packed { .. })
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
    /// The matrix and range of the caps; unknown ones fall back to BT.601 limited range, as
    /// GStreamer does for standard-definition YUV.
    pub fn new(matrix: VideoColorMatrix, range: VideoColorRange) -> Yuv {
        let (kr, kb) = match matrix {
            VideoColorMatrix::Bt709 => (0.2126, 0.0722),
            VideoColorMatrix::Bt2020 => (0.2627, 0.0593),
            VideoColorMatrix::Smpte240m => (0.212, 0.087),
            VideoColorMatrix::Fcc => (0.30, 0.11),
            _ => (0.299, 0.114),
        };
        let full_range = range == VideoColorRange::Range0_255;
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

impl Canvas<'_> {
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
    use gst_video::prelude::*;

    #[test]
    fn bt601_limited_primaries() {
        // BT.601 limited range: white (235,128,128), black (16,128,128), red (81,90,240).
        let m = Yuv::new(VideoColorMatrix::Bt601, VideoColorRange::Range16_235);
        assert_eq!(m.decode(235, 128, 128), [255, 255, 255]);
        assert_eq!(m.decode(16, 128, 128), [0, 0, 0]);
        let red = m.decode(81, 90, 240);
        assert!(red[0] >= 253 && red[1] <= 2 && red[2] <= 2, "{red:?}");
        assert_eq!(m.encode([255, 0, 0]), [81, 90, 240]);
        assert_eq!(m.encode([255, 255, 255]), [235, 128, 128]);
    }

    #[test]
    fn round_trip_every_matrix() {
        for matrix in [
            VideoColorMatrix::Bt601,
            VideoColorMatrix::Bt709,
            VideoColorMatrix::Bt2020,
        ] {
            for range in [VideoColorRange::Range0_255, VideoColorRange::Range16_235] {
                let m = Yuv::new(matrix, range);
                for rgb in [[10, 200, 30], [250, 250, 5], [128, 64, 192], [0, 0, 0]] {
                    let [y, u, v] = m.encode(rgb);
                    let back = m.decode(y, u, v);
                    for c in 0..3 {
                        let d = (i32::from(back[c]) - i32::from(rgb[c])).abs();
                        assert!(d <= 3, "{matrix:?} {range:?} {rgb:?} -> {back:?}");
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
            layout: Layout::of(VideoFormat::Bgrx).unwrap(),
            width: 2,
            height: 2,
            data: [&data, &[], &[]],
            strides: [12, 0, 0],
        };
        let mut out = Vec::new();
        to_rgb(
            &p,
            &Yuv::new(VideoColorMatrix::Rgb, VideoColorRange::Unknown),
            &mut out,
        );
        assert_eq!(out, vec![1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16]);
    }

    #[test]
    fn i420_odd_size_uses_block_chroma() {
        // 3x3 I420: chroma is 2x2. Full-range BT.601 with neutral chroma is grey = Y.
        let yp = [10u8, 20, 30, 40, 50, 60, 70, 80, 90];
        let up = [128u8, 128, 128, 128];
        let vp = [128u8, 128, 128, 128];
        let p = Planes {
            layout: Layout::of(VideoFormat::I420).unwrap(),
            width: 3,
            height: 3,
            data: [&yp, &up, &vp],
            strides: [3, 2, 2],
        };
        let mut out = Vec::new();
        to_rgb(
            &p,
            &Yuv::new(VideoColorMatrix::Bt601, VideoColorRange::Range0_255),
            &mut out,
        );
        let grey: Vec<u8> = yp.iter().flat_map(|&v| [v, v, v]).collect();
        assert_eq!(out, grey);
    }

    /// Our 4:2:0 -> RGB against GStreamer's `VideoConverter` on a smooth gradient frame: the
    /// matrices agree to rounding (chroma siting aside, which a gradient keeps small).
    #[test]
    fn yuv420_to_rgb_matches_gstreamer() {
        gst::init().unwrap();
        let (w, h) = (64u32, 48u32);
        let rgb_info = gst_video::VideoInfo::builder(VideoFormat::Rgb, w, h)
            .build()
            .unwrap();
        let mut src = gst::Buffer::with_size(rgb_info.size()).unwrap();
        {
            let mut f = gst_video::VideoFrameRef::from_buffer_ref_writable(
                src.get_mut().unwrap(),
                &rgb_info,
            )
            .unwrap();
            let stride = f.plane_stride()[0] as usize;
            let p = f.plane_data_mut(0).unwrap();
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let o = y * stride + 3 * x;
                    p[o..o + 3].copy_from_slice(&[(x * 4) as u8, (y * 5) as u8, 200 - x as u8]);
                }
            }
        }
        for (format, matrix) in [
            (VideoFormat::I420, "bt601"),
            (VideoFormat::Nv12, "bt709"),
            (VideoFormat::Yv12, "bt2020"),
        ] {
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", format.to_str())
                .field("width", w as i32)
                .field("height", h as i32)
                .field("colorimetry", format!("1:{}:5:1", matrix_code(matrix)))
                .build();
            let yuv_info = gst_video::VideoInfo::from_caps(&caps).unwrap();
            let to_yuv = gst_video::VideoConverter::new(&rgb_info, &yuv_info, None).unwrap();
            let from_yuv = gst_video::VideoConverter::new(&yuv_info, &rgb_info, None).unwrap();
            let src_frame =
                gst_video::VideoFrame::from_buffer_readable(src.clone(), &rgb_info).unwrap();
            let mut yuv = gst_video::VideoFrame::from_buffer_writable(
                gst::Buffer::with_size(yuv_info.size()).unwrap(),
                &yuv_info,
            )
            .unwrap();
            to_yuv.frame(&src_frame, &mut yuv);
            let mut theirs = gst_video::VideoFrame::from_buffer_writable(
                gst::Buffer::with_size(rgb_info.size()).unwrap(),
                &rgb_info,
            )
            .unwrap();
            from_yuv.frame(&yuv, &mut theirs);
            let c = yuv_info.colorimetry();
            let planes = yuv.planes_data();
            let st = yuv.plane_stride();
            let p = Planes {
                layout: Layout::of(format).unwrap(),
                width: w as usize,
                height: h as usize,
                data: [planes[0], planes[1], planes[2]],
                strides: [
                    st[0] as usize,
                    st.get(1).map_or(0, |&s| s as usize),
                    st.get(2).map_or(0, |&s| s as usize),
                ],
            };
            let mut ours = Vec::new();
            to_rgb(&p, &Yuv::new(c.matrix(), c.range()), &mut ours);
            let ts = theirs.plane_stride()[0] as usize;
            let tp = theirs.plane_data(0).unwrap();
            let mut worst = 0;
            for y in 0..h as usize {
                for x in 0..w as usize * 3 {
                    let d =
                        (i32::from(ours[y * w as usize * 3 + x]) - i32::from(tp[y * ts + x])).abs();
                    worst = worst.max(d);
                }
            }
            // Seen: 3 (I420, BT.601), 5 (NV12, BT.709), 3 (YV12, BT.2020).
            assert!(
                worst <= 6,
                "{format:?} {matrix}: worst channel difference {worst}"
            );
        }
    }

    fn matrix_code(name: &str) -> &'static str {
        match name {
            "bt709" => "3",
            "bt2020" => "6",
            _ => "4",
        }
    }

    #[test]
    fn blend_writes_luma_and_block_chroma() {
        let mut y = vec![0u8; 16];
        let mut u = vec![128u8; 4];
        let mut v = vec![128u8; 4];
        let mut c = Canvas {
            layout: Layout::of(VideoFormat::I420).unwrap(),
            width: 4,
            height: 4,
            data: [&mut y, &mut u, &mut v],
            strides: [4, 2, 2],
            yuv: Yuv::new(VideoColorMatrix::Bt601, VideoColorRange::Range16_235),
        };
        let red = c.ink([255, 0, 0]);
        c.fill(2, 0, 4, 2, red);
        c.blend(9, 9, red, 255); // outside: ignored
        assert_eq!(&y[..8], &[0, 0, 81, 81, 0, 0, 81, 81]);
        assert_eq!(u, vec![128, 90, 128, 128]);
        assert_eq!(v, vec![128, 240, 128, 128]);
    }
}
