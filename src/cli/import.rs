//! `inspro import`: PyTorch checkpoints (`.pth`) to our safetensors, with every key reported.

use std::path::PathBuf;

use anyhow::Context;
use inspro::model::import::{import as import_pth, Source};
use inspro::model::ModelConfig;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Where the checkpoint comes from: torchvision-resnet (ResNet-18/50 ImageNet weights onto
    /// the backbone) or detectron2 (a Sparse R-CNN / InsPro checkpoint onto the whole model).
    #[arg(long = "from", value_parser = |s: &str| s.parse::<Source>())]
    pub source: Source,
    /// The PyTorch checkpoint (`torch.save` zip format).
    pub file: PathBuf,
    /// Model config (TOML) the weights are for.
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the weights (safetensors); `inspro train --init-from` starts from them.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let cfg = ModelConfig::from_file(&args.model)?;
    let (tensors, report) = import_pth(args.source, &args.file, &cfg)
        .with_context(|| format!("importing {}", args.file.display()))?;
    candle_core::safetensors::save(&tensors, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (from, to) in &report.mapped {
            println!("mapped      {from} -> {to}");
        }
        for (key, got, want) in &report.wrong_shape {
            println!("wrong shape {key}: checkpoint {got:?}, model {want:?} (not written)");
        }
        for key in &report.missing {
            println!("missing     {key}");
        }
        for key in &report.unused {
            println!("unused      {key}");
        }
    }
    eprintln!(
        "{} ({}) -> {}: {} mapped, {} wrong shape, {} missing, {} unused",
        args.file.display(),
        args.source,
        args.out.display(),
        report.mapped.len(),
        report.wrong_shape.len(),
        report.missing.len(),
        report.unused.len()
    );
    Ok(())
}
