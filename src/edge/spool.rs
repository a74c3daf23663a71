//! The on-disk spool of QoS >= 1 messages that could not be delivered: JSON lines in numbered
//! segment files, replayed oldest first. Bounded: past `max_bytes` the oldest segment is dropped
//! and its messages counted. What is left at exit is replayed by the next start.

use std::collections::VecDeque;
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

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    bytes: u64,
    count: u64,
    /// Messages dropped to keep the bound (oldest first).
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
            segment_bytes: (max_bytes / 16).clamp(4096, 8 << 20),
            segments: VecDeque::new(),
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
            s.bytes += bytes;
            s.count += count;
            s.segments.push_back(Segment { id, bytes, count });
        }
        Ok(s)
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.spool"))
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Append one message (the newest).
    pub fn push(&mut self, msg: &OutMsg) -> io::Result<()> {
        let mut line = serde_json::to_string(msg).map_err(io::Error::other)?;
        line.push('\n');
        let need_new = match self.segments.back() {
            None => true,
            Some(seg) => self.writer.is_none() || seg.bytes >= self.segment_bytes,
        };
        if need_new {
            self.writer = None;
            let id = self.segments.back().map_or(FIRST_ID, |s| s.id + 1);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(id))?;
            self.writer = Some(BufWriter::new(file));
            self.segments.push_back(Segment {
                id,
                bytes: 0,
                count: 0,
            });
        }
        let w = self.writer.as_mut().expect("writer opened above");
        w.write_all(line.as_bytes())?;
        w.flush()?;
        let seg = self.segments.back_mut().expect("segment pushed above");
        seg.bytes += line.len() as u64;
        seg.count += 1;
        self.bytes += line.len() as u64;
        self.count += 1;
        self.enforce_bound()
    }

    /// Put messages back in front of everything spooled (they are older), in order.
    pub fn push_front(&mut self, msgs: &[OutMsg]) -> io::Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let id = self.segments.front().map_or(FIRST_ID, |s| s.id - 1);
        let mut w = BufWriter::new(File::create(self.path(id))?);
        let mut bytes = 0u64;
        for m in msgs {
            let mut line = serde_json::to_string(m).map_err(io::Error::other)?;
            line.push('\n');
            w.write_all(line.as_bytes())?;
            bytes += line.len() as u64;
        }
        w.flush()?;
        w.get_ref().sync_data()?;
        self.segments.push_front(Segment {
            id,
            bytes,
            count: msgs.len() as u64,
        });
        self.bytes += bytes;
        self.count += msgs.len() as u64;
        if self.segments.len() == 1 {
            // The writer (if any) belonged to no segment any more.
            self.writer = None;
        }
        self.enforce_bound()
    }

    fn enforce_bound(&mut self) -> io::Result<()> {
        while self.bytes > self.max_bytes && self.segments.len() > 1 {
            let seg = self.segments.pop_front().expect("len > 1");
            fs::remove_file(self.path(seg.id))?;
            self.bytes -= seg.bytes;
            self.count -= seg.count;
            self.dropped += seg.count;
        }
        Ok(())
    }

    /// Take the oldest segment's messages (the file is removed).
    pub fn pop_oldest(&mut self) -> io::Result<Vec<OutMsg>> {
        let Some(seg) = self.segments.pop_front() else {
            return Ok(Vec::new());
        };
        if self.segments.is_empty() {
            self.writer = None;
        }
        let path = self.path(seg.id);
        let mut msgs = Vec::with_capacity(seg.count as usize);
        for line in BufReader::new(File::open(&path)?).lines() {
            match serde_json::from_str::<OutMsg>(&line?) {
                Ok(m) => msgs.push(m),
                Err(_) => self.corrupt += 1,
            }
        }
        fs::remove_file(&path)?;
        self.bytes -= seg.bytes;
        self.count -= seg.count;
        Ok(msgs)
    }

    /// Flush to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        Ok(())
    }
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
        }
    }

    #[test]
    fn replays_in_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..100 {
            s.push(&msg(i)).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 100);
        s.push_front(&[msg(1000), msg(1001)]).unwrap();
        s.push(&msg(100)).unwrap();
        let mut got = Vec::new();
        while !s.is_empty() {
            got.extend(s.pop_oldest().unwrap());
        }
        let want: Vec<_> = [1000, 1001].into_iter().chain(0..=100).map(msg).collect();
        assert_eq!(got, want);
        assert_eq!(s.bytes(), 0);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bounded_drops_oldest_with_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 * 1024).unwrap();
        for i in 0..2000 {
            s.push(&msg(i)).unwrap();
        }
        assert!(s.bytes() <= 64 * 1024, "{}", s.bytes());
        assert!(s.dropped > 0);
        assert_eq!(s.dropped + s.len(), 2000);
        let first = s.pop_oldest().unwrap();
        let v: serde_json::Value = serde_json::from_str(&first[0].payload).unwrap();
        assert_eq!(
            v["i"].as_u64().unwrap(),
            s.dropped,
            "the oldest kept is the first not dropped"
        );
    }
}
