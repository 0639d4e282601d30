//! The daemon's lifecycle through the real binary: config errors exit 2 with
//! every problem listed; a good config serves health and status over gRPC on
//! a free port; SIGTERM stops every task and exits 0 quickly.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use rollcall_proto::v1 as pb;
use support::*;

fn config(dir: &std::path::Path, port: u16) -> String {
    format!(
        r#"
[daemon]
station_id = "it-station"
data_dir = "{}"
time_zone = "Europe/Berlin"
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
"#,
        dir.join("data").display()
    )
}

#[test]
fn check_config_lists_every_error_and_exits_2() {
    let dir = TempDir::new("check");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[daemon]
station_id = "x"
colour = "blue"
[grpc]
listen = 50051
[[link]]
id = "police"
kind = "roip"
[link.roip]
bind = "127.0.0.1:5000"
peer = "127.0.0.1:5001"
codec = { name = "pcmu" }
[[link]]
id = "police"
kind = "roip"
[link.roip]
bind = "127.0.0.1:5002"
peer = "127.0.0.1:5003"
codec = { name = "pcmu" }
[[channel]]
id = "merged"
links = ["police", "guards"]
"#,
    )
    .unwrap();
    let out = Command::new(ROLLCALLD)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("bad.toml:") && !l.contains("error(s)"))
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].contains(":3:1: daemon.colour: unknown field"),
        "{text}"
    );
    assert!(
        lines[1].contains(":5:") && lines[1].contains("grpc.listen"),
        "{text}"
    );
    assert!(
        lines[2].contains(":14:") && lines[2].contains("duplicate link id"),
        "{text}"
    );
    assert!(
        lines[3].contains(":22:") && lines[3].contains("\"guards\""),
        "{text}"
    );

    // The daemon itself refuses to start on it, with the same list, exit 2.
    let out = Command::new(ROLLCALLD)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not starting"));
}

#[test]
fn serves_health_and_status_then_stops_cleanly_on_sigterm() {
    let dir = TempDir::new("life");
    let port = free_port();
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), port));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = format!("http://127.0.0.1:{port}");

    // Health SERVING within 2 s of start.
    let serving_after = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(addr.clone())
                .unwrap()
                .connect()
                .await
            {
                let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
                if let Ok(r) = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                {
                    assert_eq!(
                        r.into_inner().status,
                        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                    );
                    return daemon.started.elapsed();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no health answer:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(
        serving_after < Duration::from_secs(2),
        "health took {serving_after:?}"
    );

    let status = rt.block_on(async {
        let mut api = pb::station_service_client::StationServiceClient::connect(addr.clone())
            .await
            .unwrap();
        api.get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(status.station_id, "it-station");
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.time_zone, "Europe/Berlin");

    // rollcallctl talks to it too.
    let out = Command::new(ROLLCALLCTL)
        .args(["--addr", &addr, "--json", "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["station_id"], "it-station");

    // SIGTERM: exit 0 within 1 s, a log line per stopped task.
    let t = Instant::now();
    daemon.signal(libc::SIGTERM);
    let code = daemon.wait_exit(Duration::from_secs(5));
    let took = t.elapsed();
    assert_eq!(code, Some(Some(0)), "log:\n{}", daemon.log_text());
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    let log = daemon.log_text();
    assert!(
        log.contains("task=grpc") && log.contains("stopped"),
        "{log}"
    );
    assert!(
        log.contains("event bus") && log.contains("storage closed"),
        "{log}"
    );

    // The database survived with the start and stop events in it.
    let db = dir.path().join("data/rollcalld.sqlite");
    assert!(db.exists());
}
