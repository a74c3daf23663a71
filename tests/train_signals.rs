//! Issue 11 tests: the training-only signals (denoising queries, the semantic loss on P2), the
//! synthetic stream, the feature probe and the track-quality measures.

use candle_core::Device;
use inspro::model::weights::SplitMix64;
use inspro::model::{InsPro, ModelConfig};
use inspro::train::auxiliary::{jitter_box, RoiClassifier, SemanticHead};
use inspro::train::data::{make_stream_video, sample_clip_from, ClipConfig, SynthStream};
use inspro::train::loss::LossConfig;
use inspro::train::probe::{fit_and_score, ProbeConfig};
use inspro::train::trainer::{snapshot, trainable_params, DataConfig, SynthSpec};
use inspro::train::{clip_loss_with, AuxHeads, Mechanisms, TrainConfig, Trainer};

fn tiny() -> ModelConfig {
    ModelConfig::from_file("configs/models/inspro-tiny.toml").unwrap()
}

fn small_synth(seed: u64) -> inspro::ytvis::SynthOptions {
    inspro::ytvis::SynthOptions {
        videos: 1,
        frames: 5,
        width: 128,
        height: 96,
        seed,
        min_objects: 2,
        max_objects: 3,
        ..Default::default()
    }
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

fn signals() -> LossConfig {
    LossConfig {
        semantic: 1.0,
        dn_groups: 2,
        roi_class: 1.0,
        ..LossConfig::default()
    }
}

#[test]
fn every_parameter_gets_a_gradient_with_denoising_and_the_semantic_loss() {
    every_parameter_gets_a_gradient(&tiny());
}

#[test]
fn every_parameter_gets_a_gradient_with_stride_4_mask_features() {
    let cfg = ModelConfig {
        mask_feat_stride: 4,
        ..tiny()
    };
    every_parameter_gets_a_gradient(&cfg);
}

fn every_parameter_gets_a_gradient(cfg: &ModelConfig) {
    let cfg = cfg.clone();
    let dev = Device::Cpu;
    let (model, vars) = InsPro::random(&cfg, 2, &dev).unwrap();
    let vb = inspro::model::weights::seeded_var_builder(9, &vars, &dev);
    let semantic = SemanticHead::new(&cfg, vb).unwrap();
    let vb = inspro::model::weights::seeded_var_builder(10, &vars, &dev);
    let roi_class = RoiClassifier::new(&cfg, vb).unwrap();
    let video = make_stream_video(&small_synth(3), &[1, 2, 3, 4, 5, 6], 90, 0).unwrap();
    let mut rng = SplitMix64::new(1);
    let clip = sample_clip_from(&video, &cfg, &small_clip(), &mut rng, &dev).unwrap();
    assert!(
        clip.gts.iter().all(|g| !g.is_empty()),
        "objects on every frame"
    );
    let aux = AuxHeads {
        semantic: Some(&semantic),
        roi_class: Some(&roi_class),
    };
    let (loss, parts) =
        clip_loss_with(&model, aux, &clip, &signals(), &Mechanisms::default()).unwrap();
    assert!(parts.semantic > 0.0 && parts.dn_class > 0.0 && parts.dn_box > 0.0);
    assert!(parts.roi_class > 0.0);
    assert!(parts.dn_mask > 0.0);
    let grads = loss.backward().unwrap();
    let params = trainable_params(&cfg, &vars);
    assert!(params.iter().any(|(k, _)| k.starts_with("aux.semantic")));
    assert!(params.iter().any(|(k, _)| k.starts_with("aux.roi_class")));
    let refine = cfg.mask_branch_levels().len();
    assert!(params
        .iter()
        .any(|(k, _)| k.starts_with(&format!("mask_branch.refine.{}", refine - 1))));
    let mut missing = Vec::new();
    for (name, var) in &params {
        match grads.get(var.as_tensor()) {
            Some(g) => {
                let norm = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm.is_finite(), "{name}: gradient not finite");
                if norm == 0.0 {
                    missing.push(format!("{name} (zero)"));
                }
            }
            None => missing.push(name.clone()),
        }
    }
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

#[test]
fn denoising_boxes_stay_in_the_image_and_near_the_box() {
    let mut rng = SplitMix64::new(4);
    for i in 0..2000 {
        let x = (i % 90) as f32;
        let b = [x, 10.0, x + 30.0, 40.0];
        let j = jitter_box(b, 0.4, &mut rng, 100.0, 60.0);
        assert!(
            j[0] >= 0.0 && j[1] >= 0.0 && j[2] <= 100.0 && j[3] <= 60.0,
            "{j:?}"
        );
        assert!(j[2] - j[0] >= 1.0 && j[3] - j[1] >= 1.0, "{j:?}");
        let (cx, cy) = (0.5 * (j[0] + j[2]), 0.5 * (j[1] + j[3]));
        // Clipping can only pull the centre inwards; unclipped it moves by at most 0.2 size.
        let reach = 0.2 * 30.0 + 1e-3;
        assert!((25.0 - reach..=25.0 + reach).contains(&cy), "{j:?}");
        assert!(cx <= (x + 15.0) + 0.2 * 30.0 + 1e-3, "{j:?}");
    }
}

#[test]
fn the_synthetic_stream_is_reproducible_and_every_video_is_new() {
    let cfg = tiny();
    let mut a = SynthStream::new(small_synth(11), &cfg, 0).unwrap();
    let v0 = a.video(0).unwrap();
    let v1 = a.video(1).unwrap();
    assert_ne!(v0.frames[0], v1.frames[0], "two indices, two scenes");
    // Jumping back (a resume) restarts the worker at that index.
    let again = a.video(0).unwrap();
    assert_eq!(again.frames, v0.frames);
    let mut b = SynthStream::new(small_synth(11), &cfg, 1).unwrap();
    let w1 = b.video(1).unwrap();
    assert_eq!(w1.frames, v1.frames);
    assert_eq!(w1.objects.len(), v1.objects.len());
    for (o, p) in w1.objects.iter().zip(&v1.objects) {
        assert_eq!((o.class, &o.masks), (p.class, &p.masks));
    }
    // Another seed, another stream.
    let mut c = SynthStream::new(small_synth(12), &cfg, 0).unwrap();
    assert_ne!(c.video(0).unwrap().frames[0], v0.frames[0]);
}

fn stream_config(dir: &std::path::Path) -> TrainConfig {
    TrainConfig {
        model: "configs/models/inspro-tiny.toml".into(),
        model_bank_size: None,
        model_propagate: None,
        out_dir: dir.join("run"),
        iterations: 10,
        seed: 4,
        log_every: 1,
        eval_every: 0,
        checkpoint_every: 1,
        data: DataConfig {
            train: Default::default(),
            train_gt: None,
            val: None,
            val_gt: None,
            synth_train: None,
            synth_val: None,
            synth_stream: Some(SynthSpec {
                frames: 5,
                size: [128, 96],
                seed: 21,
                objects: [2, 3],
                ..SynthSpec::default()
            }),
        },
        clip: small_clip(),
        optim: inspro::train::optim::OptimConfig {
            lr: 1e-3,
            warmup_iters: 2,
            ..Default::default()
        },
        loss: signals(),
        mechanisms: Mechanisms::default(),
        init: None,
        init_rename: Default::default(),
        probe: None,
        workers: 1,
    }
}

#[test]
fn resuming_a_streamed_run_with_training_signals_reproduces_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream_config(dir.path());
    let dev = Device::Cpu;
    let mut a = Trainer::streaming(cfg.clone(), &dev).unwrap();
    a.step().unwrap();
    a.save(&cfg.out_dir, "last").unwrap();
    let (pa, _, _) = a.step().unwrap();
    let wa = snapshot(&a.varmap);

    let mut b = Trainer::streaming(cfg.clone(), &dev).unwrap();
    b.resume(&cfg.out_dir, "last").unwrap();
    assert_eq!(b.iteration, 1);
    let (pb, _, _) = b.step().unwrap();
    let wb = snapshot(&b.varmap);
    assert_eq!(pa.total, pb.total);
    assert_eq!(pa.dn_class, pb.dn_class);
    assert_eq!(wa.len(), wb.len());
    for (k, v) in &wa {
        assert_eq!(v, &wb[k], "weight {k} differs after resume");
    }
}

#[test]
fn training_only_variables_stay_out_of_the_weights_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = stream_config(dir.path());
    let dev = Device::Cpu;
    let t = Trainer::streaming(cfg.clone(), &dev).unwrap();
    let weights = t.save(&cfg.out_dir, "final").unwrap();
    let saved = candle_core::safetensors::load(&weights, &dev).unwrap();
    assert!(saved.keys().all(|k| !k.starts_with("aux.")));
    let aux =
        candle_core::safetensors::load(cfg.out_dir.join("final.aux.safetensors"), &dev).unwrap();
    assert!(aux.keys().any(|k| k.starts_with("aux.semantic")));
    assert!(aux.keys().any(|k| k.starts_with("aux.roi_class")));
    assert!(aux.keys().all(|k| k.starts_with("aux.")));
    // The inference model loads the file as it is: every key it needs, none left over.
    let model_cfg = tiny();
    InsPro::load(&model_cfg, &weights, &dev).unwrap();
    let (_, vars) = InsPro::random(&model_cfg, 0, &dev).unwrap();
    let expected: Vec<String> = vars.data().lock().unwrap().keys().cloned().collect();
    assert_eq!(saved.len(), expected.len());
}

#[test]
fn the_probe_reads_separable_features_and_not_noise() {
    let mut rng = SplitMix64::new(8);
    let mut gauss = || {
        let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    };
    let (d, k) = (40, 4);
    let centres: Vec<Vec<f32>> = (0..k)
        .map(|_| (0..d).map(|_| 2.0 * gauss()).collect())
        .collect();
    let mut make = |n: usize, noise_labels: bool| {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = i % k;
            rows.push(centres[c].iter().map(|m| m + gauss()).collect::<Vec<f32>>());
            labels.push(if noise_labels { (i * 7 + i / 3) % k } else { c });
        }
        (rows, labels)
    };
    let (fx, fy) = make(400, false);
    let (tx, ty) = make(200, false);
    let cfg = ProbeConfig::default();
    let r = fit_and_score(&cfg, (&fx, &fy), (&tx, &ty), k).unwrap();
    assert!(r.test_accuracy > 0.95, "{r:?}");
    let (nx, ny) = make(400, true);
    let (mx, my) = make(200, true);
    let r = fit_and_score(&cfg, (&nx, &ny), (&mx, &my), k).unwrap();
    assert!(
        r.test_accuracy < 0.45,
        "labels unrelated to the features: {r:?}"
    );
}

#[test]
fn the_ground_truth_as_results_has_perfect_track_quality() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_synth(31);
    opts.videos = 3;
    opts.frames = 6;
    let gt = inspro::ytvis::synth::write_dataset(dir.path(), &opts).unwrap();
    let results = inspro::ytvis::results_from_ground_truth(&gt).unwrap();
    let q = inspro::ytvis::eval::track_quality(&gt, &results, 0.5, 0.5);
    assert_eq!(q.objects, gt.annotations.len());
    assert_eq!(q.best_track_class_accuracy, 1.0);
    assert!((q.best_track_iou - 1.0).abs() < 1e-9);
    assert!((q.frame_oracle_iou - 1.0).abs() < 1e-9 && q.frame_oracle_iou_075 == 1.0);
    assert_eq!(q.id_switches, 0, "{q:?}");
    // Every track is some object's best, covering it with its class.
    use inspro::ytvis::eval::TrackKind;
    let kinds = |q: &inspro::ytvis::eval::TrackQuality, kind| {
        q.samples.iter().filter(|(_, k)| *k == kind).count()
    };
    assert_eq!(kinds(&q, TrackKind::Right), gt.annotations.len(), "{q:?}");
    assert_eq!(q.samples.len(), gt.annotations.len());
    // Identities rotated every frame (result j holds object j + f at frame f): each frame's
    // masks are still perfect, the tracks are not.
    let mut rotated = results.clone();
    for v in &gt.videos {
        let idx: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].video_id == v.id)
            .collect();
        for (j, &i) in idx.iter().enumerate() {
            for f in 0..rotated[i].segmentations.len() {
                let src = idx[(j + f) % idx.len()];
                rotated[i].segmentations[f] = results[src].segmentations[f].clone();
            }
        }
    }
    let q = inspro::ytvis::eval::track_quality(&gt, &rotated, 0.5, 0.5);
    assert!((q.frame_oracle_iou - 1.0).abs() < 1e-9, "{q:?}");
    assert!(q.best_track_iou < 0.9, "{q:?}");
    // Every object visible on every frame moves to another result each frame.
    assert!(q.id_switches >= gt.annotations.len(), "{q:?}");
    // Every result doubled by a second slot that misses the object's first frame: one duplicate
    // pair per object seen on two frames or more.
    let mut copies = Vec::new();
    let mut seen_twice = 0;
    for r in &results {
        let shown: Vec<usize> = (0..r.segmentations.len())
            .filter(|&f| {
                r.segmentations[f]
                    .as_ref()
                    .is_some_and(|m| m.to_rle().unwrap().area() > 0)
            })
            .collect();
        if shown.len() >= 2 {
            seen_twice += 1;
            let mut c = r.clone();
            c.segmentations[shown[0]] = None;
            copies.push(c);
        }
    }
    assert!(seen_twice > 0);
    let doubled: Vec<_> = results.iter().chain(&copies).cloned().collect();
    let q = inspro::ytvis::eval::track_quality(&gt, &doubled, 0.5, 0.5);
    assert!(q.duplicate_pairs >= seen_twice, "{q:?}");
    // The copies are second tracks on covered objects (or, where they cover an object better
    // than its own track, the own track is).
    assert_eq!(kinds(&q, TrackKind::Duplicate), copies.len(), "{q:?}");
    assert_eq!(kinds(&q, TrackKind::Right), gt.annotations.len(), "{q:?}");
    // The same slots under a second class are the same tracks, not duplicates.
    let relabelled = results.iter().map(|r| {
        let mut r = r.clone();
        r.category_id = r.category_id % 6 + 1;
        r
    });
    let two_classes: Vec<_> = results.iter().cloned().chain(relabelled).collect();
    let q = inspro::ytvis::eval::track_quality(&gt, &two_classes, 0.5, 0.5);
    assert_eq!(q.duplicate_pairs, 0, "{q:?}");
    // Wrong classes everywhere: no object's best track is right.
    let wrong: Vec<_> = results
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.category_id = r.category_id % 6 + 1;
            r
        })
        .collect();
    let q = inspro::ytvis::eval::track_quality(&gt, &wrong, 0.5, 0.5);
    assert_eq!(q.best_track_class_accuracy, 0.0);
    assert_eq!(
        kinds(&q, TrackKind::WrongClass),
        gt.annotations.len(),
        "{q:?}"
    );
    assert_eq!(kinds(&q, TrackKind::Right), 0);
}

#[test]
fn a_trunk_trained_alone_changes_only_the_trunk_and_seeds_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = stream_config(dir.path());
    cfg.loss.heads = false;
    cfg.loss.dn_groups = 0;
    let dev = Device::Cpu;
    let mut t = Trainer::streaming(cfg.clone(), &dev).unwrap();
    let before = snapshot(&t.varmap);
    let (parts, _, _) = t.step().unwrap();
    assert!(parts.semantic > 0.0 && parts.class == 0.0 && parts.dn_class == 0.0);
    let after = snapshot(&t.varmap);
    let trunk = |k: &str| k.starts_with("backbone.") || k.starts_with("aux.");
    for (k, v) in &after {
        if trunk(k) {
            continue;
        }
        assert_eq!(v, &before[k], "{k} changed without the stages running");
    }
    assert!(
        after.iter().any(|(k, v)| trunk(k) && v != &before[k]),
        "the trunk learned nothing"
    );
    let weights = t.save(&cfg.out_dir, "final").unwrap();

    let mut next = stream_config(&dir.path().join("next"));
    next.seed = 77;
    next.init = Some(weights);
    let n = Trainer::streaming(next, &dev).unwrap();
    let seeded = snapshot(&n.varmap);
    for (k, v) in &after {
        if trunk(k) {
            assert_eq!(v, &seeded[k], "{k} not taken from the pre-trained trunk");
        }
    }
}

#[test]
fn the_training_picture_is_drawn_from_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.jsonl");
    let mut lines = String::new();
    for it in (20..=400).step_by(20) {
        let v = 10.0 / f64::from(it);
        lines.push_str(&format!(
            "{{\"iteration\":{it},\"loss\":{{\"total\":{},\"class\":{v},\"giou\":{v},\"dice\":{v},\"semantic\":{v}}}}}\n",
            5.0 * v
        ));
    }
    lines.push_str("{\"iteration\":400,\"eval\":{\"ap\":0.1,\"ap50\":0.2},\"tracks\":{\"best_track_class_accuracy\":0.5,\"covered_right_top_class\":0.25,\"covered_right_confident\":0.125}}\n");
    lines.push_str(
        "{\"iteration\":400,\"probe\":{\"test_accuracy\":0.6,\"majority_accuracy\":0.3}}\n",
    );
    lines.push_str("not json\n");
    std::fs::write(&metrics, lines).unwrap();
    let curves = inspro::train::plot::read_metrics(&metrics).unwrap();
    assert_eq!(curves.losses.len(), 20);
    assert_eq!(curves.evals, vec![(400.0, 10.0, 20.0, 50.0, 25.0, 12.5)]);
    // No hours on the line: the curve reads against iterations.
    assert_eq!(curves.eval_x(), (vec![400.0], "iteration"));
    assert_eq!(curves.probes, vec![(400.0, 60.0, 30.0)]);
    let png = dir.path().join("training.png");
    inspro::train::plot::write_plot(&metrics, &png).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1000, 1000));
    // Lines were drawn: not every pixel is the white background.
    assert!(img.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 5000);

    // A campaign's lines carry the hours trained (resumed parts included): its learning curve
    // reads against them.
    let mut lines = std::fs::read_to_string(&metrics).unwrap();
    lines = lines.replace("\"eval\":", "\"train_hours\":2.5,\"eval\":");
    lines.push_str("{\"iteration\":800,\"train_hours\":6.0,\"eval\":{\"ap\":0.2,\"ap50\":0.3}}\n");
    std::fs::write(&metrics, lines).unwrap();
    let curves = inspro::train::plot::read_metrics(&metrics).unwrap();
    assert_eq!(curves.eval_x(), (vec![2.5, 6.0], "training hours"));
    // The line without track figures has them missing (left out of the picture), not 0.
    let e = curves.evals[1];
    assert!((e.1 - 20.0).abs() < 1e-9 && e.3.is_nan() && e.4.is_nan() && e.5.is_nan());
    inspro::train::plot::write_plot(&metrics, &png).unwrap();
    assert_eq!(
        image::open(&png).unwrap().to_rgb8().dimensions(),
        (1000, 1000)
    );
}

#[test]
fn the_weight_average_resumes_exactly_and_evaluation_puts_the_raw_weights_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = stream_config(dir.path());
    cfg.optim.ema = 0.9;
    let dev = Device::Cpu;
    let mut a = Trainer::streaming(cfg.clone(), &dev).unwrap();
    a.step().unwrap();
    a.save(&cfg.out_dir, "last").unwrap();
    a.step().unwrap();
    let avg_a = a.ema.as_ref().unwrap().tensors();
    // Plain data: an average that records its op graph keeps every earlier average alive (the
    // first run of this grew by ~6.5 MB an iteration until the OOM killer stopped it).
    assert!(avg_a.values().all(|t| !t.track_op()));

    let mut b = Trainer::streaming(cfg.clone(), &dev).unwrap();
    b.resume(&cfg.out_dir, "last").unwrap();
    b.step().unwrap();
    let avg_b = b.ema.as_ref().unwrap().tensors();
    assert_eq!(avg_a.len(), avg_b.len());
    for (k, t) in &avg_a {
        let (x, y) = (
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            avg_b[k].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(x, y, "average of {k} differs after resume");
    }

    // The average differs from the raw weights, evaluation sees it, and the raw ones come back.
    let raw = snapshot(&b.varmap);
    let ((seen, _), averaged) = b.with_average(|t| (snapshot(&t.varmap), ())).unwrap();
    assert!(averaged);
    assert_eq!(snapshot(&b.varmap), raw);
    let key = "head.head_series.0.class_logits.weight";
    assert!(raw.contains_key(key), "{key}");
    assert_ne!(seen[key], raw[key]);
    let first = avg_b[key].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(seen[key], first);

    // The averaged weights file holds the model's keys only.
    let w = b.save(&cfg.out_dir, "final").unwrap();
    let avg = candle_core::safetensors::load(w.with_extension("ema.safetensors"), &dev).unwrap();
    assert!(!avg.is_empty() && avg.keys().all(|k| !k.starts_with("aux.")));
    InsPro::load(&tiny(), w.with_extension("ema.safetensors"), &dev).unwrap();
}

#[test]
fn two_workers_step_on_the_mean_gradient_of_two_clips() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = stream_config(dir.path());
    cfg.workers = 2;
    let dev = Device::Cpu;
    // The reference: the same init and sampler, the two clips' gradients computed one by one.
    let mut r = Trainer::streaming(cfg.clone(), &dev).unwrap();
    let clips = [r.next_clip(0).unwrap(), r.next_clip(1).unwrap()];
    let aux = AuxHeads {
        semantic: r.semantic.as_ref(),
        roi_class: r.roi_class.as_ref(),
    };
    let mut totals = Vec::new();
    let mut stores = Vec::new();
    for clip in &clips {
        let (loss, parts) =
            clip_loss_with(&r.model, aux, clip, &cfg.loss, &Mechanisms::default()).unwrap();
        totals.push(parts.total);
        stores.push(loss.backward().unwrap());
    }
    let mut sq = 0f64;
    for (_, var) in r.opt.params() {
        let g: Vec<_> = stores
            .iter()
            .filter_map(|s| s.get(var.as_tensor()))
            .collect();
        if g.is_empty() {
            continue;
        }
        let mut sum = g[0].clone();
        for x in &g[1..] {
            sum = (sum + *x).unwrap();
        }
        let mean = (sum / 2.0).unwrap();
        sq += f64::from(
            mean.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
        );
    }

    let mut a = Trainer::streaming(cfg.clone(), &dev).unwrap();
    let (parts, norm, _) = a.step().unwrap();
    assert_eq!(a.iteration, 1);
    assert!(
        (parts.total - 0.5 * (totals[0] + totals[1])).abs() < 1e-5,
        "{} vs {totals:?}",
        parts.total
    );
    assert!(
        (norm - sq.sqrt()).abs() <= 1e-4 * sq.sqrt().max(1.0),
        "gradient norm {norm} vs the mean gradient's {}",
        sq.sqrt()
    );

    // Resuming a two-worker run continues with clips 2 and 3, bit for bit.
    a.save(&cfg.out_dir, "last").unwrap();
    let (pa, _, _) = a.step().unwrap();
    let mut b = Trainer::streaming(cfg.clone(), &dev).unwrap();
    b.resume(&cfg.out_dir, "last").unwrap();
    let (pb, _, _) = b.step().unwrap();
    assert_eq!(pa.total, pb.total);
    assert_eq!(snapshot(&a.varmap), snapshot(&b.varmap));
}

#[test]
fn a_stride_8_mask_branch_seeds_a_stride_4_one_through_renamed_keys() {
    let dev = Device::Cpu;
    let (_, old) = InsPro::random(&tiny(), 1, &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stride8.safetensors");
    old.save(&path).unwrap();
    let cfg4 = ModelConfig {
        mask_feat_stride: 4,
        ..tiny()
    };
    let (_, new) = InsPro::random(&cfg4, 2, &dev).unwrap();
    let rename: std::collections::BTreeMap<String, String> = (0..3)
        .map(|i| {
            (
                format!("mask_branch.refine.{i}."),
                format!("mask_branch.refine.{}.", i + 1),
            )
        })
        .collect();
    let taken = inspro::train::trainer::init_from(&new, &path, &rename, &dev).unwrap();
    let (a, b) = (snapshot(&old), snapshot(&new));
    // Every variable but the new P2 refine conv (weight + 4 norm tensors) comes from the file.
    assert_eq!(taken, b.len() - 5, "{taken} of {}", b.len());
    let same = |x: &str, y: &str| a[x] == b[y];
    for i in 0..3 {
        let (x, y) = (
            format!("mask_branch.refine.{i}.0.weight"),
            format!("mask_branch.refine.{}.0.weight", i + 1),
        );
        assert!(same(&x, &y), "{y} is not the file's {x}");
    }
    assert!(!same(
        "mask_branch.refine.0.0.weight",
        "mask_branch.refine.0.0.weight"
    ));
    assert!(same(
        "mask_branch.tower.0.0.weight",
        "mask_branch.tower.0.0.weight"
    ));
}
