//! Several cameras in one daemon on one ONNX Runtime engine with fewer sessions than cameras
//! (they take turns): every camera's every frame comes out, at its own size, with boxes on its
//! own clip's objects (a stream state used for another camera's frame would miss them).
#![cfg(feature = "edge")]

mod edge_common;

use edge_common::*;

#[test]
fn three_cameras_on_two_sessions_each_get_their_own_tracks() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let frames = 8;
    let clips: Vec<(String, std::path::PathBuf, (usize, usize))> = [
        ("a", "320x192", 3, (320, 192)),
        ("b", "640x480", 4, (640, 480)),
        ("c", "480x270", 5, (480, 270)),
    ]
    .into_iter()
    .map(|(name, size, seed, wh)| {
        let clip = synth_clip(dir.path(), &format!("{name}.mkv"), frames, size, seed);
        (name.to_string(), clip, wh)
    })
    .collect();
    let cameras: String = clips
        .iter()
        .map(|(name, clip, _)| {
            format!(
                "[[camera]]\nname = \"{name}\"\nuri = \"file://{}\"\n",
                clip.display()
            )
        })
        .collect();
    let msgs = run_with_shipped_weights(
        dir.path(),
        &broker,
        &cameras,
        "[publish]\ntracks = true\n\n[engine]\nkind = \"onnxruntime\"\nsessions = 2\n",
        "every camera's tracks messages",
        |m| m.iter().filter(|m| m.topic.ends_with("/tracks")).count() >= 3 * frames,
    );
    for (name, clip, wh) in &clips {
        let s = score_tracks(&msgs, name, clip);
        eprintln!(
            "camera {name}: {} frames, sizes {:?}, {} object-frames, mean best box IoU {:.3}",
            s.frames.len(),
            s.sizes,
            s.objects,
            s.mean_best_iou
        );
        assert_eq!(
            s.frames,
            (0..frames).collect(),
            "camera {name}: every frame of a file is processed"
        );
        assert_eq!(
            s.sizes.into_iter().collect::<Vec<_>>(),
            vec![*wh],
            "camera {name}"
        );
        assert!(
            s.objects >= frames,
            "camera {name}: {} object-frames",
            s.objects
        );
        // Another camera's state would put the boxes elsewhere (measured 0.52–0.80 here).
        assert!(
            s.mean_best_iou >= 0.35,
            "camera {name}: mean best IoU {:.3}",
            s.mean_best_iou
        );
    }
}
