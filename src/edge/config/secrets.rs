//! The MQTT password and the cameras' passwords: read from the environment, a file or a systemd
//! credential, held in a `Secret` that never prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::schema::{CameraConfig, HttpConfig, MqttConfig};
use super::ConfigError;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `***` (a library's error message
    /// that might quote it).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

/// The systemd credential `name` (`$CREDENTIALS_DIRECTORY/<name>`, `LoadCredential=`), when
/// there is one, and where it came from.
fn credential(
    env: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<(Secret, String)>, ConfigError> {
    let Some(dir) = env.get("CREDENTIALS_DIRECTORY") else {
        return Ok(None);
    };
    let path = Path::new(dir).join(name);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some((
        read_secret(&path, &format!("$CREDENTIALS_DIRECTORY/{name}"))?,
        format!("systemd credential {name}"),
    )))
}

fn read_secret(path: &Path, field: &str) -> Result<Secret, ConfigError> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
    Ok(Secret(s.trim_end_matches(['\n', '\r']).to_string()))
}

/// Camera `i`'s password, and where it came from (for the log; never the value): its
/// `password_file`, else the systemd credential `camera-<name>-password`. A password written in
/// the URI (`rtsp://user:pass@...`) is the URI's business ([`super::RtspUrl`]).
pub fn camera_password(
    i: usize,
    cam: &CameraConfig,
    env: &BTreeMap<String, String>,
) -> Result<Option<(Secret, String)>, ConfigError> {
    if let Some(path) = &cam.password_file {
        let field = format!("camera[{i}].password_file");
        return Ok(Some((
            read_secret(path, &field)?,
            format!("file {}", path.display()),
        )));
    }
    credential(env, &format!("camera-{}-password", cam.name))
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
    let read = read_secret;
    if let Some(p) = env.get("INSPRO_MQTT_PASSWORD") {
        return Ok(Some((Secret(p.clone()), "env INSPRO_MQTT_PASSWORD".into())));
    }
    if let Some(path) = &cfg.password_file {
        return Ok(Some((
            read(path, "mqtt.password_file")?,
            format!("file {}", path.display()),
        )));
    }
    credential(env, "mqtt-password")
}

/// The HTTP API's token, and where it came from: `[http] token`, `token_file`, env
/// `INSPRO_HTTP_TOKEN`, or the systemd credential `http-token`.
pub fn http_token(
    cfg: &HttpConfig,
    env: &BTreeMap<String, String>,
) -> Result<Option<(Secret, String)>, ConfigError> {
    if let Some(t) = &cfg.token {
        return Ok(Some((Secret(t.clone()), "http.token".into())));
    }
    if let Some(path) = &cfg.token_file {
        return Ok(Some((
            read_secret(path, "http.token_file")?,
            format!("file {}", path.display()),
        )));
    }
    if let Some(t) = env.get("INSPRO_HTTP_TOKEN") {
        return Ok(Some((Secret(t.clone()), "env INSPRO_HTTP_TOKEN".into())));
    }
    credential(env, "http-token")
}
