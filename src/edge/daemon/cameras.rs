//! The running cameras, each on its own: a source thread and an engine thread under the camera's
//! own cancellation token (a child of the daemon's). SIGHUP and the `enabled` switch start, stop
//! or restart one camera; the others keep their pipelines, track ids and counters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::{DaemonError, EngineThread, HotSettings};
use crate::edge::config::{self, CameraConfig, EdgeConfig};
use crate::edge::events::{EventBuilder, EventBuilderOptions};
use crate::edge::ingest::{spawn_source, SourceOptions};
use crate::edge::metrics::{CameraMetrics, Metrics, SourceStatus};
use crate::edge::mqtt::Outbox;
use crate::edge::overlay::OverlayWriter;
use crate::edge::queue::FrameQueue;
use crate::edge::snapshots::{self, Snapshots};
use crate::edge::state::StateFile;
use crate::runtime::Engine;
use crate::tracking::EndReason;

/// What every camera's threads share, for the daemon's whole life.
pub(super) struct CameraShared {
    /// The global sections (`mqtt`, `publish`, `tracking`, `service`) as at start.
    pub(super) cfg: EdgeConfig,
    pub(super) engine: Arc<dyn Engine>,
    pub(super) class_names: Vec<String>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) hot: Arc<HotSettings>,
    pub(super) run: String,
    pub(super) overlay_dir: Option<PathBuf>,
    pub(super) root: CancellationToken,
    /// Engine threads that have not ended; the last to end at end of stream notifies
    /// `engines_done`.
    pub(super) live: Arc<AtomicUsize>,
    pub(super) engines_done: Arc<tokio::sync::Notify>,
    pub(super) store: Option<crate::edge::store::Store>,
}

/// Why a camera's engine thread stopped, when something stopped it (else shutdown or end of
/// stream): its open tracks end with this reason.
pub(super) type StopReason = Arc<Mutex<Option<EndReason>>>;

struct Running {
    token: CancellationToken,
    stop_reason: StopReason,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The cameras that run now, by name.
pub(super) struct CameraSet {
    pub(super) shared: CameraShared,
    running: BTreeMap<String, Running>,
}

impl CameraSet {
    pub(super) fn new(shared: CameraShared) -> Self {
        Self {
            shared,
            running: BTreeMap::new(),
        }
    }

    pub(super) fn is_running(&self, name: &str) -> bool {
        self.running.contains_key(name)
    }

    /// Start camera `cam_cfg` (`index` is its place in the config, for error messages).
    pub(super) fn start(
        &mut self,
        index: usize,
        cam_cfg: &CameraConfig,
    ) -> Result<(), DaemonError> {
        let sh = &self.shared;
        let cam = sh.metrics.add_camera(&cam_cfg.name);
        let token = sh.root.child_token();
        let stop_reason: StopReason = Arc::default();
        let password = match config::camera_password(index, cam_cfg, &config::process_env()) {
            Ok(Some((secret, from))) => {
                tracing::info!(camera = %cam_cfg.name, from = %from, "camera password loaded");
                Some(secret)
            }
            Ok(None) => None,
            Err(e) => {
                // The camera still starts: the server will refuse it, and the log says why.
                tracing::error!(camera = %cam_cfg.name, error = %e, "cannot read the camera password");
                None
            }
        };
        // The camera's own size unless the config scales it: events are in the camera's pixels.
        let (clips, clip_writer) = self.start_clips(cam_cfg, &cam)?;
        let queue = Arc::new(FrameQueue::new(cam_cfg.queue));
        cam.queue_capacity.store(cam_cfg.queue as u64, Relaxed);
        let src = spawn_source(
            SourceOptions {
                camera: cam_cfg.clone(),
                password,
                width: cam_cfg.width,
                height: cam_cfg.height,
                backoff: sh.cfg.mqtt.backoff.clone(),
                clips: clips.clone(),
            },
            queue.clone(),
            cam.clone(),
            sh.metrics.clone(),
            token.clone(),
        )
        .map_err(|e| anyhow::anyhow!("source thread: {e}"))?;
        let et = EngineThread {
            name: cam_cfg.name.clone(),
            engine: sh.engine.clone(),
            queue,
            cam: cam.clone(),
            metrics: sh.metrics.clone(),
            outbox: sh.outbox.clone(),
            hot: sh.hot.clone(),
            builder: EventBuilder::new(EventBuilderOptions {
                prefix: &sh.cfg.mqtt.topic_prefix,
                camera: &cam_cfg.name,
                run: &sh.run,
                class_names: sh.class_names.clone(),
                cfg: sh.hot.publish(),
                qos: sh.cfg.mqtt.qos.clone(),
                max_packet_size: sh.cfg.mqtt.max_packet_size,
                rules: cam_cfg.rules(),
            }),
            tracker: cam_cfg.tracking.apply(sh.hot.tracking()),
            jump_ns: (cam_cfg.jump_threshold_s * 1e9) as u64,
            overlay: sh
                .overlay_dir
                .as_ref()
                .map(|d| OverlayWriter::new(d, &cam_cfg.name, sh.class_names.clone())),
            snapshots: self.start_snapshots(cam_cfg)?,
            token: token.clone(),
            stop_reason: stop_reason.clone(),
            state: StateFile::new(&sh.cfg.service.spool_path(), &cam_cfg.name),
            topic_prefix: sh.cfg.mqtt.topic_prefix.clone(),
            counts: Default::default(),
            store: sh.store.clone(),
            live: match crate::edge::live::start(
                &cam_cfg.name,
                cam.live.clone(),
                80,
                sh.cfg.http.nice,
            ) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(camera = %cam_cfg.name, error = %e, "no live view: cannot start its encoder");
                    None
                }
            },
            class_names: sh.class_names.clone(),
            clips,
            events_topic: crate::edge::topics::Topics::new(sh.cfg.mqtt.topic_prefix.as_str())
                .camera(&cam_cfg.name)
                .events(),
        };
        let live = sh.live.clone();
        let done = sh.engines_done.clone();
        live.fetch_add(1, Relaxed);
        let name: String = format!("infer-{}", cam_cfg.name).chars().take(15).collect();
        let engine = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let stopped = et.run();
                // The last engine thread ending at end of stream (not stopped by a switch or
                // SIGHUP) tells `--exit-on-eos`.
                if live.fetch_sub(1, Relaxed) == 1 && !stopped {
                    done.notify_one();
                }
            })
            .map_err(|e| anyhow::anyhow!("engine thread: {e}"))?;
        self.running.insert(
            cam_cfg.name.clone(),
            Running {
                token,
                stop_reason,
                // The clip writer last: it ends once the source and engine threads let go.
                threads: [Some(src), Some(engine), clip_writer]
                    .into_iter()
                    .flatten()
                    .collect(),
            },
        );
        Ok(())
    }

    /// The camera's clip ring and writer, when `[camera.clips]` is enabled.
    #[allow(clippy::type_complexity)]
    fn start_clips(
        &self,
        cam_cfg: &CameraConfig,
        cam: &Arc<CameraMetrics>,
    ) -> Result<
        (
            Option<Arc<crate::edge::clips::ClipRing>>,
            Option<std::thread::JoinHandle<()>>,
        ),
        DaemonError,
    > {
        if !cam_cfg.clips.enabled {
            return Ok((None, None));
        }
        let dir = self.shared.cfg.service.spool_path().join("clips");
        let (ring, worker) = crate::edge::clips::ClipRing::start(
            cam_cfg.clips,
            &dir,
            &cam_cfg.name,
            cam.clips.clone(),
        )
        .map_err(|e| anyhow::anyhow!("clips of camera {}: {}: {e}", cam_cfg.name, dir.display()))?;
        Ok((Some(ring), Some(worker)))
    }

    /// The camera's snapshot worker, when `[camera.snapshots]` is enabled.
    fn start_snapshots(
        &self,
        cam_cfg: &CameraConfig,
    ) -> Result<Option<(Snapshots, std::thread::JoinHandle<()>)>, DaemonError> {
        let sh = &self.shared;
        let snap_cfg = cam_cfg.snapshots;
        if !snap_cfg.enabled {
            return Ok(None);
        }
        let (tx, rx) = snapshots::channel(8);
        let dir = sh
            .cfg
            .service
            .spool_path()
            .join("snapshots")
            .join(&cam_cfg.name);
        let outbox = sh.outbox.clone();
        let max_payload = sh.cfg.mqtt.max_packet_size.saturating_sub(256);
        let name: String = format!("snap-{}", cam_cfg.name).chars().take(15).collect();
        let worker = std::thread::Builder::new()
            .name(name)
            .spawn(move || snapshots::run_worker(rx, dir, snap_cfg, outbox, max_payload))
            .map_err(|e| anyhow::anyhow!("snapshot thread: {e}"))?;
        let snaps = Snapshots::new(
            snap_cfg,
            &cam_cfg.name,
            &sh.cfg.mqtt.topic_prefix,
            &sh.run,
            tx,
        );
        Ok(Some((snaps, worker)))
    }

    /// Stop camera `name`: its source stops, its engine thread ends the open tracks with
    /// `reason`. Returns its threads to join (None: it was not running).
    pub(super) fn stop(
        &mut self,
        name: &str,
        reason: EndReason,
    ) -> Option<Vec<std::thread::JoinHandle<()>>> {
        let r = self.running.remove(name)?;
        *r.stop_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        r.token.cancel();
        Some(r.threads)
    }

    /// Every camera's threads, for shutdown (the root token stops them).
    pub(super) fn take_threads(&mut self) -> Vec<std::thread::JoinHandle<()>> {
        std::mem::take(&mut self.running)
            .into_values()
            .flat_map(|r| r.threads)
            .collect()
    }

    /// The camera's counters.
    pub(super) fn metrics_of(&self, name: &str) -> Option<Arc<CameraMetrics>> {
        self.shared.metrics.camera(name)
    }
}

/// Join a stopped camera's threads off the async runtime; the camera then shows `status`.
pub(super) async fn join_stopped(
    threads: Vec<std::thread::JoinHandle<()>>,
    cam: Option<Arc<CameraMetrics>>,
    status: SourceStatus,
) {
    let joined = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    if tokio::time::timeout(super::JOIN_TIMEOUT, joined)
        .await
        .is_err()
    {
        tracing::error!("a stopped camera's threads did not end in time");
    }
    if let Some(c) = cam {
        c.set_status(status);
    }
}
