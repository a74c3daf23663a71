//! 2-D convolution of one image as im2col + GEMM, with a backward that is two GEMMs and a
//! col2im. candle's own conv2d backward computes the weight gradient as a convolution with the
//! output gradient as kernel, which is several times slower than the forward on this machine
//! (docs/model.md, "Autograd"); training spends most of its time there otherwise.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Geometry of one im2col.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn new(c: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Result<Self> {
        if h + 2 * pad < k || w + 2 * pad < k || stride == 0 {
            bail!("conv2d: kernel {k} does not fit a {h}x{w} input with padding {pad}");
        }
        Ok(Self {
            c,
            h,
            w,
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
        })
    }

    /// Input index of output column `o` along one axis for kernel offset `ki`, or None if padding.
    #[inline]
    fn src(&self, o: usize, ki: usize, n: usize) -> Option<usize> {
        let i = (o * self.stride + ki) as isize - self.pad as isize;
        (i >= 0 && (i as usize) < n).then_some(i as usize)
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("conv2d: only f32 is supported");
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("conv2d: input must be contiguous");
    };
    Ok(&data[start..end])
}

/// im2col, (C, H, W) → (C·k·k, Ho·Wo) with row (c, ki, kj), or its adjoint col2im, (C·k·k,
/// Ho·Wo) → (C, H, W) summing overlaps; each is the other's gradient.
struct Unfold {
    g: Geometry,
    adjoint: bool,
}

impl CustomOp1 for Unfold {
    fn name(&self) -> &'static str {
        if self.adjoint {
            "col2im"
        } else {
            "im2col"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l)?;
        Ok(if self.adjoint {
            col2im(self.g, x)
        } else {
            im2col(self.g, x)
        })
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let other = Unfold {
            g: self.g,
            adjoint: !self.adjoint,
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&other)?))
    }
}

fn im2col(g: Geometry, x: &[f32]) -> (CpuStorage, Shape) {
    let (kk, hw) = (g.k * g.k, g.oh * g.ow);
    let mut out = vec![0f32; g.c * kk * hw];
    out.par_chunks_mut(kk * hw)
        .zip(x.par_chunks(g.h * g.w))
        .for_each(|(dst, plane)| {
            for ki in 0..g.k {
                for kj in 0..g.k {
                    let row = &mut dst[(ki * g.k + kj) * hw..(ki * g.k + kj + 1) * hw];
                    for oy in 0..g.oh {
                        let Some(iy) = g.src(oy, ki, g.h) else {
                            continue;
                        };
                        let src_row = &plane[iy * g.w..(iy + 1) * g.w];
                        let dst_row = &mut row[oy * g.ow..(oy + 1) * g.ow];
                        for (ox, d) in dst_row.iter_mut().enumerate() {
                            if let Some(ix) = g.src(ox, kj, g.w) {
                                *d = src_row[ix];
                            }
                        }
                    }
                }
            }
        });
    (CpuStorage::F32(out), Shape::from((g.c * kk, hw)))
}

fn col2im(g: Geometry, cols: &[f32]) -> (CpuStorage, Shape) {
    let (kk, hw) = (g.k * g.k, g.oh * g.ow);
    let mut out = vec![0f32; g.c * g.h * g.w];
    out.par_chunks_mut(g.h * g.w)
        .zip(cols.par_chunks(kk * hw))
        .for_each(|(plane, src)| {
            for ki in 0..g.k {
                for kj in 0..g.k {
                    let row = &src[(ki * g.k + kj) * hw..(ki * g.k + kj + 1) * hw];
                    for oy in 0..g.oh {
                        let Some(iy) = g.src(oy, ki, g.h) else {
                            continue;
                        };
                        let dst_row = &mut plane[iy * g.w..(iy + 1) * g.w];
                        for (ox, v) in row[oy * g.ow..(oy + 1) * g.ow].iter().enumerate() {
                            if let Some(ix) = g.src(ox, kj, g.w) {
                                dst_row[ix] += v;
                            }
                        }
                    }
                }
            }
        });
    (CpuStorage::F32(out), Shape::from((g.c, g.h, g.w)))
}

/// Convolution of x (1, C, H, W) with weight (O, C, k, k), square kernel, dilation 1, groups 1.
/// Returns (1, O, Ho, Wo). Differentiable in x and weight.
pub fn conv2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (o, wc, kh, kw) = weight.dims4()?;
    if b != 1 {
        bail!("conv2d: batch must be 1, got {b}");
    }
    if wc != c || kh != kw {
        bail!(
            "conv2d: weight {:?} does not fit input {:?}",
            weight.dims(),
            x.dims()
        );
    }
    let g = Geometry::new(c, h, w, kh, stride, padding)?;
    let w2 = weight.reshape((o, c * kh * kw))?;
    let cols = if kh == 1 && stride == 1 && padding == 0 {
        x.reshape((c, h * w))?
    } else {
        x.reshape((c, h, w))?
            .contiguous()?
            .apply_op1(Unfold { g, adjoint: false })?
    };
    w2.matmul(&cols)?.reshape((1, o, g.oh, g.ow))
}
