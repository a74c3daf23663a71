//! Shared by the element tests: GStreamer set-up, the tiny model, synthetic frames, and a reader
//! of the `InsProTracksMeta` that uses nothing but its name (as any application would).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Once;

use gst_video::prelude::*;
use inspro::ytvis::synth::{generate_video, SynthOptions};

pub const META: &str = "InsProTracksMeta";

/// `configs/models/inspro-tiny.toml` of this repository.
pub fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("configs/models/inspro-tiny.toml")
}

/// GStreamer initialised once per test binary, the element registered from the rlib.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst::init");
        gstinspro::plugin_register_static().expect("register the inspro plugin");
    });
}

/// The weights shipped for the tiny model (engines/inspro-tiny/).
pub fn shipped_weights() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engines/inspro-tiny/model.safetensors")
        .display()
        .to_string()
}

/// The tiny model with random weights (the same for any checkout) and
/// `score-threshold=0`: every query slot's best class probability is >= 0, so every slot becomes
/// a track on its second frame and stays one: 16 tracks with ids 1..=16, deterministically. On
/// the candle engine (the element's default is ONNX Runtime), so that its boxes equal the
/// library's candle results bit for bit.
pub fn element() -> gst::Element {
    init();
    gst::ElementFactory::make("inspro")
        .property("model", tiny_model().display().to_string())
        .property("score-threshold", 0.0f32)
        .property_from_str("engine", "candle")
        .build()
        .expect("make inspro")
}

/// RGB frames (packed, `w * h * 3` bytes) of a synthetic video with moving shapes.
pub fn synth_frames(w: u32, h: u32, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let opts = SynthOptions {
        videos: 1,
        frames: n,
        width: w,
        height: h,
        seed,
        ..SynthOptions::default()
    };
    generate_video(&opts, 0).expect("synthetic video").frames
}

/// A buffer of `format` made from a packed RGB frame through GStreamer's own converter, laid out
/// with GStreamer's default strides (RGB rows padded to 4 bytes, I420 planes likewise).
pub fn buffer_from_rgb(rgb: &[u8], w: u32, h: u32, format: gst_video::VideoFormat) -> gst::Buffer {
    let in_info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w, h)
        .build()
        .expect("rgb info");
    let mut input = gst::Buffer::with_size(in_info.size()).expect("alloc");
    {
        let buf = input.get_mut().expect("fresh buffer");
        let mut frame =
            gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &in_info).expect("map");
        let stride = frame.plane_stride()[0] as usize;
        let plane = frame.plane_data_mut(0).expect("plane 0");
        for (y, row) in rgb.chunks_exact(w as usize * 3).enumerate() {
            plane[y * stride..y * stride + row.len()].copy_from_slice(row);
        }
    }
    if format == gst_video::VideoFormat::Rgb {
        return input;
    }
    let out_info = gst_video::VideoInfo::builder(format, w, h)
        .build()
        .expect("out info");
    let conv = gst_video::VideoConverter::new(&in_info, &out_info, None).expect("converter");
    let in_frame = gst_video::VideoFrame::from_buffer_readable(input, &in_info).expect("map in");
    let out = gst::Buffer::with_size(out_info.size()).expect("alloc");
    let mut out_frame =
        gst_video::VideoFrame::from_buffer_writable(out, &out_info).expect("map out");
    conv.frame(&in_frame, &mut out_frame);
    out_frame.into_buffer()
}

pub fn caps(format: gst_video::VideoFormat, w: u32, h: u32) -> gst::Caps {
    gst_video::VideoInfo::builder(format, w, h)
        .fps(gst::Fraction::new(15, 1))
        .build()
        .expect("info")
        .to_caps()
        .expect("caps")
}

/// The tracks of one frame as read back from the meta (or a message) by field name.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracks {
    pub frame: u64,
    pub key_frame: bool,
    pub width: i32,
    pub height: i32,
    pub ids: Vec<u64>,
    pub labels: Vec<String>,
    pub scores: Vec<f32>,
    pub boxes: Vec<f32>,
    pub mask_rects: Vec<i32>,
    pub masks: Vec<String>,
    pub ended: Vec<u64>,
}

fn array<T: for<'a> gst::glib::value::FromValue<'a> + 'static>(
    s: &gst::StructureRef,
    f: &str,
) -> Vec<T> {
    let a = s
        .get::<gst::ArrayRef>(f)
        .unwrap_or_else(|e| panic!("field {f}: {e}"));
    a.iter()
        .map(|v| v.get::<T>().unwrap_or_else(|e| panic!("field {f}: {e}")))
        .collect()
}

impl Tracks {
    pub fn from_structure(s: &gst::StructureRef) -> Tracks {
        Tracks {
            frame: s.get("frame").expect("frame"),
            key_frame: s.get("key-frame").expect("key-frame"),
            width: s.get("width").expect("width"),
            height: s.get("height").expect("height"),
            ids: array(s, "ids"),
            labels: array(s, "labels"),
            scores: array(s, "scores"),
            boxes: array(s, "boxes"),
            mask_rects: array(s, "mask-rects"),
            masks: array(s, "masks"),
            ended: array(s, "ended-ids"),
        }
    }

    pub fn from_buffer(buf: &gst::BufferRef) -> Tracks {
        let meta =
            gst::meta::CustomMeta::from_buffer(buf, META).expect("InsProTracksMeta on buffer");
        Tracks::from_structure(meta.structure())
    }
}

/// A directory holding only a copy of the built `libgstinspro.so`, for `GST_PLUGIN_PATH`.
/// `cargo test` builds the cdylib with the rlib the tests link, next to the test binary
/// (`target/<profile>/deps/`) and in `target/<profile>/`; the newest copy wins, so the tests load
/// exactly the build under test and nothing else.
pub fn plugin_dir() -> tempfile::TempDir {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    let candidates = [
        deps.join("libgstinspro.so"),
        deps.join("../libgstinspro.so"),
    ];
    let so = candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| {
            panic!(
                "libgstinspro.so not found next to {}; run `cargo build -p gst-inspro`",
                exe.display()
            )
        });
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(&so, dir.path().join("libgstinspro.so")).expect("copy the plugin");
    dir
}

/// A command with `GST_PLUGIN_PATH` at `plugins` and a fresh `GST_REGISTRY` inside it, so no
/// user's registry (or its blacklist) is read or written.
pub fn gst_command(program: &str, plugins: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env("GST_PLUGIN_PATH", plugins)
        .env("GST_REGISTRY", plugins.join("registry.bin"))
        .env_remove("GST_PLUGIN_PATH_1_0");
    cmd
}
