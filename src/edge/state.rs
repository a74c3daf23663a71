//! Open tracks survive a crash: each camera's engine thread keeps `tracks-<camera>.json` in the
//! spool directory (the tracks published as open: id, last box, class, plus the run and the last
//! `seq`), written atomically (a temporary file, fsync, rename) when tracks are born or end, and
//! otherwise at most every [`REFRESH`]. The next start turns what it finds into `end` events with
//! `reason: "restart"` in the spool (so they are sent first, and survive another crash), then
//! deletes the files.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::edge::events::{rfc3339, OutMsg};
use crate::edge::spool::Spool;

/// Box and score changes are written at most this often; births and ends at once.
pub const REFRESH: Duration = Duration::from_secs(2);

const PREFIX: &str = "tracks-";
const SUFFIX: &str = ".json";

/// What `tracks-<camera>.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenTracks {
    pub topic_prefix: String,
    pub camera: String,
    pub run: String,
    /// The last `seq` used; the restart's `end` events continue from it.
    pub seq: u64,
    /// The frame of the last write (`index`, `pts`, `width`, `height`).
    pub frame: Value,
    /// The last published `after` block of each open track (id, label, label_id, box, ...).
    pub tracks: Vec<Value>,
}

/// The state file of one camera.
pub fn path(dir: &Path, camera: &str) -> PathBuf {
    dir.join(format!("{PREFIX}{camera}{SUFFIX}"))
}

/// Write `bytes` to `path` so that a crash leaves the old or the new file, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, path)
}

/// The engine thread's writer: knows when a write is due.
pub struct StateFile {
    path: PathBuf,
    last_write: Option<Instant>,
    /// Open track ids of the last write.
    last_ids: Vec<u64>,
    errors_logged: u32,
}

impl StateFile {
    pub fn new(dir: &Path, camera: &str) -> Self {
        Self {
            path: path(dir, camera),
            last_write: None,
            last_ids: Vec::new(),
            errors_logged: 0,
        }
    }

    /// Write the open tracks when the set of ids changed (or nothing was written yet), or when
    /// `REFRESH` passed with tracks open.
    /// `state` is only built when a write is due.
    pub fn update(&mut self, ids: Vec<u64>, state: impl FnOnce() -> OpenTracks) {
        let changed = ids != self.last_ids || self.last_write.is_none();
        let stale = !ids.is_empty() && self.last_write.is_none_or(|t| t.elapsed() >= REFRESH);
        if !changed && !stale {
            return;
        }
        // Written with no tracks too: the file says "this camera ran and did not stop cleanly".
        let res = serde_json::to_vec(&state())
            .map_err(io::Error::other)
            .and_then(|b| write_atomic(&self.path, &b));
        match res {
            Ok(()) => {
                self.last_write = Some(Instant::now());
                self.last_ids = ids;
            }
            Err(e) => {
                if self.errors_logged < 3 {
                    self.errors_logged += 1;
                    tracing::warn!(error = %e, path = %self.path.display(), "cannot write the open-tracks file");
                }
            }
        }
    }

    /// Clean stop: every track has ended (the `end` events are queued).
    pub fn remove(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot remove the open-tracks file");
            }
        }
    }
}

/// What a start found from the last run.
#[derive(Debug, Default)]
pub struct Recovered {
    /// `end` events (reason `restart`) written to the spool.
    pub ended: usize,
    /// Cameras with a state file, and their status topic.
    pub cameras: Vec<(String, String)>,
}

/// The `end` event of a track left open by a crash.
pub fn restart_end(
    state: &OpenTracks,
    seq: u64,
    after: &Value,
    now: std::time::SystemTime,
) -> Value {
    let mut ended = after.clone();
    ended["state"] = json!("removed");
    json!({
        "type": "end",
        "reason": "restart",
        "seq": seq,
        "run": state.run,
        "camera": state.camera,
        "frame": state.frame,
        "wall_time": rfc3339(now),
        "timestamp": now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64(),
        "before": after,
        "after": ended,
    })
}

/// Turn every state file in `dir` into `end` events in the spool (synced), then delete the files.
pub fn recover(dir: &Path, spool: &mut Spool, qos: u8) -> io::Result<Recovered> {
    let mut out = Recovered::default();
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    files.sort();
    let now = std::time::SystemTime::now();
    for file in &files {
        let state: OpenTracks = match fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, path = %file.display(), "unreadable open-tracks file; ignored");
                fs::remove_file(file)?;
                continue;
            }
        };
        let topic = format!("{}/{}/events", state.topic_prefix, state.camera);
        let mut seq = state.seq;
        for after in &state.tracks {
            seq += 1;
            let body = restart_end(&state, seq, after, now);
            spool.push(&OutMsg {
                topic: topic.clone(),
                payload: body.to_string(),
                qos,
                retain: false,
                bytes: None,
            })?;
            out.ended += 1;
        }
        out.cameras.push((
            state.camera.clone(),
            format!("{}/{}/status", state.topic_prefix, state.camera),
        ));
    }
    spool.sync()?;
    for file in &files {
        match fs::remove_file(file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recover_ends_every_open_track_once() {
        let dir = tempfile::tempdir().unwrap();
        let st = OpenTracks {
            topic_prefix: "p".into(),
            camera: "cam".into(),
            run: "r1".into(),
            seq: 41,
            frame: json!({"index": 9, "pts": null, "width": 64, "height": 48}),
            tracks: vec![
                json!({"id": 3, "label": "person", "label_id": 0, "box": [1.0, 2.0, 3.0, 4.0], "state": "tracked"}),
                json!({"id": 7, "label": "car", "label_id": 2, "box": [5.0, 6.0, 7.0, 8.0], "state": "lost"}),
            ],
        };
        let mut f = StateFile::new(dir.path(), "cam");
        f.update(vec![3, 7], || st.clone());
        assert!(path(dir.path(), "cam").exists());
        let spool_dir = dir.path().join("spool");
        let mut spool = Spool::open(&spool_dir, 1 << 20).unwrap();
        let r = recover(dir.path(), &mut spool, 1).unwrap();
        assert_eq!(r.ended, 2);
        assert_eq!(
            r.cameras,
            vec![("cam".to_string(), "p/cam/status".to_string())]
        );
        assert!(
            !path(dir.path(), "cam").exists(),
            "the file is gone once spooled"
        );
        let (_, msgs) = spool.take_oldest().unwrap().unwrap();
        assert_eq!(msgs.len(), 2);
        let e: Value = serde_json::from_str(&msgs[1].payload).unwrap();
        assert_eq!(msgs[1].topic, "p/cam/events");
        assert_eq!(
            (e["type"].as_str(), e["reason"].as_str(), e["seq"].as_u64()),
            (Some("end"), Some("restart"), Some(43))
        );
        assert_eq!(e["run"], "r1");
        assert_eq!(e["after"]["id"], 7);
        assert_eq!(e["after"]["label"], "car");
        assert_eq!(e["after"]["state"], "removed");
        assert_eq!(e["before"]["state"], "lost");
        assert_eq!(e["after"]["box"], json!([5.0, 6.0, 7.0, 8.0]));
        // A second start finds nothing.
        assert_eq!(recover(dir.path(), &mut spool, 1).unwrap().ended, 0);
    }
}
