//! The link registry: which `[[link]]` kinds this build knows, how their
//! `[link.<kind>]` settings are checked while the config loads, and how each
//! becomes a running driver under `rollcall_hw::link::spawn_supervised`.
//!
//! Kinds:
//! - `roip`: RTP/UDP to a RoIP gateway box; settings are
//!   [`rollcall_hw::roip::RoipConfig`].
//! - `sim`: a simulated base station inside the daemon ([`SimSettings`]),
//!   reached over real RoIP on loopback.
//! - `control`: a control-only link (squelch in, PTT out, no audio) through a
//!   serial or network control interface: modem lines, CM108 GPIO, SvxLink
//!   PTY, Kenwood CAT, SA818, Hamlib rigctld
//!   ([`rollcall_hw::serial::ControlConfig`]).
//! - `soundcard`: audio through a sound card (cpal/ALSA) paired with an
//!   optional control half for squelch and PTT (`[link.soundcard.audio]` +
//!   `[link.soundcard.control]`); VOX when no control half is given.
//! - `dmr`: a Homebrew (MMDVM) master that the station's hotspot or repeater
//!   logs in to ([`DmrSettings`]); caller ids and radio checks, no audio
//!   (AMBE+2 has no public codec).

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Deserialize;
use toml_edit::Item;

pub use rollcall_hw::roip::RoipConfig;

/// Why a link's settings were refused.
#[derive(Debug)]
pub enum SettingsError {
    /// The kind is not known; carries the list of allowed kinds.
    UnknownKind(String),
    Invalid(toml_edit::de::Error),
}

/// Every kind, for messages.
pub const KINDS: &[&str] = &["roip", "sim", "control", "soundcard", "dmr"];

/// `[link.soundcard]`: the audio half and, optionally, the control half.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoundcardSettings {
    /// `[link.soundcard.audio]`: the ALSA device and its buffer.
    pub audio: rollcall_hw::soundcard::SoundcardConfig,
    /// `[link.soundcard.control]`: how squelch is read and PTT keyed (same
    /// shapes as `kind = "control"`). Without it, squelch comes from VOX and
    /// the link cannot key a transmitter.
    #[serde(default)]
    pub control: Option<rollcall_hw::serial::ControlConfig>,
}

/// A sound card paired with a control interface: the control half's squelch
/// feeds the sound card's COR, and the sound card's PTT requests drive the
/// control half. Either half failing ends the run (the supervisor restarts
/// both), so audio never flows on a link whose PTT cannot be released.
struct PairedSoundcard {
    settings: SoundcardSettings,
}

impl rollcall_hw::link::LinkDriver for PairedSoundcard {
    fn describe(&self) -> String {
        match &self.settings.control {
            Some(_) => format!("soundcard {} with control", self.settings.audio.device),
            None => format!("soundcard {} (VOX)", self.settings.audio.device),
        }
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut rollcall_hw::link::DriverIo,
        cancel: tokio_util::sync::CancellationToken,
    ) -> rollcall_hw::link::BoxFuture<'a, Result<(), rollcall_hw::link::LinkError>> {
        use rollcall_hw::link::LinkError;
        use rollcall_hw::serial::{ControlEvent, ControlIo};
        use rollcall_hw::soundcard::SoundcardDriver;
        Box::pin(async move {
            let audio = self.settings.audio.clone();
            let Some(control) = self.settings.control.clone() else {
                return SoundcardDriver::new(audio, None).run(io, cancel).await;
            };
            let (cor_tx, cor_rx) = tokio::sync::watch::channel(false);
            let (ptt_tx, ptt_rx) = tokio::sync::watch::channel(false);
            let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel(16);
            let mut backend = rollcall_hw::serial::backend_from_config(&control);
            let mut cio = ControlIo {
                ptt: ptt_rx,
                events: ev_tx,
            };
            let control_cancel = cancel.child_token();
            let mut sound = SoundcardDriver::new(audio, Some(cor_rx)).with_ptt(ptt_tx);
            let forward = async {
                while let Some(ev) = ev_rx.recv().await {
                    if let ControlEvent::Cor(open) = ev {
                        let _ = cor_tx.send(open);
                    }
                }
            };
            let result = tokio::select! {
                r = sound.run(io, cancel.clone()) => r,
                r = backend.run(&mut cio, control_cancel.clone()) => Err(r.err().unwrap_or_else(|| {
                    LinkError::Protocol("the control interface stopped".into())
                })),
                _ = forward => Err(LinkError::Protocol("the control interface stopped".into())),
            };
            control_cancel.cancel();
            result
        })
    }
}

/// `[link.dmr]`: a Homebrew master.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmrSettings {
    /// Where MMDVMHost/DMRGateway sends to, usually port 62030.
    pub bind: std::net::SocketAddr,
    /// The repeaters or hotspots allowed to log in.
    #[serde(rename = "peer")]
    pub peers: Vec<DmrPeer>,
    /// A peer silent this long is dropped.
    #[serde(default = "default_ping_timeout")]
    pub ping_timeout_s: u64,
    /// The DMR id radio checks are sent from.
    #[serde(default = "default_checker")]
    pub checker_id: u32,
    #[serde(default = "default_colour")]
    pub colour_code: u8,
    /// Timeslot radio checks go out on: 2 suits simplex hotspots, 1 or 2 a
    /// repeater's talk group layout.
    #[serde(default = "default_check_slot")]
    pub radio_check_slot: u8,
    /// Seconds to wait for a radio's answer to one check.
    #[serde(default = "default_check_timeout")]
    pub radio_check_timeout_s: u64,
}

fn default_check_slot() -> u8 {
    2
}
fn default_check_timeout() -> u64 {
    3
}

/// `[[link.dmr.peer]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmrPeer {
    pub id: u32,
    /// The peer's password; prefer `password_env`.
    #[serde(default)]
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

fn default_ping_timeout() -> u64 {
    30
}
fn default_checker() -> u32 {
    9990
}
fn default_colour() -> u8 {
    1
}

impl DmrSettings {
    fn to_hw(&self) -> Result<rollcall_hw::dmr::HomebrewConfig, String> {
        let mut peers = Vec::new();
        for p in &self.peers {
            let password = match (&p.password, &p.password_env) {
                (_, Some(var)) => std::env::var(var)
                    .map_err(|_| format!("peer {}: environment variable {var} is not set", p.id))?,
                (Some(pw), None) => pw.clone(),
                (None, None) => return Err(format!("peer {}: set password or password_env", p.id)),
            };
            peers.push(rollcall_hw::dmr::PeerCredentials { id: p.id, password });
        }
        let mut cfg = rollcall_hw::dmr::HomebrewConfig::new(self.bind, peers);
        cfg.ping_timeout = std::time::Duration::from_secs(self.ping_timeout_s);
        cfg.checker_id = self.checker_id;
        cfg.colour_code = self.colour_code;
        cfg.validate().map_err(|e| e.join("; "))?;
        Ok(cfg)
    }
}

/// `[link.sim]`: a simulated base station run inside the daemon, connected
/// over real RoIP on loopback UDP. Its guards are the roster's guards that
/// have a DTMF, 5-tone or MDC1200 code (plus any listed in `guard`); each
/// answers calls and roll calls per the seeded chances below. For the demo
/// and for tests; `radiosim` runs the same stations as a separate process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    /// Seed for repeatable behaviour.
    #[serde(default)]
    pub seed: u64,
    /// Make the roster's radio guards this station's guards.
    #[serde(default = "yes")]
    pub roster_guards: bool,
    /// Only roster guards of these companies (empty = all).
    #[serde(default)]
    pub companies: Vec<String>,
    /// Chance a guard does not answer a given call, 0–1.
    #[serde(default)]
    pub miss_chance: f64,
    /// Chance a guard answers late, 0–1.
    #[serde(default)]
    pub late_chance: f64,
    #[serde(default = "default_reply_delay")]
    pub reply_delay_ms: u32,
    #[serde(default = "default_late_delay")]
    pub late_delay_ms: u32,
    /// How long a guard talks after his ID when he answers.
    #[serde(default = "default_talk_ms")]
    pub talk_ms: u32,
    /// A gateway transmission at least this long is a group roll call.
    #[serde(default = "default_roll_call_min")]
    pub roll_call_min_ms: u32,
    /// Mean interval of background voice traffic; none when 0.
    #[serde(default)]
    pub background_mean_ms: u32,
    /// First background transmission after this long (random when absent).
    #[serde(default)]
    pub background_first_ms: Option<u32>,
    /// Length range of background transmissions.
    #[serde(default = "default_talk_min")]
    pub background_talk_min_ms: u32,
    #[serde(default = "default_talk_max")]
    pub background_talk_max_ms: u32,
    /// Ground-truth log (JSON lines), relative to the data dir.
    #[serde(default)]
    pub log: Option<std::path::PathBuf>,
    /// Extra simulated guards not in the roster.
    #[serde(default, rename = "guard")]
    pub guards: Vec<rollcall_hw::sim::station::GuardConfig>,
}

fn yes() -> bool {
    true
}
fn default_reply_delay() -> u32 {
    1500
}
fn default_late_delay() -> u32 {
    20_000
}
fn default_talk_ms() -> u32 {
    1500
}
fn default_roll_call_min() -> u32 {
    3000
}
fn default_talk_min() -> u32 {
    1500
}
fn default_talk_max() -> u32 {
    4000
}

fn parse<T: DeserializeOwned>(settings: Option<&Item>) -> Result<T, SettingsError> {
    let value = match settings {
        Some(item) => item
            .clone()
            .into_value()
            .map_err(|_| invalid("expected a table".into()))?,
        None => toml_edit::Value::InlineTable(Default::default()),
    };
    T::deserialize(value.into_deserializer()).map_err(SettingsError::Invalid)
}

fn invalid(msg: String) -> SettingsError {
    SettingsError::Invalid(serde::de::Error::custom(msg))
}

/// Checks a link's kind and settings while the config loads.
pub fn check_settings(kind: &str, settings: Option<&Item>) -> Result<(), SettingsError> {
    match kind {
        "roip" => {
            let s: RoipConfig = parse(settings)?;
            s.validate().map_err(|e| invalid(e.join("; ")))
        }
        "sim" => {
            let s: SimSettings = parse(settings)?;
            for (name, p) in [
                ("miss_chance", s.miss_chance),
                ("late_chance", s.late_chance),
            ] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(invalid(format!(
                        "{name} = {p} is out of range; allowed 0–1"
                    )));
                }
            }
            Ok(())
        }
        "control" => {
            let _: rollcall_hw::serial::ControlConfig = parse(settings)?;
            Ok(())
        }
        "soundcard" => {
            let _: SoundcardSettings = parse(settings)?;
            Ok(())
        }
        "dmr" => {
            let s: DmrSettings = parse(settings)?;
            if s.peers.is_empty() {
                return Err(invalid("at least one [[link.dmr.peer]] is needed".into()));
            }
            if !(1..=2).contains(&s.radio_check_slot) {
                return Err(invalid(format!(
                    "radio_check_slot = {} is not a DMR timeslot; use 1 or 2",
                    s.radio_check_slot
                )));
            }
            for p in &s.peers {
                if p.password.is_none() && p.password_env.is_none() {
                    return Err(invalid(format!(
                        "peer {}: set password or password_env",
                        p.id
                    )));
                }
            }
            Ok(())
        }
        _ => Err(SettingsError::UnknownKind(KINDS.join(", "))),
    }
}

/// What building a driver may need from the daemon.
pub struct BuildContext<'a> {
    pub config: &'a crate::config::Config,
    pub cancel: tokio_util::sync::CancellationToken,
    /// Simulated stations started for `sim` links, kept for shutdown.
    pub sims: &'a std::sync::Mutex<Vec<rollcall_hw::sim::station::StationHandle>>,
    /// Radio-check handles of `dmr` links, by link id, for roll calls.
    pub radio_checks: &'a std::sync::Mutex<std::collections::BTreeMap<String, DmrCheck>>,
}

/// How to radio-check through one `dmr` link.
#[derive(Clone)]
pub struct DmrCheck {
    pub handle: rollcall_hw::dmr::RadioCheckHandle,
    pub slot: rollcall_hw::dmr::Slot,
    pub timeout: std::time::Duration,
}

/// The roll-call engine's [`RadioCheck`](crate::rollcall::RadioCheck): sends
/// a DMR radio check through every `dmr` link of the channel. The radio's
/// answer arrives as an ANI event (kind `dmr`, op `RadioCheckAck`) on the
/// channel, which is what the engine waits for.
pub struct DmrRadioChecks {
    pub by_channel: std::collections::BTreeMap<String, Vec<DmrCheck>>,
}

impl crate::rollcall::RadioCheck for DmrRadioChecks {
    fn radio_check(
        &self,
        channel: &str,
        dmr_id: u32,
    ) -> crate::channel::BoxFuture<'_, Result<(), crate::channel::TxError>> {
        let checks = self.by_channel.get(channel).cloned().unwrap_or_default();
        Box::pin(async move {
            if checks.is_empty() {
                return Err(crate::channel::TxError::NoLinkUp);
            }
            for c in checks {
                // The outcome is also reported as ANI on the channel; here it
                // is only logged, so the engine is not held for the wait.
                tokio::spawn(async move {
                    match c.handle.radio_check(dmr_id, c.slot, c.timeout, 0).await {
                        Ok(outcome) => tracing::debug!(dmr_id, ?outcome, "DMR radio check"),
                        Err(e) => tracing::warn!(dmr_id, error = %e, "DMR radio check failed"),
                    }
                });
            }
            Ok(())
        })
    }
}

/// Builds the driver for a configured link. Settings were checked at load,
/// so errors here are about the environment (a port, a device).
pub fn build_driver(
    link: &crate::config::LinkConfig,
    cx: &BuildContext<'_>,
) -> Result<Box<dyn rollcall_hw::link::LinkDriver>, String> {
    let settings = link.settings.as_ref();
    let err = |e: SettingsError| match e {
        SettingsError::UnknownKind(k) => format!("unknown link kind; allowed: {k}"),
        SettingsError::Invalid(e) => e.to_string(),
    };
    match link.kind.as_str() {
        "roip" => {
            let cfg: RoipConfig = parse(settings).map_err(err)?;
            Ok(Box::new(rollcall_hw::roip::RoipDriver::new(cfg)))
        }
        "sim" => {
            let s: SimSettings = parse(settings).map_err(err)?;
            let (gateway, station) = (free_udp_port()?, free_udp_port()?);
            let codec = rollcall_hw::roip::Codec::Pcmu;
            let mut roip = RoipConfig::new(gateway, station, codec);
            // The simulated station sends nothing while idle.
            roip.peer_timeout_ms = 0;
            let mut station_roip = RoipConfig::new(station, gateway, codec);
            station_roip.peer_timeout_ms = 0;
            let cfg = sim_station_config(&link.id, &s, station_roip, cx);
            let handle = rollcall_hw::sim::station::Station::spawn(cfg, cx.cancel.clone())
                .map_err(|e| format!("simulated station: {e}"))?;
            tracing::info!(link = %link.id, station = %handle.local_addr, %gateway, "simulated base station started");
            cx.sims
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(handle);
            Ok(Box::new(rollcall_hw::roip::RoipDriver::new(roip)))
        }
        "control" => {
            let cfg: rollcall_hw::serial::ControlConfig = parse(settings).map_err(err)?;
            let backend = rollcall_hw::serial::backend_from_config(&cfg);
            Ok(Box::new(rollcall_hw::serial::ControlLink::new(backend)))
        }
        "soundcard" => {
            let settings: SoundcardSettings = parse(settings).map_err(err)?;
            Ok(Box::new(PairedSoundcard { settings }))
        }
        "dmr" => {
            let s: DmrSettings = parse(settings).map_err(err)?;
            let (link_driver, checks) = rollcall_hw::dmr::HomebrewLink::new(s.to_hw()?);
            cx.radio_checks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    link.id.clone(),
                    DmrCheck {
                        handle: checks,
                        slot: if s.radio_check_slot == 1 {
                            rollcall_hw::dmr::Slot::One
                        } else {
                            rollcall_hw::dmr::Slot::Two
                        },
                        timeout: std::time::Duration::from_secs(s.radio_check_timeout_s),
                    },
                );
            Ok(Box::new(link_driver))
        }
        other => Err(format!("link kind \"{other}\" has no driver in this build")),
    }
}

fn free_udp_port() -> Result<std::net::SocketAddr, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| format!("cannot find a free loopback UDP port: {e}"))
}

fn sim_station_config(
    link_id: &str,
    s: &SimSettings,
    roip: RoipConfig,
    cx: &BuildContext<'_>,
) -> rollcall_hw::sim::station::StationConfig {
    use rollcall_hw::sim::station::{GuardConfig, StationConfig};
    let mut guards = s.guards.clone();
    let selcall_standard = cx
        .config
        .channels
        .iter()
        .find(|c| c.links.iter().any(|l| l == link_id))
        .and_then(|c| c.ani.selcall.clone())
        .unwrap_or_else(|| "ccir".into());
    if s.roster_guards {
        for g in &cx.config.roster.guards {
            if !s.companies.is_empty() && !s.companies.contains(&g.company) {
                continue;
            }
            let (ani, code) = if let Some(d) = &g.dtmf {
                ("dtmf", d.clone())
            } else if let Some(c) = &g.selcall {
                ("selcall", c.clone())
            } else if let Some(m) = &g.mdc1200 {
                ("mdc1200", m.to_ascii_uppercase())
            } else {
                continue;
            };
            let mut gc: GuardConfig = serde_json::from_value(serde_json::json!({
                "id": g.id, "ani": ani, "code": code,
            }))
            .expect("a minimal sim guard always parses");
            gc.reply_delay_ms = s.reply_delay_ms;
            gc.late_delay_ms = s.late_delay_ms;
            gc.miss_chance = s.miss_chance;
            gc.late_chance = s.late_chance;
            gc.talk_ms = s.talk_ms;
            guards.push(gc);
        }
    }
    let background = (s.background_mean_ms > 0).then(|| {
        serde_json::from_value(serde_json::json!({
            "mean_interval_ms": s.background_mean_ms,
            "first_after_ms": s.background_first_ms,
            "talk_min_ms": s.background_talk_min_ms,
            "talk_max_ms": s.background_talk_max_ms,
        }))
        .expect("a minimal background config always parses")
    });
    StationConfig {
        name: link_id.to_owned(),
        seed: s.seed,
        roip,
        selcall_standard,
        roll_call_min_ms: s.roll_call_min_ms,
        roll_call_tone_hz: None,
        log: s.log.as_ref().map(|p| cx.config.daemon.data_dir.join(p)),
        background,
        guards,
    }
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
    build: &BuildContext<'_>,
    station: &crate::station::Station,
    bus: &crate::events::Bus,
    audio: Option<tokio::sync::mpsc::Sender<(std::sync::Arc<str>, rollcall_hw::link::LinkEvent)>>,
    counters: std::sync::Arc<crate::metrics::LinkCounters>,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<RunningLink, String> {
    use crate::events::Event;
    use crate::station::LinkState;
    use rollcall_hw::link::LinkEvent;

    let driver = build_driver(link, build)?;
    if let Some(rtp) = driver.rtp_counters() {
        let _ = counters.rtp.set(rtp);
    }
    station.add_link(&link.id, &link.kind);
    let (handle, mut events, supervisor) = rollcall_hw::link::spawn_supervised(
        link.id.clone(),
        driver,
        rollcall_hw::link::Backoff::default(),
        cancel.clone(),
    );
    let id = link.id.clone();
    let shared_id: std::sync::Arc<str> = std::sync::Arc::from(link.id.as_str());
    let station = station.clone();
    let bus = bus.clone();
    let task = tokio::spawn(async move {
        let mut cor = false;
        while let Some(ev) = events.recv().await {
            if matches!(ev, LinkEvent::Audio { .. }) {
                counters
                    .frames_in
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
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
                LinkEvent::Ani(_) | LinkEvent::Concealed { .. } => {}
            }
            if let Some(audio) = &audio {
                // An `Arc` clone: no allocation per frame on the audio path.
                if audio.send((shared_id.clone(), ev)).await.is_err() {
                    break;
                }
            }
        }
        let _ = supervisor.await;
    });
    Ok(RunningLink { handle, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sound-card link whose ALSA device does not exist fails its run with
    /// an error naming the device, and the supervisor would retry it.
    #[tokio::test]
    async fn missing_sound_card_fails_the_run_with_its_name() {
        let config = crate::config::load_str(
            r#"[daemon]
station_id = "a"
[[link]]
id = "usb"
kind = "soundcard"
[link.soundcard.audio]
device = "no-such-card-here"
[link.soundcard.control]
kind = "svxlink_pty"
path = "/nonexistent/pty"
"#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let sims = std::sync::Mutex::new(Vec::new());
        let checks = std::sync::Mutex::new(Default::default());
        let cancel = tokio_util::sync::CancellationToken::new();
        let cx = BuildContext {
            config: &config,
            cancel: cancel.clone(),
            sims: &sims,
            radio_checks: &checks,
        };
        let mut driver = build_driver(&config.links[0], &cx).unwrap();
        assert!(driver.describe().contains("no-such-card-here"));
        let (ev_tx, _ev_rx) = tokio::sync::mpsc::channel(16);
        let (_cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(16);
        let mut io = rollcall_hw::link::DriverIo::new(ev_tx, cmd_rx);
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            driver.run(&mut io, cancel),
        )
        .await
        .expect("the run ends on its own");
        let err = result.expect_err("no such device").to_string();
        assert!(
            err.contains("no-such-card-here") || err.contains("/nonexistent/pty"),
            "{err}"
        );
    }
}
