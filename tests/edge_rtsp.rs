//! Cameras over RTSP against a real RTSP server (GStreamer's, `examples/rtsp_server.rs`) on
//! loopback: digest authentication with the password from a file, TCP and UDP transport, no
//! credential in logs, MQTT or /metrics; and the faults cameras have: the server killed and
//! started again, a stream that stalls with the connection open, a resolution change mid-stream,
//! a camera that never connects beside one that works. Nothing is lost: every track that had a
//! `new` gets an `end`, with a reason that tells a lost camera from an empty scene.
#![cfg(feature = "edge")]

mod edge_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edge_common::*;
use serde_json::Value;

fn status_topic(camera: &str) -> String {
    inspro::edge::topics::Topics::new("t")
        .camera(camera)
        .status()
}

/// Every track with a `new` has exactly one `end` after it; returns the end reasons by id.
fn every_track_ended(events: &[Value]) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for (id, evs) in by_track(events) {
        let news = evs.iter().filter(|e| e["type"] == "new").count();
        let ends: Vec<&Value> = evs.iter().filter(|e| e["type"] == "end").collect();
        assert_eq!(news, 1, "track {id}: {news} new events");
        assert_eq!(ends.len(), 1, "track {id}: {} end events", ends.len());
        assert_eq!(evs.last().map(|e| &e["type"]), Some(&Value::from("end")));
        out.insert(id, ends[0]["reason"].as_str().unwrap_or("").to_string());
    }
    out
}

#[test]
fn digest_auth_over_tcp_and_udp_with_the_password_in_a_file_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let password = "s3cret-Pa55-x7";
    let pw_file = dir.path().join("camera.pw");
    write_file(&pw_file, &format!("{password}\n"));
    let wrong_file = dir.path().join("wrong.pw");
    write_file(&wrong_file, "not-it-9q\n");
    let server = RtspServer::start(
        dir.path(),
        free_port(),
        &[
            "--user",
            "viewer",
            "--password-file",
            pw_file.to_str().unwrap(),
        ],
    );
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    let url = server.url(Some("viewer"));
    let pw = |f: &std::path::Path| format!("password_file = \"{}\"", f.display());
    let cams = [
        camera(
            "tcp",
            &url,
            &format!("rtsp_transport = \"tcp\"\n{}", pw(&pw_file)),
        ),
        camera(
            "udp",
            &url,
            &format!("rtsp_transport = \"udp\"\n{}", pw(&pw_file)),
        ),
        camera("wrong", &url, &pw(&wrong_file)),
    ]
    .concat();
    let metrics_port = free_port();
    let cfg = test_config(dir.path(), &broker.url(), &cams, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "metrics_listen = \"\"",
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    std::fs::write(&cfg, text).unwrap();
    let mut d = Daemon::spawn(&cfg, &[], &[("RUST_LOG", "debug,rumqttc=info")]);
    let t0 = Instant::now();
    for cam in ["tcp", "udp"] {
        sub.wait_for(Duration::from_secs(40), &format!("{cam} events"), |_| {
            sub.events(cam).iter().any(|e| e["type"] == "new")
        });
    }
    eprintln!(
        "both transports delivered events {:.1} s after start",
        t0.elapsed().as_secs_f64()
    );
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metrics.contains("inspro_frames_processed_total{camera=\"tcp\"}"),
        "{metrics}"
    );
    assert!(
        sub.events("wrong").is_empty(),
        "the wrong password got frames"
    );
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    let log = d.log_text();
    for cam in ["tcp", "udp"] {
        let reasons = every_track_ended(&sub.events(cam));
        assert!(
            reasons.values().all(|r| r == "shutdown"),
            "{cam}: {reasons:?}"
        );
    }
    // The wrong password was refused, said in the log, and never went online.
    assert!(
        log.lines()
            .any(|l| l.contains("camera=wrong") && l.contains("source failed")),
        "{log}"
    );
    let wrong_status: Vec<String> = sub
        .snapshot()
        .iter()
        .filter(|m| m.topic == status_topic("wrong"))
        .map(|m| m.payload.clone())
        .collect();
    assert!(
        !wrong_status.iter().any(|s| s == "online"),
        "{wrong_status:?}"
    );
    // No credential anywhere it could leak.
    assert!(log.contains("camera password loaded"), "{log}");
    assert!(!log.contains(password), "the password is in the log");
    assert!(!metrics.contains(password), "the password is in /metrics");
    for m in sub.snapshot() {
        assert!(
            !m.payload.contains(password),
            "the password is in {}",
            m.topic
        );
    }
    broker.stop();
}

#[test]
fn server_killed_and_started_again_ends_tracks_as_camera_lost_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RtspServer::start(dir.path(), free_port(), &[]);
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    let cams = camera("door", &server.url(None), "rtsp_transport = \"tcp\"");
    let cfg = test_config(dir.path(), &broker.url(), &cams, "");
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(Duration::from_secs(40), "events", |_| {
        sub.events("door").iter().any(|e| e["type"] == "new")
    });
    let born_before: usize = sub
        .events("door")
        .iter()
        .filter(|e| e["type"] == "new")
        .count();
    server.kill();
    let killed = Instant::now();
    sub.wait_for(Duration::from_secs(20), "camera_lost ends", |_| {
        sub.events("door")
            .iter()
            .any(|e| e["type"] == "end" && e["reason"] == "camera_lost")
    });
    eprintln!(
        "ends after the kill: {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let n_status = sub.snapshot().len();
    let n = sub.events("door").len();
    server.restart();
    let back = Instant::now();
    // The test config's backoff is at most 0.5 s: back within that + 2 s.
    sub.wait_for(Duration::from_secs(10), "online again", |m| {
        m[n_status..]
            .iter()
            .any(|m| m.topic == status_topic("door") && m.payload == "online")
    });
    let took = back.elapsed().as_secs_f64();
    eprintln!("camera back {took:.2} s after the server");
    assert!(took <= 0.5 + 2.0 + 1.0, "took {took:.2} s");
    sub.wait_for(
        Duration::from_secs(20),
        "new events after the restart",
        |_| sub.events("door")[n..].iter().any(|e| e["type"] == "new"),
    );
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    let reasons = every_track_ended(&sub.events("door"));
    let lost = reasons.values().filter(|r| *r == "camera_lost").count();
    assert!(lost >= born_before, "{reasons:?}");
    assert!(
        reasons
            .values()
            .all(|r| r == "camera_lost" || r == "shutdown"),
        "{reasons:?}"
    );
    broker.stop();
}

#[test]
fn a_stalled_stream_is_noticed_and_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = RtspServer::start(dir.path(), free_port(), &["--stall-after", "3"]);
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    let cams = camera(
        "gate",
        &server.url(None),
        "rtsp_transport = \"tcp\"\nstall_timeout_s = 1.5",
    );
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &cams,
        "[publish]\ntracks = true\n",
    );
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    let tracks_topic = inspro::edge::topics::Topics::new("t")
        .camera("gate")
        .tracks();
    let msgs = sub.wait_for(
        Duration::from_secs(60),
        "a reconnect after the stall",
        |m| {
            let first_frame = m.iter().position(|m| m.topic == tracks_topic);
            first_frame.is_some_and(|i| {
                m[i..]
                    .iter()
                    .any(|m| m.topic == status_topic("gate") && m.payload == "reconnecting")
            })
        },
    );
    let first = msgs.iter().position(|m| m.topic == tracks_topic).unwrap();
    let rec = first
        + msgs[first..]
            .iter()
            .position(|m| m.topic == status_topic("gate") && m.payload == "reconnecting")
            .unwrap();
    let last_frame = msgs[..rec]
        .iter()
        .rev()
        .find(|m| m.topic == tracks_topic)
        .unwrap();
    let noticed = msgs[rec].at.duration_since(last_frame.at).as_secs_f64();
    eprintln!("stall noticed {noticed:.2} s after the last frame (stall_timeout_s 1.5)");
    assert!(noticed <= 1.5 + 1.0, "noticed after {noticed:.2} s");
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    let log = d.log_text();
    assert!(log.contains("no frame for 1.5 s"), "{log}");
    let reasons = every_track_ended(&sub.events("gate"));
    assert!(reasons.values().any(|r| r == "camera_lost"), "{reasons:?}");
    broker.stop();
}

#[test]
fn a_resolution_change_keeps_events_in_the_cameras_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let server = RtspServer::start(
        dir.path(),
        free_port(),
        &[
            "--size",
            "320x192",
            "--resize-after",
            "4",
            "--resize-to",
            "192x128",
        ],
    );
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    // The camera's own size (no width/height): events are in its pixels, whatever they are.
    let cams = format!(
        "[[camera]]\nname = \"yard\"\nuri = \"{}\"\nrtsp_transport = \"tcp\"\n",
        server.url(None)
    );
    let cfg = test_config(dir.path(), &broker.url(), &cams, "");
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    let size = |e: &Value| (e["frame"]["width"].as_u64(), e["frame"]["height"].as_u64());
    sub.wait_for(Duration::from_secs(60), "events at the new size", |_| {
        sub.events("yard")
            .iter()
            .any(|e| e["type"] == "new" && size(e) == (Some(192), Some(128)))
    });
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    let events = sub.events("yard");
    let sizes: std::collections::BTreeSet<_> = events.iter().map(size).collect();
    assert!(sizes.contains(&(Some(320), Some(192))), "{sizes:?}");
    for e in &events {
        let (w, h) = size(e);
        let (w, h) = (w.unwrap() as f64, h.unwrap() as f64);
        let b: Vec<f64> = e["after"]["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= w && b[3] <= h,
            "{b:?} in {w}x{h}"
        );
    }
    // The tracks of the old size ended when the size changed (a fresh stream state).
    let reasons = every_track_ended(&events);
    assert!(
        reasons
            .values()
            .any(|r| r == "stream_restart" || r == "camera_lost"),
        "{reasons:?}"
    );
    broker.stop();
}

#[test]
fn a_camera_that_never_connects_leaves_the_other_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    // Nothing listens on this port.
    let dead = format!("rtsp://127.0.0.1:{}/cam", free_port());
    let cams = [
        camera("dead", &dead, "rtsp_transport = \"tcp\""),
        camera("live", "test:ball?live=true&fps=10", ""),
    ]
    .concat();
    let cfg = test_config(dir.path(), &broker.url(), &cams, "");
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(Duration::from_secs(30), "live events and stats", |m| {
        sub.events("live")
            .iter()
            .filter(|e| e["type"] == "new")
            .count()
            > 0
            && m.iter().any(|m| {
                m.topic == "t/stats"
                    && m.json()["cameras"]["dead"]["source_restarts"].as_u64() >= Some(2)
            })
    });
    let stats = sub
        .snapshot()
        .iter()
        .rev()
        .find(|m| m.topic == "t/stats")
        .unwrap()
        .json();
    assert_eq!(
        stats["cameras"]["dead"]["status"], "reconnecting",
        "{stats}"
    );
    assert_eq!(stats["cameras"]["dead"]["frames_processed"], 0, "{stats}");
    assert_eq!(stats["cameras"]["live"]["status"], "online", "{stats}");
    assert!(
        stats["cameras"]["live"]["frames_processed"].as_u64() > Some(5),
        "{stats}"
    );
    assert!(sub.events("dead").is_empty());
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    let reasons = every_track_ended(&sub.events("live"));
    assert!(reasons.values().all(|r| r == "shutdown"), "{reasons:?}");
    broker.stop();
}
