//! Scores the daemon's defaults can trust: Platt scaling of a model's class scores, fitted on
//! held-out videos so that a track's score reads as the chance that it is right (the best track
//! of an object, covering it at video mask IoU >= 0.5, with its class). The model config's
//! `score_calibration = [a, b]` then makes every engine report `sigmoid(a * logit + b)`.

/// A fitted calibration and what it does to the samples it was fitted on.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreFit {
    /// `[a, b]`: calibrated = sigmoid(a * logit(score) + b).
    pub calibration: [f64; 2],
    pub tracks: usize,
    pub right: usize,
}

/// Scores are clamped to this distance from 0 and 1 before their logit.
const EPS: f64 = 1e-6;

fn logit(p: f64) -> f64 {
    let p = p.clamp(EPS, 1.0 - EPS);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A score through a calibration `[a, b]`.
pub fn calibrated(score: f64, [a, b]: [f64; 2]) -> f64 {
    sigmoid(a * logit(score) + b)
}

/// Compose: `outer` fitted on scores that `inner` already calibrated, as one calibration of
/// the raw logits.
pub fn compose(outer: [f64; 2], inner: [f64; 2]) -> [f64; 2] {
    [outer[0] * inner[0], outer[0] * inner[1] + outer[1]]
}

/// Platt scaling (Platt 1999, with his smoothed targets against over-fitting) of `(score,
/// right)` samples by Newton's method on the logistic loss. `None` when the samples hold no
/// right or no wrong track (nothing to separate) or the fit does not come out increasing.
pub fn fit_platt(samples: &[(f64, bool)]) -> Option<ScoreFit> {
    let right = samples.iter().filter(|(_, r)| *r).count();
    let wrong = samples.len() - right;
    if right == 0 || wrong == 0 {
        return None;
    }
    let hi = (right as f64 + 1.0) / (right as f64 + 2.0);
    let lo = 1.0 / (wrong as f64 + 2.0);
    let data: Vec<(f64, f64)> = samples
        .iter()
        .map(|&(s, r)| (logit(s), if r { hi } else { lo }))
        .collect();
    let loss = |a: f64, b: f64| -> f64 {
        data.iter()
            .map(|&(z, y)| {
                let f = a * z + b;
                // -y log p - (1 - y) log(1 - p) with p = sigmoid(f), stable in f.
                f.max(0.0) - f * y + (-f.abs()).exp().ln_1p()
            })
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let mut current = loss(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for &(z, y) in &data {
            let p = sigmoid(a * z + b);
            let w = p * (1.0 - p);
            ga += (p - y) * z;
            gb += p - y;
            haa += w * z * z;
            hab += w * z;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        // Halve the Newton step until the loss goes down.
        let mut step = 1.0;
        let mut moved = false;
        while step > 1e-6 {
            let (na, nb) = (a - step * da, b - step * db);
            let l = loss(na, nb);
            if l < current {
                (a, b, current, moved) = (na, nb, l, true);
                break;
            }
            step *= 0.5;
        }
        if !moved || (da.abs() + db.abs()) * step < 1e-9 {
            break;
        }
    }
    (a > 0.0 && a.is_finite() && b.is_finite()).then_some(ScoreFit {
        calibration: [a, b],
        tracks: samples.len(),
        right,
    })
}

/// Of the right and of the wrong tracks, the share scoring at least `threshold` after
/// `calibration`.
pub fn share_above(samples: &[(f64, bool)], calibration: [f64; 2], threshold: f64) -> (f64, f64) {
    let share = |want: bool| {
        let (n, above) =
            samples
                .iter()
                .filter(|(_, r)| *r == want)
                .fold((0usize, 0usize), |(n, k), (s, _)| {
                    (
                        n + 1,
                        k + usize::from(calibrated(*s, calibration) >= threshold),
                    )
                });
        if n == 0 {
            0.0
        } else {
            above as f64 / n as f64
        }
    };
    (share(true), share(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Samples whose true chance of being right is sigmoid(a * logit(score) + b) are fitted
    /// back to about [a, b].
    #[test]
    fn platt_recovers_a_known_calibration() {
        let truth = [2.0, 1.5];
        let mut rng = SplitMix64::new(3);
        let samples: Vec<(f64, bool)> = (0..20_000)
            .map(|_| {
                let s = 0.02 + 0.96 * rng.next_f64();
                (s, rng.next_f64() < calibrated(s, truth))
            })
            .collect();
        let fit = fit_platt(&samples).expect("both kinds present");
        assert!((fit.calibration[0] - truth[0]).abs() < 0.15, "{fit:?}");
        assert!((fit.calibration[1] - truth[1]).abs() < 0.15, "{fit:?}");
        assert_eq!(fit.tracks, samples.len());
        // Calibrated, the right tracks pass 0.5 more often than the raw scores let them.
        let (raw_right, _) = share_above(&samples, [1.0, 0.0], 0.5);
        let (cal_right, _) = share_above(&samples, fit.calibration, 0.5);
        assert!(cal_right > raw_right, "{raw_right} -> {cal_right}");
    }

    #[test]
    fn nothing_to_separate_is_no_fit() {
        assert_eq!(fit_platt(&[(0.3, true), (0.7, true)]), None);
        assert_eq!(fit_platt(&[]), None);
    }

    #[test]
    fn composing_equals_applying_twice() {
        let (inner, outer) = ([1.7, -0.4], [0.8, 0.9]);
        let s = 0.37;
        let twice = calibrated(calibrated(s, inner), outer);
        let once = calibrated(s, compose(outer, inner));
        assert!((twice - once).abs() < 1e-9);
    }
}
