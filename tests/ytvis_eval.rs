//! ytvoseval on hand-built cases whose answers follow from the algorithm by hand
//! (`youtubevos/cocoapi: PythonAPI/pycocotools/ytvoseval.py`).
//!
//! Precision in ytvoseval is `tp / (tp + fp + eps)` with `eps = np.spacing(1)`, so one true
//! positive out of one scores `1 - 2^-52`, not 1; hence the tolerance.

use inspro::ytvis::eval::{iou_seq, numpy_sum};
use inspro::ytvis::{
    evaluate, evaluate_files, results_from_ground_truth, Category, GroundTruth, GtAnnotation, Rle,
    RleCounts, RleJson, Segmentation, Video, VideoResult, YtvisError,
};

const TOL: f64 = 1e-12;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < TOL
}

/// A `w` x `h` rectangle at (x, y) in an `img_h` x `img_w` frame.
fn rect(x: u32, y: u32, w: u32, h: u32, img_h: u32, img_w: u32) -> Rle {
    let mut m = vec![0u8; (img_h * img_w) as usize];
    for yy in y..(y + h).min(img_h) {
        for xx in x..(x + w).min(img_w) {
            m[(yy * img_w + xx) as usize] = 1;
        }
    }
    Rle::encode_row_major(&m, img_h, img_w)
}

fn video(id: u64, h: u32, w: u32, length: usize) -> Video {
    Video {
        id,
        width: w,
        height: h,
        length,
        file_names: (0..length).map(|f| format!("v{id}/{f:05}.jpg")).collect(),
    }
}

fn cats(n: u64) -> Vec<Category> {
    (1..=n)
        .map(|id| Category {
            id,
            name: format!("c{id}"),
            supercategory: "shape".into(),
        })
        .collect()
}

fn track(id: u64, video_id: u64, category_id: u64, masks: &[Option<Rle>]) -> GtAnnotation {
    GtAnnotation {
        id,
        video_id,
        category_id,
        iscrowd: 0,
        segmentations: masks
            .iter()
            .map(|m| m.as_ref().map(|r| Segmentation::Rle(RleJson::from_rle(r))))
            .collect(),
        bboxes: None,
        areas: Some(
            masks
                .iter()
                .map(|m| m.as_ref().map(|r| r.area() as f64))
                .collect(),
        ),
    }
}

fn result(video_id: u64, category_id: u64, score: f64, masks: &[Option<Rle>]) -> VideoResult {
    VideoResult {
        video_id,
        category_id,
        score,
        segmentations: masks
            .iter()
            .map(|m| m.as_ref().map(RleJson::from_rle))
            .collect(),
    }
}

fn gt_of(videos: Vec<Video>, n_cats: u64, annotations: Vec<GtAnnotation>) -> GroundTruth {
    GroundTruth {
        info: None,
        licenses: None,
        videos,
        annotations,
        categories: cats(n_cats),
    }
}

#[test]
fn perfect_results_score_one() {
    let a: Vec<Option<Rle>> = (0..3).map(|f| Some(rect(f, 1, 4, 3, 10, 12))).collect();
    let b = vec![
        None,
        Some(rect(6, 5, 5, 4, 10, 12)),
        Some(rect(5, 5, 5, 4, 10, 12)),
    ];
    let c = vec![Some(rect(0, 0, 2, 2, 8, 8)), None, None];
    let gt = gt_of(
        vec![video(1, 10, 12, 3), video(2, 8, 8, 3)],
        3,
        vec![track(1, 1, 1, &a), track(2, 1, 2, &b), track(3, 2, 2, &c)],
    );
    let results = results_from_ground_truth(&gt).unwrap();
    let s = evaluate(&gt, &results).unwrap();
    for v in [s.ap, s.ap50, s.ap75, s.aps, s.ar1, s.ar10, s.ar100, s.ars] {
        assert!(close(v, 1.0), "{s:?}");
    }
    // no medium or large tracks: nothing to measure, -1 as in ytvoseval
    assert_eq!((s.apm, s.apl, s.arm, s.arl), (-1.0, -1.0, -1.0, -1.0));
    assert!(close(s.per_category[0].ap.unwrap(), 1.0));
    assert!(close(s.per_category[1].ap.unwrap(), 1.0));
    assert_eq!(s.per_category[2].ap, None);
}

#[test]
fn track_missing_one_frame_has_the_exact_st_iou() {
    // three frames of 12 pixels each; the result drops frame 1:
    // I = 12 + 12, U = 12 + 12 (frame 1 counts the ground truth alone) + 12 → 24 / 36
    let g: Vec<Option<Rle>> = (0..3).map(|f| Some(rect(f, 2, 4, 3, 10, 10))).collect();
    let mut d = g.clone();
    d[1] = None;
    assert_eq!(iou_seq(&d, &g), 24.0 / 36.0);
    // and a frame where the result is wider by 4 pixels: I = 36, U = 40
    let mut d2 = g.clone();
    d2[2] = Some(rect(2, 2, 4, 4, 10, 10));
    assert_eq!(iou_seq(&d2, &g), 36.0 / 40.0);

    let gt = gt_of(vec![video(1, 10, 10, 3)], 1, vec![track(7, 1, 1, &g)]);
    let s = evaluate(&gt, &[result(1, 1, 0.9, &d)]).unwrap();
    // IoU 2/3 passes the thresholds .50 .55 .60 .65 and fails .70 ... .95
    assert!(close(s.ap, 0.4), "{}", s.ap);
    assert!(close(s.ap50, 1.0));
    assert_eq!(s.ap75, 0.0);
    assert!(close(s.ar100, 0.4));
}

#[test]
fn duplicate_detection_costs_exact_precision() {
    // one video, two tracks of one category; results: track A twice (0.9, 0.8), track B (0.7).
    // Sorted: TP, FP, TP → recall [.5, .5, 1], precision [1, 1/2, 2/3] → made monotone
    // [1, 2/3, 2/3]; recall points 0.00..0.50 (51 of them) read 1, 0.51..1.00 (50) read 2/3.
    let a: Vec<Option<Rle>> = (0..2).map(|_| Some(rect(0, 0, 3, 3, 10, 10))).collect();
    let b: Vec<Option<Rle>> = (0..2).map(|_| Some(rect(5, 5, 4, 4, 10, 10))).collect();
    let gt = gt_of(
        vec![video(1, 10, 10, 2)],
        1,
        vec![track(1, 1, 1, &a), track(2, 1, 1, &b)],
    );
    let results = [
        result(1, 1, 0.9, &a),
        result(1, 1, 0.8, &a),
        result(1, 1, 0.7, &b),
    ];
    let s = evaluate(&gt, &results).unwrap();
    let expected = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
    assert!(close(s.ap, expected), "{} vs {expected}", s.ap);
    assert!(close(s.ar100, 1.0));
    assert!(close(s.ar10, 1.0));
    // maxDets is per video per category: with 1, only the 0.9 result counts → recall 1/2
    assert!(close(s.ar1, 0.5));
}

#[test]
fn false_positive_in_a_video_without_that_category_counts() {
    // as in ytvoseval: a (video, category) cell with results but no ground truth is evaluated,
    // so its results are false positives. Sorted: FP (0.9), TP (0.5) → precision 1/2 everywhere.
    let g: Vec<Option<Rle>> = vec![Some(rect(1, 1, 3, 3, 10, 10)), None];
    let junk: Vec<Option<Rle>> = vec![Some(rect(1, 1, 3, 3, 10, 10)), None];
    let gt = gt_of(
        vec![video(1, 10, 10, 2), video(2, 10, 10, 2)],
        2,
        vec![track(1, 1, 1, &g)],
    );
    let s = evaluate(&gt, &[result(2, 1, 0.9, &junk), result(1, 1, 0.5, &g)]).unwrap();
    assert_eq!(s.ap, 0.5);
    assert!(close(s.ar100, 1.0));
    // a category without any ground truth is left out of the means
    let s2 = evaluate(&gt, &[result(1, 2, 0.9, &junk), result(1, 1, 0.5, &g)]).unwrap();
    assert!(close(s2.ap, 1.0));
    assert_eq!(s2.per_category[1].ap, None);
}

#[test]
fn empty_results_give_zeros() {
    let g: Vec<Option<Rle>> = vec![Some(rect(1, 1, 3, 3, 10, 10))];
    let gt = gt_of(vec![video(1, 10, 10, 1)], 1, vec![track(1, 1, 1, &g)]);
    let s = evaluate(&gt, &[]).unwrap();
    assert_eq!(
        (s.ap, s.ap50, s.ap75, s.aps, s.ar1, s.ar10, s.ar100, s.ars),
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(s.per_category[0].ap, Some(0.0));
    let empty = gt_of(vec![video(1, 10, 10, 1)], 1, vec![]);
    let s = evaluate(&empty, &[]).unwrap();
    assert_eq!(s.ap, -1.0);
}

#[test]
fn area_ranges_use_the_average_track_area() {
    // small 10x10 (100 px), medium 150x150 (22500 in [128², 256²]), large 280x280 (78400).
    let (h, w) = (300, 300);
    let small = vec![Some(rect(0, 0, 10, 10, h, w))];
    let medium = vec![Some(rect(0, 0, 150, 150, h, w))];
    let large = vec![Some(rect(0, 0, 280, 280, h, w))];
    let gt = gt_of(
        vec![video(1, h, w, 1)],
        1,
        vec![
            track(1, 1, 1, &small),
            track(2, 1, 1, &medium),
            track(3, 1, 1, &large),
        ],
    );
    let s = evaluate(&gt, &[result(1, 1, 0.9, &small), result(1, 1, 0.8, &large)]).unwrap();
    // all: recall reaches 2/3 with precision 1 → recall points 0.00..0.66 (67 of 101)
    assert!(close(s.ap, 67.0 / 101.0), "{}", s.ap);
    assert!(close(s.aps, 1.0));
    assert_eq!(s.apm, 0.0);
    assert!(close(s.apl, 1.0));
    assert!(close(s.ar100, 2.0 / 3.0));
    assert!(close(s.ar1, 1.0 / 3.0));
    assert_eq!(s.arm, 0.0);

    // the track's area is the mean of its non-null, non-zero frame areas: 100 and 40000
    // average to 20050 → medium, though one frame alone is small
    let mixed = vec![
        Some(rect(0, 0, 10, 10, h, w)),
        None,
        Some(rect(0, 0, 200, 200, h, w)),
        Some(Rle::zeros(h, w)),
    ];
    let gt = gt_of(vec![video(1, h, w, 4)], 1, vec![track(1, 1, 1, &mixed)]);
    let s = evaluate(&gt, &results_from_ground_truth(&gt).unwrap()).unwrap();
    assert_eq!((s.aps, s.apl), (-1.0, -1.0));
    assert!(close(s.apm, 1.0));
}

#[test]
fn max_dets_keeps_the_top_results_per_video_and_category() {
    // 12 ground-truth tracks in one video, each found once; the 11th and 12th best results
    // fall beyond maxDets 10
    let n = 12u32;
    let masks: Vec<Vec<Option<Rle>>> = (0..n)
        .map(|i| vec![Some(rect(i * 2, 0, 2, 2, 4, 24))])
        .collect();
    let anns = masks
        .iter()
        .enumerate()
        .map(|(i, m)| track(i as u64 + 1, 1, 1, m))
        .collect();
    let gt = gt_of(vec![video(1, 4, 24, 1)], 1, anns);
    let results: Vec<VideoResult> = masks
        .iter()
        .enumerate()
        .map(|(i, m)| result(1, 1, 1.0 - i as f64 * 0.01, m))
        .collect();
    let s = evaluate(&gt, &results).unwrap();
    assert!(close(s.ar1, 1.0 / 12.0));
    assert!(close(s.ar10, 10.0 / 12.0));
    assert!(close(s.ar100, 1.0));
}

#[test]
fn crowd_tracks_are_ignored() {
    let g = vec![Some(rect(0, 0, 4, 4, 10, 10))];
    let crowd = vec![Some(rect(5, 5, 4, 4, 10, 10))];
    let mut c = track(2, 1, 1, &crowd);
    c.iscrowd = 1;
    let gt = gt_of(vec![video(1, 10, 10, 1)], 1, vec![track(1, 1, 1, &g), c]);
    // a result on the crowd region is neither TP nor FP
    let s = evaluate(&gt, &[result(1, 1, 0.9, &crowd), result(1, 1, 0.5, &g)]).unwrap();
    assert!(close(s.ap, 1.0));
}

#[test]
fn ground_truth_in_every_segmentation_form() {
    // the same 3x2 block as compressed RLE, uncompressed counts and a polygon
    // (frPyObjects([[1,1, 3.9,1, 3.9,2.9, 1,2.9]], 6, 6) covers x 1..=3, y 1..=2)
    let (h, w) = (6, 6);
    let block = rect(1, 1, 3, 2, h, w);
    let poly = Rle::from_polygons(&[vec![1.0, 1.0, 3.9, 1.0, 3.9, 2.9, 1.0, 2.9]], h, w).unwrap();
    assert_eq!(poly, block);
    let mut ann = track(1, 1, 1, &[None, None, None]);
    ann.segmentations = vec![
        Some(Segmentation::Rle(RleJson::from_rle(&block))),
        Some(Segmentation::Rle(RleJson {
            size: [h, w],
            counts: RleCounts::Uncompressed(block.counts.clone()),
        })),
        Some(Segmentation::Polygons(vec![vec![
            1.0, 1.0, 3.9, 1.0, 3.9, 2.9, 1.0, 2.9,
        ]])),
    ];
    ann.areas = None;
    let gt = gt_of(vec![video(1, h, w, 3)], 1, vec![ann]);
    let three = vec![Some(block.clone()), Some(block.clone()), Some(block)];
    let mut res = result(1, 1, 0.9, &three);
    // results may carry uncompressed counts too
    res.segmentations[1] = Some(RleJson {
        size: [h, w],
        counts: RleCounts::Uncompressed(three[1].as_ref().unwrap().counts.clone()),
    });
    let s = evaluate(&gt, &[res]).unwrap();
    assert!(close(s.ap, 1.0));
}

fn invalid_message(err: YtvisError) -> String {
    match err {
        YtvisError::Invalid { .. } | YtvisError::Json { .. } => err.to_string(),
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn inconsistent_results_are_errors_naming_the_json_path() {
    let g = vec![Some(rect(0, 0, 4, 4, 10, 12)), None];
    let gt = gt_of(vec![video(7, 10, 12, 2)], 1, vec![track(1, 7, 1, &g)]);

    let err = evaluate(&gt, &[result(3, 1, 0.9, &g)]).unwrap_err();
    assert_eq!(
        invalid_message(err),
        "results: [0].video_id: video 3 is not in the ground truth"
    );

    let wrong = vec![None, Some(rect(0, 0, 4, 4, 5, 5))];
    let err = evaluate(&gt, &[result(7, 1, 0.9, &g), result(7, 1, 0.9, &wrong)]).unwrap_err();
    assert_eq!(
        invalid_message(err),
        "results: [1].segmentations[1].size: [5, 5] but video 7 is 10x12"
    );

    let err = evaluate(&gt, &[result(7, 1, 0.9, &g[..1])]).unwrap_err();
    assert_eq!(
        invalid_message(err),
        "results: [0].segmentations: 1 entries but video 7 has 2 frames"
    );

    let err = evaluate(&gt, &[result(7, 9, 0.9, &g)]).unwrap_err();
    assert!(invalid_message(err).starts_with("results: [0].category_id: category 9"));

    let err = evaluate(&gt, &[result(7, 1, f64::NAN, &g)]).unwrap_err();
    assert!(invalid_message(err).starts_with("results: [0].score"));

    let mut short = result(7, 1, 0.9, &g);
    short.segmentations[0] = Some(RleJson {
        size: [10, 12],
        counts: RleCounts::Uncompressed(vec![3, 4]),
    });
    let err = evaluate(&gt, &[short]).unwrap_err();
    assert_eq!(
        invalid_message(err),
        "results: [0].segmentations[0]: runs cover 7 pixels but size 10x12 has 120"
    );
}

#[test]
fn inconsistent_ground_truth_is_an_error() {
    let g = vec![Some(rect(0, 0, 4, 4, 10, 12))];
    let mut bad = gt_of(vec![video(1, 10, 12, 1)], 1, vec![track(1, 2, 1, &g)]);
    let err = evaluate(&bad, &[]).unwrap_err();
    assert_eq!(
        invalid_message(err),
        "ground truth: annotations[0].video_id: video 2 is not in videos"
    );
    bad.annotations[0].video_id = 1;
    bad.annotations.push(track(1, 1, 1, &g));
    assert!(invalid_message(evaluate(&bad, &[]).unwrap_err()).contains("annotations[1].id"));
}

#[test]
fn files_bad_json_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let gt_path = dir.path().join("gt.json");
    let res_path = dir.path().join("results.json");
    let g = vec![Some(rect(0, 0, 4, 4, 10, 12))];
    let gt = gt_of(vec![video(7, 10, 12, 1)], 1, vec![track(1, 7, 1, &g)]);
    std::fs::write(&gt_path, serde_json::to_vec(&gt).unwrap()).unwrap();

    std::fs::write(&res_path, "[]").unwrap();
    assert_eq!(evaluate_files(&gt_path, &res_path).unwrap().ap, 0.0);

    let ok = serde_json::to_string(&[result(7, 1, 0.5, &g)]).unwrap();
    std::fs::write(&res_path, &ok).unwrap();
    assert!(close(evaluate_files(&gt_path, &res_path).unwrap().ap, 1.0));

    std::fs::write(
        &res_path,
        r#"[{"video_id": 7, "category_id": 1, "score": "high", "segmentations": [null]}]"#,
    )
    .unwrap();
    let msg = evaluate_files(&gt_path, &res_path).unwrap_err().to_string();
    let file = res_path.display().to_string();
    assert!(
        msg.starts_with(&format!("{file}: [0].score: invalid type: string")),
        "{msg}"
    );

    std::fs::write(
        &res_path,
        r#"[{"video_id": 7, "category_id": 1, "score": 1, "segmentations": [{"size": [10, 12], "counts": 5}]}]"#,
    )
    .unwrap();
    let msg = evaluate_files(&gt_path, &res_path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{file}: [0].segmentations[0].counts: ")),
        "{msg}"
    );

    std::fs::write(
        &res_path,
        r#"[{"video_id": 7, "category_id": 1, "score": 1, "segmentations": [{"size": [10, 12], "counts": "0~"}]}]"#,
    )
    .unwrap();
    let msg = evaluate_files(&gt_path, &res_path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "{file}: [0].segmentations[0]: run-length encoding"
        )),
        "{msg}"
    );

    std::fs::write(&res_path, "{\"not\": \"a list\"}").unwrap();
    assert!(evaluate_files(&gt_path, &res_path).is_err());
    std::fs::write(&res_path, "[").unwrap();
    assert!(evaluate_files(&gt_path, &res_path).is_err());
    std::fs::write(&gt_path, r#"{"videos": [{"id": 1}], "categories": []}"#).unwrap();
    let msg = evaluate_files(&gt_path, &res_path).unwrap_err().to_string();
    assert!(msg.contains("videos[0]: missing field"), "{msg}");
    let missing = dir.path().join("missing.json");
    assert!(evaluate_files(&missing, &res_path).is_err());
}

#[test]
fn numpy_pairwise_sum_order() {
    // np.sum(np.full(9, 0.1)) sums 8 lanes pairwise, then the 9th: 0.9;
    // Python's sum([0.1] * 9), a left fold, gives 0.8999999999999999
    let v = [0.1f64; 9];
    assert_eq!(numpy_sum(&v), 0.9);
    assert_eq!(v.iter().sum::<f64>(), 0.8999999999999999);
}

#[test]
fn mutated_json_never_panics() {
    use inspro::ytvis::json::parse_json;
    let g = vec![Some(rect(0, 0, 4, 4, 10, 12)), None];
    let mut ann = track(1, 7, 1, &g);
    ann.segmentations[1] = Some(Segmentation::Polygons(vec![vec![
        1.0, 1.0, 5.0, 1.0, 5.0, 6.0,
    ]]));
    let gt = gt_of(vec![video(7, 10, 12, 2)], 1, vec![ann]);
    let gt_text = serde_json::to_string(&gt).unwrap();
    let res_text = serde_json::to_string(&[result(7, 1, 0.5, &g)]).unwrap();
    let alphabet = b"0123456789-.e[]{},:\"nul O`";
    let mut state = 0x9e37_79b9_u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for _ in 0..2000 {
        let (mut gt_bytes, mut res_bytes) =
            (gt_text.clone().into_bytes(), res_text.clone().into_bytes());
        let target = if next(2) == 0 {
            &mut gt_bytes
        } else {
            &mut res_bytes
        };
        for _ in 0..1 + next(3) {
            let i = next(target.len());
            target[i] = alphabet[next(alphabet.len())];
        }
        let gt2 = parse_json::<GroundTruth>(&gt_bytes, "gt.json");
        let res2 = parse_json::<Vec<VideoResult>>(&res_bytes, "results.json");
        if let (Ok(gt2), Ok(res2)) = (gt2, res2) {
            let _ = evaluate(&gt2, &res2);
        }
    }
}
