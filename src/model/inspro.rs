//! The InsPro network for one frame (paper §3.1–3.2, Fig. 2): backbone + FPN, the mask branch, M
//! dynamic instance interaction stages with their instance segmentation modules, and the
//! intra-query attention that turns this frame's object features into the next frame's queries.

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Result, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};

use super::backbone::Backbone;
use super::bank::IntraQueryAttention;
use super::config::ModelConfig;
use super::fpn::Fpn;
use super::head::{RcnnHead, StageOutput};
use super::mask::{DynamicMaskHead, MaskBranch};
use super::roi_align::RoiPooler;
use super::weights::{seeded_var_builder, var_builder, CheckedTensors};
use super::ModelError;

/// Which stages run on a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageSchedule {
    /// Every stage (key frames, and every frame when K = 0).
    All,
    /// Only the last stage, with its own weights (InsPro-lite non-key frames, spec §1.7 [REC]).
    LastOnly,
}

/// Which stages produce masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskSchedule {
    /// Masks of the last stage run (inference).
    Last,
    /// Masks of every stage run (deep supervision in training).
    Every,
}

/// Options of one frame's forward.
#[derive(Debug, Clone, Copy)]
pub struct FrameOptions {
    pub stages: StageSchedule,
    pub masks: MaskSchedule,
    /// Training mode: freezes what the reference freezes (stem, res2) by detaching.
    pub train: bool,
}

impl FrameOptions {
    pub fn inference(key_frame: bool) -> Self {
        Self {
            stages: if key_frame {
                StageSchedule::All
            } else {
                StageSchedule::LastOnly
            },
            masks: MaskSchedule::Last,
            train: false,
        }
    }
}

/// The dense features of one frame: P2..P5 (C, H/s, W/s) and the mask branch output
/// (1, 8, Hp/8, Wp/8).
pub struct Trunk {
    pub levels: Vec<Tensor>,
    pub mask_feats: Tensor,
}

/// One frame's stage outputs (and masks), plus the queries for the next frame.
pub struct FrameForward {
    /// Outputs of the stages that ran, in order; the last one is the frame's result.
    pub stages: Vec<StageOutput>,
    /// Mask logits (N, Hp/4, Wp/4) per stage that produced masks (aligned with `stages` for
    /// `MaskSchedule::Every`, a single entry for `Last`).
    pub mask_logits: Vec<Tensor>,
    /// Next frame's proposal features q_{t+1} (N, C) from the intra-query attention.
    pub next_proposal_features: Tensor,
}

impl FrameForward {
    pub fn last(&self) -> Result<&StageOutput> {
        self.stages
            .last()
            .ok_or_else(|| candle_core::Error::Msg("no stage ran".into()))
    }
}

/// The network. Field names are the checkpoint prefixes.
pub struct InsPro {
    pub cfg: ModelConfig,
    device: Device,
    backbone: Backbone,
    fpn: Fpn,
    mask_branch: MaskBranch,
    head_series: Vec<RcnnHead>,
    pooler: RoiPooler,
    mask_head: DynamicMaskHead,
    intra_query: IntraQueryAttention,
    /// `init_proposal_features.weight` (N, C).
    init_proposal_features: Tensor,
    /// `init_proposal_boxes.weight` (N, 4), cxcywh relative to the image.
    init_proposal_boxes: Tensor,
}

impl InsPro {
    /// Build from any `VarBuilder` whose paths are the checkpoint keys.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let n = cfg.num_queries;
        let c = cfg.fpn_channels;
        let backbone_vb = vb.pp("backbone");
        let head_series = (0..cfg.num_stages)
            .map(|i| RcnnHead::new(cfg, vb.pp("head").pp("head_series").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            device: vb.device().clone(),
            backbone: Backbone::new(cfg, backbone_vb.pp("bottom_up"))?,
            fpn: Fpn::new(cfg, backbone_vb)?,
            mask_branch: MaskBranch::new(cfg, vb.pp("mask_branch"))?,
            head_series,
            pooler: RoiPooler {
                output_size: cfg.pooler_resolution,
                sampling_ratio: cfg.pooler_sampling_ratio,
                min_level: 2,
                max_level: 5,
            },
            mask_head: DynamicMaskHead::new(cfg),
            intra_query: IntraQueryAttention::new(cfg, vb.pp("intra_query"))?,
            init_proposal_features: vb.get_with_hints(
                (n, c),
                "init_proposal_features.weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )?,
            // Filled with (0.5, 0.5, 1, 1) by `random`; Sparse R-CNN's whole-image proposals.
            init_proposal_boxes: vb.get_with_hints(
                (n, 4),
                "init_proposal_boxes.weight",
                Init::Const(0.5),
            )?,
        })
    }

    /// Load weights from a safetensors file. A missing or misshaped key is an error naming it.
    pub fn load(
        cfg: &ModelConfig,
        weights: impl AsRef<Path>,
        device: &Device,
    ) -> std::result::Result<Self, ModelError> {
        cfg.validate()?;
        let path = weights.as_ref();
        let backend = Arc::new(CheckedTensors::open(path, device)?);
        let vb = var_builder(backend.clone(), device);
        match Self::new(cfg, vb) {
            Ok(model) => {
                let unused = backend.unused_keys();
                if !unused.is_empty() {
                    tracing::warn!(
                        file = %path.display(),
                        count = unused.len(),
                        first = %unused[0],
                        "weights file holds keys the model does not use"
                    );
                }
                Ok(model)
            }
            Err(e) => Err(backend.take_error().unwrap_or(ModelError::Candle(e))),
        }
    }

    /// Random init as the reference does it (xavier heads, focal prior bias, whole-image
    /// proposals), deterministic for `seed`. Returns the trainable variables too.
    pub fn random(
        cfg: &ModelConfig,
        seed: u64,
        device: &Device,
    ) -> std::result::Result<(Self, VarMap), ModelError> {
        cfg.validate()?;
        let varmap = VarMap::new();
        let vb = seeded_var_builder(seed, &varmap, device);
        let model = Self::new(cfg, vb)?;
        let n = cfg.num_queries;
        let boxes = Tensor::from_vec([0.5f32, 0.5, 1.0, 1.0].repeat(n), (n, 4), device)?;
        {
            let vars = varmap
                .data()
                .lock()
                .map_err(|_| ModelError::Input("variable map lock poisoned".into()))?;
            if let Some(var) = vars.get("init_proposal_boxes.weight") {
                var.set(&boxes)?;
            }
        }
        Ok((model, varmap))
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The learned initial state: proposal features (N, C) and whole-image boxes (N, 4) xyxy for
    /// an image of `width` x `height` (the unpadded network input).
    pub fn initial_proposals(&self, width: usize, height: usize) -> Result<(Tensor, Tensor)> {
        let b = &self.init_proposal_boxes; // (N, 4) cxcywh relative
        let cxcy = b.narrow(1, 0, 2)?;
        let half_wh = (b.narrow(1, 2, 2)? * 0.5)?;
        let xyxy = Tensor::cat(&[(&cxcy - &half_wh)?, (&cxcy + &half_wh)?], 1)?;
        let whwh = Tensor::from_vec(
            vec![width as f32, height as f32, width as f32, height as f32],
            (1, 4),
            &self.device,
        )?;
        Ok((
            self.init_proposal_features.clone(),
            xyxy.broadcast_mul(&whwh)?,
        ))
    }

    /// The dense part of one frame: backbone, FPN and mask branch. `image` is (1, 3, Hp, Wp),
    /// normalised and padded; `train` freezes what the reference freezes (stem, res2).
    pub fn forward_trunk(&self, image: &Tensor, train: bool) -> Result<Trunk> {
        let c = {
            let _span = tracing::trace_span!("backbone").entered();
            self.backbone.forward(image, train)?
        };
        let p = {
            let _span = tracing::trace_span!("fpn").entered();
            self.fpn.forward(&c)?
        };
        let mask_feats = {
            let _span = tracing::trace_span!("mask_branch").entered();
            self.mask_branch.forward([&p.p2, &p.p3, &p.p4, &p.p5])? // (1, 8, Hp/f, Wp/f)
        };
        let levels: Vec<Tensor> = p
            .levels()
            .iter()
            .map(|l| l.squeeze(0))
            .collect::<Result<_>>()?; // (C, H/s, W/s) each
        Ok(Trunk { levels, mask_feats })
    }

    /// The stages on a frame's trunk: proposal features (N, C) and boxes (N, 4) xyxy in, every
    /// stage's output (and masks) out. Any N: training runs its denoising queries through here.
    pub fn forward_stages(
        &self,
        trunk: &Trunk,
        proposal_features: &Tensor,
        proposal_boxes_xyxy: &Tensor,
        opts: FrameOptions,
    ) -> Result<(Vec<StageOutput>, Vec<Tensor>)> {
        let heads: Vec<&RcnnHead> = match opts.stages {
            StageSchedule::All => self.head_series.iter().collect(),
            StageSchedule::LastOnly => self.head_series.last().into_iter().collect(),
        };
        let mut features = proposal_features.clone();
        let mut boxes = proposal_boxes_xyxy.clone();
        let mut stages = Vec::with_capacity(heads.len());
        let mut mask_logits = Vec::new();
        for (i, head) in heads.iter().enumerate() {
            let _stage = tracing::trace_span!("head_stage", stage = i).entered();
            let out = head.forward(&trunk.levels, &boxes, &features, &self.pooler)?;
            if opts.masks == MaskSchedule::Every || i + 1 == heads.len() {
                let _span = tracing::trace_span!("mask_head").entered();
                mask_logits.push(self.mask_head.forward(
                    &trunk.mask_feats,
                    &out.mask_head_params,
                    &out.pred_boxes_xyxy,
                )?);
            }
            // Sparse R-CNN: boxes are detached between stages, features are not.
            boxes = out.pred_boxes_xyxy.detach();
            features = out.obj_features.clone();
            stages.push(out);
        }
        Ok((stages, mask_logits))
    }

    /// One frame: image (1, 3, Hp, Wp) normalised and padded; proposal features (N, C) and boxes
    /// (N, 4) xyxy from the previous frame (or the learned init); bank (T, N, C) with bank_valid
    /// (T) marking the entries that stay in the bank after this frame's object features enter it.
    pub fn forward_frame(
        &self,
        image: &Tensor,
        proposal_features: &Tensor,
        proposal_boxes_xyxy: &Tensor,
        bank: &Tensor,
        bank_valid: &Tensor,
        opts: FrameOptions,
    ) -> Result<FrameForward> {
        let trunk = self.forward_trunk(image, opts.train)?;
        let carried = Carried {
            proposal_features,
            proposal_boxes_xyxy,
            bank,
            bank_valid,
        };
        self.forward_frame_on(&trunk, &carried, opts)
    }

    /// RoIAlign features (B, C, 7, 7) of `boxes_xyxy` (B, 4) on a frame's trunk, with the
    /// heads' own pooler (the linear probe's input).
    pub fn pool_rois(&self, trunk: &Trunk, boxes_xyxy: &Tensor) -> Result<Tensor> {
        self.pooler.forward(&trunk.levels, boxes_xyxy)
    }

    /// `forward_frame` on a trunk already computed.
    pub fn forward_frame_on(
        &self,
        trunk: &Trunk,
        carried: &Carried<'_>,
        opts: FrameOptions,
    ) -> Result<FrameForward> {
        let Carried {
            proposal_features,
            proposal_boxes_xyxy,
            bank,
            bank_valid,
        } = *carried;
        let (stages, mask_logits) =
            self.forward_stages(trunk, proposal_features, proposal_boxes_xyxy, opts)?;
        let last = stages
            .last()
            .ok_or_else(|| candle_core::Error::Msg("no stage ran".into()))?;
        let next_proposal_features = {
            let _span = tracing::trace_span!("bank_attention").entered();
            self.intra_query
                .forward(&last.obj_features, bank, bank_valid)?
        };
        Ok(FrameForward {
            stages,
            mask_logits,
            next_proposal_features,
        })
    }

    /// Backbone + FPN only (benchmarks split the time by part).
    pub fn forward_parts(&self, image: &Tensor) -> Result<PartTimes> {
        let t0 = std::time::Instant::now();
        let c = self.backbone.forward(image, false)?;
        sync(&c.c5)?;
        let t1 = std::time::Instant::now();
        let p = self.fpn.forward(&c)?;
        sync(&p.p2)?;
        let t2 = std::time::Instant::now();
        let m = self.mask_branch.forward([&p.p2, &p.p3, &p.p4, &p.p5])?;
        sync(&m)?;
        let t3 = std::time::Instant::now();
        Ok(PartTimes {
            backbone_ms: ms(t1 - t0),
            fpn_ms: ms(t2 - t1),
            mask_branch_ms: ms(t3 - t2),
        })
    }
}

/// What a stream carries into a frame: proposal features (N, C) and boxes (N, 4) xyxy, the bank
/// (T, N, C) and its valid mask (T).
#[derive(Debug, Clone, Copy)]
pub struct Carried<'a> {
    pub proposal_features: &'a Tensor,
    pub proposal_boxes_xyxy: &'a Tensor,
    pub bank: &'a Tensor,
    pub bank_valid: &'a Tensor,
}

/// Wall time per part of the dense trunk.
#[derive(Debug, Clone, Copy)]
pub struct PartTimes {
    pub backbone_ms: f64,
    pub fpn_ms: f64,
    pub mask_branch_ms: f64,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// candle CPU ops are eager; reading one element makes the intent explicit for timers.
fn sync(t: &Tensor) -> Result<()> {
    let _ = t.flatten_all()?.narrow(0, 0, 1)?.to_vec1::<f32>()?;
    Ok(())
}
