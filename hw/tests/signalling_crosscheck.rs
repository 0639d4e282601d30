//! Cross-checks our DTMF and selcall decoders and encoders against
//! independent tools: audio made by `sox` is decoded by `multimon-ng` and by
//! us with the same result, and multimon-ng accepts what our encoders make.
//! Also runs sox-made audio at 22.05/44.1 kHz through our WAV reader and
//! resampler, the path `rollcallctl decode` takes.

use rollcall_hw::ani::AniKind;
use rollcall_hw::signalling::{decode_all, encode, AniDecoderConfig, SelcallStandard};
use rollcall_hw::wav;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok();
    if !ok {
        eprintln!("SKIP: {tool} is not installed");
    }
    ok
}

/// A temp file path unique to this process and call, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(ext: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TempFile(
            std::env::temp_dir().join(format!("rollcall-xcheck-{}-{n}.{ext}", std::process::id())),
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs sox with `args` after `-n -r RATE -c 1 -b 16 OUT` and reads the WAV.
fn sox(rate: u32, effects: &str) -> (Vec<i16>, u32) {
    let out = TempFile::new("wav");
    let mut cmd = Command::new("sox");
    cmd.args(["-n", "-r", &rate.to_string(), "-c", "1", "-b", "16"])
        .arg(&out.0);
    cmd.args(effects.split_whitespace());
    let status = cmd.status().expect("sox runs");
    assert!(status.success(), "sox {effects}");
    let bytes = std::fs::read(&out.0).expect("sox wrote its output");
    wav::read_wav(&bytes).expect("sox output is a WAV file")
}

/// Decodes 8 kHz samples with multimon-ng's `demod`; returns its stdout.
fn multimon(demod: &str, samples: &[i16]) -> String {
    let file = TempFile::new("wav");
    std::fs::write(&file.0, wav::write_wav(samples, 8000)).expect("temp file");
    let out = Command::new("multimon-ng")
        .args(["-q", "-c", "-a", demod, "-t", "wav"])
        .arg(&file.0)
        .output()
        .expect("multimon-ng runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn multimon_dtmf(samples: &[i16]) -> String {
    multimon("DTMF", samples)
        .lines()
        .filter_map(|l| l.strip_prefix("DTMF: "))
        .collect::<Vec<_>>()
        .concat()
}

/// multimon-ng prints each selcall sequence as "NAME: 1E23E"; returns them
/// with repeat tones resolved, as our decoder reports them.
fn multimon_selcall(demod: &str, samples: &[i16]) -> Vec<String> {
    let text = multimon(demod, samples);
    text.split(&format!("{demod}: "))
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(resolve_repeats)
        .collect()
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

fn our_dtmf(samples: &[i16]) -> String {
    decode_all(samples, &AniDecoderConfig::default())
        .into_iter()
        .filter(|e| e.kind == AniKind::Dtmf)
        .map(|e| e.unit)
        .collect()
}

fn our_selcall(standard: SelcallStandard, samples: &[i16]) -> Vec<String> {
    let config = AniDecoderConfig {
        dtmf: false,
        selcall: Some(standard),
        mdc1200: false,
    };
    decode_all(samples, &config)
        .into_iter()
        .map(|e| {
            assert_eq!(e.detail.as_deref(), Some(standard.as_str()));
            e.unit
        })
        .collect()
}

fn sox_dtmf_effects(digits: &str, tone_s: f64, gap_s: f64) -> String {
    let chains: Vec<String> = digits
        .chars()
        .map(|c| {
            let (row, col) = rollcall_hw::signalling::dtmf::dtmf_freqs(c).expect("DTMF digit");
            format!("synth {tone_s} sin {row} sin {col} remix - vol 0.4 pad 0 {gap_s}")
        })
        .collect();
    frame_chains(chains)
}

/// Joins effect chains (sox plays them one after another) with 200 ms of
/// silence before the first and 400 ms after the last.
fn frame_chains(mut chains: Vec<String>) -> String {
    if let Some(first) = chains.first_mut() {
        first.push_str(" pad 0.2 0");
    }
    if let Some(last) = chains.last_mut() {
        last.push_str(" pad 0 0.4");
    }
    chains.join(" : ")
}

fn sox_selcall_effects(standard: SelcallStandard, digits: &str) -> String {
    let symbols = encode::selcall_symbols(digits).expect("valid selcall digits");
    let secs = f64::from(standard.tone_ms()) / 1000.0;
    let chains: Vec<String> = symbols
        .chars()
        .map(|c| {
            format!(
                "synth {secs} sin {} vol 0.5",
                standard.tone_of(c).expect("table symbol")
            )
        })
        .collect();
    frame_chains(chains)
}

const MULTIMON_SELCALL: [(SelcallStandard, &str); 4] = [
    (SelcallStandard::Ccir, "CCIR"),
    (SelcallStandard::Zvei1, "ZVEI1"),
    (SelcallStandard::Eea, "EEA"),
    (SelcallStandard::Eia, "EIA"),
];

#[test]
fn sox_dtmf_decodes_the_same_in_multimon_and_ours() {
    if !have("sox") || !have("multimon-ng") {
        return;
    }
    for (digits, tone, gap) in [
        ("0123456789", 0.08, 0.06),
        ("ABCD*#", 0.07, 0.05),
        ("1155", 0.05, 0.05),
    ] {
        let (samples, rate) = sox(8000, &sox_dtmf_effects(digits, tone, gap));
        assert_eq!(rate, 8000);
        assert_eq!(multimon_dtmf(&samples), digits, "multimon-ng on sox audio");
        assert_eq!(our_dtmf(&samples), digits, "ours on sox audio");
    }
}

#[test]
fn our_dtmf_encoder_is_accepted_by_multimon() {
    if !have("multimon-ng") {
        return;
    }
    let digits = "0123456789ABCD*#";
    let mut samples = encode::silence(200);
    samples.extend(encode::dtmf(digits, 70, 60, 0.6));
    samples.extend(encode::silence(400));
    assert_eq!(multimon_dtmf(&samples), digits);
    assert_eq!(our_dtmf(&samples), digits);
}

#[test]
fn sox_selcall_decodes_the_same_in_multimon_and_ours() {
    if !have("sox") || !have("multimon-ng") {
        return;
    }
    for (standard, demod) in MULTIMON_SELCALL {
        for digits in ["12345", "11233", "90817"] {
            let (samples, _) = sox(8000, &sox_selcall_effects(standard, digits));
            let theirs = multimon_selcall(demod, &samples);
            let ours = our_selcall(standard, &samples);
            assert_eq!(theirs, [digits], "multimon-ng {demod} on sox audio");
            assert_eq!(ours, theirs, "ours vs multimon-ng, {demod} {digits}");
        }
    }
}

#[test]
fn our_selcall_encoder_is_accepted_by_multimon() {
    if !have("multimon-ng") {
        return;
    }
    for (standard, demod) in MULTIMON_SELCALL {
        for digits in ["12345", "55555", "20406"] {
            let mut samples = encode::silence(200);
            samples.extend(encode::selcall(standard, digits, 0.5).expect("valid digits"));
            samples.extend(encode::silence(400));
            assert_eq!(
                multimon_selcall(demod, &samples),
                [digits],
                "{demod} {digits}"
            );
            assert_eq!(
                our_selcall(standard, &samples),
                [digits],
                "ours {demod} {digits}"
            );
        }
    }
}

#[test]
fn sox_audio_at_other_rates_decodes_through_wav_and_resampler() {
    if !have("sox") {
        return;
    }
    for rate in [22_050u32, 44_100, 48_000, 16_000, 11_025] {
        let (samples, got_rate) = sox(rate, &sox_dtmf_effects("2468#", 0.07, 0.06));
        assert_eq!(got_rate, rate);
        let internal = wav::resample_to_internal(&samples, rate);
        assert_eq!(our_dtmf(&internal), "2468#", "{rate} Hz");
        let (samples, _) = sox(rate, &sox_selcall_effects(SelcallStandard::Eia, "31337"));
        let internal = wav::resample_to_internal(&samples, rate);
        assert_eq!(
            our_selcall(SelcallStandard::Eia, &internal),
            ["31337"],
            "{rate} Hz"
        );
    }
}

/// Resamples 8 kHz audio to `rate` with sox (an independent resampler).
fn sox_resample(samples: &[i16], rate: u32) -> Vec<i16> {
    let input = TempFile::new("wav");
    let output = TempFile::new("wav");
    std::fs::write(&input.0, wav::write_wav(samples, 8000)).expect("temp file");
    let status = Command::new("sox")
        .arg(&input.0)
        .args(["-r", &rate.to_string()])
        .arg(&output.0)
        .status()
        .expect("sox runs");
    assert!(status.success());
    let (out, got_rate) =
        wav::read_wav(&std::fs::read(&output.0).expect("sox output")).expect("WAV");
    assert_eq!(got_rate, rate);
    out
}

#[test]
fn mdc1200_survives_a_round_trip_through_sox_resampling() {
    use rollcall_hw::ani::AniOp;
    use rollcall_hw::signalling::mdc1200::{self, MdcPacket};
    if !have("sox") {
        return;
    }
    let mut samples = encode::silence(100);
    samples.extend(mdc1200::encode(&MdcPacket::ptt_id_pre(0x1234), 0.5));
    samples.extend(encode::silence(300));
    samples.extend(mdc1200::encode(&MdcPacket::emergency(0xABCD), 0.5));
    samples.extend(encode::silence(100));
    for rate in [44_100u32, 48_000, 16_000] {
        let back = wav::resample_to_internal(&sox_resample(&samples, rate), rate);
        let events: Vec<_> = decode_all(&back, &AniDecoderConfig::default())
            .into_iter()
            .map(|e| (e.kind, e.unit, e.op))
            .collect();
        assert_eq!(
            events,
            [
                (AniKind::Mdc1200, "1234".to_string(), AniOp::PttIdPre),
                (AniKind::Mdc1200, "ABCD".to_string(), AniOp::Emergency)
            ],
            "{rate} Hz"
        );
    }
}
