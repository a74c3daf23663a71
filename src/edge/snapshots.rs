//! Snapshots, Frigate's way: per track the best frame (highest score, the larger box on a tie),
//! cropped around the box with the mask outlined in the track's colour. The engine thread cuts
//! the crop (and its mask outline) only when a track's best improves; a worker thread encodes the JPEG, writes it
//! under `<spool_dir>/snapshots/<camera>/` (at most `max_files`, the oldest removed) and
//! publishes it retained on `<prefix>/<camera>/<label>/snapshot`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use crate::edge::config::SnapshotConfig;
use crate::edge::events::OutMsg;
use crate::edge::mqtt::Outbox;
use crate::edge::topics::Topics;
use crate::frame::FrameRef;
use crate::render;
use crate::runtime::FrameOutput;
use crate::tracking::Track;

/// A track's best view so far: the crop, outlined, as packed RGB.
#[derive(Clone)]
struct Best {
    /// The highest score the track has had (the bar a new view is measured against).
    top: f32,
    area: f32,
    rgb: Vec<u8>,
    width: usize,
    height: usize,
}

impl Best {
    /// Better: a score above the best so far by more than 0.02, or within 0.02 of it and a box
    /// at least 10 % larger.
    fn beaten_by(&self, score: f32, area: f32) -> bool {
        score > self.top + 0.02 || (score >= self.top - 0.02 && area > 1.1 * self.area)
    }
}

/// What the worker encodes and publishes.
pub struct Job {
    pub file_stem: String,
    pub topic: String,
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

/// One camera's snapshots on its engine thread.
pub struct Snapshots {
    cfg: SnapshotConfig,
    camera: String,
    prefix: String,
    run: String,
    best: HashMap<u64, Best>,
    jobs: SyncSender<Job>,
    /// Jobs dropped because the worker was behind (never blocks the engine).
    pub dropped: u64,
}

impl Snapshots {
    pub fn new(
        cfg: SnapshotConfig,
        camera: &str,
        prefix: &str,
        run: &str,
        jobs: SyncSender<Job>,
    ) -> Self {
        Self {
            cfg,
            camera: camera.to_string(),
            prefix: prefix.to_string(),
            run: run.to_string(),
            best: HashMap::new(),
            jobs,
            dropped: 0,
        }
    }

    /// Tracks seen on this frame: keep the crop of each one whose view improved.
    pub fn observe(&mut self, frame: &FrameRef<'_>, out: &FrameOutput, tracks: &[&Track]) {
        for t in tracks {
            if t.last_seen_frame != out.frame_index || t.slot >= out.num_slots() {
                continue;
            }
            let rect = out.box_rect(&t.box_xyxy);
            let area = ((rect[2] - rect[0]) * (rect[3] - rect[1])) as f32;
            if area <= 0.0 {
                continue;
            }
            if let Some(b) = self.best.get_mut(&t.id) {
                let better = b.beaten_by(t.score, area);
                b.top = b.top.max(t.score);
                if !better {
                    continue;
                }
            }
            if let Some((rgb, width, height)) = crop(frame, out, t, self.cfg.padding) {
                let top = self.best.get(&t.id).map_or(t.score, |b| b.top.max(t.score));
                self.best.insert(
                    t.id,
                    Best {
                        top,
                        area,
                        rgb,
                        width,
                        height,
                    },
                );
            }
        }
    }

    /// Publish the track's best view so far (at birth and at the end); `end` forgets it.
    pub fn publish(&mut self, t: &Track, label: &str, end: bool) {
        let best = if end {
            self.best.remove(&t.id)
        } else {
            self.best.get(&t.id).cloned()
        };
        let Some(b) = best else {
            return;
        };
        // A label as a topic level and a file name: letters, digits, '-' and '_' only.
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let job = Job {
            file_stem: format!("{}-{}-{label}", self.run, t.id),
            topic: Topics::new(self.prefix.as_str())
                .camera(&self.camera)
                .snapshot(&label),
            rgb: b.rgb,
            width: b.width,
            height: b.height,
        };
        // The end view always goes (the engine waits for the encoder if it must: shutdown and
        // resets end every track at once); a birth view is dropped when the encoder is behind.
        let sent = if end {
            self.jobs.send(job).is_ok()
        } else {
            self.jobs.try_send(job).is_ok()
        };
        if !sent {
            self.dropped += 1;
        }
    }

    /// A track that ends unpublished (filtered): drop its view.
    pub fn forget(&mut self, id: u64) {
        self.best.remove(&id);
    }
}

/// The box with `padding` around it, clamped to the frame, as packed RGB with the mask's
/// outline drawn in the track's colour.
fn crop(
    frame: &FrameRef<'_>,
    out: &FrameOutput,
    t: &Track,
    padding: f32,
) -> Option<(Vec<u8>, usize, usize)> {
    let b = t.box_xyxy;
    let (pw, ph) = ((b[2] - b[0]) * padding, (b[3] - b[1]) * padding);
    let [x0, y0, x1, y1] = out.box_rect(&[b[0] - pw, b[1] - ph, b[2] + pw, b[3] + ph]);
    let (w, h) = (x1.checked_sub(x0)?, y1.checked_sub(y0)?);
    if w == 0 || h == 0 {
        return None;
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in y0..y1 {
        rgb.extend_from_slice(&frame.row(y)[x0 * 3..x1 * 3]);
    }
    let mask: Vec<bool> = out
        .mask_logits_in(t.slot, [x0, y0, x1, y1])
        .into_iter()
        .map(|v| v > 0.0)
        .collect();
    let c = render::colour(t.id);
    let on = |x: usize, y: usize| mask[y * w + x];
    for y in 0..h {
        for x in 0..w {
            let edge = on(x, y)
                && (x == 0 || y == 0 || x + 1 == w || y + 1 == h || {
                    !on(x - 1, y) || !on(x + 1, y) || !on(x, y - 1) || !on(x, y + 1)
                });
            if edge {
                rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
            }
        }
    }
    Some((rgb, w, h))
}

/// The worker's end of the queue: at most `depth` crops wait.
pub fn channel(depth: usize) -> (SyncSender<Job>, Receiver<Job>) {
    sync_channel(depth)
}

/// Encode, write and publish jobs until every sender is gone.
pub fn run_worker(
    jobs: Receiver<Job>,
    dir: PathBuf,
    cfg: SnapshotConfig,
    outbox: Arc<Outbox>,
    max_payload: usize,
) {
    let mut encoder = crate::edge::jpeg::Encoder::new(cfg.quality);
    for job in jobs {
        let jpeg = match encoder.encode(&job.rgb, job.width, job.height) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "snapshot not encoded");
                continue;
            }
        };
        let path = dir.join(format!("{}.jpg", job.file_stem));
        if let Err(e) = write_bounded(&dir, &path, &jpeg, cfg.max_files) {
            tracing::warn!(path = %path.display(), error = %e, "snapshot not written");
        }
        if jpeg.len() <= max_payload {
            outbox.push([OutMsg::binary(job.topic, jpeg, true)]);
        } else {
            tracing::warn!(
                bytes = jpeg.len(),
                "snapshot larger than mqtt.max_packet_size: not published"
            );
        }
    }
}

/// Write `path` and remove the oldest `.jpg` files of `dir` beyond `max_files`.
fn write_bounded(dir: &Path, path: &Path, bytes: &[u8], max_files: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(path, bytes)?;
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jpg"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() > max_files {
        files.sort();
        for (_, old) in &files[..files.len() - max_files] {
            let _ = std::fs::remove_file(old);
        }
    }
    Ok(())
}
