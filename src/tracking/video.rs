//! YouTube-VIS results from the N slots of a video (spec §1.8 [REC]): every slot is one candidate
//! track over all frames; its class scores are the mean over frames of its sigmoid class
//! probabilities; the video keeps the top-k (slot, class) pairs plus any pair above a threshold,
//! with the slot's masks (sigmoid > 0.5) at the original size on every frame. Optional (ours,
//! off by default): a pair is dropped when a higher-scoring pair of the same class lies on another
//! slot whose masks overlap its slot's with spatio-temporal IoU above `duplicate_iou`
//! (docs/model.md has what it does to the AP and to the best track's class).

use crate::model::ModelConfig;
use crate::runtime::FrameOutput;
use crate::ytvis::eval::iou_of_pairs;
use crate::ytvis::{GroundTruth, Rle, RleJson, VideoResult};

/// How a video's slots become results.
#[derive(Debug, Clone, Copy)]
pub struct ResultOptions {
    /// (slot, class) pairs kept by rank.
    pub top_k: usize,
    /// Further pairs kept when their mean probability exceeds this.
    pub score_threshold: f32,
    /// Hard cap per video (ytvoseval reads at most 100 per video and category).
    pub max_per_video: usize,
    /// Drop a (slot, class) pair when a higher-scoring pair of the same class on another slot
    /// overlaps it with spatio-temporal mask IoU above this (two slots on one object); `None`
    /// keeps every pair, as the paper does.
    pub duplicate_iou: Option<f64>,
}

impl Default for ResultOptions {
    fn default() -> Self {
        Self {
            top_k: 10,
            score_threshold: 0.05,
            max_per_video: 100,
            duplicate_iou: None,
        }
    }
}

/// Accumulates one video's frame outputs.
#[derive(Debug, Default)]
pub struct VideoAccumulator {
    frames: usize,
    /// N x K sums of class probabilities.
    prob_sums: Vec<Vec<f64>>,
    /// N x frames masks at the original size.
    masks: Vec<Vec<Rle>>,
}

impl VideoAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, out: &FrameOutput) {
        let n = out.num_slots();
        if self.prob_sums.is_empty() {
            self.prob_sums = out.class_probs.iter().map(|p| vec![0.0; p.len()]).collect();
            self.masks = vec![Vec::new(); n];
        }
        for (sum, p) in self.prob_sums.iter_mut().zip(&out.class_probs) {
            for (s, v) in sum.iter_mut().zip(p) {
                *s += f64::from(*v);
            }
        }
        let (h, w) = (
            out.geometry.orig_height as u32,
            out.geometry.orig_width as u32,
        );
        for (slot, masks) in self.masks.iter_mut().enumerate() {
            let mask: Vec<u8> = out
                .mask_at_original(slot)
                .into_iter()
                .map(u8::from)
                .collect();
            masks.push(Rle::encode_row_major(&mask, h, w));
        }
        self.frames += 1;
    }

    /// The video's results; `category_ids[k]` is the dataset id of class k.
    pub fn finish(
        self,
        video_id: u64,
        category_ids: &[u64],
        opts: &ResultOptions,
    ) -> Vec<VideoResult> {
        if self.frames == 0 {
            return Vec::new();
        }
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (slot, sums) in self.prob_sums.iter().enumerate() {
            for (class, s) in sums.iter().enumerate() {
                pairs.push((s / self.frames as f64, slot, class));
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let n = self.masks.len();
        let mut slot_iou: Vec<Option<f64>> = vec![None; n * n];
        let mut kept: Vec<(f64, usize, usize)> = Vec::new();
        for pair in pairs {
            let (_, slot, class) = pair;
            if let Some(limit) = opts.duplicate_iou {
                let duplicate = kept.iter().any(|&(_, other, c)| {
                    c == class && other != slot && {
                        let cell = &mut slot_iou[slot.min(other) * n + slot.max(other)];
                        *cell.get_or_insert_with(|| {
                            iou_of_pairs(
                                self.masks[slot]
                                    .iter()
                                    .zip(&self.masks[other])
                                    .map(|(a, b)| (Some(a), Some(b))),
                            )
                        }) > limit
                    }
                });
                if duplicate {
                    continue;
                }
            }
            kept.push(pair);
        }
        kept.into_iter()
            .enumerate()
            .filter(|(rank, (s, _, _))| *rank < opts.top_k || *s > f64::from(opts.score_threshold))
            .take(opts.max_per_video)
            .filter_map(|(_, (score, slot, class))| {
                Some(VideoResult {
                    video_id,
                    category_id: *category_ids.get(class)?,
                    score,
                    segmentations: self.masks[slot]
                        .iter()
                        .map(|r| Some(RleJson::from_rle(r)))
                        .collect(),
                })
            })
            .collect()
    }
}

/// Dataset category id of each model class: by name when every class name is a category name,
/// else by position in the id-sorted category list.
pub fn category_ids(cfg: &ModelConfig, gt: &GroundTruth) -> Result<Vec<u64>, String> {
    let by_name: Option<Vec<u64>> = (0..cfg.num_classes)
        .map(|k| {
            let name = cfg.class_names.get(k)?;
            gt.categories.iter().find(|c| &c.name == name).map(|c| c.id)
        })
        .collect();
    if let Some(ids) = by_name {
        return Ok(ids);
    }
    let mut ids: Vec<u64> = gt.categories.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    if ids.len() < cfg.num_classes {
        return Err(format!(
            "the model has {} classes but the json lists {} categories",
            cfg.num_classes,
            ids.len()
        ));
    }
    ids.truncate(cfg.num_classes);
    Ok(ids)
}
