//! RTP for RoIP, sans-IO: the packet format (RFC 3550), G.711 and Opus
//! payloads (RFC 3551, RFC 7587), RFC 4733 telephone-events, the adaptive
//! jitter buffer, the transmit-side packetiser and a pcap writer for
//! inspecting what we send with standard tools.
//!
//! Nothing here opens a socket or reads a clock: bytes and `Instant`s go in,
//! values come out. The RoIP driver ([`crate::roip`]) is the I/O shell.
//! Parsers never panic on any input.

pub mod codec;
pub mod event;
pub mod g711;
pub mod jitter;
pub mod packet;
pub mod pcap;
pub mod sender;

pub use codec::{Codec, CodecError, PayloadDecoder, PayloadEncoder};
pub use event::{DtmfEventDecoder, EventError, TelephoneEvent};
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, RtpCounters};
pub use packet::{RtpError, RtpHeader, RtpPacket};
pub use sender::{RtpSender, COMFORT_NOISE_PT};
