//! Box arithmetic on host values (matching, BDL's choice of negatives, track reuse) and on tensors (losses).

use candle_core::{Result, Tensor};

pub fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Generalised IoU (Rezatofighi et al.), 0 guards for degenerate boxes.
pub fn giou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    let hull =
        (a[2].max(b[2]) - a[0].min(b[0])).max(0.0) * (a[3].max(b[3]) - a[1].min(b[1])).max(0.0);
    if union <= 0.0 || hull <= 0.0 {
        return 0.0;
    }
    inter / union - (hull - union) / hull
}

/// GIoU of matching rows of (M, 4) tensors, differentiable in both. Returns (M).
pub fn giou_tensor(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let c = |t: &Tensor, i: usize| t.narrow(1, i, 1);
    let (ax1, ay1, ax2, ay2) = (c(a, 0)?, c(a, 1)?, c(a, 2)?, c(a, 3)?);
    let (bx1, by1, bx2, by2) = (c(b, 0)?, c(b, 1)?, c(b, 2)?, c(b, 3)?);
    let area_a = ((&ax2 - &ax1)?.relu()? * (&ay2 - &ay1)?.relu()?)?;
    let area_b = ((&bx2 - &bx1)?.relu()? * (&by2 - &by1)?.relu()?)?;
    let iw = (ax2.minimum(&bx2)? - ax1.maximum(&bx1)?)?.relu()?;
    let ih = (ay2.minimum(&by2)? - ay1.maximum(&by1)?)?.relu()?;
    let inter = (iw * ih)?;
    let union = ((area_a + area_b)? - &inter)?;
    let hw = (ax2.maximum(&bx2)? - ax1.minimum(&bx1)?)?.relu()?;
    let hh = (ay2.maximum(&by2)? - ay1.minimum(&by1)?)?.relu()?;
    let hull = (hw * hh)?;
    let eps = 1e-7;
    let iou = (&inter / (&union + eps)?)?;
    let penalty = ((&hull - &union)? / (&hull + eps)?)?;
    (iou - penalty)?.squeeze(1)
}
