//! Snapshots through the whole daemon: a JPEG per track's best view, retained on
//! `<prefix>/<camera>/<label>/snapshot` and written (bounded) under the state directory.
#![cfg(feature = "edge")]

mod edge_common;

use std::time::Duration;

use edge_common::*;

#[test]
fn each_track_gets_a_jpeg_published_retained_and_kept_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let clip = synth_clip(dir.path(), "clip.mkv", 16, "320x192", 4);
    let cam = format!(
        "[[camera]]\nname = \"cam\"\nuri = \"file://{}\"\n\
         [camera.snapshots]\nenabled = true\nmax_files = 2\n",
        clip.display()
    );
    let msgs = run_with_shipped_weights(dir.path(), &broker, &cam, "", "a snapshot", |m| {
        m.iter().any(|m| m.topic.ends_with("/snapshot"))
    });
    let snaps: Vec<&Msg> = msgs
        .iter()
        .filter(|m| m.topic.ends_with("/snapshot"))
        .collect();
    let labels: std::collections::BTreeSet<&str> = snaps
        .iter()
        .map(|m| m.topic.split('/').nth(2).unwrap())
        .collect();
    eprintln!("{} snapshots, labels {labels:?}", snaps.len());
    for m in &snaps {
        assert!(m.topic.starts_with("t/cam/"), "{}", m.topic);
        let img = image::load_from_memory_with_format(&m.bytes, image::ImageFormat::Jpeg)
            .unwrap_or_else(|e| panic!("{}: not a JPEG: {e}", m.topic));
        assert!(img.width() >= 1 && img.width() <= 320 && img.height() <= 192);
    }
    // Every label seen has one retained snapshot for a late subscriber.
    let late = Subscriber::start(broker.port, "t/+/+/snapshot", false);
    let got = late.wait_for(Duration::from_secs(10), "the retained snapshots", |m| {
        m.len() >= labels.len()
    });
    assert!(got.iter().all(|m| m.retain));
    // On disk, bounded to max_files.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("spool/snapshots/cam"))
        .expect("snapshot directory")
        .flatten()
        .collect();
    assert!(
        !files.is_empty() && files.len() <= 5,
        "{} files",
        files.len()
    );
}
