//! Training (paper §3.3–3.4): linear assignment, temporally consistent matching, the losses with
//! the box deduplication loss, and the trainer.
