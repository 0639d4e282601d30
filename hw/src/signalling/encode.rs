//! Tone, DTMF and 5-tone selcall encoders at the internal rate (8 kHz, i16).
//!
//! Used by the gateway to call radios and by the simulator to answer. All
//! outputs are phase-continuous within a tone and ramp in and out over 2 ms so
//! they do not splatter on a real transmitter.

use super::dtmf::{dtmf_freqs, DTMF_SYMBOLS};
use super::selcall_tables::{symbol_index, SelcallStandard, REPEAT_INDEX};
use crate::audio::SAMPLE_RATE;

/// Why an encoder refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("symbol {0:?} is not valid here (allowed: {1})")]
    InvalidSymbol(char, &'static str),
    #[error("nothing to encode: the digit string is empty")]
    Empty,
}

/// Longest tone, gap or silence an encoder makes; longer requests are cut
/// to this (a stuck 49-day tone is never what the caller meant).
pub const MAX_MS: u32 = 60_000;

/// Samples for `ms` milliseconds (at most [`MAX_MS`]) at the internal rate.
pub fn samples_for_ms(ms: u32) -> usize {
    (u64::from(ms.min(MAX_MS)) * u64::from(SAMPLE_RATE) / 1000) as usize
}

const RAMP_SAMPLES: usize = 16;

/// Sums sinusoids with their own levels into `out`, ramped at both ends.
fn push_tones(out: &mut Vec<i16>, tones: &[(f32, f32)], n: usize) {
    let ramp = RAMP_SAMPLES.min(n / 4);
    for i in 0..n {
        let t = i as f64 / f64::from(SAMPLE_RATE);
        let mut v = 0.0f64;
        for &(freq, level) in tones {
            v += f64::from(level) * (2.0 * std::f64::consts::PI * f64::from(freq) * t).sin();
        }
        let edge = i.min(n - 1 - i);
        if edge < ramp {
            let x = (edge as f64 + 0.5) / ramp as f64;
            v *= 0.5 - 0.5 * (std::f64::consts::PI * x).cos();
        }
        out.push(to_i16(v));
    }
}

fn to_i16(v: f64) -> i16 {
    (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

fn clamp_amplitude(amplitude: f32) -> f32 {
    if amplitude.is_finite() {
        amplitude.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A single sine tone (alert tones, test tones); `amplitude` is the peak as a
/// fraction of full scale (0.0–1.0).
pub fn tone(freq_hz: f32, ms: u32, amplitude: f32) -> Vec<i16> {
    let n = samples_for_ms(ms);
    let mut out = Vec::with_capacity(n);
    push_tones(&mut out, &[(freq_hz, clamp_amplitude(amplitude))], n);
    out
}

/// Silence of `ms` milliseconds.
pub fn silence(ms: u32) -> Vec<i16> {
    vec![0; samples_for_ms(ms)]
}

/// DTMF digits ('0'–'9', 'A'–'D', '*', '#'; lower-case a–d accepted), each
/// `tone_ms` long followed by `gap_ms` of silence. `amplitude` is the peak of
/// the two-tone sum (each tone at half). Characters outside the DTMF set are
/// skipped; use [`try_dtmf`] to have them rejected instead.
pub fn dtmf(digits: &str, tone_ms: u32, gap_ms: u32, amplitude: f32) -> Vec<i16> {
    let valid: String = digits
        .chars()
        .filter(|c| dtmf_freqs(*c).is_some())
        .collect();
    dtmf_with_twist(&valid, tone_ms, gap_ms, amplitude, 0.0).unwrap_or_default()
}

/// Like [`dtmf`] but rejects characters outside the DTMF set.
pub fn try_dtmf(
    digits: &str,
    tone_ms: u32,
    gap_ms: u32,
    amplitude: f32,
) -> Result<Vec<i16>, EncodeError> {
    dtmf_with_twist(digits, tone_ms, gap_ms, amplitude, 0.0)
}

/// DTMF with twist: `twist_db` > 0 makes the column (high) tone louder than the
/// row tone ("normal" twist), < 0 the row tone louder ("reverse" twist). The
/// louder tone sits at half of `amplitude`.
pub fn dtmf_with_twist(
    digits: &str,
    tone_ms: u32,
    gap_ms: u32,
    amplitude: f32,
    twist_db: f32,
) -> Result<Vec<i16>, EncodeError> {
    let amplitude = clamp_amplitude(amplitude);
    let ratio = 10f32.powf(-twist_db.abs() / 20.0);
    let (row_level, col_level) = if twist_db >= 0.0 {
        (amplitude / 2.0 * ratio, amplitude / 2.0)
    } else {
        (amplitude / 2.0, amplitude / 2.0 * ratio)
    };
    let tone_n = samples_for_ms(tone_ms);
    let gap_n = samples_for_ms(gap_ms);
    let mut out = Vec::with_capacity(digits.len() * (tone_n + gap_n));
    for c in digits.chars() {
        let (row, col) = dtmf_freqs(c).ok_or(EncodeError::InvalidSymbol(c, DTMF_SYMBOLS))?;
        push_tones(&mut out, &[(row, row_level), (col, col_level)], tone_n);
        out.resize(out.len() + gap_n, 0);
    }
    Ok(out)
}

/// Rewrites a selcall digit string for the air: a digit equal to the one
/// before it becomes the repeat tone 'E' ("11233" → "1E23E").
pub fn selcall_symbols(digits: &str) -> Result<String, EncodeError> {
    if digits.is_empty() {
        return Err(EncodeError::Empty);
    }
    let mut out = String::with_capacity(digits.len());
    let mut previous: Option<char> = None;
    for c in digits.chars() {
        let upper = c.to_ascii_uppercase();
        if symbol_index(upper).is_none_or(|i| i == REPEAT_INDEX) {
            return Err(EncodeError::InvalidSymbol(c, "0-9, A-D, F"));
        }
        if previous == Some(upper) {
            out.push('E');
            previous = None;
        } else {
            out.push(upper);
            previous = Some(upper);
        }
    }
    Ok(out)
}

/// A 5-tone (or any length) selcall sequence in `standard`, repeat tones
/// inserted, tones back to back at the standard's length, phase-continuous.
/// `amplitude` is the peak as a fraction of full scale.
pub fn selcall(
    standard: SelcallStandard,
    digits: &str,
    amplitude: f32,
) -> Result<Vec<i16>, EncodeError> {
    let symbols = selcall_symbols(digits)?;
    let amplitude = f64::from(clamp_amplitude(amplitude));
    let tone_n = samples_for_ms(standard.tone_ms());
    // Tone boundaries on an exact grid, should a length not divide evenly.
    let exact_n = f64::from(SAMPLE_RATE) * f64::from(standard.tone_ms()) / 1000.0;
    let total = (exact_n * symbols.len() as f64).round() as usize;
    let mut out = Vec::with_capacity(total.max(tone_n * symbols.len()));
    let mut phase = 0.0f64;
    for (k, c) in symbols.chars().enumerate() {
        let freq = f64::from(standard.tone_of(c).unwrap_or(0.0));
        let start = (exact_n * k as f64).round() as usize;
        let end = (exact_n * (k + 1) as f64).round() as usize;
        let step = 2.0 * std::f64::consts::PI * freq / f64::from(SAMPLE_RATE);
        for _ in start..end {
            out.push(to_i16(amplitude * phase.sin()));
            phase = (phase + step) % (2.0 * std::f64::consts::PI);
        }
    }
    // Ramp the whole sequence in and out; inner boundaries stay continuous.
    let ramp = RAMP_SAMPLES.min(out.len() / 4);
    let n = out.len();
    for i in 0..ramp {
        let g = 0.5 - 0.5 * (std::f64::consts::PI * (i as f64 + 0.5) / ramp as f64).cos();
        out[i] = (f64::from(out[i]) * g).round() as i16;
        out[n - 1 - i] = (f64::from(out[n - 1 - i]) * g).round() as i16;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_tones_are_inserted() {
        assert_eq!(selcall_symbols("11233").unwrap(), "1E23E");
        assert_eq!(selcall_symbols("11111").unwrap(), "1E1E1");
        assert_eq!(selcall_symbols("12345").unwrap(), "12345");
        assert!(matches!(
            selcall_symbols("12E45"),
            Err(EncodeError::InvalidSymbol('E', _))
        ));
        assert_eq!(selcall_symbols(""), Err(EncodeError::Empty));
    }

    #[test]
    fn lengths_follow_the_standard() {
        let ccir = selcall(SelcallStandard::Ccir, "12345", 0.5).unwrap();
        assert_eq!(ccir.len(), 4000);
        let eia = selcall(SelcallStandard::Eia, "12345", 0.5).unwrap();
        assert_eq!(eia.len(), 1320);
        let d = dtmf("12#", 80, 50, 0.5);
        assert_eq!(d.len(), 3 * (640 + 400));
        assert!(try_dtmf("12x", 80, 50, 0.5).is_err());
        assert_eq!(dtmf("1x2", 80, 50, 0.5).len(), 2 * 1040);
    }

    #[test]
    fn amplitude_is_respected() {
        let t = tone(1000.0, 100, 0.5);
        let peak = t.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((16000..=16400).contains(&peak), "{peak}");
        let d = dtmf("5", 100, 0, 1.0);
        assert!(d.iter().all(|s| s.unsigned_abs() <= 32767));
        assert!(tone(1000.0, 10, f32::NAN).iter().all(|&s| s == 0));
        assert_eq!(silence(u32::MAX).len(), samples_for_ms(MAX_MS));
    }
}
