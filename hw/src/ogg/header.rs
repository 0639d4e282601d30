//! The two Ogg Opus header packets (RFC 7845 §5): the identification header
//! `OpusHead` and the comment header `OpusTags`, plus the recorder's tag set.
//!
//! Parsing is pure and never panics; errors name the field that was wrong.

use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// Length of a channel-mapping-family-0 `OpusHead`.
pub const OPUS_HEAD_LEN: usize = 19;
const HEAD_MAGIC: &[u8; 8] = b"OpusHead";
const TAGS_MAGIC: &[u8; 8] = b"OpusTags";

/// Longest ANI value [`RecordingTags`] accepts. The tags packet reserves room
/// for it, so an ANI decoded at the end of a transmission (EOT PTT-ID) can be
/// written into a file that is already being recorded; see
/// [`OpusTagsLayout::packet`].
pub const MAX_ANI_LEN: usize = 32;
/// Longest value of any other tag; keeps the tags packet on one page.
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// Why a header packet could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("identification header does not start with \"OpusHead\"")]
    NotOpusHead,
    #[error("comment header does not start with \"OpusTags\"")]
    NotOpusTags,
    #[error("OpusHead version {0} is not supported, only major version 0 (1..=15) is")]
    UnsupportedVersion(u8),
    #[error("OpusHead declares 0 channels, at least 1 is needed")]
    NoChannels,
    #[error("OpusHead mapping family {family} with {channels} channels needs a mapping table this reader does not handle")]
    UnsupportedMapping { family: u8, channels: u8 },
    #[error("{what} is truncated: {needed} bytes needed, {available} available")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{what} is not valid UTF-8")]
    NotUtf8 { what: &'static str },
}

/// The identification header, channel mapping family 0 (mono or stereo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    pub version: u8,
    pub channels: u8,
    /// Samples at 48 kHz to discard at the start of decoding.
    pub pre_skip: u16,
    /// Sample rate of the audio before encoding (informational).
    pub input_sample_rate: u32,
    /// Gain in Q7.8 dB to apply on decoding.
    pub output_gain: i16,
    pub mapping_family: u8,
}

impl OpusHead {
    /// A mono header for audio recorded at `input_sample_rate`.
    pub fn mono(pre_skip: u16, input_sample_rate: u32) -> Self {
        OpusHead {
            version: 1,
            channels: 1,
            pre_skip,
            input_sample_rate,
            output_gain: 0,
            mapping_family: 0,
        }
    }

    pub fn to_bytes(&self) -> [u8; OPUS_HEAD_LEN] {
        let mut b = [0u8; OPUS_HEAD_LEN];
        b[..8].copy_from_slice(HEAD_MAGIC);
        b[8] = self.version;
        b[9] = self.channels;
        b[10..12].copy_from_slice(&self.pre_skip.to_le_bytes());
        b[12..16].copy_from_slice(&self.input_sample_rate.to_le_bytes());
        b[16..18].copy_from_slice(&self.output_gain.to_le_bytes());
        b[18] = self.mapping_family;
        b
    }

    pub fn parse(packet: &[u8]) -> Result<OpusHead, HeaderError> {
        if !packet.starts_with(HEAD_MAGIC) {
            return Err(HeaderError::NotOpusHead);
        }
        need("OpusHead", packet, OPUS_HEAD_LEN)?;
        let version = packet[8];
        // RFC 7845 §5.1: the upper four bits are the major version; only 0
        // exists, and version 0 itself was never valid.
        if version == 0 || version >> 4 != 0 {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let channels = packet[9];
        if channels == 0 {
            return Err(HeaderError::NoChannels);
        }
        let mapping_family = packet[18];
        if mapping_family != 0 || channels > 2 {
            return Err(HeaderError::UnsupportedMapping {
                family: mapping_family,
                channels,
            });
        }
        Ok(OpusHead {
            version,
            channels,
            pre_skip: u16::from_le_bytes([packet[10], packet[11]]),
            input_sample_rate: u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]),
            output_gain: i16::from_le_bytes([packet[16], packet[17]]),
            mapping_family,
        })
    }
}

/// A parsed comment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusTags {
    pub vendor: String,
    /// User comments, normally `KEY=value`.
    pub comments: Vec<String>,
}

impl OpusTags {
    /// Parses the header; trailing padding or binary data after the last
    /// comment is allowed (RFC 7845 §5.2) and ignored.
    pub fn parse(packet: &[u8]) -> Result<OpusTags, HeaderError> {
        if !packet.starts_with(TAGS_MAGIC) {
            return Err(HeaderError::NotOpusTags);
        }
        let mut at = TAGS_MAGIC.len();
        let vendor = read_string(packet, &mut at, "OpusTags vendor string")?;
        let count = read_u32(packet, &mut at, "OpusTags comment count")?;
        // Every comment needs at least its 4-byte length, which bounds the
        // allocation below by the packet size rather than by `count`.
        let max_possible = (packet.len() - at) / 4;
        let mut comments = Vec::with_capacity((count as usize).min(max_possible));
        for _ in 0..count {
            comments.push(read_string(packet, &mut at, "OpusTags comment")?);
        }
        Ok(OpusTags { vendor, comments })
    }

    /// The value of the first comment whose key matches `key` (keys compare
    /// case-insensitively, as Vorbis comments do).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.comments.iter().find_map(|c| {
            let (k, v) = c.split_once('=')?;
            k.eq_ignore_ascii_case(key).then_some(v)
        })
    }
}

/// Whether a transmission was heard on the channel or sent by the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Rx,
    Tx,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
        }
    }
}

/// What the recorder writes into each file's comment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingTags {
    /// Logical channel name (`CHANNEL=`).
    pub channel: String,
    /// Link the transmission came from or went to (`LINK=`).
    pub link: String,
    /// `DIRECTION=rx|tx`.
    pub direction: Direction,
    /// Start of the transmission, written as RFC 3339 UTC (`START=`).
    pub start: SystemTime,
    /// The calling unit's identity if known (`ANI=`), at most [`MAX_ANI_LEN`]
    /// bytes.
    pub ani: Option<String>,
}

/// Why a tag set cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TagError {
    #[error("{key} value is {len} bytes long, at most {max} are allowed")]
    TooLong {
        key: &'static str,
        len: usize,
        max: usize,
    },
}

/// A comment header of fixed length for one recording: the ANI comment may be
/// absent or replaced later without moving any byte after the header, because
/// unused room is kept as padding (a leading zero byte marks it discardable,
/// RFC 7845 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusTagsLayout {
    vendor: String,
    fixed: Vec<String>,
}

impl OpusTagsLayout {
    /// Comment header layout for `tags`, validating value lengths.
    pub fn new(vendor: &str, tags: &RecordingTags) -> Result<Self, TagError> {
        for (key, value) in [("CHANNEL", &tags.channel), ("LINK", &tags.link)] {
            if value.len() > MAX_TAG_VALUE_LEN {
                return Err(TagError::TooLong {
                    key,
                    len: value.len(),
                    max: MAX_TAG_VALUE_LEN,
                });
            }
        }
        if let Some(ani) = &tags.ani {
            check_ani(ani)?;
        }
        Ok(OpusTagsLayout {
            vendor: vendor.to_owned(),
            fixed: vec![
                format!("CHANNEL={}", tags.channel),
                format!("LINK={}", tags.link),
                format!("DIRECTION={}", tags.direction.as_str()),
                format!("START={}", rfc3339_utc(tags.start)),
                format!("ENCODER=rollcall-hw {}", env!("CARGO_PKG_VERSION")),
            ],
        })
    }

    /// Length of every packet this layout produces.
    pub fn packet_len(&self) -> usize {
        let fixed: usize = self.fixed.iter().map(|c| 4 + c.len()).sum();
        TAGS_MAGIC.len() + 4 + self.vendor.len() + 4 + fixed + ani_room()
    }

    /// The comment header packet, with `ANI=<ani>` when given.
    pub fn packet(&self, ani: Option<&str>) -> Result<Vec<u8>, TagError> {
        let total = self.packet_len();
        let mut p = Vec::with_capacity(total);
        p.extend_from_slice(TAGS_MAGIC);
        put_string(&mut p, &self.vendor);
        let count = self.fixed.len() + usize::from(ani.is_some());
        p.extend_from_slice(&(count as u32).to_le_bytes());
        for c in &self.fixed {
            put_string(&mut p, c);
        }
        if let Some(ani) = ani {
            check_ani(ani)?;
            put_string(&mut p, &format!("ANI={ani}"));
        }
        p.resize(total, 0);
        Ok(p)
    }
}

fn check_ani(ani: &str) -> Result<(), TagError> {
    if ani.len() > MAX_ANI_LEN {
        return Err(TagError::TooLong {
            key: "ANI",
            len: ani.len(),
            max: MAX_ANI_LEN,
        });
    }
    Ok(())
}

/// Room reserved for `ANI=<value>` and its length field.
const fn ani_room() -> usize {
    4 + "ANI=".len() + MAX_ANI_LEN
}

/// Formats a time as RFC 3339 in UTC with milliseconds, e.g.
/// `2026-11-29T12:17:41.123Z`. Times before 1970 are clamped to the epoch.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn put_string(p: &mut Vec<u8>, s: &str) {
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn need(what: &'static str, packet: &[u8], needed: usize) -> Result<(), HeaderError> {
    if packet.len() < needed {
        return Err(HeaderError::Truncated {
            what,
            needed,
            available: packet.len(),
        });
    }
    Ok(())
}

fn read_u32(packet: &[u8], at: &mut usize, what: &'static str) -> Result<u32, HeaderError> {
    let end = at.saturating_add(4);
    need(what, packet, end)?;
    let v = u32::from_le_bytes([
        packet[*at],
        packet[*at + 1],
        packet[*at + 2],
        packet[*at + 3],
    ]);
    *at = end;
    Ok(v)
}

fn read_string(packet: &[u8], at: &mut usize, what: &'static str) -> Result<String, HeaderError> {
    let len = read_u32(packet, at, what)? as usize;
    let end = at.saturating_add(len);
    need(what, packet, end)?;
    let s = std::str::from_utf8(&packet[*at..end]).map_err(|_| HeaderError::NotUtf8 { what })?;
    *at = end;
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn opus_head_bytes_match_rfc_7845_layout() {
        let head = OpusHead::mono(312, 8000);
        assert_eq!(
            head.to_bytes(),
            [
                b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 1, 0x38, 0x01, 0x40, 0x1f, 0, 0,
                0, 0, 0
            ]
        );
        assert_eq!(OpusHead::parse(&head.to_bytes()), Ok(head));
    }

    #[test]
    fn opus_head_errors_name_the_field() {
        let good = OpusHead::mono(312, 8000).to_bytes();
        assert_eq!(OpusHead::parse(b"OpusTags"), Err(HeaderError::NotOpusHead));
        assert!(matches!(
            OpusHead::parse(&good[..12]),
            Err(HeaderError::Truncated {
                needed: 19,
                available: 12,
                ..
            })
        ));
        let mut v = good;
        v[8] = 0x10;
        assert_eq!(
            OpusHead::parse(&v),
            Err(HeaderError::UnsupportedVersion(0x10))
        );
        let mut c = good;
        c[9] = 0;
        assert_eq!(OpusHead::parse(&c), Err(HeaderError::NoChannels));
        let mut m = good;
        m[18] = 1;
        assert!(matches!(
            OpusHead::parse(&m),
            Err(HeaderError::UnsupportedMapping { family: 1, .. })
        ));
    }

    fn tags() -> RecordingTags {
        RecordingTags {
            channel: "command".into(),
            link: "roip-1".into(),
            direction: Direction::Rx,
            start: UNIX_EPOCH + Duration::from_millis(1_764_418_661_123),
            ani: None,
        }
    }

    #[test]
    fn opus_tags_bytes_are_vorbis_comments_with_fixed_length() {
        let layout = OpusTagsLayout::new("libopus 1.3.1", &tags()).expect("valid");
        let packet = layout.packet(None).expect("packet");
        assert_eq!(packet.len(), layout.packet_len());
        assert_eq!(&packet[..8], b"OpusTags");
        assert_eq!(&packet[8..12], &13u32.to_le_bytes());
        assert_eq!(&packet[12..25], b"libopus 1.3.1");
        assert_eq!(&packet[25..29], &5u32.to_le_bytes());
        assert_eq!(&packet[29..33], &15u32.to_le_bytes());
        assert_eq!(&packet[33..48], b"CHANNEL=command");
        let parsed = OpusTags::parse(&packet).expect("parses");
        assert_eq!(parsed.vendor, "libopus 1.3.1");
        assert_eq!(parsed.get("channel"), Some("command"));
        assert_eq!(parsed.get("LINK"), Some("roip-1"));
        assert_eq!(parsed.get("DIRECTION"), Some("rx"));
        assert_eq!(parsed.get("START"), Some("2025-11-29T12:17:41.123Z"));
        assert!(parsed
            .get("ENCODER")
            .is_some_and(|e| e.starts_with("rollcall-hw ")));
        assert_eq!(parsed.get("ANI"), None);
        // Padding starts with a zero byte: "may be discarded" (RFC 7845 §5.2).
        assert_eq!(packet[packet.len() - ani_room()], 0);

        let with_ani = layout.packet(Some("1001")).expect("packet");
        assert_eq!(with_ani.len(), packet.len());
        assert_eq!(
            OpusTags::parse(&with_ani).expect("parses").get("ANI"),
            Some("1001")
        );
    }

    #[test]
    fn overlong_values_are_refused() {
        let layout = OpusTagsLayout::new("v", &tags()).expect("valid");
        let long = "9".repeat(MAX_ANI_LEN + 1);
        assert_eq!(
            layout.packet(Some(&long)),
            Err(TagError::TooLong {
                key: "ANI",
                len: MAX_ANI_LEN + 1,
                max: MAX_ANI_LEN
            })
        );
        let mut t = tags();
        t.channel = "x".repeat(MAX_TAG_VALUE_LEN + 1);
        assert!(OpusTagsLayout::new("v", &t).is_err());
        let full = "9".repeat(MAX_ANI_LEN);
        assert!(layout.packet(Some(&full)).is_ok());
    }

    #[test]
    fn opus_tags_garbage_and_truncation_are_errors() {
        let packet = OpusTagsLayout::new("v", &tags())
            .and_then(|l| l.packet(Some("42")))
            .expect("packet");
        assert_eq!(OpusTags::parse(b"OpusHead"), Err(HeaderError::NotOpusTags));
        for cut in 8..60 {
            assert!(
                matches!(
                    OpusTags::parse(&packet[..cut]),
                    Err(HeaderError::Truncated { .. })
                ),
                "cut {cut}"
            );
        }
        let mut huge = b"OpusTags".to_vec();
        huge.extend_from_slice(&0u32.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            OpusTags::parse(&huge),
            Err(HeaderError::Truncated { .. })
        ));
        let mut bad = b"OpusTags".to_vec();
        bad.extend_from_slice(&2u32.to_le_bytes());
        bad.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(
            OpusTags::parse(&bad),
            Err(HeaderError::NotUtf8 {
                what: "OpusTags vendor string"
            })
        );
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day) 23:59:59.999
        let t = UNIX_EPOCH + Duration::from_millis(951_868_799_999);
        assert_eq!(rfc3339_utc(t), "2000-02-29T23:59:59.999Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
        assert_eq!(rfc3339_utc(t), "2100-01-01T00:00:00.000Z");
    }
}
