//! Logical channels: each groups one or more links, runs the transmission
//! state machine (idle → receiving → hang → idle), arbitrates PTT between
//! console, alerts, roll calls and patched traffic, patches merged links,
//! feeds the ANI decoders, recorder and live monitors.
//!
//! Other modules reach a channel through the [`Transmitter`] trait, so the
//! roll-call engine and the alert tracker can be tested without radios.

pub mod crosspatch;
pub mod machine;
pub mod task;

use std::future::Future;
use std::pin::Pin;

/// Who wants the transmitter, in priority order (higher wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxSource {
    /// Audio patched from another link of a merged channel.
    Patch,
    /// The roll-call engine calling guards.
    RollCall,
    /// An alert broadcast (tone + clip).
    Alert,
    /// A console operator (gRPC Talk).
    Console,
}

impl TxSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TxSource::Patch => "patch",
            TxSource::RollCall => "rollcall",
            TxSource::Alert => "alert",
            TxSource::Console => "console",
        }
    }
}

/// Why a transmission did not happen or was cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no channel \"{0}\"")]
    NoSuchChannel(String),
    #[error("channel busy: {0} holds it")]
    Busy(&'static str),
    #[error("transmission pre-empted by {0}")]
    Preempted(&'static str),
    #[error("transmit time-out after {0} s")]
    TimedOut(u64),
    #[error("channel has no link that is up")]
    NoLinkUp,
    #[error("daemon is stopping")]
    ShuttingDown,
}

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends a whole clip (8 kHz mono i16) on a channel under PTT arbitration.
/// Resolves when the last frame has gone out (plus the PTT tail).
pub trait Transmitter: Send + Sync + 'static {
    fn transmit(
        &self,
        channel: &str,
        source: TxSource,
        samples: Vec<i16>,
    ) -> BoxFuture<'_, Result<(), TxError>>;
}

/// Every channel task's handle, by id: the daemon's [`Transmitter`].
#[derive(Clone, Default)]
pub struct Channels {
    pub by_id: std::collections::BTreeMap<String, task::ChannelHandle>,
}

impl Channels {
    pub fn get(&self, id: &str) -> Option<&task::ChannelHandle> {
        self.by_id.get(id)
    }
}

impl Transmitter for Channels {
    fn transmit(
        &self,
        channel: &str,
        source: TxSource,
        samples: Vec<i16>,
    ) -> BoxFuture<'_, Result<(), TxError>> {
        let handle = self.by_id.get(channel).cloned();
        let channel = channel.to_owned();
        Box::pin(async move {
            match handle {
                Some(h) => h.transmit(source, samples).await,
                None => Err(TxError::NoSuchChannel(channel)),
            }
        })
    }
}

/// A [`Transmitter`] for modules started before the channels exist (alerts,
/// roll calls): it forwards to the channels once [`LateTransmitter::set`]
/// has been called and refuses with `NoSuchChannel` before that.
#[derive(Clone, Default)]
pub struct LateTransmitter {
    inner: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<Channels>>>,
}

impl LateTransmitter {
    pub fn set(&self, channels: std::sync::Arc<Channels>) {
        let _ = self.inner.set(channels);
    }
}

impl Transmitter for LateTransmitter {
    fn transmit(
        &self,
        channel: &str,
        source: TxSource,
        samples: Vec<i16>,
    ) -> BoxFuture<'_, Result<(), TxError>> {
        match self.inner.get() {
            Some(ch) => ch.transmit(channel, source, samples),
            None => {
                let channel = channel.to_owned();
                Box::pin(async move { Err(TxError::NoSuchChannel(channel)) })
            }
        }
    }
}
