//! Payload codecs for RoIP: PCMU, PCMA (RFC 3551) and Opus (RFC 7587), each
//! turning one RTP payload into one internal [`AudioFrame`] and back, with
//! loss concealment.
//!
//! Opus runs libopus at the internal 8 kHz (narrowband) while RTP timestamps
//! advance at 48 kHz as RFC 7587 requires: 960 ticks per 20 ms. G.711 loss is
//! concealed by repeating the last frame with a 6 dB fade per lost frame,
//! then silence; Opus uses its own PLC.

use crate::audio::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};

use super::g711;

/// A RoIP payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "name")]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
    /// Opus with the dynamic payload type negotiated out of band (96–127).
    Opus { pt: u8 },
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::Opus { pt } => pt,
        }
    }

    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => SAMPLE_RATE,
            Codec::Opus { .. } => 48_000,
        }
    }

    /// RTP timestamp ticks per 20 ms frame.
    pub fn ticks_per_frame(self) -> u32 {
        self.clock_rate() / 50
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::Opus { .. } => "opus",
        }
    }
}

/// Why a codec could not be set up or a payload not decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    #[error("{codec} payload of {len} bytes, expected {expected}")]
    BadLength {
        codec: &'static str,
        len: usize,
        expected: usize,
    },
}

/// Decodes payloads of one codec, keeping the state concealment needs.
pub struct PayloadDecoder {
    codec: Codec,
    opus: Option<opus::Decoder>,
    last: AudioFrame,
    lost_in_row: u32,
}

impl std::fmt::Debug for PayloadDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadDecoder")
            .field("codec", &self.codec)
            .finish()
    }
}

impl PayloadDecoder {
    pub fn new(codec: Codec) -> Result<PayloadDecoder, CodecError> {
        let opus = match codec {
            Codec::Opus { .. } => Some(opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?),
            _ => None,
        };
        Ok(PayloadDecoder {
            codec,
            opus,
            last: AudioFrame::SILENCE,
            lost_in_row: 0,
        })
    }

    /// Decodes one 20 ms payload. A G.711 payload of another length is
    /// truncated or padded to one frame rather than rejected (some boxes
    /// send 10 ms trailing packets).
    pub fn decode(&mut self, payload: &[u8]) -> Result<AudioFrame, CodecError> {
        let frame = match (self.codec, self.opus.as_mut()) {
            (Codec::Pcmu, _) => g711_frame(payload, g711::ulaw_decode, "pcmu")?,
            (Codec::Pcma, _) => g711_frame(payload, g711::alaw_decode, "pcma")?,
            (Codec::Opus { .. }, Some(dec)) => {
                if payload.is_empty() {
                    return Err(CodecError::BadLength {
                        codec: "opus",
                        len: 0,
                        expected: 1,
                    });
                }
                // Room for 120 ms, the largest Opus packet; keep the first frame.
                let mut out = [0i16; FRAME_SAMPLES * 6];
                let n = dec.decode(payload, &mut out, false)?;
                AudioFrame::from_slice(&out[..n.min(FRAME_SAMPLES)])
            }
            (Codec::Opus { .. }, None) => AudioFrame::SILENCE,
        };
        self.last = frame;
        self.lost_in_row = 0;
        Ok(frame)
    }

    /// A frame to play in place of a lost packet.
    pub fn conceal(&mut self) -> AudioFrame {
        self.lost_in_row += 1;
        if let Some(dec) = self.opus.as_mut() {
            let mut out = [0i16; FRAME_SAMPLES];
            if let Ok(n) = dec.decode(&[], &mut out, false) {
                return AudioFrame::from_slice(&out[..n.min(FRAME_SAMPLES)]);
            }
            return AudioFrame::SILENCE;
        }
        // Repeat the last frame, 6 dB quieter each time; silence after 5.
        if self.lost_in_row > 5 {
            return AudioFrame::SILENCE;
        }
        let shift = self.lost_in_row;
        let mut frame = self.last;
        for s in frame.samples.iter_mut() {
            *s >>= shift;
        }
        frame
    }
}

fn g711_frame(
    payload: &[u8],
    decode: fn(u8) -> i16,
    codec: &'static str,
) -> Result<AudioFrame, CodecError> {
    if payload.is_empty() {
        return Err(CodecError::BadLength {
            codec,
            len: 0,
            expected: FRAME_SAMPLES,
        });
    }
    let mut frame = AudioFrame::SILENCE;
    for (out, &b) in frame.samples.iter_mut().zip(payload) {
        *out = decode(b);
    }
    Ok(frame)
}

/// Encodes internal frames into payloads of one codec.
pub struct PayloadEncoder {
    codec: Codec,
    opus: Option<opus::Encoder>,
}

impl std::fmt::Debug for PayloadEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadEncoder")
            .field("codec", &self.codec)
            .finish()
    }
}

impl PayloadEncoder {
    pub fn new(codec: Codec) -> Result<PayloadEncoder, CodecError> {
        let opus = match codec {
            Codec::Opus { .. } => {
                let mut enc =
                    opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
                enc.set_bitrate(opus::Bitrate::Bits(16_000))?;
                enc.set_complexity(5)?;
                Some(enc)
            }
            _ => None,
        };
        Ok(PayloadEncoder { codec, opus })
    }

    pub fn encode(&mut self, frame: &AudioFrame) -> Result<Vec<u8>, CodecError> {
        Ok(match (self.codec, self.opus.as_mut()) {
            (Codec::Pcmu, _) => frame
                .samples
                .iter()
                .map(|&s| g711::ulaw_encode(s))
                .collect(),
            (Codec::Pcma, _) => frame
                .samples
                .iter()
                .map(|&s| g711::alaw_encode(s))
                .collect(),
            (Codec::Opus { .. }, Some(enc)) => enc.encode_vec(&frame.samples, 400)?,
            (Codec::Opus { .. }, None) => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, amplitude: f32) -> Vec<AudioFrame> {
        let samples: Vec<i16> = (0..FRAME_SAMPLES * 25)
            .map(|n| {
                (amplitude * (2.0 * std::f32::consts::PI * freq * n as f32 / 8000.0).sin()) as i16
            })
            .collect();
        samples
            .chunks(FRAME_SAMPLES)
            .map(AudioFrame::from_slice)
            .collect()
    }

    fn snr_db(reference: &[i16], decoded: &[i16]) -> f64 {
        let sig: f64 = reference.iter().map(|&s| (s as f64).powi(2)).sum();
        let noise: f64 = reference
            .iter()
            .zip(decoded)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum();
        10.0 * (sig / noise.max(1.0)).log10()
    }

    #[test]
    fn g711_round_trips_a_tone() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut enc = PayloadEncoder::new(codec).unwrap();
            let mut dec = PayloadDecoder::new(codec).unwrap();
            for frame in tone(1000.0, 8000.0) {
                let payload = enc.encode(&frame).unwrap();
                assert_eq!(payload.len(), 160);
                let out = dec.decode(&payload).unwrap();
                assert!(snr_db(&frame.samples, &out.samples) > 30.0, "{codec:?}");
            }
        }
    }

    #[test]
    fn opus_round_trips_a_tone_and_conceals() {
        let codec = Codec::Opus { pt: 111 };
        assert_eq!(codec.ticks_per_frame(), 960);
        let mut enc = PayloadEncoder::new(codec).unwrap();
        let mut dec = PayloadDecoder::new(codec).unwrap();
        let frames = tone(700.0, 8000.0);
        let mut decoded = Vec::new();
        for frame in &frames {
            let payload = enc.encode(frame).unwrap();
            assert!(!payload.is_empty() && payload.len() < 100);
            decoded.extend_from_slice(&dec.decode(&payload).unwrap().samples);
        }
        // Compare energy (Opus delays and reshapes the waveform).
        let tail = &decoded[decoded.len() - FRAME_SAMPLES * 5..];
        let level = AudioFrame::from_slice(tail).level_dbfs();
        assert!(level > -20.0, "decoded level {level}");
        let plc = dec.conceal();
        assert!(plc.level_dbfs() > -40.0, "PLC continues the tone");
        assert!(dec.decode(&[]).is_err());
    }

    #[test]
    fn g711_concealment_fades_to_silence() {
        let mut dec = PayloadDecoder::new(Codec::Pcmu).unwrap();
        let frame = tone(500.0, 10000.0)[1];
        let mut enc = PayloadEncoder::new(Codec::Pcmu).unwrap();
        let played = dec.decode(&enc.encode(&frame).unwrap()).unwrap();
        let first = dec.conceal();
        assert!((first.level_dbfs() - (played.level_dbfs() - 6.0)).abs() < 0.5);
        let levels: Vec<f32> = (0..6).map(|_| dec.conceal().level_dbfs()).collect();
        assert!(levels.windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(levels[5], -120.0);
    }
}
