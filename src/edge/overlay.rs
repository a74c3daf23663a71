//! Overlay output for `inspro run --overlay-dir`: masks, boxes and track ids drawn on the RGB
//! frames, written as an H.264 Matroska video (GStreamer appsrc → x264enc) and a contact sheet
//! PNG of up to 16 frames spread over the stream.

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::model::FrameRef;
use crate::tracking::{FrameOutput, Track, TrackState};

const PALETTE: [[u8; 3]; 8] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
];

/// 3x5 digits, one row per nibble (bit 2 = left column).
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

/// Draw the tracks seen on this frame onto a packed RGB copy of it.
pub fn draw(frame: &FrameRef<'_>, out: &FrameOutput, tracks: &[&Track]) -> Vec<u8> {
    let (w, h) = (frame.width, frame.height);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        rgb.extend_from_slice(&frame.data[y * frame.stride..y * frame.stride + w * 3]);
    }
    for t in tracks {
        if t.state == TrackState::Lost || t.slot >= out.num_slots() {
            continue;
        }
        let c = PALETTE[(t.id as usize) % PALETTE.len()];
        let rect = out.box_rect(&t.box_xyxy);
        let logits = out.mask_logits_in(t.slot, rect);
        let rw = rect[2] - rect[0];
        for (i, v) in logits.iter().enumerate() {
            if *v > 0.0 {
                let (x, y) = (rect[0] + i % rw.max(1), rect[1] + i / rw.max(1));
                let p = (y * w + x) * 3;
                for k in 0..3 {
                    rgb[p + k] = ((u16::from(rgb[p + k]) + u16::from(c[k])) / 2) as u8;
                }
            }
        }
        let mut put = |x: usize, y: usize| {
            if x < w && y < h {
                rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
            }
        };
        let (x0, y0, x1, y1) = (
            rect[0],
            rect[1],
            rect[2].saturating_sub(1),
            rect[3].saturating_sub(1),
        );
        for x in x0..=x1.max(x0) {
            put(x, y0);
            put(x, y1);
        }
        for y in y0..=y1.max(y0) {
            put(x0, y);
            put(x1, y);
        }
        // The id, 2x scaled digits at the box's top-left.
        for (n, ch) in t.id.to_string().bytes().enumerate() {
            let d = DIGITS[(ch - b'0') as usize];
            for (row, bits) in d.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for s in 0..4 {
                            put(x0 + 2 + n * 8 + col * 2 + s % 2, y0 + 2 + row * 2 + s / 2);
                        }
                    }
                }
            }
        }
    }
    rgb
}

/// Up to `cap` frames spread over a stream of unknown length: keep every `step`-th frame and
/// double the step (dropping every other kept frame) when full.
pub struct ContactSheet {
    cap: usize,
    step: u64,
    frames: Vec<(u64, Vec<u8>)>,
    width: usize,
    height: usize,
}

impl ContactSheet {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(2),
            step: 1,
            frames: Vec::new(),
            width: 0,
            height: 0,
        }
    }

    pub fn offer(&mut self, index: u64, rgb: &[u8], w: usize, h: usize) {
        if !index.is_multiple_of(self.step) {
            return;
        }
        if (w, h) != (self.width, self.height) {
            self.frames.clear();
            (self.width, self.height) = (w, h);
        }
        if self.frames.len() == self.cap {
            self.step *= 2;
            self.frames.retain(|(i, _)| i % self.step == 0);
            if !index.is_multiple_of(self.step) {
                return;
            }
        }
        self.frames.push((index, rgb.to_vec()));
    }

    pub fn write_png(&self, path: &Path) -> anyhow::Result<()> {
        if self.frames.is_empty() {
            anyhow::bail!("no frames for the contact sheet");
        }
        let cols = 4.min(self.frames.len());
        let rows = self.frames.len().div_ceil(cols);
        let (w, h, gap) = (self.width, self.height, 4);
        let (sw, sh) = (cols * w + (cols + 1) * gap, rows * h + (rows + 1) * gap);
        let mut sheet = image::RgbImage::from_pixel(sw as u32, sh as u32, image::Rgb([32, 32, 32]));
        for (k, (_, rgb)) in self.frames.iter().enumerate() {
            let (ox, oy) = (gap + (k % cols) * (w + gap), gap + (k / cols) * (h + gap));
            for y in 0..h {
                for x in 0..w {
                    let p = (y * w + x) * 3;
                    sheet.put_pixel(
                        (ox + x) as u32,
                        (oy + y) as u32,
                        image::Rgb([rgb[p], rgb[p + 1], rgb[p + 2]]),
                    );
                }
            }
        }
        sheet.save(path)?;
        Ok(())
    }
}

/// Overlay video + contact sheet for one camera.
pub struct OverlayWriter {
    video: PathBuf,
    sheet_path: PathBuf,
    pipeline: Option<(gst::Pipeline, gst_app::AppSrc)>,
    size: (usize, usize),
    frames: u64,
    sheet: ContactSheet,
}

impl OverlayWriter {
    pub fn new(dir: &Path, camera: &str) -> Self {
        Self {
            video: dir.join(format!("{camera}-overlay.mkv")),
            sheet_path: dir.join(format!("{camera}-sheet.png")),
            pipeline: None,
            size: (0, 0),
            frames: 0,
            sheet: ContactSheet::new(16),
        }
    }

    fn start(&mut self, w: usize, h: usize) -> anyhow::Result<()> {
        let desc = format!(
            "appsrc name=src format=time is-live=false block=true caps=video/x-raw,format=RGB,width={w},height={h},framerate=30/1 \
             ! videoconvert ! x264enc speed-preset=veryfast tune=zerolatency ! h264parse ! matroskamux ! filesink name=out"
        );
        let pipeline = gst::parse::launch(&desc)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
        let out = pipeline
            .by_name("out")
            .ok_or_else(|| anyhow::anyhow!("no filesink"))?;
        out.set_property("location", self.video.to_string_lossy().to_string());
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| anyhow::anyhow!("no appsrc"))?;
        pipeline.set_state(gst::State::Playing)?;
        self.pipeline = Some((pipeline, src));
        self.size = (w, h);
        Ok(())
    }

    pub fn push(&mut self, index: u64, rgb: Vec<u8>, w: usize, h: usize) -> anyhow::Result<()> {
        self.sheet.offer(index, &rgb, w, h);
        if self.pipeline.is_none() {
            self.start(w, h)?;
        }
        if (w, h) != self.size {
            return Ok(()); // one size per video
        }
        let (_, src) = self.pipeline.as_ref().expect("started above");
        let mut buf = gst::Buffer::from_mut_slice(rgb);
        {
            let b = buf.get_mut().expect("fresh buffer");
            let pts = gst::ClockTime::from_nseconds(self.frames * 1_000_000_000 / 30);
            b.set_pts(pts);
            b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / 30));
        }
        self.frames += 1;
        src.push_buffer(buf)?;
        Ok(())
    }

    /// Finish the video and write the contact sheet; returns the two paths.
    pub fn finish(mut self) -> anyhow::Result<(PathBuf, PathBuf)> {
        if let Some((pipeline, src)) = self.pipeline.take() {
            src.end_of_stream()?;
            if let Some(bus) = pipeline.bus() {
                let _ = bus.timed_pop_filtered(
                    gst::ClockTime::from_seconds(20),
                    &[gst::MessageType::Eos, gst::MessageType::Error],
                );
            }
            pipeline.set_state(gst::State::Null)?;
        }
        self.sheet.write_png(&self.sheet_path)?;
        Ok((self.video, self.sheet_path))
    }
}
