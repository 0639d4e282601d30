//! Fault scenario: the wall clock misbehaves around a scheduled roll call,
//! through the real daemon. libfaketime (Debian `faketime`) is preloaded
//! into `rollcalld` with an offset file the test rewrites at run time; the
//! monotonic clock is left alone (FAKETIME_DONT_FAKE_MONOTONIC) so tokio's
//! timers stay sane, exactly as after an NTP step or a laptop resume.
//!
//! The rules proved (documented in daemon/src/rollcall/schedule.rs):
//! (a) Europe/Berlin spring-forward: 02:30 does not exist on 2026-03-29 and
//!     fires once, at the transition (03:00 CEST = 01:00Z); the next day's
//!     02:30 fires normally;
//! (b) fall-back: 02:30 happens twice on 2026-10-25 and fires once, at its
//!     first occurrence;
//! (c) a 2 h forward jump over a due time: run late within grace, recorded
//!     as missed outside it; noticed within the scheduler's wake step
//!     (15 s), not at the end of a long sleep;
//! (d) stepped back 1 h after a run fired: the due time does not fire again
//!     when the clock passes it a second time.
//! Runs are read from SQLite and counted through gRPC `ListRuns`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use jiff::{SignedDuration, Timestamp};
use rollcall_proto::v1 as pb;
use support::*;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The daemon's wall clock: an offset from the real one, in a file
/// libfaketime re-reads at most every second.
struct FakeClock {
    file: PathBuf,
    offset: std::cell::Cell<SignedDuration>,
}

impl FakeClock {
    fn new(dir: &Path, start: Timestamp) -> FakeClock {
        let c = FakeClock {
            file: dir.join("faketime.rc"),
            offset: std::cell::Cell::new(SignedDuration::ZERO),
        };
        c.set(start);
        c
    }

    fn real_now() -> Timestamp {
        Timestamp::try_from(SystemTime::now()).unwrap()
    }

    /// Steps the daemon's clock so that it reads `t` now.
    fn set(&self, t: Timestamp) {
        let off = t.duration_since(FakeClock::real_now());
        self.offset.set(off);
        // Atomic replace: libfaketime must never read half a file.
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{:+}\n", off.as_secs_f64())).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// What the daemon's clock reads now.
    fn now(&self) -> Timestamp {
        FakeClock::real_now() + self.offset.get()
    }

    /// Sleeps (real time) until the daemon's clock reads `t`.
    fn wait_until(&self, t: Timestamp) {
        let d = t.duration_since(self.now());
        if d.is_positive() {
            std::thread::sleep(d.unsigned_abs());
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", LIBFAKETIME.to_owned()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_CACHE_DURATION", "1".to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ]
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// `schedules`: (id, "HH:MM", zone, grace_s).
fn config(dir: &Path, grpc: u16, schedules: &[(&str, &str, &str, u64)]) -> String {
    let mut s = String::new();
    for (id, time, zone, grace) in schedules {
        s.push_str(&format!(
            "[[rollcall.schedule]]\nid = \"{id}\"\nchannel = \"guards\"\ntimes = [\"{time}\"]\n\
             days = \"daily\"\ntime_zone = \"{zone}\"\nmodes = [\"app\"]\nwindow_s = 2\ngrace_s = {grace}\n"
        ));
    }
    format!(
        r#"
[daemon]
station_id = "clock"
data_dir = "{data}"
time_zone = "UTC"
[grpc]
listen = "127.0.0.1:{grpc}"
require_auth = false
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 3
[[channel]]
id = "guards"
links = ["guards"]
[[roster.company]]
id = "acme"
name = "Acme"
[[roster.guard]]
id = "g1"
name = "One"
company = "acme"
app_id = "app-1"
{s}
"#,
        data = dir.join("data").display()
    )
}

#[derive(Debug, Clone, PartialEq)]
struct RunRow {
    schedule: String,
    due: Timestamp,
    state: String,
    started: Timestamp,
    reason: Option<String>,
}

fn runs(dir: &Path) -> Vec<RunRow> {
    let Ok(c) = rusqlite::Connection::open_with_flags(
        dir.join("data/rollcalld.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return vec![];
    };
    let Ok(mut stmt) = c.prepare(
        "SELECT schedule_id, due_ms, state, started_ms, reason FROM rollcall_runs ORDER BY id",
    ) else {
        return vec![];
    };
    stmt.query_map([], |r| {
        Ok(RunRow {
            schedule: r.get(0)?,
            due: Timestamp::from_millisecond(r.get(1)?).unwrap(),
            state: r.get(2)?,
            started: Timestamp::from_millisecond(r.get(3)?).unwrap(),
            reason: r.get(4)?,
        })
    })
    .map(|rows| rows.collect::<Result<Vec<_>, _>>().unwrap_or_default())
    .unwrap_or_default()
}

/// Waits (real time, generous) until at least `n` run rows exist.
fn wait_runs(dir: &Path, n: usize, d: &Daemon) -> Vec<RunRow> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = runs(dir);
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} runs, have {r:?}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The number of runs as the API lists them.
fn api_runs(grpc: u16) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = pb::roll_call_service_client::RollCallServiceClient::connect(format!(
            "http://127.0.0.1:{grpc}"
        ))
        .await
        .unwrap();
        c.list_runs(pb::ListRunsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .runs
            .len()
    })
}

/// Starts the daemon on the fake clock and checks libfaketime really
/// reached it: its first log line is stamped with the fake time.
fn start(dir: &Path, cfg: &str, clock: &FakeClock) -> Daemon {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: apt-get install -y faketime"
    );
    let env = clock.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start_with_env(dir, cfg, &env);
    assert!(
        d.wait_log("rollcalld ready", Duration::from_secs(30)),
        "{}",
        d.log_text()
    );
    let first = d.log.lock().unwrap()[0].clone();
    let stamp: Timestamp = first
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {first:?}"));
    let skew = stamp.duration_since(clock.now()).abs();
    assert!(
        skew < SignedDuration::from_secs(60),
        "the daemon does not run on the fake clock: logged {stamp}, fake now {}",
        clock.now()
    );
    d
}

/// Starts the daemon with its clock minutes before `due` and, once it is
/// ready however long that took on a loaded machine, steps the clock to
/// 20 s before `due`: more than the scheduler's 15 s wake step, so it sees
/// the step and still fires on time.
fn start_before(dir: &Path, cfg: &str, due: Timestamp) -> (FakeClock, Daemon) {
    let clock = FakeClock::new(dir, due - SignedDuration::from_mins(5));
    let d = start(dir, cfg, &clock);
    clock.set(due - SignedDuration::from_secs(20));
    (clock, d)
}

fn report(name: &str, figure: &str, value: impl std::fmt::Display) {
    println!("FAULT clock_{name}: {figure} = {value}");
}

#[test]
fn berlin_spring_forward_fires_once_at_the_transition() {
    let t0 = Instant::now();
    let dir = TempDir::new("clock-a");
    let grpc = free_port();
    let cfg = config(dir.path(), grpc, &[("gap", "02:30", "Europe/Berlin", 900)]);
    // At 02:00 CET the clocks go to 03:00 CEST (01:00Z).
    let (clock, d) = start_before(dir.path(), &cfg, ts("2026-03-29T01:00:00Z"));
    let r = wait_runs(dir.path(), 1, &d);
    assert_eq!(r[0].schedule, "gap");
    assert_eq!(r[0].due, ts("2026-03-29T01:00:00Z"), "{r:?}");
    assert_ne!(r[0].state, "missed", "{r:?}");
    let late = r[0].started.duration_since(r[0].due);
    assert!(
        late >= SignedDuration::ZERO && late < SignedDuration::from_secs(10),
        "{r:?}"
    );
    // The rest of the day passes (one step forward, no due time in it);
    // the next 02:30 (CEST now, 00:30Z) fires normally.
    clock.set(ts("2026-03-30T00:29:55Z"));
    let r = wait_runs(dir.path(), 2, &d);
    std::thread::sleep(Duration::from_secs(2));
    let r2 = runs(dir.path());
    assert_eq!(r2.len(), 2, "{r2:?}");
    assert_eq!(r[1].due, ts("2026-03-30T00:30:00Z"));
    assert!(r2.iter().all(|x| x.state != "missed"), "{r2:?}");
    assert_eq!(api_runs(grpc), 2);
    report("spring_forward", "runs on the DST day", 1);
    report(
        "spring_forward",
        "fired at",
        format!(
            "{} (02:30 skipped → 03:00 CEST), late by {} ms",
            r[0].due,
            late.as_millis()
        ),
    );
    report("spring_forward", "wall time s", t0.elapsed().as_secs());
}

#[test]
fn berlin_fall_back_fires_once_at_the_first_occurrence() {
    let t0 = Instant::now();
    let dir = TempDir::new("clock-b");
    let grpc = free_port();
    let cfg = config(dir.path(), grpc, &[("fold", "02:30", "Europe/Berlin", 900)]);
    // 02:30 happens at 00:30Z (CEST) and again at 01:30Z (CET).
    let (clock, d) = start_before(dir.path(), &cfg, ts("2026-10-25T00:30:00Z"));
    let r = wait_runs(dir.path(), 1, &d);
    assert_eq!(r[0].due, ts("2026-10-25T00:30:00Z"), "{r:?}");
    // Skip the hour in between: 02:29:58 CET, the second 02:30 is near.
    // Waiting past the wake step (15 s) after it: a scheduler that took
    // the second 02:30 for a due time would have fired by then.
    clock.set(ts("2026-10-25T01:29:58Z"));
    clock.wait_until(ts("2026-10-25T01:30:20Z"));
    let r = runs(dir.path());
    assert_eq!(r.len(), 1, "the repeated 02:30 fired again: {r:?}");
    assert_eq!(api_runs(grpc), 1);
    report("fall_back", "runs for the twice-occurring 02:30", r.len());
    report("fall_back", "wall time s", t0.elapsed().as_secs());
}

#[test]
fn forward_jump_over_a_due_time_runs_late_within_grace_or_is_missed() {
    let t0 = Instant::now();
    let dir = TempDir::new("clock-c");
    let grpc = free_port();
    let cfg = config(
        dir.path(),
        grpc,
        &[
            ("lenient", "10:00", "UTC", 3 * 3600),
            ("strict", "10:00", "UTC", 900),
        ],
    );
    // Ten minutes before the due time: a scheduler that slept until the
    // due time by the monotonic clock would notice the jump only then.
    let clock = FakeClock::new(dir.path(), ts("2026-05-04T09:50:00Z"));
    let d = start(dir.path(), &cfg, &clock);
    std::thread::sleep(Duration::from_secs(2));
    let jumped_to = ts("2026-05-04T11:52:00Z");
    clock.set(jumped_to);
    let r = wait_runs(dir.path(), 2, &d);
    let lenient = r.iter().find(|x| x.schedule == "lenient").unwrap();
    let strict = r.iter().find(|x| x.schedule == "strict").unwrap();
    assert_eq!(lenient.due, ts("2026-05-04T10:00:00Z"));
    assert_ne!(lenient.state, "missed", "{r:?}");
    assert_eq!(strict.due, ts("2026-05-04T10:00:00Z"));
    assert_eq!(strict.state, "missed", "{r:?}");
    assert!(
        strict
            .reason
            .as_deref()
            .is_some_and(|m| m.contains("beyond the 900 s grace window")),
        "{r:?}"
    );
    // Noticed within the wake step (15 s) plus libfaketime's 1 s cache.
    let noticed = lenient.started.duration_since(jumped_to);
    assert!(
        noticed < SignedDuration::from_secs(20),
        "jump noticed after {noticed}"
    );
    assert!(d.wait_log("wall clock stepped", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(dir.path()).len(), 2);
    assert_eq!(api_runs(grpc), 2);
    report("jump_forward", "runs within grace (3 h)", 1);
    report("jump_forward", "missed beyond grace (15 min)", 1);
    report("jump_forward", "jump noticed after ms", noticed.as_millis());
    report("jump_forward", "wall time s", t0.elapsed().as_secs());
}

#[test]
fn clock_stepped_back_after_a_run_does_not_fire_again() {
    let t0 = Instant::now();
    let dir = TempDir::new("clock-d");
    let grpc = free_port();
    let cfg = config(dir.path(), grpc, &[("a", "10:00", "UTC", 900)]);
    let (clock, d) = start_before(dir.path(), &cfg, ts("2026-05-04T10:00:00Z"));
    let r = wait_runs(dir.path(), 1, &d);
    assert_eq!(r[0].due, ts("2026-05-04T10:00:00Z"));
    // NTP steps the clock back an hour...
    clock.set(clock.now() - SignedDuration::from_hours(1));
    assert!(
        d.wait_log("wall clock stepped", Duration::from_secs(30)),
        "{}",
        d.log_text()
    );
    // ...and it runs through 10:00 again (the hour is skipped here), on
    // past the wake step.
    clock.set(ts("2026-05-04T09:59:58Z"));
    clock.wait_until(ts("2026-05-04T10:00:20Z"));
    let r = runs(dir.path());
    assert_eq!(r.len(), 1, "10:00 fired again: {r:?}");
    assert_eq!(api_runs(grpc), 1);
    report("step_back", "runs after passing 10:00 twice", r.len());
    report("step_back", "wall time s", t0.elapsed().as_secs());
}
