//! `inspro run`: the edge daemon (cameras in, track events with masks out over MQTT).

use std::path::PathBuf;

use clap::Args;

use inspro::edge::{self, DaemonError, RunOptions};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (TOML); `inspro config default` prints a commented one. Without it:
    /// the defaults plus `INSPRO__SECTION__KEY` environment variables.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Exit (0) once every camera has reached end of stream (files, finite test sources).
    #[arg(long)]
    pub exit_on_eos: bool,
    /// Write an overlay video (`<camera>-overlay.mkv`) and a contact sheet (`<camera>-sheet.png`)
    /// per camera into this directory.
    #[arg(long)]
    pub overlay_dir: Option<PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let opts = RunOptions {
        config: args.config,
        exit_on_eos: args.exit_on_eos,
        overlay_dir: args.overlay_dir,
    };
    match edge::run(opts) {
        Ok(edge::Exit::Stopped) => Ok(()),
        Ok(edge::Exit::Restart) => std::process::exit(i32::from(edge::EX_RESTART)),
        Err(DaemonError::Config(e)) => {
            // sysexits EX_CONFIG: systemd and scripts can tell a bad config from a crash.
            eprintln!("error: {e}");
            std::process::exit(i32::from(edge::EX_CONFIG));
        }
        Err(DaemonError::Other(e)) => Err(e),
    }
}
