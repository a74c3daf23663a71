//! A camera's live view for the HTTP API (`/api/<camera>/latest.jpg`, `/api/<camera>/live`): the
//! newest frame with its tracks drawn by the one renderer, as JPEG. Made only while someone
//! watches (a request in the last [`WANT_FOR`]), at most [`MAX_FPS`] a second; the engine thread
//! only draws onto a copy of the frame and hands it over (never waiting), a worker thread per
//! camera encodes it (`edge::jpeg`: GStreamer's jpegenc).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long one request keeps the view coming.
pub const WANT_FOR: Duration = Duration::from_secs(10);
/// Live frames a second at most.
pub const MAX_FPS: f64 = 10.0;

/// One encoded view.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub jpeg: Arc<[u8]>,
    /// The camera's frame index.
    pub index: u64,
    pub width: usize,
    pub height: usize,
}

/// The view one camera shares with the HTTP server.
pub struct LiveView {
    start: Instant,
    /// Milliseconds (since `start`) until which someone wants frames.
    wanted_until_ms: AtomicU64,
    /// When the last frame was handed over (ms since `start`).
    last_ms: AtomicU64,
    latest: tokio::sync::watch::Sender<Option<LiveFrame>>,
}

impl Default for LiveView {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            wanted_until_ms: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            latest: tokio::sync::watch::channel(None).0,
        }
    }
}

impl LiveView {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Someone is watching: keep frames coming for [`WANT_FOR`].
    pub fn want(&self) {
        let until = self.now_ms() + WANT_FOR.as_millis() as u64;
        self.wanted_until_ms.fetch_max(until, Relaxed);
    }

    /// Whether the engine thread should make a view of this frame (watched, and not faster
    /// than [`MAX_FPS`]).
    pub fn due(&self) -> bool {
        let now = self.now_ms();
        if now > self.wanted_until_ms.load(Relaxed) {
            return false;
        }
        let every = (1000.0 / MAX_FPS) as u64;
        let last = self.last_ms.load(Relaxed);
        if last != 0 && now < last + every {
            return false;
        }
        self.last_ms.store(now.max(1), Relaxed);
        true
    }

    /// The newest view, and a receiver that wakes when there is another.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<LiveFrame>> {
        self.latest.subscribe()
    }

    fn publish(&self, f: LiveFrame) {
        self.latest.send_replace(Some(f));
    }
}

/// A drawn frame for the encoder: packed RGB.
pub struct Drawn {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub index: u64,
}

/// The engine thread's end: hands drawn frames to the encoder, dropping one when it is busy.
pub struct LiveSender {
    tx: mpsc::SyncSender<Drawn>,
}

impl LiveSender {
    pub fn offer(&self, d: Drawn) {
        let _ = self.tx.try_send(d);
    }
}

/// Start camera `name`'s encoder thread; it ends when the sender is dropped.
/// It runs at `nice` (`[http] nice`), as the server does.
pub fn start(
    name: &str,
    view: Arc<LiveView>,
    quality: u8,
    nice: i32,
) -> std::io::Result<LiveSender> {
    let (tx, rx) = mpsc::sync_channel::<Drawn>(1);
    let thread: String = format!("live-{name}").chars().take(15).collect();
    std::thread::Builder::new().name(thread).spawn(move || {
        crate::edge::http::yield_to_engine(nice);
        let mut encoder = crate::edge::jpeg::Encoder::new(quality);
        let mut last_error = None::<String>;
        for d in rx {
            match encoder.encode(&d.rgb, d.width, d.height) {
                Ok(jpeg) => view.publish(LiveFrame {
                    jpeg: jpeg.into(),
                    index: d.index,
                    width: d.width,
                    height: d.height,
                }),
                Err(e) => {
                    if last_error.as_deref() != Some(&e) {
                        tracing::warn!(error = %e, "live view: cannot encode the frame");
                        last_error = Some(e);
                    }
                }
            }
        }
    })?;
    Ok(LiveSender { tx })
}
