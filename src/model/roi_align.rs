//! Multi-level RoIAlign: detectron2 `ROIPooler` (`poolers.py`, ROIAlignV2) over torchvision's
//! `roi_align_kernel.cpp` / `roi_align_common.h`, as candle `CustomOp2`s with a CPU forward and a
//! scatter-add backward (spec model.md §2.7, ml-stack.md §3.5).

use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// detectron2 `ROIPooler` defaults: `canonical_box_size` and `canonical_level`.
const CANONICAL_BOX_SIZE: f32 = 224.0;
const CANONICAL_LEVEL: f32 = 4.0;
/// Python's `sys.float_info.epsilon`, which detectron2 adds inside the log2.
const LEVEL_EPS: f32 = 2.220_446e-16;

#[derive(Clone, Copy, Debug)]
struct Params {
    output_size: usize,
    spatial_scale: f32,
    /// 0 means adaptive: `ceil(roi_size / output_size)` samples per bin and axis.
    sampling_ratio: usize,
    aligned: bool,
}

/// One sample along one axis after torchvision's clamping. `lo`/`hi` are element offsets into
/// the plane (rows already multiplied by the width); `hi` gets weight `l`, `lo` gets `1 - l`.
#[derive(Clone, Copy, Debug)]
struct AxisSample {
    lo: usize,
    hi: usize,
    l: f32,
    h: f32,
}

/// Sampling plan of one box: `out * grid` samples per axis (bin-major); `None` marks a sample
/// outside `[-1, size]`, which contributes 0 but still counts in the divisor. The x samples are
/// relative to the column window `[x0, x0 + ncols)` that holds all of them.
#[derive(Debug)]
struct RoiPlan {
    ys: Vec<Option<AxisSample>>,
    xs: Vec<Option<AxisSample>>,
    grid_h: usize,
    grid_w: usize,
    count: f32,
    x0: usize,
    ncols: usize,
}

fn axis_samples(
    start: f32,
    bin: f32,
    grid: usize,
    out: usize,
    size: usize,
    row_stride: usize,
) -> Vec<Option<AxisSample>> {
    let mut samples = Vec::with_capacity(out * grid);
    for p in 0..out {
        for i in 0..grid {
            // Same expression and evaluation order as pre_calc_for_bilinear_interpolate.
            let mut v = start + p as f32 * bin + (i as f32 + 0.5) * bin / grid as f32;
            if v < -1.0 || v > size as f32 || v.is_nan() {
                samples.push(None);
                continue;
            }
            v = v.max(0.0);
            let mut lo = v as usize;
            let hi;
            if lo >= size - 1 {
                lo = size - 1;
                hi = size - 1;
                v = lo as f32;
            } else {
                hi = lo + 1;
            }
            let l = v - lo as f32;
            samples.push(Some(AxisSample {
                lo: lo * row_stride,
                hi: hi * row_stride,
                l,
                h: 1.0 - l,
            }));
        }
    }
    samples
}

fn plan_roi(b: &[f32], height: usize, width: usize, p: &Params) -> Result<RoiPlan> {
    if b.iter().any(|v| !v.is_finite()) {
        bail!("roi_align: box {b:?} has a non-finite coordinate");
    }
    let offset = if p.aligned { 0.5 } else { 0.0 };
    let start_w = b[0] * p.spatial_scale - offset;
    let start_h = b[1] * p.spatial_scale - offset;
    let end_w = b[2] * p.spatial_scale - offset;
    let end_h = b[3] * p.spatial_scale - offset;
    let mut roi_w = end_w - start_w;
    let mut roi_h = end_h - start_h;
    if !p.aligned {
        roi_w = roi_w.max(1.0);
        roi_h = roi_h.max(1.0);
    }
    let out = p.output_size as f32;
    let bin_w = roi_w / out;
    let bin_h = roi_h / out;
    // A negative ceil (inverted box) saturates to 0 samples, like torchvision's empty loops.
    let grid_h = match p.sampling_ratio {
        0 => (roi_h / out).ceil() as usize,
        s => s,
    };
    let grid_w = match p.sampling_ratio {
        0 => (roi_w / out).ceil() as usize,
        s => s,
    };
    let mut xs = axis_samples(start_w, bin_w, grid_w, p.output_size, width, 1);
    let (mut x0, mut x1) = (usize::MAX, 0);
    for s in xs.iter().flatten() {
        x0 = x0.min(s.lo);
        x1 = x1.max(s.hi + 1);
    }
    let x0 = x0.min(x1);
    for s in xs.iter_mut().flatten() {
        s.lo -= x0;
        s.hi -= x0;
    }
    Ok(RoiPlan {
        ys: axis_samples(start_h, bin_h, grid_h, p.output_size, height, width),
        xs,
        grid_h,
        grid_w,
        count: (grid_h * grid_w).max(1) as f32,
        x0,
        ncols: x1 - x0,
    })
}

fn plan_rois(boxes: &[f32], height: usize, width: usize, p: &Params) -> Result<Vec<RoiPlan>> {
    boxes
        .chunks_exact(4)
        .map(|b| plan_roi(b, height, width, p))
        .collect()
}

// The bilinear weight of a sample factorises into (y weight) x (x weight), so both passes go
// through one row buffer per output row: y-interpolate the sample rows over the column window
// (contiguous, vectorised), then x-interpolate from that buffer. Same sum as torchvision's
// per-sample w1..w4, in a different order.

/// One (roi, channel) plane: `plane` is (H, W), `out` is (o, o); `row` has at least W slots.
fn pool_plane(plan: &RoiPlan, plane: &[f32], o: usize, row: &mut [f32], out: &mut [f32]) {
    let cols = plan.x0..plan.x0 + plan.ncols;
    let row = &mut row[..plan.ncols];
    for (ph, out_row) in out.chunks_exact_mut(o).enumerate() {
        row.fill(0.0);
        for sy in plan.ys[ph * plan.grid_h..(ph + 1) * plan.grid_h]
            .iter()
            .flatten()
        {
            let lo = &plane[sy.lo..][cols.clone()];
            let hi = &plane[sy.hi..][cols.clone()];
            for ((r, a), b) in row.iter_mut().zip(lo).zip(hi) {
                *r += sy.h * a + sy.l * b;
            }
        }
        for (pw, dst) in out_row.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for sx in plan.xs[pw * plan.grid_w..(pw + 1) * plan.grid_w]
                .iter()
                .flatten()
            {
                acc += sx.h * row[sx.lo] + sx.l * row[sx.hi];
            }
            *dst = acc / plan.count;
        }
    }
}

/// Adjoint of [`pool_plane`]: adds the (o, o) `grad_out` into the (H, W) `grad_plane`.
fn unpool_plane(
    plan: &RoiPlan,
    grad_out: &[f32],
    o: usize,
    row: &mut [f32],
    grad_plane: &mut [f32],
) {
    let cols = plan.x0..plan.x0 + plan.ncols;
    let row = &mut row[..plan.ncols];
    for (ph, g_row) in grad_out.chunks_exact(o).enumerate() {
        row.fill(0.0);
        for (pw, &g) in g_row.iter().enumerate() {
            let g = g / plan.count;
            for sx in plan.xs[pw * plan.grid_w..(pw + 1) * plan.grid_w]
                .iter()
                .flatten()
            {
                row[sx.lo] += g * sx.h;
                row[sx.hi] += g * sx.l;
            }
        }
        for sy in plan.ys[ph * plan.grid_h..(ph + 1) * plan.grid_h]
            .iter()
            .flatten()
        {
            for (dst, r) in grad_plane[sy.lo..][cols.clone()].iter_mut().zip(&*row) {
                *dst += sy.h * r;
            }
            for (dst, r) in grad_plane[sy.hi..][cols.clone()].iter_mut().zip(&*row) {
                *dst += sy.l * r;
            }
        }
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("roi_align: {what} must be f32");
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("roi_align: {what} must be contiguous");
    };
    Ok(&data[start..end])
}

fn boxes_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match l.dims() {
        [_, 4] => f32_slice(s, l, "boxes_xyxy"),
        dims => bail!("roi_align: boxes_xyxy must be (K, 4), got {dims:?}"),
    }
}

/// Which way a [`RoiAlignOp`] runs.
#[derive(Clone, Copy)]
enum Direction {
    /// features (C, H, W), boxes (K, 4) → (K, C, o, o).
    Forward,
    /// grad_out (K, C, o, o), boxes (K, 4) → grad_features (C, H, W) of this size.
    Adjoint {
        channels: usize,
        height: usize,
        width: usize,
    },
}

/// RoIAlign and its adjoint (the features' gradient) as one candle op; boxes are the second input.
struct RoiAlignOp {
    params: Params,
    direction: Direction,
}

impl CustomOp2 for RoiAlignOp {
    fn name(&self) -> &'static str {
        match self.direction {
            Direction::Forward => "roi_align",
            Direction::Adjoint { .. } => "roi_align_backward",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let boxes = boxes_slice(s2, l2)?;
        match self.direction {
            Direction::Forward => {
                let (c, h, w) = l1.shape().dims3()?;
                let features = f32_slice(s1, l1, "features")?;
                let plans = plan_rois(boxes, h, w, &self.params)?;
                let job = Pooling {
                    dims: (c, h, w),
                    plans: &plans,
                    o: self.params.output_size,
                };
                Ok(job.pool(features))
            }
            Direction::Adjoint {
                channels: c,
                height: h,
                width: w,
            } => {
                let o = self.params.output_size;
                let grad_out = f32_slice(s1, l1, "grad_out")?;
                let plans = plan_rois(boxes, h, w, &self.params)?;
                if l1.dims() != [plans.len(), c, o, o] {
                    bail!(
                        "roi_align_backward: grad_out is {:?}, expected {:?}",
                        l1.dims(),
                        [plans.len(), c, o, o]
                    );
                }
                let job = Pooling {
                    dims: (c, h, w),
                    plans: &plans,
                    o,
                };
                Ok(job.unpool(grad_out))
            }
        }
    }

    fn bwd(
        &self,
        features: &Tensor,
        boxes: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (c, h, w) = features.dims3()?;
        let adjoint = RoiAlignOp {
            params: self.params,
            direction: Direction::Adjoint {
                channels: c,
                height: h,
                width: w,
            },
        };
        let grad = grad_res.contiguous()?.apply_op2_no_bwd(boxes, &adjoint)?;
        Ok((Some(grad), None))
    }
}

/// The boxes of one RoIAlign call over features of `dims` (C, H, W), `o` x `o` bins each.
struct Pooling<'a> {
    dims: (usize, usize, usize),
    plans: &'a [RoiPlan],
    o: usize,
}

impl Pooling<'_> {
    /// Every box pooled from features (C, H, W) → (K, C, o, o).
    fn pool(&self, features: &[f32]) -> (CpuStorage, Shape) {
        let (c, h, w) = self.dims;
        let (plans, o) = (self.plans, self.o);
        let (k, oo) = (plans.len(), o * o);
        // Channel-major, so that one (H, W) plane stays in cache for all boxes: (C, K, o, o).
        let mut by_channel = vec![0.0f32; c * k * oo];
        if k > 0 {
            by_channel
                .par_chunks_mut(k * oo)
                .zip(features.par_chunks(h * w))
                .for_each(|(dst, plane)| {
                    let mut row = vec![0.0f32; w];
                    for (plan, out) in plans.iter().zip(dst.chunks_mut(oo)) {
                        pool_plane(plan, plane, o, &mut row, out);
                    }
                });
        }
        // (C, K, o, o) -> (K, C, o, o)
        let mut out = vec![0.0f32; k * c * oo];
        if c > 0 {
            out.par_chunks_mut(c * oo)
                .enumerate()
                .for_each(|(ki, dst)| {
                    for (ch, bin) in dst.chunks_mut(oo).enumerate() {
                        let src = (ch * k + ki) * oo;
                        bin.copy_from_slice(&by_channel[src..src + oo]);
                    }
                });
        }
        (CpuStorage::F32(out), Shape::from((k, c, o, o)))
    }

    /// The adjoint of [`Pooling::pool`]: grad_out (K, C, o, o) → grad_features (C, H, W),
    /// parallel over channel planes so the scatter-add has no races.
    fn unpool(&self, grad_out: &[f32]) -> (CpuStorage, Shape) {
        let (c, h, w) = self.dims;
        let (plans, o) = (self.plans, self.o);
        let mut grad = vec![0.0f32; c * h * w];
        if h > 0 && w > 0 {
            grad.par_chunks_mut(h * w)
                .enumerate()
                .for_each(|(ch, plane)| {
                    let mut row = vec![0.0f32; w];
                    for (k, plan) in plans.iter().enumerate() {
                        let g = &grad_out[(k * c + ch) * o * o..(k * c + ch + 1) * o * o];
                        unpool_plane(plan, g, o, &mut row, plane);
                    }
                });
        }
        (CpuStorage::F32(grad), Shape::from((c, h, w)))
    }
}

/// Single-level RoIAlign: features (C, H, W) f32 contiguous, boxes_xyxy (K, 4) in input-image pixels.
/// Output (K, C, out, out). aligned = true means ROIAlignV2 (−0.5 pixel shift, no ≥1 clamp).
///
/// (1, C, H, W) features are accepted too. `sampling_ratio == 0` is torchvision's adaptive
/// `ceil(roi / out)`. Boxes are detached (Sparse R-CNN); the features' gradient is exact.
pub fn roi_align(
    features: &Tensor,
    boxes_xyxy: &Tensor,
    output_size: usize,
    spatial_scale: f32,
    sampling_ratio: usize,
    aligned: bool,
) -> Result<Tensor> {
    let features = match features.dims() {
        [_, _, _] => features.clone(),
        [1, _, _, _] => features.squeeze(0)?,
        dims => bail!("roi_align: features must be (C, H, W) or (1, C, H, W), got {dims:?}"),
    };
    let (_, h, w) = features.dims3()?;
    if !features.device().is_cpu() || !boxes_xyxy.device().is_cpu() {
        bail!("roi_align: only the CPU is implemented");
    }
    if features.dtype() != DType::F32 || boxes_xyxy.dtype() != DType::F32 {
        bail!(
            "roi_align: features and boxes_xyxy must be f32, got {:?} and {:?}",
            features.dtype(),
            boxes_xyxy.dtype()
        );
    }
    if !matches!(boxes_xyxy.dims(), [_, 4]) {
        bail!(
            "roi_align: boxes_xyxy must be (K, 4), got {:?}",
            boxes_xyxy.dims()
        );
    }
    if h == 0 || w == 0 || output_size == 0 {
        bail!("roi_align: empty feature map ({h}x{w}) or output_size {output_size}");
    }
    if !(spatial_scale.is_finite() && spatial_scale > 0.0) {
        bail!("roi_align: spatial_scale must be finite and positive, got {spatial_scale}");
    }
    let op = RoiAlignOp {
        params: Params {
            output_size,
            spatial_scale,
            sampling_ratio,
            aligned,
        },
        direction: Direction::Forward,
    };
    features
        .contiguous()?
        .apply_op2(&boxes_xyxy.detach().contiguous()?, op)
}

/// detectron2 `assign_boxes_to_levels`: k = floor(4 + log2(sqrt(area)/224 + 2.22e-16)), clamped to [min_level, max_level]; returns the level per box.
///
/// Computed in f32 like detectron2; a degenerate or inverted box (area ≤ 0) gets `min_level`.
pub fn assign_levels(boxes_xyxy: &[[f32; 4]], min_level: usize, max_level: usize) -> Vec<usize> {
    boxes_xyxy
        .iter()
        .map(|b| {
            let size = ((b[2] - b[0]) * (b[3] - b[1])).sqrt();
            let k = (CANONICAL_LEVEL + (size / CANONICAL_BOX_SIZE + LEVEL_EPS).log2()).floor();
            if k.is_nan() || k <= min_level as f32 {
                min_level
            } else if k >= max_level as f32 {
                max_level
            } else {
                k as usize
            }
        })
        .collect()
}

/// Multi-level pooler (Sparse R-CNN ROIPooler over P2..P5): `levels[i]` is P_{min_level+i} as (C, H_i, W_i) with stride 2^(min_level+i).
/// Each box is pooled from its assigned level; output (K, C, out, out) in the boxes' order.
///
/// Uses ROIAlignV2 (aligned) with `spatial_scale = 1 / 2^level`, as Sparse R-CNN configures it.
#[derive(Clone, Debug)]
pub struct RoiPooler {
    pub output_size: usize,
    pub sampling_ratio: usize,
    pub min_level: usize,
    pub max_level: usize,
}

impl Default for RoiPooler {
    /// Sparse R-CNN: POOLER_RESOLUTION 7, POOLER_SAMPLING_RATIO 2, P2..P5.
    fn default() -> Self {
        Self {
            output_size: 7,
            sampling_ratio: 2,
            min_level: 2,
            max_level: 5,
        }
    }
}

impl RoiPooler {
    pub fn forward(&self, levels: &[Tensor], boxes_xyxy: &Tensor) -> Result<Tensor> {
        if self.min_level > self.max_level || self.max_level >= 32 {
            bail!(
                "RoiPooler: invalid level range {}..={}",
                self.min_level,
                self.max_level
            );
        }
        let num_levels = self.max_level - self.min_level + 1;
        if levels.len() != num_levels {
            bail!(
                "RoiPooler: expected {num_levels} feature levels (P{}..P{}), got {}",
                self.min_level,
                self.max_level,
                levels.len()
            );
        }
        let channels = levels[0].dims().iter().rev().nth(2).copied();
        for (i, level) in levels.iter().enumerate() {
            if level.dims().iter().rev().nth(2).copied() != channels {
                bail!(
                    "RoiPooler: P{} is {:?}, channels differ from P{} {:?}",
                    self.min_level + i,
                    level.dims(),
                    self.min_level,
                    levels[0].dims()
                );
            }
        }
        let channels = match channels {
            Some(c) => c,
            None => bail!(
                "RoiPooler: levels must be (C, H, W), got {:?}",
                levels[0].dims()
            ),
        };
        if boxes_xyxy.dtype() != DType::F32 || !matches!(boxes_xyxy.dims(), [_, 4]) {
            bail!(
                "RoiPooler: boxes_xyxy must be f32 (K, 4), got {:?} {:?}",
                boxes_xyxy.dtype(),
                boxes_xyxy.dims()
            );
        }
        let boxes = boxes_xyxy.detach();
        let host: Vec<[f32; 4]> = boxes
            .to_vec2::<f32>()?
            .into_iter()
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect();
        let box_levels = assign_levels(&host, self.min_level, self.max_level);
        let device = boxes.device();

        let mut pooled = Vec::with_capacity(num_levels);
        let mut order: Vec<u32> = Vec::with_capacity(host.len());
        for (i, features) in levels.iter().enumerate() {
            let level = self.min_level + i;
            let idx: Vec<u32> = (0..host.len())
                .filter(|&b| box_levels[b] == level)
                .map(|b| b as u32)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let level_boxes = boxes.index_select(&Tensor::new(idx.as_slice(), device)?, 0)?;
            let scale = 1.0 / (1u32 << level) as f32;
            // (K_level, C, out, out)
            pooled.push(roi_align(
                features,
                &level_boxes,
                self.output_size,
                scale,
                self.sampling_ratio,
                true,
            )?);
            order.extend(idx);
        }
        if pooled.is_empty() {
            let o = self.output_size;
            return Tensor::zeros((0, channels, o, o), DType::F32, levels[0].device());
        }
        let grouped = Tensor::cat(&pooled, 0)?; // (K, C, out, out), grouped by level
        if order.iter().enumerate().all(|(pos, &b)| pos as u32 == b) {
            return Ok(grouped);
        }
        let mut inverse = vec![0u32; order.len()];
        for (pos, &b) in order.iter().enumerate() {
            inverse[b as usize] = pos as u32;
        }
        grouped.index_select(&Tensor::new(inverse.as_slice(), device)?, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(b: [f32; 4], size: usize, o: usize, sr: usize, aligned: bool) -> RoiPlan {
        let p = Params {
            output_size: o,
            spatial_scale: 1.0,
            sampling_ratio: sr,
            aligned,
        };
        plan_roi(&b, size, size, &p).expect("finite box")
    }

    #[test]
    fn adaptive_grid_is_ceil_of_bin_size() {
        // torchvision: roi_bin_grid = ceil(roi_size / pooled_size) when sampling_ratio <= 0.
        let p = plan([0.0, 0.0, 15.0, 7.0], 32, 7, 0, true);
        assert_eq!((p.grid_h, p.grid_w, p.count), (1, 3, 3.0));
        // A zero-size aligned box samples nothing; count is clamped to 1.
        let p = plan([3.0, 3.0, 3.0, 3.0], 32, 7, 0, true);
        assert_eq!((p.grid_h, p.grid_w, p.count), (0, 0, 1.0));
    }

    #[test]
    fn samples_follow_the_border_rules() {
        // 5-pixel axis, aligned box [-4, 6] with 2 bins and 2 samples per bin:
        // start -4.5, bin 5, samples at -3.25, -0.75, 1.75, 4.25.
        let p = plan([-4.0, -4.0, 6.0, 6.0], 5, 2, 2, true);
        assert!(p.xs[0].is_none(), "-3.25 < -1 is skipped");
        let s = p.xs[1].expect("-0.75 is clamped to 0");
        assert_eq!((s.lo, s.hi, s.l), (0, 1, 0.0));
        let s = p.xs[2].expect("1.75 is interior");
        assert_eq!((s.lo, s.hi, s.l), (1, 2, 0.75));
        let s = p.xs[3].expect("4.25 in (H-1, H] snaps to the last row");
        assert_eq!((s.lo, s.hi, s.l), (4, 4, 0.0));
        // Rows are stored as element offsets (row * width).
        let s = p.ys[2].expect("interior");
        assert_eq!((s.lo, s.hi), (5, 10));
        assert_eq!((p.x0, p.ncols), (0, 5));
    }

    #[test]
    fn columns_are_relative_to_the_window() {
        // Aligned [2.5, 3.5], 1 bin, 2 samples: 2.25, 2.75 → columns 2 and 3 only.
        let p = plan([2.5, 0.0, 3.5, 1.0], 8, 1, 2, true);
        assert_eq!((p.x0, p.ncols), (2, 2));
        let s = p.xs[1].expect("interior");
        assert_eq!((s.lo, s.hi, s.l), (0, 1, 0.75));
        // Nothing in range: an empty window.
        let p = plan([20.0, 0.0, 30.0, 1.0], 8, 2, 2, true);
        assert_eq!(p.ncols, 0);
    }

    #[test]
    fn non_finite_boxes_are_rejected() {
        let p = Params {
            output_size: 7,
            spatial_scale: 0.25,
            sampling_ratio: 0,
            aligned: true,
        };
        assert!(plan_roi(&[0.0, 0.0, f32::INFINITY, 1.0], 8, 8, &p).is_err());
    }
}
