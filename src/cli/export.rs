//! `inspro export --model CFG [--weights FILE] --out engines/<name>/`: the per-frame ONNX graphs
//! (key frame; non-key for InsPro-lite; optionally the bare trunk) and their manifest.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use inspro::export::{self, Weights};
use inspro::model::{InsPro, ModelConfig};
use inspro::runtime::calibrate::Calibration;
use inspro::runtime::OrtOptions;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Model config (TOML).
    #[arg(long)]
    pub model: PathBuf,
    /// Weights (safetensors). Without them the graphs carry random weights (say so loudly).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Output directory, e.g. engines/inspro-lite-r50/.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write trunk.onnx, the bare backbone (the benchmark's reference).
    #[arg(long)]
    pub trunk: bool,
    /// Multi-level RoIAlign: `static` (every level, select; static shapes for TensorRT) or
    /// `gather` (each box from its level only; 4x less pooling, for the CPU).
    #[arg(long, default_value = "static", value_parser = |s: &str| s.parse::<export::Pooler>())]
    pub pooler: export::Pooler,
    /// Seed of the random weights when --weights is absent.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// INT8 graphs (QDQ: int8 per-channel weights, uint8 activations), calibrated on
    /// --calibrate; they run in stock ONNX Runtime and in TensorRT (explicit quantization).
    #[arg(long, requires = "calibrate")]
    pub int8: bool,
    /// With --int8: a YouTube-VIS-layout folder (JPEGImages/<video>/*.jpg) whose frames set
    /// the activations' ranges.
    #[arg(long)]
    pub calibrate: Option<PathBuf>,
    /// With --int8: calibration frames in all, and consecutive frames per video.
    #[arg(long, default_value_t = 64)]
    pub calibration_frames: usize,
    #[arg(long, default_value_t = 8)]
    pub frames_per_video: usize,
    /// With --int8: whose INT8 kernels: `cpu` (ONNX Runtime: uint8 activations, int32 biases)
    /// or `tensorrt` (explicit quantization: symmetric int8 activations, float biases).
    #[arg(long, default_value = "cpu", value_parser = |s: &str| s.parse::<inspro::export::quantize::Scheme>())]
    pub int8_for: inspro::export::quantize::Scheme,
    /// With --int8: a graph scope whose nodes stay float (repeatable): `backbone`, `fpn`,
    /// `mask_branch`, `mask_head`, `intra_query`, `head` (every stage) or one stage
    /// `head.head_series.<i>`; `none` quantizes every scope. Default `head`: the stages'
    /// matrix products over the proposals are where INT8 loses AP, and on the CPU they are
    /// faster in float (docs/perf.md, "INT8").
    #[arg(long = "int8-keep-float", value_name = "SCOPE", default_values_t = ["head".to_string()])]
    pub keep_float: Vec<String>,
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let cfg = ModelConfig::from_file(&args.model)?;
    let weights = match &args.weights {
        Some(w) => Weights::from_safetensors(w)?,
        None => {
            tracing::warn!(
                "no --weights: the exported graphs carry RANDOM weights, their results mean nothing"
            );
            let (_, varmap) = InsPro::random(&cfg, args.seed, &Device::Cpu)?;
            Weights::from_varmap(&varmap, &format!("random(seed={})", args.seed))?
        }
    };
    let t0 = std::time::Instant::now();
    let opts = export::ExportOptions {
        pooler: args.pooler,
        trunk: args.trunk,
    };
    let m = match (&args.calibrate, args.int8) {
        (Some(dir), true) => inspro::runtime::calibrate::export_int8(
            &cfg,
            &weights,
            &args.out,
            &opts,
            &Calibration {
                dir: dir.clone(),
                frames: args.calibration_frames.max(1),
                frames_per_video: args.frames_per_video.max(1),
                scheme: args.int8_for,
                keep_float: args
                    .keep_float
                    .iter()
                    .filter(|s| s.as_str() != "none")
                    .cloned()
                    .collect(),
            },
            &OrtOptions::default(),
        )
        .map_err(anyhow::Error::from),
        (Some(_), false) => Err(anyhow::anyhow!("--calibrate is for --int8")),
        _ => export::export(&cfg, &weights, &args.out, &opts).map_err(anyhow::Error::from),
    }
    .with_context(|| format!("exporting {} to {}", cfg.name, args.out.display()))?;
    if let Some(q) = &m.quantization {
        eprintln!(
            "int8: {} conv, {} matmul, {} add quantized in the key graph ({} tensors, {} Relus folded); calibrated on {} frames of {} videos",
            q.key.conv, q.key.matmul, q.key.add, q.key.tensors, q.key.relu_folded,
            q.calibration_frames, q.calibration_videos
        );
    }
    let size = |f: &str| {
        std::fs::metadata(args.out.join(f))
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    eprintln!(
        "wrote {} ({:.1} MB){}{} and manifest.json to {} in {:.1} s: opset {}, input {}x{} (graphs {}x{}), N = {}, T = {}, K = {}",
        m.graphs.key,
        size(&m.graphs.key),
        m.graphs
            .non_key
            .as_ref()
            .map(|f| format!(", {f} ({:.1} MB)", size(f)))
            .unwrap_or_default(),
        m.graphs
            .trunk
            .as_ref()
            .map(|f| format!(", {f} ({:.1} MB)", size(f)))
            .unwrap_or_default(),
        args.out.display(),
        t0.elapsed().as_secs_f64(),
        m.opset,
        m.input_size[0],
        m.input_size[1],
        m.graph_size[0],
        m.graph_size[1],
        m.num_queries,
        m.bank_size,
        m.key_frame_interval,
    );
    Ok(())
}
