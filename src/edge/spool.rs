//! The on-disk spool of QoS >= 1 messages that could not be delivered: JSON lines in numbered
//! segment files, replayed oldest first. A segment handed out for replay stays on disk until the
//! broker has acknowledged every message in it ([`Spool::ack`]), so a crash at any point loses
//! nothing that reached the spool (the next start sends it again: duplicates, never gaps).
//! Bounded: past `max_bytes`, or when the disk is full, the oldest segment is dropped and its
//! messages counted in `dropped`. What is left at exit is replayed by the next start.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::edge::events::OutMsg;

/// Segment ids start here so that messages can be put back in front of the oldest one.
const FIRST_ID: u64 = 1 << 40;

struct Segment {
    id: u64,
    bytes: u64,
    count: u64,
}

/// A segment handed out for replay: deleted when `unacked` reaches 0.
struct InFlight {
    bytes: u64,
    count: u64,
    unacked: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Segments not handed out yet, oldest first; the last one may be open for appending.
    segments: VecDeque<Segment>,
    /// Segments handed out, waiting for the broker's acknowledgements.
    inflight: BTreeMap<u64, InFlight>,
    /// The file of the last segment, when it is still being appended to.
    writer: Option<File>,
    /// Bytes on disk (pending and in-flight segments).
    bytes: u64,
    /// Messages in pending segments.
    count: u64,
    /// Messages dropped to keep the bound or because the disk was full (oldest first).
    pub dropped: u64,
    /// Lines that could not be read back (a torn write at a crash).
    pub corrupt: u64,
}

impl Spool {
    /// Open (and create) the spool directory; existing segments are kept for replay.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".spool")?.parse::<u64>().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut s = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            // Small segments: a full disk drops little at a time.
            segment_bytes: (max_bytes / 16).clamp(4096, 128 << 10),
            segments: VecDeque::new(),
            inflight: BTreeMap::new(),
            writer: None,
            bytes: 0,
            count: 0,
            dropped: 0,
            corrupt: 0,
        };
        for id in ids {
            let path = s.path(id);
            let bytes = fs::metadata(&path)?.len();
            let count = BufReader::new(File::open(&path)?).lines().count() as u64;
            if count == 0 {
                // An empty segment (a crash right after it was created).
                fs::remove_file(&path)?;
                continue;
            }
            s.bytes += bytes;
            s.count += count;
            s.segments.push_back(Segment { id, bytes, count });
        }
        Ok(s)
    }

    /// Check that `dir` can hold the spool: create it, write, sync and remove a probe file.
    pub fn check_writable(dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let probe = dir.join(format!(".probe-{}", std::process::id()));
        let res = (|| {
            let mut f = File::create(&probe)?;
            f.write_all(b"probe\n")?;
            f.sync_data()
        })();
        let _ = fs::remove_file(&probe);
        res
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.spool"))
    }

    /// Messages waiting to be handed out (in-flight segments not counted).
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes on disk, in-flight segments included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Segments handed out and not yet fully acknowledged.
    pub fn inflight_segments(&self) -> usize {
        self.inflight.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn next_id(&self) -> u64 {
        let last_pending = self.segments.back().map(|s| s.id);
        let last_inflight = self.inflight.keys().next_back().copied();
        match (last_pending, last_inflight) {
            (None, None) => FIRST_ID,
            (a, b) => a.max(b).unwrap_or(FIRST_ID - 1) + 1,
        }
    }

    fn first_id(&self) -> u64 {
        let a = self.segments.front().map(|s| s.id);
        let b = self.inflight.keys().next().copied();
        match (a, b) {
            (Some(a), Some(b)) => a.min(b) - 1,
            (Some(x), None) | (None, Some(x)) => x - 1,
            (None, None) => FIRST_ID,
        }
    }

    /// Append one message (the newest). When the disk is full the oldest segments are dropped
    /// (counted in `dropped`) until it fits; an error means it could not be stored at all.
    pub fn push(&mut self, msg: &OutMsg) -> io::Result<()> {
        let mut line = serde_json::to_string(msg).map_err(io::Error::other)?;
        line.push('\n');
        loop {
            match self.append(line.as_bytes()) {
                Ok(()) => return self.enforce_bound(),
                Err(e) if is_disk_full(&e) => {
                    // Drop the oldest pending segment and try again in a fresh segment; with
                    // nothing older left, the message cannot be stored.
                    self.writer = None;
                    if self.segments.back().is_some_and(|s| s.count == 0) {
                        // A segment created for this message: nothing in it.
                        if let Some(seg) = self.segments.pop_back() {
                            let _ = fs::remove_file(self.path(seg.id));
                            self.bytes -= seg.bytes;
                        }
                    }
                    if !self.drop_oldest(true)? {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Write one line to the open segment (or a new one); a failed write leaves no torn line.
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let need_new = match self.segments.back() {
            None => true,
            Some(seg) => self.writer.is_none() || seg.bytes >= self.segment_bytes,
        };
        if need_new {
            self.writer = None;
            let id = self.next_id();
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(id))?;
            self.writer = Some(file);
            self.segments.push_back(Segment {
                id,
                bytes: 0,
                count: 0,
            });
        }
        let (Some(w), Some(seg)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("spool writer without a segment"));
        };
        if let Err(e) = w.write_all(line) {
            // Cut a partial line off, so that the segment stays readable.
            let _ = w.set_len(seg.bytes);
            return Err(e);
        }
        seg.bytes += line.len() as u64;
        seg.count += 1;
        self.bytes += line.len() as u64;
        self.count += 1;
        Ok(())
    }

    /// Put messages back in front of everything spooled (they are older), in order. On a full
    /// disk they are dropped (they are the oldest) and counted.
    pub fn push_front(&mut self, msgs: &[OutMsg]) -> io::Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let id = self.first_id();
        let path = self.path(id);
        let mut bytes = 0u64;
        let written = (|| {
            let mut w = BufWriter::new(File::create(&path)?);
            for m in msgs {
                let mut line = serde_json::to_string(m).map_err(io::Error::other)?;
                line.push('\n');
                w.write_all(line.as_bytes())?;
                bytes += line.len() as u64;
            }
            w.flush()?;
            w.get_ref().sync_data()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            if is_disk_full(&e) {
                // These are the oldest messages of all: on a full disk they are the ones to go.
                self.dropped += msgs.len() as u64;
                return Ok(());
            }
            return Err(e);
        }
        let was_empty = self.segments.is_empty();
        self.segments.push_front(Segment {
            id,
            bytes,
            count: msgs.len() as u64,
        });
        self.bytes += bytes;
        self.count += msgs.len() as u64;
        if was_empty {
            // The writer (if any) belonged to no segment any more.
            self.writer = None;
        }
        self.enforce_bound()
    }

    /// Drop the oldest pending segment, except the one being appended to unless `any`.
    /// Returns whether one was dropped.
    fn drop_oldest(&mut self, any: bool) -> io::Result<bool> {
        let open_last = self.writer.is_some();
        if self.segments.is_empty() || (!any && open_last && self.segments.len() == 1) {
            return Ok(false);
        }
        let Some(seg) = self.segments.pop_front() else {
            return Ok(false);
        };
        if self.segments.is_empty() {
            self.writer = None;
        }
        match fs::remove_file(self.path(seg.id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.bytes -= seg.bytes;
        self.count -= seg.count;
        self.dropped += seg.count;
        Ok(true)
    }

    fn enforce_bound(&mut self) -> io::Result<()> {
        while self.bytes > self.max_bytes && self.segments.len() > 1 {
            if !self.drop_oldest(false)? {
                break;
            }
        }
        Ok(())
    }

    /// Hand out the oldest pending segment for sending: its id and messages. The file stays
    /// until [`Spool::ack`] has been called once per message. `None` when nothing is pending.
    pub fn take_oldest(&mut self) -> io::Result<Option<(u64, Vec<OutMsg>)>> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(None);
        };
        if self.segments.is_empty() {
            // It may be the one being appended to: seal it.
            self.writer = None;
        }
        self.count -= seg.count;
        let path = self.path(seg.id);
        let mut msgs = Vec::with_capacity(seg.count as usize);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                // Gone or unreadable: its messages are lost, and counted.
                self.bytes -= seg.bytes;
                self.dropped += seg.count;
                return Err(e);
            }
        };
        for line in BufReader::new(file).lines() {
            match line.map(|l| serde_json::from_str::<OutMsg>(&l)) {
                Ok(Ok(m)) => msgs.push(m),
                _ => self.corrupt += 1,
            }
        }
        self.inflight.insert(
            seg.id,
            InFlight {
                bytes: seg.bytes,
                count: seg.count,
                unacked: msgs.len() as u64,
            },
        );
        if msgs.is_empty() {
            self.release(seg.id)?;
        }
        Ok(Some((seg.id, msgs)))
    }

    /// The connection was lost: every segment handed out and not fully acknowledged is pending
    /// again, in front, whole (its acknowledged messages are sent again: duplicates).
    pub fn requeue_inflight(&mut self) {
        let inflight = std::mem::take(&mut self.inflight);
        let was_empty = self.segments.is_empty();
        for (id, f) in inflight.into_iter().rev() {
            self.count += f.count;
            self.segments.push_front(Segment {
                id,
                bytes: f.bytes,
                count: f.count,
            });
        }
        if was_empty {
            self.writer = None;
        }
    }

    /// The broker acknowledged one message of segment `id`; the last one deletes the file.
    pub fn ack(&mut self, id: u64) -> io::Result<()> {
        let done = match self.inflight.get_mut(&id) {
            Some(f) => {
                f.unacked = f.unacked.saturating_sub(1);
                f.unacked == 0
            }
            None => false,
        };
        if done {
            self.release(id)?;
        }
        Ok(())
    }

    fn release(&mut self, id: u64) -> io::Result<()> {
        if let Some(f) = self.inflight.remove(&id) {
            self.bytes -= f.bytes;
            match fs::remove_file(self.path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Flush to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.sync_data()?;
        }
        Ok(())
    }
}

/// ENOSPC or EDQUOT.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: usize) -> OutMsg {
        OutMsg {
            topic: "t".into(),
            payload: format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200)),
            qos: 1,
            retain: false,
            bytes: None,
        }
    }

    fn files(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".spool"))
            })
            .count()
    }

    /// A spool of `max_bytes` in a fresh directory, fed messages 0..n.
    fn filled(n: usize, max_bytes: u64) -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), max_bytes).unwrap();
        for i in 0..n {
            s.push(&msg(i)).unwrap();
        }
        (dir, s)
    }

    /// Everything, acknowledging each segment as it is handed out.
    fn drain(s: &mut Spool) -> Vec<OutMsg> {
        let mut got = Vec::new();
        while let Some((id, msgs)) = s.take_oldest().unwrap() {
            for m in msgs {
                s.ack(id).unwrap();
                got.push(m);
            }
        }
        got
    }

    #[test]
    fn replays_in_order_across_reopen() {
        let (dir, mut s) = filled(100, 1 << 20);
        s.sync().unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 100);
        s.push_front(&[msg(1000), msg(1001)]).unwrap();
        s.push(&msg(100)).unwrap();
        let got = drain(&mut s);
        let want: Vec<_> = [1000, 1001].into_iter().chain(0..=100).map(msg).collect();
        assert_eq!(got, want);
        assert_eq!(s.bytes(), 0);
        assert_eq!(files(dir.path()), 0);
    }

    #[test]
    fn a_segment_stays_until_every_message_is_acknowledged() {
        let (dir, mut s) = filled(5, 1 << 20);
        let (id, msgs) = s.take_oldest().unwrap().unwrap();
        assert_eq!(msgs.len(), 5);
        assert!(s.is_empty(), "nothing pending once handed out");
        // New messages go to a new segment, not the one handed out.
        s.push(&msg(5)).unwrap();
        for _ in 0..4 {
            s.ack(id).unwrap();
        }
        assert_eq!(files(dir.path()), 2, "4 of 5 acknowledged: the file stays");
        // A crash now: the next start replays all 5 again (duplicates, no loss), then msg 5.
        drop(s);
        let mut again = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(drain(&mut again), (0..6).map(msg).collect::<Vec<_>>());
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.take_oldest().unwrap(), None);
    }

    #[test]
    fn bounded_drops_oldest_with_count() {
        let (_dir, mut s) = filled(2000, 64 * 1024);
        assert!(s.bytes() <= 64 * 1024, "{}", s.bytes());
        assert!(s.dropped > 0);
        assert_eq!(s.dropped + s.len(), 2000);
        let (_, first) = s.take_oldest().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&first[0].payload).unwrap();
        assert_eq!(
            v["i"].as_u64().unwrap(),
            s.dropped,
            "the oldest kept is the first not dropped"
        );
    }

    /// A real ENOSPC: the next segment file is a link to /dev/full, whose writes fail with
    /// "No space left on device". The oldest segment goes, the new message is kept.
    #[test]
    fn disk_full_drops_the_oldest_and_keeps_the_new() {
        // Small segments: 4096 bytes, about 17 messages each.
        let (_dir, mut s) = filled(40, 64 * 1024);
        let segs = s.segments.len();
        assert!(segs >= 3, "{segs}");
        // The segment after the last one is full.
        let next = s.next_id();
        s.writer = None;
        std::os::unix::fs::symlink("/dev/full", s.path(next)).unwrap();
        let oldest = s.segments[0].count;
        s.push(&msg(40)).unwrap();
        assert_eq!(s.dropped, oldest, "the oldest segment was dropped");
        let got = drain(&mut s);
        assert_eq!(got.len() as u64, 41 - oldest);
        assert_eq!(got.last(), Some(&msg(40)), "the new message was kept");
        assert_eq!(got.first(), Some(&msg(oldest as usize)));
        assert_eq!(s.corrupt, 0);
    }
}
