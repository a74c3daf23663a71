//! The daemon's configuration: TOML layers plus `INSPRO__SECTION__KEY` environment overrides (the
//! `config` crate), deserialised with the path of any bad field, then validated field by field.
//! Secrets (the MQTT password) never come from the config file: they are read from the
//! environment or from `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), and never logged.
//!
//! The sections are in `schema`, URI parsing in `sources`, the password in `secrets`, the checks
//! in `validate`, the systemd directories in `dirs` and the restart-only keys in `reload`.

mod dirs;
mod reload;
mod schema;
mod secrets;
mod sources;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

pub use schema::{
    BackoffConfig, CameraConfig, ClipConfig, EdgeConfig, EngineKind, EngineSection, HttpConfig,
    MaskFormat, MaskRegion, ModelSection, MqttConfig, Pace, PublishConfig, QosConfig,
    RtspTransport, ServiceConfig, SnapshotConfig, StoreConfig, TlsConfig, MAX_DURATION_S,
    MAX_SHUTDOWN_S, MAX_SIDE,
};
pub use secrets::{camera_password, http_token, mqtt_password, Secret};
pub use sources::{BrokerAddr, RtspUrl, SourceUri, TestSource, VIDEOTESTSRC_PATTERNS};

/// The commented default configuration (`inspro config default`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../configs/edge.toml");

/// Exit status of a bad configuration (sysexits.h EX_CONFIG).
pub const EX_CONFIG: u8 = 78;

/// A configuration error that names the field and says why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config error: {field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Build the configuration from the embedded defaults, an optional file and the environment
/// (`INSPRO__SECTION__KEY=value`, e.g. `INSPRO__MQTT__URL=mqtt://broker:1883`).
pub fn load(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<EdgeConfig, ConfigError> {
    from_value(merged(file, env)?)
}

/// As [`load`], but a file with mistakes in several places is told all of them: when the whole
/// does not read, each section (and each `[[camera]]`) is read on its own and every one that
/// fails gives its error (`inspro config check`).
pub fn load_all(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<EdgeConfig, Vec<ConfigError>> {
    let value = merged(file, env).map_err(|e| vec![e])?;
    match from_value(value.clone()) {
        Ok(cfg) => Ok(cfg),
        Err(first) => {
            let mut errors = section_errors(&value);
            if errors.is_empty() {
                errors.push(first);
            }
            Err(errors)
        }
    }
}

/// The file and the environment merged by the `config` crate, as JSON.
fn merged(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<serde_json::Value, ConfigError> {
    use config::{Config, Environment, File, FileFormat};
    let mut b = Config::builder();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
        b = b.add_source(File::from_str(&text, FileFormat::Toml));
    }
    let env_map: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("INSPRO__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    b = b.add_source(
        Environment::with_prefix("INSPRO")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env_map)),
    );
    let merged = b.build().map_err(|e| {
        ConfigError::new(
            file.map_or("config".into(), |p| p.display().to_string()),
            e.to_string(),
        )
    })?;
    merged
        .try_deserialize()
        .map_err(|e| ConfigError::new("config", e.to_string()))
}

fn from_value(value: serde_json::Value) -> Result<EdgeConfig, ConfigError> {
    read_as::<EdgeConfig>("", value)
}

/// `value` as a `T`, an error naming the field below `prefix`.
fn read_as<T: serde::de::DeserializeOwned>(
    prefix: &str,
    value: serde_json::Value,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path == ".") {
            (true, true) => "config".to_string(),
            (true, false) => path,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{path}"),
        };
        ConfigError::new(field, e.into_inner().to_string())
    })
}

/// Each top-level section of `value` read on its own: the errors of every one that fails.
fn section_errors(value: &serde_json::Value) -> Vec<ConfigError> {
    let Some(sections) = value.as_object() else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    for (key, v) in sections {
        let v = v.clone();
        let result = match key.as_str() {
            "model" => read_as::<ModelSection>(key, v).map(|_| ()),
            "engine" => read_as::<EngineSection>(key, v).map(|_| ()),
            "tracking" => read_as::<crate::tracking::TrackerConfig>(key, v).map(|_| ()),
            "mqtt" => read_as::<MqttConfig>(key, v).map(|_| ()),
            "publish" => read_as::<PublishConfig>(key, v).map(|_| ()),
            "service" => read_as::<ServiceConfig>(key, v).map(|_| ()),
            "http" => read_as::<HttpConfig>(key, v).map(|_| ()),
            "store" => read_as::<StoreConfig>(key, v).map(|_| ()),
            "camera" => match v {
                serde_json::Value::Array(cameras) => {
                    for (i, c) in cameras.into_iter().enumerate() {
                        if let Err(e) = read_as::<CameraConfig>(&format!("camera[{i}]"), c) {
                            errors.push(e);
                        }
                    }
                    Ok(())
                }
                other => read_as::<Vec<CameraConfig>>(key, other).map(|_| ()),
            },
            other => Err(ConfigError::new(
                other,
                "unknown section (expected model, engine, camera, tracking, mqtt, publish or service)",
            )),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    errors
}

/// The process environment as a map (tests pass their own).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn default_config_parses_and_matches_default_struct() {
        let f = write(DEFAULT_CONFIG_TOML);
        let cfg = load(Some(f.path()), &BTreeMap::new()).expect("default parses");
        assert_eq!(cfg.cameras.len(), 1);
        let expect = EdgeConfig {
            cameras: cfg.cameras.clone(),
            ..EdgeConfig::default()
        };
        assert_eq!(cfg, expect, "configs/edge.toml and Default disagree");
    }

    #[test]
    fn camera_rules_parse_validate_and_reload_hot() {
        let text = |coordinates: &str| {
            format!(
                "[[camera]]\nname = \"c\"\nuri = \"test:ball\"\n\
                 [[camera.zone]]\nname = \"door\"\ncoordinates = {coordinates}\n\
                 [[camera.line]]\nname = \"gate\"\npoints = [[10, 0], [10, 100]]\ndirection = \"forward\"\n\
                 [camera.filters.person]\nmin_area = 50\n\
                 [camera.tracking]\nbirth_score = 0.8\nbirth_nms_iou = 0.5\n"
            )
        };
        let f = write(&text("[[0, 0], [100, 0], [100, 50]]"));
        let cfg = load(Some(f.path()), &BTreeMap::new()).expect("parses");
        cfg.validate().expect("valid");
        let cam = &cfg.cameras[0];
        let rules = cam.rules();
        assert_eq!(rules.zones[0].coordinates[2], [100.0, 50.0]);
        assert_eq!(rules.filters["person"].min_area, 50.0);
        assert_eq!(cam.tracking.apply(cfg.tracking).birth_score, 0.8);
        assert_eq!(cam.tracking.apply(cfg.tracking).birth_nms_iou, 0.5);
        assert_eq!(cfg.tracking.birth_nms_iou, 1.0);
        assert_eq!(
            cam.tracking.apply(cfg.tracking).min_frames,
            cfg.tracking.min_frames
        );
        // Rules are hot: changing them is no cold change.
        let mut other = cfg.clone();
        other.cameras[0].zone.clear();
        assert!(cfg.cold_changes(&other).is_empty());
        // A camera's other keys restart that camera alone (the supervisor's business).
        other.cameras[0].uri = "test:smpte".into();
        assert!(cfg.cold_changes(&other).is_empty());
        assert_ne!(cfg.cameras[0].cold(), other.cameras[0].cold());
        let f = write(&text("[[0, 0], [100, 0]]"));
        let e = load(Some(f.path()), &BTreeMap::new())
            .and_then(|c| c.validate())
            .unwrap_err();
        assert_eq!(e.field, "camera[0].zone[0].coordinates");
    }

    #[test]
    fn env_overrides_file() {
        let f = write(DEFAULT_CONFIG_TOML);
        let cfg = load(
            Some(f.path()),
            &env(&[
                ("INSPRO__MQTT__URL", "mqtt://broker.lan:1884"),
                ("INSPRO__MQTT__MAX_PACKET_SIZE", "65536"),
                ("INSPRO__TRACKING__BIRTH_SCORE", "0.7"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.mqtt.url, "mqtt://broker.lan:1884");
        assert_eq!(cfg.mqtt.max_packet_size, 65536);
        assert_eq!(cfg.tracking.birth_score, 0.7);
        let b = cfg.mqtt.broker().expect("url");
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.lan", 1884, false)
        );
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let f = write("[mqtt]\nmax_packet_sise = 3\n");
        let e = load(Some(f.path()), &BTreeMap::new()).unwrap_err();
        assert!(e.field.starts_with("mqtt"), "{e}");
        assert!(e.reason.contains("max_packet_sise"), "{e}");
        let f = write("[[camera]]\nname = \"a\"\nuri = \"test:\"\nqueue = \"many\"\n");
        let e = load(Some(f.path()), &BTreeMap::new()).unwrap_err();
        assert_eq!(e.field, "camera[0].queue", "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut cfg = EdgeConfig::default();
        cfg.cameras.push(CameraConfig {
            name: "cam".into(),
            uri: "test:ball".into(),
            ..CameraConfig::default()
        });
        cfg.validate().expect("valid");
        let mut bad = cfg.clone();
        bad.cameras[0].uri = "htp://x".into();
        assert_eq!(bad.validate().unwrap_err().field, "camera[0].uri");
        let mut bad = cfg.clone();
        bad.mqtt.qos.lifecycle = 3;
        assert_eq!(bad.validate().unwrap_err().field, "mqtt.qos.lifecycle");
        let mut bad = cfg.clone();
        bad.tracking.keep_score = 0.9;
        assert_eq!(bad.validate().unwrap_err().field, "tracking.keep_score");
        let mut bad = cfg.clone();
        bad.tracking.birth_nms_iou = -0.1;
        assert_eq!(bad.validate().unwrap_err().field, "tracking.birth_nms_iou");
        let mut bad = cfg.clone();
        bad.cameras[0].tracking.birth_nms_iou = Some(2.0);
        assert_eq!(
            bad.validate().unwrap_err().field,
            "camera[0].tracking.birth_nms_iou"
        );
        let mut bad = cfg.clone();
        bad.cameras.push(bad.cameras[0].clone());
        assert_eq!(bad.validate().unwrap_err().field, "camera[1].name");
        let mut bad = cfg.clone();
        bad.mqtt.topic_prefix = "a/#".into();
        assert_eq!(bad.validate().unwrap_err().field, "mqtt.topic_prefix");
        let mut bad = cfg.clone();
        bad.service.metrics_listen = "localhost".into();
        assert_eq!(bad.validate().unwrap_err().field, "service.metrics_listen");
        let mut bad = cfg.clone();
        bad.engine.library = Some("/nonexistent/libonnxruntime.so".into());
        assert_eq!(bad.validate().unwrap_err().field, "engine.library");
        let mut bad = cfg.clone();
        bad.engine.device_id = -1;
        assert_eq!(bad.validate().unwrap_err().field, "engine.device_id");
        let mut bad = cfg.clone();
        bad.engine.sessions = Some(0);
        assert_eq!(bad.validate().unwrap_err().field, "engine.sessions");
        let mut bad = cfg.clone();
        bad.engine.threads = Some(0);
        assert_eq!(bad.validate().unwrap_err().field, "engine.threads");
        let mut bad = cfg.clone();
        bad.cameras[0].snapshots.quality = 0;
        assert_eq!(
            bad.validate().unwrap_err().field,
            "camera[0].snapshots.quality"
        );
    }

    #[test]
    fn uris() {
        assert_eq!(
            SourceUri::parse("file:///a/b.mkv").unwrap(),
            SourceUri::File("/a/b.mkv".into())
        );
        assert_eq!(
            SourceUri::parse("clip.mkv").unwrap(),
            SourceUri::File("clip.mkv".into())
        );
        let SourceUri::Test(t) =
            SourceUri::parse("test:smpte?live=false&width=64&height=48&num_buffers=10").unwrap()
        else {
            panic!("test source")
        };
        assert_eq!(
            (t.pattern.as_str(), t.live, t.width, t.num_buffers),
            ("smpte", false, 64, 10)
        );
        assert!(SourceUri::parse("test:ball?colour=red").is_err());
        assert!(SourceUri::parse("http://x").is_err());
    }

    #[test]
    fn password_sources_and_no_leak() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mqtt-password"), "s3cret\n").unwrap();
        let cfg = MqttConfig::default();
        let (s, from) = mqtt_password(
            &cfg,
            &env(&[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert!(from.contains("credential"));
        assert!(!format!("{s:?}").contains("s3cret"));
        let (s, _) = mqtt_password(&cfg, &env(&[("INSPRO_MQTT_PASSWORD", "pw")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "pw");
        assert!(mqtt_password(&cfg, &BTreeMap::new()).unwrap().is_none());
    }
}
