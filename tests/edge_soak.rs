//! A long run keeps memory flat: 10,000 frames of a non-live `videotestsrc` through the daemon
//! (tiny model at a 96x64 input, zero thresholds so that all 16 slots are tracks and every frame
//! publishes), RSS sampled from /proc. The numbers go to stderr; docs/perf.md ("daemon") has
//! them for this machine.
#![cfg(feature = "edge")]

mod edge_common;

use std::time::{Duration, Instant};

use edge_common::*;

#[test]
fn ten_thousand_frames_keep_memory_flat() {
    const FRAMES: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let model = std::fs::read_to_string(repo().join("configs/models/inspro-tiny.toml"))
        .unwrap()
        .replace("input_size = [320, 192]", "input_size = [96, 64]");
    let model_path = dir.path().join("tiny96.toml");
    std::fs::write(&model_path, model).unwrap();
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &format!(
            "[[camera]]\nname = \"soak\"\nuri = \"test:ball?live=false&width=96&height=64&num_buffers={FRAMES}\"\nwidth = 96\nheight = 64\n"
        ),
        "[publish]\nupdate_interval_s = 0.5\nheartbeat_s = 1.0\ntracks = true\n",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &repo()
                .join("configs/models/inspro-tiny.toml")
                .display()
                .to_string(),
            &model_path.display().to_string(),
        )
        .replace("max_lost_frames = 5", "max_lost_frames = 2");
    std::fs::write(&cfg, text).unwrap();
    let sub = Subscriber::start(broker.port, "t/#", false);
    let t0 = Instant::now();
    let mut d = Daemon::spawn(&cfg, &["--exit-on-eos"], &[]);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let status = loop {
        if let Ok(Some(s)) = d.child.try_wait() {
            break s;
        }
        let rss = d.rss();
        if rss > 0 {
            samples.push((t0.elapsed().as_secs_f64(), rss));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "soak did not finish in 15 min"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let secs = t0.elapsed().as_secs_f64();
    assert!(status.success(), "{status:?}\n{}", d.log_text());
    let msgs = sub.wait_for(Duration::from_secs(20), "stopped", |m| {
        m.iter()
            .any(|m| m.topic == "t/available" && m.payload == "stopped")
    });
    let stats: Vec<_> = msgs
        .iter()
        .filter(|m| m.topic == "t/stats")
        .map(|m| m.json())
        .collect();
    let processed = stats
        .iter()
        .filter_map(|s| s["cameras"]["soak"]["frames_processed"].as_u64())
        .max()
        .unwrap_or(0);
    let tracks_msgs = msgs.iter().filter(|m| m.topic == "t/soak/tracks").count() as u64;
    let events = msgs.iter().filter(|m| m.topic == "t/soak/events").count();
    // Warm-up: the first 20 % of the run; then RSS must stay within 16 MiB of its warm level.
    let n = samples.len();
    assert!(n >= 10, "too few RSS samples ({n})");
    let warm = samples[..n / 5].iter().map(|s| s.1).max().unwrap();
    let late = samples[n * 4 / 5..].iter().map(|s| s.1).max().unwrap();
    let peak = samples.iter().map(|s| s.1).max().unwrap();
    let mib = |b: u64| b as f64 / 1048576.0;
    eprintln!(
        "soak: {FRAMES} frames in {secs:.1} s ({:.0} fps), {events} events, {tracks_msgs} tracks messages, \
         stats saw {processed} frames; RSS warm {:.1} MiB, last fifth {:.1} MiB, peak {:.1} MiB",
        FRAMES as f64 / secs,
        mib(warm),
        mib(late),
        mib(peak)
    );
    let mqtt_dropped = stats
        .iter()
        .filter_map(|s| s["mqtt"]["dropped"].as_u64())
        .max()
        .unwrap_or(0);
    eprintln!(
        "soak: QoS 0 messages dropped by the daemon: {mqtt_dropped}; received {tracks_msgs} of {FRAMES} QoS 0 tracks messages"
    );
    // Every frame went through the engine (a finite non-live source waits for it).
    let log = d.log_text();
    assert!(
        log.contains(&format!("frames={FRAMES}")),
        "not every frame was processed:\n{}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(
        late <= warm + 16 * 1024 * 1024,
        "RSS grew from {:.1} MiB to {:.1} MiB",
        mib(warm),
        mib(late)
    );
}
