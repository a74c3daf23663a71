//! Synthetic videos as encoded clips: H.264 in Matroska or MP4 through the one video writer
//! (`crate::video`), with their ground truth beside them.

use std::path::Path;

use crate::frame::FrameRef;
use crate::video::{VideoError, VideoWriter, WriterOptions};

use super::error::YtvisError;
use super::json::{write_json, GroundTruth};
use super::synth::{ground_truth, render_video, SynthOptions};

/// How `write_clip` encodes: H.264 (x264, constant quantizer) in Matroska or MP4.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipOptions {
    pub fps: u32,
    /// x264 constant quantizer (0 = lossless in 4:2:0, 18 = visually lossless).
    pub quantizer: u32,
}

impl Default for ClipOptions {
    fn default() -> Self {
        ClipOptions {
            fps: 15,
            quantizer: 18,
        }
    }
}

/// Writes video 0 of `opts` as an encoded clip at `path` (`.mkv` or `.mp4`) by running
/// `gst-launch-1.0`, and its ground truth beside it (`path` with extension `.json`).
pub fn write_clip(
    path: &Path,
    opts: &SynthOptions,
    clip: &ClipOptions,
) -> Result<GroundTruth, YtvisError> {
    opts.validate()?;
    let enc_err = |e: VideoError| YtvisError::Encoder {
        path: path.to_path_buf(),
        reason: match e {
            VideoError::Setting { reason, .. } => reason,
            other => other.to_string(),
        },
    };
    let writer_opts = WriterOptions {
        fps: clip.fps,
        quantizer: Some(clip.quantizer),
    };
    let (w, h) = (opts.width as usize, opts.height as usize);
    let mut writer = VideoWriter::create(path, w, h, &writer_opts).map_err(enc_err)?;
    let mut objects = Vec::new();
    let name = render_video(
        opts,
        0,
        |_, rgb| writer.write(&FrameRef::packed(w, h, rgb)).map_err(enc_err),
        &mut objects,
    )?;
    writer.finish().map_err(enc_err)?;
    let gt = ground_truth(opts, &[(name, objects)]);
    write_json(&path.with_extension("json"), &gt)?;
    Ok(gt)
}
