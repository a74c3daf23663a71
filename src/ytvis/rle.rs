//! COCO run-length encoding, byte-for-byte as pycocotools' `common/maskApi.c` (`rleEncode`,
//! `rleDecode`, `rleToString`, `rleFrString`, `rleFrPoly`, `rleFrBbox`, `rleArea`, `rleToBbox`,
//! `rleMerge`, `rleIou`) and `_mask.pyx` (`frPyObjects`).

use super::error::YtvisError;

/// A binary mask of `h` x `w` pixels as COCO run lengths: the mask flattened column-major
/// (Fortran order), runs alternating 0s and 1s, starting with a (possibly empty) run of 0s.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rle {
    pub h: u32,
    pub w: u32,
    pub counts: Vec<u32>,
}

impl Rle {
    /// `rleEncode`: `mask` holds `h * w` bytes in column-major order; a pixel is set when non-zero.
    pub fn encode_column_major(mask: &[u8], h: u32, w: u32) -> Rle {
        let a = h as usize * w as usize;
        Self::encode_iter(mask.iter().take(a).map(|&v| v != 0), h, w)
    }

    /// Encodes a row-major (image layout) mask of `h * w` values; a pixel is set when non-zero.
    pub fn encode_row_major(mask: &[u8], h: u32, w: u32) -> Rle {
        let (hu, wu) = (h as usize, w as usize);
        let iter = (0..wu).flat_map(move |x| (0..hu).map(move |y| y * wu + x));
        Self::encode_iter(iter.map(|i| mask.get(i).is_some_and(|&v| v != 0)), h, w)
    }

    /// Encodes pixels given in column-major order.
    pub fn encode_iter(pixels: impl Iterator<Item = bool>, h: u32, w: u32) -> Rle {
        let mut counts = Vec::new();
        let (mut p, mut c) = (false, 0u32);
        for v in pixels {
            if v != p {
                counts.push(c);
                c = 0;
                p = v;
            }
            c += 1;
        }
        counts.push(c);
        Rle { h, w, counts }
    }

    /// The mask of all zeros.
    pub fn zeros(h: u32, w: u32) -> Rle {
        Rle {
            h,
            w,
            counts: vec![h.wrapping_mul(w)],
        }
    }

    /// `rleDecode`: `h * w` bytes (0 or 1) in column-major order.
    pub fn decode_column_major(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pixels());
        let mut v = 0u8;
        for &c in &self.counts {
            out.extend(std::iter::repeat_n(v, c as usize));
            v = 1 - v;
        }
        out.resize(self.pixels(), 0);
        out
    }

    /// The mask as `h * w` bytes (0 or 1) in row-major (image) order.
    pub fn decode_row_major(&self) -> Vec<u8> {
        let (h, w) = (self.h as usize, self.w as usize);
        let mut out = vec![0u8; h * w];
        let mut pos = 0usize;
        let mut v = false;
        for &c in &self.counts {
            if v {
                for i in pos..(pos + c as usize).min(h * w) {
                    out[(i % h) * w + i / h] = 1;
                }
            }
            pos += c as usize;
            v = !v;
        }
        out
    }

    fn pixels(&self) -> usize {
        self.h as usize * self.w as usize
    }

    /// Sum of the runs; equals `h * w` for a well-formed RLE.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&c| c as u64).sum()
    }

    /// `rleArea`: the number of set pixels (sum of the odd-indexed runs).
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
    }

    /// `rleToString`: the compressed counts (LEB128-like, 6 bits a char, ascii 48..111; runs after
    /// the third are stored as the difference to the run two before).
    pub fn to_compressed(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for (i, &cnt) in self.counts.iter().enumerate() {
            let mut x = cnt as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// `rleFrString`: parses compressed counts. Rejects characters outside 48..111, a string that
    /// ends inside a number, and runs that fall outside `u32` (pycocotools wraps those silently).
    pub fn from_compressed(s: &str, h: u32, w: u32) -> Result<Rle, YtvisError> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::with_capacity(bytes.len());
        let mut p = 0usize;
        while p < bytes.len() {
            let mut x: i64 = 0;
            let mut k = 0u32;
            loop {
                let Some(&byte) = bytes.get(p) else {
                    return Err(rle_err(format!(
                        "compressed counts end inside a number at char {p}"
                    )));
                };
                if !(48..=111).contains(&byte) {
                    return Err(rle_err(format!(
                        "compressed counts hold {:?} at char {p}; expected chars '0'..'o'",
                        byte as char
                    )));
                }
                if k >= 12 {
                    return Err(rle_err(format!("run at char {p} is too long")));
                }
                let c = (byte - 48) as i64;
                x |= (c & 0x1f) << (5 * k);
                let more = c & 0x20 != 0;
                p += 1;
                k += 1;
                if !more {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += counts[m - 2] as i64;
            }
            let cnt = u32::try_from(x)
                .map_err(|_| rle_err(format!("run {m} decodes to {x}, outside 0..2^32")))?;
            counts.push(cnt);
        }
        Ok(Rle { h, w, counts })
    }

    /// `rleToBbox`: `[x, y, width, height]` of the set pixels, zeros when empty.
    pub fn to_bbox(&self) -> [f64; 4] {
        let (h, w) = (self.h, self.w);
        let m = (self.counts.len() / 2) * 2;
        if m == 0 || h == 0 {
            return [0.0; 4];
        }
        let (mut xs, mut ys, mut xe, mut ye) = (w, h, 0u32, 0u32);
        let mut cc = 0u32;
        let mut xp = 0u32;
        for j in 0..m {
            cc = cc.wrapping_add(self.counts[j]);
            let t = cc.wrapping_sub((j % 2) as u32);
            let y = t % h;
            let x = (t - y) / h;
            if j % 2 == 0 {
                xp = x;
            } else if xp < x {
                ys = 0;
                ye = h - 1;
            }
            xs = xs.min(x);
            xe = xe.max(x);
            ys = ys.min(y);
            ye = ye.max(y);
        }
        [
            xs as f64,
            ys as f64,
            xe.wrapping_sub(xs).wrapping_add(1) as f64,
            ye.wrapping_sub(ys).wrapping_add(1) as f64,
        ]
    }

    /// `rleMerge`: union (or intersection) of all `rles`. As in pycocotools, a size mismatch gives
    /// an empty 0x0 RLE and no merge gives one with no runs.
    pub fn merge(rles: &[Rle], intersect: bool) -> Rle {
        let Some(first) = rles.first() else {
            return Rle {
                h: 0,
                w: 0,
                counts: Vec::new(),
            };
        };
        let (h, w) = (first.h, first.w);
        let mut cnts = first.counts.clone();
        for b in &rles[1..] {
            if b.h != h || b.w != w {
                return Rle {
                    h: 0,
                    w: 0,
                    counts: Vec::new(),
                };
            }
            let a = std::mem::take(&mut cnts);
            let mut ia = RunCursor::new(&a);
            let mut ib = RunCursor::new(&b.counts);
            let mut v = false;
            let mut cc = 0u32;
            loop {
                let c = ia.rem.min(ib.rem);
                cc += c;
                ia.consume(c);
                ib.consume(c);
                let ct = ia.rem as u64 + ib.rem as u64;
                let vp = v;
                v = if intersect {
                    ia.on && ib.on
                } else {
                    ia.on || ib.on
                };
                if v != vp || ct == 0 {
                    cnts.push(cc);
                    cc = 0;
                }
                if ct == 0 {
                    break;
                }
            }
        }
        Rle { h, w, counts: cnts }
    }

    /// `|a ∩ b|` and `|a ∪ b|`, the areas of `merge([a, b], true)` and `merge([a, b], false)`,
    /// without building them; `None` when the sizes differ (where pycocotools' merge gives 0).
    pub fn intersection_union(a: &Rle, b: &Rle) -> Option<(u64, u64)> {
        if a.h != b.h || a.w != b.w {
            return None;
        }
        let mut ia = RunCursor::new(&a.counts);
        let mut ib = RunCursor::new(&b.counts);
        let (mut i, mut u) = (0u64, 0u64);
        loop {
            let c = ia.rem.min(ib.rem);
            if ia.on || ib.on {
                u += c as u64;
                if ia.on && ib.on {
                    i += c as u64;
                }
            }
            ia.consume(c);
            ib.consume(c);
            if ia.rem == 0 && ib.rem == 0 {
                break;
            }
        }
        Some((i, u))
    }

    /// `rleIou`: the `dt.len() x gt.len()` IoU matrix (row per detection) with COCO's crowd rule
    /// (a crowd region's union is the detection's area); -1 where sizes differ and the boxes overlap.
    pub fn iou(dt: &[Rle], gt: &[Rle], iscrowd: &[bool]) -> Vec<Vec<f64>> {
        let db: Vec<[f64; 4]> = dt.iter().map(Rle::to_bbox).collect();
        let gb: Vec<[f64; 4]> = gt.iter().map(Rle::to_bbox).collect();
        let mut o = vec![vec![0.0; gt.len()]; dt.len()];
        for (g, gbox) in gb.iter().enumerate() {
            let crowd = iscrowd.get(g).copied().unwrap_or(false);
            for (d, dbox) in db.iter().enumerate() {
                if bbox_iou(dbox, gbox, crowd) <= 0.0 {
                    continue;
                }
                o[d][g] = match Self::intersection_union(&dt[d], &gt[g]) {
                    None => -1.0,
                    Some((0, _)) => 0.0,
                    Some((i, _)) if crowd => i as f64 / dt[d].area() as f64,
                    Some((i, u)) => i as f64 / u as f64,
                };
            }
        }
        o
    }

    /// `rleFrPoly`: one polygon `[x0, y0, x1, y1, ...]` in pixel coordinates, each finite and
    /// within ±1e5 (larger ones overflow `int` in maskApi.c; [`Rle::from_polygons`] checks).
    pub fn from_polygon(xy: &[f64], h: u32, w: u32) -> Rle {
        const SCALE: f64 = 5.0;
        let k = xy.len() / 2;
        if k == 0 {
            return Rle::zeros(h, w);
        }
        let mut x: Vec<i32> = (0..k).map(|j| (SCALE * xy[2 * j] + 0.5) as i32).collect();
        let mut y: Vec<i32> = (0..k)
            .map(|j| (SCALE * xy[2 * j + 1] + 0.5) as i32)
            .collect();
        x.push(x[0]);
        y.push(y[0]);
        let mut u: Vec<i32> = Vec::new();
        let mut v: Vec<i32> = Vec::new();
        for j in 0..k {
            let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
            let dx = (xe - xs).abs();
            let dy = (ys - ye).abs();
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
            if flip {
                std::mem::swap(&mut xs, &mut xe);
                std::mem::swap(&mut ys, &mut ye);
            }
            let s = if dx >= dy {
                (ye - ys) as f64 / dx as f64
            } else {
                (xe - xs) as f64 / dy as f64
            };
            if dx >= dy {
                for d in 0..=dx {
                    let t = if flip { dx - d } else { d };
                    u.push(t + xs);
                    v.push((ys as f64 + s * t as f64 + 0.5) as i32);
                }
            } else {
                for d in 0..=dy {
                    let t = if flip { dy - d } else { d };
                    v.push(t + ys);
                    u.push((xs as f64 + s * t as f64 + 0.5) as i32);
                }
            }
        }
        let mut a: Vec<u32> = Vec::new();
        let wmax = w as f64 - 1.0;
        for j in 1..u.len() {
            if u[j] == u[j - 1] {
                continue;
            }
            let mut xd = if u[j] < u[j - 1] { u[j] } else { u[j] - 1 } as f64;
            xd = (xd + 0.5) / SCALE - 0.5;
            if xd.floor() != xd || xd < 0.0 || xd > wmax {
                continue;
            }
            let mut yd = if v[j] < v[j - 1] { v[j] } else { v[j - 1] } as f64;
            yd = (yd + 0.5) / SCALE - 0.5;
            if yd < 0.0 {
                yd = 0.0;
            } else if yd > h as f64 {
                yd = h as f64;
            }
            yd = yd.ceil();
            a.push(((xd as i32).wrapping_mul(h as i32)).wrapping_add(yd as i32) as u32);
        }
        a.push(h.wrapping_mul(w));
        a.sort_unstable();
        let mut p = 0u32;
        for v in a.iter_mut() {
            let t = *v;
            *v = v.wrapping_sub(p);
            p = t;
        }
        let mut b: Vec<u32> = Vec::with_capacity(a.len());
        let mut j = 0;
        b.push(a[j]);
        j += 1;
        while j < a.len() {
            if a[j] > 0 {
                b.push(a[j]);
                j += 1;
            } else {
                j += 1;
                if j < a.len() {
                    let last = b.len() - 1;
                    b[last] = b[last].wrapping_add(a[j]);
                    j += 1;
                }
            }
        }
        Rle { h, w, counts: b }
    }

    /// `rleFrBbox`: the box `[x, y, width, height]` rasterised as a polygon.
    pub fn from_bbox(bb: [f64; 4], h: u32, w: u32) -> Rle {
        let (xs, ys) = (bb[0], bb[1]);
        let (xe, ye) = (xs + bb[2], ys + bb[3]);
        Self::from_polygon(&[xs, ys, xs, ye, xe, ye, xe, ys], h, w)
    }

    /// What `annToRLE` makes of a polygon segmentation: `merge(frPyObjects(polys, h, w))`.
    /// pycocotools raises when the first polygon has 4 numbers or fewer (it takes 4 for a box,
    /// then rejects the list); so do we.
    pub fn from_polygons(polys: &[Vec<f64>], h: u32, w: u32) -> Result<Rle, YtvisError> {
        let Some(first) = polys.first() else {
            return Err(rle_err("empty polygon list".to_string()));
        };
        if first.len() <= 4 {
            return Err(rle_err(format!(
                "a polygon needs at least 3 points; the first has {} numbers",
                first.len()
            )));
        }
        if let Some(v) = polys
            .iter()
            .flatten()
            .find(|v| !v.is_finite() || v.abs() > MAX_COORD)
        {
            return Err(rle_err(format!(
                "polygon coordinate {v} is not a finite number within ±{MAX_COORD}"
            )));
        }
        let rles: Vec<Rle> = polys.iter().map(|p| Rle::from_polygon(p, h, w)).collect();
        Ok(Rle::merge(&rles, false))
    }
}

struct RunCursor<'a> {
    counts: &'a [u32],
    next: usize,
    rem: u32,
    on: bool,
}

impl<'a> RunCursor<'a> {
    fn new(counts: &'a [u32]) -> Self {
        RunCursor {
            counts,
            next: 1,
            rem: counts.first().copied().unwrap_or(0),
            on: false,
        }
    }

    fn consume(&mut self, c: u32) {
        self.rem -= c;
        if self.rem == 0 && self.next < self.counts.len() {
            self.rem = self.counts[self.next];
            self.next += 1;
            self.on = !self.on;
        }
    }
}

fn bbox_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let u = if crowd {
        d[2] * d[3]
    } else {
        d[2] * d[3] + g[2] * g[3] - i
    };
    i / u
}

/// Largest polygon coordinate accepted from json.
const MAX_COORD: f64 = 1e5;

fn rle_err(reason: String) -> YtvisError {
    YtvisError::Rle { reason }
}
