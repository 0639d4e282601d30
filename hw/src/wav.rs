//! WAV and raw file reading (RIFF/WAVE, PCM 8/16/24/32-bit integer and 32/64-bit
//! float, any channel count, mixed down to mono) and band-limited resampling
//! to the internal rate.
//!
//! Parsing is pure over a byte slice and never panics: anything that is not a
//! WAV file, is truncated, or uses an encoding we do not read is a
//! [`WavError`] naming what was wrong.

use crate::audio::SAMPLE_RATE;

/// Why a file could not be read as audio.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a WAV file: no RIFF/WAVE header")]
    NotWav,
    #[error("truncated WAV file: {0}")]
    Truncated(&'static str),
    #[error("WAV file has no {0} chunk")]
    MissingChunk(&'static str),
    #[error("unsupported WAV encoding: format tag {format:#06x} with {bits} bits per sample (PCM 8/16/24/32-bit or float 32/64-bit only)")]
    Unsupported { format: u16, bits: u16 },
    #[error("invalid WAV format: {0}")]
    Invalid(&'static str),
}

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[derive(Debug, Clone, Copy)]
struct Format {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

/// Reads a WAV file: returns its samples mixed down to mono and its rate.
pub fn read_wav(bytes: &[u8]) -> Result<(Vec<i16>, u32), WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let mut pos = 12;
    let mut format: Option<Format> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let declared = u32_at(bytes, pos + 4).ok_or(WavError::Truncated("chunk header"))? as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let fmt = bytes
                .get(body..body.saturating_add(declared))
                .ok_or(WavError::Truncated("fmt chunk"))?;
            format = Some(parse_format(fmt)?);
        } else if id == b"data" {
            let format = format.ok_or(WavError::MissingChunk("fmt (before data)"))?;
            let available = bytes.len() - body;
            // Streaming writers leave the size at 0 or all ones: read to EOF.
            let len = if declared == 0 || declared == u32::MAX as usize {
                available
            } else if declared > available {
                return Err(WavError::Truncated(
                    "data chunk shorter than its header says",
                ));
            } else {
                declared
            };
            let samples = decode_samples(&bytes[body..body + len], format)?;
            return Ok((samples, format.rate));
        }
        // Chunks are padded to an even length.
        pos = body.saturating_add(declared).saturating_add(declared & 1);
    }
    Err(if format.is_none() {
        WavError::MissingChunk("fmt")
    } else {
        WavError::MissingChunk("data")
    })
}

/// Sample rates we read: below 4 kHz there is no voice band to decode, and
/// resampling a hostile 1 Hz file to 8 kHz would multiply its size by 8000.
pub const RATES: std::ops::RangeInclusive<u32> = 4_000..=768_000;

/// Checks a sample rate (e.g. the `--rate` of a raw file) against [`RATES`].
pub fn check_rate(rate: u32) -> Result<(), WavError> {
    if RATES.contains(&rate) {
        Ok(())
    } else {
        Err(WavError::Invalid("sample rate must be 4 kHz to 768 kHz"))
    }
}

fn parse_format(fmt: &[u8]) -> Result<Format, WavError> {
    let (Some(mut tag), Some(channels), Some(rate), Some(bits)) = (
        u16_at(fmt, 0),
        u16_at(fmt, 2),
        u32_at(fmt, 4),
        u16_at(fmt, 14),
    ) else {
        return Err(WavError::Truncated("fmt chunk"));
    };
    if tag == FORMAT_EXTENSIBLE {
        // The real format is the first two bytes of the sub-format GUID.
        tag = u16_at(fmt, 24).ok_or(WavError::Truncated("extensible fmt chunk"))?;
    }
    if channels == 0 {
        return Err(WavError::Invalid("zero channels"));
    }
    check_rate(rate)?;
    let supported = matches!(
        (tag, bits),
        (FORMAT_PCM, 8 | 16 | 24 | 32) | (FORMAT_FLOAT, 32 | 64)
    );
    if !supported {
        return Err(WavError::Unsupported { format: tag, bits });
    }
    Ok(Format {
        tag,
        channels,
        rate,
        bits,
    })
}

fn decode_samples(data: &[u8], f: Format) -> Result<Vec<i16>, WavError> {
    let width = usize::from(f.bits / 8);
    let frame = width * usize::from(f.channels);
    let frames = data.len() / frame;
    let mut out = Vec::with_capacity(frames);
    for chunk in data.chunks_exact(frame) {
        let mut sum = 0.0f64;
        for s in chunk.chunks_exact(width) {
            sum += sample_value(s, f.tag);
        }
        let mono = sum / f64::from(f.channels);
        out.push((mono * 32768.0).round().clamp(-32768.0, 32767.0) as i16);
    }
    Ok(out)
}

/// One sample as a fraction of full scale (−1.0 to just under 1.0).
fn sample_value(s: &[u8], tag: u16) -> f64 {
    match (tag, s.len()) {
        (FORMAT_PCM, 1) => (f64::from(s[0]) - 128.0) / 128.0,
        (FORMAT_PCM, 2) => f64::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0,
        (FORMAT_PCM, 3) => f64::from(i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) / 8_388_608.0,
        (FORMAT_PCM, 4) => {
            f64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])) / 2_147_483_648.0
        }
        (FORMAT_FLOAT, 4) => finite(f64::from(f32::from_le_bytes([s[0], s[1], s[2], s[3]]))),
        (FORMAT_FLOAT, 8) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(s);
            finite(f64::from_le_bytes(b))
        }
        _ => 0.0,
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// Reads headerless audio: signed 16-bit little-endian mono (the `--rate`
/// form of `rollcallctl decode`). A trailing odd byte is ignored.
pub fn read_raw_s16le(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Writes 16-bit mono PCM WAV bytes (for tests, tools and exports).
pub fn write_wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&FORMAT_PCM.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Kernel half-width in zero crossings of the (narrower) cut-off.
const ZERO_CROSSINGS: usize = 16;
/// Sub-sample positions the polyphase table resolves.
const PHASES: usize = 256;

/// Resamples from `rate` to the internal 8 kHz with a Kaiser-windowed sinc
/// (cut-off at 90 % of the lower Nyquist frequency, ~80 dB stop band): 44.1k,
/// 48k, 16k, 11.025k and any other rate. A rate of 8000 returns the input.
pub fn resample_to_internal(samples: &[i16], rate: u32) -> Vec<i16> {
    resample(samples, rate, SAMPLE_RATE)
}

/// Band-limited resampling between any two rates (see [`resample_to_internal`]).
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || from == 0 || to == 0 || samples.is_empty() {
        return samples.to_vec();
    }
    let ratio = f64::from(to) / f64::from(from);
    // Cut-off relative to the input rate's Nyquist.
    let cutoff = 0.9 * ratio.min(1.0);
    let half_taps = ((ZERO_CROSSINGS as f64 / cutoff).ceil() as usize).max(1);
    let taps = 2 * half_taps;
    let beta = 8.0;
    let i0_beta = bessel_i0(beta);
    // table[p][k]: weight of input sample (floor(t) - half_taps + 1 + k) for
    // an output time t whose fractional part is p / PHASES.
    let mut table = vec![0.0f32; (PHASES + 1) * taps];
    for p in 0..=PHASES {
        let frac = p as f64 / PHASES as f64;
        for k in 0..taps {
            let x = k as f64 - (half_taps as f64 - 1.0) - frac;
            let sinc = if x.abs() < 1e-12 {
                1.0
            } else {
                (std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * cutoff * x)
            };
            let r = x / half_taps as f64;
            let window = if r.abs() >= 1.0 {
                0.0
            } else {
                bessel_i0(beta * (1.0 - r * r).sqrt()) / i0_beta
            };
            table[p * taps + k] = (cutoff * sinc * window) as f32;
        }
    }
    let out_len = ((samples.len() as f64) * ratio).floor() as usize;
    let mut out = Vec::with_capacity(out_len);
    let step = f64::from(from) / f64::from(to);
    for n in 0..out_len {
        let t = n as f64 * step;
        let base = t.floor() as i64;
        let phase = ((t - base as f64) * PHASES as f64).round() as usize;
        let weights = &table[phase * taps..(phase + 1) * taps];
        let first = base - half_taps as i64 + 1;
        let mut acc = 0.0f32;
        for (k, &w) in weights.iter().enumerate() {
            let idx = first + k as i64;
            if idx >= 0 && (idx as usize) < samples.len() {
                acc += w * f32::from(samples[idx as usize]);
            }
        }
        out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..50 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        let align = channels * bits / 8;
        out.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        out.extend_from_slice(&align.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        // An unrelated chunk with odd length and padding, to be skipped.
        out.extend_from_slice(b"LIST");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&[1, 2, 3, 0]);
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_every_sample_format_and_mixes_down() {
        let s16: Vec<u8> = [1000i16, -1000, 32767, -32768]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(
            read_wav(&header(1, 1, 8000, 16, &s16)).unwrap(),
            (vec![1000, -1000, 32767, -32768], 8000)
        );
        let u8s = [128u8, 255, 0];
        assert_eq!(
            read_wav(&header(1, 1, 11025, 8, &u8s)).unwrap().0,
            vec![0, 32512, -32768]
        );
        let s24 = [0x00, 0x10, 0x00, 0x00, 0xF0, 0xFF];
        assert_eq!(
            read_wav(&header(1, 1, 8000, 24, &s24)).unwrap().0,
            vec![16, -16]
        );
        let s32: Vec<u8> = [0x4000_0000i32, i32::MIN]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(
            read_wav(&header(1, 1, 8000, 32, &s32)).unwrap().0,
            vec![16384, -32768]
        );
        let f32s: Vec<u8> = [0.5f32, -0.25, f32::NAN, 7.0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(
            read_wav(&header(3, 1, 48000, 32, &f32s)).unwrap(),
            (vec![16384, -8192, 0, 32767], 48000)
        );
        // Stereo: left and right averaged.
        let st: Vec<u8> = [1000i16, 3000, -2000, 0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(
            read_wav(&header(1, 2, 44100, 16, &st)).unwrap().0,
            vec![2000, -1000]
        );
        assert_eq!(read_raw_s16le(&[1, 0, 0xff, 0xff, 7]), vec![1, -1]);
        // Round trip through our writer.
        assert_eq!(
            read_wav(&write_wav(&[1, -2, 3], 16000)).unwrap(),
            (vec![1, -2, 3], 16000)
        );
    }

    #[test]
    fn clear_errors_for_bad_files() {
        assert_eq!(read_wav(b"hello world, not audio"), Err(WavError::NotWav));
        assert_eq!(read_wav(b""), Err(WavError::NotWav));
        assert!(matches!(
            read_wav(&header(1, 1, 1, 16, &[0; 10])),
            Err(WavError::Invalid(_))
        ));
        let good = header(1, 1, 8000, 16, &[0; 100]);
        assert!(matches!(
            read_wav(&good[..good.len() - 10]),
            Err(WavError::Truncated(_))
        ));
        assert!(matches!(read_wav(&good[..30]), Err(WavError::Truncated(_))));
        assert_eq!(read_wav(&good[..36]), Err(WavError::MissingChunk("data")));
        assert!(matches!(
            read_wav(&header(2, 1, 8000, 4, &[0; 10])),
            Err(WavError::Unsupported { format: 2, bits: 4 })
        ));
        assert!(matches!(
            read_wav(&header(1, 0, 8000, 16, &[0; 10])),
            Err(WavError::Invalid(_))
        ));
        assert!(matches!(
            read_wav(&header(1, 1, 0, 16, &[0; 10])),
            Err(WavError::Invalid(_))
        ));
        let msg = read_wav(b"RIFF\0\0\0\0WAVE").unwrap_err().to_string();
        assert_eq!(msg, "WAV file has no fmt chunk");
    }

    fn tone(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    .round() as i16
            })
            .collect()
    }

    fn power_at(samples: &[i16], freq: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in samples.iter().enumerate() {
            let w = 2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0;
            re += f64::from(s) * w.cos();
            im += f64::from(s) * w.sin();
        }
        (re * re + im * im).sqrt() * 2.0 / samples.len() as f64
    }

    #[test]
    fn resampler_keeps_the_passband_and_removes_aliases() {
        for rate in [44_100, 48_000, 16_000, 11_025, 22_050] {
            let input = tone(1000.0, rate, 0.5, 10000.0);
            let out = resample_to_internal(&input, rate);
            assert!(out.len().abs_diff(4000) <= 1, "{rate}: {}", out.len());
            let mid = &out[400..3600];
            let a = power_at(mid, 1000.0);
            assert!((a - 10000.0).abs() < 200.0, "{rate}: amplitude {a}");
            // A 5 kHz tone would alias to 3 kHz: it must be stopped.
            if rate > 10_000 {
                let alias = resample_to_internal(&tone(5000.0, rate, 0.5, 10000.0), rate);
                let leak = power_at(&alias[400..3600], 3000.0);
                assert!(leak < 10.0, "{rate}: alias {leak}");
            }
        }
        assert_eq!(resample_to_internal(&[1, 2, 3], 8000), vec![1, 2, 3]);
        assert!(resample_to_internal(&[], 44_100).is_empty());
    }
}
