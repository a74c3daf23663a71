//! Cameras changed while the daemon runs: SIGHUP adds, removes and restarts only the cameras
//! whose settings changed (the others keep their pipelines, track ids and frame counters), and
//! Frigate's MQTT control topics switch a camera's detection, snapshots or whole pipeline, answered
//! on retained state topics, kept across restarts and broker restarts; `<prefix>/restart` exits
//! for systemd to start the daemon again.
#![cfg(feature = "edge")]

mod edge_common;

use std::time::{Duration, Instant};

use edge_common::*;
use inspro::edge::topics::{Switch, Topics};
use serde_json::Value;

fn topics() -> Topics {
    Topics::new("t")
}

fn live(name: &str, pattern: &str) -> String {
    camera(name, &format!("test:{pattern}?live=true&fps=10"), "")
}

fn ends_with(events: &[Value], reason: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["type"] == "end" && e["reason"] == reason)
        .map(|e| e["after"]["id"].as_u64().unwrap())
        .collect()
}

/// The retained messages of `topic` so far, in order.
fn payloads(sub: &Subscriber, topic: &str) -> Vec<String> {
    sub.snapshot()
        .iter()
        .filter(|m| m.topic == topic)
        .map(|m| m.payload.clone())
        .collect()
}

#[test]
fn sighup_adds_removes_and_restarts_only_the_cameras_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    let before = [
        live("keep", "ball"),
        live("gone", "smpte"),
        live("change", "ball"),
    ]
    .concat();
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &before,
        "[publish]\ntracks = true\n",
    );
    // With Home Assistant discovery.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "topic_prefix = \"t\"",
        "topic_prefix = \"t\"\nhome_assistant = true",
    );
    std::fs::write(&cfg, text).unwrap();
    let ha = Subscriber::start(broker.port, "homeassistant/#", false);
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    for cam in ["keep", "gone", "change"] {
        sub.wait_for(Duration::from_secs(30), cam, |_| {
            !sub.events(cam).is_empty()
        });
    }
    let keep_ids: Vec<u64> = by_track(&sub.events("keep")).keys().copied().collect();
    assert!(!keep_ids.is_empty());
    let after = [
        live("keep", "ball"),
        live("change", "snow"),
        live("added", "ball"),
    ]
    .concat();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&before, &after);
    std::fs::write(&cfg, text).unwrap();
    let hup = sub.snapshot().len();
    let n_change = sub.events("change").len();
    d.signal("HUP");
    sub.wait_for(Duration::from_secs(30), "the added camera's events", |_| {
        !sub.events("added").is_empty()
    });
    sub.wait_for(Duration::from_secs(30), "change's new tracks", |_| {
        sub.events("change")[n_change..]
            .iter()
            .any(|e| e["type"] == "new")
    });
    std::thread::sleep(Duration::from_secs(1));
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());

    // Removed: every track ended `camera_removed`, its retained status cleared.
    let gone = by_track(&sub.events("gone"));
    assert_eq!(
        ends_with(&sub.events("gone"), "camera_removed").len(),
        gone.len()
    );
    assert!(payloads(&sub, &topics().camera("gone").status()).last() == Some(&String::new()));
    // Changed: its old tracks ended `reconfigured`, new ones came after.
    assert!(!ends_with(&sub.events("change"), "reconfigured").is_empty());
    // Unchanged: the same tracks from before to after the reload, ended only at shutdown, and
    // its frame counter went on without a restart.
    let keep = sub.events("keep");
    for id in &keep_ids {
        let evs = &by_track(&keep)[id];
        assert_eq!(evs.iter().filter(|e| e["type"] == "end").count(), 1);
        assert_eq!(evs.last().unwrap()["reason"], "shutdown", "track {id}");
    }
    let tracks_topic = topics().camera("keep").tracks();
    let frames: Vec<u64> = sub
        .snapshot()
        .iter()
        .filter(|m| m.topic == tracks_topic)
        .map(|m| m.json()["frame"]["index"].as_u64().unwrap())
        .collect();
    assert!(frames.windows(2).all(|w| w[1] > w[0]), "{frames:?}");
    let after_hup = sub.snapshot()[hup..]
        .iter()
        .filter(|m| m.topic == tracks_topic)
        .count();
    assert!(after_hup > 5, "keep stopped after SIGHUP");
    let log = d.log_text();
    assert!(
        log.contains("camera removed") && log.contains("camera added"),
        "{log}"
    );
    assert!(
        log.contains("camera restarted with its new settings"),
        "{log}"
    );
    // Home Assistant: each camera's entities name the daemon's own topics; the removed
    // camera's are deleted (empty retained config); the count topics hold numbers.
    let configs = ha.snapshot();
    let detect = configs
        .iter()
        .find(|m| m.topic == "homeassistant/switch/inspro_test/keep_detect/config")
        .expect("keep's detect switch")
        .json();
    assert_eq!(
        detect["command_topic"],
        topics().camera("keep").set(Switch::Detect)
    );
    assert_eq!(
        detect["state_topic"],
        topics().camera("keep").state(Switch::Detect)
    );
    for k in ["unique_id", "device", "availability", "name"] {
        assert!(!detect[k].is_null(), "{k}: {detect}");
    }
    let online = configs
        .iter()
        .find(|m| m.topic == "homeassistant/binary_sensor/inspro_test/keep_online/config")
        .expect("keep's connectivity sensor")
        .json();
    assert_eq!(online["state_topic"], topics().camera("keep").status());
    let sensors: Vec<Value> = configs
        .iter()
        .filter(|m| {
            m.topic
                .starts_with("homeassistant/sensor/inspro_test/keep_")
                && !m.payload.is_empty()
        })
        .map(|m| m.json())
        .collect();
    assert!(!sensors.is_empty());
    let counted = sensors.iter().any(|s| {
        let t = s["state_topic"].as_str().unwrap();
        payloads(&sub, t)
            .iter()
            .any(|p| p.parse::<u64>().is_ok_and(|n| n > 0))
    });
    assert!(counted, "no count topic of keep held a positive number");
    let gone_configs: Vec<_> = configs
        .iter()
        .filter(|m| m.topic.contains("/inspro_test/gone_"))
        .collect();
    assert!(!gone_configs.is_empty());
    assert!(
        gone_configs.iter().any(|m| m.payload.is_empty()),
        "gone's entities not removed"
    );
    assert!(configs
        .iter()
        .any(|m| m.topic.contains("/inspro_test/added_") && !m.payload.is_empty()));
    broker.stop();
}

#[test]
fn mqtt_switches_act_persist_and_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    let cams = [live("a", "ball"), live("b", "smpte")].concat();
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &cams,
        "[publish]\ntracks = true\n",
    );
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    let ta = topics();
    let (a, b) = (ta.camera("a"), ta.camera("b"));
    sub.wait_for(Duration::from_secs(30), "events", |_| {
        !sub.events("a").is_empty() && !sub.events("b").is_empty()
    });
    // Every switch's state is told, retained, at start.
    for s in Switch::ALL {
        assert_eq!(payloads(&sub, &a.state(s)), vec!["ON"], "{}", a.state(s));
    }

    // detect OFF: a's tracks end (detect_off) within a frame interval or so, nothing new after.
    let sent = Instant::now();
    publish(broker.port, &a.set(Switch::Detect), "OFF", false);
    sub.wait_for(Duration::from_secs(5), "detect OFF state", |_| {
        payloads(&sub, &a.state(Switch::Detect))
            .last()
            .map(String::as_str)
            == Some("OFF")
    });
    let told = sent.elapsed().as_secs_f64();
    // Every track of a ends `detect_off` at the engine thread's next frame.
    sub.wait_for(Duration::from_secs(5), "detect_off ends", |_| {
        ends_with(&sub.events("a"), "detect_off").len() == by_track(&sub.events("a")).len()
    });
    let acted = sent.elapsed().as_secs_f64();
    eprintln!("detect OFF told {told:.3} s and acted on (every track ended) {acted:.3} s after the command");
    let n_a = sub.events("a").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sub.events("a").len(), n_a, "events after detect OFF");
    assert!(sub.events("b").len() > 1, "b went on");

    // Bad payload, unknown camera, unknown switch: a warning and a counter, nothing else.
    publish(broker.port, &a.set(Switch::Detect), "maybe", false);
    publish(
        broker.port,
        &ta.camera("nope").set(Switch::Detect),
        "ON",
        false,
    );
    publish(broker.port, "t/a/volume/set", "ON", false);
    let stats = sub.wait_for(Duration::from_secs(10), "rejections counted", |m| {
        m.iter().any(|m| {
            m.topic == "t/stats" && m.json()["mqtt"]["commands_rejected"].as_u64() >= Some(2)
        })
    });
    let last = stats
        .iter()
        .rev()
        .find(|m| m.topic == "t/stats")
        .unwrap()
        .json();
    assert_eq!(last["cameras"]["a"]["detect"], false, "{last}");
    assert!(
        last["cameras"]["a"]["frames_skipped"].as_u64() > Some(0),
        "{last}"
    );

    // detect ON: events again. enabled OFF for b: its pipeline stops, tracks end `disabled`.
    publish(broker.port, &a.set(Switch::Detect), "ON", false);
    publish(broker.port, &b.set(Switch::Enabled), "off", false);
    sub.wait_for(Duration::from_secs(10), "a back, b disabled", |_| {
        sub.events("a")[n_a..].iter().any(|e| e["type"] == "new")
            && payloads(&sub, &b.status()).last().map(String::as_str) == Some("disabled")
    });
    let b_tracks = by_track(&sub.events("b")).len();
    assert_eq!(ends_with(&sub.events("b"), "disabled").len(), b_tracks);

    // The broker restarts: the daemon subscribes again and still obeys.
    broker.restart();
    sub.wait_for(
        Duration::from_secs(20),
        "online after the broker restart",
        |m| {
            m.iter()
                .filter(|m| m.topic == "t/available" && m.payload == "online")
                .count()
                >= 2
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    publish(broker.port, &a.set(Switch::Snapshots), "OFF", false);
    sub.wait_for(Duration::from_secs(10), "snapshots OFF state", |_| {
        payloads(&sub, &a.state(Switch::Snapshots))
            .last()
            .map(String::as_str)
            == Some("OFF")
    });
    // A retained `/set` (a fresh message to the running daemon: acted on), then a plain OFF.
    publish(broker.port, &a.set(Switch::Detect), "ON", true);
    let n_on = payloads(&sub, &a.state(Switch::Detect)).len();
    sub.wait_for(Duration::from_secs(10), "the retained ON answered", |_| {
        payloads(&sub, &a.state(Switch::Detect)).len() > n_on
    });
    publish(broker.port, &a.set(Switch::Detect), "OFF", false);
    sub.wait_for(Duration::from_secs(10), "detect OFF again", |_| {
        payloads(&sub, &a.state(Switch::Detect))
            .last()
            .map(String::as_str)
            == Some("OFF")
    });
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());

    // The retained `ON` left on the broker is an old command: the next start gets it again on
    // subscribing and does not act on it.
    let n_b = sub.events("b").len();
    let n_a = sub.events("a").len();
    let mark = sub.snapshot().len();
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(Duration::from_secs(30), "the second run's stats", |m| {
        m[mark..]
            .iter()
            .filter(|m| m.topic == "t/stats")
            .any(|m| m.json()["cameras"]["a"]["frames_skipped"].as_u64() > Some(5))
    });
    // The switches held: a detects nothing, b is disabled (no pipeline, no events).
    assert_eq!(sub.events("a").len(), n_a, "a detected after the restart");
    assert_eq!(sub.events("b").len(), n_b, "b ran after the restart");
    let log = d.log_text();
    assert!(
        log.contains("retained control message not acted on"),
        "{log}"
    );
    assert!(log.contains("camera disabled"), "{log}");

    // `<prefix>/restart`: a clean stop, exit 75 for systemd to start it again.
    publish(broker.port, &ta.restart(), "", false);
    let st = d.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(75), "{}", d.log_text());
    assert!(d.log_text().contains("restart requested over MQTT"));
    broker.stop();
}
