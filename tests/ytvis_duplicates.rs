//! Duplicate-track counting (the ablation's BDL measure): overlapping confident tracks of one
//! video count once per pair; low scores, other videos, disjoint tracks and one slot's results
//! under several classes (the same masks) do not count.

use inspro::ytvis::eval::count_duplicates;
use inspro::ytvis::{Rle, RleJson, VideoResult};

fn square(x: usize, size: usize) -> Option<RleJson> {
    let (h, w) = (8usize, 8usize);
    let mut m = vec![0u8; h * w];
    for y in 0..size {
        for xx in x..x + size {
            m[y * w + xx] = 1;
        }
    }
    Some(RleJson::from_rle(&Rle::encode_row_major(
        &m, h as u32, w as u32,
    )))
}

fn result(video: u64, score: f64, x: usize) -> VideoResult {
    VideoResult {
        video_id: video,
        category_id: 1,
        score,
        segmentations: vec![square(x, 3), square(x, 3), None],
    }
}

#[test]
fn counts_confident_overlapping_pairs_per_video() {
    let rs = vec![
        result(1, 0.9, 0),
        VideoResult {
            // Another slot on the same object, one frame longer: ST-IoU 18 / 27, 1 pair.
            segmentations: vec![square(0, 3), square(0, 3), square(0, 3)],
            ..result(1, 0.8, 0)
        },
        VideoResult {
            // The first slot's second class: the same track, not a duplicate.
            category_id: 2,
            ..result(1, 0.6, 0)
        },
        result(1, 0.7, 5), // disjoint
        result(1, 0.1, 0), // duplicate but below the score threshold
        result(2, 0.9, 0), // another video
    ];
    assert_eq!(count_duplicates(&rs, 0.3, 0.5), 1);
    // Shifted by one column: ST-IoU = 2·6 / (2·12) = 0.5 → counts at 0.5, not at 0.6.
    let shifted = vec![result(3, 0.9, 0), result(3, 0.9, 1)];
    assert_eq!(count_duplicates(&shifted, 0.3, 0.5), 1);
    assert_eq!(count_duplicates(&shifted, 0.3, 0.6), 0);
    assert_eq!(count_duplicates(&rs, 0.95, 0.5), 0);
}

/// The label a subscriber gets: an object counts as found with the right class only when its
/// best track covers it (video mask IoU >= 0.5) and that track's *top* class (its
/// highest-scoring result) is the object's; "confident" also needs that score >= 0.5.
#[test]
fn covered_with_the_right_top_class_needs_the_overlap_and_the_top_score() {
    use inspro::ytvis::eval::track_quality;
    let annotations: Vec<_> = [1, 2, 3]
        .iter()
        .map(|v| {
            serde_json::json!({
                "id": v, "video_id": v, "category_id": 1, "iscrowd": 0,
                "segmentations": [square(0, 3), square(0, 3), serde_json::Value::Null],
            })
        })
        .collect();
    let gt: inspro::ytvis::GroundTruth = serde_json::from_value(serde_json::json!({
        "videos": [
            {"id": 1, "width": 8, "height": 8, "length": 3, "file_names": []},
            {"id": 2, "width": 8, "height": 8, "length": 3, "file_names": []},
            {"id": 3, "width": 8, "height": 8, "length": 3, "file_names": []},
        ],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }))
    .unwrap();
    let rs = vec![
        // Video 1: the track's top class is wrong (b at 0.6 over a at 0.3).
        VideoResult {
            category_id: 2,
            ..result(1, 0.6, 0)
        },
        result(1, 0.3, 0),
        // Video 2: right top class, but below 0.5.
        result(2, 0.4, 0),
        // Video 3: right and confident; a wrong-class track elsewhere does not matter.
        result(3, 0.7, 0),
        VideoResult {
            category_id: 2,
            ..result(3, 0.9, 5)
        },
    ];
    let q = track_quality(&gt, &rs, 0.5, 0.5);
    assert_eq!(q.objects, 3);
    assert!(
        (q.covered_right_top_class - 2.0 / 3.0).abs() < 1e-9,
        "{q:?}"
    );
    assert!(
        (q.covered_right_confident - 1.0 / 3.0).abs() < 1e-9,
        "{q:?}"
    );
    // A track that overlaps too little does not cover: shifted by two columns, video IoU 6 / 18.
    let far = vec![result(1, 0.9, 2)];
    let q = track_quality(&gt, &far, 0.5, 0.5);
    assert_eq!(q.covered_right_top_class, 0.0);
}
