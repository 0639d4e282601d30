//! Roll-call figures, measured through the real daemon (`cargo bench -p
//! rollcalld --bench rollcall`, part of `make bench`):
//! - air time of a group roll call of 50 guards and of an individual roll
//!   call of 50 guards on one simulated channel (goal: group < 2 min);
//! - time to close an app-mode roll call of 10,000 guards through a real
//!   mosquitto after the last ack is published (goal: < 2 s).
//!
//! Prints a markdown table; also appends it to `$BENCH_OUT/rollcall.md`.

#[path = "support/mqtt.rs"]
mod mqtt;
mod support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rollcall_proto::v1 as pb;
use support::*;

type Api = RollcallApi;

async fn connect(port: u16) -> Api {
    rollcall_api(port).await.max_decoding_message_size(64 << 20)
}

async fn wait_finished(api: &mut Api, id: i64, limit: Duration) -> pb::RunDetail {
    let deadline = Instant::now() + limit;
    loop {
        let d = api
            .get_run(pb::GetRunRequest { id })
            .await
            .unwrap()
            .into_inner();
        if d.run.as_ref().unwrap().state != "running" {
            return d;
        }
        assert!(Instant::now() < deadline, "run {id} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn radio_config(dir: &std::path::Path, port: u16) -> String {
    let mut roster = String::from("[[roster.company]]\nid = \"c\"\nname = \"C\"\n");
    for i in 0..50 {
        let code = match i % 3 {
            0 => format!("dtmf = \"{}\"", 400 + i),
            1 => format!("selcall = \"{:05}\"", 30000 + i * 11),
            _ => format!("mdc1200 = \"{:04X}\"", 0x2B00 + i),
        };
        roster.push_str(&format!(
            "[[roster.guard]]\nid = \"g{i:02}\"\nname = \"G{i}\"\ncompany = \"c\"\n{code}\n"
        ));
    }
    format!(
        r#"
[daemon]
station_id = "bench"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[recorder]
enabled = false
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 1
reply_delay_ms = 300
talk_ms = 300
roll_call_min_ms = 800
[[channel]]
id = "guards"
links = ["guards"]
hang_time_ms = 300
[channel.ani]
selcall = "ccir"
{roster}
"#,
        data = dir.join("data").display()
    )
}

fn main() {
    let mut table = String::from("| figure | value | goal |\n|---|---|---|\n");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // --- air time on one simulated channel ---
    // (BENCH_ROLLCALL=app skips this part.)
    let radio = std::env::var("BENCH_ROLLCALL").map_or(true, |v| v != "app");
    let dir = TempDir::new("bench-rc");
    let port = free_port();
    let mut daemon = Daemon::start(dir.path(), &radio_config(dir.path(), port));
    rt.block_on(async {
        if !radio {
            return;
        }
        let mut api = connect(port).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (mode, goal) in [("group", Some(120.0)), ("individual", None)] {
            let t = Instant::now();
            let id = api
                .start_run(pb::StartRunRequest {
                    channel: "guards".into(),
                    modes: vec![mode.into()],
                    options: Some(pb::RunOptions {
                        window_s: 150,
                        on_time_s: 150,
                        reply_window_s: 8,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .run_id;
            let d = wait_finished(&mut api, id, Duration::from_secs(600)).await;
            let _ = t;
            // Air time: from the start of the run to the last answer heard
            // (a guard who never answers would otherwise count the window).
            let run = d.run.as_ref().unwrap();
            let last = d.results.iter().map(|r| r.answered_ms).max().unwrap_or(0);
            let secs = (last - run.started_ms).max(0) as f64 / 1000.0;
            let answered = d.results.iter().filter(|r| r.outcome == "answered").count();
            let _ = writeln!(
                table,
                "| {mode} roll call of 50 guards: air time ({answered} answered) | {secs:.1} s | {} |",
                match goal {
                    Some(g) if secs < g => format!("< {g:.0} s: met"),
                    Some(g) => format!("< {g:.0} s: MISSED"),
                    None => "—".into(),
                }
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));

    // --- 10,000 app acks through mosquitto (BENCH_APP_GUARDS overrides) ---
    let n_app: usize = std::env::var("BENCH_APP_GUARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = TempDir::new("bench-app");
    let broker = mqtt::Broker::start(&dir.path().join("broker"), false);
    let port = free_port();
    let mut roster = String::from("[[roster.company]]\nid = \"c\"\nname = \"C\"\n");
    for i in 0..n_app {
        let _ = write!(
            roster,
            "[[roster.guard]]\nid = \"a{i}\"\nname = \"A{i}\"\ncompany = \"c\"\napp_id = \"app{i}\"\n"
        );
    }
    let config = format!(
        r#"
[daemon]
station_id = "bench"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[recorder]
enabled = false
[mqtt]
enabled = true
broker = "127.0.0.1:{mqtt}"
prefix = "b"
[[link]]
id = "l"
kind = "sim"
[link.sim]
roster_guards = false
[[channel]]
id = "ch"
links = ["l"]
{roster}
"#,
        data = dir.path().join("data").display(),
        mqtt = broker.port
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    let close = rt.block_on(async {
        let mut api = connect(port).await;
        let id = api
            .start_run(pb::StartRunRequest {
                channel: "ch".into(),
                modes: vec!["app".into()],
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
            .run_id;
        // A third-party client publishes every guard's ack (QoS 1).
        let mut opts = rumqttc::MqttOptions::new("bench-apps", "127.0.0.1", broker.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(1000);
        let (client, mut el) = rumqttc::AsyncClient::new(opts, 20_000);
        let publisher = tokio::spawn(async move {
            for i in 0..n_app {
                client
                    .publish(
                        format!("b/bench/ack/app{i}"),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        format!("{{\"v\":1,\"run_id\":{id}}}"),
                    )
                    .await
                    .unwrap();
            }
            client
        });
        let mut acked = 0;
        let mut last_ack = Instant::now();
        while acked < n_app {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = el.poll().await {
                acked += 1;
                last_ack = Instant::now();
            }
        }
        let _client = publisher.await.unwrap();
        let d = match tokio::time::timeout(
            Duration::from_secs(120),
            wait_finished(&mut api, id, Duration::from_secs(120)),
        )
        .await
        {
            Ok(d) => d,
            Err(_) => panic!("app run did not finish:\n{}", daemon.log_text()),
        };
        let answered = d.results.iter().filter(|r| r.outcome == "answered").count();
        assert_eq!(answered, n_app, "every app ack counted");
        last_ack.elapsed().as_secs_f64()
    });
    let _ = writeln!(
        table,
        "| app roll call of {n_app} guards: close after the last ack reached the broker | {close:.2} s | < 2 s: {} |",
        if close < 2.0 { "met" } else { "MISSED" }
    );
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(20));

    println!("{table}");
    if let Ok(out) = std::env::var("BENCH_OUT") {
        std::fs::write(std::path::Path::new(&out).join("rollcall.md"), &table).unwrap();
    }
}
