//! Writing Ogg Opus streams without touching files: [`OggOpusMuxer`] turns
//! Opus packets into Ogg pages (no codec involved, so layout and granule rules
//! are testable with any bytes), and [`OggOpusEncoder`] feeds it from libopus,
//! one [`AudioFrame`] at a time. Both append finished pages to a caller's
//! `Vec<u8>`; the caller decides when and where those bytes go.
//!
//! Rules followed (RFC 7845): header pages first (`OpusHead` alone on a BOS
//! page, `OpusTags` alone on the next), audio pages after; every granule
//! position counts 48 kHz samples from the start of the stream, pre-skip
//! included; the EOS page's granule is pre-skip plus the real input sample
//! count, which trims the encoder padding off the end.

use crate::audio::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};

use super::header::{OpusHead, OpusTagsLayout, RecordingTags};
use super::page::{
    push_lacing, segments_for, write_page, PageHeader, FLAG_BOS, FLAG_EOS, MAX_SEGMENTS,
};
use super::{RecordingError, RecordingSummary};

/// Audio packets per page: 50 × 20 ms = 1 s, so a crash loses at most one
/// second, while page overhead stays near 7 % for speech at 12 kbit/s VBR
/// (measured by the `recorder_cost` bench; one page per packet would cost
/// about 90 %).
pub const PACKETS_PER_PAGE: usize = 50;
/// Opus granule positions always count at 48 kHz.
pub const GRANULE_RATE: u32 = 48_000;
/// 48 kHz samples in one 20 ms frame.
pub const GRANULE_PER_FRAME: u64 = (GRANULE_RATE / 1000 * crate::audio::FRAME_MS) as u64;
/// 12 kbit/s is where narrowband SILK speech stops improving audibly; FM
/// radio audio carries only 300–3000 Hz, so more bits mostly store noise.
/// About 130 MB per channel-day at 100 % duty.
pub const DEFAULT_BITRATE_BPS: i32 = 12_000;
/// Complexity 5 costs about half the CPU of 10 (measured by the
/// `recorder_cost` bench: 2.9 vs 5.2 ms per audio-second, ≈ 350 vs 190
/// channels per core) while narrowband SILK quality barely changes, so a
/// station recording every channel keeps headroom for decoders and patches.
pub const DEFAULT_COMPLEXITY: i32 = 5;
/// The largest Opus packet holding one frame (RFC 6716 §3.2.1).
const MAX_OPUS_PACKET: usize = 1275;

/// Encoder settings for a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub bitrate_bps: i32,
    /// libopus complexity, 0 (cheapest) ..= 10.
    pub complexity: i32,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        EncoderSettings {
            bitrate_bps: DEFAULT_BITRATE_BPS,
            complexity: DEFAULT_COMPLEXITY,
        }
    }
}

impl EncoderSettings {
    /// Settings from the daemon's optional bitrate and a complexity.
    pub fn new(bitrate_bps: Option<i32>, complexity: i32) -> Result<Self, RecordingError> {
        let s = EncoderSettings {
            bitrate_bps: bitrate_bps.unwrap_or(DEFAULT_BITRATE_BPS),
            complexity,
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), RecordingError> {
        if !(6_000..=510_000).contains(&self.bitrate_bps) {
            return Err(RecordingError::BitrateOutOfRange(self.bitrate_bps));
        }
        if !(0..=10).contains(&self.complexity) {
            return Err(RecordingError::ComplexityOutOfRange(self.complexity));
        }
        Ok(())
    }
}

/// Ogg pages for one logical Opus stream, from already encoded packets.
#[derive(Debug)]
pub struct OggOpusMuxer {
    serial: u32,
    next_sequence: u32,
    pre_skip: u16,
    /// 48 kHz samples in every packet pushed so far.
    granule: u64,
    /// Granule of the last page written (never decreases).
    flushed_granule: u64,
    lacing: Vec<u8>,
    body: Vec<u8>,
    page_packets: usize,
    packets_per_page: usize,
    packets: u64,
    bytes: u64,
    tags_page_offset: u64,
    tags_packet_len: usize,
    finished: bool,
}

impl OggOpusMuxer {
    /// Starts a stream: appends the `OpusHead` and `OpusTags` pages to `out`.
    pub fn new(
        serial: u32,
        head: &OpusHead,
        tags_packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Self, RecordingError> {
        Self::with_packets_per_page(serial, head, tags_packet, PACKETS_PER_PAGE, out)
    }

    /// As [`Self::new`] with a different page size (tests use small ones).
    pub fn with_packets_per_page(
        serial: u32,
        head: &OpusHead,
        tags_packet: &[u8],
        packets_per_page: usize,
        out: &mut Vec<u8>,
    ) -> Result<Self, RecordingError> {
        if segments_for(tags_packet.len()) > MAX_SEGMENTS {
            return Err(RecordingError::PacketTooLarge(tags_packet.len()));
        }
        let start = out.len();
        let mut lacing = Vec::with_capacity(MAX_SEGMENTS);
        let head = head.to_bytes();
        push_lacing(&mut lacing, head.len());
        let mut header = PageHeader {
            header_type: FLAG_BOS,
            granule_position: 0,
            serial,
            sequence: 0,
        };
        write_page(out, &header, &lacing, &head);
        let tags_page_offset = (out.len() - start) as u64;
        lacing.clear();
        push_lacing(&mut lacing, tags_packet.len());
        header.header_type = 0;
        header.sequence = 1;
        write_page(out, &header, &lacing, tags_packet);
        lacing.clear();
        Ok(OggOpusMuxer {
            serial,
            next_sequence: 2,
            pre_skip: u16::from_le_bytes([head[10], head[11]]),
            granule: 0,
            flushed_granule: 0,
            lacing,
            body: Vec::with_capacity(packets_per_page.max(1) * 64),
            page_packets: 0,
            packets_per_page: packets_per_page.max(1),
            packets: 0,
            bytes: (out.len() - start) as u64,
            tags_page_offset,
            tags_packet_len: tags_packet.len(),
            finished: false,
        })
    }

    /// Adds one packet holding `samples_48k` samples; appends a page to `out`
    /// when the page is full (by packet count or by its 255 segments).
    pub fn push_packet(
        &mut self,
        packet: &[u8],
        samples_48k: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordingError> {
        if self.finished {
            return Err(RecordingError::NotStarted);
        }
        let segments = segments_for(packet.len());
        if segments > MAX_SEGMENTS {
            return Err(RecordingError::PacketTooLarge(packet.len()));
        }
        if self.lacing.len() + segments > MAX_SEGMENTS {
            self.flush(0, self.granule, out);
        }
        push_lacing(&mut self.lacing, packet.len());
        self.body.extend_from_slice(packet);
        self.page_packets += 1;
        self.packets += 1;
        self.granule += u64::from(samples_48k);
        if self.page_packets >= self.packets_per_page {
            self.flush(0, self.granule, out);
        }
        Ok(())
    }

    /// Ends the stream: adds its last packet and writes the EOS page with
    /// granule `final_granule`, which may trim the end of the stream (it must
    /// not exceed the samples pushed nor go below the last page's granule).
    /// Taking the last packet here guarantees the EOS page is never empty.
    pub fn finish(
        &mut self,
        last_packet: &[u8],
        samples_48k: u32,
        final_granule: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordingError> {
        if self.finished {
            return Err(RecordingError::NotStarted);
        }
        let segments = segments_for(last_packet.len());
        if segments > MAX_SEGMENTS {
            return Err(RecordingError::PacketTooLarge(last_packet.len()));
        }
        let total = self.granule + u64::from(samples_48k);
        let min = if self.lacing.len() + segments > MAX_SEGMENTS {
            self.granule
        } else {
            self.flushed_granule
        };
        if final_granule > total || final_granule < min {
            return Err(RecordingError::FinalGranuleOutOfRange {
                granule: final_granule,
                min,
                max: total,
            });
        }
        if self.lacing.len() + segments > MAX_SEGMENTS {
            self.flush(0, self.granule, out);
        }
        push_lacing(&mut self.lacing, last_packet.len());
        self.body.extend_from_slice(last_packet);
        self.packets += 1;
        self.granule = total;
        self.flush(FLAG_EOS, final_granule, out);
        self.finished = true;
        Ok(())
    }

    /// Writes the packets gathered so far as a page now, without waiting for
    /// the page to fill (for a caller whose frames stall mid-transmission and
    /// who still wants the audio on disk). Does nothing when none are pending.
    pub fn flush_page(&mut self, out: &mut Vec<u8>) {
        if !self.finished {
            self.flush(0, self.granule, out);
        }
    }

    /// The tags page again with a new packet of the same length, and its
    /// offset from the start of the stream, to overwrite it in place.
    pub fn rewrite_tags_page(&self, tags_packet: &[u8]) -> Result<(u64, Vec<u8>), RecordingError> {
        if tags_packet.len() != self.tags_packet_len {
            return Err(RecordingError::TagsLengthChanged {
                was: self.tags_packet_len,
                now: tags_packet.len(),
            });
        }
        let mut lacing = Vec::new();
        push_lacing(&mut lacing, tags_packet.len());
        let mut page = Vec::new();
        let header = PageHeader {
            header_type: 0,
            granule_position: 0,
            serial: self.serial,
            sequence: 1,
        };
        write_page(&mut page, &header, &lacing, tags_packet);
        Ok((self.tags_page_offset, page))
    }

    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    /// Audio packets pushed so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes of pages emitted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// 48 kHz samples in all packets pushed so far.
    pub fn granule(&self) -> u64 {
        self.granule
    }

    fn flush(&mut self, flags: u8, granule: u64, out: &mut Vec<u8>) {
        if self.lacing.is_empty() {
            return;
        }
        let header = PageHeader {
            header_type: flags,
            granule_position: granule as i64,
            serial: self.serial,
            sequence: self.next_sequence,
        };
        let before = out.len();
        write_page(out, &header, &self.lacing, &self.body);
        self.bytes += (out.len() - before) as u64;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.flushed_granule = granule;
        self.lacing.clear();
        self.body.clear();
        self.page_packets = 0;
    }
}

/// libopus plus an [`OggOpusMuxer`]: frames in, pages out. One per channel;
/// between recordings the same encoder is reused via [`Self::start`], which
/// resets the codec state instead of allocating a new one.
pub struct OggOpusEncoder {
    opus: opus::Encoder,
    settings: EncoderSettings,
    /// Pre-skip in 48 kHz samples, from the encoder's lookahead.
    pre_skip: u16,
    packet: Vec<u8>,
    stream: Option<Stream>,
}

struct Stream {
    muxer: OggOpusMuxer,
    tags: OpusTagsLayout,
    /// Real input frames pushed (the padding frames at the end excluded).
    frames: u64,
}

impl std::fmt::Debug for OggOpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusEncoder")
            .field("settings", &self.settings)
            .field("pre_skip", &self.pre_skip)
            .field("streaming", &self.stream.is_some())
            .finish()
    }
}

impl OggOpusEncoder {
    /// A mono VOIP-mode encoder for 8 kHz input.
    pub fn new(settings: EncoderSettings) -> Result<Self, RecordingError> {
        settings.validate()?;
        let mut opus =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        opus.set_bitrate(opus::Bitrate::Bits(settings.bitrate_bps))?;
        opus.set_complexity(settings.complexity)?;
        opus.set_signal(opus::Signal::Voice)?;
        opus.set_max_bandwidth(opus::Bandwidth::Narrowband)?;
        let lookahead = opus.get_lookahead()?;
        // Lookahead is in input-rate samples; the header wants 48 kHz ones.
        let pre_skip = u64::try_from(lookahead)
            .ok()
            .map(|l| l * u64::from(GRANULE_RATE / SAMPLE_RATE))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or(RecordingError::BadLookahead(lookahead))?;
        Ok(OggOpusEncoder {
            opus,
            settings,
            pre_skip,
            packet: vec![0; MAX_OPUS_PACKET],
            stream: None,
        })
    }

    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Pre-skip written into `OpusHead`, in 48 kHz samples.
    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    /// True between [`Self::start`] and [`Self::finish`].
    pub fn is_streaming(&self) -> bool {
        self.stream.is_some()
    }

    /// Begins a new stream with the given Ogg serial number, appending its
    /// two header pages to `out`.
    pub fn start(
        &mut self,
        tags: &RecordingTags,
        serial: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordingError> {
        if self.stream.is_some() {
            return Err(RecordingError::AlreadyStarted);
        }
        let layout = OpusTagsLayout::new(opus::version(), tags)?;
        let tags_packet = layout.packet(tags.ani.as_deref())?;
        self.opus.reset_state()?;
        let head = OpusHead::mono(self.pre_skip, SAMPLE_RATE);
        let muxer = OggOpusMuxer::new(serial, &head, &tags_packet, out)?;
        self.stream = Some(Stream {
            muxer,
            tags: layout,
            frames: 0,
        });
        Ok(())
    }

    /// Encodes one frame; appends a page to `out` once a second.
    pub fn push_frame(
        &mut self,
        frame: &AudioFrame,
        out: &mut Vec<u8>,
    ) -> Result<(), RecordingError> {
        let stream = self.stream.as_mut().ok_or(RecordingError::NotStarted)?;
        encode_into(&mut self.opus, &mut self.packet, stream, frame, out)?;
        stream.frames += 1;
        Ok(())
    }

    /// Appends the packets encoded so far as a page now; see
    /// [`OggOpusMuxer::flush_page`].
    pub fn flush_page(&mut self, out: &mut Vec<u8>) -> Result<(), RecordingError> {
        let stream = self.stream.as_mut().ok_or(RecordingError::NotStarted)?;
        stream.muxer.flush_page(out);
        Ok(())
    }

    /// The comment header page rewritten with `ANI=<ani>` and its offset in
    /// the stream: write it over the old one (same length) when the calling
    /// unit is identified after the recording started, e.g. by EOT PTT-ID.
    pub fn tags_page_with_ani(&self, ani: &str) -> Result<(u64, Vec<u8>), RecordingError> {
        let stream = self.stream.as_ref().ok_or(RecordingError::NotStarted)?;
        let packet = stream.tags.packet(Some(ani))?;
        stream.muxer.rewrite_tags_page(&packet)
    }

    /// Flushes the encoder's lookahead with silence and appends the EOS page,
    /// trimmed to the real sample count. The encoder is then ready for
    /// another [`Self::start`].
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<RecordingSummary, RecordingError> {
        let mut stream = self.stream.take().ok_or(RecordingError::NotStarted)?;
        // Enough silent frames to push the last real sample out through the
        // lookahead delay (one 20 ms frame for the usual 6.5 ms).
        let padding = u64::from(self.pre_skip).div_ceil(GRANULE_PER_FRAME).max(1);
        for _ in 1..padding {
            encode_into(
                &mut self.opus,
                &mut self.packet,
                &mut stream,
                &AudioFrame::SILENCE,
                out,
            )?;
        }
        let len = self
            .opus
            .encode(&AudioFrame::SILENCE.samples, &mut self.packet)?;
        let final_granule = u64::from(self.pre_skip) + stream.frames * GRANULE_PER_FRAME;
        stream.muxer.finish(
            &self.packet[..len],
            GRANULE_PER_FRAME as u32,
            final_granule,
            out,
        )?;
        Ok(RecordingSummary {
            duration_ms: stream.frames * u64::from(crate::audio::FRAME_MS),
            bytes: stream.muxer.bytes(),
            packets: stream.muxer.packets(),
        })
    }

    /// Drops the current stream without an EOS page (after an I/O error, say);
    /// the file it was going to is left for [`super::repair`].
    pub fn abandon(&mut self) {
        self.stream = None;
    }
}

fn encode_into(
    opus: &mut opus::Encoder,
    packet: &mut [u8],
    stream: &mut Stream,
    frame: &AudioFrame,
    out: &mut Vec<u8>,
) -> Result<(), RecordingError> {
    debug_assert_eq!(frame.samples.len(), FRAME_SAMPLES);
    let len = opus.encode(&frame.samples, packet)?;
    stream
        .muxer
        .push_packet(&packet[..len], GRANULE_PER_FRAME as u32, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ogg::page::{OggPageReader, NO_GRANULE};

    fn pages(bytes: &[u8]) -> Vec<crate::ogg::page::OggPage<'_>> {
        OggPageReader::new(bytes)
            .map(|r| r.map(|(_, p)| p))
            .collect::<Result<_, _>>()
            .expect("valid pages")
    }

    fn muxer(packets_per_page: usize, out: &mut Vec<u8>) -> OggOpusMuxer {
        let head = OpusHead::mono(312, 8000);
        OggOpusMuxer::with_packets_per_page(0xfeed, &head, b"OpusTags-ish", packets_per_page, out)
            .expect("muxer")
    }

    #[test]
    fn header_pages_come_first_and_alone() {
        let mut out = Vec::new();
        let m = muxer(50, &mut out);
        let p = pages(&out);
        assert_eq!(p.len(), 2);
        assert!(p[0].is_bos() && p[0].sequence() == 0 && p[0].granule_position() == 0);
        assert_eq!(p[0].body(), &OpusHead::mono(312, 8000).to_bytes());
        assert!(!p[1].is_bos() && p[1].sequence() == 1 && p[1].granule_position() == 0);
        assert_eq!(p[1].body(), b"OpusTags-ish");
        assert_eq!(m.bytes(), out.len() as u64);
        assert_eq!(
            m.rewrite_tags_page(b"OpusTags-ish").expect("same").0,
            p[0].len() as u64
        );
    }

    #[test]
    fn pages_hold_fixed_packet_count_with_cumulative_granules() {
        let mut out = Vec::new();
        let mut m = muxer(3, &mut out);
        let headers = out.len();
        for i in 0..6u8 {
            m.push_packet(&[i; 30], 960, &mut out).expect("push");
        }
        // The page just filled is out; the last packet still gets an EOS page.
        assert_eq!(pages(&out[headers..]).len(), 2);
        m.finish(&[6; 30], 960, 7 * 960 - 100, &mut out)
            .expect("finish");
        let p = pages(&out[headers..]);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].granule_position(), 3 * 960);
        assert_eq!(p[1].granule_position(), 6 * 960);
        assert_eq!(p[2].granule_position(), 7 * 960 - 100);
        assert!(p[2].is_eos() && !p[1].is_eos());
        assert_eq!(
            p.iter().map(|p| p.sequence()).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(p[0].lacing(), &[30, 30, 30]);
        assert_eq!(m.bytes(), out.len() as u64);
        assert_eq!(m.packets(), 7);
    }

    #[test]
    fn page_is_flushed_before_it_would_exceed_255_segments() {
        let mut out = Vec::new();
        let mut m = muxer(50, &mut out);
        let headers = out.len();
        // 1275-byte packets (the largest Opus frame, exactly 5 × 255) need
        // 6 lacing values each: 42 fit in 255 segments, the 43rd does not.
        for _ in 0..43 {
            m.push_packet(&[0x55; 1275], 960, &mut out).expect("push");
        }
        let p = pages(&out[headers..]);
        assert_eq!(p.len(), 1, "page flushed at 42 packets, before 50");
        assert_eq!(p[0].lacing().len(), 252);
        assert_eq!(&p[0].lacing()[..6], &[255, 255, 255, 255, 255, 0]);
        assert_eq!(p[0].completed_packets(), 42);
        assert_eq!(p[0].granule_position(), 42 * 960);
        m.finish(&[0x66; 1275], 960, m.granule() + 960, &mut out)
            .expect("finish");
        let p = pages(&out[headers..]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].completed_packets(), 2);
        assert!(p[1].is_eos());
        assert!(p.iter().all(|p| p.granule_position() != NO_GRANULE));
    }

    #[test]
    fn forced_flush_writes_a_short_page_and_keeps_granules_consistent() {
        let mut out = Vec::new();
        let mut m = muxer(50, &mut out);
        let headers = out.len();
        m.flush_page(&mut out);
        assert_eq!(out.len(), headers, "nothing pending, no empty page");
        for _ in 0..7 {
            m.push_packet(&[3; 20], 960, &mut out).expect("push");
        }
        m.flush_page(&mut out);
        for _ in 0..50 {
            m.push_packet(&[4; 20], 960, &mut out).expect("push");
        }
        m.finish(&[5; 20], 960, 58 * 960, &mut out).expect("finish");
        let p = pages(&out[headers..]);
        let granules: Vec<_> = p.iter().map(|p| p.granule_position()).collect();
        assert_eq!(granules, [7 * 960, 57 * 960, 58 * 960]);
        assert_eq!(p[0].completed_packets(), 7);
    }

    #[test]
    fn final_granule_cannot_extend_or_rewind_the_stream() {
        let mut out = Vec::new();
        let mut m = muxer(2, &mut out);
        for _ in 0..3 {
            m.push_packet(&[1; 10], 960, &mut out).expect("push");
        }
        assert!(matches!(
            m.finish(&[1; 10], 960, 4 * 960 + 1, &mut out),
            Err(RecordingError::FinalGranuleOutOfRange {
                min: 1920,
                max: 3840,
                ..
            })
        ));
        assert!(m.finish(&[1; 10], 960, 1919, &mut out).is_err());
        assert!(m.finish(&[1; 10], 960, 1920, &mut out).is_ok());
        assert!(m.push_packet(&[1], 960, &mut out).is_err());
    }

    #[test]
    fn oversized_packets_are_refused() {
        let mut out = Vec::new();
        let mut m = muxer(50, &mut out);
        assert!(matches!(
            m.push_packet(&vec![0; 255 * 255], 960, &mut out),
            Err(RecordingError::PacketTooLarge(65025))
        ));
        assert!(m.push_packet(&vec![0; 255 * 254], 960, &mut out).is_ok());
    }

    #[test]
    fn encoder_pre_skip_comes_from_lookahead_and_granule_trims_padding() {
        let mut enc = OggOpusEncoder::new(EncoderSettings::default()).expect("encoder");
        // libopus: 2.5 ms + 4 ms delay compensation = 6.5 ms = 312 at 48 kHz.
        assert_eq!(enc.pre_skip(), 312);
        let mut out = Vec::new();
        let tags = RecordingTags {
            channel: "c".into(),
            link: "l".into(),
            direction: crate::ogg::Direction::Tx,
            start: std::time::UNIX_EPOCH,
            ani: None,
        };
        enc.start(&tags, 1, &mut out).expect("start");
        assert!(matches!(
            enc.start(&tags, 1, &mut out),
            Err(RecordingError::AlreadyStarted)
        ));
        for _ in 0..60 {
            enc.push_frame(&AudioFrame::SILENCE, &mut out)
                .expect("push");
        }
        let summary = enc.finish(&mut out).expect("finish");
        assert_eq!(summary.duration_ms, 1200);
        assert_eq!(summary.packets, 61, "60 frames and one padding frame");
        assert_eq!(summary.bytes, out.len() as u64);
        let p = pages(&out);
        assert_eq!(p.len(), 4);
        assert_eq!(p[2].granule_position(), 50 * 960);
        assert_eq!(p[3].granule_position(), 312 + 60 * 960);
        assert!(matches!(
            enc.push_frame(&AudioFrame::SILENCE, &mut out),
            Err(RecordingError::NotStarted)
        ));
    }

    #[test]
    fn every_length_ends_with_a_trimmed_eos_page() {
        let tags = RecordingTags {
            channel: "c".into(),
            link: "l".into(),
            direction: crate::ogg::Direction::Rx,
            start: std::time::UNIX_EPOCH,
            ani: None,
        };
        let mut enc = OggOpusEncoder::new(EncoderSettings::default()).expect("encoder");
        // 49 frames + 1 padding packet fill a page exactly: the EOS page must
        // still come last and carry the trimmed granule.
        for frames in [0u64, 1, 48, 49, 50, 99, 100] {
            let mut out = Vec::new();
            enc.start(&tags, 5, &mut out).expect("start");
            for _ in 0..frames {
                enc.push_frame(&AudioFrame::SILENCE, &mut out)
                    .expect("push");
            }
            enc.finish(&mut out).expect("finish");
            let p = pages(&out);
            let last = p.last().expect("pages");
            assert!(last.is_eos(), "{frames} frames");
            assert_eq!(
                last.granule_position(),
                312 + frames as i64 * 960,
                "{frames} frames"
            );
            assert_eq!(p.iter().filter(|p| p.is_eos()).count(), 1);
            let packets: usize = p[2..].iter().map(|p| p.completed_packets()).sum();
            assert_eq!(packets as u64, frames + 1);
        }
    }

    #[test]
    fn reused_encoder_produces_identical_streams() {
        let frames: Vec<AudioFrame> = (0..30)
            .map(|i| {
                let mut f = AudioFrame::SILENCE;
                for (n, s) in f.samples.iter_mut().enumerate() {
                    let t = (i * FRAME_SAMPLES + n) as f32 / 8000.0;
                    *s = (8000.0 * (t * 2.0 * std::f32::consts::PI * 440.0).sin()) as i16;
                }
                f
            })
            .collect();
        let tags = RecordingTags {
            channel: "c".into(),
            link: "l".into(),
            direction: crate::ogg::Direction::Rx,
            start: std::time::UNIX_EPOCH,
            ani: Some("1001".into()),
        };
        let mut enc = OggOpusEncoder::new(EncoderSettings::default()).expect("encoder");
        let run = |enc: &mut OggOpusEncoder| {
            let mut out = Vec::new();
            enc.start(&tags, 9, &mut out).expect("start");
            for f in &frames {
                enc.push_frame(f, &mut out).expect("push");
            }
            enc.finish(&mut out).expect("finish");
            out
        };
        let first = run(&mut enc);
        let second = run(&mut enc);
        assert_eq!(
            first, second,
            "reset_state makes reuse equivalent to a fresh encoder"
        );
        let mut fresh = OggOpusEncoder::new(EncoderSettings::default()).expect("encoder");
        assert_eq!(run(&mut fresh), first);
    }

    #[test]
    fn settings_are_validated() {
        assert!(matches!(
            EncoderSettings::new(Some(1000), 5),
            Err(RecordingError::BitrateOutOfRange(1000))
        ));
        assert!(matches!(
            EncoderSettings::new(None, 11),
            Err(RecordingError::ComplexityOutOfRange(11))
        ));
        assert_eq!(
            EncoderSettings::new(None, 10).expect("valid"),
            EncoderSettings {
                bitrate_bps: 12_000,
                complexity: 10
            }
        );
    }
}
