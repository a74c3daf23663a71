//! Synthetic videos in the YouTube-VIS layout: textured shapes that move, bounce, occlude each
//! other by depth, enter and leave the frame, and look-alikes (same shape and colour) that cross
//! paths, so that keeping identities is the hard part. Deterministic by seed (own SplitMix64).

use std::f64::consts::PI;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use rayon::prelude::*;

use super::error::YtvisError;
use super::json::{write_json, Category, GroundTruth, GtAnnotation, RleJson, Segmentation, Video};
use super::rle::Rle;

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

fn hash3(a: i64, b: i64, seed: u64) -> f64 {
    let h = mix64(seed ^ mix64((a as u64).wrapping_mul(0x9e37_79b9) ^ (b as u64).rotate_left(32)));
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[derive(Clone, Copy, Debug)]
enum Texture {
    Solid,
    Stripes,
    Checker,
    Noise,
}

#[derive(Clone, Copy, Debug)]
struct Look {
    shape: usize,
    color: [f64; 3],
    texture: Texture,
    texture_freq: f64,
    texture_seed: u64,
}

#[derive(Clone, Copy, Debug)]
enum Motion {
    /// Centre `fold(u0 + v t)`: bouncing off the borders.
    Bounce { u0: [f64; 2], v: [f64; 2] },
    /// Centre `u0 + v t`: may start or end outside the frame.
    Linear { u0: [f64; 2], v: [f64; 2] },
}

#[derive(Clone, Copy, Debug)]
struct Body {
    look: Look,
    appearance: usize,
    radius: f64,
    angle0: f64,
    spin: f64,
    motion: Motion,
}

const PALETTE: [[f64; 3]; 9] = [
    [220.0, 40.0, 40.0],
    [40.0, 180.0, 60.0],
    [40.0, 80.0, 220.0],
    [235.0, 210.0, 40.0],
    [200.0, 50.0, 200.0],
    [40.0, 200.0, 210.0],
    [245.0, 130.0, 30.0],
    [120.0, 60.0, 170.0],
    [235.0, 235.0, 235.0],
];

struct Scene {
    w: f64,
    h: f64,
    bodies: Vec<Body>,
    background: Vec<u8>,
}

impl Body {
    fn centre(&self, t: f64, w: f64, h: f64) -> [f64; 2] {
        match self.motion {
            Motion::Bounce { u0, v } => {
                let m = self.radius * 0.9;
                [
                    fold(u0[0] + v[0] * t, m, w - m),
                    fold(u0[1] + v[1] * t, m, h - m),
                ]
            }
            Motion::Linear { u0, v } => [u0[0] + v[0] * t, u0[1] + v[1] * t],
        }
    }
}

/// Reflects `u` into `[lo, hi]`: the position of a point bouncing between two walls.
fn fold(u: f64, lo: f64, hi: f64) -> f64 {
    let len = hi - lo;
    if len <= 0.0 {
        return 0.5 * (lo + hi);
    }
    let m = (u - lo).rem_euclid(2.0 * len);
    if m <= len {
        lo + m
    } else {
        lo + 2.0 * len - m
    }
}

fn random_look(rng: &mut SplitMix64) -> Look {
    let texture = match rng.below(4) {
        0 => Texture::Solid,
        1 => Texture::Stripes,
        2 => Texture::Checker,
        _ => Texture::Noise,
    };
    Look {
        shape: rng.below(CATEGORIES.len()),
        color: PALETTE[rng.below(PALETTE.len())],
        texture,
        texture_freq: rng.range(2.0, 4.5),
        texture_seed: rng.next_u64(),
    }
}

impl Scene {
    fn new(opts: &SynthOptions, rng: &mut SplitMix64) -> Scene {
        let (w, h) = (opts.width as f64, opts.height as f64);
        let short = w.min(h);
        let duration = ((opts.frames.max(1) - 1) * opts.frame_stride) as f64;
        let base_speed = 0.012 * short * opts.speed;
        let n = opts.min_objects + rng.below(opts.max_objects - opts.min_objects + 1);
        let mut bodies: Vec<Body> = Vec::with_capacity(n);
        for i in 0..n {
            let radius = short * rng.range(0.06, 0.16);
            let dir = rng.range(0.0, 2.0 * PI);
            let speed = base_speed * rng.range(0.5, 1.5);
            let mut v = [speed * dir.cos(), speed * dir.sin()];
            let (look, appearance, meet) = if i > 0 && rng.chance(opts.lookalikes) {
                let j = rng.below(i);
                (bodies[j].look, bodies[j].appearance, Some(j))
            } else if i > 0 && rng.chance(opts.occlusion) {
                (random_look(rng), i, Some(rng.below(i)))
            } else {
                (random_look(rng), i, None)
            };
            let radius = match meet {
                Some(j) if appearance == bodies[j].appearance => {
                    bodies[j].radius * rng.range(0.9, 1.1)
                }
                _ => radius,
            };
            let linear = rng.chance(opts.enter_leave);
            let (tp, p) = match meet {
                Some(j) => {
                    let tc = duration * rng.range(0.25, 0.75);
                    let other = &bodies[j];
                    let c = other.centre(tc, w, h);
                    let jitter = radius * 0.3;
                    let (Motion::Bounce { v: ov, .. } | Motion::Linear { v: ov, .. }) =
                        other.motion;
                    // cross at an angle, not along the same line
                    let a = ov[1].atan2(ov[0]) + rng.range(PI / 3.0, 5.0 * PI / 3.0);
                    v = [speed * a.cos(), speed * a.sin()];
                    (
                        tc,
                        [
                            c[0] + rng.range(-jitter, jitter),
                            c[1] + rng.range(-jitter, jitter),
                        ],
                    )
                }
                None => (
                    duration * rng.next_f64(),
                    [
                        rng.range(radius, (w - radius).max(radius)),
                        rng.range(radius, (h - radius).max(radius)),
                    ],
                ),
            };
            let u0 = [p[0] - v[0] * tp, p[1] - v[1] * tp];
            let motion = if linear {
                Motion::Linear { u0, v }
            } else {
                let m = radius * 0.9;
                let p = [p[0].clamp(m, (w - m).max(m)), p[1].clamp(m, (h - m).max(m))];
                Motion::Bounce {
                    u0: [p[0] - v[0] * tp, p[1] - v[1] * tp],
                    v,
                }
            };
            bodies.push(Body {
                look,
                appearance,
                radius,
                angle0: rng.range(0.0, 2.0 * PI),
                spin: rng.range(-0.04, 0.04) * opts.speed,
                motion,
            });
        }
        let background = render_background(opts.width, opts.height, rng);
        Scene {
            w,
            h,
            bodies,
            background,
        }
    }
}

fn render_background(width: u32, height: u32, rng: &mut SplitMix64) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let muted = |rng: &mut SplitMix64| {
        [
            rng.range(60.0, 170.0),
            rng.range(60.0, 170.0),
            rng.range(60.0, 170.0),
        ]
    };
    let (c0, c1) = (muted(rng), muted(rng));
    let noise_seed = rng.next_u64();
    let cell = rng.range(24.0, 64.0);
    let stripe_angle = rng.range(0.0, PI);
    let stripe_period = rng.range(12.0, 40.0);
    let stripe_amp = rng.range(0.0, 14.0);
    let (sa, ca) = stripe_angle.sin_cos();
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64, y as f64);
            let n = 0.65 * value_noise(fx / cell, fy / cell, noise_seed)
                + 0.35 * value_noise(fx / (cell * 0.25), fy / (cell * 0.25), noise_seed ^ 1);
            let g = (fx / w as f64 + fy / h as f64) * 0.5;
            let mix = (0.6 * g + 0.4 * n).clamp(0.0, 1.0);
            let stripe = stripe_amp * ((fx * ca + fy * sa) * 2.0 * PI / stripe_period).sin();
            let i = (y * w + x) * 3;
            for ch in 0..3 {
                out[i + ch] =
                    (c0[ch] * (1.0 - mix) + c1[ch] * mix + stripe).clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

fn value_noise(x: f64, y: f64, seed: u64) -> f64 {
    let (x0, y0) = (x.floor(), y.floor());
    let (tx, ty) = (x - x0, y - y0);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let (ix, iy) = (x0 as i64, y0 as i64);
    let a = hash3(ix, iy, seed);
    let b = hash3(ix + 1, iy, seed);
    let c = hash3(ix, iy + 1, seed);
    let d = hash3(ix + 1, iy + 1, seed);
    (a * (1.0 - sx) + b * sx) * (1.0 - sy) + (c * (1.0 - sx) + d * sx) * sy
}

/// Whether the point `(x, y)` of the unit-size shape's own frame is inside it.
fn inside(shape: usize, x: f64, y: f64) -> bool {
    let r2 = x * x + y * y;
    match shape {
        0 => r2 <= 1.0,
        1 => x.abs() <= 0.8 && y.abs() <= 0.8,
        2 => {
            let s3 = 3f64.sqrt();
            y <= 0.5 && s3 * x - y <= 1.0 && -s3 * x - y <= 1.0
        }
        3 => {
            if r2 > 1.0 {
                return false;
            }
            let sector = 2.0 * PI / 5.0;
            let phi = (y.atan2(x) + PI / 2.0).rem_euclid(sector) - sector / 2.0;
            let rho = r2.sqrt();
            let (px, py) = (rho * phi.cos(), rho * phi.abs().sin());
            let ri = 0.45;
            let (s, c) = (PI / 5.0).sin_cos();
            let n = [ri * s, 1.0 - ri * c];
            n[0] * (px - 1.0) + n[1] * py <= 0.0
        }
        4 => (0.3025..=1.0).contains(&r2),
        _ => (x.abs() <= 0.3 && y.abs() <= 0.95) || (y.abs() <= 0.3 && x.abs() <= 0.95),
    }
}

fn shade(look: &Look, x: f64, y: f64) -> [f64; 3] {
    let f = look.texture_freq;
    let k = match look.texture {
        Texture::Solid => 1.0,
        Texture::Stripes => {
            if (x * f).floor().rem_euclid(2.0) == 0.0 {
                1.0
            } else {
                0.55
            }
        }
        Texture::Checker => {
            if ((x * f).floor() + (y * f).floor()).rem_euclid(2.0) == 0.0 {
                1.0
            } else {
                0.5
            }
        }
        Texture::Noise => {
            let n = hash3(
                (x * f * 3.0).floor() as i64,
                (y * f * 3.0).floor() as i64,
                look.texture_seed,
            );
            0.6 + 0.45 * n
        }
    };
    let light = 1.0 - 0.15 * (x * x + y * y) + 0.1 * (-y);
    let m = k * light;
    [look.color[0] * m, look.color[1] * m, look.color[2] * m]
}

/// Draws frame `t` (in simulated frames): RGB and the owner (object index, 255 for none) of
/// every pixel, and which objects a nearer one covers; objects later in `order` are nearer.
fn render_frame(
    scene: &Scene,
    order: &[usize],
    t: f64,
    rgb: &mut [u8],
    owner: &mut [u8],
    occluded: &mut [bool],
) {
    let (w, h) = (scene.w as usize, scene.h as usize);
    rgb.copy_from_slice(&scene.background);
    owner.fill(u8::MAX);
    occluded.fill(false);
    for &i in order {
        let b = &scene.bodies[i];
        let c = b.centre(t, scene.w, scene.h);
        let angle = b.angle0 + b.spin * t;
        let (sa, ca) = angle.sin_cos();
        let reach = b.radius * 1.05;
        let x0 = (c[0] - reach).floor().max(0.0);
        let y0 = (c[1] - reach).floor().max(0.0);
        let x1 = (c[0] + reach).ceil().min(scene.w);
        let y1 = (c[1] + reach).ceil().min(scene.h);
        if x0 >= x1 || y0 >= y1 {
            continue;
        }
        let inv_r = 1.0 / b.radius;
        for y in y0 as usize..y1 as usize {
            for x in x0 as usize..x1 as usize {
                let dx = x as f64 + 0.5 - c[0];
                let dy = y as f64 + 0.5 - c[1];
                let lx = (dx * ca + dy * sa) * inv_r;
                let ly = (-dx * sa + dy * ca) * inv_r;
                if !inside(b.look.shape, lx, ly) {
                    continue;
                }
                let p = y * w + x;
                if let Some(o) = occluded.get_mut(owner[p] as usize) {
                    *o = true;
                }
                owner[p] = i as u8;
                let col = shade(&b.look, lx, ly);
                for ch in 0..3 {
                    rgb[p * 3 + ch] = col[ch].clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    debug_assert_eq!(owner.len(), w * h);
}

/// The visible mask of each of `n` objects from the owner map, in one column-major pass.
fn owner_masks(owner: &[u8], w: usize, h: usize, n: usize) -> Vec<Option<Rle>> {
    let mut intervals: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n];
    let mut push = |o: u8, s: u32, e: u32| {
        if let Some(list) = intervals.get_mut(o as usize) {
            match list.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => list.push((s, e)),
            }
        }
    };
    let mut cur = u8::MAX;
    let mut start = 0u32;
    let mut pos = 0u32;
    for x in 0..w {
        for y in 0..h {
            let o = owner[y * w + x];
            if o != cur {
                push(cur, start, pos);
                cur = o;
                start = pos;
            }
            pos += 1;
        }
    }
    push(cur, start, pos);
    let total = (w * h) as u32;
    intervals
        .into_iter()
        .map(|list| {
            if list.is_empty() {
                return None;
            }
            let mut counts = Vec::with_capacity(list.len() * 2 + 1);
            let mut prev = 0u32;
            for (s, e) in list {
                counts.push(s - prev);
                counts.push(e - s);
                prev = e;
            }
            if prev < total {
                counts.push(total - prev);
            }
            Some(Rle {
                h: h as u32,
                w: w as u32,
                counts,
            })
        })
        .collect()
}

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
fn render_video(
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

fn ground_truth(opts: &SynthOptions, videos: &[(String, Vec<SynthObject>)]) -> GroundTruth {
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

/// How `write_clip` encodes: H.264 (x264, constant quantizer) in Matroska or MP4.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipOptions {
    pub fps: u32,
    /// x264 constant quantizer (0 = lossless in 4:2:0, 18 = visually lossless).
    pub quantizer: u32,
}

impl Default for ClipOptions {
    fn default() -> Self {
        ClipOptions {
            fps: 15,
            quantizer: 18,
        }
    }
}

/// Writes video 0 of `opts` as an encoded clip at `path` (`.mkv` or `.mp4`) by running
/// `gst-launch-1.0`, and its ground truth beside it (`path` with extension `.json`).
pub fn write_clip(
    path: &Path,
    opts: &SynthOptions,
    clip: &ClipOptions,
) -> Result<GroundTruth, YtvisError> {
    opts.validate()?;
    let enc_err = |reason: String| YtvisError::Encoder {
        path: path.to_path_buf(),
        reason,
    };
    if !opts.width.is_multiple_of(2) || !opts.height.is_multiple_of(2) {
        return Err(enc_err(
            "H.264 4:2:0 needs an even width and height".to_string(),
        ));
    }
    if clip.fps == 0 || clip.quantizer > 51 {
        return Err(enc_err(
            "fps must be > 0 and quantizer within 0..=51".to_string(),
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mux = match ext.as_deref() {
        Some("mkv") => "matroskamux",
        Some("mp4") => "mp4mux",
        _ => return Err(enc_err("the clip must end in .mkv or .mp4".to_string())),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| YtvisError::io(parent, e))?;
    }
    let mut raw_path = path.as_os_str().to_owned();
    raw_path.push(".frames.rgb");
    let raw_path = PathBuf::from(raw_path);
    let mut objects = Vec::new();
    let name = {
        let file = std::fs::File::create(&raw_path).map_err(|e| YtvisError::io(&raw_path, e))?;
        let mut out = BufWriter::new(file);
        let name = render_video(
            opts,
            0,
            |_, rgb| out.write_all(rgb).map_err(|e| YtvisError::io(&raw_path, e)),
            &mut objects,
        )?;
        out.flush().map_err(|e| YtvisError::io(&raw_path, e))?;
        name
    };
    let encoded = run_gst(path, &raw_path, opts, clip, mux);
    let _ = std::fs::remove_file(&raw_path);
    encoded?;
    let gt = ground_truth(opts, &[(name, objects)]);
    write_json(&path.with_extension("json"), &gt)?;
    Ok(gt)
}

fn run_gst(
    path: &Path,
    raw: &Path,
    opts: &SynthOptions,
    clip: &ClipOptions,
    mux: &str,
) -> Result<(), YtvisError> {
    let quote = |p: &Path| format!("\"{}\"", p.display().to_string().replace('"', "\\\""));
    let pipeline = format!(
        "filesrc location={} ! rawvideoparse width={} height={} format=rgb framerate={}/1 \
         ! videoconvert ! video/x-raw,format=I420 \
         ! x264enc pass=quant quantizer={} speed-preset=medium key-int-max={} \
         ! h264parse ! {mux} ! filesink location={}",
        quote(raw),
        opts.width,
        opts.height,
        clip.fps,
        clip.quantizer,
        clip.fps * 2,
        quote(path),
    );
    let args: Vec<&str> = pipeline.split_whitespace().collect();
    let output = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .output()
        .map_err(|e| YtvisError::Encoder {
            path: path.to_path_buf(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "gst-launch-1.0 is not on PATH; install the GStreamer tools \
                 (Debian/Ubuntu: gstreamer1.0-tools gstreamer1.0-plugins-good \
                 gstreamer1.0-plugins-ugly)"
                    .to_string()
            } else {
                format!("cannot run gst-launch-1.0: {e}")
            },
        })?;
    if !output.status.success() {
        return Err(YtvisError::Encoder {
            path: path.to_path_buf(),
            reason: format!(
                "gst-launch-1.0 failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim()
            ),
        });
    }
    Ok(())
}
