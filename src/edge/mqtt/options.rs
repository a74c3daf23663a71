//! rumqttc's connection options from `[mqtt]`: broker, session, limits, last will, login, TLS.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS};

use crate::edge::config::{ConfigError, MqttConfig, Secret};
use crate::edge::topics::Topics;

/// rumqttc's options for `cfg` (TLS included); errors name the field.
pub fn mqtt_options(
    cfg: &MqttConfig,
    password: Option<&Secret>,
) -> Result<MqttOptions, ConfigError> {
    let broker = cfg.broker().map_err(|r| ConfigError::new("mqtt.url", r))?;
    let available_topic = Topics::new(cfg.topic_prefix.as_str()).available();
    let mut mo = MqttOptions::new(cfg.client_id.clone(), broker.host.clone(), broker.port);
    mo.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
    mo.set_clean_session(cfg.clean_session);
    // rumqttc's default is 10 KiB both ways, and an oversize publish silently kills the
    // connection with everything queued (docs/edge.md).
    mo.set_max_packet_size(cfg.max_packet_size, cfg.max_packet_size);
    mo.set_inflight(cfg.inflight);
    mo.set_last_will(LastWill::new(
        available_topic,
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    match (&cfg.username, password) {
        (Some(user), Some(p)) => mo.set_credentials(user.clone(), p.expose().to_string()),
        (None, None) => &mut mo,
        (Some(_), None) => {
            return Err(ConfigError::new(
                "mqtt.username",
                "is set without a password (mqtt.password_file, INSPRO_MQTT_PASSWORD or the credential mqtt-password)",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "mqtt.username",
                "a password is set but no user name",
            ))
        }
    };
    if broker.tls {
        let tls = crate::edge::tls::client_config(&cfg.tls)?;
        mo.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
        ));
    }
    Ok(mo)
}
