//! Several cameras in one daemon on one ONNX Runtime engine with fewer sessions than cameras
//! (they take turns): every camera's every frame comes out, at its own size, with boxes on its
//! own clip's objects (a stream state used for another camera's frame would miss them).
#![cfg(feature = "edge")]

mod edge_common;

use std::time::Duration;

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

/// A file under `pace = "drop"` plays like a live camera: at the clip's own frame rate (30
/// frames/s as `inspro synth --clip` writes it), so `loop_file` loops once per clip duration
/// (0.5 s for 15 frames, plus the pipeline's start-up), not as fast as it decodes (hundreds of
/// loops a second before). Under `pace = "block"` the same clip goes as fast as the engine
/// takes it.
#[test]
fn a_file_under_pace_drop_plays_at_its_own_frame_rate() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let clip = synth_clip(dir.path(), "half-second.mkv", 15, "96x64", 5);
    let run = |pace: &str| -> (f64, u64, u64) {
        let sub = Subscriber::start(broker.port, "t/stats", false);
        let cfg = test_config(
            dir.path(),
            &broker.url(),
            &format!(
                "[[camera]]\nname = \"file\"\nuri = \"file://{}\"\nloop_file = true\npace = \"{pace}\"\n",
                clip.display()
            ),
            "",
        );
        let mut d = Daemon::spawn(&cfg, &[], &[]);
        // From the first stats message (the engine is loaded) for four more seconds.
        let first = sub.wait_for(Duration::from_secs(60), "first stats", |m| !m.is_empty());
        let start = first[0].json()["cameras"]["file"].clone();
        let t0 = first[0].at;
        std::thread::sleep(Duration::from_secs(4));
        let last = sub.snapshot().last().unwrap().clone();
        let secs = last.at.duration_since(t0).as_secs_f64();
        let end = last.json()["cameras"]["file"].clone();
        d.signal("TERM");
        assert!(
            d.wait(Duration::from_secs(60)).success(),
            "{}",
            d.log_text()
        );
        let delta = |k: &str| end[k].as_u64().unwrap() - start[k].as_u64().unwrap();
        (secs, delta("source_restarts"), delta("frames_in"))
    };
    let (secs, loops, frames) = run("drop");
    eprintln!("pace drop: {loops} loops and {frames} frames in {secs:.1} s");
    assert!(secs >= 2.0, "stats over {secs} s");
    // At most 2 loops and 60 frames a second (each loop also waits for its pipeline to start).
    assert!(
        loops >= 1 && loops as f64 <= secs / 0.5 + 2.0,
        "{loops} loops in {secs:.1} s of a 0.5 s clip"
    );
    assert!(
        (frames as f64) <= 30.0 * secs + 30.0,
        "{frames} frames in {secs:.1} s of a 30 frames/s clip"
    );
    let (secs_block, loops_block, frames_block) = run("block");
    eprintln!("pace block: {loops_block} loops and {frames_block} frames in {secs_block:.1} s");
    // The same clip unpaced goes faster than its own rate allows (ratio in one run).
    assert!(
        frames_block as f64 / secs_block > frames as f64 / secs,
        "block {frames_block} frames in {secs_block:.1} s, drop {frames} in {secs:.1} s"
    );
}
