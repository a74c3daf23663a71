//! Sub-commands of the `inspro` binary. Each file owns the commands of one concern.

mod bench;
mod bench_cameras;
mod bench_plot;
#[cfg(feature = "edge")]
mod config;
mod engine_args;
mod export;
mod import;
mod model;
#[cfg(feature = "edge")]
mod run;
mod segment;
mod train;
mod ytvis;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "inspro",
    version,
    about = "Online video instance segmentation for edge boxes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parameters and GFLOPs of a model config, by part.
    Info(model::InfoArgs),
    /// Median ms per frame (candle or ONNX Runtime), by part, at 1 and 2 threads.
    Bench(bench::BenchArgs),
    /// Write the network as ONNX graphs (key / non-key frame) with a manifest.
    Export(export::ExportArgs),
    /// PyTorch weights (torchvision ResNet, detectron2 checkpoints) to our safetensors.
    Import(import::ImportArgs),
    /// Segment and track every video of a YouTube-VIS layout into one results json.
    Segment(segment::SegmentArgs),
    /// Train on YouTube-VIS-layout data (TCM, BDL, deep supervision).
    Train(train::TrainArgs),
    /// Draw a training run's picture (loss parts, validation, probe) from its metrics.jsonl, or
    /// with --bench the benchmark's ms per frame by part.
    Plot(train::PlotArgs),
    /// Linear probe of a model's RoI features at ground-truth boxes (features vs head).
    Probe(train::ProbeArgs),
    /// Score a YouTube-VIS results json against its ground truth (official video AP/AR).
    Eval(ytvis::EvalArgs),
    /// Generate a synthetic YouTube-VIS-layout benchmark (or one encoded clip).
    Synth(ytvis::SynthArgs),
    /// The edge daemon: cameras in, track events with masks out over MQTT (feature `edge`).
    #[cfg(feature = "edge")]
    Run(run::RunArgs),
    /// Check the daemon's configuration, or print the commented default (feature `edge`).
    #[cfg(feature = "edge")]
    #[command(subcommand)]
    Config(config::ConfigCmd),
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal; under systemd (journald adds the time stamps) no timestamps.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journald && std::io::IsTerminal::is_terminal(&std::io::stderr());
    // `RUST_LOG=inspro=trace`: every span's time when it closes (a frame's parts: step,
    // preprocess, backbone, fpn, mask_branch, head_stage, mask_head, bank_attention).
    let timing = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("trace"));
    let fmt = tracing_subscriber::fmt()
        .with_span_events(if timing {
            tracing_subscriber::fmt::format::FmtSpan::CLOSE
        } else {
            tracing_subscriber::fmt::format::FmtSpan::NONE
        })
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if journald {
        let _ = fmt.without_time().try_init();
    } else {
        let _ = fmt.try_init();
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info(args) => model::info(args),
        Command::Bench(args) => bench::bench(args),
        Command::Export(args) => export::export(args),
        Command::Import(args) => import::import(args),
        Command::Segment(args) => segment::segment(args),
        Command::Train(args) => train::train(args),
        Command::Plot(args) => train::plot(args),
        Command::Probe(args) => train::probe(args),
        Command::Eval(args) => ytvis::eval(args),
        Command::Synth(args) => ytvis::synth(args),
        #[cfg(feature = "edge")]
        Command::Run(args) => run::run(args),
        #[cfg(feature = "edge")]
        Command::Config(cmd) => config::run(cmd),
    }
}
