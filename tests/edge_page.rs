//! The page in a real browser: headless Chromium driven through chromedriver (Debian's
//! `chromium` and `chromium-driver`, installed by scripts/setup.sh) against a daemon fed by a
//! synthetic clip and a real mosquitto. The live image changes, the event list holds the track
//! ids and labels the MQTT side received, a filter narrows it, a snapshot loads, the detect switch
//! stops the camera's events; a screenshot is saved (target/page-screenshot.png).
#![cfg(feature = "edge")]

mod edge_common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_common::*;
use inspro::edge::topics::{Switch, Topics};
use serde_json::{json, Value};

/// A WebDriver session on chromedriver (W3C protocol over plain HTTP/1.1 on loopback).
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map_or(String::new(), Value::to_string);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then exactly Content-Length bytes (chromedriver keeps connections open).
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let (head_end, length) = loop {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "{method} {path}: chromedriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while raw.len() < head_end + length {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "{method} {path}: short body");
        raw.extend_from_slice(&buf[..n]);
    }
    let body = &raw[head_end..head_end + length];
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", String::from_utf8_lossy(&raw)))
}

impl Browser {
    fn start(dir: &std::path::Path) -> Self {
        let port = free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, scripts/setup.sh)");
        let end = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        // A phone's width: the page must read there.
        let caps = json!({"capabilities": {"alwaysMatch": {"pageLoadStrategy": "eager", "goog:chromeOptions": {"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=412,1400"
        ]}}}});
        let v = http(port, "POST", "/session", Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Self {
            driver,
            port,
            session,
        }
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let v = http(
            self.port,
            method,
            &format!("/session/{}/{what}", self.session),
            body.as_ref(),
        );
        assert!(v["value"]["error"].is_null(), "{what}: {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({ "url": url })));
    }

    /// Run `script` (a function body; `arguments` as usual) and return its value.
    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Wait until `script` returns a truthy value.
    fn wait_js(&self, what: &str, script: &str, d: Duration) -> Value {
        self.wait_js_with(what, script, json!([]), d)
    }

    fn wait_js_with(&self, what: &str, script: &str, args: Value, d: Duration) -> Value {
        let end = Instant::now() + d;
        loop {
            let v = self.js(script, args.clone());
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, path: &std::path::Path) {
        let v = self.cmd("GET", "screenshot", None);
        std::fs::write(path, base64_decode(v.as_str().unwrap())).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (the screenshot).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bits: Vec<u32> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(bits.len() * 3 / 4);
    for chunk in bits.chunks(4) {
        let n = chunk.iter().fold(0u32, |a, b| (a << 6) | b) << (6 * (4 - chunk.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

/// A hash of what an `<img>` shows now (drawn into a canvas).
const IMG_HASH: &str = "const img = document.querySelector(arguments[0]);
  if (!img || !img.naturalWidth) return null;
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let h = 0;
  for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) >>> 0;
  return h;";

#[test]
fn the_page_in_chromium_shows_live_cameras_events_snapshots_and_switches_detection() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    // Long enough that both cameras stay among the newest events.
    let clip = synth_clip(dir.path(), "clip.mkv", 40, "160x96", 21);
    let cams = [
        camera(
            "door",
            &format!("file://{}", clip.display()),
            "loop_file = true\npace = \"drop\"\n[camera.snapshots]\nenabled = true\n[camera.clips]\nenabled = true\npre_s = 0.5\npost_s = 0.2\n",
        ),
        camera("yard", "test:ball?live=true&fps=10", ""),
    ]
    .concat();
    let port = free_port();
    let cfg = test_config(dir.path(), &broker.url(), &cams, "");
    let text = std::fs::read_to_string(&cfg).unwrap()
        + &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"page-token\"\n");
    std::fs::write(&cfg, text).unwrap();
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(Duration::from_secs(60), "ended tracks of door", |_| {
        sub.events("door").iter().any(|e| e["type"] == "end") && !sub.events("yard").is_empty()
    });

    let b = Browser::start(dir.path());
    b.goto(&format!("http://127.0.0.1:{port}/?token=page-token"));
    let fcp = b.wait_js(
        "first paint",
        "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null;",
        Duration::from_secs(10),
    );
    eprintln!("first contentful paint: {fcp} ms");
    b.wait_js(
        "two camera cards",
        "return document.querySelectorAll('#cameras .camera').length === 2;",
        Duration::from_secs(10),
    );

    // The live image changes.
    let sel = "#cameras .camera[data-camera=yard] img.live";
    let first = b.wait_js_with(
        "a live image",
        IMG_HASH,
        json!([sel]),
        Duration::from_secs(15),
    );
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let now = b.js(IMG_HASH, json!([sel]));
        if !now.is_null() && now != first {
            break;
        }
        assert!(Instant::now() < end, "the live image never changed");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The event list holds what MQTT received (ids and labels).
    b.wait_js(
        "event rows",
        "return document.querySelectorAll('#events tbody tr').length > 0;",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(3500));
    let rows = b.js(
        "return [...document.querySelectorAll('#events tbody tr')].map(r => [r.dataset.id, r.dataset.camera, r.dataset.label]);",
        json!([]),
    );
    let rows: Vec<(String, String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
                r[2].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut mqtt_labels = std::collections::BTreeMap::new();
    for cam in ["door", "yard"] {
        for e in sub.events(cam) {
            mqtt_labels.insert(
                e["after"]["event_id"].as_str().unwrap().to_string(),
                e["after"]["label"].as_str().unwrap().to_string(),
            );
        }
    }
    assert!(!rows.is_empty());
    for (id, _, label) in &rows {
        let got = mqtt_labels.get(id);
        assert!(got.is_some(), "row {id} was never published");
        // The row's label is one the track carried over MQTT (the last one).
        let labels: BTreeSet<String> = ["door", "yard"]
            .iter()
            .flat_map(|c| sub.events(c))
            .filter(|e| e["after"]["event_id"] == id.as_str())
            .map(|e| e["after"]["label"].as_str().unwrap().to_string())
            .collect();
        assert!(labels.contains(label), "{id}: {label} not in {labels:?}");
    }
    let cameras_listed: BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(cameras_listed.len(), 2, "{cameras_listed:?}");

    // A filter narrows it: yard's rows only (its tracks live on; door's come and go).
    let pick = |cam: &str| {
        b.js(
            "const s = document.getElementById('filter-camera'); s.value = arguments[0]; s.dispatchEvent(new Event('input', {bubbles: true}));",
            json!([cam]),
        );
    };
    pick("yard");
    b.wait_js(
        "only yard's rows",
        "const r = [...document.querySelectorAll('#events tbody tr')]; return r.length > 0 && r.every(x => x.dataset.camera === 'yard');",
        Duration::from_secs(10),
    );
    let narrowed = b.js(
        "return document.querySelectorAll('#events tbody tr').length;",
        json!([]),
    );
    assert!(
        narrowed.as_u64().unwrap() < rows.len() as u64,
        "{narrowed} of {}",
        rows.len()
    );
    pick("door");
    b.wait_js(
        "only door's rows",
        "const r = [...document.querySelectorAll('#events tbody tr')]; return r.length > 0 && r.every(x => x.dataset.camera === 'door');",
        Duration::from_secs(10),
    );

    // A snapshot loads in a track's detail.
    // An ended track's row (its snapshot written at birth and at its end).
    b.wait_js(
        "an ended door track",
        "const r = [...document.querySelectorAll('#events tbody tr')].find(x => x.cells[4].textContent !== 'live'); if (r) r.click(); return !!r;",
        Duration::from_secs(10),
    );
    b.wait_js(
        "the snapshot",
        "const i = document.querySelector('#detail img.snapshot'); return !document.getElementById('detail').hidden && i.complete && i.naturalWidth > 0;",
        Duration::from_secs(10),
    );
    // Its clip plays (the detail follows the track until the clip is written).
    let clip = b.wait_js(
        "the clip plays",
        "const v = document.querySelector('#detail video.clip'); if (v.hidden || v.readyState < 2 || !v.videoWidth) return null; if (v.paused) v.play(); return [v.videoWidth, v.videoHeight, v.duration];",
        Duration::from_secs(20),
    );
    eprintln!("clip in the page: {clip}");
    b.wait_js(
        "the clip advances",
        "const v = document.querySelector('#detail video.clip'); return v.currentTime > 0;",
        Duration::from_secs(10),
    );
    std::fs::create_dir_all(repo().join("target")).unwrap();
    let shot = repo().join("target/page-screenshot.png");
    b.screenshot(&shot);
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

    // The detect switch stops the camera's events.
    let state = Topics::new("t").camera("yard").state(Switch::Detect);
    b.js(
        "document.querySelector('#cameras .camera[data-camera=yard] input.detect').click();",
        json!([]),
    );
    sub.wait_for(Duration::from_secs(10), "yard detect OFF", |m| {
        m.iter()
            .rev()
            .find(|m| m.topic == state)
            .is_some_and(|m| m.payload == "OFF")
    });
    sub.wait_for(Duration::from_secs(5), "yard's tracks ended", |_| {
        sub.events("yard")
            .iter()
            .any(|e| e["reason"] == "detect_off")
    });
    let n = sub.events("yard").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sub.events("yard").len(), n, "yard still sends events");
    drop(b);
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    broker.stop();
}
