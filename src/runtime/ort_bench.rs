//! What `inspro bench` measures on ONNX Runtime beyond whole frames: the bare trunk graph (one
//! frame or a batch per call) and a profile's kernel time by part of the network.

use std::path::Path;

use ort::value::TensorRef;

use super::ort_setup::{
    environment, find_library, open_session, session_error, OrtOptions, RuntimeError,
};
use crate::export::names;

fn engine_dir(path: &Path) -> std::path::PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Wall time (ms) of `runs` runs, after `warmup`, of a graph whose inputs are the normalising
/// front (`frame`, `image_size_hw`) alone, e.g. `trunk.onnx`: the benchmark's reference.
pub fn time_trunk_graph(
    path: &Path,
    opts: &OrtOptions,
    [wp, hp]: [usize; 2],
    warmup: usize,
    runs: usize,
) -> Result<Vec<f64>, RuntimeError> {
    time_trunk_batch(path, opts, 1, [wp, hp], warmup, runs, None)
}

/// [`time_trunk_graph`] for a graph that takes `batch` frames per call; with `start`, the timed
/// runs begin when every party of the barrier has warmed up.
pub fn time_trunk_batch(
    path: &Path,
    opts: &OrtOptions,
    batch: usize,
    [wp, hp]: [usize; 2],
    warmup: usize,
    runs: usize,
    start: Option<&std::sync::Barrier>,
) -> Result<Vec<f64>, RuntimeError> {
    let library = find_library(opts.library.as_deref())?;
    let env = environment(&library)?;
    let cache = engine_dir(path).join("trt_cache");
    let (mut session, _) = open_session(&env, path, opts, &cache, None)?;
    let pixels: Vec<u8> = (0..batch * hp * wp * 3)
        .map(|i| ((i * 31) % 251) as u8)
        .collect();
    let size = [hp as f32, wp as f32];
    let mut times = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        if i == warmup {
            if let Some(b) = start {
                b.wait();
            }
        }
        let t0 = std::time::Instant::now();
        let frame = TensorRef::from_array_view(([batch, hp, wp, 3], &pixels[..]))
            .map_err(|e| session_error(path, e))?;
        let s = TensorRef::from_array_view(([2usize], &size[..]))
            .map_err(|e| session_error(path, e))?;
        let out = session
            .run(ort::inputs![names::FRAME => frame, names::IMAGE_SIZE_HW => s])
            .map_err(|e| session_error(path, e))?;
        drop(out);
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

/// The network's parts, as the exported node names' scopes say.
pub const PARTS: [&str; 5] = ["preprocess", "backbone", "fpn", "mask_branch", "heads"];

/// Kernel microseconds by part from an ONNX Runtime profile (`OrtOptions::profile`): nodes
/// scoped `backbone/`, `fpn/`, `mask_branch/`; the stages, intra-query attention and mask head
/// are `heads`; the normalising front and anything unscoped `preprocess`.
pub fn profile_by_part(path: &Path) -> Result<[f64; 5], RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| session_error(path, e))?;
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| session_error(path, e))?;
    let mut us = [0f64; 5];
    for ev in &events {
        let name = ev["name"].as_str().unwrap_or("");
        if ev["cat"] != "Node" || !name.ends_with("_kernel_time") {
            continue;
        }
        let part = match name.split('/').next().unwrap_or("") {
            "backbone" => 1,
            "fpn" => 2,
            "mask_branch" => 3,
            s if s.starts_with("head.") || s == "intra_query" || s == "mask_head" => 4,
            _ => 0,
        };
        us[part] += ev["dur"].as_f64().unwrap_or(0.0);
    }
    Ok(us)
}
