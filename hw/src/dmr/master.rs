//! The sans-IO Homebrew master: peer logins, keep-alives, call tracking and
//! radio checks, as one deterministic state machine (quinn-proto style).
//!
//! Feed it datagrams with [`Master::handle_datagram`] and the passing of time
//! with [`Master::handle_timeout`]; drain [`Master::poll_transmit`] (datagrams
//! to send) and [`Master::poll_event`] (what happened); sleep until
//! [`Master::poll_timeout`]. It never reads a clock or touches a socket: `now`
//! is always passed in, and the salt/stream-id generator is seeded by the caller.
//!
//! Login (master side): `RPTL` → `RPTACK`+salt; `RPTK` with
//! SHA-256(salt ‖ password) → `RPTACK`+id; `RPTC` config → `RPTACK`+id, the
//! peer is now logged in; optional `RPTO` → `RPTACK`+id. `RPTPING` →
//! `MSTPONG`. Unknown peers, wrong passwords and traffic from peers that are
//! not logged in get `MSTNAK` (which makes MMDVMHost/DMRGateway log in again).
//! A peer silent for `ping_timeout` is dropped.
//!
//! Calls are tracked per peer and slot from the `DMRD` header fields: a voice
//! LC header or voice frame with a new stream id starts a call, a terminator
//! with LC or `stream_timeout` without frames ends it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::burst::DataType;
use super::csbk::{Csbk, RadioCheck};
use super::wire::{CallType, DmrdRepr, FrameType, Message, PeerConfig, Slot, WireError};

/// A peer allowed to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The repeater/hotspot id the peer logs in with.
    pub id: u32,
    pub password: String,
}

/// Master settings.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub peers: Vec<PeerCredentials>,
    /// A peer silent this long (no ping, no data) is dropped. DMRGateway
    /// pings every 10 s.
    pub ping_timeout: Duration,
    /// A call with no frame for this long has ended (voice frames come every 60 ms).
    pub stream_timeout: Duration,
    /// The DMR id radio checks are sent from (the dispatcher's id).
    pub checker_id: u32,
    /// Colour code for outgoing bursts when the peer's config has none.
    pub default_colour_code: u8,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            peers: Vec::new(),
            ping_timeout: Duration::from_secs(30),
            stream_timeout: Duration::from_millis(1500),
            checker_id: 9990,
            default_colour_code: 1,
        }
    }
}

/// Errors from one datagram or request. The master stays usable after any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HomebrewError {
    #[error("malformed datagram from {from}: {source}")]
    Wire {
        from: SocketAddr,
        #[source]
        source: WireError,
    },
    #[error("{command} from {from} is a master-to-peer message")]
    MasterMessage {
        from: SocketAddr,
        command: &'static str,
    },
    #[error("{command} from peer {peer} at {from}, which is not logged in there (sent MSTNAK)")]
    NotLoggedIn {
        from: SocketAddr,
        peer: u32,
        command: &'static str,
    },
    #[error("no peer is logged in to carry a radio check")]
    NoPeer,
    #[error("radio id {0} is not a 24-bit DMR id (1 to 16777215)")]
    RadioId(u32),
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    UnknownPeer,
    BadPassword,
    /// `RPTK`/`RPTC` arrived without the preceding login step.
    OutOfSequence,
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejectReason::UnknownPeer => "unknown peer id",
            RejectReason::BadPassword => "wrong password",
            RejectReason::OutOfSequence => "login step out of sequence",
        })
    }
}

/// Why a logged-in peer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerGoneReason {
    /// It sent `RPTCL`.
    Closed,
    /// Nothing heard for `ping_timeout`.
    TimedOut,
    /// It logged in again (restarted).
    Relogin,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEndReason {
    /// Terminator with LC received.
    Terminator,
    /// No frame for `stream_timeout`.
    StreamTimeout,
    /// A new stream started on the same slot.
    Superseded,
    /// The peer carrying it went away.
    PeerGone,
}

/// One voice call on a slot of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallInfo {
    pub peer: u32,
    pub slot: Slot,
    /// The calling radio's DMR id: the guard's identity.
    pub source: u32,
    /// Talkgroup or radio id.
    pub destination: u32,
    pub call_type: CallType,
    pub stream_id: u32,
    pub started: Instant,
}

/// Identifies one radio check started with [`Master::start_radio_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RadioCheckId(pub u64);

/// What to check, how patiently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RadioCheckRequest {
    pub radio_id: u32,
    pub slot: Slot,
    /// Wait this long for the ack after each attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

/// How a radio check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RadioCheckOutcome {
    /// The radio acknowledged. `attempts` counts requests sent (1 = first
    /// try); `after` is from the first request to the ack.
    Answered {
        attempts: u32,
        after: Duration,
        peer: u32,
    },
    /// No ack after every attempt.
    NoAnswer { attempts: u32 },
    /// Every peer went away before the check could finish.
    NoPeer { attempts: u32 },
}

/// Something the master reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterEvent {
    PeerLoggedIn {
        peer: u32,
        addr: SocketAddr,
        config: Box<PeerConfig>,
    },
    PeerOptions {
        peer: u32,
        options: String,
    },
    PeerRejected {
        peer: u32,
        addr: SocketAddr,
        reason: RejectReason,
    },
    PeerGone {
        peer: u32,
        reason: PeerGoneReason,
    },
    CallStart(CallInfo),
    CallEnd {
        call: CallInfo,
        reason: CallEndReason,
        at: Instant,
    },
    /// A data header (start of a packet data transfer, e.g. SMS or GPS).
    DataHeader {
        peer: u32,
        slot: Slot,
        source: u32,
        destination: u32,
        call_type: CallType,
    },
    /// A CSBK with a valid CRC (radio-check acks included).
    Csbk {
        peer: u32,
        slot: Slot,
        source: u32,
        destination: u32,
        csbk: Csbk,
    },
    RadioCheckDone {
        id: RadioCheckId,
        radio_id: u32,
        outcome: RadioCheckOutcome,
    },
}

#[derive(Debug)]
enum Phase {
    AwaitingKey { salt: [u8; 4] },
    AwaitingConfig,
    Running,
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    phase: Phase,
    last_heard: Instant,
    config: PeerConfig,
    seq: u8,
    calls: [Option<ActiveCall>; 2],
}

#[derive(Debug, Clone, Copy)]
struct ActiveCall {
    info: CallInfo,
    last_frame: Instant,
}

#[derive(Debug)]
struct PendingCheck {
    id: RadioCheckId,
    request: RadioCheckRequest,
    attempts: u32,
    /// When the first request went out; `None` while queued behind another
    /// check on the same slot.
    started: Option<Instant>,
    /// When the current attempt times out; `None` while queued.
    deadline: Option<Instant>,
}

/// The master state machine. See the module docs.
pub struct Master {
    config: MasterConfig,
    peers: HashMap<u32, Peer>,
    checks: Vec<PendingCheck>,
    next_check: u64,
    rng: StdRng,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<MasterEvent>,
}

/// Longest wait the master schedules; longer configured durations are
/// clamped so `Instant` arithmetic cannot overflow.
const MAX_WAIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// `at + wait`, with `wait` clamped to [`MAX_WAIT`].
fn after(at: Instant, wait: Duration) -> Instant {
    at + wait.min(MAX_WAIT)
}

fn password_digest(salt: &[u8; 4], password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.as_bytes());
    hasher.finalize().into()
}

/// Compares without an early exit, so timing does not leak how much matched.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Master {
    /// `seed` drives salts and stream ids; pass a random one in production
    /// and a fixed one in tests.
    pub fn new(config: MasterConfig, seed: u64) -> Master {
        Master {
            config,
            peers: HashMap::new(),
            checks: Vec::new(),
            next_check: 1,
            rng: StdRng::seed_from_u64(seed),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// Ids of the peers that have completed login.
    pub fn logged_in_peers(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(p.phase, Phase::Running))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Calls in progress, in peer and slot order.
    pub fn active_calls(&self) -> Vec<CallInfo> {
        let mut calls: Vec<CallInfo> = self
            .peers
            .values()
            .flat_map(|p| p.calls.iter().flatten().map(|c| c.info))
            .collect();
        calls.sort_by_key(|c| (c.peer, c.slot));
        calls
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MasterEvent> {
        self.events.pop_front()
    }

    fn send(&mut self, to: SocketAddr, message: &Message) {
        self.transmits.push_back((to, message.to_bytes()));
    }

    fn nak(&mut self, to: SocketAddr, peer: u32) {
        self.send(to, &Message::Nak { peer });
    }

    /// Handles one received datagram. Errors describe datagrams that were
    /// dropped (malformed) or refused (a `MSTNAK` has been queued); the
    /// master keeps running either way.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), HomebrewError> {
        let message =
            Message::parse(bytes).map_err(|source| HomebrewError::Wire { from, source })?;
        match message {
            Message::Login { peer } => {
                self.on_login(now, from, peer);
                Ok(())
            }
            Message::Key { peer, digest } => {
                self.on_key(now, from, peer, &digest);
                Ok(())
            }
            Message::Config { peer, config } => {
                self.on_config(now, from, peer, config);
                Ok(())
            }
            Message::Options { peer, options } => {
                self.running_peer(now, from, peer, "RPTO")?;
                self.send(from, &Message::Ack { value: peer });
                self.events
                    .push_back(MasterEvent::PeerOptions { peer, options });
                Ok(())
            }
            Message::Ping { peer } => {
                self.running_peer(now, from, peer, "RPTPING")?;
                self.send(from, &Message::Pong { peer });
                Ok(())
            }
            Message::Close { peer } => {
                self.running_peer(now, from, peer, "RPTCL")?;
                self.remove_peer(now, peer, PeerGoneReason::Closed);
                Ok(())
            }
            Message::Data(repr) => {
                self.running_peer(now, from, repr.repeater_id, "DMRD")?;
                self.on_data(now, repr);
                Ok(())
            }
            Message::Ack { .. }
            | Message::Nak { .. }
            | Message::Pong { .. }
            | Message::MasterClose { .. } => Err(HomebrewError::MasterMessage {
                from,
                command: message.command(),
            }),
        }
    }

    /// Checks that `peer` is logged in at `from` and marks it heard; NAKs otherwise.
    fn running_peer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        peer: u32,
        command: &'static str,
    ) -> Result<(), HomebrewError> {
        match self.peers.get_mut(&peer) {
            Some(p) if p.addr == from && matches!(p.phase, Phase::Running) => {
                p.last_heard = now;
                Ok(())
            }
            _ => {
                self.nak(from, peer);
                Err(HomebrewError::NotLoggedIn {
                    from,
                    peer,
                    command,
                })
            }
        }
    }

    fn reject(&mut self, from: SocketAddr, peer: u32, reason: RejectReason) {
        tracing::debug!(peer, %from, %reason, "refusing Homebrew peer");
        self.nak(from, peer);
        self.events.push_back(MasterEvent::PeerRejected {
            peer,
            addr: from,
            reason,
        });
    }

    fn on_login(&mut self, now: Instant, from: SocketAddr, peer: u32) {
        if !self.config.peers.iter().any(|c| c.id == peer) {
            self.reject(from, peer, RejectReason::UnknownPeer);
            return;
        }
        if self.peers.contains_key(&peer) {
            self.remove_peer(now, peer, PeerGoneReason::Relogin);
        }
        let salt: [u8; 4] = self.rng.random();
        self.peers.insert(
            peer,
            Peer {
                addr: from,
                phase: Phase::AwaitingKey { salt },
                last_heard: now,
                config: PeerConfig::default(),
                seq: 0,
                calls: [None, None],
            },
        );
        self.send(
            from,
            &Message::Ack {
                value: u32::from_be_bytes(salt),
            },
        );
    }

    fn on_key(&mut self, now: Instant, from: SocketAddr, peer: u32, digest: &[u8; 32]) {
        let Some(password) = self
            .config
            .peers
            .iter()
            .find(|c| c.id == peer)
            .map(|c| c.password.clone())
        else {
            self.reject(from, peer, RejectReason::UnknownPeer);
            return;
        };
        let salt = match self.peers.get(&peer) {
            Some(Peer {
                addr,
                phase: Phase::AwaitingKey { salt },
                ..
            }) if *addr == from => *salt,
            _ => {
                self.reject(from, peer, RejectReason::OutOfSequence);
                return;
            }
        };
        if !digests_equal(&password_digest(&salt, &password), digest) {
            self.peers.remove(&peer);
            self.reject(from, peer, RejectReason::BadPassword);
            return;
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.phase = Phase::AwaitingConfig;
            p.last_heard = now;
        }
        self.send(from, &Message::Ack { value: peer });
    }

    fn on_config(&mut self, now: Instant, from: SocketAddr, peer: u32, config: Box<PeerConfig>) {
        let logged_in = match self.peers.get_mut(&peer) {
            Some(p) if p.addr == from => match p.phase {
                Phase::AwaitingConfig => {
                    p.phase = Phase::Running;
                    true
                }
                // A running peer may resend its config; accept the update.
                Phase::Running => false,
                Phase::AwaitingKey { .. } => {
                    self.reject(from, peer, RejectReason::OutOfSequence);
                    return;
                }
            },
            _ => {
                self.reject(from, peer, RejectReason::OutOfSequence);
                return;
            }
        };
        if let Some(p) = self.peers.get_mut(&peer) {
            p.last_heard = now;
            p.config = (*config).clone();
        }
        self.send(from, &Message::Ack { value: peer });
        if logged_in {
            self.events.push_back(MasterEvent::PeerLoggedIn {
                peer,
                addr: from,
                config,
            });
        }
    }

    fn remove_peer(&mut self, now: Instant, peer: u32, reason: PeerGoneReason) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        for call in p.calls.into_iter().flatten() {
            self.events.push_back(MasterEvent::CallEnd {
                call: call.info,
                reason: CallEndReason::PeerGone,
                at: now,
            });
        }
        if matches!(p.phase, Phase::Running) {
            self.events
                .push_back(MasterEvent::PeerGone { peer, reason });
        }
    }

    fn on_data(&mut self, now: Instant, repr: DmrdRepr) {
        match repr.frame {
            FrameType::VoiceSync
            | FrameType::Voice { .. }
            | FrameType::Data(DataType::VoiceLcHeader) => self.on_voice(now, &repr),
            FrameType::Data(DataType::TerminatorWithLc) => self.on_terminator(now, &repr),
            FrameType::Data(DataType::Csbk) => self.on_csbk(now, &repr),
            FrameType::Data(DataType::DataHeader) => {
                self.events.push_back(MasterEvent::DataHeader {
                    peer: repr.repeater_id,
                    slot: repr.slot,
                    source: repr.source,
                    destination: repr.destination,
                    call_type: repr.call_type,
                })
            }
            FrameType::Data(_) => {}
        }
    }

    fn on_voice(&mut self, now: Instant, repr: &DmrdRepr) {
        let Some(peer) = self.peers.get_mut(&repr.repeater_id) else {
            return;
        };
        let slot = &mut peer.calls[repr.slot.index()];
        if let Some(call) = slot {
            if call.info.stream_id == repr.stream_id {
                call.last_frame = now;
                return;
            }
        }
        let info = CallInfo {
            peer: repr.repeater_id,
            slot: repr.slot,
            source: repr.source,
            destination: repr.destination,
            call_type: repr.call_type,
            stream_id: repr.stream_id,
            started: now,
        };
        let previous = slot.replace(ActiveCall {
            info,
            last_frame: now,
        });
        if let Some(old) = previous {
            self.events.push_back(MasterEvent::CallEnd {
                call: old.info,
                reason: CallEndReason::Superseded,
                at: now,
            });
        }
        self.events.push_back(MasterEvent::CallStart(info));
    }

    fn on_terminator(&mut self, now: Instant, repr: &DmrdRepr) {
        let Some(peer) = self.peers.get_mut(&repr.repeater_id) else {
            return;
        };
        let slot = &mut peer.calls[repr.slot.index()];
        if slot.is_some_and(|c| c.info.stream_id == repr.stream_id) {
            if let Some(call) = slot.take() {
                self.events.push_back(MasterEvent::CallEnd {
                    call: call.info,
                    reason: CallEndReason::Terminator,
                    at: now,
                });
            }
        }
    }

    fn on_csbk(&mut self, now: Instant, repr: &DmrdRepr) {
        let csbk = match Csbk::from_burst(&repr.burst) {
            Ok((csbk, _colour_code)) => csbk,
            Err(error) => {
                tracing::debug!(peer = repr.repeater_id, source = repr.source, %error, "dropping undecodable CSBK");
                return;
            }
        };
        self.events.push_back(MasterEvent::Csbk {
            peer: repr.repeater_id,
            slot: repr.slot,
            source: repr.source,
            destination: repr.destination,
            csbk,
        });
        if let Some(RadioCheck::Ack { radio, checker }) = csbk.as_radio_check() {
            if checker != self.config.checker_id {
                return;
            }
            let (answered, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.checks)
                .into_iter()
                .partition(|c| c.request.radio_id == radio && c.started.is_some());
            self.checks = pending;
            for check in answered {
                self.events.push_back(MasterEvent::RadioCheckDone {
                    id: check.id,
                    radio_id: radio,
                    outcome: RadioCheckOutcome::Answered {
                        attempts: check.attempts,
                        after: check
                            .started
                            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
                        peer: repr.repeater_id,
                    },
                });
            }
            self.dispatch_checks(now);
        }
    }

    /// Queues a radio check to `request.radio_id`, sent through every
    /// logged-in peer and retried on time-out. Checks on one slot go out one
    /// at a time, in order; `timeout` counts from when a check is sent. The
    /// result arrives as [`MasterEvent::RadioCheckDone`] with the returned id.
    pub fn start_radio_check(
        &mut self,
        now: Instant,
        request: RadioCheckRequest,
    ) -> Result<RadioCheckId, HomebrewError> {
        if request.radio_id == 0 || request.radio_id > 0xFF_FFFF {
            return Err(HomebrewError::RadioId(request.radio_id));
        }
        if self.logged_in_peers().is_empty() {
            return Err(HomebrewError::NoPeer);
        }
        let id = RadioCheckId(self.next_check);
        self.next_check += 1;
        self.checks.push(PendingCheck {
            id,
            request,
            attempts: 0,
            started: None,
            deadline: None,
        });
        self.dispatch_checks(now);
        Ok(id)
    }

    /// Starts the oldest queued check on every slot that has none in flight.
    /// One at a time per slot, because the acks share the air: a burst of
    /// requests would make the radios answer on top of each other.
    fn dispatch_checks(&mut self, now: Instant) {
        for slot in [Slot::One, Slot::Two] {
            let busy = self
                .checks
                .iter()
                .any(|c| c.request.slot == slot && c.deadline.is_some());
            if busy {
                continue;
            }
            let Some(check) = self
                .checks
                .iter_mut()
                .find(|c| c.request.slot == slot && c.deadline.is_none())
            else {
                continue;
            };
            check.attempts = 1;
            check.started = Some(now);
            check.deadline = Some(after(now, check.request.timeout));
            let request = check.request;
            self.send_radio_check(&request);
        }
    }

    /// Forgets a pending radio check (no event is emitted for it).
    pub fn cancel_radio_check(&mut self, now: Instant, id: RadioCheckId) {
        self.checks.retain(|c| c.id != id);
        self.dispatch_checks(now);
    }

    fn send_radio_check(&mut self, request: &RadioCheckRequest) {
        let csbk = Csbk::radio_check(RadioCheck::Request {
            radio: request.radio_id,
            checker: self.config.checker_id,
        });
        let default_cc = self.config.default_colour_code;
        let checker = self.config.checker_id;
        let mut out = Vec::new();
        for id in self.logged_in_peers() {
            let stream_id = self.rng.random();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let colour_code = peer.config.colour_code().unwrap_or(default_cc);
            let repr = DmrdRepr {
                seq: peer.seq,
                source: checker,
                destination: request.radio_id,
                repeater_id: id,
                slot: request.slot,
                call_type: CallType::Private,
                frame: FrameType::Data(DataType::Csbk),
                stream_id,
                burst: csbk.to_burst(colour_code),
                ber: 0,
                rssi: 0,
            };
            peer.seq = peer.seq.wrapping_add(1);
            out.push((peer.addr, Message::Data(repr)));
        }
        for (addr, message) in out {
            self.send(addr, &message);
        }
    }

    /// The next instant [`Master::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().flat_map(|p| {
            std::iter::once(after(p.last_heard, self.config.ping_timeout)).chain(
                p.calls
                    .iter()
                    .flatten()
                    .map(|c| after(c.last_frame, self.config.stream_timeout)),
            )
        });
        let checks = self.checks.iter().filter_map(|c| c.deadline);
        peers.chain(checks).min()
    }

    /// Expires silent peers, stale calls and unanswered radio-check attempts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ping_timeout = self.config.ping_timeout;
        let silent: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| now >= after(p.last_heard, ping_timeout))
            .map(|(id, _)| *id)
            .collect();
        for peer in silent {
            tracing::debug!(peer, "Homebrew peer timed out");
            self.remove_peer(now, peer, PeerGoneReason::TimedOut);
        }
        let stream_timeout = self.config.stream_timeout;
        let mut ended = Vec::new();
        for peer in self.peers.values_mut() {
            for slot in peer.calls.iter_mut() {
                if slot.is_some_and(|c| now >= after(c.last_frame, stream_timeout)) {
                    ended.extend(slot.take());
                }
            }
        }
        ended.sort_by_key(|c| (c.info.peer, c.info.slot));
        for call in ended {
            self.events.push_back(MasterEvent::CallEnd {
                call: call.info,
                reason: CallEndReason::StreamTimeout,
                at: now,
            });
        }
        let due: Vec<usize> = (0..self.checks.len())
            .filter(|&i| self.checks[i].deadline.is_some_and(|d| now >= d))
            .collect();
        let have_peers = !self.logged_in_peers().is_empty();
        let mut finished = Vec::new();
        for i in due {
            let check = &mut self.checks[i];
            if check.attempts <= check.request.retries && have_peers {
                check.attempts += 1;
                check.deadline = Some(after(now, check.request.timeout));
                let request = check.request;
                self.send_radio_check(&request);
            } else {
                finished.push(i);
            }
        }
        let mut removed: Vec<PendingCheck> = finished
            .into_iter()
            .rev()
            .map(|i| self.checks.remove(i))
            .collect();
        removed.reverse();
        for check in removed {
            let outcome = if have_peers {
                RadioCheckOutcome::NoAnswer {
                    attempts: check.attempts,
                }
            } else {
                RadioCheckOutcome::NoPeer {
                    attempts: check.attempts,
                }
            };
            self.events.push_back(MasterEvent::RadioCheckDone {
                id: check.id,
                radio_id: check.request.radio_id,
                outcome,
            });
        }
        if !have_peers {
            // Queued checks can never be sent either.
            for check in std::mem::take(&mut self.checks) {
                self.events.push_back(MasterEvent::RadioCheckDone {
                    id: check.id,
                    radio_id: check.request.radio_id,
                    outcome: RadioCheckOutcome::NoPeer {
                        attempts: check.attempts,
                    },
                });
            }
        }
        self.dispatch_checks(now);
    }

    /// Tells every peer the master is going away (`MSTCL`) and forgets them.
    pub fn close(&mut self, now: Instant) {
        let peers: Vec<(u32, SocketAddr)> =
            self.peers.iter().map(|(id, p)| (*id, p.addr)).collect();
        for (id, addr) in peers {
            self.send(addr, &Message::MasterClose { peer: id });
            self.remove_peer(now, id, PeerGoneReason::Closed);
        }
    }
}

/// The `RPTK` digest a peer computes: SHA-256 of the 4 salt bytes followed
/// by the password. Public so simulated peers and tests log in the real way.
pub fn login_digest(salt: u32, password: &str) -> [u8; 32] {
    password_digest(&salt.to_be_bytes(), password)
}

#[cfg(test)]
#[path = "master_tests.rs"]
mod tests;
