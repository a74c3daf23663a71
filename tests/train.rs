//! Issue 4 tests: exact assignment against brute force, temporally consistent matching, the losses
//! against hand-computed values, overfitting one clip, and resume reproducing the next step.

use std::path::Path;

use candle_core::{Device, Tensor};
use inspro::train::boxes::{giou, giou_tensor};
use inspro::train::data::{ClipConfig, Dataset};
use inspro::train::loss::{
    dedup_loss_one, dedup_negatives, dice_loss, mask_iou_rows, sigmoid_focal_loss, varifocal_loss,
    LossConfig,
};
use inspro::train::matching::{GtObject, TemporalMatcher};
use inspro::train::optim::{AdamW, OptimConfig};
use inspro::train::trainer::{snapshot, trainable_params, DataConfig};
use inspro::train::{clip_loss, linear_sum_assignment, Mechanisms, TrainConfig, Trainer};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// Minimum over all injective maps of min(rows, cols) pairs, by enumeration.
fn brute_force(cost: &[f32], rows: usize, cols: usize) -> f64 {
    fn rec(
        cost: &[f32],
        rows: usize,
        cols: usize,
        r: usize,
        used: &mut Vec<bool>,
        left: usize,
    ) -> f64 {
        if left == 0 {
            return 0.0;
        }
        if r == rows {
            return f64::INFINITY;
        }
        let mut best = f64::INFINITY;
        // Skip this row only if enough rows remain to assign `left` pairs.
        if rows - r > left {
            best = rec(cost, rows, cols, r + 1, used, left);
        }
        for c in 0..cols {
            if !used[c] {
                used[c] = true;
                let v =
                    f64::from(cost[r * cols + c]) + rec(cost, rows, cols, r + 1, used, left - 1);
                used[c] = false;
                best = best.min(v);
            }
        }
        best
    }
    rec(cost, rows, cols, 0, &mut vec![false; cols], rows.min(cols))
}

#[test]
fn assignment_equals_brute_force_on_random_matrices() {
    let mut rng = Lcg(42);
    for trial in 0..300 {
        let rows = 1 + trial % 5;
        let cols = 1 + (trial / 5) % 6;
        let cost: Vec<f32> = (0..rows * cols).map(|_| rng.next() * 10.0 - 3.0).collect();
        let pairs = linear_sum_assignment(&cost, rows, cols);
        assert_eq!(pairs.len(), rows.min(cols));
        let mut rs: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        let mut cs: Vec<usize> = pairs.iter().map(|p| p.1).collect();
        rs.dedup();
        cs.sort_unstable();
        cs.dedup();
        assert_eq!(rs.len(), pairs.len(), "rows repeat");
        assert_eq!(cs.len(), pairs.len(), "columns repeat");
        let ours: f64 = pairs
            .iter()
            .map(|&(r, c)| f64::from(cost[r * cols + c]))
            .sum();
        let best = brute_force(&cost, rows, cols);
        assert!(
            (ours - best).abs() < 1e-4,
            "{rows}x{cols}: {ours} vs {best}"
        );
    }
}

#[test]
fn assignment_survives_nan_and_infinity() {
    let cost = [f32::NAN, 1.0, f32::INFINITY, 2.0, f32::NEG_INFINITY, 5.0];
    let pairs = linear_sum_assignment(&cost, 2, 3);
    assert_eq!(pairs.len(), 2);
    // −inf is the cheapest entry, so row 1 takes column 1; row 0 is left with NaN and +inf, both
    // replaced by the same large cost: the solver terminates and picks one of them.
    assert!(pairs.contains(&(1, 1)));
}

fn gt(track: u64, class: usize, b: [f32; 4]) -> GtObject {
    GtObject {
        track,
        class,
        box_xyxy: b,
    }
}

#[test]
fn tcm_keeps_queries_reserves_vanished_and_gives_newcomers_free_queries() {
    let n = 4;
    let mut m = TemporalMatcher::new(true);
    // Frame 0: objects 10 and 20. Costs make 10 → query 2, 20 → query 0.
    let f0 = vec![gt(10, 0, [0.; 4]), gt(20, 1, [0.; 4])];
    let cost0 = vec![5., 5., 0., 5., /**/ 0., 5., 5., 5.];
    assert_eq!(m.match_frame(&cost0, &f0, n), vec![(0, 1), (2, 0)]);
    // Frame 1: object 20 vanished; object 10 would now be cheapest on query 0 but keeps query 2;
    // newcomer 30 is cheapest on query 0 (reserved for 20) and must take a free query (1 or 3).
    let f1 = vec![gt(10, 0, [0.; 4]), gt(30, 2, [0.; 4])];
    let cost1 = vec![0., 9., 9., 9., /**/ 0., 3., 9., 1.];
    let pairs = m.match_frame(&cost1, &f1, n);
    assert_eq!(pairs, vec![(2, 0), (3, 1)]);
    // Frame 2: 20 is back and gets its old query 0 whatever the costs.
    let f2 = vec![gt(20, 1, [0.; 4]), gt(30, 2, [0.; 4]), gt(10, 0, [0.; 4])];
    let cost2 = vec![
        9., 0., 9., 9., /**/ 0., 9., 9., 9., /**/ 9., 9., 9., 0.,
    ];
    assert_eq!(m.match_frame(&cost2, &f2, n), vec![(0, 0), (2, 2), (3, 1)]);
    let mut bound: Vec<usize> = m.bound_queries().collect();
    bound.sort_unstable();
    assert_eq!(bound, vec![0, 2, 3]);

    // Without TCM every frame is matched afresh: frame 1 gives object 10 query 0.
    let mut plain = TemporalMatcher::new(false);
    plain.match_frame(&cost0, &f0, n);
    assert_eq!(plain.match_frame(&cost1, &f1, n), vec![(0, 0), (3, 1)]);
}

#[test]
fn focal_dice_giou_and_dedup_by_hand() {
    let dev = Device::Cpu;
    // Focal, one logit 0 (p = 0.5) with target 1: ce = ln 2, (1−p_t)^2 = 0.25, α = 0.25.
    let x = Tensor::new(&[[0f32]], &dev).unwrap();
    let t = Tensor::new(&[[1f32]], &dev).unwrap();
    let v = sigmoid_focal_loss(&x, &t, 0.25, 2.0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((v - 0.25 * 0.25 * 2f32.ln()).abs() < 1e-6);
    // Target 0, logit ln 3 (p = 0.75): ce = ln 4, (1 − p_t)^2 = 0.75², weight 0.75.
    let x = Tensor::new(&[[3f32.ln()]], &dev).unwrap();
    let t = Tensor::new(&[[0f32]], &dev).unwrap();
    let v = sigmoid_focal_loss(&x, &t, 0.25, 2.0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((v - 0.75 * 0.5625 * 4f32.ln()).abs() < 1e-5, "{v}");

    // Dice: p = (0.5, 0.5) (logits 0), t = (1, 0): 1 − (2·0.5 + 1)/(1 + 1 + 1) = 1/3.
    let x = Tensor::new(&[[0f32, 0.]], &dev).unwrap();
    let t = Tensor::new(&[[1f32, 0.]], &dev).unwrap();
    let v = dice_loss(&x, &t).unwrap().to_scalar::<f32>().unwrap();
    assert!((v - 1.0 / 3.0).abs() < 1e-6);

    // GIoU of [0,0,2,2] and [1,1,3,3]: IoU 1/7, hull 9, union 7 → 1/7 − 2/9.
    let a = [0f32, 0., 2., 2.];
    let b = [1f32, 1., 3., 3.];
    let want = 1.0 / 7.0 - 2.0 / 9.0;
    assert!((giou(&a, &b) - want).abs() < 1e-6);
    let ta = Tensor::new(&[a], &dev).unwrap();
    let tb = Tensor::new(&[b], &dev).unwrap();
    let v = giou_tensor(&ta, &tb).unwrap().to_vec1::<f32>().unwrap()[0];
    assert!((v - want).abs() < 1e-5);
    // Disjoint: [0,0,1,1] and [2,0,3,1]: IoU 0, hull 3, union 2 → −1/3.
    assert!((giou(&[0., 0., 1., 1.], &[2., 0., 3., 1.]) + 1.0 / 3.0).abs() < 1e-6);

    // BDL, GT [0,0,4,3] (D² = 25), β = 0.1: a negative centred 1 px right of the GT centre gives
    // 0.1 − 1/25 = 0.06; one 2 px away gives 0.1 − 4/25 < 0 → 0; mean over k = 2 → 0.03.
    let gtb = [0f32, 0., 4., 3.];
    let negs = Tensor::new(&[[1f32, 0., 5., 3.], [2., 0., 6., 3.]], &dev).unwrap();
    let v = dedup_loss_one(&negs, &gtb, 0.1)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((v - 0.03).abs() < 1e-6, "{v}");
    // The k negatives are the unmatched predictions of largest IoU with the GT.
    let preds = [
        [0f32, 0., 4., 3.],
        [100., 100., 110., 110.],
        [1., 0., 5., 3.],
        [0., 0., 2., 3.],
    ];
    assert_eq!(dedup_negatives(&preds, &[1, 2, 3], &gtb, 2), vec![2, 3]);
    assert_eq!(dedup_negatives(&preds, &[1], &gtb, 5), vec![1]);
}

#[test]
fn varifocal_loss_and_mask_quality_by_hand() {
    let dev = Device::Cpu;
    let scalar = |x: f32, q: f32, pos: f32| {
        let x = Tensor::new(&[[x]], &dev).unwrap();
        let q = Tensor::new(&[[q]], &dev).unwrap();
        let pos = Tensor::new(&[[pos]], &dev).unwrap();
        varifocal_loss(&x, &q, &pos, 0.75, 2.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    // A positive of quality 1 costs plain BCE: logit 0 → ln 2.
    assert!((scalar(0.0, 1.0, 1.0) - 2f32.ln()).abs() < 1e-6);
    // A positive of quality q costs q·BCE(p, q), least at p = q, so its score learns its quality.
    let q = 0.7f32;
    let at = |p: f32| scalar((p / (1.0 - p)).ln(), q, 1.0);
    let h = -(q * q.ln() + (1.0 - q) * (1.0 - q).ln());
    assert!((at(q) - q * h).abs() < 1e-5, "{} {}", at(q), q * h);
    assert!(at(q) < at(0.6) && at(q) < at(0.8));
    // A negative, logit ln 3 (p = 0.75): α·p²·ln 4, as in the focal loss.
    let v = scalar(3f32.ln(), 0.0, 0.0);
    assert!((v - 0.75 * 0.5625 * 4f32.ln()).abs() < 1e-5, "{v}");
    // Mask IoU per row at logit 0: 2 of 3 pixels shared; an empty pair is 0.
    let logits = Tensor::new(&[[1f32, 1., 1., -1.], [-1., -1., -1., -1.]], &dev).unwrap();
    let target = Tensor::new(&[[1f32, 1., 0., 0.], [0., 0., 0., 0.]], &dev).unwrap();
    let iou = mask_iou_rows(&logits, &target).unwrap();
    assert!(
        (iou[0] - 2.0 / 3.0).abs() < 1e-6 && iou[1] == 0.0,
        "{iou:?}"
    );
}

fn tiny_dataset(dir: &Path, videos: usize, frames: usize) -> (Dataset, inspro::model::ModelConfig) {
    let opts = inspro::ytvis::SynthOptions {
        videos,
        frames,
        width: 128,
        height: 96,
        seed: 5,
        min_objects: 2,
        max_objects: 3,
        ..Default::default()
    };
    inspro::ytvis::synth::write_dataset(dir, &opts).unwrap();
    let cfg = inspro::model::ModelConfig::from_file("configs/models/inspro-tiny.toml").unwrap();
    let data = Dataset::load(dir, &dir.join("instances.json"), &cfg).unwrap();
    (data, cfg)
}

fn small_clip() -> ClipConfig {
    ClipConfig {
        frames: 3,
        max_span: 4,
        min_size: [96, 96],
        max_size: 160,
        hflip: true,
    }
}

#[test]
fn a_few_steps_on_one_clip_reduce_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (data, cfg) = tiny_dataset(dir.path(), 1, 6);
    let dev = Device::Cpu;
    let (model, vars) = inspro::model::InsPro::random(&cfg, 1, &dev).unwrap();
    let mut rng = inspro::model::weights::SplitMix64::new(3);
    let clip = data
        .sample_clip(&cfg, &small_clip(), &mut rng, &dev)
        .unwrap();
    assert!(
        clip.gts.iter().any(|g| !g.is_empty()),
        "the clip has objects"
    );
    let optim = OptimConfig {
        lr: 1e-3,
        warmup_iters: 0,
        ..OptimConfig::default()
    };
    let mut opt = AdamW::new(optim, trainable_params(&cfg, &vars));
    let loss_cfg = LossConfig::default();
    let mech = Mechanisms::default();
    let mut losses = Vec::new();
    for _ in 0..12 {
        let (loss, parts) = clip_loss(&model, &clip, &loss_cfg, &mech).unwrap();
        losses.push(parts.total);
        let grads = loss.backward().unwrap();
        opt.step(&grads, 1e-3).unwrap();
    }
    let first = losses[0];
    let last = *losses.last().unwrap();
    assert!(last < 0.7 * first, "loss did not drop: {losses:?}");
}

#[test]
fn optimizer_moments_hold_no_backward_graph() {
    // Gradients carry their backward graph; a moment built from one would chain every
    // iteration's activations to the next (training grew ~6 MB per iteration until the OOM
    // killer stopped it, 2026-11-27).
    let dev = Device::Cpu;
    let w = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1., (4, 3), &dev).unwrap()).unwrap();
    let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1., (2, 4), &dev).unwrap()).unwrap();
    let mut opt = AdamW::new(OptimConfig::default(), vec![("w".into(), w.clone())]);
    for _ in 0..2 {
        let y = x.as_tensor().matmul(w.as_tensor()).unwrap().relu().unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(
            grads.get(w.as_tensor()).unwrap().track_op(),
            "the premise: this gradient carries a graph"
        );
        opt.step(&grads, 1e-3).unwrap();
    }
    let state = opt.state_tensors();
    assert_eq!(state.len(), 2);
    for (k, t) in &state {
        assert!(!t.track_op(), "{k} keeps a backward graph");
    }
}

#[test]
fn resuming_from_a_checkpoint_reproduces_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = tiny_dataset(&dir.path().join("data"), 2, 6);
    let cfg = TrainConfig {
        model: "configs/models/inspro-tiny.toml".into(),
        model_bank_size: None,
        model_propagate: None,
        out_dir: dir.path().join("run"),
        iterations: 10,
        seed: 4,
        log_every: 1,
        eval_every: 0,
        checkpoint_every: 1,
        data: DataConfig {
            train: dir.path().join("data"),
            train_gt: None,
            val: None,
            val_gt: None,
            synth_train: None,
            synth_val: None,
            synth_stream: None,
        },
        clip: small_clip(),
        optim: OptimConfig {
            lr: 1e-3,
            warmup_iters: 2,
            ..OptimConfig::default()
        },
        loss: LossConfig::default(),
        mechanisms: Mechanisms::default(),
        init: None,
        init_rename: Default::default(),
        probe: None,
        workers: 1,
    };
    let dev = Device::Cpu;
    let mut a = Trainer::new(cfg.clone(), data.clone(), &dev).unwrap();
    a.step().unwrap();
    a.save(&cfg.out_dir, "last").unwrap();
    let (pa, _, _) = a.step().unwrap();
    let wa = snapshot(&a.varmap);

    let mut b = Trainer::new(cfg.clone(), data, &dev).unwrap();
    b.resume(&cfg.out_dir, "last").unwrap();
    assert_eq!(b.iteration, 1);
    let (pb, _, _) = b.step().unwrap();
    let wb = snapshot(&b.varmap);
    assert_eq!(pa.total, pb.total);
    assert_eq!(wa.len(), wb.len());
    for (k, v) in &wa {
        assert_eq!(v, &wb[k], "weight {k} differs after resume");
    }
}

#[test]
fn lr_schedule_warms_up_and_steps() {
    let o = OptimConfig {
        lr: 1.0,
        warmup_iters: 10,
        warmup_factor: 0.01,
        steps: [20, 30],
        ..OptimConfig::default()
    };
    assert!((o.lr_at(0) - 0.01).abs() < 1e-12);
    assert!((o.lr_at(5) - (0.01 * 0.5 + 0.5)).abs() < 1e-12);
    assert_eq!(o.lr_at(10), 1.0);
    assert!((o.lr_at(20) - 0.1).abs() < 1e-12);
    assert!((o.lr_at(35) - 0.01).abs() < 1e-12);
}

#[test]
fn losses_have_finite_gradients_for_extreme_logits() {
    let dev = Device::Cpu;
    let x = candle_core::Var::from_tensor(
        &Tensor::new(&[[-120f32, -30., 0., 30., 120.]], &dev).unwrap(),
    )
    .unwrap();
    let t = Tensor::new(&[[1f32, 0., 1., 0., 1.]], &dev).unwrap();
    let loss = (sigmoid_focal_loss(x.as_tensor(), &t, 0.25, 2.0).unwrap()
        + dice_loss(x.as_tensor(), &t).unwrap())
    .unwrap();
    let g = loss.backward().unwrap();
    let g = g
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
}

#[test]
fn mask_out_stride_sets_the_targets_and_the_losses_train_on_them() {
    // The model's `mask_out_stride` is the one setting of the mask grid: the same clip drawn for
    // four models gives targets on a grid of that stride, covering the same area, and every
    // loss (the semantic loss on P2 included) trains on them with finite gradients.
    let dir = tempfile::tempdir().unwrap();
    let (data, base) = tiny_dataset(dir.path(), 1, 6);
    let dev = Device::Cpu;
    let loss_cfg = LossConfig {
        semantic: 1.0,
        dn_groups: 1,
        ..LossConfig::default()
    };
    let mut areas = Vec::new();
    for (feat, out) in [(8, 8), (8, 4), (4, 4), (4, 2)] {
        let cfg = inspro::model::ModelConfig {
            mask_feat_stride: feat,
            mask_out_stride: out,
            ..base.clone()
        };
        cfg.validate().unwrap();
        let mut rng = inspro::model::weights::SplitMix64::new(3);
        let clip = data
            .sample_clip(&cfg, &small_clip(), &mut rng, &dev)
            .unwrap();
        let (_, _, hp, wp) = clip.images[0].dims4().unwrap();
        let mut area = 0.0;
        for (g, m) in clip.gts.iter().zip(&clip.gt_masks) {
            assert_eq!(
                m.dims(),
                &[g.len(), (hp / out) * (wp / out)],
                "stride {out}"
            );
            let cells: f32 = m.sum_all().unwrap().to_scalar().unwrap();
            area += cells * (out * out) as f32;
        }
        assert!(area > 0.0, "stride {out}: the clip has object pixels");
        areas.push(area);

        let (model, vars) = inspro::model::InsPro::random(&cfg, 1, &dev).unwrap();
        let vb = candle_nn::VarBuilder::from_varmap(&vars, candle_core::DType::F32, &dev);
        let semantic = inspro::train::auxiliary::SemanticHead::new(&cfg, vb).unwrap();
        let aux = inspro::train::objective::AuxHeads {
            semantic: Some(&semantic),
            roi_class: None,
        };
        let (loss, parts) = inspro::train::objective::clip_loss_with(
            &model,
            aux,
            &clip,
            &loss_cfg,
            &Mechanisms::default(),
        )
        .unwrap();
        assert!(parts.semantic > 0.0 && parts.dice > 0.0, "{parts:?}");
        let grads = loss.backward().unwrap();
        for (name, var) in trainable_params(&cfg, &vars) {
            if name.starts_with("mask_branch") || name.starts_with("aux.semantic") {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("stride {out}: no gradient for {name}"));
                let s: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
                assert!(s.is_finite(), "stride {out}: {name} gradient {s}");
            }
        }
    }
    // The same objects at every stride: the areas agree to the grid's coarseness.
    let finest = areas[3];
    for a in &areas {
        assert!(
            (a / finest - 1.0).abs() < 0.35,
            "areas by stride: {areas:?}"
        );
    }
}
