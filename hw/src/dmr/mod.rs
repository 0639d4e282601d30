//! DMR through the Homebrew (MMDVM) network protocol: rollcalld acts as the
//! master that the station's MMDVMHost/DMRGateway (hotspot or repeater) logs
//! in to, so no vendor interface is needed.
//!
//! What it owns:
//! - [`wire`]: Homebrew datagrams (`RPTL`/`RPTK`/`RPTC`/`RPTO`/`RPTPING`/`RPTCL`,
//!   `RPTACK`/`MSTNAK`/`MSTPONG`/`MSTCL`, `DMRD`) as views and values.
//! - [`burst`], [`fec`], [`csbk`]: the 33-byte DMR data burst (BPTC (196,96),
//!   Golay (20,8) slot type, data sync) and CSBKs, enough to build and read
//!   radio checks.
//! - [`master`]: the sans-IO master — logins, keep-alive, call tracking per
//!   slot, radio checks with time-out and retries.
//! - [`link`]: the thin tokio UDP shell, [`HomebrewLink`] (a
//!   [`LinkDriver`](crate::link::LinkDriver)) plus [`RadioCheckHandle`].
//!
//! The caller's identity is the `DMRD` source id; a call start becomes
//! `LinkEvent::Cor(true)` and an `AniEvent` of kind `Dmr`. Voice is AMBE+2,
//! for which there is no public codec: voice bursts are tracked but never
//! decoded, so this link emits no `LinkEvent::Audio` and ignores
//! `LinkCommand::Transmit`.
//!
//! Parsers never panic on any input; every rejection is an error value that
//! names what was wrong.
//!
//! # Using it from the daemon
//!
//! ```no_run
//! use std::time::Duration;
//! use rollcall_hw::dmr::{HomebrewConfig, HomebrewLink, PeerCredentials, RadioCheckOutcome, Slot};
//! use rollcall_hw::link::{spawn_supervised, Backoff};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = HomebrewConfig::new(
//!     "0.0.0.0:62030".parse()?,
//!     vec![PeerCredentials { id: 460_0001, password: "passw0rd".into() }],
//! );
//! config.validate().map_err(|problems| problems.join("; "))?;
//! let (link, radio_checks) = HomebrewLink::new(config);
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let (_handle, mut events, _task) =
//!     spawn_supervised("dmr-1", Box::new(link), Backoff::default(), cancel.clone());
//! // events: Up, Cor(true/false), Ani { kind: Dmr, unit: "2300001", .. }, Down
//! match radio_checks.radio_check(2_300_001, Slot::One, Duration::from_millis(1500), 2).await? {
//!     RadioCheckOutcome::Answered { attempts, after, .. } => println!("present ({attempts}, {after:?})"),
//!     RadioCheckOutcome::NoAnswer { .. } | RadioCheckOutcome::NoPeer { .. } => println!("no answer"),
//! }
//! # let _ = events.recv().await;
//! # Ok(())
//! # }
//! ```

pub mod burst;
pub mod csbk;
pub mod fec;
pub mod link;
pub mod master;
pub mod wire;

pub use csbk::{Csbk, RadioCheck};
pub use link::{HomebrewConfig, HomebrewLink, RadioCheckError, RadioCheckHandle};
pub use master::{
    CallEndReason, CallInfo, HomebrewError, Master, MasterConfig, MasterEvent, PeerCredentials,
    PeerGoneReason, RadioCheckId, RadioCheckOutcome, RadioCheckRequest, RejectReason,
};
pub use wire::{CallType, DmrdPacket, DmrdRepr, FrameType, Message, PeerConfig, Slot, WireError};
