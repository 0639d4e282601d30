//! A roll call of 20 DMR guards through the real daemon acting as the
//! Homebrew master: a simulated hotspot (MMDVM-style peer) logs in over
//! loopback UDP; most radios acknowledge the radio check, some don't, and
//! some of those call in by voice instead. The results must match what the
//! simulated radios did.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rollcall_hw::dmr::Slot;
use rollcall_hw::sim::hotspot::{self, GroundTruth, HotspotConfig, SimRadio, VoiceCall};
use rollcall_proto::v1 as pb;
use support::*;
use tokio_util::sync::CancellationToken;

const BASE_ID: u32 = 4_600_100;

#[test]
fn twenty_dmr_guards_match_the_hotspots_ground_truth() {
    let dir = TempDir::new("dmr");
    let port = free_port();
    let master = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut roster = String::from("[[roster.company]]\nid = \"c\"\nname = \"C\"\n");
    for i in 0..20 {
        roster.push_str(&format!(
            "[[roster.guard]]\nid = \"d{i:02}\"\nname = \"D{i}\"\ncompany = \"c\"\ndmr = {}\n",
            BASE_ID + i
        ));
    }
    let config = format!(
        r#"
[daemon]
station_id = "dmr"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[[link]]
id = "hotspot"
kind = "dmr"
[link.dmr]
bind = "{master}"
radio_check_timeout_s = 2
[[link.dmr.peer]]
id = 311000
password_env = "TEST_DMR_PASSWORD"
[[channel]]
id = "dmr"
links = ["hotspot"]
{roster}
"#,
        data = dir.path().join("data").display()
    );
    // The password comes from the environment, as in a station.
    std::env::set_var("TEST_DMR_PASSWORD", "passw0rd");
    let mut daemon = Daemon::start(dir.path(), &config);

    // Radios 0..12 answer radio checks; 12..16 do not but their guards call
    // in by voice when checked; 16..20 stay silent.
    let mut expected = BTreeMap::new();
    let radios: Vec<SimRadio> = (0..20)
        .map(|i| {
            let id = BASE_ID + i;
            let (radio, outcome) = match i {
                0..12 => (
                    SimRadio::answering(id, Duration::from_millis(200)),
                    "answered",
                ),
                12..16 => (SimRadio::silent(id), "answered"),
                _ => (SimRadio::silent(id), "missed"),
            };
            expected.insert(format!("d{i:02}"), outcome);
            radio
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let detail = rt.block_on(async {
        let hs = hotspot::spawn(
            HotspotConfig::new(master, 311000, "passw0rd", radios),
            cancel.clone(),
        );
        assert!(
            hs.wait_logged_in(Duration::from_secs(15)).await,
            "hotspot did not log in:\n{}",
            daemon.log_text()
        );
        let addr = format!("http://127.0.0.1:{port}");
        let mut api = pb::roll_call_service_client::RollCallServiceClient::connect(addr)
            .await
            .unwrap();
        let run = api
            .start_run(pb::StartRunRequest {
                channel: "dmr".into(),
                modes: vec!["individual".into()],
                options: Some(pb::RunOptions {
                    reply_window_s: 3,
                    retries: 0,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .run_id;
        // Guards whose radios ignore the check call in by voice.
        let mut called_in = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            for e in hs.log() {
                if let GroundTruth::RadioCheck {
                    radio,
                    answered: false,
                    ..
                } = e
                {
                    let i = radio - BASE_ID;
                    if (12..16).contains(&i) && called_in.insert(radio) {
                        hs.call(radio, VoiceCall::group(Slot::Two, 9))
                            .await
                            .unwrap();
                    }
                }
            }
            let d = api
                .get_run(pb::GetRunRequest { id: run })
                .await
                .unwrap()
                .into_inner();
            if d.run.as_ref().unwrap().state != "running" {
                cancel.cancel();
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "run did not finish:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let got: BTreeMap<String, (String, String)> = detail
        .results
        .iter()
        .map(|r| (r.guard.clone(), (r.outcome.clone(), r.via.clone())))
        .collect();
    for (g, want) in &expected {
        let (outcome, via) = &got[g];
        assert_eq!(outcome, want, "{g}: {:?}", got);
        if outcome == "answered" {
            assert_eq!(via, "dmr", "{g}");
        }
    }
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
}
