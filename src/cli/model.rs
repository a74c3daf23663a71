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
    let w: usize = w.trim().parse().map_err(|_| format!("bad width in `{s}`"))?;
    let h: usize = h.trim().parse().map_err(|_| format!("bad height in `{s}`"))?;
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
        if i > 0 && (s.len() - i) % 3 == 0 {
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
    /// Internal: this process measures with the current thread count.
    #[arg(long, hide = true)]
    pub child: bool,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if !args.child {
        let exe = std::env::current_exe().context("locating the inspro binary")?;
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
                .env("RAYON_NUM_THREADS", t.to_string());
            if let Some(w) = &args.weights {
                cmd.arg("--weights").arg(w);
            }
            if args.json {
                cmd.arg("--json");
            }
            let status = cmd.status().context("running the benchmark child")?;
            if !status.success() {
                bail!("benchmark with {t} threads failed ({status})");
            }
        }
        return Ok(());
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
    let image = preprocess(&cfg, &f, &g, &dev).map_err(anyhow::Error::msg)?;
    let mut pre = Vec::new();
    let mut parts = Vec::new();
    for i in 0..args.warmup + args.runs {
        let t0 = Instant::now();
        let _ = preprocess(&cfg, &f, &g, &dev).map_err(anyhow::Error::msg)?;
        let p = model.forward_parts(&image)?;
        if i >= args.warmup {
            pre.push(0.0f64.max(t0.elapsed().as_secs_f64() * 1e3 - p.backbone_ms - p.fpn_ms - p.mask_branch_ms));
            parts.push(p);
        }
    }
    // Whole frames through the state loop: key frames, and non-key frames for lite.
    let mut key_ms = Vec::new();
    let mut non_key_ms = Vec::new();
    let mut state = model.init_state(w, h)?;
    let k = cfg.key_frame_interval.max(1);
    let total_frames = (args.warmup + args.runs) * k.min(10);
    for i in 0..total_frames {
        let t0 = Instant::now();
        let out = model.step(&f, &mut state)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i >= args.warmup * k.min(10) {
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
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "engine": "candle", "model": cfg.name, "size": [w, h], "threads": threads,
                "preprocess_ms": preprocess_ms, "backbone_ms": backbone, "fpn_ms": fpn,
                "mask_branch_ms": mask_branch, "heads_and_mask_head_ms": heads_key,
                "key_frame_ms": key, "non_key_frame_ms": non_key, "average_frame_ms": avg,
                "effective_gflop_per_s": gflops_per_s, "runs": args.runs,
            })
        );
    } else {
        println!(
            "candle {} {}x{} threads={}: key frame {:.1} ms (preprocess {:.1}, backbone {:.1}, fpn {:.1}, mask branch {:.1}, heads+mask head {:.1}); non-key {:.1} ms; average {:.1} ms/frame; {:.1} GFLOP/s effective (2 x MACs)",
            cfg.name, w, h, threads, key, preprocess_ms, backbone, fpn, mask_branch, heads_key, non_key, avg, gflops_per_s
        );
    }
    Ok(())
}
