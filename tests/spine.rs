//! The spine every front-end stands on: the one engine factory, the shared stream loop and the
//! one renderer, used the way README's "Use from Rust" shows.

use inspro::frame::FrameRef;
use inspro::render;
use inspro::runtime::{build_engine, EngineKind, EngineSpec, OrtOptions, Provider};
use inspro::tracking::{StreamProcessor, TrackerConfig};
use inspro::ytvis::{generate_video, SynthOptions};

const TINY: &str = "configs/models/inspro-tiny.toml";

fn clip() -> inspro::ytvis::SynthVideo {
    let opts = SynthOptions {
        width: 160,
        height: 96,
        frames: 3,
        seed: 11,
        ..SynthOptions::default()
    };
    generate_video(&opts, 0).expect("synthetic clip")
}

/// README's example, for both engines: the shipped weights found by name, a stream of frames,
/// tracks out; both engines give the same boxes on the same frames.
#[test]
fn the_readme_example_runs_on_both_engines_alike() {
    let video = clip();
    let (w, h) = (video.width as usize, video.height as usize);
    let mut boxes = Vec::new();
    for kind in [EngineKind::Candle, EngineKind::Onnxruntime] {
        let built = build_engine(&EngineSpec {
            kind,
            model: Some(TINY.into()),
            default_weights: true,
            ..EngineSpec::default()
        })
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(!built.random_weights, "{}", built.description);
        let mut stream = StreamProcessor::new(built.engine.clone(), TrackerConfig::default());
        let mut last = None;
        for rgb in &video.frames {
            let p = stream.process(&FrameRef::packed(w, h, rgb)).expect("step");
            assert_eq!(p.output.geometry.orig_width, w);
            last = Some(p.output);
        }
        let out = last.expect("frames");
        assert_eq!(stream.frames(), 3);
        boxes.push(out.boxes_xyxy.clone());
    }
    let worst = boxes[0]
        .iter()
        .zip(&boxes[1])
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max);
    assert!(
        worst < 0.5,
        "candle and ONNX Runtime boxes differ by {worst} px"
    );
}

/// A setting the factory cannot honour names the setting.
#[test]
fn factory_errors_name_the_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (EngineSpec::default(), "model"),
        (
            EngineSpec {
                model: Some(dir.path().join("missing.toml")),
                ..EngineSpec::default()
            },
            "model",
        ),
        (
            EngineSpec {
                model: Some(TINY.into()),
                weights: Some(dir.path().join("missing.safetensors")),
                ..EngineSpec::default()
            },
            "weights",
        ),
        (
            EngineSpec {
                model: Some(TINY.into()),
                ort: OrtOptions {
                    provider: Provider::Cuda,
                    ..OrtOptions::default()
                },
                ..EngineSpec::default()
            },
            "provider",
        ),
        (
            EngineSpec {
                kind: EngineKind::Onnxruntime,
                engine_dir: Some(dir.path().to_path_buf()),
                ..EngineSpec::default()
            },
            "engine_dir",
        ),
    ];
    for (spec, field) in cases {
        let err = build_engine(&spec).err().expect("an error");
        assert_eq!(err.field, field, "{err}");
    }
}

/// The one renderer draws a track in the same colour on RGB and on I420 (its colour by id).
#[test]
fn one_track_one_colour_on_rgb_and_yuv() {
    let (w, h) = (32, 32);
    let mark = render::Mark {
        id: 7,
        label: "box".into(),
        box_xyxy: [4.0, 10.0, 28.0, 28.0],
        mask_rect: [0, 0, 0, 0],
        mask: Vec::new(),
    };
    let rgb = render::draw_rgb(vec![0; w * h * 3], w, h, std::slice::from_ref(&mark));
    let edge = &rgb[(20 * w + 4) * 3..(20 * w + 4) * 3 + 3];
    assert_eq!(edge, render::colour(7));
    let (mut y, mut u, mut v) = (
        vec![16u8; w * h],
        vec![128u8; w * h / 4],
        vec![128u8; w * h / 4],
    );
    let yuv = render::Yuv::new(render::Matrix::Bt601, false);
    let mut canvas = render::Canvas {
        layout: render::Layout::Planar420 { u: 1, v: 2 },
        width: w,
        height: h,
        data: [&mut y, &mut u, &mut v],
        strides: [w, w / 2, w / 2],
        yuv,
    };
    render::draw(&mut canvas, std::slice::from_ref(&mark));
    let back = yuv.decode(y[20 * w + 4], u[10 * (w / 2) + 2], v[10 * (w / 2) + 2]);
    for c in 0..3 {
        let d = (i32::from(back[c]) - i32::from(render::colour(7)[c])).abs();
        assert!(d <= 3, "{back:?} vs {:?}", render::colour(7));
    }
}

/// An exported engine carries its own config, but a model config the caller names must still
/// read; missing weights found while exporting are the weights' fault.
#[test]
fn exported_engines_still_check_the_named_model_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = EngineSpec {
        kind: EngineKind::Onnxruntime,
        model: Some(TINY.into()),
        ..EngineSpec::default()
    };
    let (graphs, _temp, random) = inspro::runtime::factory::prepare_graphs(&spec).expect("export");
    assert!(random);
    let typo = EngineSpec {
        engine_dir: Some(graphs.clone()),
        model: Some(dir.path().join("typo.toml")),
        ..spec.clone()
    };
    assert_eq!(build_engine(&typo).err().expect("an error").field, "model");
    let fine = EngineSpec {
        engine_dir: Some(graphs),
        ..spec.clone()
    };
    assert!(build_engine(&fine).is_ok());
    // Safetensors without the model's keys: the export names the weights.
    let empty = dir.path().join("empty.safetensors");
    let tensors: std::collections::HashMap<String, candle_core::Tensor> = [(
        "unrelated".to_string(),
        candle_core::Tensor::zeros(2, candle_core::DType::F32, &candle_core::Device::Cpu)
            .expect("tensor"),
    )]
    .into_iter()
    .collect();
    candle_core::safetensors::save(&tensors, &empty).expect("save");
    let wrong = EngineSpec {
        weights: Some(empty),
        ..spec
    };
    assert_eq!(
        build_engine(&wrong).err().expect("an error").field,
        "weights"
    );
}
