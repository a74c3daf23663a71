//! The element's side of the pixels: the formats in its caps, their layouts and colorimetry as
//! `inspro::render` takes them. Reading, converting and drawing live in `inspro::render::canvas`.

use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat};
pub use inspro::render::canvas::{to_rgb, Canvas, Layout, Matrix, Planes, Yuv};

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

/// How `format` stores its pixels; `None` for formats the element does not take.
pub fn layout_of(format: VideoFormat) -> Option<Layout> {
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

/// The caps' matrix and range; unknown ones fall back to BT.601 limited range, as GStreamer does
/// for standard-definition YUV.
pub fn yuv_of(matrix: VideoColorMatrix, range: VideoColorRange) -> Yuv {
    let matrix = match matrix {
        VideoColorMatrix::Bt709 => Matrix::Bt709,
        VideoColorMatrix::Bt2020 => Matrix::Bt2020,
        VideoColorMatrix::Smpte240m => Matrix::Smpte240m,
        VideoColorMatrix::Fcc => Matrix::Fcc,
        _ => Matrix::Bt601,
    };
    Yuv::new(matrix, range == VideoColorRange::Range0_255)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst_video::prelude::*;

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
                layout: layout_of(format).unwrap(),
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
            to_rgb(&p, &yuv_of(c.matrix(), c.range()), &mut ours);
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
}
