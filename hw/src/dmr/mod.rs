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
