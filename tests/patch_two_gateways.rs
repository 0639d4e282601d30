//! Two gateways chained over RoIP, each merging its own radio with the
//! link to the other (police ⇄ gateway A ⇄ RoIP ⇄ gateway B ⇄ guards). A
//! police transmission must reach the guards exactly once and never come
//! back to the police radio: no loop forms through the two patches.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn gateway(
    dir: &Path,
    name: &str,
    radio: &str,
    radio_extra: &str,
    relay_bind: u16,
    relay_peer: u16,
) -> String {
    format!(
        r#"
[daemon]
station_id = "{name}"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{grpc}"
require_auth = false
[recorder]
enabled = false

[[link]]
id = "{radio}"
kind = "sim"
[link.sim]
seed = 21
roster_guards = false
log = "{radio}.jsonl"
{radio_extra}

[[link]]
id = "relay"
kind = "roip"
[link.roip]
bind = "127.0.0.1:{relay_bind}"
peer = "127.0.0.1:{relay_peer}"
codec = {{ name = "pcmu" }}
peer_timeout_ms = 0

[[channel]]
id = "merged"
links = ["{radio}", "relay"]
hang_time_ms = 300
patch_tail_ms = 200
"#,
        data = dir.join("data").display(),
        grpc = free_port(),
    )
}

fn records(path: &Path, event: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == event)
        .collect()
}

#[test]
fn two_gateways_patching_the_same_pair_form_no_loop() {
    let (a_port, b_port) = (free_udp(), free_udp());
    let dir_a = TempDir::new("gwa");
    let dir_b = TempDir::new("gwb");
    let police = "background_mean_ms = 600000\nbackground_first_ms = 1500\nbackground_talk_min_ms = 2000\nbackground_talk_max_ms = 2000";
    let mut a = Daemon::start(
        dir_a.path(),
        &gateway(dir_a.path(), "gw-a", "police", police, a_port, b_port),
    );
    let mut b = Daemon::start(
        dir_b.path(),
        &gateway(dir_b.path(), "gw-b", "guards", "", b_port, a_port),
    );
    let guards_log = dir_b.path().join("data/guards.jsonl");
    let police_log = dir_a.path().join("data/police.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while records(&guards_log, "gateway_tx").is_empty() {
        assert!(
            Instant::now() < deadline,
            "guards never heard the police:\nA:\n{}\nB:\n{}",
            a.log_text(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a loop, if there were one, time to come round several times.
    std::thread::sleep(Duration::from_secs(4));
    let sent = records(&police_log, "background");
    let heard = records(&guards_log, "gateway_tx");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        heard.len(),
        1,
        "the guards heard it exactly once: {heard:?}"
    );
    let d = heard[0]["duration_ms"].as_u64().unwrap();
    assert!(
        (2000..=3200).contains(&d),
        "heard {d} ms of a 2000 ms transmission"
    );
    assert!(
        records(&police_log, "gateway_tx").is_empty(),
        "the police radio was keyed by its own traffic: a loop"
    );
    for d in [&mut a, &mut b] {
        d.signal(libc::SIGTERM);
        assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(Some(0)));
    }
}
