//! The [`Outbox`]: the bounded, never-blocking queue from the camera threads to the MQTT task.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use crate::edge::events::OutMsg;

/// Messages from the camera threads to the MQTT task. Bounded: past the capacity the oldest
/// QoS 0 message is dropped; QoS >= 1 messages are only dropped past four times the capacity
/// (the MQTT task moves them to the spool long before).
pub struct Outbox {
    q: Mutex<VecDeque<OutMsg>>,
    pub(super) notify: tokio::sync::Notify,
    capacity: usize,
    dropped: std::sync::atomic::AtomicU64,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            q: Mutex::new(VecDeque::new()),
            notify: tokio::sync::Notify::new(),
            capacity,
            dropped: Default::default(),
        }
    }

    /// Never blocks (beyond a short lock).
    pub fn push(&self, msgs: impl IntoIterator<Item = OutMsg>) {
        let mut q = self.q.lock().unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        for m in msgs {
            any = true;
            if q.len() >= self.capacity {
                if let Some(pos) = q.iter().position(|m| m.qos == 0) {
                    q.remove(pos);
                    self.dropped.fetch_add(1, Relaxed);
                } else if q.len() >= 4 * self.capacity {
                    q.pop_front();
                    self.dropped.fetch_add(1, Relaxed);
                }
            }
            q.push_back(m);
        }
        drop(q);
        if any {
            self.notify.notify_one();
        }
    }

    pub(super) fn take_all(&self) -> VecDeque<OutMsg> {
        std::mem::take(&mut *self.q.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_empty(&self) -> bool {
        self.q.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_drops_qos0_first() {
        let o = Outbox::new(2);
        let m = |q: u8, i: usize| OutMsg {
            topic: "t".into(),
            payload: i.to_string(),
            qos: q,
            retain: false,
            bytes: None,
        };
        o.push([m(0, 0), m(1, 1), m(1, 2)]);
        assert_eq!(o.dropped(), 1);
        let left: Vec<_> = o.take_all().into_iter().map(|m| m.payload).collect();
        assert_eq!(left, vec!["1", "2"]);
    }
}
