//! A light load on the daemon's HTTP server, for `scripts/api-load.py` (issue 31): `viewers`
//! clients reading `/api/<camera>/live` (MJPEG) and one client sending `rps` API requests a
//! second, in turn `/api/cameras`, `/api/events?limit=50`, `/api/health` and `/metrics`, until
//! `seconds` have passed or the daemon goes. Plain threads and blocking sockets on loopback, so
//! the load costs the cores the daemon shares as little as a client can; it prints one JSON
//! line: requests served, errors, MJPEG bytes read, and its own CPU seconds.
//!
//!   cargo run --release --example http_load -- PORT CAMERA VIEWERS RPS SECONDS

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    match args.get(i).map(|s| s.parse()) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("usage: http_load PORT CAMERA VIEWERS RPS SECONDS ({what} missing or bad)");
            std::process::exit(2);
        }
    }
}

/// Read one live stream until `stop` (reconnecting while the daemon is there).
fn viewer(port: u16, camera: &str, stop: &AtomicBool, bytes: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Relaxed) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let req = format!("GET /api/{camera}/live HTTP/1.1\r\nHost: load\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            continue;
        }
        while !stop.load(Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    bytes.fetch_add(n as u64, Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
}

/// One request on its own connection (`Connection: close`); whether it got a 200.
fn request(port: u16, path: &str, buf: &mut Vec<u8>) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    buf.clear();
    s.read_to_end(buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
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
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..viewers {
        let (stop, bytes, camera) = (stop.clone(), bytes.clone(), camera.clone());
        threads.push(std::thread::spawn(move || {
            viewer(port, &camera, &stop, &bytes)
        }));
    }
    let paths = [
        "/api/cameras",
        "/api/events?limit=50",
        "/api/health",
        "/metrics",
    ];
    let (mut ok, mut errors, mut misses) = (0u64, 0u64, 0u32);
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rps.max(0.001));
    let mut next = t0;
    let mut buf = Vec::new();
    let mut i = 0usize;
    while t0.elapsed().as_secs_f64() < seconds {
        if rps <= 0.0 {
            // Viewers only: watch that the daemon is still there, once a second.
            std::thread::sleep(Duration::from_secs(1));
            if TcpStream::connect(("127.0.0.1", port)).is_err() {
                break;
            }
            continue;
        }
        if request(port, paths[i % paths.len()], &mut buf) {
            ok += 1;
            misses = 0;
        } else {
            errors += 1;
            misses += 1;
            // The daemon is gone (its stream ended): stop with it.
            if misses >= 20 {
                errors -= u64::from(misses);
                break;
            }
        }
        i += 1;
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    let took = t0.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!(
        "{{\"requests\": {ok}, \"errors\": {errors}, \"seconds\": {took:.3}, \"live_bytes\": {}, \"cpu_s\": {:.3}}}",
        bytes.load(Relaxed),
        cpu_seconds()
    );
}
