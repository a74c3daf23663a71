//! The publisher task: routes the outbox's messages to rumqttc or the spool, keeps the ledger of
//! unacknowledged QoS >= 1 messages, republishes retained state and publishes stats.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::link::{Link, LinkEvent};
use super::options::mqtt_options;
use super::outbox::Outbox;
use super::oversize::{packet_len, shrink, DeadLetters, SizeGuard};
use crate::edge::config::{ConfigError, MqttConfig, Secret};
use crate::edge::events::{wall_time_now, OutMsg};
use crate::edge::metrics::{Metrics, Snapshot, SourceStatus};
use crate::edge::spool::Spool;
use crate::edge::topics::Topics;

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
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
    /// Retained status topics of cameras that the last run had and this one has not: set to
    /// `ended` on connect (a crash left them `online`).
    pub gone_status_topics: Vec<String>,
    /// Where messages on the control topics go (subscribed on every connect); `None`: no
    /// subscriptions.
    pub commands: Option<mpsc::Sender<crate::edge::control::Request>>,
}

/// A message in memory, and the spool segment it was read from (its file stays until the ack).
struct Queued {
    msg: OutMsg,
    seg: Option<u64>,
    /// Its send number on the current connection ([`SizeGuard::handed`]).
    handed: u64,
}

impl Queued {
    fn fresh(msg: OutMsg) -> Self {
        Self {
            msg,
            seg: None,
            handed: 0,
        }
    }
}

pub struct MqttTask {
    opts: MqttTaskOptions,
    client: AsyncClient,
    link: Option<Link>,
    link_rx: mpsc::Receiver<LinkEvent>,
    outbox: Arc<Outbox>,
    spool: Spool,
    metrics: Arc<Metrics>,
    queue: VecDeque<Queued>,
    /// Handed to rumqttc, packet id not yet known (rumqttc emits `Outgoing::Publish` in order).
    submitted: VecDeque<Queued>,
    /// QoS >= 1 messages sent, not yet acknowledged: packet id -> (local order, message).
    ledger: HashMap<u16, (u64, Queued)>,
    next_local: u64,
    connected: bool,
    /// Retained state, republished on every ConnAck: topic -> message.
    retained: BTreeMap<String, OutMsg>,
    available_topic: String,
    stats_topic: String,
    stats_prev: Snapshot,
    stats_interval: Duration,
    /// Rate limit of the "spool dropped" line.
    spool_logged: Option<(Instant, u64)>,
    /// The broker's packet size limit as learned from dropped connections.
    size_guard: SizeGuard,
    dead_letters: DeadLetters,
    /// Rate limit of the "set aside" line.
    dead_logged: Option<Instant>,
}

/// Messages kept in memory before newer ones go to the spool.
const MEMORY_QUEUE: usize = 2048;
/// Requests handed to rumqttc ahead of the network (its request channel holds this many).
const PIPELINE: usize = 64;
/// At most one "spool dropped messages" line this often.
const SPOOL_LOG_EVERY: Duration = Duration::from_secs(60);

impl MqttTask {
    pub fn new(
        opts: MqttTaskOptions,
        outbox: Arc<Outbox>,
        spool: Spool,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ConfigError> {
        let cfg = &opts.cfg;
        let mo = mqtt_options(cfg, opts.password.as_ref())?;
        let topics = Topics::new(cfg.topic_prefix.as_str());
        let available_topic = topics.available();
        let (client, eventloop) = AsyncClient::new(mo, PIPELINE);
        let (tx, link_rx) = mpsc::channel(1024);
        let link = Link {
            eventloop,
            backoff: Backoff::new(cfg.backoff.clone()),
            max_backoff: Duration::from_secs_f64(cfg.backoff.max_s),
            broker: cfg.url.clone(),
            metrics: metrics.clone(),
            tx,
        };
        let mut retained = BTreeMap::new();
        retained.insert(
            available_topic.clone(),
            OutMsg {
                topic: available_topic.clone(),
                payload: "online".into(),
                qos: 1,
                retain: true,
                bytes: None,
            },
        );
        // Correct what a crash left retained: this run's cameras are starting, gone ones ended.
        for c in &opts.cameras {
            let topic = topics.camera(c).status();
            retained.insert(
                topic.clone(),
                OutMsg {
                    topic,
                    payload: SourceStatus::Starting.as_str().into(),
                    qos: 1,
                    retain: true,
                    bytes: None,
                },
            );
        }
        for topic in &opts.gone_status_topics {
            retained.entry(topic.clone()).or_insert_with(|| OutMsg {
                topic: topic.clone(),
                payload: SourceStatus::Ended.as_str().into(),
                qos: 1,
                retain: true,
                bytes: None,
            });
        }
        let stats_interval = opts.stats_interval;
        let dead_letters = DeadLetters::new(spool.dir());
        Ok(Self {
            stats_topic: topics.stats(),
            opts,
            client,
            link: Some(link),
            link_rx,
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
            spool_logged: None,
            size_guard: SizeGuard::default(),
            dead_letters,
            dead_logged: None,
        })
    }

    /// Change the stats period (SIGHUP).
    pub fn set_stats_interval(&mut self, d: Duration) {
        self.stats_interval = d;
    }

    fn update_gauges(&mut self) {
        let m = &self.metrics.mqtt;
        m.connected.store(self.connected, Relaxed);
        m.queued.store(self.queue.len() as u64, Relaxed);
        m.inflight.store(self.ledger.len() as u64, Relaxed);
        m.spool_messages.store(self.spool.len(), Relaxed);
        m.spool_bytes.store(self.spool.bytes(), Relaxed);
        m.spool_dropped.store(self.spool.dropped, Relaxed);
        // One line per minute at most when the spool had to drop messages.
        let dropped = self.spool.dropped;
        let (due, logged) = match self.spool_logged {
            None => (true, 0),
            Some((at, n)) => (at.elapsed() >= SPOOL_LOG_EVERY, n),
        };
        if dropped > logged && due {
            tracing::warn!(
                dropped = dropped - logged,
                total = dropped,
                spool = %self.spool.dir().display(),
                bytes = self.spool.bytes(),
                "spool full (service.spool_max_bytes or the disk): dropped the oldest messages"
            );
            self.spool_logged = Some((Instant::now(), dropped));
        }
    }

    fn spool_msg(&mut self, m: &OutMsg) {
        if let Err(e) = self.spool.push(m) {
            // Not even after dropping older segments: counted with the spool's drops.
            self.spool.dropped += 1;
            tracing::debug!(error = %e, "cannot write the spool; message lost");
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
                // Ahead of the events, behind the retained messages already waiting: two
                // changes of one topic go out in the order they happened, so the broker
                // keeps the newer.
                let at = self
                    .queue
                    .iter()
                    .position(|q| !q.msg.retain)
                    .unwrap_or(self.queue.len());
                self.queue.insert(at, Queued::fresh(m));
            }
            return;
        }
        if self.connected && self.spool.is_empty() && self.queue.len() < MEMORY_QUEUE {
            self.queue.push_back(Queued::fresh(m));
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
        let topics = Topics::new(self.opts.cfg.topic_prefix.as_str());
        let q = self.opts.cfg.qos.stats;
        let cams = self.metrics.cameras();
        for c in cams {
            for s in c.take_status_changes() {
                self.route(OutMsg {
                    topic: topics.camera(&c.name).status(),
                    payload: s.as_str().into(),
                    qos: q.max(u8::from(s == SourceStatus::Ended)),
                    retain: true,
                    bytes: None,
                });
            }
        }
    }

    fn refill_from_spool(&mut self) {
        while self.connected && self.queue.len() < PIPELINE * 4 && !self.spool.is_empty() {
            match self.spool.take_oldest() {
                Ok(Some((seg, msgs))) => {
                    self.metrics
                        .mqtt
                        .replayed_total
                        .fetch_add(msgs.len() as u64, Relaxed);
                    self.queue.extend(msgs.into_iter().map(|msg| Queued {
                        msg,
                        seg: Some(seg),
                        handed: 0,
                    }));
                }
                Ok(None) => break,
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
            let Some(mut q) = self.queue.pop_front() else {
                break;
            };
            let limit = self.size_guard.limit(self.opts.cfg.max_packet_size);
            if packet_len(&q.msg) > limit {
                match shrink(&q.msg, limit) {
                    Some(small) => {
                        self.metrics.mqtt.masks_stripped.fetch_add(1, Relaxed);
                        q.msg = small;
                    }
                    None => {
                        self.set_aside(q, limit);
                        continue;
                    }
                }
            }
            let m = &q.msg;
            match self
                .client
                .try_publish(m.topic.clone(), qos(m.qos), m.retain, m.wire_bytes())
            {
                Ok(()) => {
                    q.handed = self.size_guard.handed(&q.msg);
                    self.submitted.push_back(q);
                    self.metrics.mqtt.published.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    // The request channel is full: try again after the next event.
                    self.queue.push_front(q);
                    break;
                }
            }
        }
    }

    /// rumqttc took the next submitted message and gave it packet id `pkid` (0 for QoS 0).
    fn sent(&mut self, pkid: u16) {
        let Some(q) = self.submitted.pop_front() else {
            return;
        };
        if q.msg.qos > 0 {
            self.next_local += 1;
            self.ledger.insert(pkid, (self.next_local, q));
        }
    }

    fn acked(&mut self, pkid: u16) {
        if let Some((_, q)) = self.ledger.remove(&pkid) {
            self.size_guard.accepted_through(q.handed);
            self.metrics.mqtt.acked.fetch_add(1, Relaxed);
            if let Some(seg) = q.seg {
                if let Err(e) = self.spool.ack(seg) {
                    tracing::warn!(error = %e, "cannot remove a replayed spool segment");
                }
            }
        }
    }

    /// Every QoS >= 1 message not acknowledged, oldest first: the ledger, what was handed over
    /// but not yet sent, then the queue. QoS 0 ones are dropped (counted); retained ones are
    /// left out (republished on connect).
    fn take_unacked(&mut self) -> Vec<Queued> {
        let mut ledger: Vec<(u64, Queued)> = self.ledger.drain().map(|(_, v)| v).collect();
        ledger.sort_by_key(|(order, _)| *order);
        let mut out: Vec<Queued> = ledger.into_iter().map(|(_, q)| q).collect();
        let rest: Vec<Queued> = self
            .submitted
            .drain(..)
            .chain(self.queue.drain(..))
            .collect();
        for q in rest {
            if q.msg.retain {
                continue;
            } else if q.msg.qos > 0 {
                out.push(q);
            } else {
                self.metrics.mqtt.dropped.fetch_add(1, Relaxed);
            }
        }
        out
    }

    /// Move everything unacknowledged to disk: replayed segments go back to the spool's front
    /// (their files never left), the others are written in front of them. Kept in memory only
    /// if the spool cannot be written.
    fn persist_unacked(&mut self) {
        let unacked = self.take_unacked();
        let fresh: Vec<OutMsg> = unacked
            .iter()
            .filter(|q| q.seg.is_none())
            .map(|q| q.msg.clone())
            .collect();
        self.spool.requeue_inflight();
        if let Err(e) = self.spool.push_front(&fresh) {
            tracing::error!(error = %e, messages = fresh.len(), "cannot write the spool; keeping the messages in memory");
            self.queue
                .extend(unacked.into_iter().filter(|q| q.seg.is_none()));
        }
    }

    fn on_up(&mut self, session_present: bool, quiet: bool) {
        self.connected = true;
        self.metrics.mqtt.connects.fetch_add(1, Relaxed);
        // Subscribed again on every connect: a broker restart forgets a clean session's
        // subscriptions.
        if self.opts.commands.is_some() {
            let topics = Topics::new(self.opts.cfg.topic_prefix.as_str());
            for filter in topics.control_filters() {
                if let Err(e) = self.client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    tracing::warn!(topic = %filter, error = %e, "cannot subscribe to a control topic");
                }
            }
        }
        // Retained state first: `online`, then camera status.
        let retained: Vec<OutMsg> = self.retained.values().cloned().collect();
        for m in retained.into_iter().rev() {
            if m.topic != self.available_topic {
                self.queue.push_front(Queued::fresh(m));
            }
        }
        if let Some(m) = self.retained.get(&self.available_topic) {
            self.queue.push_front(Queued::fresh(m.clone()));
        }
        if !quiet {
            tracing::info!(
                session_present,
                spooled = self.spool.len(),
                "connected to the MQTT broker"
            );
        }
    }

    /// A control message: to the supervisor (a full channel drops it, counted).
    fn command(&mut self, cmd: crate::edge::control::Command) {
        if let Some(tx) = &self.opts.commands {
            if tx
                .try_send(crate::edge::control::Request::Mqtt(cmd))
                .is_err()
            {
                self.metrics.mqtt.commands_rejected.fetch_add(1, Relaxed);
                tracing::warn!("control command dropped: too many at once");
            }
        }
    }

    /// A message larger than the broker takes, even shrunk: to the dead-letter file, counted,
    /// with an ERROR (at most one a minute); the messages behind it go on.
    fn set_aside(&mut self, q: Queued, limit: usize) {
        let m = &q.msg;
        let size = packet_len(m);
        self.metrics.mqtt.too_large.fetch_add(1, Relaxed);
        let saved = self.dead_letters.put(m, limit);
        if self
            .dead_logged
            .is_none_or(|t| t.elapsed() >= SPOOL_LOG_EVERY)
        {
            self.dead_logged = Some(Instant::now());
            tracing::error!(
                topic = %m.topic,
                bytes = size,
                limit,
                file = %self.dead_letters.path().display(),
                saved = saved.is_ok(),
                total = self.metrics.mqtt.too_large.load(Relaxed),
                "message larger than the broker accepts, even without its mask: set aside; the messages after it go on"
            );
        }
        if let Some(seg) = q.seg {
            if let Err(e) = self.spool.ack(seg) {
                tracing::warn!(error = %e, "cannot release a spool segment");
            }
        }
    }

    fn on_down(&mut self) {
        self.connected = false;
        if let Some(limit) = self.size_guard.dropped() {
            tracing::error!(
                limit,
                configured = self.opts.cfg.max_packet_size,
                "the MQTT broker dropped the connection twice on the same message: it takes no packet above {limit} bytes; larger messages are sent without their mask or set aside (set mqtt.max_packet_size, and the broker's max_packet_size, to agree)"
            );
        }
        self.persist_unacked();
        if let Err(e) = self.spool.sync() {
            tracing::warn!(error = %e, "cannot sync the spool");
        }
    }

    /// Run until `stop` is cancelled, then publish `stopped`, flush what is queued (bounded by
    /// the shutdown timeout), spool the rest and disconnect.
    pub async fn run(mut self, stop: CancellationToken, reload: tokio::sync::watch::Receiver<f64>) {
        let mut reload = reload;
        let link_task = match self.link.take() {
            Some(link) => tokio::spawn(link.run()),
            None => return,
        };
        let mut stats_at = Instant::now() + self.stats_interval;
        let mut drain_until: Option<Instant> = None;
        if !self.spool.is_empty() {
            tracing::info!(
                messages = self.spool.len(),
                dir = %self.spool.dir().display(),
                "spool holds messages from before; they go out first"
            );
        }
        let far = Duration::from_secs(3600);
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
                    && self.spool.inflight_segments() == 0
                    && self.outbox.is_empty();
                if idle || Instant::now() >= until {
                    break;
                }
            }
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
                        bytes: None,
                    });
                    // `route` puts retained messages first; `stopped` must come last.
                    if let Some(pos) = self.queue.iter().position(|q| q.msg.topic == self.available_topic && q.msg.payload == "stopped") {
                        if let Some(q) = self.queue.remove(pos) {
                            self.queue.push_back(q);
                        }
                    }
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or(Instant::now() + far)), if drain_until.is_some() => {}
                ev = self.link_rx.recv() => {
                    match ev {
                        Some(LinkEvent::Up { session_present, quiet }) => self.on_up(session_present, quiet),
                        Some(LinkEvent::Sent(pkid)) => self.sent(pkid),
                        Some(LinkEvent::Acked(pkid)) => self.acked(pkid),
                        Some(LinkEvent::Down { resume }) => {
                            self.on_down();
                            let _ = resume.send(());
                        }
                        Some(LinkEvent::Command(cmd)) => self.command(cmd),
                        Some(LinkEvent::Closed) | None => {
                            self.connected = false;
                            if drain_until.is_none() {
                                tracing::error!("the MQTT link task ended");
                            }
                            break;
                        }
                    }
                }
                _ = self.outbox.notify.notified() => {}
                _ = tokio::time::sleep_until(stats_at) => {
                    stats_at = Instant::now() + self.stats_interval;
                    let stats = self.metrics.stats_json(&mut self.stats_prev);
                    self.route(OutMsg {
                        topic: self.stats_topic.clone(),
                        payload: stats.to_string(),
                        qos: self.opts.cfg.qos.stats,
                        retain: false,
                        bytes: None,
                    });
                }
                changed = reload.changed() => {
                    if changed.is_ok() {
                        let s = *reload.borrow_and_update();
                        if s > 0.0 && s.is_finite() {
                            self.stats_interval = Duration::from_secs_f64(s);
                            stats_at = Instant::now() + self.stats_interval;
                        }
                    }
                }
            }
        }
        self.finish(link_task).await;
    }

    /// Spool what was not acknowledged and disconnect cleanly (no last will: we said `stopped`).
    async fn finish(mut self, link_task: tokio::task::JoinHandle<()>) {
        self.drain_outbox();
        self.persist_unacked();
        if let Err(e) = self.spool.sync() {
            tracing::error!(error = %e, "cannot sync the spool");
        }
        self.update_gauges();
        if self.connected {
            let _ = self.client.try_disconnect();
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                match tokio::time::timeout_at(deadline, self.link_rx.recv()).await {
                    Ok(Some(LinkEvent::Closed)) | Ok(None) | Err(_) => break,
                    Ok(Some(LinkEvent::Down { resume })) => {
                        let _ = resume.send(());
                        break;
                    }
                    Ok(Some(_)) => {}
                }
            }
        }
        link_task.abort();
        tracing::info!(
            spooled = self.spool.len(),
            at = %wall_time_now(),
            "MQTT publisher stopped"
        );
    }
}
