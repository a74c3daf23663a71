//! Sub-commands of the `inspro` binary. Each file owns the commands of one concern.

mod model;
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
    /// Median ms per frame of the candle forward, by part, at 1 and 2 threads.
    Bench(model::BenchArgs),
    /// Segment and track every video of a YouTube-VIS layout into one results json.
    Segment(segment::SegmentArgs),
    /// Train on YouTube-VIS-layout data (TCM, BDL, deep supervision).
    Train(train::TrainArgs),
    /// Score a YouTube-VIS results json against its ground truth (official video AP/AR).
    Eval(ytvis::EvalArgs),
    /// Generate a synthetic YouTube-VIS-layout benchmark (or one encoded clip).
    Synth(ytvis::SynthArgs),
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Info(args) => model::info(args),
        Command::Bench(args) => model::bench(args),
        Command::Segment(args) => segment::segment(args),
        Command::Train(args) => train::train(args),
        Command::Eval(args) => ytvis::eval(args),
        Command::Synth(args) => ytvis::synth(args),
    }
}
