//! The tokio shell around [`Master`]: one UDP socket, one loop moving
//! datagrams, timers and radio-check requests in and [`LinkEvent`]s out.
//!
//! [`HomebrewLink`] is a [`LinkDriver`]: it emits `Up` each time a peer logs
//! in, `Cor(true)`/`Cor(false)` when the first call starts / the last call
//! ends (over all peers and slots), an `Ani` of kind `Dmr` with the caller's
//! id on every call start, and an `Ani` with op `RadioCheckAck` when a radio
//! answers a radio check. A run ends with an error when the last logged-in
//! peer closes or times out, so the supervisor reports the link down.
//!
//! No audio: DMR voice is AMBE+2 and there is no public decoder, so the
//! driver never emits `LinkEvent::Audio` and drops `LinkCommand`s (PTT and
//! frames) with a debug log.
//!
//! Radio checks go through a [`RadioCheckHandle`], returned next to the
//! driver because `LinkCommand` only carries PTT and audio.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::master::{
    HomebrewError, Master, MasterConfig, MasterEvent, PeerCredentials, PeerGoneReason,
    RadioCheckId, RadioCheckOutcome, RadioCheckRequest,
};
use super::wire::{CallType, Slot};
use crate::ani::{AniEvent, AniKind, AniOp};
use crate::audio::SAMPLE_RATE;
use crate::link::{BoxFuture, DriverIo, LinkDriver, LinkError, LinkEvent};

/// Settings of one Homebrew master link.
#[derive(Debug, Clone)]
pub struct HomebrewConfig {
    /// Where the peers send to (MMDVMHost/DMRGateway `Address`/`Port`); the
    /// usual port is 62030.
    pub bind: SocketAddr,
    /// The repeaters/hotspots allowed to log in.
    pub peers: Vec<PeerCredentials>,
    /// A peer silent this long is dropped.
    pub ping_timeout: Duration,
    /// A call without frames this long has ended.
    pub stream_timeout: Duration,
    /// The DMR id radio checks come from.
    pub checker_id: u32,
    /// Colour code for radio checks when the peer's config does not say.
    pub colour_code: u8,
}

impl HomebrewConfig {
    /// A config with the usual timings for `bind` and `peers`.
    pub fn new(bind: SocketAddr, peers: Vec<PeerCredentials>) -> HomebrewConfig {
        let defaults = MasterConfig::default();
        HomebrewConfig {
            bind,
            peers,
            ping_timeout: defaults.ping_timeout,
            stream_timeout: defaults.stream_timeout,
            checker_id: defaults.checker_id,
            colour_code: defaults.default_colour_code,
        }
    }

    /// Every problem with the config, so all are reported before binding.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.peers.is_empty() {
            problems.push("no peers configured: nobody could log in".to_string());
        }
        let mut seen = std::collections::HashSet::new();
        for peer in &self.peers {
            if !seen.insert(peer.id) {
                problems.push(format!("peer id {} is listed twice", peer.id));
            }
            if peer.password.is_empty() {
                problems.push(format!("peer {} has an empty password", peer.id));
            }
        }
        if self.checker_id == 0 || self.checker_id > 0xFF_FFFF {
            problems.push(format!(
                "checker id {} is not a DMR id (1 to 16777215)",
                self.checker_id
            ));
        }
        if self.colour_code > 15 {
            problems.push(format!("colour code {} is not 0-15", self.colour_code));
        }
        if self.ping_timeout.is_zero() || self.stream_timeout.is_zero() {
            problems.push("ping and stream timeouts must be positive".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn master_config(&self) -> MasterConfig {
        MasterConfig {
            peers: self.peers.clone(),
            ping_timeout: self.ping_timeout,
            stream_timeout: self.stream_timeout,
            checker_id: self.checker_id,
            default_colour_code: self.colour_code,
        }
    }
}

/// Why a radio check gave no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RadioCheckError {
    #[error("the DMR link is not running")]
    LinkStopped,
    #[error("radio check refused: {0}")]
    Refused(#[from] HomebrewError),
}

struct CheckCommand {
    request: RadioCheckRequest,
    reply: oneshot::Sender<Result<RadioCheckOutcome, RadioCheckError>>,
}

/// Cloneable handle for radio checks on a [`HomebrewLink`].
#[derive(Debug, Clone)]
pub struct RadioCheckHandle {
    commands: mpsc::Sender<CheckCommand>,
}

impl std::fmt::Debug for CheckCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckCommand")
            .field("request", &self.request)
            .finish()
    }
}

impl RadioCheckHandle {
    /// Radio-checks `radio_id` on `slot`: waits `timeout` for the ack after
    /// each attempt and retries `retries` times. Checks on one slot are
    /// serialised by the link, so this may first wait for earlier checks.
    /// Returns `NoAnswer` when the radio stayed silent, `Err` when no peer
    /// is logged in or the link is gone.
    pub async fn radio_check(
        &self,
        radio_id: u32,
        slot: Slot,
        timeout: Duration,
        retries: u32,
    ) -> Result<RadioCheckOutcome, RadioCheckError> {
        let (reply, result) = oneshot::channel();
        let request = RadioCheckRequest {
            radio_id,
            slot,
            timeout,
            retries,
        };
        self.commands
            .send(CheckCommand { request, reply })
            .await
            .map_err(|_| RadioCheckError::LinkStopped)?;
        result.await.unwrap_or(Err(RadioCheckError::LinkStopped))
    }
}

/// Queued radio-check requests, like the link command queue.
const CHECK_QUEUE: usize = 64;
/// Large enough for any Homebrew datagram (the biggest is 302 bytes).
const RECV_BUFFER: usize = 1500;

/// The Homebrew master link driver. See the module docs.
pub struct HomebrewLink {
    config: HomebrewConfig,
    /// Bound ahead of `run` by [`HomebrewLink::bind`], or on the first run.
    socket: Option<std::net::UdpSocket>,
    /// The address actually bound, reused when a run restarts.
    bound: Option<SocketAddr>,
    checks: mpsc::Receiver<CheckCommand>,
}

impl HomebrewLink {
    /// Creates the driver and its radio-check handle. Nothing is bound yet.
    pub fn new(config: HomebrewConfig) -> (HomebrewLink, RadioCheckHandle) {
        let (tx, rx) = mpsc::channel(CHECK_QUEUE);
        (
            HomebrewLink {
                config,
                socket: None,
                bound: None,
                checks: rx,
            },
            RadioCheckHandle { commands: tx },
        )
    }

    /// Binds the UDP socket now and returns its address (useful with port 0).
    pub fn bind(&mut self) -> Result<SocketAddr, LinkError> {
        let addr = self.bound.unwrap_or(self.config.bind);
        let what = || format!("UDP {addr}");
        let socket = std::net::UdpSocket::bind(addr).map_err(|source| LinkError::Open {
            what: what(),
            source,
        })?;
        socket
            .set_nonblocking(true)
            .map_err(|source| LinkError::Open {
                what: what(),
                source,
            })?;
        let local = socket.local_addr().map_err(|source| LinkError::Open {
            what: what(),
            source,
        })?;
        self.socket = Some(socket);
        self.bound = Some(local);
        Ok(local)
    }

    fn take_socket(&mut self) -> Result<UdpSocket, LinkError> {
        if self.socket.is_none() {
            self.bind()?;
        }
        let socket = self.socket.take().ok_or_else(|| {
            LinkError::Protocol("socket vanished between bind and run".to_string())
        })?;
        UdpSocket::from_std(socket).map_err(|source| LinkError::Open {
            what: format!("UDP {:?}", self.bound),
            source,
        })
    }

    async fn run_inner(
        &mut self,
        io: &mut DriverIo,
        cancel: CancellationToken,
    ) -> Result<(), LinkError> {
        let socket = self.take_socket()?;
        let local = socket.local_addr().ok();
        let mut master = Master::new(self.config.master_config(), rand::random());
        let mut state = ShellState {
            started: tokio::time::Instant::now(),
            waiting: HashMap::new(),
            active_calls: 0,
        };
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut commands_open = true;
        let mut checks_open = true;
        tracing::info!(addr = ?local, "Homebrew master listening");
        loop {
            flush(&mut master, &socket).await;
            if let Some(end) = state.drain_events(&mut master, io).await {
                flush(&mut master, &socket).await;
                state.release(io).await;
                return Err(end);
            }
            let deadline = master.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = cancel.cancelled() => {
                    master.close(tokio::time::Instant::now().into_std());
                    flush(&mut master, &socket).await;
                    state.release(io).await;
                    return Ok(());
                }
                received = socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        let now = tokio::time::Instant::now().into_std();
                        if let Err(error) = master.handle_datagram(now, from, &buf[..len]) {
                            tracing::debug!(%error, "Homebrew datagram refused");
                        }
                    }
                    // ICMP port-unreachable from a peer that went away.
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset) => {
                        tracing::debug!(error = %e, "Homebrew peer unreachable");
                    }
                    Err(source) => {
                        state.release(io).await;
                        return Err(LinkError::Io { what: format!("UDP {local:?}"), source });
                    }
                },
                _ = sleep_until(deadline) => {
                    master.handle_timeout(tokio::time::Instant::now().into_std());
                }
                command = self.checks.recv(), if checks_open => match command {
                    Some(CheckCommand { request, reply }) => {
                        match master.start_radio_check(tokio::time::Instant::now().into_std(), request) {
                            Ok(id) => { state.waiting.insert(id, reply); }
                            Err(error) => { let _ = reply.send(Err(error.into())); }
                        }
                    }
                    None => checks_open = false,
                },
                command = io.commands.recv(), if commands_open => match command {
                    Some(command) => tracing::debug!(?command, "DMR link cannot transmit audio (AMBE+2); command dropped"),
                    None => commands_open = false,
                },
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn flush(master: &mut Master, socket: &UdpSocket) {
    while let Some((to, bytes)) = master.poll_transmit() {
        if let Err(error) = socket.send_to(&bytes, to).await {
            // A lost datagram is what UDP allows; the peer retries or times out.
            tracing::debug!(%to, %error, "Homebrew send failed");
        }
    }
}

/// Per-run state of the shell, between master events and link events.
struct ShellState {
    started: tokio::time::Instant,
    waiting: HashMap<RadioCheckId, oneshot::Sender<Result<RadioCheckOutcome, RadioCheckError>>>,
    /// Calls in progress over all peers and slots: COR is open while > 0.
    active_calls: usize,
}

impl ShellState {
    /// Sample position of "now" at the internal rate, counted from the start
    /// of the run, so ANI events order with audio from other links.
    fn sample_now(&self) -> u64 {
        let elapsed = self.started.elapsed();
        (elapsed.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64
    }

    fn ani(&self, unit: u32, op: AniOp, detail: String) -> LinkEvent {
        let at = self.sample_now();
        LinkEvent::Ani(AniEvent {
            kind: AniKind::Dmr,
            unit: unit.to_string(),
            op,
            detail: Some(detail),
            start_sample: at,
            end_sample: at,
            confidence: 1.0,
        })
    }

    /// Moves master events out as link events. Returns an error when the
    /// run should end because the last peer left.
    async fn drain_events(&mut self, master: &mut Master, io: &DriverIo) -> Option<LinkError> {
        let mut end = None;
        while let Some(event) = master.poll_event() {
            match event {
                MasterEvent::PeerLoggedIn { peer, addr, config } => {
                    tracing::info!(peer, %addr, callsign = %config.callsign, "Homebrew peer logged in");
                    io.emit(LinkEvent::Up).await;
                }
                MasterEvent::PeerOptions { peer, options } => {
                    tracing::debug!(peer, %options, "Homebrew peer options");
                }
                MasterEvent::PeerRejected { peer, addr, reason } => {
                    tracing::warn!(peer, %addr, %reason, "Homebrew login refused");
                }
                MasterEvent::PeerGone { peer, reason } => {
                    tracing::info!(peer, ?reason, "Homebrew peer gone");
                    if master.logged_in_peers().is_empty() && reason != PeerGoneReason::Relogin {
                        end = Some(match reason {
                            PeerGoneReason::TimedOut => {
                                LinkError::Timeout(master.config().ping_timeout)
                            }
                            _ => LinkError::Protocol(format!("peer {peer} closed the connection")),
                        });
                    }
                }
                MasterEvent::CallStart(call) => {
                    self.active_calls += 1;
                    if self.active_calls == 1 {
                        io.emit(LinkEvent::Cor(true)).await;
                    }
                    let to = match call.call_type {
                        CallType::Group => "group",
                        CallType::Private => "private",
                    };
                    let detail = format!("slot {} {to} {}", call.slot.number(), call.destination);
                    io.emit(self.ani(call.source, AniOp::Identify, detail))
                        .await;
                }
                MasterEvent::CallEnd { .. } => {
                    self.active_calls = self.active_calls.saturating_sub(1);
                    if self.active_calls == 0 {
                        io.emit(LinkEvent::Cor(false)).await;
                    }
                }
                MasterEvent::DataHeader { peer, source, .. } => {
                    tracing::debug!(peer, source, "DMR data header");
                }
                MasterEvent::Csbk {
                    peer, source, csbk, ..
                } => {
                    tracing::debug!(peer, source, opcode = csbk.opcode, "DMR CSBK");
                }
                MasterEvent::RadioCheckDone {
                    id,
                    radio_id,
                    outcome,
                } => {
                    if let RadioCheckOutcome::Answered { attempts, .. } = outcome {
                        let detail = format!("radio check ack after {attempts} attempt(s)");
                        io.emit(self.ani(radio_id, AniOp::RadioCheckAck, detail))
                            .await;
                    }
                    if let Some(reply) = self.waiting.remove(&id) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
            }
        }
        end
    }

    /// End of a run: close the squelch if a call was open. Waiting radio
    /// checks see `LinkStopped` when their senders drop with this state.
    async fn release(&mut self, io: &DriverIo) {
        if self.active_calls > 0 {
            self.active_calls = 0;
            io.emit(LinkEvent::Cor(false)).await;
        }
    }
}

impl LinkDriver for HomebrewLink {
    fn describe(&self) -> String {
        format!("homebrew master {}", self.bound.unwrap_or(self.config.bind))
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut DriverIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(self.run_inner(io, cancel))
    }
}
