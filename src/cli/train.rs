//! `inspro train --config configs/train/<name>.toml [--resume] [--max-minutes M]`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use inspro::train::trainer::{evaluate_dataset, SynthSpec};
use inspro::train::{Dataset, TrainConfig, Trainer};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training config (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Continue from `<out_dir>/last` (weights, optimiser moments, sampler state).
    #[arg(long)]
    pub resume: bool,
    /// Stop (with a checkpoint and an evaluation) after this much wall time.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// Videos of the validation split to evaluate (all when absent).
    #[arg(long)]
    pub eval_videos: Option<usize>,
    /// CPU threads for candle (sets CANDLE_NUM_THREADS and RAYON_NUM_THREADS unless already
    /// set). Training runs thousands of small ops; candle's spinning thread pool made one
    /// thread 3-4x faster than two on a busy 2-core machine (docs/perf.md).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Override the config's seed (ablations run each config with several seeds).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the config's output folder.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Override the config's iteration count (the lr steps stay where the config puts them).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Override the config's data-parallel workers (one clip each per iteration, gradients
    /// averaged; docs/training.md "Both cores: measured first").
    #[arg(long)]
    pub workers: Option<usize>,
    /// Start from these weights (safetensors, e.g. written by `inspro import`): every parameter
    /// they hold with the right shape; overrides the config's `init`.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
}

/// Must run before candle or rayon start their thread pools.
pub fn set_threads(n: usize) {
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, n.max(1).to_string());
        }
    }
}

fn ensure_split(
    dir: &Path,
    gt: &Option<PathBuf>,
    synth: &Option<SynthSpec>,
) -> anyhow::Result<PathBuf> {
    let gt_path = gt.clone().unwrap_or_else(|| dir.join("instances.json"));
    if !gt_path.exists() {
        let spec = synth.as_ref().with_context(|| {
            format!(
                "{} does not exist and the config has no synth section to generate it",
                gt_path.display()
            )
        })?;
        tracing::info!(dir = %dir.display(), videos = spec.videos, seed = spec.seed, "generating synthetic split");
        inspro::ytvis::synth::write_dataset(dir, &spec.options())?;
    }
    Ok(gt_path)
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    set_threads(args.threads);
    let mut cfg = TrainConfig::from_file(&args.config)?;
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(dir) = &args.out_dir {
        cfg.out_dir = dir.clone();
    }
    if let Some(n) = args.iterations {
        cfg.iterations = n.max(1);
    }
    if let Some(w) = &args.init_from {
        cfg.init = Some(w.clone());
    }
    if let Some(n) = args.workers {
        cfg.workers = n.max(1);
    }
    let model_cfg = cfg.model_config()?;
    let dev = Device::Cpu;
    let val = match &cfg.data.val {
        Some(dir) => {
            let gt = ensure_split(dir, &cfg.data.val_gt, &cfg.data.synth_val)?;
            Some(Dataset::load(dir, &gt, &model_cfg)?)
        }
        None => None,
    };
    std::fs::create_dir_all(&cfg.out_dir)
        .with_context(|| format!("creating {}", cfg.out_dir.display()))?;
    std::fs::copy(&args.config, cfg.out_dir.join("train.toml")).ok();
    std::fs::copy(&cfg.model, cfg.out_dir.join("model.toml")).ok();
    let out_dir = cfg.out_dir.clone();
    let iterations = cfg.iterations;
    let (log_every, eval_every, ckpt_every) = (
        cfg.log_every.max(1),
        cfg.eval_every,
        cfg.checkpoint_every.max(1),
    );
    let mut trainer = if cfg.data.synth_stream.is_some() {
        Trainer::streaming(cfg, &dev)?
    } else {
        let train_gt = ensure_split(&cfg.data.train, &cfg.data.train_gt, &cfg.data.synth_train)?;
        let train = Dataset::load(&cfg.data.train, &train_gt, &model_cfg)?;
        Trainer::new(cfg, train, &dev)?
    };
    if args.resume {
        trainer.resume(&out_dir, "last")?;
        tracing::info!(iteration = trainer.iteration, "resumed");
    }
    let metrics_path = out_dir.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("opening {}", metrics_path.display()))?;
    let eval_videos = args.eval_videos.unwrap_or(usize::MAX);
    let probe_cfg = trainer.cfg.probe.clone();
    let probe_fit = match &probe_cfg {
        Some(p) if val.is_some() => Some(inspro::train::probe::fit_videos(p, &trainer.model)?),
        _ => None,
    };
    let plot_path = out_dir.join("training.png");
    let plot = || {
        if let Err(e) = inspro::train::plot::write_plot(&metrics_path, &plot_path) {
            tracing::warn!(error = %e, "training plot not written");
        }
    };
    let evaluate = |trainer: &Trainer, metrics: &mut std::fs::File| -> anyhow::Result<()> {
        if let Some(val) = &val {
            let t0 = Instant::now();
            // A trunk trained alone (`loss.heads = false`) has random stages: only the probe
            // says anything about it.
            if trainer.cfg.loss.heads {
                let (s, q) = evaluate_dataset(&trainer.model, val, eval_videos)?;
                let line = serde_json::json!({
                    "iteration": trainer.iteration, "eval": s, "tracks": q,
                    "eval_seconds": t0.elapsed().as_secs_f64(),
                    "train_hours": trainer.train_seconds() / 3600.0,
                });
                writeln!(metrics, "{line}")?;
                log_validation(trainer.iteration, &s, &q);
            }
            if let (Some(p), Some(fit)) = (&probe_cfg, &probe_fit) {
                let t0 = Instant::now();
                let r = inspro::train::probe::probe(p, &trainer.model, fit, &val.videos)?;
                let line = serde_json::json!({
                    "iteration": trainer.iteration, "probe": r,
                    "probe_seconds": t0.elapsed().as_secs_f64()
                });
                writeln!(metrics, "{line}")?;
                tracing::info!(
                    iteration = trainer.iteration,
                    test = r.test_accuracy,
                    fit = r.fit_accuracy,
                    majority = r.majority_accuracy,
                    "feature probe"
                );
            }
        }
        Ok(())
    };

    let bar = ProgressBar::new(iterations as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.iteration as u64);
    let start = Instant::now();
    let mut window = Instant::now();
    let mut window_iters = 0usize;
    while trainer.iteration < iterations {
        if let Some(m) = args.max_minutes {
            if start.elapsed().as_secs_f64() > m * 60.0 {
                tracing::info!(iteration = trainer.iteration, "time budget reached");
                break;
            }
        }
        let (parts, norm, lr) = trainer.step()?;
        window_iters += 1;
        bar.inc(1);
        let it = trainer.iteration;
        if it % log_every == 0 {
            let ips = window_iters as f64 / window.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.3} cls {:.3} l1 {:.3} giou {:.3} dedup {:.3} dice {:.3} mfocal {:.3} sem {:.3} roi {:.3} dn {:.3}",
                parts.total,
                parts.class,
                parts.l1,
                parts.giou,
                parts.dedup,
                parts.dice,
                parts.mask_focal,
                parts.semantic,
                parts.roi_class,
                parts.dn_class
            ));
            let line = serde_json::json!({
                "iteration": it, "lr": lr, "grad_norm": norm, "loss": parts, "iter_per_s": ips,
                "elapsed_s": start.elapsed().as_secs_f64(),
                "train_hours": trainer.train_seconds() / 3600.0,
            });
            writeln!(metrics, "{line}")?;
            window = Instant::now();
            window_iters = 0;
        }
        if it % ckpt_every == 0 {
            trainer.save(&out_dir, "last")?;
        }
        if eval_every > 0 && it % eval_every == 0 {
            evaluate(&trainer, &mut metrics)?;
            metrics.flush()?;
            plot();
        }
    }
    bar.finish_and_clear();
    trainer.save(&out_dir, "last")?;
    let weights = trainer.save(&out_dir, "final")?;
    let (scored, averaged) = trainer.with_average(|t| evaluate(t, &mut metrics))?;
    scored?;
    metrics.flush()?;
    plot();
    eprintln!(
        "trained {} iterations in {:.1} min; weights {}",
        trainer.iteration,
        start.elapsed().as_secs_f64() / 60.0,
        weights.display()
    );
    if averaged {
        eprintln!(
            "averaged weights (scored above): {}",
            weights.with_extension("ema.safetensors").display()
        );
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// A run folder (its metrics.jsonl) or a metrics.jsonl file; with --bench, the JSON lines
    /// of `inspro bench --json` (scripts/bench.sh writes out/bench.jsonl).
    pub run: PathBuf,
    /// The PNG to write (default: training.png beside the metrics; perf-parts.png for --bench).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw the benchmark's ms per key frame by part instead of a training run.
    #[arg(long)]
    pub bench: bool,
}

pub fn plot(args: PlotArgs) -> anyhow::Result<()> {
    if args.bench {
        let out = args
            .out
            .unwrap_or_else(|| args.run.with_file_name("perf-parts.png"));
        super::bench_plot::plot_bench(&args.run, &out)?;
        println!("{}", out.display());
        return Ok(());
    }
    let metrics = if args.run.is_dir() {
        args.run.join("metrics.jsonl")
    } else {
        args.run.clone()
    };
    let out = args
        .out
        .unwrap_or_else(|| metrics.with_file_name("training.png"));
    inspro::train::plot::write_plot(&metrics, &out)?;
    println!("{}", out.display());
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Model config (TOML).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights (safetensors); `random:SEED` probes a random init.
    #[arg(long)]
    pub weights: String,
    /// Held-out videos to test on (YouTube-VIS layout with instances.json).
    #[arg(long)]
    pub val: PathBuf,
    /// Fresh synthetic videos the probe is fit on, and their seed.
    #[arg(long, default_value_t = 40)]
    pub fit_videos: usize,
    #[arg(long, default_value_t = 3003)]
    pub fit_seed: u64,
    /// Every n-th frame gives samples.
    #[arg(long, default_value_t = 3)]
    pub frame_step: usize,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

pub fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    set_threads(args.threads);
    let cfg = inspro::model::ModelConfig::from_file(&args.model)?;
    let dev = Device::Cpu;
    let model = match args.weights.strip_prefix("random:") {
        Some(seed) => {
            let seed: u64 = seed
                .parse()
                .with_context(|| format!("--weights {}: not a seed", args.weights))?;
            inspro::model::InsPro::random(&cfg, seed, &dev)?.0
        }
        None => inspro::model::InsPro::load(&cfg, &args.weights, &dev)?,
    };
    let gt = args.val.join("instances.json");
    let val = Dataset::load(&args.val, &gt, &cfg)?;
    let mut p = inspro::train::probe::ProbeConfig {
        frame_step: args.frame_step,
        ..Default::default()
    };
    p.fit.videos = args.fit_videos;
    p.fit.seed = args.fit_seed;
    p.fit.size = [cfg.input_size[0] as u32, cfg.input_size[1] as u32];
    let fit = inspro::train::probe::fit_videos(&p, &model)?;
    let r = inspro::train::probe::probe(&p, &model, &fit, &val.videos)?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "probe: held-out {:.1} % ({} samples), fit {:.1} % ({} samples), majority class {:.1} %",
            100.0 * r.test_accuracy,
            r.test_samples,
            100.0 * r.fit_accuracy,
            r.fit_samples,
            100.0 * r.majority_accuracy
        );
    }
    Ok(())
}

/// One line of the log per validation.
fn log_validation(
    iteration: usize,
    s: &inspro::ytvis::EvalSummary,
    q: &inspro::ytvis::eval::TrackQuality,
) {
    tracing::info!(
        iteration,
        ap = s.ap,
        ap50 = s.ap50,
        ap75 = s.ap75,
        ar1 = s.ar1,
        ar10 = s.ar10,
        class_acc = q.best_track_class_accuracy,
        covered_right = q.covered_right_top_class,
        covered_confident = q.covered_right_confident,
        dup_per_object = q.duplicates_per_object,
        id_switches = q.id_switches,
        "validation"
    );
}
