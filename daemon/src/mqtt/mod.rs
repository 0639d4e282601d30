//! The MQTT bridge: publishes station status, link state, every bus event,
//! roll-call progress and alerts under `<prefix>/<station>/…`, and takes
//! acknowledgements (and, when enabled, commands) from guards' apps.
//! Topics and payloads are documented in `docs/mqtt.md`.
//!
//! - [`schema`]: topics and JSON payloads, pure (events in, messages out;
//!   bytes in, validated requests out).
//! - [`outbox`]: the persisted outbox: QoS 1 messages that matter stay in
//!   SQLite until the broker's PubAck, across outages and restarts.
//! - [`pkid`]: matching PubAcks to outbox rows (pure).
//! - `bridge`: the tasks around rumqttc.
//!
//! rumqttc's sharp edges and how the bridge handles them: the session is
//! persistent (`clean_session = false`, stable client id) so acks sent while
//! the daemon was away are queued by the broker; rumqttc's own replay of
//! unacknowledged publishes is discarded at every ConnAck and the outbox is
//! re-sent instead (same `msg_id`s, so consumers drop duplicates); reconnects
//! back off exponentially (0.5 s doubling to 30 s); and nothing ever awaits a
//! publish — the bridge only uses `try_publish`, and a full request channel
//! just leaves the row in the outbox for the next sweep.

mod bridge;
pub mod outbox;
pub mod pkid;
pub mod schema;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

pub use bridge::spawn;

use crate::config::Config;

/// Errors found while preparing the bridge, before anything connects.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt.broker \"{0}\" is not host:port")]
    BadBroker(String),
    #[error("mqtt.password_file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mqtt.password_file {path} has mode {mode:o}; it must be 0600 (chmod 600 {path})")]
    PasswordFileMode { path: PathBuf, mode: u32 },
    #[error("mqtt.password_file {0} is empty")]
    PasswordFileEmpty(PathBuf),
    #[error("an MQTT password is set but no username (mqtt.username or ROLLCALLD_MQTT_USERNAME)")]
    PasswordWithoutUser,
    #[error("mqtt.ca_file {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mqtt TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("station_id \"{0}\" cannot be an MQTT topic level")]
    BadStation(String),
}

/// Everything the bridge needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    /// `Some` when TLS is on.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub keepalive: Duration,
    pub commands: bool,
    pub topics: schema::Topics,
    pub version: String,
}

impl Settings {
    /// Resolves `[mqtt]`: broker address, client id, credentials (password
    /// from the config or `ROLLCALLD_MQTT_PASSWORD`, else `password_file`,
    /// which must be mode 0600), TLS material.
    pub fn from_config(config: &Config) -> Result<Settings, MqttError> {
        let m = &config.mqtt;
        let station = &config.daemon.station_id;
        if !schema::valid_level(station) {
            return Err(MqttError::BadStation(station.clone()));
        }
        let (host, port) = m
            .broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| MqttError::BadBroker(m.broker.clone()))?;
        let password = match (&m.password, &m.password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(read_password_file(path)?),
            (None, None) => None,
        };
        let credentials = match (&m.username, password) {
            (Some(u), p) => Some((u.clone(), p.unwrap_or_default())),
            (None, Some(_)) => return Err(MqttError::PasswordWithoutUser),
            (None, None) => None,
        };
        let tls = if m.tls {
            let config = match &m.ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|source| MqttError::CaFile {
                        path: path.clone(),
                        source,
                    })?;
                    tls::client_config(&pem, &path.display().to_string())?
                }
                None => tls::system_config()?,
            };
            Some(std::sync::Arc::new(config))
        } else {
            None
        };
        Ok(Settings {
            host: host.to_owned(),
            port,
            client_id: m
                .client_id
                .clone()
                .unwrap_or_else(|| format!("rollcalld-{station}")),
            credentials,
            tls,
            keepalive: Duration::from_secs(m.keepalive_s),
            commands: m.commands,
            topics: schema::Topics::new(&m.prefix, station),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
}

/// Reads a password file, refusing one that others can read.
fn read_password_file(path: &std::path::Path) -> Result<String, MqttError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| MqttError::PasswordFile {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode != 0o600 && mode != 0o400 {
        return Err(MqttError::PasswordFileMode {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| MqttError::PasswordFile {
        path: path.to_owned(),
        source,
    })?;
    let pw = text.trim_end_matches(['\r', '\n']).to_owned();
    if pw.is_empty() {
        return Err(MqttError::PasswordFileEmpty(path.to_owned()));
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(extra: &str) -> Config {
        crate::config::load_str(
            &format!("[daemon]\nstation_id = \"st\"\n[mqtt]\nenabled = true\n{extra}"),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn defaults_and_broker_address() {
        let s = Settings::from_config(&config("broker = \"mq.example:8883\"")).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("mq.example", 8883));
        assert_eq!(s.client_id, "rollcalld-st");
        assert_eq!(s.topics.status(), "rollcall/st/status");
        assert!(s.credentials.is_none() && s.tls.is_none() && !s.commands);
        let e = Settings::from_config(&config("broker = \"nohost\"")).unwrap_err();
        assert!(e.to_string().contains("host:port"), "{e}");
    }

    #[test]
    fn password_file_must_be_private() {
        let dir = crate::storage::tests_support::tempdir();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = config(&format!(
            "username = \"u\"\npassword_file = \"{}\"",
            pw.display()
        ));
        let e = Settings::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("0600"), "{e}");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Settings::from_config(&c).unwrap();
        assert_eq!(s.credentials, Some(("u".into(), "s3cret".into())));
        let e = Settings::from_config(&config(&format!("password_file = \"{}\"", pw.display())))
            .unwrap_err();
        assert!(matches!(e, MqttError::PasswordWithoutUser));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
