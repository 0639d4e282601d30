//! Recordings checked by independent peers: Debian's `opusinfo` must find
//! nothing to warn about, and `opusdec` must decode them to the length and
//! sound that was pushed.

mod ogg_support;

use ogg_support::*;
use rollcall_hw::audio::AudioFrame;
use rollcall_hw::ogg::{read_summary, Direction, RecordingWriter, DEFAULT_COMPLEXITY};

/// Writes `frames`, checks the summary, opusinfo and the decoded length.
fn record_and_check(
    dir: &TempDir,
    name: &str,
    frames: &[AudioFrame],
    bitrate: Option<i32>,
    complexity: i32,
) -> Vec<i16> {
    let path = dir.join(name);
    let mut writer =
        RecordingWriter::create(&path, &tags(Direction::Rx), bitrate, complexity).expect("create");
    for f in frames {
        writer.push_frame(f).expect("push");
    }
    let summary = writer.finish().expect("finish");
    let pushed_ms = frames.len() as u64 * 20;
    assert_eq!(summary.duration_ms, pushed_ms);
    assert_eq!(summary.bytes, std::fs::metadata(&path).expect("stat").len());

    let info = read_summary(&path).expect("valid recording");
    assert!(info.complete);
    assert_eq!(info.duration_ms, pushed_ms);
    assert_eq!(info.packets, summary.packets);
    assert_eq!(info.head.input_sample_rate, 8000);
    // One page per second of audio (plus the EOS page for any remainder).
    assert_eq!(info.audio_pages, (frames.len() + 1).div_ceil(50).max(1));

    let report = assert_opusinfo_clean(&path);
    for tag in [
        "CHANNEL=command",
        "LINK=roip-east",
        "DIRECTION=rx",
        "START=2026-11-18T11:06:40.250Z",
        "ENCODER=rollcall-hw",
    ] {
        assert!(report.contains(tag), "opusinfo shows no {tag}:\n{report}");
    }
    let decoded = opusdec(&path);
    let decoded_ms = duration_ms(decoded.len());
    assert!(
        decoded_ms.abs_diff(pushed_ms) <= 40,
        "{name}: decoded {decoded_ms} ms, pushed {pushed_ms} ms"
    );
    decoded
}

#[test]
fn recordings_of_many_lengths_pass_opusinfo_and_decode_to_their_length() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("lengths");
    let audio = speech_like(251);
    // Around the page boundary (50 packets), a single frame, several seconds.
    for frames in [1, 2, 49, 50, 51, 99, 100, 251] {
        record_and_check(
            &dir,
            &format!("len{frames}.opus"),
            &audio[..frames],
            None,
            DEFAULT_COMPLEXITY,
        );
    }
}

#[test]
fn empty_transmission_is_still_a_valid_file() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("empty");
    let decoded = record_and_check(&dir, "empty.opus", &[], None, DEFAULT_COMPLEXITY);
    assert!(decoded.len() <= 8 * 40);
}

#[test]
fn bitrates_and_complexities_all_give_clean_files() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("settings");
    let audio = speech_like(150);
    for (bitrate, complexity) in [(Some(6_000), 0), (None, 5), (None, 10), (Some(32_000), 10)] {
        let name = format!("b{}c{complexity}.opus", bitrate.unwrap_or(0));
        record_and_check(&dir, &name, &audio, bitrate, complexity);
    }
}

#[test]
fn decoded_audio_is_the_audio_that_was_pushed() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("tone");
    let pushed = tone(100, 1000.0, 8000.0);
    let decoded = record_and_check(&dir, "tone.opus", &pushed, None, DEFAULT_COMPLEXITY);
    // Skip the first 100 ms (encoder attack) and compare level and pitch.
    let steady = &decoded[800..decoded.len() - 160];
    let pushed_samples: Vec<i16> = pushed.iter().flat_map(|f| f.samples).collect();
    let level_db = 20.0 * (rms(steady) / rms(&pushed_samples)).log10();
    assert!(level_db.abs() < 2.0, "level off by {level_db:.1} dB");
    let share = tone_share(steady, 1000.0);
    assert!(
        share > 0.9,
        "1 kHz holds only {:.0} % of the power",
        share * 100.0
    );
    assert!(tone_share(steady, 1500.0) < 0.01);
}

#[test]
fn ani_learned_late_is_written_into_the_tags() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("ani");
    let path = dir.join("ani.opus");
    let mut writer = RecordingWriter::create(&path, &tags(Direction::Tx), None, 5).expect("create");
    for f in speech_like(120) {
        writer.push_frame(&f).expect("push");
    }
    // EOT PTT-ID decoded at the end of the transmission.
    writer.set_ani("20417").expect("ani");
    writer.finish().expect("finish");
    let report = assert_opusinfo_clean(&path);
    assert!(
        report.contains("ANI=20417") && report.contains("DIRECTION=tx"),
        "{report}"
    );
    let info = read_summary(&path).expect("valid");
    assert_eq!(info.tags.get("ANI"), Some("20417"));
    assert_eq!(info.duration_ms, 2400);
    assert_eq!(duration_ms(opusdec(&path).len()), 2400);
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let dir = TempDir::new("exists");
    let path = dir.join("taken.opus");
    std::fs::write(&path, b"keep me").expect("write");
    assert!(RecordingWriter::create(&path, &tags(Direction::Rx), None, 5).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), b"keep me");
}

#[test]
fn reused_encoder_writes_clean_files() {
    if !have_tool("opusinfo") {
        return;
    }
    let dir = TempDir::new("reuse");
    let audio = speech_like(75);
    let mut encoder = None;
    for i in 0..3 {
        let path = dir.join(&format!("r{i}.opus"));
        let mut writer = match encoder.take() {
            None => RecordingWriter::create(&path, &tags(Direction::Rx), None, 5),
            Some(e) => RecordingWriter::with_encoder(&path, &tags(Direction::Rx), e),
        }
        .expect("create");
        for f in &audio {
            writer.push_frame(f).expect("push");
        }
        let (summary, e) = writer.finish_and_recycle().expect("finish");
        assert_eq!(summary.duration_ms, 1500);
        encoder = Some(e);
        assert_opusinfo_clean(&path);
    }
}
