//! The channel task: one tokio task per channel, executing the
//! [`ChannelMachine`]'s actions against real links, pacing local
//! transmissions at 20 ms, and feeding the ANI decoders, recorder, patch and
//! live monitors.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollcall_hw::ani::AniEvent;
use rollcall_hw::audio::{AudioFrame, FRAME_SAMPLES};
use rollcall_hw::link::{LinkEvent, LinkHandle};
use rollcall_hw::ogg::Direction;
use rollcall_hw::signalling::{AniDecoder, AniDecoderConfig, SelcallStandard};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::machine::{Action, ChannelMachine, ClaimId, ClaimResult, MachineConfig, TxEndReason};
use super::{TxError, TxSource};
use crate::config::ChannelConfig;
use crate::events::{Bus, Event};
use crate::recorder::{RecKey, RecorderHandle, StartRecording};
use crate::roster::Roster;

/// One 20 ms tick of a channel's audio for live monitors.
#[derive(Debug, Clone)]
pub struct MonitorFrame {
    pub channel: Arc<str>,
    /// The link heard, or `None` for our own transmission.
    pub link: Option<Arc<str>>,
    pub frame: AudioFrame,
    pub cor: bool,
    /// An identity decoded in this frame, as `kind:unit`.
    pub ani: Option<String>,
}

/// Requests to a channel task.
#[allow(clippy::large_enum_variant)] // console audio frames are the common case
pub enum Request {
    /// Claim the transmitters for a streamed transmission (console Talk).
    Claim {
        source: TxSource,
        reply: oneshot::Sender<Result<ClaimId, TxError>>,
    },
    /// Audio for a granted claim; dropped if the claim no longer holds.
    Frame { claim: ClaimId, frame: AudioFrame },
    /// End of a streamed transmission.
    Release { claim: ClaimId },
    /// A whole clip: claim, send paced, release; replies when done.
    Clip {
        source: TxSource,
        samples: Vec<i16>,
        reply: oneshot::Sender<Result<(), TxError>>,
    },
    /// Current state name, for status.
    State {
        reply: oneshot::Sender<&'static str>,
    },
}

/// Cloneable handle to a channel task.
#[derive(Clone)]
pub struct ChannelHandle {
    pub id: String,
    requests: mpsc::Sender<Request>,
    monitors: broadcast::Sender<Arc<MonitorFrame>>,
}

impl ChannelHandle {
    pub async fn request(&self, r: Request) -> Result<(), TxError> {
        self.requests
            .send(r)
            .await
            .map_err(|_| TxError::ShuttingDown)
    }

    /// Transmits a clip under arbitration; resolves when it has gone out.
    pub async fn transmit(&self, source: TxSource, samples: Vec<i16>) -> Result<(), TxError> {
        let (tx, rx) = oneshot::channel();
        self.request(Request::Clip {
            source,
            samples,
            reply: tx,
        })
        .await?;
        rx.await.map_err(|_| TxError::ShuttingDown)?
    }

    pub async fn claim(&self, source: TxSource) -> Result<ClaimId, TxError> {
        let (tx, rx) = oneshot::channel();
        self.request(Request::Claim { source, reply: tx }).await?;
        rx.await.map_err(|_| TxError::ShuttingDown)?
    }

    /// Sends a frame of a streamed transmission (non-blocking; a full queue
    /// drops the frame rather than stall the caller).
    pub fn frame(&self, claim: ClaimId, frame: AudioFrame) -> bool {
        self.requests
            .try_send(Request::Frame { claim, frame })
            .is_ok()
    }

    pub async fn release(&self, claim: ClaimId) {
        let _ = self.request(Request::Release { claim }).await;
    }

    pub async fn state(&self) -> &'static str {
        let (tx, rx) = oneshot::channel();
        if self.request(Request::State { reply: tx }).await.is_err() {
            return "stopped";
        }
        rx.await.unwrap_or("stopped")
    }

    pub fn monitor(&self) -> broadcast::Receiver<Arc<MonitorFrame>> {
        self.monitors.subscribe()
    }
}

/// Per-link state the task keeps next to the machine.
struct LinkSide {
    id: Arc<str>,
    handle: LinkHandle,
    counters: Arc<crate::metrics::LinkCounters>,
    decoder: AniDecoder,
    recording: Option<(RecKey, std::time::Instant)>,
    /// Concealed frames not yet recorded: kept only if heard audio follows.
    concealed: Vec<AudioFrame>,
    rx_started: Option<Instant>,
    ani_seen: bool,
}

impl LinkSide {
    /// Queues a frame for the link, counting it (or its drop).
    fn send(&self, frame: AudioFrame) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.handle.transmit(frame) {
            self.counters.frames_out.fetch_add(1, Relaxed);
        } else {
            self.counters.frames_dropped.fetch_add(1, Relaxed);
        }
    }
}

/// A local transmission being paced out.
struct LocalTx {
    claim: ClaimId,
    source: TxSource,
    queue: VecDeque<AudioFrame>,
    /// `Some` for clips: answered when the queue drains.
    done: Option<oneshot::Sender<Result<(), TxError>>>,
    recording: Option<RecKey>,
    started: Instant,
}

/// A clip waiting for the air to clear.
struct PendingClip {
    source: TxSource,
    samples: Vec<i16>,
    reply: oneshot::Sender<Result<(), TxError>>,
    give_up: Instant,
}

/// How long an alert or roll-call clip waits for a busy channel to clear
/// before it uses its priority.
const CLEAR_AIR_WAIT: Duration = Duration::from_secs(20);

pub struct ChannelTask {
    cfg: ChannelConfig,
    /// Alert and roll-call clips wait here while the channel is receiving:
    /// a radio that is transmitting cannot hear a call, so calling over a
    /// guard's answer would be a call nobody hears.
    pending: VecDeque<PendingClip>,
    id: Arc<str>,
    machine: ChannelMachine,
    links: Vec<LinkSide>,
    local: Option<LocalTx>,
    bus: Bus,
    roster: Roster,
    recorder: Option<RecorderHandle>,
    monitors: broadcast::Sender<Arc<MonitorFrame>>,
    tx_timeout: Duration,
}

/// Queue depth for streamed console audio: 1 s.
const REQUEST_QUEUE: usize = 64;
/// Frames a console may queue ahead of real time before they are dropped.
const MAX_TALK_BACKLOG: usize = 25;

impl ChannelTask {
    /// Builds the task; run it with [`ChannelTask::run`]. `links` are in the
    /// order of the channel's `links` config.
    pub fn new(
        cfg: &ChannelConfig,
        links: Vec<LinkHandle>,
        bus: Bus,
        roster: Roster,
        recorder: Option<RecorderHandle>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> (ChannelTask, ChannelHandle, mpsc::Receiver<Request>) {
        let ani = AniDecoderConfig {
            dtmf: cfg.ani.dtmf,
            selcall: cfg.ani.selcall.as_deref().and_then(SelcallStandard::parse),
            mdc1200: cfg.ani.mdc1200,
        };
        let mcfg = MachineConfig {
            hang: Duration::from_millis(cfg.hang_time_ms),
            tx_timeout: Duration::from_secs(cfg.tx_timeout_s),
            patch_tail: Duration::from_millis(cfg.patch_tail_ms),
            merge: cfg.merge,
            busy_policy: cfg.busy_policy,
        };
        let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
        let (mon_tx, _) = broadcast::channel(64);
        let id: Arc<str> = Arc::from(cfg.id.as_str());
        let task = ChannelTask {
            machine: ChannelMachine::new(mcfg, links.len()),
            links: links
                .into_iter()
                .map(|h| LinkSide {
                    id: Arc::from(h.id.as_str()),
                    counters: metrics.link(&h.id),
                    handle: h,
                    decoder: AniDecoder::new(ani.clone()),
                    recording: None,
                    concealed: Vec::new(),
                    rx_started: None,
                    ani_seen: false,
                })
                .collect(),
            local: None,
            pending: VecDeque::new(),
            bus,
            roster,
            recorder: if cfg.record { recorder } else { None },
            monitors: mon_tx.clone(),
            tx_timeout: mcfg.tx_timeout,
            id: id.clone(),
            cfg: cfg.clone(),
        };
        let handle = ChannelHandle {
            id: cfg.id.clone(),
            requests: req_tx,
            monitors: mon_tx,
        };
        (task, handle, req_rx)
    }

    /// Runs until `cancel` fires; releases every PTT on the way out.
    pub async fn run(
        mut self,
        mut link_events: mpsc::Receiver<(Arc<str>, LinkEvent)>,
        mut requests: mpsc::Receiver<Request>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.machine.poll_timeout();
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some((link, ev)) = link_events.recv() => self.on_link_event(&link, ev),
                Some(req) = requests.recv() => self.on_request(req),
                _ = tick.tick(), if self.local.is_some() || !self.pending.is_empty() => self.on_tick(),
                _ = sleep_until_opt(deadline) => {
                    self.machine.handle_timeout(Instant::now().into_std());
                }
            }
            self.apply_actions();
            self.start_pending();
        }
        // Fail safe: nothing stays keyed, every recording is closed.
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Err(TxError::ShuttingDown));
        }
        if let Some(local) = self.local.take() {
            if let Some(done) = local.done {
                let _ = done.send(Err(TxError::ShuttingDown));
            }
            self.close_local_recording(local.recording);
        }
        for l in &mut self.links {
            l.handle.ptt(false);
            if let (Some((key, _)), Some(rec)) = (l.recording.take(), &self.recorder) {
                rec.finish(key);
            }
        }
        tracing::info!(channel = %self.id, "channel stopped, PTT released");
    }

    fn link_index(&self, id: &str) -> Option<usize> {
        self.links.iter().position(|l| &*l.id == id)
    }

    fn on_link_event(&mut self, link: &str, ev: LinkEvent) {
        let Some(i) = self.link_index(link) else {
            return;
        };
        let now = Instant::now().into_std();
        match ev {
            LinkEvent::Up => self.machine.handle_link_up(now, i, true),
            LinkEvent::Down { .. } => self.machine.handle_link_up(now, i, false),
            LinkEvent::Cor(open) => self.machine.handle_cor(now, i, open),
            LinkEvent::Audio { frame, cor } => {
                self.machine.handle_cor(now, i, cor);
                self.apply_actions();
                self.on_rx_frame(i, &frame, cor, false);
            }
            LinkEvent::Concealed { frame } => {
                self.on_rx_frame(i, &frame, true, true);
            }
            LinkEvent::Ani(ani) => self.on_ani(i, ani),
            LinkEvent::Ptt(_) => {}
        }
    }

    fn on_rx_frame(&mut self, i: usize, frame: &AudioFrame, cor: bool, concealed: bool) {
        let mut ani_text = None;
        if cor {
            let side = &mut self.links[i];
            if let (Some((key, _)), Some(rec)) = (&side.recording, &self.recorder) {
                if concealed {
                    side.concealed.push(*frame);
                } else {
                    // Concealment between heard frames is part of the audio.
                    // A recorder too far behind drops frames: counted per link.
                    let mut dropped = 0;
                    for f in side.concealed.drain(..) {
                        dropped += u64::from(!rec.frame(*key, &f));
                    }
                    dropped += u64::from(!rec.frame(*key, frame));
                    if dropped > 0 {
                        side.counters
                            .frames_dropped
                            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            let events = self.links[i].decoder.push(&frame.samples);
            for ani in events {
                ani_text = Some(format!("{}:{}", ani.kind.as_str(), ani.unit));
                self.on_ani(i, ani);
            }
            for dest in self.machine.patch_destinations(i) {
                self.links[dest].send(*frame);
            }
        }
        if self.monitors.receiver_count() > 0 {
            let _ = self.monitors.send(Arc::new(MonitorFrame {
                channel: self.id.clone(),
                link: Some(self.links[i].id.clone()),
                frame: *frame,
                cor,
                ani: ani_text,
            }));
        }
    }

    fn on_ani(&mut self, i: usize, ani: AniEvent) {
        let roster = self.roster.snapshot();
        let guard = roster
            .guard_by_code(ani.kind.as_str(), &ani.unit)
            .map(|g| g.id.clone());
        let side = &mut self.links[i];
        if let (Some((key, _)), Some(rec)) = (&side.recording, &self.recorder) {
            rec.ani(*key, ani.kind.as_str(), &ani.unit, guard.clone());
        }
        side.ani_seen = true;
        tracing::info!(channel = %self.id, link = %side.id, kind = ani.kind.as_str(), unit = %ani.unit, guard = ?guard, "ANI heard");
        self.bus.publish(Event::Ani {
            channel: self.cfg.id.clone(),
            link: side.id.to_string(),
            kind: ani.kind.as_str().into(),
            unit: ani.unit.clone(),
            op: format!("{:?}", ani.op),
            guard,
        });
    }

    fn on_request(&mut self, req: Request) {
        let now = Instant::now().into_std();
        match req {
            Request::Claim { source, reply } => {
                let result = self.start_local(now, source);
                let _ = reply.send(result);
            }
            Request::Clip {
                source,
                samples,
                reply,
            } => {
                // Consoles talk when they press; alerts and roll calls wait
                // for clear air, patched traffic included: keying over
                // someone who is talking would glue the call onto his words
                // and the radios would not decode it.
                let must_wait = source < TxSource::Console
                    && (self.machine.air_busy()
                        || self.local.is_some()
                        || !self.pending.is_empty());
                if must_wait {
                    self.pending.push_back(PendingClip {
                        source,
                        samples,
                        reply,
                        give_up: Instant::now() + CLEAR_AIR_WAIT,
                    });
                    return;
                }
                self.start_clip(now, source, samples, reply);
            }
            Request::Frame { claim, frame } => {
                if let Some(local) = &mut self.local {
                    // Real-time pacing: a client sending faster than real time
                    // does not build up an unbounded backlog.
                    if local.claim == claim && local.queue.len() < MAX_TALK_BACKLOG {
                        local.queue.push_back(frame);
                    }
                }
            }
            Request::Release { claim } => {
                if self.local.as_ref().is_some_and(|l| l.claim == claim) {
                    self.machine.release(now, claim);
                }
            }
            Request::State { reply } => {
                let _ = reply.send(self.machine.state_name());
            }
        }
    }

    /// Starts a clip now: claim, queue its frames, answer when they are out.
    fn start_clip(
        &mut self,
        now: std::time::Instant,
        source: TxSource,
        samples: Vec<i16>,
        reply: oneshot::Sender<Result<(), TxError>>,
    ) {
        if let Err(e) = self.start_local(now, source) {
            let _ = reply.send(Err(e));
            return;
        }
        if let Some(local) = &mut self.local {
            local
                .queue
                .extend(samples.chunks(FRAME_SAMPLES).map(AudioFrame::from_slice));
            local.done = Some(reply);
            if local.queue.is_empty() {
                self.finish_local(now);
            }
        }
    }

    /// Starts the oldest waiting clip once the air is clear. A clip that has
    /// waited [`CLEAR_AIR_WAIT`] goes out anyway when its priority allows
    /// (pre-empting patched traffic), so endless chatter cannot block an
    /// alert; it fails only if a higher priority holds the channel.
    fn start_pending(&mut self) {
        let now = Instant::now();
        let overdue = self.pending.front().is_some_and(|p| p.give_up <= now);
        if self.local.is_some() || (self.machine.air_busy() && !overdue) {
            return;
        }
        if let Some(p) = self.pending.pop_front() {
            self.start_clip(now.into_std(), p.source, p.samples, p.reply);
            self.apply_actions();
        }
    }

    fn start_local(
        &mut self,
        now: std::time::Instant,
        source: TxSource,
    ) -> Result<ClaimId, TxError> {
        match self.machine.claim(now, source) {
            ClaimResult::Granted(claim) => {
                // A pre-empted local transmission is answered in apply_actions.
                self.apply_actions();
                let recording = self.recorder.as_ref().map(|r| {
                    r.start(StartRecording {
                        channel: self.cfg.id.clone(),
                        link: "*".into(),
                        direction: Direction::Tx,
                        source: source.as_str().into(),
                        start: SystemTime::now(),
                    })
                });
                self.local = Some(LocalTx {
                    claim,
                    source,
                    queue: VecDeque::new(),
                    done: None,
                    recording,
                    started: Instant::now(),
                });
                Ok(claim)
            }
            ClaimResult::Busy(holder) => Err(TxError::Busy(holder.as_str())),
            ClaimResult::NoLinkUp => Err(TxError::NoLinkUp),
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now().into_std();
        let Some(local) = &mut self.local else {
            return;
        };
        match local.queue.pop_front() {
            Some(frame) => {
                for i in self.machine.keyed_links() {
                    self.links[i].send(frame);
                }
                if let (Some(key), Some(rec)) = (local.recording, &self.recorder) {
                    // Our own transmission has no link to count a drop on.
                    let _ = rec.frame(key, &frame);
                }
                if self.monitors.receiver_count() > 0 {
                    let _ = self.monitors.send(Arc::new(MonitorFrame {
                        channel: self.id.clone(),
                        link: None,
                        frame,
                        cor: false,
                        ani: None,
                    }));
                }
                if local.queue.is_empty() && local.done.is_some() {
                    self.finish_local(now);
                }
            }
            None => {
                // A streamed Talk with no audio right now: keep the carrier up
                // (silence) until the client releases or the time-out cuts it.
            }
        }
    }

    fn finish_local(&mut self, now: std::time::Instant) {
        if let Some(local) = &self.local {
            let claim = local.claim;
            self.machine.release(now, claim);
        }
    }

    fn close_local_recording(&self, key: Option<RecKey>) {
        if let (Some(key), Some(rec)) = (key, &self.recorder) {
            rec.finish(key);
        }
    }

    fn apply_actions(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Key { link, on } => {
                    if !self.links[link].handle.ptt(on) {
                        tracing::warn!(channel = %self.id, link = %self.links[link].id, on, "link command queue full; PTT change dropped");
                    }
                }
                Action::RxStarted { link } => {
                    let side = &mut self.links[link];
                    side.rx_started = Some(Instant::now());
                    side.ani_seen = false;
                    side.recording = self.recorder.as_ref().map(|r| {
                        (
                            r.start(StartRecording {
                                channel: self.cfg.id.clone(),
                                link: side.id.to_string(),
                                direction: Direction::Rx,
                                source: "rx".into(),
                                start: SystemTime::now(),
                            }),
                            std::time::Instant::now(),
                        )
                    });
                    self.bus.publish(Event::TransmissionStarted {
                        channel: self.cfg.id.clone(),
                        link: side.id.to_string(),
                        direction: "rx".into(),
                        source: "rx".into(),
                    });
                }
                Action::RxEnded { link } => {
                    // End-of-transmission PTT-ID still in the decoder.
                    for ani in self.links[link].decoder.flush() {
                        self.on_ani(link, ani);
                    }
                    let side = &mut self.links[link];
                    // Concealment after the last heard frame was never on air.
                    side.concealed.clear();
                    if let (Some((key, _)), Some(rec)) = (side.recording.take(), &self.recorder) {
                        rec.finish(key);
                    }
                    let duration_ms = side
                        .rx_started
                        .take()
                        .map_or(0, |t| t.elapsed().as_millis() as u64);
                    self.bus.publish(Event::TransmissionEnded {
                        channel: self.cfg.id.clone(),
                        link: side.id.to_string(),
                        direction: "rx".into(),
                        source: "rx".into(),
                        reason: "squelch closed".into(),
                        duration_ms,
                    });
                }
                Action::TxStarted { claim: _, source } => {
                    self.bus.publish(Event::TransmissionStarted {
                        channel: self.cfg.id.clone(),
                        link: "*".into(),
                        direction: "tx".into(),
                        source: source.as_str().into(),
                    });
                }
                Action::TxEnded {
                    claim,
                    source,
                    reason,
                } => {
                    let reason_text = match reason {
                        TxEndReason::Released => "released".to_string(),
                        TxEndReason::Preempted(by) => format!("preempted by {}", by.as_str()),
                        TxEndReason::TimedOut => "timed out".to_string(),
                        TxEndReason::NoLinks => "no links".to_string(),
                    };
                    if reason == TxEndReason::TimedOut {
                        tracing::warn!(channel = %self.id, source = source.as_str(), "transmit time-out: transmission cut");
                        self.bus.publish(Event::TxTimeout {
                            channel: self.cfg.id.clone(),
                            source: source.as_str().into(),
                            after_s: self.tx_timeout.as_secs(),
                        });
                    }
                    let mut duration_ms = 0;
                    if self.local.as_ref().is_some_and(|l| l.claim == claim) {
                        let local = self.local.take().expect("checked above");
                        duration_ms = local.started.elapsed().as_millis() as u64;
                        self.close_local_recording(local.recording);
                        if let Some(done) = local.done {
                            let _ = done.send(match reason {
                                TxEndReason::Released => Ok(()),
                                TxEndReason::Preempted(by) => Err(TxError::Preempted(by.as_str())),
                                TxEndReason::TimedOut => {
                                    Err(TxError::TimedOut(self.tx_timeout.as_secs()))
                                }
                                TxEndReason::NoLinks => Err(TxError::NoLinkUp),
                            });
                        }
                        let _ = local.source;
                    }
                    self.bus.publish(Event::TransmissionEnded {
                        channel: self.cfg.id.clone(),
                        link: "*".into(),
                        direction: "tx".into(),
                        source: source.as_str().into(),
                        reason: reason_text,
                        duration_ms,
                    });
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
