//! Ogg pages (RFC 3533): a checked zero-copy view ([`OggPage`]), a reader that
//! walks a byte buffer page by page ([`OggPageReader`]), and page emission
//! (crate-internal; [`super::OggOpusMuxer`] is the public writer).
//!
//! Parsing is pure and never panics: every accessor of an [`OggPage`] reads
//! inside bounds proven by [`OggPage::parse`]. A buffer that merely ends too
//! early gives [`PageError::Incomplete`], distinct from bytes that can never be
//! a page, so a caller holding a growing or crash-truncated file can tell the
//! two apart.

use thiserror::Error;

use super::crc;

/// Fixed part of a page header, before the segment table.
pub const HEADER_LEN: usize = 27;
/// A page holds at most 255 lacing values.
pub const MAX_SEGMENTS: usize = 255;
/// The largest possible page: header, full segment table, 255 × 255 body bytes.
pub const MAX_PAGE_LEN: usize = HEADER_LEN + MAX_SEGMENTS + MAX_SEGMENTS * 255;

const CAPTURE: &[u8; 4] = b"OggS";
const CRC_RANGE: std::ops::Range<usize> = 22..26;

/// Header type flag: the page starts with the continuation of a packet.
pub const FLAG_CONTINUED: u8 = 0x01;
/// Header type flag: first page of a logical stream.
pub const FLAG_BOS: u8 = 0x02;
/// Header type flag: last page of a logical stream.
pub const FLAG_EOS: u8 = 0x04;
const KNOWN_FLAGS: u8 = FLAG_CONTINUED | FLAG_BOS | FLAG_EOS;

/// Granule position meaning "no packet finishes on this page".
pub const NO_GRANULE: i64 = -1;

/// Why bytes are not (yet) a page.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PageError {
    /// The bytes so far are a valid page prefix; more are needed.
    #[error("incomplete page: {needed} more bytes needed")]
    Incomplete { needed: usize },
    #[error("no Ogg capture pattern \"OggS\" where a page should start")]
    BadCapturePattern,
    #[error("unsupported Ogg stream structure version {0}, only 0 is defined")]
    UnsupportedVersion(u8),
    #[error("reserved header type bits set in {0:#04x}, only 0x01, 0x02 and 0x04 are defined")]
    ReservedFlags(u8),
    #[error("page checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
}

/// A complete, checksum-verified Ogg page borrowed from a buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OggPage<'a> {
    bytes: &'a [u8],
}

impl<'a> OggPage<'a> {
    /// Parses the page at the start of `buf` (trailing bytes are ignored; see
    /// [`OggPage::len`]).
    pub fn parse(buf: &'a [u8]) -> Result<OggPage<'a>, PageError> {
        let capture_seen = buf.len().min(CAPTURE.len());
        if buf[..capture_seen] != CAPTURE[..capture_seen] {
            return Err(PageError::BadCapturePattern);
        }
        if let Some(&version) = buf.get(4) {
            if version != 0 {
                return Err(PageError::UnsupportedVersion(version));
            }
        }
        if let Some(&flags) = buf.get(5) {
            if flags & !KNOWN_FLAGS != 0 {
                return Err(PageError::ReservedFlags(flags));
            }
        }
        if buf.len() < HEADER_LEN {
            return Err(PageError::Incomplete {
                needed: HEADER_LEN - buf.len(),
            });
        }
        let segments = buf[26] as usize;
        let table_end = HEADER_LEN + segments;
        if buf.len() < table_end {
            return Err(PageError::Incomplete {
                needed: table_end - buf.len(),
            });
        }
        let body_len: usize = buf[HEADER_LEN..table_end].iter().map(|&l| l as usize).sum();
        let page_len = table_end + body_len;
        if buf.len() < page_len {
            return Err(PageError::Incomplete {
                needed: page_len - buf.len(),
            });
        }
        let bytes = &buf[..page_len];
        let stored = read_u32(bytes, 22);
        let computed = page_crc(bytes);
        if stored != computed {
            return Err(PageError::CrcMismatch { stored, computed });
        }
        Ok(OggPage { bytes })
    }

    /// The whole page, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Length of the whole page in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a page has at least its 27-byte header.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn header_type(&self) -> u8 {
        self.bytes[5]
    }

    pub fn is_continued(&self) -> bool {
        self.header_type() & FLAG_CONTINUED != 0
    }

    pub fn is_bos(&self) -> bool {
        self.header_type() & FLAG_BOS != 0
    }

    pub fn is_eos(&self) -> bool {
        self.header_type() & FLAG_EOS != 0
    }

    /// Raw granule position; [`NO_GRANULE`] when no packet ends on this page.
    pub fn granule_position(&self) -> i64 {
        read_u64(self.bytes, 6) as i64
    }

    pub fn serial(&self) -> u32 {
        read_u32(self.bytes, 14)
    }

    pub fn sequence(&self) -> u32 {
        read_u32(self.bytes, 18)
    }

    pub fn checksum(&self) -> u32 {
        read_u32(self.bytes, 22)
    }

    /// The segment table (lacing values).
    pub fn lacing(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..HEADER_LEN + self.bytes[26] as usize]
    }

    /// The page body: all segments concatenated.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN + self.bytes[26] as usize..]
    }

    /// True when the last packet on the page ends on it (it does not continue
    /// on the next page).
    pub fn ends_on_packet_boundary(&self) -> bool {
        self.lacing().last().is_none_or(|&l| l < 255)
    }

    /// The packet pieces on this page in order: `(bytes, complete)`, where
    /// `complete` is false for a piece that continues on the next page. The
    /// first piece is the tail of an earlier packet when [`Self::is_continued`].
    pub fn packets(&self) -> PagePackets<'a> {
        PagePackets {
            lacing: self.lacing(),
            body: self.body(),
        }
    }

    /// Number of packets that end on this page.
    pub fn completed_packets(&self) -> usize {
        self.lacing().iter().filter(|&&l| l < 255).count()
    }
}

impl std::fmt::Debug for OggPage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggPage")
            .field("len", &self.len())
            .field("header_type", &self.header_type())
            .field("granule", &self.granule_position())
            .field("serial", &self.serial())
            .field("sequence", &self.sequence())
            .field("segments", &self.lacing().len())
            .finish()
    }
}

/// Iterator over the packet pieces of one page; see [`OggPage::packets`].
#[derive(Debug, Clone)]
pub struct PagePackets<'a> {
    lacing: &'a [u8],
    body: &'a [u8],
}

impl<'a> Iterator for PagePackets<'a> {
    type Item = (&'a [u8], bool);

    fn next(&mut self) -> Option<Self::Item> {
        if self.lacing.is_empty() {
            return None;
        }
        let mut len = 0usize;
        let mut used = 0usize;
        let mut complete = false;
        for &l in self.lacing {
            used += 1;
            len += l as usize;
            if l < 255 {
                complete = true;
                break;
            }
        }
        self.lacing = &self.lacing[used..];
        // `parse` proved the body is exactly the sum of the lacing values.
        let (packet, rest) = self.body.split_at(len.min(self.body.len()));
        self.body = rest;
        Some((packet, complete))
    }
}

/// Walks consecutive pages in a buffer, checking each page's CRC. After the
/// first error it yields nothing more; [`OggPageReader::offset`] then tells
/// where the bad or incomplete page starts.
#[derive(Debug, Clone)]
pub struct OggPageReader<'a> {
    buf: &'a [u8],
    offset: usize,
    stopped: bool,
}

impl<'a> OggPageReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        OggPageReader {
            buf,
            offset: 0,
            stopped: false,
        }
    }

    /// Offset of the next page to read (or of the page that failed).
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl<'a> Iterator for OggPageReader<'a> {
    /// The page's offset in the buffer and the page.
    type Item = Result<(usize, OggPage<'a>), PageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped || self.offset >= self.buf.len() {
            return None;
        }
        match OggPage::parse(&self.buf[self.offset..]) {
            Ok(page) => {
                let at = self.offset;
                self.offset += page.len();
                Some(Ok((at, page)))
            }
            Err(e) => {
                self.stopped = true;
                Some(Err(e))
            }
        }
    }
}

/// The header fields of a page to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageHeader {
    pub header_type: u8,
    pub granule_position: i64,
    pub serial: u32,
    pub sequence: u32,
}

/// Appends the lacing values for one whole packet of `len` bytes: as many 255s
/// as fit, then the remainder (0 when `len` is a multiple of 255, so the packet
/// visibly ends).
pub(crate) fn push_lacing(lacing: &mut Vec<u8>, len: usize) {
    lacing.extend(std::iter::repeat_n(255u8, len / 255));
    lacing.push((len % 255) as u8);
}

/// Number of lacing values a whole packet of `len` bytes needs.
pub(crate) fn segments_for(len: usize) -> usize {
    len / 255 + 1
}

/// Appends one page to `out`. `lacing` must hold at most 255 values summing to
/// `body.len()`; only this module's writers call it and they guarantee that,
/// so a violation is a bug caught by the debug assertions.
pub(crate) fn write_page(out: &mut Vec<u8>, header: &PageHeader, lacing: &[u8], body: &[u8]) {
    debug_assert!(lacing.len() <= MAX_SEGMENTS);
    debug_assert_eq!(
        lacing.iter().map(|&l| l as usize).sum::<usize>(),
        body.len()
    );
    let start = out.len();
    out.extend_from_slice(CAPTURE);
    out.push(0);
    out.push(header.header_type);
    out.extend_from_slice(&header.granule_position.to_le_bytes());
    out.extend_from_slice(&header.serial.to_le_bytes());
    out.extend_from_slice(&header.sequence.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(lacing.len() as u8);
    out.extend_from_slice(lacing);
    out.extend_from_slice(body);
    let crc = page_crc(&out[start..]);
    out[start + CRC_RANGE.start..start + CRC_RANGE.end].copy_from_slice(&crc.to_le_bytes());
}

/// Copies a page with `flags` added to its header type and its CRC recomputed.
pub(crate) fn with_flags(page: &OggPage<'_>, flags: u8) -> Vec<u8> {
    let mut bytes = page.as_bytes().to_vec();
    bytes[5] |= flags;
    let crc = page_crc(&bytes);
    bytes[CRC_RANGE].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// CRC of a whole page, computed as if its CRC field were zero.
fn page_crc(page: &[u8]) -> u32 {
    let c = crc::update(0, &page[..CRC_RANGE.start]);
    let c = crc::update(c, &[0; 4]);
    crc::update(c, &page[CRC_RANGE.end..])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First two pages of a file made by Debian's opusenc (libogg) from 100 ms
    /// of a 440 Hz tone at 8 kHz, with `--serial 305419896`.
    const OPUSENC_FILE: &[u8] = include_bytes!("../../tests/data/opusenc_sine_100ms.opus");

    /// The OpusHead page of that file, byte for byte.
    const OPUSENC_HEAD_PAGE: [u8; 47] = [
        0x4f, 0x67, 0x67, 0x53, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x78,
        0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x5b, 0x80, 0xb1, 0xa3, 0x01, 0x13, 0x4f, 0x70,
        0x75, 0x73, 0x48, 0x65, 0x61, 0x64, 0x01, 0x01, 0x38, 0x01, 0x40, 0x1f, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ];

    #[test]
    fn parses_known_libogg_head_page() {
        let page = OggPage::parse(&OPUSENC_HEAD_PAGE).expect("valid page");
        assert_eq!(page.len(), 47);
        assert!(page.is_bos() && !page.is_eos() && !page.is_continued());
        assert_eq!(page.serial(), 305_419_896);
        assert_eq!(page.sequence(), 0);
        assert_eq!(page.granule_position(), 0);
        assert_eq!(page.checksum(), 0xa3b1_805b);
        assert_eq!(page.lacing(), &[19]);
        assert_eq!(&page.body()[..8], b"OpusHead");
    }

    #[test]
    fn emitting_reproduces_known_libogg_page() {
        let mut out = Vec::new();
        let header = PageHeader {
            header_type: FLAG_BOS,
            granule_position: 0,
            serial: 305_419_896,
            sequence: 0,
        };
        write_page(&mut out, &header, &[19], &OPUSENC_HEAD_PAGE[28..]);
        assert_eq!(out, OPUSENC_HEAD_PAGE);
    }

    #[test]
    fn reads_every_page_of_libogg_file_with_255_lacing() {
        let pages: Vec<_> = OggPageReader::new(OPUSENC_FILE)
            .collect::<Result<_, _>>()
            .expect("libogg pages all verify");
        assert!(pages.len() >= 3);
        let (at, tags) = pages[1];
        assert_eq!(at, 47);
        assert_eq!(tags.lacing(), &[255, 255, 254]);
        let pieces: Vec<_> = tags.packets().collect();
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].0.len(), 764);
        assert!(pieces[0].1);
        assert!(pages.last().expect("pages").1.is_eos());
        let total: usize = pages.iter().map(|(_, p)| p.len()).sum();
        assert_eq!(total, OPUSENC_FILE.len());
    }

    #[test]
    fn lacing_of_multiple_of_255_ends_with_zero() {
        let mut lacing = Vec::new();
        push_lacing(&mut lacing, 510);
        assert_eq!(lacing, [255, 255, 0]);
        push_lacing(&mut lacing, 3);
        assert_eq!(lacing, [255, 255, 0, 3]);
        assert_eq!(segments_for(510), 3);
        assert_eq!(segments_for(0), 1);
    }

    #[test]
    fn round_trips_multi_segment_packets() {
        let a = vec![0xaa; 600];
        let b = vec![0xbb; 255];
        let c = vec![0xcc; 1];
        let mut lacing = Vec::new();
        let mut body = Vec::new();
        for p in [&a, &b, &c] {
            push_lacing(&mut lacing, p.len());
            body.extend_from_slice(p);
        }
        assert_eq!(lacing, [255, 255, 90, 255, 0, 1]);
        let mut out = Vec::new();
        let header = PageHeader {
            header_type: FLAG_EOS,
            granule_position: 12345,
            serial: 7,
            sequence: 9,
        };
        write_page(&mut out, &header, &lacing, &body);
        let page = OggPage::parse(&out).expect("valid");
        assert_eq!(page.granule_position(), 12345);
        assert_eq!(page.completed_packets(), 3);
        let got: Vec<_> = page.packets().collect();
        assert_eq!(got, vec![(&a[..], true), (&b[..], true), (&c[..], true)]);
    }

    #[test]
    fn partial_packet_at_page_end_is_reported_incomplete() {
        let mut out = Vec::new();
        let header = PageHeader {
            header_type: 0,
            granule_position: NO_GRANULE,
            serial: 1,
            sequence: 2,
        };
        write_page(&mut out, &header, &[255], &[1; 255]);
        let page = OggPage::parse(&out).expect("valid");
        assert!(!page.ends_on_packet_boundary());
        assert_eq!(page.completed_packets(), 0);
        assert_eq!(
            page.packets().collect::<Vec<_>>(),
            vec![(&[1u8; 255][..], false)]
        );
    }

    #[test]
    fn every_truncation_is_incomplete_not_invalid() {
        for cut in 0..OPUSENC_HEAD_PAGE.len() {
            match OggPage::parse(&OPUSENC_HEAD_PAGE[..cut]) {
                Err(PageError::Incomplete { needed }) => {
                    assert!(
                        needed > 0 && needed <= OPUSENC_HEAD_PAGE.len() - cut,
                        "cut {cut}"
                    )
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_invalid_with_a_reason() {
        assert_eq!(
            OggPage::parse(b"RIFF....WAVE"),
            Err(PageError::BadCapturePattern)
        );
        assert_eq!(OggPage::parse(b"Og!"), Err(PageError::BadCapturePattern));
        let mut v = OPUSENC_HEAD_PAGE;
        v[4] = 1;
        assert_eq!(OggPage::parse(&v), Err(PageError::UnsupportedVersion(1)));
        let mut f = OPUSENC_HEAD_PAGE;
        f[5] = 0x0a;
        assert_eq!(OggPage::parse(&f), Err(PageError::ReservedFlags(0x0a)));
        let mut body = OPUSENC_HEAD_PAGE;
        body[40] ^= 0x01;
        assert!(matches!(
            OggPage::parse(&body),
            Err(PageError::CrcMismatch {
                stored: 0xa3b1_805b,
                ..
            })
        ));
    }

    #[test]
    fn reader_stops_at_first_bad_page_and_reports_offset() {
        let mut buf = OPUSENC_FILE[..47 + 40].to_vec();
        let mut reader = OggPageReader::new(&buf);
        assert!(matches!(reader.next(), Some(Ok((0, _)))));
        assert!(matches!(
            reader.next(),
            Some(Err(PageError::Incomplete { .. }))
        ));
        assert_eq!(reader.offset(), 47);
        assert!(reader.next().is_none());

        buf.truncate(47);
        buf.extend_from_slice(b"junkjunkjunk");
        let results: Vec<_> = OggPageReader::new(&buf).collect();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1], Err(PageError::BadCapturePattern));
    }

    #[test]
    fn with_flags_sets_eos_and_keeps_page_valid() {
        let page = OggPage::parse(&OPUSENC_HEAD_PAGE).expect("valid");
        let eos = with_flags(&page, FLAG_EOS);
        let reparsed = OggPage::parse(&eos).expect("crc recomputed");
        assert!(reparsed.is_eos() && reparsed.is_bos());
        assert_eq!(reparsed.body(), page.body());
    }
}
