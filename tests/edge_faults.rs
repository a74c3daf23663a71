//! Faults the daemon must survive (issue 12), with real parts: a slow link (a latency proxy
//! written here: tokio TCP forwarding that holds every chunk for a fixed one-way delay), a broker
//! outage, a broker that drops every connection soon after accepting it, kill -9 while the broker
//! is away, and a full spool disk (a 512 KiB tmpfs, when the test runs as root).
#![cfg(feature = "edge")]

mod edge_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy on a free loopback port in front of `upstream`: every chunk is delivered `delay`
/// after it was read, in each direction (a link with that one-way latency, not a throttle). With
/// `cut_after`, each connection is closed that long after the broker's first reply (a flapping
/// broker). It records when the client got the broker's first bytes on each connection (the
/// CONNACK) and how many connections it accepted.
struct Proxy {
    port: u16,
    first_reply: Arc<Mutex<Vec<Instant>>>,
    accepted: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(upstream: u16, delay: Duration, cut_after: Option<Duration>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let first_reply = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (fr, acc) = (first_reply.clone(), accepted.clone());
        rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                acc.fetch_add(1, Relaxed);
                let fr = fr.clone();
                tokio::spawn(async move {
                    // Broker down: the client sees the connection closed.
                    let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (ur, uw) = up.into_split();
                    let a = tokio::spawn(pipe(cr, uw, delay, None));
                    let b = tokio::spawn(pipe(ur, cw, delay, Some(fr)));
                    match cut_after {
                        Some(cut) => {
                            tokio::time::sleep(cut).await;
                            a.abort();
                            b.abort();
                        }
                        None => {
                            let _ = tokio::join!(a, b);
                        }
                    }
                });
            }
        });
        Self {
            port,
            first_reply,
            accepted,
            _rt: rt,
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// When the client first got bytes from the broker after `t`.
    fn first_reply_after(&self, t: Instant) -> Option<Instant> {
        self.first_reply
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|r| *r >= t)
            .min()
    }
}

/// Copy `r` to `w`, each chunk held until `delay` after it was read; `mark` records when the
/// first chunk was written.
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    mark: Option<Arc<Mutex<Vec<Instant>>>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        let mut first = true;
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if w.write_all(&bytes).await.is_err() {
                break;
            }
            if first {
                first = false;
                if let Some(m) = &mark {
                    m.lock().unwrap().push(Instant::now());
                }
            }
        }
        let _ = w.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Track ids with `new` and with `end` among events, de-duplicated on (run, seq), per run.
struct Lifecycle {
    news: BTreeMap<String, BTreeSet<u64>>,
    ends: BTreeMap<String, BTreeSet<u64>>,
    restart_ends: usize,
    dups: usize,
}

fn lifecycle(events: &[Value]) -> Lifecycle {
    let mut l = Lifecycle {
        news: BTreeMap::new(),
        ends: BTreeMap::new(),
        restart_ends: 0,
        dups: 0,
    };
    let mut seen = BTreeSet::new();
    for e in events {
        let run = e["run"].as_str().unwrap_or_default().to_string();
        if !seen.insert((run.clone(), e["seq"].as_u64().unwrap_or(0))) {
            l.dups += 1;
            continue;
        }
        let id = e["after"]["id"].as_u64().expect("after.id");
        match e["type"].as_str() {
            Some("new") => {
                l.news.entry(run).or_default().insert(id);
            }
            Some("end") => {
                if e["reason"] == "restart" {
                    l.restart_ends += 1;
                }
                l.ends.entry(run).or_default().insert(id);
            }
            _ => {}
        }
    }
    l
}

/// Every track that got `new` got `end`, and the other way round, in every run; returns the
/// number of tracks.
fn assert_complete(l: &Lifecycle) -> usize {
    let mut tracks = 0;
    for (run, news) in &l.news {
        let ends = l.ends.get(run).cloned().unwrap_or_default();
        let missing_end: Vec<_> = news.difference(&ends).collect();
        let missing_new: Vec<_> = ends.difference(news).collect();
        assert!(
            missing_end.is_empty() && missing_new.is_empty(),
            "run {run}: {} tracks; no end for {missing_end:?}, no new for {missing_new:?}",
            news.len()
        );
        tracks += news.len();
    }
    tracks
}

fn ends_on(m: &[Msg], n: usize) -> bool {
    m.iter()
        .filter(|m| m.topic == "t/cam/events" && m.payload.contains("\"type\":\"end\""))
        .count()
        >= n
}

/// One outage behind a link with `delay_ms` one-way latency; returns the reconnect time after
/// the broker's return, seconds.
fn outage_behind_latency(delay_ms: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), true);
    let proxy = Proxy::start(broker.port, Duration::from_millis(delay_ms), None);
    // 24 frames a loop: 16 `new` and 16 `end` per loop, a rate a 300 ms link carries.
    let clip = synth_clip(dir.path(), "clip.mkv", 24, "160x96", 5);
    let cfg = test_config(
        dir.path(),
        &proxy.url(),
        &camera(
            "cam",
            &format!("file://{}", clip.display()),
            "loop_file = true",
        ),
        "",
    );
    let sub = Subscriber::start(broker.port, "t/#", true);
    // A flush at shutdown that a 300 ms link can finish.
    let mut d = Daemon::spawn(&cfg, &[], &[("INSPRO__SERVICE__SHUTDOWN_TIMEOUT_S", "30")]);
    sub.wait_for(Duration::from_secs(180), "a first loop", |m| ends_on(m, 16));
    broker.stop();
    let down_at = Instant::now();
    let accepted_before = proxy.accepted.load(Relaxed);
    std::thread::sleep(Duration::from_secs(4));
    broker.restart();
    let back = Instant::now();
    let attempts = proxy.accepted.load(Relaxed) - accepted_before;
    // Connected again: the daemon got the CONNACK through the proxy.
    let deadline = back + Duration::from_secs(60);
    let reconnected = loop {
        if let Some(t) = proxy.first_reply_after(back) {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "{delay_ms} ms: no reconnect 60 s after the broker came back; log:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = reconnected.duration_since(back).as_secs_f64();
    // test_config: backoff max 0.5 s, jitter 0.2.
    let limit = 0.5 * 1.2 + 2.0;
    assert!(
        secs <= limit,
        "{delay_ms} ms: reconnected {secs:.2} s after the broker came back (limit {limit} s)"
    );
    let before = sub.snapshot().len();
    sub.wait_for(Duration::from_secs(180), "events after the restart", |m| {
        m.len() > before + 40
    });
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(90));
    assert!(status.success(), "{status:?}\n{}", d.log_text());
    sub.wait_for(Duration::from_secs(30), "stopped", |m| {
        m.iter()
            .any(|m| m.topic == "t/available" && m.payload == "stopped")
    });
    let log = d.log_text();
    // One line per change of state: lost, then connected; not one per attempt.
    let down_lines = log
        .lines()
        .filter(|l| {
            l.contains("lost the MQTT broker") || l.contains("cannot reach the MQTT broker")
        })
        .count();
    assert_eq!(down_lines, 1, "{delay_ms} ms:\n{log}");
    let l = lifecycle(&sub.events("cam"));
    let tracks = assert_complete(&l);
    assert!(tracks > 16, "{delay_ms} ms: only {tracks} tracks");
    eprintln!(
        "latency {delay_ms} ms one-way: reconnected {secs:.2} s after the broker came back \
         (outage {:.1} s, {attempts} connect attempts during it); {tracks} tracks, every new \
         and end delivered, {} duplicates",
        back.duration_since(down_at).as_secs_f64(),
        l.dups
    );
    secs
}

#[test]
fn slow_link_reconnects_within_backoff_and_loses_no_new_or_end() {
    let mut table = Vec::new();
    for delay in [0, 150, 300] {
        table.push((delay, outage_behind_latency(delay)));
    }
    eprintln!("reconnect after a 4 s broker outage (one-way latency ms, seconds): {table:?}");
}

#[test]
fn flapping_broker_backs_off_and_logs_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    // Every connection is cut 300 ms after the broker accepted it.
    let proxy = Proxy::start(
        broker.port,
        Duration::ZERO,
        Some(Duration::from_millis(300)),
    );
    let cfg = test_config(
        dir.path(),
        &proxy.url(),
        &camera("cam", "test:black?live=true&width=64&height=48&fps=2", ""),
        "",
    );
    let started = Instant::now();
    let mut d = Daemon::spawn(
        &cfg,
        &[],
        &[
            ("INSPRO__MQTT__BACKOFF__INITIAL_S", "0.1"),
            ("INSPRO__MQTT__BACKOFF__MAX_S", "4"),
        ],
    );
    // Wait for the first connect, then count connects over 12 s.
    let end = Instant::now() + Duration::from_secs(120);
    while proxy.first_reply_after(started).is_none() {
        assert!(Instant::now() < end, "never connected:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    let a0 = proxy.accepted.load(Relaxed);
    std::thread::sleep(Duration::from_secs(12));
    let connects = proxy.accepted.load(Relaxed) - a0;
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(60)).success());
    let log = d.log_text();
    let warns = log
        .lines()
        .filter(|l| l.contains("lost the MQTT broker"))
        .count();
    let connected = log
        .lines()
        .filter(|l| l.contains("connected to the MQTT broker"))
        .count();
    eprintln!(
        "flapping broker: {connects} connects in {:.0} s; {warns} 'lost' lines, {connected} 'connected' lines",
        t0.elapsed().as_secs_f64()
    );
    // Without backoff on short-lived connections: one connect per ~0.4 s (30 in 12 s). With
    // it: 0.1, 0.2, 0.4, ... 3.2, 4 s waits, about 8.
    assert!(connects <= 12, "{connects} connects in 12 s:\n{log}");
    // The first drop, then "flapping" once; connects after that are quiet.
    assert!(warns <= 2, "{warns} lines:\n{log}");
    assert!(connected <= 2, "{connected} lines:\n{log}");
    assert_eq!(
        log.lines().filter(|l| l.contains("(flapping)")).count(),
        1,
        "{log}"
    );
}

#[test]
fn kill_9_with_the_broker_down_ends_open_tracks_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), true);
    let clip = synth_clip(dir.path(), "clip.mkv", 24, "160x96", 5);
    let cam = |name: &str| {
        camera(
            name,
            &format!("file://{}", clip.display()),
            "loop_file = true",
        )
    };
    let cfg = test_config(dir.path(), &broker.url(), &cam("cam"), "");
    let sub = Subscriber::start(broker.port, "t/#", true);
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(Duration::from_secs(180), "a first loop", |m| ends_on(m, 16));
    // The broker goes away; events go to the spool; then the daemon is killed outright, while
    // tracks are open (between two loops of the clip none are, and there is no file).
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    let spool = dir.path().join("spool");
    let state = spool.join("tracks-cam.json");
    let end = Instant::now() + Duration::from_secs(60);
    while !state.exists() {
        assert!(
            Instant::now() < end,
            "no open-tracks file:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    d.signal("KILL");
    let _ = d.wait(Duration::from_secs(10));
    // What the crashed run left: the open tracks (none if it died just between two loops).
    let open_ids: BTreeSet<u64> = std::fs::read(&state)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|open| {
            open["tracks"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t["id"].as_u64()).collect())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    broker.restart();
    // The next start has another camera only: `cam` is gone and its status must not stay online.
    let cfg2 = test_config(dir.path(), &broker.url(), &cam("cam2"), "");
    let mut d2 = Daemon::spawn(&cfg2, &[], &[]);
    sub.wait_for(Duration::from_secs(180), "the restart's end events", |m| {
        // (`>= 0` when the crash left no open track.)
        m.iter()
            .filter(|m| m.topic == "t/cam/events" && m.payload.contains("\"reason\":\"restart\""))
            .count()
            >= open_ids.len()
    });
    sub.wait_for(Duration::from_secs(120), "cam2 events", |m| {
        m.iter().any(|m| m.topic == "t/cam2/events")
    });
    d2.signal("TERM");
    assert!(
        d2.wait(Duration::from_secs(90)).success(),
        "{}",
        d2.log_text()
    );
    let log2 = d2.log_text();
    assert!(
        open_ids.is_empty() || log2.contains("did not stop cleanly"),
        "{log2}"
    );
    assert!(
        !state.exists(),
        "the open-tracks file is gone after recovery"
    );
    let l = lifecycle(&sub.events("cam"));
    let tracks = assert_complete(&l);
    let restart_ids: BTreeSet<u64> = sub
        .events("cam")
        .iter()
        .filter(|e| e["reason"] == "restart")
        .map(|e| e["after"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(restart_ids, open_ids, "ended with reason restart");
    // A new subscriber sees the corrected retained status of the gone camera.
    let late = Subscriber::start(broker.port, "t/+/status", false);
    let msgs = late.wait_for(Duration::from_secs(10), "retained cam status", |m| {
        m.iter().any(|m| m.topic == "t/cam/status")
    });
    let status: Vec<&str> = msgs
        .iter()
        .filter(|m| m.topic == "t/cam/status")
        .map(|m| m.payload.as_str())
        .collect();
    assert_eq!(status, vec!["ended"], "retained t/cam/status");
    eprintln!(
        "kill -9 with the broker down: {tracks} tracks of the crashed run, all with new and end; \
         {} ended with reason restart; {} duplicates",
        l.restart_ends, l.dups
    );
}

/// A 512 KiB tmpfs as the spool while the broker is away: the oldest messages go, counted in
/// `spool_dropped_total`, with one log line; the newest reach the broker when it is back.
#[test]
fn full_spool_disk_drops_the_oldest_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "full_spool_disk: cannot mount a tmpfs (not root?): the spool unit test \
                   disk_full_drops_the_oldest_and_keeps_the_new covers ENOSPC"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let mut broker = Mosquitto::start(dir.path(), true);
    let clip = synth_clip(dir.path(), "clip.mkv", 6, "160x96", 5);
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &camera(
            "cam",
            &format!("file://{}", clip.display()),
            "loop_file = true",
        ),
        "",
    );
    // The spool on the tiny disk, with a bound far above it: the disk fills first.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &dir.path().join("spool").display().to_string(),
            &mnt.join("spool").display().to_string(),
        )
        .replace(
            "metrics_listen = \"\"",
            "metrics_listen = \"\"\nspool_max_bytes = 1073741824",
        );
    std::fs::write(&cfg, text).unwrap();
    let sub = Subscriber::start(broker.port, "t/#", true);
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(Duration::from_secs(180), "a first loop", |m| ends_on(m, 16));
    broker.stop();
    // Fill the disk: wait until the spool dropped something.
    let end = Instant::now() + Duration::from_secs(240);
    while !d.log_text().contains("spool full") {
        assert!(
            Instant::now() < end,
            "the spool never filled:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));
    broker.restart();
    let before = sub.snapshot().len();
    sub.wait_for(Duration::from_secs(180), "events after the restart", |m| {
        m.len() > before + 40
    });
    d.signal("TERM");
    assert!(
        d.wait(Duration::from_secs(90)).success(),
        "{}",
        d.log_text()
    );
    let log = d.log_text();
    let full: Vec<&str> = log.lines().filter(|l| l.contains("spool full")).collect();
    let lines = full.len();
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    // `total=` of the last line: the spool_dropped_total counter then.
    let dropped: u64 = full
        .last()
        .and_then(|l| {
            l.split("total=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    eprintln!("full spool disk: {dropped} oldest messages dropped, {lines} log lines, {errors} ERROR lines");
    assert!(dropped > 0, "spool_dropped stayed 0");
    assert!(lines <= 2, "{lines} 'spool full' lines:\n{log}");
    assert_eq!(errors, 0, "{log}");
    // The newest events survived: the last loop before the restart ended its tracks.
    let l = lifecycle(&sub.events("cam"));
    let newest = l
        .ends
        .values()
        .flat_map(|s| s.iter())
        .max()
        .copied()
        .unwrap_or(0);
    assert!(newest > 16, "{newest}");
}
