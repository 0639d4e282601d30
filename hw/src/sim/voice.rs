//! Synthetic voice-like audio and a single-tone detector for the simulator.
//!
//! The voice is a glottal-pulse-like harmonic series (pitch 100–220 Hz with
//! slow drift) shaped by two moving formant bumps and a 4–5 Hz syllable
//! envelope, plus a little breath noise: enough to look like speech to VOX,
//! level meters and codecs, and nothing like a DTMF or selcall tone. All
//! randomness comes from the caller's seeded RNG.

use rand::Rng;

use crate::audio::SAMPLE_RATE;

/// `ms` of voice-like audio at the internal rate, peak about `amplitude`
/// (0.0–1.0 of full scale).
pub fn synthetic_voice<R: Rng>(rng: &mut R, ms: u32, amplitude: f32) -> Vec<i16> {
    let n = (SAMPLE_RATE as u64 * ms as u64 / 1000) as usize;
    let rate = SAMPLE_RATE as f32;
    let base_pitch: f32 = rng.random_range(100.0..220.0);
    let syllable_rate: f32 = rng.random_range(3.5..5.5);
    let formant1: f32 = rng.random_range(400.0..800.0);
    let formant2: f32 = rng.random_range(1100.0..2200.0);
    let mut phase = 0.0f32;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f32 / rate;
        let pitch = base_pitch * (1.0 + 0.08 * (2.0 * std::f32::consts::PI * 0.7 * t).sin());
        phase += pitch / rate;
        phase -= phase.floor();
        // Harmonics weighted by two formant bumps that wander slowly.
        let f1 = formant1 * (1.0 + 0.2 * (2.0 * std::f32::consts::PI * 1.3 * t).sin());
        let f2 = formant2 * (1.0 + 0.1 * (2.0 * std::f32::consts::PI * 0.9 * t).cos());
        let mut s = 0.0f32;
        let mut k = 1;
        while (k as f32) * pitch < 3400.0 {
            let f = k as f32 * pitch;
            let w = (-((f - f1) / 250.0).powi(2)).exp() + 0.5 * (-((f - f2) / 350.0).powi(2)).exp();
            s += w * (2.0 * std::f32::consts::PI * k as f32 * phase).sin();
            k += 1;
        }
        // Syllables: raised-cosine envelope with short gaps.
        let env = (0.5 - 0.5 * (2.0 * std::f32::consts::PI * syllable_rate * t).cos()).powf(0.7);
        let breath: f32 = rng.random_range(-0.02..0.02);
        out.push(((s * 0.35 * env + breath) * amplitude * 32767.0).clamp(-32767.0, 32767.0) as i16);
    }
    out
}

/// Goertzel power of one frequency in a block, relative to the block's
/// total power (0.0–1.0): how much of the block is that tone.
pub fn tone_fraction(samples: &[i16], freq_hz: f32) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f32::consts::PI * freq_hz / SAMPLE_RATE as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    let mut energy = 0.0f32;
    for &x in samples {
        let x = x as f32;
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if energy <= 0.0 {
        return 0.0;
    }
    (2.0 * power / (samples.len() as f32 * energy)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioFrame;
    use rand::SeedableRng;

    #[test]
    fn voice_is_repeatable_loud_enough_and_not_a_tone() {
        let a = synthetic_voice(&mut rand::rngs::StdRng::seed_from_u64(7), 1000, 0.5);
        let b = synthetic_voice(&mut rand::rngs::StdRng::seed_from_u64(7), 1000, 0.5);
        assert_eq!(a, b);
        assert_eq!(a.len(), 8000);
        let level = AudioFrame::from_slice(&a[800..960]).level_dbfs();
        assert!(level > -35.0, "{level}");
        for f in [697.0, 1209.0, 1981.0] {
            assert!(tone_fraction(&a, f) < 0.2);
        }
    }

    #[test]
    fn tone_fraction_finds_a_pure_tone() {
        let tone: Vec<i16> = (0..160)
            .map(|n| {
                (8000.0 * (2.0 * std::f32::consts::PI * 1750.0 * n as f32 / 8000.0).sin()) as i16
            })
            .collect();
        assert!(tone_fraction(&tone, 1750.0) > 0.9);
        assert!(tone_fraction(&tone, 1000.0) < 0.05);
        assert_eq!(tone_fraction(&[], 1000.0), 0.0);
    }
}
