//! docs/architecture.md's layers, checked: a module of the library imports only from the
//! layers below it, and the core never names GStreamer, tokio or MQTT.

use std::path::Path;

/// Bottom first. A module may use its own layer's and lower layers' modules.
const LAYERS: &[&[&str]] = &[
    &["frame", "rng", "names"],
    &["video"],
    &["ytvis"],
    &["model"],
    &["export"],
    &["runtime"],
    &["tracking"],
    &["render"],
    &["train"],
    &["edge"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(path: &Path, out: &mut Vec<(String, String)>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .expect("read src")
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            sources(&p, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        let text = std::fs::read_to_string(path).expect("read a source file");
        out.push((path.display().to_string(), text));
    }
}

/// The top-level module a file under src/ belongs to (`src/model/fpn.rs` → `model`).
fn module_of(file: &str) -> String {
    let rel = file.trim_start_matches("src/");
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn modules_import_only_downwards() {
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    assert!(files.len() > 50, "{} files under src/", files.len());
    let mut wrong = Vec::new();
    for (file, text) in &files {
        let Some(own) = layer_of(&module_of(file)) else {
            continue; // lib.rs, main.rs, cli/ (the binary) sit on top
        };
        for (n, line) in text.lines().enumerate() {
            for used in line.split("crate::").skip(1) {
                let name: String = used
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Some(l) = layer_of(&name) {
                    if l > own {
                        wrong.push(format!("{file}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that go up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_core_names_no_gstreamer_tokio_or_mqtt() {
    let mut files = Vec::new();
    for m in [
        "frame.rs", "video.rs", "model", "runtime", "tracking", "ytvis", "train", "render",
    ] {
        sources(&Path::new("src").join(m), &mut files);
    }
    assert!(files.len() > 20, "{} files", files.len());
    for (file, text) in &files {
        for banned in ["gstreamer", "gst::", "tokio", "rumqttc"] {
            assert!(
                !text
                    .lines()
                    .any(|l| l.trim_start().starts_with("use ") && l.contains(banned)),
                "{file} uses {banned}"
            );
        }
    }
}
