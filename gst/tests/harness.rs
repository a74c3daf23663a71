//! The element under `gst_check::Harness`: frames of a synthetic clip in, the same frames out with
//! an `InsProTracksMeta` each. All tests use the tiny model with random weights and
//! `score-threshold=0` (see `common::element`), so the 16 query slots become tracks 1..=16 on the
//! second frame, deterministically.

mod common;

use common::{buffer_from_rgb, caps, element, shipped_weights, synth_frames, tiny_model, Tracks};
use gst::prelude::*;
use gst_check::Harness;
use gst_video::VideoFormat;
use inspro::model::{FrameRef, InsPro, ModelConfig};
use inspro::runtime::CandleEngine;
use inspro::tracking::{StreamProcessor, TrackEvent, TrackerConfig};
use inspro::ytvis::Rle;
use std::sync::Arc;

const W: u32 = 320;
const H: u32 = 192;
const FRAME_NS: u64 = 66_666_667;

fn harness(format: VideoFormat, w: u32, h: u32) -> Harness {
    let mut h_ = Harness::with_element(&element(), Some("sink"), Some("src"));
    h_.set_src_caps(caps(format, w, h));
    h_
}

/// Push frame `i` stamped as frame `i` of a 15 fps stream; pull it back.
fn push_pull(h: &mut Harness, mut buf: gst::Buffer, i: u64) -> gst::Buffer {
    {
        let b = buf.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(i * FRAME_NS));
        b.set_dts(gst::ClockTime::from_nseconds(i * FRAME_NS));
        b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
        b.set_offset(i);
    }
    h.push(buf).expect("push");
    h.pull().expect("pull")
}

fn bytes(buf: &gst::BufferRef) -> Vec<u8> {
    buf.map_readable().expect("map").to_vec()
}

fn all_ids(from: u64) -> Vec<u64> {
    (from..from + 16).collect()
}

#[test]
fn meta_on_every_buffer_ids_stable_pts_and_pixels_untouched() {
    let mut h = harness(VideoFormat::Rgb, W, H);
    for (i, rgb) in synth_frames(W, H, 6, 1).iter().enumerate() {
        let input = buffer_from_rgb(rgb, W, H, VideoFormat::Rgb);
        let sent = bytes(&input);
        let out = push_pull(&mut h, input, i as u64);
        let i = i as u64;
        assert_eq!(out.pts(), Some(gst::ClockTime::from_nseconds(i * FRAME_NS)));
        assert_eq!(out.dts(), Some(gst::ClockTime::from_nseconds(i * FRAME_NS)));
        assert_eq!(
            out.duration(),
            Some(gst::ClockTime::from_nseconds(FRAME_NS))
        );
        assert_eq!(out.offset(), i);
        assert_eq!(bytes(&out), sent, "draw=false must not touch the pixels");
        let t = Tracks::from_buffer(&out);
        assert_eq!((t.frame, t.width, t.height), (i, W as i32, H as i32));
        // min_frames = 2: candidates on frame 0, tracks from frame 1 on, same ids ever after.
        let want = if i == 0 { vec![] } else { all_ids(1) };
        assert_eq!(t.ids, want, "frame {i}");
        let n = t.ids.len();
        assert_eq!((t.labels.len(), t.scores.len(), t.masks.len()), (n, n, n));
        assert_eq!((t.boxes.len(), t.mask_rects.len()), (4 * n, 4 * n));
        assert!(t.ended.is_empty());
        for k in 0..n {
            let b = &t.boxes[4 * k..4 * k + 4];
            assert!(b[0] >= 0.0 && b[2] <= W as f32 && b[0] <= b[2], "{b:?}");
            assert!(b[1] >= 0.0 && b[3] <= H as f32 && b[1] <= b[3], "{b:?}");
            let r = &t.mask_rects[4 * k..4 * k + 4];
            assert!(r[0] + r[2] <= W as i32 && r[1] + r[3] <= H as i32, "{r:?}");
            let rle = Rle::from_compressed(&t.masks[k], r[3] as u32, r[2] as u32)
                .expect("masks are COCO compressed RLE of the mask rect");
            assert_eq!(rle.total(), (r[2] * r[3]) as u64);
            assert!(["circle", "square", "triangle", "star", "ring", "cross"]
                .contains(&t.labels[k].as_str()));
        }
    }
}

#[test]
fn key_frame_interval_overrides_the_model_config_and_stats_count_frames() {
    let frames = synth_frames(W, H, 7, 9);
    // inspro-tiny.toml says 0 (every frame is a key frame); -1 keeps it, 3 and 5 override it.
    for (k, want) in [
        (-1, [true; 7]),
        (3, [true, false, false, true, false, false, true]),
        (5, [true, false, false, false, false, true, false]),
    ] {
        let el = element();
        el.set_property("key-frame-interval", k);
        let mut h = Harness::with_element(&el, Some("sink"), Some("src"));
        h.set_src_caps(caps(VideoFormat::Rgb, W, H));
        let got: Vec<bool> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let out = push_pull(&mut h, buffer_from_rgb(f, W, H, VideoFormat::Rgb), i as u64);
                Tracks::from_buffer(&out).key_frame
            })
            .collect();
        assert_eq!(got, want, "key-frame-interval={k}");
        let stats = el.property::<gst::Structure>("stats");
        assert_eq!(stats.get::<u64>("frames").unwrap(), 7);
        assert!(stats.get::<f64>("engine-ms").unwrap() > 0.0);
        assert!(stats.get::<f64>("element-ms").unwrap() > 0.0);
    }
}

/// The meta's boxes, xyxy.
fn boxes(t: &Tracks) -> Vec<[f32; 4]> {
    t.boxes
        .chunks_exact(4)
        .map(|b| [b[0], b[1], b[2], b[3]])
        .collect()
}

/// The library called directly on packed RGB frames, with NMS at birth at `birth_nms_iou`; what
/// the element must report.
fn library_tracks(
    frames: &[Vec<u8>],
    w: u32,
    h: u32,
    birth_nms_iou: f32,
) -> Vec<(Vec<u64>, Vec<[f32; 4]>)> {
    let cfg = ModelConfig::from_file(tiny_model()).expect("tiny config");
    let net = InsPro::random(&cfg, 0, &candle_core::Device::Cpu)
        .expect("random net")
        .0;
    let tracker = TrackerConfig {
        birth_score: 0.0,
        keep_score: 0.0,
        ..TrackerConfig::default()
    }
    .with_birth_nms_iou(birth_nms_iou);
    let mut p = StreamProcessor::new(Arc::new(CandleEngine::new(Arc::new(net))), tracker);
    frames
        .iter()
        .map(|rgb| {
            let out = p
                .process(&FrameRef::packed(w as usize, h as usize, rgb))
                .expect("process");
            let seen: Vec<_> = out
                .events
                .iter()
                .filter_map(|e| match e {
                    TrackEvent::New(t) | TrackEvent::Update(t) => {
                        let b = t.box_xyxy;
                        let (w, h) = (w as f32, h as f32);
                        let clipped = [
                            b[0].clamp(0.0, w),
                            b[1].clamp(0.0, h),
                            b[2].clamp(0.0, w),
                            b[3].clamp(0.0, h),
                        ];
                        Some((t.id, clipped))
                    }
                    TrackEvent::End(..) => None,
                })
                .collect();
            (
                seen.iter().map(|s| s.0).collect(),
                seen.iter().map(|s| s.1).collect(),
            )
        })
        .collect()
}

#[test]
fn packed_formats_with_padded_rows_equal_the_library_on_packed_rgb() {
    // 321 px: RGB rows are padded to 964 bytes, so reading at 3 * width would shear the image.
    let (w, h) = (321, 181);
    let frames = synth_frames(w, h, 3, 2);
    let expected = library_tracks(&frames, w, h, 1.0);
    for format in [
        VideoFormat::Rgb,
        VideoFormat::Bgrx,
        VideoFormat::Abgr,
        VideoFormat::Bgr,
    ] {
        let mut hs = harness(format, w, h);
        for (i, rgb) in frames.iter().enumerate() {
            let buf = buffer_from_rgb(rgb, w, h, format);
            let out = push_pull(&mut hs, buf, i as u64);
            let t = Tracks::from_buffer(&out);
            assert_eq!((t.width, t.height), (w as i32, h as i32));
            assert_eq!(
                (t.ids.clone(), boxes(&t)),
                expected[i],
                "{format:?} frame {i}"
            );
        }
    }
}

#[test]
fn birth_nms_iou_gives_the_librarys_tracks() {
    let frames = synth_frames(W, H, 4, 3);
    let expected = library_tracks(&frames, W, H, 0.1);
    // The random weights put slots on top of each other: NMS at birth holds some back on the
    // frame of the first births (the second: min_frames 2); they are born as they move apart.
    let first = &expected[1].0;
    assert!(
        !first.is_empty() && first.len() < 16,
        "tracks with NMS: {first:?}"
    );
    let mut hs = harness(VideoFormat::Rgb, W, H);
    let el = hs.element().expect("element");
    el.set_property("birth-nms-iou", 0.1f32);
    assert_eq!(el.property::<f32>("birth-nms-iou"), 0.1);
    for (i, rgb) in frames.iter().enumerate() {
        let out = push_pull(
            &mut hs,
            buffer_from_rgb(rgb, W, H, VideoFormat::Rgb),
            i as u64,
        );
        let t = Tracks::from_buffer(&out);
        assert_eq!((t.ids.clone(), boxes(&t)), expected[i], "frame {i}");
    }
}

#[test]
fn yuv_formats_of_any_size_map_results_to_the_input_size() {
    for (format, w, h) in [
        (VideoFormat::I420, 321, 181),
        (VideoFormat::I420, 640, 360),
        (VideoFormat::Nv12, 250, 142),
        (VideoFormat::Yv12, 160, 96),
    ] {
        let mut hs = harness(format, w, h);
        for (i, rgb) in synth_frames(w, h, 3, 3).iter().enumerate() {
            let out = push_pull(&mut hs, buffer_from_rgb(rgb, w, h, format), i as u64);
            let t = Tracks::from_buffer(&out);
            assert_eq!((t.width, t.height), (w as i32, h as i32), "{format:?}");
            assert_eq!(t.ids, if i == 0 { vec![] } else { all_ids(1) });
            for b in t.boxes.chunks_exact(4) {
                assert!(
                    b[2] <= w as f32 && b[3] <= h as f32,
                    "{format:?} {w}x{h}: {b:?}"
                );
            }
        }
    }
}

#[test]
fn empty_gap_buffers_pass_through_without_a_frame() {
    let mut h = harness(VideoFormat::I420, W, H);
    let frames = synth_frames(W, H, 2, 12);
    push_pull(
        &mut h,
        buffer_from_rgb(&frames[0], W, H, VideoFormat::I420),
        0,
    );
    let mut gap = gst::Buffer::new();
    gap.make_mut().set_flags(gst::BufferFlags::GAP);
    let out = push_pull(&mut h, gap, 1);
    assert!(out.flags().contains(gst::BufferFlags::GAP));
    assert!(gst::meta::CustomMeta::from_buffer(&out, common::META).is_err());
    let t = Tracks::from_buffer(&push_pull(
        &mut h,
        buffer_from_rgb(&frames[1], W, H, VideoFormat::I420),
        2,
    ));
    assert_eq!((t.frame, t.ids.len()), (1, 16), "the gap is not a frame");
}

#[test]
fn flush_resets_the_stream() {
    let mut h = harness(VideoFormat::Rgb, W, H);
    let frames = synth_frames(W, H, 6, 5);
    let mut i = 0u64;
    let mut next = |h: &mut Harness| {
        let out = push_pull(
            h,
            buffer_from_rgb(&frames[i as usize], W, H, VideoFormat::Rgb),
            i,
        );
        i += 1;
        Tracks::from_buffer(&out)
    };
    next(&mut h);
    next(&mut h);
    assert_eq!(next(&mut h).ids, all_ids(1));
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    let t = next(&mut h);
    assert_eq!(t.frame, 0, "fresh stream state after flush");
    assert!(t.ids.is_empty());
    assert_eq!(t.ended, all_ids(1), "the open tracks end at the flush");
    let t = next(&mut h);
    assert_eq!(
        t.ids,
        all_ids(17),
        "new tracks get new ids (ids keep counting)"
    );
    assert!(t.ended.is_empty());
}

#[test]
fn stream_start_and_caps_changes_reset_the_stream() {
    let mut h = harness(VideoFormat::Rgb, W, H);
    let frames = synth_frames(W, H, 3, 6);
    let push = |h: &mut Harness, rgb: &[u8], format, i| {
        Tracks::from_buffer(&push_pull(h, buffer_from_rgb(rgb, W, H, format), i))
    };
    push(&mut h, &frames[0], VideoFormat::Rgb, 0);
    assert_eq!(
        push(&mut h, &frames[1], VideoFormat::Rgb, 1).ids,
        all_ids(1)
    );

    assert!(h.push_event(gst::event::StreamStart::new("second")));
    let t = push(&mut h, &frames[2], VideoFormat::Rgb, 2);
    assert_eq!((t.frame, t.ended.clone()), (0, all_ids(1)), "stream-start");
    assert_eq!(
        push(&mut h, &frames[0], VideoFormat::Rgb, 3).ids,
        all_ids(17)
    );

    // Same size, another format: still a caps change, still a reset.
    h.set_src_caps(caps(VideoFormat::Bgrx, W, H));
    let t = push(&mut h, &frames[1], VideoFormat::Bgrx, 4);
    assert_eq!((t.frame, t.ended.clone()), (0, all_ids(17)), "caps change");

    // Unchanged caps again: no reset.
    h.set_src_caps(caps(VideoFormat::Bgrx, W, H));
    let t = push(&mut h, &frames[2], VideoFormat::Bgrx, 5);
    assert_eq!((t.frame, t.ids.clone()), (1, all_ids(33)));
}

#[test]
fn property_changes_while_playing_take_effect() {
    let mut h = harness(VideoFormat::Rgb, W, H);
    let el = h.element().expect("element");
    assert_eq!(el.current_state(), gst::State::Playing);
    let frames = synth_frames(W, H, 8, 7);
    let mut i = 0usize;
    let mut step = |h: &mut Harness| {
        let input = buffer_from_rgb(&frames[i], W, H, VideoFormat::Rgb);
        let sent = bytes(&input);
        let out = push_pull(h, input, i as u64);
        i += 1;
        (Tracks::from_buffer(&out), bytes(&out) != sent)
    };
    step(&mut h);
    assert_eq!(step(&mut h).0.ids, all_ids(1));

    // Random weights give class probabilities far below 1: at 1.0 every track drops out of the
    // frame's list (Lost) at once ...
    el.set_property("score-threshold", 1.0f32);
    let (t, _) = step(&mut h);
    assert!(
        t.ids.is_empty(),
        "score-threshold=1 while playing: {:?}",
        t.ids
    );
    assert!(t.ended.is_empty(), "lost, not ended yet");
    // ... and back at 0 they are seen again: under their ids where the box is still theirs
    // (IoU >= reuse_iou), else the old track ends and the slot's newcomer is a candidate again.
    el.set_property("score-threshold", 0.0f32);
    let (t, _) = step(&mut h);
    assert!(!t.ids.is_empty());
    let mut back: Vec<u64> = t.ids.iter().chain(&t.ended).copied().collect();
    back.sort_unstable();
    assert_eq!(
        back,
        all_ids(1),
        "every lost track is either seen again or ended"
    );

    // draw while playing: the next frame is drawn on, the one after is not.
    el.set_property("draw", true);
    let (t, changed) = step(&mut h);
    assert!(changed, "draw=true must mark the frame");
    assert!(!t.ids.is_empty());
    el.set_property("draw", false);
    assert!(!step(&mut h).1);
}

#[test]
fn draw_marks_yuv_and_rgb_frames() {
    for format in [
        VideoFormat::I420,
        VideoFormat::Nv12,
        VideoFormat::Rgb,
        VideoFormat::Bgra,
    ] {
        let el = element();
        el.set_property("draw", true);
        let mut h = Harness::with_element(&el, Some("sink"), Some("src"));
        h.set_src_caps(caps(format, W, H));
        let frames = synth_frames(W, H, 2, 8);
        let first = push_pull(&mut h, buffer_from_rgb(&frames[0], W, H, format), 0);
        let input = buffer_from_rgb(&frames[1], W, H, format);
        let sent = bytes(&input);
        let out = push_pull(&mut h, input, 1);
        assert!(Tracks::from_buffer(&first).ids.is_empty());
        let got = bytes(&out);
        assert_eq!(got.len(), sent.len());
        let changed = got.iter().zip(&sent).filter(|(a, b)| a != b).count();
        assert!(changed > 1000, "{format:?}: only {changed} bytes drawn");
        assert_eq!(Tracks::from_buffer(&out).ids, all_ids(1));
    }
}

/// Run `launch` to the end and return the bus messages (errors end it early).
fn run_pipeline(launch: &str) -> Vec<gst::Message> {
    common::init();
    let pipeline = gst::parse::launch(launch).expect("parse");
    let bus = pipeline.bus().expect("bus");
    let _ = pipeline.set_state(gst::State::Playing);
    let mut msgs = Vec::new();
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(60)) {
        let done = matches!(
            msg.view(),
            gst::MessageView::Eos(_) | gst::MessageView::Error(_)
        );
        msgs.push(msg);
        if done {
            break;
        }
    }
    pipeline.set_state(gst::State::Null).expect("to NULL");
    msgs
}

fn errors(msgs: &[gst::Message]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn start_failures_are_error_messages() {
    let model = tiny_model().display().to_string();
    let src = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48";
    let cases = [
        (
            format!("{src} ! inspro ! fakesink"),
            "property `model` is not set",
        ),
        (
            format!("{src} ! inspro model=/nonexistent.toml ! fakesink"),
            "model config",
        ),
        (
            format!("{src} ! inspro model={model} weights=/nonexistent.safetensors ! fakesink"),
            "weights",
        ),
        (
            format!(
                "{src} ! inspro model={model} engine=candle execution-provider=cuda ! fakesink"
            ),
            "candle runs on the CPU only",
        ),
    ];
    for (launch, want) in cases {
        let errs = errors(&run_pipeline(&launch));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{launch}: want an error with `{want}`, got {errs:?}"
        );
    }
}

#[test]
fn messages_and_the_random_weights_warning_reach_the_bus() {
    let launch = format!(
        "videotestsrc num-buffers=4 ! video/x-raw,width=160,height=96,format=I420 \
         ! inspro model={} score-threshold=0 emit-messages=true ! fakesink",
        tiny_model().display()
    );
    let msgs = run_pipeline(&launch);
    assert!(errors(&msgs).is_empty(), "{:?}", errors(&msgs));
    let warned = msgs.iter().any(|m| match m.view() {
        gst::MessageView::Warning(w) => w.error().to_string().contains("RANDOM weights"),
        _ => false,
    });
    assert!(
        warned,
        "weights unset: a warning says the detections are meaningless"
    );
    let tracks: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e.structure().filter(|s| s.name() == "inspro-tracks"),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 4, "one message per frame");
    for (i, s) in tracks.iter().enumerate() {
        let t = Tracks::from_structure(s);
        assert_eq!(t.frame, i as u64);
        // videotestsrc at 30/1 stamps frame i at i * 10^9 / 30 ns, rounded.
        let ts: gst::ClockTime = s.get("timestamp").expect("timestamp");
        assert!(
            ts.nseconds().abs_diff(i as u64 * 1_000_000_000 / 30) <= 1,
            "{ts}"
        );
        assert!(s.get::<gst::ClockTime>("running-time").is_ok());
        assert!(s.get::<gst::ClockTime>("stream-time").is_ok());
        assert!(s.get::<gst::ClockTime>("duration").is_ok());
    }
}

/// What reaches `fakesink name=sink` in `launch`: per buffer, the meta's frame size if it has one.
fn meta_at_sink(launch: &str) -> Vec<Option<(i32, i32)>> {
    common::init();
    let pipeline = gst::parse::launch(launch)
        .expect("parse")
        .downcast::<gst::Bin>()
        .expect("a pipeline");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = pipeline.by_name("sink").expect("sink");
    let s2 = seen.clone();
    sink.static_pad("sink")
        .expect("pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer() {
                let size = gst::meta::CustomMeta::from_buffer(buf, common::META)
                    .ok()
                    .map(|m| Tracks::from_structure(m.structure()))
                    .map(|t| (t.width, t.height));
                s2.lock().unwrap().push(size);
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{launch}: {}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).expect("to NULL");
    let v = seen.lock().unwrap().clone();
    v
}

#[test]
fn meta_survives_videoconvert_and_videoscale_with_its_frame_size() {
    // Downstream of a videoscale the coordinates are still those of the frame the element saw:
    // the meta's width and height say which, so a reader can rescale them.
    let model = tiny_model().display().to_string();
    let head = format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=160,height=96,format=I420 \
         ! inspro model={model} score-threshold=0"
    );
    let converted = meta_at_sink(&format!(
        "{head} ! videoconvert ! video/x-raw,format=BGRx ! queue ! fakesink name=sink"
    ));
    assert_eq!(converted, vec![Some((160, 96)); 3]);
    let scaled = meta_at_sink(&format!(
        "{head} ! videoscale ! video/x-raw,width=80,height=48 ! fakesink name=sink"
    ));
    assert_eq!(scaled, vec![Some((160, 96)); 3]);
}

#[test]
fn onnxruntime_engine_exports_and_runs_the_same_model() {
    // Needs libonnxruntime.so (ORT_DYLIB_PATH or the venv of scripts/setup.sh).
    if let Err(e) = inspro::runtime::onnxruntime::find_library(None) {
        eprintln!("skipped: {e}");
        return;
    }
    let frames = synth_frames(W, H, 3, 10);
    let run = |engine: &str| -> Vec<Tracks> {
        let el = element();
        el.set_property_from_str("engine", engine);
        el.set_property("weights", shipped_weights());
        let mut h = Harness::with_element(&el, Some("sink"), Some("src"));
        h.set_src_caps(caps(VideoFormat::I420, W, H));
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let out = push_pull(
                    &mut h,
                    buffer_from_rgb(f, W, H, VideoFormat::I420),
                    i as u64,
                );
                Tracks::from_buffer(&out)
            })
            .collect()
    };
    // The shipped weights (random ones amplify float rounding through 3 stages a frame into
    // pixel-sized box differences); onnxruntime exports the model at start.
    let ort = run("onnxruntime");
    let candle = run("candle");
    for (i, (a, b)) in ort.iter().zip(&candle).enumerate() {
        assert_eq!(a.ids, b.ids, "frame {i}");
        let worst = a
            .boxes
            .iter()
            .zip(&b.boxes)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 0.5,
            "frame {i}: boxes differ by {worst} px between engines"
        );
    }
}

/// A `rules` file: the zones of every track in the meta, a label filter, a bad file as an error.
#[test]
fn a_rules_file_gives_zones_and_filters_labels() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules.toml");
    // One zone over the whole frame (and past its edges); no circles of any size.
    std::fs::write(
        &rules,
        "[[zone]]\nname = \"all\"\ncoordinates = [[-10, -10], [200, -10], [200, 120], [-10, 120]]\n\
         [filters.circle]\nmin_area = 1e9\n",
    )
    .expect("rules file");
    let launch = format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=160,height=96 \
         ! inspro model={} score-threshold=0 emit-messages=true rules={} ! fakesink",
        tiny_model().display(),
        rules.display()
    );
    let msgs = run_pipeline(&launch);
    assert!(errors(&msgs).is_empty(), "{:?}", errors(&msgs));
    let frames: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e.structure().filter(|s| s.name() == "inspro-tracks"),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 3);
    let mut tracks = 0;
    for s in &frames {
        let labels: gst::Array = s.get("labels").expect("labels");
        let states: gst::Array = s.get("states").expect("states");
        let zones: gst::Array = s.get("current-zones").expect("current-zones");
        assert_eq!(zones.len(), labels.len());
        for ((l, st), z) in labels.iter().zip(states.iter()).zip(zones.iter()) {
            assert_ne!(l.get::<String>().unwrap(), "circle", "filtered out");
            if st.get::<String>().unwrap() != "lost" {
                assert_eq!(z.get::<String>().unwrap(), "all");
                tracks += 1;
            }
        }
    }
    assert!(tracks > 0);
    std::fs::write(&rules, "[[zone]]\nname = \"x\"\ncoordinates = [[0, 0]]\n").expect("write");
    let errs = errors(&run_pipeline(&launch));
    assert!(
        errs.iter()
            .any(|e| e.contains("rules") && e.contains("coordinates")),
        "{errs:?}"
    );
}
