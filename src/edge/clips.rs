//! Event clips, cut from the camera's encoded stream without re-encoding (`[camera.clips]`).
//!
//! The parser that decodebin plugs before the decoder (h264parse / h265parse) gets a buffer
//! probe: every encoded frame it passes goes, by reference, into the camera's [`ClipRing`]. The
//! ring keeps the last `pre_s` seconds (back to a keyframe) and everything an open recording
//! still needs. A track's recording opens at its birth (`pre_s` before it, from the keyframe at
//! or before that) and closes `post_s` after its end (or `max_s` after it opened); the frames are
//! then handed, still by reference, to the camera's writer thread, which muxes them into
//! `<spool_dir>/clips/<camera>/<run>-<id>.mp4` (appsrc → parser → mp4mux, no decode, no encode).
//! A camera whose stream is not H.264 or H.265 (raw V4L2, a test pattern) records no clips.
//!
//! The streaming thread only pushes a reference and checks the open recordings; the engine
//! thread only opens and closes them; neither ever waits for the writer (a full queue drops the
//! clip, counted in `clips_dropped_total`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::edge::config::ClipConfig;

/// The file of a track's clip, relative to the clips folder (`<camera>/<run>-<id>.mp4`); the
/// store and the API derive it the same way.
pub fn clip_name(camera: &str, run: &str, track_id: u64) -> String {
    format!("{camera}/{run}-{track_id}.mp4")
}

/// The parsers whose output can go into MP4 as it is.
fn parser_for(caps: &gst::CapsRef) -> Option<&'static str> {
    match caps.structure(0)?.name().as_str() {
        "video/x-h264" => Some("h264parse"),
        "video/x-h265" => Some("h265parse"),
        _ => None,
    }
}

/// One encoded frame, by reference.
struct Enc {
    buf: gst::Buffer,
    /// Presentation time (decode time where there is none), ns.
    t: u64,
    key: bool,
}

/// A recording not yet handed to the writer.
struct Open {
    track: u64,
    file: String,
    /// The sequence number of its first frame (a keyframe).
    first: u64,
    /// Stream time it opened at (for `max_s`).
    opened: u64,
    /// Stream time it closes at, once its track ended.
    until: Option<u64>,
}

#[derive(Default)]
struct Ring {
    caps: Option<gst::Caps>,
    frames: VecDeque<Enc>,
    /// The sequence number of `frames[0]`.
    base: u64,
    open: Vec<Open>,
    /// Stream time of the newest frame.
    latest: Option<u64>,
}

/// What the writer muxes.
pub struct Job {
    pub path: PathBuf,
    pub caps: gst::Caps,
    pub frames: Vec<gst::Buffer>,
}

/// Counters of one camera's clips (exported in `/metrics`).
#[derive(Default)]
pub struct ClipStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    /// Time spent on clips: the probe's pushes and the writer's muxing, µs.
    pub cpu_us: AtomicU64,
}

/// One camera's ring of encoded frames and its open recordings.
pub struct ClipRing {
    cfg: ClipConfig,
    dir: PathBuf,
    camera: String,
    ring: Mutex<Ring>,
    jobs: SyncSender<Job>,
    pub stats: Arc<ClipStats>,
}

/// The most a ring holds whatever the recordings want (a camera without keyframes must not
/// fill the memory): frames and seconds beyond `pre_s + max_s`.
const MAX_FRAMES: usize = 20_000;

impl ClipRing {
    /// The ring of camera `camera`, writing under `clips_dir/<camera>/`, and its writer thread
    /// (which ends once the ring is dropped).
    pub fn start(
        cfg: ClipConfig,
        clips_dir: &Path,
        camera: &str,
        stats: Arc<ClipStats>,
    ) -> std::io::Result<(Arc<Self>, std::thread::JoinHandle<()>)> {
        std::fs::create_dir_all(clips_dir.join(camera))?;
        // Jobs hold references to frames the ring holds anyway: a deep queue costs little, and a
        // scene whose every track ends at once (the stream ended) loses no clip.
        let (tx, rx) = sync_channel(256);
        let ring = Arc::new(Self::new(cfg, clips_dir, camera, tx, stats.clone()));
        let name: String = format!("clip-{camera}").chars().take(15).collect();
        let cam = camera.to_string();
        let worker = std::thread::Builder::new()
            .name(name)
            .spawn(move || writer(rx, stats, &cam))?;
        Ok((ring, worker))
    }

    fn new(
        cfg: ClipConfig,
        clips_dir: &Path,
        camera: &str,
        jobs: SyncSender<Job>,
        stats: Arc<ClipStats>,
    ) -> Self {
        Self {
            cfg,
            dir: clips_dir.to_path_buf(),
            camera: camera.to_string(),
            ring: Mutex::new(Ring::default()),
            jobs,
            stats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watch the parser decodebin plugs into `pipeline` (the first H.264 / H.265 parser): its
    /// output feeds the ring. Also asks it to repeat SPS/PPS before every keyframe, so a clip
    /// cut at any keyframe of a byte-stream carries them.
    pub fn attach(self: &Arc<Self>, pipeline: &gst::Pipeline) {
        let ring = Arc::downgrade(self);
        let attached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        pipeline.connect_deep_element_added(move |_, _, el| {
            let parser = el
                .factory()
                .is_some_and(|f| matches!(f.name().as_str(), "h264parse" | "h265parse"));
            if !parser || attached.swap(true, Relaxed) {
                return;
            }
            if el.find_property("config-interval").is_some() {
                el.set_property("config-interval", -1i32);
            }
            let Some(pad) = el.static_pad("src") else {
                return;
            };
            let ring = ring.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let (Some(r), Some(gst::PadProbeData::Buffer(buf))) =
                    (ring.upgrade(), &info.data)
                {
                    let t0 = Instant::now();
                    r.push(buf, pad.current_caps());
                    r.stats
                        .cpu_us
                        .fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
                }
                gst::PadProbeReturn::Ok
            });
        });
    }

    /// A new stream (the source started or restarted): the open recordings are written with
    /// what they have; the frames of the old stream go.
    pub fn reset(&self) {
        let mut r = self.lock();
        let open = std::mem::take(&mut r.open);
        for o in open {
            self.close(&r, o);
        }
        *r = Ring::default();
    }

    /// An encoded frame from the parser.
    fn push(&self, buf: &gst::Buffer, caps: Option<gst::Caps>) {
        let Some(t) = buf.pts().or(buf.dts()).map(|t| t.nseconds()) else {
            return;
        };
        let mut r = self.lock();
        if let Some(c) = caps {
            if r.caps.as_ref() != Some(&c) {
                if parser_for(&c).is_none() {
                    return;
                }
                if r.caps.is_some() {
                    // A new format mid-stream (a resolution change): what is recorded so far is
                    // written in the old one, and the old frames go.
                    for o in std::mem::take(&mut r.open) {
                        self.close(&r, o);
                    }
                    let n = r.frames.len() as u64;
                    r.frames.clear();
                    r.base += n;
                }
                r.caps = Some(c);
            }
        }
        if r.caps.is_none() {
            return;
        }
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        r.frames.push_back(Enc {
            buf: buf.clone(),
            t,
            key,
        });
        r.latest = Some(r.latest.map_or(t, |l| l.max(t)));
        // Recordings whose end (or `max_s`) this frame reached are written.
        let max_ns = (self.cfg.max_s * 1e9) as u64;
        let reached = |o: &Open| o.until.is_some_and(|u| t >= u) || t >= o.opened + max_ns;
        if r.open.iter().any(reached) {
            let (done, open): (Vec<Open>, Vec<Open>) =
                std::mem::take(&mut r.open).into_iter().partition(reached);
            r.open = open;
            for o in done {
                self.close(&r, o);
            }
        }
        self.prune(&mut r);
    }

    /// Drop the frames nothing needs: before the keyframe that starts the pre-roll, and before
    /// the first frame of every open recording.
    fn prune(&self, r: &mut Ring) {
        let Some(latest) = r.latest else { return };
        let pre = latest.saturating_sub((self.cfg.pre_s * 1e9) as u64);
        let keep_pre = keyframe_at_or_before(r, pre).unwrap_or(r.base);
        let keep = r.open.iter().map(|o| o.first).fold(keep_pre, u64::min);
        while r.base < keep || r.frames.len() > MAX_FRAMES {
            if r.frames.pop_front().is_none() {
                break;
            }
            r.base += 1;
        }
    }

    /// Track `track` was born on the frame at stream time `t` (ns; `None`: the newest frame).
    /// Returns whether a clip is being recorded (the stream is H.264 / H.265 and frames came).
    pub fn open(&self, run: &str, track: u64, t: Option<u64>) -> bool {
        let mut r = self.lock();
        let Some(latest) = r.latest else {
            return false;
        };
        if r.open.iter().any(|o| o.track == track) {
            return true;
        }
        let at = t.unwrap_or(latest).min(latest);
        let from = at.saturating_sub((self.cfg.pre_s * 1e9) as u64);
        let first = keyframe_at_or_before(&r, from)
            .or_else(|| first_keyframe(&r))
            .unwrap_or(r.base);
        r.open.push(Open {
            track,
            file: clip_name(&self.camera, run, track),
            first,
            opened: at,
            until: None,
        });
        true
    }

    /// Track `track` ended on the frame at stream time `t` (`None`: the newest frame): its
    /// recording closes `post_s` later.
    pub fn close_at(&self, track: u64, t: Option<u64>) {
        let mut r = self.lock();
        let latest = r.latest;
        let post = (self.cfg.post_s * 1e9) as u64;
        if let Some(o) = r.open.iter_mut().find(|o| o.track == track) {
            let at = t.or(latest).unwrap_or(0);
            o.until = Some(at + post);
        }
    }

    /// Write every open recording with what it has (the camera stops).
    pub fn flush(&self) {
        let mut r = self.lock();
        let open = std::mem::take(&mut r.open);
        for o in open {
            self.close(&r, o);
        }
    }

    /// Hand a recording's frames to the writer (never waits: a full queue drops the clip).
    fn close(&self, r: &Ring, o: Open) {
        let Some(caps) = r.caps.clone() else { return };
        let skip = o.first.saturating_sub(r.base) as usize;
        let frames: Vec<gst::Buffer> = r.frames.iter().skip(skip).map(|e| e.buf.clone()).collect();
        if frames.is_empty() {
            return;
        }
        let job = Job {
            path: self.dir.join(&o.file),
            caps,
            frames,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Relaxed);
                tracing::warn!(camera = %self.camera, track = o.track, "clip dropped: the writer is behind");
            }
        }
    }
}

/// The sequence number of the newest keyframe at or before stream time `t`.
fn keyframe_at_or_before(r: &Ring, t: u64) -> Option<u64> {
    r.frames
        .iter()
        .enumerate()
        .rev()
        .find(|(_, e)| e.key && e.t <= t)
        .map(|(i, _)| r.base + i as u64)
}

fn first_keyframe(r: &Ring) -> Option<u64> {
    r.frames
        .iter()
        .position(|e| e.key)
        .map(|i| r.base + i as u64)
}

/// The writer thread of one camera: one small pipeline per clip.
fn writer(rx: Receiver<Job>, stats: Arc<ClipStats>, camera: &str) {
    let mut errors_logged = 0u32;
    for job in rx {
        let t0 = Instant::now();
        match write(&job) {
            Ok(bytes) => {
                stats.written.fetch_add(1, Relaxed);
                stats.bytes.fetch_add(bytes, Relaxed);
                tracing::debug!(camera, file = %job.path.display(), frames = job.frames.len(), bytes, "clip written");
            }
            Err(e) => {
                stats.failed.fetch_add(1, Relaxed);
                if errors_logged < 10 {
                    errors_logged += 1;
                    tracing::warn!(camera, file = %job.path.display(), error = %e, "cannot write the clip");
                }
            }
        }
        stats
            .cpu_us
            .fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
    }
    // What clips cost this camera (`scripts/api-load.py --clips` reads it).
    tracing::info!(
        camera,
        clips = stats.written.load(Relaxed),
        bytes = stats.bytes.load(Relaxed),
        cpu_ms = format!("{:.1}", stats.cpu_us.load(Relaxed) as f64 / 1e3),
        "clip writer ended"
    );
}

/// The clip's presentation and decode times, from its first decode time on. Demuxers of
/// Matroska and RTP depayloaders give presentation times only; with B-frames those are out of
/// order, and MP4 needs decode times: the i-th frame in decode order decodes at the i-th
/// smallest presentation time, less the reordering delay (so none decodes after it shows).
fn timestamps(frames: &[gst::Buffer]) -> Vec<(Option<gst::ClockTime>, Option<gst::ClockTime>)> {
    let ns = |t: Option<gst::ClockTime>| t.map(|t| i128::from(t.nseconds()));
    let pts: Vec<Option<i128>> = frames.iter().map(|b| ns(b.pts())).collect();
    let mut dts: Vec<Option<i128>> = frames.iter().map(|b| ns(b.dts())).collect();
    if dts.iter().any(Option::is_none) && pts.iter().all(Option::is_some) {
        let p: Vec<i128> = pts.iter().flatten().copied().collect();
        let mut sorted = p.clone();
        sorted.sort_unstable();
        let delay = sorted
            .iter()
            .zip(&p)
            .map(|(s, p)| s - p)
            .max()
            .unwrap_or(0)
            .max(0);
        dts = sorted.iter().map(|s| Some(s - delay)).collect();
    }
    let zero = dts.iter().chain(&pts).flatten().min().copied().unwrap_or(0);
    let rebase = |t: &Option<i128>| {
        t.and_then(|t| u64::try_from(t - zero).ok())
            .map(gst::ClockTime::from_nseconds)
    };
    pts.iter()
        .zip(&dts)
        .map(|(p, d)| (rebase(p), rebase(d)))
        .collect()
}

/// Mux `job`'s frames into an MP4 (moov first, so a browser plays it while it loads), written
/// to a temporary name and renamed when whole. Returns its size.
pub fn write(job: &Job) -> Result<u64, String> {
    let parser = parser_for(&job.caps).ok_or_else(|| format!("no clips of {}", job.caps))?;
    let desc = format!(
        "appsrc name=src format=time ! {parser} ! mp4mux faststart=true ! filesink name=sink"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let tmp = job.path.with_extension("mp4.part");
    let src = pipeline
        .by_name("src")
        .and_then(|s| s.downcast::<gst_app::AppSrc>().ok())
        .ok_or("no appsrc")?;
    let sink = pipeline.by_name("sink").ok_or("no filesink")?;
    sink.set_property("location", tmp.to_string_lossy().to_string());
    src.set_caps(Some(&job.caps));
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        for (b, (pts, dts)) in job.frames.iter().zip(timestamps(&job.frames)) {
            let mut b = b.copy();
            {
                let bm = b.make_mut();
                bm.set_pts(pts);
                bm.set_dts(dts);
            }
            src.push_buffer(b).map_err(|e| format!("push: {e:?}"))?;
        }
        src.end_of_stream().map_err(|e| format!("eos: {e:?}"))?;
        let bus = pipeline.bus().ok_or("no bus")?;
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .ok_or("no end of stream in 30 s")?;
        if let gst::MessageView::Error(e) = msg.view() {
            return Err(e.error().to_string());
        }
        Ok(())
    })();
    let _ = pipeline.set_state(gst::State::Null);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &job.path).map_err(|e| e.to_string())?;
    Ok(std::fs::metadata(&job.path).map(|m| m.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 10 frames/s, a keyframe every 20 frames (2 s), H.264 caps.
    fn frame(i: u64) -> gst::Buffer {
        let mut b = gst::Buffer::with_size(8).unwrap();
        {
            let bm = b.get_mut().unwrap();
            bm.set_pts(gst::ClockTime::from_nseconds(i * 100 * MS));
            if !i.is_multiple_of(20) {
                bm.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        b
    }

    fn ring(pre_s: f64, post_s: f64, max_s: f64) -> (ClipRing, Receiver<Job>) {
        gst::init().unwrap();
        let (tx, rx) = sync_channel(16);
        let cfg = ClipConfig {
            enabled: true,
            pre_s,
            post_s,
            max_s,
        };
        let r = ClipRing::new(cfg, Path::new("/clips"), "door", tx, Arc::default());
        (r, rx)
    }

    fn pts_s(job: &Job) -> (f64, f64) {
        let t = |b: &gst::Buffer| b.pts().unwrap().nseconds() as f64 / 1e9;
        (t(&job.frames[0]), t(job.frames.last().unwrap()))
    }

    #[test]
    fn a_clip_runs_from_the_keyframe_before_pre_s_to_post_s_after_the_end() {
        let (r, jobs) = ring(1.0, 0.5, 60.0);
        let caps = gst::Caps::builder("video/x-h264").build();
        for i in 0..=50 {
            r.push(&frame(i), Some(caps.clone()));
        }
        // Born at 5.0 s: 1 s before is 4.0 s, a keyframe.
        assert!(r.open("run1", 7, Some(5_000 * MS)));
        for i in 51..=70 {
            r.push(&frame(i), None);
        }
        r.close_at(7, Some(7_000 * MS));
        for i in 71..=74 {
            r.push(&frame(i), None);
        }
        assert!(jobs.try_recv().is_err(), "closed before post_s passed");
        r.push(&frame(75), None);
        let job = jobs.try_recv().expect("written once 7.5 s arrived");
        assert_eq!(pts_s(&job), (4.0, 7.5));
        assert_eq!(job.path, Path::new("/clips/door/run1-7.mp4"));
        for i in 76..=83 {
            r.push(&frame(i), None);
        }
        // Born at 8.3 s: 7.3 s is not a keyframe, so the clip starts at 6.0 s.
        assert!(r.open("run1", 8, Some(8_300 * MS)));
        r.flush();
        let job = jobs.try_recv().expect("flushed");
        assert_eq!(pts_s(&job).0, 6.0);
    }

    #[test]
    fn the_ring_keeps_only_the_pre_roll_and_what_recordings_need() {
        let (r, jobs) = ring(1.0, 0.0, 3.0);
        let caps = gst::Caps::builder("video/x-h264").build();
        for i in 0..=200 {
            r.push(&frame(i), Some(caps.clone()));
        }
        // 20 s in: only back to the keyframe at or before 19 s (18 s) is kept.
        assert_eq!(r.lock().frames.len(), 21);
        r.open("run1", 1, None);
        for i in 201..=260 {
            r.push(&frame(i), None);
        }
        // max_s 3: written at 23 s though its track goes on.
        let job = jobs.try_recv().expect("cut at max_s");
        assert_eq!(pts_s(&job), (18.0, 23.0));
        assert!(r.lock().open.is_empty());
    }

    #[test]
    fn b_frames_without_decode_times_get_them_in_order_and_never_after_their_pts() {
        gst::init().unwrap();
        // I P B B in decode order, presentation times only (as Matroska and RTP give them).
        let frames: Vec<gst::Buffer> = [1000, 1300, 1100, 1200]
            .iter()
            .map(|&ms| {
                let mut b = gst::Buffer::new();
                b.get_mut()
                    .unwrap()
                    .set_pts(gst::ClockTime::from_mseconds(ms));
                b
            })
            .collect();
        let t: Vec<(u64, u64)> = timestamps(&frames)
            .into_iter()
            .map(|(p, d)| (p.unwrap().mseconds(), d.unwrap().mseconds()))
            .collect();
        // Decode slots at the sorted presentation times less the delay, 100 ms (the B frames
        // show 100 ms after their slot); the clip starts at the first decode time.
        assert_eq!(t, vec![(100, 0), (400, 100), (200, 200), (300, 300)]);
        assert!(t.iter().all(|(p, d)| d <= p));
    }

    #[test]
    fn a_new_format_mid_stream_writes_the_open_clips_and_starts_afresh() {
        let (r, jobs) = ring(1.0, 0.5, 60.0);
        let small = gst::Caps::builder("video/x-h264")
            .field("width", 320)
            .build();
        let large = gst::Caps::builder("video/x-h264")
            .field("width", 640)
            .build();
        for i in 0..=30 {
            r.push(&frame(i), Some(small.clone()));
        }
        assert!(r.open("run1", 3, None));
        for i in 31..=40 {
            r.push(&frame(i), Some(small.clone()));
        }
        r.push(&frame(41), Some(large.clone()));
        let job = jobs.try_recv().expect("written at the change");
        assert_eq!(job.caps, small);
        assert_eq!(pts_s(&job), (2.0, 4.0));
        assert_eq!(r.lock().frames.len(), 1);
        // The next clip is all in the new format.
        for i in 42..=60 {
            r.push(&frame(i), Some(large.clone()));
        }
        assert!(r.open("run1", 4, None));
        r.flush();
        let job = jobs.try_recv().expect("flushed");
        assert_eq!(job.caps, large);
    }

    #[test]
    fn a_stream_that_is_not_h264_or_h265_records_nothing() {
        let (r, _jobs) = ring(1.0, 0.5, 60.0);
        let caps = gst::Caps::builder("video/x-raw").build();
        for i in 0..10 {
            r.push(&frame(i), Some(caps.clone()));
        }
        assert!(!r.open("run1", 1, None));
        assert!(r.lock().frames.is_empty());
    }
}
