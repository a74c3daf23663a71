//! `inspro segment`: run the model over a video file / URI or over every video of a YouTube-VIS
//! layout, frames in order, one stream per video (the shared `StreamProcessor`); write
//! YouTube-VIS results json (spec §1.8), an overlay video of the tracks and a contact-sheet PNG.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use inspro::frame::FrameRef;
use inspro::model::ModelConfig;
use inspro::render::{self, ContactSheet};
use inspro::runtime::{build_engine, Engine, EngineKind, EngineSpec};
use inspro::tracking::video::category_ids;
use inspro::tracking::{ResultOptions, StreamProcessor, TrackerConfig, VideoAccumulator};
use inspro::video::{VideoReader, VideoWriter, WriterOptions};
use inspro::ytvis::{load_ground_truth, VideoResult};

use super::engine_args::EngineArgs;

#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// A video file or URI (rtsp://, http://, file://) to segment. Omit it with --ytvis.
    #[arg(conflicts_with = "ytvis", required_unless_present = "ytvis")]
    pub input: Option<String>,
    /// Root of a YouTube-VIS layout (holds JPEGImages/): every video of --gt.
    #[arg(long, requires = "gt")]
    pub ytvis: Option<PathBuf>,
    /// The json listing the videos (ground truth, or the val/test file without annotations).
    /// With a file input: take the video id and categories from its first video.
    #[arg(long)]
    pub gt: Option<PathBuf>,
    /// Where to write the YouTube-VIS results json (required with --ytvis).
    #[arg(long)]
    pub results: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// For onnxruntime: intra-op threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write an overlay video (Matroska, H.264) with masks, boxes and slot ids.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Write a contact sheet (PNG) of up to 12 overlay frames spread over the video.
    #[arg(long)]
    pub contact_sheet: Option<PathBuf>,
    /// Tracks drawn in the overlay: born at this class probability (the tracker's birth score;
    /// kept down to 0.6x this).
    #[arg(long, default_value_t = 0.3)]
    pub show_threshold: f32,
    /// Tracks drawn in the overlay: a slot whose box overlaps a drawn track's by more than this
    /// IoU is not born (class-agnostic NMS at birth; 1 births every slot).
    #[arg(long, default_value_t = 1.0)]
    pub birth_nms_iou: f32,
    /// (slot, class) pairs kept per video by rank.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Further pairs kept above this mean probability.
    #[arg(long, default_value_t = 0.05)]
    pub score_threshold: f32,
    /// Drop a (slot, class) pair when a higher-scoring pair of the same class on another slot
    /// has masks overlapping it above this spatio-temporal IoU (two slots on one object); 1 (the
    /// default) keeps every pair, as the paper does. docs/model.md has its effect.
    #[arg(long, default_value_t = 1.0)]
    pub duplicate_iou: f64,
    /// Process only the first N videos (--ytvis).
    #[arg(long)]
    pub max_videos: Option<usize>,
    /// Process only the first N frames of each video.
    #[arg(long)]
    pub max_frames: Option<usize>,
}

/// The tracker of the drawn tracks.
fn tracker_config(args: &SegmentArgs) -> TrackerConfig {
    TrackerConfig::with_birth_score(args.show_threshold).with_birth_nms_iou(args.birth_nms_iou)
}

fn engine_spec(args: &SegmentArgs) -> EngineSpec {
    let mut spec = args.engine.spec(EngineKind::Onnxruntime);
    spec.ort.threads = args.threads;
    spec
}

pub fn segment(args: SegmentArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.duplicate_iou) {
        bail!(
            "--duplicate-iou {} is not an IoU in [0, 1] (1 keeps every result)",
            args.duplicate_iou
        );
    }
    if let Err(e) = tracker_config(&args).validate() {
        let flag = match e.field {
            "birth_nms_iou" => "--birth-nms-iou",
            _ => "--show-threshold",
        };
        bail!("{flag}: {}", e.reason);
    }
    let built = build_engine(&engine_spec(&args)).context("building the engine")?;
    tracing::info!(engine = %built.description, "engine built");
    let engine = built.engine.clone();
    let opts = ResultOptions {
        top_k: args.top_k,
        score_threshold: args.score_threshold,
        duplicate_iou: (args.duplicate_iou < 1.0).then_some(args.duplicate_iou),
        ..ResultOptions::default()
    };
    let run = Run {
        args: &args,
        engine,
        opts,
    };
    match (&args.input, &args.ytvis) {
        (Some(input), _) => run.file(input),
        (None, Some(root)) => run.ytvis(root),
        (None, None) => bail!("give a video file / URI, or --ytvis DIR --gt JSON"),
    }
}

fn progress(template: &str, len: Option<u64>) -> ProgressBar {
    let bar = len.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// One `inspro segment` run: the engine and the result rules, over a video or a YouTube-VIS split.
struct Run<'a> {
    args: &'a SegmentArgs,
    engine: Arc<dyn Engine>,
    opts: ResultOptions,
}

impl Run<'_> {
    /// Every video of the ground truth at `root` (its `JPEGImages/`), into one results file.
    fn ytvis(&self, root: &Path) -> anyhow::Result<()> {
        let Run { args, engine, opts } = self;
        let cfg = engine.config();
        let gt_path = args.gt.as_ref().context("--ytvis needs --gt")?;
        let results_path = args.results.as_ref().context("--ytvis needs --results")?;
        let gt = load_ground_truth(gt_path)?;
        let classes = category_ids(cfg, &gt).map_err(anyhow::Error::msg)?;
        let videos: Vec<_> = gt
            .videos
            .iter()
            .take(args.max_videos.unwrap_or(usize::MAX))
            .collect();
        let per_video = |n: usize| n.min(args.max_frames.unwrap_or(usize::MAX));
        let total_frames: usize = videos.iter().map(|v| per_video(v.file_names.len())).sum();
        let bar = progress(
            "{bar:40} {pos}/{len} frames {per_sec} eta {eta} {msg}",
            Some(total_frames as u64),
        );
        let mut sinks = Sinks::new(args, cfg, 15);
        let mut results = Vec::new();
        for (n, video) in videos.into_iter().enumerate() {
            let (w, h) = (video.width as usize, video.height as usize);
            let mut stream = StreamProcessor::new(engine.clone(), sinks.tracker);
            let mut acc = VideoAccumulator::new();
            bar.set_message(format!("video {}", video.id));
            for name in video
                .file_names
                .iter()
                .take(per_video(video.file_names.len()))
            {
                let path = root.join("JPEGImages").join(name);
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
                        gt_path.display()
                    );
                }
                let frame = FrameRef::packed(w, h, img.as_raw());
                let processed = stream.process(&frame)?;
                acc.add(&processed.output);
                // Only the first video goes into the overlay and the contact sheet.
                if n == 0 {
                    sinks.add(&frame, &stream, &processed.output)?;
                }
                bar.inc(1);
            }
            results.extend(acc.finish(video.id, &classes, opts));
        }
        bar.finish_and_clear();
        sinks.finish()?;
        inspro::ytvis::json::write_json(results_path, &results)?;
        eprintln!(
            "{}: wrote {} results for {} frames to {}",
            engine.name(),
            results.len(),
            total_frames,
            results_path.display()
        );
        Ok(())
    }

    /// One video file or URI.
    fn file(&self, input: &str) -> anyhow::Result<()> {
        let Run { args, engine, opts } = self;
        let cfg = engine.config();
        let (video_id, classes) = match &args.gt {
            Some(gt_path) => {
                let gt = load_ground_truth(gt_path)?;
                let id = gt
                    .videos
                    .first()
                    .map(|v| v.id)
                    .with_context(|| format!("{} lists no video", gt_path.display()))?;
                (id, category_ids(cfg, &gt).map_err(anyhow::Error::msg)?)
            }
            None => (1, (1..=cfg.num_classes as u64).collect()),
        };
        let mut decoder = VideoReader::open(input)?;
        let bar = progress("{spinner} {pos} frames {per_sec} {elapsed} {msg}", None);
        bar.set_message(format!(
            "{input} ({}x{}, {})",
            decoder.width,
            decoder.height,
            engine.name()
        ));
        let mut sinks = Sinks::new(args, cfg, decoder.fps);
        let mut stream = StreamProcessor::new(engine.clone(), sinks.tracker);
        let mut acc = VideoAccumulator::new();
        let mut frames = 0usize;
        while frames < args.max_frames.unwrap_or(usize::MAX) {
            let Some(data) = decoder.next_frame()? else {
                break;
            };
            let frame = decoder.frame(&data);
            let processed = stream.process(&frame)?;
            acc.add(&processed.output);
            sinks.add(&frame, &stream, &processed.output)?;
            frames += 1;
            bar.inc(1);
        }
        decoder.finish()?;
        bar.finish_and_clear();
        if frames == 0 {
            bail!("{input}: no frames decoded");
        }
        sinks.finish()?;
        let results: Vec<VideoResult> = acc.finish(video_id, &classes, opts);
        if let Some(path) = &args.results {
            inspro::ytvis::json::write_json(path, &results)?;
            eprintln!(
                "{}: wrote {} results for {frames} frames of {input} to {}",
                engine.name(),
                results.len(),
                path.display()
            );
        } else {
            eprintln!(
                "{}: {frames} frames of {input}, {} (slot, class) results (no --results file)",
                engine.name(),
                results.len()
            );
        }
        Ok(())
    }
}

/// Where the drawn frames go: the overlay video and the contact sheet.
struct Sinks {
    overlay_path: Option<PathBuf>,
    overlay: Option<VideoWriter>,
    sheet_path: Option<PathBuf>,
    sheet: ContactSheet,
    /// The tracks drawn: born at `--show-threshold`.
    tracker: TrackerConfig,
    class_names: Vec<String>,
    fps: u32,
}

/// Frames on the contact sheet.
const SHEET_FRAMES: usize = 12;

impl Sinks {
    fn new(args: &SegmentArgs, cfg: &ModelConfig, fps: u32) -> Self {
        Self {
            overlay_path: args.overlay.clone(),
            overlay: None,
            sheet_path: args.contact_sheet.clone(),
            sheet: ContactSheet::new(SHEET_FRAMES),
            tracker: tracker_config(args),
            class_names: (0..cfg.num_classes).map(|i| cfg.class_name(i)).collect(),
            fps,
        }
    }

    fn add(
        &mut self,
        frame: &FrameRef<'_>,
        stream: &StreamProcessor,
        out: &inspro::runtime::FrameOutput,
    ) -> anyhow::Result<()> {
        if self.overlay_path.is_none() && self.sheet_path.is_none() {
            return Ok(());
        }
        let tracks: Vec<_> = stream.tracker().active().collect();
        let names = &self.class_names;
        let marks = render::track_marks(out, &tracks, |c| {
            names.get(c).cloned().unwrap_or_else(|| c.to_string())
        });
        let (w, h) = (frame.width, frame.height);
        let rgb = render::draw_rgb(frame.to_packed(), w, h, &marks);
        if let Some(path) = &self.overlay_path {
            if self.overlay.is_none() {
                let opts = WriterOptions {
                    fps: self.fps,
                    ..WriterOptions::default()
                };
                self.overlay = Some(VideoWriter::create(path, w, h, &opts)?);
            }
            if let Some(writer) = self.overlay.as_mut() {
                writer.write(&FrameRef::packed(w, h, &rgb))?;
            }
        }
        if self.sheet_path.is_some() {
            self.sheet.offer(out.frame_index, &rgb, w, h);
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Some(writer) = self.overlay {
            let path = writer.finish()?;
            eprintln!("wrote overlay video {}", path.display());
        }
        if let Some(path) = &self.sheet_path {
            let n = self.sheet.write_png(path)?;
            eprintln!(
                "wrote contact sheet {} ({n} frames; classes: {})",
                path.display(),
                self.class_names.join(", ")
            );
        }
        Ok(())
    }
}
