//! `inspro segment --ytvis DIR --gt JSON --results OUT`: run the model over every video of a
//! YouTube-VIS layout, frames in order, one stream state per video, and write one results json.

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use inspro::model::{FrameRef, InsPro, ModelConfig};
use inspro::tracking::{ResultOptions, VideoAccumulator};
use inspro::ytvis::{load_ground_truth, GroundTruth};

#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// Root of a YouTube-VIS layout (holds JPEGImages/).
    #[arg(long)]
    pub ytvis: PathBuf,
    /// The json listing the videos (ground truth, or the val/test file without annotations).
    #[arg(long)]
    pub gt: PathBuf,
    /// Where to write the results json.
    #[arg(long)]
    pub results: PathBuf,
    /// Model config (TOML).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights (safetensors). Without them the model is randomly initialised (say so loudly).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// (slot, class) pairs kept per video by rank.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Further pairs kept above this mean probability.
    #[arg(long, default_value_t = 0.05)]
    pub score_threshold: f32,
    /// Process only the first N videos.
    #[arg(long)]
    pub max_videos: Option<usize>,
}

/// Dataset category id of each model class: by name when every class name is a category name,
/// else by position in the id-sorted category list.
pub fn category_ids(cfg: &ModelConfig, gt: &GroundTruth) -> anyhow::Result<Vec<u64>> {
    let by_name: Option<Vec<u64>> = (0..cfg.num_classes)
        .map(|k| {
            let name = cfg.class_names.get(k)?;
            gt.categories.iter().find(|c| &c.name == name).map(|c| c.id)
        })
        .collect();
    if let Some(ids) = by_name {
        return Ok(ids);
    }
    let mut ids: Vec<u64> = gt.categories.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    if ids.len() < cfg.num_classes {
        bail!(
            "the model has {} classes but the json lists {} categories",
            cfg.num_classes,
            ids.len()
        );
    }
    ids.truncate(cfg.num_classes);
    Ok(ids)
}

pub fn segment(args: SegmentArgs) -> anyhow::Result<()> {
    let cfg = ModelConfig::from_file(&args.model)?;
    let dev = Device::Cpu;
    let model = match &args.weights {
        Some(w) => InsPro::load(&cfg, w, &dev)?,
        None => {
            tracing::warn!(
                "no --weights: the model is RANDOMLY INITIALISED, its results mean nothing"
            );
            InsPro::random(&cfg, 0, &dev)?.0
        }
    };
    let gt = load_ground_truth(&args.gt)?;
    let classes = category_ids(&cfg, &gt)?;
    let videos: Vec<_> = gt
        .videos
        .iter()
        .take(args.max_videos.unwrap_or(usize::MAX))
        .collect();
    let total_frames: usize = videos.iter().map(|v| v.file_names.len()).sum();
    let bar = ProgressBar::new(total_frames as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} frames {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let opts = ResultOptions {
        top_k: args.top_k,
        score_threshold: args.score_threshold,
        ..ResultOptions::default()
    };
    let mut results = Vec::new();
    for video in videos {
        let (w, h) = (video.width as usize, video.height as usize);
        let mut state = model.init_state(w, h)?;
        let mut acc = VideoAccumulator::new();
        bar.set_message(format!("video {}", video.id));
        for name in &video.file_names {
            let path = args.ytvis.join("JPEGImages").join(name);
            let img = image::open(&path)
                .with_context(|| format!("reading frame {}", path.display()))?
                .to_rgb8();
            if img.width() as usize != w || img.height() as usize != h {
                bail!(
                    "{}: frame is {}x{} but video {} is {}x{} in {}",
                    path.display(),
                    img.width(),
                    img.height(),
                    video.id,
                    w,
                    h,
                    args.gt.display()
                );
            }
            let out = model.step(&FrameRef::packed(w, h, img.as_raw()), &mut state)?;
            acc.add(&out);
            bar.inc(1);
        }
        results.extend(acc.finish(video.id, &classes, &opts));
    }
    bar.finish_and_clear();
    inspro::ytvis::json::write_json(&args.results, &results)?;
    eprintln!(
        "wrote {} results for {} frames to {}",
        results.len(),
        total_frames,
        args.results.display()
    );
    Ok(())
}
