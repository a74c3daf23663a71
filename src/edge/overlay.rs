//! Overlay output for `inspro run --overlay-dir`: the tracks drawn by the one renderer
//! (`render`), written by the one H.264 writer (`video`) as `<camera>-overlay.mkv`, and a
//! contact sheet `<camera>-sheet.png` of up to 16 frames spread over the stream.

use std::path::{Path, PathBuf};

use crate::frame::FrameRef;
use crate::render::{self, ContactSheet};
use crate::runtime::FrameOutput;
use crate::tracking::Track;
use crate::video::{VideoWriter, WriterOptions};

/// The tracks drawn by the one renderer onto a packed RGB copy of `frame`, labelled with their
/// class names (the class index where a name is missing): the overlay video's frames and the
/// HTTP API's live view.
pub fn draw_tracks(
    frame: &FrameRef<'_>,
    out: &FrameOutput,
    tracks: &[&Track],
    class_names: &[String],
) -> Vec<u8> {
    let marks = render::track_marks(out, tracks, |c| {
        class_names.get(c).cloned().unwrap_or_else(|| c.to_string())
    });
    render::draw_rgb(frame.to_packed(), frame.width, frame.height, &marks)
}

/// Overlay video + contact sheet for one camera.
pub struct OverlayWriter {
    video: PathBuf,
    sheet_path: PathBuf,
    writer: Option<VideoWriter>,
    sheet: ContactSheet,
    class_names: Vec<String>,
}

impl OverlayWriter {
    pub fn new(dir: &Path, camera: &str, class_names: Vec<String>) -> Self {
        Self {
            class_names,
            video: dir.join(format!("{camera}-overlay.mkv")),
            sheet_path: dir.join(format!("{camera}-sheet.png")),
            writer: None,
            sheet: ContactSheet::new(16),
        }
    }

    /// The tracks seen on this frame drawn onto a packed RGB copy of it ([`draw_tracks`]).
    pub fn draw(&self, frame: &FrameRef<'_>, out: &FrameOutput, tracks: &[&Track]) -> Vec<u8> {
        draw_tracks(frame, out, tracks, &self.class_names)
    }

    /// Add frame `index` (packed RGB, `w` x `h`); the video keeps the first frame's size.
    pub fn push(&mut self, index: u64, rgb: Vec<u8>, w: usize, h: usize) -> anyhow::Result<()> {
        self.sheet.offer(index, &rgb, w, h);
        if self.writer.is_none() {
            let opts = WriterOptions::default();
            self.writer = Some(VideoWriter::create(&self.video, w, h, &opts)?);
        }
        match self.writer.as_mut() {
            Some(writer) if writer.size() == (w, h) => {
                writer.write(&FrameRef::packed(w, h, &rgb))?;
            }
            _ => {} // one size per video
        }
        Ok(())
    }

    /// Finish the video and write the contact sheet; returns the two paths.
    pub fn finish(self) -> anyhow::Result<(PathBuf, PathBuf)> {
        // The sheet is written even when the video failed.
        let video = self.writer.map(|w| w.finish()).transpose();
        self.sheet.write_png(&self.sheet_path)?;
        video?;
        Ok((self.video, self.sheet_path))
    }
}
