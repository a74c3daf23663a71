//! The MQTT password: read from the environment, a file or a systemd credential, held in a
//! `Secret` that never prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::schema::MqttConfig;
use super::ConfigError;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the MQTT password came from (for the log; never the value).
pub fn mqtt_password(
    cfg: &MqttConfig,
    env: &BTreeMap<String, String>,
) -> Result<Option<(Secret, String)>, ConfigError> {
    let read = |path: &Path, field: &str| -> Result<Secret, ConfigError> {
        let s = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
        Ok(Secret(s.trim_end_matches(['\n', '\r']).to_string()))
    };
    if let Some(p) = env.get("INSPRO_MQTT_PASSWORD") {
        return Ok(Some((Secret(p.clone()), "env INSPRO_MQTT_PASSWORD".into())));
    }
    if let Some(path) = &cfg.password_file {
        return Ok(Some((
            read(path, "mqtt.password_file")?,
            format!("file {}", path.display()),
        )));
    }
    if let Some(dir) = env.get("CREDENTIALS_DIRECTORY") {
        let path = Path::new(dir).join("mqtt-password");
        if path.exists() {
            return Ok(Some((
                read(&path, "$CREDENTIALS_DIRECTORY/mqtt-password")?,
                "systemd credential mqtt-password".into(),
            )));
        }
    }
    Ok(None)
}
