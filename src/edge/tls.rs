//! MQTT over TLS (rustls with the `ring` provider): the broker's certificate is checked against
//! `mqtt.tls.ca_file`, or against the system store when it is unset; a client certificate and key
//! are sent when the broker asks for one. Errors name the field.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::edge::config::{ConfigError, TlsConfig};

fn read_certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(bytes.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(field, format!("{}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn read_key(field: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut BufReader::new(bytes.as_slice()))
        .map_err(|e| ConfigError::new(field, format!("{}: bad PEM: {e}", path.display())))?
        .ok_or_else(|| {
            ConfigError::new(
                field,
                format!("{} holds no PEM private key", path.display()),
            )
        })
}

/// The rustls client configuration for `mqtts://`.
pub fn client_config(t: &TlsConfig) -> Result<ClientConfig, ConfigError> {
    let mut roots = RootCertStore::empty();
    match &t.ca_file {
        Some(ca) => {
            let (added, _ignored) =
                roots.add_parsable_certificates(read_certs("mqtt.tls.ca_file", ca)?);
            if added == 0 {
                return Err(ConfigError::new(
                    "mqtt.tls.ca_file",
                    format!("{}: no usable CA certificate", ca.display()),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or("no certificates".to_string(), |e| e.to_string());
                return Err(ConfigError::new(
                    "mqtt.tls.ca_file",
                    format!("unset, and the system CA store is unusable ({why}): set it, or install ca-certificates"),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("mqtt.tls", e.to_string()))?
        .with_root_certificates(roots);
    match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => {
            let certs = read_certs("mqtt.tls.client_cert", c)?;
            let key = read_key("mqtt.tls.client_key", k)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| ConfigError::new("mqtt.tls.client_key", e.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(ConfigError::new(
            "mqtt.tls.client_key",
            "client_cert and client_key go together",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_store_when_no_ca_file() {
        // Debian's ca-certificates (scripts/setup.sh) fills /etc/ssl/certs.
        client_config(&TlsConfig::default()).expect("the system CA store loads");
    }

    #[test]
    fn bad_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        let e = client_config(&TlsConfig {
            ca_file: Some(junk.clone()),
            ..TlsConfig::default()
        })
        .unwrap_err();
        assert_eq!(e.field, "mqtt.tls.ca_file", "{e}");
        let e = client_config(&TlsConfig {
            ca_file: Some(dir.path().join("missing.pem")),
            ..TlsConfig::default()
        })
        .unwrap_err();
        assert_eq!(e.field, "mqtt.tls.ca_file", "{e}");
        let e = client_config(&TlsConfig {
            client_cert: Some(junk),
            client_key: None,
            ..TlsConfig::default()
        })
        .unwrap_err();
        assert!(e.field.starts_with("mqtt.tls.client"), "{e}");
    }
}
