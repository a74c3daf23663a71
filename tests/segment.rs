//! `inspro segment` end to end with the built binary: a synthetic clip (`inspro synth --clip`)
//! decoded by GStreamer, segmented by ONNX Runtime (tiny config, the shipped weights; random ones on request), written as
//! YouTube-VIS results that `inspro eval` scores, an overlay video that decodes to the clip's
//! frames, and a contact sheet; and the YouTube-VIS layout mode with both engines.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_inspro");
const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/configs/models/inspro-tiny.toml"
);

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running the inspro binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "inspro {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

fn have(element: &str) -> bool {
    Command::new("gst-inspect-1.0")
        .arg(element)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `inspro synth --clip DIR/clip.mkv` (ground truth in DIR/clip.json).
fn synth_clip(dir: &Path, size: &str, frames: usize, seed: u64) -> std::path::PathBuf {
    let clip = dir.join("clip.mkv");
    let (frames, seed) = (frames.to_string(), seed.to_string());
    run(&[
        "synth",
        "--clip",
        clip.to_str().unwrap(),
        "--size",
        size,
        "--frames",
        &frames,
        "--seed",
        &seed,
    ]);
    clip
}

/// AP of `inspro eval --json`.
fn eval_ap(gt: &Path, results: &Path) -> f64 {
    let text = run(&[
        "eval",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
        "--json",
    ]);
    let start = text.find('{').expect("eval printed json");
    let end = text.rfind('}').expect("eval printed json");
    let v: serde_json::Value = serde_json::from_str(&text[start..=end]).expect("eval json");
    let ap = v
        .get("AP")
        .or_else(|| v.get("ap"))
        .or_else(|| v.pointer("/stats/0"))
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("no AP in {v}"));
    assert!((0.0..=1.0).contains(&ap) || ap == -1.0, "AP {ap}");
    ap
}

/// Frames of `video` decoded to RGB by GStreamer, and their size.
fn decoded_frames(video: &Path, w: usize, h: usize) -> usize {
    let out = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(
            format!(
                "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB,width={w},height={h} ! fdsink fd=1",
                video.display()
            )
            .split(' '),
        )
        .output()
        .expect("gst-launch-1.0");
    assert!(
        out.status.success(),
        "decoding {}: {}",
        video.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let frame = (w * 3).div_ceil(4) * 4 * h;
    assert_eq!(out.stdout.len() % frame, 0, "partial frame");
    out.stdout.len() / frame
}

#[test]
fn segment_a_clip_with_onnxruntime_writes_results_overlay_and_contact_sheet() {
    if !have("x264enc") || !have("avdec_h264") {
        panic!("GStreamer x264enc / avdec_h264 missing: run `scripts/setup.sh apt`");
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = synth_clip(dir.path(), "320x180", 10, 3);
    let gt = dir.path().join("clip.json");
    let results = dir.path().join("results.json");
    let overlay = dir.path().join("overlay.mkv");
    let sheet = dir.path().join("sheet.png");
    let text = run(&[
        "segment",
        clip.to_str().unwrap(),
        "--model",
        TINY,
        "--engine",
        "onnxruntime",
        "--gt",
        gt.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
        "--overlay",
        overlay.to_str().unwrap(),
        "--contact-sheet",
        sheet.to_str().unwrap(),
        "--show-threshold",
        "0",
    ]);
    assert!(text.contains("onnxruntime/cpu"), "{text}");
    // No --weights: the shipped weights, as the daemon and the element find them.
    assert!(
        text.contains("weights=engines/inspro-tiny/model.safetensors"),
        "{text}"
    );
    assert!(!text.contains("RANDOMLY INITIALISED"), "{text}");

    // Results: one per kept (slot, class), every frame's mask at the clip's size.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    let list = json.as_array().expect("results are a list");
    assert!(list.len() >= 10, "top-10 at least: {}", list.len());
    for r in list {
        let segs = r["segmentations"].as_array().unwrap();
        assert_eq!(segs.len(), 10);
        assert_eq!(segs[0]["size"], serde_json::json!([180, 320]));
    }
    eval_ap(&gt, &results);

    assert_eq!(decoded_frames(&overlay, 320, 180), 10);
    let sheet = image::open(&sheet).unwrap().to_rgb8();
    // 10 frames: 4 columns, 3 rows of 320x180 thumbnails with 4 px gaps.
    assert_eq!((sheet.width(), sheet.height()), (4 * 324 + 4, 3 * 184 + 4));
}

#[test]
fn segment_a_ytvis_layout_with_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ytvis");
    run(&[
        "synth",
        "--out",
        data.to_str().unwrap(),
        "--videos",
        "2",
        "--frames",
        "4",
        "--size",
        "320x180",
    ]);
    let gt = data.join("instances.json");
    // candle with random weights on request, said loudly; ONNX Runtime with the shipped ones.
    for (engine, random) in [("onnxruntime", false), ("candle", true)] {
        let results = dir.path().join(format!("{engine}.json"));
        let mut args = vec![
            "segment",
            "--ytvis",
            data.to_str().unwrap(),
            "--gt",
            gt.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
            "--model",
            TINY,
            "--engine",
            engine,
        ];
        if random {
            args.push("--random-weights");
        }
        let text = run(&args);
        assert!(text.contains("for 8 frames"), "{text}");
        assert_eq!(text.contains("RANDOMLY INITIALISED"), random, "{text}");
        eval_ap(&gt, &results);
    }
}

#[test]
fn a_missing_onnxruntime_library_names_the_setup_script() {
    let out = Command::new(BIN)
        .args([
            "segment",
            "--ytvis",
            "/nonexistent",
            "--gt",
            "/nonexistent.json",
        ])
        .args(["--results", "/tmp/x.json", "--model", TINY])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ORT_DYLIB_PATH") && err.contains("scripts/setup.sh"),
        "{err}"
    );
}

/// `inspro bench --cameras N --clip FILE`: the engine alone on a video's own frames (the
/// reference `scripts/daemon-overhead.sh` compares the daemon with), one JSON line per count.
#[test]
fn bench_cameras_plays_a_clip_through_the_daemons_engine_path() {
    if !have("x264enc") || !have("avdec_h264") {
        panic!("GStreamer x264enc / avdec_h264 missing: run `scripts/setup.sh apt`");
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = synth_clip(dir.path(), "200x120", 6, 5);
    let text = run(&[
        "bench",
        "--engine",
        "onnxruntime",
        "--model",
        TINY,
        "--cameras",
        "1,2",
        "--seconds",
        "0.3",
        "--warmup",
        "1",
        "--runs",
        "2",
        "--json",
        "--clip",
        clip.to_str().unwrap(),
    ]);
    let runs: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("bench json"))
        .collect();
    assert_eq!(runs.len(), 2, "{text}");
    for (run, n) in runs.iter().zip([1, 2]) {
        assert_eq!(run["cameras"], n, "{run}");
        // The clip's size, not --size's default.
        assert_eq!(run["size"], serde_json::json!([200, 120]), "{run}");
        let per: Vec<f64> = run["per_camera_fps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(per.len(), n, "{run}");
        assert!(per.iter().all(|&f| f > 0.0), "{run}");
    }
}

#[test]
fn bench_names_a_clip_it_cannot_read() {
    let out = Command::new(BIN)
        .args(["bench", "--engine", "candle", "--model", TINY])
        .args([
            "--cameras",
            "1",
            "--seconds",
            "0.1",
            "--clip",
            "/nonexistent/clip.mkv",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/clip.mkv"), "{err}");
}

#[test]
fn segment_names_a_tracker_flag_out_of_range() {
    for (flag, value) in [("--birth-nms-iou", "1.5"), ("--show-threshold", "-0.2")] {
        let out = Command::new(BIN)
            .args(["segment", "/nonexistent/clip.mkv", "--model", TINY])
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{flag}: {value} is not in [0, 1]")),
            "{err}"
        );
    }
}
