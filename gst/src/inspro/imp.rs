//! The element's implementation (after gst-plugins-rs' burn-yoloxinference): settings apart from
//! the streaming state, the engine loaded in `start()` and dropped in `stop()`, in-place
//! processing, the stream state reset on stream-start, flush-stop and caps changes.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::VideoFrameRef;

use inspro::frame::FrameRef;
use inspro::render::{self, Mark};
use inspro::runtime::{build_engine, BuiltEngine, EngineSpec, OrtOptions, Provider};
use inspro::tracking::rules::{RuleState, Rules};
use inspro::tracking::{EndReason, ProcessedFrame, StreamProcessor, TrackerConfig};

use super::meta::{FrameTracks, LineCrossing};
use super::pixels::{self, Canvas, Layout, Planes, Yuv};
use super::{EngineKind, ExecutionProvider, LINE_MESSAGE_NAME, MESSAGE_NAME, TRACKS_META};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "inspro",
        gst::DebugColorFlags::empty(),
        Some("InsPro video instance segmentation"),
    )
});

const DEFAULT_SCORE_THRESHOLD: f32 = 0.5;
const DEFAULT_BIRTH_NMS_IOU: f32 = 1.0;
const DEFAULT_KEY_FRAME_INTERVAL: i32 = -1;
/// ONNX Runtime, as the daemon: candle (3.5x slower on the CPU) when no library loads.
const DEFAULT_ENGINE: EngineKind = EngineKind::Onnxruntime;
const DEFAULT_EXECUTION_PROVIDER: ExecutionProvider = ExecutionProvider::Auto;
/// Seed of the random weights used when `weights` is unset (deterministic, for tests and demos).
const RANDOM_WEIGHTS_SEED: u64 = 0;

impl From<ExecutionProvider> for Provider {
    fn from(p: ExecutionProvider) -> Self {
        match p {
            ExecutionProvider::Cpu => Provider::Cpu,
            ExecutionProvider::Cuda => Provider::Cuda,
            ExecutionProvider::Tensorrt => Provider::Tensorrt,
            ExecutionProvider::Auto => Provider::Auto,
        }
    }
}

impl From<EngineKind> for inspro::runtime::EngineKind {
    fn from(k: EngineKind) -> Self {
        match k {
            EngineKind::Onnxruntime => Self::Onnxruntime,
            EngineKind::Candle => Self::Candle,
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    weights: Option<PathBuf>,
    engine: EngineKind,
    execution_provider: ExecutionProvider,
    score_threshold: f32,
    birth_nms_iou: f32,
    key_frame_interval: i32,
    draw: bool,
    emit_messages: bool,
    rules: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            weights: None,
            engine: DEFAULT_ENGINE,
            execution_provider: DEFAULT_EXECUTION_PROVIDER,
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            birth_nms_iou: DEFAULT_BIRTH_NMS_IOU,
            key_frame_interval: DEFAULT_KEY_FRAME_INTERVAL,
            draw: false,
            emit_messages: false,
            rules: None,
        }
    }
}

impl Settings {
    /// The tracker the properties ask for.
    fn tracker(&self) -> TrackerConfig {
        TrackerConfig::with_birth_score(self.score_threshold).with_birth_nms_iou(self.birth_nms_iou)
    }
}

/// Everything between `start()` and `stop()`.
struct State {
    processor: StreamProcessor,
    info: Option<gst_video::VideoInfo>,
    yuv: Yuv,
    /// Scratch RGB frame for formats that are not packed RGB already.
    rgb: Vec<u8>,
    /// Ids of tracks ended by a reset, reported on the next frame.
    ended: Vec<u64>,
    /// The `rules` file's zones, lines and filters, and where each track stood.
    rules: Rules,
    rule_state: RuleState,
    /// The engine and the graphs exported for it at start (removed at stop, after the
    /// processor's handle).
    _engine: BuiltEngine,
}

impl State {
    fn reset(&mut self) {
        let events = self.processor.reset(EndReason::StreamRestart);
        self.ended.extend(events.iter().map(|e| e.track().id));
    }
}

/// Time spent since `start()`: in the engine (`StreamProcessor::process`) and in the element's
/// own work around it (mapping, colour conversion, RLE, meta, messages, overlay).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    frames: u64,
    engine: Duration,
    element: Duration,
}

impl Stats {
    fn structure(&self) -> gst::Structure {
        let per_frame = |d: Duration| {
            if self.frames == 0 {
                0.0
            } else {
                d.as_secs_f64() * 1e3 / self.frames as f64
            }
        };
        gst::Structure::builder("inspro-stats")
            .field("frames", self.frames)
            .field("engine-ms", per_frame(self.engine))
            .field("element-ms", per_frame(self.element))
            .build()
    }
}

#[derive(Default)]
pub struct InsPro {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<Stats>,
}

#[glib::object_subclass]
impl ObjectSubclass for InsPro {
    const NAME: &'static str = "GstInsPro";
    type Type = super::InsProElement;
    type ParentType = gst_base::BaseTransform;
}

impl InsPro {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine the settings ask for, from the runtime's one factory: `weights` names
    /// safetensors or an exported engine (its directory, `manifest.json` or a graph in it);
    /// unset, random weights (a warning is posted).
    fn load_engine(&self, s: &Settings) -> Result<BuiltEngine, gst::ErrorMessage> {
        let spec = EngineSpec {
            kind: s.engine.into(),
            model: s.model.clone(),
            weights: s.weights.clone(),
            // As the daemon: `$INSPRO_ENGINES/<model name>/model.safetensors` (default `engines/`).
            default_weights: true,
            seed: RANDOM_WEIGHTS_SEED,
            key_frame_interval: usize::try_from(s.key_frame_interval).ok(),
            ort: OrtOptions {
                provider: s.execution_provider.into(),
                ..OrtOptions::default()
            },
            candle_fallback: true,
            ..EngineSpec::default()
        };
        let built = build_engine(&spec).map_err(|e| match e.field {
            "model" if s.model.is_none() => gst::error_msg!(
                gst::LibraryError::Settings,
                ("property `model` is not set (a model config, e.g. configs/models/inspro-small.toml)")
            ),
            "model" => {
                gst::error_msg!(gst::ResourceError::OpenRead, ("model config: {}", e.reason))
            }
            "weights" | "engine_dir" => {
                gst::error_msg!(gst::ResourceError::OpenRead, ("{}: {}", e.field, e.reason))
            }
            _ => gst::error_msg!(gst::LibraryError::Settings, ("{}", e.reason)),
        })?;
        if built.random_weights {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                ("property `weights` is not set: the model has RANDOM weights, its detections are meaningless")
            );
        }
        let want = Provider::from(s.execution_provider);
        let name = built.engine.name();
        let onnxruntime = name.starts_with("onnxruntime");
        if s.engine == EngineKind::Onnxruntime && !onnxruntime {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Init,
                (
                    "ONNX Runtime cannot be loaded ({}); running the candle engine, about 3.5x slower",
                    inspro::runtime::onnxruntime::SETUP_HINT
                )
            );
        } else if s.engine == EngineKind::Onnxruntime
            && want != Provider::Auto
            && !name.ends_with(&format!("/{want}"))
        {
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Init,
                (
                    "execution-provider {} is not available from this ONNX Runtime; running {}",
                    want,
                    name
                )
            );
        }
        Ok(built)
    }

    /// Run the engine on a mapped frame (read access only).
    fn process(
        &self,
        state: &mut State,
        frame: &VideoFrameRef<&gst::BufferRef>,
        layout: Layout,
    ) -> Result<(ProcessedFrame, Duration), gst::FlowError> {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let planes = frame.planes_data();
        let strides = frame.plane_stride();
        let stride = |i: usize| strides.get(i).map_or(0, |&s| s.max(0) as usize);
        let result = if layout == Layout::RGB {
            // RGB as it is: rows read at the frame's stride, no copy.
            let f = FrameRef {
                width: w,
                height: h,
                stride: stride(0),
                data: planes[0],
            };
            let t = Instant::now();
            state.processor.process(&f).map(|p| (p, t.elapsed()))
        } else {
            let p = Planes {
                layout,
                width: w,
                height: h,
                data: [planes[0], planes[1], planes[2]],
                strides: [stride(0), stride(1), stride(2)],
            };
            let mut rgb = std::mem::take(&mut state.rgb);
            pixels::to_rgb(&p, &state.yuv, &mut rgb);
            let t = Instant::now();
            let r = state
                .processor
                .process(&FrameRef::packed(w, h, &rgb))
                .map(|p| (p, t.elapsed()));
            state.rgb = rgb;
            r
        };
        result.map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("engine: {}", e));
            gst::FlowError::Error
        })
    }

    fn post_message(&self, tracks: &FrameTracks, buf: &gst::BufferRef) {
        let mut s = tracks.structure(MESSAGE_NAME);
        let segment = self.obj().segment();
        let segment = segment.downcast_ref::<gst::ClockTime>();
        let pts = buf.pts();
        // As `level` does: buffer timestamp, stream time, running time, duration.
        s.set("timestamp", pts);
        s.set(
            "stream-time",
            pts.and_then(|t| segment.and_then(|seg| seg.to_stream_time(t))),
        );
        s.set(
            "running-time",
            pts.and_then(|t| segment.and_then(|seg| seg.to_running_time(t))),
        );
        s.set("duration", buf.duration());
        let msg = gst::message::Element::builder(s).src(&*self.obj()).build();
        let _ = self.obj().post_message(msg);
    }
}

impl InsPro {
    /// A line of the `rules` file crossed: an `inspro-line` element message, always posted.
    fn post_crossing(&self, c: &LineCrossing, frame: u64) {
        let s = gst::Structure::builder(LINE_MESSAGE_NAME)
            .field("frame", frame)
            .field("line", c.line.as_str())
            .field("direction", c.direction)
            .field("id", c.id)
            .field("label", c.label.as_str())
            .build();
        let msg = gst::message::Element::builder(s).src(&*self.obj()).build();
        let _ = self.obj().post_message(msg);
    }
}

impl ObjectImpl for InsPro {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model config")
                    .blurb("Path of the model config (TOML), e.g. configs/models/inspro-small.toml. Required, except with engine=onnxruntime and an exported engine in `weights` (its manifest holds the config).")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("weights")
                    .nick("Weights")
                    .blurb("Path of the weights: safetensors (both engines; engine=onnxruntime exports them at start), or for engine=onnxruntime an engine written by `inspro export` (its directory or manifest.json). Unset: the shipped weights $INSPRO_ENGINES/<model name>/model.safetensors (default engines/ in the working directory), as the daemon finds them; without those, random weights and meaningless detections (a warning is posted).")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("engine", DEFAULT_ENGINE)
                    .nick("Engine")
                    .blurb("Which engine runs the network")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "execution-provider",
                    DEFAULT_EXECUTION_PROVIDER,
                )
                .nick("Execution provider")
                .blurb("Where the engine runs (cuda and tensorrt need engine=onnxruntime)")
                .mutable_ready()
                .build(),
                glib::ParamSpecFloat::builder("score-threshold")
                    .nick("Score threshold")
                    .blurb("Class probability a query slot needs to become a track (the tracker's birth score; tracks are kept down to 0.6x this). Changeable while playing.")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_SCORE_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("birth-nms-iou")
                    .nick("Birth NMS IoU")
                    .blurb("A slot whose box overlaps a track seen on the frame by more than this IoU is a second slot on one object and is not born (class-agnostic; 1 = every slot, as the paper). Changeable while playing.")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_BIRTH_NMS_IOU)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecInt::builder("key-frame-interval")
                    .nick("Key-frame interval")
                    .blurb("InsPro-lite: run every stage on one frame in K, 0 = on every frame, -1 = the model config's value")
                    .minimum(-1)
                    .maximum(i32::MAX)
                    .default_value(DEFAULT_KEY_FRAME_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("draw")
                    .nick("Draw")
                    .blurb("Draw masks, boxes and track ids into the frame. Changeable while playing.")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("rules")
                    .nick("Rules file")
                    .blurb("A TOML file of zones, lines and label filters in frame pixels, the keys of the daemon's camera tables: [[zone]] name/coordinates, [[line]] name/points/direction, [filters.<label>] min_area/max_area/min_score. Tracks get current-zones/entered-zones in the meta; a crossing posts an `inspro-line` message.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Since start: frames, mean engine time per frame (engine-ms) and mean time of the element's own work around it per frame (element-ms: mapping, colour conversion, RLE, meta, overlay)")
                    .read_only()
                    .build(),
                glib::ParamSpecBoolean::builder("emit-messages")
                    .nick("Emit messages")
                    .blurb("Post an `inspro-tracks` element message per frame (as `level` does). Changeable while playing.")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings();
        let path = |v: &glib::Value| {
            v.get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        };
        match pspec.name() {
            "model" => s.model = path(value),
            "weights" => s.weights = path(value),
            "engine" => s.engine = value.get().expect("type checked upstream"),
            "execution-provider" => {
                s.execution_provider = value.get().expect("type checked upstream")
            }
            "score-threshold" => {
                s.score_threshold = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "score-threshold set to {}",
                    s.score_threshold
                );
            }
            "birth-nms-iou" => s.birth_nms_iou = value.get().expect("type checked upstream"),
            "key-frame-interval" => {
                s.key_frame_interval = value.get().expect("type checked upstream")
            }
            "draw" => s.draw = value.get().expect("type checked upstream"),
            "emit-messages" => s.emit_messages = value.get().expect("type checked upstream"),
            "rules" => s.rules = path(value),
            other => unreachable!("no property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        match pspec.name() {
            "model" => path(&s.model).to_value(),
            "weights" => path(&s.weights).to_value(),
            "engine" => s.engine.to_value(),
            "execution-provider" => s.execution_provider.to_value(),
            "score-threshold" => s.score_threshold.to_value(),
            "birth-nms-iou" => s.birth_nms_iou.to_value(),
            "key-frame-interval" => s.key_frame_interval.to_value(),
            "draw" => s.draw.to_value(),
            "emit-messages" => s.emit_messages.to_value(),
            "rules" => path(&s.rules).to_value(),
            "stats" => {
                drop(s);
                self.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .structure()
                    .to_value()
            }
            other => unreachable!("no property {other}"),
        }
    }
}

impl GstObjectImpl for InsPro {}

impl ElementImpl for InsPro {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "InsPro video instance segmentation",
                "Filter/Analyzer/Video",
                "Segments and tracks object instances online (InsPro): every buffer gets an \
                 InsProTracksMeta custom meta (track ids, labels, scores, boxes, COCO RLE masks); \
                 optional inspro-tracks bus messages and an overlay (draw=true). Video passes \
                 through unchanged unless draw=true.",
                "InsPro Edge",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(pixels::FORMATS)
                .build();
            let pad = |name, dir| {
                gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps)
                    .expect("static pad template")
            };
            vec![
                pad("src", gst::PadDirection::Src),
                pad("sink", gst::PadDirection::Sink),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for InsPro {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings().clone();
        let t0 = Instant::now();
        let rules = match &settings.rules {
            Some(path) => Rules::from_file(path)
                .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("rules: {}", e)))?,
            None => Rules::default(),
        };
        let built = self.load_engine(&settings)?;
        let engine = built.engine.clone();
        gst::info!(
            CAT,
            imp = self,
            "engine {} loaded in {:.2} s",
            built.description,
            t0.elapsed().as_secs_f64()
        );
        let processor = StreamProcessor::new(engine, settings.tracker());
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = Stats::default();
        *self.state() = Some(State {
            processor,
            info: None,
            yuv: pixels::yuv_of(
                gst_video::VideoColorMatrix::Bt601,
                gst_video::VideoColorRange::Range16_235,
            ),
            rgb: Vec::new(),
            ended: Vec::new(),
            rules,
            rule_state: RuleState::default(),
            _engine: built,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Drops the engine, the stream state and the tracks.
        *self.state() = None;
        let st = *self.stats.lock().unwrap_or_else(|e| e.into_inner());
        gst::info!(CAT, imp = self, "stopped: {}", st.structure());
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {}", incaps))?;
        if pixels::layout_of(info.format()).is_none() {
            return Err(gst::loggable_error!(
                CAT,
                "unsupported format {}",
                info.format()
            ));
        }
        let mut guard = self.state();
        let state = guard
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
        if state.info.as_ref() != Some(&info) {
            if state.info.is_some() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "caps changed to {}: resetting the stream",
                    incaps
                );
                state.reset();
            }
            let c = info.colorimetry();
            state.yuv = pixels::yuv_of(c.matrix(), c.range());
            state.info = Some(info);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::StreamStart(_) | gst::EventView::FlushStop(_) => {
                if let Some(state) = self.state().as_mut() {
                    gst::debug!(CAT, imp = self, "{:?}: resetting the stream", event.type_());
                    state.reset();
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings().clone();
        let mut guard = self.state();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let info = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let layout = pixels::layout_of(info.format()).ok_or(gst::FlowError::NotNegotiated)?;
        if buf.flags().contains(gst::BufferFlags::GAP) && buf.size() < info.size() {
            // A gap without pixels (e.g. from a live source's timeout): nothing to look at.
            gst::log!(CAT, imp = self, "gap buffer passed through");
            return Ok(gst::FlowSuccess::Ok);
        }
        let want = settings.tracker();
        if *state.processor.tracker().config() != want {
            state.processor.tracker_mut().set_config(want);
        }
        let t0 = Instant::now();
        let map_err = |e: glib::BoolError| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ["cannot map the frame: {}", e]
            );
            gst::FlowError::Error
        };
        let (tracks, crossings, engine_time) = if settings.draw {
            let mut frame = VideoFrameRef::from_buffer_ref_writable(buf, &info).map_err(map_err)?;
            let (processed, took) = self.process(state, &frame, layout)?;
            let cfg = state.processor.engine().config();
            let mut tracks =
                FrameTracks::collect(&processed, cfg, std::mem::take(&mut state.ended));
            let crossings = tracks.apply_rules(&state.rules, &mut state.rule_state);
            let marks: Vec<Mark> = tracks
                .tracks
                .iter()
                .map(|t| Mark {
                    id: t.id,
                    label: t.label.clone(),
                    box_xyxy: t.box_xyxy,
                    mask_rect: t.mask_rect,
                    mask: t.mask.decode_row_major(),
                })
                .collect();
            let strides = frame.plane_stride().to_vec();
            let stride = |i: usize| strides.get(i).map_or(0, |&s| s.max(0) as usize);
            let (w, h) = (frame.width() as usize, frame.height() as usize);
            let [p0, p1, p2, _] = frame.planes_data_mut();
            let mut canvas = Canvas {
                layout,
                width: w,
                height: h,
                data: [p0, p1, p2],
                strides: [stride(0), stride(1), stride(2)],
                yuv: state.yuv,
            };
            render::draw(&mut canvas, &marks);
            (tracks, crossings, took)
        } else {
            let frame = VideoFrameRef::from_buffer_ref_readable(&*buf, &info).map_err(map_err)?;
            let (processed, took) = self.process(state, &frame, layout)?;
            let cfg = state.processor.engine().config();
            let mut tracks =
                FrameTracks::collect(&processed, cfg, std::mem::take(&mut state.ended));
            let crossings = tracks.apply_rules(&state.rules, &mut state.rule_state);
            (tracks, crossings, took)
        };
        drop(guard);
        if settings.emit_messages {
            self.post_message(&tracks, buf);
        }
        for c in &crossings {
            self.post_crossing(c, tracks.frame);
        }
        let s = tracks.structure(TRACKS_META);
        let mut meta = gst::meta::CustomMeta::add(buf, TRACKS_META).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ["cannot add {}: {}", TRACKS_META, e]
            );
            gst::FlowError::Error
        })?;
        let ms = meta.mut_structure();
        for (name, value) in s.iter() {
            ms.set_value(name, value.clone());
        }
        let total = t0.elapsed();
        gst::trace!(
            CAT,
            imp = self,
            "frame {}: {} tracks, engine {:.2} ms, element {:.2} ms",
            tracks.frame,
            tracks.tracks.len(),
            engine_time.as_secs_f64() * 1e3,
            total.saturating_sub(engine_time).as_secs_f64() * 1e3
        );
        let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        st.frames += 1;
        st.engine += engine_time;
        st.element += total.saturating_sub(engine_time);
        Ok(gst::FlowSuccess::Ok)
    }
}
