//! Every MQTT topic the daemon publishes, built in one place from `mqtt.topic_prefix` and a
//! camera name, in Frigate's layout (`<prefix>/<camera>/...`): the publisher, the last will, the
//! snapshots, the open-tracks recovery and the tests all take their topics from here.

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
    }
}
