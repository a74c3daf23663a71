//! Track quality beyond AP: duplicate track pairs, each object's best track and its class, the
//! per-frame oracle mask IoU and identity switches.

use std::collections::HashSet;

use serde::Serialize;

use super::eval::iou_seq;
use super::json::{GroundTruth, VideoResult};
use super::rle::Rle;

/// Duplicate tracks: pairs of tracks of one video, both scoring at least `min_score`, whose
/// spatio-temporal mask IoU is at least `min_iou` (what the box deduplication loss is meant to
/// remove). A track is a distinct mask sequence: the (slot, class) results of one slot share
/// theirs and are one track, scored by its best result, so a slot's second class is not its
/// own duplicate. Results whose masks do not decode are skipped.
pub fn count_duplicates(results: &[VideoResult], min_score: f64, min_iou: f64) -> usize {
    let mut by_video: std::collections::BTreeMap<u64, Vec<Vec<Option<Rle>>>> = Default::default();
    for r in results.iter().filter(|r| r.score >= min_score) {
        let seq: Option<Vec<Option<Rle>>> = r
            .segmentations
            .iter()
            .map(|s| match s {
                None => Some(None),
                Some(j) => j.to_rle().ok().map(Some),
            })
            .collect();
        if let Some(seq) = seq {
            by_video.entry(r.video_id).or_default().push(seq);
        }
    }
    by_video
        .values()
        .map(|results| {
            let tracks = distinct_tracks(results);
            let mut n = 0;
            for i in 0..tracks.len() {
                for j in i + 1..tracks.len() {
                    if iou_seq(tracks[i], tracks[j]) >= min_iou {
                        n += 1;
                    }
                }
            }
            n
        })
        .sum()
}

/// The distinct mask sequences among a video's results, in first-seen order: the (slot, class)
/// results of one slot share their masks, so each sequence is one slot's track.
fn distinct_tracks<'a>(
    seqs: impl IntoIterator<Item = &'a Vec<Option<Rle>>>,
) -> Vec<&'a Vec<Option<Rle>>> {
    let mut seen: HashSet<&Vec<Option<Rle>>> = HashSet::new();
    seqs.into_iter().filter(|d| seen.insert(d)).collect()
}

/// How tracks relate to objects, beyond AP: for every ground-truth object, the result of its
/// video with the highest spatio-temporal mask IoU (any score) and whether its class is right;
/// and the duplicate pairs ([`count_duplicates`]) per object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrackQuality {
    pub objects: usize,
    /// Share of objects whose best-overlapping track has the object's category.
    pub best_track_class_accuracy: f64,
    /// Mean spatio-temporal IoU of each object's best-overlapping track.
    pub best_track_iou: f64,
    /// Masks apart from tracking: for every frame where an object is visible, the best mask IoU
    /// of any result of its video in that frame (what perfect tracking would get), averaged
    /// over these object-frames, and the share of them at IoU ≥ 0.75.
    pub frame_oracle_iou: f64,
    pub frame_oracle_iou_075: f64,
    /// Identity switches (CLEAR-MOT's IDSW over tracks = distinct mask sequences, the results
    /// of one slot sharing theirs, regardless of score): an object keeps its track while that
    /// track's mask IoU with it stays ≥ 0.5; when it does not, the best track at IoU ≥ 0.5
    /// takes over, and a different one than before is a switch (frames without one skipped).
    pub id_switches: usize,
    pub id_switches_per_object: f64,
    pub duplicate_min_score: f64,
    pub duplicate_min_iou: f64,
    pub duplicate_pairs: usize,
    pub duplicates_per_object: f64,
    /// The label a subscriber gets: share of objects whose best track (the distinct mask
    /// sequence with the highest spatio-temporal IoU with it) covers it at video mask IoU ≥ 0.5
    /// and whose top class (the class of that track's highest-scoring result) is the object's.
    pub covered_right_top_class: f64,
    /// As `covered_right_top_class`, and that top class scores at least 0.5 (the daemon's
    /// default birth score): objects the daemon's defaults report, rightly.
    pub covered_right_confident: f64,
    /// Every track (distinct mask sequence) with its top class's score and what it is (what
    /// `inspro eval --fit-scores` calibrates the scores on and breaks down).
    #[serde(skip)]
    pub samples: Vec<(f64, TrackKind)>,
}

/// What a track is to the objects of its video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrackKind {
    /// The best track of an object, covering it at video mask IoU >= 0.5, with its class.
    Right,
    /// The best track of an object, covering it, with another class.
    WrongClass,
    /// Covers an object at video IoU >= 0.5 that another track covers better (a second slot).
    Duplicate,
    /// Overlaps an object at video IoU in [0.1, 0.5): a part of it (after or before an
    /// identity switch) or a poor mask.
    Partial,
    /// Video IoU below 0.1 with every object.
    Background,
}

impl TrackKind {
    pub const ALL: [TrackKind; 5] = [
        TrackKind::Right,
        TrackKind::WrongClass,
        TrackKind::Duplicate,
        TrackKind::Partial,
        TrackKind::Background,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            TrackKind::Right => "right (an object's best track, covering it, its class)",
            TrackKind::WrongClass => "an object's best track, covering it, another class",
            TrackKind::Duplicate => "a second track on a covered object",
            TrackKind::Partial => "a part of an object (video IoU 0.1-0.5)",
            TrackKind::Background => "nothing (video IoU < 0.1)",
        }
    }
}

/// Video mask IoU at which a track covers an object, and the score the daemon trusts by default.
const COVER_IOU: f64 = 0.5;
const CONFIDENT_SCORE: f64 = 0.5;

/// [`TrackQuality`] of `results` against `gt`. Masks that do not decode count as empty.
pub fn track_quality(
    gt: &GroundTruth,
    results: &[VideoResult],
    dup_score: f64,
    dup_iou: f64,
) -> TrackQuality {
    let decode_results = |video: u64| -> Vec<(u64, f64, Vec<Option<Rle>>)> {
        results
            .iter()
            .filter(|r| r.video_id == video)
            .map(|r| {
                let seq = r
                    .segmentations
                    .iter()
                    .map(|s| s.as_ref().and_then(|j| j.to_rle().ok()))
                    .collect();
                (r.category_id, r.score, seq)
            })
            .collect()
    };
    let mut samples = Vec::new();
    let (mut objects, mut right, mut iou_sum) = (0usize, 0usize, 0f64);
    let (mut object_frames, mut oracle_sum, mut oracle_075) = (0usize, 0f64, 0usize);
    let mut id_switches = 0usize;
    let (mut covered_right, mut covered_confident) = (0usize, 0usize);
    for v in &gt.videos {
        let tracks = decode_results(v.id);
        let distinct = distinct_tracks(tracks.iter().map(|(_, _, d)| d));
        // Each distinct track's top class and its score (its highest-scoring result).
        let top: Vec<(u64, f64)> = distinct
            .iter()
            .map(|d| {
                tracks.iter().filter(|(_, _, s)| s == *d).fold(
                    (0, f64::NEG_INFINITY),
                    |acc, (c, score, _)| {
                        if *score > acc.1 {
                            (*c, *score)
                        } else {
                            acc
                        }
                    },
                )
            })
            .collect();
        let mut kinds = vec![TrackKind::Background; distinct.len()];
        // Each track's best video IoU with any object of the video.
        let mut best_iou = vec![0f64; distinct.len()];
        for a in gt.annotations.iter().filter(|a| a.video_id == v.id) {
            let g: Vec<Option<Rle>> = a
                .segmentations
                .iter()
                .map(|s| {
                    s.as_ref()
                        .and_then(|s| s.to_rle(v.height, v.width).ok().flatten())
                })
                .collect();
            objects += 1;
            let mut held: Option<usize> = None;
            for (f, g) in g.iter().enumerate() {
                let Some(g) = g.as_ref().filter(|g| g.area() > 0) else {
                    continue;
                };
                let ious: Vec<f64> = distinct
                    .iter()
                    .map(|d| {
                        d.get(f)
                            .and_then(|m| m.as_ref())
                            .and_then(|m| Rle::intersection_union(m, g))
                            .map_or(0.0, |(i, u)| if u > 0 { i as f64 / u as f64 } else { 0.0 })
                    })
                    .collect();
                let (best, track) = ious.iter().enumerate().fold(
                    (0.0, None),
                    |acc: (f64, Option<usize>), (k, &iou)| {
                        if iou > acc.0 {
                            (iou, Some(k))
                        } else {
                            acc
                        }
                    },
                );
                object_frames += 1;
                oracle_sum += best;
                oracle_075 += usize::from(best >= 0.75);
                // CLEAR-MOT: the object keeps its track while that track still covers it.
                if held.is_some_and(|h| ious[h] >= 0.5) {
                    continue;
                }
                if let Some(k) = track.filter(|_| best >= 0.5) {
                    id_switches += usize::from(held.is_some());
                    held = Some(k);
                }
            }
            let video_ious: Vec<f64> = distinct.iter().map(|d| iou_seq(d, &g)).collect();
            for (best, iou) in best_iou.iter_mut().zip(&video_ious) {
                *best = best.max(*iou);
            }
            let covering = video_ious
                .iter()
                .zip(&top)
                .enumerate()
                .map(|(k, (iou, t))| (*iou, *t, k))
                .fold(None, |acc: Option<(f64, (u64, f64), usize)>, x| match acc {
                    Some(a) if a.0 >= x.0 => Some(a),
                    _ => Some(x),
                });
            if let Some((iou, (class, score), k)) = covering {
                if iou >= COVER_IOU && class == a.category_id {
                    covered_right += 1;
                    covered_confident += usize::from(score >= CONFIDENT_SCORE);
                    kinds[k] = TrackKind::Right;
                } else if iou >= COVER_IOU && kinds[k] != TrackKind::Right {
                    kinds[k] = TrackKind::WrongClass;
                }
            }
            let best = tracks.iter().map(|(c, _, d)| (iou_seq(d, &g), *c)).fold(
                None,
                |acc: Option<(f64, u64)>, x| match acc {
                    Some(a) if a.0 >= x.0 => Some(a),
                    _ => Some(x),
                },
            );
            if let Some((iou, class)) = best {
                iou_sum += iou;
                if class == a.category_id && iou > 0.0 {
                    right += 1;
                }
            }
        }
        for (k, kind) in kinds.iter_mut().enumerate() {
            if *kind == TrackKind::Background {
                *kind = match best_iou[k] {
                    x if x >= COVER_IOU => TrackKind::Duplicate,
                    x if x >= 0.1 => TrackKind::Partial,
                    _ => TrackKind::Background,
                };
            }
        }
        samples.extend(top.iter().zip(&kinds).map(|(t, kind)| (t.1, *kind)));
    }
    let duplicate_pairs = count_duplicates(results, dup_score, dup_iou);
    let per = |x: f64| {
        if objects == 0 {
            0.0
        } else {
            x / objects as f64
        }
    };
    TrackQuality {
        objects,
        best_track_class_accuracy: per(right as f64),
        best_track_iou: per(iou_sum),
        frame_oracle_iou: oracle_sum / object_frames.max(1) as f64,
        frame_oracle_iou_075: oracle_075 as f64 / object_frames.max(1) as f64,
        id_switches,
        id_switches_per_object: per(id_switches as f64),
        duplicate_min_score: dup_score,
        duplicate_min_iou: dup_iou,
        duplicate_pairs,
        duplicates_per_object: per(duplicate_pairs as f64),
        covered_right_top_class: per(covered_right as f64),
        covered_right_confident: per(covered_confident as f64),
        samples,
    }
}
