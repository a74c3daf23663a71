//! Track lifecycle frame by frame: id, state and events after every frame, including the empty
//! frames that end a track, slot reuse, and the label as the argmax of the running mean.

use inspro::model::FrameGeometry;
use inspro::model::ModelConfig;
use inspro::tracking::{EndReason, FrameOutput, TrackEvent, TrackState, Tracker, TrackerConfig};

/// One frame with 2 slots and 3 classes: `probs[slot]`, `boxes[slot]`.
fn frame(i: u64, probs: [[f32; 3]; 2], boxes: [[f32; 4]; 2]) -> FrameOutput {
    let cfg = ModelConfig::default();
    FrameOutput {
        frame_index: i,
        key_frame: true,
        stages_run: 6,
        geometry: FrameGeometry::new(&cfg, 640, 360),
        class_probs: probs.iter().map(|p| p.to_vec()).collect(),
        boxes_xyxy: boxes.to_vec(),
        mask_logits: vec![0.0; 2 * 4],
        mask_h: 2,
        mask_w: 2,
    }
}

const A: [f32; 4] = [10., 10., 50., 50.];
const FAR: [f32; 4] = [300., 200., 340., 240.];
const NONE: [f32; 3] = [0.05, 0.02, 0.01];

fn kind(e: &TrackEvent) -> &'static str {
    match e {
        TrackEvent::New(_) => "new",
        TrackEvent::Update(_) => "update",
        TrackEvent::End(..) => "end",
    }
}

fn kinds(events: &[TrackEvent]) -> Vec<(String, u64, TrackState)> {
    events
        .iter()
        .map(|e| (kind(e).to_string(), e.track().id, e.track().state))
        .collect()
}

#[test]
fn birth_keep_loss_removal_frame_by_frame() {
    let cfg = TrackerConfig {
        birth_score: 0.5,
        min_frames: 2,
        keep_score: 0.3,
        max_lost_frames: 2,
        reuse_iou: 0.1,
        birth_nms_iou: 1.0,
        ..TrackerConfig::default()
    };
    let mut tr = Tracker::new(cfg);
    let hi = [0.1, 0.8, 0.2];
    // Frame 0: above birth once: a candidate, no event.
    assert!(tr.update(&frame(0, [hi, NONE], [A, FAR])).is_empty());
    // Frame 1: second frame above birth: born with id 1, label 1 (class of 0.8).
    let ev = tr.update(&frame(1, [hi, NONE], [A, FAR]));
    assert_eq!(kinds(&ev), vec![("new".into(), 1, TrackState::New)]);
    assert_eq!(ev[0].track().label, 1);
    assert_eq!(ev[0].track().first_frame, 0);
    // Frame 2: 0.35 is below birth but above keep: still tracked.
    let ev = tr.update(&frame(2, [[0.1, 0.35, 0.0], NONE], [A, FAR]));
    assert_eq!(kinds(&ev), vec![("update".into(), 1, TrackState::Tracked)]);
    // Frames 3, 4: empty frames: lost 1, lost 2.
    for i in 3..5 {
        let ev = tr.update(&frame(i, [NONE, NONE], [A, FAR]));
        assert_eq!(kinds(&ev), vec![("update".into(), 1, TrackState::Lost)]);
        assert_eq!(ev[0].track().lost_frames as u64, i - 2);
        // The box stays the last one seen.
        assert_eq!(ev[0].track().box_xyxy, A);
    }
    // Frame 5: third empty frame > max_lost_frames (2): removed and forgotten.
    let ev = tr.update(&frame(5, [NONE, NONE], [A, FAR]));
    assert_eq!(kinds(&ev), vec![("end".into(), 1, TrackState::Removed)]);
    assert_eq!(tr.active().count(), 0);
    // A new object in the same slot later gets a new id.
    tr.update(&frame(6, [hi, NONE], [A, FAR]));
    let ev = tr.update(&frame(7, [hi, NONE], [A, FAR]));
    assert_eq!(kinds(&ev), vec![("new".into(), 2, TrackState::New)]);
}

#[test]
fn lost_slot_reused_far_away_is_a_new_track() {
    let cfg = TrackerConfig {
        min_frames: 1,
        max_lost_frames: 10,
        ..TrackerConfig::default()
    };
    let mut tr = Tracker::new(cfg);
    let hi = [0.9, 0.0, 0.0];
    assert_eq!(
        kinds(&tr.update(&frame(0, [hi, NONE], [A, FAR]))),
        vec![("new".into(), 1, TrackState::New)]
    );
    assert_eq!(
        kinds(&tr.update(&frame(1, [NONE, NONE], [A, FAR]))),
        vec![("update".into(), 1, TrackState::Lost)]
    );
    // Back nearby: the same track recovers.
    let near = [12., 11., 52., 50.];
    assert_eq!(
        kinds(&tr.update(&frame(2, [hi, NONE], [near, FAR]))),
        vec![("update".into(), 1, TrackState::Tracked)]
    );
    tr.update(&frame(3, [NONE, NONE], [near, FAR]));
    // Back far away after a loss: another object; track 1 ends, track 2 is born (min_frames 1).
    let ev = tr.update(&frame(4, [hi, NONE], [FAR, FAR]));
    assert_eq!(
        kinds(&ev),
        vec![
            ("end".into(), 1, TrackState::Removed),
            ("new".into(), 2, TrackState::New)
        ]
    );
}

#[test]
fn label_is_argmax_of_running_mean_and_end_all_closes_everything() {
    let cfg = TrackerConfig {
        min_frames: 1,
        ..TrackerConfig::default()
    };
    let mut tr = Tracker::new(cfg);
    // Class 0 wins once strongly, class 2 wins twice narrowly: mean decides (0.9+0.3+0.3 vs 0.1+0.4+0.4).
    tr.update(&frame(0, [[0.9, 0.0, 0.1], [0.7, 0.0, 0.0]], [A, FAR]));
    tr.update(&frame(1, [[0.3, 0.0, 0.4], [0.7, 0.0, 0.0]], [A, FAR]));
    let ev = tr.update(&frame(2, [[0.3, 0.0, 0.4], [0.7, 0.0, 0.0]], [A, FAR]));
    let t = ev[0].track();
    assert_eq!(t.label, 0);
    assert!((t.score - 0.5).abs() < 1e-6);
    assert_eq!(t.hits, 3);
    let ids: Vec<u64> = tr.active().map(|t| t.id).collect();
    assert_eq!(ids, vec![1, 2]);
    let ends = tr.end_all(EndReason::EndOfStream);
    assert_eq!(
        kinds(&ends),
        vec![
            ("end".into(), 1, TrackState::Removed),
            ("end".into(), 2, TrackState::Removed)
        ]
    );
    assert_eq!(tr.active().count(), 0);
}

#[test]
fn memory_is_bounded_on_endless_streams() {
    let mut tr = Tracker::new(TrackerConfig {
        min_frames: 1,
        max_lost_frames: 1,
        ..TrackerConfig::default()
    });
    // Objects come and go forever; the tracker never holds more than one entry per slot.
    for i in 0..10_000u64 {
        let p = if (i / 3) % 2 == 0 {
            [0.9, 0.0, 0.0]
        } else {
            NONE
        };
        tr.update(&frame(i, [p, NONE], [A, FAR]));
        assert!(tr.active().count() <= 2);
    }
    let next = tr.end_all(EndReason::EndOfStream);
    assert!(next.len() <= 2);
}

#[test]
fn config_validation_names_the_field() {
    let bad = TrackerConfig {
        keep_score: 0.7,
        birth_score: 0.5,
        ..TrackerConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "keep_score");
    let bad = TrackerConfig {
        min_frames: 0,
        ..TrackerConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "min_frames");
    let bad = TrackerConfig::default().with_birth_nms_iou(1.5);
    assert_eq!(bad.validate().unwrap_err().field, "birth_nms_iou");
    TrackerConfig::default().validate().unwrap();
}

/// (kind, id, slot, first_frame, hits) of each event.
fn births(events: &[TrackEvent]) -> Vec<(&'static str, u64, usize, u64, u64)> {
    events
        .iter()
        .map(|e| {
            let t = e.track();
            (kind(e), t.id, t.slot, t.first_frame, t.hits)
        })
        .collect()
}

#[test]
fn birth_nms_holds_back_a_second_slot_on_one_object_until_it_moves_apart() {
    // Slot 0 (p 0.7) and slot 1 (p 0.9) on one object: IoU of A and A2 is 0.82.
    const A2: [f32; 4] = [12., 12., 52., 52.];
    let (lo, hi) = ([0.7, 0.1, 0.0], [0.1, 0.9, 0.0]);
    let cfg = TrackerConfig {
        min_frames: 1,
        ..TrackerConfig::default()
    };

    // Off (the default): every slot is born, ids in slot order.
    let mut tr = Tracker::new(cfg);
    let ev = tr.update(&frame(0, [lo, hi], [A, A2]));
    assert_eq!(births(&ev), vec![("new", 1, 0, 0, 1), ("new", 2, 1, 0, 1)]);

    // On: the likelier slot is born although it comes second; the other waits while it overlaps
    // a track seen on the frame, then is born with its whole run of frames.
    let mut tr = Tracker::new(cfg.with_birth_nms_iou(0.5));
    let ev = tr.update(&frame(0, [lo, hi], [A, A2]));
    assert_eq!(births(&ev), vec![("new", 1, 1, 0, 1)]);
    let ev = tr.update(&frame(1, [lo, hi], [A, A2]));
    assert_eq!(births(&ev), vec![("update", 1, 1, 0, 2)]);
    let ev = tr.update(&frame(2, [lo, hi], [FAR, A2]));
    assert_eq!(
        births(&ev),
        vec![("new", 2, 0, 0, 3), ("update", 1, 1, 0, 3)]
    );

    // Below the IoU nothing is held back: 0.82 does not exceed 0.9.
    let mut tr = Tracker::new(cfg.with_birth_nms_iou(0.9));
    let ev = tr.update(&frame(0, [lo, hi], [A, A2]));
    assert_eq!(ev.len(), 2);
}

#[test]
fn stream_processor_crops_masks_and_resets_on_size_change() {
    use inspro::model::{FrameRef, InsPro};
    use inspro::runtime::CandleEngine;
    use inspro::tracking::{box_crop_rle, full_frame_rle, StreamProcessor};
    use std::sync::Arc;

    let cfg = ModelConfig::from_file("configs/models/inspro-tiny.toml").unwrap();
    let (model, _) = InsPro::random(&cfg, 9, &candle_core::Device::Cpu).unwrap();
    let engine = Arc::new(CandleEngine::new(Arc::new(model)));
    // Every slot is "born" at once so that tracks exist whatever the random weights say.
    let tcfg = TrackerConfig {
        birth_score: 0.0,
        keep_score: 0.0,
        min_frames: 1,
        ..TrackerConfig::default()
    };
    let mut sp = StreamProcessor::new(engine, tcfg);
    let (w, h) = (80usize, 60usize);
    let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect();
    let first = sp.process(&FrameRef::packed(w, h, &data)).unwrap();
    assert_eq!(first.events.len(), cfg.num_queries);
    assert!(first.events.iter().all(|e| matches!(e, TrackEvent::New(_))));
    let out = &first.output;
    for slot in 0..out.num_slots() {
        let full = full_frame_rle(out, slot).decode_row_major();
        let b = out.boxes_xyxy[slot];
        let ([ox, oy], crop) = box_crop_rle(out, slot, &b);
        let (cw, ch) = (crop.w as usize, crop.h as usize);
        let dec = crop.decode_row_major();
        for y in 0..ch {
            for x in 0..cw {
                assert_eq!(
                    dec[y * cw + x],
                    full[(oy + y) * w + ox + x],
                    "slot {slot} at ({x},{y})"
                );
            }
        }
    }
    assert_eq!(sp.frames(), 1);
    // Another frame size: all tracks end, a fresh state starts, ids keep counting.
    let small: Vec<u8> = vec![128; 40 * 30 * 3];
    let second = sp.process(&FrameRef::packed(40, 30, &small)).unwrap();
    assert_eq!(second.reset_events.len(), cfg.num_queries);
    assert!(second
        .reset_events
        .iter()
        .all(|e| matches!(e, TrackEvent::End(..))));
    assert_eq!(sp.frames(), 1);
    let min_new = second.events.iter().map(|e| e.track().id).min().unwrap();
    assert_eq!(min_new, cfg.num_queries as u64 + 1);
}

/// One frame of 3 slots on a 64x32 frame (mask grid 16x8): `left[slot]` puts the slot's mask on
/// the left half, else on the right half.
fn three_slots(probs: [[f32; 2]; 3], left: [bool; 3]) -> FrameOutput {
    let cfg = ModelConfig {
        input_size: [64, 32],
        ..ModelConfig::default()
    };
    let (mh, mw) = (8, 16);
    let mut mask_logits = Vec::new();
    for l in left {
        for _ in 0..mh {
            for x in 0..mw {
                mask_logits.push(if (x < mw / 2) == l { 5.0 } else { -5.0 });
            }
        }
    }
    FrameOutput {
        frame_index: 0,
        key_frame: true,
        stages_run: 6,
        geometry: FrameGeometry::new(&cfg, 64, 32),
        class_probs: probs.iter().map(|p| p.to_vec()).collect(),
        boxes_xyxy: vec![[0., 0., 32., 32.]; 3],
        mask_logits,
        mask_h: mh,
        mask_w: mw,
    }
}

#[test]
fn a_second_slot_on_the_same_object_and_class_is_dropped_from_the_results() {
    use inspro::tracking::{ResultOptions, VideoAccumulator};
    let run = |duplicate_iou| {
        let mut acc = VideoAccumulator::new();
        for _ in 0..3 {
            // Slots 0 and 1 share the left half; slot 2 is alone on the right.
            acc.add(&three_slots(
                [[0.9, 0.01], [0.6, 0.5], [0.4, 0.01]],
                [true, true, false],
            ));
        }
        let opts = ResultOptions {
            top_k: 0,
            score_threshold: 0.1,
            duplicate_iou,
            ..ResultOptions::default()
        };
        let mut got: Vec<(u64, i64)> = acc
            .finish(7, &[1, 2], &opts)
            .iter()
            .map(|r| (r.category_id, (r.score * 10.0).round() as i64))
            .collect();
        got.sort();
        got
    };
    // Same class on one object: only the best pair stays; another class of the same slot and
    // the same class on another object stay.
    assert_eq!(run(Some(0.5)), vec![(1, 4), (1, 9), (2, 5)]);
    assert_eq!(run(None), vec![(1, 4), (1, 6), (1, 9), (2, 5)]);
}

/// `frame` with each slot's 2x2 mask logits given.
fn frame_with_masks(
    i: u64,
    probs: [[f32; 3]; 2],
    boxes: [[f32; 4]; 2],
    masks: [[f32; 4]; 2],
) -> FrameOutput {
    FrameOutput {
        mask_logits: masks.concat(),
        ..frame(i, probs, boxes)
    }
}

#[test]
fn two_slots_on_one_object_merge_into_the_older_track() {
    const A2: [f32; 4] = [12., 12., 52., 52.];
    let cfg = TrackerConfig {
        min_frames: 1,
        merge_iou: 0.7,
        merge_frames: 3,
        ..TrackerConfig::default()
    };
    let mut tr = Tracker::new(cfg);
    let p = [0.9, 0.0, 0.0];
    // Slot 0 is born first; slot 1 comes one frame later on the same object.
    let same = [[1., 1., 1., -1.], [1., 1., 1., -1.]];
    tr.update(&frame_with_masks(0, [p, NONE], [A, A2], same));
    let ev = tr.update(&frame_with_masks(1, [p, p], [A, A2], same));
    assert_eq!(kinds(&ev)[1], ("new".into(), 2, TrackState::New));
    // Frames 2 and 3: both seen, masks identical (IoU 1): counting, nothing ends yet.
    for i in 2..4 {
        let ev = tr.update(&frame_with_masks(i, [p, p], [A, A2], same));
        assert!(ev.iter().all(|e| e.end_reason().is_none()), "frame {i}");
    }
    // Frame 4: the third frame together: the younger (id 2) ends, merged into id 1.
    let ev = tr.update(&frame_with_masks(4, [p, p], [A, A2], same));
    let ends: Vec<_> = ev
        .iter()
        .filter_map(|e| e.end_reason().map(|r| (e.track().id, r)))
        .collect();
    assert_eq!(ends, vec![(2, EndReason::Merged { into: 1 })]);
    assert_eq!(EndReason::Merged { into: 1 }.as_str(), "merged");
    assert_eq!(tr.active().map(|t| t.id).collect::<Vec<_>>(), vec![1]);
    // The absorbed slot stays on the object: never born again while it does.
    for i in 5..15 {
        let ev = tr.update(&frame_with_masks(i, [p, p], [A, A2], same));
        assert!(ev.iter().all(|e| e.track().id == 1), "frame {i}: {ev:?}");
    }
    // It moves to another object: a new track with the next id.
    let apart = [[1., 1., -1., -1.], [-1., -1., 1., 1.]];
    let ev = tr.update(&frame_with_masks(15, [p, p], [A, FAR], apart));
    assert!(
        ev.iter()
            .any(|e| matches!(e, TrackEvent::New(t) if t.id == 3 && t.slot == 1)),
        "{ev:?}"
    );
}

#[test]
fn overlapping_masks_that_part_before_merge_frames_stay_two_tracks() {
    let cfg = TrackerConfig {
        min_frames: 1,
        merge_iou: 0.7,
        merge_frames: 3,
        ..TrackerConfig::default()
    };
    let mut tr = Tracker::new(cfg);
    let p = [0.9, 0.0, 0.0];
    let same = [[1., 1., 1., -1.], [1., 1., 1., -1.]];
    // Half overlap (IoU 1/3): below merge_iou.
    let half = [[1., 1., -1., -1.], [-1., 1., 1., -1.]];
    const NEAR: [f32; 4] = [20., 10., 60., 50.];
    for i in 0..30u64 {
        // Two frames together, one apart, forever: the count starts again each time.
        let m = if i % 3 == 2 { half } else { same };
        let ev = tr.update(&frame_with_masks(i, [p, p], [A, NEAR], m));
        assert!(ev.iter().all(|e| e.end_reason().is_none()), "frame {i}");
    }
    assert_eq!(tr.active().count(), 2);
    // Off: identical masks for ever, two tracks.
    let mut off = Tracker::new(TrackerConfig {
        merge_iou: 1.0,
        ..cfg
    });
    for i in 0..30u64 {
        off.update(&frame_with_masks(i, [p, p], [A, NEAR], same));
    }
    assert_eq!(off.active().count(), 2);
    let bad = TrackerConfig {
        merge_frames: 0,
        ..cfg
    };
    assert_eq!(bad.validate().unwrap_err().field, "merge_frames");
}
