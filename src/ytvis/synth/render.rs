//! Rasterising: the textured background, the shapes with their shading, a frame of the scene
//! with its pixel owners, and the owners as visible-mask RLEs.

use std::f64::consts::PI;

use super::scene::{Look, Scene, Texture};
use super::SplitMix64;
use crate::rng::mix64;
use crate::ytvis::rle::Rle;

fn hash3(a: i64, b: i64, seed: u64) -> f64 {
    let h = mix64(seed ^ mix64((a as u64).wrapping_mul(0x9e37_79b9) ^ (b as u64).rotate_left(32)));
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

pub(super) fn render_background(width: u32, height: u32, rng: &mut SplitMix64) -> Vec<u8> {
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
pub(super) fn render_frame(
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
pub(super) fn owner_masks(owner: &[u8], w: usize, h: usize, n: usize) -> Vec<Option<Rle>> {
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
