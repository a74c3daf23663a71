//! The one task that owns the rumqttc `EventLoop`. Camera threads hand messages to an [`Outbox`]
//! (never blocking); this task hands them to rumqttc in order (`try_publish`, never blocking),
//! learns each one's packet id from the `Outgoing::Publish` event that follows in the same order,
//! keeps every QoS >= 1 message in a ledger until its PUBACK, and on any reconnect sends the
//! unacknowledged ones again (rumqttc's own replay list is cleared: it drops it anyway when the
//! session is not resumed). While the
//! broker is away QoS >= 1 messages go to the on-disk [`Spool`] and are replayed in order after
//! the next ConnAck; QoS 0 ones are dropped and counted. Reconnects back off exponentially with
//! jitter. Retained state (`available`, camera `status`) is republished on every ConnAck.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::edge::config::{BackoffConfig, MqttConfig, Secret};
use crate::edge::events::{wall_time_now, OutMsg};
use crate::edge::metrics::{Metrics, Snapshot, SourceStatus};
use crate::edge::spool::Spool;

/// Messages from the camera threads to the MQTT task. Bounded: past the capacity the oldest
/// QoS 0 message is dropped; QoS >= 1 messages are only dropped past four times the capacity
/// (the MQTT task moves them to the spool long before).
pub struct Outbox {
    q: Mutex<VecDeque<OutMsg>>,
    notify: tokio::sync::Notify,
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

    fn take_all(&self) -> VecDeque<OutMsg> {
        std::mem::take(&mut *self.q.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_empty(&self) -> bool {
        self.q.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Exponential backoff with jitter (xorshift; no cryptographic needs).
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(cfg: BackoffConfig) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            cfg,
            attempt: 0,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next wait: initial·2^n capped at max, times a uniform factor in [1-jitter, 1+jitter].
    pub fn next_delay(&mut self) -> Duration {
        let base =
            (self.cfg.initial_s * 2f64.powi(self.attempt.min(30) as i32)).min(self.cfg.max_s);
        self.attempt = self.attempt.saturating_add(1);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let u = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        let f = 1.0 + self.cfg.jitter * (2.0 * u - 1.0);
        Duration::from_secs_f64((base * f).max(0.01))
    }
}

/// What the MQTT task needs to run.
pub struct MqttTaskOptions {
    pub cfg: MqttConfig,
    pub password: Option<Secret>,
    pub stats_interval: Duration,
    pub shutdown_timeout: Duration,
    /// Camera names, for the retained `<prefix>/<camera>/status` topics.
    pub cameras: Vec<String>,
}

pub struct MqttTask {
    opts: MqttTaskOptions,
    client: AsyncClient,
    eventloop: EventLoop,
    outbox: Arc<Outbox>,
    spool: Spool,
    metrics: Arc<Metrics>,
    queue: VecDeque<OutMsg>,
    /// Handed to rumqttc, packet id not yet known (rumqttc emits `Outgoing::Publish` in order).
    submitted: VecDeque<OutMsg>,
    /// QoS >= 1 messages sent, not yet acknowledged: packet id -> (local order, message).
    ledger: HashMap<u16, (u64, OutMsg)>,
    next_local: u64,
    connected: bool,
    /// Retained state, republished on every ConnAck: topic -> message.
    retained: BTreeMap<String, OutMsg>,
    available_topic: String,
    stats_topic: String,
    stats_prev: Snapshot,
    stats_interval: Duration,
}

/// Messages kept in memory before newer ones go to the spool.
const MEMORY_QUEUE: usize = 2048;
/// Requests handed to rumqttc ahead of the network (its request channel holds this many).
const PIPELINE: usize = 64;

impl MqttTask {
    pub fn new(
        opts: MqttTaskOptions,
        outbox: Arc<Outbox>,
        spool: Spool,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let cfg = &opts.cfg;
        let broker = cfg.broker().map_err(anyhow::Error::msg)?;
        let prefix = &cfg.topic_prefix;
        let available_topic = format!("{prefix}/available");
        let mut mo = MqttOptions::new(cfg.client_id.clone(), broker.host.clone(), broker.port);
        mo.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
        mo.set_clean_session(cfg.clean_session);
        // rumqttc's default is 10 KiB both ways, and an oversize publish silently kills the
        // connection with everything queued (docs/edge.md).
        mo.set_max_packet_size(cfg.max_packet_size, cfg.max_packet_size);
        mo.set_inflight(cfg.inflight);
        mo.set_last_will(LastWill::new(
            available_topic.clone(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &cfg.username {
            mo.set_credentials(
                user.clone(),
                opts.password
                    .as_ref()
                    .map_or(String::new(), |p| p.expose().to_string()),
            );
        }
        #[cfg(feature = "edge-tls")]
        if broker.tls {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            };
            let ca =
                read(cfg.tls.ca_file.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("mqtt.tls.ca_file is required for mqtts://")
                })?)?;
            let client_auth = match (&cfg.tls.client_cert, &cfg.tls.client_key) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                _ => None,
            };
            mo.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth,
                },
            ));
        }
        #[cfg(not(feature = "edge-tls"))]
        if broker.tls {
            anyhow::bail!("mqtts:// needs the daemon built with --features edge-tls");
        }
        let (client, eventloop) = AsyncClient::new(mo, PIPELINE);
        let mut retained = BTreeMap::new();
        retained.insert(
            available_topic.clone(),
            OutMsg {
                topic: available_topic.clone(),
                payload: "online".into(),
                qos: 1,
                retain: true,
            },
        );
        let stats_interval = opts.stats_interval;
        Ok(Self {
            stats_topic: format!("{prefix}/stats"),
            opts,
            client,
            eventloop,
            outbox,
            spool,
            metrics,
            queue: VecDeque::new(),
            submitted: VecDeque::new(),
            ledger: HashMap::new(),
            next_local: 0,
            connected: false,
            retained,
            available_topic,
            stats_prev: Snapshot::default(),
            stats_interval,
        })
    }

    /// Change the stats period (SIGHUP).
    pub fn set_stats_interval(&mut self, d: Duration) {
        self.stats_interval = d;
    }

    fn update_gauges(&self) {
        let m = &self.metrics.mqtt;
        m.connected.store(self.connected, Relaxed);
        m.queued.store(self.queue.len() as u64, Relaxed);
        m.inflight.store(self.ledger.len() as u64, Relaxed);
        m.spool_messages.store(self.spool.len(), Relaxed);
        m.spool_bytes.store(self.spool.bytes(), Relaxed);
        m.spool_dropped.store(self.spool.dropped, Relaxed);
    }

    fn spool_msg(&mut self, m: &OutMsg) {
        if let Err(e) = self.spool.push(m) {
            tracing::error!(error = %e, spool = %self.spool.dir().display(), "cannot write the spool; message lost");
            self.metrics.mqtt.dropped.fetch_add(1, Relaxed);
        } else {
            self.metrics.mqtt.spooled_total.fetch_add(1, Relaxed);
        }
    }

    /// Route one new message: the memory queue while connected and nothing older waits on disk;
    /// else QoS >= 1 to the spool, QoS 0 dropped. Retained state is never spooled (it is
    /// republished on connect).
    fn route(&mut self, m: OutMsg) {
        if m.retain {
            self.retained.insert(m.topic.clone(), m.clone());
            if self.connected {
                self.queue.push_front(m);
            }
            return;
        }
        if self.connected && self.spool.is_empty() && self.queue.len() < MEMORY_QUEUE {
            self.queue.push_back(m);
        } else if m.qos > 0 {
            self.spool_msg(&m);
        } else {
            self.metrics.mqtt.dropped.fetch_add(1, Relaxed);
        }
    }

    fn drain_outbox(&mut self) {
        for m in self.outbox.take_all() {
            self.route(m);
        }
    }

    /// Camera status changes become retained messages.
    fn check_status(&mut self) {
        let prefix = self.opts.cfg.topic_prefix.clone();
        let q = self.opts.cfg.qos.stats;
        let cams: Vec<_> = self.metrics.cameras.to_vec();
        for c in cams {
            if c.status_changed.swap(false, Relaxed) {
                let s = c.status();
                self.route(OutMsg {
                    topic: format!("{prefix}/{}/status", c.name),
                    payload: s.as_str().into(),
                    qos: q.max(u8::from(s == SourceStatus::Ended)),
                    retain: true,
                });
            }
        }
    }

    fn refill_from_spool(&mut self) {
        while self.connected && self.queue.len() < PIPELINE * 4 && !self.spool.is_empty() {
            match self.spool.pop_oldest() {
                Ok(msgs) => {
                    self.metrics
                        .mqtt
                        .replayed_total
                        .fetch_add(msgs.len() as u64, Relaxed);
                    self.queue.extend(msgs);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    break;
                }
            }
        }
    }

    /// Hand queued messages to rumqttc in order, without blocking, within the in-flight window.
    fn feed(&mut self) {
        let window = usize::from(self.opts.cfg.inflight) + PIPELINE / 2;
        while self.connected && self.submitted.len() + self.ledger.len() < window {
            let Some(m) = self.queue.pop_front() else {
                break;
            };
            match self.client.try_publish(
                m.topic.clone(),
                qos(m.qos),
                m.retain,
                m.payload.clone().into_bytes(),
            ) {
                Ok(()) => {
                    self.submitted.push_back(m);
                    self.metrics.mqtt.published.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    // The request channel is full: try again after the next event.
                    self.queue.push_front(m);
                    break;
                }
            }
        }
    }

    /// rumqttc took the next submitted message and gave it packet id `pkid` (0 for QoS 0).
    fn sent(&mut self, pkid: u16) {
        let Some(m) = self.submitted.pop_front() else {
            return;
        };
        if m.qos > 0 {
            self.next_local += 1;
            self.ledger.insert(pkid, (self.next_local, m));
        }
    }

    fn acked(&mut self, pkid: u16) {
        if self.ledger.remove(&pkid).is_some() {
            self.metrics.mqtt.acked.fetch_add(1, Relaxed);
        }
    }

    /// Unacknowledged QoS >= 1 messages, oldest first: the ledger, then what was handed over but
    /// not yet sent. QoS 0 ones among the latter are dropped (counted).
    fn take_unacked(&mut self) -> Vec<OutMsg> {
        let mut ledger: Vec<(u64, OutMsg)> = self.ledger.drain().map(|(_, v)| v).collect();
        ledger.sort_by_key(|(order, _)| *order);
        let mut out: Vec<OutMsg> = ledger.into_iter().map(|(_, m)| m).collect();
        for m in self.submitted.drain(..) {
            if m.qos > 0 {
                out.push(m);
            } else {
                self.metrics.mqtt.dropped.fetch_add(1, Relaxed);
            }
        }
        out
    }

    fn on_connack(&mut self, session_present: bool) {
        self.connected = true;
        self.metrics.mqtt.connects.fetch_add(1, Relaxed);
        // Our ledger, not rumqttc's replay list, decides what is sent again (the request channel
        // is empty: rumqttc moved it into `pending` when the connection failed, and nothing was
        // handed over since).
        self.eventloop.pending.clear();
        let unacked = self.take_unacked();
        let resent = unacked.len();
        for m in unacked.into_iter().rev() {
            self.queue.push_front(m);
        }
        // Retained state first: `online`, then camera status.
        let retained: Vec<OutMsg> = self.retained.values().cloned().collect();
        for m in retained.into_iter().rev() {
            if m.topic != self.available_topic {
                self.queue.push_front(m);
            }
        }
        if let Some(m) = self.retained.get(&self.available_topic) {
            self.queue.push_front(m.clone());
        }
        tracing::info!(
            session_present,
            resent,
            spooled = self.spool.len(),
            "connected to the MQTT broker"
        );
    }

    /// Run until `stop` is cancelled, then publish `stopped`, flush what is queued (bounded by
    /// the shutdown timeout), spool the rest and disconnect.
    pub async fn run(mut self, stop: CancellationToken, reload: tokio::sync::watch::Receiver<f64>) {
        let mut reload = reload;
        let mut backoff = Backoff::new(self.opts.cfg.backoff.clone());
        let mut retry_at: Option<Instant> = None;
        let mut stats_at = Instant::now() + self.stats_interval;
        let mut drain_until: Option<Instant> = None;
        let mut logged_down = false;
        if !self.spool.is_empty() {
            tracing::info!(
                messages = self.spool.len(),
                dir = %self.spool.dir().display(),
                "spool holds messages from before; they go out first"
            );
        }
        loop {
            self.check_status();
            self.drain_outbox();
            self.refill_from_spool();
            self.feed();
            self.update_gauges();
            if let Some(until) = drain_until {
                let idle = self.queue.is_empty()
                    && self.ledger.is_empty()
                    && self.submitted.is_empty()
                    && self.spool.is_empty()
                    && self.outbox.is_empty();
                if idle || Instant::now() >= until {
                    break;
                }
            }
            let can_poll = retry_at.is_none_or(|t| Instant::now() >= t);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                biased;
                _ = stop.cancelled(), if drain_until.is_none() => {
                    drain_until = Some(Instant::now() + self.opts.shutdown_timeout);
                    // Whatever the camera threads queued last (the `end` events) goes before this.
                    self.drain_outbox();
                    self.route(OutMsg {
                        topic: self.available_topic.clone(),
                        payload: "stopped".into(),
                        qos: 1,
                        retain: true,
                    });
                    // `route` puts retained messages first; `stopped` must come last.
                    if let Some(pos) = self.queue.iter().position(|m| m.topic == self.available_topic && m.payload == "stopped") {
                        if let Some(m) = self.queue.remove(pos) {
                            self.queue.push_back(m);
                        }
                    }
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {}
                ev = self.eventloop.poll(), if can_poll => {
                    match ev {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                            backoff.reset();
                            retry_at = None;
                            logged_down = false;
                            self.on_connack(ack.session_present);
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => self.sent(pkid),
                        Ok(Event::Incoming(Packet::PubAck(a))) => self.acked(a.pkid),
                        Ok(Event::Incoming(Packet::PubComp(a))) => self.acked(a.pkid),
                        Ok(_) => {}
                        Err(e) => {
                            let was = self.connected;
                            self.connected = false;
                            self.metrics.mqtt.connection_errors.fetch_add(1, Relaxed);
                            let delay = backoff.next_delay();
                            retry_at = Some(Instant::now() + delay);
                            if was {
                                tracing::warn!(error = %e, unacked = self.ledger.len(), retry_in_s = delay.as_secs_f64(), "lost the MQTT broker; spooling");
                            } else if !logged_down || backoff.attempts().is_power_of_two() {
                                tracing::warn!(error = %e, attempt = backoff.attempts(), retry_in_s = delay.as_secs_f64(), "cannot reach the MQTT broker");
                            }
                            logged_down = true;
                            if matches!(e, ConnectionError::RequestsDone) {
                                break;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(retry_at.unwrap_or(far)), if !can_poll => {}
                _ = self.outbox.notify.notified() => {}
                _ = tokio::time::sleep_until(stats_at) => {
                    stats_at = Instant::now() + self.stats_interval;
                    let stats = self.metrics.stats_json(&mut self.stats_prev);
                    self.route(OutMsg {
                        topic: self.stats_topic.clone(),
                        payload: stats.to_string(),
                        qos: self.opts.cfg.qos.stats,
                        retain: false,
                    });
                }
                changed = reload.changed() => {
                    if changed.is_ok() {
                        let s = *reload.borrow_and_update();
                        if s > 0.0 {
                            self.stats_interval = Duration::from_secs_f64(s);
                            stats_at = Instant::now() + self.stats_interval;
                        }
                    }
                }
            }
        }
        self.finish().await;
    }

    /// Spool what was not acknowledged and disconnect cleanly (no last will: we said `stopped`).
    async fn finish(mut self) {
        self.drain_outbox();
        let mut left = self.take_unacked();
        let mut qos0 = 0u64;
        for m in std::mem::take(&mut self.queue) {
            if m.retain {
                continue;
            } else if m.qos > 0 {
                left.push(m);
            } else {
                qos0 += 1;
            }
        }
        self.metrics.mqtt.dropped.fetch_add(qos0, Relaxed);
        if !left.is_empty() {
            if let Err(e) = self.spool.push_front(&left) {
                tracing::error!(error = %e, lost = left.len(), "cannot write the spool at shutdown");
            }
        }
        if let Err(e) = self.spool.sync() {
            tracing::error!(error = %e, "cannot sync the spool");
        }
        self.update_gauges();
        if self.connected {
            self.eventloop.pending.clear();
            let _ = self.client.try_disconnect();
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                    Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => break,
                    Ok(Ok(_)) => {}
                    _ => break,
                }
            }
        }
        tracing::info!(
            spooled = self.spool.len(),
            at = %wall_time_now(),
            "MQTT publisher stopped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_within_jitter() {
        let mut b = Backoff::new(BackoffConfig {
            initial_s: 0.5,
            max_s: 4.0,
            jitter: 0.2,
        });
        let want = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0];
        for w in want {
            let d = b.next_delay().as_secs_f64();
            assert!(d >= w * 0.8 - 1e-9 && d <= w * 1.2 + 1e-9, "{d} vs {w}");
        }
        b.reset();
        assert!(b.next_delay().as_secs_f64() <= 0.6);
    }

    #[test]
    fn outbox_drops_qos0_first() {
        let o = Outbox::new(2);
        let m = |q: u8, i: usize| OutMsg {
            topic: "t".into(),
            payload: i.to_string(),
            qos: q,
            retain: false,
        };
        o.push([m(0, 0), m(1, 1), m(1, 2)]);
        assert_eq!(o.dropped(), 1);
        let left: Vec<_> = o.take_all().into_iter().map(|m| m.payload).collect();
        assert_eq!(left, vec!["1", "2"]);
    }
}
