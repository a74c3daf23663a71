//! The synthetic benchmark: deterministic by seed, masks consistent with the json, and the
//! ground truth turned into results scores AP 1.0 (library and `inspro` binary).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use inspro::ytvis::{
    evaluate, generate_video, json, load_ground_truth, results_from_ground_truth, write_clip,
    write_dataset, ClipOptions, Segmentation, SynthOptions,
};

fn small_opts(seed: u64) -> SynthOptions {
    SynthOptions {
        videos: 3,
        frames: 8,
        width: 96,
        height: 64,
        seed,
        min_objects: 3,
        max_objects: 5,
        ..SynthOptions::default()
    }
}

fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    write_dataset(a.path(), &small_opts(11)).unwrap();
    write_dataset(b.path(), &small_opts(11)).unwrap();
    write_dataset(c.path(), &small_opts(12)).unwrap();
    let (ta, tb, tc) = (
        read_tree(a.path()),
        read_tree(b.path()),
        read_tree(c.path()),
    );
    assert_eq!(ta.len(), 3 * 8 + 1);
    assert!(ta.contains_key("instances.json"));
    assert!(ta.contains_key("JPEGImages/synth_0002/00007.jpg"));
    assert!(ta == tb, "same seed, different bytes");
    assert_ne!(ta["instances.json"], tc["instances.json"]);
}

#[test]
fn masks_match_the_json_areas_and_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        frame_stride: 5,
        ..small_opts(3)
    };
    let written = write_dataset(dir.path(), &opts).unwrap();
    let gt = load_ground_truth(&dir.path().join("instances.json")).unwrap();
    assert_eq!(gt, written);
    assert!(gt.categories.len() >= 5);
    assert_eq!(gt.videos[0].file_names[1], "synth_0000/00005.jpg");
    assert!(dir.path().join("JPEGImages/synth_0000/00035.jpg").exists());
    for v in &gt.videos {
        let img = image::open(dir.path().join("JPEGImages").join(&v.file_names[0])).unwrap();
        assert_eq!((img.width(), img.height()), (v.width, v.height));
    }
    for ann in &gt.annotations {
        let video = gt.video(ann.video_id).unwrap();
        let areas = ann.areas.as_ref().unwrap();
        let bboxes = ann.bboxes.as_ref().unwrap();
        assert_eq!(ann.segmentations.len(), video.length);
        for (f, seg) in ann.segmentations.iter().enumerate() {
            match seg {
                None => assert_eq!((areas[f], bboxes[f]), (None, None)),
                Some(Segmentation::Rle(r)) => {
                    assert!(matches!(r.counts, inspro::ytvis::RleCounts::Compressed(_)));
                    let rle = r.to_rle().unwrap();
                    let mask = rle.decode_row_major();
                    let area = mask.iter().filter(|&&m| m != 0).count() as f64;
                    assert!(area > 0.0);
                    assert_eq!(areas[f], Some(area));
                    assert_eq!(bboxes[f], Some(rle.to_bbox()));
                }
                Some(Segmentation::Polygons(_)) => panic!("synth writes RLE"),
            }
        }
    }
    // visible masks of one frame never overlap
    let v = generate_video(&opts, 1).unwrap();
    for f in 0..opts.frames {
        let mut seen = vec![false; (opts.width * opts.height) as usize];
        for o in &v.objects {
            if let Some(m) = o.mask_row_major(f) {
                for (s, &p) in seen.iter_mut().zip(&m) {
                    assert!(!(*s && p != 0));
                    *s |= p != 0;
                }
            }
        }
    }
}

#[test]
fn library_video_equals_the_written_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(5);
    let gt = write_dataset(dir.path(), &opts).unwrap();
    let v = generate_video(&opts, 2).unwrap();
    assert_eq!(v.frames.len(), opts.frames);
    assert_eq!(v.frames[0].len(), (opts.width * opts.height * 3) as usize);
    assert_eq!(v.file_names, gt.videos[2].file_names);
    let anns: Vec<_> = gt.annotations.iter().filter(|a| a.video_id == 3).collect();
    assert_eq!(anns.len(), v.objects.len());
    for (a, o) in anns.iter().zip(&v.objects) {
        assert_eq!(a.category_id, o.category_id);
        for (seg, m) in a.segmentations.iter().zip(&o.masks) {
            let from_json = seg.as_ref().map(|s| s.to_rle(64, 96).unwrap().unwrap());
            assert_eq!(&from_json, m);
        }
    }
}

#[test]
fn difficulty_knobs_show_up() {
    // look-alikes crossing, occlusion, entering/leaving, across a few videos
    let opts = SynthOptions {
        videos: 4,
        frames: 30,
        width: 160,
        height: 120,
        seed: 9,
        min_objects: 5,
        max_objects: 6,
        lookalikes: 0.8,
        occlusion: 1.0,
        enter_leave: 0.7,
        ..SynthOptions::default()
    };
    let (mut twins, mut occluded, mut enter_or_leave) = (0, 0, 0);
    for i in 0..opts.videos {
        let v = generate_video(&opts, i).unwrap();
        for (k, o) in v.objects.iter().enumerate() {
            twins += v.objects[k + 1..]
                .iter()
                .filter(|p| p.appearance == o.appearance)
                .count();
            occluded += o.occluded.iter().filter(|&&x| x).count();
            let present: Vec<bool> = o.masks.iter().map(Option::is_some).collect();
            if present.windows(2).any(|w| w[0] != w[1]) {
                enter_or_leave += 1;
            }
        }
    }
    assert!(
        twins > 0 && occluded > 0 && enter_or_leave > 0,
        "{twins} {occluded} {enter_or_leave}"
    );
}

#[test]
fn bad_options_are_errors() {
    let bad = [
        SynthOptions {
            frames: 0,
            ..SynthOptions::default()
        },
        SynthOptions {
            min_objects: 4,
            max_objects: 2,
            ..SynthOptions::default()
        },
        SynthOptions {
            lookalikes: 1.5,
            ..SynthOptions::default()
        },
        SynthOptions {
            width: 3,
            ..SynthOptions::default()
        },
    ];
    for o in &bad {
        assert!(generate_video(o, 0).is_err());
    }
}

#[test]
fn synth_then_eval_scores_one() {
    let dir = tempfile::tempdir().unwrap();
    let gt = write_dataset(dir.path(), &small_opts(21)).unwrap();
    assert!(!gt.annotations.is_empty());
    let results = results_from_ground_truth(&gt).unwrap();
    let s = evaluate(&gt, &results).unwrap();
    assert!((s.ap - 1.0).abs() < 1e-12, "{s:?}");
    assert!((s.ar100 - 1.0).abs() < 1e-12);
}

#[test]
fn binary_synth_then_eval_scores_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_inspro");
    let status = Command::new(bin)
        .args(["synth", "--out"])
        .arg(&out)
        .args([
            "--videos", "2", "--frames", "6", "--size", "80x48", "--seed", "4",
        ])
        .args([
            "--objects",
            "2..4",
            "--lookalikes",
            "0.7",
            "--frame-stride",
            "5",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let gt_path = out.join("instances.json");
    let gt = load_ground_truth(&gt_path).unwrap();
    let res_path = dir.path().join("results.json");
    json::write_json(&res_path, &results_from_ground_truth(&gt).unwrap()).unwrap();
    let output = Command::new(bin)
        .args(["eval", "--json", "--gt"])
        .arg(&gt_path)
        .arg("--results")
        .arg(&res_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in ["ap", "ap50", "ap75", "ar10", "ar100"] {
        let x = v[key].as_f64().unwrap();
        assert!((x - 1.0).abs() < 1e-12, "{key} = {x}");
    }
    // ar1 is below 1 where a video holds two objects of one category
    for key in ["aps", "apm", "apl", "ar1", "per_category"] {
        assert!(v.get(key).is_some(), "{key}");
    }

    let table = Command::new(bin)
        .args(["eval", "--gt"])
        .arg(&gt_path)
        .arg("--results")
        .arg(&res_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(
            "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000"
        ),
        "{text}"
    );

    // a results file pointing at a missing video fails with the file and json path
    std::fs::write(
        &res_path,
        r#"[{"video_id": 99, "category_id": 1, "score": 1, "segmentations": []}]"#,
    )
    .unwrap();
    let output = Command::new(bin)
        .args(["eval", "--gt"])
        .arg(&gt_path)
        .arg("--results")
        .arg(&res_path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("results.json: [0].video_id: video 99 is not in the ground truth"),
        "{err}"
    );
}

fn have_gst() -> bool {
    Command::new("gst-launch-1.0")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn clip_is_encoded_with_its_ground_truth() {
    if !have_gst() {
        eprintln!("gst-launch-1.0 not found: skipping the clip test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("demo.mkv");
    let opts = SynthOptions {
        frames: 12,
        width: 128,
        height: 96,
        ..SynthOptions::default()
    };
    let gt = write_clip(&clip, &opts, &ClipOptions::default()).unwrap();
    assert!(std::fs::metadata(&clip).unwrap().len() > 1000);
    assert_eq!(
        load_ground_truth(&dir.path().join("demo.json")).unwrap(),
        gt
    );
    assert_eq!(gt.videos.len(), 1);
    assert!(!dir.path().join("demo.mkv.frames.rgb").exists());
    // decodes back to 12 frames (where gst-libav is installed)
    let have_decoder = Command::new("gst-inspect-1.0")
        .arg("avdec_h264")
        .output()
        .is_ok_and(|o| o.status.success());
    let out = Command::new(if have_decoder {
        "gst-launch-1.0"
    } else {
        "true"
    })
    .arg("-m")
    .args(["filesrc", &format!("location={}", clip.display())])
    .args([
        "!",
        "matroskademux",
        "!",
        "h264parse",
        "!",
        "avdec_h264",
        "!",
    ])
    .args(["fakesink", "silent=false", "-v"])
    .output()
    .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stdout);
    if have_decoder {
        assert_eq!(log.matches("chain   ******").count(), 12, "{log}");
    }

    // through the binary, and an odd size is refused
    let bin = env!("CARGO_BIN_EXE_inspro");
    let clip2 = dir.path().join("b.mp4");
    let ok = Command::new(bin)
        .args(["synth", "--clip"])
        .arg(&clip2)
        .args(["--frames", "4", "--size", "64x48"])
        .status()
        .unwrap();
    assert!(ok.success() && dir.path().join("b.json").exists());
    let odd = Command::new(bin)
        .args(["synth", "--clip"])
        .arg(dir.path().join("c.mkv"))
        .args(["--frames", "4", "--size", "65x48"])
        .output()
        .unwrap();
    assert!(!odd.status.success());
    assert!(String::from_utf8_lossy(&odd.stderr).contains("even width and height"));
}

#[test]
fn splitmix64_reference_values() {
    // Vigna's splitmix64.c seeded with 0: first outputs
    let mut rng = inspro::ytvis::synth::SplitMix64::new(0);
    assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
}
