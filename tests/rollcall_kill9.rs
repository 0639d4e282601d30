//! `kill -9` in the middle of a roll call, then restart: the run resumes its
//! remaining window (or closes as interrupted), every answer committed
//! before the kill is still there unchanged, and there is still exactly one
//! run.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rollcall_proto::v1 as pb;
use support::*;

fn config(dir: &Path, port: u16) -> String {
    let mut roster = String::from("[[roster.company]]\nid = \"acme\"\nname = \"Acme\"\n");
    for i in 0..20 {
        roster.push_str(&format!(
            "[[roster.guard]]\nid = \"g{i:02}\"\nname = \"Guard {i}\"\ncompany = \"acme\"\ndtmf = \"{}\"\n",
            300 + i
        ));
    }
    format!(
        r#"
[daemon]
station_id = "k9"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 9
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

#[test]
fn kill_9_mid_run_keeps_every_answer_and_resumes() {
    let dir = TempDir::new("k9");
    let port = free_port();
    let cfg = config(dir.path(), port);
    let db = dir.path().join("data/rollcalld.sqlite");
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run_id = rt.block_on(async {
        let mut api = rollcall_api(port).await;
        // The simulated station needs to be up to hear the announcement.
        tokio::time::sleep(Duration::from_millis(500)).await;
        api.start_run(pb::StartRunRequest {
            channel: "guards".into(),
            modes: vec!["group".into()],
            options: Some(pb::RunOptions {
                window_s: 40,
                on_time_s: 35,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run_id
    });
    // Let a few answers be committed, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let a = rollcall_results(&db);
        if a.values().filter(|(o, _)| o == "answered").count() >= 5 {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no answers:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(Duration::from_secs(5));
    drop(daemon);
    // What was committed at the moment of the kill (a write may have landed
    // between the read above and the kill: take the later view).
    let at_kill = rollcall_results(&db);
    for (g, a) in &before {
        if a.0 == "answered" {
            assert_eq!(
                at_kill.get(g),
                Some(a),
                "answer of {g} changed before restart"
            );
        }
    }

    let mut daemon = Daemon::start(dir.path(), &cfg);
    let detail = rt.block_on(async {
        let mut api = rollcall_api(port).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let d = api
                .get_run(pb::GetRunRequest { id: run_id })
                .await
                .unwrap()
                .into_inner();
            if d.run.as_ref().unwrap().state != "running" {
                let runs = api
                    .list_runs(pb::ListRunsRequest::default())
                    .await
                    .unwrap()
                    .into_inner();
                return (d, runs);
            }
            assert!(
                Instant::now() < deadline,
                "run never closed:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let (detail, runs) = detail;
    assert_eq!(runs.runs.len(), 1, "no duplicate run: {:?}", runs.runs);
    let state = detail.run.as_ref().unwrap().state.clone();
    assert!(state == "finished" || state == "interrupted", "{state}");
    // Every answer committed before the kill is still there, unchanged.
    let after: BTreeMap<_, _> = detail
        .results
        .iter()
        .map(|r| (r.guard.clone(), (r.outcome.clone(), r.answered_ms)))
        .collect();
    for (g, (outcome, ms)) in &at_kill {
        if outcome == "answered" || outcome == "late" {
            assert_eq!(after[g].0, *outcome, "{g}");
            assert_eq!(Some(after[g].1), *ms, "{g}");
        }
    }
    assert_eq!(detail.results.len(), 20);
    let kept = at_kill
        .values()
        .filter(|(o, _)| o == "answered" || o == "late")
        .count();
    eprintln!(
        "FAULT rollcall_kill9: answers committed before the kill = {kept}, kept unchanged = {kept}, runs = 1, results = 20"
    );
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
}
