//! Several streams at once on one ONNX Runtime engine: each stream's frames give exactly what
//! they give alone, whether the streams have a session each or take turns on fewer sessions.

use std::sync::Arc;

use inspro::frame::FrameRef;
use inspro::runtime::onnxruntime::available_cores;
use inspro::runtime::{build_engine, BuiltEngine, Engine, EngineKind, EngineSpec, OrtOptions};
use inspro::ytvis::{generate_video, SynthOptions};

const TINY: &str = "configs/models/inspro-tiny.toml";
const FRAMES: usize = 5;

fn clips(n: usize) -> Vec<(usize, usize, Vec<Vec<u8>>)> {
    // Different sizes too: each stream has its own geometry.
    let sizes = [(160, 96), (128, 128), (192, 108), (96, 160)];
    (0..n)
        .map(|i| {
            let (w, h) = sizes[i % sizes.len()];
            let opts = SynthOptions {
                width: w as u32,
                height: h as u32,
                frames: FRAMES,
                seed: 40 + i as u64,
                ..SynthOptions::default()
            };
            let v = generate_video(&opts, 0).expect("synthetic clip");
            (w, h, v.frames)
        })
        .collect()
}

/// The engine (and the temporary export it runs, which lives as long as the `BuiltEngine`).
fn engine(sessions: usize) -> BuiltEngine {
    build_engine(&EngineSpec {
        kind: EngineKind::Onnxruntime,
        model: Some(TINY.into()),
        default_weights: true,
        // Lite: key and non-key graphs both run.
        key_frame_interval: Some(2),
        ort: OrtOptions {
            threads: Some(1),
            ..OrtOptions::default()
        }
        .share_cores(4, available_cores(), Some(sessions)),
        ..EngineSpec::default()
    })
    .expect("engine")
}

/// One stream's outputs: per frame, the boxes and the class scores.
fn run_stream(engine: &dyn Engine, (w, h, frames): &(usize, usize, Vec<Vec<u8>>)) -> Vec<Vec<f32>> {
    let mut state = engine.init_state(*w, *h).expect("state");
    frames
        .iter()
        .map(|rgb| {
            let out = engine
                .step(&FrameRef::packed(*w, *h, rgb), &mut state)
                .expect("step");
            let mut v: Vec<f32> = out.boxes_xyxy.iter().flatten().copied().collect();
            v.extend(out.class_probs.iter().flatten().copied());
            v
        })
        .collect()
}

#[test]
fn concurrent_streams_match_each_stream_alone() {
    let streams = clips(4);
    let alone_engine = engine(1);
    let alone: Vec<_> = streams
        .iter()
        .map(|s| run_stream(alone_engine.engine.as_ref(), s))
        .collect();
    // A session per stream, and two sessions taken in turn by four streams.
    for sessions in [4, 2] {
        let built = engine(sessions);
        assert!(
            built.description.contains("onnxruntime"),
            "{}",
            built.description
        );
        let e: Arc<dyn Engine> = built.engine.clone();
        let got: Vec<Vec<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = streams
                .iter()
                .map(|s| {
                    let e = e.clone();
                    scope.spawn(move || run_stream(e.as_ref(), s))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("stream thread"))
                .collect()
        });
        for (i, (a, b)) in alone.iter().zip(&got).enumerate() {
            assert_eq!(a.len(), FRAMES);
            for (f, (x, y)) in a.iter().zip(b).enumerate() {
                let worst = x
                    .iter()
                    .zip(y)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-3,
                    "{sessions} sessions: stream {i} frame {f} differs from the stream alone by {worst}"
                );
            }
        }
    }
}

#[test]
fn the_cpu_split_gives_each_camera_a_session() {
    let o = |streams, cores, sessions| {
        let o = OrtOptions::default().share_cores(streams, cores, sessions);
        (o.sessions, o.threads)
    };
    // One camera: one session on every core.
    assert_eq!(o(1, 2, None), (1, Some(2)));
    // A session per camera, the cores divided, at least a thread each.
    assert_eq!(o(2, 2, None), (2, Some(1)));
    assert_eq!(o(4, 2, None), (4, Some(1)));
    assert_eq!(o(2, 8, None), (2, Some(4)));
    // At most four sessions per core; a configured count wins.
    assert_eq!(o(20, 2, None), (8, Some(1)));
    assert_eq!(o(4, 2, Some(2)), (2, Some(1)));
    // Threads set by the user stay.
    let set = OrtOptions {
        threads: Some(3),
        ..OrtOptions::default()
    }
    .share_cores(2, 2, None);
    assert_eq!((set.sessions, set.threads), (2, Some(3)));
}
