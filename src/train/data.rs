//! Training data in the YouTube-VIS layout, held in memory, and the clip sampler of paper §4.2:
//! 3 frames of one video, horizontal flip, multi-scale shortest side; ground-truth boxes and
//! masks mapped to the network input (masks sampled on the grid of the model's `mask_out_stride` s
//! at pixel s·i + s/2, as CondInst's `add_bitmasks` at s = 4).

use std::path::Path;

use candle_core::{Device, Tensor};

use super::matching::GtObject;
use super::TrainError;
use crate::frame::FrameRef;
use crate::model::preprocess::{preprocess, FrameGeometry, SIZE_DIVISIBILITY};
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
        let category_ids =
            category_ids(cfg, &gt).map_err(|reason| TrainError::data(gt_file.display(), reason))?;
        let mut videos = Vec::with_capacity(gt.videos.len());
        for v in &gt.videos {
            let (w, h) = (v.width as usize, v.height as usize);
            let mut frames = Vec::with_capacity(v.file_names.len());
            for name in &v.file_names {
                let path = root.join("JPEGImages").join(name);
                let img = image::open(&path)
                    .map_err(|e| TrainError::data(path.display(), e))?
                    .to_rgb8();
                if (img.width() as usize, img.height() as usize) != (w, h) {
                    return Err(TrainError::data(
                        path.display(),
                        format!(
                            "frame is {}x{} but video {} is {w}x{h}",
                            img.width(),
                            img.height(),
                            v.id
                        ),
                    ));
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
                    .map_err(|reason| {
                        TrainError::data(
                            gt_file.display(),
                            format!("annotation {}: {reason}", a.id),
                        )
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
    /// Seeds the clip's training noise (denoising-query jitter), drawn with the clip.
    pub noise_seed: u64,
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
            return Err(TrainError::data("", "the training set has no videos"));
        }
        let v = &self.videos[(rng.next_u64() % self.videos.len() as u64) as usize];
        sample_clip_from(v, cfg, clip, rng, device)
    }
}

/// Draw a clip of video `v` (frames, scale, flip); deterministic for the rng's state.
pub fn sample_clip_from(
    v: &VideoData,
    cfg: &ModelConfig,
    clip: &ClipConfig,
    rng: &mut SplitMix64,
    device: &Device,
) -> Result<Clip, TrainError> {
    if v.frames.is_empty() {
        return Err(TrainError::data(
            format!("video {}", v.id),
            "the video has no frames",
        ));
    }
    let idx = clip.pick_frames(v.frames.len(), rng);
    let (geometry, flip) = clip.pick_geometry(v.width, v.height, rng);
    let (w, h) = (v.width, v.height);
    let (rw, rh) = (geometry.resized_width, geometry.resized_height);
    let (sx, sy) = geometry.scale_xy();
    // Targets on the mask logits' grid, cell centres at pixel s·i + s/2.
    let s = cfg.mask_out_stride;
    let (mh, mw) = (geometry.padded_height / s, geometry.padded_width / s);

    let mut images = Vec::with_capacity(idx.len());
    let mut gts = Vec::with_capacity(idx.len());
    let mut gt_masks = Vec::with_capacity(idx.len());
    for &f in &idx {
        let rgb = if flip {
            flip_rgb(&v.frames[f], w, h)
        } else {
            v.frames[f].clone()
        };
        let img = preprocess(cfg, &FrameRef::packed(w, h, &rgb), &geometry, device)
            .map_err(|e| TrainError::data(format!("video {}", v.id), e))?;
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
                let yr = (s * i + s / 2) as f32;
                for j in 0..mw {
                    let xr = (s * j + s / 2) as f32;
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
        noise_seed: rng.next_u64(),
    })
}

impl ClipConfig {
    /// `frames` sorted frame indices within a window of `max_span` frames of a video of `len`;
    /// the last is repeated when the video is shorter.
    fn pick_frames(&self, len: usize, rng: &mut SplitMix64) -> Vec<usize> {
        let span = self.max_span.max(self.frames).min(len);
        let start = (rng.next_u64() % (len - span + 1) as u64) as usize;
        let mut window: Vec<usize> = (start..start + span).collect();
        // Partial Fisher–Yates: the first `frames` entries are a random subset.
        for i in 0..self.frames.min(span) {
            let j = i + (rng.next_u64() % (span - i) as u64) as usize;
            window.swap(i, j);
        }
        let mut idx: Vec<usize> = window.into_iter().take(self.frames.min(span)).collect();
        while idx.len() < self.frames {
            idx.push(idx[idx.len() - 1]);
        }
        idx.sort_unstable();
        idx
    }

    /// A w x h video's scale (shortest side drawn from `min_size`, longest capped) and flip.
    fn pick_geometry(&self, w: usize, h: usize, rng: &mut SplitMix64) -> (FrameGeometry, bool) {
        let lo = self.min_size[0].min(self.min_size[1]);
        let hi = self.min_size[0].max(self.min_size[1]);
        let short = lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize;
        let flip = self.hflip && rng.next_f64() < 0.5;
        let mut scale = short as f32 / w.min(h) as f32;
        if (w.max(h) as f32 * scale) > self.max_size as f32 {
            scale = self.max_size as f32 / w.max(h) as f32;
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
        (geometry, flip)
    }
}

/// Training videos made on the fly: the i-th clip of a run comes from video `i` of a synthetic
/// stream (`ytvis::synth::generate_video` with the stream's options), its frames passed through
/// the same JPEG round trip as the files on disk. No scene is ever seen twice, nothing is decoded
/// into memory up front, and clip `i` depends only on `i` and the sampler's state, so a resumed
/// run draws the same clips. A worker thread makes the next videos while the trainer works.
pub struct SynthStream {
    opts: crate::ytvis::SynthOptions,
    /// Dataset category id of each model class (synthetic ids: 1 + index in `CATEGORIES`).
    category_ids: Vec<u64>,
    jpeg_quality: u8,
    next: usize,
    rx: std::sync::mpsc::Receiver<(usize, Result<VideoData, TrainError>)>,
}

impl SynthStream {
    /// A stream whose first video is `start`. `opts.frames` is the length of each video.
    pub fn new(
        opts: crate::ytvis::SynthOptions,
        cfg: &ModelConfig,
        start: usize,
    ) -> Result<Self, TrainError> {
        opts.validate()?;
        let category_ids = synth_category_ids(cfg, "data.synth_stream")?;
        let mut stream = Self {
            jpeg_quality: opts.jpeg_quality,
            opts,
            category_ids,
            next: start,
            rx: std::sync::mpsc::sync_channel(0).1,
        };
        stream.restart(start);
        Ok(stream)
    }

    fn restart(&mut self, start: usize) {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let (opts, ids, q) = (
            self.opts.clone(),
            self.category_ids.clone(),
            self.jpeg_quality,
        );
        std::thread::spawn(move || {
            for i in start.. {
                let v = make_stream_video(&opts, &ids, q, i);
                if tx.send((i, v)).is_err() {
                    break; // the stream was dropped or restarted
                }
            }
        });
        self.rx = rx;
        self.next = start;
    }

    /// Video `index` of the stream.
    pub fn video(&mut self, index: usize) -> Result<VideoData, TrainError> {
        if index != self.next {
            self.restart(index);
        }
        let (i, v) = self.rx.recv().map_err(|_| {
            TrainError::data("data.synth_stream", "the synthetic video worker stopped")
        })?;
        debug_assert_eq!(i, index);
        self.next = index + 1;
        v
    }
}

/// The synthetic category id (1 + index in `synth::CATEGORIES`) of each model class, by name;
/// an error naming `field` when a class is not a synthetic category.
pub fn synth_category_ids(cfg: &ModelConfig, field: &str) -> Result<Vec<u64>, TrainError> {
    let names = crate::ytvis::synth::CATEGORIES;
    (0..cfg.num_classes)
        .map(|k| {
            let name = cfg.class_names.get(k).map(String::as_str).unwrap_or("");
            names
                .iter()
                .position(|n| *n == name)
                .map(|i| i as u64 + 1)
                .ok_or_else(|| TrainError::Config {
                    file: field.into(),
                    reason: format!(
                        "model class {k} `{name}` is not a synthetic category ({})",
                        names.join(", ")
                    ),
                })
        })
        .collect()
}

/// Video `index` of a stream as training data: frames through a JPEG round trip, masks as RLE.
pub fn make_stream_video(
    opts: &crate::ytvis::SynthOptions,
    category_ids: &[u64],
    jpeg_quality: u8,
    index: usize,
) -> Result<VideoData, TrainError> {
    let v = crate::ytvis::synth::generate_video(opts, index)?;
    let (w, h) = (v.width as usize, v.height as usize);
    let mut frames = Vec::with_capacity(v.frames.len());
    for rgb in &v.frames {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, jpeg_quality)
            .encode(rgb, v.width, v.height, image::ExtendedColorType::Rgb8)
            .and_then(|_| image::load_from_memory(&jpeg))
            .map(|img| frames.push(img.to_rgb8().into_raw()))
            .map_err(|e| TrainError::data(format!("synthetic stream video {index}"), e))?;
    }
    let objects = v
        .objects
        .into_iter()
        .filter_map(|o| {
            let class = category_ids.iter().position(|c| *c == o.category_id)?;
            Some(ObjectTrack {
                track: o.track as u64,
                class,
                masks: o.masks,
            })
        })
        .collect();
    Ok(VideoData {
        id: index as u64,
        width: w,
        height: h,
        frames,
        objects,
    })
}
