//! The rest of the console API through the real binary: live Monitor audio
//! (Opus frames with COR and ANI markers, one message per tick), roster edits
//! (admin only, validated, audited) and schedule edits.

mod support;

use std::time::{Duration, Instant};

use rollcall_proto::v1 as pb;
use support::*;
use tonic::metadata::MetadataValue;

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn req<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let v: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    r.metadata_mut().insert("authorization", v);
    r
}

#[test]
fn monitor_roster_and_schedules() {
    let dir = TempDir::new("admin");
    let port = free_port();
    let config = format!(
        r#"
[daemon]
station_id = "adm"
data_dir = "{data}"
time_zone = "Asia/Shanghai"
[grpc]
listen = "127.0.0.1:{port}"
[[grpc.token]]
name = "ops"
role = "operator"
sha256 = "{o}"
[[grpc.token]]
name = "chief"
role = "admin"
sha256 = "{a}"
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 8
reply_delay_ms = 200
talk_ms = 300
roll_call_min_ms = 800
[[channel]]
id = "guards"
links = ["guards"]
hang_time_ms = 300
[[roster.company]]
id = "acme"
name = "Acme"
[[roster.guard]]
id = "g1"
name = "Li"
company = "acme"
dtmf = "701"
"#,
        data = dir.path().join("data").display(),
        o = sha256_hex("op"),
        a = sha256_hex("adm"),
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let ch = loop {
            if let Ok(c) = tonic::transport::Endpoint::from_shared(addr.clone())
                .unwrap()
                .connect()
                .await
            {
                break c;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut roster = pb::roster_service_client::RosterServiceClient::new(ch.clone());
        let mut rc = pb::roll_call_service_client::RollCallServiceClient::new(ch.clone());
        let mut audio = pb::audio_service_client::AudioServiceClient::new(ch.clone());

        // --- roster edits: admin only, validated, audited ---
        let g2 = pb::Guard {
            id: "g2".into(),
            name: "Wang".into(),
            company: "acme".into(),
            dtmf: "702".into(),
            ..Default::default()
        };
        let e = roster
            .upsert_guard(req(g2.clone(), "op"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let mut dup = g2.clone();
        dup.dtmf = "701".into();
        let e = roster.upsert_guard(req(dup, "adm")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("701"), "{}", e.message());
        let mut ghost = g2.clone();
        ghost.company = "nobody".into();
        assert_eq!(
            roster
                .upsert_guard(req(ghost, "adm"))
                .await
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        roster.upsert_guard(req(g2, "adm")).await.unwrap();
        roster
            .upsert_group(req(
                pb::Group {
                    id: "night".into(),
                    name: "Night".into(),
                },
                "adm",
            ))
            .await
            .unwrap();
        let e = roster
            .delete_company(req(pb::DeleteRequest { id: "acme".into() }, "adm"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        let list = roster
            .list(req(pb::ListRosterRequest {}, "op"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.guards.len(), 2);
        assert_eq!(list.groups.len(), 1);
        roster
            .delete_guard(req(pb::DeleteRequest { id: "g2".into() }, "adm"))
            .await
            .unwrap();
        roster
            .delete_group(req(pb::DeleteRequest { id: "night".into() }, "adm"))
            .await
            .unwrap();
        let e = roster
            .delete_guard(req(pb::DeleteRequest { id: "g9".into() }, "adm"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        roster
            .upsert_company(req(
                pb::Company {
                    id: "beta".into(),
                    name: "Beta".into(),
                    ..Default::default()
                },
                "adm",
            ))
            .await
            .unwrap();

        // --- schedules ---
        let sched = pb::Schedule {
            id: "morning".into(),
            channel: "guards".into(),
            times: vec!["08:00".into(), "20:00".into()],
            days: vec!["weekdays".into()],
            modes: vec!["group".into()],
            enabled: true,
            ..Default::default()
        };
        assert_eq!(
            rc.upsert_schedule(req(sched.clone(), "op"))
                .await
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        let mut bad = sched.clone();
        bad.times = vec!["25:00".into()];
        assert_eq!(
            rc.upsert_schedule(req(bad, "adm"))
                .await
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        let saved = rc
            .upsert_schedule(req(sched, "adm"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(saved.time_zone, "Asia/Shanghai");
        let list = rc
            .list_schedules(req(pb::ListSchedulesRequest {}, "op"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.schedules.len(), 1);
        rc.delete_schedule(req(
            pb::DeleteScheduleRequest {
                id: "morning".into(),
            },
            "adm",
        ))
        .await
        .unwrap();
        assert_eq!(
            rc.delete_schedule(req(
                pb::DeleteScheduleRequest {
                    id: "morning".into()
                },
                "adm"
            ))
            .await
            .unwrap_err()
            .code(),
            tonic::Code::NotFound
        );

        // --- Monitor: a roll call's audio, COR, and the guard's ANI ---
        let e = audio
            .monitor(req(
                pb::MonitorRequest {
                    channels: vec!["nope".into()],
                },
                "op",
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let mut mon = audio
            .monitor(req(
                pb::MonitorRequest {
                    channels: vec!["guards".into()],
                },
                "op",
            ))
            .await
            .unwrap()
            .into_inner();
        let run = rc
            .start_run(req(
                pb::StartRunRequest {
                    channel: "guards".into(),
                    modes: vec!["individual".into()],
                    ..Default::default()
                },
                "op",
            ))
            .await
            .unwrap()
            .into_inner()
            .run_id;
        let (mut ours, mut heard, mut ani) = (0, 0, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while ani.is_none() {
            assert!(
                Instant::now() < deadline,
                "no ANI on the monitor (ours {ours}, heard {heard})"
            );
            let tick = tokio::time::timeout(Duration::from_secs(10), mon.message())
                .await
                .expect("monitor tick")
                .unwrap()
                .unwrap();
            assert!(
                !tick.channels.is_empty(),
                "a tick carries at least one channel"
            );
            for c in tick.channels {
                assert_eq!(c.channel, "guards");
                assert!(
                    !c.opus.is_empty() && c.opus.len() < 400,
                    "one Opus packet per frame"
                );
                if c.link.is_empty() {
                    ours += 1;
                } else {
                    assert!(c.cor);
                    heard += 1;
                    if !c.ani.is_empty() {
                        ani = Some((c.ani, c.guard));
                    }
                }
            }
        }
        assert!(ours > 5, "our selective call was monitored");
        assert_eq!(ani, Some(("dtmf:701".to_string(), "g1".to_string())));
        let _ = run;
    });
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    let db = rusqlite::Connection::open(dir.path().join("data/rollcalld.sqlite")).unwrap();
    let n: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE actor = 'chief'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(n >= 6, "roster and schedule edits are audited: {n}");
}
