//! RoIAlign timing (ml-stack.md §3.5 setting): 100 rois, 256 channels, P2 90x160, 7x7 bins,
//! sampling 2; forward, forward + backward, backward alone and the 4-level pooler.
//! Thread count from `RAYON_NUM_THREADS`. Run: `RAYON_NUM_THREADS=2 cargo bench --bench roi_align`.
//!
//! Prints the median and minimum wall time and the process CPU time per call (summed over all
//! threads from /proc/self/task/*/schedstat), which stays meaningful on a loaded machine.

use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};
use inspro::model::roi_align::{roi_align, RoiPooler};

const ROUNDS: usize = 30;

/// CPU time of all threads of this process in ns (Linux), 0 where unavailable.
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn bench(name: &str, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    for _ in 0..3 {
        f()?;
    }
    let mut times = Vec::with_capacity(ROUNDS);
    let cpu0 = process_cpu_ns();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (process_cpu_ns() - cpu0) as f64 / 1e6 / ROUNDS as f64;
    times.sort_by(f64::total_cmp);
    println!(
        "  {name:<20}{:>8.2} ms median {:>8.2} ms min {:>8.2} ms cpu",
        times[ROUNDS / 2],
        times[0],
        cpu
    );
    Ok(())
}

/// Deterministic boxes on a 640x360 image, sides 16..112 px (the P2 range of the pooler).
fn boxes(k: usize) -> Vec<f32> {
    let mut s = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..k)
        .flat_map(|_| {
            let (w, h) = (16.0 + 96.0 * next(), 16.0 + 96.0 * next());
            let (x, y) = (next() * (640.0 - w), next() * (360.0 - h));
            [x, y, x + w, y + h]
        })
        .collect()
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let (k, c) = (100, 256);
    let features = Tensor::randn(0f32, 1.0, (c, 90, 160), &dev)?;
    let boxes_xyxy = Tensor::from_vec(boxes(k), (k, 4), &dev)?;
    let var = Var::from_tensor(&features)?;
    let g = Tensor::randn(0f32, 1.0, (k, c, 7, 7), &dev)?;
    println!(
        "threads {}: roi_align 100 rois x 256 ch, P2 90x160, 7x7, sampling 2 ({ROUNDS} rounds)",
        rayon::current_num_threads()
    );

    bench("forward", || {
        roi_align(&features, &boxes_xyxy, 7, 0.25, 2, true).map(|_| ())
    })?;
    bench("forward + backward", || {
        let out = roi_align(var.as_tensor(), &boxes_xyxy, 7, 0.25, 2, true)?;
        (out * &g)?.sum_all()?.backward().map(|_| ())
    })?;
    let loss = (roi_align(var.as_tensor(), &boxes_xyxy, 7, 0.25, 2, true)? * &g)?.sum_all()?;
    bench("backward only", || loss.backward().map(|_| ()))?;

    // Pooler over P2..P5 of a 640x360 frame with the same boxes (they land on P2 and P3).
    let levels: Vec<Tensor> = (2..=5)
        .map(|l| Tensor::randn(0f32, 1.0, (c, 360usize.div_ceil(1 << l), 640 >> l), &dev))
        .collect::<Result<_>>()?;
    let pooler = RoiPooler::default();
    bench("RoiPooler forward", || {
        pooler.forward(&levels, &boxes_xyxy).map(|_| ())
    })?;
    Ok(())
}
