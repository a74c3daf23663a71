//! Zones and lines through the whole daemon: a synthetic clip, a real mosquitto, the shipped
//! weights; every event's zones and every line event checked against the boxes the daemon
//! itself published for each frame.
#![cfg(feature = "edge")]

mod edge_common;

use std::collections::BTreeMap;

use edge_common::*;
use serde_json::Value;

const W: f64 = 320.0;
const H: f64 = 192.0;

fn foot(b: &Value) -> (f64, f64) {
    let v: Vec<f64> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    (0.5 * (v[0] + v[2]), v[3])
}

#[test]
fn zones_and_lines_follow_the_published_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let clip = synth_clip(dir.path(), "clip.mkv", 60, "320x192", 9);
    // The left half (reaching past the frame's edges, so a box on the bottom edge is inside) and
    // the vertical line between the halves, drawn downwards.
    let cam = format!(
        "[[camera]]\nname = \"cam\"\nuri = \"file://{}\"\n\
         [[camera.zone]]\nname = \"left\"\ncoordinates = [[-10, -10], [{m}, -10], [{m}, {b}], [-10, {b}]]\n\
         [[camera.line]]\nname = \"middle\"\npoints = [[{m}, 0], [{m}, {h}]]\n",
        clip.display(),
        m = W / 2.0,
        b = H + 10.0,
        h = H,
    );
    let msgs = run_with_shipped_weights(
        dir.path(),
        &broker,
        &cam,
        "[publish]\ntracks = true\n",
        "60 tracks messages",
        |m| m.iter().filter(|m| m.topic.ends_with("/tracks")).count() >= 60,
    );
    let json = |m: &Msg| serde_json::from_str::<Value>(&m.payload).unwrap();
    // Each track's foot point on the frames it was seen (not lost), from the `tracks` topic.
    let mut paths: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    let mut frames: Vec<Value> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/tracks"))
        .map(json)
        .collect();
    frames.sort_by_key(|v| v["frame"]["index"].as_u64().unwrap());
    for f in &frames {
        for t in f["tracks"].as_array().unwrap() {
            if t["state"] != "lost" {
                paths
                    .entry(t["id"].as_u64().unwrap())
                    .or_default()
                    .push(foot(&t["box"]).0);
            }
        }
    }
    let left = |x: f64| x < W / 2.0;
    let mut expected = 0usize;
    let mut near = 0usize;
    for xs in paths.values() {
        expected += xs.windows(2).filter(|w| left(w[0]) != left(w[1])).count();
        near += xs.iter().filter(|x| (**x - W / 2.0).abs() < 0.02).count();
    }
    let events: Vec<Value> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/events"))
        .map(json)
        .collect();
    let lines: Vec<&Value> = events.iter().filter(|e| e["type"] == "line").collect();
    eprintln!(
        "{} tracks, {} line events, {} crossings in the published boxes",
        paths.len(),
        lines.len(),
        expected
    );
    assert!(expected > 0, "the clip's objects cross the middle");
    assert!(
        lines.len().abs_diff(expected) <= near,
        "{} line events for {expected} crossings",
        lines.len()
    );
    for l in &lines {
        assert_eq!(l["line"], "middle");
        let x = foot(&l["after"]["box"]).0;
        // Direction: right of the downward line is the image's left.
        let want = if left(x) { "forward" } else { "backward" };
        if (x - W / 2.0).abs() > 0.02 {
            assert_eq!(l["direction"], want, "{l}");
        }
    }
    // Every published track's zones agree with its foot point; entered includes current.
    let mut in_zone = 0;
    for e in events.iter().filter(|e| e["type"] != "line") {
        let a = &e["after"];
        if a["state"] == "lost" || e["type"] == "end" {
            continue;
        }
        let (x, _) = foot(&a["box"]);
        if (x - W / 2.0).abs() < 0.02 {
            continue;
        }
        let current: Vec<&str> = a["current_zones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z.as_str().unwrap())
            .collect();
        assert_eq!(current == ["left"], left(x), "{a}");
        in_zone += usize::from(left(x));
        let entered = a["entered_zones"].as_array().unwrap();
        assert!(
            current.iter().all(|z| entered.iter().any(|e| e == z)),
            "{a}"
        );
    }
    assert!(in_zone > 0);
    assert!(
        events.iter().any(|e| e["reason"] == "zone"),
        "a zone change sends an update"
    );
}

/// SIGHUP reloads a camera's rules while it runs: a zone added to the file shows up in the
/// events of the tracks already open, as `update`s with reason `zone`.
#[test]
fn sighup_reloads_a_cameras_rules() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let cam =
        "[[camera]]\nname = \"live\"\nuri = \"test:ball?live=true&width=160&height=96&fps=10\"\n";
    let cfg = test_config(dir.path(), &broker.url(), cam, "");
    let sub = Subscriber::start(broker.port, "t/#", false);
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(std::time::Duration::from_secs(120), "tracks", |m| {
        m.iter().any(|m| m.topic == "t/live/events")
    });
    let zone_events = |m: &[Msg]| {
        m.iter()
            .filter(|m| m.topic == "t/live/events")
            .map(|m| m.json())
            .filter(|e| {
                e["reason"] == "zone" && e["after"]["current_zones"] == serde_json::json!(["all"])
            })
            .count()
    };
    assert_eq!(
        zone_events(&sub.snapshot()),
        0,
        "no zones before the reload"
    );
    // The zone goes to the camera table (the last [[camera]] of the file).
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "\n[[camera.zone]]\nname = \"all\"\ncoordinates = [[-10, -10], [500, -10], [500, 500], [-10, 500]]\n",
    );
    std::fs::write(&cfg, text).unwrap();
    d.signal("HUP");
    sub.wait_for(std::time::Duration::from_secs(30), "zone updates", |m| {
        zone_events(m) > 0
    });
    d.signal("TERM");
    assert!(
        d.wait(std::time::Duration::from_secs(60)).success(),
        "{}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("configuration reloaded"),
        "{}",
        d.log_text()
    );
}
