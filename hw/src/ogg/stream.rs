//! Whole-stream checks over a byte buffer (sans-IO): [`RecordingInfo`] for a
//! finished recording, [`RepairPlan`] for one a crash left open.
//!
//! Both walk the same way: an `OpusHead` BOS page, the `OpusTags` packet
//! ending its page, then audio pages of the same serial number with
//! consecutive sequence numbers and granule positions that never decrease.

use thiserror::Error;

use super::header::{HeaderError, OpusHead, OpusTags};
use super::page::{
    push_lacing, with_flags, write_page, OggPage, OggPageReader, PageError, PageHeader, FLAG_EOS,
    NO_GRANULE,
};
use super::{RecordingError, RepairOutcome, GRANULE_RATE};

/// Why bytes are not a well-formed Ogg Opus recording.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StreamError {
    #[error("page at byte {offset}: {source}")]
    Page { offset: usize, source: PageError },
    #[error("stream is empty")]
    Empty,
    #[error("first page must be a BOS page holding only the OpusHead packet")]
    NoOpusHead,
    #[error("OpusTags packet must follow OpusHead and end its page")]
    NoOpusTags,
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("page at byte {offset} belongs to stream {found:#010x}, not {expected:#010x}")]
    SerialMismatch {
        offset: usize,
        expected: u32,
        found: u32,
    },
    #[error("page at byte {offset} has sequence number {found}, {expected} expected")]
    SequenceGap {
        offset: usize,
        expected: u32,
        found: u32,
    },
    #[error("page at byte {offset} has granule position {found}, below the previous {previous}")]
    GranuleDecreased {
        offset: usize,
        previous: i64,
        found: i64,
    },
    #[error("page at byte {offset} follows the end-of-stream page")]
    DataAfterEos { offset: usize },
}

/// The last audio page that ends on a packet boundary: where a cut-off
/// stream can be closed.
#[derive(Debug, Clone, Copy)]
struct ClosablePage<'a> {
    offset: usize,
    page: OggPage<'a>,
}

/// How far a buffer is a valid stream.
#[derive(Debug)]
struct Scan<'a> {
    head: OpusHead,
    tags: OpusTags,
    serial: u32,
    /// Offset just past the page that ends the `OpusTags` packet.
    headers_end: usize,
    /// Sequence number the first audio page must carry.
    first_audio_sequence: u32,
    audio_pages: usize,
    packets: u64,
    last_granule: i64,
    /// End offset of the EOS page, when one was reached.
    eos_end: Option<usize>,
    closable: Option<ClosablePage<'a>>,
    /// The first problem after the headers, with the offset it starts at.
    stop: Option<(usize, StreamError)>,
}

fn page_error(offset: usize, source: PageError) -> StreamError {
    StreamError::Page { offset, source }
}

/// Walks `bytes`; header problems are errors, later problems end the scan and
/// are recorded in `stop`.
fn scan(bytes: &[u8]) -> Result<Scan<'_>, StreamError> {
    let mut reader = OggPageReader::new(bytes);
    let (_, first) = match reader.next() {
        None => return Err(StreamError::Empty),
        Some(r) => r.map_err(|e| page_error(0, e))?,
    };
    let mut pieces = first.packets();
    let head = match (pieces.next(), pieces.next()) {
        (Some((packet, true)), None)
            if first.is_bos() && !first.is_continued() && !first.is_eos() =>
        {
            packet
        }
        _ => return Err(StreamError::NoOpusHead),
    };
    let head = OpusHead::parse(head)?;
    let serial = first.serial();

    let mut next_sequence = 1u32;
    let mut tags_packet = Vec::new();
    let headers_end = loop {
        let at = reader.offset();
        let (_, page) = match reader.next() {
            None => return Err(StreamError::NoOpusTags),
            Some(r) => r.map_err(|e| page_error(at, e))?,
        };
        check_page_order(at, &page, serial, next_sequence)?;
        next_sequence = next_sequence.wrapping_add(1);
        // A continuation flag exactly when an OpusTags packet is under way.
        let continues_tags = !tags_packet.is_empty();
        if page.is_bos() || page.is_eos() || page.is_continued() != continues_tags {
            return Err(StreamError::NoOpusTags);
        }
        let mut pieces = page.packets();
        match (pieces.next(), pieces.next()) {
            (Some((piece, false)), None) => tags_packet.extend_from_slice(piece),
            (Some((piece, true)), None) => {
                tags_packet.extend_from_slice(piece);
                break reader.offset();
            }
            _ => return Err(StreamError::NoOpusTags),
        }
    };
    let tags = OpusTags::parse(&tags_packet)?;

    let mut scan = Scan {
        head,
        tags,
        serial,
        headers_end,
        first_audio_sequence: next_sequence,
        audio_pages: 0,
        packets: 0,
        last_granule: 0,
        eos_end: None,
        closable: None,
        stop: None,
    };
    loop {
        let at = reader.offset();
        let page = match reader.next() {
            None => break,
            Some(Err(e)) => {
                scan.stop = Some((at, page_error(at, e)));
                break;
            }
            Some(Ok((_, page))) => page,
        };
        if scan.eos_end.is_some() {
            scan.stop = Some((at, StreamError::DataAfterEos { offset: at }));
            break;
        }
        if let Err(e) = check_page_order(at, &page, serial, next_sequence) {
            scan.stop = Some((at, e));
            break;
        }
        let granule = page.granule_position();
        if granule != NO_GRANULE && granule < scan.last_granule {
            scan.stop = Some((
                at,
                StreamError::GranuleDecreased {
                    offset: at,
                    previous: scan.last_granule,
                    found: granule,
                },
            ));
            break;
        }
        next_sequence = next_sequence.wrapping_add(1);
        scan.audio_pages += 1;
        scan.packets += page.completed_packets() as u64;
        if granule != NO_GRANULE {
            scan.last_granule = granule;
            if page.ends_on_packet_boundary() {
                scan.closable = Some(ClosablePage { offset: at, page });
            }
        }
        if page.is_eos() {
            scan.eos_end = Some(reader.offset());
        }
    }
    Ok(scan)
}

fn check_page_order(
    offset: usize,
    page: &OggPage<'_>,
    serial: u32,
    sequence: u32,
) -> Result<(), StreamError> {
    if page.serial() != serial {
        return Err(StreamError::SerialMismatch {
            offset,
            expected: serial,
            found: page.serial(),
        });
    }
    if page.sequence() != sequence {
        return Err(StreamError::SequenceGap {
            offset,
            expected: sequence,
            found: page.sequence(),
        });
    }
    Ok(())
}

fn duration_ms(granule: i64, pre_skip: u16) -> u64 {
    let samples = u64::try_from(granule)
        .unwrap_or(0)
        .saturating_sub(u64::from(pre_skip));
    samples * 1000 / u64::from(GRANULE_RATE)
}

/// A recording checked from end to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub head: OpusHead,
    pub tags: OpusTags,
    pub serial: u32,
    /// Audio pages (header pages excluded).
    pub audio_pages: usize,
    /// Audio packets.
    pub packets: u64,
    /// Granule position of the last page.
    pub final_granule: i64,
    /// Playable length: final granule minus pre-skip, in milliseconds.
    pub duration_ms: u64,
    /// True when the stream ends with an end-of-stream page.
    pub complete: bool,
    pub bytes: u64,
}

impl RecordingInfo {
    /// Checks every page of `bytes` (CRC, order, header packets); any byte that
    /// is not part of a valid page is an error.
    pub fn parse(bytes: &[u8]) -> Result<RecordingInfo, StreamError> {
        let scan = scan(bytes)?;
        if let Some((_, e)) = scan.stop {
            return Err(e);
        }
        Ok(RecordingInfo {
            duration_ms: duration_ms(scan.last_granule, scan.head.pre_skip),
            head: scan.head,
            tags: scan.tags,
            serial: scan.serial,
            audio_pages: scan.audio_pages,
            packets: scan.packets,
            final_granule: scan.last_granule,
            complete: scan.eos_end.is_some(),
            bytes: bytes.len() as u64,
        })
    }
}

/// What to do to a recording so it ends cleanly: cut it to `keep_len` bytes,
/// then write `patch` (if any) at its offset. Applied in that order, a repair
/// interrupted by another crash can simply be planned and applied again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPlan {
    pub keep_len: u64,
    /// Bytes to write at an offset: the last page again with its EOS flag set,
    /// or an appended closing page when no audio page survived.
    pub patch: Option<(u64, Vec<u8>)>,
    pub outcome: RepairOutcome,
}

/// A packet of one 20 ms narrowband SILK frame of length zero (TOC config 1,
/// code 0): decoders conceal it as a lost frame, so it carries no sound. It
/// closes a stream whose audio pages were all lost.
const EMPTY_OPUS_PACKET: [u8; 1] = [0x08];

impl RepairPlan {
    /// Plans the repair of a file's `bytes`. Fails only when the header pages
    /// themselves are damaged: such a file holds no audio worth keeping.
    pub fn for_bytes(bytes: &[u8]) -> Result<RepairPlan, RecordingError> {
        let scan = scan(bytes).map_err(RecordingError::Unrecoverable)?;
        let len = bytes.len() as u64;
        if let Some(end) = scan.eos_end {
            return Ok(RepairPlan {
                keep_len: end as u64,
                patch: None,
                outcome: RepairOutcome {
                    duration_ms: duration_ms(scan.last_granule, scan.head.pre_skip),
                    truncated_bytes: len - end as u64,
                    was_complete: true,
                },
            });
        }
        if let Some(last) = scan.closable {
            let end = (last.offset + last.page.len()) as u64;
            return Ok(RepairPlan {
                keep_len: end,
                patch: Some((last.offset as u64, with_flags(&last.page, FLAG_EOS))),
                outcome: RepairOutcome {
                    duration_ms: duration_ms(last.page.granule_position(), scan.head.pre_skip),
                    truncated_bytes: len - end,
                    was_complete: false,
                },
            });
        }
        // Only the headers survived: close the stream with one silent packet
        // trimmed away entirely (granule = pre-skip, zero playable samples).
        let mut lacing = Vec::new();
        push_lacing(&mut lacing, EMPTY_OPUS_PACKET.len());
        let mut page = Vec::new();
        let header = PageHeader {
            header_type: FLAG_EOS,
            granule_position: i64::from(scan.head.pre_skip),
            serial: scan.serial,
            sequence: scan.first_audio_sequence,
        };
        write_page(&mut page, &header, &lacing, &EMPTY_OPUS_PACKET);
        let end = scan.headers_end as u64;
        Ok(RepairPlan {
            keep_len: end,
            patch: Some((end, page)),
            outcome: RepairOutcome {
                duration_ms: 0,
                truncated_bytes: len - end,
                was_complete: false,
            },
        })
    }

    /// The plan applied to an in-memory copy (what the file will hold).
    pub fn apply_to(&self, bytes: &[u8]) -> Vec<u8> {
        let keep = (self.keep_len as usize).min(bytes.len());
        let mut out = bytes[..keep].to_vec();
        if let Some((at, patch)) = &self.patch {
            let at = *at as usize;
            let end = at + patch.len();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[at..end].copy_from_slice(patch);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioFrame;
    use crate::ogg::{Direction, EncoderSettings, OggOpusEncoder, RecordingTags};

    /// A finished stream of `frames` frames of a tone, with its header length.
    fn stream(frames: usize) -> (Vec<u8>, usize) {
        stream_with_serial(frames, 77)
    }

    fn stream_with_serial(frames: usize, serial: u32) -> (Vec<u8>, usize) {
        let mut enc = OggOpusEncoder::new(EncoderSettings::default()).expect("encoder");
        let tags = RecordingTags {
            channel: "ch".into(),
            link: "link".into(),
            direction: Direction::Rx,
            start: std::time::UNIX_EPOCH,
            ani: None,
        };
        let mut out = Vec::new();
        enc.start(&tags, serial, &mut out).expect("start");
        let headers = out.len();
        for i in 0..frames {
            let mut f = AudioFrame::SILENCE;
            for (n, s) in f.samples.iter_mut().enumerate() {
                *s = if (i * 160 + n) % 16 < 8 { 3000 } else { -3000 };
            }
            enc.push_frame(&f, &mut out).expect("push");
        }
        enc.finish(&mut out).expect("finish");
        (out, headers)
    }

    fn page_ends(bytes: &[u8]) -> Vec<usize> {
        OggPageReader::new(bytes)
            .map(|r| r.map(|(at, p)| at + p.len()).expect("valid"))
            .collect()
    }

    #[test]
    fn info_describes_a_finished_stream() {
        let (bytes, _) = stream(120);
        let info = RecordingInfo::parse(&bytes).expect("valid");
        assert!(info.complete);
        assert_eq!(info.duration_ms, 2400);
        assert_eq!(info.final_granule, 312 + 120 * 960);
        assert_eq!(info.packets, 121);
        assert_eq!(info.audio_pages, 3);
        assert_eq!(info.serial, 77);
        assert_eq!(info.head.input_sample_rate, 8000);
        assert_eq!(info.tags.get("LINK"), Some("link"));
    }

    #[test]
    fn info_rejects_structural_damage() {
        let (bytes, headers) = stream(120);
        let ends = page_ends(&bytes);
        assert_eq!(RecordingInfo::parse(&[]), Err(StreamError::Empty));
        // A page out of order: drop the first audio page.
        let mut gap = bytes[..headers].to_vec();
        gap.extend_from_slice(&bytes[ends[2]..]);
        assert!(matches!(
            RecordingInfo::parse(&gap),
            Err(StreamError::SequenceGap {
                expected: 2,
                found: 3,
                ..
            })
        ));
        // Audio without headers.
        assert_eq!(
            RecordingInfo::parse(&bytes[headers..]),
            Err(StreamError::NoOpusHead)
        );
        // Headers only, then a cut page.
        assert!(matches!(
            RecordingInfo::parse(&bytes[..headers + 10]),
            Err(StreamError::Page {
                source: PageError::Incomplete { .. },
                ..
            })
        ));
        // Something after EOS.
        let mut twice = bytes.clone();
        twice.extend_from_slice(&bytes[ends[2]..]);
        assert!(matches!(
            RecordingInfo::parse(&twice),
            Err(StreamError::DataAfterEos { .. })
        ));
        // Another stream's page in the middle.
        let (other, _) = stream_with_serial(10, 78);
        let mut mixed = bytes[..headers].to_vec();
        mixed.extend_from_slice(&other[page_ends(&other)[1]..]);
        let err = RecordingInfo::parse(&mixed).expect_err("serial differs");
        assert!(matches!(err, StreamError::SerialMismatch { .. }), "{err}");
    }

    #[test]
    fn repair_closes_every_truncation_at_the_last_whole_page() {
        let (bytes, headers) = stream(180);
        let ends = page_ends(&bytes);
        // Without the EOS page, as the writer leaves it before `finish`.
        let open = &bytes[..ends[ends.len() - 2]];
        for cut in headers..=open.len() {
            let cut_bytes = &open[..cut];
            let plan = RepairPlan::for_bytes(cut_bytes).expect("plan");
            let repaired = plan.apply_to(cut_bytes);
            let info = RecordingInfo::parse(&repaired).expect("repaired is valid");
            assert!(info.complete, "cut {cut}");
            assert!(!plan.outcome.was_complete);
            let whole_pages = ends.iter().filter(|&&e| e <= cut).count();
            let audio_seconds = whole_pages.saturating_sub(2) as u64;
            // Whole seconds of packets minus the 312-sample pre-skip, floored.
            let expected_ms = (audio_seconds * 48_000).saturating_sub(312) / 48;
            assert_eq!(plan.outcome.duration_ms, expected_ms, "cut {cut}");
            assert_eq!(info.duration_ms, plan.outcome.duration_ms, "cut {cut}");
            let kept = if audio_seconds == 0 {
                headers
            } else {
                ends[whole_pages - 1]
            };
            assert_eq!(
                plan.outcome.truncated_bytes,
                (cut - kept) as u64,
                "cut {cut}"
            );
            // Repairing again changes nothing.
            let again = RepairPlan::for_bytes(&repaired).expect("plan");
            assert!(again.outcome.was_complete && again.patch.is_none());
            assert_eq!(again.keep_len, repaired.len() as u64);
        }
    }

    #[test]
    fn repair_keeps_complete_files_and_cuts_junk_after_eos() {
        let (bytes, _) = stream(60);
        let plan = RepairPlan::for_bytes(&bytes).expect("plan");
        assert_eq!(
            plan.outcome,
            RepairOutcome {
                duration_ms: 1200,
                truncated_bytes: 0,
                was_complete: true
            }
        );
        let mut junk = bytes.clone();
        junk.extend_from_slice(b"OggS\0\0partial");
        let plan = RepairPlan::for_bytes(&junk).expect("plan");
        assert_eq!(plan.outcome.truncated_bytes, 13);
        assert_eq!(plan.apply_to(&junk), bytes);
    }

    #[test]
    fn repair_refuses_damaged_headers() {
        let (bytes, headers) = stream(60);
        for cut in [0, 1, 30, headers - 1] {
            assert!(
                matches!(
                    RepairPlan::for_bytes(&bytes[..cut]),
                    Err(RecordingError::Unrecoverable(_))
                ),
                "cut {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 0xff;
        assert!(matches!(
            RepairPlan::for_bytes(&flipped),
            Err(RecordingError::Unrecoverable(StreamError::Page {
                offset: 0,
                ..
            }))
        ));
    }

    #[test]
    fn repair_stops_at_a_corrupted_page_in_the_middle() {
        let (bytes, _) = stream(200);
        let ends = page_ends(&bytes);
        let mut damaged = bytes.clone();
        damaged[ends[3] + 40] ^= 0x55; // inside the third audio page
        let plan = RepairPlan::for_bytes(&damaged).expect("plan");
        assert_eq!(plan.keep_len, ends[3] as u64);
        assert_eq!(plan.outcome.duration_ms, (2 * 48_000 - 312) / 48);
        assert!(
            RecordingInfo::parse(&plan.apply_to(&damaged))
                .expect("valid")
                .complete
        );
    }

    #[test]
    fn header_pages_with_eos_are_refused() {
        let (bytes, _) = stream(10);
        let head = OggPage::parse(&bytes).expect("head page");
        let mut eos_head = with_flags(&head, FLAG_EOS);
        eos_head.extend_from_slice(&bytes[head.len()..]);
        assert_eq!(
            RecordingInfo::parse(&eos_head),
            Err(StreamError::NoOpusHead)
        );
    }

    /// A deterministic stand-in for the fuzz target: damaged streams either
    /// refuse repair or repair into a valid, complete stream.
    #[test]
    fn repair_of_randomly_damaged_streams_always_yields_valid_streams() {
        let (bytes, _) = stream(160);
        let mut rng = 0x9e37_79b9u32;
        let mut next = move |bound: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng as usize % bound.max(1)
        };
        let mut repaired_count = 0;
        for _ in 0..400 {
            let mut damaged = bytes[..next(bytes.len() + 1)].to_vec();
            for _ in 0..next(3) {
                if !damaged.is_empty() {
                    let at = next(damaged.len());
                    damaged[at] ^= 1 << next(8);
                }
            }
            if let Ok(plan) = RepairPlan::for_bytes(&damaged) {
                let info =
                    RecordingInfo::parse(&plan.apply_to(&damaged)).expect("valid after repair");
                assert!(info.complete);
                assert_eq!(info.duration_ms, plan.outcome.duration_ms);
                repaired_count += 1;
            }
        }
        assert!(
            repaired_count > 300,
            "only {repaired_count} of 400 repairable"
        );
    }
}
