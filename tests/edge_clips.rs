//! Event clips against a running daemon (issue 31): each track's MP4 is cut from the camera's
//! H.264 stream (no re-encoding), spans `pre_s` before its birth to `post_s` after its end
//! (from the keyframe at or before the start), decodes, and is served by the API whole and by
//! byte range; a camera with a raw stream has none, and says why.
#![cfg(feature = "edge")]

mod edge_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use edge_common::*;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::Value;

/// `GET path` with a `Range` header: (status, headers, body).
fn get_range(port: u16, path: &str, range: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nRange: {range}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

/// Decode an MP4 file: the number of frames and the span of their timestamps (s).
fn decode(path: &std::path::Path) -> (usize, f64) {
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! appsink name=sink sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = p
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut pts = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        pts.push(s.buffer().unwrap().pts().unwrap().nseconds() as f64 / 1e9);
    }
    p.set_state(gst::State::Null).unwrap();
    let lo = pts.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = pts.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (pts.len(), hi - lo)
}

#[test]
fn each_track_gets_a_clip_cut_from_the_stream_served_whole_and_by_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    // 6 s at 15 frames/s, a keyframe every 2 s, played at its own rate.
    let fps = 15.0;
    let clip = synth_clip(dir.path(), "clip.mkv", 90, "160x96", 11);
    let clips = "[camera.clips]\nenabled = true\npre_s = 1.0\npost_s = 0.5\n";
    let cams = [
        camera(
            "door",
            &format!("file://{}", clip.display()),
            &format!("pace = \"drop\"\n{clips}"),
        ),
        camera("yard", "test:ball?live=true&fps=10", clips),
    ]
    .concat();
    let port = free_port();
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &cams,
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    // Detection off and on again half-way: tracks that end and are born inside the stream, so
    // clips start and end away from its ends.
    sub.wait_for(Duration::from_secs(60), "door's first tracks", |_| {
        !sub.events("door").is_empty()
    });
    std::thread::sleep(Duration::from_millis(2000));
    let post = |on: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = format!("{{\"on\": {on}}}");
        write!(s, "POST /api/cameras/door/detect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    };
    post("false");
    std::thread::sleep(Duration::from_millis(1000));
    post("true");
    // The stream ends: every track ends, the last clips are written.
    sub.wait_for(Duration::from_secs(60), "door's end of stream", |_| {
        sub.events("door")
            .iter()
            .any(|e| e["reason"] == "end_of_stream")
    });
    let events = sub.events("door");
    let tracks = by_track(&events);
    let end = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let (st, body) = http_get_bytes(port, "/api/events?camera=door&limit=1000");
        assert_eq!(st, 200);
        let rows: Vec<Value> = serde_json::from_slice(&body).unwrap();
        if rows.len() == tracks.len() && rows.iter().all(|r| r["has_clip"] == true) {
            break rows;
        }
        assert!(
            Instant::now() < end,
            "not every track of door has its clip: {} tracks, rows {rows:?}",
            tracks.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let stream_end = (90.0 - 1.0) / fps;
    let (mut inside_start, mut inside_end) = (0, 0);
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        let evs = &tracks[&row["track_id"].as_u64().unwrap()];
        let pts = |kind: &str| {
            evs.iter()
                .find(|e| e["type"] == kind)
                .and_then(|e| e["frame"]["pts"].as_f64())
                .unwrap_or_else(|| panic!("{id}: no {kind} with a frame pts: {evs:?}"))
        };
        let (born, ended) = (pts("new"), pts("end"));
        let (st, bytes) = http_get_bytes(port, &format!("/api/events/{id}/clip"));
        assert_eq!(st, 200, "{id}");
        assert_eq!(&bytes[4..8], b"ftyp", "{id}: not an MP4");
        let file = dir.path().join(format!("{id}.mp4"));
        std::fs::write(&file, &bytes).unwrap();
        let (frames, span) = decode(&file);
        // From the keyframe at or before `born - pre` (keyframes every 2 s) to `ended + post`.
        let want_from = (born - 1.0).max(0.0);
        let want_to = (ended + 0.5).min(stream_end);
        let least = want_to - want_from - 1.5 / fps;
        assert!(
            span >= least && span <= least + 2.0 + 3.0 / fps,
            "{id}: born {born:.2} s, ended {ended:.2} s: the clip spans {span:.2} s ({frames} frames), want {least:.2}..{:.2}",
            least + 2.0 + 3.0 / fps
        );
        assert!(
            frames as f64 >= span * fps * 0.9,
            "{id}: {frames} frames over {span:.2} s"
        );
        inside_start += usize::from(born - 1.0 > 0.1);
        inside_end += usize::from(ended + 0.5 < stream_end - 0.1);
    }
    assert!(
        inside_start > 0 && inside_end > 0,
        "the switch made no track born or ended inside the stream ({inside_start}, {inside_end})"
    );
    eprintln!(
        "{} clips of door, {inside_start} starting and {inside_end} ending inside the stream",
        rows.len()
    );

    // By byte range, as a browser's video element asks.
    let id = rows[0]["id"].as_str().unwrap();
    let path = format!("/api/events/{id}/clip");
    let (_, whole) = http_get_bytes(port, &path);
    let (st, head, body) = get_range(port, &path, "bytes=0-99");
    assert_eq!(st, 206, "{head}");
    assert_eq!(body, whole[..100]);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-range: bytes 0-99/{}", whole.len())),
        "{head}"
    );
    let (st, _, body) = get_range(port, &path, "bytes=-10");
    assert_eq!((st, body.as_slice()), (206, &whole[whole.len() - 10..]));
    let (st, head, _) = get_range(port, &path, &format!("bytes={}-", whole.len() + 5));
    assert_eq!(st, 416, "{head}");

    // A raw stream has no clip, and the answer says why.
    let (_, body) = http_get_bytes(port, "/api/events?camera=yard&limit=5");
    let yard: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert!(!yard.is_empty());
    assert!(yard.iter().all(|r| r["has_clip"] == false), "{yard:?}");
    let (st, body) = http_get_bytes(
        port,
        &format!("/api/events/{}/clip", yard[0]["id"].as_str().unwrap()),
    );
    assert_eq!(st, 404);
    assert!(String::from_utf8_lossy(&body).contains("no clip"));

    let metrics = http_get(port, "/metrics");
    let written = metrics
        .lines()
        .find(|l| l.starts_with("inspro_clips_written_total{camera=\"door\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no clips_written_total for door:\n{metrics}"));
    assert!(written >= rows.len() as f64);
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    broker.stop();
}
