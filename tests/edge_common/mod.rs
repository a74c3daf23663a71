//! Real parts for the daemon's integration tests: a mosquitto on a free loopback port (config in a
//! temp dir, killed by PID on drop), the built `inspro` binary as a child process (killed on
//! drop), synthetic clips from `inspro synth --clip`, and a rumqttc subscriber that records every
//! message. Set `INSPRO_TEST_BIN` to test another binary than cargo's.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn bin() -> PathBuf {
    std::env::var_os("INSPRO_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_inspro")))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (mosquitto has no "port 0").
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

pub fn wait_timeout(child: &mut Child, d: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// Start on a free port; `persistent` keeps sessions and queued messages on disk (saved on
    /// SIGTERM and every second).
    pub fn start(dir: &Path, persistent: bool) -> Self {
        Self::start_with(dir, persistent, "")
    }

    /// `start` with more lines of mosquitto.conf (e.g. `max_packet_size 900`).
    pub fn start_with(dir: &Path, persistent: bool, extra: &str) -> Self {
        let mut m = Self {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        let data = dir.join("mosquitto-data");
        std::fs::create_dir_all(&data).expect("mosquitto dir");
        let mut conf = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\nlog_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\nconnection_messages true\nmessage_size_limit 0\n",
            m.port
        );
        if persistent {
            conf += &format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                data.display()
            );
        } else {
            conf += "persistence false\n";
        }
        // As root mosquitto drops to user `mosquitto`, which cannot write our temp dir.
        if unsafe_is_root() {
            conf += "user root\n";
        }
        conf += extra;
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("mosquitto.conf");
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .expect("mosquitto.log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("mosquitto must be installed (scripts/setup.sh)");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop with SIGTERM (mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            if wait_timeout(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Start again on the same port with the same config.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_is_root() -> bool {
    // `id -u` avoids a libc dependency.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `inspro synth --clip` into `dir`; returns the clip path.
pub fn synth_clip(dir: &Path, name: &str, frames: usize, size: &str, seed: u64) -> PathBuf {
    let clip = dir.join(name);
    let out = Command::new(bin())
        .args(["synth", "--clip"])
        .arg(&clip)
        .args([
            "--frames",
            &frames.to_string(),
            "--size",
            size,
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .expect("run inspro synth");
    assert!(
        out.status.success(),
        "inspro synth failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    clip
}

/// A `[[camera]]` table of 160x96 frames, with `extra` lines appended.
pub fn camera(name: &str, uri: &str, extra: &str) -> String {
    format!("[[camera]]\nname = \"{name}\"\nuri = \"{uri}\"\nwidth = 160\nheight = 96\n{extra}\n")
}

/// A config for tests: the tiny model (random weights) and thresholds at zero, so that every
/// query slot of the random-weight model becomes a track on the first frame, deterministically
/// (there are no trained weights yet; the point is the plumbing, not the detections).
pub fn test_config(dir: &Path, broker: &str, cameras: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[model]
config = "{model}"

{cameras}

[tracking]
birth_score = 0.0
min_frames = 1
keep_score = 0.0
max_lost_frames = 5
# Random weights: slots share masks; merging them is tested on its own (edge_tracking).
merge_iou = 1.0

[mqtt]
url = "{broker}"
client_id = "inspro-test"
topic_prefix = "t"
backoff = {{ initial_s = 0.1, max_s = 0.5, jitter = 0.2 }}

[service]
spool_dir = "{spool}"
metrics_listen = ""
stats_interval_s = 1.0
shutdown_timeout_s = 5.0

{extra}
"#,
        model = repo().join("configs/models/inspro-tiny.toml").display(),
        spool = dir.join("spool").display(),
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = config.with_extension("log");
        let f = std::fs::File::create(&log).expect("daemon log");
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn inspro run");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    pub fn wait(&mut self, d: Duration) -> ExitStatus {
        match wait_timeout(&mut self.child, d) {
            Some(s) => s,
            None => panic!(
                "daemon did not exit within {d:?}; log:\n{}",
                self.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident set size, bytes (Linux).
    pub fn rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: String,
    /// The payload as received (binary payloads: snapshots).
    pub bytes: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
    /// Wall-clock receive time (to compare with the payload's `timestamp`).
    pub wall: std::time::SystemTime,
}

impl Msg {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.topic, self.payload))
    }
}

/// A subscriber on `<prefix>/#` that records everything, reconnecting on its own. With
/// `persistent`, a persistent session (client id fixed, clean_session = false, QoS 1) so that
/// the broker queues messages for it while it is away.
pub struct Subscriber {
    pub msgs: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    pub fn start(port: u16, topic: &str, persistent: bool) -> Self {
        use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
        let id = if persistent {
            "test-sub-persistent".to_string()
        } else {
            format!("test-sub-{}", free_port())
        };
        let mut mo = MqttOptions::new(id, "127.0.0.1", port);
        mo.set_keep_alive(Duration::from_secs(5));
        mo.set_clean_session(!persistent);
        mo.set_max_packet_size(1 << 24, 1 << 24);
        let (client, mut conn) = Client::new(mo, 64);
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m2, s2, topic) = (msgs.clone(), stop.clone(), topic.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for ev in conn.iter() {
                if s2.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if !ack.session_present {
                            let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                        } else if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        m2.lock().unwrap().push(Msg {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).to_string(),
                            bytes: p.payload.to_vec(),
                            retain: p.retain,
                            at: Instant::now(),
                            wall: std::time::SystemTime::now(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscriber connected and subscribed");
        Self {
            msgs,
            stop,
            thread: Some(thread),
        }
    }

    pub fn snapshot(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// Wait until `pred` holds over the messages so far.
    pub fn wait_for(&self, d: Duration, what: &str, pred: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
        let end = Instant::now() + d;
        loop {
            let s = self.snapshot();
            if pred(&s) {
                return s;
            }
            if Instant::now() > end {
                let topics: Vec<_> = s.iter().rev().take(5).map(|m| m.topic.clone()).collect();
                panic!(
                    "timed out waiting for {what}; {} messages, last topics {topics:?}",
                    s.len()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The events of `camera` under the tests' prefix `t`, by the daemon's own topic builder.
    pub fn events(&self, camera: &str) -> Vec<Value> {
        let topic = inspro::edge::topics::Topics::new("t")
            .camera(camera)
            .events();
        self.snapshot()
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.json())
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // The thread ends at its next event (keep-alive at most); do not block the test on it.
        let _ = self.thread.take();
    }
}

/// Events grouped by track id, in arrival order.
pub fn by_track(events: &[Value]) -> std::collections::BTreeMap<u64, Vec<Value>> {
    let mut m: std::collections::BTreeMap<u64, Vec<Value>> = Default::default();
    for e in events {
        let id = e["after"]["id"].as_u64().expect("after.id");
        m.entry(id).or_default().push(e.clone());
    }
    m
}

/// The pixel rectangle a box covers, clamped to the frame (as the daemon crops masks).
pub fn box_rect(b: &[f64], w: usize, h: usize) -> [usize; 4] {
    let clamp = |v: f64, hi: usize| (v.max(0.0) as usize).min(hi);
    let x0 = clamp(b[0].floor(), w);
    let y0 = clamp(b[1].floor(), h);
    let x1 = clamp(b[2].ceil(), w).max(x0);
    let y1 = clamp(b[3].ceil(), h).max(y0);
    [x0, y0, x1, y1]
}

pub fn write_file(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(text.as_bytes()).expect("write");
}

/// Run the daemon over file cameras to their end with the shipped weights
/// (`engines/inspro-tiny/model.safetensors`) and the test thresholds; returns what a subscriber
/// on `t/#` got, once `pred` holds.
pub fn run_with_shipped_weights(
    dir: &Path,
    broker: &Mosquitto,
    cameras: &str,
    extra: &str,
    what: &str,
    pred: impl Fn(&[Msg]) -> bool,
) -> Vec<Msg> {
    let cfg = test_config(dir, &broker.url(), cameras, extra);
    let weights = repo().join("engines/inspro-tiny/model.safetensors");
    let sub = Subscriber::start(broker.port, "t/#", false);
    let mut d = Daemon::spawn(
        &cfg,
        &["--exit-on-eos"],
        &[("INSPRO__MODEL__WEIGHTS", weights.to_str().unwrap())],
    );
    assert!(
        d.wait(Duration::from_secs(240)).success(),
        "{}",
        d.log_text()
    );
    sub.wait_for(Duration::from_secs(20), what, pred)
}

pub fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    inter / (area(a) + area(b) - inter).max(1e-9)
}

/// A camera's `tracks` messages against its clip's ground truth (`synth_clip`'s json).
pub struct TrackScore {
    /// Frame sizes the messages carry.
    pub sizes: std::collections::BTreeSet<(usize, usize)>,
    /// Frame indices with a `tracks` message.
    pub frames: std::collections::BTreeSet<usize>,
    /// Mean over the ground-truth boxes of every frame of the best IoU among that frame's tracks.
    pub mean_best_iou: f64,
    /// Ground-truth object-frames scored.
    pub objects: usize,
}

pub fn score_tracks(msgs: &[Msg], camera: &str, clip: &Path) -> TrackScore {
    let gt: Value =
        serde_json::from_str(&std::fs::read_to_string(clip.with_extension("json")).unwrap())
            .unwrap();
    let mut s = TrackScore {
        sizes: Default::default(),
        frames: Default::default(),
        mean_best_iou: 0.0,
        objects: 0,
    };
    let mut sum = 0.0;
    let topic = format!("/{camera}/tracks");
    for m in msgs.iter().filter(|m| m.topic.ends_with(&topic)) {
        let v: Value = serde_json::from_str(&m.payload).unwrap();
        let frame = &v["frame"];
        s.sizes.insert((
            frame["width"].as_u64().unwrap() as usize,
            frame["height"].as_u64().unwrap() as usize,
        ));
        let index = frame["index"].as_u64().unwrap() as usize;
        s.frames.insert(index);
        let boxes: Vec<[f64; 4]> = v["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let b = t["box"].as_array().unwrap();
                [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap())
            })
            .collect();
        for ann in gt["annotations"].as_array().unwrap() {
            let Some(b) = ann["bboxes"][index].as_array() else {
                continue;
            };
            let b = [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap());
            let gt_box = [b[0], b[1], b[0] + b[2], b[1] + b[3]];
            sum += boxes.iter().map(|p| iou(*p, gt_box)).fold(0.0, f64::max);
            s.objects += 1;
        }
    }
    s.mean_best_iou = sum / s.objects.max(1) as f64;
    s
}

/// The RTSP camera of the tests: `examples/rtsp_server.rs` (GStreamer's RTSP server) as a child
/// process on a loopback port, killed on drop. Build it first (`make test` does):
/// `cargo build --features edge --example rtsp_server`; or set `INSPRO_RTSP_SERVER`.
pub struct RtspServer {
    pub child: Child,
    pub port: u16,
    args: Vec<String>,
    log: PathBuf,
}

impl RtspServer {
    fn exe() -> PathBuf {
        if let Some(p) = std::env::var_os("INSPRO_RTSP_SERVER") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test> -> target/<profile>/examples/rtsp_server
        let me = std::env::current_exe().expect("current exe");
        let profile = me
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let exe = profile.join("examples").join("rtsp_server");
        assert!(
            exe.exists(),
            "{} is missing: run `cargo build --features edge --example rtsp_server` first",
            exe.display()
        );
        exe
    }

    /// Start serving on `port` with these extra arguments (see the example's header).
    pub fn start(dir: &Path, port: u16, args: &[&str]) -> Self {
        let mut s = Self {
            child: Command::new("true").spawn().expect("spawn"),
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            log: dir.join(format!("rtsp-{port}.log")),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("rtsp server log");
        let mut child = Command::new(Self::exe())
            .arg("--port")
            .arg(self.port.to_string())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn the rtsp server");
        // It prints `ready <url>` once it listens.
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(out);
        std::io::BufRead::read_line(&mut reader, &mut line).expect("read rtsp server stdout");
        assert!(
            line.starts_with("ready "),
            "rtsp server did not start: {line:?}; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        self.child = child;
    }

    /// `rtsp://[user@]127.0.0.1:PORT/cam`
    pub fn url(&self, user: Option<&str>) -> String {
        match user {
            Some(u) => format!("rtsp://{u}@127.0.0.1:{}/cam", self.port),
            None => format!("rtsp://127.0.0.1:{}/cam", self.port),
        }
    }

    /// SIGKILL, as a camera that loses power.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start again on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publish one message with mosquitto_pub (QoS 1), as a user or Home Assistant would.
pub fn publish(port: u16, topic: &str, payload: &str, retain: bool) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
    ]);
    if payload.is_empty() {
        cmd.arg("-n");
    } else {
        cmd.args(["-m", payload]);
    }
    if retain {
        cmd.arg("-r");
    }
    let st = cmd.status().expect("mosquitto_pub (mosquitto-clients)");
    assert!(st.success(), "mosquitto_pub {topic} failed");
}

/// `GET path` on a fresh loopback connection (HTTP/1.1, `Connection: close`): the whole answer
/// as text (status line, headers, body).
pub fn http_get(port: u16, path: &str) -> String {
    String::from_utf8_lossy(&http_get_raw(port, path)).into_owned()
}

/// The raw answer to `GET path` (`Connection: close`, read to the end).
fn http_get_raw(port: u16, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP server");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut raw);
    raw
}

/// `GET path` on a fresh loopback connection: (status, body bytes) (binary bodies: JPEG).
pub fn http_get_bytes(port: u16, path: &str) -> (u16, Vec<u8>) {
    let raw = http_get_raw(port, path);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let status = String::from_utf8_lossy(&raw[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw.get(split + 4..).unwrap_or_default().to_vec())
}
