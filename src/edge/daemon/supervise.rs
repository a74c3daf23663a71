//! The daemon's async part: MQTT task, metrics endpoint and cameras started, then signals,
//! control commands, watchdog pings and status lines served until shutdown.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cameras::{join_stopped, CameraSet, CameraShared};
use super::{
    load_config, notify, run_id, DaemonError, Exit, HotSettings, RunOptions, JOIN_TIMEOUT,
};
use crate::edge::config::{self, CameraConfig, EdgeConfig};
use crate::edge::control::{self, Command, Request, SwitchStore};
use crate::edge::discovery::Discovery;
use crate::edge::events::OutMsg;
use crate::edge::metrics::{Metrics, SourceStatus};
use crate::edge::mqtt::{MqttTask, MqttTaskOptions, Outbox};
use crate::edge::spool::Spool;
use crate::edge::topics::{Control, Switch, Topics};
use crate::runtime::Engine;
use crate::tracking::EndReason;

/// What the daemon's async part runs on: the configuration and what `run` prepared.
pub(super) struct DaemonParts {
    pub(super) cfg: EdgeConfig,
    pub(super) opts: RunOptions,
    pub(super) engine: Arc<dyn Engine>,
    pub(super) class_names: Vec<String>,
    pub(super) password: Option<config::Secret>,
    pub(super) spool: Spool,
    pub(super) gone_status_topics: Vec<String>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) store: Option<(crate::edge::store::Store, std::thread::JoinHandle<()>)>,
}

pub(super) async fn async_main(parts: DaemonParts) -> Result<Exit, DaemonError> {
    let DaemonParts {
        cfg,
        opts,
        engine,
        class_names,
        password,
        spool,
        gone_status_topics,
        metrics,
        store,
    } = parts;
    let (store, store_worker) = match store {
        Some((s, w)) => (Some(s), Some(w)),
        None => (None, None),
    };
    let root = CancellationToken::new();
    let mqtt_stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let outbox = Arc::new(Outbox::new(4096));
    let hot = Arc::new(HotSettings::new(&cfg));
    let (stats_tx, stats_rx) = tokio::sync::watch::channel(cfg.service.stats_interval_s);
    let run = run_id();
    tracing::info!(run = %run, "starting");

    // Signals first, so that none is lost while starting.
    let mut signals = Signals::install()?;

    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel::<Request>(64);
    let mqtt = MqttTask::new(
        mqtt_task_options(&cfg, password, gone_status_topics, commands_tx.clone()),
        outbox.clone(),
        spool,
        metrics.clone(),
    )?;
    let mqtt_handle = tracker.spawn(mqtt.run(mqtt_stop.clone(), stats_rx));
    serve_http(
        &cfg,
        &tracker,
        &metrics,
        commands_tx,
        store.as_ref().map(|s| s.path().to_path_buf()),
        &root,
    )
    .await?;

    if let Some(dir) = &opts.overlay_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }

    let engines_done = Arc::new(tokio::sync::Notify::new());
    let mut cameras = CameraSet::new(CameraShared {
        cfg: cfg.clone(),
        engine,
        class_names,
        metrics: metrics.clone(),
        outbox: outbox.clone(),
        hot: hot.clone(),
        run,
        overlay_dir: opts.overlay_dir.clone(),
        root: root.clone(),
        live: Arc::default(),
        engines_done: engines_done.clone(),
        store,
    });
    let switches = SwitchStore::open(&cfg.service.spool_path());
    let topics = Topics::new(cfg.mqtt.topic_prefix.as_str());
    for (i, c) in cfg.cameras.iter().enumerate() {
        add_camera(&mut cameras, &switches, &topics, i, c)?;
    }

    // Ready: model loaded, pipelines started, MQTT task running.
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("running"),
    ]);
    tracing::info!(
        cameras = cfg.cameras.len(),
        prefix = %cfg.mqtt.topic_prefix,
        broker = %cfg.mqtt.url,
        "ready"
    );

    let mut supervisor = Supervisor {
        watchdog: sd_notify::watchdog_enabled().filter(|_| cfg.service.watchdog),
        watchdog_on: cfg.service.watchdog,
        withheld: false,
        cur: cfg.clone(),
        hot,
        stats_tx,
        metrics,
        cameras,
        switches,
        topics,
        outbox,
        commands: commands_rx,
    };
    let exit = supervisor
        .wait_for_stop(&mut signals, &engines_done, &opts)
        .await;
    let threads = supervisor.cameras.take_threads();
    shutdown(root, threads, mqtt_stop, tracker, mqtt_handle).await;
    // The store's last writes (the ends of shutdown) are committed before exit.
    drop(supervisor);
    if let Some(w) = store_worker {
        let joined = tokio::task::spawn_blocking(move || w.join());
        if tokio::time::timeout(JOIN_TIMEOUT, joined).await.is_err() {
            tracing::error!("the event store did not finish in time");
        }
    }
    Ok(exit)
}

/// Home Assistant's entities of `camera` (`[mqtt] home_assistant`), or the messages that remove
/// them.
fn discovery_messages(
    shared: &CameraShared,
    topics: &Topics,
    camera: &str,
    removed: bool,
) -> Vec<OutMsg> {
    let m = &shared.cfg.mqtt;
    if !m.home_assistant {
        return Vec::new();
    }
    let d = Discovery {
        topics,
        discovery_prefix: &m.discovery_prefix,
        client_id: &m.client_id,
        model: &shared.metrics.model,
        labels: &shared.class_names,
    };
    if removed {
        d.camera_removed(camera)
    } else {
        d.camera_configs(camera)
    }
}

/// Camera `i` as the daemon starts or SIGHUP adds it: its switches from the store (told on the
/// retained state topics), started unless `enabled` is off.
fn add_camera(
    cameras: &mut CameraSet,
    switches: &SwitchStore,
    topics: &Topics,
    i: usize,
    c: &CameraConfig,
) -> Result<(), DaemonError> {
    let sw = switches.get(&c.name);
    let cam = cameras.shared.metrics.add_camera(&c.name);
    cameras
        .shared
        .outbox
        .push(discovery_messages(&cameras.shared, topics, &c.name, false));
    cam.detect.store(sw.detect, Relaxed);
    cam.snapshots_on.store(sw.snapshots, Relaxed);
    cameras.shared.outbox.push(
        Switch::ALL
            .iter()
            .map(|s| control::state_message(topics, &c.name, *s, sw.get(*s))),
    );
    if sw.enabled {
        cameras.start(i, c)
    } else {
        tracing::info!(camera = %c.name, "camera disabled (enabled switch OFF): not started");
        cam.set_status(SourceStatus::Disabled);
        Ok(())
    }
}

/// The MQTT task's options from the config.
fn mqtt_task_options(
    cfg: &EdgeConfig,
    password: Option<config::Secret>,
    gone_status_topics: Vec<String>,
    commands: tokio::sync::mpsc::Sender<Request>,
) -> MqttTaskOptions {
    MqttTaskOptions {
        cfg: cfg.mqtt.clone(),
        password,
        stats_interval: Duration::from_secs_f64(cfg.service.stats_interval_s),
        shutdown_timeout: Duration::from_secs_f64(cfg.service.shutdown_timeout_s),
        cameras: cfg.cameras.iter().map(|c| c.name.clone()).collect(),
        gone_status_topics,
        commands: Some(commands),
    }
}

/// The signals the daemon handles.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, DaemonError> {
        use tokio::signal::unix::{signal, SignalKind};
        let term =
            signal(SignalKind::terminate()).map_err(|e| anyhow::anyhow!("SIGTERM handler: {e}"))?;
        let int =
            signal(SignalKind::interrupt()).map_err(|e| anyhow::anyhow!("SIGINT handler: {e}"))?;
        let hup =
            signal(SignalKind::hangup()).map_err(|e| anyhow::anyhow!("SIGHUP handler: {e}"))?;
        Ok(Self { term, int, hup })
    }
}

/// The HTTP server (`/metrics` and the API), unless its address is `""`.
async fn serve_http(
    cfg: &EdgeConfig,
    tracker: &TaskTracker,
    metrics: &Arc<Metrics>,
    requests: tokio::sync::mpsc::Sender<Request>,
    store: Option<std::path::PathBuf>,
    root: &CancellationToken,
) -> Result<(), DaemonError> {
    let listen = cfg.http_listen();
    if listen.is_empty() {
        return Ok(());
    }
    let token = config::http_token(&cfg.http, &config::process_env())?;
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("http.listen {listen}: {e}"))?;
    tracing::info!(
        addr = %listen,
        token = token.as_ref().map_or("none", |(_, from)| from.as_str()),
        "HTTP server: /metrics and /api"
    );
    let state = crate::edge::http::HttpState {
        metrics: metrics.clone(),
        requests,
        token: token.map(|(t, _)| t),
        store,
        snapshots_dir: cfg.service.spool_path().join("snapshots"),
        clips_dir: cfg.service.spool_path().join("clips"),
        stop: root.clone(),
    };
    let stopped = crate::edge::http::spawn(listener, state, root.clone(), &cfg.http)
        .map_err(|e| anyhow::anyhow!("HTTP server thread: {e}"))?;
    tracker.spawn(async move {
        let _ = stopped.await;
    });
    Ok(())
}

/// The running daemon's state between signals: the config in force, what SIGHUP changes, and
/// the watchdog.
struct Supervisor {
    watchdog: Option<Duration>,
    watchdog_on: bool,
    /// A ping is being withheld (a camera thread is unresponsive).
    withheld: bool,
    cur: EdgeConfig,
    hot: Arc<HotSettings>,
    stats_tx: tokio::sync::watch::Sender<f64>,
    metrics: Arc<Metrics>,
    cameras: CameraSet,
    switches: SwitchStore,
    topics: Topics,
    outbox: Arc<Outbox>,
    /// What the front-ends ask: MQTT control messages, HTTP switch requests.
    commands: tokio::sync::mpsc::Receiver<Request>,
}

impl Supervisor {
    /// Serves signals, watchdog pings and status lines until SIGTERM or SIGINT (or the end of
    /// every stream with `--exit-on-eos`).
    async fn wait_for_stop(
        &mut self,
        signals: &mut Signals,
        engines_done: &tokio::sync::Notify,
        opts: &RunOptions,
    ) -> Exit {
        let ping_every = self.watchdog.map_or(Duration::from_secs(3600), |d| d / 2);
        let mut ping = tokio::time::interval(ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = signals.term.recv() => { tracing::info!("SIGTERM: shutting down"); return Exit::Stopped; }
                _ = signals.int.recv() => { tracing::info!("SIGINT: shutting down"); return Exit::Stopped; }
                Some(req) = self.commands.recv() => match req {
                    Request::Mqtt(cmd) => {
                        if self.command(cmd).await {
                            tracing::info!("restart requested over MQTT: shutting down (exit 75; systemd starts the daemon again)");
                            return Exit::Restart;
                        }
                    }
                    Request::Switch { camera, switch, on, reply } => {
                        let answer = match self.cur.cameras.iter().position(|c| c.name == camera) {
                            Some(index) => {
                                self.set_switch(index, switch, on).await;
                                Ok(())
                            }
                            None => Err(format!("no camera `{camera}`")),
                        };
                        if let Some(r) = reply {
                            let _ = r.send(answer);
                        }
                    }
                },
                _ = engines_done.notified() => {
                    if opts.exit_on_eos {
                        tracing::info!("every camera reached end of stream: shutting down (--exit-on-eos)");
                        return Exit::Stopped;
                    }
                    tracing::info!("every camera has ended; still serving MQTT and metrics");
                }
                _ = signals.hup.recv() => self.reload(opts).await,
                _ = ping.tick(), if self.watchdog.is_some() => self.ping_watchdog(),
                _ = status_tick.tick() => {
                    let s = status_line(&self.metrics);
                    notify(&[sd_notify::NotifyState::Status(&s)]);
                }
            }
        }
    }

    /// SIGHUP: reload the config file; the hot settings take effect, cameras added, removed or
    /// changed are started, stopped or restarted (alone), other cold changes are logged.
    async fn reload(&mut self, opts: &RunOptions) {
        let now_us = sd_notify::NotifyState::monotonic_usec_now().ok();
        let mut st = vec![sd_notify::NotifyState::Reloading];
        if let Some(m) = now_us {
            st.push(m);
        }
        notify(&st);
        match load_config(opts.config.as_deref()) {
            Ok(new) => {
                let cold = self.cur.cold_changes(&new);
                if !cold.is_empty() {
                    tracing::warn!(keys = ?cold, "SIGHUP: these changed keys need a restart; kept the running values");
                }
                // Unchanged cameras take the new rules and tracking overrides (hot); the others
                // are started, stopped or restarted below, with the new global settings.
                let old = std::mem::replace(&mut self.cur.cameras, new.cameras.clone());
                let _ = self.stats_tx.send(new.service.stats_interval_s);
                self.watchdog_on = new.service.watchdog;
                self.cur.tracking = new.tracking;
                self.cur.publish = new.publish.clone();
                self.cur.service.stats_interval_s = new.service.stats_interval_s;
                self.cur.service.watchdog = new.service.watchdog;
                self.hot.set(&self.cur);
                self.apply_cameras(&old).await;
                tracing::info!("SIGHUP: configuration reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: configuration rejected; kept the running one")
            }
        }
        notify(&[sd_notify::NotifyState::Ready]);
    }

    /// SIGHUP's camera changes: `old` was the list before, `self.cur.cameras` is the new one.
    /// Removed cameras stop (their tracks end `camera_removed`, their retained topics are
    /// cleared); new ones start; changed ones restart (`reconfigured`); the rest run on.
    async fn apply_cameras(&mut self, old: &[CameraConfig]) {
        let new = self.cur.cameras.clone();
        for o in old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)) {
            let cam = self.cameras.metrics_of(&o.name);
            if let Some(threads) = self.cameras.stop(&o.name, EndReason::CameraRemoved) {
                join_stopped(threads, cam, SourceStatus::Ended).await;
            }
            self.metrics.remove_camera(&o.name);
            if let Err(e) = self.switches.forget(&o.name) {
                tracing::warn!(error = %e, "cannot write the switches file");
            }
            // Its retained topics are cleared (an empty retained message deletes one).
            let ct = self.topics.camera(&o.name);
            let mut gone = vec![ct.status()];
            gone.extend(Switch::ALL.iter().map(|s| ct.state(*s)));
            gone.extend(self.cameras.shared.class_names.iter().map(|l| ct.count(l)));
            self.outbox.push(discovery_messages(
                &self.cameras.shared,
                &self.topics,
                &o.name,
                true,
            ));
            self.outbox.push(gone.into_iter().map(|topic| OutMsg {
                topic,
                payload: String::new(),
                qos: 1,
                retain: true,
                bytes: None,
            }));
            tracing::info!(camera = %o.name, "SIGHUP: camera removed");
        }
        for (i, n) in new.iter().enumerate() {
            match old.iter().find(|o| o.name == n.name) {
                None => match add_camera(&mut self.cameras, &self.switches, &self.topics, i, n) {
                    Ok(()) => tracing::info!(camera = %n.name, "SIGHUP: camera added"),
                    Err(e) => {
                        tracing::error!(camera = %n.name, error = %e, "SIGHUP: cannot start the new camera")
                    }
                },
                Some(o) if o.cold() != n.cold() && self.cameras.is_running(&n.name) => {
                    let cam = self.cameras.metrics_of(&n.name);
                    if let Some(threads) = self.cameras.stop(&n.name, EndReason::Reconfigured) {
                        join_stopped(threads, cam, SourceStatus::Starting).await;
                    }
                    match self.cameras.start(i, n) {
                        Ok(()) => {
                            tracing::info!(camera = %n.name, "SIGHUP: camera restarted with its new settings")
                        }
                        Err(e) => {
                            tracing::error!(camera = %n.name, error = %e, "SIGHUP: cannot restart the camera")
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// A message on a control topic; returns true when it asks for a restart.
    async fn command(&mut self, cmd: Command) -> bool {
        let rejected = &self.metrics.mqtt.commands_rejected;
        if cmd.retained {
            // A retained `/set` is an old command the broker keeps: acting on it at every
            // start would undo later changes. Only fresh commands count.
            rejected.fetch_add(1, Relaxed);
            tracing::info!(topic = %cmd.topic, "retained control message not acted on (clear it: mosquitto_pub -r -n -t TOPIC)");
            return false;
        }
        let shown = String::from_utf8_lossy(&cmd.payload)
            .chars()
            .take(40)
            .collect::<String>();
        let (camera, switch) = match self.topics.parse_control(&cmd.topic) {
            Some(Control::Restart) => {
                self.metrics.mqtt.commands.fetch_add(1, Relaxed);
                return true;
            }
            Some(Control::Set(camera, switch)) => (camera.to_string(), switch),
            None => {
                rejected.fetch_add(1, Relaxed);
                tracing::warn!(topic = %cmd.topic, "not a control topic; ignored");
                return false;
            }
        };
        let Some(on) = control::parse_on_off(&cmd.payload) else {
            rejected.fetch_add(1, Relaxed);
            tracing::warn!(topic = %cmd.topic, payload = %shown.escape_debug(), "control payload is not ON or OFF; ignored");
            return false;
        };
        let Some(index) = self.cur.cameras.iter().position(|c| c.name == camera) else {
            rejected.fetch_add(1, Relaxed);
            tracing::warn!(topic = %cmd.topic, camera = %camera, "no such camera; ignored");
            return false;
        };
        self.metrics.mqtt.commands.fetch_add(1, Relaxed);
        self.set_switch(index, switch, on).await;
        false
    }

    /// Switch camera `index` (of the config in force): the one place every front-end switches
    /// a camera through. Saved, acted on, told on the retained state topic.
    async fn set_switch(&mut self, index: usize, switch: Switch, on: bool) {
        let Some(cfg) = self.cur.cameras.get(index).cloned() else {
            return;
        };
        let name = cfg.name.as_str();
        if let Err(e) = self.switches.set(name, switch, on) {
            tracing::warn!(error = %e, "cannot write the switches file; the switch holds until restart");
        }
        let cam = self.metrics.camera(name);
        match switch {
            Switch::Detect => {
                if let Some(c) = &cam {
                    c.detect.store(on, Relaxed);
                }
            }
            Switch::Snapshots => {
                if let Some(c) = &cam {
                    c.snapshots_on.store(on, Relaxed);
                }
            }
            Switch::Enabled if on => {
                if !self.cameras.is_running(name) {
                    if let Err(e) = self.cameras.start(index, &cfg) {
                        tracing::error!(camera = %name, error = %e, "cannot start the camera");
                    }
                }
            }
            Switch::Enabled => {
                if let Some(threads) = self.cameras.stop(name, EndReason::Disabled) {
                    join_stopped(threads, cam, SourceStatus::Disabled).await;
                }
            }
        }
        self.outbox
            .push([control::state_message(&self.topics, name, switch, on)]);
        tracing::info!(camera = %name, switch = switch.as_str(), state = control::on_off(on), "switch set");
    }

    /// Pings the watchdog while every camera's threads are alive (or ended); withholds it, with
    /// one line, while one is not.
    fn ping_watchdog(&mut self) {
        let limit = self.watchdog.map_or(0, |d| d.as_millis() as u64);
        let metrics = &self.metrics;
        let now = metrics.now_ms();
        let healthy = metrics.cameras().iter().all(|c| {
            matches!(c.status(), SourceStatus::Ended | SourceStatus::Disabled)
                || (now.saturating_sub(c.engine_alive_ms.load(Relaxed)) < limit
                    && now.saturating_sub(c.source_alive_ms.load(Relaxed)) < limit)
        });
        if healthy && self.watchdog_on {
            notify(&[sd_notify::NotifyState::Watchdog]);
            if self.withheld {
                tracing::info!("threads responsive again: watchdog pings resumed");
                self.withheld = false;
            }
        } else if !self.withheld {
            tracing::warn!("a camera thread is unresponsive: withholding the watchdog ping");
            self.withheld = true;
        }
    }
}

/// Stops the cameras (sources stop, engine threads end their tracks into the outbox), then the
/// MQTT task (it flushes and spools what is left) and every other task.
async fn shutdown(
    root: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
    mqtt_stop: CancellationToken,
    tracker: TaskTracker,
    mqtt_handle: tokio::task::JoinHandle<()>,
) {
    notify(&[sd_notify::NotifyState::Stopping]);
    root.cancel();
    // Join the camera threads (sources stop, engine threads end their tracks into the outbox).
    let joined = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    if tokio::time::timeout(JOIN_TIMEOUT, joined).await.is_err() {
        tracing::error!(
            timeout_s = JOIN_TIMEOUT.as_secs(),
            "camera threads did not stop in time"
        );
    }
    mqtt_stop.cancel();
    tracker.close();
    let _ = mqtt_handle.await;
    tracker.wait().await;
    let rss = crate::edge::metrics::rss_bytes();
    tracing::info!(rss_mb = rss as f64 / 1048576.0, "stopped");
}

fn status_line(m: &Metrics) -> String {
    let mut parts: Vec<String> = m
        .cameras()
        .iter()
        .map(|c| {
            format!(
                "{}: {} {} frames {} tracks",
                c.name,
                c.status().as_str(),
                c.frames_processed.load(Relaxed),
                c.tracks_active.load(Relaxed)
            )
        })
        .collect();
    parts.push(format!(
        "mqtt {}",
        if m.mqtt.connected.load(Relaxed) {
            "connected"
        } else {
            "disconnected"
        }
    ));
    parts.push(format!("spool {}", m.mqtt.spool_messages.load(Relaxed)));
    parts.join("; ")
}
