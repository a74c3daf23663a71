//! The sessions of an ONNX Runtime engine: one "lane" holds a session of each graph and runs one
//! frame at a time; streams take lanes first come, first served.

use std::sync::{Condvar, Mutex, MutexGuard};

use ort::session::Session;

use crate::model::ModelError;

/// One session of each graph: one frame at a time runs on it.
pub(super) struct Lane {
    pub(super) key: Session,
    pub(super) non_key: Option<Session>,
}

/// The engine's lanes, handed out first come, first served (a ticket queue), so that no stream
/// waits behind another one twice.
pub(super) struct Lanes {
    lanes: Vec<Mutex<Lane>>,
    queue: Mutex<TicketQueue>,
    turn: Condvar,
}

struct TicketQueue {
    free: Vec<usize>,
    next_ticket: u64,
    serving: u64,
}

impl Lanes {
    pub(super) fn new(lanes: Vec<Lane>) -> Self {
        Self {
            queue: Mutex::new(TicketQueue {
                free: (0..lanes.len()).rev().collect(),
                next_ticket: 0,
                serving: 0,
            }),
            lanes: lanes.into_iter().map(Mutex::new).collect(),
            turn: Condvar::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Wait for this caller's turn and a free lane.
    pub(super) fn acquire(&self) -> Result<LaneGuard<'_>, ModelError> {
        let poisoned = || ModelError::Runtime {
            engine: "onnxruntime",
            reason: "session lock poisoned".into(),
        };
        let mut q = self.queue.lock().map_err(|_| poisoned())?;
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        while q.serving != ticket || q.free.is_empty() {
            q = self.turn.wait(q).map_err(|_| poisoned())?;
        }
        q.serving += 1;
        let index = q.free.pop().ok_or_else(poisoned)?;
        drop(q);
        // The next ticket may find a lane free too.
        self.turn.notify_all();
        // A session whose last run panicked is still a session: keep serving with it rather
        // than lose the lane (and every stream waiting for it).
        let lane = self.lanes[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(LaneGuard {
            lanes: self,
            index,
            lane: Some(lane),
        })
    }
}

/// A lane taken from [`Lanes`]; it goes back on drop.
pub(super) struct LaneGuard<'a> {
    lanes: &'a Lanes,
    index: usize,
    pub(super) lane: Option<MutexGuard<'a, Lane>>,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        drop(self.lane.take());
        if let Ok(mut q) = self.lanes.queue.lock() {
            q.free.push(self.index);
        }
        self.lanes.turn.notify_all();
    }
}
