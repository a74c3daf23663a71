//! A linear probe of the heads' own features: multinomial logistic regression on the RoIAlign
//! features (C x 7 x 7, the pooler the heads use) at ground-truth boxes, fit on fresh synthetic
//! videos and tested on held-out ones. It tells whether the features hold the class (then the
//! head is the limit) or not (then the trunk is), which the class loss alone cannot.

use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use super::data::{make_stream_video, synth_category_ids, VideoData};
use super::trainer::SynthSpec;
use super::TrainError;
use crate::frame::FrameRef;
use crate::model::preprocess::{preprocess, FrameGeometry};
use crate::model::InsPro;

/// `[probe]` of a training config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    /// The fresh synthetic videos the probe is fit on (a seed of their own).
    pub fit: SynthSpec,
    /// Every n-th frame of a video gives samples (neighbouring frames add little).
    pub frame_step: usize,
    /// Inverse L2 strength, as scikit-learn's `C` (objective C·Σ CE + ½‖W‖²).
    pub c: f64,
    /// Full-batch Adam steps of the fit.
    pub iterations: usize,
    /// Held-out videos of the validation split it is tested on (0 = all).
    pub test_videos: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            fit: SynthSpec {
                videos: 40,
                seed: 3003,
                ..SynthSpec::default()
            },
            frame_step: 3,
            c: 0.02,
            iterations: 300,
            test_videos: 0,
        }
    }
}

/// What the probe measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProbeResult {
    pub fit_samples: usize,
    pub test_samples: usize,
    pub fit_accuracy: f64,
    pub test_accuracy: f64,
    /// Always guessing the test set's most common class (the chance level to beat).
    pub majority_accuracy: f64,
}

/// The probe's fit videos for a model (made once per run).
pub fn fit_videos(cfg: &ProbeConfig, model: &InsPro) -> Result<Vec<VideoData>, TrainError> {
    let opts = cfg.fit.options();
    let ids = synth_category_ids(&model.cfg, "probe")?;
    (0..opts.videos)
        .map(|i| make_stream_video(&opts, &ids, opts.jpeg_quality, i))
        .collect()
}

/// RoI features (rows of C·7·7) at the ground-truth boxes of every `frame_step`-th frame, with
/// their classes.
pub fn roi_features(
    model: &InsPro,
    videos: &[VideoData],
    frame_step: usize,
) -> Result<(Vec<Vec<f32>>, Vec<usize>), TrainError> {
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for v in videos {
        let g = FrameGeometry::new(&model.cfg, v.width, v.height);
        let (sx, sy) = g.scale_xy();
        for f in (0..v.frames.len()).step_by(frame_step.max(1)) {
            let mut boxes = Vec::new();
            for o in &v.objects {
                let Some(Some(rle)) = o.masks.get(f) else {
                    continue;
                };
                if rle.area() == 0 {
                    continue;
                }
                let [x, y, w, h] = rle.to_bbox();
                let (x, y, w, h) = (x as f32, y as f32, w as f32, h as f32);
                boxes.extend([x * sx, y * sy, (x + w) * sx, (y + h) * sy]);
                labels.push(o.class);
            }
            if boxes.is_empty() {
                continue;
            }
            let image = preprocess(
                &model.cfg,
                &FrameRef::packed(v.width, v.height, &v.frames[f]),
                &g,
                model.device(),
            )
            .map_err(|e| TrainError::data(format!("probe video {}", v.id), e))?;
            let trunk = model.forward_trunk(&image, false)?;
            let n = boxes.len() / 4;
            let boxes = Tensor::from_vec(boxes, (n, 4), model.device())?;
            let pooled = model.pool_rois(&trunk, &boxes)?.flatten_from(1)?;
            rows.extend(pooled.to_vec2::<f32>()?);
        }
    }
    Ok((rows, labels))
}

/// Fits the probe on `fit` and scores it on `fit` and `test`.
pub fn fit_and_score(
    cfg: &ProbeConfig,
    fit: (&[Vec<f32>], &[usize]),
    test: (&[Vec<f32>], &[usize]),
    num_classes: usize,
) -> Result<ProbeResult, TrainError> {
    let dev = Device::Cpu;
    let (n, d) = (fit.0.len(), fit.0.first().map_or(0, Vec::len));
    if n == 0 || d == 0 || test.0.is_empty() {
        return Err(TrainError::data(
            "probe",
            "no ground-truth objects to probe",
        ));
    }
    let matrix = |rows: &[Vec<f32>]| -> candle_core::Result<Tensor> {
        Tensor::from_vec(rows.concat(), (rows.len(), d), &dev)
    };
    let x = matrix(fit.0)?;
    let mean = x.mean_keepdim(0)?;
    let std = (x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)? + 1e-6)?.sqrt()?;
    let standardise = |m: &Tensor| m.broadcast_sub(&mean)?.broadcast_div(&std);
    let x = standardise(&x)?;
    let onehot = |labels: &[usize]| -> candle_core::Result<Tensor> {
        let mut v = vec![0f32; labels.len() * num_classes];
        for (i, &c) in labels.iter().enumerate() {
            if c < num_classes {
                v[i * num_classes + c] = 1.0;
            }
        }
        Tensor::from_vec(v, (labels.len(), num_classes), &dev)
    };
    let y = onehot(fit.1)?;
    // Mean cross-entropy + ‖W‖² / (2·C·n): scikit-learn's objective divided by C·n.
    let l2 = 1.0 / (cfg.c * n as f64);
    let mut w = Tensor::zeros((d, num_classes), DType::F32, &dev)?;
    let mut b = Tensor::zeros((1, num_classes), DType::F32, &dev)?;
    let (mut mw, mut vw) = (w.zeros_like()?, w.zeros_like()?);
    let (mut mb, mut vb) = (b.zeros_like()?, b.zeros_like()?);
    let (lr, b1, b2) = (0.01, 0.9f64, 0.999f64);
    let xt = x.t()?.contiguous()?;
    for t in 1..=cfg.iterations.max(1) {
        let logits = x.matmul(&w)?.broadcast_add(&b)?;
        let p = candle_nn::ops::softmax_last_dim(&logits)?;
        let r = ((p - &y)? / n as f64)?;
        let gw = (xt.matmul(&r)? + (&w * l2)?)?;
        let gb = r.sum_keepdim(0)?;
        let adam = |g: &Tensor, m: &mut Tensor, v: &mut Tensor| -> candle_core::Result<Tensor> {
            *m = ((&*m * b1)? + (g * (1.0 - b1))?)?;
            *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let mh = (&*m / (1.0 - b1.powi(t as i32)))?;
            let vh = (&*v / (1.0 - b2.powi(t as i32)))?;
            (mh / (vh.sqrt()? + 1e-8)?)? * lr
        };
        w = (&w - adam(&gw, &mut mw, &mut vw)?)?;
        b = (&b - adam(&gb, &mut mb, &mut vb)?)?;
    }
    let accuracy = |m: &Tensor, labels: &[usize]| -> candle_core::Result<f64> {
        let pred = m
            .matmul(&w)?
            .broadcast_add(&b)?
            .argmax(D::Minus1)?
            .to_vec1::<u32>()?;
        let right = pred
            .iter()
            .zip(labels)
            .filter(|(p, l)| **p as usize == **l)
            .count();
        Ok(right as f64 / labels.len().max(1) as f64)
    };
    let xt_test = standardise(&matrix(test.0)?)?;
    let mut counts = vec![0usize; num_classes.max(1)];
    for &c in test.1 {
        if c < counts.len() {
            counts[c] += 1;
        }
    }
    let majority = (0..counts.len()).max_by_key(|&c| counts[c]).unwrap_or(0);
    Ok(ProbeResult {
        fit_samples: n,
        test_samples: test.0.len(),
        fit_accuracy: accuracy(&x, fit.1)?,
        test_accuracy: accuracy(&xt_test, test.1)?,
        majority_accuracy: test.1.iter().filter(|&&c| c == majority).count() as f64
            / test.1.len().max(1) as f64,
    })
}

/// Fit on `fit` videos, test on `test` videos: the whole probe of one model.
pub fn probe(
    cfg: &ProbeConfig,
    model: &InsPro,
    fit: &[VideoData],
    test: &[VideoData],
) -> Result<ProbeResult, TrainError> {
    let (fx, fy) = roi_features(model, fit, cfg.frame_step)?;
    let n_test = if cfg.test_videos == 0 {
        test.len()
    } else {
        cfg.test_videos.min(test.len())
    };
    let (tx, ty) = roi_features(model, &test[..n_test], cfg.frame_step)?;
    fit_and_score(cfg, (&fx, &fy), (&tx, &ty), model.cfg.num_classes)
}
