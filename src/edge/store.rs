//! The event store: every track the daemon published, in an embedded SQLite database (WAL) with
//! retention by age and by size (`[store]`), snapshots and clips beside it under the same
//! retention.
//!
//! The engine threads hand it their `new` / `update` / `end` events (the JSON they publish); a
//! writer thread applies them in transactions. A `new` is committed before it is handed to MQTT
//! (the engine thread waits for that commit, births are rare), so after a `kill -9` every track
//! whose `new` went out is in the store; WAL keeps the file whole across a crash mid-write.
//! The HTTP API reads it with its own connections ([`query`], [`get`]).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::{json, Value};

/// Why the store cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Retention, from `[store]`.
#[derive(Debug, Clone)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
    /// Where snapshots are (files named in the `snapshot` column are relative to it).
    pub snapshots_dir: PathBuf,
    /// Where clips are (`clips::clip_name` of a row's camera, run and track id).
    pub clips_dir: PathBuf,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS tracks (
    event_id   TEXT PRIMARY KEY,
    run        TEXT NOT NULL,
    camera     TEXT NOT NULL,
    track_id   INTEGER NOT NULL,
    label      TEXT NOT NULL,
    score      REAL NOT NULL,
    top_score  REAL NOT NULL,
    start_time REAL NOT NULL,
    end_time   REAL,
    end_reason TEXT,
    zones      TEXT NOT NULL DEFAULT '[]',
    box        TEXT,
    snapshot   TEXT,
    updated    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_start ON tracks (start_time);
CREATE INDEX IF NOT EXISTS tracks_camera ON tracks (camera, start_time);
CREATE INDEX IF NOT EXISTS tracks_label ON tracks (label, start_time);
";

enum Job {
    /// Event payloads of one camera; `ack` once they are committed.
    Events(Vec<String>, Option<mpsc::Sender<()>>),
}

/// The engine threads' handle on the store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    tx: mpsc::SyncSender<Job>,
    path: PathBuf,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Open (or create) the database and start its writer thread.
    pub fn open(
        path: &Path,
        retention: Retention,
    ) -> Result<(Self, std::thread::JoinHandle<()>), StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path).map_err(sqlite(path))?;
        conn.execute_batch(SCHEMA).map_err(sqlite(path))?;
        let (tx, rx) = mpsc::sync_channel(1024);
        let p = path.to_path_buf();
        let worker = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || writer(conn, &p, rx, retention))?;
        Ok((
            Self {
                tx,
                path: path.to_path_buf(),
            },
            worker,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record these event payloads. With `wait` (a `new` among them) this returns once they are
    /// committed, so a published `new` is always in the store.
    pub fn record(&self, payloads: Vec<String>, wait: bool) {
        if payloads.is_empty() {
            return;
        }
        let (ack, done) = if wait {
            let (a, d) = mpsc::channel();
            (Some(a), Some(d))
        } else {
            (None, None)
        };
        if self.tx.send(Job::Events(payloads, ack)).is_err() {
            return;
        }
        if let Some(d) = done {
            let _ = d.recv_timeout(Duration::from_secs(5));
        }
    }
}

/// The writer thread: batches of jobs in one transaction each; retention once a minute.
fn writer(mut conn: Connection, path: &Path, rx: mpsc::Receiver<Job>, retention: Retention) {
    let mut last_retention = Instant::now() - Duration::from_secs(3600);
    let mut errors_logged = 0u32;
    let mut full_logged: Option<Instant> = None;
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(j) => Some(j),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs: Vec<Job> = first.into_iter().collect();
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        if !jobs.is_empty() {
            let mut acks = Vec::new();
            let result = (|| -> rusqlite::Result<()> {
                let tx = conn.transaction()?;
                for Job::Events(payloads, ack) in jobs {
                    for p in &payloads {
                        if let Ok(v) = serde_json::from_str::<Value>(p) {
                            apply(&tx, &v)?;
                        }
                    }
                    acks.extend(ack);
                }
                tx.commit()
            })();
            if let Err(e) = result {
                let full = matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull);
                if full {
                    // A full disk is the spool's and the store's alike: one line a minute.
                    if full_logged.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(60)) {
                        full_logged = Some(Instant::now());
                        tracing::warn!(file = %path.display(), "the event store's disk is full: events are not stored until there is room");
                    }
                } else if errors_logged < 10 {
                    errors_logged += 1;
                    tracing::error!(file = %path.display(), error = %e, "cannot write the event store");
                }
            }
            for a in acks {
                let _ = a.send(());
            }
        }
        if last_retention.elapsed() >= Duration::from_secs(60) {
            last_retention = Instant::now();
            if let Err(e) = retain(&conn, &retention) {
                tracing::warn!(file = %path.display(), error = %e, "event store retention failed");
            }
        }
    }
}

/// One event: `new` inserts the track, `update` refreshes it, `end` closes it.
fn apply(tx: &rusqlite::Transaction<'_>, v: &Value) -> rusqlite::Result<()> {
    let kind = v["type"].as_str().unwrap_or("");
    let a = &v["after"];
    let (Some(event_id), Some(camera)) = (a["event_id"].as_str(), v["camera"].as_str()) else {
        return Ok(());
    };
    let t = v["timestamp"].as_f64().unwrap_or(0.0);
    let label = a["label"].as_str().unwrap_or("");
    let score = a["score"].as_f64().unwrap_or(0.0);
    let zones = a["entered_zones"].to_string();
    let bx = a["box"].to_string();
    match kind {
        "new" => {
            tx.execute(
                "INSERT OR IGNORE INTO tracks (event_id, run, camera, track_id, label, score, \
                 top_score, start_time, zones, box, snapshot, updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?7)",
                params![
                    event_id,
                    v["run"].as_str().unwrap_or(""),
                    camera,
                    a["id"].as_i64().unwrap_or(0),
                    label,
                    score,
                    t,
                    zones,
                    bx,
                    snapshot_name(v),
                ],
            )?;
        }
        "update" | "end" => {
            tx.execute(
                "UPDATE tracks SET label = ?2, score = ?3, top_score = max(top_score, ?3), \
                 zones = ?4, box = ?5, updated = ?6 WHERE event_id = ?1",
                params![event_id, label, score, zones, bx, t],
            )?;
            if kind == "end" {
                tx.execute(
                    "UPDATE tracks SET end_time = ?2, end_reason = ?3 WHERE event_id = ?1",
                    params![event_id, t, v["reason"].as_str().unwrap_or("")],
                )?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The snapshot file a track gets, relative to the snapshots directory
/// (`<camera>/<run>-<id>-<label>.jpg`, as the snapshot worker names it).
fn snapshot_name(v: &Value) -> String {
    format!(
        "{}/{}-{}-{}.jpg",
        v["camera"].as_str().unwrap_or(""),
        v["run"].as_str().unwrap_or(""),
        v["after"]["id"].as_u64().unwrap_or(0),
        v["after"]["label"].as_str().unwrap_or("")
    )
}

/// A deleted track's files: its snapshot and its clip, relative to their folders.
struct Files {
    snapshot: Option<String>,
    clip: String,
}

fn files_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Files> {
    Ok(Files {
        snapshot: row.get("snapshot")?,
        clip: crate::edge::clips::clip_name(
            &row.get::<_, String>("camera")?,
            &row.get::<_, String>("run")?,
            row.get::<_, i64>("track_id")?.max(0) as u64,
        ),
    })
}

/// Delete tracks older than `max_age`, then the oldest until the file is within `max_bytes`;
/// their snapshots and clips go with them.
fn retain(conn: &Connection, r: &Retention) -> rusqlite::Result<()> {
    let now = crate::edge::events::unix_now();
    let cutoff = now - r.max_age.as_secs_f64();
    let mut gone: Vec<Files> = Vec::new();
    {
        let mut st = conn
            .prepare("SELECT snapshot, camera, run, track_id FROM tracks WHERE start_time < ?1")?;
        let rows = st.query_map([cutoff], files_of)?;
        gone.extend(rows.flatten());
    }
    conn.execute("DELETE FROM tracks WHERE start_time < ?1", [cutoff])?;
    let size = |c: &Connection| -> rusqlite::Result<u64> {
        let pages: i64 = c.query_row("PRAGMA page_count", [], |row| row.get(0))?;
        let page: i64 = c.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        Ok((pages * page) as u64)
    };
    let mut rounds = 0;
    while size(conn)? > r.max_bytes && rounds < 20 {
        rounds += 1;
        let n: i64 = conn.query_row("SELECT count(*) FROM tracks", [], |row| row.get(0))?;
        if n == 0 {
            break;
        }
        let k = (n / 10).max(1);
        {
            let mut st = conn.prepare(
                "SELECT snapshot, camera, run, track_id FROM tracks ORDER BY start_time LIMIT ?1",
            )?;
            let rows = st.query_map([k], files_of)?;
            gone.extend(rows.flatten());
        }
        conn.execute(
            "DELETE FROM tracks WHERE event_id IN \
             (SELECT event_id FROM tracks ORDER BY start_time LIMIT ?1)",
            [k],
        )?;
        conn.execute_batch("VACUUM")?;
    }
    for f in gone {
        let snapshot = f
            .snapshot
            .and_then(|name| snapshot_path(&r.snapshots_dir, &name));
        let clip = snapshot_path(&r.clips_dir, &f.clip);
        for p in snapshot.into_iter().chain(clip) {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

/// `name` under `dir`, or `None` when it would leave it (absolute, `..`, anything odd).
pub fn snapshot_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let rel = Path::new(name);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (plain && !name.is_empty()).then(|| dir.join(rel))
}

/// What `GET /api/events` filters on.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub camera: Option<String>,
    pub label: Option<String>,
    pub zone: Option<String>,
    /// Tracks that started at or after / before these Unix times.
    pub after: Option<f64>,
    pub before: Option<f64>,
    pub limit: u32,
}

fn read_only(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))?;
    c.busy_timeout(Duration::from_secs(2))
        .map_err(sqlite(path))?;
    // Every shape of `query` (32) and `get`.
    c.set_prepared_statement_cache_capacity(40);
    Ok(c)
}

thread_local! {
    /// The API's read connection of this (blocking) thread: opening one per request costs more
    /// than the query it serves.
    static READER: std::cell::RefCell<Option<(PathBuf, Connection)>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f` on this thread's read connection to `path` (opened on first use; dropped after an
/// error, so the next request opens it afresh).
fn with_reader<T>(
    path: &Path,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    READER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let conn = match slot.take() {
            Some((p, c)) if p == path => c,
            _ => read_only(path)?,
        };
        let out = f(&conn);
        if out.is_ok() {
            *slot = Some((path.to_path_buf(), conn));
        }
        out.map_err(sqlite(path))
    })
}

fn row_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let zones: String = row.get("zones")?;
    let bx: Option<String> = row.get("box")?;
    Ok(json!({
        "id": row.get::<_, String>("event_id")?,
        "run": row.get::<_, String>("run")?,
        "camera": row.get::<_, String>("camera")?,
        "track_id": row.get::<_, i64>("track_id")?,
        "label": row.get::<_, String>("label")?,
        "score": row.get::<_, f64>("score")?,
        "top_score": row.get::<_, f64>("top_score")?,
        "start_time": row.get::<_, f64>("start_time")?,
        "end_time": row.get::<_, Option<f64>>("end_time")?,
        "end_reason": row.get::<_, Option<String>>("end_reason")?,
        "zones": serde_json::from_str::<Value>(&zones).unwrap_or(Value::Array(vec![])),
        "box": bx.and_then(|b| serde_json::from_str::<Value>(&b).ok()),
        "snapshot": row.get::<_, Option<String>>("snapshot")?,
    }))
}

/// The tracks matching `f`, newest first.
///
/// The statement names only the filters given (at most 32 shapes, each prepared once per
/// connection): a catch-all `?1 IS NULL OR camera = ?1` makes SQLite re-prepare the statement at
/// every bind, which cost the server a third of its time under load (docs/perf.md).
pub fn query(path: &Path, f: &Filter) -> Result<Vec<Value>, StoreError> {
    let mut sql = String::from("SELECT * FROM tracks");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut cond = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
        sql.push_str(if args.is_empty() { " WHERE " } else { " AND " });
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(c) = &f.camera {
        cond(&mut sql, "camera = ?", c.clone().into());
    }
    if let Some(l) = &f.label {
        cond(&mut sql, "label = ?", l.clone().into());
    }
    if let Some(z) = &f.zone {
        cond(
            &mut sql,
            "EXISTS (SELECT 1 FROM json_each(tracks.zones) WHERE value = ?)",
            z.clone().into(),
        );
    }
    if let Some(a) = f.after {
        cond(&mut sql, "start_time >= ?", a.into());
    }
    if let Some(b) = f.before {
        cond(&mut sql, "start_time < ?", b.into());
    }
    args.push(i64::from(f.limit).into());
    sql.push_str(&format!(
        " ORDER BY start_time DESC, event_id LIMIT ?{}",
        args.len()
    ));
    with_reader(path, |c| {
        let mut st = c.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args.iter()), row_json)?;
        rows.collect()
    })
}

/// One track by its `event_id`.
pub fn get(path: &Path, event_id: &str) -> Result<Option<Value>, StoreError> {
    with_reader(path, |c| {
        c.prepare_cached("SELECT * FROM tracks WHERE event_id = ?1")?
            .query_row([event_id], row_json)
            .optional()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, id: u64, t: f64, zones: &[&str]) -> String {
        json!({"type": kind, "camera": "door", "run": "r1", "timestamp": t, "reason": "removed",
               "after": {"event_id": format!("r1-door-{id}"), "id": id, "label": "person",
                         "score": 0.5 + id as f64 / 100.0, "entered_zones": zones, "box": [1, 2, 3, 4]}})
        .to_string()
    }

    /// The database and a retention of one hour, in `dir`.
    fn paths(dir: &Path) -> (PathBuf, Retention) {
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
            snapshots_dir: dir.join("snapshots"),
            clips_dir: dir.join("clips"),
        };
        (dir.join("events.db"), retention)
    }

    #[test]
    fn retention_removes_old_tracks_with_their_snapshots_and_clips() {
        let dir = tempfile::tempdir().unwrap();
        let (db, retention) = paths(dir.path());
        let (store, worker) = Store::open(&db, retention.clone()).unwrap();
        let files = |id: u64| {
            [
                retention
                    .snapshots_dir
                    .join(format!("door/r1-{id}-person.jpg")),
                retention
                    .clips_dir
                    .join(crate::edge::clips::clip_name("door", "r1", id)),
            ]
        };
        for f in files(1).iter().chain(&files(2)) {
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, b"x").unwrap();
        }
        let now = crate::edge::events::unix_now();
        // Track 1 started two hours ago, track 2 now (the writer may apply retention itself).
        store.record(
            vec![ev("new", 1, now - 7200.0, &[]), ev("new", 2, now, &[])],
            true,
        );
        retain(&Connection::open(&db).unwrap(), &retention).unwrap();
        assert!(files(1).iter().all(|f| !f.exists()), "track 1's files stay");
        assert!(files(2).iter().all(|f| f.exists()), "track 2's files went");
        assert!(get(&db, "r1-door-1").unwrap().is_none());
        assert!(get(&db, "r1-door-2").unwrap().is_some());
        drop(store);
        worker.join().unwrap();
    }

    /// Every shape of the filter (each of the five given or not, 32 statements) picks the
    /// tracks a plain filter over the same rows picks, newest first, up to the limit.
    #[test]
    fn every_filter_shape_matches_a_plain_filter() {
        let dir = tempfile::tempdir().unwrap();
        let (db, retention) = paths(dir.path());
        let (store, worker) = Store::open(&db, retention).unwrap();
        let now = crate::edge::events::unix_now();
        // (camera, label, start, zones) of tracks 1..=12.
        let tracks: Vec<(&str, &str, f64, Vec<&str>)> = (0..12)
            .map(|i| {
                let zones = match i % 3 {
                    0 => vec![],
                    1 => vec!["porch"],
                    _ => vec!["porch", "yard"],
                };
                let camera = if i % 2 == 0 { "door" } else { "gate" };
                let label = if i % 4 < 2 { "person" } else { "car" };
                (camera, label, now + i as f64, zones)
            })
            .collect();
        let payloads = tracks
            .iter()
            .enumerate()
            .map(|(i, (camera, label, t, zones))| {
                let id = i + 1;
                json!({"type": "new", "camera": camera, "run": "r1", "timestamp": t,
                       "after": {"event_id": format!("r1-{camera}-{id}"), "id": id,
                                 "label": label, "score": 0.5, "entered_zones": zones}})
                .to_string()
            })
            .collect();
        store.record(payloads, true);
        for shape in 0..32u32 {
            let on = |bit: u32| shape & (1 << bit) != 0;
            let f = Filter {
                camera: on(0).then(|| "gate".to_string()),
                label: on(1).then(|| "person".to_string()),
                zone: on(2).then(|| "yard".to_string()),
                after: on(3).then_some(now + 3.0),
                before: on(4).then_some(now + 10.0),
                limit: 4,
            };
            let mut want: Vec<(f64, String)> = tracks
                .iter()
                .enumerate()
                .filter(|(_, (camera, label, t, zones))| {
                    f.camera.as_deref().is_none_or(|c| c == *camera)
                        && f.label.as_deref().is_none_or(|l| l == *label)
                        && f.zone.as_deref().is_none_or(|z| zones.contains(&z))
                        && f.after.is_none_or(|a| *t >= a)
                        && f.before.is_none_or(|b| *t < b)
                })
                .map(|(i, (camera, _, t, _))| (*t, format!("r1-{camera}-{}", i + 1)))
                .collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0));
            want.truncate(4);
            let got: Vec<String> = query(&db, &f)
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            let want: Vec<String> = want.into_iter().map(|(_, id)| id).collect();
            assert_eq!(got, want, "filter {f:?}");
        }
        drop(store);
        worker.join().unwrap();
    }

    #[test]
    fn records_filters_and_keeps_out_of_the_snapshot_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (db, retention) = paths(dir.path());
        let (store, worker) = Store::open(&db, retention).unwrap();
        let now = crate::edge::events::unix_now();
        store.record(
            vec![ev("new", 1, now, &[]), ev("new", 2, now + 1.0, &["porch"])],
            true,
        );
        store.record(vec![ev("end", 1, now + 2.0, &["yard"])], true);
        let all = query(
            &db,
            &Filter {
                limit: 10,
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0]["id"], "r1-door-2");
        let porch = query(
            &db,
            &Filter {
                zone: Some("porch".into()),
                limit: 10,
                ..Filter::default()
            },
        )
        .unwrap();
        assert_eq!(porch.len(), 1);
        let one = get(&db, "r1-door-1").unwrap().unwrap();
        assert_eq!(one["end_reason"], "removed");
        assert_eq!(one["zones"], json!(["yard"]));
        assert!(get(&db, "nope").unwrap().is_none());
        assert!(snapshot_path(dir.path(), "../etc/passwd").is_none());
        assert!(snapshot_path(dir.path(), "/etc/passwd").is_none());
        assert!(snapshot_path(dir.path(), "door/r1-1-person.jpg").is_some());
        drop(store);
        worker.join().unwrap();
    }
}
