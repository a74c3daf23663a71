//! Open tracks survive a crash: each camera's engine thread keeps `tracks-<camera>.json` in the
//! spool directory (the tracks published as open: id, last box, class, plus the run and the last
//! `seq`), written atomically (a temporary file, fsync, rename) when tracks are born or end, and
//! otherwise at most every [`REFRESH`]; the disk work runs on a writer thread per camera, and the
//! engine thread waits for it ([`StateFile::flush`]) only before it hands on `new` events. The next start turns what it finds into `end` events with
//! `reason: "restart"` in the spool (so they are sent first, and survive another crash), then
//! deletes the files.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::edge::events::{rfc3339, OutMsg};
use crate::edge::spool::Spool;
use crate::edge::topics::Topics;

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

/// What the writer thread is asked to do.
enum Job {
    Write(Vec<u8>),
    Remove,
}

/// The writer thread's mailbox.
#[derive(Default)]
struct Mailbox {
    state: Mutex<Jobs>,
    changed: Condvar,
}

#[derive(Default)]
struct Jobs {
    /// The next job; a newer one replaces it (only the latest open-tracks state matters).
    next: Option<Job>,
    /// A job is running.
    busy: bool,
    /// The owner is gone: finish and end.
    closed: bool,
}

/// The engine thread's side: knows when a write is due and hands the bytes to a writer thread of
/// its own, so a slow disk (an SD card's fsync can take tens of milliseconds) never stalls the
/// frame loop. A write still waiting when a newer one comes is replaced; `remove` comes after
/// every write handed over before it; dropping the `StateFile` finishes the pending job.
pub struct StateFile {
    path: PathBuf,
    last_write: Option<Instant>,
    /// Open track ids of the last write.
    last_ids: Vec<u64>,
    mailbox: Arc<Mailbox>,
    /// `None` when the thread could not start: the jobs then run on the caller's thread.
    writer: Option<JoinHandle<()>>,
}

impl StateFile {
    pub fn new(dir: &Path, camera: &str) -> Self {
        let path = path(dir, camera);
        let mailbox = Arc::new(Mailbox::default());
        let (m, p) = (mailbox.clone(), path.clone());
        let writer = std::thread::Builder::new()
            .name(format!("state-{camera}"))
            .spawn(move || write_jobs(&m, &p))
            .map_err(|e| {
                tracing::warn!(error = %e, "no open-tracks writer thread: the engine thread writes")
            })
            .ok();
        Self {
            path,
            last_write: None,
            last_ids: Vec::new(),
            mailbox,
            writer,
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
        match serde_json::to_vec(&state()) {
            Ok(bytes) => {
                self.hand_over(Job::Write(bytes));
                self.last_write = Some(Instant::now());
                self.last_ids = ids;
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot encode the open-tracks file")
            }
        }
    }

    /// Clean stop: every track has ended (the `end` events are queued).
    pub fn remove(&mut self) {
        self.hand_over(Job::Remove);
    }

    /// Wait until every job handed over so far is done (or the writer thread is gone).
    pub fn flush(&self) {
        let Some(writer) = &self.writer else {
            return;
        };
        let mut jobs = lock(&self.mailbox.state);
        while (jobs.next.is_some() || jobs.busy) && !writer.is_finished() {
            jobs = self
                .mailbox
                .changed
                .wait_timeout(jobs, Duration::from_millis(100))
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
    }

    fn hand_over(&mut self, job: Job) {
        if self.writer.is_none() {
            run_job(job, &self.path, &mut 0);
            return;
        }
        lock(&self.mailbox.state).next = Some(job);
        self.mailbox.changed.notify_all();
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        lock(&self.mailbox.state).closed = true;
        self.mailbox.changed.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn lock(m: &Mutex<Jobs>) -> MutexGuard<'_, Jobs> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait<'a>(c: &Condvar, g: MutexGuard<'a, Jobs>) -> MutexGuard<'a, Jobs> {
    c.wait(g).unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread: the latest job each time, until the owner is gone and nothing is left.
fn write_jobs(mailbox: &Mailbox, path: &Path) {
    let mut errors_logged = 0;
    let mut jobs = lock(&mailbox.state);
    loop {
        match jobs.next.take() {
            Some(job) => {
                jobs.busy = true;
                drop(jobs);
                run_job(job, path, &mut errors_logged);
                jobs = lock(&mailbox.state);
                jobs.busy = false;
                mailbox.changed.notify_all();
            }
            None if jobs.closed => return,
            None => jobs = wait(&mailbox.changed, jobs),
        }
    }
}

fn run_job(job: Job, path: &Path, errors_logged: &mut u32) {
    let res = match job {
        Job::Write(bytes) => write_atomic(path, &bytes),
        Job::Remove => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = res {
        if *errors_logged < 3 {
            *errors_logged += 1;
            tracing::warn!(error = %e, path = %path.display(), "cannot write or remove the open-tracks file");
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
    /// The `end` events' payloads (for the event store).
    pub payloads: Vec<String>,
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
        let topics = Topics::new(state.topic_prefix.as_str());
        let topic = topics.camera(&state.camera).events();
        let mut seq = state.seq;
        for after in &state.tracks {
            seq += 1;
            let body = restart_end(&state, seq, after, now).to_string();
            spool.push(&OutMsg {
                topic: topic.clone(),
                payload: body.clone(),
                qos,
                retain: false,
                bytes: None,
            })?;
            out.payloads.push(body);
            out.ended += 1;
        }
        out.cameras
            .push((state.camera.clone(), topics.camera(&state.camera).status()));
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
        f.flush();
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

    fn open_tracks(seq: u64, ids: &[u64]) -> OpenTracks {
        OpenTracks {
            topic_prefix: "p".into(),
            camera: "cam".into(),
            run: "r".into(),
            seq,
            frame: json!({"index": seq}),
            tracks: ids.iter().map(|id| json!({"id": id})).collect(),
        }
    }

    #[test]
    fn the_writer_keeps_the_latest_state_and_removes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), "cam");
        let mut f = StateFile::new(dir.path(), "cam");
        // Births and ends faster than the disk: the file ends up with the last state.
        for seq in 1..=50u64 {
            let ids: Vec<u64> = (0..seq % 7).collect();
            f.update(ids.clone(), || open_tracks(seq, &ids));
        }
        f.flush();
        let last: OpenTracks = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        assert_eq!(last, open_tracks(50, &(0..50 % 7).collect::<Vec<_>>()));
        // An update at once followed by the clean stop's removal: no file is left behind, also
        // when the owner goes away without waiting.
        f.update(vec![9], || open_tracks(51, &[9]));
        f.remove();
        drop(f);
        assert!(!file.exists());
        assert!(!file.with_extension("json.tmp").exists());
    }

    #[test]
    fn an_unwritable_directory_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let mut f = StateFile::new(&missing, "cam");
        f.update(vec![1], || open_tracks(1, &[1]));
        f.flush();
        f.remove();
        drop(f);
        assert!(!missing.exists());
    }
}
