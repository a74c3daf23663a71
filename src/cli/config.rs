//! `inspro config check FILE` and `inspro config default`.

use std::path::PathBuf;

use clap::Subcommand;

use inspro::edge::config::{self, DEFAULT_CONFIG_TOML, EX_CONFIG};

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Load FILE (plus `INSPRO__SECTION__KEY` environment overrides) and validate it: exit 0, or
    /// 78 with the field and the reason.
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
            let checked = config::load(Some(&file), &env).and_then(|c| {
                c.validate()?;
                config::mqtt_password(&c.mqtt, &env)?;
                Ok(c)
            });
            match checked {
                Ok(c) => {
                    if print {
                        print!("{}", toml::to_string_pretty(&c)?);
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
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    std::process::exit(i32::from(EX_CONFIG));
                }
            }
        }
    }
}
