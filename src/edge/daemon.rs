//! `inspro run`: one root `CancellationToken` and a `TaskTracker`; per camera a GStreamer
//! supervisor thread and a named engine thread joined by a bounded drop-oldest queue; tokio only
//! for IO (the MQTT task, signals, sd_notify, the metrics endpoint). Shutdown (SIGTERM/SIGINT, or
//! every camera at end of stream with `--exit-on-eos`): sources stop, engine threads end their
//! open tracks, then the MQTT task publishes `stopped`, flushes and spools what is left.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::edge::config::{self, ConfigError, EdgeConfig, PublishConfig};
use crate::edge::engine::{build_engine, EngineBuildError};
use crate::edge::events::{EventBuilder, FrameInfo};
use crate::edge::ingest::{Frame, Item};
use crate::edge::metrics::{CameraMetrics, Metrics};
use crate::edge::mqtt::Outbox;
use crate::edge::overlay::OverlayWriter;
use crate::edge::queue::FrameQueue;
use crate::edge::snapshots::Snapshots;
use crate::edge::spool::Spool;
use crate::edge::state::{OpenTracks, StateFile};
use crate::runtime::Engine;
use crate::tracking::rules::Rules;
use crate::tracking::{EndReason, StreamProcessor, TrackEvent, TrackerConfig};
use supervise::{async_main, DaemonParts};

mod cameras;
mod supervise;

/// Options of `inspro run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    /// Shut down when every camera has reached end of stream.
    pub exit_on_eos: bool,
    /// Write `<camera>-overlay.mkv` and `<camera>-sheet.png` here.
    pub overlay_dir: Option<PathBuf>,
}

/// How the daemon ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM, SIGINT, or every stream ended with `--exit-on-eos`: exit 0.
    Stopped,
    /// `<prefix>/restart` over MQTT: a clean stop, then exit [`EX_RESTART`] so that systemd
    /// starts the daemon again (`Restart=on-failure`, `RestartForceExitStatus=75`).
    Restart,
}

/// Exit status after a restart request (sysexits.h EX_TEMPFAIL).
pub const EX_RESTART: u8 = 75;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<EngineBuildError> for DaemonError {
    fn from(e: EngineBuildError) -> Self {
        match e {
            EngineBuildError::Config(c) => DaemonError::Config(c),
        }
    }
}

/// Settings that SIGHUP changes while running.
pub struct HotSettings {
    generation: AtomicU64,
    value: Mutex<(TrackerConfig, PublishConfig, Vec<config::CameraConfig>)>,
}

impl HotSettings {
    fn new(cfg: &EdgeConfig) -> Self {
        Self {
            generation: AtomicU64::new(0),
            value: Mutex::new((cfg.tracking, cfg.publish.clone(), cfg.cameras.clone())),
        }
    }
    fn set(&self, cfg: &EdgeConfig) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) =
            (cfg.tracking, cfg.publish.clone(), cfg.cameras.clone());
        self.generation.fetch_add(1, Relaxed);
    }
    /// The global tracking settings now.
    fn tracking(&self) -> TrackerConfig {
        self.value.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// The publishing settings now.
    fn publish(&self) -> PublishConfig {
        self.value
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Camera `name`'s tracking (the global settings with its overrides), the publishing
    /// settings, and its rules.
    fn get(&self, name: &str) -> (TrackerConfig, PublishConfig, Rules) {
        let v = self.value.lock().unwrap_or_else(|e| e.into_inner());
        let cam = v.2.iter().find(|c| c.name == name);
        (
            cam.map_or(v.0, |c| c.tracking.apply(v.0)),
            v.1.clone(),
            cam.map(config::CameraConfig::rules).unwrap_or_default(),
        )
    }
}

/// How long shutdown waits for the camera threads (a stuck pipeline); systemd's
/// `TimeoutStopSec` covers this plus `service.shutdown_timeout_s`.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Load and validate the configuration (exit 78 on error).
pub fn load_config(path: Option<&std::path::Path>) -> Result<EdgeConfig, ConfigError> {
    let cfg = config::load(path, &config::process_env())?;
    cfg.validate()?;
    Ok(cfg)
}

/// What `run` checks before it loads the model, and `config check` too (so they agree): the
/// values, the credentials (a user name needs a password, and the other way round), TLS files,
/// and that the spool directory (and a TensorRT engine cache) is writable. Returns the MQTT password and where it came from.
pub fn preflight(
    cfg: &EdgeConfig,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<Option<(config::Secret, String)>, ConfigError> {
    cfg.validate()?;
    let password = config::mqtt_password(&cfg.mqtt, env)?;
    if password
        .as_ref()
        .is_some_and(|(p, _)| p.expose().is_empty())
    {
        return Err(ConfigError::new(
            "mqtt.password_file",
            "the MQTT password is empty",
        ));
    }
    crate::edge::mqtt::mqtt_options(&cfg.mqtt, password.as_ref().map(|(p, _)| p))?;
    let listen = cfg.http_listen();
    if !listen.is_empty() {
        let loopback = listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if !loopback && config::http_token(&cfg.http, env)?.is_none() {
            return Err(ConfigError::new(
                "http.token",
                format!(
                    "the HTTP server listens on {listen}, beyond loopback: set [http] token (or \
                     token_file, env INSPRO_HTTP_TOKEN, the credential http-token)"
                ),
            ));
        }
    }
    if let (config::EngineKind::Onnxruntime, Some(cache)) = (cfg.engine.kind, &cfg.engine.cache_dir)
    {
        if cfg.engine.provider.parse() == Ok(crate::runtime::Provider::Tensorrt) {
            Spool::check_writable(cache).map_err(|e| {
                ConfigError::new(
                    "engine.cache_dir",
                    format!("{} is not a writable directory: {e}", cache.display()),
                )
            })?;
        }
    }
    let dir = cfg.service.spool_path();
    Spool::check_writable(&dir).map_err(|e| {
        ConfigError::new(
            "service.spool_dir",
            format!("{} is not a writable directory: {e}", dir.display()),
        )
    })?;
    Ok(password)
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// The id of this run, in every event: consumers de-duplicate on (run, camera, seq).
fn run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:x}{:04x}", std::process::id() & 0xffff)
}

/// What an engine thread carries from frame to frame.
struct StreamLoop {
    proc: StreamProcessor,
    seen_gen: u64,
    last_pts: Option<u64>,
    last_info: FrameInfo,
    frame_index: u64,
    errors_logged: u32,
    /// When the first and the latest frame were done (the stream's rate at its end).
    first_done: Option<Instant>,
    last_done: Option<Instant>,
    /// Detection is off: the open tracks were ended, frames are skipped.
    detect_off: bool,
}

struct EngineThread {
    name: String,
    engine: Arc<dyn Engine>,
    queue: Arc<FrameQueue<Item>>,
    cam: Arc<CameraMetrics>,
    metrics: Arc<Metrics>,
    outbox: Arc<Outbox>,
    hot: Arc<HotSettings>,
    builder: EventBuilder,
    tracker: TrackerConfig,
    jump_ns: u64,
    overlay: Option<OverlayWriter>,
    /// `[camera.snapshots]`: the best views and the worker that encodes them.
    snapshots: Option<(Snapshots, std::thread::JoinHandle<()>)>,
    /// The camera's token (a child of the daemon's).
    token: CancellationToken,
    /// Set before `token` is cancelled when the camera alone is stopped (switch, SIGHUP).
    stop_reason: cameras::StopReason,
    state: StateFile,
    topic_prefix: String,
    /// The counts last published on `<prefix>/<camera>/<label>`.
    counts: std::collections::BTreeMap<String, u64>,
    /// The event store, and this camera's events topic (what it records).
    store: Option<crate::edge::store::Store>,
    events_topic: String,
    /// The live view's encoder, and the class names it labels with.
    live: Option<crate::edge::live::LiveSender>,
    class_names: Vec<String>,
    /// `[camera.clips]`: the camera's ring of encoded frames.
    clips: Option<Arc<crate::edge::clips::ClipRing>>,
}

impl EngineThread {
    /// Persist the open tracks when a write is due (`StateFile::update`).
    fn persist(&mut self, info: &FrameInfo) {
        let (seq, run, open) = self.builder.open_state();
        let ids: Vec<u64> = open.iter().map(|(id, _)| *id).collect();
        self.state.update(ids, || OpenTracks {
            topic_prefix: self.topic_prefix.clone(),
            camera: self.name.clone(),
            run: run.to_string(),
            seq,
            frame: EventBuilder::frame_json(info),
            tracks: open.into_iter().map(|(_, v)| v.clone()).collect(),
        });
    }

    /// Process the camera's frames until its source ends or it is stopped; returns whether it
    /// was stopped on its own (a switch or SIGHUP, not shutdown or end of stream).
    fn run(mut self) -> bool {
        let span = tracing::info_span!("stream", camera = %self.name);
        let _g = span.enter();
        let mut st = StreamLoop {
            proc: StreamProcessor::new(self.engine.clone(), self.tracker),
            seen_gen: 0,
            last_pts: None,
            last_info: FrameInfo {
                index: 0,
                pts_ns: None,
                width: 0,
                height: 0,
            },
            frame_index: 0,
            errors_logged: 0,
            first_done: None,
            last_done: None,
            detect_off: false,
        };
        loop {
            self.cam
                .engine_alive_ms
                .store(self.metrics.now_ms(), Relaxed);
            self.reload_if_changed(&mut st);
            if self.token.is_cancelled() {
                break;
            }
            self.follow_detect_switch(&mut st);
            let Some(item) = self.queue.pop_timeout(Duration::from_millis(200)) else {
                continue;
            };
            self.cam.queue_depth.store(self.queue.len() as u64, Relaxed);
            match item {
                Item::Restart { reason, ended } => {
                    let ended = st.proc.reset(ended);
                    st.last_pts = None;
                    self.cam.state_resets.fetch_add(1, Relaxed);
                    tracing::info!(reason = %reason, ended = ended.len(), "stream restarted: state reset");
                    self.emit(&ended, None, &st.last_info);
                    self.persist(&st.last_info);
                    self.publish_counts(std::iter::empty());
                }
                Item::Eos => {
                    self.log_end(&st);
                    break;
                }
                Item::Frame(frame) if st.detect_off => {
                    self.cam.frames_skipped.fetch_add(1, Relaxed);
                    self.live_without_engine(&frame, st.frame_index);
                }
                Item::Frame(frame) => self.on_frame(&mut st, frame),
            }
        }
        self.finish(&mut st)
    }

    /// Frigate's count topics: the live tracks seen on this frame, by label, retained and sent
    /// when a count changes (a label seen once stays, at 0 when none is left).
    fn publish_counts<'a>(&mut self, active: impl Iterator<Item = &'a crate::tracking::Track>) {
        let mut now: std::collections::BTreeMap<String, u64> =
            self.counts.keys().map(|k| (k.clone(), 0)).collect();
        for t in active {
            if t.state != crate::tracking::TrackState::Lost && self.builder.is_published(t.id) {
                *now.entry(self.builder.label_name(t.label)).or_insert(0) += 1;
            }
        }
        let topics = crate::edge::topics::Topics::new(self.topic_prefix.as_str());
        let ct = topics.camera(&self.name);
        let changed: Vec<crate::edge::events::OutMsg> = now
            .iter()
            .filter(|(label, n)| self.counts.get(*label) != Some(*n))
            .map(|(label, n)| crate::edge::events::OutMsg {
                topic: ct.count(label),
                payload: n.to_string(),
                qos: 1,
                retain: true,
                bytes: None,
            })
            .collect();
        if !changed.is_empty() {
            self.outbox.push(changed);
        }
        self.counts = now;
    }

    /// Detection off: the live view still shows the camera (the frame as it is, no tracks).
    fn live_without_engine(&self, frame: &Frame, index: u64) {
        let Some(live) = &self.live else {
            return;
        };
        if !self.cam.live.due() {
            return;
        }
        if let Ok((rgb, w, h)) = frame.with_rgb(|fr| (fr.to_packed(), fr.width, fr.height)) {
            live.offer(crate::edge::live::Drawn {
                rgb,
                width: w,
                height: h,
                index,
            });
        }
    }

    /// `detect` switched off: end the open tracks (reason `detect_off`) and skip frames until
    /// it is on again (then a fresh stream state).
    fn follow_detect_switch(&mut self, st: &mut StreamLoop) {
        let on = self.cam.detect.load(Relaxed);
        if !on && !st.detect_off {
            st.detect_off = true;
            let ended = st.proc.reset(EndReason::DetectOff);
            st.last_pts = None;
            tracing::info!(ended = ended.len(), "detection off");
            self.emit(&ended, None, &st.last_info);
            self.persist(&st.last_info);
            self.cam.tracks_active.store(0, Relaxed);
            self.publish_counts(std::iter::empty());
        } else if on && st.detect_off {
            st.detect_off = false;
            tracing::info!("detection on");
        }
    }

    /// Apply SIGHUP's tracking and publish settings once per generation.
    fn reload_if_changed(&mut self, st: &mut StreamLoop) {
        let g = self.hot.generation.load(Relaxed);
        if g != st.seen_gen {
            st.seen_gen = g;
            let (t, p, rules) = self.hot.get(&self.name);
            st.proc.tracker_mut().set_config(t);
            self.builder.set_config(p);
            self.builder.set_rules(rules);
            tracing::info!("tracking and publish settings reloaded");
        }
    }

    /// A timestamp jump (backwards, or forward by more than `jump_threshold_s`) resets the state.
    fn reset_on_jump(&mut self, st: &mut StreamLoop, pts_ns: Option<u64>) {
        if let (Some(p), Some(lp)) = (pts_ns, st.last_pts) {
            if p < lp || p - lp > self.jump_ns {
                let ended = st.proc.reset(EndReason::StreamRestart);
                self.cam.state_resets.fetch_add(1, Relaxed);
                tracing::info!(
                    from_s = lp as f64 / 1e9,
                    to_s = p as f64 / 1e9,
                    ended = ended.len(),
                    "timestamp jump: state reset"
                );
                self.emit(&ended, None, &st.last_info);
            }
        }
        st.last_pts = pts_ns.or(st.last_pts);
    }

    /// One decoded frame: engine and tracks, events, the tracks message, overlay, state file.
    fn on_frame(&mut self, st: &mut StreamLoop, frame: Frame) {
        self.cam
            .wait_us
            .fetch_add(frame.arrived.elapsed().as_micros() as u64, Relaxed);
        self.reset_on_jump(st, frame.pts_ns);
        let t0 = Instant::now();
        let overlay = self.overlay.is_some();
        // Someone watches the live view (and it is due): the same drawing as the overlay.
        let live_due = self.live.is_some() && self.cam.live.due();
        let names = &self.class_names;
        // `snapshots` switched off: no views kept (and none published, `emit`).
        let snapshots_on = self.cam.snapshots_on.load(Relaxed);
        let snapshots = self
            .snapshots
            .as_mut()
            .filter(|_| snapshots_on)
            .map(|(s, _)| s);
        let proc = &mut st.proc;
        let res = frame.with_rgb(|fr| {
            let r = proc.process(&fr);
            if let (Ok(p), Some(snaps)) = (&r, snapshots) {
                let seen: Vec<_> = proc.tracker().active().collect();
                snaps.observe(&fr, &p.output, &seen);
            }
            let drawn = match &r {
                Ok(p) if overlay || live_due => {
                    let open: Vec<_> = proc.tracker().active().collect();
                    Some(crate::edge::overlay::draw_tracks(
                        &fr, &p.output, &open, names,
                    ))
                }
                _ => None,
            };
            (r, drawn, fr.width, fr.height)
        });
        let (res, drawn, w, h) = match res {
            Ok(v) => v,
            Err(e) => {
                self.cam.engine_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "cannot read the frame");
                return;
            }
        };
        self.cam
            .infer_us
            .fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
        let processed = match res {
            Ok(p) => p,
            Err(e) => {
                self.cam.engine_errors.fetch_add(1, Relaxed);
                if st.errors_logged < 10 {
                    st.errors_logged += 1;
                    tracing::warn!(error = %e, "engine failed on a frame");
                }
                return;
            }
        };
        self.cam.frames_processed.fetch_add(1, Relaxed);
        let info = FrameInfo {
            index: st.frame_index,
            pts_ns: frame.pts_ns,
            width: w,
            height: h,
        };
        st.frame_index += 1;
        let t1 = Instant::now();
        if !processed.reset_events.is_empty() {
            // Tracks of the frames before a size change end in those frames' pixels.
            self.cam.state_resets.fetch_add(1, Relaxed);
            let before = st.last_info;
            self.emit(&processed.reset_events, None, &before);
        }
        self.emit(&processed.events, Some(&processed.output), &info);
        let tracker = st.proc.tracker();
        if let Some(m) = self.builder.tracks_message(tracker.active(), &info) {
            self.outbox.push([m]);
        }
        self.cam
            .tracks_active
            .store(tracker.active().count() as u64, Relaxed);
        self.publish_counts(st.proc.tracker().active());
        self.cam
            .encode_us
            .fetch_add(t1.elapsed().as_micros() as u64, Relaxed);
        if let (true, Some(live), Some(rgb)) = (live_due, &self.live, &drawn) {
            live.offer(crate::edge::live::Drawn {
                rgb: rgb.clone(),
                width: w,
                height: h,
                index: info.index,
            });
        }
        if let (Some(ov), Some(rgb)) = (self.overlay.as_mut(), drawn) {
            if let Err(e) = ov.push(info.index, rgb, w, h) {
                tracing::warn!(error = %e, "overlay video failed; no more overlay");
                self.overlay = None;
            }
        }
        self.persist(&info);
        st.last_info = info;
        let now = Instant::now();
        if let Some(prev) = st.last_done {
            // A moving average of the processed rate (the API's `fps`).
            let dt = (now - prev).as_secs_f64().max(1e-6);
            let old = self.cam.fps_milli.load(Relaxed) as f64 / 1000.0;
            let fps = if old == 0.0 {
                1.0 / dt
            } else {
                0.8 * old + 0.2 / dt
            };
            self.cam.fps_milli.store((fps * 1000.0) as u64, Relaxed);
        }
        st.first_done.get_or_insert(now);
        st.last_done = Some(now);
    }

    /// The stream's frames, its rate from the first processed frame to the last, and where a
    /// frame's time went (ms per frame): what `scripts/daemon-overhead.sh` reads.
    fn log_end(&self, st: &StreamLoop) {
        let n = self.cam.frames_processed.load(Relaxed);
        let per =
            |us: &std::sync::atomic::AtomicU64| us.load(Relaxed) as f64 / n.max(1) as f64 / 1e3;
        let fps = match (st.first_done, st.last_done) {
            (Some(a), Some(b)) if n > 1 && b > a => (n - 1) as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        };
        tracing::info!(
            frames = st.frame_index,
            fps = format!("{fps:.3}"),
            engine_ms = format!("{:.3}", per(&self.cam.infer_us)),
            events_ms = format!("{:.3}", per(&self.cam.encode_us)),
            queue_wait_ms = format!("{:.3}", per(&self.cam.wait_us)),
            dropped = self.cam.frames_dropped.load(Relaxed),
            clips = self.cam.clips.written.load(Relaxed),
            clip_cpu_ms = format!("{:.1}", self.cam.clips.cpu_us.load(Relaxed) as f64 / 1e3),
            "end of stream"
        );
    }

    /// End every open track (these go out before `stopped`), remove the state file, write the
    /// overlay.
    /// Returns whether the camera was stopped on its own.
    fn finish(&mut self, st: &mut StreamLoop) -> bool {
        let stopped = *self.stop_reason.lock().unwrap_or_else(|e| e.into_inner());
        let why = match stopped {
            Some(r) => r,
            None if self.token.is_cancelled() => EndReason::Shutdown,
            None => EndReason::EndOfStream,
        };
        let ended = st.proc.reset(why);
        self.emit(&ended, None, &st.last_info);
        self.publish_counts(std::iter::empty());
        self.state.remove();
        self.cam.tracks_active.store(0, Relaxed);
        if let Some(clips) = self.clips.take() {
            // The open recordings are written with what the stream gave.
            clips.flush();
        }
        if let Some((snaps, worker)) = self.snapshots.take() {
            // The last views are queued; the worker ends when its queue does.
            drop(snaps);
            let _ = worker.join();
        }
        if let Some(ov) = self.overlay.take() {
            match ov.finish() {
                Ok((video, sheet)) => {
                    tracing::info!(video = %video.display(), sheet = %sheet.display(), "overlay written")
                }
                Err(e) => tracing::warn!(error = %e, "overlay failed"),
            }
        }
        stopped.is_some()
    }

    fn emit(
        &mut self,
        events: &[TrackEvent],
        out: Option<&crate::tracking::FrameOutput>,
        info: &FrameInfo,
    ) {
        if events.is_empty() {
            return;
        }
        let before = self.builder.suppressed;
        let ending: Vec<u64> = events
            .iter()
            .filter(|e| matches!(e, TrackEvent::End(..)))
            .map(|e| e.track().id)
            .filter(|id| self.builder.is_published(*id))
            .collect();
        let msgs = self.builder.on_events(events, out, info);
        // Births are the `new` messages that went out (a filtered track is born when it passes).
        let born = self.builder.born().len();
        self.cam.tracks_total.fetch_add(born as u64, Relaxed);
        if let Some(clips) = &self.clips {
            // A published track's clip opens at its birth and closes after its end.
            for &id in self.builder.born() {
                clips.open(self.builder.run(), id, info.pts_ns);
            }
            for &id in &ending {
                clips.close_at(id, info.pts_ns);
            }
        }
        let snapshots_on = self.cam.snapshots_on.load(Relaxed);
        if let Some((snaps, _)) = self.snapshots.as_mut() {
            for e in events {
                let t = e.track();
                if !snapshots_on {
                    // Switched off: nothing kept or published; an ended track's view goes.
                    if e.end_reason().is_some() {
                        snaps.forget(t.id);
                    }
                    continue;
                }
                match e {
                    TrackEvent::End(..) if ending.contains(&t.id) => {
                        snaps.publish(t, &self.builder.label_name(t.label), true)
                    }
                    TrackEvent::End(..) => snaps.forget(t.id),
                    _ if self.builder.born().contains(&t.id) => {
                        snaps.publish(t, &self.builder.label_name(t.label), false)
                    }
                    _ => {}
                }
            }
            self.cam.snapshots_dropped.store(snaps.dropped, Relaxed);
        }
        self.cam
            .events_filtered
            .store(self.builder.filtered, Relaxed);
        if born > 0 {
            // On disk before the `new` events can be: a crash never leaves a track unended. (Ends
            // and refreshes are not waited for: a crash before them repeats an `end`, at worst.)
            self.persist(info);
            self.state.flush();
        }
        self.cam
            .events_suppressed
            .fetch_add(self.builder.suppressed - before, Relaxed);
        self.cam.events.fetch_add(msgs.len() as u64, Relaxed);
        if msgs.iter().any(|m| m.payload.contains("\"type\":\"line\"")) {
            self.cam.set_line_crossings(self.builder.line_counts());
        }
        for m in &msgs {
            tracing::debug!(topic = %m.topic, bytes = m.payload.len(), "event");
        }
        if let Some(store) = &self.store {
            // In the store before any `new` among them is handed to MQTT.
            let events: Vec<String> = msgs
                .iter()
                .filter(|m| m.topic == self.events_topic && m.bytes.is_none())
                .map(|m| m.payload.clone())
                .collect();
            store.record(events, born > 0);
        }
        self.outbox.push(msgs);
    }
}

/// Run the daemon until a signal (or end of every stream with `exit_on_eos`, or a restart
/// request).
pub fn run(opts: RunOptions) -> Result<Exit, DaemonError> {
    let cfg = load_config(opts.config.as_deref())?;
    let env = config::process_env();
    let password = preflight(&cfg, &env)?;
    gstreamer::init().map_err(|e| anyhow::anyhow!("GStreamer init: {e}"))?;
    notify(&[sd_notify::NotifyState::Status("loading the model")]);
    let built = build_engine(&cfg.model, &cfg.engine, cfg.cameras.len())?;
    tracing::info!(engine = %built.description, cameras = cfg.cameras.len(), "engine ready");
    let spool_dir = cfg.service.spool_path();
    let spool_err = |e: std::io::Error| {
        ConfigError::new("service.spool_dir", format!("{}: {e}", spool_dir.display()))
    };
    let mut spool = Spool::open(&spool_dir, cfg.service.spool_max_bytes).map_err(spool_err)?;
    // Tracks left open by a crash: their `end` events (reason `restart`) go to the spool first.
    let recovered =
        crate::edge::state::recover(&spool_dir, &mut spool, cfg.mqtt.qos.lifecycle.max(1))
            .map_err(spool_err)?;
    if !recovered.cameras.is_empty() {
        tracing::warn!(
            tracks = recovered.ended,
            cameras = recovered.cameras.len(),
            "the last run did not stop cleanly: its open tracks end now (reason restart)"
        );
    }
    // The event store; the tracks a crash left open end there too.
    let store = match cfg.store_path() {
        Some(path) => {
            let retention = crate::edge::store::Retention {
                max_age: Duration::from_secs_f64(cfg.store.max_age_days * 86_400.0),
                max_bytes: cfg.store.max_bytes,
                snapshots_dir: spool_dir.join("snapshots"),
                clips_dir: spool_dir.join("clips"),
            };
            let (store, worker) = crate::edge::store::Store::open(&path, retention)
                .map_err(|e| ConfigError::new("store.path", e.to_string()))?;
            store.record(recovered.payloads.clone(), true);
            tracing::info!(file = %path.display(), "event store");
            Some((store, worker))
        }
        None => None,
    };
    let gone_status_topics: Vec<String> = recovered
        .cameras
        .iter()
        .filter(|(name, _)| !cfg.cameras.iter().any(|c| &c.name == name))
        .map(|(_, topic)| topic.clone())
        .collect();
    let names: Vec<String> = cfg.cameras.iter().map(|c| c.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(
        &names,
        built.config().name.clone(),
        built.description.clone(),
        built.random_weights,
    ));
    if let Some((_, from)) = &password {
        tracing::info!(from = %from, "MQTT password loaded");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("inspro-io")
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("tokio runtime: {e}"))?;
    rt.block_on(async_main(DaemonParts {
        cfg,
        opts,
        engine: built.engine.clone(),
        class_names: built.config().class_names.clone(),
        password: password.map(|(s, _)| s),
        spool,
        gone_status_topics,
        metrics,
        store,
    }))
}
