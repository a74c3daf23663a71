//! Synthetic videos as encoded clips: H.264 in Matroska or MP4 through `gst-launch-1.0`, with
//! their ground truth beside them.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let enc_err = |reason: String| YtvisError::Encoder {
        path: path.to_path_buf(),
        reason,
    };
    if !opts.width.is_multiple_of(2) || !opts.height.is_multiple_of(2) {
        return Err(enc_err(
            "H.264 4:2:0 needs an even width and height".to_string(),
        ));
    }
    if clip.fps == 0 || clip.quantizer > 51 {
        return Err(enc_err(
            "fps must be > 0 and quantizer within 0..=51".to_string(),
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mux = match ext.as_deref() {
        Some("mkv") => "matroskamux",
        Some("mp4") => "mp4mux",
        _ => return Err(enc_err("the clip must end in .mkv or .mp4".to_string())),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| YtvisError::io(parent, e))?;
    }
    let mut raw_path = path.as_os_str().to_owned();
    raw_path.push(".frames.rgb");
    let raw_path = PathBuf::from(raw_path);
    let mut objects = Vec::new();
    let name = {
        let file = std::fs::File::create(&raw_path).map_err(|e| YtvisError::io(&raw_path, e))?;
        let mut out = BufWriter::new(file);
        let name = render_video(
            opts,
            0,
            |_, rgb| out.write_all(rgb).map_err(|e| YtvisError::io(&raw_path, e)),
            &mut objects,
        )?;
        out.flush().map_err(|e| YtvisError::io(&raw_path, e))?;
        name
    };
    let encoded = run_gst(path, &raw_path, opts, clip, mux);
    let _ = std::fs::remove_file(&raw_path);
    encoded?;
    let gt = ground_truth(opts, &[(name, objects)]);
    write_json(&path.with_extension("json"), &gt)?;
    Ok(gt)
}

fn run_gst(
    path: &Path,
    raw: &Path,
    opts: &SynthOptions,
    clip: &ClipOptions,
    mux: &str,
) -> Result<(), YtvisError> {
    let quote = |p: &Path| format!("\"{}\"", p.display().to_string().replace('"', "\\\""));
    let pipeline = format!(
        "filesrc location={} ! rawvideoparse width={} height={} format=rgb framerate={}/1 \
         ! videoconvert ! video/x-raw,format=I420 \
         ! x264enc pass=quant quantizer={} speed-preset=medium key-int-max={} \
         ! h264parse ! {mux} ! filesink location={}",
        quote(raw),
        opts.width,
        opts.height,
        clip.fps,
        clip.quantizer,
        clip.fps * 2,
        quote(path),
    );
    let args: Vec<&str> = pipeline.split_whitespace().collect();
    let output = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .output()
        .map_err(|e| YtvisError::Encoder {
            path: path.to_path_buf(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "gst-launch-1.0 is not on PATH; install the GStreamer tools \
                 (Debian/Ubuntu: gstreamer1.0-tools gstreamer1.0-plugins-good \
                 gstreamer1.0-plugins-ugly)"
                    .to_string()
            } else {
                format!("cannot run gst-launch-1.0: {e}")
            },
        })?;
    if !output.status.success() {
        return Err(YtvisError::Encoder {
            path: path.to_path_buf(),
            reason: format!(
                "gst-launch-1.0 failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim()
            ),
        });
    }
    Ok(())
}
