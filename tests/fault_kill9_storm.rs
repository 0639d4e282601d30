//! Fault scenario: `kill -9` of the daemon many times at random (seeded,
//! printed) points of an app roll call, restarting it each time, while the
//! guards' phones keep acknowledging over a real mosquitto.
//!
//! Ground truth is the MQTT protocol: an app ack counts as sent once the
//! broker PUBACKed it to the phone (`mosquitto_pub -q 1` exits 0). The
//! daemon holds a persistent session (clean_session=false, QoS 1), so acks
//! published while it is dead, or delivered to a life that died before it
//! committed them, must still be counted by a later life. Pass criteria:
//! every acknowledged ack is an answer in the final result (0 lost), an
//! answer once committed never changes, every answer the daemon announced
//! (its stored `rollcall_guard_closed` events) is in the result and every
//! answer in the result was announced, exactly one run row, the run
//! finishes with everyone answered, and `PRAGMA integrity_check` is ok
//! after every kill.
//!
//! The radio side (a group roll call answered by DTMF on the simulated base
//! station) is the second test: there an answer the dead daemon could not
//! hear is no loss, but the guard must be asked again.
//!
//! Short form (default): 10 kills, 40 guards (radio: 5 kills, 10 guards).
//! `ROLLCALL_FAULTS=full`: 100 kills, 200 guards (radio: 20 kills), figures
//! printed as `FAULT kill9_storm: ...` lines. `ROLLCALL_SEED=<n>` replays a
//! storm.

#[path = "support/mqtt.rs"]
mod mqtt_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqtt_support::{poll, publish, Broker};
use rollcall_proto::v1 as pb;
use support::*;

/// splitmix64: a tiny seeded generator, so a failing storm can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(dir: &Path, grpc: u16, broker: &str, guards: usize) -> String {
    let mut roster = String::from("[[roster.company]]\nid = \"acme\"\nname = \"Acme\"\n");
    for i in 0..guards {
        roster.push_str(&format!(
            "[[roster.guard]]\nid = \"g{i:03}\"\nname = \"Guard {i}\"\ncompany = \"acme\"\napp_id = \"app-{i:03}\"\n"
        ));
    }
    format!(
        r#"
[daemon]
station_id = "storm"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{grpc}"
require_auth = false
[mqtt]
enabled = true
broker = "{broker}"
prefix = "rc"
keepalive_s = 2
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 1
[[channel]]
id = "guards"
links = ["guards"]
{roster}
"#,
        data = dir.join("data").display()
    )
}

#[test]
fn kill9_storm_loses_no_acknowledged_answer() {
    let full = std::env::var("ROLLCALL_FAULTS").is_ok_and(|v| v == "full");
    let (kills, guards) = if full { (100, 200) } else { (10, 40) };
    let seed = std::env::var("ROLLCALL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("kill9_storm: seed = {seed} (replay with ROLLCALL_SEED={seed})");
    let mut rng = Rng(seed);
    let t0 = Instant::now();

    let dir = TempDir::new("storm");
    let broker = Broker::start(&dir.path().join("broker"), false);
    let grpc = free_port();
    let cfg = config(dir.path(), grpc, &broker.url(), guards);
    let db = dir.path().join("data/rollcalld.sqlite");
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run_id = rt.block_on(async {
        let mut api = rollcall_api(grpc).await;
        api.start_run(pb::StartRunRequest {
            channel: "guards".into(),
            modes: vec!["app".into()],
            options: Some(pb::RunOptions {
                window_s: 3600,
                on_time_s: 3600,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run_id
    });
    let ack = |i: usize| {
        (
            format!("rc/storm/ack/app-{i:03}"),
            format!("{{\"v\": 1, \"run_id\": {run_id}}}"),
        )
    };
    // The first ack proves the daemon's session holds the subscription:
    // from then on the broker queues acks for it while it is dead.
    let (t, p) = ack(0);
    assert!(publish(broker.port, &t, p.as_bytes(), false));
    assert!(
        poll(Duration::from_secs(30), || rollcall_results(&db)
            .get("g000")
            .filter(|r| r.0 == "answered")
            .map(|_| ()))
        .is_some(),
        "first ack never counted:\n{}",
        daemon.log_text()
    );

    // The phones: one ack at a time, spread over the storm (the interval
    // is about the mean life plus gap divided by the acks per life), going
    // on whether the daemon is alive or not.
    let acked: Arc<Mutex<BTreeSet<usize>>> = Arc::new(Mutex::new(BTreeSet::from([0])));
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_millis((kills as u64 * 900) / guards as u64);
    let phones = {
        let (acked, stop, port) = (acked.clone(), stop.clone(), broker.port);
        let msgs: Vec<(String, String)> = (1..guards).map(ack).collect();
        std::thread::spawn(move || {
            for (i, (t, p)) in msgs.iter().enumerate() {
                // A phone retries until the broker acknowledged.
                while !publish(port, t, p.as_bytes(), false) {
                    assert!(!stop.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(50));
                }
                acked.lock().unwrap().insert(i + 1);
                std::thread::sleep(interval);
            }
        })
    };

    // The storm. Each life is killed at a random point between its first
    // instructions and well after its MQTT reconnect (when the broker
    // replays what queued up meanwhile); the gap before the restart lets
    // acks queue at the broker.
    let mut committed: BTreeMap<String, (String, Option<i64>)> = BTreeMap::new();
    let mut lives_ms = Vec::with_capacity(kills);
    for k in 0..kills {
        let life = Duration::from_millis(rng.below(1500));
        std::thread::sleep(life);
        daemon.signal(libc::SIGKILL);
        assert!(daemon.wait_exit(Duration::from_secs(10)).is_some());
        lives_ms.push(life.as_millis() as u64);
        let now = rollcall_results(&db);
        // What an earlier life committed is still there, unchanged.
        for (g, r) in &committed {
            assert_eq!(
                now.get(g),
                Some(r),
                "kill {k}: committed answer of {g} changed"
            );
        }
        committed = now
            .into_iter()
            .filter(|(_, r)| r.0 == "answered" || r.0 == "late")
            .collect();
        assert_eq!(integrity_check(&db), "ok", "kill {k}");
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        daemon = Daemon::start(dir.path(), &cfg);
    }
    let storm = t0.elapsed();

    // Last life: every ack the broker took must become an answer.
    phones.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), guards);
    let state = poll(Duration::from_secs(60), || {
        let c = db_conn(&db);
        c.query_row(
            "SELECT state FROM rollcall_runs WHERE id = ?1",
            [run_id],
            |r| r.get::<_, String>(0),
        )
        .ok()
        .filter(|s| s != "running")
    });
    let fin = rollcall_results(&db);
    let lost: Vec<String> = acked
        .iter()
        .map(|i| format!("g{i:03}"))
        .filter(|g| !matches!(fin.get(g), Some((o, _)) if o == "answered"))
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: {} acknowledged answers lost: {lost:?}\n{}",
        lost.len(),
        daemon.log_text()
    );
    assert_eq!(state.as_deref(), Some("finished"), "seed {seed}");
    for (g, r) in &committed {
        assert_eq!(fin.get(g), Some(r), "committed answer of {g} changed");
    }
    let c = db_conn(&db);
    // Every answer the daemon announced (events are stored after the
    // result they report) is in the final result.
    let mut stmt = c
        .prepare("SELECT body FROM events WHERE kind = 'rollcall_guard_closed'")
        .unwrap();
    let announced: Vec<serde_json::Value> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect();
    for ev in &announced {
        let g = ev["guard"].as_str().unwrap();
        assert_eq!(
            fin.get(g).map(|r| r.0.as_str()),
            ev["outcome"].as_str(),
            "announced {ev}"
        );
    }
    // ...and every answer in it was announced, even one committed by a
    // life killed before it could say so (the next life does).
    let announced_guards: BTreeSet<&str> = announced
        .iter()
        .filter_map(|ev| ev["guard"].as_str())
        .collect();
    let silent: Vec<&String> = fin
        .keys()
        .filter(|g| !announced_guards.contains(g.as_str()))
        .collect();
    assert!(
        silent.is_empty(),
        "seed {seed}: never announced: {silent:?}"
    );
    let runs: i64 = c
        .query_row("SELECT COUNT(*) FROM rollcall_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 1, "no duplicate run");
    assert_eq!(fin.len(), guards);
    let resumed: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'rollcall_started' AND body LIKE '%\"resumed\":true%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(integrity_check(&db), "ok");
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));

    lives_ms.sort_unstable();
    let tag = if full { "FAULT" } else { "fault (short)" };
    println!(
        "{tag} kill9_storm: kills = {kills}, answers lost = {}, runs = {runs}, acks = {}, answered = {}, announced = {}, resumed lives = {resumed}, integrity = ok",
        lost.len(),
        acked.len(),
        fin.values().filter(|r| r.0 == "answered").count(),
        announced.len(),
    );
    println!(
        "{tag} kill9_storm: life before kill p50 = {} ms, max = {} ms, storm = {:.1} s, wall time = {:.1} s, seed = {seed}",
        lives_ms[lives_ms.len() / 2],
        lives_ms[lives_ms.len() - 1],
        storm.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

fn db_conn(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn radio_config(dir: &Path, grpc: u16, guards: usize) -> String {
    let mut roster = String::from("[[roster.company]]\nid = \"acme\"\nname = \"Acme\"\n");
    for i in 0..guards {
        roster.push_str(&format!(
            "[[roster.guard]]\nid = \"r{i:02}\"\nname = \"Radio {i}\"\ncompany = \"acme\"\ndtmf = \"{}\"\n",
            400 + i
        ));
    }
    format!(
        r#"
[daemon]
station_id = "storm-radio"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{grpc}"
require_auth = false
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 5
reply_delay_ms = 300
talk_ms = 400
roll_call_min_ms = 800
[[channel]]
id = "guards"
links = ["guards"]
hang_time_ms = 300
{roster}
"#,
        data = dir.join("data").display()
    )
}

/// The radio side of the storm: guards answering a group roll call by DTMF
/// on the daemon's simulated base station. An answer given while the daemon
/// was dead (or cut by the kill) was never heard: not a loss, but the guard
/// must be asked again. Each resumed life announces again while guards are
/// pending, so the run still ends with everyone answered, every answer
/// committed before a kill unchanged, one run, and an intact database.
#[test]
fn kill9_storm_group_roll_call_asks_again_and_keeps_every_answer() {
    let full = std::env::var("ROLLCALL_FAULTS").is_ok_and(|v| v == "full");
    let (kills, guards) = if full { (20, 10) } else { (5, 10) };
    let seed = std::env::var("ROLLCALL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("kill9_storm_radio: seed = {seed} (replay with ROLLCALL_SEED={seed})");
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    let dir = TempDir::new("storm-radio");
    let grpc = free_port();
    let cfg = radio_config(dir.path(), grpc, guards);
    let db = dir.path().join("data/rollcalld.sqlite");
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run_id = rt.block_on(async {
        let mut api = rollcall_api(grpc).await;
        // The simulated station needs to be up to hear the announcement.
        tokio::time::sleep(Duration::from_millis(500)).await;
        api.start_run(pb::StartRunRequest {
            channel: "guards".into(),
            modes: vec!["group".into()],
            options: Some(pb::RunOptions {
                window_s: 600,
                on_time_s: 600,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run_id
    });
    let mut committed: BTreeMap<String, (String, Option<i64>)> = BTreeMap::new();
    for k in 0..kills {
        // From mid-announcement (a resumed life announces again) to well
        // into the answers.
        std::thread::sleep(Duration::from_millis(1000 + rng.below(7000)));
        daemon.signal(libc::SIGKILL);
        assert!(daemon.wait_exit(Duration::from_secs(10)).is_some());
        let now = rollcall_results(&db);
        for (g, r) in &committed {
            assert_eq!(now.get(g), Some(r), "kill {k}: answer of {g} changed");
        }
        committed = now
            .into_iter()
            .filter(|(_, r)| r.0 == "answered" || r.0 == "late")
            .collect();
        assert_eq!(integrity_check(&db), "ok", "kill {k}");
        daemon = Daemon::start(dir.path(), &cfg);
    }
    let heard_before_last = committed.len();
    let state = poll(Duration::from_secs(90), || {
        db_conn(&db)
            .query_row(
                "SELECT state FROM rollcall_runs WHERE id = ?1",
                [run_id],
                |r| r.get::<_, String>(0),
            )
            .ok()
            .filter(|s| s != "running")
    });
    let fin = rollcall_results(&db);
    assert_eq!(
        state.as_deref(),
        Some("finished"),
        "seed {seed}: {fin:?}\n{}",
        daemon.log_text()
    );
    for (g, r) in &committed {
        assert_eq!(fin.get(g), Some(r), "answer of {g} changed");
    }
    let answered = fin.values().filter(|r| r.0 == "answered").count();
    assert_eq!(answered, guards, "seed {seed}: {fin:?}");
    let runs: i64 = db_conn(&db)
        .query_row("SELECT COUNT(*) FROM rollcall_runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 1);
    assert_eq!(integrity_check(&db), "ok");
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    let tag = if full { "FAULT" } else { "fault (short)" };
    println!(
        "{tag} kill9_storm_radio: kills = {kills}, answered = {answered}/{guards}, heard before the last life = {heard_before_last}, runs = {runs}, integrity = ok, wall time = {:.1} s, seed = {seed}",
        t0.elapsed().as_secs_f64()
    );
}
