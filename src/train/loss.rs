//! Losses (paper Eq. 5–6): sigmoid focal classification, L1 and GIoU on boxes, the box
//! deduplication loss (Eq. 4), and the mask dice + focal pair of DETR/IDOL (spec §1.6 [REC]).
//! Every reduction is a sum, divided by the frame's number of ground-truth boxes by the caller.

use candle_core::{DType, Result, Tensor, D};

use crate::model::boxes::iou;

/// Loss weights and parameters (spec §7 rows 18–21).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// λ_cls, the sigmoid focal classification loss's weight. λ_cls, λ_L1, λ_giou and the focal
    /// α, γ weigh the Hungarian matching cost as well.
    pub class: f32,
    /// λ_L1 on normalised boxes.
    pub l1: f32,
    /// λ_giou.
    pub giou: f32,
    /// λ_dedup (0 turns BDL off).
    pub dedup: f32,
    /// The mask dice loss's weight.
    pub dice: f32,
    /// The mask sigmoid focal loss's weight.
    pub mask_focal: f32,
    /// Focal α and γ (classification and mask).
    pub focal_alpha: f32,
    pub focal_gamma: f32,
    /// BDL β.
    pub dedup_beta: f32,
    /// BDL k: negatives per ground-truth box.
    pub dedup_k: usize,
    /// Ours: weight of the auxiliary semantic loss on P2 (0 = off; `train/auxiliary.rs`).
    pub semantic: f32,
    /// Ours: groups of denoising queries per frame (0 = off): jittered ground-truth boxes with
    /// the learned init features, a fixed assignment, class + box + mask losses, run apart from
    /// the matched queries (DN-DETR).
    pub dn_groups: usize,
    /// DN-DETR box noise λ.
    pub dn_box_noise: f32,
    /// Ours: weight of the RoI classifier's cross-entropy at jittered ground-truth boxes (0 =
    /// off; `train/auxiliary.rs`), two jittered boxes per object with λ `dn_box_noise / 2`.
    pub roi_class: f32,
    /// Ours: false trains the trunk alone with the semantic loss (dense pre-training; the
    /// stages, matching and their losses are skipped).
    pub heads: bool,
    /// What a matched query's class is trained towards: `onehot` (1, sigmoid focal loss, the
    /// paper) or `quality` (its mask's IoU with the object, varifocal loss), so that a score
    /// says how good the mask is and a right track scores high.
    pub class_target: ClassTarget,
}

/// `loss.class_target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassTarget {
    /// 1 for the object's class (sigmoid focal loss).
    Onehot,
    /// The matched mask's IoU with the object (varifocal loss, VarifocalNet): positives are
    /// weighted by their target and never down-weighted for being easy; negatives as in focal.
    Quality,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            class: 2.0,
            l1: 5.0,
            giou: 2.0,
            dedup: 1.0,
            dice: 5.0,
            mask_focal: 5.0,
            focal_alpha: 0.25,
            focal_gamma: 2.0,
            dedup_beta: 0.1,
            dedup_k: 5,
            semantic: 0.0,
            dn_groups: 0,
            dn_box_noise: 0.4,
            roi_class: 0.0,
            heads: true,
            class_target: ClassTarget::Onehot,
        }
    }
}

impl LossConfig {
    /// The focal loss's weight of a negative, 1 − α: the varifocal loss weighs its negatives
    /// the same (α = 0.25 here is VarifocalNet's 0.75).
    pub fn focal_alpha_negative(&self) -> f32 {
        1.0 - self.focal_alpha
    }
}

/// 1 / (1 + e^−x) with the backward s·(1 − s). (Composing it from exp and recip gives 0·∞ = NaN
/// in the backward once a logit falls below about −88.)
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::sigmoid(x)
}

/// torchvision `sigmoid_focal_loss(reduction="sum")`: logits and 0/1 targets of one shape.
pub fn sigmoid_focal_loss(
    logits: &Tensor,
    targets: &Tensor,
    alpha: f32,
    gamma: f32,
) -> Result<Tensor> {
    let p = sigmoid(logits)?;
    // Binary cross-entropy with logits, stable: max(x, 0) − x·t + ln(1 + e^−|x|).
    let ce =
        ((logits.relu()? - (logits * targets)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let one_minus_t = (targets.neg()? + 1.0)?;
    let p_t = ((&p * targets)? + ((p.neg()? + 1.0)? * &one_minus_t)?)?;
    let one_minus_pt = (p_t.neg()? + 1.0)?;
    let modulator = if gamma == 2.0 {
        one_minus_pt.sqr()?
    } else {
        one_minus_pt.powf(f64::from(gamma))?
    };
    let loss = (ce * modulator)?;
    let alpha_t = ((targets * f64::from(alpha))? + (one_minus_t * f64::from(1.0 - alpha))?)?;
    (loss * alpha_t)?.sum_all()
}

/// Varifocal loss (VarifocalNet), summed: `targets` holds the quality q in (0, 1] at each
/// positive's class and 0 elsewhere, `positive` is 1 there and 0 elsewhere. A positive costs
/// q·BCE(p, q); a negative α·p^γ·BCE(p, 0). With q = 1 a positive costs plain BCE.
pub fn varifocal_loss(
    logits: &Tensor,
    targets: &Tensor,
    positive: &Tensor,
    alpha: f32,
    gamma: f32,
) -> Result<Tensor> {
    let p = sigmoid(logits)?;
    let ce =
        ((logits.relu()? - (logits * targets)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    let p_gamma = if gamma == 2.0 {
        p.sqr()?
    } else {
        p.powf(f64::from(gamma))?
    };
    let negative = (positive.neg()? + 1.0)?;
    let weight = ((targets * positive)? + ((p_gamma * f64::from(alpha))? * negative)?)?;
    (ce * weight)?.sum_all()
}

/// Intersection over union of each row's mask (logit > 0) with its 0/1 target row, (M, P) each.
pub fn mask_iou_rows(logits: &Tensor, targets: &Tensor) -> Result<Vec<f32>> {
    let pred = logits.detach().to_vec2::<f32>()?;
    let gt = targets.detach().to_vec2::<f32>()?;
    Ok(pred
        .iter()
        .zip(&gt)
        .map(|(p, t)| {
            let (mut inter, mut union) = (0u32, 0u32);
            for (&x, &y) in p.iter().zip(t) {
                let (a, b) = (x > 0.0, y > 0.5);
                inter += u32::from(a && b);
                union += u32::from(a || b);
            }
            if union == 0 {
                0.0
            } else {
                inter as f32 / union as f32
            }
        })
        .collect())
}

/// DETR dice loss 1 − (2Σpt + 1)/(Σp + Σt + 1) per row of (M, P), summed over rows.
pub fn dice_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let p = sigmoid(logits)?;
    let num = (((&p * targets)?.sum(D::Minus1)? * 2.0)? + 1.0)?;
    let den = ((p.sum(D::Minus1)? + targets.sum(D::Minus1)?)? + 1.0)?;
    ((num / den)?.neg()? + 1.0)?.sum_all()
}

/// IDOL mask focal loss: per-pixel sigmoid focal, mean over pixels of each row, summed over rows.
pub fn mask_focal_loss(
    logits: &Tensor,
    targets: &Tensor,
    alpha: f32,
    gamma: f32,
) -> Result<Tensor> {
    let pixels = logits.dim(D::Minus1)? as f64;
    sigmoid_focal_loss(logits, targets, alpha, gamma)? / pixels
}

/// BDL's negatives for one ground-truth box: the `k` unmatched predictions with the largest IoU
/// with it (all of them if fewer), by index into `pred_boxes`.
pub fn dedup_negatives(
    pred_boxes: &[[f32; 4]],
    unmatched: &[usize],
    gt: &[f32; 4],
    k: usize,
) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = unmatched
        .iter()
        .map(|&q| (iou(gt, &pred_boxes[q]), q))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, q)| q).collect()
}

/// Eq. 4 for one ground-truth box b: (1/k) Σ max(β − C²(b, neg)/D²(b), 0), with C the distance of
/// box centres and D the diagonal of b. `negs` (k, 4) carries the gradient; b is constant.
pub fn dedup_loss_one(negs: &Tensor, gt: &[f32; 4], beta: f32) -> Result<Tensor> {
    let k = negs.dim(0)?;
    if k == 0 {
        return Tensor::zeros((), DType::F32, negs.device());
    }
    let (gcx, gcy) = (0.5 * (gt[0] + gt[2]), 0.5 * (gt[1] + gt[3]));
    let d2 = (gt[2] - gt[0]).powi(2) + (gt[3] - gt[1]).powi(2);
    let d2 = f64::from(d2.max(1e-6));
    let cx = ((negs.narrow(1, 0, 1)? + negs.narrow(1, 2, 1)?)? * 0.5)?;
    let cy = ((negs.narrow(1, 1, 1)? + negs.narrow(1, 3, 1)?)? * 0.5)?;
    let c2 = ((cx - f64::from(gcx))?.sqr()? + (cy - f64::from(gcy))?.sqr()?)?;
    let term = ((c2 / d2)?.neg()? + f64::from(beta))?.relu()?;
    term.sum_all()? / k as f64
}
