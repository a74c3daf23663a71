//! The simulated scene: the bodies' looks (shape, colour, texture), their motion, and how a
//! video's bodies are drawn at random (look-alikes included).

use std::f64::consts::PI;

use super::render::render_background;
use super::{SplitMix64, SynthOptions, CATEGORIES};

#[derive(Clone, Copy, Debug)]
pub(super) enum Texture {
    Solid,
    Stripes,
    Checker,
    Noise,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Look {
    pub(super) shape: usize,
    pub(super) color: [f64; 3],
    pub(super) texture: Texture,
    pub(super) texture_freq: f64,
    pub(super) texture_seed: u64,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Motion {
    /// Centre `fold(u0 + v t)`: bouncing off the borders.
    Bounce { u0: [f64; 2], v: [f64; 2] },
    /// Centre `u0 + v t`: may start or end outside the frame.
    Linear { u0: [f64; 2], v: [f64; 2] },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Body {
    pub(super) look: Look,
    pub(super) appearance: usize,
    pub(super) radius: f64,
    pub(super) angle0: f64,
    pub(super) spin: f64,
    pub(super) motion: Motion,
}

pub(super) const PALETTE: [[f64; 3]; 9] = [
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

pub(super) struct Scene {
    pub(super) w: f64,
    pub(super) h: f64,
    pub(super) bodies: Vec<Body>,
    pub(super) background: Vec<u8>,
}

impl Body {
    pub(super) fn centre(&self, t: f64, w: f64, h: f64) -> [f64; 2] {
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
pub(super) fn fold(u: f64, lo: f64, hi: f64) -> f64 {
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

pub(super) fn random_look(rng: &mut SplitMix64) -> Look {
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
    pub(super) fn new(opts: &SynthOptions, rng: &mut SplitMix64) -> Scene {
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
