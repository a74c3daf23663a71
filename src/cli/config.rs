//! `inspro config check FILE` and `inspro config default`.

use std::path::PathBuf;

use clap::Subcommand;

use inspro::edge::config::{self, DEFAULT_CONFIG_TOML, EX_CONFIG};

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Load FILE (plus `INSPRO__SECTION__KEY` environment overrides) and check it as `inspro run`
    /// would (values, paths, credentials, TLS files, the spool directory, the model weights):
    /// exit 0, or 78 with the field and the reason.
    Check {
        file: PathBuf,
        /// Print the resolved configuration (TOML, without secrets).
        #[arg(long)]
        print: bool,
    },
    /// Print the commented default configuration.
    Default,
}

pub fn run(cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Default => {
            print!("{DEFAULT_CONFIG_TOML}");
            Ok(())
        }
        ConfigCmd::Check { file, print } => {
            let env = config::process_env();
            // Every value's error at once; then the same checks as `inspro run` before it
            // starts (credentials, directories, the model weights), which need valid values.
            let checked = config::load_all(Some(&file), &env).and_then(|c| {
                let errors = c.errors();
                if !errors.is_empty() {
                    return Err(errors);
                }
                inspro::edge::daemon::preflight(&c, &env).map_err(|e| vec![e])?;
                match inspro::edge::engine::build_engine(&c.model, &c.engine, c.cameras.len()) {
                    Ok(_) => Ok(c),
                    Err(inspro::edge::engine::EngineBuildError::Config(e)) => Err(vec![e]),
                }
            });
            match checked {
                Ok(c) => {
                    if print {
                        let mut shown = c.clone();
                        if shown.http.token.is_some() {
                            shown.http.token = Some("***".into());
                        }
                        print!("{}", toml::to_string_pretty(&shown)?);
                    }
                    eprintln!(
                        "{}: ok ({} camera{}, broker {}, prefix {})",
                        file.display(),
                        c.cameras.len(),
                        if c.cameras.len() == 1 { "" } else { "s" },
                        c.mqtt.url,
                        c.mqtt.topic_prefix
                    );
                    Ok(())
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("error: {}: {e}", file.display());
                    }
                    if errors.len() > 1 {
                        eprintln!("{}: {} errors", file.display(), errors.len());
                    }
                    std::process::exit(i32::from(EX_CONFIG));
                }
            }
        }
    }
}
