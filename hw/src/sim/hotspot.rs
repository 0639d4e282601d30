//! A simulated DMR hotspot (an MMDVMHost/DMRGateway peer) with a handful of
//! radios, speaking the real Homebrew protocol over UDP to a master.
//!
//! It logs in (`RPTL`/`RPTK`/`RPTC`, optional `RPTO`), pings, logs in again
//! after `MSTNAK`/`MSTCL`, makes voice calls from its radios on command
//! (voice LC header, voice bursts with dummy AMBE payload, terminator) and
//! answers radio checks addressed to its radios, or not, as each radio's
//! answer probability and the seed decide. Everything the radios did goes
//! into a ground-truth log the tests compare the master's view against.
//!
//! Fidelity notes: the LC header and terminator carry a correct BPTC block,
//! slot type and data sync with the call's FLCO/ids, but their Reed-Solomon
//! (12,9) parity bytes are zero (the master reads ids from the `DMRD`
//! header, as MMDVMHost does). Voice bursts are random bytes, with the MS
//! voice sync pattern in burst A.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::dmr::burst::{set_sync_field, sync, DataBurst, DataType, BURST_LEN};
use crate::dmr::csbk::{Csbk, RadioCheck};
use crate::dmr::master::login_digest;
use crate::dmr::wire::{CallType, DmrdRepr, FrameType, Message, PeerConfig, Slot};

/// One simulated radio.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRadio {
    pub id: u32,
    /// Chance (0.0–1.0) that it answers each radio-check request it hears.
    pub answer_probability: f64,
    /// How long it takes to answer.
    pub reply_delay: Duration,
}

impl SimRadio {
    /// A radio that always answers radio checks after `reply_delay`.
    pub fn answering(id: u32, reply_delay: Duration) -> SimRadio {
        SimRadio {
            id,
            answer_probability: 1.0,
            reply_delay,
        }
    }

    /// A radio that is switched off, as far as radio checks go.
    pub fn silent(id: u32) -> SimRadio {
        SimRadio {
            id,
            answer_probability: 0.0,
            reply_delay: Duration::ZERO,
        }
    }
}

/// Settings of the simulated hotspot.
#[derive(Debug, Clone)]
pub struct HotspotConfig {
    /// The master's address.
    pub master: SocketAddr,
    pub repeater_id: u32,
    pub password: String,
    pub callsign: String,
    pub colour_code: u8,
    /// Sent as `RPTO` after the config when set.
    pub options: Option<String>,
    pub radios: Vec<SimRadio>,
    /// Seeds answer decisions and stream ids.
    pub seed: u64,
    pub ping_interval: Duration,
    /// Resend the current login step when the master is silent this long.
    pub retry_interval: Duration,
    /// Spacing of voice frames (60 ms on air).
    pub frame_interval: Duration,
}

impl HotspotConfig {
    /// Usual timings (ping 5 s, retry 1 s, 60 ms frames).
    pub fn new(
        master: SocketAddr,
        repeater_id: u32,
        password: &str,
        radios: Vec<SimRadio>,
    ) -> HotspotConfig {
        HotspotConfig {
            master,
            repeater_id,
            password: password.to_string(),
            callsign: "SIM0HS".to_string(),
            colour_code: 1,
            options: None,
            radios,
            seed: 1,
            ping_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(1),
            frame_interval: Duration::from_millis(60),
        }
    }
}

/// A voice call to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceCall {
    pub slot: Slot,
    pub destination: u32,
    pub call_type: CallType,
    /// Voice bursts between header and terminator (6 = one superframe).
    pub voice_frames: u8,
}

impl VoiceCall {
    /// A one-superframe group call to talkgroup `destination`.
    pub fn group(slot: Slot, destination: u32) -> VoiceCall {
        VoiceCall {
            slot,
            destination,
            call_type: CallType::Group,
            voice_frames: 6,
        }
    }
}

/// What a simulated radio (or the hotspot) really did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroundTruth {
    /// The hotspot completed login.
    LoggedIn,
    /// The master refused the hotspot (`MSTNAK`).
    Refused,
    /// A radio made a voice call.
    VoiceCall {
        radio: u32,
        slot: Slot,
        destination: u32,
        stream_id: u32,
    },
    /// A radio heard a radio-check request and did or did not answer it.
    RadioCheck {
        radio: u32,
        checker: u32,
        answered: bool,
    },
}

/// Why a command to the hotspot failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HotspotError {
    #[error("radio {0} is not one of the hotspot's radios")]
    UnknownRadio(u32),
    #[error("the hotspot is not logged in to the master")]
    NotLoggedIn,
    #[error("the hotspot task has stopped")]
    Stopped,
}

enum Command {
    Call {
        radio: u32,
        call: VoiceCall,
        done: oneshot::Sender<Result<u32, HotspotError>>,
    },
}

/// Handle to a running simulated hotspot.
#[derive(Clone)]
pub struct HotspotHandle {
    commands: mpsc::Sender<Command>,
    log: Arc<Mutex<Vec<GroundTruth>>>,
    logged_in: watch::Receiver<bool>,
}

impl HotspotHandle {
    /// Waits until the hotspot is logged in; `false` after `within`.
    pub async fn wait_logged_in(&self, within: Duration) -> bool {
        let mut rx = self.logged_in.clone();
        tokio::time::timeout(within, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the hotspot is logged in right now.
    pub fn is_logged_in(&self) -> bool {
        *self.logged_in.borrow()
    }

    /// Makes `radio` call; returns the stream id once the terminator is sent.
    pub async fn call(&self, radio: u32, call: VoiceCall) -> Result<u32, HotspotError> {
        let (done, result) = oneshot::channel();
        self.commands
            .send(Command::Call { radio, call, done })
            .await
            .map_err(|_| HotspotError::Stopped)?;
        result.await.unwrap_or(Err(HotspotError::Stopped))
    }

    /// A copy of the ground-truth log so far.
    pub fn log(&self) -> Vec<GroundTruth> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Starts the hotspot task on the current tokio runtime; it binds an
/// ephemeral loopback port, logs in, and runs until `cancel` fires (then sends
/// `RPTCL`).
pub fn spawn(config: HotspotConfig, cancel: CancellationToken) -> HotspotHandle {
    let (tx, rx) = mpsc::channel(64);
    let (up_tx, up_rx) = watch::channel(false);
    let log = Arc::new(Mutex::new(Vec::new()));
    let handle = HotspotHandle {
        commands: tx,
        log: log.clone(),
        logged_in: up_rx,
    };
    tokio::spawn(async move {
        if let Err(error) = run(config, rx, up_tx, log, cancel).await {
            tracing::warn!(%error, "simulated hotspot stopped");
        }
    });
    handle
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SentLogin,
    SentKey,
    SentConfig,
    SentOptions,
    Running,
}

struct Hotspot {
    config: HotspotConfig,
    socket: Arc<UdpSocket>,
    rng: StdRng,
    log: Arc<Mutex<Vec<GroundTruth>>>,
    logged_in: watch::Sender<bool>,
    phase: Phase,
    radios: HashMap<u32, SimRadio>,
    /// One call at a time per slot, as on air.
    slot_locks: Arc<[tokio::sync::Mutex<()>; 2]>,
}

impl Hotspot {
    fn record(&self, entry: GroundTruth) {
        if let Ok(mut log) = self.log.lock() {
            log.push(entry);
        }
    }

    async fn send(&self, message: &Message) {
        if let Err(error) = self
            .socket
            .send_to(&message.to_bytes(), self.config.master)
            .await
        {
            tracing::debug!(%error, "simulated hotspot send failed");
        }
    }

    fn peer_config(&self) -> PeerConfig {
        PeerConfig {
            callsign: self.config.callsign.clone(),
            rx_frequency: "438800000".into(),
            tx_frequency: "438800000".into(),
            tx_power: "01".into(),
            colour_code: format!("{:02}", self.config.colour_code),
            latitude: "31.2304".into(),
            longitude: "121.4737".into(),
            height: "10".into(),
            location: "radiosim".into(),
            description: "simulated hotspot".into(),
            slots: "4".into(),
            url: String::new(),
            software_id: "rollcall-radiosim".into(),
            package_id: "MMDVM_Sim".into(),
        }
    }

    async fn start_login(&mut self) {
        self.set_logged_in(false);
        self.phase = Phase::SentLogin;
        let peer = self.config.repeater_id;
        self.send(&Message::Login { peer }).await;
    }

    fn set_logged_in(&mut self, up: bool) {
        let _ = self.logged_in.send_replace(up);
    }

    /// Resends what the current phase waits on (or pings when running).
    async fn tick(&mut self, salt: Option<u32>) {
        let peer = self.config.repeater_id;
        match self.phase {
            Phase::SentLogin => self.send(&Message::Login { peer }).await,
            Phase::SentKey => match salt {
                Some(salt) => self.send_key(salt).await,
                None => self.start_login().await,
            },
            Phase::SentConfig => {
                let config = Box::new(self.peer_config());
                self.send(&Message::Config { peer, config }).await
            }
            Phase::SentOptions => self.send_options().await,
            Phase::Running => self.send(&Message::Ping { peer }).await,
        }
    }

    async fn send_key(&self, salt: u32) {
        let digest = login_digest(salt, &self.config.password);
        let peer = self.config.repeater_id;
        self.send(&Message::Key { peer, digest }).await;
    }

    async fn send_options(&self) {
        let peer = self.config.repeater_id;
        let options = self.config.options.clone().unwrap_or_default();
        self.send(&Message::Options { peer, options }).await;
    }

    async fn on_ack(&mut self, value: u32, salt: &mut Option<u32>) {
        let peer = self.config.repeater_id;
        match self.phase {
            Phase::SentLogin => {
                *salt = Some(value);
                self.phase = Phase::SentKey;
                self.send_key(value).await;
            }
            Phase::SentKey => {
                self.phase = Phase::SentConfig;
                let config = Box::new(self.peer_config());
                self.send(&Message::Config { peer, config }).await;
            }
            Phase::SentConfig if self.config.options.is_some() => {
                self.phase = Phase::SentOptions;
                self.send_options().await;
            }
            Phase::SentConfig | Phase::SentOptions => {
                self.phase = Phase::Running;
                self.record(GroundTruth::LoggedIn);
                self.set_logged_in(true);
            }
            Phase::Running => {}
        }
    }

    /// A radio hears a radio-check request: answer per its probability.
    fn on_radio_check(&mut self, request: &DmrdRepr, radio: u32, checker: u32) {
        let Some(sim) = self.radios.get(&radio).cloned() else {
            return;
        };
        let answered = self.rng.random_bool(sim.answer_probability.clamp(0.0, 1.0));
        self.record(GroundTruth::RadioCheck {
            radio,
            checker,
            answered,
        });
        if !answered {
            return;
        }
        let ack = DmrdRepr {
            seq: 0,
            source: radio,
            destination: checker,
            repeater_id: self.config.repeater_id,
            slot: request.slot,
            call_type: CallType::Private,
            frame: FrameType::Data(DataType::Csbk),
            stream_id: self.rng.random(),
            burst: Csbk::radio_check(RadioCheck::Ack { radio, checker })
                .to_burst_with_sync(self.config.colour_code, sync::MS_DATA),
            ber: 0,
            rssi: 0x40,
        };
        let socket = self.socket.clone();
        let master = self.config.master;
        tokio::spawn(async move {
            tokio::time::sleep(sim.reply_delay).await;
            let _ = socket.send_to(&Message::Data(ack).to_bytes(), master).await;
        });
    }

    fn start_call(
        &mut self,
        radio: u32,
        call: VoiceCall,
        done: oneshot::Sender<Result<u32, HotspotError>>,
    ) {
        if !self.radios.contains_key(&radio) {
            let _ = done.send(Err(HotspotError::UnknownRadio(radio)));
            return;
        }
        if self.phase != Phase::Running {
            let _ = done.send(Err(HotspotError::NotLoggedIn));
            return;
        }
        let stream_id: u32 = self.rng.random_range(1..u32::MAX);
        let mut voice = vec![[0u8; BURST_LEN]; usize::from(call.voice_frames)];
        for burst in voice.iter_mut() {
            self.rng.fill(&mut burst[..]);
        }
        self.record(GroundTruth::VoiceCall {
            radio,
            slot: call.slot,
            destination: call.destination,
            stream_id,
        });
        let sender = CallSender {
            socket: self.socket.clone(),
            master: self.config.master,
            repeater_id: self.config.repeater_id,
            colour_code: self.config.colour_code,
            frame_interval: self.config.frame_interval,
            locks: self.slot_locks.clone(),
        };
        tokio::spawn(async move {
            sender.send_call(radio, call, stream_id, voice).await;
            let _ = done.send(Ok(stream_id));
        });
    }
}

/// Sends one voice call's frames, paced like the air interface.
struct CallSender {
    socket: Arc<UdpSocket>,
    master: SocketAddr,
    repeater_id: u32,
    colour_code: u8,
    frame_interval: Duration,
    locks: Arc<[tokio::sync::Mutex<()>; 2]>,
}

impl CallSender {
    /// Full LC: FLCO (0 group, 3 unit-to-unit), FID 0, service options 0,
    /// destination, source; RS parity left zero (see module docs).
    fn link_control(radio: u32, call: &VoiceCall) -> [u8; 12] {
        let flco = match call.call_type {
            CallType::Group => 0x00,
            CallType::Private => 0x03,
        };
        let d = call.destination.to_be_bytes();
        let s = radio.to_be_bytes();
        [flco, 0, 0, d[1], d[2], d[3], s[1], s[2], s[3], 0, 0, 0]
    }

    async fn send_call(
        &self,
        radio: u32,
        call: VoiceCall,
        stream_id: u32,
        voice: Vec<[u8; BURST_LEN]>,
    ) {
        let _slot = self.locks[call.slot.index()].lock().await;
        let lc = Self::link_control(radio, &call);
        let lc_burst = |data_type| {
            DataBurst {
                colour_code: self.colour_code,
                data_type,
                info: lc,
            }
            .encode(sync::MS_DATA)
        };
        let mut frames = vec![(
            FrameType::Data(DataType::VoiceLcHeader),
            lc_burst(DataType::VoiceLcHeader),
        )];
        for (i, mut burst) in voice.into_iter().enumerate() {
            let n = (i % 6) as u8;
            let frame = if n == 0 {
                set_sync_field(&mut burst, sync::MS_VOICE);
                FrameType::VoiceSync
            } else {
                FrameType::Voice { n }
            };
            frames.push((frame, burst));
        }
        frames.push((
            FrameType::Data(DataType::TerminatorWithLc),
            lc_burst(DataType::TerminatorWithLc),
        ));
        for (seq, (frame, burst)) in frames.into_iter().enumerate() {
            let repr = DmrdRepr {
                seq: seq as u8,
                source: radio,
                destination: call.destination,
                repeater_id: self.repeater_id,
                slot: call.slot,
                call_type: call.call_type,
                frame,
                stream_id,
                burst,
                ber: 0,
                rssi: 0x40,
            };
            let _ = self
                .socket
                .send_to(&Message::Data(repr).to_bytes(), self.master)
                .await;
            tokio::time::sleep(self.frame_interval).await;
        }
    }
}

async fn run(
    config: HotspotConfig,
    mut commands: mpsc::Receiver<Command>,
    logged_in: watch::Sender<bool>,
    log: Arc<Mutex<Vec<GroundTruth>>>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let bind: SocketAddr = if config.master.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    };
    let socket = Arc::new(UdpSocket::bind(bind).await?);
    let mut hotspot = Hotspot {
        rng: StdRng::seed_from_u64(config.seed),
        radios: config.radios.iter().map(|r| (r.id, r.clone())).collect(),
        config,
        socket,
        log,
        logged_in,
        phase: Phase::SentLogin,
        slot_locks: Arc::new([tokio::sync::Mutex::new(()), tokio::sync::Mutex::new(())]),
    };
    let mut salt = None;
    let mut commands_open = true;
    let mut buf = vec![0u8; 1500];
    hotspot.start_login().await;
    let mut next_tick = tokio::time::Instant::now() + hotspot.config.retry_interval;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                if hotspot.phase == Phase::Running {
                    let peer = hotspot.config.repeater_id;
                    hotspot.send(&Message::Close { peer }).await;
                }
                hotspot.set_logged_in(false);
                return Ok(());
            }
            _ = tokio::time::sleep_until(next_tick) => {
                hotspot.tick(salt).await;
                let interval = if hotspot.phase == Phase::Running {
                    hotspot.config.ping_interval
                } else {
                    hotspot.config.retry_interval
                };
                next_tick = tokio::time::Instant::now() + interval;
            }
            command = commands.recv(), if commands_open => match command {
                Some(Command::Call { radio, call, done }) => hotspot.start_call(radio, call, done),
                None => commands_open = false,
            },
            received = hotspot.socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                if from != hotspot.config.master {
                    continue;
                }
                match Message::parse(&buf[..len]) {
                    Ok(Message::Ack { value }) => {
                        let was_running = hotspot.phase == Phase::Running;
                        hotspot.on_ack(value, &mut salt).await;
                        if !was_running && hotspot.phase == Phase::Running {
                            next_tick = tokio::time::Instant::now() + hotspot.config.ping_interval;
                        }
                    }
                    Ok(Message::Nak { .. }) | Ok(Message::MasterClose { .. }) => {
                        // Log in again, but only at the next retry tick, so a
                        // master that keeps refusing is not flooded.
                        hotspot.record(GroundTruth::Refused);
                        salt = None;
                        hotspot.phase = Phase::SentLogin;
                        hotspot.set_logged_in(false);
                        next_tick = tokio::time::Instant::now() + hotspot.config.retry_interval;
                    }
                    Ok(Message::Data(repr)) if repr.frame == FrameType::Data(DataType::Csbk) => {
                        if let Ok((csbk, _)) = Csbk::from_burst(&repr.burst) {
                            if let Some(RadioCheck::Request { radio, checker }) = csbk.as_radio_check() {
                                hotspot.on_radio_check(&repr, radio, checker);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%error, "simulated hotspot got a malformed datagram"),
                }
            }
        }
    }
}
