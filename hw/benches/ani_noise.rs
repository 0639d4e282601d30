//! Noise-robustness table: detection rate and false detections of our ANI
//! decoders next to multimon-ng's, on the same generated corpus, at SNR 20,
//! 10, 6, 3 and 0 dB; plus false detections on ≥ 10 minutes of espeak-ng
//! speech. Prints a markdown table (also written to `$BENCH_OUT/ani_noise.md`).
//!
//! Corpus: per standard and SNR, `TRIALS` calls with random digits, each
//! between 200 ms and 400 ms of quiet, passed through the FM-channel model
//! (300–3000 Hz, de-emphasis tilt), then white noise over the whole 0–4 kHz
//! band at the given SNR (signal power while it sounds over noise power).
//! multimon-ng gets the very same 8 kHz samples as a WAV file. Scoring: the
//! decoded items (DTMF digits, selcall sequences, MDC1200 unit ids) are
//! aligned in order with the sent ones (longest common subsequence): aligned
//! items are detections, every other reported item is a false detection.
//!
//! `ANI_NOISE_TRIALS` overrides the trial count (default 50);
//! `ANI_NOISE_VERBOSE=1` lists our false detections on speech.

use rollcall_hw::ani::AniKind;
use rollcall_hw::signalling::impair::{add_noise, fm_channel, Noise};
use rollcall_hw::signalling::mdc1200::{self, MdcPacket};
use rollcall_hw::signalling::{decode_all, encode, AniDecoderConfig, SelcallStandard};
use rollcall_hw::wav;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const SNRS: [f64; 5] = [20.0, 10.0, 6.0, 3.0, 0.0];
const SPEECH_SECONDS: f64 = 630.0;

#[derive(Clone, Copy, PartialEq)]
enum Standard {
    Dtmf,
    Selcall(SelcallStandard, &'static str),
    Mdc,
}

impl Standard {
    fn name(self) -> String {
        match self {
            Standard::Dtmf => "DTMF (digits)".into(),
            Standard::Selcall(s, _) => format!("{} (5-tone)", s.as_str().to_uppercase()),
            Standard::Mdc => "MDC1200 (packets)".into(),
        }
    }
    fn config(self) -> AniDecoderConfig {
        match self {
            Standard::Dtmf => AniDecoderConfig {
                dtmf: true,
                selcall: None,
                mdc1200: false,
            },
            Standard::Selcall(s, _) => AniDecoderConfig {
                dtmf: false,
                selcall: Some(s),
                mdc1200: false,
            },
            Standard::Mdc => AniDecoderConfig {
                dtmf: false,
                selcall: None,
                mdc1200: true,
            },
        }
    }
}

struct Score {
    sent: usize,
    detected: usize,
    false_hits: usize,
}

fn lcs(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut prev = 0;
        for (j, y) in b.iter().enumerate() {
            let keep = row[j + 1];
            row[j + 1] = if x == y {
                prev + 1
            } else {
                row[j + 1].max(row[j])
            };
            prev = keep;
        }
    }
    row[b.len()]
}

fn score(sent: &[String], got: &[String]) -> Score {
    let detected = lcs(sent, got);
    Score {
        sent: sent.len(),
        detected,
        false_hits: got.len() - detected,
    }
}

fn random_digits(rng: &mut Noise, alphabet: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| {
            alphabet[(rng.next_f64() * alphabet.len() as f64) as usize % alphabet.len()] as char
        })
        .collect()
}

/// Builds the clean corpus and the list of items a perfect decoder reports.
fn corpus(standard: Standard, trials: usize, seed: u64) -> (Vec<i16>, Vec<String>) {
    let mut rng = Noise::new(seed);
    let mut audio = Vec::new();
    let mut items = Vec::new();
    for _ in 0..trials {
        audio.extend(encode::silence(200));
        match standard {
            Standard::Dtmf => {
                let digits = random_digits(&mut rng, b"0123456789ABCD*#", 4);
                audio.extend(encode::dtmf(&digits, 70, 70, 0.5));
                items.extend(digits.chars().map(String::from));
            }
            Standard::Selcall(s, _) => {
                let digits = random_digits(&mut rng, b"0123456789", 5);
                audio.extend(encode::selcall(s, &digits, 0.5).unwrap_or_default());
                items.push(digits);
            }
            Standard::Mdc => {
                let unit = (rng.next_f64() * 65536.0) as u16;
                let phase = rng.next_f64() * std::f64::consts::TAU;
                let bits = mdc1200::burst_bits(&MdcPacket::ptt_id_pre(unit));
                audio.extend(mdc1200::modulate(&bits, 0.5, phase));
                items.push(format!("{unit:04X}"));
            }
        }
        audio.extend(encode::silence(400));
    }
    (fm_channel(&audio), items)
}

fn ours(standard: Standard, audio: &[i16]) -> Vec<String> {
    let events = decode_all(audio, &standard.config());
    match standard {
        Standard::Dtmf => events
            .iter()
            .filter(|e| e.kind == AniKind::Dtmf)
            .flat_map(|e| e.unit.chars().map(String::from).collect::<Vec<_>>())
            .collect(),
        _ => events.into_iter().map(|e| e.unit).collect(),
    }
}

struct Temp(PathBuf);
impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_wav(samples: &[i16], tag: &str) -> Temp {
    let path = std::env::temp_dir().join(format!(
        "rollcall-ani-noise-{}-{tag}.wav",
        std::process::id()
    ));
    std::fs::write(&path, wav::write_wav(samples, 8000)).expect("write temp WAV");
    Temp(path)
}

/// multimon-ng's report per demodulator: DTMF as single digits, selcall as
/// sequences with repeat tones resolved.
fn multimon(demods: &[&str], samples: &[i16]) -> Option<Vec<(String, String)>> {
    let file = temp_wav(samples, "mm");
    let mut cmd = Command::new("multimon-ng");
    cmd.args(["-q", "-c"]);
    for d in demods {
        cmd.args(["-a", d]);
    }
    let out = cmd.args(["-t", "wav"]).arg(&file.0).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Selcall lines have no reliable newline: split on every "NAME: ".
    let mut found = Vec::new();
    let mut rest = text.as_str();
    loop {
        let next = demods
            .iter()
            .filter_map(|d| rest.find(&format!("{d}: ")).map(|at| (at, *d)))
            .min();
        let Some((at, demod)) = next else { break };
        rest = &rest[at + demod.len() + 2..];
        let end = demods
            .iter()
            .filter_map(|d| rest.find(&format!("{d}: ")))
            .min()
            .unwrap_or(rest.len());
        let body = rest[..end].trim();
        if demod == "DTMF" {
            found.extend(
                body.chars()
                    .filter(|c| !c.is_whitespace())
                    .map(|c| (demod.to_string(), c.to_string())),
            );
        } else if !body.is_empty() {
            found.push((demod.to_string(), resolve_repeats(body)));
        }
        rest = &rest[end..];
    }
    Some(found)
}

fn resolve_repeats(symbols: &str) -> String {
    let mut out = String::new();
    for c in symbols.chars() {
        match (c, out.chars().last()) {
            ('E', Some(prev)) => out.push(prev),
            _ => out.push(c),
        }
    }
    out
}

fn multimon_items(standard: Standard, audio: &[i16]) -> Option<Vec<String>> {
    let demod = match standard {
        Standard::Dtmf => "DTMF",
        Standard::Selcall(_, d) => d,
        Standard::Mdc => return None,
    };
    Some(
        multimon(&[demod], audio)?
            .into_iter()
            .map(|(_, item)| item)
            .collect(),
    )
}

fn pct(s: &Score) -> String {
    format!("{:.1} %", 100.0 * s.detected as f64 / s.sent.max(1) as f64)
}

/// At least `SPEECH_SECONDS` of espeak-ng speech in several voices, at 8 kHz
/// through the FM-channel model.
fn speech() -> Option<Vec<i16>> {
    let voices = [
        "en-us", "en-us+f3", "en+m3", "de", "es", "ru", "cmn", "fr+f2",
    ];
    let words = [
        "unit",
        "seven",
        "report",
        "position",
        "gate",
        "north",
        "clear",
        "over",
        "copy",
        "guard",
        "patrol",
        "station",
        "three",
        "five",
        "nine",
        "zero",
        "eleven",
        "checkpoint",
        "vehicle",
        "entrance",
        "roger",
        "all",
        "units",
        "standby",
        "on",
        "my",
        "way",
        "at",
        "the",
        "east",
        "wall",
        "suspicious",
        "person",
        "near",
        "parking",
        "lot",
        "B",
        "confirm",
        "visitor",
        "badge",
        "alarm",
        "reset",
        "shift",
        "change",
        "morning",
        "roll",
        "call",
        "present",
        "calling",
        "control",
        "this",
        "is",
        "tower",
        "one",
        "two",
        "four",
        "six",
        "eight",
        "hundred",
        "radio",
        "check",
        "loud",
        "and",
        "clear",
        "negative",
        "affirmative",
    ];
    let mut rng = Noise::new(99);
    let mut total: Vec<i16> = Vec::new();
    let mut part = 0;
    while (total.len() as f64) < SPEECH_SECONDS * 8000.0 {
        let voice = voices[part % voices.len()];
        let speed = 140 + (rng.next_f64() * 60.0) as u32;
        let pitch = 30 + (rng.next_f64() * 40.0) as u32;
        let text: Vec<&str> = (0..180)
            .map(|i| {
                let w = words[(rng.next_f64() * words.len() as f64) as usize % words.len()];
                if i % 9 == 8 {
                    "over."
                } else {
                    w
                }
            })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "rollcall-ani-speech-{}-{part}.wav",
            std::process::id()
        ));
        let tmp = Temp(path);
        let status = Command::new("espeak-ng")
            .args([
                "-v",
                voice,
                "-s",
                &speed.to_string(),
                "-p",
                &pitch.to_string(),
                "-w",
            ])
            .arg(&tmp.0)
            .arg(text.join(" "))
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        let bytes = std::fs::read(&tmp.0).ok()?;
        let (samples, rate) = wav::read_wav(&bytes).ok()?;
        total.extend(wav::resample_to_internal(&samples, rate));
        part += 1;
    }
    // Normalise to a typical radio level (peaks near −6 dBFS).
    let peak = total
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap_or(1)
        .max(1);
    let gain = 16384.0 / f64::from(peak);
    let scaled: Vec<i16> = total
        .iter()
        .map(|&s| (f64::from(s) * gain) as i16)
        .collect();
    Some(fm_channel(&scaled))
}

fn main() {
    let started = Instant::now();
    let trials: usize = std::env::var("ANI_NOISE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let have_multimon = Command::new("multimon-ng").arg("-h").output().is_ok();
    if !have_multimon {
        eprintln!("SKIP: multimon-ng is not installed; its columns are left empty");
    }
    let standards = [
        Standard::Dtmf,
        Standard::Selcall(SelcallStandard::Ccir, "CCIR"),
        Standard::Selcall(SelcallStandard::Zvei1, "ZVEI1"),
        Standard::Selcall(SelcallStandard::Eea, "EEA"),
        Standard::Selcall(SelcallStandard::Eia, "EIA"),
        Standard::Mdc,
    ];
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## ANI decoders in noise ({trials} calls per row, FM-channel audio + white noise)\n"
    );
    let _ = writeln!(md, "| standard | SNR | sent | ours detected | multimon-ng detected | ours false | multimon-ng false |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for (k, standard) in standards.iter().enumerate() {
        let (clean, sent) = corpus(*standard, trials, 1000 + k as u64);
        for (j, snr) in SNRS.iter().enumerate() {
            let noisy = add_noise(&clean, *snr, 77 + 10 * k as u64 + j as u64);
            let o = score(&sent, &ours(*standard, &noisy));
            let m = if have_multimon {
                multimon_items(*standard, &noisy).map(|got| score(&sent, &got))
            } else {
                None
            };
            let (m_det, m_false) = match &m {
                Some(s) => (pct(s), s.false_hits.to_string()),
                None => ("—".into(), "—".into()),
            };
            let _ = writeln!(
                md,
                "| {} | {snr} dB | {} | {} | {m_det} | {} | {m_false} |",
                standard.name(),
                o.sent,
                pct(&o),
                o.false_hits
            );
        }
    }
    match speech() {
        Some(speech) => {
            let minutes = speech.len() as f64 / 8000.0 / 60.0;
            let _ = writeln!(md, "\n## False detections on {minutes:.1} minutes of espeak-ng speech (FM-channel audio)\n");
            let _ = writeln!(md, "| decoder | ours | multimon-ng |");
            let _ = writeln!(md, "|---|---:|---:|");
            let theirs = if have_multimon {
                multimon(&["DTMF", "CCIR", "ZVEI1", "EEA", "EIA"], &speech)
            } else {
                None
            };
            let verbose = std::env::var_os("ANI_NOISE_VERBOSE").is_some();
            for standard in standards {
                if verbose {
                    for e in decode_all(&speech, &standard.config()) {
                        eprintln!(
                            "speech false {:?} {:?} at {:.2} s, {} ms",
                            e.kind,
                            e.unit,
                            e.start_sample as f64 / 8000.0,
                            (e.end_sample - e.start_sample) / 8
                        );
                    }
                }
                let ours_false = ours(standard, &speech).len();
                let theirs_false = match (standard, &theirs) {
                    (Standard::Dtmf, Some(t)) => {
                        t.iter().filter(|(d, _)| d == "DTMF").count().to_string()
                    }
                    (Standard::Selcall(_, name), Some(t)) => {
                        t.iter().filter(|(d, _)| d == name).count().to_string()
                    }
                    _ => "—".into(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {ours_false} | {theirs_false} |",
                    standard.name()
                );
            }
        }
        None => eprintln!("SKIP: espeak-ng is not installed; no speech row"),
    }
    let _ = writeln!(
        md,
        "\n(bench ran in {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!("{md}");
    if let Ok(dir) = std::env::var("BENCH_OUT") {
        let path = PathBuf::from(dir).join("ani_noise.md");
        if let Err(e) = std::fs::write(&path, &md) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}
