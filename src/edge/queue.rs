//! The bounded queue between a camera's GStreamer streaming thread and its engine thread.
//! Frames are bounded: when full, the oldest frame is dropped and counted (live sources), or the
//! producer waits (files). Control items (stream restart, end of stream) are never dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// What a queue holds: frames, or control items that must not be dropped.
pub trait QueueItem {
    fn is_frame(&self) -> bool;
}

pub struct FrameQueue<T> {
    inner: Mutex<Inner<T>>,
    readable: Condvar,
    writable: Condvar,
    capacity: usize,
    dropped: AtomicU64,
}

struct Inner<T> {
    items: VecDeque<T>,
    frames: usize,
    closed: bool,
}

/// Result of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping the oldest frame.
    DroppedOldest,
    /// The queue is closed (the consumer has gone).
    Closed,
}

impl<T: QueueItem> FrameQueue<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::with_capacity(capacity + 2),
                frames: 0,
                closed: false,
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // A panic while holding this lock leaves plain data; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Push, dropping the oldest frame when full. Never blocks (beyond the lock).
    pub fn push_drop_oldest(&self, item: T) -> Pushed {
        let mut g = self.lock();
        if g.closed {
            return Pushed::Closed;
        }
        let mut res = Pushed::Queued;
        if item.is_frame() {
            if g.frames >= self.capacity {
                if let Some(pos) = g.items.iter().position(|i| i.is_frame()) {
                    g.items.remove(pos);
                    g.frames -= 1;
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    res = Pushed::DroppedOldest;
                }
            }
            g.frames += 1;
        }
        g.items.push_back(item);
        drop(g);
        self.readable.notify_one();
        res
    }

    /// Push a frame, waiting while the queue is full (up to `timeout` per wait; `keep_waiting` is
    /// asked between waits so the producer can give up on shutdown). Control items never wait.
    pub fn push_wait(
        &self,
        item: T,
        timeout: Duration,
        mut keep_waiting: impl FnMut() -> bool,
    ) -> Pushed {
        let mut g = self.lock();
        if item.is_frame() {
            while g.frames >= self.capacity && !g.closed {
                if !keep_waiting() {
                    drop(g);
                    return self.push_drop_oldest(item);
                }
                g = self
                    .writable
                    .wait_timeout(g, timeout)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        if g.closed {
            return Pushed::Closed;
        }
        if item.is_frame() {
            g.frames += 1;
        }
        g.items.push_back(item);
        drop(g);
        self.readable.notify_one();
        Pushed::Queued
    }

    /// Pop the oldest item, waiting up to `timeout`.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let mut g = self.lock();
        if g.items.is_empty() {
            g = self
                .readable
                .wait_timeout_while(g, timeout, |i| i.items.is_empty() && !i.closed)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let item = g.items.pop_front()?;
        if item.is_frame() {
            g.frames -= 1;
        }
        drop(g);
        self.writable.notify_one();
        Some(item)
    }

    /// Refuse further pushes and wake everyone.
    pub fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_all();
        self.writable.notify_all();
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Frames dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum It {
        F(u32),
        C(u32),
    }
    impl QueueItem for It {
        fn is_frame(&self) -> bool {
            matches!(self, It::F(_))
        }
    }

    #[test]
    fn drops_oldest_frame_keeps_control() {
        let q = FrameQueue::new(2);
        assert_eq!(q.push_drop_oldest(It::C(0)), Pushed::Queued);
        q.push_drop_oldest(It::F(1));
        q.push_drop_oldest(It::F(2));
        assert_eq!(q.push_drop_oldest(It::F(3)), Pushed::DroppedOldest);
        q.push_drop_oldest(It::C(4));
        assert_eq!(q.push_drop_oldest(It::F(5)), Pushed::DroppedOldest);
        assert_eq!(q.dropped(), 2);
        let got: Vec<_> = std::iter::from_fn(|| q.pop_timeout(Duration::from_millis(1))).collect();
        assert_eq!(got, vec![It::C(0), It::F(3), It::C(4), It::F(5)]);
    }

    #[test]
    fn push_wait_blocks_until_popped() {
        let q = std::sync::Arc::new(FrameQueue::new(1));
        q.push_wait(It::F(1), Duration::from_millis(10), || true);
        let q2 = q.clone();
        let t =
            std::thread::spawn(move || q2.push_wait(It::F(2), Duration::from_millis(10), || true));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.len(), 1, "producer must wait");
        assert_eq!(q.pop_timeout(Duration::from_secs(1)), Some(It::F(1)));
        assert_eq!(t.join().unwrap(), Pushed::Queued);
        assert_eq!(q.pop_timeout(Duration::from_secs(1)), Some(It::F(2)));
        assert_eq!(q.dropped(), 0);
    }
}
