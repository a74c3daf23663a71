//! Every MQTT topic the daemon publishes or listens to, built in one place from
//! `mqtt.topic_prefix` and a camera name, in Frigate's layout (`<prefix>/<camera>/...`): the
//! publisher, the last will, the snapshots, the control topics, the open-tracks recovery and the
//! tests all take their topics from here.

/// A camera's switches, Frigate's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Switch {
    /// The camera's pipeline runs (OFF stops it).
    Enabled,
    /// Frames reach the engine (OFF keeps the pipeline, sends nothing to the engine).
    Detect,
    /// Snapshots are made (with `[camera.snapshots]`).
    Snapshots,
}

impl Switch {
    pub const ALL: [Switch; 3] = [Switch::Enabled, Switch::Detect, Switch::Snapshots];

    pub fn as_str(&self) -> &'static str {
        match self {
            Switch::Enabled => "enabled",
            Switch::Detect => "detect",
            Switch::Snapshots => "snapshots",
        }
    }
}

/// `<discovery_prefix>/<component>/<node>/<object>/config`: a Home Assistant MQTT discovery
/// payload (retained; an empty one removes the entity).
pub fn discovery_config(
    discovery_prefix: &str,
    component: &str,
    node: &str,
    object: &str,
) -> String {
    format!("{discovery_prefix}/{component}/{node}/{object}/config")
}

/// A control topic: `<prefix>/<camera>/<switch>/set`, or `<prefix>/restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'t> {
    Set(&'t str, Switch),
    Restart,
}

/// The topics under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// `prefix` is the validated `mqtt.topic_prefix` (no wildcards, no leading or trailing `/`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/available`: `online` while running, `stopped` after a clean exit, `offline` as
    /// the last will; retained.
    pub fn available(&self) -> String {
        format!("{}/available", self.prefix)
    }

    /// `<prefix>/stats`: the periodic statistics of every camera.
    pub fn stats(&self) -> String {
        format!("{}/stats", self.prefix)
    }

    /// `<prefix>/restart`: any payload makes the process exit cleanly (systemd restarts it).
    pub fn restart(&self) -> String {
        format!("{}/restart", self.prefix)
    }

    /// The filters the daemon subscribes to: every camera's `<switch>/set`, and `restart`.
    pub fn control_filters(&self) -> Vec<String> {
        let mut v: Vec<String> = Switch::ALL
            .iter()
            .map(|s| format!("{}/+/{}/set", self.prefix, s.as_str()))
            .collect();
        v.push(self.restart());
        v
    }

    /// What a control topic asks for (`None`: not a control topic).
    pub fn parse_control<'t>(&self, topic: &'t str) -> Option<Control<'t>> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))?;
        if rest == "restart" {
            return Some(Control::Restart);
        }
        let mut parts = rest.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(camera), Some(switch), Some("set"), None) if !camera.is_empty() => {
                let s = Switch::ALL.into_iter().find(|s| s.as_str() == switch)?;
                Some(Control::Set(camera, s))
            }
            _ => None,
        }
    }

    /// The topics of one camera.
    pub fn camera<'a>(&'a self, camera: &'a str) -> CameraTopics<'a> {
        CameraTopics {
            prefix: &self.prefix,
            camera,
        }
    }
}

/// The topics of one camera under a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraTopics<'a> {
    prefix: &'a str,
    camera: &'a str,
}

impl CameraTopics<'_> {
    /// `<prefix>/<camera>/events`: `new`, `update`, `end` and `line` events.
    pub fn events(&self) -> String {
        self.under("events")
    }

    /// `<prefix>/<camera>/tracks`: the per-frame boxes (`publish.tracks`).
    pub fn tracks(&self) -> String {
        self.under("tracks")
    }

    /// `<prefix>/<camera>/status`: `starting`, `online`, `reconnecting`, `ended`; retained.
    pub fn status(&self) -> String {
        self.under("status")
    }

    /// `<prefix>/<camera>/<label>/snapshot`: the JPEG of a track's best view; retained.
    pub fn snapshot(&self, label: &str) -> String {
        format!("{}/{}/{label}/snapshot", self.prefix, self.camera)
    }

    /// `<prefix>/<camera>/<label>`: how many live tracks of `label` the camera sees now
    /// (Frigate's count topic); retained.
    pub fn count(&self, label: &str) -> String {
        format!("{}/{}/{label}", self.prefix, self.camera)
    }

    /// `<prefix>/<camera>/<switch>/set`: `ON` or `OFF` switches it.
    pub fn set(&self, switch: Switch) -> String {
        format!("{}/{}/{}/set", self.prefix, self.camera, switch.as_str())
    }

    /// `<prefix>/<camera>/<switch>/state`: `ON` or `OFF`, retained.
    pub fn state(&self, switch: Switch) -> String {
        format!("{}/{}/{}/state", self.prefix, self.camera, switch.as_str())
    }

    fn under(&self, leaf: &str) -> String {
        format!("{}/{}/{leaf}", self.prefix, self.camera)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_the_prefix_and_camera() {
        let t = Topics::new("site/inspro");
        assert_eq!(t.prefix(), "site/inspro");
        assert_eq!(t.available(), "site/inspro/available");
        assert_eq!(t.stats(), "site/inspro/stats");
        let c = t.camera("door");
        assert_eq!(c.events(), "site/inspro/door/events");
        assert_eq!(c.tracks(), "site/inspro/door/tracks");
        assert_eq!(c.status(), "site/inspro/door/status");
        assert_eq!(c.snapshot("person"), "site/inspro/door/person/snapshot");
        assert_eq!(c.set(Switch::Detect), "site/inspro/door/detect/set");
        assert_eq!(c.state(Switch::Enabled), "site/inspro/door/enabled/state");
        assert_eq!(t.restart(), "site/inspro/restart");
        assert_eq!(c.count("person"), "site/inspro/door/person");
        assert_eq!(
            discovery_config("homeassistant", "switch", "inspro", "door_detect"),
            "homeassistant/switch/inspro/door_detect/config"
        );
    }

    #[test]
    fn control_topics_parse_back() {
        let t = Topics::new("site/inspro");
        for s in Switch::ALL {
            assert_eq!(
                t.parse_control(&t.camera("door").set(s)),
                Some(Control::Set("door", s))
            );
            assert!(t
                .control_filters()
                .contains(&format!("site/inspro/+/{}/set", s.as_str())));
        }
        assert_eq!(
            t.parse_control("site/inspro/restart"),
            Some(Control::Restart)
        );
        for bad in [
            "site/inspro/door/detect/state",
            "site/inspro/door/volume/set",
            "site/inspro//detect/set",
            "site/inspro/door/detect/set/x",
            "other/door/detect/set",
            "site/inspro",
        ] {
            assert_eq!(t.parse_control(bad), None, "{bad}");
        }
    }
}
