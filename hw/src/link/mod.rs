//! The link model: how a link driver (RoIP, serial, sound card, DMR, simulator)
//! plugs into the daemon.
//!
//! A driver is one tokio task. The daemon sees only a [`LinkHandle`]: it sends
//! [`LinkCommand`]s (frames to transmit, PTT) and receives [`LinkEvent`]s
//! (received frames with the squelch state, identities the link itself carries,
//! up/down). The [`supervisor`] runs a [`LinkDriver`] and restarts it with
//! capped exponential back-off when it fails, so drivers only have to connect,
//! run, and return an error when they lose their device.

pub mod supervisor;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use crate::ani::AniEvent;
use crate::audio::AudioFrame;

pub use supervisor::{spawn_supervised, Backoff};

/// Something the link reports to the daemon.
// Audio is the common variant (50 per second per link): keeping the 320-byte
// frame inline avoids an allocation per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// The driver has its device or peer and is passing audio.
    Up,
    /// The driver lost its device or peer; the supervisor will retry after
    /// `retry_in`.
    Down {
        reason: String,
        retry_in: std::time::Duration,
    },
    /// 20 ms of received audio and whether the squelch (COR) was open for it.
    Audio { frame: AudioFrame, cor: bool },
    /// 20 ms the link made up to cover missing audio (packet-loss
    /// concealment) while the squelch is open. Play it (patch, monitor) to
    /// keep the audio continuous, but it was never heard on air: a recorder
    /// keeps it only if real audio follows, since concealment after the
    /// last packet of a talkspurt is not part of the transmission.
    Concealed { frame: AudioFrame },
    /// The squelch opened or closed (also sent when no audio flows, e.g. on a
    /// control-only link).
    Cor(bool),
    /// An identity carried by the link itself (RFC 4733 DTMF, DMR source id).
    Ani(AniEvent),
    /// The transmitter's real keying state changed (after lead-in/tail).
    Ptt(bool),
}

/// Something the daemon asks the link to do.
#[allow(clippy::large_enum_variant)] // as for LinkEvent: frames stay inline
#[derive(Debug, Clone)]
pub enum LinkCommand {
    /// Key (`true`) or unkey (`false`) the transmitter.
    Ptt(bool),
    /// 20 ms of audio to transmit. Frames sent while unkeyed are dropped by
    /// the driver.
    Transmit(AudioFrame),
}

/// Errors that end one run of a driver; the supervisor retries after them.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open {what}: {source}")]
    Open {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("peer silent for {0:?}")]
    Timeout(std::time::Duration),
}

/// The channels a driver works with during one run. They outlive the run, so
/// commands queued while the driver restarts are not lost.
pub struct DriverIo {
    pub events: mpsc::Sender<LinkEvent>,
    pub commands: mpsc::Receiver<LinkCommand>,
    /// When the current run last reported [`LinkEvent::Up`]; the supervisor
    /// reads it to tell a device that worked from one that never came up.
    up_at: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl DriverIo {
    pub fn new(events: mpsc::Sender<LinkEvent>, commands: mpsc::Receiver<LinkCommand>) -> Self {
        DriverIo {
            events,
            commands,
            up_at: std::sync::Mutex::new(None),
        }
    }

    /// Sends an event, dropping it if the daemon side is gone (shutdown).
    pub async fn emit(&self, event: LinkEvent) {
        if matches!(event, LinkEvent::Up) {
            *self.up_at.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(tokio::time::Instant::now());
        }
        let _ = self.events.send(event).await;
    }

    /// Takes the time of the last `Up` (clearing it for the next run).
    pub(crate) fn take_up_at(&self) -> Option<tokio::time::Instant> {
        self.up_at.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A boxed future, so drivers can be stored as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One kind of link driver. `run` opens the device, emits [`LinkEvent::Up`],
/// moves audio until it fails, and returns the error. It must return promptly
/// (releasing PTT) when `cancel` fires.
pub trait LinkDriver: Send + 'static {
    /// A short description for logs, e.g. `roip 127.0.0.1:4000`.
    fn describe(&self) -> String;
    fn run<'a>(
        &'a mut self,
        io: &'a mut DriverIo,
        cancel: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>>;
    /// Jitter-buffer counters of a link that receives RTP, summed over its
    /// runs, for metrics; `None` for links without RTP.
    fn rtp_counters(&self) -> Option<std::sync::Arc<crate::rtp::RtpCounters>> {
        None
    }
}

/// The daemon's side of a link: cloneable command sender plus the link id.
/// Events arrive on the receiver returned next to it by [`spawn_supervised`].
#[derive(Debug, Clone)]
pub struct LinkHandle {
    pub id: String,
    commands: mpsc::Sender<LinkCommand>,
}

impl LinkHandle {
    pub fn new(id: impl Into<String>, commands: mpsc::Sender<LinkCommand>) -> LinkHandle {
        LinkHandle {
            id: id.into(),
            commands,
        }
    }

    /// Keys or unkeys the transmitter. Never blocks the caller for long: the
    /// command queue is bounded and a full queue means the driver is wedged,
    /// in which case the command is dropped and `false` returned.
    pub fn ptt(&self, on: bool) -> bool {
        self.commands.try_send(LinkCommand::Ptt(on)).is_ok()
    }

    /// Queues one frame for transmission; `false` when the queue is full.
    pub fn transmit(&self, frame: AudioFrame) -> bool {
        self.commands.try_send(LinkCommand::Transmit(frame)).is_ok()
    }
}
