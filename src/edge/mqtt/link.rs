//! The link task: it owns rumqttc's `EventLoop`, polls it, backs off after failures and tells the
//! publisher task what happened ([`LinkEvent`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::backoff::Backoff;
use crate::edge::metrics::Metrics;

/// A connection that lasted less than this was not a success: the backoff keeps growing.
pub const STABLE: Duration = Duration::from_secs(10);

/// Why the link is down, for logging once per change and for the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownKind {
    /// TCP, timeouts, the broker closing the connection.
    Unreachable,
    /// CONNACK refused the login (bad user name or password, not authorised, bad client id).
    Rejected,
    /// The TLS handshake failed (e.g. the broker's certificate is not trusted).
    Tls,
}

fn classify(e: &ConnectionError) -> DownKind {
    match e {
        ConnectionError::ConnectionRefused(_) => DownKind::Rejected,
        ConnectionError::Tls(_) => DownKind::Tls,
        // With TLS 1.3 the broker's verdict on our client certificate comes as an alert after
        // the handshake, while reading the CONNACK; rumqttc passes it on as text.
        other if is_tls_alert(other) => DownKind::Tls,
        _ => DownKind::Unreachable,
    }
}

fn is_tls_alert(e: &ConnectionError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        source = err.source();
    }
    e.to_string().contains("received fatal alert")
}

fn refused_reason(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => "not authorised",
        ConnectReturnCode::BadClientId => "client id rejected (mqtt.client_id)",
        ConnectReturnCode::RefusedProtocolVersion => "protocol version refused",
        ConnectReturnCode::ServiceUnavailable => "service unavailable",
        ConnectReturnCode::Success => "success",
    }
}

/// What the link task tells the publisher task.
pub(super) enum LinkEvent {
    /// ConnAck. `quiet` while the link flaps (said once by the link task, not per connect).
    Up { session_present: bool, quiet: bool },
    /// rumqttc wrote a publish with this packet id (in the order they were handed over).
    Sent(u16),
    /// The broker acknowledged a packet id (PUBACK, or PUBCOMP for QoS 2).
    Acked(u16),
    /// The connection was lost. The link task waits for `resume` before it empties the request
    /// channel and reconnects: nothing handed over before then is sent on the next connection.
    Down { resume: oneshot::Sender<()> },
    /// Our DISCONNECT went out.
    Closed,
    /// A message on a subscribed (control) topic.
    Command(crate::edge::control::Command),
}

/// The task that owns rumqttc's `EventLoop`.
pub(super) struct Link {
    pub(super) eventloop: EventLoop,
    pub(super) backoff: Backoff,
    pub(super) max_backoff: Duration,
    pub(super) broker: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) tx: mpsc::Sender<LinkEvent>,
}

impl Link {
    pub(super) async fn run(mut self) {
        let mut up_since: Option<Instant> = None;
        let mut down: Option<DownKind> = None;
        // Connections in a row that dropped within STABLE; from the second on, the link flaps:
        // one line says so, and connects and drops are quiet until a connection holds.
        let mut short_drops = 0u32;
        let mut flapping = false;
        let mut failed = 0u64;
        loop {
            let ev = self.eventloop.poll().await;
            if short_drops > 0 && up_since.is_some_and(|t| t.elapsed() >= STABLE) {
                short_drops = 0;
                if flapping {
                    flapping = false;
                    tracing::info!(broker = %self.broker, "MQTT connection stable again");
                }
            }
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    // Our ledger, not rumqttc's replay list, decides what is sent again.
                    self.eventloop.pending.clear();
                    up_since = Some(Instant::now());
                    if down.take().is_some() && !flapping {
                        tracing::debug!(failed, "connect attempts before this one");
                    }
                    failed = 0;
                    let ev = LinkEvent::Up {
                        session_present: ack.session_present,
                        quiet: flapping,
                    };
                    if self.tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if self.tx.send(LinkEvent::Sent(pkid)).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    if self.tx.send(LinkEvent::Acked(a.pkid)).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::PubComp(a))) => {
                    if self.tx.send(LinkEvent::Acked(a.pkid)).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let cmd = crate::edge::control::Command {
                        topic: p.topic.to_string(),
                        payload: p.payload.to_vec(),
                        retained: p.retain,
                    };
                    if self.tx.send(LinkEvent::Command(cmd)).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    let _ = self.tx.send(LinkEvent::Closed).await;
                    return;
                }
                Ok(_) => {}
                Err(ConnectionError::RequestsDone) => return,
                Err(e) => {
                    self.metrics.mqtt.connection_errors.fetch_add(1, Relaxed);
                    failed += 1;
                    let kind = classify(&e);
                    if let Some(since) = up_since.take() {
                        let lasted = since.elapsed();
                        if lasted >= STABLE {
                            // A connection that held: the next wait starts short again.
                            self.backoff.reset();
                            short_drops = 0;
                        } else {
                            // Too short to count as a success: the backoff keeps growing.
                            short_drops += 1;
                        }
                        if short_drops <= 1 {
                            tracing::warn!(broker = %self.broker, error = %e, "lost the MQTT broker; spooling");
                        } else if !flapping {
                            flapping = true;
                            tracing::warn!(
                                broker = %self.broker,
                                error = %e,
                                lasted_s = lasted.as_secs_f64(),
                                "lost the MQTT broker soon after connecting (flapping); spooling and backing off"
                            );
                        }
                        let (resume, wait) = oneshot::channel();
                        if self.tx.send(LinkEvent::Down { resume }).await.is_err() {
                            return;
                        }
                        let _ = wait.await;
                        down = Some(kind);
                    } else if down != Some(kind) {
                        match &e {
                            ConnectionError::ConnectionRefused(code) => tracing::error!(
                                broker = %self.broker,
                                reason = refused_reason(*code),
                                "the MQTT broker rejected the login; retrying slowly"
                            ),
                            _ if kind == DownKind::Tls => tracing::error!(
                                broker = %self.broker,
                                error = %e,
                                "TLS with the MQTT broker failed; retrying slowly"
                            ),
                            _ => {
                                tracing::warn!(broker = %self.broker, error = %e, "cannot reach the MQTT broker; spooling and retrying")
                            }
                        }
                        down = Some(kind);
                    }
                    // Whatever was handed to rumqttc is the publisher's to send again.
                    self.eventloop.clean();
                    self.eventloop.pending.clear();
                    let mut delay = self.backoff.next_delay();
                    if kind != DownKind::Unreachable {
                        delay = delay.max(self.max_backoff);
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
