//! A whole roll call through the real binary: 50 guards on a simulated
//! guards' station (DTMF, 5-tone and MDC1200 radios, answering on time, late
//! or not at all per the simulator's seed) plus guards who answer from their
//! phone app over a real mosquitto. The run's results must match the
//! simulator's ground truth exactly, and the CSV report must match the
//! results. Driven through the gRPC API like a console would.
//!
//! Answers take turns on the channel as on air, so the on-time threshold
//! leaves room for 40 radio answers of about a second each.

#[path = "support/mqtt.rs"]
mod mqtt;
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rollcall_proto::v1 as pb;
use support::*;

const ON_TIME_S: u64 = 42;
const WINDOW_S: u64 = 62;

fn roster() -> (String, Vec<(String, &'static str)>) {
    let mut text = String::new();
    for c in ["anbao", "huwei", "jinding"] {
        text.push_str(&format!(
            "[[roster.company]]\nid = \"{c}\"\nname = \"{c}\"\n"
        ));
    }
    let mut guards = Vec::new();
    for i in 0..50 {
        let company = ["anbao", "huwei", "jinding"][i % 3];
        let (key, code, kind) = match i % 5 {
            0 | 1 => ("dtmf", format!("{}", 200 + i), "dtmf"),
            2 => ("selcall", format!("{:05}", 12000 + i * 7), "selcall"),
            3 => ("mdc1200", format!("{:04X}", 0x1A00 + i), "mdc1200"),
            _ => ("app_id", format!("app-{i:02}"), "app"),
        };
        let id = format!("g{i:02}");
        text.push_str(&format!(
            "[[roster.guard]]\nid = \"{id}\"\nname = \"Guard {i}\"\ncompany = \"{company}\"\n{key} = \"{code}\"\n"
        ));
        guards.push((id, kind));
    }
    (text, guards)
}

#[test]
fn fifty_guards_match_the_simulators_ground_truth() {
    let dir = TempDir::new("rc50");
    let broker = mqtt::Broker::start(&dir.path().join("broker"), false);
    let port = free_port();
    let (roster_toml, guards) = roster();
    let config = format!(
        r#"
[daemon]
station_id = "rc50"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[mqtt]
enabled = true
broker = "127.0.0.1:{mqtt}"
prefix = "rc"
keepalive_s = 5

[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 50
miss_chance = 0.2
late_chance = 0.2
reply_delay_ms = 300
late_delay_ms = 46000
talk_ms = 100
roll_call_min_ms = 800
log = "truth.jsonl"

[[channel]]
id = "guards"
links = ["guards"]
hang_time_ms = 300
[channel.ani]
selcall = "ccir"

{roster_toml}
"#,
        data = dir.path().join("data").display(),
        mqtt = broker.port,
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = format!("http://127.0.0.1:{port}");
    let run_id = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut api = loop {
            if let Ok(c) =
                pb::roll_call_service_client::RollCallServiceClient::connect(addr.clone()).await
            {
                break c;
            }
            assert!(Instant::now() < deadline, "{}", daemon.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Wait for the link so the announcement goes out.
        let mut station = pb::station_service_client::StationServiceClient::connect(addr.clone())
            .await
            .unwrap();
        loop {
            let s = station
                .get_status(pb::GetStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            if s.links.iter().all(|l| l.state == pb::LinkState::Up as i32) {
                break;
            }
            assert!(Instant::now() < deadline, "link never came up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = api
            .start_run(pb::StartRunRequest {
                channel: "guards".into(),
                groups: vec![],
                modes: vec!["group".into(), "app".into()],
                options: Some(pb::RunOptions {
                    window_s: WINDOW_S,
                    on_time_s: ON_TIME_S,
                    ..Default::default()
                }),
                announcement: String::new(),
            })
            .await
            .unwrap();
        r.into_inner().run_id
    });
    let started = Instant::now();

    // App guards: a fixed script of on-time, late and silent answers.
    let app_guards: Vec<&String> = guards
        .iter()
        .filter(|g| g.1 == "app")
        .map(|g| &g.0)
        .collect();
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    let publish = |guard: &str| {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
            .args(["-t", &format!("rc/rc50/ack/app-{}", &guard[1..])])
            .args(["-m", &format!("{{\"v\":1,\"run_id\":{run_id}}}")])
            .output()
            .expect("mosquitto_pub");
        assert!(out.status.success());
    };
    std::thread::sleep(Duration::from_secs(2));
    for (i, g) in app_guards.iter().enumerate() {
        match i % 3 {
            0 => {
                publish(g);
                expected.insert(g.to_string(), "answered");
            }
            1 => {
                expected.insert(g.to_string(), "late");
            }
            _ => {
                expected.insert(g.to_string(), "missed");
            }
        }
    }
    // The late ones answer after the on-time threshold, inside the window.
    let late_at = Duration::from_secs(ON_TIME_S + 3);
    std::thread::sleep(late_at.saturating_sub(started.elapsed()));
    for (i, g) in app_guards.iter().enumerate() {
        if i % 3 == 1 {
            publish(g);
        }
    }

    // Wait for the run to finish.
    let detail = rt.block_on(async {
        let mut api = pb::roll_call_service_client::RollCallServiceClient::connect(addr.clone())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(WINDOW_S + 30);
        loop {
            let d = api
                .get_run(pb::GetRunRequest { id: run_id })
                .await
                .unwrap()
                .into_inner();
            if d.run.as_ref().unwrap().state != "running" {
                let csv = api
                    .run_report(pb::RunReportRequest { id: run_id })
                    .await
                    .unwrap()
                    .into_inner();
                return (d, csv);
            }
            assert!(
                Instant::now() < deadline,
                "run did not finish:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let (detail, csv) = detail;

    // Radio guards: what the simulator says each one did.
    let truth = std::fs::read_to_string(dir.path().join("data/truth.jsonl")).unwrap();
    for line in truth.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(g) = v["guard"].as_str() else {
            continue;
        };
        match v["event"].as_str() {
            Some("answered") => {
                let outcome = if v["detail"] == "late" {
                    "late"
                } else {
                    "answered"
                };
                expected.insert(g.to_string(), outcome);
            }
            Some("ignored") => {
                expected.insert(g.to_string(), "missed");
            }
            _ => {}
        }
    }
    assert_eq!(
        expected.len(),
        50,
        "ground truth covers every guard: {expected:?}"
    );
    let counts = |o: &str| expected.values().filter(|v| **v == o).count();
    assert!(
        counts("answered") > 10 && counts("late") > 3 && counts("missed") > 3,
        "{expected:?}"
    );

    let got: BTreeMap<String, String> = detail
        .results
        .iter()
        .map(|r| (r.guard.clone(), r.outcome.clone()))
        .collect();
    let mismatches: Vec<_> = expected
        .iter()
        .filter(|(g, o)| got.get(*g).map(String::as_str) != Some(**o))
        .map(|(g, o)| format!("{g}: truth {o}, daemon {:?}", got.get(g)))
        .collect();
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}\n{}",
        mismatches.join("\n"),
        daemon.log_text()
    );
    // How each answered: radio guards by their own kind, app guards by app.
    for r in &detail.results {
        let kind = guards.iter().find(|g| g.0 == r.guard).unwrap().1;
        if r.outcome == "answered" || r.outcome == "late" {
            assert_eq!(r.via, kind, "{r:?}");
            assert!(r.answered_ms > 0);
        }
    }
    let run = detail.run.unwrap();
    assert_eq!(run.state, "finished");
    assert_eq!(run.answered as usize, counts("answered"));
    assert_eq!(run.late as usize, counts("late"));
    assert_eq!(run.missed as usize, counts("missed"));

    // The CSV report says the same as the results, guard by guard.
    let text = String::from_utf8(csv.data).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let gi = header
        .iter()
        .position(|h| *h == "guard_id" || *h == "guard")
        .expect("guard column");
    let oi = header
        .iter()
        .position(|h| *h == "outcome")
        .expect("outcome column");
    let mut csv_rows = 0;
    for l in lines {
        let cols: Vec<&str> = l.split(',').collect();
        assert_eq!(got.get(cols[gi]).map(String::as_str), Some(cols[oi]), "{l}");
        csv_rows += 1;
    }
    assert_eq!(csv_rows, 50);

    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
}

/// Individual mode: each guard is called once, after the previous guard's
/// answer has finished (a radio that is transmitting cannot hear a call),
/// and answers on the first call.
#[test]
fn individual_calls_wait_for_clear_air_and_are_answered_first_time() {
    let dir = TempDir::new("rc-ind");
    let port = free_port();
    let mut roster = String::from("[[roster.company]]\nid = \"c\"\nname = \"C\"\n");
    for i in 0..6 {
        let code = match i % 3 {
            0 => format!("dtmf = \"{}\"", 500 + i),
            1 => format!("selcall = \"{:05}\"", 41000 + i * 13),
            _ => format!("mdc1200 = \"{:04X}\"", 0x3C00 + i),
        };
        roster.push_str(&format!(
            "[[roster.guard]]\nid = \"i{i}\"\nname = \"I{i}\"\ncompany = \"c\"\n{code}\n"
        ));
    }
    let config = format!(
        r#"
[daemon]
station_id = "ind"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 5
reply_delay_ms = 300
talk_ms = 600
log = "truth.jsonl"
[[channel]]
id = "guards"
links = ["guards"]
hang_time_ms = 300
[channel.ani]
selcall = "ccir"
{roster}
"#,
        data = dir.path().join("data").display()
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let detail = rt.block_on(async {
        let addr = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut api = loop {
            if let Ok(c) =
                pb::roll_call_service_client::RollCallServiceClient::connect(addr.clone()).await
            {
                break c;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let id = api
            .start_run(pb::StartRunRequest {
                channel: "guards".into(),
                modes: vec!["individual".into()],
                options: Some(pb::RunOptions {
                    reply_window_s: 5,
                    retries: 1,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .run_id;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let d = api
                .get_run(pb::GetRunRequest { id })
                .await
                .unwrap()
                .into_inner();
            if d.run.as_ref().unwrap().state != "running" {
                break d;
            }
            assert!(Instant::now() < deadline, "{}", daemon.log_text());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    for r in &detail.results {
        assert_eq!(r.outcome, "answered", "{r:?}");
        assert_eq!(r.calls, 1, "{} needed {} calls", r.guard, r.calls);
    }
    // Each answer carries the recording of the reply as evidence (linked
    // shortly after the transmission ends).
    let deadline = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let d = rt.block_on(async {
            let mut api = pb::roll_call_service_client::RollCallServiceClient::connect(format!(
                "http://127.0.0.1:{port}"
            ))
            .await
            .unwrap();
            api.get_run(pb::GetRunRequest {
                id: detail.run.as_ref().unwrap().id,
            })
            .await
            .unwrap()
            .into_inner()
        });
        if d.results.iter().all(|r| r.recording_id > 0) {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "replies not linked to recordings: {:?}",
            d.results
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let db = rusqlite::Connection::open(dir.path().join("data/rollcalld.sqlite")).unwrap();
    for r in &detail.results {
        let guard: Option<String> = db
            .query_row(
                "SELECT guard FROM recordings WHERE id = ?1",
                [r.recording_id],
                |x| x.get(0),
            )
            .unwrap();
        assert_eq!(
            guard.as_deref(),
            Some(r.guard.as_str()),
            "recording of {}",
            r.guard
        );
    }
    // The simulator heard each call exactly once.
    let truth = std::fs::read_to_string(dir.path().join("data/truth.jsonl")).unwrap();
    let calls = truth
        .lines()
        .filter(|l| l.contains("\"event\":\"called\""))
        .count();
    assert_eq!(calls, 6, "{truth}");
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
}
