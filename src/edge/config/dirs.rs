//! The systemd directories: where the spool lives (`$STATE_DIRECTORY`, else the XDG state home).

use std::path::{Path, PathBuf};

use super::schema::ServiceConfig;

impl ServiceConfig {
    pub fn spool_path(&self) -> PathBuf {
        if !self.spool_dir.is_empty() {
            return PathBuf::from(&self.spool_dir);
        }
        if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
            // systemd may list several, separated by ':'.
            let first = dir
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            if !first.is_empty() {
                return Path::new(&first).join("spool");
            }
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("inspro").join("spool")
    }
}
