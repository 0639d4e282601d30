//! Shared helpers for the `ogg_*` integration tests: synthetic speech-like
//! audio, temporary directories, and the Debian `opusinfo` / `opusdec` peers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use rollcall_hw::audio::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use rollcall_hw::ogg::{Direction, RecordingTags};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rollcall-ogg-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tags(direction: Direction) -> RecordingTags {
    RecordingTags {
        channel: "command".into(),
        link: "roip-east".into(),
        direction,
        start: UNIX_EPOCH + Duration::from_millis(1_795_000_000_250),
        ani: None,
    }
}

/// Voiced-speech-like audio: a harmonic series on a wandering 100–160 Hz
/// pitch, syllable-rate envelope, a little noise. Deterministic.
pub fn speech_like(frames: usize) -> Vec<AudioFrame> {
    let mut noise_state = 0x1234_5678u32;
    let mut phase = 0.0f64;
    (0..frames)
        .map(|i| {
            let mut frame = AudioFrame::SILENCE;
            for (n, s) in frame.samples.iter_mut().enumerate() {
                let t = (i * FRAME_SAMPLES + n) as f64 / SAMPLE_RATE as f64;
                let f0 = 130.0 + 30.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
                phase += 2.0 * std::f64::consts::PI * f0 / SAMPLE_RATE as f64;
                let mut v = 0.0;
                for k in 1..=20 {
                    let fk = f0 * k as f64;
                    if fk > 3400.0 {
                        break;
                    }
                    // Crude formants near 700 and 1200 Hz.
                    let formant = 1.0
                        + 2.0 * (-((fk - 700.0) / 200.0).powi(2)).exp()
                        + 1.5 * (-((fk - 1200.0) / 250.0).powi(2)).exp();
                    v += formant / k as f64 * (phase * k as f64).sin();
                }
                let envelope = (0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin()).powi(2);
                noise_state = noise_state
                    .wrapping_mul(1_664_525)
                    .wrapping_add(1_013_904_223);
                let noise = (noise_state >> 16) as f64 / 65_536.0 - 0.5;
                *s = (3000.0 * envelope * v + 300.0 * noise).clamp(-32_000.0, 32_000.0) as i16;
            }
            frame
        })
        .collect()
}

/// A steady tone.
pub fn tone(frames: usize, hz: f64, amplitude: f64) -> Vec<AudioFrame> {
    (0..frames)
        .map(|i| {
            let mut frame = AudioFrame::SILENCE;
            for (n, s) in frame.samples.iter_mut().enumerate() {
                let t = (i * FRAME_SAMPLES + n) as f64 / SAMPLE_RATE as f64;
                *s = (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
            }
            frame
        })
        .collect()
}

/// True when `tool` can be run; prints a loud SKIP line when not.
pub fn have_tool(tool: &str) -> bool {
    let ok = Command::new(tool).arg("-h").output().is_ok();
    if !ok {
        eprintln!("SKIP: `{tool}` is not installed (apt-get install opus-tools)");
    }
    ok
}

/// Runs `opusinfo` and fails the test on any warning or error it prints.
/// Returns its output for further checks.
pub fn assert_opusinfo_clean(path: &Path) -> String {
    let out = Command::new("opusinfo")
        .arg(path)
        .output()
        .expect("run opusinfo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lower = text.to_lowercase();
    assert!(
        out.status.success() && !lower.contains("warning") && !lower.contains("error"),
        "opusinfo complains about {}:\n{text}",
        path.display()
    );
    text
}

/// Decodes with `opusdec` to 8 kHz WAV and returns the samples.
pub fn opusdec(path: &Path) -> Vec<i16> {
    let wav = path.with_extension("wav");
    let out = Command::new("opusdec")
        .args(["--quiet", "--rate", "8000"])
        .arg(path)
        .arg(&wav)
        .output()
        .expect("run opusdec");
    assert!(
        out.status.success(),
        "opusdec failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&wav).expect("read decoded wav");
    let _ = std::fs::remove_file(&wav);
    wav_samples(&bytes)
}

/// The 16-bit mono samples of a RIFF/WAVE file (finds the `data` chunk).
pub fn wav_samples(bytes: &[u8]) -> Vec<i16> {
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        let body = at + 8;
        if id == b"fmt " {
            let channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
            let rate = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
            assert_eq!((channels, rate), (1, 8000), "decoded format");
        }
        if id == b"data" {
            let end = (body + len).min(bytes.len());
            return bytes[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        at = body + len + (len & 1);
    }
    panic!("no data chunk in decoded WAV");
}

pub fn duration_ms(samples: usize) -> u64 {
    samples as u64 * 1000 / SAMPLE_RATE as u64
}

pub fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// Power of `samples` at `hz` relative to their total power (Goertzel).
pub fn tone_share(samples: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / SAMPLE_RATE as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f64;
    // A pure sine of RMS r gives power ≈ (n r)² / 2.
    let total: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() * n / 2.0;
    power / total.max(1e-9)
}
