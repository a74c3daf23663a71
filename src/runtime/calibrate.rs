//! INT8 export (`inspro export --int8 --calibrate DIR`): the float graphs, made to output every
//! tensor the QDQ rewrite quantizes, run by ONNX Runtime over frames of a YouTube-VIS-layout
//! folder (streams with their state, key and non-key frames as deployed); each tensor's range is
//! its minimum and maximum over those frames; then the graphs are written with QDQ pairs
//! ([`crate::export::quantize`]) and the manifest records how.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::export::manifest::{Manifest, Quantization, MANIFEST_FILE};
use crate::export::quantize::{self, Plan, QuantCounts, Scheme};
use crate::export::{export_with, ExportError, ExportOptions, GraphKind, Weights};
use crate::frame::FrameRef;
use crate::model::ModelConfig;
use crate::runtime::{Engine, OrtEngine, OrtOptions};

/// Where the calibration frames come from.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// A YouTube-VIS layout (`JPEGImages/<video>/*.jpg`).
    pub dir: PathBuf,
    /// Frames in all.
    pub frames: usize,
    /// Consecutive frames per video (each video is a stream from a fresh state).
    pub frames_per_video: usize,
    /// Whose INT8 kernels the graphs are for.
    pub scheme: Scheme,
    /// Graph scopes (`mask_branch`, `head`, ...) whose nodes stay float.
    pub keep_float: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Runtime(#[from] super::onnxruntime::RuntimeError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
}

fn data_err(path: &Path, reason: impl std::fmt::Display) -> CalibrationError {
    CalibrationError::Data {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The calibration videos: per video, its first `per_video` frames (sorted names), until
/// `total` frames.
pub fn calibration_frames(
    dir: &Path,
    total: usize,
    per_video: usize,
) -> Result<Vec<Vec<PathBuf>>, CalibrationError> {
    let images = dir.join("JPEGImages");
    let list = |d: &Path| -> Result<Vec<PathBuf>, CalibrationError> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| data_err(d, e))?
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        Ok(v)
    };
    let mut videos = Vec::new();
    let mut left = total;
    for video in list(&images)?.into_iter().filter(|p| p.is_dir()) {
        if left == 0 {
            break;
        }
        let frames: Vec<PathBuf> = list(&video)?
            .into_iter()
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
                })
            })
            .take(per_video.min(left))
            .collect();
        left -= frames.len();
        if !frames.is_empty() {
            videos.push(frames);
        }
    }
    if videos.is_empty() {
        return Err(data_err(
            &images,
            "no video folders with .jpg frames (a YouTube-VIS layout: JPEGImages/<video>/*.jpg)",
        ));
    }
    Ok(videos)
}

/// Per graph kind: each planned tensor's [min, max].
type Ranges = HashMap<bool, HashMap<String, (f32, f32)>>;

fn observe_into(ranges: &mut HashMap<String, (f32, f32)>, name: &str, data: &[f32]) {
    let Some(t) = name.strip_prefix("calib:") else {
        return;
    };
    let (lo, hi) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let e = ranges
        .entry(t.to_string())
        .or_insert((f32::INFINITY, f32::NEG_INFINITY));
    *e = (e.0.min(lo), e.1.max(hi));
}

/// Export `cfg` with weights `w` as INT8 QDQ graphs into `out_dir`, calibrated on `calib`.
pub fn export_int8(
    cfg: &ModelConfig,
    w: &Weights,
    out_dir: &Path,
    opts: &ExportOptions,
    calib: &Calibration,
    ort: &OrtOptions,
) -> Result<Manifest, CalibrationError> {
    let videos = calibration_frames(&calib.dir, calib.frames, calib.frames_per_video)?;
    // 1. The float graphs with observation outputs.
    let observing = tempfile::Builder::new()
        .prefix("inspro-calibrate-")
        .tempdir()
        .map_err(|e| data_err(Path::new("temporary directory"), e))?;
    let mut plans: HashMap<bool, Plan> = HashMap::new();
    export_with(cfg, w, observing.path(), opts, &mut |kind, g| {
        if kind == GraphKind::Key {
            if let Some(scope) = calib
                .keep_float
                .iter()
                .find(|scope| !quantize::scope_has_nodes(g, scope))
            {
                return Err(ExportError::Quantize(format!(
                    "keep-float scope {scope:?} names no node of the key graph (scopes: backbone, fpn, mask_branch, mask_head, intra_query, head, head.head_series.<i>)"
                )));
            }
        }
        let p = quantize::plan(g, calib.scheme, &calib.keep_float);
        quantize::observe(g, &p);
        plans.insert(kind == GraphKind::Key, p);
        Ok(())
    })?;
    // 2. The streams through them.
    let engine = OrtEngine::load(observing.path(), ort)?;
    let mut ranges: Ranges = HashMap::new();
    let mut frames = 0;
    for video in &videos {
        let mut state = None;
        for path in video {
            let img = image::open(path).map_err(|e| data_err(path, e))?.to_rgb8();
            let (fw, fh) = (img.width() as usize, img.height() as usize);
            let st = match &mut state {
                Some(s) => s,
                None => state.insert(engine.init_state(fw, fh)?),
            };
            let key = cfg.is_key_frame(st.frame_index);
            let r = ranges.entry(key).or_default();
            let mut observe = |name: &str, data: &[f32]| observe_into(r, name, data);
            engine
                .step_observed(
                    &FrameRef::packed(fw, fh, img.as_raw()),
                    st,
                    Some(&mut observe),
                )
                .map_err(|e| data_err(path, e))?;
            frames += 1;
        }
    }
    drop(engine);
    tracing::info!(frames, videos = videos.len(), "calibrated");
    // 3. The QDQ graphs.
    let mut counts: HashMap<bool, QuantCounts> = HashMap::new();
    let mut m = export_with(cfg, w, out_dir, opts, &mut |kind, g| {
        let key = kind == GraphKind::Key;
        let p = quantize::plan(g, calib.scheme, &calib.keep_float);
        let seen = ranges.get(&key).ok_or_else(|| {
            ExportError::Quantize(format!(
                "no {} frame among the {frames} calibration frames",
                if key { "key" } else { "non-key" }
            ))
        })?;
        counts.insert(key, quantize::quantize(g, &p, seen, calib.scheme)?);
        Ok(())
    })?;
    m.quantization = Some(Quantization {
        format: "qdq-int8".into(),
        scheme: calib.scheme,
        weights: match calib.scheme {
            Scheme::Cpu => {
                "int8, symmetric, per output channel (Conv axis 0, MatMul axis 1); Conv bias int32"
            }
            Scheme::Tensorrt => {
                "int8, symmetric, per output channel (Conv axis 0, MatMul axis 1); biases float"
            }
        }
        .into(),
        activations: match calib.scheme {
            Scheme::Cpu => {
                "uint8, asymmetric, per tensor; range: min-max over the calibration frames"
            }
            Scheme::Tensorrt => {
                "int8, symmetric, per tensor; range: min-max over the calibration frames"
            }
        }
        .into(),
        kept_float: calib.keep_float.clone(),
        calibration_dir: calib.dir.display().to_string(),
        calibration_frames: frames,
        calibration_videos: videos.len(),
        key: counts.remove(&true).unwrap_or_default(),
        non_key: counts.remove(&false),
    });
    m.write(&out_dir.join(MANIFEST_FILE))?;
    Ok(m)
}
