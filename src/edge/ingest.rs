//! One GStreamer pipeline per camera: source → decode → scale + convert → RGB at the engine's
//! size → appsink. The appsink callback (a GStreamer streaming thread) only puts the sample into
//! the camera's bounded queue: dropping the oldest frame for live sources, waiting for files. A
//! supervisor thread per camera watches the bus, restarts the pipeline on error, end of a live
//! stream or a stall (no frame for `stall_timeout_s` while not held back by the engine) with
//! exponential backoff and jitter, and tells the engine thread to reset the stream state.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::edge::config::{BackoffConfig, CameraConfig, RtspTransport, RtspUrl, Secret, SourceUri};
use crate::edge::metrics::{CameraMetrics, Metrics, SourceStatus};
use crate::edge::mqtt::Backoff;
use crate::edge::queue::{FrameQueue, Pushed, QueueItem};
use crate::frame::FrameRef;
use crate::tracking::EndReason;

/// A decoded RGB frame (the GStreamer sample is kept: no copy until the engine reads it).
pub struct Frame {
    pub sample: gst::Sample,
    pub pts_ns: Option<u64>,
    pub arrived: Instant,
}

/// Why a frame's pixels cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("sample without caps")]
    NoCaps,
    #[error("sample without buffer")]
    NoBuffer,
    /// The caps are not video caps.
    #[error(transparent)]
    Info(gst::glib::BoolError),
    /// The buffer cannot be mapped for reading.
    #[error(transparent)]
    Map(gst::glib::BoolError),
    /// The plane cannot be read.
    #[error(transparent)]
    Plane(gst::glib::BoolError),
    #[error("expected RGB, got {got:?}")]
    Format { got: gst_video::VideoFormat },
}

impl Frame {
    /// Read the pixels through `VideoFrameRef` and the plane stride (rows are padded to 4 bytes).
    pub fn with_rgb<R>(&self, f: impl FnOnce(FrameRef<'_>) -> R) -> Result<R, SampleError> {
        let caps = self.sample.caps().ok_or(SampleError::NoCaps)?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(SampleError::Info)?;
        let buffer = self.sample.buffer().ok_or(SampleError::NoBuffer)?;
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(SampleError::Map)?;
        if vf.format() != gst_video::VideoFormat::Rgb {
            return Err(SampleError::Format { got: vf.format() });
        }
        let data = vf.plane_data(0).map_err(SampleError::Plane)?;
        let stride = vf.plane_stride()[0] as usize;
        Ok(f(FrameRef {
            width: vf.width() as usize,
            height: vf.height() as usize,
            stride,
            data,
        }))
    }
}

/// What the engine thread receives.
pub enum Item {
    Frame(Frame),
    /// The source restarted (error, stall, reconnect, a file looped): the stream state must be
    /// reset, its tracks ended for `ended`.
    Restart {
        reason: String,
        ended: EndReason,
    },
    /// The source ended for good.
    Eos,
}

impl QueueItem for Item {
    fn is_frame(&self) -> bool {
        matches!(self, Item::Frame(_))
    }
}

pub struct SourceOptions {
    pub camera: CameraConfig,
    /// The camera's password (`password_file` or its systemd credential), for rtspsrc.
    pub password: Option<Secret>,
    /// Frame size given to the engine; 0 x 0 = the camera's own.
    pub width: u32,
    pub height: u32,
    pub backoff: BackoffConfig,
    /// `[camera.clips]`: the ring the stream's encoded frames go to.
    pub clips: Option<Arc<crate::edge::clips::ClipRing>>,
}

/// The gst-launch description of a camera's pipeline; the source element is named `src` (its
/// location / device is set as a property, so paths need no quoting) and the sink `sink`.
pub fn pipeline_description(src: &SourceUri, cam: &CameraConfig, w: u32, h: u32) -> String {
    let head = match src {
        SourceUri::File(_) => "filesrc name=src ! decodebin".to_string(),
        SourceUri::Rtsp(_) => format!(
            "rtspsrc name=src latency={} ! decodebin",
            cam.rtsp_latency_ms
        ),
        SourceUri::V4l2(_) => "v4l2src name=src ! decodebin".to_string(),
        SourceUri::Test(t) => format!(
            "videotestsrc name=src is-live={} num-buffers={} ! video/x-raw,width={},height={},framerate={}/1",
            t.live, t.num_buffers, t.width, t.height, t.fps
        ),
    };
    let rate = if cam.fps > 0.0 {
        format!(
            " ! videorate drop-only=true max-rate={}",
            cam.fps.ceil().max(1.0) as u32
        )
    } else {
        String::new()
    };
    let drop = cam.drops_frames();
    // A file under `drop` is paced by the pipeline clock (its own frame rate), like a camera.
    let sync = cam.plays_in_real_time();
    // 0 x 0: the camera's own size (square pixels); the engine letterboxes it for the network and
    // reports boxes and masks in these pixels.
    let size = if w > 0 && h > 0 {
        format!("width={w},height={h},")
    } else {
        String::new()
    };
    format!(
        "{head}{rate} ! videoconvertscale ! video/x-raw,format=RGB,{size}pixel-aspect-ratio=1/1 ! appsink name=sink sync={sync} max-buffers=1 drop={drop} enable-last-sample=false"
    )
}

enum Outcome {
    Cancelled,
    Eos,
    Error(String),
    Stall,
}

/// Spawn the supervisor thread of one camera.
pub fn spawn_source(
    opts: SourceOptions,
    queue: Arc<FrameQueue<Item>>,
    cam: Arc<CameraMetrics>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = format!("src-{}", opts.camera.name);
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || supervise(opts, queue, cam, metrics, token))
}

fn sleep_cancellable(d: Duration, token: &CancellationToken, tick: impl Fn()) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if token.is_cancelled() {
            return false;
        }
        tick();
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    !token.is_cancelled()
}

fn supervise(
    opts: SourceOptions,
    queue: Arc<FrameQueue<Item>>,
    cam: Arc<CameraMetrics>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) {
    let span = tracing::info_span!("stream", camera = %opts.camera.name);
    let _g = span.enter();
    let src = match opts.camera.source() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "bad camera uri");
            queue.push_drop_oldest(Item::Eos);
            cam.set_status(SourceStatus::Ended);
            return;
        }
    };
    // Files and finite test sources end for good at EOS (unless looping); live streams restart.
    let finite = match &src {
        SourceUri::File(_) => true,
        SourceUri::Test(t) => t.num_buffers >= 0,
        _ => false,
    };
    let mut backoff = Backoff::new(opts.backoff.clone());
    let mut started_once = false;
    let alive = || cam.source_alive_ms.store(metrics.now_ms(), Relaxed);
    while !token.is_cancelled() {
        cam.set_status(if started_once {
            SourceStatus::Reconnecting
        } else {
            SourceStatus::Starting
        });
        let t0 = Instant::now();
        let outcome = run_once(&opts, &src, &queue, &cam, &metrics, &token);
        started_once = true;
        if t0.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        let reason = match outcome {
            Outcome::Cancelled => break,
            Outcome::Eos if finite && !opts.camera.loop_file => {
                tracing::info!("end of stream");
                queue.push_drop_oldest(Item::Eos);
                cam.set_status(SourceStatus::Ended);
                return;
            }
            Outcome::Eos if finite => {
                cam.source_restarts.fetch_add(1, Relaxed);
                queue.push_drop_oldest(Item::Restart {
                    reason: "file looped".into(),
                    ended: EndReason::StreamRestart,
                });
                continue;
            }
            Outcome::Eos => "end of a live stream".to_string(),
            Outcome::Error(e) => {
                cam.source_errors.fetch_add(1, Relaxed);
                opts.scrub(&e)
            }
            Outcome::Stall => {
                cam.stalls.fetch_add(1, Relaxed);
                format!("no frame for {} s", opts.camera.stall_timeout_s)
            }
        };
        cam.source_restarts.fetch_add(1, Relaxed);
        cam.set_status(SourceStatus::Reconnecting);
        // Ends its tracks as `camera_lost` (not `removed`): a subscriber tells a lost camera
        // from an empty scene.
        queue.push_drop_oldest(Item::Restart {
            reason: reason.clone(),
            ended: EndReason::CameraLost,
        });
        let delay = backoff.next_delay();
        tracing::warn!(reason = %reason, retry_in_s = delay.as_secs_f64(), attempt = backoff.attempts(), "source failed; restarting");
        if !sleep_cancellable(delay, &token, alive) {
            break;
        }
    }
    cam.set_status(SourceStatus::Ended);
}

fn run_once(
    opts: &SourceOptions,
    src: &SourceUri,
    queue: &Arc<FrameQueue<Item>>,
    cam: &Arc<CameraMetrics>,
    metrics: &Arc<Metrics>,
    token: &CancellationToken,
) -> Outcome {
    let desc = pipeline_description(src, &opts.camera, opts.width, opts.height);
    let pipeline = match gst::parse::launch(&desc) {
        Ok(p) => match p.downcast::<gst::Pipeline>() {
            Ok(p) => p,
            Err(_) => return Outcome::Error("not a pipeline".into()),
        },
        Err(e) => return Outcome::Error(format!("cannot build `{desc}`: {e}")),
    };
    tracing::debug!(pipeline = %desc, "starting source");
    // FFmpeg's software decoders start a thread per core; on a small box those threads preempt
    // the engine's intra-op threads in the middle of an operator (docs/perf.md, "The daemon's
    // overhead"). One decoding thread per camera keeps up with any camera the engine can.
    pipeline.connect_deep_element_added(|_, _, el| {
        let avdec = el.factory().is_some_and(|f| f.name().starts_with("avdec_"));
        if avdec && el.find_property("max-threads").is_some() {
            el.set_property("max-threads", 1i32);
        }
    });
    if let Some(clips) = &opts.clips {
        // A new stream: the last one's recordings are written, its frames go.
        clips.reset();
        clips.attach(&pipeline);
    }
    if let Some(el) = pipeline.by_name("src") {
        match src {
            SourceUri::File(p) => el.set_property("location", p.to_string_lossy().to_string()),
            SourceUri::Rtsp(u) => {
                if let Err(e) = set_rtsp(&el, u, opts) {
                    return Outcome::Error(e);
                }
            }
            SourceUri::V4l2(d) => el.set_property("device", d.to_string_lossy().to_string()),
            // A validated enum nick, set as a property: never pipeline text.
            SourceUri::Test(t) => {
                let value = el
                    .find_property("pattern")
                    .and_then(|p| p.downcast::<gst::glib::ParamSpecEnum>().ok())
                    .and_then(|p| p.enum_class().to_value_by_nick(&t.pattern));
                match value {
                    Some(v) => el.set_property_from_value("pattern", &v),
                    None => return Outcome::Error(format!("no test pattern `{}`", t.pattern)),
                }
            }
        }
    }
    let Some(sink) = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
    else {
        return Outcome::Error("no appsink".into());
    };
    let drop = opts.camera.drops_frames();
    let waiting = Arc::new(AtomicBool::new(false));
    let got_frame = Arc::new(AtomicBool::new(false));
    {
        let queue = queue.clone();
        let cam = cam.clone();
        let metrics = metrics.clone();
        let token = token.clone();
        let waiting = waiting.clone();
        let got_frame = got_frame.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let pts_ns = sample.buffer().and_then(|b| b.pts()).map(|t| t.nseconds());
                    cam.frames_in.fetch_add(1, Relaxed);
                    cam.last_frame_ms.store(metrics.now_ms(), Relaxed);
                    got_frame.store(true, Relaxed);
                    let item = Item::Frame(Frame {
                        sample,
                        pts_ns,
                        arrived: Instant::now(),
                    });
                    let pushed = if drop {
                        queue.push_drop_oldest(item)
                    } else {
                        waiting.store(true, Relaxed);
                        let r = queue
                            .push_wait(item, Duration::from_millis(100), || !token.is_cancelled());
                        waiting.store(false, Relaxed);
                        cam.last_frame_ms.store(metrics.now_ms(), Relaxed);
                        r
                    };
                    match pushed {
                        Pushed::DroppedOldest => {
                            cam.frames_dropped.fetch_add(1, Relaxed);
                        }
                        Pushed::Closed => return Err(gst::FlowError::Flushing),
                        Pushed::Queued => {}
                    }
                    cam.queue_depth.store(queue.len() as u64, Relaxed);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let Some(bus) = pipeline.bus() else {
        return Outcome::Error("pipeline without bus".into());
    };
    let outcome = if let Err(e) = pipeline.set_state(gst::State::Playing) {
        // The reason is on the bus.
        let detail = bus
            .timed_pop_filtered(
                gst::ClockTime::from_mseconds(200),
                &[gst::MessageType::Error],
            )
            .and_then(|m| match m.view() {
                gst::MessageView::Error(err) => Some(err.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| e.to_string());
        Outcome::Error(format!("cannot start: {detail}"))
    } else {
        watch(&bus, opts, cam, metrics, token, &waiting, &got_frame)
    };
    let _ = pipeline.set_state(gst::State::Null);
    outcome
}

/// rtspsrc's location without credentials, the user and password as properties, and the
/// transport.
fn set_rtsp(el: &gst::Element, uri: &str, opts: &SourceOptions) -> Result<(), String> {
    let url = RtspUrl::parse(uri);
    el.set_property("location", url.location.as_str());
    if let Some(user) = &url.user {
        el.set_property("user-id", user.as_str());
    }
    let password = opts
        .password
        .as_ref()
        .map(|s| s.expose().to_string())
        .or(url.password);
    if let Some(pw) = password {
        el.set_property("user-pw", pw.as_str());
    }
    set_transport(el, opts.camera.rtsp_transport)
}

/// rtspsrc's `protocols` flags from the camera's `rtsp_transport` (auto: rtspsrc's default).
pub fn set_transport(el: &gst::Element, t: RtspTransport) -> Result<(), String> {
    if t == RtspTransport::Auto {
        return Ok(());
    }
    let flags = el
        .find_property("protocols")
        .and_then(|p| p.downcast::<gst::glib::ParamSpecFlags>().ok())
        .map(|p| p.flags_class());
    let value = flags
        .as_ref()
        .and_then(|fc| {
            let mut b = fc.builder();
            for nick in t.protocols().split('+') {
                b = b.set_by_nick(nick);
            }
            b.build()
        })
        .ok_or_else(|| format!("rtspsrc has no transport `{}`", t.protocols()))?;
    el.set_property_from_value("protocols", &value);
    Ok(())
}

impl SourceOptions {
    /// `text` without the camera's password (an error message that might quote a URL).
    fn scrub(&self, text: &str) -> String {
        let mut s = match &self.password {
            Some(p) => p.scrub(text),
            None => text.to_string(),
        };
        if let Ok(SourceUri::Rtsp(u)) = self.camera.source() {
            if let Some(p) = RtspUrl::parse(&u).password {
                s = Secret::new(p).scrub(&s);
            }
        }
        s
    }
}

fn watch(
    bus: &gst::Bus,
    opts: &SourceOptions,
    cam: &Arc<CameraMetrics>,
    metrics: &Arc<Metrics>,
    token: &CancellationToken,
    waiting: &AtomicBool,
    got_frame: &AtomicBool,
) -> Outcome {
    let started = metrics.now_ms();
    let stall_ms = (opts.camera.stall_timeout_s * 1000.0) as u64;
    let mut online = false;
    loop {
        if token.is_cancelled() {
            return Outcome::Cancelled;
        }
        let now = metrics.now_ms();
        cam.source_alive_ms.store(now, Relaxed);
        let last = if got_frame.load(Relaxed) {
            cam.last_frame_ms.load(Relaxed)
        } else {
            started
        };
        if !waiting.load(Relaxed) && now.saturating_sub(last) > stall_ms {
            return Outcome::Stall;
        }
        let msg = bus.timed_pop(gst::ClockTime::from_mseconds(100));
        // After the wait, before its message: a stream whose frames came and that ended (or
        // failed) within one wait was online first.
        if !online && got_frame.load(Relaxed) {
            online = true;
            cam.set_status(SourceStatus::Online);
            tracing::info!("source online");
        }
        let Some(msg) = msg else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => return Outcome::Eos,
            gst::MessageView::Error(e) => {
                return Outcome::Error(match e.debug() {
                    Some(d) => format!("{} ({d})", e.error()),
                    None => e.error().to_string(),
                })
            }
            gst::MessageView::Warning(w) => {
                tracing::warn!(warning = %opts.scrub(&w.error().to_string()), "source warning");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `test:` patterns the config accepts are exactly the nicks of the installed
    /// videotestsrc's `pattern` enum, and each one can be set as the property.
    #[test]
    fn test_patterns_match_videotestsrc() {
        gst::init().expect("GStreamer");
        let el = gst::ElementFactory::make("videotestsrc")
            .build()
            .expect("videotestsrc (gstreamer1.0-plugins-base)");
        let pspec = el.find_property("pattern").expect("pattern property");
        let spec = pspec
            .downcast_ref::<gst::glib::ParamSpecEnum>()
            .expect("an enum");
        let mut nicks: Vec<String> = spec
            .enum_class()
            .values()
            .iter()
            .map(|v| v.nick().to_string())
            .collect();
        nicks.sort();
        let mut ours: Vec<String> = crate::edge::config::VIDEOTESTSRC_PATTERNS
            .iter()
            .map(|s| s.to_string())
            .collect();
        ours.sort();
        assert_eq!(ours, nicks);
        for p in crate::edge::config::VIDEOTESTSRC_PATTERNS {
            let v = spec.enum_class().to_value_by_nick(p).expect("a nick");
            el.set_property_from_value("pattern", &v);
        }
    }

    /// Every source kind makes a pipeline GStreamer 1.22 can build (not started: no camera or
    /// RTSP server is needed to check the element names, properties and caps).
    #[test]
    fn every_source_kind_builds_a_pipeline() {
        gst::init().expect("GStreamer");
        for (uri, fps, pace) in [
            ("file:///tmp/x.mkv", 0.0, crate::edge::config::Pace::Auto),
            ("file:///tmp/x.mkv", 0.0, crate::edge::config::Pace::Drop),
            (
                "rtsp://127.0.0.1:8554/cam",
                5.0,
                crate::edge::config::Pace::Auto,
            ),
            ("v4l2:///dev/video0", 0.0, crate::edge::config::Pace::Drop),
            (
                "test:smpte?live=false&num_buffers=3",
                12.5,
                crate::edge::config::Pace::Block,
            ),
        ] {
            let cam = CameraConfig {
                name: "c".into(),
                uri: uri.into(),
                fps,
                pace,
                ..CameraConfig::default()
            };
            let src = cam.source().expect("uri");
            let desc = pipeline_description(&src, &cam, 160, 96);
            assert!(desc.contains("format=RGB,width=160,height=96"), "{desc}");
            // Unset: the camera's own size, square pixels.
            let native = pipeline_description(&src, &cam, 0, 0);
            assert!(
                native.contains("format=RGB,pixel-aspect-ratio=1/1 ! appsink"),
                "{native}"
            );
            assert_eq!(desc.contains("max-rate=13"), fps == 12.5, "{desc}");
            assert!(
                desc.contains(&format!("drop={}", cam.drops_frames())),
                "{desc}"
            );
            // Only a file or a non-live test source under `drop` is paced by the clock.
            let paced = pace == crate::edge::config::Pace::Drop && !src.is_live();
            assert!(desc.contains(&format!("sync={paced}")), "{desc}");
            let p = gst::parse::launch(&desc).unwrap_or_else(|e| panic!("{uri}: {e}: {desc}"));
            let p = p.downcast::<gst::Pipeline>().expect("pipeline");
            assert!(p.by_name("src").is_some() && p.by_name("sink").is_some());
            if matches!(src, SourceUri::Rtsp(_)) {
                // Each transport is a value of rtspsrc's `protocols` flags.
                let el = p.by_name("src").expect("src");
                for t in [RtspTransport::Tcp, RtspTransport::Udp, RtspTransport::Auto] {
                    set_transport(&el, t).expect("transport");
                }
                set_transport(&el, RtspTransport::Tcp).expect("tcp");
                let v = el
                    .property_value("protocols")
                    .serialize()
                    .expect("serialize");
                assert_eq!(v.as_str(), "GST_RTSP_LOWER_TRANS_TCP");
            }
        }
    }

    #[test]
    fn rtsp_credentials_leave_the_location() {
        let u = RtspUrl::parse("rtsp://viewer:p%40ss@cam.lan:554/stream1?x=1");
        assert_eq!(u.location, "rtsp://cam.lan:554/stream1?x=1");
        assert_eq!(u.user.as_deref(), Some("viewer"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.redacted(), "rtsp://viewer:***@cam.lan:554/stream1?x=1");
        assert!(!format!("{u:?}").contains("p@ss"));
        let plain = RtspUrl::parse("rtsp://127.0.0.1:8554/cam");
        assert_eq!(plain.location, "rtsp://127.0.0.1:8554/cam");
        assert!(plain.user.is_none() && plain.password.is_none());
        let user_only = RtspUrl::parse("rtsp://viewer@127.0.0.1:8554/cam");
        assert_eq!(user_only.location, "rtsp://127.0.0.1:8554/cam");
        assert_eq!(user_only.user.as_deref(), Some("viewer"));
        let scrub = SourceOptions {
            camera: CameraConfig {
                uri: "rtsp://viewer:hunter2@h/c".into(),
                ..CameraConfig::default()
            },
            password: Some(Secret::new("filepw")),
            width: 0,
            height: 0,
            backoff: BackoffConfig::default(),
            clips: None,
        };
        assert_eq!(
            scrub.scrub("auth hunter2 failed for filepw"),
            "auth *** failed for ***"
        );
    }
}
