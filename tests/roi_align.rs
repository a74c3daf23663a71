//! RoIAlign / ROIPooler against hand-derived values, a literal transcription of torchvision's
//! `roi_align_kernel.cpp`, finite differences and the adjoint identity.

use candle_core::{DType, Device, Result, Tensor, Var};
use inspro::model::roi_align::{assign_levels, roi_align, RoiPooler};

/// Deterministic xorshift64* in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// `arange(25)` as a (1, 5, 5) map: f(y, x) = 5y + x, bilinear-exact.
fn arange25() -> Tensor {
    Tensor::arange(0f32, 25.0, &Device::Cpu)
        .and_then(|t| t.reshape((1, 5, 5)))
        .expect("static shape")
}

/// Pools one box from a single-channel map and returns the (o, o) result.
fn pool1(
    features: &Tensor,
    b: [f32; 4],
    o: usize,
    scale: f32,
    sr: usize,
    aligned: bool,
) -> Result<Vec<Vec<f32>>> {
    let boxes = Tensor::new(&[b], &Device::Cpu)?;
    roi_align(features, &boxes, o, scale, sr, aligned)?
        .squeeze(0)?
        .squeeze(0)?
        .to_vec2()
}

/// Literal transcription of torchvision `roi_align_forward_kernel_impl` + `bilinear_interpolate`
/// (f32, same expression order), features (C, H, W), boxes (K, 4) → (K, C, o, o).
#[allow(clippy::too_many_arguments)]
fn torchvision_roi_align(
    input: &[f32],
    (channels, height, width): (usize, usize, usize),
    rois: &[[f32; 4]],
    pooled: usize,
    spatial_scale: f32,
    sampling_ratio: i64,
    aligned: bool,
) -> Vec<f32> {
    let (h_i, w_i) = (height as i64, width as i64);
    let bilinear = |plane: &[f32], mut y: f32, mut x: f32| -> f32 {
        if y < -1.0 || y > height as f32 || x < -1.0 || x > width as f32 {
            return 0.0;
        }
        if y <= 0.0 {
            y = 0.0;
        }
        if x <= 0.0 {
            x = 0.0;
        }
        let mut y_low = y as i64;
        let mut x_low = x as i64;
        let (y_high, x_high);
        if y_low >= h_i - 1 {
            y_low = h_i - 1;
            y_high = y_low;
            y = y_low as f32;
        } else {
            y_high = y_low + 1;
        }
        if x_low >= w_i - 1 {
            x_low = w_i - 1;
            x_high = x_low;
            x = x_low as f32;
        } else {
            x_high = x_low + 1;
        }
        let (ly, lx) = (y - y_low as f32, x - x_low as f32);
        let (hy, hx) = (1.0 - ly, 1.0 - lx);
        let at = |yy: i64, xx: i64| plane[(yy * w_i + xx) as usize];
        hy * hx * at(y_low, x_low)
            + hy * lx * at(y_low, x_high)
            + ly * hx * at(y_high, x_low)
            + ly * lx * at(y_high, x_high)
    };
    let mut output = Vec::new();
    for roi in rois {
        let offset = if aligned { 0.5 } else { 0.0 };
        let roi_start_w = roi[0] * spatial_scale - offset;
        let roi_start_h = roi[1] * spatial_scale - offset;
        let roi_end_w = roi[2] * spatial_scale - offset;
        let roi_end_h = roi[3] * spatial_scale - offset;
        let mut roi_width = roi_end_w - roi_start_w;
        let mut roi_height = roi_end_h - roi_start_h;
        if !aligned {
            roi_width = roi_width.max(1.0);
            roi_height = roi_height.max(1.0);
        }
        let bin_size_h = roi_height / pooled as f32;
        let bin_size_w = roi_width / pooled as f32;
        let grid_h = if sampling_ratio > 0 {
            sampling_ratio
        } else {
            (roi_height / pooled as f32).ceil() as i64
        };
        let grid_w = if sampling_ratio > 0 {
            sampling_ratio
        } else {
            (roi_width / pooled as f32).ceil() as i64
        };
        let count = (grid_h * grid_w).max(1) as f32;
        for c in 0..channels {
            let plane = &input[c * height * width..(c + 1) * height * width];
            for ph in 0..pooled {
                for pw in 0..pooled {
                    let mut output_val = 0.0f32;
                    for iy in 0..grid_h {
                        let y = roi_start_h
                            + ph as f32 * bin_size_h
                            + (iy as f32 + 0.5) * bin_size_h / grid_h as f32;
                        for ix in 0..grid_w {
                            let x = roi_start_w
                                + pw as f32 * bin_size_w
                                + (ix as f32 + 0.5) * bin_size_w / grid_w as f32;
                            output_val += bilinear(plane, y, x);
                        }
                    }
                    output.push(output_val / count);
                }
            }
        }
    }
    output
}

fn boxes_tensor(boxes: &[[f32; 4]]) -> Result<Tensor> {
    let flat: Vec<f32> = boxes.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (boxes.len(), 4), &Device::Cpu)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn random_boxes(rng: &mut Rng, k: usize, img_w: f32, img_h: f32) -> Vec<[f32; 4]> {
    // Centres up to 30% outside the image, sizes from sub-pixel to larger than the image.
    (0..k)
        .map(|_| {
            let cx = (0.5 + 0.8 * rng.next()) * img_w;
            let cy = (0.5 + 0.8 * rng.next()) * img_h;
            let w = (1.05 + rng.next()).powi(4) * img_w * 0.3;
            let h = (1.05 + rng.next()).powi(4) * img_h * 0.3;
            [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
        })
        .collect()
}

#[test]
fn style_reference_arange25_aligned() -> Result<()> {
    // STYLE.md reference: arange(25) as 5x5, box [1,1,3,3], aligned →
    // [[4.5,5,5.5,6],[7,7.5,8,8.5],[9.5,10,10.5,11],[12,12.5,13,13.5]].
    // Settings: output 4x4, spatial_scale 1: start = 1 - 0.5 = 0.5, roi = 2, bin = 0.5, so with one
    // sample per bin the centres are 0.75, 1.25, 1.75, 2.25 and f = 5y + x gives 4.5 at (0.75, 0.75).
    // f is linear, so 2 samples per bin and adaptive (ceil(0.5) = 1) give the same values.
    let expected = vec![
        vec![4.5, 5.0, 5.5, 6.0],
        vec![7.0, 7.5, 8.0, 8.5],
        vec![9.5, 10.0, 10.5, 11.0],
        vec![12.0, 12.5, 13.0, 13.5],
    ];
    let f = arange25();
    for sr in [1, 2, 0] {
        assert_eq!(pool1(&f, [1.0, 1.0, 3.0, 3.0], 4, 1.0, sr, true)?, expected);
    }
    Ok(())
}

#[test]
fn sampling_ratio_two_on_a_delta_by_hand() -> Result<()> {
    // Hand derivation: a 1 at (2, 2) of a 5x5 map; bilinear interpolation of it is the tent
    // t(y) t(x) with t(s) = max(0, 1 - |s - 2|). Box [x1=1, y1=0, x2=4, y2=4], aligned, 2x2 output:
    //  x: start 0.5, bin 1.5; sampling 2 → x = 0.875, 1.625 | 2.375, 3.125 → t = 0, .625 | .625, 0
    //  y: start -0.5, bin 2;  sampling 2 → y = 0, 1 | 2, 3             → t = 0, 0 | 1, 0
    //  out = (Σ t(y)) (Σ t(x)) / 4 = [[0, 0], [.625/4, .625/4]] = [[0, 0], [0.15625, 0.15625]].
    // With sampling 1 the bin centres are x = 1.25, 2.75 (t = .25, .25), y = 0.5, 2.5 (t = 0, .5):
    //  out = [[0, 0], [0.125, 0.125]].
    let mut delta = vec![0f32; 25];
    delta[12] = 1.0;
    let f = Tensor::from_vec(delta, (1, 5, 5), &Device::Cpu)?;
    let b = [1.0, 0.0, 4.0, 4.0];
    assert_eq!(
        pool1(&f, b, 2, 1.0, 2, true)?,
        vec![vec![0.0, 0.0], vec![0.15625, 0.15625]]
    );
    assert_eq!(
        pool1(&f, b, 2, 1.0, 1, true)?,
        vec![vec![0.0, 0.0], vec![0.125, 0.125]]
    );
    Ok(())
}

#[test]
fn legacy_mode_by_hand() -> Result<()> {
    // torchvision aligned=False: no -0.5 shift, roi size clamped to >= 1. On f = 5y + x:
    //  [1,1,3,3], 2x2, sampling 1: start 1, bin 1, centres 1.5, 2.5 → [[9, 10], [14, 15]].
    //  Same box in a stride-2 map: [2,2,6,6] with spatial_scale 0.5 → identical.
    //  [2,2,2.5,2.5], 1x1: roi 0.5 → clamped to 1, centre 2.5 → 15 (aligned: start 1.5, roi 0.5,
    //  centre 1.75 → 10.5).
    let f = arange25();
    let expected = vec![vec![9.0, 10.0], vec![14.0, 15.0]];
    assert_eq!(pool1(&f, [1.0, 1.0, 3.0, 3.0], 2, 1.0, 1, false)?, expected);
    assert_eq!(pool1(&f, [2.0, 2.0, 6.0, 6.0], 2, 0.5, 1, false)?, expected);
    assert_eq!(
        pool1(&f, [2.0, 2.0, 2.5, 2.5], 1, 1.0, 1, false)?,
        vec![vec![15.0]]
    );
    assert_eq!(
        pool1(&f, [2.0, 2.0, 2.5, 2.5], 1, 1.0, 1, true)?,
        vec![vec![10.5]]
    );
    Ok(())
}

#[test]
fn boxes_outside_the_map_by_hand() -> Result<()> {
    // roi_align_common.h: a sample with y < -1, y > H, x < -1 or x > W contributes 0 but still
    // counts in the divisor; samples in [-1, 0] clamp to 0; y_low >= H-1 snaps to the last row.
    // f = 5y + x on 5x5, aligned, spatial_scale 1.
    let f = arange25();
    // Wholly outside: start 9.5 > W.
    assert_eq!(
        pool1(&f, [10.0, 10.0, 12.0, 12.0], 2, 1.0, 2, true)?,
        vec![vec![0.0; 2]; 2]
    );
    // [-4,-4,2,2], 2x2, sampling 2: start -4.5, bin 3, samples -3.75, -2.25 | -0.75, 0.75.
    // Only bin (1, 1) has in-range samples: y, x ∈ {0 (clamped), 0.75} → (0 + .75 + 3.75 + 4.5)/4.
    assert_eq!(
        pool1(&f, [-4.0, -4.0, 2.0, 2.0], 2, 1.0, 2, true)?,
        vec![vec![0.0, 0.0], vec![0.0, 2.25]]
    );
    // [3,3,6,6], 1x1, sampling 2: samples 3.25, 4.75 → 4.75 snaps to 4: 5·3.625 + 3.625 = 21.75.
    assert_eq!(
        pool1(&f, [3.0, 3.0, 6.0, 6.0], 1, 1.0, 2, true)?,
        vec![vec![21.75]]
    );
    // [3,3,8,8], 1x1, sampling 2: samples 3.75, 6.25 (> H, skipped) → f(3.75, 3.75)/4 = 5.625.
    assert_eq!(
        pool1(&f, [3.0, 3.0, 8.0, 8.0], 1, 1.0, 2, true)?,
        vec![vec![5.625]]
    );
    // Exactly on the limits: a sample at 5.0 (= H) is kept and snaps to 4 → f(4, 4) = 24; on
    // f + 1, a sample at -1.0 is kept (clamped to 0 → 1), one at -1.1 is dropped.
    assert_eq!(
        pool1(&f, [4.5, 4.5, 6.5, 6.5], 1, 1.0, 1, true)?,
        vec![vec![24.0]]
    );
    let f1 = (&f + 1.0)?;
    assert_eq!(
        pool1(&f1, [-1.5, -1.5, 0.5, 0.5], 1, 1.0, 1, true)?,
        vec![vec![1.0]]
    );
    assert_eq!(
        pool1(&f1, [-1.6, -1.6, 0.4, 0.4], 1, 1.0, 1, true)?,
        vec![vec![0.0]]
    );
    Ok(())
}

#[test]
fn layout_channels_and_batch_dim() -> Result<()> {
    // Channel c = arange25 + 100c: output (K, C, o, o) with box-major, then channel order.
    let f = Tensor::cat(
        &[arange25(), (arange25() + 100.0)?, (arange25() + 200.0)?],
        0,
    )?;
    let boxes = Tensor::new(&[[1f32, 1.0, 3.0, 3.0], [1.0, 1.0, 3.0, 3.0]], &Device::Cpu)?;
    let out = roi_align(&f, &boxes, 4, 1.0, 1, true)?;
    assert_eq!(out.dims(), [2, 3, 4, 4]);
    let first = out.get(1)?.get(2)?.get(0)?.to_vec1::<f32>()?;
    assert_eq!(first, vec![204.5, 205.0, 205.5, 206.0]);
    let batched = roi_align(&f.unsqueeze(0)?, &boxes, 4, 1.0, 1, true)?;
    assert_eq!(
        batched.flatten_all()?.to_vec1::<f32>()?,
        out.flatten_all()?.to_vec1::<f32>()?
    );
    // A strided (transposed) input gives the same result as its contiguous copy.
    let t = f.transpose(1, 2)?;
    let a = roi_align(&t, &boxes, 3, 1.0, 2, true)?;
    let b = roi_align(&t.contiguous()?, &boxes, 3, 1.0, 2, true)?;
    assert_eq!(
        a.flatten_all()?.to_vec1::<f32>()?,
        b.flatten_all()?.to_vec1::<f32>()?
    );
    // No boxes → (0, C, o, o).
    let none = Tensor::zeros((0, 4), DType::F32, &Device::Cpu)?;
    assert_eq!(roi_align(&f, &none, 7, 1.0, 2, true)?.dims(), [0, 3, 7, 7]);
    Ok(())
}

#[test]
fn clear_errors() -> Result<()> {
    let f = arange25();
    let b = Tensor::new(&[[1f32, 1.0, 3.0, 3.0]], &Device::Cpu)?;
    let err = |r: Result<Tensor>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(roi_align(&f.to_dtype(DType::F64)?, &b, 2, 1.0, 2, true)).contains("f32"));
    assert!(err(roi_align(&f, &b.to_dtype(DType::F16)?, 2, 1.0, 2, true)).contains("f32"));
    let b5 = Tensor::zeros((1, 5), DType::F32, &Device::Cpu)?;
    assert!(err(roi_align(&f, &b5, 2, 1.0, 2, true)).contains("(K, 4)"));
    assert!(err(roi_align(
        &f.unsqueeze(0)?.repeat((2, 1, 1, 1))?,
        &b,
        2,
        1.0,
        2,
        true
    ))
    .contains("(1, C, H, W)"));
    let inf = Tensor::new(&[[0f32, 0.0, f32::INFINITY, 1.0]], &Device::Cpu)?;
    assert!(err(roi_align(&f, &inf, 2, 1.0, 0, true)).contains("non-finite"));
    let pooler = RoiPooler::default();
    assert!(err(pooler.forward(&[f.clone(), f.clone()], &b)).contains("expected 4 feature levels"));
    Ok(())
}

#[test]
fn matches_torchvision_transcription_on_random_boxes() -> Result<()> {
    // Reference: torchvision roi_align_kernel.cpp, transcribed literally above.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (c, h, w) = (3, 13, 17);
    let data = rng.vec(c * h * w);
    let f = Tensor::from_vec(data.clone(), (c, h, w), &Device::Cpu)?;
    let scale = 0.25;
    let boxes = random_boxes(&mut rng, 40, w as f32 / scale, h as f32 / scale);
    let bt = boxes_tensor(&boxes)?;
    for (o, sr, aligned) in [
        (7, 2, true),
        (7, 0, true),
        (3, 1, false),
        (5, 0, false),
        (4, 3, true),
    ] {
        let got = roi_align(&f, &bt, o, scale, sr, aligned)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let want = torchvision_roi_align(&data, (c, h, w), &boxes, o, scale, sr as i64, aligned);
        let diff = max_abs_diff(&got, &want);
        assert!(
            diff <= 1e-6,
            "o {o} sr {sr} aligned {aligned}: max diff {diff}"
        );
    }
    Ok(())
}

/// L(F) = Σ roi_align(F) ⊙ g accumulated in f64.
fn weighted_sum(out: &Tensor, g: &[f32]) -> Result<f64> {
    let v = out.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum())
}

#[test]
fn backward_matches_central_finite_differences() -> Result<()> {
    // dL/dF by autograd vs (L(F + h e_i) - L(F - h e_i)) / 2h for every element of a small map.
    // The op is linear in F, so the only error is f32 rounding of the forward.
    let mut rng = Rng(0x0f1d_0d1f_f000_0002);
    let (c, h, w) = (2, 6, 7);
    let data = rng.vec(c * h * w);
    let boxes = [
        [0.5f32, 1.0, 5.5, 4.0],
        [-2.0, 3.0, 4.0, 9.0],
        [2.2, 0.3, 6.9, 5.8],
    ];
    let bt = Tensor::new(&boxes, &Device::Cpu)?;
    for (o, sr, aligned) in [(3, 2, true), (2, 0, true), (3, 1, false)] {
        let k = boxes.len();
        let g = rng.vec(k * c * o * o);
        let gt = Tensor::from_vec(g.clone(), (k, c, o, o), &Device::Cpu)?;
        let var = Var::from_vec(data.clone(), (c, h, w), &Device::Cpu)?;
        let loss = (roi_align(var.as_tensor(), &bt, o, 1.0, sr, aligned)? * &gt)?.sum_all()?;
        let grads = loss.backward()?;
        let analytic = grads
            .get(var.as_tensor())
            .expect("features get a gradient")
            .flatten_all()?
            .to_vec1::<f32>()?;
        let step = 0.1f32;
        let mut touched = 0;
        for i in 0..data.len() {
            let mut plus = data.clone();
            plus[i] += step;
            let mut minus = data.clone();
            minus[i] -= step;
            let lp = weighted_sum(
                &roi_align(
                    &Tensor::from_vec(plus, (c, h, w), &Device::Cpu)?,
                    &bt,
                    o,
                    1.0,
                    sr,
                    aligned,
                )?,
                &g,
            )?;
            let lm = weighted_sum(
                &roi_align(
                    &Tensor::from_vec(minus, (c, h, w), &Device::Cpu)?,
                    &bt,
                    o,
                    1.0,
                    sr,
                    aligned,
                )?,
                &g,
            )?;
            // Divide by the perturbation actually applied in f32.
            let applied = (data[i] + step) as f64 - (data[i] - step) as f64;
            let fd = (lp - lm) / applied;
            let an = analytic[i] as f64;
            assert!(
                (fd - an).abs() <= 1e-3 * an.abs().max(1e-2),
                "o {o} sr {sr} aligned {aligned} element {i}: fd {fd} analytic {an}"
            );
            touched += usize::from(an != 0.0);
        }
        assert!(touched > data.len() / 2, "most pixels lie under some box");
    }
    Ok(())
}

#[test]
fn backward_is_the_adjoint() -> Result<()> {
    // ⟨A x, g⟩ = ⟨x, Aᵀ g⟩ with Aᵀ g from autograd, both sides summed in f64.
    let mut rng = Rng(0xad01_1111_2222_3333);
    let (c, h, w) = (8, 23, 40);
    let scale = 0.125;
    let x = rng.vec(c * h * w);
    let boxes = random_boxes(&mut rng, 30, w as f32 / scale, h as f32 / scale);
    let bt = boxes_tensor(&boxes)?;
    for (o, sr, aligned) in [(7, 2, true), (7, 0, true), (5, 2, false)] {
        let var = Var::from_vec(x.clone(), (c, h, w), &Device::Cpu)?;
        let out = roi_align(var.as_tensor(), &bt, o, scale, sr, aligned)?;
        let g = rng.vec(out.elem_count());
        let gt = Tensor::from_vec(g.clone(), out.shape(), &Device::Cpu)?;
        let lhs = weighted_sum(&out, &g)?;
        let grads = (&out * &gt)?.sum_all()?.backward()?;
        let atg = grads
            .get(var.as_tensor())
            .expect("features get a gradient")
            .flatten_all()?
            .to_vec1::<f32>()?;
        let rhs: f64 = x.iter().zip(&atg).map(|(&a, &b)| a as f64 * b as f64).sum();
        let rel = (lhs - rhs).abs() / lhs.abs().max(1e-6);
        assert!(
            rel <= 1e-5,
            "o {o} sr {sr} aligned {aligned}: {lhs} vs {rhs}"
        );
    }
    Ok(())
}

#[test]
fn boxes_are_detached() -> Result<()> {
    // Sparse R-CNN detaches proposal boxes: a box Var gets no gradient, the features do.
    let f = Var::from_tensor(&arange25())?;
    let b = Var::new(&[[1f32, 1.0, 3.0, 3.0]], &Device::Cpu)?;
    let loss = roi_align(f.as_tensor(), b.as_tensor(), 2, 1.0, 2, true)?.sum_all()?;
    let grads = loss.backward()?;
    assert!(grads.get(b.as_tensor()).is_none());
    let gf = grads.get(f.as_tensor()).expect("features get a gradient");
    // Each of the 4 outputs spreads weight 1 over the map: total gradient mass 4.
    let mass = gf.sum_all()?.to_scalar::<f32>()?;
    assert!((mass - 4.0).abs() < 1e-6, "{mass}");
    Ok(())
}

#[test]
fn assign_levels_thresholds() {
    // detectron2 assign_boxes_to_levels: floor(4 + log2(sqrt(area)/224 + eps)), clamp [2, 5]:
    // √area < 112 → P2, [112, 224) → P3, [224, 448) → P4, ≥ 448 → P5.
    let square = |s: f32| [10.0, 20.0, 10.0 + s, 20.0 + s];
    let boxes = [
        square(111.9),
        square(112.0),
        square(223.9),
        square(224.0),
        square(448.0),
        square(1.0),
        square(0.0),
        square(5000.0),
        [0.0, 0.0, 56.0, 224.0], // √(56·224) = 112
    ];
    assert_eq!(assign_levels(&boxes, 2, 5), vec![2, 3, 3, 4, 5, 2, 2, 5, 3]);
    assert_eq!(assign_levels(&boxes[..1], 3, 5), vec![3]);
}

#[test]
fn pooler_equals_per_box_roi_align_and_backprops_to_used_levels() -> Result<()> {
    // Reference: detectron2 ROIPooler = per-box ROIAlignV2 on level assign_boxes_to_levels(box),
    // with spatial_scale 1/2^level, in the boxes' order.
    let mut rng = Rng(0x9001_2002_3003_4004);
    let (c, img_h, img_w) = (4usize, 256usize, 320usize);
    let pooler = RoiPooler::default();
    let vars: Vec<Var> = (2..=5)
        .map(|l| {
            let (h, w) = (img_h >> l, img_w >> l);
            Var::from_vec(rng.vec(c * h * w), (c, h, w), &Device::Cpu)
        })
        .collect::<Result<_>>()?;
    let levels: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    // √area: 150 (P3), 40 (P2), 500 (P5), 120 (P3), 60 (P2), 111 (P2); none on P4.
    let boxes: Vec<[f32; 4]> = [150.0f32, 40.0, 500.0, 120.0, 60.0, 111.0]
        .iter()
        .map(|&s| {
            let (x, y) = (rng.next() * 100.0 + 150.0, rng.next() * 80.0 + 120.0);
            [x - s / 2.0, y - s / 2.0, x + s / 2.0, y + s / 2.0]
        })
        .collect();
    assert_eq!(
        assign_levels(&boxes, 2, 5),
        vec![3, 2, 5, 3, 2, 2],
        "test setup"
    );
    let bt = boxes_tensor(&boxes)?;
    let pooled = pooler.forward(&levels, &bt)?;
    assert_eq!(pooled.dims(), [6, c, 7, 7]);
    for (i, (b, level)) in boxes.iter().zip(assign_levels(&boxes, 2, 5)).enumerate() {
        let single = roi_align(
            &levels[level - 2],
            &Tensor::new(&[*b], &Device::Cpu)?,
            7,
            1.0 / (1 << level) as f32,
            2,
            true,
        )?;
        let got = pooled.get(i)?.flatten_all()?.to_vec1::<f32>()?;
        let want = single.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(got, want, "box {i}");
    }
    let grads = pooled.sqr()?.sum_all()?.backward()?;
    for (i, var) in vars.iter().enumerate() {
        let g = grads.get(var.as_tensor());
        if i + 2 == 4 {
            assert!(g.is_none(), "P4 got no boxes");
        } else {
            let g = g.expect("a level with boxes gets a gradient");
            let norm = g.sqr()?.sum_all()?.to_scalar::<f32>()?;
            assert!(norm > 0.0, "P{} gradient is zero", i + 2);
        }
    }
    // No boxes → (0, C, 7, 7).
    let none = Tensor::zeros((0, 4), DType::F32, &Device::Cpu)?;
    assert_eq!(pooler.forward(&levels, &none)?.dims(), [0, c, 7, 7]);
    Ok(())
}

#[test]
#[ignore = "needs .npy files from scripts/roi_align_ort_check.py (onnxruntime)"]
fn ort_cross_check() -> Result<()> {
    // Reference: onnxruntime RoiAlign, opset 16, mode avg, half_pixel (= aligned) and
    // output_half_pixel (= legacy); inputs and outputs written by scripts/roi_align_ort_check.py.
    let Ok(dir) = std::env::var("INSPRO_ROI_ALIGN_ORT_DIR") else {
        panic!("set INSPRO_ROI_ALIGN_ORT_DIR to the script's output folder");
    };
    let dir = std::path::Path::new(&dir);
    let features = Tensor::read_npy(dir.join("features.npy"))?;
    let boxes = Tensor::read_npy(dir.join("boxes.npy"))?;
    for (name, o, sr, scale, aligned) in [
        ("v2_s2", 7, 2, 0.25, true),
        ("v2_adaptive", 7, 0, 0.25, true),
        ("legacy_s2", 5, 2, 0.125, false),
        ("legacy_adaptive", 4, 0, 0.5, false),
    ] {
        let want = Tensor::read_npy(dir.join(format!("ort_{name}.npy")))?;
        let got = roi_align(&features, &boxes, o, scale, sr, aligned)?;
        assert_eq!(got.dims(), want.dims(), "{name}");
        let diff = max_abs_diff(
            &got.flatten_all()?.to_vec1::<f32>()?,
            &want.flatten_all()?.to_vec1::<f32>()?,
        );
        println!("{name}: max abs diff vs onnxruntime {diff:.3e}");
        assert!(diff <= 1e-5, "{name}: {diff}");
    }
    Ok(())
}
