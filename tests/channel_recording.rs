//! The merged police–guards channel through the real binary with two
//! simulated base stations on loopback RoIP: a guard's transmission is heard
//! on the police side and not echoed back; every transmission becomes an Ogg
//! Opus file that Debian's `opusinfo` accepts and `opusdec` decodes; a
//! `kill -9` mid-transmission leaves a file that is repaired at restart.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn config(dir: &Path, port: u16, guards_extra: &str) -> String {
    format!(
        r#"
[daemon]
station_id = "it-merge"
data_dir = "{data}"
shutdown_grace_ms = 1500
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false

[[link]]
id = "police"
kind = "sim"
[link.sim]
seed = 11
roster_guards = false
log = "police.jsonl"

[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 12
roster_guards = false
log = "guards.jsonl"
{guards_extra}

[[channel]]
id = "merged"
links = ["police", "guards"]
hang_time_ms = 500
patch_tail_ms = 200
"#,
        data = dir.join("data").display()
    )
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn recordings(db: &Path) -> Vec<(i64, String, String, i64, i64, String)> {
    // Before the daemon created the database there is nothing to list.
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare(
        "SELECT id, link, direction, duration_ms, complete, path FROM recordings ORDER BY id",
    ) else {
        return Vec::new();
    };
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<Result<Vec<_>, _>>()
    .unwrap()
}

/// Runs opusinfo and opusdec on a file; returns the decoded length in ms.
fn check_with_opus_tools(path: &str) -> f64 {
    let info = Command::new("opusinfo")
        .arg(path)
        .output()
        .expect("opusinfo (apt install opus-tools)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&info.stdout),
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(info.status.success(), "opusinfo failed on {path}:\n{text}");
    assert!(
        !text.contains("WARNING") && !text.contains("ERROR"),
        "opusinfo complains about {path}:\n{text}"
    );
    let wav = format!("{path}.wav");
    let dec = Command::new("opusdec")
        .args(["--quiet", "--rate", "8000", path, &wav])
        .output()
        .expect("opusdec");
    assert!(
        dec.status.success(),
        "opusdec failed on {path}: {}",
        String::from_utf8_lossy(&dec.stderr)
    );
    let bytes = std::fs::metadata(&wav).unwrap().len();
    std::fs::remove_file(&wav).unwrap();
    // 16-bit mono at 8 kHz after a 44-byte header.
    (bytes.saturating_sub(44) as f64) / 16.0
}

#[test]
fn guard_transmission_is_patched_to_police_and_recorded() {
    let dir = TempDir::new("merge");
    let port = free_port();
    // Transmissions far apart, so each is patched on its own.
    let extra = "background_mean_ms = 60000\nbackground_first_ms = 300\nbackground_talk_min_ms = 1500\nbackground_talk_max_ms = 2500";
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), port, extra));
    let data = dir.path().join("data");
    // Wait for the guard's transmission to have been patched.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let police = read_jsonl(&data.join("police.jsonl"));
        let heard = police.iter().filter(|r| r["event"] == "gateway_tx").count();
        if heard >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "police never heard the guards:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stop_clean(Duration::from_secs(10));

    let guards = read_jsonl(&data.join("guards.jsonl"));
    let police = read_jsonl(&data.join("police.jsonl"));
    let sent: Vec<u64> = guards
        .iter()
        .filter(|r| r["event"] == "background")
        .filter_map(|r| r["duration_ms"].as_u64())
        .collect();
    let heard: Vec<u64> = police
        .iter()
        .filter(|r| r["event"] == "gateway_tx")
        .filter_map(|r| r["duration_ms"].as_u64())
        .collect();
    assert!(!heard.is_empty(), "police heard {heard:?}");
    // Every patched transmission lasts as long as the guard's, plus the
    // COR hang and patch tail (RoIP hang 300 ms + tail 200 ms), within jitter.
    for (i, h) in heard.iter().enumerate() {
        let s = sent[i];
        assert!(
            *h + 100 >= s && *h <= s + 900,
            "transmission {i}: guard sent {s} ms, police heard {h} ms"
        );
    }
    // No echo: the guards' station was never keyed by its own traffic.
    assert!(
        guards.iter().all(|r| r["event"] != "gateway_tx"),
        "guards' station was keyed: {guards:?}"
    );

    // One recording per guard transmission, valid and the right length.
    let rows = recordings(&data.join("rollcalld.sqlite"));
    let rx: Vec<_> = rows
        .iter()
        .filter(|r| r.1 == "guards" && r.2 == "rx")
        .collect();
    assert!(rx.len() >= heard.len(), "recordings: {rows:?}");
    for (i, r) in rx.iter().enumerate().take(heard.len()) {
        assert_eq!(r.4, 1, "recording {} incomplete", r.0);
        let decoded = check_with_opus_tools(&r.5);
        assert!(
            (decoded - r.3 as f64).abs() <= 40.0,
            "recording {} indexed {} ms, decodes to {decoded} ms",
            r.0,
            r.3
        );
        let s = sent[i] as f64;
        assert!(
            (r.3 as f64 - s).abs() <= 40.0 + 20.0,
            "recording {} is {} ms, the guard talked {s} ms",
            r.0,
            r.3
        );
    }
}

#[test]
fn kill_9_mid_transmission_leaves_a_repairable_recording() {
    let dir = TempDir::new("kill9");
    let port = free_port();
    let extra = "background_mean_ms = 600000\nbackground_first_ms = 300\nbackground_talk_min_ms = 20000\nbackground_talk_max_ms = 20000";
    let cfg = config(dir.path(), port, extra);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let db = dir.path().join("data/rollcalld.sqlite");
    // Wait for the recording to open, let it run 3 s, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(20);
    let opened = loop {
        if recordings(&db).iter().any(|r| r.1 == "guards" && r.4 == 0) {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no recording opened:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(3000));
    let killed_after = opened.elapsed();
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(Duration::from_secs(5));
    drop(daemon);

    // Restart: the open recording is repaired and indexed.
    let mut daemon = Daemon::start(dir.path(), &cfg);
    assert!(
        daemon.wait_log(
            "repaired a recording left open by a crash",
            Duration::from_secs(20)
        ),
        "{}",
        daemon.log_text()
    );
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    let rows = recordings(&db);
    let first = rows
        .iter()
        .find(|r| r.1 == "guards")
        .expect("the killed recording");
    assert_eq!(first.4, 1, "repaired row is complete");
    let decoded = check_with_opus_tools(&first.5);
    let lost = killed_after.as_millis() as f64 - decoded;
    assert!(
        lost <= 1000.0 + 100.0,
        "killed {killed_after:?} into the transmission; file holds {decoded} ms"
    );
    eprintln!(
        "FAULT kill9_recording: killed {} ms into the transmission, repaired file holds {decoded:.0} ms, audio lost = {:.0} ms (limit 1000 ms)",
        killed_after.as_millis(),
        lost.max(0.0)
    );
}
