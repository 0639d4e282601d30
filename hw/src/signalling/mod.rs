//! ANI signalling: decoders and encoders for DTMF, 5-tone selcall and MDC1200.
//!
//! Everything here is sans-IO: samples at the internal rate (8 kHz, i16) in,
//! [`AniEvent`]s out; time is the sample count from the start of the stream.
//! [`AniDecoder`] is what a channel runs on its received audio, frame by
//! frame; [`decode_all`] runs the very same decoder over a whole buffer (the
//! `rollcallctl decode` command), so both give the same answers.
//!
//! - [`dtmf`]: per-digit DTMF decoder with Q.24-style limits.
//! - [`selcall`] and [`SelcallStandard`]: 5-tone decoder and tone tables.
//! - [`mdc1200`]: MDC1200 packet format, modulator and decoder.
//! - [`encode`]: DTMF, selcall and plain tone generators.
//! - [`impair`]: noise and FM-channel models for tests and benches.
//!
//! No decoder panics on any input; each keeps at most a few tens of kilobytes
//! of state (mostly correlator tables), bounded whatever the input.

pub mod dtmf;
pub mod encode;
pub mod impair;
pub mod mdc1200;
pub mod selcall;
mod selcall_tables;
mod tonebank;

pub use selcall_tables::{symbol_index, SelcallStandard, REPEAT_INDEX, SYMBOLS};

use crate::ani::{AniEvent, AniKind, AniOp};
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};
use dtmf::{DtmfConfig, DtmfDecoder, DtmfDigit};
use mdc1200::MdcDecoder;
use selcall::SelcallDecoder;

/// A pause this long after a DTMF digit closes the PTT-ID burst.
pub const DTMF_BURST_GAP_MS: u32 = 300;

/// A burst this long is reported even without a pause (radios send up to 8
/// digits; this only bounds memory on an endless DTMF stream).
pub const MAX_DTMF_BURST_DIGITS: usize = 32;

/// Confidence reported for DTMF bursts: checked tones, but no CRC.
const DTMF_CONFIDENCE: f32 = 0.9;

/// Which decoders run on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AniDecoderConfig {
    pub dtmf: bool,
    /// The channel's selcall standard, if it uses selcall.
    pub selcall: Option<SelcallStandard>,
    pub mdc1200: bool,
}

impl Default for AniDecoderConfig {
    fn default() -> Self {
        AniDecoderConfig {
            dtmf: true,
            selcall: None,
            mdc1200: true,
        }
    }
}

#[derive(Debug, Clone)]
struct DtmfBurst {
    digits: String,
    start: u64,
    end: u64,
}

/// All ANI decoders of one channel behind one push interface.
#[derive(Debug, Clone)]
pub struct AniDecoder {
    dtmf: Option<DtmfDecoder>,
    selcall: Option<SelcallDecoder>,
    mdc: Option<MdcDecoder>,
    burst: Option<DtmfBurst>,
    samples_seen: u64,
}

impl AniDecoder {
    pub fn new(config: AniDecoderConfig) -> AniDecoder {
        AniDecoder {
            dtmf: config.dtmf.then(|| DtmfDecoder::new(DtmfConfig::default())),
            selcall: config.selcall.map(SelcallDecoder::new),
            mdc: config.mdc1200.then(MdcDecoder::new),
            burst: None,
            samples_seen: 0,
        }
    }

    /// Samples fed so far (the stream's clock).
    pub fn samples_seen(&self) -> u64 {
        self.samples_seen
    }

    /// Feeds received audio (any chunk size, 8 kHz) and returns the events
    /// completed in it.
    pub fn push(&mut self, samples: &[i16]) -> Vec<AniEvent> {
        self.samples_seen += samples.len() as u64;
        let mut events = Vec::new();
        if let Some(mdc) = &mut self.mdc {
            for (packet, start, end) in mdc.push(samples) {
                events.push(MdcDecoder::to_event(&packet, start, end));
            }
        }
        if let Some(sel) = &mut self.selcall {
            events.extend(sel.push(samples).into_iter().map(selcall_event));
        }
        if let Some(dtmf) = &mut self.dtmf {
            let digits = dtmf.push(samples);
            let busy = dtmf.busy();
            self.add_digits(digits, &mut events);
            let gap = u64::from(DTMF_BURST_GAP_MS) * u64::from(SAMPLE_RATE) / 1000;
            let quiet = self
                .burst
                .as_ref()
                .is_some_and(|b| self.samples_seen.saturating_sub(b.end) >= gap);
            if quiet && !busy {
                self.emit_burst(&mut events);
            }
        }
        sort_by_end(&mut events);
        events
    }

    /// End of transmission: reports any DTMF burst or selcall sequence still
    /// pending. The stream clock keeps running.
    pub fn flush(&mut self) -> Vec<AniEvent> {
        let mut events = Vec::new();
        if let Some(mdc) = &mut self.mdc {
            for (packet, start, end) in mdc.flush() {
                events.push(MdcDecoder::to_event(&packet, start, end));
            }
        }
        if let Some(sel) = &mut self.selcall {
            events.extend(sel.flush().into_iter().map(selcall_event));
        }
        if let Some(dtmf) = &mut self.dtmf {
            let digits = dtmf.flush();
            self.add_digits(digits, &mut events);
            self.emit_burst(&mut events);
        }
        sort_by_end(&mut events);
        events
    }

    fn add_digits(&mut self, digits: Vec<DtmfDigit>, events: &mut Vec<AniEvent>) {
        let gap = u64::from(DTMF_BURST_GAP_MS) * u64::from(SAMPLE_RATE) / 1000;
        for d in digits {
            if self
                .burst
                .as_ref()
                .is_some_and(|b| d.start_sample.saturating_sub(b.end) >= gap)
            {
                self.emit_burst(events);
            }
            if self
                .burst
                .as_ref()
                .is_some_and(|b| b.digits.len() >= MAX_DTMF_BURST_DIGITS)
            {
                self.emit_burst(events);
            }
            match &mut self.burst {
                Some(b) => {
                    b.digits.push(d.digit);
                    b.end = d.end_sample;
                }
                None => {
                    self.burst = Some(DtmfBurst {
                        digits: d.digit.to_string(),
                        start: d.start_sample,
                        end: d.end_sample,
                    })
                }
            }
        }
    }

    fn emit_burst(&mut self, events: &mut Vec<AniEvent>) {
        if let Some(b) = self.burst.take() {
            events.push(AniEvent {
                kind: AniKind::Dtmf,
                unit: b.digits,
                op: AniOp::Identify,
                detail: None,
                start_sample: b.start,
                end_sample: b.end,
                confidence: DTMF_CONFIDENCE,
            });
        }
    }
}

/// Events finished within one push are reported in the order they ended
/// on air, whichever decoder found them.
fn sort_by_end(events: &mut [AniEvent]) {
    events.sort_by_key(|e| e.end_sample);
}

fn selcall_event(s: selcall::SelcallSequence) -> AniEvent {
    AniEvent {
        kind: AniKind::Selcall,
        unit: s.digits,
        op: AniOp::Identify,
        detail: Some(s.standard.as_str().to_string()),
        start_sample: s.start_sample,
        end_sample: s.end_sample,
        confidence: s.confidence,
    }
}

/// Decodes a recording file as `rollcallctl decode` does: a WAV file at any
/// rate, or headerless signed 16-bit little-endian mono when `raw_rate` is
/// given; resampled to 8 kHz, then [`decode_all`].
pub fn decode_recording(
    bytes: &[u8],
    raw_rate: Option<u32>,
    config: &AniDecoderConfig,
) -> Result<Vec<AniEvent>, crate::wav::WavError> {
    let (samples, rate) = match raw_rate {
        Some(rate) => {
            crate::wav::check_rate(rate)?;
            (crate::wav::read_raw_s16le(bytes), rate)
        }
        None => crate::wav::read_wav(bytes)?,
    };
    let internal = crate::wav::resample_to_internal(&samples, rate);
    Ok(decode_all(&internal, config))
}

/// Runs an [`AniDecoder`] over a whole recording at 8 kHz, in 20 ms frames as
/// a channel would, then flushes it: the same events, in the same order, as
/// the daemon reports for the same audio.
pub fn decode_all(samples: &[i16], config: &AniDecoderConfig) -> Vec<AniEvent> {
    let mut decoder = AniDecoder::new(config.clone());
    let mut events = Vec::new();
    for frame in samples.chunks(FRAME_SAMPLES) {
        events.extend(decoder.push(frame));
    }
    events.extend(decoder.flush());
    events
}

#[cfg(test)]
mod tests;
