//! `inspro eval` and `inspro synth` (owned by the ytvis work; placeholder signatures).

#[derive(clap::Args, Debug)]
pub struct EvalArgs {}

#[derive(clap::Args, Debug)]
pub struct SynthArgs {}

pub fn eval(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("inspro eval is not implemented yet")
}

pub fn synth(_args: SynthArgs) -> anyhow::Result<()> {
    anyhow::bail!("inspro synth is not implemented yet")
}
