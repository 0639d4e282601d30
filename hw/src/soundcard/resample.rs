//! Sample-rate conversion at the sound-card edge, sans-IO.
//!
//! Downsampling: a windowed-sinc low-pass at the input rate (cut-off 45 % of
//! the output rate), then linear interpolation. Upsampling: zero-stuffing by
//! the integer factor `L = ceil(to / from)` with the same low-pass at `L ×
//! from`, then linear interpolation to the exact rate (8 kHz → 48 kHz needs
//! none). Interpolating only between closely spaced samples keeps its
//! high-frequency droop negligible, so DTMF and selcall tones keep their
//! level. A 127-tap Blackman filter keeps aliasing below about −40 dB. State
//! carries across calls, so buffers of any size can be fed.

use std::f32::consts::PI;

const TAPS: usize = 127;

#[derive(Debug, Clone)]
struct LowPass {
    taps: Vec<f32>,
    /// History stored twice so the newest `TAPS` samples are always one
    /// contiguous slice.
    history: Vec<f32>,
    head: usize,
}

impl LowPass {
    /// Low-pass at `cutoff` Hz for a signal sampled at `rate` Hz, with DC
    /// gain `gain`.
    fn new(cutoff: f32, rate: f32, gain: f32) -> LowPass {
        let fc = cutoff / rate;
        let mid = (TAPS - 1) as f32 / 2.0;
        let mut taps: Vec<f32> = (0..TAPS)
            .map(|n| {
                let x = n as f32 - mid;
                let sinc = if x == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * PI * fc * x).sin() / (PI * x)
                };
                let phase = 2.0 * PI * n as f32 / (TAPS - 1) as f32;
                let blackman = 0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos();
                sinc * blackman
            })
            .collect();
        let sum: f32 = taps.iter().sum();
        for t in taps.iter_mut() {
            *t *= gain / sum;
        }
        LowPass {
            taps,
            history: vec![0.0; 2 * TAPS],
            head: 0,
        }
    }

    fn filter(&mut self, x: f32) -> f32 {
        self.history[self.head] = x;
        self.history[self.head + TAPS] = x;
        self.head = (self.head + 1) % TAPS;
        // The filter is symmetric, so tap order against history order does
        // not matter.
        self.history[self.head..self.head + TAPS]
            .iter()
            .zip(&self.taps)
            .map(|(h, t)| h * t)
            .sum()
    }
}

/// Linear interpolation between two rates.
#[derive(Debug, Clone)]
struct Linear {
    step: f64,
    /// Position of the next output sample, in input samples after `previous`.
    position: f64,
    previous: f32,
}

impl Linear {
    fn push(&mut self, current: f32, out: &mut Vec<i16>) {
        while self.position < 1.0 {
            let y = self.previous + (current - self.previous) * self.position as f32;
            out.push(y.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16);
            self.position += self.step;
        }
        self.position -= 1.0;
        self.previous = current;
    }
}

/// Converts a mono i16 stream from one rate to another.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Identity when the rates match.
    passthrough: bool,
    /// Upsampling factor (1 when downsampling).
    factor: u32,
    low_pass: LowPass,
    linear: Linear,
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Resampler {
        let from = from.max(1);
        let to = to.max(1);
        let factor = to.div_ceil(from).max(1);
        let inner = from * factor;
        let low_pass = if to < from {
            LowPass::new(0.45 * to as f32, from as f32, 1.0)
        } else {
            LowPass::new(0.45 * from as f32, inner as f32, factor as f32)
        };
        Resampler {
            passthrough: from == to,
            factor,
            low_pass,
            linear: Linear {
                step: inner as f64 / to as f64,
                position: 0.0,
                previous: 0.0,
            },
        }
    }

    /// Converts `input`, appending the output samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.passthrough {
            out.extend_from_slice(input);
            return;
        }
        for &sample in input {
            let y = self.low_pass.filter(sample as f32);
            self.linear.push(y, out);
            for _ in 1..self.factor {
                let y = self.low_pass.filter(0.0);
                self.linear.push(y, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (10000.0 * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
                    as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Amplitude of `freq` in `x` by correlation.
    fn tone_amplitude(x: &[i16], freq: f32, rate: u32) -> f64 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &s) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * freq as f64 * i as f64 / rate as f64;
            re += s as f64 * ph.cos();
            im += s as f64 * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    #[test]
    fn downsampling_keeps_voice_band_and_count() {
        let mut r = Resampler::new(48_000, 8_000);
        let input = sine(1000.0, 48_000, 48_000);
        let mut out = Vec::new();
        // Feed in odd-sized chunks: state must carry over.
        for chunk in input.chunks(333) {
            r.process(chunk, &mut out);
        }
        assert!((out.len() as i64 - 8000).abs() <= 1, "{}", out.len());
        let a = tone_amplitude(&out[400..], 1000.0, 8000);
        assert!((a - 10000.0).abs() < 500.0, "amplitude {a}");
    }

    #[test]
    fn downsampling_rejects_what_would_alias() {
        let mut r = Resampler::new(48_000, 8_000);
        // 7 kHz would fold to 1 kHz at 8 kHz.
        let mut out = Vec::new();
        r.process(&sine(7000.0, 48_000, 48_000), &mut out);
        assert!(rms(&out[400..]) < 100.0, "alias rms {}", rms(&out[400..]));
    }

    #[test]
    fn upsampling_keeps_voice_band() {
        let mut r = Resampler::new(8_000, 44_100);
        let mut out = Vec::new();
        for chunk in sine(1000.0, 8000, 8000).chunks(160) {
            r.process(chunk, &mut out);
        }
        assert!((out.len() as i64 - 44_100).abs() <= 1, "{}", out.len());
        let a = tone_amplitude(&out[2000..], 1000.0, 44_100);
        assert!((a - 10000.0).abs() < 500.0, "amplitude {a}");
    }
}
