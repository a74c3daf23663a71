//! A message the broker refuses must not block the ones behind it. A broker whose
//! `max_packet_size` is below ours drops the connection when it receives a larger packet (MQTT
//! 3.1.1 has no way to say so); resending it from the spool drops the connection again, forever.
//! [`SizeGuard`] learns the broker's limit from that: the broker reads in order, so the message
//! it refused is the first one sent that is larger than everything it has acknowledged; when two
//! connections in a row end with the same such message unacknowledged, that size is refused (and
//! the limit comes down again if a smaller message is refused later). From then on (and for anything above `mqtt.max_packet_size`) a message
//! is shrunk (an event's mask left out, flagged) or, when it cannot shrink enough, set aside in
//! `<spool_dir>/dead-letter.jsonl` with an ERROR naming its size and the limit.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::edge::events::OutMsg;

/// Bytes of the MQTT PUBLISH packet carrying `m` (fixed header, topic, packet id, payload).
pub fn packet_len(m: &OutMsg) -> usize {
    let payload = m.bytes.as_ref().map_or(m.payload.len(), |b| b.len());
    let rest = 2 + m.topic.len() + if m.qos > 0 { 2 } else { 0 } + payload;
    let len_bytes = match rest {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_bytes + rest
}

fn fingerprint(m: &OutMsg) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.topic.hash(&mut h);
    m.payload.hash(&mut h);
    h.finish()
}

/// What the broker has shown it accepts and refuses.
#[derive(Debug, Default)]
pub struct SizeGuard {
    /// The largest packet the broker is known to have taken: every packet sent before one it
    /// acknowledged (it reads in order), whatever its QoS.
    largest_accepted: usize,
    /// Sent on this connection, not yet known to be taken: (send number, fingerprint, bytes).
    unproven: VecDeque<(u64, u64, usize)>,
    next: u64,
    /// The message suspected after the last dropped connection: (fingerprint, packet bytes).
    suspect: Option<(u64, usize)>,
    /// Packets above this are refused by the broker (learned).
    learned: Option<usize>,
}

/// Sent packets remembered per connection, at most (the oldest are forgotten).
const UNPROVEN_MAX: usize = 4096;

impl SizeGuard {
    /// `m` was handed to the connection; returns its send number (for [`Self::accepted_through`]).
    pub fn handed(&mut self, m: &OutMsg) -> u64 {
        self.next += 1;
        if self.unproven.len() >= UNPROVEN_MAX {
            self.unproven.pop_front();
        }
        self.unproven
            .push_back((self.next, fingerprint(m), packet_len(m)));
        self.next
    }

    /// The broker acknowledged the message of send number `n`: it took everything sent up to it.
    pub fn accepted_through(&mut self, n: u64) {
        while let Some(&(k, _, bytes)) = self.unproven.front() {
            if k > n {
                break;
            }
            self.largest_accepted = self.largest_accepted.max(bytes);
            self.unproven.pop_front();
        }
    }

    /// The connection dropped. The broker reads in order, so the packet it refused is the first
    /// unproven one larger than everything it took. Returns the newly learned limit when the same
    /// message was that suspect twice in a row.
    pub fn dropped(&mut self) -> Option<usize> {
        let first_above = self
            .unproven
            .iter()
            .find(|(_, _, n)| *n > self.largest_accepted)
            .map(|&(_, fp, n)| (fp, n));
        self.unproven.clear();
        let Some((fp, n)) = first_above else {
            self.suspect = None;
            return None;
        };
        if self.suspect == Some((fp, n)) {
            self.suspect = None;
            let limit = (n - 1).max(self.largest_accepted);
            if self.learned.is_none_or(|l| limit < l) {
                self.learned = Some(limit);
                return Some(limit);
            }
            None
        } else {
            self.suspect = Some((fp, n));
            None
        }
    }

    /// The largest packet to send: the configured one, or what the broker showed, if lower.
    pub fn limit(&self, configured: usize) -> usize {
        self.learned.map_or(configured, |l| l.min(configured))
    }
}

/// `m` without its mask (`after.mask` null, `after.mask_omitted` saying why) when that fits in
/// `limit`; `None` when it cannot shrink enough (or is not an event with a mask).
pub fn shrink(m: &OutMsg, limit: usize) -> Option<OutMsg> {
    if m.bytes.is_some() {
        return None;
    }
    let mut v: Value = serde_json::from_str(&m.payload).ok()?;
    let after = v.get_mut("after")?;
    if after.get("mask").is_none_or(Value::is_null) {
        return None;
    }
    after["mask"] = Value::Null;
    after["mask_omitted"] = json!(format!("larger than the broker accepts ({limit} bytes)"));
    let small = OutMsg {
        payload: v.to_string(),
        ..m.clone()
    };
    (packet_len(&small) <= limit).then_some(small)
}

/// `<spool_dir>/dead-letter.jsonl`: messages that could not be sent at any size.
pub struct DeadLetters {
    path: PathBuf,
}

impl DeadLetters {
    pub fn new(spool_dir: &Path) -> Self {
        Self {
            path: spool_dir.join("dead-letter.jsonl"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `m` (its payload as text; a binary one as its size only).
    pub fn put(&self, m: &OutMsg, limit: usize) -> std::io::Result<()> {
        let line = json!({
            "topic": m.topic,
            "qos": m.qos,
            "retain": m.retain,
            "bytes": packet_len(m),
            "limit": limit,
            "payload": if m.bytes.is_some() { Value::Null } else { json!(m.payload) },
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(f, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: &str) -> OutMsg {
        OutMsg {
            topic: "t/cam/events".into(),
            payload: payload.into(),
            qos: 1,
            retain: false,
            bytes: None,
        }
    }

    #[test]
    fn the_first_message_above_what_was_taken_refused_twice_sets_the_limit() {
        let mut g = SizeGuard::default();
        let small = msg("x");
        let big = msg(&"y".repeat(2000));
        let bigger = msg(&"z".repeat(3000));
        // small is taken (acknowledged); big, then bigger, are sent and the connection drops.
        let n = g.handed(&small);
        g.accepted_through(n);
        g.handed(&big);
        g.handed(&bigger);
        assert_eq!(g.dropped(), None);
        // Again, in the same order: big is refused.
        g.handed(&big);
        g.handed(&bigger);
        let limit = g.dropped().expect("learned");
        assert_eq!(limit, packet_len(&big) - 1);
        assert_eq!(g.limit(1 << 20), limit);
        assert_eq!(g.limit(100), 100);
        // A drop with nothing above what was taken teaches nothing.
        g.handed(&small);
        assert_eq!(g.dropped(), None);
    }

    #[test]
    fn an_event_shrinks_by_its_mask_or_not_at_all() {
        let mask = "a".repeat(3000);
        let ev =
            msg(&json!({"type": "new", "after": {"id": 1, "mask": {"counts": mask}}}).to_string());
        let small = shrink(&ev, 900).expect("fits without its mask");
        let v: Value = serde_json::from_str(&small.payload).unwrap();
        assert!(v["after"]["mask"].is_null());
        assert!(v["after"]["mask_omitted"].as_str().unwrap().contains("900"));
        assert!(shrink(&ev, 20).is_none());
        assert!(shrink(&msg("{\"type\":\"stats\"}"), 900).is_none());
        assert_eq!(packet_len(&msg("")), 1 + 1 + 2 + 12 + 2);
    }
}
