//! The daemon end to end with real parts: mosquitto on a free loopback port, `inspro synth`
//! clips decoded by GStreamer, the daemon's default engine (ONNX Runtime), a rumqttc subscriber.
#![cfg(feature = "edge")]

mod edge_common;

use std::collections::BTreeSet;
use std::time::Duration;

use edge_common::*;
use inspro::ytvis::Rle;
use serde_json::Value;

/// Every field a consumer relies on, with its type.
fn check_schema(e: &Value, camera: &str) {
    for k in ["type", "reason", "run", "camera", "wall_time"] {
        assert!(e[k].is_string(), "{k} in {e}");
    }
    assert_eq!(e["camera"], camera);
    assert!(e["seq"].as_u64().is_some_and(|s| s > 0), "seq in {e}");
    assert!(
        e["timestamp"].as_f64().is_some_and(|t| t > 1.6e9),
        "timestamp in {e}"
    );
    let f = &e["frame"];
    assert!(
        f["index"].is_u64() && f["width"] == 160 && f["height"] == 96,
        "{f}"
    );
    assert!(f["pts"].is_f64() || f["pts"].is_null(), "{f}");
    let a = &e["after"];
    for k in [
        "id",
        "label_id",
        "slot",
        "first_frame",
        "last_seen_frame",
        "hits",
        "lost_frames",
    ] {
        assert!(a[k].is_u64(), "after.{k} in {a}");
    }
    for k in ["label", "event_id", "state"] {
        assert!(a[k].is_string(), "after.{k} in {a}");
    }
    assert!(a["score"].is_f64() || a["score"].is_u64());
    let b = a["box"].as_array().expect("box");
    assert_eq!(b.len(), 4);
    let ty = e["type"].as_str().unwrap();
    match ty {
        "new" => {
            assert!(e["before"].is_null());
            assert_eq!(a["state"], "new");
        }
        "update" => assert!(e["before"].is_object(), "update without before: {e}"),
        "end" => {
            assert!(e["before"].is_object());
            assert_eq!(a["state"], "removed");
        }
        other => panic!("type {other}"),
    }
}

/// The mask is the box crop's COCO RLE: size = the clamped box rectangle, origin = its corner,
/// and the counts decode to exactly that many pixels.
fn check_mask(e: &Value) {
    let a = &e["after"];
    let m = &a["mask"];
    assert_eq!(m["format"], "coco_rle", "{e}");
    let size: Vec<u32> = m["size"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let origin: Vec<usize> = m["origin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let bx: Vec<f64> = a["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // The mask is of the frame the track was last seen on, whose box is `after.box`.
    assert_eq!(m["frame"], a["last_seen_frame"], "{e}");
    // The box in the payload is rounded to 0.01 px; the crop was cut from the exact box, so a
    // box edge at .00 may round across a pixel boundary: allow one pixel.
    let r = box_rect(&bx, 160, 96);
    let near = |a: usize, b: usize| a.abs_diff(b) <= 1;
    assert!(
        near(origin[0], r[0]) && near(origin[1], r[1]),
        "origin {origin:?} vs box {bx:?}"
    );
    assert!(
        near(size[0] as usize, r[3] - r[1]) && near(size[1] as usize, r[2] - r[0]),
        "size [h, w] {size:?} vs box {bx:?}"
    );
    let rle = Rle::from_compressed(m["counts"].as_str().unwrap(), size[0], size[1])
        .expect("counts decode");
    let px = rle.decode_row_major();
    assert_eq!(px.len(), (size[0] * size[1]) as usize);
    assert!(origin[0] + size[1] as usize <= 160 && origin[1] + size[0] as usize <= 96);
    assert!(rle.area() <= u64::from(size[0] * size[1]));
    // `pixels` is the mask's own area, what a subscriber's decode must give.
    assert_eq!(m["pixels"].as_u64(), Some(rle.area()), "{e}");
}

#[test]
fn file_events_sequence_schema_masks_and_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let clip = synth_clip(dir.path(), "clip.mkv", 24, "160x96", 3);
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &camera("cam", &format!("file://{}", clip.display()), ""),
        "[publish]\nupdate_interval_s = 0.5\nheartbeat_s = 1.0\n",
    );
    let sub = Subscriber::start(broker.port, "t/#", false);
    let overlay = dir.path().join("out");
    let mut d = Daemon::spawn(
        &cfg,
        &["--exit-on-eos", "--overlay-dir", overlay.to_str().unwrap()],
        &[],
    );
    let status = d.wait(Duration::from_secs(180));
    assert!(status.success(), "exit {status:?}; log:\n{}", d.log_text());
    let log = d.log_text();
    // With the shipped weights in engines/inspro-tiny/ the daemon loads them (the zero thresholds
    // of test_config still make every slot a track); without them it must say RANDOM loudly.
    let shipped = std::path::Path::new("engines/inspro-tiny/model.safetensors").exists();
    assert!(
        if shipped {
            log.contains("weights=engines/inspro-tiny/model.safetensors")
        } else {
            log.contains("model weights: RANDOM")
        },
        "the weights line is missing:\n{log}"
    );
    let msgs = sub.wait_for(Duration::from_secs(10), "available=stopped", |m| {
        m.iter()
            .any(|m| m.topic == "t/available" && m.payload == "stopped")
    });

    // available: online first, stopped last.
    let avail: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic == "t/available")
        .map(|m| m.payload.as_str())
        .collect();
    assert_eq!(avail.first(), Some(&"online"));
    assert_eq!(avail.last(), Some(&"stopped"));

    let events = sub.events("cam");
    assert!(!events.is_empty(), "no events; log:\n{log}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq not increasing");
    let tracks = by_track(&events);
    // The tiny model has 16 query slots; with zero thresholds each is a track from frame 0.
    assert_eq!(tracks.len(), 16, "tracks: {:?}", tracks.keys());
    for (id, evs) in &tracks {
        let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types.first(), Some(&"new"), "track {id}: {types:?}");
        assert_eq!(types.last(), Some(&"end"), "track {id}: {types:?}");
        assert!(
            types[1..types.len() - 1].iter().all(|t| *t == "update"),
            "track {id}: {types:?}"
        );
        for e in evs {
            check_schema(e, "cam");
            if e["after"]["mask"].is_object() {
                check_mask(e);
            }
        }
        // `before` of each message is the previous message's `after`.
        for w in evs.windows(2) {
            assert_eq!(
                w[1]["before"]["last_seen_frame"],
                w[0]["after"]["last_seen_frame"]
            );
        }
        assert!(evs.iter().all(|e| e["after"]["mask"].is_object()));
    }
    // The overlay video and the contact sheet.
    let video = overlay.join("cam-overlay.mkv");
    let sheet = overlay.join("cam-sheet.png");
    assert!(std::fs::metadata(&video).unwrap().len() > 1000);
    let img = image::open(&sheet).expect("contact sheet decodes");
    assert!(img.width() >= 160 && img.height() >= 96);
}

#[test]
fn broker_restart_loses_no_new_or_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), true);
    let clip = synth_clip(dir.path(), "clip.mkv", 6, "160x96", 5);
    // A looping file: every loop restarts the stream, which ends all tracks and starts new ones,
    // so new/end events keep coming while the broker is away.
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
    let sub = Subscriber::start(broker.port, "t/#", true);
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    let ends = |m: &[Msg], n: usize| {
        m.iter()
            .filter(|m| m.topic == "t/cam/events" && m.payload.contains("\"type\":\"end\""))
            .count()
            >= n
    };
    sub.wait_for(Duration::from_secs(120), "a first loop", |m| ends(m, 16));
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart();
    // After the restart: more loops, then a clean stop.
    let before = sub.snapshot().len();
    // Wait for the events, not for time: on a loaded machine fewer loops fit in any window.
    let track_id = |m: &Msg| {
        serde_json::from_str::<serde_json::Value>(&m.payload)
            .ok()
            .and_then(|v| v["after"]["id"].as_u64())
    };
    sub.wait_for(
        Duration::from_secs(180),
        "a fourth loop after the restart",
        |m| {
            m.len() > before + 40
                && m.iter()
                    .any(|m| m.topic == "t/cam/events" && track_id(m).is_some_and(|id| id > 48))
        },
    );
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", d.log_text());
    sub.wait_for(Duration::from_secs(20), "stopped", |m| {
        m.iter()
            .any(|m| m.topic == "t/available" && m.payload == "stopped")
    });
    let log = d.log_text();
    assert!(log.contains("lost the MQTT broker"), "{log}");
    let events = sub.events("cam");
    let mut news = BTreeSet::new();
    let mut endset = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut dups = 0;
    for e in &events {
        let id = e["after"]["id"].as_u64().unwrap();
        if !seen.insert((e["run"].to_string(), e["seq"].as_u64().unwrap())) {
            dups += 1; // at-least-once: consumers de-duplicate on (run, camera, seq)
            continue;
        }
        match e["type"].as_str().unwrap() {
            "new" => {
                news.insert(id);
            }
            "end" => {
                endset.insert(id);
            }
            _ => {}
        }
    }
    let max = *news.iter().max().expect("tracks");
    let all: BTreeSet<u64> = (1..=max).collect();
    assert!(max > 48, "expected several loops, got {max} tracks");
    assert_eq!(news, all, "missing new events");
    assert_eq!(endset, all, "missing end events");
    // The reconnect found events waiting in the spool (written while the broker was away).
    let spooled: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("connected to the MQTT broker"))
        .filter_map(|l| {
            l.split("spooled=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        spooled.len() >= 2 && spooled[1..].iter().any(|n| *n > 0),
        "nothing was spooled during the outage: {spooled:?}"
    );
    eprintln!(
        "broker restart: {max} tracks, {} events, {dups} duplicates, spooled at reconnect: {spooled:?}",
        events.len(),
    );
}

#[test]
fn source_error_leads_to_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let later = dir.path().join("later.mkv");
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &camera("cam", &format!("file://{}", later.display()), ""),
        "",
    );
    let sub = Subscriber::start(broker.port, "t/#", false);
    let mut d = Daemon::spawn(&cfg, &["--exit-on-eos"], &[]);
    // The file is missing: the source fails, says so, and retries with backoff.
    sub.wait_for(Duration::from_secs(60), "status reconnecting", |m| {
        m.iter()
            .any(|m| m.topic == "t/cam/status" && m.payload == "reconnecting")
    });
    let clip = synth_clip(dir.path(), "clip.mkv", 8, "160x96", 7);
    std::fs::rename(&clip, &later).unwrap();
    let status = d.wait(Duration::from_secs(120));
    assert!(status.success(), "{status:?}\n{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("source failed; restarting"), "{log}");
    let msgs = sub.wait_for(Duration::from_secs(10), "end events", |m| {
        m.iter().any(|m| m.payload.contains("\"type\":\"end\""))
    });
    let status: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic == "t/cam/status")
        .map(|m| m.payload.as_str())
        .collect();
    let recon = status.iter().position(|s| *s == "reconnecting").unwrap();
    assert!(
        status[recon..].contains(&"online"),
        "no online after reconnecting: {status:?}"
    );
    assert_eq!(by_track(&sub.events("cam")).len(), 16);
}

/// `examples/subscriber.py` (paho-mqtt, pycocotools, from the venv of `scripts/setup.sh`) reads
/// what the daemon publishes: one line per event, and every mask decodes to its `size` with its
/// `pixels` (the example exits 1 otherwise).
#[test]
fn the_python_example_subscriber_decodes_every_event() {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh python",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let clip = synth_clip(dir.path(), "clip.mkv", 12, "160x96", 21);
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &camera("cam", &format!("file://{}", clip.display()), ""),
        "",
    );
    let out = dir.path().join("subscriber.out");
    let err = dir.path().join("subscriber.err");
    let mut py = std::process::Command::new(&python)
        .arg(repo().join("examples/subscriber.py"))
        .args(["--port", &broker.port.to_string(), "--prefix", "t"])
        .args(["--seconds", "300", "--check"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run examples/subscriber.py");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let t0 = std::time::Instant::now();
    while !read(&err).contains("subscribed") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the example did not subscribe:\n{}",
            read(&err)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sub = Subscriber::start(broker.port, "t/#", false);
    let mut d = Daemon::spawn(&cfg, &["--exit-on-eos"], &[]);
    assert!(
        d.wait(Duration::from_secs(180)).success(),
        "{}",
        d.log_text()
    );
    let msgs = sub.wait_for(Duration::from_secs(20), "stopped", |m| {
        m.iter()
            .any(|m| m.topic == "t/available" && m.payload == "stopped")
    });
    let events = msgs.iter().filter(|m| m.topic.ends_with("/events")).count();
    assert!(events > 0, "the daemon published no events");
    let t0 = std::time::Instant::now();
    while read(&out).lines().count() < events {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the example printed {} of {events} events:\n{}",
            read(&out).lines().count(),
            read(&err)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Interrupted, it prints its summary and exits 0 unless a mask did not match its event.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &py.id().to_string()])
        .status();
    let status = py.wait().unwrap();
    let summary = read(&err);
    assert!(status.success(), "{status:?}\n{summary}");
    assert!(
        summary.contains(&format!("{events} events")) && summary.contains(" 0 bad"),
        "{summary}"
    );
    let printed = read(&out);
    assert!(printed.lines().any(|l| l.contains(" new ")), "{printed}");
    assert!(printed.lines().any(|l| l.contains(" px")), "{printed}");
}

/// A broker that takes no packet above 900 bytes (below some events of a 320x192 clip) drops
/// the daemon on the first larger one. The daemon learns the limit from the same message being
/// refused twice, sends larger events without their mask (flagged) or sets them aside in the
/// dead-letter file, and every event after them reaches the broker: no `new` without its `end`,
/// every event's `seq` either received or set aside.
#[test]
fn a_message_the_broker_refuses_never_blocks_the_ones_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start_with(dir.path(), false, "max_packet_size 900\n");
    // Long enough, played at its own rate, for the limit to be learned while events flow.
    let clip = synth_clip(dir.path(), "clip.mkv", 120, "320x192", 11);
    let uri = format!("file://{}", clip.display());
    let cams: String = ["a", "b"]
        .iter()
        .map(|n| {
            format!("[[camera]]\nname = \"{n}\"\nuri = \"{uri}\"\nwidth = 320\nheight = 192\npace = \"drop\"\n")
        })
        .collect();
    // Every event at QoS 1, so that none may be dropped while the connection is down.
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &cams,
        "[mqtt.qos]\nlifecycle = 1\nupdate = 1\n",
    );
    // Time at the end to deliver what waits.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("shutdown_timeout_s = 5.0", "shutdown_timeout_s = 30.0");
    std::fs::write(&cfg, text).unwrap();
    let sub = Subscriber::start(broker.port, "t/#", false);
    let mut d = Daemon::spawn(&cfg, &["--exit-on-eos"], &[]);
    assert!(
        d.wait(Duration::from_secs(240)).success(),
        "{}",
        d.log_text()
    );
    // What was set aside, by camera and seq.
    let dead_file = dir.path().join("spool").join("dead-letter.jsonl");
    let dead: Vec<Value> = std::fs::read_to_string(&dead_file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut stripped = 0;
    for cam in ["a", "b"] {
        // Wait for the tail of what the daemon flushed at exit.
        std::thread::sleep(Duration::from_millis(500));
        let events = sub.events(cam);
        assert!(!events.is_empty(), "no events of {cam}");
        // Received, and set aside.
        let mut all = events.clone();
        for e in &dead {
            let p: Value = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
            if p["camera"] == cam && p["after"]["id"].is_u64() {
                all.push(p);
            }
        }
        let mut seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let max = *seqs.last().unwrap();
        assert_eq!(
            seqs,
            (1..=max).collect::<Vec<u64>>(),
            "{cam}: a seq is missing"
        );
        stripped += events
            .iter()
            .filter(|e| !e["after"]["mask_omitted"].is_null())
            .count();
        // Every track that was born (received or set aside) ended.
        for (id, evs) in by_track(&all) {
            if evs.iter().any(|e| e["type"] == "new") {
                assert!(
                    evs.iter().any(|e| e["type"] == "end"),
                    "{cam}: track {id} has no end"
                );
            }
        }
    }
    let log = d.log_text();
    // No event waits in the spool (every one was delivered or set aside above).
    for e in std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "spool") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            assert!(!text.contains("/events"), "{}: {text}", p.display());
        }
    }
    eprintln!(
        "oversize: {stripped} events sent without their mask, {} set aside",
        dead.len()
    );
    assert!(stripped + dead.len() > 0, "nothing was over 900 bytes");
    assert!(log.contains("it takes no packet above"), "{log}");
    broker.stop();
}
