//! Video AP/AR exactly as `youtubevos/cocoapi: PythonAPI/pycocotools/ytvoseval.py` computes it
//! (`_prepare`, `computeIoU.iou_seq`, `evaluateVid`, `accumulate`, `summarize`), with numpy's
//! summation order where it changes the last bits.

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use super::error::YtvisError;
use super::json::{load_ground_truth, load_results, GroundTruth, VideoResult};
use super::rle::Rle;
pub use super::track_quality::{count_duplicates, track_quality, TrackKind, TrackQuality};

mod prepare;

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
