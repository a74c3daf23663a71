//! The engine flags `inspro segment` and `inspro bench` share: one spelling and one mapping onto
//! the factory's [`EngineSpec`], each command passing its own default engine (the daemon reads
//! the same settings from its `[model]` / `[engine]` sections).

use std::path::{Path, PathBuf};
use std::process::Command;

use inspro::export::Pooler;
use inspro::runtime::{EngineKind, EngineSpec, OrtOptions, Provider};

#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Model config (TOML).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights (safetensors, or an exported engine). Unset: the shipped
    /// `engines/<model name>/model.safetensors` (`$INSPRO_ENGINES` moves `engines/`), as the
    /// daemon and the element do; random weights (said loudly) where there are none.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Randomly initialised weights even where shipped ones exist (a benchmark's timing does not
    /// depend on them).
    #[arg(long, conflicts_with = "weights")]
    pub random_weights: bool,
    /// Engine: onnxruntime (the exported graphs; CPU, CUDA or TensorRT) or candle (the pure
    /// Rust reference). Default: onnxruntime for `segment`, candle for `bench`.
    #[arg(long = "engine", value_parser = |s: &str| s.parse::<EngineKind>())]
    pub kind: Option<EngineKind>,
    /// For onnxruntime: a directory made by `inspro export`; without it the model is exported
    /// into a temporary directory first.
    #[arg(long)]
    pub engine_dir: Option<PathBuf>,
    /// For onnxruntime without --engine-dir: how the exported graphs pool (static | gather);
    /// unset: the daemon's rule (gather on the CPU, static on GPUs).
    #[arg(long, value_parser = |s: &str| s.parse::<Pooler>())]
    pub pooler: Option<Pooler>,
    /// For onnxruntime: the execution provider (auto, cpu, cuda, tensorrt; auto takes TensorRT,
    /// then CUDA, then the CPU, by what the library offers; a named one falls back to the CPU
    /// with a warning when the library has no such provider).
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<Provider>())]
    pub provider: Provider,
    /// For onnxruntime with TensorRT: engine and timing cache directory (default:
    /// <engine dir>/trt_cache).
    #[arg(long)]
    pub trt_cache: Option<PathBuf>,
    /// For onnxruntime: libonnxruntime.so (default: ORT_DYLIB_PATH, then .venv).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
}

impl EngineArgs {
    /// ONNX Runtime's settings from these flags (threads and sessions are the command's).
    pub fn ort(&self) -> OrtOptions {
        OrtOptions {
            library: self.ort_library.clone(),
            provider: self.provider,
            trt_cache_dir: self.trt_cache.clone(),
            ..OrtOptions::default()
        }
    }

    /// The factory's spec; `default` is the command's engine when `--engine` is not given.
    pub fn spec(&self, default: EngineKind) -> EngineSpec {
        EngineSpec {
            kind: self.kind.unwrap_or(default),
            model: Some(self.model.clone()),
            weights: self.weights.clone(),
            default_weights: !self.random_weights,
            engine_dir: self.engine_dir.clone(),
            pooler: self.pooler,
            ort: self.ort(),
            ..EngineSpec::default()
        }
    }

    /// The same flags on a child process of this command, with `engine_dir` instead of the
    /// flag's (a benchmark exports once and times the graphs in every child).
    pub fn pass_to(&self, cmd: &mut Command, engine_dir: Option<&Path>) {
        cmd.arg("--model")
            .arg(&self.model)
            .arg("--provider")
            .arg(self.provider.to_string());
        if let Some(k) = self.kind {
            cmd.arg("--engine").arg(k.to_string());
        }
        let optional = [
            ("--weights", self.weights.as_deref()),
            ("--engine-dir", engine_dir),
            ("--trt-cache", self.trt_cache.as_deref()),
            ("--ort-library", self.ort_library.as_deref()),
        ];
        for (flag, value) in optional {
            if let Some(v) = value {
                cmd.arg(flag).arg(v);
            }
        }
        if let Some(p) = self.pooler {
            cmd.arg("--pooler").arg(p.to_string());
        }
        if self.random_weights {
            cmd.arg("--random-weights");
        }
    }
}
