//! The cameras' switches, Frigate's way: `enabled` (the pipeline runs), `detect` (frames reach
//! the engine) and `snapshots`, set by `<prefix>/<camera>/<switch>/set` with `ON` or `OFF` and
//! told on the retained `<prefix>/<camera>/<switch>/state`. Every front-end that switches a
//! camera (MQTT today) goes through [`SwitchStore`], which keeps them across restarts in
//! `<spool_dir>/switches.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::edge::events::OutMsg;
use crate::edge::topics::{Switch, Topics};

/// One camera's switches; a camera never switched has them all on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Switches {
    pub enabled: bool,
    pub detect: bool,
    pub snapshots: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            enabled: true,
            detect: true,
            snapshots: true,
        }
    }
}

impl Switches {
    pub fn get(&self, s: Switch) -> bool {
        match s {
            Switch::Enabled => self.enabled,
            Switch::Detect => self.detect,
            Switch::Snapshots => self.snapshots,
        }
    }

    fn set(&mut self, s: Switch, on: bool) {
        match s {
            Switch::Enabled => self.enabled = on,
            Switch::Detect => self.detect = on,
            Switch::Snapshots => self.snapshots = on,
        }
    }
}

/// `ON` / `OFF` (any case, surrounding white space ignored), as Frigate and Home Assistant send.
pub fn parse_on_off(payload: &[u8]) -> Option<bool> {
    let s = std::str::from_utf8(payload).ok()?.trim();
    if s.eq_ignore_ascii_case("on") {
        Some(true)
    } else if s.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

/// `ON` or `OFF`.
pub fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

/// The retained `<prefix>/<camera>/<switch>/state` message.
pub fn state_message(topics: &Topics, camera: &str, switch: Switch, on: bool) -> OutMsg {
    OutMsg {
        topic: topics.camera(camera).state(switch),
        payload: on_off(on).into(),
        qos: 1,
        retain: true,
        bytes: None,
    }
}

/// Every camera's switches, persisted.
#[derive(Debug)]
pub struct SwitchStore {
    path: PathBuf,
    cameras: BTreeMap<String, Switches>,
}

impl SwitchStore {
    /// The file name under the state directory.
    pub const FILE: &'static str = "switches.json";

    /// Read `<dir>/switches.json`. A missing file: every switch on. A file that cannot be read
    /// or parsed: a warning naming it, every switch on (it is rewritten at the next change).
    pub fn open(dir: &Path) -> Self {
        let path = dir.join(Self::FILE);
        let cameras = match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "switches file unreadable; every switch on");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the switches file; every switch on");
                BTreeMap::new()
            }
        };
        Self { path, cameras }
    }

    pub fn get(&self, camera: &str) -> Switches {
        self.cameras.get(camera).copied().unwrap_or_default()
    }

    /// Set one switch and write the file (temp file + rename); returns whether it changed.
    pub fn set(&mut self, camera: &str, switch: Switch, on: bool) -> std::io::Result<bool> {
        let mut s = self.get(camera);
        if s.get(switch) == on {
            return Ok(false);
        }
        s.set(switch, on);
        if s == Switches::default() {
            self.cameras.remove(camera);
        } else {
            self.cameras.insert(camera.to_string(), s);
        }
        self.save()?;
        Ok(true)
    }

    /// Forget a removed camera's switches.
    pub fn forget(&mut self, camera: &str) -> std::io::Result<()> {
        if self.cameras.remove(camera).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.cameras).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// What the supervisor is asked to do by a front-end.
#[derive(Debug)]
pub enum Request {
    /// A message on a control topic (MQTT).
    Mqtt(Command),
    /// Switch a camera (the HTTP API); the answer says whether the camera exists.
    Switch {
        camera: String,
        switch: crate::edge::topics::Switch,
        on: bool,
        reply: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    },
}

/// A message that arrived on a control topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Delivered because it was retained on the broker: an old command, not acted on.
    pub retained: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_off_payloads() {
        for (p, want) in [
            (&b"ON"[..], Some(true)),
            (b"off", Some(false)),
            (b" On\n", Some(true)),
            (b"1", None),
            (b"", None),
            (b"\xff", None),
        ] {
            assert_eq!(parse_on_off(p), want, "{p:?}");
        }
    }

    #[test]
    fn switches_persist_and_a_bad_file_means_all_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = SwitchStore::open(dir.path());
        assert_eq!(s.get("door"), Switches::default());
        assert!(s.set("door", Switch::Detect, false).expect("set"));
        assert!(!s.set("door", Switch::Detect, false).expect("set again"));
        let again = SwitchStore::open(dir.path());
        assert!(!again.get("door").detect && again.get("door").enabled);
        assert_eq!(again.get("yard"), Switches::default());
        std::fs::write(dir.path().join(SwitchStore::FILE), "{not json").expect("write");
        assert_eq!(
            SwitchStore::open(dir.path()).get("door"),
            Switches::default()
        );
    }
}
