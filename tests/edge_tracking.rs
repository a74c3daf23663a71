//! NMS at birth through the whole daemon: one clip on two cameras, one with
//! `[camera.tracking] birth_nms_iou`, the shipped weights, a real mosquitto; the tracks each
//! camera publishes on every frame.
#![cfg(feature = "edge")]

mod edge_common;

use std::collections::BTreeMap;

use edge_common::*;
use serde_json::Value;

const FRAMES: usize = 30;
const NMS: f64 = 0.5;

/// (id, state, box) of every track in a camera's `tracks` message, by frame.
type Frames = BTreeMap<u64, Vec<(u64, String, [f64; 4])>>;

fn frames_of(msgs: &[Msg], camera: &str) -> Frames {
    let topic = format!("/{camera}/tracks");
    let mut out = Frames::new();
    for m in msgs.iter().filter(|m| m.topic.ends_with(&topic)) {
        let v: Value = serde_json::from_str(&m.payload).unwrap();
        let tracks = v["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let b = &t["box"];
                (
                    t["id"].as_u64().unwrap(),
                    t["state"].as_str().unwrap().to_string(),
                    [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap()),
                )
            })
            .collect();
        out.insert(v["frame"]["index"].as_u64().unwrap(), tracks);
    }
    out
}

/// (frame, id) of every `new` event of a camera.
fn births(msgs: &[Msg], camera: &str) -> Vec<(u64, u64)> {
    let topic = format!("/{camera}/events");
    msgs.iter()
        .filter(|m| m.topic.ends_with(&topic))
        .map(|m| serde_json::from_str::<Value>(&m.payload).unwrap())
        .filter(|e| e["type"] == "new")
        .map(|e| {
            (
                e["frame"]["index"].as_u64().unwrap(),
                e["after"]["id"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn birth_nms_keeps_second_slots_off_tracked_objects() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let clip = synth_clip(dir.path(), "clip.mkv", FRAMES, "160x96", 13);
    let uri = format!("file://{}", clip.display());
    let cameras = format!(
        "{}{}",
        camera("all", &uri, ""),
        camera(
            "nms",
            &uri,
            &format!("[camera.tracking]\nbirth_nms_iou = {NMS}")
        )
    );
    // Thresholds at zero (`test_config`): without NMS every slot is born on the first frame.
    let msgs = run_with_shipped_weights(
        dir.path(),
        &broker,
        &cameras,
        "[publish]\ntracks = true\n",
        "every frame's tracks of both cameras",
        |m| m.iter().filter(|m| m.topic.ends_with("/tracks")).count() >= 2 * FRAMES,
    );
    let (all, nms) = (frames_of(&msgs, "all"), frames_of(&msgs, "nms"));
    assert_eq!((all.len(), nms.len()), (FRAMES, FRAMES));
    assert_eq!(
        all[&0].len(),
        16,
        "every slot a track on the first frame without NMS"
    );
    let (born_all, born_nms) = (births(&msgs, "all"), births(&msgs, "nms"));
    eprintln!(
        "tracks born: {} without NMS, {} with birth_nms_iou {NMS}",
        born_all.len(),
        born_nms.len()
    );
    assert_eq!(born_all.iter().filter(|b| b.0 == 0).count(), 16);
    assert!(
        !born_nms.is_empty() && born_nms.len() < born_all.len(),
        "{born_nms:?} vs {born_all:?}"
    );

    // A track born on a frame overlaps no other track seen on it above the IoU. Boxes are
    // clamped to the frame before they are published, which can raise an IoU: pairs touching
    // an edge are left out.
    let inside = |b: &[f64; 4]| b[0] > 0.0 && b[1] > 0.0 && b[2] < 160.0 && b[3] < 96.0;
    let mut checked = 0;
    for (frame, id) in &born_nms {
        let tracks = &nms[frame];
        let (_, _, b) = tracks
            .iter()
            .find(|t| t.0 == *id)
            .unwrap_or_else(|| panic!("frame {frame}: born track {id} not in the tracks"));
        for (other, state, o) in tracks {
            if other == id || state == "lost" || !inside(b) || !inside(o) {
                continue;
            }
            checked += 1;
            assert!(
                iou(*b, *o) <= NMS + 0.01,
                "frame {frame}: track {id} born over track {other} (IoU {:.3})",
                iou(*b, *o)
            );
        }
    }
    assert!(checked > 0, "no pair to check");
}
