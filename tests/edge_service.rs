//! The daemon as a service: sd_notify READY / WATCHDOG / RELOADING / STOPPING on a test
//! NOTIFY_SOCKET, SIGHUP reload, the Prometheus endpoint, and SIGTERM ending every open track
//! before `stopped`; plus configuration errors (exit 78, naming the field).
#![cfg(feature = "edge")]

mod edge_common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_common::*;

fn live_camera() -> &'static str {
    "[[camera]]\nname = \"live\"\nuri = \"test:ball?live=true&width=160&height=96&fps=10\"\nwidth = 160\nheight = 96\n"
}

#[test]
fn notify_watchdog_reload_metrics_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let metrics_port = free_port();
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        live_camera(),
        "[publish]\nupdate_interval_s = 1.0\nheartbeat_s = 2.0\n",
    );
    // metrics on; test_config leaves it off.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "metrics_listen = \"\"",
        &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
    );
    std::fs::write(&cfg, &text).unwrap();

    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sub = Subscriber::start(broker.port, "t/#", false);
    let mut d = Daemon::spawn(
        &cfg,
        &[],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut notes: Vec<(Instant, String)> = Vec::new();
    let log_path = d.log.clone();
    let recv_until = |notes: &mut Vec<(Instant, String)>, what: &str, d: Duration| {
        let end = Instant::now() + d;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = sock.recv(&mut buf) {
                notes.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).to_string(),
                ));
            }
            if notes.iter().any(|(_, s)| s.contains(what)) {
                return;
            }
        }
        panic!(
            "no {what} on NOTIFY_SOCKET; got {:?}; daemon log:\n{}",
            notes.iter().map(|n| &n.1).collect::<Vec<_>>(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    };
    recv_until(&mut notes, "READY=1", Duration::from_secs(60));
    // Pings at half of WATCHDOG_USEC while the camera threads are alive.
    let end = Instant::now() + Duration::from_millis(2300);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            notes.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).to_string(),
            ));
        }
    }
    let pings = notes
        .iter()
        .filter(|(_, s)| s.contains("WATCHDOG=1"))
        .count();
    assert!(
        pings >= 3,
        "{pings} watchdog pings in 2.3 s: {:?}",
        notes.iter().map(|n| &n.1).collect::<Vec<_>>()
    );

    // Events flow; the metrics endpoint counts frames.
    sub.wait_for(Duration::from_secs(60), "new events", |m| {
        m.iter().any(|m| m.payload.contains("\"type\":\"new\""))
    });
    let body = http_get(metrics_port, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("inspro_frames_processed_total{camera=\"live\"}"),
        "{body}"
    );
    assert!(body.contains("inspro_mqtt_connected 1"), "{body}");
    assert!(body.contains("inspro_random_weights 1"), "{body}");
    assert!(http_get(metrics_port, "/nope").starts_with("HTTP/1.1 404"));

    // SIGHUP: a hot key changes, a cold one is reported, RELOADING=1 then READY=1.
    std::fs::write(
        &cfg,
        text.replace("heartbeat_s = 2.0", "heartbeat_s = 3.0")
            .replace("client_id = \"inspro-test\"", "client_id = \"other\""),
    )
    .unwrap();
    let n0 = notes.len();
    d.signal("HUP");
    recv_until(&mut notes, "RELOADING=1", Duration::from_secs(10));
    assert!(notes[n0..]
        .iter()
        .any(|(_, s)| s.contains("MONOTONIC_USEC=")));
    let n1 = notes.len();
    let end = Instant::now() + Duration::from_secs(10);
    while !notes[n1..].iter().any(|(_, s)| s.contains("READY=1")) {
        assert!(Instant::now() < end, "no READY=1 after reload");
        let mut buf = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            notes.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).to_string(),
            ));
        }
    }

    // Stats on <prefix>/stats.
    let msgs = sub.wait_for(Duration::from_secs(10), "stats", |m| {
        m.iter().any(|m| m.topic == "t/stats")
    });
    let stats = msgs
        .iter()
        .rev()
        .find(|m| m.topic == "t/stats")
        .unwrap()
        .json();
    assert!(stats["cameras"]["live"]["fps"].is_f64(), "{stats}");
    assert!(stats["cameras"]["live"]["ms"]["engine"].is_f64(), "{stats}");
    assert!(stats["mqtt"]["connected"].as_bool().unwrap(), "{stats}");

    // SIGTERM: every open track ends, then `stopped`; STOPPING=1; exit 0.
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", d.log_text());
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        notes.push((
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).to_string(),
        ));
    }
    assert!(notes.iter().any(|(_, s)| s.contains("STOPPING=1")));
    let msgs = sub.wait_for(Duration::from_secs(10), "stopped", |m| {
        m.iter()
            .any(|m| m.topic == "t/available" && m.payload == "stopped")
    });
    let stopped_at = msgs
        .iter()
        .position(|m| m.topic == "t/available" && m.payload == "stopped")
        .unwrap();
    let tracks = by_track(&sub.events("live"));
    assert!(!tracks.is_empty());
    for (id, evs) in &tracks {
        assert_eq!(evs.last().unwrap()["type"], "end", "track {id} not ended");
    }
    let last_end = msgs
        .iter()
        .rposition(|m| m.payload.contains("\"type\":\"end\""))
        .unwrap();
    assert!(last_end < stopped_at, "an end came after stopped");
    // Latency from building an event (payload `timestamp`) to the subscriber, and the engine's
    // share per frame (stats), on this live 10 fps source.
    let mut lat: Vec<f64> = msgs
        .iter()
        .filter(|m| m.topic == "t/live/events")
        .map(|m| {
            let sent = m.json()["timestamp"].as_f64().unwrap();
            let got = m
                .wall
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            (got - sent) * 1000.0
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    eprintln!(
        "event latency build->subscriber: median {:.2} ms, p95 {:.2} ms, max {:.2} ms over {} events; engine {:.1} ms/frame, queue wait {:.1} ms",
        lat[lat.len() / 2],
        lat[lat.len() * 95 / 100],
        lat[lat.len() - 1],
        lat.len(),
        stats["cameras"]["live"]["ms"]["engine"].as_f64().unwrap(),
        stats["cameras"]["live"]["ms"]["queue_wait"].as_f64().unwrap(),
    );
    let log = d.log_text();
    assert!(
        log.contains("need a restart"),
        "cold key not reported:\n{log}"
    );
    assert!(log.contains("configuration reloaded"), "{log}");
}

/// `inspro run` (when `run`) or `inspro config check` on a config text: exit code and stderr.
fn check_with(config_text: &str, env: &[(&str, &str)], run: bool) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config_text).unwrap();
    let mut cmd = Command::new(bin());
    if run {
        cmd.arg("run").arg("--config").arg(&path);
    } else {
        cmd.args(["config", "check"]).arg(&path);
    }
    cmd.env_remove("INSPRO_MQTT_PASSWORD")
        .env_remove("CREDENTIALS_DIRECTORY")
        .current_dir(dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn check(config_text: &str, env: &[(&str, &str)]) -> (i32, String) {
    check_with(config_text, env, true)
}

#[test]
fn bad_config_exits_78_naming_the_field() {
    let model = repo().join("configs/models/inspro-tiny.toml");
    let base = format!(
        "[model]\nconfig = \"{}\"\n[[camera]]\nname = \"c\"\nuri = \"test:ball\"\n",
        model.display()
    );
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            format!("{base}[mqtt]\nmax_packet_sise = 1\n"),
            vec![],
            "max_packet_sise",
        ),
        (
            base.replace("test:ball", "htp://cam"),
            vec![],
            "camera[0].uri",
        ),
        (
            format!("{base}[mqtt.qos]\nlifecycle = 3\n"),
            vec![],
            "mqtt.qos.lifecycle",
        ),
        (
            format!("{base}[tracking]\nbirth_score = 0.2\nkeep_score = 0.5\n"),
            vec![],
            "tracking.keep_score",
        ),
        (
            base.clone(),
            vec![("INSPRO__MQTT__URL", "tcp://x")],
            "mqtt.url",
        ),
        (
            format!("{base}[[camera]]\nname = \"c\"\nuri = \"test:\"\n"),
            vec![],
            "camera[1].name",
        ),
        (
            "[model]\nconfig = \"/nonexistent.toml\"\n".into(),
            vec![],
            "model.config",
        ),
    ];
    for (text, env, field) in cases {
        let (code, err) = check(&text, &env);
        assert_eq!(code, 78, "{field}: {err}");
        assert!(err.contains(field), "the error should name {field}: {err}");
    }
    bad_values_paths_and_credentials_exit_78_in_run_and_check(&base);

    // The default configuration is valid, and `config check` says so.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = dir.path().join("default.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let st = Command::new(bin())
        .args(["config", "check"])
        .arg(&path)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let st = Command::new(bin())
        .args(["config", "check"])
        .arg(&path)
        .current_dir(repo())
        .env("INSPRO__SERVICE__METRICS_LISTEN", "nope")
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&st.stderr).contains("service.metrics_listen"));
}

/// Every bound, path and credential that `run` needs is refused by `config check` too, and both
/// exit 78 naming the field (issue 12: no value passes the check and then panics or exits 1).
fn bad_values_paths_and_credentials_exit_78_in_run_and_check(base: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spool_ok = dir.path().join("spool");
    let base = format!(
        "{base}[service]\nmetrics_listen = \"\"\nspool_dir = \"{}\"\n",
        spool_ok.display()
    );
    // Weights: empty, truncated (the header promises more than the file holds), and the tiny
    // model's weights with the r50 model config (wrong shapes).
    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    let header = br#"{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 16]);
    std::fs::write(&truncated, bytes).unwrap();
    let tiny = repo().join("engines/inspro-tiny/model.safetensors");
    let r50 = repo().join("configs/models/inspro-r50.toml");
    let weights = |w: &std::path::Path| {
        base.replace(
            "[model]\n",
            &format!("[model]\nweights = \"{}\"\n", w.display()),
        )
    };
    let plain_file = dir.path().join("plain");
    std::fs::write(&plain_file, "x").unwrap();
    type Case = (String, Vec<(&'static str, &'static str)>, &'static str);
    let mut cases: Vec<Case> = vec![
        (
            base.replace(
                "metrics_listen",
                "shutdown_timeout_s = 1e300\nmetrics_listen",
            ),
            vec![],
            "service.shutdown_timeout_s",
        ),
        (
            base.replace("metrics_listen", "stats_interval_s = 1e300\nmetrics_listen"),
            vec![],
            "service.stats_interval_s",
        ),
        (
            base.clone(),
            vec![("INSPRO__MQTT__BACKOFF__MAX_S", "1e300")],
            "mqtt.backoff.max_s",
        ),
        (
            base.replace(
                "test:ball",
                "test:ball num-buffers=3 ! filesink location=x.bin videotestsrc?live=false",
            ),
            vec![],
            "camera[0].uri",
        ),
        (
            format!("{base}[mqtt]\nusername = \"u\"\n"),
            vec![],
            "mqtt.username",
        ),
        (
            base.clone(),
            vec![("INSPRO_MQTT_PASSWORD", "pw")],
            "mqtt.username",
        ),
        (
            base.replace(
                &spool_ok.display().to_string(),
                &plain_file.join("spool").display().to_string(),
            ),
            vec![],
            "service.spool_dir",
        ),
        (weights(&empty), vec![], "model.weights"),
        (weights(&truncated), vec![], "model.weights"),
    ];
    if tiny.exists() {
        let wrong = weights(&tiny).replace(
            &repo()
                .join("configs/models/inspro-tiny.toml")
                .display()
                .to_string(),
            &r50.display().to_string(),
        );
        cases.push((wrong, vec![], "model.weights"));
    }
    for (text, env, field) in cases {
        for run in [false, true] {
            let what = if run { "run" } else { "config check" };
            let (code, err) = check_with(&text, &env, run);
            assert_eq!(code, 78, "{what}, {field}: {err}");
            assert!(
                err.contains(field),
                "{what}: the error should name {field}: {err}"
            );
        }
    }
}

#[test]
fn secrets_are_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let cfg = test_config(dir.path(), &broker.url(), live_camera(), "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "topic_prefix = \"t\"",
        "topic_prefix = \"t\"\nusername = \"u\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    write_file(&creds.join("mqtt-password"), "hunter2-secret\n");
    let sub = Subscriber::start(broker.port, "t/#", false);
    let mut d = Daemon::spawn(
        &cfg,
        &[],
        &[
            ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
            ("RUST_LOG", "debug"),
        ],
    );
    sub.wait_for(Duration::from_secs(60), "online", |m| {
        m.iter()
            .any(|m| m.topic == "t/available" && m.payload == "online")
    });
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(60)).success());
    let log = d.log_text();
    assert!(log.contains("MQTT password loaded"), "{log}");
    assert!(!log.contains("hunter2"), "password leaked into the log");
}

/// `inspro config check` tells every mistake of a file at once: values of three sections, a
/// mistyped key in one camera and a bad value in another, each with its field, then a count.
#[test]
fn config_check_reports_every_error_at_once() {
    let model = repo().join("configs/models/inspro-tiny.toml");
    let text = format!(
        r#"[model]
config = "{}"
[engine]
provider = "gpu"
[[camera]]
name = "a"
uri = "test:ball"
fsp = 5
[[camera]]
name = "b"
uri = "htp://cam"
queue = 0
[tracking]
birth_score = 0.2
keep_score = 0.5
[mqtt]
keep_alive_s = 1
[service]
metrics_listen = "nope"
"#,
        model.display()
    );
    // The mistyped key stops the camera from reading at all: it and the other sections' type
    // errors come first, each named.
    let (code, err) = check_with(&text, &[], false);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("camera[0].fsp") || err.contains("fsp"),
        "{err}"
    );
    // Without the mistyped key every value error is told, in one run.
    let (code, err) = check_with(&text.replace("fsp = 5\n", ""), &[], false);
    assert_eq!(code, 78, "{err}");
    for field in [
        "engine.provider",
        "camera[1].uri",
        "camera[1].queue",
        "tracking.keep_score",
        "mqtt.keep_alive_s",
        "service.metrics_listen",
    ] {
        assert!(err.contains(field), "{field} not reported:\n{err}");
    }
    assert!(err.contains("6 errors"), "{err}");
    // Sections that do not deserialize are told side by side too.
    let (code, err) = check_with(
        &format!(
            "[model]\nconfig = \"{}\"\n[[camera]]\nname = \"a\"\nuri = \"test:ball\"\nwidth = \"wide\"\n[mqtt]\ninflight = -1\n[publish]\nmask_format = \"png\"\n",
            model.display()
        ),
        &[],
        false,
    );
    assert_eq!(code, 78, "{err}");
    for field in ["camera[0].width", "mqtt.inflight", "publish.mask_format"] {
        assert!(err.contains(field), "{field} not reported:\n{err}");
    }
}

/// The daemon's default engine is ONNX Runtime with provider auto (the CPU here, logged once; the
/// engine's name is what stats carry); with no library to load it runs the candle engine and
/// warns once. Both publish events.
#[test]
fn default_engine_is_onnxruntime_and_candle_is_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), false);
    let cfg = test_config(
        dir.path(),
        &broker.url(),
        &camera("c", "test:ball?live=false&num_buffers=6", ""),
        "",
    );
    let sub = Subscriber::start(broker.port, "t/c/events", false);
    // One daemon over the clip; its log, once its first events have arrived.
    let run = |config: &std::path::Path, env: &[(&str, &str)], before: usize| -> String {
        let mut d = Daemon::spawn(config, &["--exit-on-eos"], env);
        assert!(
            d.wait(Duration::from_secs(120)).success(),
            "{}",
            d.log_text()
        );
        sub.wait_for(Duration::from_secs(20), "events", |m| m.len() > before);
        d.log_text()
    };
    let log = run(&cfg, &[], 0);
    assert_eq!(
        log.matches("execution provider auto").count(),
        1,
        "the choice is logged once:\n{log}"
    );
    assert!(log.contains("provider=cpu"), "{log}");
    // The engine's name, as stats and /metrics carry it.
    assert!(log.contains("engine=onnxruntime/cpu"), "{log}");

    let events = sub.snapshot().len();
    let log = run(
        &cfg,
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
        events,
    );
    assert_eq!(
        log.matches("ONNX Runtime cannot be loaded").count(),
        1,
        "one warning:\n{log}"
    );
    assert!(log.contains("3.5x slower"), "{log}");
    assert!(log.contains("engine=candle"), "{log}");
}
