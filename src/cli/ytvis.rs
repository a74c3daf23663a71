//! `inspro eval` (ytvoseval's AP/AR) and `inspro synth` (the synthetic YouTube-VIS benchmark).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use inspro::ytvis::{self, ClipOptions, SynthOptions};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Ground-truth json (YouTube-VIS layout).
    #[arg(long)]
    pub gt: PathBuf,
    /// Results json: a list of {video_id, category_id, score, segmentations}.
    #[arg(long)]
    pub results: PathBuf,
    /// Print one json object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also report how tracks relate to objects: the class accuracy of each object's
    /// best-overlapping track, and duplicate tracks (result pairs of one video, both scoring at
    /// least `--dup-score`, with spatio-temporal mask IoU at least `--dup-iou`) per object.
    #[arg(long)]
    pub duplicates: bool,
    #[arg(long, default_value_t = 0.5)]
    pub dup_score: f64,
    #[arg(long, default_value_t = 0.5)]
    pub dup_iou: f64,
    /// Fit the model's `score_calibration` on these results (held-out videos, not the ones you
    /// will report): Platt scaling that makes a track's score the chance that it is right (the
    /// best track of an object, covering it at video mask IoU >= 0.5, with its class). Prints
    /// the line for the model config and what it does at the default birth score 0.5.
    #[arg(long)]
    pub fit_scores: bool,
    /// With --fit-scores: the model config the results were made with; its own
    /// `score_calibration` is composed with the fit, so the printed line replaces it.
    #[arg(long, requires = "fit_scores")]
    pub model: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output folder (JPEGImages/ and instances.json).
    #[arg(long, required_unless_present = "clip", conflicts_with = "clip")]
    pub out: Option<PathBuf>,
    /// Write one encoded video (.mkv or .mp4) instead, with its ground truth beside it (.json).
    #[arg(long)]
    pub clip: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub videos: usize,
    /// Frames per video.
    #[arg(long, default_value_t = 36)]
    pub frames: usize,
    /// Frame size WIDTHxHEIGHT.
    #[arg(long, default_value = "640x360", value_parser = parse_size)]
    pub size: (u32, u32),
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Objects per video, MIN..MAX (inclusive) or N.
    #[arg(long, default_value = "2..6", value_parser = parse_range)]
    pub objects: (usize, usize),
    /// Chance that an object is a look-alike of an earlier one, crossing its path.
    #[arg(long, default_value_t = 0.5)]
    pub lookalikes: f64,
    /// Chance that an object is steered through an earlier one (occlusion).
    #[arg(long, default_value_t = 0.5)]
    pub occlusion: f64,
    /// Speed multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Chance that an object crosses the frame in a straight line (enters/leaves).
    #[arg(long, default_value_t = 0.3)]
    pub enter_leave: f64,
    /// Simulated frames between two written ones (5 mimics YouTube-VIS val).
    #[arg(long, default_value_t = 1)]
    pub frame_stride: usize,
    /// JPEG quality of the frames.
    #[arg(long, default_value_t = 90)]
    pub jpeg_quality: u8,
    /// Frame rate of the clip.
    #[arg(long, default_value_t = 15)]
    pub fps: u32,
    /// x264 constant quantizer of the clip (0 lossless, 18 visually lossless).
    #[arg(long, default_value_t = 18)]
    pub quantizer: u32,
}

/// `inspro eval --fit-scores`: the calibration line, its effect at the default birth score and
/// what the tracks scoring >= 0.5 are.
fn fit_scores(args: &EvalArgs, q: &ytvis::eval::TrackQuality) -> anyhow::Result<()> {
    use ytvis::eval::TrackKind;
    use ytvis::score_calibration::{calibrated, compose, fit_platt, share_above};
    let samples: Vec<(f64, bool)> = q
        .samples
        .iter()
        .map(|(s, k)| (*s, *k == TrackKind::Right))
        .collect();
    let fit = fit_platt(&samples).with_context(|| {
        format!(
            "{}: {} tracks, {} of them right: nothing to fit a calibration on",
            args.results.display(),
            samples.len(),
            samples.iter().filter(|(_, r)| *r).count()
        )
    })?;
    let inner = match &args.model {
        Some(path) => {
            let cfg = inspro::model::ModelConfig::from_file(path)?;
            cfg.score_calibration.map(f64::from)
        }
        None => [1.0, 0.0],
    };
    let [a, b] = compose(fit.calibration, inner);
    let show = |name: &str, c: [f64; 2]| {
        let (right, wrong) = share_above(&samples, c, 0.5);
        let n_right = fit.right as f64;
        let n_wrong = (fit.tracks - fit.right) as f64;
        let kept = right * n_right + wrong * n_wrong;
        println!(
            "{name}: right tracks scoring >= 0.5: {:.1} %, wrong ones: {:.1} %, precision at 0.5: {:.1} %",
            100.0 * right,
            100.0 * wrong,
            if kept > 0.0 { 100.0 * right * n_right / kept } else { 0.0 }
        );
        for kind in TrackKind::ALL {
            let (n, above) = q
                .samples
                .iter()
                .filter(|(_, k)| *k == kind)
                .fold((0, 0), |(n, m), (s, _)| {
                    (n + 1, m + usize::from(calibrated(*s, c) >= 0.5))
                });
            println!(
                "  {above:>4} of {n:>4} tracks scoring >= 0.5: {}",
                kind.describe()
            );
        }
    };
    println!(
        "{} tracks, {} right (best track of an object, video IoU >= 0.5, right class)",
        fit.tracks, fit.right
    );
    show("as scored", [1.0, 0.0]);
    show("calibrated", fit.calibration);
    println!("score_calibration = [{a:.4}, {b:.4}]");
    Ok(())
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, got {s:?}"))?;
    let w = w.trim().parse().map_err(|e| format!("width {w:?}: {e}"))?;
    let h = h.trim().parse().map_err(|e| format!("height {h:?}: {e}"))?;
    Ok((w, h))
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let parse = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("{v:?}: {e}"));
    match s.split_once("..") {
        Some((lo, hi)) => Ok((parse(lo)?, parse(hi.trim_start_matches('='))?)),
        None => {
            let n = parse(s)?;
            Ok((n, n))
        }
    }
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let s = ytvis::evaluate_files(&args.gt, &args.results)?;
    tracing::info!(seconds = start.elapsed().as_secs_f64(), "evaluated");
    let quality = if args.duplicates || args.fit_scores {
        let gt = ytvis::load_ground_truth(&args.gt)?;
        let results = ytvis::load_results(&args.results)?;
        Some(ytvis::eval::track_quality(
            &gt,
            &results,
            args.dup_score,
            args.dup_iou,
        ))
    } else {
        None
    };
    if args.json {
        let mut v = serde_json::to_value(&s).context("serialising the summary")?;
        if let (Some(q), Some(obj)) = (&quality, v.as_object_mut()) {
            obj.insert("duplicates".into(), q.duplicate_pairs.into());
            obj.insert(
                "tracks".into(),
                serde_json::to_value(q).context("serialising the track quality")?,
            );
        }
        println!("{v}");
        return Ok(());
    }
    if let (true, Some(q)) = (args.fit_scores, &quality) {
        return fit_scores(&args, q);
    }
    if let Some(q) = &quality {
        println!(
            "duplicate track pairs (score >= {}, ST-IoU >= {}): {} ({:.3} per object)",
            args.dup_score, args.dup_iou, q.duplicate_pairs, q.duplicates_per_object
        );
        println!(
            "best-overlapping track of each of {} objects: right class {:.1} %, mean ST-IoU {:.3}",
            q.objects,
            100.0 * q.best_track_class_accuracy,
            q.best_track_iou
        );
        println!(
            "objects whose best track covers them (video IoU >= 0.5) with the right top class: {:.1} %; and scoring >= 0.5: {:.1} %",
            100.0 * q.covered_right_top_class,
            100.0 * q.covered_right_confident
        );
        println!(
            "masks with perfect tracking (best result per visible object-frame): mean IoU {:.3}, {:.1} % at IoU >= 0.75",
            q.frame_oracle_iou,
            100.0 * q.frame_oracle_iou_075
        );
        println!(
            "identity switches (CLEAR-MOT over slots, mask IoU >= 0.5): {} ({:.3} per object)",
            q.id_switches, q.id_switches_per_object
        );
    }
    for (kind, iou, area, max_dets, v) in summary_rows(&s) {
        let title = if kind == "AP" {
            "Average Precision"
        } else {
            "Average Recall"
        };
        println!(
            " {title:<18} ({kind}) @[ IoU={iou:<9} | area={area:>6} | maxDets={max_dets:>3} ] = {v:.3}"
        );
    }
    println!();
    println!("{:<24} {:>6}", "category", "AP");
    for c in &s.per_category {
        match c.ap {
            Some(ap) => println!("{:<24} {:>6.3}", c.name, ap),
            None => println!("{:<24} {:>6}", c.name, "-"),
        }
    }
    Ok(())
}

/// The twelve numbers of `ytvoseval.summarize()` in its order: (AP or AR, IoU range, area,
/// maxDets, value).
fn summary_rows(
    s: &ytvis::EvalSummary,
) -> Vec<(&'static str, &'static str, &'static str, usize, f64)> {
    const ALL_IOU: &str = "0.50:0.95";
    let areas = ["small", "medium", "large"];
    let mut rows = Vec::with_capacity(12);
    for (iou, v) in [(ALL_IOU, s.ap), ("0.50", s.ap50), ("0.75", s.ap75)] {
        rows.push(("AP", iou, "all", 100, v));
    }
    for (area, v) in areas.into_iter().zip([s.aps, s.apm, s.apl]) {
        rows.push(("AP", ALL_IOU, area, 100, v));
    }
    for (max_dets, v) in [(1, s.ar1), (10, s.ar10), (100, s.ar100)] {
        rows.push(("AR", ALL_IOU, "all", max_dets, v));
    }
    for (area, v) in areas.into_iter().zip([s.ars, s.arm, s.arl]) {
        rows.push(("AR", ALL_IOU, area, 100, v));
    }
    rows
}

pub fn synth(args: SynthArgs) -> anyhow::Result<()> {
    let opts = SynthOptions {
        videos: args.videos,
        frames: args.frames,
        width: args.size.0,
        height: args.size.1,
        seed: args.seed,
        min_objects: args.objects.0,
        max_objects: args.objects.1,
        lookalikes: args.lookalikes,
        occlusion: args.occlusion,
        speed: args.speed,
        enter_leave: args.enter_leave,
        frame_stride: args.frame_stride,
        jpeg_quality: args.jpeg_quality,
    };
    let start = Instant::now();
    if let Some(clip) = &args.clip {
        let clip_opts = ClipOptions {
            fps: args.fps,
            quantizer: args.quantizer,
        };
        let gt = ytvis::write_clip(clip, &opts, &clip_opts)?;
        tracing::info!(
            clip = %clip.display(),
            gt = %clip.with_extension("json").display(),
            objects = gt.annotations.len(),
            seconds = start.elapsed().as_secs_f64(),
            "wrote clip"
        );
        return Ok(());
    }
    let Some(out) = &args.out else {
        bail!("give --out DIR or --clip FILE.mkv");
    };
    let gt = ytvis::write_dataset(out, &opts)?;
    tracing::info!(
        out = %out.display(),
        videos = gt.videos.len(),
        objects = gt.annotations.len(),
        seconds = start.elapsed().as_secs_f64(),
        "wrote dataset"
    );
    Ok(())
}
