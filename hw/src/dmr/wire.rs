//! Homebrew (MMDVM) network protocol datagrams, as a master sees them.
//!
//! Two layers, smoltcp style:
//! - [`DmrdPacket`] is a zero-copy view over a `DMRD` voice/data packet:
//!   [`DmrdPacket::new_checked`] validates the length and flags once, after
//!   which no accessor can panic. [`DmrdRepr`] is the same packet as a value
//!   with [`DmrdRepr::parse`] and [`DmrdRepr::to_bytes`].
//! - [`Message`] is every datagram of the protocol as a value (login, key,
//!   config, options, ping/pong, close, ack/nak, data) with
//!   [`Message::parse`] and [`Message::to_bytes`].
//!
//! Layouts (ids are big-endian; checked against DMRGateway's `DMRNetwork.cpp`):
//!
//! | datagram | bytes | layout |
//! |---|---|---|
//! | `RPTL` | 8 | peer id |
//! | `RPTACK` | 10 | salt (answer to `RPTL`) or peer id |
//! | `RPTK` | 40 | peer id, SHA-256(salt ‖ password) |
//! | `RPTC` | 302 | peer id, 294 bytes of space-padded config text |
//! | `RPTO` | 8 + n | peer id, option text (`TS1=…;TS2=…`) |
//! | `RPTPING` / `MSTPONG` | 11 | peer id |
//! | `RPTCL` / `MSTCL` | 9 | peer id |
//! | `MSTNAK` | 10 | peer id |
//! | `DMRD` | 55 (53) | see [`DmrdPacket`] |
//!
//! Parsing never panics; every rejection names what was wrong.

use super::burst::{DataType, BURST_LEN};

/// Length of a `DMRD` packet with BER and RSSI.
pub const DMRD_LEN: usize = 55;
/// Length of a `DMRD` packet from peers that omit BER and RSSI.
pub const DMRD_SHORT_LEN: usize = 53;
/// Length of the `RPTC` config text after the peer id.
pub const CONFIG_TEXT_LEN: usize = 294;
/// Longest `RPTO` option text accepted (DMRGateway's buffer is 300 bytes).
pub const MAX_OPTIONS_LEN: usize = 292;

/// Why a datagram is not a valid Homebrew message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("datagram is empty")]
    Empty,
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    #[error("{command} is {len} bytes, expected {expected}")]
    Length {
        command: &'static str,
        len: usize,
        expected: &'static str,
    },
    #[error("DMRD flags {0:#04x} mark both voice sync and data sync")]
    FrameType(u8),
    #[error("DMRD voice frame number {0} is out of range 0-5")]
    VoiceFrameNumber(u8),
    #[error("a {len}-byte buffer cannot hold {command}, which needs {needed}")]
    BufferTooSmall {
        command: &'static str,
        len: usize,
        needed: usize,
    },
}

/// A TDMA time slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    One,
    Two,
}

impl Slot {
    /// 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            Slot::One => 1,
            Slot::Two => 2,
        }
    }

    /// Index 0 or 1, for per-slot arrays.
    pub fn index(self) -> usize {
        usize::from(self.number() - 1)
    }
}

/// Group (talkgroup) or private (unit-to-unit) call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallType {
    Group,
    Private,
}

/// What the 33-byte burst of a `DMRD` packet carries (flags bits 5–0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// Voice burst A, with voice sync.
    VoiceSync,
    /// Voice bursts B–F: `n` is 1–5 (0 is tolerated, some peers send it).
    Voice { n: u8 },
    /// A data/control burst of the given type (LC header, terminator, CSBK…).
    Data(DataType),
}

const FLAG_SLOT2: u8 = 0x80;
const FLAG_PRIVATE: u8 = 0x40;
const FLAG_DATA_SYNC: u8 = 0x20;
const FLAG_VOICE_SYNC: u8 = 0x10;

mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const SEQ: usize = 4;
    pub const SOURCE: Range<usize> = 5..8;
    pub const DESTINATION: Range<usize> = 8..11;
    pub const REPEATER: Range<usize> = 11..15;
    pub const FLAGS: usize = 15;
    pub const STREAM: Range<usize> = 16..20;
    pub const BURST: Range<usize> = 20..53;
    pub const BER: usize = 53;
    pub const RSSI: usize = 54;
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Zero-copy view of a `DMRD` packet:
///
/// | offset | field |
/// |---|---|
/// | 0–3 | `DMRD` |
/// | 4 | sequence number |
/// | 5–7 | source radio id |
/// | 8–10 | destination id (talkgroup or radio) |
/// | 11–14 | repeater (peer) id |
/// | 15 | flags: 0x80 slot 2, 0x40 private call, 0x20 data sync (low nibble = data type), 0x10 voice sync, else low nibble = voice frame number |
/// | 16–19 | stream id |
/// | 20–52 | 33-byte DMR burst |
/// | 53 | BER (optional) |
/// | 54 | RSSI (optional) |
#[derive(Debug, Clone)]
pub struct DmrdPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DmrdPacket<T> {
    /// Wraps without checking; accessors may panic on short buffers. Prefer
    /// [`DmrdPacket::new_checked`].
    pub fn new_unchecked(buffer: T) -> DmrdPacket<T> {
        DmrdPacket { buffer }
    }

    /// Wraps after checking magic, length and flags.
    pub fn new_checked(buffer: T) -> Result<DmrdPacket<T>, WireError> {
        let packet = DmrdPacket::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        if data.len() != DMRD_LEN && data.len() != DMRD_SHORT_LEN {
            return Err(WireError::Length {
                command: "DMRD",
                len: data.len(),
                expected: "55 (or 53 without BER/RSSI)",
            });
        }
        if &data[field::MAGIC] != b"DMRD" {
            return Err(WireError::UnknownCommand(printable(data)));
        }
        let flags = data[field::FLAGS];
        if flags & FLAG_DATA_SYNC != 0 && flags & FLAG_VOICE_SYNC != 0 {
            return Err(WireError::FrameType(flags));
        }
        if flags & (FLAG_DATA_SYNC | FLAG_VOICE_SYNC) == 0 && flags & 0x0F > 5 {
            return Err(WireError::VoiceFrameNumber(flags & 0x0F));
        }
        Ok(())
    }

    fn data(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn seq(&self) -> u8 {
        self.data()[field::SEQ]
    }

    pub fn source(&self) -> u32 {
        be24(&self.data()[field::SOURCE])
    }

    pub fn destination(&self) -> u32 {
        be24(&self.data()[field::DESTINATION])
    }

    pub fn repeater_id(&self) -> u32 {
        be32(&self.data()[field::REPEATER])
    }

    pub fn slot(&self) -> Slot {
        if self.data()[field::FLAGS] & FLAG_SLOT2 != 0 {
            Slot::Two
        } else {
            Slot::One
        }
    }

    pub fn call_type(&self) -> CallType {
        if self.data()[field::FLAGS] & FLAG_PRIVATE != 0 {
            CallType::Private
        } else {
            CallType::Group
        }
    }

    pub fn frame_type(&self) -> FrameType {
        let flags = self.data()[field::FLAGS];
        if flags & FLAG_DATA_SYNC != 0 {
            FrameType::Data(DataType::from_bits(flags))
        } else if flags & FLAG_VOICE_SYNC != 0 {
            FrameType::VoiceSync
        } else {
            FrameType::Voice { n: flags & 0x0F }
        }
    }

    pub fn stream_id(&self) -> u32 {
        be32(&self.data()[field::STREAM])
    }

    /// The 33-byte DMR burst.
    pub fn burst(&self) -> &[u8] {
        &self.data()[field::BURST]
    }

    /// Bit error rate byte; 0 when the peer sent the short form.
    pub fn ber(&self) -> u8 {
        self.data().get(field::BER).copied().unwrap_or(0)
    }

    /// RSSI byte (-dBm); 0 when the peer sent the short form.
    pub fn rssi(&self) -> u8 {
        self.data().get(field::RSSI).copied().unwrap_or(0)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// A `DMRD` packet as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmrdRepr {
    pub seq: u8,
    pub source: u32,
    pub destination: u32,
    pub repeater_id: u32,
    pub slot: Slot,
    pub call_type: CallType,
    pub frame: FrameType,
    pub stream_id: u32,
    pub burst: [u8; BURST_LEN],
    pub ber: u8,
    pub rssi: u8,
}

impl DmrdRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &DmrdPacket<T>) -> DmrdRepr {
        let mut burst = [0u8; BURST_LEN];
        burst.copy_from_slice(packet.burst());
        DmrdRepr {
            seq: packet.seq(),
            source: packet.source(),
            destination: packet.destination(),
            repeater_id: packet.repeater_id(),
            slot: packet.slot(),
            call_type: packet.call_type(),
            frame: packet.frame_type(),
            stream_id: packet.stream_id(),
            burst,
            ber: packet.ber(),
            rssi: packet.rssi(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        DMRD_LEN
    }

    /// The flags byte (offset 15).
    pub fn flags(&self) -> u8 {
        let mut flags = match self.slot {
            Slot::One => 0,
            Slot::Two => FLAG_SLOT2,
        };
        if self.call_type == CallType::Private {
            flags |= FLAG_PRIVATE;
        }
        flags
            | match self.frame {
                FrameType::VoiceSync => FLAG_VOICE_SYNC,
                FrameType::Voice { n } => n.min(5),
                FrameType::Data(dt) => FLAG_DATA_SYNC | dt.to_bits(),
            }
    }

    /// Writes the packet into the start of `buffer`, returning its length
    /// (55). Ids wider than their field are truncated (source and
    /// destination are 24-bit on the wire).
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, WireError> {
        let len = buffer.len();
        let b = buffer
            .get_mut(..DMRD_LEN)
            .ok_or(WireError::BufferTooSmall {
                command: "DMRD",
                len,
                needed: DMRD_LEN,
            })?;
        b[field::MAGIC].copy_from_slice(b"DMRD");
        b[field::SEQ] = self.seq;
        b[field::SOURCE].copy_from_slice(&self.source.to_be_bytes()[1..]);
        b[field::DESTINATION].copy_from_slice(&self.destination.to_be_bytes()[1..]);
        b[field::REPEATER].copy_from_slice(&self.repeater_id.to_be_bytes());
        b[field::FLAGS] = self.flags();
        b[field::STREAM].copy_from_slice(&self.stream_id.to_be_bytes());
        b[field::BURST].copy_from_slice(&self.burst);
        b[field::BER] = self.ber;
        b[field::RSSI] = self.rssi;
        Ok(DMRD_LEN)
    }

    /// The 55-byte packet (see [`DmrdRepr::emit`]).
    pub fn to_bytes(&self) -> [u8; DMRD_LEN] {
        let mut b = [0u8; DMRD_LEN];
        // Cannot fail: the array has exactly the needed length.
        let _ = self.emit(&mut b);
        b
    }
}

/// The peer's `RPTC` configuration text, fields trimmed of padding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerConfig {
    pub callsign: String,
    /// Hz, as text.
    pub rx_frequency: String,
    pub tx_frequency: String,
    pub tx_power: String,
    pub colour_code: String,
    pub latitude: String,
    pub longitude: String,
    pub height: String,
    pub location: String,
    pub description: String,
    /// `1`, `2`, `3` (both) or `4` (simplex/DMO).
    pub slots: String,
    pub url: String,
    pub software_id: String,
    pub package_id: String,
}

/// `RPTC` field widths in order; they add up to [`CONFIG_TEXT_LEN`].
const CONFIG_WIDTHS: [usize; 14] = [8, 9, 9, 2, 2, 8, 9, 3, 20, 19, 1, 124, 40, 40];

impl PeerConfig {
    fn fields(&self) -> [&String; 14] {
        [
            &self.callsign,
            &self.rx_frequency,
            &self.tx_frequency,
            &self.tx_power,
            &self.colour_code,
            &self.latitude,
            &self.longitude,
            &self.height,
            &self.location,
            &self.description,
            &self.slots,
            &self.url,
            &self.software_id,
            &self.package_id,
        ]
    }

    /// Parses the 294 bytes after `RPTC` + id. Text is decoded leniently
    /// (invalid UTF-8 replaced) because location fields are free text.
    pub fn parse(text: &[u8]) -> Result<PeerConfig, WireError> {
        if text.len() != CONFIG_TEXT_LEN {
            return Err(WireError::Length {
                command: "RPTC",
                len: text.len() + 8,
                expected: "302",
            });
        }
        let mut values = Vec::with_capacity(CONFIG_WIDTHS.len());
        let mut at = 0;
        for width in CONFIG_WIDTHS {
            let raw = &text[at..at + width];
            at += width;
            let value = String::from_utf8_lossy(raw);
            values.push(
                value
                    .trim_matches(|c: char| c == ' ' || c == '\0')
                    .to_string(),
            );
        }
        let mut v = values.into_iter();
        let mut next = || v.next().unwrap_or_default();
        Ok(PeerConfig {
            callsign: next(),
            rx_frequency: next(),
            tx_frequency: next(),
            tx_power: next(),
            colour_code: next(),
            latitude: next(),
            longitude: next(),
            height: next(),
            location: next(),
            description: next(),
            slots: next(),
            url: next(),
            software_id: next(),
            package_id: next(),
        })
    }

    /// The 294-byte text: each field left-aligned, space-padded, truncated
    /// at a character boundary to its width.
    pub fn emit(&self) -> [u8; CONFIG_TEXT_LEN] {
        let mut out = [b' '; CONFIG_TEXT_LEN];
        let mut at = 0;
        for (value, width) in self.fields().into_iter().zip(CONFIG_WIDTHS) {
            let mut end = value.len().min(width);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            out[at..at + end].copy_from_slice(&value.as_bytes()[..end]);
            at += width;
        }
        out
    }

    /// The colour code the peer reports, when it is a number 0–15.
    pub fn colour_code(&self) -> Option<u8> {
        self.colour_code.parse().ok().filter(|cc| *cc <= 15)
    }
}

/// Every Homebrew datagram as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `RPTL`: a peer asks to log in.
    Login { peer: u32 },
    /// `RPTK`: the peer's salted password hash.
    Key { peer: u32, digest: [u8; 32] },
    /// `RPTC`: the peer's configuration.
    Config { peer: u32, config: Box<PeerConfig> },
    /// `RPTO`: the peer's options (talkgroup selection), free text.
    Options { peer: u32, options: String },
    /// `RPTPING`: keep-alive from the peer.
    Ping { peer: u32 },
    /// `RPTCL`: the peer disconnects.
    Close { peer: u32 },
    /// `RPTACK`: master accepts; carries the salt after `RPTL`, else the peer id.
    Ack { value: u32 },
    /// `MSTNAK`: master refuses the peer (it must log in again).
    Nak { peer: u32 },
    /// `MSTPONG`: master answers a ping.
    Pong { peer: u32 },
    /// `MSTCL`: master shuts down.
    MasterClose { peer: u32 },
    /// `DMRD`: a voice or data burst.
    Data(DmrdRepr),
}

/// Printable form of a datagram's first bytes, for error messages.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(7)
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

fn exact(
    command: &'static str,
    bytes: &[u8],
    len: usize,
    expected: &'static str,
) -> Result<(), WireError> {
    if bytes.len() == len {
        Ok(())
    } else {
        Err(WireError::Length {
            command,
            len: bytes.len(),
            expected,
        })
    }
}

impl Message {
    /// Parses one datagram.
    pub fn parse(bytes: &[u8]) -> Result<Message, WireError> {
        if bytes.is_empty() {
            return Err(WireError::Empty);
        }
        // Longer prefixes first: RPTCL before RPTC.
        let id_at = |at: usize| be32(&bytes[at..at + 4]);
        if bytes.starts_with(b"DMRD") {
            let packet = DmrdPacket::new_checked(bytes)?;
            Ok(Message::Data(DmrdRepr::parse(&packet)))
        } else if bytes.starts_with(b"RPTPING") {
            exact("RPTPING", bytes, 11, "11")?;
            Ok(Message::Ping { peer: id_at(7) })
        } else if bytes.starts_with(b"RPTACK") {
            exact("RPTACK", bytes, 10, "10")?;
            Ok(Message::Ack { value: id_at(6) })
        } else if bytes.starts_with(b"RPTCL") {
            exact("RPTCL", bytes, 9, "9")?;
            Ok(Message::Close { peer: id_at(5) })
        } else if bytes.starts_with(b"RPTL") {
            exact("RPTL", bytes, 8, "8")?;
            Ok(Message::Login { peer: id_at(4) })
        } else if bytes.starts_with(b"RPTK") {
            exact("RPTK", bytes, 40, "40")?;
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&bytes[8..40]);
            Ok(Message::Key {
                peer: id_at(4),
                digest,
            })
        } else if bytes.starts_with(b"RPTC") {
            exact("RPTC", bytes, 8 + CONFIG_TEXT_LEN, "302")?;
            Ok(Message::Config {
                peer: id_at(4),
                config: Box::new(PeerConfig::parse(&bytes[8..])?),
            })
        } else if bytes.starts_with(b"RPTO") {
            if bytes.len() < 8 || bytes.len() > 8 + MAX_OPTIONS_LEN {
                return Err(WireError::Length {
                    command: "RPTO",
                    len: bytes.len(),
                    expected: "8 to 300",
                });
            }
            let text = String::from_utf8_lossy(&bytes[8..]);
            Ok(Message::Options {
                peer: id_at(4),
                options: text.trim_end_matches('\0').to_string(),
            })
        } else if bytes.starts_with(b"MSTNAK") {
            exact("MSTNAK", bytes, 10, "10")?;
            Ok(Message::Nak { peer: id_at(6) })
        } else if bytes.starts_with(b"MSTPONG") {
            exact("MSTPONG", bytes, 11, "11")?;
            Ok(Message::Pong { peer: id_at(7) })
        } else if bytes.starts_with(b"MSTCL") {
            exact("MSTCL", bytes, 9, "9")?;
            Ok(Message::MasterClose { peer: id_at(5) })
        } else {
            Err(WireError::UnknownCommand(printable(bytes)))
        }
    }

    /// The command name as it appears on the wire.
    pub fn command(&self) -> &'static str {
        match self {
            Message::Login { .. } => "RPTL",
            Message::Key { .. } => "RPTK",
            Message::Config { .. } => "RPTC",
            Message::Options { .. } => "RPTO",
            Message::Ping { .. } => "RPTPING",
            Message::Close { .. } => "RPTCL",
            Message::Ack { .. } => "RPTACK",
            Message::Nak { .. } => "MSTNAK",
            Message::Pong { .. } => "MSTPONG",
            Message::MasterClose { .. } => "MSTCL",
            Message::Data(_) => "DMRD",
        }
    }

    /// Writes the datagram into the start of `buffer`, returning its length
    /// ([`Message::buffer_len`]).
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, WireError> {
        let bytes = self.to_bytes();
        let len = buffer.len();
        buffer
            .get_mut(..bytes.len())
            .ok_or(WireError::BufferTooSmall {
                command: self.command(),
                len,
                needed: bytes.len(),
            })?
            .copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    /// The datagram bytes. Option text longer than [`MAX_OPTIONS_LEN`] is
    /// truncated at a character boundary.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        out.extend_from_slice(self.command().as_bytes());
        match self {
            Message::Login { peer }
            | Message::Ping { peer }
            | Message::Close { peer }
            | Message::Nak { peer }
            | Message::Pong { peer }
            | Message::MasterClose { peer } => out.extend_from_slice(&peer.to_be_bytes()),
            Message::Ack { value } => out.extend_from_slice(&value.to_be_bytes()),
            Message::Key { peer, digest } => {
                out.extend_from_slice(&peer.to_be_bytes());
                out.extend_from_slice(digest);
            }
            Message::Config { peer, config } => {
                out.extend_from_slice(&peer.to_be_bytes());
                out.extend_from_slice(&config.emit());
            }
            Message::Options { peer, options } => {
                out.extend_from_slice(&peer.to_be_bytes());
                out.extend_from_slice(options_bytes(options));
            }
            Message::Data(repr) => {
                out.clear();
                out.extend_from_slice(&repr.to_bytes());
            }
        }
        out
    }

    pub fn buffer_len(&self) -> usize {
        match self {
            Message::Login { .. } => 8,
            Message::Key { .. } => 40,
            Message::Config { .. } => 8 + CONFIG_TEXT_LEN,
            Message::Options { options, .. } => 8 + options_bytes(options).len(),
            Message::Ping { .. } | Message::Pong { .. } => 11,
            Message::Close { .. } | Message::MasterClose { .. } => 9,
            Message::Ack { .. } | Message::Nak { .. } => 10,
            Message::Data(_) => DMRD_LEN,
        }
    }
}

fn options_bytes(options: &str) -> &[u8] {
    let mut end = options.len().min(MAX_OPTIONS_LEN);
    while !options.is_char_boundary(end) {
        end -= 1;
    }
    &options.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voice LC header on slot 2, group call from 2_300_001 (0x231861) to
    /// TG 91 (0x5B), peer 310_0001 (0x002F4D61), stream 0x0A0B0C0D. The burst
    /// bytes are a placeholder pattern; the DMRD layer does not look inside.
    fn voice_header_bytes() -> [u8; DMRD_LEN] {
        let mut b = [0u8; DMRD_LEN];
        b[..20].copy_from_slice(&[
            b'D', b'M', b'R', b'D', // magic
            0x00, // seq
            0x23, 0x18, 0x61, // source
            0x00, 0x00, 0x5B, // destination TG 91
            0x00, 0x2F, 0x4D, 0x61, // repeater id
            0xA1, // slot 2, group, data sync, type 1 = voice LC header
            0x0A, 0x0B, 0x0C, 0x0D, // stream id
        ]);
        for (i, byte) in b[20..53].iter_mut().enumerate() {
            *byte = i as u8;
        }
        b[53] = 0x02; // BER
        b[54] = 0x45; // RSSI
        b
    }

    #[test]
    fn voice_header_golden_parse_and_emit() {
        let bytes = voice_header_bytes();
        let packet = DmrdPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.source(), 2_300_001);
        assert_eq!(packet.destination(), 91);
        assert_eq!(packet.repeater_id(), 0x002F_4D61);
        assert_eq!(packet.slot(), Slot::Two);
        assert_eq!(packet.call_type(), CallType::Group);
        assert_eq!(
            packet.frame_type(),
            FrameType::Data(DataType::VoiceLcHeader)
        );
        assert_eq!(packet.stream_id(), 0x0A0B_0C0D);
        assert_eq!(packet.ber(), 2);
        assert_eq!(packet.rssi(), 0x45);
        let repr = DmrdRepr::parse(&packet);
        assert_eq!(repr.to_bytes(), bytes);
        assert_eq!(Message::parse(&bytes), Ok(Message::Data(repr)));
    }

    #[test]
    fn terminator_and_voice_frames_golden_flags() {
        let mut bytes = voice_header_bytes();
        bytes[15] = 0x62; // slot 1, private, data sync, type 2 = terminator with LC
        let packet = DmrdPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.slot(), Slot::One);
        assert_eq!(packet.call_type(), CallType::Private);
        assert_eq!(
            packet.frame_type(),
            FrameType::Data(DataType::TerminatorWithLc)
        );
        assert_eq!(DmrdRepr::parse(&packet).to_bytes(), bytes);

        bytes[15] = 0x90; // slot 2, voice sync (burst A)
        let packet = DmrdPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.frame_type(), FrameType::VoiceSync);
        bytes[15] = 0x83; // slot 2, voice burst D
        let packet = DmrdPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.frame_type(), FrameType::Voice { n: 3 });
        assert_eq!(DmrdRepr::parse(&packet).to_bytes(), bytes);
    }

    #[test]
    fn short_form_without_ber_rssi_is_accepted() {
        let bytes = voice_header_bytes();
        let packet = DmrdPacket::new_checked(&bytes[..53]).unwrap();
        assert_eq!((packet.ber(), packet.rssi()), (0, 0));
    }

    #[test]
    fn malformed_dmrd_rejected_with_reason() {
        let bytes = voice_header_bytes();
        let short = Message::parse(&bytes[..30]).unwrap_err();
        assert_eq!(
            short.to_string(),
            "DMRD is 30 bytes, expected 55 (or 53 without BER/RSSI)"
        );
        let mut long = bytes.to_vec();
        long.extend_from_slice(&[0; 10]);
        assert!(matches!(
            Message::parse(&long),
            Err(WireError::Length { len: 65, .. })
        ));
        let mut both = bytes;
        both[15] = 0x31;
        assert_eq!(Message::parse(&both), Err(WireError::FrameType(0x31)));
        let mut bad_n = bytes;
        bad_n[15] = 0x09;
        assert_eq!(Message::parse(&bad_n), Err(WireError::VoiceFrameNumber(9)));
    }

    #[test]
    fn login_sequence_golden_bytes() {
        let login = b"RPTL\x00\x2F\x4D\x61";
        assert_eq!(
            Message::parse(login),
            Ok(Message::Login { peer: 0x002F_4D61 })
        );
        let ack = Message::Ack { value: 0xDEAD_BEEF };
        assert_eq!(ack.to_bytes(), b"RPTACK\xDE\xAD\xBE\xEF");
        let mut key = b"RPTK\x00\x2F\x4D\x61".to_vec();
        key.extend_from_slice(&[0x11; 32]);
        assert_eq!(
            Message::parse(&key),
            Ok(Message::Key {
                peer: 0x002F_4D61,
                digest: [0x11; 32]
            })
        );
        assert_eq!(
            Message::Pong { peer: 7 }.to_bytes(),
            b"MSTPONG\x00\x00\x00\x07"
        );
        assert_eq!(
            Message::Nak { peer: 7 }.to_bytes(),
            b"MSTNAK\x00\x00\x00\x07"
        );
        assert_eq!(
            Message::parse(b"RPTPING\x00\x00\x00\x07"),
            Ok(Message::Ping { peer: 7 })
        );
        assert_eq!(
            Message::parse(b"RPTCL\x00\x00\x00\x07"),
            Ok(Message::Close { peer: 7 })
        );
        assert_eq!(
            Message::parse(b"RPTO\x00\x00\x00\x07TS1=91;TS2=9"),
            Ok(Message::Options {
                peer: 7,
                options: "TS1=91;TS2=9".into()
            })
        );
    }

    #[test]
    fn config_round_trip_and_layout() {
        let config = PeerConfig {
            callsign: "BA1ABC".into(),
            rx_frequency: "438800000".into(),
            tx_frequency: "431800000".into(),
            tx_power: "01".into(),
            colour_code: "01".into(),
            latitude: "39.90420".into(),
            longitude: "116.40740".into(),
            height: "050".into(),
            location: "北京 Station 3".into(),
            description: "MMDVM hotspot".into(),
            slots: "4".into(),
            url: "https://example.invalid".into(),
            software_id: "20240101".into(),
            package_id: "MMDVM_MMDVM_HS_Hat".into(),
        };
        let message = Message::Config {
            peer: 42,
            config: Box::new(config.clone()),
        };
        let bytes = message.to_bytes();
        assert_eq!(bytes.len(), 302);
        assert_eq!(&bytes[..8], b"RPTC\x00\x00\x00\x2A");
        assert_eq!(&bytes[8..16], b"BA1ABC  ");
        assert_eq!(&bytes[16..25], b"438800000");
        assert_eq!(Message::parse(&bytes), Ok(message));
        assert_eq!(config.colour_code(), Some(1));
        assert!(matches!(
            Message::parse(&bytes[..301]),
            Err(WireError::Length {
                command: "RPTC",
                ..
            })
        ));
    }

    #[test]
    fn unknown_empty_and_wrong_length_control_messages() {
        assert_eq!(Message::parse(b""), Err(WireError::Empty));
        assert_eq!(
            Message::parse(b"HELLO\x00\x01").unwrap_err().to_string(),
            "unknown command `HELLO\\x00\\x01`"
        );
        let mut oversized_ping = b"RPTPING\x00\x00\x00\x07".to_vec();
        oversized_ping.extend_from_slice(&[0; 1000]);
        assert_eq!(
            Message::parse(&oversized_ping).unwrap_err().to_string(),
            "RPTPING is 1011 bytes, expected 11"
        );
        assert!(matches!(
            Message::parse(b"RPTL\x00\x00"),
            Err(WireError::Length {
                command: "RPTL",
                len: 6,
                ..
            })
        ));
        assert!(matches!(
            Message::parse(&[b'R', b'P', b'T', b'O', 0, 0, 0, 1].repeat(40)),
            Err(WireError::Length {
                command: "RPTO",
                ..
            })
        ));
    }

    #[test]
    fn random_dmrd_values_round_trip() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        for _ in 0..2000 {
            let frame = match rng.random_range(0..3) {
                0 => FrameType::VoiceSync,
                1 => FrameType::Voice {
                    n: rng.random_range(0..=5),
                },
                _ => FrameType::Data(DataType::from_bits(rng.random())),
            };
            let mut burst = [0u8; BURST_LEN];
            rng.fill(&mut burst[..]);
            let repr = DmrdRepr {
                seq: rng.random(),
                source: rng.random_range(0..=0xFF_FFFF),
                destination: rng.random_range(0..=0xFF_FFFF),
                repeater_id: rng.random(),
                slot: if rng.random() { Slot::One } else { Slot::Two },
                call_type: if rng.random() {
                    CallType::Group
                } else {
                    CallType::Private
                },
                frame,
                stream_id: rng.random(),
                burst,
                ber: rng.random(),
                rssi: rng.random(),
            };
            let bytes = repr.to_bytes();
            let packet = DmrdPacket::new_checked(&bytes[..]).expect("emitted packet is valid");
            assert_eq!(DmrdRepr::parse(&packet), repr);
        }
    }

    #[test]
    fn every_message_round_trips() {
        let mut repr =
            DmrdRepr::parse(&DmrdPacket::new_checked(&voice_header_bytes()[..]).unwrap());
        repr.frame = FrameType::Voice { n: 5 };
        let messages = [
            Message::Login { peer: 1 },
            Message::Key {
                peer: 2,
                digest: [9; 32],
            },
            Message::Config {
                peer: 3,
                config: Box::default(),
            },
            Message::Options {
                peer: 4,
                options: "TS2=9".into(),
            },
            Message::Ping { peer: 5 },
            Message::Close { peer: 6 },
            Message::Ack { value: 7 },
            Message::Nak { peer: 8 },
            Message::Pong { peer: 9 },
            Message::MasterClose { peer: 10 },
            Message::Data(repr),
        ];
        for message in messages {
            let bytes = message.to_bytes();
            assert_eq!(bytes.len(), message.buffer_len(), "{}", message.command());
            let mut buffer = [0xEE; 400];
            assert_eq!(message.emit(&mut buffer), Ok(bytes.len()));
            assert_eq!(&buffer[..bytes.len()], &bytes[..]);
            assert!(matches!(
                message.emit(&mut buffer[..bytes.len() - 1]),
                Err(WireError::BufferTooSmall { .. })
            ));
            assert_eq!(Message::parse(&bytes), Ok(message));
        }
    }
}
