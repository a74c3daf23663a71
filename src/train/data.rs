//! Training data in the YouTube-VIS layout, held in memory, and the clip sampler of paper §4.2:
//! 3 frames of one video, horizontal flip, multi-scale shortest side; ground-truth boxes and
//! masks mapped to the network input (masks sampled on the stride-4 grid at pixel 4i + 2, as
//! CondInst's `add_bitmasks`).

use std::path::Path;

use candle_core::{Device, Tensor};

use super::matching::GtObject;
use super::TrainError;
use crate::model::preprocess::{preprocess, FrameGeometry, FrameRef, SIZE_DIVISIBILITY};
use crate::model::weights::SplitMix64;
use crate::model::ModelConfig;
use crate::tracking::video::category_ids;
use crate::ytvis::{load_ground_truth, GroundTruth, Rle};

/// One object track of a video.
#[derive(Debug, Clone)]
pub struct ObjectTrack {
    pub track: u64,
    /// Class index of the model.
    pub class: usize,
    /// Per frame, `None` where absent.
    pub masks: Vec<Option<Rle>>,
}

/// A decoded video.
#[derive(Debug, Clone)]
pub struct VideoData {
    pub id: u64,
    pub width: usize,
    pub height: usize,
    /// Packed RGB frames.
    pub frames: Vec<Vec<u8>>,
    pub objects: Vec<ObjectTrack>,
}

/// A YouTube-VIS split in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub gt: GroundTruth,
    pub videos: Vec<VideoData>,
    /// Dataset category id of each model class.
    pub category_ids: Vec<u64>,
}

impl Dataset {
    /// Read `root/JPEGImages/...` and the ground truth `gt_file`.
    pub fn load(root: &Path, gt_file: &Path, cfg: &ModelConfig) -> Result<Self, TrainError> {
        let gt = load_ground_truth(gt_file)?;
        let category_ids = category_ids(cfg, &gt).map_err(|reason| TrainError::Data {
            file: gt_file.display().to_string(),
            reason,
        })?;
        let mut videos = Vec::with_capacity(gt.videos.len());
        for v in &gt.videos {
            let (w, h) = (v.width as usize, v.height as usize);
            let mut frames = Vec::with_capacity(v.file_names.len());
            for name in &v.file_names {
                let path = root.join("JPEGImages").join(name);
                let img = image::open(&path)
                    .map_err(|e| TrainError::Data {
                        file: path.display().to_string(),
                        reason: e.to_string(),
                    })?
                    .to_rgb8();
                if (img.width() as usize, img.height() as usize) != (w, h) {
                    return Err(TrainError::Data {
                        file: path.display().to_string(),
                        reason: format!(
                            "frame is {}x{} but video {} is {w}x{h}",
                            img.width(),
                            img.height(),
                            v.id
                        ),
                    });
                }
                frames.push(img.into_raw());
            }
            let mut objects = Vec::new();
            for a in gt.annotations.iter().filter(|a| a.video_id == v.id) {
                let Some(class) = category_ids.iter().position(|c| *c == a.category_id) else {
                    continue; // a category the model does not predict
                };
                let masks = a
                    .segmentations
                    .iter()
                    .map(|s| match s {
                        None => Ok(None),
                        Some(seg) => seg.to_rle(v.height, v.width),
                    })
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(|reason| TrainError::Data {
                        file: gt_file.display().to_string(),
                        reason: format!("annotation {}: {reason}", a.id),
                    })?;
                objects.push(ObjectTrack {
                    track: a.id,
                    class,
                    masks,
                });
            }
            videos.push(VideoData {
                id: v.id,
                width: w,
                height: h,
                frames,
                objects,
            });
        }
        Ok(Self {
            gt,
            videos,
            category_ids,
        })
    }
}

/// How clips are sampled and augmented.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipConfig {
    /// Frames per clip (paper: 3).
    pub frames: usize,
    /// The clip's frames lie within this many consecutive frames of the video.
    pub max_span: usize,
    /// Shortest side drawn uniformly from this range (paper: 288..=512 on YouTube-VIS).
    pub min_size: [usize; 2],
    /// Longest side cap.
    pub max_size: usize,
    pub hflip: bool,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            frames: 3,
            max_span: 10,
            min_size: [288, 512],
            max_size: 853,
            hflip: true,
        }
    }
}

/// One training clip on the network input.
pub struct Clip {
    /// (1, 3, Hp, Wp) per frame, normalised and padded.
    pub images: Vec<Tensor>,
    /// Unpadded network-input size.
    pub width: usize,
    pub height: usize,
    /// Objects present on each frame.
    pub gts: Vec<Vec<GtObject>>,
    /// Per frame (G, Hp/4 · Wp/4) 0/1 targets in the order of `gts`.
    pub gt_masks: Vec<Tensor>,
    pub video_id: u64,
    pub frame_indices: Vec<usize>,
}

fn flip_rgb(data: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    for y in 0..h {
        for x in 0..w {
            let (s, d) = ((y * w + x) * 3, (y * w + (w - 1 - x)) * 3);
            out[d..d + 3].copy_from_slice(&data[s..s + 3]);
        }
    }
    out
}

impl Dataset {
    /// Draw a clip; deterministic for the rng's state.
    pub fn sample_clip(
        &self,
        cfg: &ModelConfig,
        clip: &ClipConfig,
        rng: &mut SplitMix64,
        device: &Device,
    ) -> Result<Clip, TrainError> {
        if self.videos.is_empty() {
            return Err(TrainError::Data {
                file: String::new(),
                reason: "the training set has no videos".into(),
            });
        }
        let v = &self.videos[(rng.next_u64() % self.videos.len() as u64) as usize];
        let len = v.frames.len();
        let span = clip.max_span.max(clip.frames).min(len);
        let start = (rng.next_u64() % (len - span + 1) as u64) as usize;
        let mut window: Vec<usize> = (start..start + span).collect();
        // Partial Fisher–Yates: the first `frames` entries are a random subset.
        for i in 0..clip.frames.min(span) {
            let j = i + (rng.next_u64() % (span - i) as u64) as usize;
            window.swap(i, j);
        }
        let mut idx: Vec<usize> = window.into_iter().take(clip.frames.min(span)).collect();
        while idx.len() < clip.frames {
            idx.push(idx[idx.len() - 1]);
        }
        idx.sort_unstable();

        let lo = clip.min_size[0].min(clip.min_size[1]);
        let hi = clip.min_size[0].max(clip.min_size[1]);
        let short = lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize;
        let flip = clip.hflip && rng.next_f64() < 0.5;
        let (w, h) = (v.width, v.height);
        let mut scale = short as f32 / w.min(h) as f32;
        if (w.max(h) as f32 * scale) > clip.max_size as f32 {
            scale = clip.max_size as f32 / w.max(h) as f32;
        }
        let rw = ((w as f32 * scale).round() as usize).max(1);
        let rh = ((h as f32 * scale).round() as usize).max(1);
        let pad = |x: usize| x.div_ceil(SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY;
        let geometry = FrameGeometry {
            orig_width: w,
            orig_height: h,
            scale,
            resized_width: rw,
            resized_height: rh,
            padded_width: pad(rw),
            padded_height: pad(rh),
        };
        let (sx, sy) = geometry.scale_xy();
        let (mh, mw) = (geometry.padded_height / 4, geometry.padded_width / 4);

        let mut images = Vec::with_capacity(idx.len());
        let mut gts = Vec::with_capacity(idx.len());
        let mut gt_masks = Vec::with_capacity(idx.len());
        for &f in &idx {
            let rgb = if flip {
                flip_rgb(&v.frames[f], w, h)
            } else {
                v.frames[f].clone()
            };
            let img = preprocess(cfg, &FrameRef::packed(w, h, &rgb), &geometry, device).map_err(
                |reason| TrainError::Data {
                    file: format!("video {}", v.id),
                    reason,
                },
            )?;
            images.push(img);
            let mut objs = Vec::new();
            let mut masks: Vec<f32> = Vec::new();
            for o in &v.objects {
                let Some(Some(rle)) = o.masks.get(f) else {
                    continue;
                };
                if rle.area() == 0 {
                    continue;
                }
                let m = rle.decode_row_major();
                let [bx, by, bw, bh] = rle.to_bbox();
                let (bx, by, bw, bh) = (bx as f32, by as f32, bw as f32, bh as f32);
                let (x1, x2) = if flip {
                    (w as f32 - (bx + bw), w as f32 - bx)
                } else {
                    (bx, bx + bw)
                };
                objs.push(GtObject {
                    track: o.track,
                    class: o.class,
                    box_xyxy: [x1 * sx, by * sy, x2 * sx, (by + bh) * sy],
                });
                for i in 0..mh {
                    let yr = (4 * i + 2) as f32;
                    for j in 0..mw {
                        let xr = (4 * j + 2) as f32;
                        let inside = (xr as usize) < rw && (yr as usize) < rh;
                        let val = if inside {
                            let xo = (((xr + 0.5) / sx) as usize).min(w - 1);
                            let yo = (((yr + 0.5) / sy) as usize).min(h - 1);
                            let xo = if flip { w - 1 - xo } else { xo };
                            m[yo * w + xo]
                        } else {
                            0
                        };
                        masks.push(f32::from(val));
                    }
                }
            }
            let g = objs.len();
            gt_masks.push(Tensor::from_vec(masks, (g, mh * mw), device)?);
            gts.push(objs);
        }
        Ok(Clip {
            images,
            width: rw,
            height: rh,
            gts,
            gt_masks,
            video_id: v.id,
            frame_indices: idx,
        })
    }
}
