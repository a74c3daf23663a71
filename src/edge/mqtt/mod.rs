//! MQTT publishing in two tasks. The link task owns rumqttc's `EventLoop` and does nothing but
//! `poll()` it, so nothing ever cancels a connect in progress (slow links need seconds for TCP,
//! TLS and CONNACK); it backs off after failed connects and after connections that drop soon
//! after connecting (a flapping broker), longer after a rejected login or a TLS failure, and logs
//! one line per change of state, not per attempt. The publisher task owns everything else:
//! camera threads hand it messages through an [`Outbox`] (never blocking); it hands them to
//! rumqttc in order (`try_publish`, never blocking), learns each one's packet id from the
//! `Outgoing::Publish` event that follows in the same order, and keeps every QoS >= 1 message in
//! a ledger until its PUBACK. While the broker is away QoS >= 1 messages go to the on-disk
//! [`Spool`] (the unacknowledged ones too, so a crash during an outage loses nothing) and are
//! replayed in order after the next ConnAck; a replayed spool segment is deleted only once every
//! message in it was acknowledged. QoS 0 ones are dropped and counted. Retained state
//! (`available`, camera `status`, switch states) is republished on every ConnAck, and the control
//! topics are subscribed to again. A message the broker refuses (its `max_packet_size` below
//! ours) is shrunk or set aside so that the ones behind it flow (`oversize`).
//!
//! `outbox` holds the camera threads' queue, `backoff` the reconnect waits, `link` the link task,
//! `options` rumqttc's options, `oversize` the refused-size guard and `task` the publisher task.

mod backoff;
mod link;
mod options;
mod outbox;
pub mod oversize;
mod task;

pub use backoff::Backoff;
pub use link::STABLE;
pub use options::mqtt_options;
pub use outbox::Outbox;
pub use task::{MqttTask, MqttTaskOptions};
