//! `inspro segment`: run the model over a video file / URI (decoded by GStreamer's
//! `gst-launch-1.0`) or over every video of a YouTube-VIS layout, frames in order, one stream
//! state per video; write YouTube-VIS results json (spec §1.8), an overlay video with coloured
//! masks, boxes and slot ids, and a contact-sheet PNG.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context};
use candle_core::Device;
use image::{imageops, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};
use inspro::export::{self, Weights};
use inspro::model::{FrameRef, InsPro, ModelConfig};
use inspro::runtime::{CandleEngine, Engine, OrtEngine, OrtOptions, Provider};
use inspro::tracking::video::category_ids;
use inspro::tracking::{FrameOutput, ResultOptions, VideoAccumulator};
use inspro::ytvis::{load_ground_truth, VideoResult};

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// The exported graphs run by ONNX Runtime (default; CPU, CUDA or TensorRT).
    Onnxruntime,
    /// The candle network (pure Rust reference).
    Candle,
}

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
    /// Model config (TOML).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights (safetensors). Without them the model is randomly initialised (say so loudly).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Onnxruntime)]
    pub engine: EngineKind,
    /// For onnxruntime: a directory made by `inspro export`; without it the model is exported
    /// into a temporary directory first.
    #[arg(long)]
    pub engine_dir: Option<PathBuf>,
    /// For onnxruntime: execution provider (falls back to the CPU with a warning).
    #[arg(long, default_value = "cpu", value_parser = parse_provider)]
    pub provider: Provider,
    /// For onnxruntime: intra-op threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// For onnxruntime with TensorRT: engine and timing cache directory (default:
    /// <engine dir>/trt_cache).
    #[arg(long)]
    pub trt_cache: Option<PathBuf>,
    /// For onnxruntime: libonnxruntime.so (default: ORT_DYLIB_PATH, then .venv).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// Write an overlay video (Matroska, H.264) with masks, boxes and slot ids.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Write a contact sheet (PNG) of up to 12 overlay frames spread over the video.
    #[arg(long)]
    pub contact_sheet: Option<PathBuf>,
    /// Slots drawn in the overlay: best class probability at least this.
    #[arg(long, default_value_t = 0.3)]
    pub show_threshold: f32,
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

fn parse_provider(s: &str) -> Result<Provider, String> {
    s.parse()
}

/// A temporary engine directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn build_engine(
    args: &SegmentArgs,
    cfg: &ModelConfig,
) -> anyhow::Result<(Arc<dyn Engine>, Option<TempDir>)> {
    if args.weights.is_none() && args.engine_dir.is_none() {
        tracing::warn!("no --weights: the model is RANDOMLY INITIALISED, its results mean nothing");
    }
    match args.engine {
        EngineKind::Candle => {
            let dev = Device::Cpu;
            let model = match &args.weights {
                Some(w) => InsPro::load(cfg, w, &dev)?,
                None => InsPro::random(cfg, 0, &dev)?.0,
            };
            Ok((Arc::new(CandleEngine::new(Arc::new(model))), None))
        }
        EngineKind::Onnxruntime => {
            let mut temp = None;
            let dir = match &args.engine_dir {
                Some(d) => d.clone(),
                None => {
                    let dir =
                        std::env::temp_dir().join(format!("inspro-segment-{}", std::process::id()));
                    let weights = match &args.weights {
                        Some(w) => Weights::from_safetensors(w)?,
                        None => {
                            let (_, vm) = InsPro::random(cfg, 0, &Device::Cpu)?;
                            Weights::from_varmap(&vm, "random(seed=0)")?
                        }
                    };
                    tracing::info!(
                        dir = %dir.display(),
                        "exporting the model for ONNX Runtime (`inspro export` once and --engine-dir skip this)"
                    );
                    temp = Some(TempDir(dir.clone()));
                    export::export(
                        cfg,
                        &weights,
                        &dir,
                        &export::ExportOptions {
                            // Static shapes for the GPU providers, 4x less pooling on the CPU.
                            pooler: if args.provider == Provider::Cpu {
                                export::Pooler::Gather
                            } else {
                                export::Pooler::Static
                            },
                            trunk: false,
                        },
                    )
                    .with_context(|| format!("exporting {}", cfg.name))?;
                    dir
                }
            };
            let opts = OrtOptions {
                library: args.ort_library.clone(),
                provider: args.provider,
                threads: args.threads,
                trt_cache_dir: args.trt_cache.clone(),
                ..OrtOptions::default()
            };
            let engine = OrtEngine::load(&dir, &opts)
                .with_context(|| format!("loading the ONNX Runtime engine {}", dir.display()))?;
            if &engine.manifest.model != cfg {
                tracing::warn!(
                    engine = %dir.display(),
                    "the engine's manifest was made from a different model config than --model; using the engine's"
                );
            }
            Ok((Arc::new(engine), temp))
        }
    }
}

pub fn segment(args: SegmentArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.duplicate_iou) {
        bail!(
            "--duplicate-iou {} is not an IoU in [0, 1] (1 keeps every result)",
            args.duplicate_iou
        );
    }
    let cfg = ModelConfig::from_file(&args.model)?;
    let (engine, _temp) = build_engine(&args, &cfg)?;
    let cfg = engine.config().clone();
    let opts = ResultOptions {
        top_k: args.top_k,
        score_threshold: args.score_threshold,
        duplicate_iou: (args.duplicate_iou < 1.0).then_some(args.duplicate_iou),
        ..ResultOptions::default()
    };
    match (&args.input, &args.ytvis) {
        (Some(input), _) => segment_file(&args, engine.as_ref(), &cfg, input, &opts),
        (None, Some(root)) => segment_ytvis(&args, engine.as_ref(), &cfg, root, &opts),
        (None, None) => bail!("give a video file / URI, or --ytvis DIR --gt JSON"),
    }
}

fn segment_ytvis(
    args: &SegmentArgs,
    engine: &dyn Engine,
    cfg: &ModelConfig,
    root: &Path,
    opts: &ResultOptions,
) -> anyhow::Result<()> {
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
    let bar = ProgressBar::new(total_frames as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} frames {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut sinks = Sinks::new(args, engine.config())?;
    let mut results = Vec::new();
    for video in videos {
        let (w, h) = (video.width as usize, video.height as usize);
        let mut state = engine.init_state(w, h)?;
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
            let out = engine.step(&frame, &mut state)?;
            acc.add(&out);
            // Only the first video goes into the overlay and the contact sheet.
            if results.is_empty() && sinks.video_id.is_none_or(|id| id == video.id) {
                sinks.video_id = Some(video.id);
                sinks.add(&frame, &out, 15)?;
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

fn segment_file(
    args: &SegmentArgs,
    engine: &dyn Engine,
    cfg: &ModelConfig,
    input: &str,
    opts: &ResultOptions,
) -> anyhow::Result<()> {
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
    let mut decoder = GstDecoder::open(input)?;
    let (w, h) = (decoder.width, decoder.height);
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} frames {per_sec} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("{input} ({w}x{h}, {})", engine.name()));
    let mut sinks = Sinks::new(args, cfg)?;
    let mut state = engine.init_state(w, h)?;
    let mut acc = VideoAccumulator::new();
    let mut frames = 0usize;
    while frames < args.max_frames.unwrap_or(usize::MAX) {
        let Some(data) = decoder.next_frame()? else {
            break;
        };
        let frame = FrameRef {
            width: w,
            height: h,
            stride: decoder.stride,
            data: &data,
        };
        let out = engine.step(&frame, &mut state)?;
        acc.add(&out);
        sinks.add(&frame, &out, decoder.fps)?;
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

/// `gst-launch-1.0` needs quotes around values with spaces.
fn gst_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The GStreamer source part of a pipeline for a file path or a URI.
fn gst_source(input: &str) -> anyhow::Result<String> {
    if input.contains("://") {
        return Ok(format!("uridecodebin uri={}", gst_quote(input)));
    }
    let path = Path::new(input);
    if !path.exists() {
        bail!("{input}: no such file");
    }
    Ok(format!(
        "filesrc location={} ! decodebin",
        gst_quote(&path.display().to_string())
    ))
}

fn gst_command() -> Command {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.stdin(Stdio::null());
    cmd
}

fn gst_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "gst-launch-1.0 is not on PATH; install the GStreamer tools (`scripts/setup.sh apt`)"
        )
    } else {
        anyhow::anyhow!("cannot run gst-launch-1.0: {e}")
    }
}

/// Raw RGB rows are padded to 4 bytes in GStreamer's default layout.
fn rgb_stride(width: usize) -> usize {
    (width * 3).div_ceil(4) * 4
}

/// Frames of a video decoded by `gst-launch-1.0 … ! video/x-raw,format=RGB ! fdsink`.
struct GstDecoder {
    child: Child,
    stdout: ChildStdout,
    width: usize,
    height: usize,
    stride: usize,
    fps: u32,
}

impl GstDecoder {
    fn open(input: &str) -> anyhow::Result<Self> {
        let source = gst_source(input)?;
        let convert = "videoconvert ! video/x-raw,format=RGB";
        // Probe the decoded size with one buffer (-v prints the negotiated caps).
        let probe = gst_command()
            .arg("-v")
            .args(format!("{source} ! {convert} ! fakesink num-buffers=1").split(' '))
            .output()
            .map_err(gst_error)?;
        let text = String::from_utf8_lossy(&probe.stdout);
        let caps = text
            .lines()
            .rfind(|l| l.contains("caps = video/x-raw") && l.contains("format=(string)RGB"))
            .with_context(|| {
                format!(
                    "{input}: GStreamer could not decode it to RGB video: {}",
                    String::from_utf8_lossy(&probe.stderr).trim()
                )
            })?;
        let field = |name: &str| -> Option<usize> {
            let rest = caps.split(&format!("{name}=(int)")).nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        let (width, height) = field("width")
            .zip(field("height"))
            .with_context(|| format!("{input}: no size in the caps `{caps}`"))?;
        let fps = caps
            .split("framerate=(fraction)")
            .nth(1)
            .and_then(|r| {
                let (n, d) = r.split_once('/')?;
                let d: String = d.chars().take_while(char::is_ascii_digit).collect();
                Some((n.parse::<f64>().ok()?, d.parse::<f64>().ok()?))
            })
            .filter(|(n, d)| *n > 0.0 && *d > 0.0)
            .map_or(25, |(n, d)| (n / d).round().max(1.0) as u32);
        let mut child = gst_command()
            .arg("-q")
            .args(format!("{source} ! {convert} ! fdsink fd=1").split(' '))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(gst_error)?;
        let stdout = child.stdout.take().context("gst-launch-1.0 stdout")?;
        Ok(Self {
            child,
            stdout,
            width,
            height,
            stride: rgb_stride(width),
            fps,
        })
    }

    /// The next frame (stride x height bytes), or `None` at the end.
    fn next_frame(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; self.stride * self.height];
        let mut filled = 0;
        while filled < buf.len() {
            let n = self
                .stdout
                .read(&mut buf[filled..])
                .context("reading decoded frames")?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                bail!(
                    "the decoder stopped inside a frame ({filled} of {} bytes)",
                    buf.len()
                );
            }
            filled += n;
        }
        Ok(Some(buf))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        let mut sink = Vec::new();
        let _ = self.stdout.read_to_end(&mut sink);
        let out = self
            .child
            .wait_with_output()
            .context("waiting for gst-launch-1.0")?;
        if !out.status.success() {
            bail!(
                "gst-launch-1.0 (decoder) failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// `gst-launch-1.0 fdsrc ! rawvideoparse ! x264enc ! matroskamux ! filesink` fed RGB frames.
struct GstEncoder {
    child: Child,
    stdin: Option<ChildStdin>,
    path: PathBuf,
    width: usize,
    height: usize,
}

impl GstEncoder {
    fn open(path: &Path, width: usize, height: usize, fps: u32) -> anyhow::Result<Self> {
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            bail!(
                "the overlay video needs an even width and height, the frames are {width}x{height}"
            );
        }
        let pipeline = format!(
            "fdsrc fd=0 ! rawvideoparse width={width} height={height} format=rgb framerate={fps}/1 \
             ! videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=veryfast tune=zerolatency \
             ! h264parse ! matroskamux ! filesink location={}",
            gst_quote(&path.display().to_string())
        );
        let mut child = Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(gst_error)?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            path: path.to_path_buf(),
            width,
            height,
        })
    }

    fn write(&mut self, img: &RgbImage) -> anyhow::Result<()> {
        let stride = rgb_stride(self.width);
        let mut buf = vec![0u8; stride * self.height];
        for (y, row) in img.as_raw().chunks_exact(self.width * 3).enumerate() {
            buf[y * stride..y * stride + row.len()].copy_from_slice(row);
        }
        self.stdin
            .as_mut()
            .context("overlay encoder closed")?
            .write_all(&buf)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let out = self
            .child
            .wait_with_output()
            .context("waiting for gst-launch-1.0")?;
        if !out.status.success() {
            bail!(
                "gst-launch-1.0 (overlay encoder for {}) failed ({}): {}",
                self.path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Where the drawn frames go: the overlay video and the contact sheet.
struct Sinks {
    overlay_path: Option<PathBuf>,
    overlay: Option<GstEncoder>,
    sheet_path: Option<PathBuf>,
    /// (frame index, thumbnail); thinned to every `sheet_step`-th frame when it fills up.
    thumbs: Vec<(u64, RgbImage)>,
    sheet_step: u64,
    show_threshold: f32,
    class_names: Vec<String>,
    video_id: Option<u64>,
}

const SHEET_KEEP: usize = 48;
const SHEET_FRAMES: usize = 12;
const SHEET_COLUMNS: usize = 4;
const THUMB_WIDTH: u32 = 320;

impl Sinks {
    fn new(args: &SegmentArgs, cfg: &ModelConfig) -> anyhow::Result<Self> {
        Ok(Self {
            overlay_path: args.overlay.clone(),
            overlay: None,
            sheet_path: args.contact_sheet.clone(),
            thumbs: Vec::new(),
            sheet_step: 1,
            show_threshold: args.show_threshold,
            class_names: (0..cfg.num_classes).map(|i| cfg.class_name(i)).collect(),
            video_id: None,
        })
    }

    fn add(&mut self, frame: &FrameRef<'_>, out: &FrameOutput, fps: u32) -> anyhow::Result<()> {
        if self.overlay_path.is_none() && self.sheet_path.is_none() {
            return Ok(());
        }
        let img = draw_overlay(frame, out, self.show_threshold);
        if let Some(path) = &self.overlay_path {
            if self.overlay.is_none() {
                self.overlay = Some(GstEncoder::open(path, frame.width, frame.height, fps)?);
            }
            if let Some(enc) = self.overlay.as_mut() {
                enc.write(&img)?;
            }
        }
        if self.sheet_path.is_some() && out.frame_index.is_multiple_of(self.sheet_step) {
            let tw = THUMB_WIDTH.min(img.width());
            let th = (img.height() * tw / img.width()).max(1);
            let mut thumb = imageops::resize(&img, tw, th, imageops::FilterType::Triangle);
            draw_number(&mut thumb, 4, 4, out.frame_index, [255, 255, 255], 2);
            self.thumbs.push((out.frame_index, thumb));
            if self.thumbs.len() >= SHEET_KEEP {
                self.sheet_step *= 2;
                let step = self.sheet_step;
                self.thumbs.retain(|(i, _)| i % step == 0);
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if let Some(enc) = self.overlay {
            let path = enc.path.clone();
            enc.finish()?;
            eprintln!("wrote overlay video {}", path.display());
        }
        if let Some(path) = &self.sheet_path {
            if self.thumbs.is_empty() {
                bail!("no frames for the contact sheet {}", path.display());
            }
            let picks: Vec<&RgbImage> = if self.thumbs.len() <= SHEET_FRAMES {
                self.thumbs.iter().map(|(_, t)| t).collect()
            } else {
                (0..SHEET_FRAMES)
                    .map(|i| &self.thumbs[i * (self.thumbs.len() - 1) / (SHEET_FRAMES - 1)].1)
                    .collect()
            };
            let (tw, th) = (picks[0].width(), picks[0].height());
            let cols = SHEET_COLUMNS.min(picks.len()) as u32;
            let rows = picks.len().div_ceil(SHEET_COLUMNS) as u32;
            let gap = 4;
            let mut sheet = RgbImage::from_pixel(
                cols * (tw + gap) + gap,
                rows * (th + gap) + gap,
                image::Rgb([24, 24, 24]),
            );
            for (i, t) in picks.iter().enumerate() {
                let (c, r) = (i as u32 % cols, i as u32 / cols);
                imageops::overlay(
                    &mut sheet,
                    *t,
                    i64::from(gap + c * (tw + gap)),
                    i64::from(gap + r * (th + gap)),
                );
            }
            sheet
                .save(path)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote contact sheet {} ({} frames; classes: {})",
                path.display(),
                picks.len(),
                self.class_names.join(", ")
            );
        }
        Ok(())
    }
}

/// A colour per slot (golden-angle hues).
fn slot_colour(slot: usize) -> [u8; 3] {
    let h = (slot as f32 * 137.508) % 360.0;
    let (s, v) = (0.85f32, 1.0f32);
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|u| ((u + m) * 255.0) as u8)
}

/// The frame with the masks (50 % colour), boxes and slot ids of the slots whose best class
/// probability is at least `threshold`.
fn draw_overlay(frame: &FrameRef<'_>, out: &FrameOutput, threshold: f32) -> RgbImage {
    let (w, h) = (frame.width, frame.height);
    let mut img = RgbImage::new(w as u32, h as u32);
    for y in 0..h {
        let row = &frame.data[y * frame.stride..y * frame.stride + w * 3];
        img.as_mut()[y * w * 3..(y + 1) * w * 3].copy_from_slice(row);
    }
    for slot in 0..out.num_slots() {
        let (_, p) = out.best_class(slot);
        if p < threshold {
            continue;
        }
        let colour = slot_colour(slot);
        let rect = out.box_rect(&out.boxes_xyxy[slot]);
        let logits = out.mask_logits_in(slot, rect);
        let rw = rect[2] - rect[0];
        for (i, v) in logits.iter().enumerate() {
            if *v > 0.0 {
                let (x, y) = (rect[0] + i % rw.max(1), rect[1] + i / rw.max(1));
                let px = img.get_pixel_mut(x as u32, y as u32);
                for (v, c) in px.0.iter_mut().zip(colour) {
                    *v = ((u16::from(*v) + u16::from(c)) / 2) as u8;
                }
            }
        }
        draw_rect(&mut img, rect, colour);
        draw_number(
            &mut img,
            rect[0] as u32 + 2,
            rect[1] as u32 + 2,
            slot as u64,
            colour,
            2,
        );
    }
    img
}

fn draw_rect(img: &mut RgbImage, [x0, y0, x1, y1]: [usize; 4], colour: [u8; 3]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if x1 <= x0 || y1 <= y0 || w == 0 || h == 0 {
        return;
    }
    let (x1, y1) = (x1.min(w) - 1, y1.min(h) - 1);
    for t in 0..2 {
        for x in x0..=x1 {
            for y in [y0 + t, y1.saturating_sub(t)] {
                if y < h {
                    img.put_pixel(x as u32, y as u32, image::Rgb(colour));
                }
            }
        }
        for y in y0..=y1 {
            for x in [x0 + t, x1.saturating_sub(t)] {
                if x < w {
                    img.put_pixel(x as u32, y as u32, image::Rgb(colour));
                }
            }
        }
    }
}

/// 3x5 digits, one row per u8 (3 low bits, left = 4).
const DIGITS: [[u8; 5]; 10] = [
    [7, 5, 5, 5, 7],
    [2, 6, 2, 2, 7],
    [7, 1, 7, 4, 7],
    [7, 1, 7, 1, 7],
    [5, 5, 7, 1, 1],
    [7, 4, 7, 1, 7],
    [7, 4, 7, 5, 7],
    [7, 1, 1, 1, 1],
    [7, 5, 7, 5, 7],
    [7, 5, 7, 1, 7],
];

/// `value` in a 3x5 pixel font scaled by `scale`, on a dark box.
fn draw_number(img: &mut RgbImage, x: u32, y: u32, value: u64, colour: [u8; 3], scale: u32) {
    let text = value.to_string();
    let (cw, ch) = (4 * scale, 5 * scale);
    let width = cw * text.len() as u32 + scale;
    for dy in 0..ch + 2 * scale {
        for dx in 0..width + scale {
            let (px, py) = (x + dx, y + dy);
            if px < img.width() && py < img.height() {
                img.put_pixel(px, py, image::Rgb([0, 0, 0]));
            }
        }
    }
    for (i, d) in text.bytes().enumerate() {
        let glyph = DIGITS[usize::from(d - b'0')];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3u32 {
                if bits & (4 >> col) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let px = x + scale + i as u32 * cw + col * scale + sx;
                        let py = y + scale + row as u32 * scale + sy;
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, image::Rgb(colour));
                        }
                    }
                }
            }
        }
    }
}
