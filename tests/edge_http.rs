//! The daemon's HTTP server against a running daemon: `/metrics` as before, the JSON API
//! (health, cameras, the switches shared with MQTT), the token beyond loopback, and the curl
//! examples of docs/api.md run as written.
#![cfg(feature = "edge")]

mod edge_common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use edge_common::*;
use inspro::edge::topics::{Switch, Topics};
use serde_json::Value;

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// How many MJPEG parts `path` sends in `d`.
fn mjpeg_parts(port: u16, path: &str, d: Duration) -> usize {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let end = std::time::Instant::now() + d;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    while std::time::Instant::now() < end {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
    }
    raw.windows(8).filter(|w| w == b"--inspro").count()
}

/// A daemon with one live camera, `door`, and its HTTP server on a free port wanting `token`;
/// returned once `door` has events.
fn daemon_with_token(dir: &std::path::Path, token: &str) -> (Mosquitto, Subscriber, u16, Daemon) {
    daemon_with_cameras(dir, token, "")
}

/// `door` (a live test pattern) and `more` cameras.
fn daemon_with_cameras(
    dir: &std::path::Path,
    token: &str,
    more: &str,
) -> (Mosquitto, Subscriber, u16, Daemon) {
    let broker = Mosquitto::start(dir, false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    let port = free_port();
    let cams = camera("door", "test:ball?live=true&fps=10", "") + more;
    let cfg = test_config(dir, &broker.url(), &cams, "");
    with_http(
        &cfg,
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n"),
    );
    let d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(Duration::from_secs(30), "events", |_| {
        !sub.events("door").is_empty()
    });
    (broker, sub, port, d)
}

fn with_http(cfg: &std::path::Path, section: &str) {
    let text = std::fs::read_to_string(cfg).unwrap() + "\n" + section;
    std::fs::write(cfg, text).unwrap();
}

#[test]
fn api_health_cameras_switches_metrics_and_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, sub, port, mut d) = daemon_with_token(dir.path(), "t0ken-abc");
    let tok = Some("t0ken-abc");

    // No token, a wrong one: 401.
    assert_eq!(request(port, "GET", "/api/health", None, "").0, 401);
    assert_eq!(
        request(port, "GET", "/api/cameras", Some("nope"), "").0,
        401
    );
    assert_eq!(request(port, "GET", "/metrics", None, "").0, 401);

    let (st, body) = request(port, "GET", "/api/health", tok, "");
    assert_eq!(st, 200, "{body}");
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["cameras"], 1);

    // Online with a few frames done (the API reads the live counters).
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let cams: Value = loop {
        let (st, body) = request(port, "GET", "/api/cameras", tok, "");
        assert_eq!(st, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if v[0]["status"] == "online" && v[0]["frames_processed"].as_u64() >= Some(3) {
            break v;
        }
        assert!(std::time::Instant::now() < end, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let door = &cams[0];
    assert_eq!(door["name"], "door");
    assert_eq!(door["status"], "online", "{door}");
    assert_eq!(door["detect"], true);
    assert!(door["frames_processed"].as_u64() > Some(0), "{door}");
    assert!(door["fps"].as_f64() > Some(0.0), "{door}");
    assert!(door["last_frame_time"].is_string(), "{door}");

    // The detect switch, the same as the MQTT topic: state told there, tracks end.
    let (st, body) = request(port, "POST", "/api/cameras/door/detect", tok, "OFF");
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["detect"],
        false
    );
    let state = Topics::new("t").camera("door").state(Switch::Detect);
    sub.wait_for(Duration::from_secs(5), "detect OFF on MQTT", |m| {
        m.iter()
            .rev()
            .find(|m| m.topic == state)
            .is_some_and(|m| m.payload == "OFF")
    });
    sub.wait_for(Duration::from_secs(5), "detect_off ends", |_| {
        sub.events("door")
            .iter()
            .any(|e| e["reason"] == "detect_off")
    });
    let (_, body) = request(port, "GET", "/api/cameras", tok, "");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()[0]["detect"],
        false
    );

    // Bad requests name what is wrong.
    let (st, body) = request(port, "POST", "/api/cameras/door/detect", tok, "maybe");
    assert_eq!(st, 400);
    assert!(body.contains("body"), "{body}");
    let (st, body) = request(port, "POST", "/api/cameras/attic/detect", tok, "ON");
    assert_eq!(st, 404);
    assert!(body.contains("attic"), "{body}");
    let (st, _) = request(port, "POST", "/api/cameras/door/volume", tok, "ON");
    assert_eq!(st, 404);
    assert_eq!(request(port, "GET", "/api/nothing", tok, "").0, 404);

    // /metrics: the same text as before.
    let (st, body) = request(port, "GET", "/metrics", tok, "");
    assert_eq!(st, 200);
    assert!(
        body.contains("inspro_frames_processed_total{camera=\"door\"}"),
        "{body}"
    );
    assert!(body.contains("inspro_detect{camera=\"door\"} 0"), "{body}");

    // The live view: the newest frame with its tracks drawn, a JPEG of the camera's size, newer
    // on each request; MJPEG keeps parts coming.
    let first = http_get_bytes(port, "/api/door/latest.jpg?token=t0ken-abc");
    std::thread::sleep(Duration::from_millis(600));
    let second = http_get_bytes(port, "/api/door/latest.jpg?token=t0ken-abc");
    for (st, body) in [&first, &second] {
        assert_eq!(*st, 200);
        let img = image::load_from_memory(body).expect("a JPEG");
        assert_eq!((img.width(), img.height()), (160, 96));
    }
    assert_ne!(first.1, second.1, "the live image did not change");
    assert_eq!(
        http_get_bytes(port, "/api/attic/latest.jpg?token=t0ken-abc").0,
        404
    );
    let parts = mjpeg_parts(
        port,
        "/api/door/live?token=t0ken-abc",
        Duration::from_millis(1500),
    );
    assert!(parts >= 3, "{parts} MJPEG parts in 1.5 s");

    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    assert!(
        !d.log_text().contains("t0ken-abc"),
        "the token is in the log"
    );
    broker.stop();
}

#[test]
fn beyond_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cams = camera("door", "test:ball", "");
    let cfg = test_config(dir.path(), "mqtt://127.0.0.1:1", &cams, "");
    with_http(&cfg, "[http]\nlisten = \"0.0.0.0:0\"\n");
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&cfg)
        .env_remove("INSPRO_HTTP_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("http.token"), "{err}");
    // With a token from the environment it passes that check.
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&cfg)
        .env("INSPRO_HTTP_TOKEN", "x")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("http.token"), "{err}");
}

#[test]
fn out_of_range_http_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cams = camera("door", "test:ball", "");
    let cfg = test_config(dir.path(), "mqtt://127.0.0.1:1", &cams, "");
    with_http(
        &cfg,
        "[http]\nlisten = \"127.0.0.1:0\"\nnice = 25\ncoalesce_ms = 5000\n",
    );
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("http.nice"), "{err}");
    assert!(err.contains("http.coalesce_ms"), "{err}");
}

#[test]
fn the_curl_examples_of_docs_api_md_run() {
    let doc = std::fs::read_to_string(repo().join("docs/api.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(blocks.len() >= 4, "{} examples", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    // `porch` plays an H.264 file in a loop (each loop ends its tracks): its clips.
    let clip = synth_clip(dir.path(), "clip.mkv", 15, "160x96", 5);
    let porch = camera(
        "porch",
        &format!("file://{}", clip.display()),
        "loop_file = true\npace = \"drop\"\n[camera.clips]\nenabled = true\npre_s = 0.5\npost_s = 0.2\n",
    );
    let (mut broker, _sub, port, mut d) = daemon_with_cameras(dir.path(), "doc-token", &porch);
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while !request(
        port,
        "GET",
        "/api/events?camera=porch&limit=1000",
        Some("doc-token"),
        "",
    )
    .1
    .contains("\"has_clip\":true")
    {
        assert!(std::time::Instant::now() < end, "no clip of porch");
        std::thread::sleep(Duration::from_millis(200));
    }
    for b in blocks {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", b])
            .env("INSPRO", format!("http://127.0.0.1:{port}"))
            .env("TOKEN", "doc-token")
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "docs/api.md example failed:\n{b}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "no output from:\n{b}");
    }
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    broker.stop();
}
