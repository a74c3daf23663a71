//! The built `libgstinspro.so` as users load it: `GST_PLUGIN_PATH` at a directory holding only
//! it, a temporary `GST_REGISTRY`, and the stock tools (`gst-inspect-1.0`, `gst-launch-1.0 -m`)
//! and Python (PyGObject) reading the meta by name. The tiny model with random weights and
//! `score-threshold=0` makes 16 tracks from the second frame on, deterministically.

mod common;

use std::path::Path;
use std::process::Output;

use common::{gst_command, plugin_dir, tiny_model};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn gst_inspect_lists_the_element_with_every_property() {
    let plugins = plugin_dir();
    let out = gst_command("gst-inspect-1.0", plugins.path())
        .arg("inspro")
        .output()
        .expect("gst-inspect-1.0 (gstreamer1.0-tools)");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("Filter/Analyzer/Video"), "{t}");
    assert!(t.contains("libgstinspro.so"), "{t}");
    for prop in [
        "model",
        "weights",
        "engine",
        "execution-provider",
        "score-threshold",
        "birth-nms-iou",
        "key-frame-interval",
        "draw",
        "emit-messages",
    ] {
        assert!(
            t.contains(&format!("  {prop} ")),
            "property {prop} missing:\n{t}"
        );
    }
    for detail in [
        "Float. Range:",
        "Default:             0.5",
        "Integer. Range: -1 - 2147483647 Default: -1",
        "(0): onnxruntime",
        "(1): candle",
        "(2): tensorrt",
        "(3): auto",
        // ONNX Runtime with provider auto by default, as the daemon.
        "Default: 0, \"onnxruntime\"",
        "Default: 3, \"auto\"",
        "changeable in NULL, READY, PAUSED or PLAYING state",
    ] {
        assert!(t.contains(detail), "`{detail}` missing:\n{t}");
    }
    // Not blacklisted: the plugin itself is listed too.
    let out = gst_command("gst-inspect-1.0", plugins.path())
        .args(["-b"])
        .output()
        .expect("gst-inspect-1.0 -b");
    assert!(!text(&out).contains("libgstinspro"), "{}", text(&out));
}

fn write_clip(dir: &Path, w: u32, h: u32, frames: usize) -> std::path::PathBuf {
    use inspro::ytvis::synth::{write_clip, ClipOptions, SynthOptions};
    let path = dir.join("clip.mkv");
    let opts = SynthOptions {
        videos: 1,
        frames,
        width: w,
        height: h,
        seed: 11,
        ..SynthOptions::default()
    };
    write_clip(&path, &opts, &ClipOptions::default()).expect("synthetic H.264 clip");
    path
}

#[test]
fn gst_launch_m_prints_the_messages_of_a_decoded_clip() {
    // x264enc (plugins-ugly) writes the clip, avdec_h264 (libav) decodes it; scripts/setup.sh
    // installs both.
    common::init();
    let missing: Vec<_> = ["x264enc", "avdec_h264", "matroskademux"]
        .into_iter()
        .filter(|e| gst::ElementFactory::find(e).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: no {missing:?} (scripts/setup.sh apt)");
        return;
    }
    let plugins = plugin_dir();
    let clip = write_clip(plugins.path(), 320, 192, 5);
    let out = gst_command("gst-launch-1.0", plugins.path())
        .arg("-m")
        .args(
            format!(
                "filesrc location={} ! matroskademux ! h264parse ! avdec_h264 \
                 ! inspro model={} score-threshold=0 emit-messages=true ! fakesink",
                clip.display(),
                tiny_model().display()
            )
            .split_whitespace(),
        )
        .output()
        .expect("gst-launch-1.0");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let msgs: Vec<&str> = t
        .lines()
        .filter(|l| l.contains("from element \"inspro0\" (element): inspro-tracks"))
        .collect();
    assert_eq!(msgs.len(), 5, "one message per decoded frame:\n{t}");
    // avdec_h264 gives I420; frame 0 makes candidates, frame 1 on carries the 16 tracks.
    assert!(msgs[0].contains("frame=(guint64)0"), "{}", msgs[0]);
    assert!(
        msgs[1].contains("width=(int)320, height=(int)192"),
        "{}",
        msgs[1]
    );
    assert!(
        msgs[1].contains("ids=(guint64)< 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 >"),
        "{}",
        msgs[1]
    );
    for field in [
        "labels=(string)<",
        "boxes=(float)<",
        "masks=(string)<",
        "running-time=",
    ] {
        assert!(msgs[4].contains(field), "{field} missing: {}", msgs[4]);
    }
    assert!(
        t.contains("RANDOM weights"),
        "the random-weights warning:\n{t}"
    );
}

#[test]
fn gst_launch_reports_a_bad_model_as_an_error() {
    let plugins = plugin_dir();
    let out = gst_command("gst-launch-1.0", plugins.path())
        .args(
            "videotestsrc num-buffers=1 ! inspro model=/nonexistent/model.toml ! fakesink"
                .split_whitespace(),
        )
        .output()
        .expect("gst-launch-1.0");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("ERROR: from element /GstPipeline:pipeline0/GstInsPro:inspro0: model config:"),
        "{t}"
    );
}

#[test]
fn python_reads_the_meta_by_name() {
    // Debian's python3 has PyGObject (python3-gi); a pyenv or venv python usually has not.
    let python = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import gi; gi.require_version('Gst', '1.0')"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        eprintln!(
            "skipped: no python3 with PyGObject (apt install python3-gi gir1.2-gstreamer-1.0)"
        );
        return;
    };
    assert!(have("gst-launch-1.0"));
    let plugins = plugin_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/read_meta.py");
    let out = gst_command(python, plugins.path())
        .arg(&script)
        .arg(format!(
            "videotestsrc num-buffers=3 ! video/x-raw,width=160,height=96 \
             ! inspro model={} score-threshold=0 ! fakesink name=sink",
            tiny_model().display()
        ))
        .output()
        .expect("python3");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(lines.len(), 3, "{t}");
    assert!(lines[0].starts_with("frame 0: 0 tracks"), "{t}");
    assert!(lines[2].starts_with("frame 2: 16 tracks"), "{t}");
    assert!(lines[2].contains("id 16 "), "{t}");
}

/// Without `weights` the element finds the shipped weights as the daemon does
/// (`$INSPRO_ENGINES/<model name>/model.safetensors`) and says nothing about random weights.
#[test]
fn gst_launch_finds_the_shipped_weights() {
    let plugins = plugin_dir();
    let engines = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engines");
    assert!(engines.join("inspro-tiny/model.safetensors").exists());
    let run = |engines_env: Option<&Path>| {
        let mut cmd = gst_command("gst-launch-1.0", plugins.path());
        if let Some(e) = engines_env {
            cmd.env("INSPRO_ENGINES", e);
        } else {
            cmd.env_remove("INSPRO_ENGINES");
        }
        cmd.args(
            format!(
                "videotestsrc num-buffers=2 ! video/x-raw,width=160,height=96 ! inspro model={} ! fakesink",
                tiny_model().display()
            )
            .split_whitespace(),
        )
        .output()
        .expect("gst-launch-1.0")
    };
    let found = run(Some(&engines));
    let t = text(&found);
    assert!(found.status.success(), "{t}");
    assert!(!t.contains("RANDOM weights"), "shipped weights found:\n{t}");
    // Pointed at a directory without them: random weights, said loudly.
    let empty = tempfile::tempdir().expect("temp dir");
    let random = run(Some(empty.path()));
    assert!(
        text(&random).contains("RANDOM weights"),
        "{}",
        text(&random)
    );
}
