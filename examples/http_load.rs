//! A light load on the daemon's HTTP server, for `scripts/api-load.py` (issue 31): `viewers`
//! clients reading `/api/<camera>/live` (MJPEG) and `rps` API requests a second, evenly spaced, in
//! turn `/api/cameras`, `/api/events?limit=50`, `/api/health` and `/metrics`, each on a connection
//! of its own (`Connection: close`, the default) or on idle keep-alive connections as a browser
//! sends them (`keep-alive`), `burst` of them at a time (default 1), until `seconds` have passed or
//! the daemon goes. It prints one JSON line: requests served, errors, connections cut with no
//! answer (as the daemon stops), MJPEG bytes read, and its own CPU seconds.
//!
//! The viewers stand for browsers on other machines, so the client is built to cost the cores it
//! shares with the daemon as little as it can: one thread and one event loop (a current-thread
//! tokio runtime) for every viewer and request, so that a live frame written to ten viewers wakes
//! it once, not ten times, and a request costs one timer tick and one readiness wake-up.
//!
//!   cargo run --release --features edge --example http_load -- PORT CAMERA VIEWERS RPS SECONDS
//!       [BURST [close|keep-alive]]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Requests in flight at most; a tick that finds this many counts an error instead of queueing.
const MAX_IN_FLIGHT: u64 = 64;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    match args.get(i).map(|s| s.parse()) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("usage: http_load PORT CAMERA VIEWERS RPS SECONDS ({what} missing or bad)");
            std::process::exit(2);
        }
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    errors: AtomicU64,
    /// Refused connections since the last answer: the daemon is gone when they pile up (they
    /// are not counted as errors).
    misses: AtomicU64,
    in_flight: AtomicU64,
    /// Connections closed with no answer (as the daemon stops).
    cut: AtomicU64,
    live_bytes: AtomicU64,
}

/// Read one live stream until `stop` (reconnecting while the daemon is there).
async fn viewer(port: u16, camera: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut buf = vec![0u8; 64 * 1024];
    let req = format!("GET /api/{camera}/live HTTP/1.1\r\nHost: load\r\n\r\n");
    while !stop.load(Relaxed) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if s.write_all(req.as_bytes()).await.is_err() {
            continue;
        }
        while !stop.load(Relaxed) {
            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    counts.live_bytes.fetch_add(n as u64, Relaxed);
                }
                Err(_) => {} // no frame for a while: look at `stop` again
            }
        }
    }
}

/// Idle keep-alive connections, for the next request to take.
type Pool = Arc<std::sync::Mutex<Vec<TcpStream>>>;

/// What a request came to.
enum Outcome {
    Ok,
    /// Refused: the daemon has stopped listening (its stream ended).
    Refused,
    /// The connection closed with no answer at all (the daemon stopping as it came).
    Cut,
    Error(String),
}

/// Read one HTTP/1.1 response off `s` (its length from `Content-Length`, or chunked); the
/// response's head, and whether the connection can carry another request.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(String, bool)> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok((String::from_utf8_lossy(buf).into_owned(), false));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    let close = head.contains("connection: close");
    // Whether the body is all there: its length, or chunked's last chunk.
    let whole = |buf: &[u8]| match length {
        Some(len) => buf.len() >= head_end + len,
        None => buf[head_end..].ends_with(b"0\r\n\r\n"),
    };
    if length.is_none() && !chunked {
        // Delimited by the end of the connection.
        s.read_to_end(buf).await?;
        return Ok((head, false));
    }
    while !whole(buf) {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((head, !close))
}

/// One request: on a connection of its own (`Connection: close`), or with `pool` on an idle
/// keep-alive connection (a new one when none is idle), which goes back to the pool after.
async fn request(port: u16, path: &'static str, pool: Option<Pool>) -> Outcome {
    let go = async {
        let reused = pool
            .as_ref()
            .and_then(|p| p.lock().unwrap_or_else(|e| e.into_inner()).pop());
        let mut s = match reused {
            Some(s) => s,
            None => match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Outcome::Refused
                }
                Err(e) => return Outcome::Error(format!("connect: {e}")),
            },
        };
        let close = if pool.is_some() {
            ""
        } else {
            "Connection: close\r\n"
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: load\r\n{close}\r\n");
        if let Err(e) = s.write_all(req.as_bytes()).await {
            return Outcome::Error(format!("send: {e}"));
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        match read_response(&mut s, &mut buf).await {
            Ok((head, _)) if head.is_empty() => Outcome::Cut,
            Ok((head, again)) if head.starts_with("http/1.1 200") => {
                if let (Some(p), true) = (&pool, again) {
                    p.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                }
                Outcome::Ok
            }
            Ok((head, _)) => Outcome::Error(format!(
                "answer: {:?}",
                head.chars().take(80).collect::<String>()
            )),
            Err(e) => Outcome::Error(format!("read: {e}")),
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), go).await {
        Ok(Outcome::Error(e)) => Outcome::Error(format!("{path}: {e}")),
        Ok(o) => o,
        Err(_) => Outcome::Error(format!("{path}: no answer in 2 s")),
    }
}

/// This process's user + system CPU seconds (`/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = arg(&args, 1, "PORT");
    let camera: String = arg(&args, 2, "CAMERA");
    let viewers: usize = arg(&args, 3, "VIEWERS");
    let rps: f64 = arg(&args, 4, "RPS");
    let seconds: f64 = arg(&args, 5, "SECONDS");
    // Requests sent together at each tick (default 1: evenly spaced).
    let burst: usize = args.get(6).and_then(|b| b.parse().ok()).unwrap_or(1).max(1);
    // `keep-alive`: requests reuse idle connections, as a browser's do; `close` (default): each
    // on a connection of its own.
    let keep_alive = match args.get(7).map(String::as_str) {
        None | Some("close") => false,
        Some("keep-alive") => true,
        Some(other) => {
            eprintln!("http_load: CONNECTION is `close` or `keep-alive`, not `{other}`");
            std::process::exit(2);
        }
    };
    let pool: Pool = Default::default();
    // Like the daemon's server, the client waits for IO at most once per request tick (10 ms
    // at most), so answers that come back meanwhile are read in the same wake-up as the next
    // request is sent: about one wake-up per request, as evenly spaced as the requests.
    let every = Duration::from_secs_f64((burst as f64 / rps.max(0.001)).min(0.01));
    let pace_base = Instant::now();
    let woke = Arc::new(AtomicU64::new(0));
    let (w1, w2) = (woke.clone(), woke);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || {
            let since = (pace_base.elapsed().as_nanos() as u64).saturating_sub(w1.load(Relaxed));
            if let Some(rest) = every.checked_sub(Duration::from_nanos(since)) {
                std::thread::sleep(rest);
            }
        })
        .on_thread_unpark(move || w2.store(pace_base.elapsed().as_nanos() as u64, Relaxed))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("http_load: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..viewers {
            tasks.push(tokio::spawn(viewer(
                port,
                camera.clone(),
                stop.clone(),
                counts.clone(),
            )));
        }
        let paths = [
            "/api/cameras",
            "/api/events?limit=50",
            "/api/health",
            "/metrics",
        ];
        if rps <= 0.0 {
            // Viewers only: watch that the daemon is still there, once a second.
            while t0.elapsed().as_secs_f64() < seconds {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                    break;
                }
            }
        } else {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(burst as f64 / rps));
            let mut i = 0usize;
            while t0.elapsed().as_secs_f64() < seconds && !stop.load(Relaxed) {
                tick.tick().await;
                for _ in 0..burst {
                    // The daemon is gone (its stream ended): stop with it.
                    if counts.misses.load(Relaxed) >= 20 {
                        stop.store(true, Relaxed);
                        break;
                    }
                    if counts.in_flight.load(Relaxed) >= MAX_IN_FLIGHT {
                        counts.errors.fetch_add(1, Relaxed);
                        continue;
                    }
                    counts.in_flight.fetch_add(1, Relaxed);
                    let (c, path) = (counts.clone(), paths[i % paths.len()]);
                    let pool = keep_alive.then(|| pool.clone());
                    tokio::spawn(async move {
                        match request(port, path, pool).await {
                            Outcome::Ok => {
                                c.ok.fetch_add(1, Relaxed);
                                c.misses.store(0, Relaxed);
                            }
                            Outcome::Refused => {
                                c.misses.fetch_add(1, Relaxed);
                            }
                            Outcome::Cut => {
                                c.cut.fetch_add(1, Relaxed);
                            }
                            Outcome::Error(e) => {
                                // The first few, for whoever reads the log.
                                if c.errors.load(Relaxed) < 3 {
                                    eprintln!("http_load: {e}");
                                }
                                c.errors.fetch_add(1, Relaxed);
                            }
                        }
                        c.in_flight.fetch_sub(1, Relaxed);
                    });
                    i += 1;
                }
            }
        }
        stop.store(true, Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    });
    let took = t0.elapsed().as_secs_f64();
    let errors = counts.errors.load(Relaxed);
    println!(
        "{{\"requests\": {}, \"errors\": {errors}, \"cut\": {}, \"seconds\": {took:.3}, \"live_bytes\": {}, \"cpu_s\": {:.3}}}",
        counts.ok.load(Relaxed),
        counts.cut.load(Relaxed),
        counts.live_bytes.load(Relaxed),
        cpu_seconds()
    );
}
