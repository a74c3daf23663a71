//! Temporally consistent matching (paper §3.3): on a clip's first frame the Sparse R-CNN
//! Hungarian matcher (cost 2·focal + 5·L1 + 2·GIoU) binds ground-truth objects to queries; on later
//! frames an object keeps its query, newcomers are matched to still-free queries only, and the
//! query of an object that vanished stays reserved (background targets while it is absent).

use std::collections::HashMap;

use super::assign::linear_sum_assignment;
use crate::model::boxes::giou;

/// Sparse R-CNN matcher weights and focal parameters.
#[derive(Debug, Clone, Copy)]
pub struct MatchCost {
    pub class: f32,
    pub l1: f32,
    pub giou: f32,
    pub alpha: f32,
    pub gamma: f32,
}

impl Default for MatchCost {
    fn default() -> Self {
        Self {
            class: 2.0,
            l1: 5.0,
            giou: 2.0,
            alpha: 0.25,
            gamma: 2.0,
        }
    }
}

/// One ground-truth object on one frame.
#[derive(Debug, Clone)]
pub struct GtObject {
    /// Identity across the clip (the annotation id).
    pub track: u64,
    /// Class index (0-based).
    pub class: usize,
    /// xyxy in network-input pixels.
    pub box_xyxy: [f32; 4],
}

/// Cost matrix (G x N), row-major: `probs` (N x K) sigmoid class probabilities, `pred_boxes` (N)
/// xyxy, `image_wh` the unpadded input size for the L1 normalisation.
pub fn cost_matrix(
    w: &MatchCost,
    probs: &[Vec<f32>],
    pred_boxes: &[[f32; 4]],
    gts: &[GtObject],
    image_wh: [f32; 2],
) -> Vec<f32> {
    let n = probs.len();
    let mut cost = Vec::with_capacity(gts.len() * n);
    let norm = [image_wh[0], image_wh[1], image_wh[0], image_wh[1]];
    for g in gts {
        for i in 0..n {
            let p = probs[i].get(g.class).copied().unwrap_or(0.0);
            let neg = (1.0 - w.alpha) * p.powf(w.gamma) * -((1.0 - p + 1e-8).ln());
            let pos = w.alpha * (1.0 - p).powf(w.gamma) * -((p + 1e-8).ln());
            let l1: f32 = (0..4)
                .map(|k| (pred_boxes[i][k] / norm[k] - g.box_xyxy[k] / norm[k]).abs())
                .sum();
            let gi = giou(&pred_boxes[i], &g.box_xyxy);
            cost.push(w.class * (pos - neg) + w.l1 * l1 - w.giou * gi);
        }
    }
    cost
}

/// Query ↔ object bindings of one clip.
#[derive(Debug, Clone, Default)]
pub struct TemporalMatcher {
    /// Track → query, kept for the whole clip once made.
    bound: HashMap<u64, usize>,
    /// Off for the ablation without TCM: every frame is matched afresh over all queries.
    pub consistent: bool,
}

impl TemporalMatcher {
    pub fn new(consistent: bool) -> Self {
        Self {
            bound: HashMap::new(),
            consistent,
        }
    }

    /// Queries bound to an object, present or not.
    pub fn bound_queries(&self) -> impl Iterator<Item = usize> + '_ {
        self.bound.values().copied()
    }

    /// Match one frame. `cost` is (G x N) for `gts`. Returns (query, gt index) pairs; queries not
    /// in the result get background targets (this includes reserved queries of absent objects).
    pub fn match_frame(&mut self, cost: &[f32], gts: &[GtObject], n: usize) -> Vec<(usize, usize)> {
        if !self.consistent {
            return linear_sum_assignment(cost, gts.len(), n)
                .into_iter()
                .map(|(g, q)| (q, g))
                .collect();
        }
        let mut pairs = Vec::with_capacity(gts.len());
        let mut newcomers = Vec::new();
        for (gi, g) in gts.iter().enumerate() {
            match self.bound.get(&g.track) {
                Some(&q) => pairs.push((q, gi)),
                None => newcomers.push(gi),
            }
        }
        if !newcomers.is_empty() {
            let taken: std::collections::HashSet<usize> = self.bound.values().copied().collect();
            let free: Vec<usize> = (0..n).filter(|q| !taken.contains(q)).collect();
            let sub: Vec<f32> = newcomers
                .iter()
                .flat_map(|&gi| free.iter().map(move |&q| cost[gi * n + q]))
                .collect();
            for (r, c) in linear_sum_assignment(&sub, newcomers.len(), free.len()) {
                let (gi, q) = (newcomers[r], free[c]);
                self.bound.insert(gts[gi].track, q);
                pairs.push((q, gi));
            }
        }
        pairs.sort_unstable();
        pairs
    }
}
