//! Events are in the camera's pixels: a 1280x720 and a 640x480 clip through the whole daemon
//! (GStreamer decode at the clip's own size, the engine letterboxing it, a real mosquitto), the
//! shipped weights' boxes compared with the clip's ground truth.
#![cfg(feature = "edge")]

mod edge_common;

use edge_common::*;

/// Mean over the ground-truth boxes of every frame of the best IoU among that frame's tracks.
fn run_clip(size: &str, seed: u64) -> (usize, usize, f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let clip = synth_clip(dir.path(), "clip.mkv", 8, size, seed);
    // No width/height: the camera's own size.
    let cam = format!(
        "[[camera]]\nname = \"cam\"\nuri = \"file://{}\"\n",
        clip.display()
    );
    let msgs = run_with_shipped_weights(
        dir.path(),
        &broker,
        &cam,
        "[publish]\ntracks = true\n",
        "8 tracks messages",
        |m| m.iter().filter(|m| m.topic.ends_with("/tracks")).count() >= 8,
    );
    let s = score_tracks(&msgs, "cam", &clip);
    assert_eq!(s.sizes.len(), 1, "one frame size: {:?}", s.sizes);
    let (w, h) = s.sizes.into_iter().next().unwrap();
    (w, h, s.mean_best_iou, s.objects)
}

#[test]
fn boxes_are_in_the_cameras_pixels_at_16_9_and_4_3() {
    for (size, want) in [("1280x720", (1280, 720)), ("640x480", (640, 480))] {
        let (w, h, mean_iou, objects) = run_clip(size, 5);
        eprintln!(
            "{size}: frames {w}x{h}, {objects} object-frames, mean best box IoU {mean_iou:.3}"
        );
        assert_eq!((w, h), want, "{size}: frame size in the events");
        assert!(objects >= 8, "{size}: {objects} ground-truth object-frames");
        // The shipped model's boxes at the camera's scale land on the objects (a box in the
        // network's 320x192 pixels would miss them on both clips).
        assert!(mean_iou >= 0.5, "{size}: mean best IoU {mean_iou:.3}");
    }
}
