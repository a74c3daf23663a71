//! Time of one training step (3-frame clip, forward + loss, backward) on synthetic data:
//! `cargo bench --bench train_step` (set CANDLE_NUM_THREADS / RAYON_NUM_THREADS to compare).

use std::time::Instant;

use candle_core::Device;
use inspro::train::data::{ClipConfig, Dataset};
use inspro::train::loss::LossConfig;
use inspro::train::{clip_loss, Mechanisms};

fn main() {
    let dir = std::env::temp_dir().join(format!("inspro-train-step-{}", std::process::id()));
    let opts = inspro::ytvis::SynthOptions {
        videos: 4,
        frames: 12,
        width: 320,
        height: 192,
        seed: 1,
        ..Default::default()
    };
    inspro::ytvis::synth::write_dataset(&dir, &opts).expect("synthetic data");
    let cfg = inspro::model::ModelConfig::from_file("configs/models/inspro-tiny.toml")
        .expect("tiny config");
    let data = Dataset::load(&dir, &dir.join("instances.json"), &cfg).expect("dataset");
    let dev = Device::Cpu;
    let (model, _vars) = inspro::model::InsPro::random(&cfg, 1, &dev).expect("model");
    let mut rng = inspro::rng::SplitMix64::new(3);
    let clip_cfg = ClipConfig {
        frames: 3,
        max_span: 8,
        min_size: [192, 192],
        max_size: 400,
        hflip: false,
    };
    let (mut fwd, mut bwd) = (Vec::new(), Vec::new());
    for i in 0..13 {
        let clip = data
            .sample_clip(&cfg, &clip_cfg, &mut rng, &dev)
            .expect("clip");
        let t0 = Instant::now();
        let (loss, _) = clip_loss(
            &model,
            &clip,
            &LossConfig::default(),
            &Mechanisms::default(),
        )
        .expect("loss");
        let t1 = Instant::now();
        let _grads = loss.backward().expect("backward");
        if i >= 3 {
            fwd.push((t1 - t0).as_secs_f64() * 1e3);
            bwd.push(t1.elapsed().as_secs_f64() * 1e3);
        }
    }
    fwd.sort_by(f64::total_cmp);
    bwd.sort_by(f64::total_cmp);
    println!(
        "train step, tiny, 320x192 clips of 3, threads={}: forward+loss {:.0} ms, backward {:.0} ms (medians of {})",
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        fwd[fwd.len() / 2],
        bwd[bwd.len() / 2],
        fwd.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
