//! Video AP/AR exactly as `youtubevos/cocoapi: PythonAPI/pycocotools/ytvoseval.py` computes it
//! (`_prepare`, `computeIoU.iou_seq`, `evaluateVid`, `accumulate`, `summarize`), with numpy's
//! summation order where it changes the last bits.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use super::error::YtvisError;
use super::json::{load_ground_truth, load_results, GroundTruth, VideoResult};
use super::rle::Rle;

/// `Params.maxDets`: detections kept per video per category.
pub const MAX_DETS: [usize; 3] = [1, 10, 100];
/// `Params.areaRng` (all, small, medium, large) applied to a track's average area.
pub const AREA_RANGES: [[f64; 2]; 4] = [
    [0.0, 1e10],
    [0.0, 128.0 * 128.0],
    [128.0 * 128.0, 256.0 * 256.0],
    [256.0 * 256.0, 1e10],
];

/// `np.linspace(.5, 0.95, 10)`, value for value.
pub fn iou_thresholds() -> [f64; 10] {
    let step = (0.95 - 0.5) / 9.0;
    let mut t = [0.0; 10];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as f64 * step + 0.5;
    }
    t[9] = 0.95;
    t
}

/// `np.linspace(.0, 1.00, 101)`, value for value.
pub fn recall_thresholds() -> [f64; 101] {
    let mut r = [0.0; 101];
    for (i, v) in r.iter_mut().enumerate() {
        *v = i as f64 * 0.01;
    }
    r[100] = 1.0;
    r
}

/// The numbers `YTVOSeval.summarize()` prints (its `stats`, in order) plus AP per category.
/// A value of -1 means nothing to measure (no ground truth in that area range), as in ytvoseval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalSummary {
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    pub aps: f64,
    pub apm: f64,
    pub apl: f64,
    pub ar1: f64,
    pub ar10: f64,
    pub ar100: f64,
    pub ars: f64,
    pub arm: f64,
    pub arl: f64,
    pub per_category: Vec<CategoryAp>,
}

/// AP of one category (area all, 100 detections); `None` when it has no ground truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CategoryAp {
    pub category_id: u64,
    pub name: String,
    pub ap: Option<f64>,
}

/// Scores `results` against `gt`. Inputs are checked first (see `docs/evaluation.md` for where
/// this is stricter than ytvoseval); errors name the json path in "ground truth" / "results".
pub fn evaluate(gt: &GroundTruth, results: &[VideoResult]) -> Result<EvalSummary, YtvisError> {
    evaluate_named(gt, "ground truth", results, "results")
}

/// Loads both files and scores them; errors name the files.
pub fn evaluate_files(gt_path: &Path, results_path: &Path) -> Result<EvalSummary, YtvisError> {
    let gt = load_ground_truth(gt_path)?;
    let results = load_results(results_path)?;
    evaluate_named(
        &gt,
        &gt_path.display().to_string(),
        &results,
        &results_path.display().to_string(),
    )
}

/// [`evaluate`] with the names errors should give for the two inputs.
pub fn evaluate_named(
    gt: &GroundTruth,
    gt_file: &str,
    results: &[VideoResult],
    results_file: &str,
) -> Result<EvalSummary, YtvisError> {
    let prepared = Prepared::new(gt, gt_file, results, results_file)?;
    Ok(prepared.run())
}

struct Track {
    masks: Vec<Option<Rle>>,
    avg_area: f64,
    iscrowd: bool,
    score: f64,
}

/// `_gts` / `_dts` of one (video, category), detections sorted by score and cut to 100.
#[derive(Default)]
struct Cell {
    gts: Vec<Track>,
    dts: Vec<Track>,
}

struct Prepared {
    vid_ids: Vec<u64>,
    cats: Vec<(u64, String)>,
    cells: HashMap<(u64, u64), Cell>,
}

struct EvalVid {
    dt_scores: Vec<f64>,
    /// `[T][D]`: matched to a ground-truth track.
    dt_matched: Vec<Vec<bool>>,
    dt_ignore: Vec<Vec<bool>>,
    gt_ignore: Vec<bool>,
}

impl Prepared {
    fn new(
        gt: &GroundTruth,
        gt_file: &str,
        results: &[VideoResult],
        results_file: &str,
    ) -> Result<Self, YtvisError> {
        let mut videos = HashMap::new();
        for (i, v) in gt.videos.iter().enumerate() {
            if videos.insert(v.id, v).is_some() {
                return Err(YtvisError::invalid(
                    gt_file,
                    format!("videos[{i}].id"),
                    format!("video id {} appears twice", v.id),
                ));
            }
            if v.file_names.len() != v.length {
                return Err(YtvisError::invalid(
                    gt_file,
                    format!("videos[{i}].file_names"),
                    format!(
                        "{} file names but length is {}",
                        v.file_names.len(),
                        v.length
                    ),
                ));
            }
        }
        let mut cat_ids = HashSet::new();
        for (i, c) in gt.categories.iter().enumerate() {
            if !cat_ids.insert(c.id) {
                return Err(YtvisError::invalid(
                    gt_file,
                    format!("categories[{i}].id"),
                    format!("category id {} appears twice", c.id),
                ));
            }
        }
        let mut cells: HashMap<(u64, u64), Cell> = HashMap::new();
        let mut ann_ids = HashSet::new();
        for (ai, ann) in gt.annotations.iter().enumerate() {
            let at = |field: &str| format!("annotations[{ai}].{field}");
            if ann.id == 0 || !ann_ids.insert(ann.id) {
                return Err(YtvisError::invalid(
                    gt_file,
                    at("id"),
                    format!(
                        "annotation id {} is {}; ytvoseval needs unique ids > 0",
                        ann.id,
                        if ann.id == 0 { "zero" } else { "repeated" }
                    ),
                ));
            }
            let video = videos.get(&ann.video_id).ok_or_else(|| {
                YtvisError::invalid(
                    gt_file,
                    at("video_id"),
                    format!("video {} is not in videos", ann.video_id),
                )
            })?;
            if !cat_ids.contains(&ann.category_id) {
                return Err(YtvisError::invalid(
                    gt_file,
                    at("category_id"),
                    format!("category {} is not in categories", ann.category_id),
                ));
            }
            let (h, w) = (video.height, video.width);
            if ann.segmentations.len() != video.length {
                return Err(YtvisError::invalid(
                    gt_file,
                    at("segmentations"),
                    format!(
                        "{} entries but video {} has {} frames",
                        ann.segmentations.len(),
                        video.id,
                        video.length
                    ),
                ));
            }
            let mut masks = Vec::with_capacity(video.length);
            for (fi, seg) in ann.segmentations.iter().enumerate() {
                let path = at(&format!("segmentations[{fi}]"));
                let rle = match seg {
                    None => None,
                    Some(s) => s
                        .to_rle(h, w)
                        .map_err(|reason| YtvisError::invalid(gt_file, path.clone(), reason))?,
                };
                if let Some(r) = &rle {
                    check_size(r, video.id, h, w, gt_file, &path)?;
                }
                masks.push(rle);
            }
            let avg_area = match &ann.areas {
                Some(areas) => {
                    if areas.len() != video.length {
                        return Err(YtvisError::invalid(
                            gt_file,
                            at("areas"),
                            format!(
                                "{} entries but video {} has {} frames",
                                areas.len(),
                                video.id,
                                video.length
                            ),
                        ));
                    }
                    let l: Vec<f64> = areas
                        .iter()
                        .flatten()
                        .copied()
                        .filter(|&a| a != 0.0)
                        .collect();
                    mean_or_zero(&l)
                }
                None => average_mask_area(&masks),
            };
            cells
                .entry((ann.video_id, ann.category_id))
                .or_default()
                .gts
                .push(Track {
                    masks,
                    avg_area,
                    iscrowd: ann.iscrowd != 0,
                    score: 0.0,
                });
        }
        for (ri, res) in results.iter().enumerate() {
            let at = |field: &str| format!("[{ri}].{field}");
            let video = videos.get(&res.video_id).ok_or_else(|| {
                YtvisError::invalid(
                    results_file,
                    at("video_id"),
                    format!("video {} is not in the ground truth", res.video_id),
                )
            })?;
            if !cat_ids.contains(&res.category_id) {
                return Err(YtvisError::invalid(
                    results_file,
                    at("category_id"),
                    format!(
                        "category {} is not in the ground truth's categories",
                        res.category_id
                    ),
                ));
            }
            if !res.score.is_finite() {
                return Err(YtvisError::invalid(
                    results_file,
                    at("score"),
                    format!("score {} is not a finite number", res.score),
                ));
            }
            let (h, w) = (video.height, video.width);
            if res.segmentations.len() != video.length {
                return Err(YtvisError::invalid(
                    results_file,
                    at("segmentations"),
                    format!(
                        "{} entries but video {} has {} frames",
                        res.segmentations.len(),
                        video.id,
                        video.length
                    ),
                ));
            }
            let mut masks = Vec::with_capacity(video.length);
            for (fi, seg) in res.segmentations.iter().enumerate() {
                let path = at(&format!("segmentations[{fi}]"));
                let rle = match seg {
                    None => None,
                    Some(r) => {
                        let [rh, rw] = r.size;
                        if (rh, rw) != (h, w) {
                            return Err(YtvisError::invalid(
                                results_file,
                                format!("{path}.size"),
                                format!("[{rh}, {rw}] but video {} is {h}x{w}", video.id),
                            ));
                        }
                        Some(r.to_rle().map_err(|reason| {
                            YtvisError::invalid(results_file, path.clone(), reason)
                        })?)
                    }
                };
                masks.push(rle);
            }
            let avg_area = average_mask_area(&masks);
            cells
                .entry((res.video_id, res.category_id))
                .or_default()
                .dts
                .push(Track {
                    masks,
                    avg_area,
                    iscrowd: false,
                    score: res.score,
                });
        }
        let max_det = MAX_DETS[MAX_DETS.len() - 1];
        for cell in cells.values_mut() {
            sort_by_score(&mut cell.dts, |t| t.score);
            cell.dts.truncate(max_det);
        }
        let mut vid_ids: Vec<u64> = videos.keys().copied().collect();
        vid_ids.sort_unstable();
        let mut cats: Vec<(u64, String)> = gt
            .categories
            .iter()
            .map(|c| (c.id, c.name.clone()))
            .collect();
        cats.sort_by_key(|c| c.0);
        Ok(Prepared {
            vid_ids,
            cats,
            cells,
        })
    }

    fn run(&self) -> EvalSummary {
        let iou_thrs = iou_thresholds();
        let rec_thrs = recall_thresholds();
        let (t_n, r_n, k_n, a_n, m_n) = (
            iou_thrs.len(),
            rec_thrs.len(),
            self.cats.len(),
            AREA_RANGES.len(),
            MAX_DETS.len(),
        );
        let keys: Vec<(u64, u64)> = self
            .vid_ids
            .iter()
            .flat_map(|&v| self.cats.iter().map(move |c| (v, c.0)))
            .filter(|k| self.cells.contains_key(k))
            .collect();
        let ious: HashMap<(u64, u64), Vec<Vec<f64>>> = keys
            .par_iter()
            .map(|k| (*k, compute_iou(&self.cells[k])))
            .collect();

        let mut precision = vec![-1.0f64; t_n * r_n * k_n * a_n * m_n];
        let mut recall = vec![-1.0f64; t_n * k_n * a_n * m_n];
        let p_idx = |t: usize, r: usize, k: usize, a: usize, m: usize| {
            (((t * r_n + r) * k_n + k) * a_n + a) * m_n + m
        };
        let r_idx = |t: usize, k: usize, a: usize, m: usize| ((t * k_n + k) * a_n + a) * m_n + m;

        for (k, (cat_id, _)) in self.cats.iter().enumerate() {
            for (a, a_rng) in AREA_RANGES.iter().enumerate() {
                let evals: Vec<EvalVid> = self
                    .vid_ids
                    .iter()
                    .filter_map(|&v| {
                        let cell = self.cells.get(&(v, *cat_id))?;
                        Some(evaluate_vid(cell, &ious[&(v, *cat_id)], *a_rng, &iou_thrs))
                    })
                    .collect();
                if evals.is_empty() {
                    continue;
                }
                for (m, &max_det) in MAX_DETS.iter().enumerate() {
                    let mut entries: Vec<(f64, usize, usize)> = Vec::new();
                    for (e_i, e) in evals.iter().enumerate() {
                        for d in 0..e.dt_scores.len().min(max_det) {
                            entries.push((e.dt_scores[d], e_i, d));
                        }
                    }
                    sort_by_score(&mut entries, |e| e.0);
                    let npig = evals
                        .iter()
                        .flat_map(|e| e.gt_ignore.iter())
                        .filter(|&&ig| !ig)
                        .count();
                    if npig == 0 {
                        continue;
                    }
                    let nd = entries.len();
                    for t in 0..t_n {
                        let (mut tp, mut fp) = (0.0f64, 0.0f64);
                        let mut rc = Vec::with_capacity(nd);
                        let mut pr = Vec::with_capacity(nd);
                        for &(_, e_i, d) in &entries {
                            let e = &evals[e_i];
                            if !e.dt_ignore[t][d] {
                                if e.dt_matched[t][d] {
                                    tp += 1.0;
                                } else {
                                    fp += 1.0;
                                }
                            }
                            rc.push(tp / npig as f64);
                            pr.push(tp / (fp + tp + f64::EPSILON));
                        }
                        recall[r_idx(t, k, a, m)] = rc.last().copied().unwrap_or(0.0);
                        for i in (1..nd).rev() {
                            if pr[i] > pr[i - 1] {
                                pr[i - 1] = pr[i];
                            }
                        }
                        for (ri, &thr) in rec_thrs.iter().enumerate() {
                            let pi = rc.partition_point(|&x| x < thr);
                            // past the last recall reached, `q` keeps its zeros
                            precision[p_idx(t, ri, k, a, m)] = pr.get(pi).copied().unwrap_or(0.0);
                        }
                    }
                }
            }
        }

        let summarize_ap = |thr: Option<usize>, a: usize, m: usize| {
            let mut s = Vec::new();
            for t in 0..t_n {
                if thr.is_some_and(|x| x != t) {
                    continue;
                }
                for r in 0..r_n {
                    for k in 0..k_n {
                        s.push(precision[p_idx(t, r, k, a, m)]);
                    }
                }
            }
            mean_above_minus_one(&s)
        };
        let summarize_ar = |a: usize, m: usize| {
            let mut s = Vec::new();
            for t in 0..t_n {
                for k in 0..k_n {
                    s.push(recall[r_idx(t, k, a, m)]);
                }
            }
            mean_above_minus_one(&s)
        };
        let t50 = iou_thrs.iter().position(|&t| t == 0.5);
        let t75 = iou_thrs.iter().position(|&t| t == 0.75);
        let at_thr = |t: Option<usize>| match t {
            Some(_) => summarize_ap(t, 0, 2),
            None => -1.0,
        };
        let per_category = self
            .cats
            .iter()
            .enumerate()
            .map(|(k, (id, name))| {
                let mut s = Vec::new();
                for t in 0..t_n {
                    for r in 0..r_n {
                        s.push(precision[p_idx(t, r, k, 0, 2)]);
                    }
                }
                let ap = mean_above_minus_one(&s);
                CategoryAp {
                    category_id: *id,
                    name: name.clone(),
                    ap: (ap > -1.0).then_some(ap),
                }
            })
            .collect();
        EvalSummary {
            ap: summarize_ap(None, 0, 2),
            ap50: at_thr(t50),
            ap75: at_thr(t75),
            aps: summarize_ap(None, 1, 2),
            apm: summarize_ap(None, 2, 2),
            apl: summarize_ap(None, 3, 2),
            ar1: summarize_ar(0, 0),
            ar10: summarize_ar(0, 1),
            ar100: summarize_ar(0, 2),
            ars: summarize_ar(1, 2),
            arm: summarize_ar(2, 2),
            arl: summarize_ar(3, 2),
            per_category,
        }
    }
}

/// `computeIoU`: the spatio-temporal IoU of every (detection, ground truth) pair.
fn compute_iou(cell: &Cell) -> Vec<Vec<f64>> {
    cell.dts
        .iter()
        .map(|d| {
            cell.gts
                .iter()
                .map(|g| iou_seq(&d.masks, &g.masks))
                .collect()
        })
        .collect()
}

/// `iou_seq`: intersections and unions summed over the frames where either track is present.
pub fn iou_seq(d_seq: &[Option<Rle>], g_seq: &[Option<Rle>]) -> f64 {
    iou_of_pairs(
        d_seq
            .iter()
            .zip(g_seq)
            .map(|(d, g)| (d.as_ref(), g.as_ref())),
    )
}

/// Spatio-temporal IoU of per-frame mask pairs (absent = empty): intersections over unions,
/// summed over the frames.
pub fn iou_of_pairs<'a>(
    pairs: impl IntoIterator<Item = (Option<&'a Rle>, Option<&'a Rle>)>,
) -> f64 {
    let (mut i, mut u) = (0u64, 0u64);
    for (d, g) in pairs {
        match (d, g) {
            (Some(d), Some(g)) => {
                if let Some((fi, fu)) = Rle::intersection_union(d, g) {
                    i += fi;
                    u += fu;
                }
            }
            (None, Some(g)) => u += g.area(),
            (Some(d), None) => u += d.area(),
            (None, None) => {}
        }
    }
    if u > 0 {
        i as f64 / u as f64
    } else {
        0.0
    }
}

/// `evaluateVid` for one (video, category, area range) with maxDet 100.
fn evaluate_vid(cell: &Cell, ious: &[Vec<f64>], a_rng: [f64; 2], iou_thrs: &[f64]) -> EvalVid {
    let outside = |area: f64| area < a_rng[0] || area > a_rng[1];
    let ignore: Vec<bool> = cell
        .gts
        .iter()
        .map(|g| g.iscrowd || outside(g.avg_area))
        .collect();
    let mut gtind: Vec<usize> = (0..cell.gts.len()).collect();
    gtind.sort_by_key(|&i| ignore[i]);
    let gt_ignore: Vec<bool> = gtind.iter().map(|&i| ignore[i]).collect();
    let iscrowd: Vec<bool> = gtind.iter().map(|&i| cell.gts[i].iscrowd).collect();
    let (nt, nd, ng) = (iou_thrs.len(), cell.dts.len(), gtind.len());
    let mut dt_matched = vec![vec![false; nd]; nt];
    let mut dt_ignore = vec![vec![false; nd]; nt];
    for (t, &thr) in iou_thrs.iter().enumerate() {
        let mut gt_matched = vec![false; ng];
        for d in 0..nd {
            let mut iou = thr.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for gi in 0..ng {
                if gt_matched[gi] && !iscrowd[gi] {
                    continue;
                }
                if m.is_some_and(|mm| !gt_ignore[mm]) && gt_ignore[gi] {
                    break;
                }
                let v = ious[d][gtind[gi]];
                if v < iou {
                    continue;
                }
                iou = v;
                m = Some(gi);
            }
            if let Some(mm) = m {
                dt_ignore[t][d] = gt_ignore[mm];
                dt_matched[t][d] = true;
                gt_matched[mm] = true;
            }
        }
        for d in 0..nd {
            if !dt_matched[t][d] && outside(cell.dts[d].avg_area) {
                dt_ignore[t][d] = true;
            }
        }
    }
    EvalVid {
        dt_scores: cell.dts.iter().map(|d| d.score).collect(),
        dt_matched,
        dt_ignore,
        gt_ignore,
    }
}

/// `np.argsort(-scores, kind='mergesort')`: stable, highest first.
fn sort_by_score<T>(items: &mut [T], score: impl Fn(&T) -> f64) {
    items.sort_by(|a, b| {
        score(b)
            .partial_cmp(&score(a))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// `avg_area` of a track: mean of its non-null, non-zero frame areas, 0 when there are none.
fn average_mask_area(masks: &[Option<Rle>]) -> f64 {
    let l: Vec<f64> = masks
        .iter()
        .flatten()
        .map(|r| r.area() as f64)
        .filter(|&a| a != 0.0)
        .collect();
    mean_or_zero(&l)
}

fn mean_or_zero(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        numpy_sum(values) / values.len() as f64
    }
}

fn mean_above_minus_one(values: &[f64]) -> f64 {
    let kept: Vec<f64> = values.iter().copied().filter(|&v| v > -1.0).collect();
    if kept.is_empty() {
        -1.0
    } else {
        numpy_sum(&kept) / kept.len() as f64
    }
}

/// numpy's `pairwise_sum` for float64 (8-way unrolled blocks of up to 128, halves above), so
/// that means agree with `np.mean` to the last bit.
pub fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

fn check_size(
    r: &Rle,
    video: u64,
    h: u32,
    w: u32,
    file: &str,
    path: &str,
) -> Result<(), YtvisError> {
    if (r.h, r.w) != (h, w) {
        return Err(YtvisError::invalid(
            file,
            format!("{path}.size"),
            format!("[{}, {}] but video {video} is {h}x{w}", r.h, r.w),
        ));
    }
    Ok(())
}

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
}

/// [`TrackQuality`] of `results` against `gt`. Masks that do not decode count as empty.
pub fn track_quality(
    gt: &GroundTruth,
    results: &[VideoResult],
    dup_score: f64,
    dup_iou: f64,
) -> TrackQuality {
    let decode_results = |video: u64| -> Vec<(u64, Vec<Option<Rle>>)> {
        results
            .iter()
            .filter(|r| r.video_id == video)
            .map(|r| {
                let seq = r
                    .segmentations
                    .iter()
                    .map(|s| s.as_ref().and_then(|j| j.to_rle().ok()))
                    .collect();
                (r.category_id, seq)
            })
            .collect()
    };
    let (mut objects, mut right, mut iou_sum) = (0usize, 0usize, 0f64);
    let (mut object_frames, mut oracle_sum, mut oracle_075) = (0usize, 0f64, 0usize);
    let mut id_switches = 0usize;
    for v in &gt.videos {
        let tracks = decode_results(v.id);
        let distinct = distinct_tracks(tracks.iter().map(|(_, d)| d));
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
            let best = tracks.iter().map(|(c, d)| (iou_seq(d, &g), *c)).fold(
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
    }
}
