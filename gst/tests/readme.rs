//! Every shell example of README.md, run as written on a synthetic clip: a scratch directory
//! holds `in.mkv`, links to the repository's `configs/`, `engines/` and `gst/`, and
//! `target/release/` with the plugin under test, so the README's relative paths resolve.
//! Examples that cannot run here are named with the reason (the test fails on an unknown one).

mod common;

use std::path::Path;
use std::process::Command;

use common::{gst_command, plugin_dir};

/// README's ```sh blocks as commands (continuation lines joined, comments dropped).
fn shell_examples(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut current = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && (line == "```sh" || line == "```bash");
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = line.split(" # ").next().unwrap_or("").trim_end();
        if let Some(head) = code.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(code);
        let cmd = current.trim().to_string();
        current.clear();
        if !cmd.is_empty() && !cmd.starts_with('#') {
            out.push(cmd);
        }
    }
    out
}

/// Why an example is not run here, or `None` to run it.
fn not_here(cmd: &str) -> Option<&'static str> {
    if cmd.starts_with("make ") {
        Some("the Quick start's make targets (CI runs `make test`)")
    } else if cmd.starts_with("cargo build") {
        Some("builds the plugin, which `cargo test` has just built")
    } else if cmd.starts_with("export GST_PLUGIN_PATH") {
        Some("the scratch directory sets GST_PLUGIN_PATH to the plugin under test")
    } else if cmd.contains("v4l2src") {
        Some("needs a camera at /dev/video0")
    } else {
        None
    }
}

#[test]
fn every_shell_example_of_the_readme_runs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let examples = shell_examples(&readme);
    assert!(examples.len() >= 5, "{examples:?}");
    let plugins = plugin_dir();
    let scratch = tempfile::tempdir().expect("scratch dir");
    for d in ["configs", "engines", "gst"] {
        std::os::unix::fs::symlink(repo.join(d).canonicalize().unwrap(), scratch.path().join(d))
            .expect("link");
    }
    let release = scratch.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(
        plugins.path().join("libgstinspro.so"),
        release.join("libgstinspro.so"),
    )
    .unwrap();
    {
        use inspro::ytvis::synth::{write_clip, ClipOptions, SynthOptions};
        let opts = SynthOptions {
            videos: 1,
            frames: 6,
            width: 320,
            height: 192,
            seed: 5,
            ..SynthOptions::default()
        };
        write_clip(
            &scratch.path().join("in.mkv"),
            &opts,
            &ClipOptions::default(),
        )
        .expect("in.mkv");
    }
    let python_gi = Command::new("/usr/bin/python3")
        .args(["-c", "import gi"])
        .status()
        .is_ok_and(|s| s.success());
    let mut ran = 0;
    for cmd in &examples {
        if let Some(why) = not_here(cmd) {
            eprintln!("not run: `{cmd}`: {why}");
            continue;
        }
        if cmd.contains("python3") && !python_gi {
            eprintln!("not run: `{cmd}`: no PyGObject (python3-gi) here");
            continue;
        }
        // A login shell's PATH: the system python3 (with PyGObject) before any venv.
        let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
        let out = gst_command("bash", &release)
            .env("PATH", path)
            .arg("-c")
            .arg(cmd)
            .current_dir(scratch.path())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "README example failed: `{cmd}`\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 4, "{ran} examples ran");
    // What they wrote is real: the overlay example's video.
    let mp4 = scratch.path().join("out.mp4");
    assert!(std::fs::metadata(&mp4)
        .map(|m| m.len() > 1000)
        .unwrap_or(false));
}
