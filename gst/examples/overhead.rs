//! What the element costs around the engine, per frame: the library's `StreamProcessor` on packed
//! RGB frames against the element (under `gst_check::Harness`) on the same frames as RGB and
//! I420, with and without `draw`; and the element's own `stats` (engine time vs. the rest:
//! mapping, I420 -> RGB, mask crops to COCO RLE, the GstStructure, the overlay), which does not
//! depend on what else the machine is doing.
//!
//!     cargo run --release -p gst-inspro --example overhead -- [frames] [WxH]
//!
//! Tiny model, random weights, `score-threshold=0` (16 tracks on every frame: the most meta work).

use std::sync::Arc;
use std::time::Instant;

use gst::prelude::*;
use gst_check::Harness;
use gst_video::prelude::*;
use gst_video::VideoFormat;
use inspro::model::{FrameRef, InsPro, ModelConfig};
use inspro::runtime::CandleEngine;
use inspro::tracking::{StreamProcessor, TrackerConfig};
use inspro::ytvis::synth::{generate_video, SynthOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn buffer(rgb: &[u8], w: u32, h: u32, format: VideoFormat) -> gst::Buffer {
    let rgb_info = gst_video::VideoInfo::builder(VideoFormat::Rgb, w, h)
        .build()
        .unwrap();
    let mut input = gst::Buffer::with_size(rgb_info.size()).unwrap();
    {
        let mut f =
            gst_video::VideoFrameRef::from_buffer_ref_writable(input.get_mut().unwrap(), &rgb_info)
                .unwrap();
        let stride = f.plane_stride()[0] as usize;
        let p = f.plane_data_mut(0).unwrap();
        for (y, row) in rgb.chunks_exact(w as usize * 3).enumerate() {
            p[y * stride..y * stride + row.len()].copy_from_slice(row);
        }
    }
    if format == VideoFormat::Rgb {
        return input;
    }
    let info = gst_video::VideoInfo::builder(format, w, h).build().unwrap();
    let conv = gst_video::VideoConverter::new(&rgb_info, &info, None).unwrap();
    let src = gst_video::VideoFrame::from_buffer_readable(input, &rgb_info).unwrap();
    let mut dst = gst_video::VideoFrame::from_buffer_writable(
        gst::Buffer::with_size(info.size()).unwrap(),
        &info,
    )
    .unwrap();
    conv.frame(&src, &mut dst);
    dst.into_buffer()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let (w, h) = args
        .get(2)
        .and_then(|s| s.split_once('x'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((320u32, 192u32));
    gst::init().unwrap();
    gstinspro::plugin_register_static().unwrap();
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/models/inspro-tiny.toml"
    );
    let opts = SynthOptions {
        videos: 1,
        frames: n,
        width: w,
        height: h,
        ..SynthOptions::default()
    };
    let frames = generate_video(&opts, 0).unwrap().frames;
    let warm = 3.min(n / 2);

    let cfg = ModelConfig::from_file(model).unwrap();
    let net = InsPro::random(&cfg, 0, &candle_core::Device::Cpu)
        .unwrap()
        .0;
    let tracker = TrackerConfig {
        birth_score: 0.0,
        keep_score: 0.0,
        ..TrackerConfig::default()
    };
    let mut p = StreamProcessor::new(Arc::new(CandleEngine::new(Arc::new(net))), tracker);
    let lib: Vec<f64> = frames
        .iter()
        .map(|f| {
            let t = Instant::now();
            p.process(&FrameRef::packed(w as usize, h as usize, f))
                .unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .skip(warm)
        .collect();
    let lib_ms = median(lib);
    println!("{w}x{h}, {n} frames, medians per frame");
    println!("library StreamProcessor (packed RGB): {lib_ms:.2} ms");

    for (format, draw) in [
        (VideoFormat::Rgb, false),
        (VideoFormat::I420, false),
        (VideoFormat::Rgb, true),
        (VideoFormat::I420, true),
    ] {
        let el = gst::ElementFactory::make("inspro")
            .property("model", model)
            .property("score-threshold", 0.0f32)
            .property("draw", draw)
            .build()
            .unwrap();
        let mut hs = Harness::with_element(&el, Some("sink"), Some("src"));
        let caps = gst_video::VideoInfo::builder(format, w, h)
            .fps(gst::Fraction::new(15, 1))
            .build()
            .unwrap()
            .to_caps()
            .unwrap();
        hs.set_src_caps(caps);
        let bufs: Vec<_> = frames.iter().map(|f| buffer(f, w, h, format)).collect();
        let times: Vec<f64> = bufs
            .into_iter()
            .map(|b| {
                let t = Instant::now();
                hs.push(b).unwrap();
                hs.pull().unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .skip(warm)
            .collect();
        let ms = median(times);
        // The element's own accounting: engine time and the rest, means since start.
        let stats = el.property::<gst::Structure>("stats");
        let engine: f64 = stats.get("engine-ms").unwrap();
        let own: f64 = stats.get("element-ms").unwrap();
        println!(
            "element {:<4} draw={:<5}: {ms:.2} ms per push/pull; stats: engine {engine:.2} ms + element {own:.3} ms",
            format.to_str(),
            draw,
        );
        el.set_state(gst::State::Null).ok();
    }
}
