//! The RoIP link driver: RTP over UDP to one base-station gateway.
//!
//! [`RoipDriver`] is a thin tokio shell around the sans-IO cores
//! ([`receiver::RoipReceiver`] and [`crate::rtp::RtpSender`]): it moves
//! datagrams, fires timers and turns [`LinkCommand`]s into packets.
//!
//! # Squelch and PTT over IP
//! COR is "a talkspurt is present" (marker bit at the start, held while
//! packets arrive, closed `cor_hang_ms` after the last one), as Cisco IPICS
//! and Icom gateways signal it. PTT keys a talkspurt: the first frame sent
//! after `Ptt(true)` carries the marker bit, `Ptt(false)` ends it.
//!
//! # Keep-alives and liveness (the choice made here)
//! Real RoIP boxes differ: many send RTP only while the radio is keyed, some
//! send comfort noise or empty packets while idle, some a side-channel
//! heartbeat. We send an RFC 3389 comfort-noise packet (PT 13, −127 dBov)
//! every `keepalive_ms` while not transmitting. It is valid RTP on the same
//! port, so it keeps a NAT mapping open, any RTP peer ignores or plays it as
//! silence, and tshark decodes it. For liveness, anything from the peer
//! (audio, events, comfort noise) counts as heard. With `peer_timeout_ms > 0`
//! the link is reported up only once the peer has been heard, and a peer
//! silent past the timeout ends the run with [`LinkError::Timeout`] (the
//! supervisor reports it down and retries). Gateways that are silent while
//! idle must be configured with `peer_timeout_ms = 0`: the link is then up as
//! soon as the socket is bound and never times out.
//!
//! Only datagrams from the peer's IP address are accepted (any source port,
//! so a peer behind NAT whose port is remapped still gets through).

pub mod receiver;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::link::{BoxFuture, DriverIo, LinkCommand, LinkDriver, LinkError, LinkEvent};
pub use crate::rtp::Codec;
use crate::rtp::{JitterStats, RtpCounters, RtpSender};
pub use receiver::{ReceiverConfig, RoipReceiver};

/// One RoIP link's settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoipConfig {
    /// Local address to receive on (and send from).
    pub bind: SocketAddr,
    /// The gateway's address.
    pub peer: SocketAddr,
    /// `{ name = "pcmu" }`, `{ name = "pcma" }` or `{ name = "opus", pt = 111 }`.
    pub codec: Codec,
    /// Starting (and smallest) jitter-buffer delay, 20–200 ms.
    #[serde(default = "defaults::jitter_min_ms")]
    pub jitter_min_ms: u32,
    /// Largest jitter-buffer delay, up to 200 ms.
    #[serde(default = "defaults::jitter_max_ms")]
    pub jitter_max_ms: u32,
    /// COR stays open this long after the last packet.
    #[serde(default = "defaults::cor_hang_ms")]
    pub cor_hang_ms: u32,
    /// Comfort-noise keep-alive interval while idle; 0 disables.
    #[serde(default = "defaults::keepalive_ms")]
    pub keepalive_ms: u32,
    /// Link is down when the peer is silent this long; 0 when the peer sends
    /// nothing while idle.
    #[serde(default = "defaults::peer_timeout_ms")]
    pub peer_timeout_ms: u32,
    /// Dynamic payload type of RFC 4733 telephone-events.
    #[serde(default = "defaults::telephone_event_pt")]
    pub telephone_event_pt: u8,
}

mod defaults {
    pub fn jitter_min_ms() -> u32 {
        40
    }
    pub fn jitter_max_ms() -> u32 {
        200
    }
    pub fn cor_hang_ms() -> u32 {
        300
    }
    pub fn keepalive_ms() -> u32 {
        1000
    }
    pub fn peer_timeout_ms() -> u32 {
        5000
    }
    pub fn telephone_event_pt() -> u8 {
        101
    }
}

impl RoipConfig {
    /// A config with the documented defaults.
    pub fn new(bind: SocketAddr, peer: SocketAddr, codec: Codec) -> RoipConfig {
        RoipConfig {
            bind,
            peer,
            codec,
            jitter_min_ms: defaults::jitter_min_ms(),
            jitter_max_ms: defaults::jitter_max_ms(),
            cor_hang_ms: defaults::cor_hang_ms(),
            keepalive_ms: defaults::keepalive_ms(),
            peer_timeout_ms: defaults::peer_timeout_ms(),
            telephone_event_pt: defaults::telephone_event_pt(),
        }
    }

    /// The far end's config: `bind` and `peer` swapped, same codec and
    /// timings. An unspecified bind address (`0.0.0.0`) becomes loopback, so
    /// the far end has somewhere to send. This is how the daemon derives a
    /// simulated station's link from its own RoIP link.
    pub fn mirrored(&self) -> RoipConfig {
        let mut peer = self.bind;
        if peer.ip().is_unspecified() {
            peer.set_ip(match peer {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        RoipConfig {
            bind: self.peer,
            peer,
            ..*self
        }
    }

    /// Every problem with the config, so all are reported at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if !(20..=200).contains(&self.jitter_min_ms) {
            errors.push(format!(
                "jitter_min_ms = {} must be between 20 and 200",
                self.jitter_min_ms
            ));
        }
        if self.jitter_max_ms < self.jitter_min_ms || self.jitter_max_ms > 200 {
            errors.push(format!(
                "jitter_max_ms = {} must be between jitter_min_ms ({}) and 200",
                self.jitter_max_ms, self.jitter_min_ms
            ));
        }
        if let Codec::Opus { pt } = self.codec {
            if !(96..=127).contains(&pt) {
                errors.push(format!("opus payload type {pt} must be dynamic (96-127)"));
            }
            if pt == self.telephone_event_pt {
                errors.push(format!("opus and telephone-event share payload type {pt}"));
            }
        }
        if !(96..=127).contains(&self.telephone_event_pt) {
            errors.push(format!(
                "telephone_event_pt = {} must be dynamic (96-127)",
                self.telephone_event_pt
            ));
        }
        if self.peer_timeout_ms > 0
            && self.keepalive_ms > 0
            && self.peer_timeout_ms <= self.keepalive_ms
        {
            errors.push(format!(
                "peer_timeout_ms = {} must exceed keepalive_ms = {}",
                self.peer_timeout_ms, self.keepalive_ms
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn receiver_config(&self) -> ReceiverConfig {
        ReceiverConfig {
            codec: self.codec,
            telephone_event_pt: self.telephone_event_pt,
            jitter_min: ms(self.jitter_min_ms),
            jitter_max: ms(self.jitter_max_ms),
            cor_hang: ms(self.cor_hang_ms),
        }
    }
}

fn ms(n: u32) -> Duration {
    Duration::from_millis(n as u64)
}

/// Sends DTMF digits as RFC 4733 telephone-events on a RoIP link (what a
/// RoIP box does when its radio sends PTT-ID). Obtained from
/// [`RoipDriver::telephone_events`]. The events go out at once, keyed or
/// not, and audio frames offered while they play are dropped (the events
/// stand for that stretch of audio, RFC 4733 §2.6).
#[derive(Debug, Clone)]
pub struct TelephoneEventSender(mpsc::Sender<String>);

impl TelephoneEventSender {
    /// Queues `digits`; `false` if the driver is gone or its queue full.
    pub fn send(&self, digits: &str) -> bool {
        self.0.try_send(digits.to_string()).is_ok()
    }
}

/// DTMF timing used for outgoing telephone-events: 80 ms on, 50 ms off, as
/// radios send PTT-ID.
const DTMF_TONE: Duration = Duration::from_millis(80);
const DTMF_PAUSE: Duration = Duration::from_millis(50);

/// The RoIP [`LinkDriver`].
#[derive(Debug)]
pub struct RoipDriver {
    cfg: RoipConfig,
    dtmf_tx: mpsc::Sender<String>,
    dtmf_rx: mpsc::Receiver<String>,
    counters: std::sync::Arc<RtpCounters>,
}

impl RoipDriver {
    pub fn new(cfg: RoipConfig) -> RoipDriver {
        let (dtmf_tx, dtmf_rx) = mpsc::channel(16);
        RoipDriver {
            cfg,
            dtmf_tx,
            dtmf_rx,
            counters: Default::default(),
        }
    }

    pub fn config(&self) -> &RoipConfig {
        &self.cfg
    }

    /// A handle for sending RFC 4733 DTMF on this link.
    pub fn telephone_events(&self) -> TelephoneEventSender {
        TelephoneEventSender(self.dtmf_tx.clone())
    }

    async fn run_once(
        &mut self,
        io: &mut DriverIo,
        cancel: CancellationToken,
    ) -> Result<(), LinkError> {
        let cfg = self.cfg;
        let what = format!("roip {}", cfg.bind);
        let socket = UdpSocket::bind(cfg.bind)
            .await
            .map_err(|source| LinkError::Open {
                what: what.clone(),
                source,
            })?;
        let codec_err = |e: crate::rtp::CodecError| LinkError::Protocol(e.to_string());
        let mut rx = RoipReceiver::new(cfg.receiver_config()).map_err(codec_err)?;
        let mut tx = RtpSender::new(
            cfg.codec,
            cfg.telephone_event_pt,
            rand::random(),
            rand::random(),
            rand::random(),
        )
        .map_err(codec_err)?;
        let started = Instant::now();
        let expects_peer = cfg.peer_timeout_ms > 0;
        let mut up = false;
        if !expects_peer {
            up = true;
            io.emit(LinkEvent::Up).await;
        }
        let mut keyed = false;
        let mut counted = JitterStats::default();
        let mut last_sent: Option<Instant> = None;
        let mut buf = vec![0u8; 2048];
        let far_future = started + Duration::from_secs(86_400 * 365);
        loop {
            let now = Instant::now();
            // Liveness.
            if expects_peer {
                let heard = rx.last_heard().map(Instant::from_std).unwrap_or(started);
                if now.duration_since(heard) >= ms(cfg.peer_timeout_ms) {
                    return Err(LinkError::Timeout(now.duration_since(heard)));
                }
            }
            let mut wake = far_future;
            if let Some(t) = rx.poll_timeout() {
                wake = wake.min(Instant::from_std(t));
            }
            if let Some(t) = tx.poll_dtmf_timeout() {
                wake = wake.min(Instant::from_std(t));
            }
            if cfg.keepalive_ms > 0 && !keyed {
                wake = wake.min(last_sent.unwrap_or(started) + ms(cfg.keepalive_ms));
            }
            if expects_peer {
                let heard = rx.last_heard().map(Instant::from_std).unwrap_or(started);
                wake = wake.min(heard + ms(cfg.peer_timeout_ms));
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    if keyed {
                        io.emit(LinkEvent::Ptt(false)).await;
                    }
                    return Ok(());
                }
                received = socket.recv_from(&mut buf) => {
                    let (n, from) = received.map_err(|source| LinkError::Io { what: what.clone(), source })?;
                    if from.ip() != cfg.peer.ip() {
                        tracing::debug!(%from, "dropping datagram from a stranger");
                        continue;
                    }
                    if let Err(e) = rx.handle_datagram(&buf[..n], Instant::now().into_std()) {
                        tracing::debug!(%from, error = %e, "dropping datagram");
                    }
                    if !up {
                        up = true;
                        io.emit(LinkEvent::Up).await;
                    }
                }
                command = io.commands.recv() => {
                    let Some(command) = command else { return Ok(()) };
                    match command {
                        LinkCommand::Ptt(on) => {
                            if on != keyed {
                                keyed = on;
                                if !on {
                                    tx.end_talkspurt();
                                }
                                io.emit(LinkEvent::Ptt(on)).await;
                            }
                        }
                        // While DTMF events are going out they replace the audio.
                        LinkCommand::Transmit(_) if tx.dtmf_active() => {}
                        LinkCommand::Transmit(frame) if keyed => {
                            let now = Instant::now();
                            let datagram = tx.audio(&frame, now.into_std()).map_err(codec_err)?;
                            send(&socket, &datagram, cfg.peer).await;
                            last_sent = Some(now);
                        }
                        LinkCommand::Transmit(_) => {}
                    }
                }
                digits = self.dtmf_rx.recv() => {
                    if let Some(digits) = digits {
                        tx.start_dtmf(&digits, DTMF_TONE, DTMF_PAUSE, Instant::now().into_std());
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    while let Some(d) = tx.poll_dtmf(now.into_std()) {
                        send(&socket, &d, cfg.peer).await;
                        last_sent = Some(now);
                    }
                    if cfg.keepalive_ms > 0
                        && !keyed
                        && !tx.dtmf_active()
                        && now >= last_sent.unwrap_or(started) + ms(cfg.keepalive_ms)
                    {
                        send(&socket, &tx.keepalive(now.into_std()), cfg.peer).await;
                        last_sent = Some(now);
                    }
                    rx.handle_timeout(now.into_std());
                }
            }
            let stats = rx.jitter_stats();
            if stats != counted {
                self.counters.add_growth(&counted, &stats);
                counted = stats;
            }
            while let Some(event) = rx.poll_event() {
                io.emit(event).await;
            }
        }
    }
}

/// Sends one datagram. A failed send (network unreachable, buffer full) is
/// logged, not fatal: liveness is judged by what we hear, not what we send.
async fn send(socket: &UdpSocket, datagram: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(datagram, peer).await {
        tracing::debug!(%peer, error = %e, "send failed");
    }
}

impl LinkDriver for RoipDriver {
    fn describe(&self) -> String {
        format!(
            "roip {} <-> {} ({})",
            self.cfg.bind,
            self.cfg.peer,
            self.cfg.codec.name()
        )
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut DriverIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(self.run_once(io, cancel))
    }

    fn rtp_counters(&self) -> Option<std::sync::Arc<RtpCounters>> {
        Some(self.counters.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RoipConfig {
        RoipConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:9".parse().unwrap(),
            Codec::Opus { pt: 111 },
        )
    }

    #[test]
    fn defaults_validate_and_bad_values_are_all_reported() {
        assert_eq!(cfg().validate(), Ok(()));
        let bad = RoipConfig {
            jitter_min_ms: 10,
            jitter_max_ms: 500,
            codec: Codec::Opus { pt: 101 },
            peer_timeout_ms: 500,
            ..cfg()
        };
        let errors = bad.validate().unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("jitter_min_ms = 10"));
    }

    #[test]
    fn mirrored_swaps_ends_and_fills_in_loopback() {
        let c = RoipConfig::new(
            "0.0.0.0:4000".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
            Codec::Pcma,
        );
        let m = c.mirrored();
        assert_eq!(m.bind, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(m.peer, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(m.codec, Codec::Pcma);
        assert_eq!(m.mirrored().peer, m.bind);
    }

    #[test]
    fn config_deserialises_with_defaults() {
        let c: RoipConfig = serde_json::from_str(
            r#"{"bind":"127.0.0.1:4000","peer":"127.0.0.1:5000","codec":{"name":"pcmu"}}"#,
        )
        .unwrap();
        assert_eq!(c.codec, Codec::Pcmu);
        assert_eq!(c.keepalive_ms, 1000);
        let c: RoipConfig = serde_json::from_str(
            r#"{"bind":"127.0.0.1:4000","peer":"127.0.0.1:5000","codec":{"name":"opus","pt":111},"cor_hang_ms":100}"#,
        )
        .unwrap();
        assert_eq!(c.codec, Codec::Opus { pt: 111 });
        assert_eq!(c.cor_hang_ms, 100);
    }
}
