//! A bank of short-time DFT correlators at fixed frequencies, evaluated over
//! back-to-back half-blocks, shared by the DTMF and selcall decoders.
//!
//! Each half-block yields one complex value per tone plus the half-block's
//! energy. Two adjacent half-blocks make one analysis block (50 % overlap from
//! one block to the next), and the phase advance between them measures the
//! tone's real frequency to a few hertz: that is what lets the decoders reject
//! off-frequency tones that a magnitude-only Goertzel would accept.

use crate::audio::SAMPLE_RATE;

/// Complex number small enough to keep inline.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Cplx {
    pub re: f32,
    pub im: f32,
}

impl Cplx {
    pub fn norm_sqr(self) -> f32 {
        self.re * self.re + self.im * self.im
    }
    pub fn mul(self, o: Cplx) -> Cplx {
        Cplx {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    pub fn conj(self) -> Cplx {
        Cplx {
            re: self.re,
            im: -self.im,
        }
    }
    pub fn add(self, o: Cplx) -> Cplx {
        Cplx {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    pub fn arg(self) -> f32 {
        self.im.atan2(self.re)
    }
}

/// One analysis block's measurements for every tone.
#[derive(Debug, Clone)]
pub(crate) struct BlockAnalysis {
    /// Energy-equivalent power of each tone over the block: a pure sinusoid
    /// of power `S` gives `S * block_len`, the same scale as `energy`.
    pub power: Vec<f32>,
    /// Sum of squared samples over the block.
    pub energy: f32,
    /// Phase advance between the block's halves times the first half's
    /// magnitude, per tone: sum these to average a frequency estimate.
    pub phase_step: Vec<Cplx>,
    /// Sample index (from stream start) just past the block's last sample.
    pub end_sample: u64,
}

/// Correlates incoming samples with fixed tones over half-blocks of `half`
/// samples and reports an analysis of every full block (two halves).
#[derive(Debug, Clone)]
pub(crate) struct ToneBank {
    freqs: Vec<f32>,
    half: usize,
    /// cos/sin tables per tone, `half` entries each, tone-major.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Rotation that undoes a tone's nominal advance over one half-block.
    nominal_step: Vec<Cplx>,
    acc: Vec<Cplx>,
    acc_energy: f32,
    pos: usize,
    prev: Option<(Vec<Cplx>, f32)>,
    samples_seen: u64,
    dc_last_in: f32,
    dc_last_out: f32,
    scratch: Vec<f32>,
}

const DC_POLE: f32 = 0.995;

impl ToneBank {
    pub fn new(freqs: &[f32], half: usize) -> ToneBank {
        let half = half.max(1);
        let mut cos = Vec::with_capacity(freqs.len() * half);
        let mut sin = Vec::with_capacity(freqs.len() * half);
        let mut nominal_step = Vec::with_capacity(freqs.len());
        for &f in freqs {
            let w = 2.0 * std::f64::consts::PI * f64::from(f) / f64::from(SAMPLE_RATE);
            for i in 0..half {
                cos.push((w * i as f64).cos() as f32);
                sin.push((w * i as f64).sin() as f32);
            }
            let adv = w * half as f64;
            nominal_step.push(Cplx {
                re: adv.cos() as f32,
                im: -adv.sin() as f32,
            });
        }
        ToneBank {
            freqs: freqs.to_vec(),
            half,
            cos,
            sin,
            nominal_step,
            acc: vec![Cplx::default(); freqs.len()],
            acc_energy: 0.0,
            pos: 0,
            prev: None,
            samples_seen: 0,
            dc_last_in: 0.0,
            dc_last_out: 0.0,
            scratch: Vec::with_capacity(half),
        }
    }

    /// Samples in one analysis block.
    pub fn block_len(&self) -> usize {
        2 * self.half
    }

    /// Samples between analyses.
    pub fn hop(&self) -> usize {
        self.half
    }

    /// Converts a summed `phase_step` into a frequency offset in Hz.
    pub fn offset_hz(&self, step: Cplx) -> f32 {
        if step.norm_sqr() <= 0.0 {
            return f32::INFINITY;
        }
        step.arg() * SAMPLE_RATE as f32 / (2.0 * std::f32::consts::PI * self.half as f32)
    }

    /// Feeds samples; calls `on_block` for every completed analysis block.
    pub fn push(&mut self, samples: &[i16], mut on_block: impl FnMut(&BlockAnalysis)) {
        let ntones = self.freqs.len();
        let mut analysis = BlockAnalysis {
            power: vec![0.0; ntones],
            energy: 0.0,
            phase_step: vec![Cplx::default(); ntones],
            end_sample: 0,
        };
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.half - self.pos).min(rest.len());
            let (raw, tail) = rest.split_at(take);
            rest = tail;
            // DC blocker (one pole at ~6 Hz): an offset from a sound card
            // would otherwise count as energy that no tone carries.
            self.scratch.clear();
            for &x in raw {
                let x = f32::from(x);
                let y = x - self.dc_last_in + DC_POLE * self.dc_last_out;
                self.dc_last_in = x;
                self.dc_last_out = y;
                self.scratch.push(y);
            }
            let chunk = &self.scratch[..];
            for (t, acc) in self.acc.iter_mut().enumerate() {
                let base = t * self.half + self.pos;
                let cos = &self.cos[base..base + take];
                let sin = &self.sin[base..base + take];
                // Accumulate straight into the running sums so results are
                // bit-identical however the stream is chunked.
                let (mut re, mut im) = (acc.re, acc.im);
                for ((&x, &c), &s) in chunk.iter().zip(cos).zip(sin) {
                    re += x * c;
                    im -= x * s;
                }
                acc.re = re;
                acc.im = im;
            }
            for &x in chunk {
                self.acc_energy += x * x;
            }
            self.pos += take;
            self.samples_seen += take as u64;
            if self.pos == self.half {
                self.pos = 0;
                let current = std::mem::replace(&mut self.acc, vec![Cplx::default(); ntones]);
                let energy = std::mem::take(&mut self.acc_energy);
                if let Some((prev, prev_energy)) = self.prev.take() {
                    let block = (2 * self.half) as f32;
                    for t in 0..ntones {
                        // Second half rotated back by the nominal advance: a
                        // tone exactly on frequency adds in phase.
                        let second = current[t].mul(self.nominal_step[t]);
                        let sum = prev[t].add(second);
                        analysis.power[t] = 2.0 * sum.norm_sqr() / block;
                        analysis.phase_step[t] = second.mul(prev[t].conj());
                    }
                    analysis.energy = prev_energy + energy;
                    analysis.end_sample = self.samples_seen;
                    on_block(&analysis);
                }
                self.prev = Some((current, energy));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, amp: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f32::consts::PI * freq * i as f32 / 8000.0).sin()).round() as i16
            })
            .collect()
    }

    #[test]
    fn power_matches_energy_for_a_pure_tone_and_offset_is_measured() {
        let mut bank = ToneBank::new(&[1000.0, 1500.0], 53);
        let mut blocks = Vec::new();
        bank.push(&sine(1012.0, 10000.0, 1000), |b| blocks.push(b.clone()));
        assert_eq!(blocks.len(), 1000 / 53 - 1);
        for b in &blocks {
            let ratio = b.power[0] / b.energy;
            assert!(ratio > 0.9 && ratio < 1.05, "{ratio}");
            assert!(b.power[1] / b.energy < 0.05);
            let off = bank.offset_hz(b.phase_step[0]);
            assert!((off - 12.0).abs() < 1.5, "{off}");
        }
    }

    #[test]
    fn chunking_does_not_change_results() {
        let signal = sine(700.0, 5000.0, 2000);
        let mut a = ToneBank::new(&[697.0], 53);
        let mut b = ToneBank::new(&[697.0], 53);
        let mut ra = Vec::new();
        let mut rb = Vec::new();
        a.push(&signal, |x| ra.push(x.power[0]));
        for chunk in signal.chunks(7) {
            b.push(chunk, |x| rb.push(x.power[0]));
        }
        assert_eq!(ra.len(), rb.len());
        assert_eq!(ra, rb);
    }
}
