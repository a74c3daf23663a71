//! Config reload: which changed keys only take effect on restart.

use super::schema::EdgeConfig;

impl EdgeConfig {
    /// Keys that differ between two configs but only take effect on restart.
    pub fn cold_changes(&self, new: &EdgeConfig) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.model != new.model {
            v.push("model");
        }
        if self.engine != new.engine {
            v.push("engine");
        }
        // Cameras are not here: SIGHUP starts, stops or restarts the ones that changed
        // (`CameraConfig::cold`), and gives the others their new rules and tracking overrides.
        if self.mqtt != new.mqtt {
            v.push("mqtt");
        }
        if self.service.metrics_listen != new.service.metrics_listen {
            v.push("service.metrics_listen");
        }
        if self.http != new.http {
            v.push("http");
        }
        if self.store != new.store {
            v.push("store");
        }
        if self.service.spool_dir != new.service.spool_dir
            || self.service.spool_max_bytes != new.service.spool_max_bytes
        {
            v.push("service.spool_*");
        }
        v
    }
}
