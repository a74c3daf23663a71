//! The training objective of one clip: the matched queries' losses on every stage, the box
//! deduplication loss, and the training-only signals (semantic, RoI classifier, denoising).

use std::collections::HashSet;

use candle_core::{DType, Tensor};
use serde::Serialize;

use super::auxiliary::{jitter_box, semantic_targets, RoiClassifier, SemanticHead};
use super::loss::{
    dedup_loss_one, dedup_negatives, dice_loss, mask_focal_loss, mask_iou_rows, sigmoid,
    sigmoid_focal_loss, varifocal_loss, ClassTarget, LossConfig,
};
use super::matching::{cost_matrix, MatchCost, TemporalMatcher};
use super::trainer::Mechanisms;
use super::TrainError;
use crate::model::weights::SplitMix64;
use crate::model::{FrameOptions, InsPro, MaskSchedule, StageSchedule};
use crate::runtime::state::clip_box;

/// Loss parts of one clip (summed over stages, averaged over frames), for logs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LossParts {
    pub total: f32,
    pub class: f32,
    pub l1: f32,
    pub giou: f32,
    pub dedup: f32,
    pub dice: f32,
    pub mask_focal: f32,
    /// Ours (0 when off): the auxiliary semantic loss and the denoising queries' losses.
    pub semantic: f32,
    pub roi_class: f32,
    pub dn_class: f32,
    pub dn_box: f32,
    pub dn_mask: f32,
}

impl LossParts {
    /// The mean of each part over `parts` (the workers of one iteration).
    pub fn mean<'a>(parts: impl Iterator<Item = &'a LossParts>) -> LossParts {
        let mut out = LossParts::default();
        let mut n = 0f32;
        for p in parts {
            n += 1.0;
            for (o, v) in out.fields_mut().into_iter().zip(p.fields()) {
                *o += v;
            }
        }
        if n > 0.0 {
            for o in out.fields_mut() {
                *o /= n;
            }
        }
        out
    }

    fn fields(&self) -> [f32; 12] {
        [
            self.total,
            self.class,
            self.l1,
            self.giou,
            self.dedup,
            self.dice,
            self.mask_focal,
            self.semantic,
            self.roi_class,
            self.dn_class,
            self.dn_box,
            self.dn_mask,
        ]
    }

    fn fields_mut(&mut self) -> [&mut f32; 12] {
        [
            &mut self.total,
            &mut self.class,
            &mut self.l1,
            &mut self.giou,
            &mut self.dedup,
            &mut self.dice,
            &mut self.mask_focal,
            &mut self.semantic,
            &mut self.roi_class,
            &mut self.dn_class,
            &mut self.dn_box,
            &mut self.dn_mask,
        ]
    }
}

fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap_or(f32::NAN)
}

/// The loss of one clip; the returned tensor carries the graph for `backward()`.
pub fn clip_loss(
    model: &InsPro,
    clip: &super::data::Clip,
    loss: &LossConfig,
    mech: &Mechanisms,
) -> Result<(Tensor, LossParts), TrainError> {
    clip_loss_with(model, AuxHeads::default(), clip, loss, mech)
}

/// The training-only heads (ours) a loss may use; none by default.
#[derive(Clone, Copy, Default)]
pub struct AuxHeads<'a> {
    pub semantic: Option<&'a SemanticHead>,
    pub roi_class: Option<&'a RoiClassifier>,
}

/// `clip_loss` plus the training-only signals: the semantic loss when `aux.semantic` is given
/// (and `loss.semantic > 0`), the RoI classifier's loss when `aux.roi_class` is given (and
/// `loss.roi_class > 0`), the denoising queries when `loss.dn_groups > 0`.
pub fn clip_loss_with(
    model: &InsPro,
    aux: AuxHeads<'_>,
    clip: &super::data::Clip,
    loss: &LossConfig,
    mech: &Mechanisms,
) -> Result<(Tensor, LossParts), TrainError> {
    let cfg = &model.cfg;
    let mut noise = SplitMix64::new(clip.noise_seed);
    let dev = model.device().clone();
    let (n, c, t) = (cfg.num_queries, cfg.fpn_channels, cfg.bank_size);
    let (w, h) = (clip.width, clip.height);
    let whwh = Tensor::from_vec(vec![w as f32, h as f32, w as f32, h as f32], (1, 4), &dev)?;
    let mut matcher = TemporalMatcher::new(mech.tcm);
    let match_cost = MatchCost {
        class: loss.class,
        l1: loss.l1,
        giou: loss.giou,
        alpha: loss.focal_alpha,
        gamma: loss.focal_gamma,
    };
    let (mut features, mut boxes) = model.initial_proposals(w, h)?;
    let mut bank: Vec<Tensor> = Vec::new();
    let mut total = Tensor::zeros((), DType::F32, &dev)?;
    let mut parts = LossParts::default();
    let frames = clip.images.len().max(1) as f32;
    for (fi, image) in clip.images.iter().enumerate() {
        if !mech.propagate && fi > 0 {
            (features, boxes) = model.initial_proposals(w, h)?;
            bank.clear();
        }
        let filled = bank.len().min(t);
        let mut entries: Vec<Tensor> = bank[bank.len() - filled..].to_vec();
        entries.resize(t, Tensor::zeros((n, c), DType::F32, &dev)?);
        let bank_t = Tensor::stack(&entries, 0)?;
        let valid: Vec<f32> = (0..t).map(|j| f32::from(u8::from(j < filled))).collect();
        let valid = Tensor::from_vec(valid, t, &dev)?;
        let opts = FrameOptions {
            stages: StageSchedule::All,
            masks: MaskSchedule::Every,
            train: true,
        };
        let trunk = model.forward_trunk(image, opts.train)?;
        let gts = &clip.gts[fi];
        let num_boxes = (gts.len() as f32).max(1.0);

        if let (Some(head), true) = (aux.roi_class, loss.roi_class > 0.0 && !gts.is_empty()) {
            let ce = roi_class_loss(model, head, &trunk, gts, loss, &mut noise, (w, h))?;
            total = (total + (&ce * f64::from(loss.roi_class))?)?;
            parts.roi_class += scalar(&ce) / frames;
        }
        if let (Some(head), true) = (aux.semantic, loss.semantic > 0.0) {
            let p2 = &trunk.levels[0];
            let logits = head.forward(p2)?;
            let (_, p2_h, p2_w) = p2.dims3()?;
            let (target, fg) = semantic_targets(
                &clip.gt_masks[fi],
                gts,
                cfg.num_classes,
                (p2_h, p2_w),
                cfg.mask_out_stride,
            )?;
            let sem = (sigmoid_focal_loss(&logits, &target, loss.focal_alpha, loss.focal_gamma)?
                / (fg.max(1) as f64))?;
            total = (total + (&sem * f64::from(loss.semantic))?)?;
            parts.semantic += scalar(&sem) / frames;
        }
        if !loss.heads {
            continue;
        }
        if loss.dn_groups > 0 && !gts.is_empty() {
            let (dn, p) = denoising_loss(
                model,
                &trunk,
                gts,
                &clip.gt_masks[fi],
                loss,
                &mut noise,
                (w, h),
            )?;
            total = (total + dn)?;
            parts.dn_class += p.dn_class / frames;
            parts.dn_box += p.dn_box / frames;
            parts.dn_mask += p.dn_mask / frames;
        }

        let carried = crate::model::inspro::Carried {
            proposal_features: &features,
            proposal_boxes_xyxy: &boxes,
            bank: &bank_t,
            bank_valid: &valid,
        };
        let fwd = model.forward_frame_on(&trunk, &carried, opts)?;
        // One assignment per frame from the last stage, shared by every stage (spec §1.4 [REC]).
        let last = fwd.last()?;
        let probs = sigmoid(&last.class_logits)?.detach().to_vec2::<f32>()?;
        let pred = box_rows(&last.pred_boxes_xyxy)?;
        let cost = cost_matrix(&match_cost, &probs, &pred, gts, [w as f32, h as f32]);
        let pairs = matcher.match_frame(&cost, gts, n);
        let matched: HashSet<usize> = pairs.iter().map(|p| p.0).collect();
        let unmatched: Vec<usize> = (0..n).filter(|q| !matched.contains(q)).collect();
        let q_idx = Tensor::from_vec(
            pairs.iter().map(|p| p.0 as u32).collect::<Vec<_>>(),
            pairs.len(),
            &dev,
        )?;
        let g_idx = Tensor::from_vec(
            pairs.iter().map(|p| p.1 as u32).collect::<Vec<_>>(),
            pairs.len(),
            &dev,
        )?;
        let mut onehot = vec![0f32; n * cfg.num_classes];
        for &(q, g) in &pairs {
            onehot[q * cfg.num_classes + gts[g].class] = 1.0;
        }
        let targets = Tensor::from_vec(onehot, (n, cfg.num_classes), &dev)?;
        let gt_boxes: Vec<f32> = pairs.iter().flat_map(|&(_, g)| gts[g].box_xyxy).collect();
        let gt_boxes = Tensor::from_vec(gt_boxes, (pairs.len(), 4), &dev)?;

        for (stage, masks) in fwd.stages.iter().zip(&fwd.mask_logits) {
            // The matched queries' masks (M, P) and their targets.
            let matched_masks = if pairs.is_empty() {
                None
            } else {
                let (_, hm, wm) = masks.dims3()?;
                let pm = masks.reshape((n, hm * wm))?.index_select(&q_idx, 0)?;
                let tm = clip.gt_masks[fi].index_select(&g_idx, 0)?;
                Some((pm, tm))
            };
            let cls = match (loss.class_target, &matched_masks) {
                (ClassTarget::Quality, Some((pm, tm))) => {
                    let ious = mask_iou_rows(pm, tm)?;
                    let mut quality = vec![0f32; n * cfg.num_classes];
                    for (&(q, g), iou) in pairs.iter().zip(&ious) {
                        quality[q * cfg.num_classes + gts[g].class] = *iou;
                    }
                    let quality = Tensor::from_vec(quality, (n, cfg.num_classes), &dev)?;
                    varifocal_loss(
                        &stage.class_logits,
                        &quality,
                        &targets,
                        loss.focal_alpha_negative(),
                        loss.focal_gamma,
                    )?
                }
                _ => sigmoid_focal_loss(
                    &stage.class_logits,
                    &targets,
                    loss.focal_alpha,
                    loss.focal_gamma,
                )?,
            };
            let cls = (cls / f64::from(num_boxes))?;
            let mut frame_loss = (&cls * f64::from(loss.class))?;
            parts.class += scalar(&cls) / frames;
            if let Some((pm, tm)) = &matched_masks {
                let pb = stage.pred_boxes_xyxy.index_select(&q_idx, 0)?; // (M, 4)
                let (l1, giou) = box_losses(&pb, &gt_boxes, &whwh, f64::from(num_boxes))?;
                let (dice, mfocal) = mask_losses(pm, tm, loss, f64::from(num_boxes))?;
                frame_loss = (frame_loss
                    + (&l1 * f64::from(loss.l1))?
                    + (&giou * f64::from(loss.giou))?
                    + (&dice * f64::from(loss.dice))?
                    + (&mfocal * f64::from(loss.mask_focal))?)?;
                parts.l1 += scalar(&l1) / frames;
                parts.giou += scalar(&giou) / frames;
                parts.dice += scalar(&dice) / frames;
                parts.mask_focal += scalar(&mfocal) / frames;
                if loss.dedup > 0.0 && !unmatched.is_empty() {
                    let stage_pred = box_rows(&stage.pred_boxes_xyxy)?;
                    let mut dedup = Tensor::zeros((), DType::F32, &dev)?;
                    for &(_, g) in &pairs {
                        let negs = dedup_negatives(
                            &stage_pred,
                            &unmatched,
                            &gts[g].box_xyxy,
                            loss.dedup_k,
                        );
                        let idx = Tensor::from_vec(
                            negs.iter().map(|q| *q as u32).collect::<Vec<_>>(),
                            negs.len(),
                            &dev,
                        )?;
                        let nb = stage.pred_boxes_xyxy.index_select(&idx, 0)?;
                        dedup = (dedup + dedup_loss_one(&nb, &gts[g].box_xyxy, loss.dedup_beta)?)?;
                    }
                    let dedup = (dedup / f64::from(num_boxes))?;
                    frame_loss = (frame_loss + (&dedup * f64::from(loss.dedup))?)?;
                    parts.dedup += scalar(&dedup) / frames;
                }
            }
            total = (total + frame_loss)?;
        }
        // Next frame: queries keep their gradient within the clip; boxes are detached and clipped.
        bank.push(last.obj_features.clone());
        features = fwd.next_proposal_features.clone();
        let clipped: Vec<f32> = pred
            .iter()
            .flat_map(|b| clip_box(*b, w as f32, h as f32))
            .collect();
        boxes = Tensor::from_vec(clipped, (n, 4), &dev)?;
    }
    let total = (total / f64::from(frames))?;
    parts.total = scalar(&total);
    Ok((total, parts))
}

/// The RoI classifier's mean cross-entropy on one frame (ours): two jittered copies of every
/// ground-truth box (λ `dn_box_noise / 2`), pooled from the trunk exactly as the heads pool.
fn roi_class_loss(
    model: &InsPro,
    head: &RoiClassifier,
    trunk: &crate::model::Trunk,
    gts: &[super::matching::GtObject],
    loss: &LossConfig,
    noise: &mut SplitMix64,
    (w, h): (usize, usize),
) -> Result<Tensor, TrainError> {
    let dev = model.device().clone();
    let copies = 2;
    let boxes: Vec<f32> = (0..copies)
        .flat_map(|_| gts.iter())
        .flat_map(|o| {
            jitter_box(
                o.box_xyxy,
                0.5 * loss.dn_box_noise,
                noise,
                w as f32,
                h as f32,
            )
        })
        .collect();
    let n = boxes.len() / 4;
    let boxes = Tensor::from_vec(boxes, (n, 4), &dev)?;
    let labels: Vec<u32> = (0..copies)
        .flat_map(|_| gts.iter().map(|o| o.class as u32))
        .collect();
    let labels = Tensor::from_vec(labels, n, &dev)?;
    let logits = head.forward(&model.pool_rois(trunk, &boxes)?)?;
    Ok(candle_nn::loss::cross_entropy(&logits, &labels)?)
}

/// The denoising queries of one frame (DN-DETR, ours): `loss.dn_groups` groups, each holding a
/// jittered copy of every ground-truth box with learned init features (row j mod N for box j),
/// bound to that box. Each group runs through every stage on its own (its queries attend only to
/// each other, never to the matched queries) and gets class + L1 + GIoU on every stage and dice +
/// mask focal on the last, normalised by the frame's boxes and the group count.
fn denoising_loss(
    model: &InsPro,
    trunk: &crate::model::Trunk,
    gts: &[super::matching::GtObject],
    gt_masks: &Tensor,
    loss: &LossConfig,
    noise: &mut SplitMix64,
    (w, h): (usize, usize),
) -> Result<(Tensor, LossParts), TrainError> {
    let cfg = &model.cfg;
    let dev = model.device().clone();
    let g = gts.len();
    let norm = f64::from(g.max(1) as f32) * loss.dn_groups as f64;
    let whwh = Tensor::from_vec(vec![w as f32, h as f32, w as f32, h as f32], (1, 4), &dev)?;
    let (init, _) = model.initial_proposals(w, h)?;
    let mut onehot = vec![0f32; g * cfg.num_classes];
    for (j, o) in gts.iter().enumerate() {
        onehot[j * cfg.num_classes + o.class] = 1.0;
    }
    let targets = Tensor::from_vec(onehot, (g, cfg.num_classes), &dev)?;
    let gt_boxes: Vec<f32> = gts.iter().flat_map(|o| o.box_xyxy).collect();
    let gt_boxes = Tensor::from_vec(gt_boxes, (g, 4), &dev)?;
    let mut total = Tensor::zeros((), DType::F32, &dev)?;
    let mut parts = LossParts::default();
    for group in 0..loss.dn_groups {
        let rows: Vec<u32> = (0..g)
            .map(|j| ((j + group * g) % cfg.num_queries) as u32)
            .collect();
        let feats = init.index_select(&Tensor::from_vec(rows, g, &dev)?, 0)?;
        let jittered: Vec<f32> = gts
            .iter()
            .flat_map(|o| jitter_box(o.box_xyxy, loss.dn_box_noise, noise, w as f32, h as f32))
            .collect();
        let boxes = Tensor::from_vec(jittered, (g, 4), &dev)?;
        let opts = FrameOptions {
            stages: StageSchedule::All,
            masks: MaskSchedule::Last,
            train: true,
        };
        let (stages, masks) = model.forward_stages(trunk, &feats, &boxes, opts)?;
        for stage in &stages {
            let cls = (sigmoid_focal_loss(
                &stage.class_logits,
                &targets,
                loss.focal_alpha,
                loss.focal_gamma,
            )? / norm)?;
            let pb = &stage.pred_boxes_xyxy;
            let (l1, giou) = box_losses(pb, &gt_boxes, &whwh, norm)?;
            total = (total
                + (&cls * f64::from(loss.class))?
                + (&l1 * f64::from(loss.l1))?
                + (&giou * f64::from(loss.giou))?)?;
            parts.dn_class += scalar(&cls);
            parts.dn_box += scalar(&l1) + scalar(&giou);
        }
        if let Some(m) = masks.last() {
            let (_, hm, wm) = m.dims3()?;
            let pm = m.reshape((g, hm * wm))?;
            let (dice, mfocal) = mask_losses(&pm, gt_masks, loss, norm)?;
            total = (total
                + (&dice * f64::from(loss.dice))?
                + (&mfocal * f64::from(loss.mask_focal))?)?;
            parts.dn_mask += scalar(&dice) + scalar(&mfocal);
        }
    }
    Ok((total, parts))
}

/// `(N, 4)` boxes as rows, detached from the graph.
fn box_rows(boxes: &Tensor) -> Result<Vec<[f32; 4]>, TrainError> {
    Ok(boxes
        .detach()
        .to_vec2::<f32>()?
        .iter()
        .map(|b| [b[0], b[1], b[2], b[3]])
        .collect())
}

/// L1 on boxes normalised by the frame size (`whwh`) and 1 - GIoU, each summed over the pairs
/// of `pred` and `gt` and divided by `norm`.
fn box_losses(
    pred: &Tensor,
    gt: &Tensor,
    whwh: &Tensor,
    norm: f64,
) -> Result<(Tensor, Tensor), TrainError> {
    let l1 = ((pred.broadcast_div(whwh)? - gt.broadcast_div(whwh)?)?
        .abs()?
        .sum_all()?
        / norm)?;
    let giou = ((crate::model::boxes::giou_tensor(pred, gt)?.neg()? + 1.0)?.sum_all()? / norm)?;
    Ok((l1, giou))
}

/// Dice and mask focal losses of flattened mask logits against their targets, divided by
/// `norm`.
fn mask_losses(
    pred: &Tensor,
    target: &Tensor,
    loss: &LossConfig,
    norm: f64,
) -> Result<(Tensor, Tensor), TrainError> {
    let dice = (dice_loss(pred, target)? / norm)?;
    let mfocal = (mask_focal_loss(pred, target, loss.focal_alpha, loss.focal_gamma)? / norm)?;
    Ok((dice, mfocal))
}
