//! The one H.264 writer and reader (`inspro::video`) with a real `gst-launch-1.0`.

use inspro::frame::FrameRef;
use inspro::video::{VideoError, VideoReader, VideoWriter, WriterOptions};

/// A smooth test image that changes from frame to frame.
fn frame(w: usize, h: usize, t: usize) -> Vec<u8> {
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let p = (y * w + x) * 3;
            rgb[p] = (x * 255 / w) as u8;
            rgb[p + 1] = (y * 255 / h) as u8;
            rgb[p + 2] = (t * 40 % 256) as u8;
        }
    }
    rgb
}

/// A width whose RGB rows are not a multiple of 4 bytes (GStreamer pads them) round-trips.
#[test]
fn frames_round_trip_at_a_width_gstreamer_pads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("clip.mkv");
    let (w, h) = (162, 96);
    let opts = WriterOptions {
        fps: 10,
        quantizer: Some(0),
    };
    let mut writer = VideoWriter::create(&path, w, h, &opts).expect("writer");
    for t in 0..5 {
        writer
            .write(&FrameRef::packed(w, h, &frame(w, h, t)))
            .expect("write");
    }
    writer.finish().expect("finish");
    let mut reader = VideoReader::open(&path.display().to_string()).expect("reader");
    assert_eq!((reader.width, reader.height, reader.fps), (w, h, 10));
    let mut n = 0;
    while let Some(data) = reader.next_frame().expect("decode") {
        let got = reader.frame(&data).to_packed();
        let want = frame(w, h, n);
        let mean = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .sum::<i32>() as f64
            / want.len() as f64;
        // 4:2:0 chroma and the colour conversion only: a skewed row would be far off.
        assert!(mean < 6.0, "frame {n}: mean abs difference {mean:.2}");
        n += 1;
    }
    reader.finish().expect("decoder exit");
    assert_eq!(n, 5);
}

/// A pipeline that fails says why (gst-launch-1.0's own words), not "broken pipe".
#[test]
fn a_failing_pipeline_reports_its_reason() {
    let (w, h) = (64, 48);
    // A directory where the file should be: filesink cannot open it, even as root.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("clip.mkv");
    std::fs::create_dir(&path).expect("a directory in the way");
    let err = match VideoWriter::create(&path, w, h, &WriterOptions::default()) {
        Err(e) => e,
        Ok(mut writer) => {
            let rgb = frame(w, h, 0);
            let mut result = Ok(());
            for _ in 0..200 {
                result = writer.write(&FrameRef::packed(w, h, &rgb));
                if result.is_err() {
                    break;
                }
            }
            match result {
                Err(e) => e,
                Ok(()) => writer
                    .finish()
                    .expect_err("the pipeline cannot write there"),
            }
        }
    };
    let text = err.to_string();
    assert!(matches!(err, VideoError::Failed { .. }), "{text}");
    assert!(text.contains("clip.mkv"), "{text}");
    assert!(!text.to_lowercase().contains("broken pipe"), "{text}");
}

/// Bad settings are refused before anything runs.
#[test]
fn odd_sizes_and_unknown_containers_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let odd = VideoWriter::create(&dir.path().join("a.mkv"), 63, 48, &WriterOptions::default());
    assert!(matches!(odd, Err(VideoError::Setting { .. })));
    let avi = VideoWriter::create(&dir.path().join("a.avi"), 64, 48, &WriterOptions::default());
    assert!(matches!(avi, Err(VideoError::Setting { ref reason, .. }) if reason.contains(".mkv")));
}
