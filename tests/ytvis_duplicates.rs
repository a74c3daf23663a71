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
