//! Disk full on the data dir, through the real binary. The database and the
//! recordings live on a small tmpfs mounted by the test while a simulated
//! station talks on a recorded channel and a roll call runs on another.
//!
//! 1. A filler file takes the free space below `recorder.min_free_mb`:
//!    recording pauses with a `recording_paused` event, no new file opens,
//!    and roll-call answers are still committed (the floor left the
//!    database room).
//! 2. The filler takes every last byte: SQLite itself gets ENOSPC. The daemon
//!    neither dies nor spins; events it cannot store are held, not dropped.
//! 3. The filler shrinks back, then goes: the held events are stored,
//!    recording resumes within 5 s (`recording_resumed`, and a new file).
//!
//! A second scenario runs with no floor at all: the disk fills under an
//! open recording, whose cut file is repaired and indexed once space is
//! back.
//!
//! At the end every row committed before the fault is still there unchanged,
//! every guard's answer is in (matching the simulator's ground truth),
//! `PRAGMA integrity_check` is `ok` and every recording row is complete.
//!
//! Short form by default; `ROLLCALL_FAULTS=full` holds each phase longer,
//! calls more guards and prints `FAULT disk_full: ...` figures.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rollcall_proto::v1 as pb;
use support::*;

/// tmpfs size: the database and its WAL (up to ~4 MB before a checkpoint
/// wraps it) plus the recordings must fit with room to spare.
const TMPFS_MB: u64 = 16;
/// `recorder.min_free_mb` for the test.
const FLOOR_MB: u64 = 4;

struct Form {
    full: bool,
    guards: usize,
    /// How long each fault phase is held.
    hold: Duration,
}

fn form() -> Form {
    if std::env::var("ROLLCALL_FAULTS").as_deref() == Ok("full") {
        Form {
            full: true,
            guards: 30,
            hold: Duration::from_secs(8),
        }
    } else {
        Form {
            full: false,
            guards: 12,
            hold: Duration::from_secs(2),
        }
    }
}

/// A tmpfs mounted for the test; unmounted on drop (after the daemon, which
/// is declared later and so dropped first).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` only when mounting is not permitted here (EPERM).
    fn mount(dir: &Path, size_mb: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        if out.status.success() {
            return Some(Tmpfs(dir.to_owned()));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("permission denied") || err.contains("must be superuser") {
            return None;
        }
        panic!("mount tmpfs on {} failed: {err}", dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut v) }, 0);
    v.f_bavail as u64 * v.f_frsize as u64
}

/// Appends zeros to `file` until the file system has at most `target` bytes
/// free, or until ENOSPC when `target` is 0.
fn fill_to(file: &Path, dir: &Path, target: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    let chunk = vec![0u8; 16 * 1024];
    loop {
        let free = free_bytes(dir);
        if free <= target {
            return;
        }
        let n = ((free - target) as usize).min(chunk.len());
        match f.write_all(&chunk[..n]) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
            Err(e) => panic!("writing the filler: {e}"),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ro(db: &Path) -> Option<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()
}

/// (seq, ts_ms, body) of stored events of one kind.
fn events(db: &Path, kind: &str) -> Vec<(i64, i64, String)> {
    let Some(c) = ro(db) else { return Vec::new() };
    let Ok(mut stmt) =
        c.prepare("SELECT seq, ts_ms, body FROM events WHERE kind = ?1 ORDER BY seq")
    else {
        return Vec::new();
    };
    stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap_or_default()
}

/// guard → (outcome, answered_ms) of committed results.
fn answers(db: &Path) -> BTreeMap<String, (String, Option<i64>)> {
    let Some(c) = ro(db) else {
        return BTreeMap::new();
    };
    let Ok(mut stmt) = c.prepare("SELECT guard_id, outcome, answered_ms FROM rollcall_results")
    else {
        return BTreeMap::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap_or_default()
}

fn answered(a: &BTreeMap<String, (String, Option<i64>)>) -> usize {
    a.values()
        .filter(|(o, _)| o == "answered" || o == "late")
        .count()
}

/// id → (start_ms, duration_ms, complete, path) of the recordings index.
fn recordings(db: &Path) -> BTreeMap<i64, (i64, i64, i64, String)> {
    let Some(c) = ro(db) else {
        return BTreeMap::new();
    };
    let Ok(mut stmt) =
        c.prepare("SELECT id, start_ms, duration_ms, complete, path FROM recordings")
    else {
        return BTreeMap::new();
    };
    stmt.query_map([], |r| {
        Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap_or_default()
}

/// CPU time (user + system) of a process, seconds.
fn cpu_s(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn wait_for<T>(
    what: &str,
    daemon: &Daemon,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config(data: &Path, truth: &Path, port: u16, guards: usize) -> String {
    let mut roster = String::from("[[roster.company]]\nid = \"acme\"\nname = \"Acme\"\n");
    for i in 0..guards {
        roster.push_str(&format!(
            "[[roster.guard]]\nid = \"g{i:02}\"\nname = \"Guard {i}\"\ncompany = \"acme\"\ndtmf = \"{}\"\n",
            300 + i
        ));
    }
    format!(
        r#"
[daemon]
station_id = "diskfull"
data_dir = "{data}"
shutdown_grace_ms = 3000
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[recorder]
min_free_mb = {FLOOR_MB}

[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 21
reply_delay_ms = 300
talk_ms = 600
roll_call_min_ms = 800
log = "{truth}"

[[link]]
id = "chatter"
kind = "sim"
[link.sim]
seed = 22
roster_guards = false
background_mean_ms = 2500
background_first_ms = 200
background_talk_min_ms = 800
background_talk_max_ms = 1500

[[channel]]
id = "guards"
links = ["guards"]
hang_time_ms = 300

[[channel]]
id = "chatter"
links = ["chatter"]
hang_time_ms = 300
{roster}
"#,
        data = data.display(),
        truth = truth.display(),
    )
}

#[test]
fn disk_full_pauses_recording_keeps_roll_calls_and_resumes() {
    let form = form();
    let wall = Instant::now();
    let dir = TempDir::new("diskfull");
    let data = dir.path().join("data");
    let Some(_mount) = Tmpfs::mount(&data, TMPFS_MB) else {
        eprintln!("SKIP fault_disk_full: mounting a tmpfs is not permitted here (EPERM)");
        return;
    };
    let db = data.join("rollcalld.sqlite");
    let truth = dir.path().join("truth.jsonl");
    let filler = data.join("filler");
    let port = free_port();
    let mut daemon = Daemon::start(dir.path(), &config(&data, &truth, port, form.guards));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Recording works before the fault.
    wait_for(
        "a first recording",
        &daemon,
        Duration::from_secs(30),
        || recordings(&db).values().any(|r| r.2 == 1).then_some(()),
    );
    let run_id = rt.block_on(async {
        let mut api = rollcall_api(port).await;
        api.start_run(pb::StartRunRequest {
            channel: "guards".into(),
            modes: vec!["group".into()],
            options: Some(pb::RunOptions {
                window_s: 90,
                on_time_s: 80,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run_id
    });
    wait_for(
        "the first answers",
        &daemon,
        Duration::from_secs(40),
        || (answered(&answers(&db)) >= 2).then_some(()),
    );

    // --- 1: below the floor ---
    let t_fill = now_ms();
    fill_to(&filler, &data, (FLOOR_MB << 20) / 2);
    let (pause_seq, pause_ts) =
        wait_for("recording_paused", &daemon, Duration::from_secs(10), || {
            events(&db, "recording_paused").first().map(|e| (e.0, e.1))
        });
    let detect_ms = pause_ts - t_fill;
    let answered_at_pause = answered(&answers(&db));
    std::thread::sleep(form.hold);
    let during_floor = answers(&db);
    assert!(
        answered(&during_floor) > answered_at_pause || answered(&during_floor) == form.guards,
        "no answer committed while recording was paused ({answered_at_pause} before):\n{}",
        daemon.log_text()
    );
    // Snapshot of what is committed now: none of it may be lost.
    let recs_before = recordings(&db);
    let max_seq_before: i64 = ro(&db)
        .unwrap()
        .query_row("SELECT max(seq) FROM events", [], |r| r.get(0))
        .unwrap();

    // --- 2: not one byte left; SQLite fails too ---
    let cpu_before = cpu_s(daemon.pid());
    let t_full = Instant::now();
    let t_full_ms = now_ms();
    fill_to(&filler, &data, 0);
    let free_at_full = free_bytes(&data);
    let heard_lines = || daemon.log_text().matches("ANI heard").count();
    let heard_at_full = heard_lines();
    std::thread::sleep(form.hold);
    // Hold until a guard has answered on air while SQLite refuses writes, so
    // an answer has to survive the wait (unless every guard already did).
    if answered_at_pause < form.guards {
        let answered_on_air = Instant::now() + Duration::from_secs(15);
        while heard_lines() == heard_at_full && Instant::now() < answered_on_air {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let answers_while_full = heard_lines() - heard_at_full;
    let cpu_full = (cpu_s(daemon.pid()) - cpu_before) / t_full.elapsed().as_secs_f64();
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "daemon died on a full disk:\n{}",
        daemon.log_text()
    );
    // A spinning retry loop would hold a core; the daemon's own audio work
    // (two simulated stations, a debug build) is far below that.
    assert!(
        cpu_full < 0.8,
        "daemon used {:.0} % CPU on a full disk",
        cpu_full * 100.0
    );
    let store_errors = daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("cannot store events"))
        .count();

    // --- 3: room for the database again, then the filler goes ---
    let t_room_ms = now_ms();
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len - (FLOOR_MB << 20) / 2)
        .unwrap();
    if store_errors > 0 {
        wait_for(
            "the held events to be stored",
            &daemon,
            Duration::from_secs(10),
            || {
                daemon
                    .log_text()
                    .contains("events stored after retrying")
                    .then_some(())
            },
        );
    }
    assert!(
        events(&db, "recording_resumed").is_empty(),
        "resumed while still below the floor"
    );
    let t_free = now_ms();
    std::fs::remove_file(&filler).unwrap();
    let resume_ts = wait_for(
        "recording_resumed",
        &daemon,
        Duration::from_secs(10),
        || {
            events(&db, "recording_resumed")
                .into_iter()
                .find(|e| e.0 > pause_seq)
                .map(|e| e.1)
        },
    );
    let resume_ms = resume_ts - t_free;
    let first_file_ms = wait_for("a new recording", &daemon, Duration::from_secs(20), || {
        recordings(&db)
            .values()
            .filter(|r| r.0 >= t_free)
            .map(|r| r.0)
            .min()
    }) - t_free;
    assert!(
        resume_ms <= 5000,
        "recording resumed {resume_ms} ms after space returned"
    );

    // The run completes with every guard's answer.
    let detail = rt.block_on(async {
        let mut api = rollcall_api(port).await;
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            let d = api
                .get_run(pb::GetRunRequest { id: run_id })
                .await
                .unwrap()
                .into_inner();
            let done = d.results.iter().all(|r| r.outcome != "pending");
            if d.run.as_ref().unwrap().state != "running" || done {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "run never completed:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    daemon.stop_clean(Duration::from_secs(15));

    // Ground truth: every simulated guard answered (no misses configured).
    let truth_text = std::fs::read_to_string(&truth).unwrap();
    let heard: Vec<String> = truth_text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "answered")
        .filter_map(|v| v["guard"].as_str().map(str::to_owned))
        .collect();
    let got: BTreeMap<String, String> = detail
        .results
        .iter()
        .map(|r| (r.guard.clone(), r.outcome.clone()))
        .collect();
    assert_eq!(got.len(), form.guards);
    for g in &heard {
        assert!(
            matches!(got.get(g).map(String::as_str), Some("answered" | "late")),
            "{g} answered on air but the run says {:?}",
            got.get(g)
        );
    }
    assert_eq!(heard.len(), form.guards, "simulator truth: {truth_text}");
    // Every answer heard on air is in the event log, including those heard
    // while the database refused writes.
    let ani_events = events(&db, "ani")
        .iter()
        .filter(|e| e.2.contains("\"channel\":\"guards\""))
        .count();
    assert!(
        ani_events >= heard.len(),
        "{ani_events} ani events stored for {} answers on air",
        heard.len()
    );

    // Nothing committed before the fault was lost or changed.
    for (g, (outcome, ms)) in &during_floor {
        if outcome == "answered" || outcome == "late" {
            assert_eq!(got[g], *outcome, "{g}");
            let r = detail.results.iter().find(|r| &r.guard == g).unwrap();
            assert_eq!(Some(r.answered_ms), *ms, "{g}");
        }
    }
    let c = ro(&db).unwrap();
    let integrity: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let kept: i64 = c
        .query_row(
            "SELECT count(*) FROM events WHERE seq <= ?1",
            [max_seq_before],
            |r| r.get(0),
        )
        .unwrap();
    let gaps: i64 = c
        .query_row("SELECT max(seq) - count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(gaps, 0, "event log has holes");
    assert_eq!(kept, max_seq_before, "events lost");
    let held: i64 = c
        .query_row(
            "SELECT count(*) FROM events WHERE ts_ms >= ?1 AND ts_ms < ?2",
            [t_full_ms, t_room_ms],
            |r| r.get(0),
        )
        .unwrap();
    let recs_after = recordings(&db);
    for (id, r) in &recs_before {
        if r.2 == 1 {
            assert_eq!(recs_after.get(id), Some(r), "recording {id} changed");
        }
    }
    // No file was opened while paused, and every row is complete on disk.
    let opened_paused = recs_after
        .values()
        .filter(|r| r.0 > pause_ts && r.0 < t_free)
        .count();
    assert_eq!(opened_paused, 0, "recordings opened while paused");
    for (id, r) in &recs_after {
        assert_eq!(r.2, 1, "recording {id} incomplete");
        assert!(Path::new(&r.3).exists(), "recording {id} file missing");
    }

    let wall = wall.elapsed().as_secs_f64();
    let f = |name: &str, v: String| {
        if form.full {
            println!("FAULT disk_full: {name} = {v}");
        } else {
            eprintln!("disk_full: {name} = {v}");
        }
    };
    f("pause detected after filling (ms)", detect_ms.to_string());
    f("free bytes when full", free_at_full.to_string());
    f(
        "answers committed while recording was paused",
        (answered(&during_floor) - answered_at_pause).to_string(),
    );
    f(
        "daemon CPU while full (%)",
        format!("{:.1}", cpu_full * 100.0),
    );
    f("events held while full, stored later", held.to_string());
    f(
        "answers heard on air while full",
        answers_while_full.to_string(),
    );
    f(
        "'cannot store events' log lines while full",
        store_errors.to_string(),
    );
    f(
        "recording resumed after space returned (ms)",
        resume_ms.to_string(),
    );
    f(
        "first new file after space returned (ms)",
        first_file_ms.to_string(),
    );
    f(
        "answers committed",
        format!("{}/{}", answered(&answers(&db)), form.guards),
    );
    f("recordings", recs_after.len().to_string());
    f("integrity_check", integrity);
    f("wall time (s)", format!("{wall:.1}"));
}

/// With no floor (`min_free_mb = 0`) the disk fills up under an open
/// recording: its write fails, recording pauses ("disk full"), and when space
/// returns the cut file is repaired (ended at its last whole page) and
/// indexed in the running daemon, and the transmission continues in a new
/// file.
#[test]
fn disk_full_without_a_floor_repairs_the_cut_file_and_resumes() {
    let form = form();
    let wall = Instant::now();
    let dir = TempDir::new("diskfull0");
    let data = dir.path().join("data");
    let Some(_mount) = Tmpfs::mount(&data, TMPFS_MB) else {
        eprintln!("SKIP fault_disk_full: mounting a tmpfs is not permitted here (EPERM)");
        return;
    };
    let db = data.join("rollcalld.sqlite");
    let filler = data.join("filler");
    let port = free_port();
    let config = format!(
        r#"
[daemon]
station_id = "diskfull0"
data_dir = "{data}"
shutdown_grace_ms = 3000
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[recorder]
min_free_mb = 0

[[link]]
id = "chatter"
kind = "sim"
[link.sim]
seed = 23
roster_guards = false
background_mean_ms = 6000
background_first_ms = 200
background_talk_min_ms = 5000
background_talk_max_ms = 6000

[[channel]]
id = "chatter"
links = ["chatter"]
hang_time_ms = 300
"#,
        data = data.display(),
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    // Fill the disk under an open recording with a page or two written.
    wait_for(
        "an open recording",
        &daemon,
        Duration::from_secs(30),
        || recordings(&db).values().any(|r| r.2 == 0).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(1500));
    fill_to(&filler, &data, 0);
    assert!(
        daemon.wait_log("recording paused", Duration::from_secs(10)),
        "recording never paused:\n{}",
        daemon.log_text()
    );
    std::thread::sleep(form.hold);
    assert!(daemon.child.try_wait().unwrap().is_none(), "daemon died");
    let t_free = now_ms();
    std::fs::remove_file(&filler).unwrap();
    let resume_ts = wait_for(
        "recording_resumed",
        &daemon,
        Duration::from_secs(10),
        || events(&db, "recording_resumed").first().map(|e| e.1),
    );
    let resume_ms = resume_ts - t_free;
    assert!(
        resume_ms <= 5000,
        "recording resumed {resume_ms} ms after space returned"
    );
    let paused = events(&db, "recording_paused");
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert!(paused[0].2.contains("disk full"), "{}", paused[0].2);
    wait_for("a new recording", &daemon, Duration::from_secs(20), || {
        recordings(&db)
            .values()
            .any(|r| r.0 >= t_free)
            .then_some(())
    });
    daemon.stop_clean(Duration::from_secs(15));
    // The cut file was repaired in the running daemon: every row is
    // complete after a clean stop, with a valid file behind it.
    let log = daemon.log_text();
    assert!(!log.contains("recording failed"), "{log}");
    let recs = recordings(&db);
    for (id, r) in &recs {
        assert_eq!(r.2, 1, "recording {id} incomplete");
        let info = rollcall_hw::ogg::read_summary(&r.3)
            .unwrap_or_else(|e| panic!("recording {id} {}: {e}", r.3));
        assert!(info.complete, "recording {id} has no end-of-stream page");
        assert!(
            (info.duration_ms as i64 - r.1).abs() <= 40,
            "recording {id}: indexed {} ms, file holds {} ms",
            r.1,
            info.duration_ms
        );
    }
    let integrity: String = ro(&db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let f = |name: &str, v: String| {
        if form.full {
            println!("FAULT disk_full (no floor): {name} = {v}");
        } else {
            eprintln!("disk_full (no floor): {name} = {v}");
        }
    };
    f(
        "recording resumed after space returned (ms)",
        resume_ms.to_string(),
    );
    f(
        "recordings, all complete and readable",
        recs.len().to_string(),
    );
    f("integrity_check", integrity);
    f(
        "wall time (s)",
        format!("{:.1}", wall.elapsed().as_secs_f64()),
    );
}
