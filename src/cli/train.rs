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
    let model_cfg = cfg.model_config()?;
    let dev = Device::Cpu;
    let train_gt = ensure_split(&cfg.data.train, &cfg.data.train_gt, &cfg.data.synth_train)?;
    let train = Dataset::load(&cfg.data.train, &train_gt, &model_cfg)?;
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
    let mut trainer = Trainer::new(cfg, train, &dev)?;
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
    let evaluate = |trainer: &Trainer, metrics: &mut std::fs::File| -> anyhow::Result<()> {
        if let Some(val) = &val {
            let t0 = Instant::now();
            let s = evaluate_dataset(&trainer.model, val, eval_videos)?;
            let line = serde_json::json!({
                "iteration": trainer.iteration, "eval": s, "eval_seconds": t0.elapsed().as_secs_f64()
            });
            writeln!(metrics, "{line}")?;
            tracing::info!(
                iteration = trainer.iteration,
                ap = s.ap,
                ap50 = s.ap50,
                ap75 = s.ap75,
                ar1 = s.ar1,
                ar10 = s.ar10,
                "validation"
            );
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
                "loss {:.3} cls {:.3} l1 {:.3} giou {:.3} dedup {:.3} dice {:.3} mfocal {:.3}",
                parts.total,
                parts.class,
                parts.l1,
                parts.giou,
                parts.dedup,
                parts.dice,
                parts.mask_focal
            ));
            let line = serde_json::json!({
                "iteration": it, "lr": lr, "grad_norm": norm, "loss": parts, "iter_per_s": ips,
                "elapsed_s": start.elapsed().as_secs_f64(),
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
        }
    }
    bar.finish_and_clear();
    trainer.save(&out_dir, "last")?;
    let weights = trainer.save(&out_dir, "final")?;
    evaluate(&trainer, &mut metrics)?;
    eprintln!(
        "trained {} iterations in {:.1} min; weights {}",
        trainer.iteration,
        start.elapsed().as_secs_f64() / 60.0,
        weights.display()
    );
    Ok(())
}
