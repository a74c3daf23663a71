//! The trainer (paper §3.3–3.4, §4.2): clips of 3 frames through the state loop with gradients
//! kept through the queries, temporally consistent matching on the last stage shared by every
//! stage, deep supervision, AdamW with warm-up and steps, checkpoints with optimiser moments, and
//! evaluation with the official video AP.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::auxiliary::{jitter_box, semantic_targets, RoiClassifier, SemanticHead, AUX_PREFIX};
use super::data::SynthStream;
use super::data::{ClipConfig, Dataset};
use super::loss::{
    dedup_loss_one, dedup_negatives, dice_loss, mask_focal_loss, sigmoid, sigmoid_focal_loss,
    LossConfig,
};
use super::matching::{cost_matrix, MatchCost, TemporalMatcher};
use super::optim::{AdamW, Ema, OptimConfig};
use super::TrainError;
use crate::model::backbone::is_frozen_param;
use crate::model::weights::SplitMix64;
use crate::model::{FrameOptions, FrameRef, InsPro, MaskSchedule, ModelConfig, StageSchedule};
use crate::tracking::state::clip_box;
use crate::tracking::{ResultOptions, VideoAccumulator};
use crate::ytvis::eval::{track_quality, TrackQuality};
use crate::ytvis::{EvalSummary, SynthOptions};

/// The mechanisms the paper ablates (Table 2a–c).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mechanisms {
    /// Propagate (query, box) pairs to the next frame; off = every frame starts from the learned
    /// init (ablation A).
    pub propagate: bool,
    /// Temporally consistent matching; off = Hungarian afresh on every frame (ablation B).
    pub tcm: bool,
}

impl Default for Mechanisms {
    fn default() -> Self {
        Self {
            propagate: true,
            tcm: true,
        }
    }
}

/// A synthetic split generated when its folder is missing (`inspro synth` options).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthSpec {
    pub videos: usize,
    pub frames: usize,
    pub size: [u32; 2],
    pub seed: u64,
    pub objects: [usize; 2],
    pub lookalikes: f64,
    pub occlusion: f64,
    pub enter_leave: f64,
    pub speed: f64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        let d = SynthOptions::default();
        Self {
            videos: 40,
            frames: 24,
            size: [320, 192],
            seed: 1,
            objects: [d.min_objects, d.max_objects],
            lookalikes: d.lookalikes,
            occlusion: d.occlusion,
            enter_leave: d.enter_leave,
            speed: d.speed,
        }
    }
}

impl SynthSpec {
    pub fn options(&self) -> SynthOptions {
        SynthOptions {
            videos: self.videos,
            frames: self.frames,
            width: self.size[0],
            height: self.size[1],
            seed: self.seed,
            min_objects: self.objects[0],
            max_objects: self.objects[1],
            lookalikes: self.lookalikes,
            occlusion: self.occlusion,
            enter_leave: self.enter_leave,
            speed: self.speed,
            ..SynthOptions::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// YouTube-VIS layout folder (JPEGImages/ + `instances.json` unless `train_gt` is given);
    /// unused with `synth_stream`.
    #[serde(default)]
    pub train: PathBuf,
    pub train_gt: Option<PathBuf>,
    pub val: Option<PathBuf>,
    pub val_gt: Option<PathBuf>,
    /// Generate the training split with these options when `train` does not exist.
    pub synth_train: Option<SynthSpec>,
    pub synth_val: Option<SynthSpec>,
    /// Train on synthetic videos made on the fly instead of `train` (ours): clip i comes from
    /// video i of this stream (`videos` is ignored).
    #[serde(default)]
    pub synth_stream: Option<SynthSpec>,
}

/// `configs/train/<name>.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model config (TOML), relative to the working directory.
    pub model: PathBuf,
    /// Overrides of the model config (e.g. `bank_size` for ablations).
    #[serde(default)]
    pub model_bank_size: Option<usize>,
    /// Override of the model config's `propagate` (the "no propagation" ablation).
    #[serde(default)]
    pub model_propagate: Option<bool>,
    pub out_dir: PathBuf,
    pub iterations: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Evaluate on the validation split every N iterations (0 = only at the end).
    #[serde(default)]
    pub eval_every: usize,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    pub data: DataConfig,
    #[serde(default)]
    pub clip: ClipConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub loss: LossConfig,
    #[serde(default)]
    pub mechanisms: Mechanisms,
    /// Start from these weights instead of the random init (e.g. a trunk pre-trained with
    /// `loss.heads = false`): every variable the file holds with the same shape is taken, the
    /// rest stay random. Training-only variables come from `<stem>.aux.safetensors` beside it.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Key prefixes renamed when reading `init` (`"old." = "new."`, all applied to the file's
    /// names at once): e.g. a stride-8 mask branch's `refine.0..2` (P3..P5) become `refine.1..3`
    /// of a stride-4 branch, whose `refine.0` (P2) starts random.
    #[serde(default)]
    pub init_rename: std::collections::BTreeMap<String, String>,
    /// A linear probe of the RoI features at every evaluation (`train/probe.rs`).
    #[serde(default)]
    pub probe: Option<super::probe::ProbeConfig>,
    /// Data-parallel workers (ours): each iteration takes one clip per worker, computes the
    /// workers' losses and gradients on their own threads, averages the gradients and makes one
    /// optimiser step. Clip j of iteration i is clip `i·workers + j` of the run.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_workers() -> usize {
    1
}

fn default_log_every() -> usize {
    20
}

fn default_checkpoint_every() -> usize {
    500
}

impl TrainConfig {
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Data {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let cfg: Self = toml::from_str(&text).map_err(|e| TrainError::Config {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if cfg.iterations == 0 {
            return Err(TrainError::Config {
                file: path.display().to_string(),
                reason: "iterations: must be at least 1".into(),
            });
        }
        Ok(cfg)
    }

    pub fn model_config(&self) -> Result<ModelConfig, TrainError> {
        let mut cfg = ModelConfig::from_file(&self.model)?;
        if let Some(t) = self.model_bank_size {
            cfg.bank_size = t;
        }
        if let Some(p) = self.model_propagate {
            cfg.propagate = p;
        }
        Ok(cfg)
    }
}

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
            let logits = head.forward(&trunk.levels[0])?;
            let (target, fg) = semantic_targets(&clip.gt_masks[fi], gts, cfg.num_classes)?;
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

        let fwd = model.forward_frame_on(&trunk, &features, &boxes, &bank_t, &valid, opts)?;
        // One assignment per frame from the last stage, shared by every stage (spec §1.4 [REC]).
        let last = fwd.last()?;
        let probs = sigmoid(&last.class_logits)?.detach().to_vec2::<f32>()?;
        let pred: Vec<[f32; 4]> = last
            .pred_boxes_xyxy
            .detach()
            .to_vec2::<f32>()?
            .iter()
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect();
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
            let cls = (sigmoid_focal_loss(
                &stage.class_logits,
                &targets,
                loss.focal_alpha,
                loss.focal_gamma,
            )? / f64::from(num_boxes))?;
            let mut frame_loss = (&cls * f64::from(loss.class))?;
            parts.class += scalar(&cls) / frames;
            if !pairs.is_empty() {
                let pb = stage.pred_boxes_xyxy.index_select(&q_idx, 0)?; // (M, 4)
                let l1 = ((pb.broadcast_div(&whwh)? - gt_boxes.broadcast_div(&whwh)?)?
                    .abs()?
                    .sum_all()?
                    / f64::from(num_boxes))?;
                let giou = ((crate::model::boxes::giou_tensor(&pb, &gt_boxes)?.neg()? + 1.0)?
                    .sum_all()?
                    / f64::from(num_boxes))?;
                let (_, hm, wm) = masks.dims3()?;
                let pm = masks.reshape((n, hm * wm))?.index_select(&q_idx, 0)?;
                let tm = clip.gt_masks[fi].index_select(&g_idx, 0)?;
                let dice = (dice_loss(&pm, &tm)? / f64::from(num_boxes))?;
                let mfocal = (mask_focal_loss(&pm, &tm, loss.focal_alpha, loss.focal_gamma)?
                    / f64::from(num_boxes))?;
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
                    let stage_pred: Vec<[f32; 4]> = stage
                        .pred_boxes_xyxy
                        .detach()
                        .to_vec2::<f32>()?
                        .iter()
                        .map(|b| [b[0], b[1], b[2], b[3]])
                        .collect();
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
            let l1 = ((pb.broadcast_div(&whwh)? - gt_boxes.broadcast_div(&whwh)?)?
                .abs()?
                .sum_all()?
                / norm)?;
            let giou = ((crate::model::boxes::giou_tensor(pb, &gt_boxes)?.neg()? + 1.0)?
                .sum_all()?
                / norm)?;
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
            let dice = (dice_loss(&pm, gt_masks)? / norm)?;
            let mfocal =
                (mask_focal_loss(&pm, gt_masks, loss.focal_alpha, loss.focal_gamma)? / norm)?;
            total = (total
                + (&dice * f64::from(loss.dice))?
                + (&mfocal * f64::from(loss.mask_focal))?)?;
            parts.dn_mask += scalar(&dice) + scalar(&mfocal);
        }
    }
    Ok((total, parts))
}

/// Sets every variable of `varmap` that `path` (and its `.aux.safetensors` sibling) holds with
/// the same shape, after renaming the file's keys by the longest matching prefix of `rename`;
/// returns how many were set.
pub fn init_from(
    varmap: &VarMap,
    path: &Path,
    rename: &std::collections::BTreeMap<String, String>,
    device: &Device,
) -> Result<usize, TrainError> {
    let mut tensors =
        candle_core::safetensors::load(path, device).map_err(|e| TrainError::Data {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let aux = path.with_extension("aux.safetensors");
    if aux.exists() {
        tensors.extend(candle_core::safetensors::load(&aux, device)?);
    }
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| {
            let renamed = rename
                .iter()
                .filter(|(from, _)| k.starts_with(from.as_str()))
                .max_by_key(|(from, _)| from.len())
                .map(|(from, to)| format!("{to}{}", &k[from.len()..]));
            (renamed.unwrap_or(k), t)
        })
        .collect();
    let vars = varmap.data().lock().map_err(|_| TrainError::Config {
        file: path.display().to_string(),
        reason: "variable map lock poisoned".into(),
    })?;
    let mut taken = 0;
    for (k, var) in vars.iter() {
        if let Some(t) = tensors.get(k) {
            if t.dims() == var.dims() {
                var.set(t)?;
                taken += 1;
            }
        }
    }
    Ok(taken)
}

/// Names of parameters the optimiser updates.
pub fn trainable_params(cfg: &ModelConfig, varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().map(|d| d.clone()).unwrap_or_default();
    let mut out: Vec<(String, candle_core::Var)> = data
        .into_iter()
        .filter(|(k, _)| {
            !(k.ends_with(".running_mean")
                || k.ends_with(".running_var")
                || is_frozen_param(k, cfg.backbone))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Run the model over in-memory videos and score them with the official video AP.
pub fn evaluate_dataset(
    model: &InsPro,
    data: &Dataset,
    max_videos: usize,
) -> Result<(EvalSummary, TrackQuality), TrainError> {
    let mut results = Vec::new();
    let mut gt = data.gt.clone();
    let keep: HashSet<u64> = data.videos.iter().take(max_videos).map(|v| v.id).collect();
    gt.videos.retain(|v| keep.contains(&v.id));
    gt.annotations.retain(|a| keep.contains(&a.video_id));
    for v in data.videos.iter().filter(|v| keep.contains(&v.id)) {
        let mut state = model.init_state(v.width, v.height)?;
        let mut acc = VideoAccumulator::new();
        for f in &v.frames {
            let out = model.step(&FrameRef::packed(v.width, v.height, f), &mut state)?;
            acc.add(&out);
        }
        results.extend(acc.finish(v.id, &data.category_ids, &ResultOptions::default()));
    }
    let quality = track_quality(&gt, &results, 0.5, 0.5);
    Ok((crate::ytvis::evaluate(&gt, &results)?, quality))
}

/// What a checkpoint holds besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Iterations done.
    pub iteration: usize,
    pub optimizer_step: usize,
    /// Data-sampler PRNG state.
    pub rng_state: u64,
}

/// Weights, optimiser moments and trainer state under `dir/<name>.{safetensors,optim.safetensors,json}`.
pub fn save_checkpoint(
    dir: &Path,
    name: &str,
    varmap: &VarMap,
    opt: &AdamW,
    state: &TrainerState,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let weights = dir.join(format!("{name}.safetensors"));
    // The weights file holds the model's keys only; training-only variables go beside it.
    let data = varmap.data().lock().map(|d| d.clone()).unwrap_or_default();
    let (aux, model): (HashMap<_, _>, HashMap<_, _>) = data
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .partition(|(k, _)| k.starts_with(AUX_PREFIX));
    candle_core::safetensors::save(&model, &weights)?;
    let aux_path = dir.join(format!("{name}.aux.safetensors"));
    if aux.is_empty() {
        std::fs::remove_file(&aux_path).ok();
    } else {
        candle_core::safetensors::save(&aux, &aux_path)?;
    }
    candle_core::safetensors::save(
        &opt.state_tensors(),
        dir.join(format!("{name}.optim.safetensors")),
    )?;
    let json = serde_json::to_string_pretty(state).map_err(|e| TrainError::Config {
        file: name.into(),
        reason: e.to_string(),
    })?;
    let p = dir.join(format!("{name}.json"));
    std::fs::write(&p, json).map_err(|e| TrainError::io(&p, e))?;
    Ok(weights)
}

/// The model + optimiser + sampler, step by step (what `inspro train` drives).
pub struct Trainer {
    pub cfg: TrainConfig,
    pub model_cfg: ModelConfig,
    pub model: InsPro,
    pub varmap: VarMap,
    pub opt: AdamW,
    pub rng: SplitMix64,
    pub iteration: usize,
    pub train: ClipSource,
    /// The auxiliary semantic head (ours) when `loss.semantic > 0`.
    pub semantic: Option<SemanticHead>,
    /// The auxiliary RoI classifier (ours) when `loss.roi_class > 0`.
    pub roi_class: Option<RoiClassifier>,
    /// The moving average of the weights (ours) when `optim.ema > 0`.
    pub ema: Option<Ema>,
    pub device: Device,
}

/// Where training clips come from.
pub enum ClipSource {
    /// A fixed set of videos in memory.
    Videos(Dataset),
    /// Synthetic videos made on the fly, one per clip.
    Stream(SynthStream),
}

impl Trainer {
    pub fn new(cfg: TrainConfig, train: Dataset, device: &Device) -> Result<Self, TrainError> {
        Self::with_source(cfg, ClipSource::Videos(train), device)
    }

    /// A trainer whose clips come from the config's `data.synth_stream`.
    pub fn streaming(cfg: TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let spec = cfg
            .data
            .synth_stream
            .clone()
            .ok_or_else(|| TrainError::Config {
                file: "data.synth_stream".into(),
                reason: "the config has no synth_stream section".into(),
            })?;
        let mut opts = spec.options();
        opts.frames = opts.frames.max(cfg.clip.frames);
        let stream = SynthStream::new(opts, &cfg.model_config()?, 0)?;
        Self::with_source(cfg, ClipSource::Stream(stream), device)
    }

    pub fn with_source(
        cfg: TrainConfig,
        train: ClipSource,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let model_cfg = cfg.model_config()?;
        let (model, varmap) = InsPro::random(&model_cfg, cfg.seed, device)?;
        let semantic = if cfg.loss.semantic > 0.0 {
            let vb = crate::model::weights::seeded_var_builder(cfg.seed ^ 0xa0c5, &varmap, device);
            Some(SemanticHead::new(&model_cfg, vb)?)
        } else {
            None
        };
        let roi_class = if cfg.loss.roi_class > 0.0 {
            let vb = crate::model::weights::seeded_var_builder(cfg.seed ^ 0x0c1a, &varmap, device);
            Some(RoiClassifier::new(&model_cfg, vb)?)
        } else {
            None
        };
        if let Some(path) = &cfg.init {
            let taken = init_from(&varmap, path, &cfg.init_rename, device)?;
            tracing::info!(file = %path.display(), variables = taken, "initialised from weights");
        }
        let opt = AdamW::new(cfg.optim, trainable_params(&model_cfg, &varmap));
        // The average covers the model's weights; the training-only heads are never scored.
        let ema = if cfg.optim.ema > 0.0 {
            let model_params: Vec<_> = opt
                .params()
                .iter()
                .filter(|(k, _)| !k.starts_with(AUX_PREFIX))
                .cloned()
                .collect();
            Some(Ema::new(cfg.optim.ema, &model_params)?)
        } else {
            None
        };
        Ok(Self {
            semantic,
            roi_class,
            ema,
            rng: SplitMix64::new(cfg.seed ^ 0x5eed_c11b),
            cfg,
            model_cfg,
            model,
            varmap,
            opt,
            iteration: 0,
            train,
            device: device.clone(),
        })
    }

    /// Continue from `dir/<name>` written by `save_checkpoint`.
    pub fn resume(&mut self, dir: &Path, name: &str) -> Result<(), TrainError> {
        let weights = dir.join(format!("{name}.safetensors"));
        let mut tensors = candle_core::safetensors::load(&weights, &self.device)?;
        let aux_path = dir.join(format!("{name}.aux.safetensors"));
        if aux_path.exists() {
            tensors.extend(candle_core::safetensors::load(&aux_path, &self.device)?);
        }
        {
            let vars = self.varmap.data().lock().map_err(|_| TrainError::Config {
                file: name.into(),
                reason: "lock".into(),
            })?;
            for (k, var) in vars.iter() {
                let t = tensors.get(k).ok_or_else(|| TrainError::Data {
                    file: weights.display().to_string(),
                    reason: format!("missing weight `{k}`"),
                })?;
                var.set(t)?;
            }
        }
        let optim = candle_core::safetensors::load(
            dir.join(format!("{name}.optim.safetensors")),
            &self.device,
        )?;
        let p = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&p).map_err(|e| TrainError::io(&p, e))?;
        let st: TrainerState = serde_json::from_str(&text).map_err(|e| TrainError::Config {
            file: p.display().to_string(),
            reason: e.to_string(),
        })?;
        self.opt.load_state_tensors(optim, st.optimizer_step);
        if let Some(ema) = &mut self.ema {
            let p = dir.join(format!("{name}.ema.safetensors"));
            let avg =
                candle_core::safetensors::load(&p, &self.device).map_err(|e| TrainError::Data {
                    file: p.display().to_string(),
                    reason: e.to_string(),
                })?;
            ema.load(&avg, st.optimizer_step)?;
        }
        self.rng = SplitMix64::from_state(st.rng_state);
        self.iteration = st.iteration;
        Ok(())
    }

    pub fn state(&self) -> TrainerState {
        TrainerState {
            iteration: self.iteration,
            optimizer_step: self.opt.step,
            rng_state: self.rng.state(),
        }
    }

    /// Clip `index` of the run: of the in-memory videos (the sampler's PRNG decides), or video
    /// `index` of the synthetic stream.
    pub fn next_clip(&mut self, index: usize) -> Result<super::data::Clip, TrainError> {
        match &mut self.train {
            ClipSource::Videos(data) => {
                data.sample_clip(&self.model_cfg, &self.cfg.clip, &mut self.rng, &self.device)
            }
            ClipSource::Stream(stream) => {
                let video = stream.video(index)?;
                super::data::sample_clip_from(
                    &video,
                    &self.model_cfg,
                    &self.cfg.clip,
                    &mut self.rng,
                    &self.device,
                )
            }
        }
    }

    /// One iteration: sample a clip per worker, losses and backward (on the workers' threads
    /// when there are several), the mean gradient, clip, AdamW. Returns the mean loss parts, the
    /// gradient norm and the lr used.
    pub fn step(&mut self) -> Result<(LossParts, f64, f64), TrainError> {
        let workers = self.cfg.workers.max(1);
        let mut clips = Vec::with_capacity(workers);
        for j in 0..workers {
            clips.push(self.next_clip(self.iteration * workers + j)?);
        }
        let aux = AuxHeads {
            semantic: self.semantic.as_ref(),
            roi_class: self.roi_class.as_ref(),
        };
        let (model, loss_cfg, mech, iteration) = (
            &self.model,
            &self.cfg.loss,
            &self.cfg.mechanisms,
            self.iteration,
        );
        let one = |clip: &super::data::Clip| -> Result<(GradStore, LossParts), TrainError> {
            let (loss, parts) = clip_loss_with(model, aux, clip, loss_cfg, mech)?;
            if !parts.total.is_finite() {
                return Err(TrainError::NonFinite {
                    iteration,
                    video: clip.video_id,
                });
            }
            Ok((loss.backward()?, parts))
        };
        let mut results: Vec<(GradStore, LossParts)> = if workers == 1 {
            vec![one(&clips[0])?]
        } else {
            // Each worker runs candle's parallel kernels on a one-thread pool of its own, so
            // the workers do not queue behind each other on the global pool.
            std::thread::scope(|scope| {
                let handles: Vec<_> = clips
                    .iter()
                    .map(|clip| {
                        scope.spawn(move || {
                            let pool = rayon::ThreadPoolBuilder::new()
                                .num_threads(1)
                                .build()
                                .map_err(|e| TrainError::Config {
                                    file: "workers".into(),
                                    reason: format!("thread pool: {e}"),
                                })?;
                            pool.install(|| one(clip))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(TrainError::Config {
                                file: "workers".into(),
                                reason: "a training worker panicked".into(),
                            })
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })?
        };
        let parts = LossParts::mean(results.iter().map(|r| &r.1));
        let (mut grads, _) = results.remove(0);
        if workers > 1 {
            for (_, var) in self.opt.params() {
                let t = var.as_tensor();
                let mut sum = grads.remove(t);
                for (other, _) in &results {
                    if let Some(g) = other.get(t) {
                        sum = Some(match sum {
                            Some(s) => (s + g)?,
                            None => g.clone(),
                        });
                    }
                }
                if let Some(sum) = sum {
                    grads.insert(t, (sum / workers as f64)?);
                }
            }
        }
        let lr = self.cfg.optim.lr_at(self.iteration);
        let norm = self.opt.step(&grads, lr)?;
        if let Some(ema) = &mut self.ema {
            ema.update()?;
        }
        self.iteration += 1;
        Ok((parts, norm, lr))
    }

    /// Writes the checkpoint `dir/<name>.*`; with `optim.ema`, also the averaged weights as
    /// `<name>.ema.safetensors` (the model's keys only: a weights file like any other).
    pub fn save(&self, dir: &Path, name: &str) -> Result<PathBuf, TrainError> {
        let weights = save_checkpoint(dir, name, &self.varmap, &self.opt, &self.state())?;
        if let Some(ema) = &self.ema {
            // The averaged parameters, and every other model variable (e.g. running statistics)
            // as it is: a complete weights file.
            let mut avg = ema.tensors();
            let data = self
                .varmap
                .data()
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default();
            for (k, v) in data {
                if !k.starts_with(AUX_PREFIX) && !avg.contains_key(&k) {
                    avg.insert(k, v.as_tensor().clone());
                }
            }
            candle_core::safetensors::save(&avg, dir.join(format!("{name}.ema.safetensors")))?;
        }
        Ok(weights)
    }

    /// Runs `f` with the averaged weights in the model when `optim.ema` is on (the raw weights
    /// are put back afterwards, also when `f` fails); returns whether they were the average.
    pub fn with_average<T>(
        &mut self,
        f: impl FnOnce(&Trainer) -> T,
    ) -> Result<(T, bool), TrainError> {
        let Some(mut ema) = self.ema.take() else {
            return Ok((f(self), false));
        };
        ema.swap()?;
        let out = f(self);
        ema.swap()?;
        self.ema = Some(ema);
        Ok((out, true))
    }
}

/// Key → tensor copy of every variable (tests compare weights across runs).
pub fn snapshot(varmap: &VarMap) -> HashMap<String, Vec<f32>> {
    let data = varmap.data().lock().map(|d| d.clone()).unwrap_or_default();
    data.into_iter()
        .filter_map(|(k, v)| {
            v.as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .ok()
                .map(|t| (k, t))
        })
        .collect()
}
