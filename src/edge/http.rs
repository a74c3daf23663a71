//! The daemon's one HTTP server (axum on its tokio runtime): Prometheus `/metrics` and the JSON
//! API (docs/api.md). It listens on `[http] listen` (loopback by default); anywhere else it needs
//! `[http] token` (`config check` refuses the config otherwise), sent as `Authorization: Bearer
//! <token>` or `?token=`; requests without it get 401.
//!
//! A camera's switches are changed here the same way the MQTT control topics change them: a
//! [`Request::Switch`] to the supervisor, which owns the cameras and answers.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::edge::config::Secret;
use crate::edge::control::{parse_on_off, Request};
use crate::edge::metrics::{CameraMetrics, Metrics, SourceStatus};
use crate::edge::store::{self, Filter, StoreError};
use crate::edge::topics::Switch;

/// What every handler shares.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// To the supervisor: switch a camera.
    pub requests: mpsc::Sender<Request>,
    /// Required on every request when set.
    pub token: Option<Secret>,
    /// The event store's file (`None`: no store).
    pub store: Option<std::path::PathBuf>,
    /// Where snapshots are; a snapshot is served only from below it.
    pub snapshots_dir: std::path::PathBuf,
    /// Where clips are; likewise.
    pub clips_dir: std::path::PathBuf,
    /// Ends the live streams at shutdown.
    pub stop: tokio_util::sync::CancellationToken,
}

/// A JSON error: `{"error": message}` with its status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The router of every endpoint.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(|| page("text/html; charset=utf-8", PAGE_HTML)))
        .route(
            "/app.js",
            get(|| page("text/javascript; charset=utf-8", PAGE_JS)),
        )
        .route(
            "/app.css",
            get(|| page("text/css; charset=utf-8", PAGE_CSS)),
        )
        .route("/metrics", get(prometheus))
        .route("/api/health", get(health))
        .route("/api/cameras", get(cameras))
        .route("/api/cameras/{camera}/{switch}", post(set_switch))
        .route("/api/events", get(events))
        .route("/api/events/{id}", get(event))
        .route("/api/events/{id}/snapshot.jpg", get(snapshot))
        .route("/api/events/{id}/clip", get(clip))
        .route("/api/{camera}/latest.jpg", get(latest))
        .route("/api/{camera}/live", get(live))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint (docs/api.md)") })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// The page (no build step: plain files, in the binary).
const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/app.js");
const PAGE_CSS: &str = include_str!("page/app.css");

/// The page's files need no token: they hold no data, and the page asks for the token.
fn public(path: &str) -> bool {
    matches!(path, "/" | "/app.js" | "/app.css")
}

async fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Lower the calling thread's priority to `nice` (Linux: nice values are per thread, and threads
/// it starts inherit it). 0 leaves it; a failure is logged once and changes nothing.
pub fn yield_to_engine(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority(2) on this thread's own id; no memory is passed.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if rc != 0 {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower the thread's priority");
    }
}

/// Paces a runtime's thread (`[http] coalesce_ms`): before it waits for IO it sleeps out the
/// rest of `every` since it last woke, so whatever arrives meanwhile (requests, live frames for
/// every viewer, acknowledgements) is handled in one wake-up. On a box whose cores the engine
/// keeps busy each wake-up takes a core from an engine thread mid-operator, and costs the engine
/// more than the work it does (docs/perf.md, "The page and the API against the engine").
struct Pace {
    base: std::time::Instant,
    /// When the thread last woke, in nanoseconds since `base`.
    woke_ns: std::sync::atomic::AtomicU64,
    every: Duration,
}

impl Pace {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn before_park(&self) {
        let since = self.now_ns().saturating_sub(self.woke_ns.load(Relaxed));
        let every = self.every.as_nanos() as u64;
        if since < every {
            std::thread::sleep(Duration::from_nanos(every - since));
        }
    }

    fn after_unpark(&self) {
        self.woke_ns.store(self.now_ns(), Relaxed);
    }
}

/// Let the kernel fire this thread's timers up to `slack` late, so that they share wake-ups
/// with other work (prctl `PR_SET_TIMERSLACK`; the default is 50 µs).
fn timer_slack(slack: Duration) {
    // SAFETY: prctl(2) with an integer argument on the calling thread; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, slack.as_nanos() as libc::c_ulong) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot set the timer slack");
    }
}

/// Serve on a thread of its own at `[http] nice` (its own runtime: its IO, its blocking reads
/// and its live streams all run at that priority), handling its connections at most once per
/// `[http] coalesce_ms`, until `stop` is cancelled; the returned receiver completes when it has
/// stopped.
pub fn spawn(
    listener: std::net::TcpListener,
    state: HttpState,
    stop: tokio_util::sync::CancellationToken,
    cfg: &crate::edge::config::HttpConfig,
) -> std::io::Result<oneshot::Receiver<()>> {
    let (done, stopped) = oneshot::channel();
    listener.set_nonblocking(true)?;
    let nice = cfg.nice;
    let every = Duration::from_millis(cfg.coalesce_ms);
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            yield_to_engine(nice);
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.enable_all().thread_name("http-blocking");
            if !every.is_zero() {
                timer_slack(every / 4);
                let pace = Arc::new(Pace {
                    base: std::time::Instant::now(),
                    woke_ns: Default::default(),
                    every,
                });
                let p = pace.clone();
                builder
                    .on_thread_park(move || p.before_park())
                    .on_thread_unpark(move || pace.after_unpark());
            }
            let rt = match builder.build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "the HTTP server cannot start its runtime");
                    return;
                }
            };
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => serve(l, state, stop).await,
                    Err(e) => tracing::error!(error = %e, "the HTTP server cannot listen"),
                }
            });
            let _ = done.send(());
        })?;
    Ok(stopped)
}

/// Serve until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    stop: tokio_util::sync::CancellationToken,
) {
    let app = router(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the HTTP server stopped");
    }
}

/// Equal in time independent of where they differ (a token compare).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The token from `Authorization: Bearer <token>` or the `token` query parameter.
fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.or_else(|| query?.split('&').find_map(|kv| kv.strip_prefix("token=")))
}

async fn authorize(State(st): State<HttpState>, req: HttpRequest, next: Next) -> Response {
    if let Some(token) = st.token.as_ref().filter(|_| !public(req.uri().path())) {
        let ok = presented(req.headers(), req.uri().query())
            .is_some_and(|t| same(t.as_bytes(), token.expose().as_bytes()));
        if !ok {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a token is required: Authorization: Bearer <token>",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    next.run(req).await
}

async fn prometheus(State(st): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render_prometheus(),
    )
        .into_response()
}

async fn health(State(st): State<HttpState>) -> Json<Value> {
    let m = &st.metrics;
    let cams = m.cameras();
    let online = cams
        .iter()
        .filter(|c| c.status() == SourceStatus::Online)
        .count();
    Json(json!({
        "status": "ok",
        "uptime_s": m.start.elapsed().as_secs_f64(),
        "model": m.model,
        "engine": m.engine,
        "mqtt_connected": m.mqtt.connected.load(Relaxed),
        "cameras": cams.len(),
        "cameras_online": online,
    }))
}

/// One camera as the API shows it.
pub fn camera_json(m: &Metrics, c: &CameraMetrics) -> Value {
    let now_ms = m.now_ms();
    let last = c.last_frame_ms.load(Relaxed);
    let got_frame = c.frames_in.load(Relaxed) > 0;
    let last_frame_time = got_frame.then(|| {
        let ago = std::time::Duration::from_millis(now_ms.saturating_sub(last));
        crate::edge::events::rfc3339(std::time::SystemTime::now() - ago)
    });
    json!({
        "name": c.name,
        "status": c.status().as_str(),
        "enabled": c.status() != SourceStatus::Disabled,
        "detect": c.detect.load(Relaxed),
        "snapshots": c.snapshots_on.load(Relaxed),
        "fps": (c.fps_milli.load(Relaxed) as f64 / 1000.0),
        "frames_in": c.frames_in.load(Relaxed),
        "frames_processed": c.frames_processed.load(Relaxed),
        "frames_dropped": c.frames_dropped.load(Relaxed),
        "frames_skipped": c.frames_skipped.load(Relaxed),
        "tracks_active": c.tracks_active.load(Relaxed),
        "source_restarts": c.source_restarts.load(Relaxed),
        "last_frame_time": last_frame_time,
    })
}

async fn cameras(State(st): State<HttpState>) -> Json<Value> {
    let m = &st.metrics;
    Json(Value::Array(
        m.cameras().iter().map(|c| camera_json(m, c)).collect(),
    ))
}

/// `ON`/`OFF` as text, or JSON `true`/`false`, `{"on": bool}` or `{"<switch>": bool}`.
fn parse_switch_body(switch: Switch, body: &[u8]) -> Option<bool> {
    if let Some(on) = parse_on_off(body) {
        return Some(on);
    }
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Bool(b) => Some(b),
        Value::Object(o) => o
            .get("on")
            .or_else(|| o.get(switch.as_str()))
            .and_then(Value::as_bool),
        _ => None,
    }
}

/// `POST /api/cameras/<camera>/<switch>` (`detect`, `enabled`, `snapshots`).
async fn set_switch(
    State(st): State<HttpState>,
    Path((camera, switch)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Some(sw) = Switch::ALL.into_iter().find(|s| s.as_str() == switch) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("switch `{switch}`: one of enabled, detect, snapshots"),
        );
    };
    let Some(on) = parse_switch_body(sw, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "body: ON or OFF (or JSON true / false / {\"on\": bool})",
        );
    };
    let (reply, answer) = oneshot::channel();
    let req = Request::Switch {
        camera: camera.clone(),
        switch: sw,
        on,
        reply: Some(reply),
    };
    if st.requests.send(req).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match answer.await {
        Ok(Ok(())) => Json(json!({ "camera": camera, sw.as_str(): on })).into_response(),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
    }
}

/// `GET /api/events` parameters, checked: a bad one is named.
fn filter_of(q: &std::collections::HashMap<String, String>) -> Result<Filter, Response> {
    let bad = |k: &str, why: &str| error(StatusCode::BAD_REQUEST, format!("{k}: {why}"));
    let time = |k: &str| -> Result<Option<f64>, Response> {
        match q.get(k) {
            None => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(t) if t.is_finite() && t >= 0.0 => Ok(Some(t)),
                _ => Err(bad(k, "a Unix time in seconds (e.g. 1765000000.5)")),
            },
        }
    };
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(bad("limit", "a whole number from 1 to 1000")),
        },
    };
    for k in q.keys() {
        if ![
            "camera", "label", "zone", "after", "before", "limit", "token",
        ]
        .contains(&k.as_str())
        {
            return Err(bad(
                k,
                "unknown parameter (camera, label, zone, after, before, limit)",
            ));
        }
    }
    Ok(Filter {
        camera: q.get("camera").cloned(),
        label: q.get("label").cloned(),
        zone: q.get("zone").cloned(),
        after: time("after")?,
        before: time("before")?,
        limit,
    })
}

/// Run a store read, here: the server has a thread of its own ([`spawn`]), a read is a query on
/// the thread's cached connection (WAL: readers never wait for the writer), and handing it to a
/// blocking thread cost more than the query (docs/perf.md, "The page and the API against the
/// engine").
async fn read_store<T>(
    st: &HttpState,
    f: impl FnOnce(&std::path::Path) -> Result<T, StoreError>,
) -> Result<T, Response> {
    let Some(path) = st.store.as_deref() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "the event store is off ([store] enabled = false)",
        ));
    };
    f(path).map_err(|e| {
        tracing::warn!(error = %e, "event store read failed");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the event store cannot be read",
        )
    })
}

async fn events(
    State(st): State<HttpState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let f = match filter_of(&q) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let clips = st.clips_dir.clone();
    let read = move |p: &std::path::Path| {
        let mut rows = store::query(p, &f)?;
        rows.iter_mut().for_each(|r| mark_clip(&clips, r));
        Ok(rows)
    };
    match read_store(&st, read).await {
        Ok(rows) => Json(Value::Array(rows)).into_response(),
        Err(r) => r,
    }
}

/// An `event_id` as the daemon makes them (`<run>-<camera>-<id>`): letters, digits, `-`, `_`.
fn event_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

async fn event(State(st): State<HttpState>, Path(id): Path<String>) -> Response {
    match stored_event(&st, &id).await {
        Ok(mut row) => {
            mark_clip(&st.clips_dir, &mut row);
            Json(row).into_response()
        }
        Err(r) => r,
    }
}

/// The stored track `id` (an `event_id`), or the answer to give: 404 for an id the daemon
/// never makes or does not have.
async fn stored_event(st: &HttpState, id: &str) -> Result<Value, Response> {
    let missing = || {
        error(
            StatusCode::NOT_FOUND,
            format!("no event `{}`", id.escape_debug()),
        )
    };
    if !event_id_ok(id) {
        return Err(missing());
    }
    match read_store(st, |p| store::get(p, id)).await? {
        Some(row) => Ok(row),
        None => Err(missing()),
    }
}

async fn snapshot(State(st): State<HttpState>, Path(id): Path<String>) -> Response {
    let row = match stored_event(&st, &id).await {
        Ok(row) => row,
        Err(r) => return r,
    };
    // The stored name is checked again: a path that would leave the folder is never read.
    let file = row["snapshot"]
        .as_str()
        .and_then(|name| store::snapshot_path(&st.snapshots_dir, name));
    let Some(file) = file else {
        return error(
            StatusCode::NOT_FOUND,
            format!("event `{id}` has no snapshot"),
        );
    };
    match tokio::task::spawn_blocking(move || std::fs::read(file)).await {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response(),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("event `{id}` has no snapshot (snapshots off, or past retention)"),
        ),
    }
}

/// A stored track's clip file, when its name stays inside the clips folder.
fn clip_file(dir: &std::path::Path, row: &Value) -> Option<std::path::PathBuf> {
    let name = crate::edge::clips::clip_name(
        row["camera"].as_str()?,
        row["run"].as_str()?,
        row["track_id"].as_u64()?,
    );
    store::snapshot_path(dir, &name)
}

/// `has_clip`: whether the track's clip is written (it is, once its track ended and `post_s`
/// passed, on a camera with `[camera.clips]` and an H.264 / H.265 stream).
fn mark_clip(dir: &std::path::Path, row: &mut Value) {
    let has = clip_file(dir, row).is_some_and(|f| f.is_file());
    row["has_clip"] = Value::Bool(has);
}

/// A `Range: bytes=...` header against a file of `len` bytes: the first and last byte, `None`
/// for the whole file, `Err` when it cannot be met.
fn byte_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    // One range only; a list falls back to the whole file, as RFC 9110 allows.
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (first, last) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let first: u64 = a.parse().map_err(|_| ())?;
        let last = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        (first, last)
    };
    if len == 0 || first > last || first >= len {
        return Err(());
    }
    Ok(Some((first, last)))
}

/// `GET /api/events/<id>/clip`: the track's MP4, whole or by byte range (a browser's video
/// element asks for ranges to seek).
async fn clip(State(st): State<HttpState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let row = match stored_event(&st, &id).await {
        Ok(row) => row,
        Err(r) => return r,
    };
    let missing = || {
        error(
            StatusCode::NOT_FOUND,
            format!(
                "event `{id}` has no clip (clips off for its camera, a stream that is not H.264 or \
                 H.265, its track not ended yet, or past retention)"
            ),
        )
    };
    let Some(file) = clip_file(&st.clips_dir, &row) else {
        return missing();
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Result<_, u64>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&file)?;
        let len = f.metadata()?.len();
        let Ok(part) = byte_range(range.as_deref(), len) else {
            return Ok(Err(len));
        };
        let (first, last) = part.unwrap_or((0, len.saturating_sub(1)));
        f.seek(SeekFrom::Start(first))?;
        let mut body = Vec::new();
        f.take(last + 1 - first).read_to_end(&mut body)?;
        Ok(Ok((part, len, body)))
    })
    .await;
    match read {
        Ok(Ok(Ok((part, len, body)))) => {
            let mut resp = (
                [
                    (header::CONTENT_TYPE, "video/mp4"),
                    (header::ACCEPT_RANGES, "bytes"),
                ],
                body,
            )
                .into_response();
            if let Some((first, last)) = part {
                *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                if let Ok(v) = format!("bytes {first}-{last}/{len}").parse() {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            resp
        }
        Ok(Ok(Err(len))) => {
            let mut resp = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the Range header cannot be met by a clip of {len} bytes"),
            );
            if let Ok(v) = format!("bytes */{len}").parse() {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
        _ => missing(),
    }
}

fn jpeg(bytes: Arc<[u8]>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Bytes::from_owner(bytes),
    )
        .into_response()
}

fn camera_of(st: &HttpState, camera: &str) -> Result<Arc<CameraMetrics>, Response> {
    st.metrics.camera(camera).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no camera `{}`", camera.escape_debug()),
        )
    })
}

/// `GET /api/<camera>/latest.jpg`: the newest frame with its tracks drawn (waiting up to 2 s for
/// one made now, else the last one).
async fn latest(State(st): State<HttpState>, Path(camera): Path<String>) -> Response {
    let cam = match camera_of(&st, &camera) {
        Ok(c) => c,
        Err(r) => return r,
    };
    cam.live.want();
    let mut rx = cam.live.subscribe();
    rx.mark_unchanged();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), rx.changed()).await;
    let frame = rx.borrow().clone();
    match frame {
        Some(f) => jpeg(f.jpeg),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "camera `{camera}` has no frame yet (status {})",
                cam.status().as_str()
            ),
        ),
    }
}

/// `GET /api/<camera>/live`: MJPEG (`multipart/x-mixed-replace`), a part per live frame (at most
/// `live::MAX_FPS` a second) until the client goes or the daemon stops.
async fn live(State(st): State<HttpState>, Path(camera): Path<String>) -> Response {
    use tokio::io::AsyncWriteExt;
    let cam = match camera_of(&st, &camera) {
        Ok(c) => c,
        Err(r) => return r,
    };
    cam.live.want();
    let mut rx = cam.live.subscribe();
    let (mut w, r) = tokio::io::duplex(1 << 16);
    let stop = st.stop.clone();
    tokio::spawn(async move {
        loop {
            cam.live.want();
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                n = tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed()) => n,
            };
            match next {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => continue,
            }
            let Some(f) = rx.borrow_and_update().clone() else {
                continue;
            };
            let head = format!(
                "--inspro\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                f.jpeg.len()
            );
            let sent = async {
                w.write_all(head.as_bytes()).await?;
                w.write_all(&f.jpeg).await?;
                w.write_all(b"\r\n").await
            };
            if sent.await.is_err() {
                break; // the client went
            }
        }
    });
    (
        [
            (
                header::CONTENT_TYPE,
                "multipart/x-mixed-replace; boundary=inspro",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(r)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_bodies() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h, Some("a=1&token=xyz")), Some("xyz"));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented(&h, None), Some("abc"));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert_eq!(parse_switch_body(Switch::Detect, b"off"), Some(false));
        assert_eq!(parse_switch_body(Switch::Detect, b"true"), Some(true));
        assert_eq!(
            parse_switch_body(Switch::Detect, br#"{"detect": false}"#),
            Some(false)
        );
        assert_eq!(
            parse_switch_body(Switch::Detect, br#"{"on": true}"#),
            Some(true)
        );
        assert_eq!(parse_switch_body(Switch::Detect, b"maybe"), None);
        assert_eq!(parse_switch_body(Switch::Detect, br#"{"x": 1}"#), None);
    }

    #[test]
    fn byte_ranges_as_rfc_9110_reads_them() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(byte_range(Some("bytes=-500"), 100), Ok(Some((0, 99))));
        assert_eq!(byte_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(byte_range(Some("bytes=0-1,5-9"), 100), Ok(None));
        for bad in [
            "bytes=100-",
            "bytes=9-1",
            "bytes=-0",
            "items=0-1",
            "bytes=a-b",
            "bytes=5",
        ] {
            assert_eq!(byte_range(Some(bad), 100), Err(()), "{bad}");
        }
        assert_eq!(byte_range(Some("bytes=0-"), 0), Err(()));
    }
}
