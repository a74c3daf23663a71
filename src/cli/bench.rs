//! `inspro bench`: median ms per frame of either engine, by part, one child process per thread
//! count (rayon's and ONNX Runtime's pools are fixed per process). Both engines are timed through
//! the same key/non-key loop over `dyn Engine`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Device;
use inspro::frame::FrameRef;
use inspro::model::cost::{macs, Part};
use inspro::model::preprocess::{preprocess, FrameGeometry};
use inspro::model::ModelConfig;
use inspro::runtime::factory::{load_network, prepare_graphs};
use inspro::runtime::onnxruntime::time_trunk_graph;
use inspro::runtime::{
    CandleEngine, Engine, EngineKind, EngineSpec, OrtEngine, OrtOptions, StreamState,
};

use super::bench_cameras;
use super::engine_args::EngineArgs;
use super::model::parse_size;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Frame size.
    #[arg(long, default_value = "640x360", value_parser = parse_size)]
    pub size: [usize; 2],
    /// Timed frames after warm-up.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Thread counts to measure, each in a child process (rayon's pool is fixed per process).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Print JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Camera counts to measure instead: N synthetic streams at once through the daemon's
    /// engine path (engine and tracks, no MQTT), each count in a child process; prints
    /// per-camera and aggregate frames/s.
    #[arg(long, value_delimiter = ',')]
    pub cameras: Vec<usize>,
    /// With --cameras: seconds measured per camera count (after --warmup frames per camera).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// With --cameras: every camera plays this video's frames (decoded once before timing, at
    /// most 512 MiB of them, looped) instead of a synthetic clip; --size is the video's.
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// With --cameras, onnxruntime: sessions per graph (the daemon's `[engine] sessions`);
    /// unset: one per camera, at most four per core.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// With --cameras, onnxruntime: intra-op threads per session (`[engine] threads`); unset:
    /// the cores divided among the sessions.
    #[arg(long)]
    pub session_threads: Option<usize>,
    /// Internal: this process measures with the current thread count.
    #[arg(long, hide = true)]
    pub child: bool,
}

impl BenchArgs {
    /// The engine measured: `--engine`, else candle.
    pub(super) fn kind(&self) -> EngineKind {
        self.engine.kind.unwrap_or(EngineKind::Candle)
    }

    pub(super) fn spec(&self) -> EngineSpec {
        EngineSpec {
            export_trunk: true,
            ..self.engine.spec(self.kind())
        }
    }

    /// This benchmark again as a child process measuring one setting.
    fn child_command(
        &self,
        exe: &std::path::Path,
        engine_dir: Option<&std::path::Path>,
    ) -> std::process::Command {
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("bench")
            .arg("--size")
            .arg(format!("{}x{}", self.size[0], self.size[1]))
            .arg("--runs")
            .arg(self.runs.to_string())
            .arg("--warmup")
            .arg(self.warmup.to_string())
            .arg("--seconds")
            .arg(self.seconds.to_string())
            .arg("--child");
        self.engine.pass_to(&mut cmd, engine_dir);
        if let Some(c) = &self.clip {
            cmd.arg("--clip").arg(c);
        }
        if let Some(s) = self.sessions {
            cmd.arg("--sessions").arg(s.to_string());
        }
        if let Some(t) = self.session_threads {
            cmd.arg("--session-threads").arg(t.to_string());
        }
        if self.json {
            cmd.arg("--json");
        }
        cmd
    }
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.child {
        return match (args.cameras.first(), args.kind()) {
            (Some(&n), _) => bench_cameras::child(&args, n),
            (None, EngineKind::Candle) => bench_candle(&args),
            (None, EngineKind::Onnxruntime) => bench_onnxruntime(&args),
        };
    }
    // ONNX Runtime: export once (kept until the children are done), time it in every child.
    let (engine_dir, _exported) = match args.kind() {
        EngineKind::Onnxruntime => {
            let (dir, temp, _) = prepare_graphs(&args.spec()).with_context(|| {
                format!(
                    "exporting {} for the benchmark",
                    args.engine.model.display()
                )
            })?;
            (Some(dir), temp)
        }
        EngineKind::Candle => (None, None),
    };
    let exe = std::env::current_exe().context("locating the inspro binary")?;
    if !args.cameras.is_empty() {
        return bench_cameras::parent(&args, |n| {
            let mut cmd = args.child_command(&exe, engine_dir.as_deref());
            cmd.arg("--cameras").arg(n.to_string());
            cmd
        });
    }
    for t in &args.threads {
        let status = args
            .child_command(&exe, engine_dir.as_deref())
            .env("RAYON_NUM_THREADS", t.to_string())
            .status()
            .context("running the benchmark child")?;
        if !status.success() {
            bail!("benchmark with {t} threads failed ({status})");
        }
    }
    Ok(())
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The mean over InsPro-lite's schedule: one key frame and K - 1 non-key frames (K = 0: key only).
fn schedule_mean(key: f64, non_key: f64, k: usize) -> f64 {
    if k == 0 {
        key
    } else {
        (key + (k - 1) as f64 * non_key) / k as f64
    }
}

/// A deterministic test frame.
fn test_frame(w: usize, h: usize) -> Vec<u8> {
    (0..w * h * 3).map(|i| ((i * 31) % 251) as u8).collect()
}

/// Whole frames through the engine's state loop; returns the key and non-key frame times (ms)
/// and the state after them. Lite: key and non-key frames alternate (the schedule forced through
/// the frame counter), so `runs` samples of each cost 2·runs frames instead of K·runs.
fn time_frames(
    engine: &dyn Engine,
    frame: &FrameRef<'_>,
    warmup: usize,
    runs: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, StreamState)> {
    let cfg = engine.config();
    let mut state = engine.init_state(frame.width, frame.height)?;
    let k = cfg.key_frame_interval.max(1);
    let per_round = if cfg.key_frame_interval > 1 { 2 } else { 1 };
    let (mut key_ms, mut non_key_ms) = (Vec::new(), Vec::new());
    for i in 0..(warmup + runs) * per_round {
        state.frame_index = if i % per_round == 0 { 0 } else { 1 } + (i / per_round * k) as u64;
        let t0 = Instant::now();
        let out = engine.step(frame, &mut state)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i >= warmup * per_round {
            if out.key_frame {
                key_ms.push(ms);
            } else {
                non_key_ms.push(ms);
            }
        }
    }
    Ok((key_ms, non_key_ms, state))
}

fn threads_label() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into())
}

/// GFLOP/s of `macs` multiply-accumulates done in `ms`.
fn gflops(macs: u64, ms: f64) -> f64 {
    2.0 * macs as f64 / 1e9 / (ms / 1e3)
}

fn trunk_macs(cfg: &ModelConfig, g: &FrameGeometry) -> u64 {
    macs(cfg, g.padded_width, g.padded_height, cfg.num_stages)
        .get(&Part::Backbone)
        .copied()
        .unwrap_or(0)
}

fn bench_candle(args: &BenchArgs) -> anyhow::Result<()> {
    let (model, _, _) = load_network(&args.spec())?;
    let model = Arc::new(model);
    let cfg = model.cfg.clone();
    let dev = Device::Cpu;
    let [w, h] = args.size;
    let frame = test_frame(w, h);
    let f = FrameRef::packed(w, h, &frame);
    let g = FrameGeometry::new(&cfg, w, h);

    // Parts of the dense trunk.
    let image = preprocess(&cfg, &f, &g, &dev)?;
    let (mut pre, mut parts) = (Vec::new(), Vec::new());
    for i in 0..args.warmup + args.runs {
        let t0 = Instant::now();
        let _ = preprocess(&cfg, &f, &g, &dev)?;
        let p = model.forward_parts(&image)?;
        if i >= args.warmup {
            pre.push(0.0f64.max(
                t0.elapsed().as_secs_f64() * 1e3 - p.backbone_ms - p.fpn_ms - p.mask_branch_ms,
            ));
            parts.push(p);
        }
    }
    let engine = CandleEngine::new(model);
    let (mut key_ms, mut non_key_ms, _) = time_frames(&engine, &f, args.warmup, args.runs)?;
    let col = |f: &dyn Fn(&inspro::model::inspro::PartTimes) -> f64| {
        median(&mut parts.iter().map(f).collect::<Vec<_>>())
    };
    let backbone = col(&|p| p.backbone_ms);
    let fpn = col(&|p| p.fpn_ms);
    let mask_branch = col(&|p| p.mask_branch_ms);
    let preprocess_ms = median(&mut pre);
    let key = median(&mut key_ms);
    let non_key = median(&mut non_key_ms);
    let heads_key = key - preprocess_ms - backbone - fpn - mask_branch;
    let avg = schedule_mean(key, non_key, cfg.key_frame_interval);
    let key_macs: u64 = macs(&cfg, g.padded_width, g.padded_height, cfg.num_stages)
        .values()
        .sum();
    let gflops_per_s = gflops(key_macs, key);
    let trunk_gflops_per_s = gflops(trunk_macs(&cfg, &g), backbone);
    let threads = threads_label();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "engine": "candle", "model": cfg.name, "size": [w, h], "threads": threads,
                "preprocess_ms": preprocess_ms, "backbone_ms": backbone, "fpn_ms": fpn,
                "mask_branch_ms": mask_branch, "heads_and_mask_head_ms": heads_key,
                "key_frame_ms": key, "non_key_frame_ms": non_key, "average_frame_ms": avg,
                "effective_gflop_per_s": gflops_per_s, "runs": args.runs,
                "trunk_ms": backbone, "trunk_effective_gflop_per_s": trunk_gflops_per_s,
            })
        );
    } else {
        println!(
            "candle {} {}x{} threads={}: key frame {:.1} ms (preprocess {:.1}, backbone {:.1}, fpn {:.1}, mask branch {:.1}, heads+mask head {:.1}); non-key {:.1} ms; average {:.1} ms/frame; {:.1} GFLOP/s effective (2 x MACs); bare trunk {:.1} GFLOP/s",
            cfg.name, w, h, threads, key, preprocess_ms, backbone, fpn, mask_branch, heads_key, non_key, avg, gflops_per_s, trunk_gflops_per_s
        );
    }
    Ok(())
}

/// The key-frame graph's time by part: `frames` key frames with ONNX Runtime's profiler on, the
/// kernels' shares by the nodes' scopes, applied to `graph_ms` (the graph's unprofiled time).
fn key_frame_parts(
    dir: &std::path::Path,
    opts: &OrtOptions,
    frame: &FrameRef<'_>,
    graph_ms: f64,
    frames: usize,
) -> anyhow::Result<[f64; 5]> {
    let tmp = tempfile::tempdir()?;
    let profiled = OrtOptions {
        profile: Some(tmp.path().join("profile")),
        ..opts.clone()
    };
    {
        let engine = OrtEngine::load(dir, &profiled)?;
        let mut state = engine.init_state(frame.width, frame.height)?;
        for _ in 0..frames {
            state.frame_index = 0;
            engine.step(frame, &mut state)?;
        }
    }
    let mut us = [0f64; 5];
    for f in std::fs::read_dir(tmp.path())?.flatten() {
        let by_part = inspro::runtime::onnxruntime::profile_by_part(&f.path())?;
        for (u, b) in us.iter_mut().zip(by_part) {
            *u += b;
        }
    }
    let total: f64 = us.iter().sum();
    Ok(us.map(|u| {
        if total > 0.0 {
            graph_ms * u / total
        } else {
            f64::NAN
        }
    }))
}

/// One thread count of `inspro bench --engine onnxruntime`: whole frames through the engine's
/// state loop (key and non-key), the key-frame graph alone (host-side state cost = the
/// difference), and the bare trunk graph as the reference.
fn bench_onnxruntime(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = args
        .engine
        .engine_dir
        .as_ref()
        .context("--engine onnxruntime needs --engine-dir in the child")?;
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let opts = OrtOptions {
        threads: Some(threads),
        ..args.engine.ort()
    };
    let engine = OrtEngine::load(dir, &opts)?;
    let cfg = engine.config().clone();
    let [w, h] = args.size;
    let frame = test_frame(w, h);
    let f = FrameRef::packed(w, h, &frame);
    let g = engine.geometry(w, h);
    let (mut key_ms, mut non_key_ms, state) = time_frames(&engine, &f, args.warmup, args.runs)?;
    // The key-frame graph alone, inputs prepared once.
    let inputs = engine.host_inputs(&f, &state)?;
    let inputs = inputs.as_graph();
    let mut graph_ms = Vec::new();
    for i in 0..args.warmup + args.runs {
        let t0 = Instant::now();
        engine.run_graph(true, &inputs)?;
        if i >= args.warmup {
            graph_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    // Host-side work of a step without the graph: the frame copy / resize, the state to and
    // from host buffers, the bank ring update (what IoBinding could save on a GPU).
    let mut host_ms = Vec::new();
    let (n, c) = (cfg.num_queries, cfg.fpn_channels);
    let fake: Vec<Vec<f32>> = (0..n).map(|_| vec![1.0, 1.0, 20.0, 20.0]).collect();
    for i in 0..args.warmup + args.runs {
        let mut s = state.clone();
        let t0 = Instant::now();
        let px = engine.frame_input(&f, &g);
        let q = s.proposal_features().flatten_all()?.to_vec1::<f32>()?;
        let p = s.proposal_boxes_xyxy().flatten_all()?.to_vec1::<f32>()?;
        let b = s.bank().flatten_all()?.to_vec1::<f32>()?;
        let obj = candle_core::Tensor::from_vec(q.clone(), (n, c), &Device::Cpu)?;
        s.advance(&obj, &obj, &fake)?;
        std::hint::black_box((px, p, b));
        if i >= args.warmup {
            host_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let host = median(&mut host_ms);
    let graph = median(&mut graph_ms);
    let parts = key_frame_parts(dir, &opts, &f, graph, args.runs.clamp(1, 5))?;
    let trunk_ms = match &engine.manifest.graphs.trunk {
        Some(t) => median(&mut time_trunk_graph(
            &engine.dir().join(t),
            &opts,
            engine.manifest.graph_size,
            args.warmup,
            args.runs,
        )?),
        None => f64::NAN,
    };
    let key = median(&mut key_ms);
    let non_key = median(&mut non_key_ms);
    let ki = cfg.key_frame_interval;
    let avg = schedule_mean(key, non_key, ki);
    let (pw, ph) = (g.padded_width, g.padded_height);
    let key_macs: u64 = macs(&cfg, pw, ph, cfg.num_stages).values().sum();
    let non_key_macs: u64 = macs(&cfg, pw, ph, 1).values().sum();
    let avg_macs = schedule_mean(key_macs as f64, non_key_macs as f64, ki);
    let model_gflops = 2.0 * avg_macs / 1e9 / (avg / 1e3);
    let trunk_gflops = gflops(trunk_macs(&cfg, &g), trunk_ms);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "engine": engine.name(), "model": cfg.name, "size": [w, h], "threads": threads,
                "pooler": engine.manifest.pooler,
                "key_frame_ms": key, "non_key_frame_ms": non_key, "average_frame_ms": avg,
                "key_graph_ms": graph, "host_state_ms": host,
                "preprocess_ms": parts[0], "backbone_ms": parts[1], "fpn_ms": parts[2],
                "mask_branch_ms": parts[3], "heads_and_mask_head_ms": parts[4],
                "int8": engine.manifest.quantization.is_some(),
                "trunk_ms": trunk_ms,
                "effective_gflop_per_s": model_gflops,
                "key_frame_gflop_per_s": gflops(key_macs, key),
                "trunk_effective_gflop_per_s": trunk_gflops,
                "fraction_of_trunk": model_gflops / trunk_gflops,
                "lite_speedup": if ki == 0 { f64::NAN } else { key / avg },
                "runs": args.runs,
            })
        );
    } else {
        println!(
            "{} {}{} (pooler {:?}) {}x{} threads={}: key frame {:.1} ms (graph alone, back to back {:.1}: preprocess {:.1}, backbone {:.1}, fpn {:.1}, mask branch {:.1}, heads+mask head {:.1}; host-side state and frame copy {:.2}); non-key {:.1} ms; average {:.1} ms/frame; {:.1} GFLOP/s effective; bare trunk {:.1} ms = {:.1} GFLOP/s ({:.0} %)",
            engine.name(), cfg.name, if engine.manifest.quantization.is_some() { " int8" } else { "" },
            engine.manifest.pooler, w, h, threads, key, graph, parts[0], parts[1], parts[2], parts[3], parts[4],
            host, non_key, avg, model_gflops, trunk_ms, trunk_gflops, 100.0 * model_gflops / trunk_gflops
        );
    }
    Ok(())
}
