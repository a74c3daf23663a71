//! `inspro bench --cameras 1,2,4`: N synthetic streams at once through the daemon's engine path
//! (the one factory with the daemon's CPU split, a `StreamProcessor` per camera on its own thread:
//! engine step and tracks), no GStreamer and no MQTT. Each N runs in a child process (ONNX
//! Runtime's and rayon's pools are fixed per process); the parent prints per-camera and
//! aggregate frames/s and the aggregate's ratio to the first N.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use inspro::frame::FrameRef;
use inspro::runtime::onnxruntime::available_cores;
use inspro::runtime::{build_engine, EngineSpec, OrtOptions};
use inspro::tracking::{StreamProcessor, TrackerConfig};
use inspro::video::VideoReader;
use inspro::ytvis::synth::{generate_video, SynthOptions};
use serde::{Deserialize, Serialize};

use super::bench::BenchArgs;

/// One child's measurement: `cameras` streams for `seconds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CameraRun {
    pub engine: String,
    pub model: String,
    pub size: [usize; 2],
    pub cameras: usize,
    /// ONNX Runtime sessions per graph and intra-op threads of each (0 for candle).
    pub sessions: usize,
    pub threads: usize,
    pub seconds: f64,
    /// Frames/s of each camera.
    pub per_camera_fps: Vec<f64>,
    pub aggregate_fps: f64,
    /// (max − min) / max of the per-camera rates.
    pub spread: f64,
    /// ONNX Runtime, N > 1: the bare trunk (the dense part, where batching helps most) as one
    /// batch-N call on all the cores, in frames/s...
    pub trunk_batched_fps: Option<f64>,
    /// ...and as batch-1 calls in the engine's sessions (its threads each), all at once.
    pub trunk_sessions_fps: Option<f64>,
}

/// The spec the daemon would build for `cameras` cameras: its CPU split unless the arguments
/// set sessions or threads.
fn spec_for(args: &BenchArgs, cameras: usize) -> EngineSpec {
    let mut spec = args.spec();
    spec.ort = OrtOptions {
        threads: args.session_threads,
        ..args.engine.ort()
    }
    .share_cores(cameras, available_cores(), args.sessions);
    spec
}

/// A camera's frames, played in a loop.
struct Clip {
    width: usize,
    height: usize,
    stride: usize,
    frames: Vec<Vec<u8>>,
}

impl Clip {
    fn frame(&self, k: usize) -> FrameRef<'_> {
        FrameRef {
            width: self.width,
            height: self.height,
            stride: self.stride,
            data: &self.frames[k % self.frames.len()],
        }
    }
}

/// The most of a `--clip` video held in memory.
const CLIP_BYTES: usize = 512 << 20;

/// Camera `i`'s synthetic clip of moving shapes (without `--clip`).
fn synthetic_clip(args: &BenchArgs, i: usize) -> anyhow::Result<Clip> {
    let [w, h] = args.size;
    let opts = SynthOptions {
        videos: 1,
        frames: 16,
        width: w as u32,
        height: h as u32,
        seed: 1000 + i as u64,
        ..SynthOptions::default()
    };
    Ok(Clip {
        width: w,
        height: h,
        stride: w * 3,
        frames: generate_video(&opts, 0)?.frames,
    })
}

/// The frames of `path`, decoded before anything is timed.
fn read_clip(path: &Path) -> anyhow::Result<Clip> {
    let input = path.to_string_lossy();
    let mut reader = VideoReader::open(&input)?;
    let mut frames = Vec::new();
    let mut ended = false;
    while frames.len() * reader.stride * reader.height < CLIP_BYTES {
        match reader.next_frame()? {
            Some(f) => frames.push(f),
            None => {
                ended = true;
                break;
            }
        }
    }
    let clip = Clip {
        width: reader.width,
        height: reader.height,
        stride: reader.stride,
        frames,
    };
    // At the end, the decoder's exit status says whether the video was whole; stopped early
    // (the memory cap), the reader's drop stops the decoder.
    if ended {
        reader.finish()?;
    }
    if clip.frames.is_empty() {
        bail!("{}: no frames", path.display());
    }
    Ok(clip)
}

/// The child: `n` camera threads, a shared start after each has warmed up, then frames as fast
/// as the engine takes them for `args.seconds`.
pub fn child(args: &BenchArgs, n: usize) -> anyhow::Result<()> {
    let video = match &args.clip {
        Some(p) => Some(Arc::new(read_clip(p).context("reading --clip")?)),
        None => None,
    };
    let spec = spec_for(args, n);
    let built = build_engine(&spec).context("building the engine")?;
    let start = Arc::new(Barrier::new(n));
    let span = Duration::from_secs_f64(args.seconds);
    let mut handles = Vec::new();
    for i in 0..n {
        // The `--clip` video is the same for every camera (as in scripts/daemon-overhead.sh).
        let frames = match &video {
            Some(v) => v.clone(),
            None => Arc::new(synthetic_clip(args, i)?),
        };
        let engine = built.engine.clone();
        let start = start.clone();
        let warmup = args.warmup;
        handles.push(std::thread::spawn(move || -> anyhow::Result<f64> {
            let mut proc = StreamProcessor::new(engine, TrackerConfig::default());
            let mut k = 0usize;
            let mut next = |proc: &mut StreamProcessor| -> anyhow::Result<()> {
                proc.process(&frames.frame(k))?;
                k += 1;
                Ok(())
            };
            // Every thread reaches the start, also one whose warm-up failed (else the others
            // would wait there for ever).
            let warmed = (0..warmup).try_for_each(|_| next(&mut proc));
            start.wait();
            warmed?;
            let t0 = Instant::now();
            let mut done = 0usize;
            while t0.elapsed() < span {
                next(&mut proc)?;
                done += 1;
            }
            Ok(done as f64 / t0.elapsed().as_secs_f64())
        }));
    }
    let mut per_camera_fps = Vec::new();
    for h in handles {
        let fps = h
            .join()
            .map_err(|_| anyhow::anyhow!("a camera thread panicked"))??;
        per_camera_fps.push(fps);
    }
    let max = per_camera_fps.iter().copied().fold(0.0, f64::max);
    let min = per_camera_fps.iter().copied().fold(f64::INFINITY, f64::min);
    let (sessions, threads) = match spec.kind {
        inspro::runtime::EngineKind::Onnxruntime => {
            (spec.ort.sessions, spec.ort.threads.unwrap_or(0))
        }
        inspro::runtime::EngineKind::Candle => (0, 0),
    };
    let (trunk_batched_fps, trunk_sessions_fps) = match spec.kind {
        inspro::runtime::EngineKind::Onnxruntime if n > 1 => {
            let (b, s) = trunk_batching(args, &spec, n)?;
            (Some(b), Some(s))
        }
        _ => (None, None),
    };
    let run = CameraRun {
        engine: built.engine.name(),
        model: built.config().name.clone(),
        size: video.as_ref().map_or(args.size, |v| [v.width, v.height]),
        cameras: n,
        sessions,
        threads,
        seconds: args.seconds,
        aggregate_fps: per_camera_fps.iter().sum(),
        spread: if max > 0.0 { (max - min) / max } else { 0.0 },
        per_camera_fps,
        trunk_batched_fps,
        trunk_sessions_fps,
    };
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// The batched way against the sessions' way on the bare trunk: frames/s of one batch-`n` call
/// on every core, and of batch-1 calls back to back in the daemon's sessions, all at once.
/// Random weights: the time does not depend on them.
fn trunk_batching(args: &BenchArgs, spec: &EngineSpec, n: usize) -> anyhow::Result<(f64, f64)> {
    use inspro::export::{trunk_graph_batch, Weights};
    use inspro::runtime::onnxruntime::time_trunk_batch;
    let cfg = spec.model_config()?;
    let (_, vars) = inspro::model::inspro::InsPro::random(&cfg, 0, &candle_core::Device::Cpu)?;
    let w = Weights::from_varmap(&vars, "random")?;
    let dir = tempfile::tempdir()?;
    let size = inspro::export::graph_size(&cfg);
    let write = |b: usize| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.path().join(format!("trunk_b{b}.onnx"));
        let g = trunk_graph_batch(&cfg, &w, b)?;
        std::fs::write(&path, g.to_model_bytes(inspro::export::OPSET, "trunk", &[]))?;
        Ok(path)
    };
    let (one, batched) = (write(1)?, write(n)?);
    let all_cores = OrtOptions {
        threads: Some(available_cores()),
        ..spec.ort.clone()
    };
    let mut t = time_trunk_batch(&batched, &all_cores, n, size, args.warmup, args.runs, None)?;
    let batched_fps = n as f64 * 1e3 / super::bench::median(&mut t);
    // The daemon's sessions, each taking frames back to back, all timed from one start.
    let sessions = spec.ort.sessions.clamp(1, n);
    let start = Arc::new(Barrier::new(sessions));
    let handles: Vec<_> = (0..sessions)
        .map(|_| {
            let (one, opts, start) = (one.clone(), spec.ort.clone(), start.clone());
            let (warmup, runs) = (args.warmup, args.runs);
            std::thread::spawn(move || {
                time_trunk_batch(&one, &opts, 1, size, warmup, runs, Some(&start))
            })
        })
        .collect();
    // Frames over the wall time of the slowest session (sessions may outnumber the cores).
    let mut slowest_ms: f64 = 0.0;
    for h in handles {
        let t = h
            .join()
            .map_err(|_| anyhow::anyhow!("a trunk thread panicked"))??;
        slowest_ms = slowest_ms.max(t.iter().sum());
    }
    let sessions_fps = (sessions * args.runs) as f64 * 1e3 / slowest_ms;
    Ok((batched_fps, sessions_fps))
}

/// The parent: one child per camera count, one table (or JSON lines with `ratio`).
pub fn parent(
    args: &BenchArgs,
    mut child_cmd: impl FnMut(usize) -> std::process::Command,
) -> anyhow::Result<()> {
    let mut base: Option<f64> = None;
    for &n in &args.cameras {
        if n == 0 {
            bail!("--cameras: 0 is not a number of cameras");
        }
        let out = child_cmd(n)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running the benchmark child")?;
        if !out.status.success() {
            bail!("benchmark with {n} cameras failed ({})", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .context("the benchmark child printed no result")?;
        let run: CameraRun = serde_json::from_str(line).context("the benchmark child's result")?;
        let ratio = run.aggregate_fps / *base.get_or_insert(run.aggregate_fps);
        if args.json {
            let mut v = serde_json::to_value(&run)?;
            v["ratio_to_first"] = serde_json::json!(ratio);
            println!("{v}");
        } else {
            let per: Vec<String> = run
                .per_camera_fps
                .iter()
                .map(|f| format!("{f:.2}"))
                .collect();
            println!(
                "{} {} {}x{} cameras={} sessions={} threads/session={}: aggregate {:.2} frames/s ({:.2}x the first), per camera [{}], spread {:.0} %",
                run.engine, run.model, run.size[0], run.size[1], run.cameras, run.sessions, run.threads,
                run.aggregate_fps, ratio, per.join(", "), 100.0 * run.spread
            );
            if let (Some(b), Some(s)) = (run.trunk_batched_fps, run.trunk_sessions_fps) {
                println!(
                    "  bare trunk: one batch-{} call {:.2} frames/s; {} sessions at once {:.2} frames/s (sessions / batched {:.2})",
                    run.cameras, b, run.sessions, s, s / b
                );
            }
        }
    }
    Ok(())
}
