//! The daemon's async part: MQTT task, metrics endpoint and cameras started, then signals,
//! watchdog pings and status lines served until shutdown.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    load_config, notify, run_id, start_cameras, CameraStart, DaemonError, HotSettings, RunOptions,
    JOIN_TIMEOUT,
};
use crate::edge::config::{self, EdgeConfig};
use crate::edge::metrics::{Metrics, SourceStatus};
use crate::edge::mqtt::{MqttTask, MqttTaskOptions, Outbox};
use crate::edge::spool::Spool;
use crate::runtime::Engine;

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
}

pub(super) async fn async_main(parts: DaemonParts) -> Result<(), DaemonError> {
    let DaemonParts {
        cfg,
        opts,
        engine,
        class_names,
        password,
        spool,
        gone_status_topics,
        metrics,
    } = parts;
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

    let mqtt = MqttTask::new(
        mqtt_task_options(&cfg, password, gone_status_topics),
        outbox.clone(),
        spool,
        metrics.clone(),
    )?;
    let mqtt_handle = tracker.spawn(mqtt.run(mqtt_stop.clone(), stats_rx));
    serve_metrics(&cfg, &tracker, &metrics, &root).await?;

    if let Some(dir) = &opts.overlay_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }

    let cameras = start_cameras(&CameraStart {
        cfg: &cfg,
        engine: &engine,
        class_names: &class_names,
        metrics: &metrics,
        outbox: &outbox,
        hot: &hot,
        run: &run,
        overlay_dir: &opts.overlay_dir,
        root: &root,
    })?;

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

    let supervisor = Supervisor {
        watchdog: sd_notify::watchdog_enabled().filter(|_| cfg.service.watchdog),
        watchdog_on: cfg.service.watchdog,
        withheld: false,
        cur: cfg.clone(),
        hot,
        stats_tx,
        metrics,
    };
    supervisor
        .wait_for_stop(&mut signals, &cameras.engines_done, &opts)
        .await;
    shutdown(root, cameras.threads, mqtt_stop, tracker, mqtt_handle).await;
    Ok(())
}

/// The MQTT task's options from the config.
fn mqtt_task_options(
    cfg: &EdgeConfig,
    password: Option<config::Secret>,
    gone_status_topics: Vec<String>,
) -> MqttTaskOptions {
    MqttTaskOptions {
        cfg: cfg.mqtt.clone(),
        password,
        stats_interval: Duration::from_secs_f64(cfg.service.stats_interval_s),
        shutdown_timeout: Duration::from_secs_f64(cfg.service.shutdown_timeout_s),
        cameras: cfg.cameras.iter().map(|c| c.name.clone()).collect(),
        gone_status_topics,
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

/// The Prometheus endpoint, when `service.metrics_listen` is set.
async fn serve_metrics(
    cfg: &EdgeConfig,
    tracker: &TaskTracker,
    metrics: &Arc<Metrics>,
    root: &CancellationToken,
) -> Result<(), DaemonError> {
    if !cfg.service.metrics_listen.is_empty() {
        let listener = tokio::net::TcpListener::bind(&cfg.service.metrics_listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!("service.metrics_listen {}: {e}", cfg.service.metrics_listen)
            })?;
        tracing::info!(addr = %cfg.service.metrics_listen, "metrics at /metrics");
        tracker.spawn(crate::edge::metrics::serve(
            listener,
            metrics.clone(),
            root.clone(),
        ));
    }
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
}

impl Supervisor {
    /// Serves signals, watchdog pings and status lines until SIGTERM or SIGINT (or the end of
    /// every stream with `--exit-on-eos`).
    async fn wait_for_stop(
        mut self,
        signals: &mut Signals,
        engines_done: &tokio::sync::Notify,
        opts: &RunOptions,
    ) {
        let ping_every = self.watchdog.map_or(Duration::from_secs(3600), |d| d / 2);
        let mut ping = tokio::time::interval(ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = signals.term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = signals.int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = engines_done.notified() => {
                    if opts.exit_on_eos {
                        tracing::info!("every camera reached end of stream: shutting down (--exit-on-eos)");
                        break;
                    }
                    tracing::info!("every camera has ended; still serving MQTT and metrics");
                }
                _ = signals.hup.recv() => self.reload(opts),
                _ = ping.tick(), if self.watchdog.is_some() => self.ping_watchdog(),
                _ = status_tick.tick() => {
                    let s = status_line(&self.metrics);
                    notify(&[sd_notify::NotifyState::Status(&s)]);
                }
            }
        }
    }

    /// SIGHUP: reload the config file; the hot settings take effect, cold changes are logged.
    fn reload(&mut self, opts: &RunOptions) {
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
                // The running cameras take the new rules and tracking overrides (hot); the rest
                // of a camera, and a camera renamed or removed, waits for a restart.
                for cam in &mut self.cur.cameras {
                    if let Some(n) = new.cameras.iter().find(|n| n.name == cam.name) {
                        cam.zone = n.zone.clone();
                        cam.line = n.line.clone();
                        cam.filters = n.filters.clone();
                        cam.tracking = n.tracking;
                    }
                }
                let _ = self.stats_tx.send(new.service.stats_interval_s);
                self.watchdog_on = new.service.watchdog;
                self.cur.tracking = new.tracking;
                self.cur.publish = new.publish.clone();
                self.cur.service.stats_interval_s = new.service.stats_interval_s;
                self.cur.service.watchdog = new.service.watchdog;
                self.hot.set(&self.cur);
                tracing::info!("SIGHUP: configuration reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: configuration rejected; kept the running one")
            }
        }
        notify(&[sd_notify::NotifyState::Ready]);
    }

    /// Pings the watchdog while every camera's threads are alive (or ended); withholds it, with
    /// one line, while one is not.
    fn ping_watchdog(&mut self) {
        let limit = self.watchdog.map_or(0, |d| d.as_millis() as u64);
        let metrics = &self.metrics;
        let now = metrics.now_ms();
        let healthy = metrics.cameras.iter().all(|c| {
            c.status() == SourceStatus::Ended
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
        .cameras
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
