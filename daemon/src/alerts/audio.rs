//! The audio an alert sends on the radio: an attention tone, a short gap,
//! then the optional voice clip, all 8 kHz mono i16 (the internal format).
//!
//! The clip reader takes PCM16 WAV at 8 kHz (mono, or stereo mixed down).
//! Other rates are refused with a message saying how to convert; once the
//! `sig` branch's `rollcall_hw::wav::{read_wav, resample_to_internal}` is on
//! main, `load_clip` should use it and accept any rate.

use std::path::Path;

/// The internal sample rate.
pub const RATE: u32 = 8000;
/// Longest clip accepted (a transmit time-out would cut it anyway).
pub const MAX_CLIP_S: u32 = 120;

/// A sine tone with 10 ms raised-cosine ramps (no key clicks).
pub fn tone(freq_hz: u32, ms: u32, amplitude: f32) -> Vec<i16> {
    let n = (RATE as usize * ms as usize) / 1000;
    let ramp = (RATE as usize / 100).min(n / 2).max(1);
    let amp = amplitude.clamp(0.0, 1.0) * f32::from(i16::MAX);
    (0..n)
        .map(|i| {
            let edge = i.min(n - 1 - i);
            let gain = if edge < ramp {
                0.5 - 0.5 * (std::f32::consts::PI * edge as f32 / ramp as f32).cos()
            } else {
                1.0
            };
            let phase = 2.0 * std::f32::consts::PI * freq_hz as f32 * i as f32 / RATE as f32;
            (amp * gain * phase.sin()) as i16
        })
        .collect()
}

/// Tone, 300 ms gap, clip.
pub fn compose(tone_hz: u32, tone_ms: u32, clip: Option<&[i16]>) -> Vec<i16> {
    let mut out = tone(tone_hz, tone_ms, 0.5);
    if let Some(clip) = clip {
        out.extend(std::iter::repeat_n(0, RATE as usize * 3 / 10));
        out.extend_from_slice(clip);
    }
    out
}

/// Reads a PCM16 WAV clip at 8 kHz; stereo is mixed to mono.
pub fn load_clip(path: &Path) -> Result<Vec<i16>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    parse_wav(&bytes)
}

/// Parses a PCM16 WAV held in memory (see [`load_clip`]). Never panics.
pub fn parse_wav(bytes: &[u8]) -> Result<Vec<i16>, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body_start = pos + 8;
        let body_end = body_start.saturating_add(len).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " if body.len() >= 16 => {
                let u16le = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                fmt = Some((u16le(0), u16le(2), rate, u16le(14)));
            }
            b"data" => {
                let (format, channels, rate, bits) =
                    fmt.ok_or("data chunk before the fmt chunk")?;
                if format != 1 || bits != 16 {
                    return Err(format!(
                        "only 16-bit PCM is read (format {format}, {bits} bits); convert with `sox in.wav -b 16 -r 8000 -c 1 out.wav`"
                    ));
                }
                if rate != RATE {
                    return Err(format!(
                        "sample rate {rate} Hz; clips must be {RATE} Hz (convert with `sox in.wav -r 8000 -c 1 out.wav`)"
                    ));
                }
                if channels == 0 || channels > 2 {
                    return Err(format!("{channels} channels; mono or stereo only"));
                }
                let frame = 2 * channels as usize;
                let frames = body.len() / frame;
                if frames > (MAX_CLIP_S * RATE) as usize {
                    return Err(format!("clip longer than {MAX_CLIP_S} s"));
                }
                return Ok(body
                    .chunks_exact(frame)
                    .map(|f| {
                        let l = i16::from_le_bytes([f[0], f[1]]) as i32;
                        if channels == 2 {
                            let r = i16::from_le_bytes([f[2], f[3]]) as i32;
                            ((l + r) / 2) as i16
                        } else {
                            l as i16
                        }
                    })
                    .collect());
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body_start.saturating_add(len).saturating_add(len & 1);
    }
    Err("no data chunk".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        let data_len = (samples.len() * 2) as u32;
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
        v.extend_from_slice(&(2 * channels).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    }

    #[test]
    fn reads_mono_and_mixes_stereo() {
        assert_eq!(
            parse_wav(&wav(8000, 1, &[1, -2, 300])).unwrap(),
            [1, -2, 300]
        );
        assert_eq!(
            parse_wav(&wav(8000, 2, &[10, 20, -4, 0])).unwrap(),
            [15, -2]
        );
    }

    #[test]
    fn refuses_what_it_cannot_read_without_panicking() {
        assert!(parse_wav(&wav(48000, 1, &[0; 4]))
            .unwrap_err()
            .contains("8000"));
        assert!(parse_wav(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(parse_wav(b"junk").is_err());
        let mut truncated = wav(8000, 1, &[1, 2, 3]);
        truncated.truncate(30);
        assert!(parse_wav(&truncated).is_err());
        for cut in 0..44 {
            let _ = parse_wav(&wav(8000, 1, &[5; 10])[..cut]);
        }
    }

    #[test]
    fn tone_has_the_right_length_and_frequency() {
        let t = tone(1000, 500, 0.5);
        assert_eq!(t.len(), 4000);
        // Zero crossings: 2 per cycle, 500 cycles.
        let crossings = t.windows(2).filter(|w| (w[0] >= 0) != (w[1] >= 0)).count();
        assert!((995..=1002).contains(&crossings), "{crossings}");
        assert!(t.iter().map(|s| s.unsigned_abs()).max().unwrap() > 16000);
        let c = compose(1000, 100, Some(&[7; 10]));
        assert_eq!(c.len(), 800 + 2400 + 10);
        assert_eq!(&c[c.len() - 10..], &[7; 10]);
    }
}
