//! Crash safety of recordings: a file cut at any point of a write, or by a
//! real `kill -9` of the writing process, is repaired into a file `opusinfo`
//! accepts that holds everything up to at most one second before the crash.

mod ogg_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ogg_support::*;
use rollcall_hw::ogg::{read_summary, repair, Direction, OggPage, RecordingWriter};

/// Repairs `path` and checks it as a peer would; returns the decoded samples.
fn repair_and_check(path: &Path, pushed_frames: usize) -> Vec<i16> {
    let outcome = repair(path).expect("repair");
    assert!(!outcome.was_complete);
    let pushed_ms = pushed_frames as u64 * 20;
    assert!(
        outcome.duration_ms + 1000 >= pushed_ms && outcome.duration_ms <= pushed_ms,
        "kept {} ms of {pushed_ms} ms pushed",
        outcome.duration_ms
    );
    let info = read_summary(path).expect("repaired file is valid");
    assert!(info.complete);
    assert_eq!(info.duration_ms, outcome.duration_ms);
    assert_eq!(info.tags.get("CHANNEL"), Some("command"));
    assert_opusinfo_clean(path);
    let decoded = opusdec(path);
    assert!(
        duration_ms(decoded.len()).abs_diff(outcome.duration_ms) <= 40,
        "decoded {} ms, repair reported {} ms",
        duration_ms(decoded.len()),
        outcome.duration_ms
    );
    decoded
}

#[test]
fn torn_writes_at_any_point_repair_to_the_last_second() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("torn");
    let full_path = dir.join("full.opus");
    let audio = speech_like(260);
    let mut writer =
        RecordingWriter::create(&full_path, &tags(Direction::Rx), None, 5).expect("create");
    // File length after each frame: what a crash right then would leave.
    let mut len_after = Vec::new();
    for f in &audio {
        writer.push_frame(f).expect("push");
        len_after.push(std::fs::metadata(&full_path).expect("stat").len() as usize);
    }
    writer.finish().expect("finish");
    let full = std::fs::read(&full_path).expect("read");
    let full_decoded = opusdec(&full_path);

    // Kill points inside and at the edges of pages, each with the page being
    // written torn at several byte offsets.
    for kill_after in [3usize, 49, 50, 51, 120, 199, 230] {
        let on_disk = len_after[kill_after - 1];
        let next_page_len = OggPage::parse(&full[on_disk..]).expect("next page").len();
        for torn in [0, 1, 26, 27, 40, next_page_len / 2, next_page_len - 1] {
            let path = dir.join(&format!("k{kill_after}-t{torn}.opus"));
            std::fs::write(&path, &full[..on_disk + torn]).expect("write snapshot");
            let decoded = repair_and_check(&path, kill_after);
            // The repaired file holds exactly the audio of the full one. The
            // last few ms differ only because opusdec flushes its 48 → 8 kHz
            // resampler at the end of each stream.
            let compared = decoded.len().saturating_sub(160);
            let first_difference = decoded[..compared]
                .iter()
                .zip(&full_decoded)
                .position(|(a, b)| a != b);
            assert_eq!(
                first_difference,
                None,
                "k{kill_after} t{torn}: {} samples",
                decoded.len()
            );
        }
    }
}

#[test]
fn writer_dropped_without_finish_is_repaired() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("dropped");
    let path = dir.join("dropped.opus");
    let mut writer = RecordingWriter::create(&path, &tags(Direction::Tx), None, 5).expect("create");
    for f in speech_like(137) {
        writer.push_frame(&f).expect("push");
    }
    drop(writer);
    assert!(
        !read_summary(&path)
            .expect("pages so far are valid")
            .complete
    );
    // The peer notices an open-ended file, so its clean bill after repair
    // means something.
    let before = std::process::Command::new("opusinfo")
        .arg(&path)
        .output()
        .expect("run opusinfo");
    assert!(String::from_utf8_lossy(&before.stdout).contains("WARNING: EOS not set"));
    repair_and_check(&path, 137);
    // A second repair finds nothing to do.
    let again = repair(&path).expect("repair");
    assert!(again.was_complete && again.truncated_bytes == 0);
}

#[test]
fn forced_page_flush_keeps_audio_of_a_stalled_transmission() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("flush");
    let path = dir.join("flush.opus");
    let mut writer = RecordingWriter::create(&path, &tags(Direction::Rx), None, 5).expect("create");
    let audio = speech_like(40);
    for f in &audio[..30] {
        writer.push_frame(f).expect("push");
    }
    // Frames stalled: the caller forces the 600 ms so far to disk.
    writer.flush_page().expect("flush");
    for f in &audio[30..] {
        writer.push_frame(f).expect("push");
    }
    drop(writer);
    let decoded = repair_and_check(&path, 40);
    assert_eq!(
        repair(&path).expect("repair").duration_ms,
        (30 * 960 - 312) / 48
    );
    assert!(duration_ms(decoded.len()).abs_diff(600) <= 10);
}

#[test]
fn file_with_only_headers_is_closed_with_no_audio() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("headers");
    let path = dir.join("headers.opus");
    let mut writer = RecordingWriter::create(&path, &tags(Direction::Rx), None, 5).expect("create");
    for f in speech_like(20) {
        writer.push_frame(&f).expect("push");
    }
    drop(writer);
    let outcome = repair(&path).expect("repair");
    assert_eq!(outcome.duration_ms, 0);
    assert_opusinfo_clean(&path);
    assert!(opusdec(&path).len() <= 8 * 40);
}

const CHILD_ENV: &str = "ROLLCALL_OGG_KILL9_PATH";

/// Not a test of its own: the body of the child process that
/// `kill_9_mid_recording_loses_at_most_a_second` starts and kills. It records
/// in real time and reports each frame on stdout.
#[test]
#[ignore = "run only as the child of kill_9_mid_recording_loses_at_most_a_second"]
fn kill9_child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut writer = RecordingWriter::create(&path, &tags(Direction::Rx), None, 5).expect("create");
    let audio = speech_like(50);
    let start = Instant::now();
    // Bounded so an orphaned child cannot run forever.
    for n in 1..=3000u32 {
        writer
            .push_frame(&audio[n as usize % audio.len()])
            .expect("push");
        println!("PUSHED {n}");
        let due = start + Duration::from_millis(20 * u64::from(n));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
}

#[test]
fn kill_9_mid_recording_loses_at_most_a_second() {
    if !have_tool("opusinfo") || !have_tool("opusdec") {
        return;
    }
    let dir = TempDir::new("kill9");
    let path = dir.join("killed.opus");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "kill9_child_writer", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let pushed_count = |line: &str| line.strip_prefix("PUSHED ").and_then(|n| n.parse().ok());
    // 3.5 s in: mid-way through the fourth page, so the kill lands inside a page.
    let mut pushed: usize = 0;
    while pushed < 175 {
        let line = lines
            .next()
            .expect("child stopped before being killed")
            .expect("read child");
        if let Some(n) = pushed_count(&line) {
            pushed = n;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Frames the child reported before the signal landed.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = pushed_count(&line) {
            pushed = n;
        }
    }
    eprintln!("killed after {pushed} frames ({} ms)", pushed * 20);
    // The child may have pushed one frame it had no time to report.
    let outcome_frames = pushed + 1;
    repair_and_check(&path, outcome_frames);
    let info = read_summary(&path).expect("valid");
    assert!(info.duration_ms + 1000 >= pushed as u64 * 20, "{info:?}");
}
