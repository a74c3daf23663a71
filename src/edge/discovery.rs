//! Home Assistant MQTT discovery (`[mqtt] home_assistant = true`): for each camera a device with
//! a connectivity sensor (its status topic), the `enabled`, `detect` and `snapshots` switches
//! (wired to the control topics) and a count sensor per label (Frigate's
//! `<prefix>/<camera>/<label>` topics). Retained configs under `<discovery_prefix>/<component>/
//! <node>/<object>/config`; an empty retained payload removes an entity when its camera goes.

use serde_json::{json, Value};

use crate::edge::events::OutMsg;
use crate::edge::topics::{discovery_config, Switch, Topics};

/// The discovery messages of one daemon (`node`: its MQTT client id, made topic-safe).
pub struct Discovery<'a> {
    pub topics: &'a Topics,
    pub discovery_prefix: &'a str,
    pub client_id: &'a str,
    /// The model's name (the device's `model`).
    pub model: &'a str,
    /// The model's labels (a count sensor each).
    pub labels: &'a [String],
}

/// Letters, digits and `_` only (Home Assistant's node and object ids).
fn id_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl Discovery<'_> {
    fn node(&self) -> String {
        id_safe(self.client_id)
    }

    /// `(topic, payload)` of every entity of `camera`.
    pub fn entities(&self, camera: &str) -> Vec<(String, Value)> {
        let node = self.node();
        let ct = self.topics.camera(camera);
        let cam_id = id_safe(camera);
        let device = json!({
            "identifiers": [format!("inspro_{node}_{cam_id}")],
            "name": camera,
            "manufacturer": "InsPro Edge",
            "model": self.model,
        });
        // The daemon's `available` topic says `online`, `stopped` or `offline` (last will).
        let availability = json!([{
            "topic": self.topics.available(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
        }]);
        let entity = |component: &str, object: &str, mut body: Value| {
            let object_id = format!("{cam_id}_{}", id_safe(object));
            body["unique_id"] = json!(format!("inspro_{node}_{object_id}"));
            body["object_id"] = json!(object_id);
            body["device"] = device.clone();
            body["availability"] = availability.clone();
            (
                discovery_config(self.discovery_prefix, component, &node, &object_id),
                body,
            )
        };
        let mut out = vec![entity(
            "binary_sensor",
            "online",
            json!({
                "name": "Online",
                "device_class": "connectivity",
                "state_topic": ct.status(),
                "value_template": "{{ 'ON' if value == 'online' else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
        )];
        for s in Switch::ALL {
            out.push(entity(
                "switch",
                s.as_str(),
                json!({
                    "name": match s {
                        Switch::Enabled => "Enabled",
                        Switch::Detect => "Detect",
                        Switch::Snapshots => "Snapshots",
                    },
                    "command_topic": ct.set(s),
                    "state_topic": ct.state(s),
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "state_on": "ON",
                    "state_off": "OFF",
                    "optimistic": false,
                }),
            ));
        }
        for label in self.labels {
            out.push(entity(
                "sensor",
                &format!("{label}_count"),
                json!({
                    "name": format!("{label} count"),
                    "state_topic": ct.count(label),
                    "state_class": "measurement",
                    "unit_of_measurement": "objects",
                }),
            ));
        }
        out
    }

    /// The retained config messages of `camera`.
    pub fn camera_configs(&self, camera: &str) -> Vec<OutMsg> {
        self.entities(camera)
            .into_iter()
            .map(|(topic, body)| retained(topic, body.to_string()))
            .collect()
    }

    /// Empty retained messages that remove `camera`'s entities.
    pub fn camera_removed(&self, camera: &str) -> Vec<OutMsg> {
        self.entities(camera)
            .into_iter()
            .map(|(topic, _)| retained(topic, String::new()))
            .collect()
    }
}

fn retained(topic: String, payload: String) -> OutMsg {
    OutMsg {
        topic,
        payload,
        qos: 1,
        retain: true,
        bytes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_name_the_daemons_topics() {
        let topics = Topics::new("site/inspro");
        let labels = vec!["person".to_string(), "fire truck".to_string()];
        let d = Discovery {
            topics: &topics,
            discovery_prefix: "homeassistant",
            client_id: "box-1.lan",
            model: "inspro-tiny",
            labels: &labels,
        };
        let e = d.entities("door");
        assert_eq!(e.len(), 1 + 3 + 2);
        let (topic, sw) = e
            .iter()
            .find(|(t, _)| t.ends_with("door_detect/config"))
            .expect("detect switch");
        assert_eq!(topic, "homeassistant/switch/box_1_lan/door_detect/config");
        assert_eq!(sw["command_topic"], "site/inspro/door/detect/set");
        assert_eq!(sw["state_topic"], "site/inspro/door/detect/state");
        for (_, body) in &e {
            for k in ["unique_id", "object_id", "device", "availability", "name"] {
                assert!(!body[k].is_null(), "{k} missing in {body}");
            }
        }
        let (_, count) = e
            .iter()
            .find(|(t, _)| t.ends_with("door_fire_truck_count/config"))
            .expect("count sensor");
        assert_eq!(count["state_topic"], "site/inspro/door/fire truck");
        assert!(d
            .camera_removed("door")
            .iter()
            .all(|m| m.retain && m.payload.is_empty()));
    }
}
