//! Seeded fuzz loops over every parser of outside input: COCO RLE (compressed counts strings and
//! plain count arrays), YouTube-VIS json (ground truth and results), and with feature `edge` the
//! daemon's configuration and camera URIs. Each loop runs a fixed number of cases from a fixed
//! seed (the same inputs on every run, a few seconds in all) and asserts that no input panics,
//! that every error says something, and that what parses behaves (round trips, bounds).

use inspro::rng::SplitMix64;
use inspro::ytvis::json::{
    parse_json, results_from_ground_truth, GroundTruth, RleJson, VideoResult,
};
use inspro::ytvis::Rle;

/// Random bytes biased towards `alphabet`, sometimes any byte (invalid UTF-8 is made lossy).
fn random_text(rng: &mut SplitMix64, alphabet: &[u8], max_len: usize) -> String {
    let n = rng.below(max_len + 1);
    let bytes: Vec<u8> = (0..n)
        .map(|_| {
            if rng.chance(0.9) {
                alphabet[rng.below(alphabet.len())]
            } else {
                (rng.next_u64() & 0xff) as u8
            }
        })
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Apply a few byte-level mutations: flip, insert, delete, duplicate a span, truncate.
fn mutate(rng: &mut SplitMix64, text: &str, tokens: &[&str]) -> String {
    let mut b = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.extend_from_slice(tokens[rng.below(tokens.len())].as_bytes());
            continue;
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] = (rng.next_u64() & 0xff) as u8,
            1 => {
                let t = tokens[rng.below(tokens.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                let end = (at + 1 + rng.below(32)).min(b.len());
                let span = b[at..end].to_vec();
                b.splice(at..at, span);
            }
            4 => b.truncate(at),
            _ => {
                // Replace a number-looking byte run with an extreme number.
                let t = tokens[rng.below(tokens.len())].as_bytes();
                let end = (at + 1 + rng.below(8)).min(b.len());
                b.splice(at..end, t.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn random_mask(rng: &mut SplitMix64, h: u32, w: u32) -> Vec<u8> {
    let p = rng.next_f64();
    (0..h * w).map(|_| u8::from(rng.chance(p))).collect()
}

/// What a consumer does with a parsed mask, bounded to small sizes.
fn exercise(rle: &Rle) {
    let _ = rle.area();
    let _ = rle.to_bbox();
    if u64::from(rle.h) * u64::from(rle.w) <= 1 << 16 {
        let px = rle.decode_row_major();
        assert_eq!(px.len() as u64, u64::from(rle.h) * u64::from(rle.w));
        let again = Rle::from_compressed(&rle.to_compressed(), rle.h, rle.w)
            .expect("our own compressed counts parse");
        assert_eq!(again.decode_row_major(), px, "compressed round trip");
    }
}

#[test]
fn fuzz_coco_rle_counts_strings_and_arrays() {
    let mut rng = SplitMix64::new(0x5eed_0012);
    let alphabet: Vec<u8> = (48u8..=111).collect();
    let (mut strings, mut arrays, mut accepted) = (0u64, 0u64, 0u64);
    let t0 = std::time::Instant::now();
    for case in 0..200_000u32 {
        let h = match rng.below(8) {
            0 => 0,
            1 => u32::MAX,
            2 => rng.next_u64() as u32,
            _ => rng.below(40) as u32,
        };
        let w = match rng.below(8) {
            0 => 0,
            1 => u32::MAX,
            _ => rng.below(40) as u32,
        };
        // Counts strings: random, or a valid one mutated.
        let s = if case % 2 == 0 {
            random_text(&mut rng, &alphabet, 64)
        } else {
            let (hh, ww) = (1 + rng.below(24) as u32, 1 + rng.below(24) as u32);
            let valid =
                Rle::encode_row_major(&random_mask(&mut rng, hh, ww), hh, ww).to_compressed();
            mutate(&mut rng, &valid, &["o", "0", "_", "P", "\u{0}", "\"", "ÿ"])
        };
        strings += 1;
        match Rle::from_compressed(&s, h, w) {
            Ok(rle) => {
                // As a consumer takes it: through the json form, which checks the pixel count.
                let j = RleJson {
                    size: [h, w],
                    counts: inspro::ytvis::json::RleCounts::Compressed(s.clone()),
                };
                if let Ok(r) = j.to_rle() {
                    accepted += 1;
                    exercise(&r);
                }
                let _ = rle.total();
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        // Counts arrays, as json (numbers of any size and sign, wrong types).
        let n = rng.below(12);
        let items: Vec<String> = (0..n)
            .map(|_| match rng.below(10) {
                0 => "-1".into(),
                1 => "4294967296".into(),
                2 => "1e3".into(),
                3 => "null".into(),
                4 => "\"7\"".into(),
                _ => rng.below(50).to_string(),
            })
            .collect();
        let doc = format!("{{\"size\":[{h},{w}],\"counts\":[{}]}}", items.join(","));
        arrays += 1;
        match parse_json::<RleJson>(doc.as_bytes(), "fuzz") {
            Ok(j) => match j.to_rle() {
                Ok(r) => {
                    accepted += 1;
                    exercise(&r);
                }
                Err(e) => assert!(!e.is_empty()),
            },
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    eprintln!(
        "fuzz COCO RLE: {strings} counts strings + {arrays} counts arrays, {accepted} accepted, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn valid_ground_truth(rng: &mut SplitMix64) -> String {
    let (h, w) = (8 + rng.below(24) as u32, 8 + rng.below(24) as u32);
    let rle = Rle::encode_row_major(&random_mask(rng, h, w), h, w);
    let counts = rle
        .to_compressed()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"{{"info":{{"description":"fuzz"}},"videos":[{{"id":1,"width":{w},"height":{h},"length":2,"file_names":["a/0.jpg","a/1.jpg"]}}],
"annotations":[{{"id":1,"video_id":1,"category_id":1,"iscrowd":0,"segmentations":[{{"size":[{h},{w}],"counts":"{counts}"}},[[1.0,1.0,6.5,1.0,6.0,7.25]]],"bboxes":[[1,1,5,5],null],"areas":[12.0,null]}}],
"categories":[{{"id":1,"name":"thing","supercategory":"x"}}]}}"#
    )
}

#[test]
fn fuzz_youtube_vis_json() {
    let mut rng = SplitMix64::new(0x5eed_0013);
    let tokens = [
        "null",
        "-1",
        "1e309",
        "18446744073709551616",
        "\"\"",
        "[]",
        "{}",
        "[[",
        "]]",
        "\"counts\":",
        "\"size\":[0,0]",
        "\"segmentations\":[null]",
        ",",
        ":",
        "\\u0000",
        "NaN",
        "4294967295",
        "\"video_id\":9",
        "true",
    ];
    let (mut gts, mut results, mut parsed) = (0u64, 0u64, 0u64);
    let t0 = std::time::Instant::now();
    for _ in 0..50_000u32 {
        let valid = valid_ground_truth(&mut rng);
        let doc = mutate(&mut rng, &valid, &tokens);
        gts += 1;
        match parse_json::<GroundTruth>(doc.as_bytes(), "fuzz.json") {
            Ok(gt) => {
                parsed += 1;
                // Rasterising is bounded by the video size: only small ones here.
                if gt
                    .videos
                    .iter()
                    .all(|v| u64::from(v.width) * u64::from(v.height) <= 1 << 16)
                {
                    if let Ok(res) = results_from_ground_truth(&gt) {
                        for r in &res {
                            for s in r.segmentations.iter().flatten() {
                                if let Ok(m) = s.to_rle() {
                                    exercise(&m);
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        let res_doc = mutate(
            &mut rng,
            r#"[{"video_id":1,"category_id":1,"score":0.9,"segmentations":[{"size":[4,4],"counts":"04L4"},null,{"size":[2,3],"counts":[1,2,3]}]}]"#,
            &tokens,
        );
        results += 1;
        match parse_json::<Vec<VideoResult>>(res_doc.as_bytes(), "results.json") {
            Ok(rs) => {
                parsed += 1;
                for r in &rs {
                    for s in r.segmentations.iter().flatten() {
                        if let Ok(m) = s.to_rle() {
                            exercise(&m);
                        }
                    }
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    eprintln!(
        "fuzz YouTube-VIS json: {gts} ground-truth + {results} results documents, {parsed} parsed, {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[cfg(feature = "edge")]
mod edge {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use inspro::edge::config::{self, SourceUri, VIDEOTESTSRC_PATTERNS};
    use inspro::edge::mqtt::{mqtt_options, Backoff};
    use inspro::rng::SplitMix64;

    use super::{mutate, random_text};

    const URI_TOKENS: &[&str] = &[
        "file://",
        "rtsp://",
        "rtsps://",
        "v4l2://",
        "test:",
        "test://",
        "ball",
        "smpte",
        "?",
        "&",
        "=",
        "live=",
        "width=",
        "height=",
        "fps=",
        "num_buffers=",
        "true",
        "false",
        "-1",
        "0",
        "4294967296",
        "99999",
        " ! ",
        "filesink location=x",
        "/dev/video0",
        "%",
        "\"",
        "\n",
        "é",
    ];

    #[test]
    fn fuzz_camera_uris() {
        let mut rng = SplitMix64::new(0x5eed_0014);
        let (mut cases, mut ok) = (0u64, 0u64);
        let t0 = std::time::Instant::now();
        for _ in 0..200_000u32 {
            let uri: String = if rng.chance(0.5) {
                (0..1 + rng.below(6))
                    .map(|_| URI_TOKENS[rng.below(URI_TOKENS.len())])
                    .collect()
            } else {
                random_text(&mut rng, b"test:ball?&=live1wdhfps_/.:!", 40)
            };
            cases += 1;
            match SourceUri::parse(&uri) {
                Ok(SourceUri::Test(t)) => {
                    ok += 1;
                    assert!(
                        VIDEOTESTSRC_PATTERNS.contains(&t.pattern.as_str()),
                        "{uri:?} gave pattern {:?}",
                        t.pattern
                    );
                    assert!(t.width > 0 && t.height > 0 && t.fps > 0);
                    assert!(t.width <= config::MAX_SIDE && t.height <= config::MAX_SIDE);
                }
                Ok(_) => ok += 1,
                Err(e) => assert!(!e.is_empty(), "{uri:?}"),
            }
            // Broker URLs too.
            let url = if rng.chance(0.5) {
                format!("mqtt{}", uri)
            } else {
                random_text(&mut rng, b"mqts:/[]0123456789.host", 30)
            };
            let c = config::MqttConfig {
                url,
                ..config::MqttConfig::default()
            };
            if let Ok(b) = c.broker() {
                assert!(!b.host.is_empty() && b.port > 0);
            }
        }
        eprintln!(
            "fuzz camera URIs: {cases} URIs (+ {cases} broker URLs), {ok} accepted, {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }

    const CONFIG_TOKENS: &[&str] = &[
        "1e300",
        "-1e300",
        "nan",
        "inf",
        "-inf",
        "0",
        "-0.0",
        "1e-300",
        "18446744073709551616",
        "-1",
        "\"\"",
        "\"x\"",
        "true",
        "[]",
        "{}",
        "[[camera]]\nname = \"z\"\nuri = \"test:\"\n",
        "\n[mqtt]\n",
        "\n[service]\n",
        "stats_interval_s = ",
        "shutdown_timeout_s = ",
        "max_s = ",
        "username = \"u\"\n",
        "= ",
        "\"test:ball ! filesink\"",
        "\u{0}",
        "é",
    ];

    #[test]
    fn fuzz_daemon_config() {
        let model = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/models/inspro-tiny.toml"
        );
        let base = config::DEFAULT_CONFIG_TOML.replace("configs/models/inspro-small.toml", model);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fuzz.toml");
        let env: BTreeMap<String, String> = BTreeMap::new();
        let mut rng = SplitMix64::new(0x5eed_0015);
        let (mut cases, mut loaded, mut valid) = (0u64, 0u64, 0u64);
        let t0 = std::time::Instant::now();
        for _ in 0..2_000u32 {
            let text = mutate(&mut rng, &base, CONFIG_TOKENS);
            std::fs::write(&path, &text).expect("write");
            cases += 1;
            let cfg = match config::load(Some(&path), &env) {
                Ok(c) => c,
                Err(e) => {
                    assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}");
                    continue;
                }
            };
            loaded += 1;
            match cfg.validate() {
                Ok(()) => {
                    valid += 1;
                    // Whatever passes is safe to run: every conversion the daemon makes.
                    let s = &cfg.service;
                    let _ = Duration::from_secs_f64(s.stats_interval_s);
                    let _ = Duration::from_secs_f64(s.shutdown_timeout_s);
                    let mut b = Backoff::new(cfg.mqtt.backoff.clone());
                    for _ in 0..40 {
                        let _ = b.next_delay();
                    }
                    let _ = Duration::from_secs_f64(cfg.mqtt.backoff.max_s);
                    for c in &cfg.cameras {
                        let _ = Duration::from_secs_f64(c.stall_timeout_s);
                        let _ = (c.jump_threshold_s * 1e9) as u64;
                    }
                    if let Err(e) = mqtt_options(&cfg.mqtt, None) {
                        assert!(e.field.starts_with("mqtt"), "{e:?}");
                    }
                }
                Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}"),
            }
        }
        eprintln!(
            "fuzz daemon config: {cases} mutated files, {loaded} loaded, {valid} valid, {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        assert!(valid > 0, "the mutations never left a valid config");
    }
}
