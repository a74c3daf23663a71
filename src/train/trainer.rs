//! The trainer (paper §3.3–3.4, §4.2): clips of 3 frames through the state loop with gradients
//! kept through the queries, temporally consistent matching on the last stage shared by every
//! stage, deep supervision, AdamW with warm-up and steps, checkpoints with optimiser moments, and
//! evaluation with the official video AP.

use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::Device;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::auxiliary::{RoiClassifier, SemanticHead, AUX_PREFIX};
use super::data::SynthStream;
use super::data::{ClipConfig, Dataset};
use super::loss::LossConfig;
use super::optim::{AdamW, Ema, OptimConfig};
use super::TrainError;
use crate::model::weights::SplitMix64;
use crate::model::{InsPro, ModelConfig};
use crate::ytvis::SynthOptions;

pub use super::checkpoint::{init_from, save_checkpoint, snapshot, trainable_params, TrainerState};
pub use super::evaluation::evaluate_dataset;
pub use super::objective::{clip_loss, clip_loss_with, AuxHeads, LossParts};

/// The mechanisms the paper ablates (Table 2a–c).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mechanisms {
    /// Propagate (query, box) pairs to the next frame; off = every frame starts from the learned
    /// init (ablation A).
    pub propagate: bool,
    /// Temporally consistent matching; off = Hungarian afresh on every frame (ablation B).
    pub tcm: bool,
}

impl Default for Mechanisms {
    fn default() -> Self {
        Self {
            propagate: true,
            tcm: true,
        }
    }
}

/// A synthetic split generated when its folder is missing (`inspro synth` options).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthSpec {
    pub videos: usize,
    pub frames: usize,
    pub size: [u32; 2],
    pub seed: u64,
    pub objects: [usize; 2],
    pub lookalikes: f64,
    pub occlusion: f64,
    pub enter_leave: f64,
    pub speed: f64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        let d = SynthOptions::default();
        Self {
            videos: 40,
            frames: 24,
            size: [320, 192],
            seed: 1,
            objects: [d.min_objects, d.max_objects],
            lookalikes: d.lookalikes,
            occlusion: d.occlusion,
            enter_leave: d.enter_leave,
            speed: d.speed,
        }
    }
}

impl SynthSpec {
    pub fn options(&self) -> SynthOptions {
        SynthOptions {
            videos: self.videos,
            frames: self.frames,
            width: self.size[0],
            height: self.size[1],
            seed: self.seed,
            min_objects: self.objects[0],
            max_objects: self.objects[1],
            lookalikes: self.lookalikes,
            occlusion: self.occlusion,
            enter_leave: self.enter_leave,
            speed: self.speed,
            ..SynthOptions::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// YouTube-VIS layout folder (JPEGImages/ + `instances.json` unless `train_gt` is given);
    /// unused with `synth_stream`.
    #[serde(default)]
    pub train: PathBuf,
    pub train_gt: Option<PathBuf>,
    pub val: Option<PathBuf>,
    pub val_gt: Option<PathBuf>,
    /// Generate the training split with these options when `train` does not exist.
    pub synth_train: Option<SynthSpec>,
    pub synth_val: Option<SynthSpec>,
    /// Train on synthetic videos made on the fly instead of `train` (ours): clip i comes from
    /// video i of this stream (`videos` is ignored).
    #[serde(default)]
    pub synth_stream: Option<SynthSpec>,
}

/// `configs/train/<name>.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model config (TOML), relative to the working directory.
    pub model: PathBuf,
    /// Overrides of the model config (e.g. `bank_size` for ablations).
    #[serde(default)]
    pub model_bank_size: Option<usize>,
    /// Override of the model config's `propagate` (the "no propagation" ablation).
    #[serde(default)]
    pub model_propagate: Option<bool>,
    pub out_dir: PathBuf,
    pub iterations: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Evaluate on the validation split every N iterations (0 = only at the end).
    #[serde(default)]
    pub eval_every: usize,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    pub data: DataConfig,
    #[serde(default)]
    pub clip: ClipConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub loss: LossConfig,
    #[serde(default)]
    pub mechanisms: Mechanisms,
    /// Start from these weights instead of the random init (e.g. a trunk pre-trained with
    /// `loss.heads = false`): every variable the file holds with the same shape is taken, the
    /// rest stay random. Training-only variables come from `<stem>.aux.safetensors` beside it.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Key prefixes renamed when reading `init` (`"old." = "new."`, all applied to the file's
    /// names at once): e.g. a stride-8 mask branch's `refine.0..2` (P3..P5) become `refine.1..3`
    /// of a stride-4 branch, whose `refine.0` (P2) starts random.
    #[serde(default)]
    pub init_rename: std::collections::BTreeMap<String, String>,
    /// A linear probe of the RoI features at every evaluation (`train/probe.rs`).
    #[serde(default)]
    pub probe: Option<super::probe::ProbeConfig>,
    /// Data-parallel workers (ours): each iteration takes one clip per worker, computes the
    /// workers' losses and gradients on their own threads, averages the gradients and makes one
    /// optimiser step. Clip j of iteration i is clip `i·workers + j` of the run.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_workers() -> usize {
    1
}

fn default_log_every() -> usize {
    20
}

fn default_checkpoint_every() -> usize {
    500
}

impl TrainConfig {
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| TrainError::data(path.display(), e))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| TrainError::Config {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if cfg.iterations == 0 {
            return Err(TrainError::Config {
                file: path.display().to_string(),
                reason: "iterations: must be at least 1".into(),
            });
        }
        Ok(cfg)
    }

    pub fn model_config(&self) -> Result<ModelConfig, TrainError> {
        let mut cfg = ModelConfig::from_file(&self.model)?;
        if let Some(t) = self.model_bank_size {
            cfg.bank_size = t;
        }
        if let Some(p) = self.model_propagate {
            cfg.propagate = p;
        }
        Ok(cfg)
    }
}

/// The model + optimiser + sampler, step by step (what `inspro train` drives).
pub struct Trainer {
    pub cfg: TrainConfig,
    pub model_cfg: ModelConfig,
    pub model: InsPro,
    pub varmap: VarMap,
    pub opt: AdamW,
    pub rng: SplitMix64,
    pub iteration: usize,
    /// Wall seconds of training before this process (from the checkpoint it resumed); the
    /// front-end adds its own part's time when it saves ([`Trainer::train_seconds`]).
    pub earlier_seconds: f64,
    /// When this process's part began.
    started: std::time::Instant,
    pub train: ClipSource,
    /// The auxiliary semantic head (ours) when `loss.semantic > 0`.
    pub semantic: Option<SemanticHead>,
    /// The auxiliary RoI classifier (ours) when `loss.roi_class > 0`.
    pub roi_class: Option<RoiClassifier>,
    /// The moving average of the weights (ours) when `optim.ema > 0`.
    pub ema: Option<Ema>,
    pub device: Device,
}

/// Where training clips come from.
pub enum ClipSource {
    /// A fixed set of videos in memory.
    Videos(Dataset),
    /// Synthetic videos made on the fly, one per clip.
    Stream(SynthStream),
}

impl Trainer {
    pub fn new(cfg: TrainConfig, train: Dataset, device: &Device) -> Result<Self, TrainError> {
        Self::with_source(cfg, ClipSource::Videos(train), device)
    }

    /// A trainer whose clips come from the config's `data.synth_stream`.
    pub fn streaming(cfg: TrainConfig, device: &Device) -> Result<Self, TrainError> {
        let spec = cfg
            .data
            .synth_stream
            .clone()
            .ok_or_else(|| TrainError::Config {
                file: "data.synth_stream".into(),
                reason: "the config has no synth_stream section".into(),
            })?;
        let mut opts = spec.options();
        opts.frames = opts.frames.max(cfg.clip.frames);
        let stream = SynthStream::new(opts, &cfg.model_config()?, 0)?;
        Self::with_source(cfg, ClipSource::Stream(stream), device)
    }

    pub fn with_source(
        cfg: TrainConfig,
        train: ClipSource,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let model_cfg = cfg.model_config()?;
        let (model, varmap) = InsPro::random(&model_cfg, cfg.seed, device)?;
        let semantic = if cfg.loss.semantic > 0.0 {
            let vb = crate::model::weights::seeded_var_builder(cfg.seed ^ 0xa0c5, &varmap, device);
            Some(SemanticHead::new(&model_cfg, vb)?)
        } else {
            None
        };
        let roi_class = if cfg.loss.roi_class > 0.0 {
            let vb = crate::model::weights::seeded_var_builder(cfg.seed ^ 0x0c1a, &varmap, device);
            Some(RoiClassifier::new(&model_cfg, vb)?)
        } else {
            None
        };
        if let Some(path) = &cfg.init {
            let taken = init_from(&varmap, path, &cfg.init_rename, device)?;
            tracing::info!(file = %path.display(), variables = taken, "initialised from weights");
        }
        let opt = AdamW::new(cfg.optim, trainable_params(&model_cfg, &varmap));
        // The average covers the model's weights; the training-only heads are never scored.
        let ema = if cfg.optim.ema > 0.0 {
            let model_params: Vec<_> = opt
                .params()
                .iter()
                .filter(|(k, _)| !k.starts_with(AUX_PREFIX))
                .cloned()
                .collect();
            Some(Ema::new(cfg.optim.ema, &model_params)?)
        } else {
            None
        };
        Ok(Self {
            semantic,
            roi_class,
            ema,
            rng: SplitMix64::new(cfg.seed ^ 0x5eed_c11b),
            cfg,
            model_cfg,
            model,
            varmap,
            opt,
            iteration: 0,
            earlier_seconds: 0.0,
            started: std::time::Instant::now(),
            train,
            device: device.clone(),
        })
    }

    /// Continue from `dir/<name>` written by `save_checkpoint`.
    pub fn resume(&mut self, dir: &Path, name: &str) -> Result<(), TrainError> {
        let weights = dir.join(format!("{name}.safetensors"));
        let mut tensors = candle_core::safetensors::load(&weights, &self.device)?;
        let aux_path = dir.join(format!("{name}.aux.safetensors"));
        if aux_path.exists() {
            tensors.extend(candle_core::safetensors::load(&aux_path, &self.device)?);
        }
        {
            let vars = self.varmap.data().lock().map_err(|_| TrainError::Config {
                file: name.into(),
                reason: "lock".into(),
            })?;
            for (k, var) in vars.iter() {
                let t = tensors.get(k).ok_or_else(|| {
                    TrainError::data(weights.display(), format!("missing weight `{k}`"))
                })?;
                var.set(t)?;
            }
        }
        let optim = candle_core::safetensors::load(
            dir.join(format!("{name}.optim.safetensors")),
            &self.device,
        )?;
        let p = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&p).map_err(|e| TrainError::io(&p, e))?;
        let st: TrainerState = serde_json::from_str(&text).map_err(|e| TrainError::Config {
            file: p.display().to_string(),
            reason: e.to_string(),
        })?;
        self.opt.load_state_tensors(optim, st.optimizer_step);
        if let Some(ema) = &mut self.ema {
            let p = dir.join(format!("{name}.ema.safetensors"));
            let avg = candle_core::safetensors::load(&p, &self.device)
                .map_err(|e| TrainError::data(p.display(), e))?;
            ema.load(&avg, st.optimizer_step)?;
        }
        self.rng = SplitMix64::from_state(st.rng_state);
        self.iteration = st.iteration;
        self.earlier_seconds = st.train_seconds;
        self.started = std::time::Instant::now();
        Ok(())
    }

    pub fn state(&self) -> TrainerState {
        TrainerState {
            iteration: self.iteration,
            optimizer_step: self.opt.step,
            rng_state: self.rng.state(),
            train_seconds: self.train_seconds(),
        }
    }

    /// Wall seconds of training over every part of the run, this one included.
    pub fn train_seconds(&self) -> f64 {
        self.earlier_seconds + self.started.elapsed().as_secs_f64()
    }

    /// Clip `index` of the run: of the in-memory videos (the sampler's PRNG decides), or video
    /// `index` of the synthetic stream.
    pub fn next_clip(&mut self, index: usize) -> Result<super::data::Clip, TrainError> {
        match &mut self.train {
            ClipSource::Videos(data) => {
                data.sample_clip(&self.model_cfg, &self.cfg.clip, &mut self.rng, &self.device)
            }
            ClipSource::Stream(stream) => {
                let video = stream.video(index)?;
                super::data::sample_clip_from(
                    &video,
                    &self.model_cfg,
                    &self.cfg.clip,
                    &mut self.rng,
                    &self.device,
                )
            }
        }
    }

    /// One iteration: sample a clip per worker, losses and backward (on the workers' threads
    /// when there are several), the mean gradient, clip, AdamW. Returns the mean loss parts, the
    /// gradient norm and the lr used.
    pub fn step(&mut self) -> Result<(LossParts, f64, f64), TrainError> {
        let workers = self.cfg.workers.max(1);
        let mut clips = Vec::with_capacity(workers);
        for j in 0..workers {
            clips.push(self.next_clip(self.iteration * workers + j)?);
        }
        let aux = AuxHeads {
            semantic: self.semantic.as_ref(),
            roi_class: self.roi_class.as_ref(),
        };
        let (model, loss_cfg, mech, iteration) = (
            &self.model,
            &self.cfg.loss,
            &self.cfg.mechanisms,
            self.iteration,
        );
        let one = |clip: &super::data::Clip| -> Result<(GradStore, LossParts), TrainError> {
            let (loss, parts) = clip_loss_with(model, aux, clip, loss_cfg, mech)?;
            if !parts.total.is_finite() {
                return Err(TrainError::NonFinite {
                    iteration,
                    video: clip.video_id,
                });
            }
            Ok((loss.backward()?, parts))
        };
        let mut results: Vec<(GradStore, LossParts)> = if workers == 1 {
            vec![one(&clips[0])?]
        } else {
            // Each worker runs candle's parallel kernels on a one-thread pool of its own, so
            // the workers do not queue behind each other on the global pool.
            std::thread::scope(|scope| {
                let handles: Vec<_> = clips
                    .iter()
                    .map(|clip| {
                        scope.spawn(move || {
                            let pool = rayon::ThreadPoolBuilder::new()
                                .num_threads(1)
                                .build()
                                .map_err(|e| TrainError::Config {
                                    file: "workers".into(),
                                    reason: format!("thread pool: {e}"),
                                })?;
                            pool.install(|| one(clip))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(TrainError::Config {
                                file: "workers".into(),
                                reason: "a training worker panicked".into(),
                            })
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })?
        };
        let parts = LossParts::mean(results.iter().map(|r| &r.1));
        let (mut grads, _) = results.remove(0);
        if workers > 1 {
            for (_, var) in self.opt.params() {
                let t = var.as_tensor();
                let mut sum = grads.remove(t);
                for (other, _) in &results {
                    if let Some(g) = other.get(t) {
                        sum = Some(match sum {
                            Some(s) => (s + g)?,
                            None => g.clone(),
                        });
                    }
                }
                if let Some(sum) = sum {
                    grads.insert(t, (sum / workers as f64)?);
                }
            }
        }
        let lr = self.cfg.optim.lr_at(self.iteration);
        let norm = self.opt.step(&grads, lr)?;
        if let Some(ema) = &mut self.ema {
            ema.update()?;
        }
        self.iteration += 1;
        Ok((parts, norm, lr))
    }

    /// Writes the checkpoint `dir/<name>.*`; with `optim.ema`, also the averaged weights as
    /// `<name>.ema.safetensors` (the model's keys only: a weights file like any other).
    pub fn save(&self, dir: &Path, name: &str) -> Result<PathBuf, TrainError> {
        let weights = save_checkpoint(dir, name, &self.varmap, &self.opt, &self.state())?;
        if let Some(ema) = &self.ema {
            // The averaged parameters, and every other model variable (e.g. running statistics)
            // as it is: a complete weights file.
            let mut avg = ema.tensors();
            let data = self
                .varmap
                .data()
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default();
            for (k, v) in data {
                if !k.starts_with(AUX_PREFIX) && !avg.contains_key(&k) {
                    avg.insert(k, v.as_tensor().clone());
                }
            }
            candle_core::safetensors::save(&avg, dir.join(format!("{name}.ema.safetensors")))?;
        }
        Ok(weights)
    }

    /// Runs `f` with the averaged weights in the model when `optim.ema` is on (the raw weights
    /// are put back afterwards, also when `f` fails); returns whether they were the average.
    pub fn with_average<T>(
        &mut self,
        f: impl FnOnce(&Trainer) -> T,
    ) -> Result<(T, bool), TrainError> {
        let Some(mut ema) = self.ema.take() else {
            return Ok((f(self), false));
        };
        ema.swap()?;
        let out = f(self);
        ema.swap()?;
        self.ema = Some(ema);
        Ok((out, true))
    }
}
