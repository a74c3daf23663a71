//! Synthetic videos in the YouTube-VIS layout: textured shapes that move, bounce, occlude each
//! other by depth, enter and leave the frame, and look-alikes (same shape and colour) that cross
//! paths, so that keeping identities is the hard part. Deterministic by seed (own SplitMix64).

use std::io::{BufWriter, Write};
use std::path::Path;

use rayon::prelude::*;

use super::error::YtvisError;
use super::json::{write_json, Category, GroundTruth, GtAnnotation, RleJson, Segmentation, Video};
use super::rle::Rle;
use render::{owner_masks, render_frame};
use scene::Scene;

pub use super::clip::{write_clip, ClipOptions};

mod render;
mod scene;

/// Shape categories, ids 1..=6 in this order.
pub const CATEGORIES: [&str; 6] = ["circle", "square", "triangle", "star", "ring", "cross"];

/// What to generate and how hard to make it.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthOptions {
    pub videos: usize,
    /// Frames written per video.
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
    pub min_objects: usize,
    pub max_objects: usize,
    /// Chance that a new object is a look-alike (same shape, colour and texture) of an earlier
    /// one, steered to cross its path.
    pub lookalikes: f64,
    /// Chance that a new object is steered through an earlier object's position (occlusion).
    pub occlusion: f64,
    /// Multiplies object speeds (about 1.2% of the shorter image side per frame at 1.0).
    pub speed: f64,
    /// Chance that an object moves in a straight line across the frame, entering or leaving it,
    /// instead of bouncing off the borders.
    pub enter_leave: f64,
    /// Simulated frames between two written ones (YouTube-VIS val keeps every 5th: 5).
    pub frame_stride: usize,
    pub jpeg_quality: u8,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            videos: 10,
            frames: 36,
            width: 640,
            height: 360,
            seed: 0,
            min_objects: 2,
            max_objects: 6,
            lookalikes: 0.5,
            occlusion: 0.5,
            speed: 1.0,
            enter_leave: 0.3,
            frame_stride: 1,
            jpeg_quality: 90,
        }
    }
}

impl SynthOptions {
    pub fn validate(&self) -> Result<(), YtvisError> {
        let bad = |field, reason: &str| {
            Err(YtvisError::Options {
                field,
                reason: reason.to_string(),
            })
        };
        if self.frames == 0 {
            return bad("frames", "must be at least 1");
        }
        if self.width < 16 || self.height < 16 || self.width > 8192 || self.height > 8192 {
            return bad("size", "width and height must be within 16..=8192");
        }
        if self.min_objects > self.max_objects {
            return bad("objects", "min must not exceed max");
        }
        if self.max_objects > 250 {
            return bad("objects", "at most 250 objects");
        }
        for (field, v) in [
            ("lookalikes", self.lookalikes),
            ("occlusion", self.occlusion),
            ("enter_leave", self.enter_leave),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, "must be a probability in 0..=1");
            }
        }
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            return bad("speed", "must be a finite number >= 0");
        }
        if self.frame_stride == 0 {
            return bad("frame_stride", "must be at least 1");
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad("jpeg_quality", "must be within 1..=100");
        }
        Ok(())
    }
}

/// One generated video: RGB frames and the visible mask of every object on every frame.
#[derive(Clone, Debug)]
pub struct SynthVideo {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Row-major RGB, `width * height * 3` bytes each.
    pub frames: Vec<Vec<u8>>,
    /// Frame names relative to `JPEGImages/`: `<name>/<simulated frame:05>.jpg`.
    pub file_names: Vec<String>,
    /// Objects in creation order; those never visible are left out.
    pub objects: Vec<SynthObject>,
}

#[derive(Clone, Debug)]
pub struct SynthObject {
    pub category_id: u64,
    /// Index among the video's simulated objects (stable identity).
    pub track: usize,
    /// Same value for an object and its look-alikes.
    pub appearance: usize,
    /// The visible part per frame, `None` where fully hidden or outside the frame.
    pub masks: Vec<Option<Rle>>,
    /// Per frame: whether a nearer object hides part of it.
    pub occluded: Vec<bool>,
}

impl SynthObject {
    /// Row-major 0/1 mask of frame `f`, `None` where absent.
    pub fn mask_row_major(&self, f: usize) -> Option<Vec<u8>> {
        self.masks.get(f)?.as_ref().map(Rle::decode_row_major)
    }
}

/// The dataset's categories.
pub fn categories() -> Vec<Category> {
    CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, name)| Category {
            id: i as u64 + 1,
            name: name.to_string(),
            supercategory: "shape".to_string(),
        })
        .collect()
}

use crate::rng::mix64;
pub use crate::rng::SplitMix64;

fn video_seed(seed: u64, index: usize) -> u64 {
    mix64(seed ^ mix64(index as u64 + 1))
}

/// Generates video `index` of the dataset `opts` describes (independent of the other videos).
pub fn generate_video(opts: &SynthOptions, index: usize) -> Result<SynthVideo, YtvisError> {
    opts.validate()?;
    let mut frames = Vec::with_capacity(opts.frames);
    let mut objects = Vec::new();
    let name = render_video(
        opts,
        index,
        |_, rgb| {
            frames.push(rgb.to_vec());
            Ok(())
        },
        &mut objects,
    )?;
    let file_names = frame_names(&name, opts);
    Ok(SynthVideo {
        name,
        width: opts.width,
        height: opts.height,
        frames,
        file_names,
        objects,
    })
}

fn frame_names(name: &str, opts: &SynthOptions) -> Vec<String> {
    (0..opts.frames)
        .map(|f| format!("{name}/{:05}.jpg", f * opts.frame_stride))
        .collect()
}

/// Simulates video `index`, handing each frame to `sink` and filling `objects`.
pub(super) fn render_video(
    opts: &SynthOptions,
    index: usize,
    mut sink: impl FnMut(usize, &[u8]) -> Result<(), YtvisError>,
    objects: &mut Vec<SynthObject>,
) -> Result<String, YtvisError> {
    let mut rng = SplitMix64::new(video_seed(opts.seed, index));
    let scene = Scene::new(opts, &mut rng);
    let n = scene.bodies.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let (w, h) = (opts.width as usize, opts.height as usize);
    let mut rgb = vec![0u8; w * h * 3];
    let mut owner = vec![u8::MAX; w * h];
    let mut masks: Vec<Vec<Option<Rle>>> = vec![Vec::with_capacity(opts.frames); n];
    let mut occluded = vec![Vec::with_capacity(opts.frames); n];
    let mut hidden = vec![false; n];
    for f in 0..opts.frames {
        let t = (f * opts.frame_stride) as f64;
        render_frame(&scene, &order, t, &mut rgb, &mut owner, &mut hidden);
        for (i, m) in owner_masks(&owner, w, h, n).into_iter().enumerate() {
            masks[i].push(m);
            occluded[i].push(hidden[i]);
        }
        sink(f, &rgb)?;
    }
    for (i, (m, occluded)) in masks.into_iter().zip(occluded).enumerate() {
        if m.iter().all(Option::is_none) {
            continue;
        }
        objects.push(SynthObject {
            category_id: scene.bodies[i].look.shape as u64 + 1,
            track: i,
            appearance: scene.bodies[i].appearance,
            masks: m,
            occluded,
        });
    }
    Ok(format!("synth_{index:04}"))
}

fn annotation(video_id: u64, id: u64, obj: &SynthObject) -> GtAnnotation {
    GtAnnotation {
        id,
        video_id,
        category_id: obj.category_id,
        iscrowd: 0,
        segmentations: obj
            .masks
            .iter()
            .map(|m| m.as_ref().map(|r| Segmentation::Rle(RleJson::from_rle(r))))
            .collect(),
        bboxes: Some(
            obj.masks
                .iter()
                .map(|m| m.as_ref().map(Rle::to_bbox))
                .collect(),
        ),
        areas: Some(
            obj.masks
                .iter()
                .map(|m| m.as_ref().map(|r| r.area() as f64))
                .collect(),
        ),
    }
}

pub(super) fn ground_truth(
    opts: &SynthOptions,
    videos: &[(String, Vec<SynthObject>)],
) -> GroundTruth {
    let mut gt = GroundTruth {
        info: Some(serde_json::json!({
            "description": "InsPro Edge synthetic shapes",
            "seed": opts.seed,
            "frame_stride": opts.frame_stride,
        })),
        licenses: None,
        videos: Vec::with_capacity(videos.len()),
        annotations: Vec::new(),
        categories: categories(),
    };
    for (vi, (name, objects)) in videos.iter().enumerate() {
        let video_id = vi as u64 + 1;
        gt.videos.push(Video {
            id: video_id,
            width: opts.width,
            height: opts.height,
            length: opts.frames,
            file_names: frame_names(name, opts),
        });
        for obj in objects {
            let id = gt.annotations.len() as u64 + 1;
            gt.annotations.push(annotation(video_id, id, obj));
        }
    }
    gt
}

/// Writes `dir/JPEGImages/<video>/<frame>.jpg` and `dir/instances.json`; returns the ground truth.
pub fn write_dataset(dir: &Path, opts: &SynthOptions) -> Result<GroundTruth, YtvisError> {
    opts.validate()?;
    let images = dir.join("JPEGImages");
    std::fs::create_dir_all(&images).map_err(|e| YtvisError::io(&images, e))?;
    let videos: Vec<(String, Vec<SynthObject>)> = (0..opts.videos)
        .into_par_iter()
        .map(|index| {
            let mut objects = Vec::new();
            let vdir = images.join(format!("synth_{index:04}"));
            std::fs::create_dir_all(&vdir).map_err(|e| YtvisError::io(&vdir, e))?;
            let name = render_video(
                opts,
                index,
                |f, rgb| {
                    let path = vdir.join(format!("{:05}.jpg", f * opts.frame_stride));
                    write_jpeg(&path, rgb, opts.width, opts.height, opts.jpeg_quality)
                },
                &mut objects,
            )?;
            Ok((name, objects))
        })
        .collect::<Result<_, YtvisError>>()?;
    let gt = ground_truth(opts, &videos);
    write_json(&dir.join("instances.json"), &gt)?;
    Ok(gt)
}

fn write_jpeg(path: &Path, rgb: &[u8], w: u32, h: u32, quality: u8) -> Result<(), YtvisError> {
    let file = std::fs::File::create(path).map_err(|e| YtvisError::io(path, e))?;
    let mut out = BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|source| YtvisError::Image {
            path: path.to_path_buf(),
            source,
        })?;
    out.flush().map_err(|e| YtvisError::io(path, e))
}
