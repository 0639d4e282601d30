//! The internal audio frame: 20 ms of mono signed 16-bit PCM at [`SAMPLE_RATE`].
//!
//! 8 kHz suits FM voice (300–3000 Hz) and G.711 RoIP without resampling, and it
//! keeps per-channel Opus encode cost low. Resampling happens only at the edges
//! (sound cards, Opus at 48 kHz timestamps).

/// The one internal sample rate, in Hz.
pub const SAMPLE_RATE: u32 = 8_000;
/// Frame length in milliseconds.
pub const FRAME_MS: u32 = 20;
/// Samples in one frame.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE * FRAME_MS / 1000) as usize;

/// One 20 ms frame of audio at the internal rate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AudioFrame {
    pub samples: [i16; FRAME_SAMPLES],
}

impl AudioFrame {
    /// A frame of silence.
    pub const SILENCE: AudioFrame = AudioFrame {
        samples: [0; FRAME_SAMPLES],
    };

    /// Builds a frame from up to [`FRAME_SAMPLES`] samples, padding with silence.
    pub fn from_slice(samples: &[i16]) -> AudioFrame {
        let mut frame = AudioFrame::SILENCE;
        let n = samples.len().min(FRAME_SAMPLES);
        frame.samples[..n].copy_from_slice(&samples[..n]);
        frame
    }

    /// Root-mean-square level in dBFS (−∞ for silence is clamped to −120).
    pub fn level_dbfs(&self) -> f32 {
        let sum: f64 = self.samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
        let rms = (sum / FRAME_SAMPLES as f64).sqrt();
        if rms < 1e-9 {
            -120.0
        } else {
            (20.0 * (rms / 32768.0).log10()) as f32
        }
    }
}

impl Default for AudioFrame {
    fn default() -> Self {
        AudioFrame::SILENCE
    }
}

impl std::fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AudioFrame({:.1} dBFS)", self.level_dbfs())
    }
}

/// Splits a sample stream into frames; a trailing partial frame is kept until
/// more samples arrive.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<i16>,
}

impl Framer {
    pub fn new() -> Self {
        Framer::default()
    }

    /// Appends samples and returns every complete frame.
    pub fn push(&mut self, samples: &[i16]) -> Vec<AudioFrame> {
        self.pending.extend_from_slice(samples);
        let whole = self.pending.len() / FRAME_SAMPLES;
        let frames = self
            .pending
            .chunks_exact(FRAME_SAMPLES)
            .map(AudioFrame::from_slice)
            .collect();
        self.pending.drain(..whole * FRAME_SAMPLES);
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_keeps_partial_frames() {
        let mut framer = Framer::new();
        assert!(framer.push(&[1; 100]).is_empty());
        let frames = framer.push(&[2; 300]);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].samples[99], 1);
        assert_eq!(frames[0].samples[100], 2);
        assert_eq!(framer.push(&[3; 80]).len(), 1);
    }

    #[test]
    fn silence_level_is_clamped() {
        assert_eq!(AudioFrame::SILENCE.level_dbfs(), -120.0);
        let loud = AudioFrame::from_slice(&[i16::MAX; FRAME_SAMPLES]);
        assert!(loud.level_dbfs() > -0.1);
    }
}
