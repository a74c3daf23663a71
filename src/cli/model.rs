//! `inspro info` (parameters and GFLOPs by part) and `inspro bench` (candle forward timings).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Device;
use inspro::model::cost::{macs, param_shapes, Part};
use inspro::model::preprocess::{preprocess, FrameGeometry};
use inspro::model::{FrameRef, InsPro, ModelConfig};

/// `WxH`, e.g. `640x360`.
pub fn parse_size(s: &str) -> Result<[usize; 2], String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let w: usize = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in `{s}`"))?;
    let h: usize = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in `{s}`"))?;
    if w == 0 || h == 0 {
        return Err(format!("`{s}` is empty"));
    }
    Ok([w, h])
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Model config (TOML), e.g. configs/models/inspro-r50.toml.
    #[arg(long)]
    pub model: PathBuf,
    /// Frame size for the FLOP count.
    #[arg(long, default_value = "640x360", value_parser = parse_size)]
    pub size: [usize; 2],
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn is_buffer(key: &str) -> bool {
    // detectron2 FrozenBatchNorm2d holds buffers only; BatchNorm running statistics are buffers.
    key.ends_with(".running_mean")
        || key.ends_with(".running_var")
        || (key.starts_with("backbone.bottom_up.") && key.contains(".norm."))
}

pub fn info(args: InfoArgs) -> anyhow::Result<()> {
    let cfg = ModelConfig::from_file(&args.model)?;
    let shapes = param_shapes(&cfg)?;
    let mut params = [0usize; 4];
    let mut buffers = 0usize;
    for (key, shape) in &shapes {
        let n: usize = shape.iter().product();
        if is_buffer(key) {
            buffers += n;
        } else {
            params[Part::of_key(key) as usize] += n;
        }
    }
    let g = FrameGeometry::new(&cfg, args.size[0], args.size[1]);
    let (pw, ph) = (g.padded_width, g.padded_height);
    let key = macs(&cfg, pw, ph, cfg.num_stages);
    let non_key = macs(&cfg, pw, ph, 1);
    let total_params: usize = params.iter().sum();
    let key_total: u64 = key.values().sum();
    let non_key_total: u64 = non_key.values().sum();
    let k = cfg.key_frame_interval;
    let avg = if k == 0 {
        key_total as f64
    } else {
        (key_total as f64 + (k - 1) as f64 * non_key_total as f64) / k as f64
    };
    if args.json {
        let parts: serde_json::Map<String, serde_json::Value> = Part::ALL
            .iter()
            .map(|p| {
                (
                    p.name().to_string(),
                    serde_json::json!({
                        "params": params[*p as usize],
                        "gflops_key_frame": key[p] as f64 / 1e9,
                        "gflops_non_key_frame": non_key[p] as f64 / 1e9,
                    }),
                )
            })
            .collect();
        let out = serde_json::json!({
            "model": cfg.name,
            "input": [pw, ph],
            "params": total_params,
            "buffers": buffers,
            "gflops_key_frame": key_total as f64 / 1e9,
            "gflops_non_key_frame": non_key_total as f64 / 1e9,
            "gflops_average": avg / 1e9,
            "parts": parts,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{}: {} backbone, {} queries, {} stages, T = {}, K = {}",
        cfg.name,
        format!("{:?}", cfg.backbone).to_lowercase(),
        cfg.num_queries,
        cfg.num_stages,
        cfg.bank_size,
        k
    );
    println!(
        "frame {}x{} -> network input {}x{} (padded to 32)",
        args.size[0], args.size[1], pw, ph
    );
    println!("GFLOPs are multiply-accumulates (the detectron2/fvcore convention of the paper).");
    println!(
        "{:<10} {:>14} {:>16} {:>16}",
        "part", "params", "GFLOPs key", "GFLOPs non-key"
    );
    for p in Part::ALL {
        println!(
            "{:<10} {:>14} {:>16.2} {:>16.2}",
            p.name(),
            group(params[p as usize]),
            key[&p] as f64 / 1e9,
            non_key[&p] as f64 / 1e9
        );
    }
    println!(
        "{:<10} {:>14} {:>16.2} {:>16.2}",
        "total",
        group(total_params),
        key_total as f64 / 1e9,
        non_key_total as f64 / 1e9
    );
    let unpadded: u64 = macs(&cfg, g.resized_width, g.resized_height, cfg.num_stages)
        .values()
        .sum();
    println!(
        "({} buffers of frozen/running BatchNorm not counted; average GFLOPs per frame {:.2}; key frame at the unpadded {}x{}: {:.2})",
        group(buffers),
        avg / 1e9,
        g.resized_width,
        g.resized_height,
        unpadded as f64 / 1e9
    );
    Ok(())
}

fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model config (TOML).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights (safetensors); random weights when absent (timing does not depend on them).
    #[arg(long)]
    pub weights: Option<PathBuf>,
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
    /// Engine: `candle` (pure Rust) or `onnxruntime` (the exported graphs, CPU provider).
    #[arg(long, default_value = "candle")]
    pub engine: BenchEngine,
    /// For onnxruntime: an engine directory made by `inspro export --trunk`; default: export the
    /// config (with --weights or random weights) into a temporary directory.
    #[arg(long)]
    pub engine_dir: Option<PathBuf>,
    /// For onnxruntime without --engine-dir: how the exported graphs pool (static | gather).
    #[arg(long, default_value = "static", value_parser = parse_pooler)]
    pub pooler: inspro::export::Pooler,
    /// Internal: this process measures with the current thread count.
    #[arg(long, hide = true)]
    pub child: bool,
}

fn parse_pooler(s: &str) -> Result<inspro::export::Pooler, String> {
    s.parse()
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchEngine {
    Candle,
    Onnxruntime,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if !args.child {
        let exe = std::env::current_exe().context("locating the inspro binary")?;
        // ONNX Runtime: export once, time it in every child.
        let mut temp_dir = None;
        let engine_dir = match (args.engine, &args.engine_dir) {
            (BenchEngine::Onnxruntime, None) => {
                let dir = std::env::temp_dir().join(format!("inspro-bench-{}", std::process::id()));
                let cfg = ModelConfig::from_file(&args.model)?;
                let weights = match &args.weights {
                    Some(w) => inspro::export::Weights::from_safetensors(w)?,
                    None => {
                        let (_, vm) = InsPro::random(&cfg, 0, &Device::Cpu)?;
                        inspro::export::Weights::from_varmap(&vm, "random(seed=0)")?
                    }
                };
                inspro::export::export(
                    &cfg,
                    &weights,
                    &dir,
                    &inspro::export::ExportOptions {
                        pooler: args.pooler,
                        trunk: true,
                    },
                )
                .with_context(|| format!("exporting {} for the benchmark", cfg.name))?;
                temp_dir = Some(dir.clone());
                Some(dir)
            }
            (_, dir) => dir.clone(),
        };
        let result = (|| -> anyhow::Result<()> {
            for t in &args.threads {
                let mut cmd = std::process::Command::new(&exe);
                cmd.arg("bench")
                    .arg("--model")
                    .arg(&args.model)
                    .arg("--size")
                    .arg(format!("{}x{}", args.size[0], args.size[1]))
                    .arg("--runs")
                    .arg(args.runs.to_string())
                    .arg("--warmup")
                    .arg(args.warmup.to_string())
                    .arg("--child")
                    .arg("--engine")
                    .arg(match args.engine {
                        BenchEngine::Candle => "candle",
                        BenchEngine::Onnxruntime => "onnxruntime",
                    })
                    .env("RAYON_NUM_THREADS", t.to_string());
                if let Some(w) = &args.weights {
                    cmd.arg("--weights").arg(w);
                }
                if let Some(d) = &engine_dir {
                    cmd.arg("--engine-dir").arg(d);
                }
                if args.json {
                    cmd.arg("--json");
                }
                let status = cmd.status().context("running the benchmark child")?;
                if !status.success() {
                    bail!("benchmark with {t} threads failed ({status})");
                }
            }
            Ok(())
        })();
        if let Some(dir) = temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        return result;
    }
    if args.engine == BenchEngine::Onnxruntime {
        return bench_onnxruntime(&args);
    }
    let cfg = ModelConfig::from_file(&args.model)?;
    let dev = Device::Cpu;
    let model = match &args.weights {
        Some(w) => InsPro::load(&cfg, w, &dev)?,
        None => InsPro::random(&cfg, 0, &dev)?.0,
    };
    let [w, h] = args.size;
    let frame: Vec<u8> = (0..w * h * 3).map(|i| ((i * 31) % 251) as u8).collect();
    let f = FrameRef::packed(w, h, &frame);
    let g = FrameGeometry::new(&cfg, w, h);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());

    // Parts of the dense trunk.
    let image = preprocess(&cfg, &f, &g, &dev)?;
    let mut pre = Vec::new();
    let mut parts = Vec::new();
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
    // Whole frames through the state loop: key frames, and non-key frames for lite.
    let mut key_ms = Vec::new();
    let mut non_key_ms = Vec::new();
    let mut state = model.init_state(w, h)?;
    let k = cfg.key_frame_interval.max(1);
    // Lite: key and non-key frames alternate (the schedule forced through the frame counter),
    // so `runs` samples of each cost 2·runs frames instead of K·runs.
    let per_round = if cfg.key_frame_interval > 1 { 2 } else { 1 };
    for i in 0..(args.warmup + args.runs) * per_round {
        state.frame_index = if i % per_round == 0 { 0 } else { 1 } + (i / per_round * k) as u64;
        let t0 = Instant::now();
        let out = model.step(&f, &mut state)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i >= args.warmup * per_round {
            if out.key_frame {
                key_ms.push(ms);
            } else {
                non_key_ms.push(ms);
            }
        }
    }
    let med = |v: &mut Vec<f64>| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let col = |f: &dyn Fn(&inspro::model::inspro::PartTimes) -> f64| {
        let mut v: Vec<f64> = parts.iter().map(f).collect();
        med(&mut v)
    };
    let backbone = col(&|p| p.backbone_ms);
    let fpn = col(&|p| p.fpn_ms);
    let mask_branch = col(&|p| p.mask_branch_ms);
    let preprocess_ms = med(&mut pre);
    let key = med(&mut key_ms);
    let non_key = med(&mut non_key_ms);
    let heads_key = key - preprocess_ms - backbone - fpn - mask_branch;
    let avg = if cfg.key_frame_interval == 0 {
        key
    } else {
        (key + (k - 1) as f64 * non_key) / k as f64
    };
    let gmacs: u64 = macs(&cfg, g.padded_width, g.padded_height, cfg.num_stages)
        .values()
        .sum();
    let gflops_per_s = 2.0 * gmacs as f64 / 1e9 / (key / 1e3);
    let trunk_macs = macs(&cfg, g.padded_width, g.padded_height, cfg.num_stages)
        .get(&Part::Backbone)
        .copied()
        .unwrap_or(0);
    let trunk_gflops_per_s = 2.0 * trunk_macs as f64 / 1e9 / (backbone / 1e3);
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

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One thread count of `inspro bench --engine onnxruntime`: whole frames through the engine's
/// state loop (key and non-key), the key-frame graph alone (host-side state cost = the
/// difference), and the bare trunk graph as the reference.
fn bench_onnxruntime(args: &BenchArgs) -> anyhow::Result<()> {
    use inspro::runtime::onnxruntime::{time_trunk_graph, GraphInputs};
    use inspro::runtime::{Engine, OrtEngine, OrtOptions};

    let dir = args
        .engine_dir
        .as_ref()
        .context("--engine onnxruntime needs --engine-dir in the child")?;
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let opts = OrtOptions {
        threads: Some(threads),
        ..OrtOptions::default()
    };
    let engine = OrtEngine::load(dir, &opts)?;
    let cfg = engine.config().clone();
    let [w, h] = args.size;
    let frame: Vec<u8> = (0..w * h * 3).map(|i| ((i * 31) % 251) as u8).collect();
    let f = FrameRef::packed(w, h, &frame);
    let g = engine.geometry(w, h);

    let mut key_ms = Vec::new();
    let mut non_key_ms = Vec::new();
    let mut state = engine.init_state(w, h)?;
    // Lite: key and non-key frames alternate (the schedule forced through the frame counter).
    let k = cfg.key_frame_interval.max(1);
    let per_round = if cfg.key_frame_interval > 1 { 2 } else { 1 };
    for i in 0..(args.warmup + args.runs) * per_round {
        state.frame_index = if i % per_round == 0 { 0 } else { 1 } + (i / per_round * k) as u64;
        let t0 = Instant::now();
        let out = engine.step(&f, &mut state)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i >= args.warmup * per_round {
            if out.key_frame {
                key_ms.push(ms);
            } else {
                non_key_ms.push(ms);
            }
        }
    }
    // The key-frame graph alone, inputs prepared once.
    let pixels = engine.frame_input(&f, &g);
    let q = state.proposal_features().flatten_all()?.to_vec1::<f32>()?;
    let p = state
        .proposal_boxes_xyxy()
        .flatten_all()?
        .to_vec1::<f32>()?;
    let bank = state.bank().flatten_all()?.to_vec1::<f32>()?;
    let valid = state.bank_window();
    let inputs = GraphInputs {
        frame: &pixels,
        image_size_hw: [g.resized_height as f32, g.resized_width as f32],
        proposal_features: &q,
        proposal_boxes_xyxy: &p,
        bank: &bank,
        bank_valid: &valid,
    };
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
    let graph = median(&mut graph_ms);
    let ki = cfg.key_frame_interval;
    let avg = if ki == 0 {
        key
    } else {
        (key + (ki - 1) as f64 * non_key) / ki as f64
    };
    let (pw, ph) = (g.padded_width, g.padded_height);
    let key_macs: u64 = macs(&cfg, pw, ph, cfg.num_stages).values().sum();
    let non_key_macs: u64 = macs(&cfg, pw, ph, 1).values().sum();
    let trunk_macs = macs(&cfg, pw, ph, cfg.num_stages)
        .get(&Part::Backbone)
        .copied()
        .unwrap_or(0);
    let gflops = |m: u64, ms: f64| 2.0 * m as f64 / 1e9 / (ms / 1e3);
    let avg_macs = if ki == 0 {
        key_macs as f64
    } else {
        (key_macs as f64 + (ki - 1) as f64 * non_key_macs as f64) / ki as f64
    };
    let model_gflops = 2.0 * avg_macs / 1e9 / (avg / 1e3);
    let trunk_gflops = gflops(trunk_macs, trunk_ms);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "engine": engine.name(), "model": cfg.name, "size": [w, h], "threads": threads,
                "pooler": engine.manifest.pooler,
                "key_frame_ms": key, "non_key_frame_ms": non_key, "average_frame_ms": avg,
                "key_graph_ms": graph, "host_state_ms": host,
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
            "{} {} (pooler {:?}) {}x{} threads={}: key frame {:.1} ms (graph alone, back to back {:.1}; host-side state and frame copy {:.2}); non-key {:.1} ms; average {:.1} ms/frame; {:.1} GFLOP/s effective; bare trunk {:.1} ms = {:.1} GFLOP/s ({:.0} %)",
            engine.name(), cfg.name, engine.manifest.pooler, w, h, threads, key, graph, host, non_key, avg,
            model_gflops, trunk_ms, trunk_gflops, 100.0 * model_gflops / trunk_gflops
        );
    }
    Ok(())
}
