//! JPEG encoding for the daemon's pictures (the live view, snapshots): GStreamer's `jpegenc`
//! (libjpeg-turbo, SIMD on x86 and ARM) behind appsrc ! videoconvert (to 4:2:0) ! jpegenc !
//! appsink: 0.28 against 1.09 ms of CPU per 320x192 picture, 3.3 against 16.5 ms per 1280x720,
//! than the image crate's encoder (docs/perf.md); the image crate's encoder where `jpegenc` is
//! missing or fails (logged once, then kept).
//!
//! The pipeline is made on the first picture, by the thread that encodes, so that its streaming
//! thread inherits that thread's priority (`[http] nice` for the live view).

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// How long one picture may take through `jpegenc` before the encoder gives up on it.
const TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(2);

/// A JPEG encoder of packed RGB pictures (one per thread that encodes).
pub struct Encoder {
    quality: u8,
    /// `None` until the first picture; `Some(None)` once GStreamer's path has failed.
    gst: Option<Option<GstJpeg>>,
}

struct GstJpeg {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    /// The size the source's caps announce.
    size: (usize, usize),
    /// Pictures pushed (their timestamps, a millisecond apart).
    frames: u64,
}

impl Drop for GstJpeg {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Encoder {
    pub fn new(quality: u8) -> Self {
        Self {
            quality: quality.clamp(1, 100),
            gst: None,
        }
    }

    /// Encode `rgb` (packed, `width * height * 3` bytes).
    pub fn encode(&mut self, rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>, String> {
        if rgb.len() != width * height * 3 || width == 0 || height == 0 {
            return Err(format!(
                "{} bytes is not a packed {width}x{height} RGB picture",
                rgb.len()
            ));
        }
        if self.gst.is_none() {
            self.gst = Some(match GstJpeg::new(self.quality) {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::warn!(error = %e, "jpegenc unavailable: JPEGs from the image crate");
                    None
                }
            });
        }
        if let Some(Some(g)) = &mut self.gst {
            match g.encode(rgb, width, height) {
                Ok(jpeg) => return Ok(jpeg),
                Err(e) => {
                    tracing::warn!(error = %e, "jpegenc failed: JPEGs from the image crate from now on");
                    self.gst = Some(None);
                }
            }
        }
        encode_with_image(rgb, width, height, self.quality)
    }
}

/// The image crate's encoder (the fallback, and the reference the tests compare with).
pub fn encode_with_image(
    rgb: &[u8],
    width: usize,
    height: usize,
    quality: u8,
) -> Result<Vec<u8>, String> {
    let mut jpeg = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality),
        rgb,
        width as u32,
        height as u32,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| e.to_string())?;
    Ok(jpeg)
}

impl GstJpeg {
    fn new(quality: u8) -> Result<Self, String> {
        gst::init().map_err(|e| e.to_string())?;
        let enc = gst::ElementFactory::make("jpegenc")
            .property("quality", i32::from(quality))
            .build()
            .map_err(|_| "no jpegenc element (gstreamer1.0-plugins-good)".to_string())?;
        // Its streaming thread is then "jpeg:src" (scripts/api-load.py counts it with the live
        // view's).
        let src = gst_app::AppSrc::builder()
            .name("jpeg")
            .format(gst::Format::Time)
            .is_live(false)
            .build();
        // 4:2:0 chroma, as the image crate's and most JPEGs (from RGB, jpegenc keeps full-size
        // chroma: twice the bytes on the live view's sockets), in JPEG's full range (BT.601,
        // 0-255: colorimetry 1:4:0:0), not video's 16-235.
        let convert = gst::ElementFactory::make("videoconvert")
            .build()
            .map_err(|_| "no videoconvert element".to_string())?;
        let i420 = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .field("colorimetry", "1:4:0:0")
                    .build(),
            )
            .build()
            .map_err(|e| e.to_string())?;
        let sink = gst_app::AppSink::builder().sync(false).build();
        let pipeline = gst::Pipeline::new();
        let chain = [src.upcast_ref(), &convert, &i420, &enc, sink.upcast_ref()];
        pipeline.add_many(chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(chain).map_err(|e| e.to_string())?;
        Ok(Self {
            pipeline,
            src,
            sink,
            size: (0, 0),
            frames: 0,
        })
    }

    fn encode(&mut self, rgb: &[u8], width: usize, height: usize) -> Result<Vec<u8>, String> {
        if self.size != (width, height) {
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", width as i32)
                .field("height", height as i32)
                .field("framerate", gst::Fraction::new(0, 1))
                .build();
            self.src.set_caps(Some(&caps));
            if self.size == (0, 0) {
                self.pipeline
                    .set_state(gst::State::Playing)
                    .map_err(|e| format!("cannot start: {e}"))?;
            }
            self.size = (width, height);
        }
        // GStreamer's RGB rows start on 4-byte boundaries.
        let row = width * 3;
        let stride = (row + 3) & !3;
        let mut buffer = gst::Buffer::with_size(stride * height).map_err(|e| e.to_string())?;
        {
            let b = buffer.get_mut().ok_or("buffer not writable")?;
            b.set_pts(gst::ClockTime::from_mseconds(self.frames));
            let mut map = b.map_writable().map_err(|e| e.to_string())?;
            if stride == row {
                map.copy_from_slice(rgb);
            } else {
                for (dst, src) in map.chunks_exact_mut(stride).zip(rgb.chunks_exact(row)) {
                    dst[..row].copy_from_slice(src);
                }
            }
        }
        self.frames += 1;
        self.src
            .push_buffer(buffer)
            .map_err(|e| format!("push: {e:?}"))?;
        let sample = self
            .sink
            .try_pull_sample(TIMEOUT)
            .ok_or_else(|| self.error_or("no JPEG within 2 s"))?;
        let out = sample.buffer().ok_or("a sample without a buffer")?;
        let map = out.map_readable().map_err(|e| e.to_string())?;
        Ok(map.as_slice().to_vec())
    }

    /// The pipeline's own error, if it posted one.
    fn error_or(&self, otherwise: &str) -> String {
        self.pipeline
            .bus()
            .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| otherwise.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture with colour (smooth, as chroma is in camera frames), black, white and sharp
    /// grey edges, `w` x `h`.
    fn picture(w: usize, h: usize) -> Vec<u8> {
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                let edge: i32 = if (x / 8 + y / 8) % 2 == 0 { 40 } else { -40 };
                let base = [
                    (x * 255 / w) as i32,
                    (y * 255 / h) as i32,
                    ((x + y) * 255 / (w + h)) as i32,
                ];
                for c in 0..3 {
                    rgb[i + c] = if x < w / 8 {
                        0
                    } else if x >= w - w / 8 {
                        255
                    } else {
                        (base[c] + edge).clamp(0, 255) as u8
                    };
                }
            }
        }
        rgb
    }

    /// jpegenc's JPEGs decode to the picture it was given (sizes with and without row padding,
    /// a size change midway), as close as the image crate's own at the same quality.
    #[test]
    fn jpegenc_pictures_decode_to_what_was_given() {
        let mut enc = Encoder::new(85);
        for (w, h) in [(320, 192), (161, 97), (320, 192), (64, 48)] {
            let rgb = picture(w, h);
            let jpeg = enc.encode(&rgb, w, h).unwrap();
            let back = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
                .unwrap()
                .to_rgb8();
            assert_eq!((back.width() as usize, back.height() as usize), (w, h));
            let err = |a: &[u8]| {
                a.iter()
                    .zip(&rgb)
                    .map(|(p, q)| (f64::from(*p) - f64::from(*q)).abs())
                    .sum::<f64>()
                    / rgb.len() as f64
            };
            let reference = image::load_from_memory(&encode_with_image(&rgb, w, h, 85).unwrap())
                .unwrap()
                .to_rgb8();
            let (ours, theirs) = (err(back.as_raw()), err(reference.as_raw()));
            assert!(
                ours < theirs * 1.5 + 1.0,
                "{w}x{h}: mean error {ours:.2} against the image crate's {theirs:.2}"
            );
        }
        assert!(
            matches!(enc.gst, Some(Some(_))),
            "jpegenc was not used (is gstreamer1.0-plugins-good installed?)"
        );
    }

    #[test]
    fn a_buffer_of_the_wrong_size_is_refused() {
        let mut enc = Encoder::new(85);
        let err = enc.encode(&[0u8; 10], 4, 4).unwrap_err();
        assert!(err.contains("4x4"), "{err}");
    }
}
