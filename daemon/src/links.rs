//! The link registry: which `[[link]]` kinds this build knows, how their
//! `[link.<kind>]` settings are checked while the config loads, and how each
//! becomes a running driver under `rollcall_hw::link::spawn_supervised`.

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use std::net::SocketAddr;
use toml_edit::Item;

/// Why a link's settings were refused.
#[derive(Debug)]
pub enum SettingsError {
    /// The kind is not known; carries the list of allowed kinds.
    UnknownKind(String),
    Invalid(toml_edit::de::Error),
}

/// Every kind, for messages.
pub const KINDS: &[&str] = &["roip"];

/// `[link.roip]`: RTP/UDP to a RoIP gateway box.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoipSettings {
    /// Local address to bind, e.g. `0.0.0.0:5004`.
    pub bind: SocketAddr,
    /// The gateway's address.
    pub peer: SocketAddr,
    /// `pcmu`, `pcma` or `opus`.
    #[serde(default = "default_codec")]
    pub codec: String,
    /// Dynamic payload type for Opus.
    #[serde(default = "default_opus_pt")]
    pub opus_pt: u8,
    /// RFC 4733 telephone-event payload type.
    #[serde(default = "default_te_pt")]
    pub telephone_event_pt: u8,
    #[serde(default = "default_jitter_min")]
    pub jitter_min_ms: u32,
    #[serde(default = "default_jitter_max")]
    pub jitter_max_ms: u32,
    /// COR stays open this long after the last packet of a talkspurt.
    #[serde(default = "default_cor_hang")]
    pub cor_hang_ms: u32,
    #[serde(default = "default_keepalive")]
    pub keepalive_ms: u32,
    /// Link is down when the peer sends nothing for this long (0 = never).
    #[serde(default)]
    pub peer_timeout_ms: u32,
}

fn default_codec() -> String {
    "pcmu".into()
}
fn default_opus_pt() -> u8 {
    111
}
fn default_te_pt() -> u8 {
    101
}
fn default_jitter_min() -> u32 {
    40
}
fn default_jitter_max() -> u32 {
    200
}
fn default_cor_hang() -> u32 {
    200
}
fn default_keepalive() -> u32 {
    5000
}

fn parse<T: DeserializeOwned>(settings: Option<&Item>) -> Result<T, SettingsError> {
    let value = match settings {
        Some(item) => item
            .clone()
            .into_value()
            .map_err(|_| SettingsError::Invalid(serde::de::Error::custom("expected a table")))?,
        None => toml_edit::Value::InlineTable(Default::default()),
    };
    T::deserialize(value.into_deserializer()).map_err(SettingsError::Invalid)
}

/// Checks a link's kind and settings while the config loads.
pub fn check_settings(kind: &str, settings: Option<&Item>) -> Result<(), SettingsError> {
    match kind {
        "roip" => {
            let s: RoipSettings = parse(settings)?;
            if !["pcmu", "pcma", "opus"].contains(&s.codec.as_str()) {
                return Err(SettingsError::Invalid(serde::de::Error::custom(format!(
                    "unknown codec \"{}\"; allowed: pcmu, pcma, opus",
                    s.codec
                ))));
            }
            Ok(())
        }
        _ => Err(SettingsError::UnknownKind(KINDS.join(", "))),
    }
}

/// Builds the driver for a configured link. Settings were checked at load, so
/// errors here are about the environment (e.g. a device path), not syntax.
pub fn build_driver(
    link: &crate::config::LinkConfig,
) -> Result<Box<dyn rollcall_hw::link::LinkDriver>, String> {
    Err(format!(
        "link kind \"{}\" has no driver in this build",
        link.kind
    ))
}

/// What the daemon keeps per running link.
pub struct RunningLink {
    pub handle: rollcall_hw::link::LinkHandle,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts a configured link under the supervisor, plus the task that turns
/// its events into station state and bus events. Audio frames go to `audio`
/// (the channel task) when given.
pub fn spawn_link(
    link: &crate::config::LinkConfig,
    station: &crate::station::Station,
    bus: &crate::events::Bus,
    audio: Option<tokio::sync::mpsc::Sender<(String, rollcall_hw::link::LinkEvent)>>,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<RunningLink, String> {
    use crate::events::Event;
    use crate::station::LinkState;
    use rollcall_hw::link::LinkEvent;

    let driver = build_driver(link)?;
    station.add_link(&link.id, &link.kind);
    let (handle, mut events, supervisor) = rollcall_hw::link::spawn_supervised(
        link.id.clone(),
        driver,
        rollcall_hw::link::Backoff::default(),
        cancel.clone(),
    );
    let id = link.id.clone();
    let station = station.clone();
    let bus = bus.clone();
    let task = tokio::spawn(async move {
        let mut cor = false;
        while let Some(ev) = events.recv().await {
            match &ev {
                LinkEvent::Up => {
                    station.set_link_state(&id, LinkState::Up, "");
                    bus.publish(Event::LinkUp { link: id.clone() });
                }
                LinkEvent::Down { reason, .. } => {
                    station.set_link_state(&id, LinkState::Down, reason);
                    bus.publish(Event::LinkDown {
                        link: id.clone(),
                        reason: reason.clone(),
                    });
                    cor = false;
                }
                LinkEvent::Cor(open) | LinkEvent::Audio { cor: open, .. } => {
                    if *open != cor {
                        cor = *open;
                        station.update_link(&id, |s| s.cor = cor);
                        bus.publish(Event::Cor {
                            link: id.clone(),
                            open: cor,
                        });
                    }
                }
                LinkEvent::Ptt(on) => {
                    station.update_link(&id, |s| s.ptt = *on);
                    bus.publish(Event::Ptt {
                        link: id.clone(),
                        on: *on,
                    });
                }
                LinkEvent::Ani(_) => {}
            }
            if let Some(audio) = &audio {
                if audio.send((id.clone(), ev)).await.is_err() {
                    break;
                }
            }
        }
        let _ = supervisor.await;
    });
    Ok(RunningLink { handle, task })
}
