//! The event store against a running daemon: every track whose `new` went out over MQTT is in
//! the SQLite file, also after a `kill -9` in the middle of writes (`PRAGMA integrity_check` ok,
//! the crashed run's open tracks closed `restart` at the next start); and the events API reads
//! it: filters, one event, its snapshot, bad parameters named, unknown ids 404, no path leaves
//! the snapshot folder.
#![cfg(feature = "edge")]

mod edge_common;

use std::collections::BTreeSet;
use std::time::Duration;

use edge_common::*;
use serde_json::Value;

fn json_of(port: u16, path: &str) -> (u16, Value) {
    let (st, body) = http_get_bytes(port, path);
    (st, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The `event_id`s of every `new` the subscriber got.
fn published(sub: &Subscriber, camera: &str) -> BTreeSet<String> {
    sub.events(camera)
        .iter()
        .filter(|e| e["type"] == "new")
        .map(|e| e["after"]["event_id"].as_str().unwrap().to_string())
        .collect()
}

fn stored(db: &std::path::Path) -> BTreeSet<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT event_id FROM tracks").unwrap();
    let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

#[test]
fn kill_9_during_writes_keeps_every_published_track_and_a_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    // A 20-frame clip looped: every loop ends every track and starts new ones (many writes).
    let clip = synth_clip(dir.path(), "clip.mkv", 20, "160x96", 4);
    let cams = camera(
        "door",
        &format!("file://{}", clip.display()),
        "loop_file = true",
    );
    let cfg = test_config(dir.path(), &broker.url(), &cams, "");
    let db = dir.path().join("spool").join("events.db");
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    // Killed while tracks are open (the last event is not an end).
    sub.wait_for(Duration::from_secs(120), "many births, tracks open", |_| {
        let events = sub.events("door");
        published(&sub, "door").len() > 200 && events.last().is_some_and(|e| e["type"] != "end")
    });
    d.signal("KILL");
    let _ = d.wait(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let c = rusqlite::Connection::open(&db).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    drop(c);
    let sent = published(&sub, "door");
    let have = stored(&db);
    let missing: Vec<_> = sent.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "{} of {} published tracks not stored: {missing:?}",
        missing.len(),
        sent.len()
    );
    eprintln!(
        "kill -9 after {} published tracks: all in the store, integrity ok",
        sent.len()
    );

    // The next start closes the crashed run's open tracks in the store too.
    let open_before: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM tracks WHERE end_time IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(open_before > 0);
    let mut d = Daemon::spawn(&cfg, &["--exit-on-eos"], &[]);
    std::thread::sleep(Duration::from_secs(3));
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    let c = rusqlite::Connection::open(&db).unwrap();
    let open_after: i64 = c
        .query_row(
            "SELECT count(*) FROM tracks WHERE end_time IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open_after, 0, "tracks left open after a clean stop");
    let restarted: i64 = c
        .query_row(
            "SELECT count(*) FROM tracks WHERE end_reason = 'restart'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(restarted, open_before);
    broker.stop();
}

#[test]
fn the_events_api_reads_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), false);
    let sub = Subscriber::start(broker.port, "t/#", false);
    let clip = synth_clip(dir.path(), "clip.mkv", 12, "160x96", 9);
    let cams = [
        camera(
            "door",
            &format!("file://{}", clip.display()),
            "[camera.snapshots]\nenabled = true\n",
        ),
        camera("yard", "test:ball?live=true&fps=10", ""),
    ]
    .concat();
    let port = free_port();
    let cfg = test_config(dir.path(), &broker.url(), &cams, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "metrics_listen = \"\"",
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&cfg, text).unwrap();
    let mut d = Daemon::spawn(&cfg, &[], &[]);
    sub.wait_for(Duration::from_secs(60), "door's ends", |_| {
        sub.events("door").iter().any(|e| e["type"] == "end") && !sub.events("yard").is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));

    let (st, all) = json_of(port, "/api/events?limit=1000");
    assert_eq!(st, 200, "{all}");
    let ids: BTreeSet<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    for cam in ["door", "yard"] {
        let sent = published(&sub, cam);
        assert!(
            sent.is_subset(&ids),
            "{cam}: published tracks missing from the API"
        );
    }
    // Filters: camera, label, time, limit.
    let (_, door) = json_of(port, "/api/events?camera=door&limit=1000");
    let door = door.as_array().unwrap().clone();
    assert!(!door.is_empty() && door.iter().all(|e| e["camera"] == "door"));
    let label = door[0]["label"].as_str().unwrap().to_string();
    let (_, by_label) = json_of(
        port,
        &format!("/api/events?camera=door&label={label}&limit=1000"),
    );
    assert!(by_label
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["label"] == label.as_str()));
    let (_, two) = json_of(port, "/api/events?limit=2");
    assert_eq!(two.as_array().unwrap().len(), 2);
    let (_, future) = json_of(port, "/api/events?after=99999999999");
    assert!(future.as_array().unwrap().is_empty());
    let (_, none) = json_of(port, "/api/events?zone=nowhere");
    assert!(none.as_array().unwrap().is_empty());

    // One event, with its end; its snapshot.
    let ended = sub
        .events("door")
        .into_iter()
        .find(|e| e["type"] == "end")
        .unwrap();
    let id = ended["after"]["event_id"].as_str().unwrap().to_string();
    let (st, one) = json_of(port, &format!("/api/events/{id}"));
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["end_reason"], ended["reason"]);
    assert!(one["end_time"].as_f64().is_some());
    let (st, jpeg) = http_get_bytes(port, &format!("/api/events/{id}/snapshot.jpg"));
    assert_eq!(st, 200);
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "not a JPEG");

    // Bad parameters are named; unknown ids are 404; nothing leaves the snapshot folder.
    for (q, name) in [
        ("after=yesterday", "after"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("colour=red", "colour"),
    ] {
        let (st, body) = json_of(port, &format!("/api/events?{q}"));
        assert_eq!(st, 400, "{q}");
        assert!(
            body["error"].as_str().unwrap().contains(name),
            "{q}: {body}"
        );
    }
    assert_eq!(json_of(port, "/api/events/no-such-event").0, 404);
    for evil in [
        "/api/events/..%2F..%2F..%2Fetc%2Fpasswd/snapshot.jpg",
        "/api/events/%2Fetc%2Fpasswd/snapshot.jpg",
        "/api/events/../../etc/passwd/snapshot.jpg",
        "/api/events/..%252F..%252Fetc%252Fpasswd/snapshot.jpg",
    ] {
        let (st, body) = http_get_bytes(port, evil);
        assert!(st == 404 || st == 400, "{evil}: {st}");
        assert!(
            !String::from_utf8_lossy(&body).contains("root:"),
            "{evil} read /etc/passwd"
        );
    }
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(30)).success());
    broker.stop();
}
