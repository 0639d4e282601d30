//! The RTP fixed header (RFC 3550 §5.1): a value type with `parse`/`emit`.
//!
//! `RtpHeader::parse` never panics: every length it reads is checked against
//! the buffer first, and a malformed packet yields an [`RtpError`] naming what
//! was wrong. CSRC lists and header extensions are skipped (RoIP peers do not
//! use them, but they must not break parsing); padding is removed.

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet of {0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    #[error("CSRC list of {count} entries runs past the {len}-byte packet")]
    CsrcOverrun { count: usize, len: usize },
    #[error("header extension runs past the {0}-byte packet")]
    ExtensionOverrun(usize),
    #[error("padding of {padding} bytes exceeds the {available}-byte payload")]
    BadPadding { padding: usize, available: usize },
}

/// Fixed RTP header fields we use. CSRCs and extensions are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed packet: header plus a borrowed payload (padding removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub payload: &'a [u8],
}

/// Length of the fixed header we emit (no CSRC, no extension).
pub const HEADER_LEN: usize = 12;

impl<'a> RtpPacket<'a> {
    /// Parses one datagram. Never panics.
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if buf.len() < HEADER_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_extension = buf[0] & 0x10 != 0;
        let csrc_count = (buf[0] & 0x0f) as usize;
        let mut offset = HEADER_LEN + 4 * csrc_count;
        if offset > buf.len() {
            return Err(RtpError::CsrcOverrun {
                count: csrc_count,
                len: buf.len(),
            });
        }
        if has_extension {
            let ext = buf
                .get(offset..offset + 4)
                .ok_or(RtpError::ExtensionOverrun(buf.len()))?;
            let words = u16::from_be_bytes([ext[2], ext[3]]) as usize;
            offset += 4 + 4 * words;
            if offset > buf.len() {
                return Err(RtpError::ExtensionOverrun(buf.len()));
            }
        }
        let mut end = buf.len();
        if has_padding {
            let available = end - offset;
            let padding = buf[end - 1] as usize;
            if padding == 0 || padding > available {
                return Err(RtpError::BadPadding { padding, available });
            }
            end -= padding;
        }
        let header = RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        };
        Ok(RtpPacket {
            header,
            payload: &buf[offset..end],
        })
    }
}

impl RtpHeader {
    /// Appends the 12-byte header and then `payload` to `out`.
    pub fn emit(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + payload.len());
        out.push(0x80);
        out.push(((self.marker as u8) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// The header and payload as one datagram.
    pub fn to_datagram(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        self.emit(payload, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCMU packet as a Cisco gateway sends it: marker set, PT 0.
    const SAMPLE: [u8; 16] = [
        0x80, 0x80, 0x12, 0x34, 0x00, 0x00, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef, 0xff, 0x7f, 0x00,
        0x80,
    ];

    #[test]
    fn parses_and_emits_sample_bytes() {
        let packet = RtpPacket::parse(&SAMPLE).unwrap();
        assert_eq!(
            packet.header,
            RtpHeader {
                marker: true,
                payload_type: 0,
                sequence: 0x1234,
                timestamp: 320,
                ssrc: 0xdeadbeef
            }
        );
        assert_eq!(packet.payload, &[0xff, 0x7f, 0x00, 0x80]);
        assert_eq!(packet.header.to_datagram(packet.payload), SAMPLE);
    }

    #[test]
    fn skips_csrc_extension_and_padding() {
        let mut buf = vec![0xb1, 0x08, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        buf.extend_from_slice(&[1, 2, 3, 4]); // one CSRC
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension, one word
        buf.extend_from_slice(&[0xaa, 0xbb]); // payload
        buf.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let packet = RtpPacket::parse(&buf).unwrap();
        assert_eq!(packet.header.payload_type, 8);
        assert_eq!(packet.payload, &[0xaa, 0xbb]);
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        let mut v1 = SAMPLE;
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));
        let mut csrc = SAMPLE;
        csrc[0] = 0x8f;
        assert!(matches!(
            RtpPacket::parse(&csrc),
            Err(RtpError::CsrcOverrun { count: 15, .. })
        ));
        let mut ext = SAMPLE;
        ext[0] = 0x90;
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::ExtensionOverrun(16)));
        let mut pad = SAMPLE;
        pad[0] = 0xa0;
        pad[15] = 9;
        assert!(matches!(
            RtpPacket::parse(&pad),
            Err(RtpError::BadPadding { padding: 9, .. })
        ));
    }
}
