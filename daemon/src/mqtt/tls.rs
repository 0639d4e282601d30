//! TLS for the broker connection: rustls with the `ring` provider only
//! (aws-lc needs cmake to build). The CA bundle is `mqtt.ca_file`, else
//! Debian's system bundle.

use std::sync::Arc;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

/// Debian's bundle of system roots (package ca-certificates).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA bundle {0}: {1}")]
    Bundle(String, String),
    #[error("CA bundle {0} holds no usable certificate")]
    NoRoots(String),
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A rustls client config trusting the PEM certificates in `pem`.
pub fn client_config(pem: &[u8], origin: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| TlsError::Bundle(origin.into(), e.to_string()))?;
        // A bundle may hold certificates rustls rejects; skip those.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots(origin.into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A client config trusting the system's roots.
pub fn system_config() -> Result<rustls::ClientConfig, TlsError> {
    let pem = std::fs::read(SYSTEM_ROOTS)
        .map_err(|e| TlsError::Bundle(SYSTEM_ROOTS.into(), e.to_string()))?;
    client_config(&pem, SYSTEM_ROOTS)
}

/// Switches `opts` to TLS with `config`.
pub fn apply(opts: &mut MqttOptions, config: Arc<rustls::ClientConfig>) {
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_roots_load_and_garbage_is_refused() {
        if std::path::Path::new(SYSTEM_ROOTS).exists() {
            let pem = std::fs::read(SYSTEM_ROOTS).unwrap();
            client_config(&pem, SYSTEM_ROOTS).unwrap();
        }
        assert!(matches!(
            client_config(b"not a certificate", "x"),
            Err(TlsError::NoRoots(_))
        ));
    }
}
