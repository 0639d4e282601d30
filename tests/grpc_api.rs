//! The console API through the real binary: token roles, audit rows, event
//! resume by sequence number, console Talk keying the simulated radios and
//! being recorded, a second Talk refused, recordings search and fetch.

mod support;

use std::time::{Duration, Instant};

use rollcall_proto::v1 as pb;
use support::*;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(dir: &std::path::Path, port: u16, metrics_port: u16) -> String {
    format!(
        r#"
[daemon]
station_id = "it-api"
data_dir = "{data}"
[metrics]
listen = "127.0.0.1:{metrics_port}"
[grpc]
listen = "127.0.0.1:{port}"
[[grpc.token]]
name = "wall-screen"
role = "viewer"
sha256 = "{v}"
[[grpc.token]]
name = "desk-1"
role = "operator"
sha256 = "{o}"
[[grpc.token]]
name = "chief"
role = "admin"
sha256 = "{a}"

[[link]]
id = "police"
kind = "sim"
[link.sim]
seed = 3
roster_guards = false
log = "police.jsonl"

[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 4
roster_guards = false
background_mean_ms = 1500
background_first_ms = 200
background_talk_min_ms = 400
background_talk_max_ms = 800

[[channel]]
id = "merged"
links = ["police", "guards"]
hang_time_ms = 300

[[roster.company]]
id = "acme"
name = "Acme Security"
[[roster.guard]]
id = "g1"
name = "Li"
company = "acme"
dtmf = "901"
[[roster.guard]]
id = "g2"
name = "Wang"
company = "acme"
dtmf = "902"
"#,
        data = dir.join("data").display(),
        v = sha256_hex("viewer-secret"),
        o = sha256_hex("operator-secret"),
        a = sha256_hex("admin-secret"),
    )
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        let v: MetadataValue<_> = format!("Bearer {t}").parse().unwrap();
        r.metadata_mut().insert("authorization", v);
    }
    r
}

async fn connect(port: u16) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        assert!(Instant::now() < deadline, "daemon did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tone_frame(n: usize) -> Vec<u8> {
    (0..160)
        .map(|i| {
            let t = (n * 160 + i) as f64 / 8000.0;
            ((t * 2.0 * std::f64::consts::PI * 800.0).sin() * 8000.0) as i16
        })
        .flat_map(|s| s.to_le_bytes())
        .collect()
}

#[test]
fn roles_audit_events_talk_and_recordings() {
    let dir = TempDir::new("api");
    let port = free_port();
    let metrics_port = free_port();
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), port, metrics_port));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ch = connect(port).await;
        let mut station = pb::station_service_client::StationServiceClient::new(ch.clone());
        let mut audio = pb::audio_service_client::AudioServiceClient::new(ch.clone());
        let mut events = pb::event_service_client::EventServiceClient::new(ch.clone());
        let mut recs = pb::recording_service_client::RecordingServiceClient::new(ch.clone());

        // --- roles ---
        let e = station
            .get_status(with_token(pb::GetStatusRequest {}, None))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = station
            .get_status(with_token(pb::GetStatusRequest {}, Some("wrong")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let s = station
            .get_status(with_token(pb::GetStatusRequest {}, Some("viewer-secret")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.station_id, "it-api");
        let e = station
            .set_patch(with_token(
                pb::SetPatchRequest {
                    channel_a: "merged".into(),
                    channel_b: "merged".into(),
                    enabled: true,
                },
                Some("viewer-secret"),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let start = pb::TalkRequest {
            msg: Some(pb::talk_request::Msg::Start(pb::TalkStart {
                channel: "merged".into(),
            })),
        };
        let e = audio
            .talk(with_token(
                tokio_stream::iter(vec![start.clone()]),
                Some("viewer-secret"),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);

        // --- alerts: operator creates, viewer cannot, ack on behalf ---
        let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
        let new_alert = pb::CreateAlertRequest {
            text: "Theft pattern on Market street: check parked bikes".into(),
            priority: "urgent".into(),
            target: Some(pb::AlertTarget {
                channels: vec!["merged".into()],
                guards: vec!["g1".into(), "g2".into()],
                ..Default::default()
            }),
            clip_path: String::new(),
            deadline_s: 600,
        };
        let e = alerts
            .create(with_token(new_alert.clone(), Some("viewer-secret")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let mut bad = new_alert.clone();
        bad.priority = "whenever".into();
        let e = alerts
            .create(with_token(bad, Some("operator-secret")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("whenever"), "{}", e.message());
        let alert = alerts
            .create(with_token(new_alert, Some("operator-secret")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(alert.total, 2);
        let ack = alerts
            .acknowledge(with_token(
                pb::AcknowledgeRequest {
                    alert_id: alert.id,
                    guard: "g1".into(),
                },
                Some("operator-secret"),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ack.outcome, "acknowledged");
        let detail = alerts
            .get(with_token(
                pb::GetAlertRequest { id: alert.id },
                Some("viewer-secret"),
            ))
            .await
            .unwrap()
            .into_inner();
        let g1 = detail.guards.iter().find(|g| g.guard == "g1").unwrap();
        assert_eq!(
            (g1.state.as_str(), g1.via.as_str()),
            ("acknowledged", "operator")
        );
        assert_eq!(detail.companies[0].on_time, 1);
        assert!((detail.companies[0].rate - 0.5).abs() < 1e-9);
        let e = alerts
            .get(with_token(
                pb::GetAlertRequest { id: 4242 },
                Some("viewer-secret"),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);

        // --- event resume ---
        let mut live = events
            .subscribe(with_token(
                pb::SubscribeRequest {
                    after_seq: 0,
                    kinds: vec![],
                    live_only: true,
                },
                Some("viewer-secret"),
            ))
            .await
            .unwrap()
            .into_inner();
        let first = live.message().await.unwrap().unwrap();
        let after = first.seq;
        drop(live);
        // Background traffic makes events while we are away; wait for 100.
        let db = dir.path().join("data/rollcalld.sqlite");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let max: i64 = rusqlite::Connection::open(&db)
                .unwrap()
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
                .unwrap();
            if max >= after + 100 {
                break;
            }
            assert!(Instant::now() < deadline, "only {} events", max - after);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut resumed = events
            .subscribe(with_token(
                pb::SubscribeRequest {
                    after_seq: after,
                    kinds: vec![],
                    live_only: false,
                },
                Some("viewer-secret"),
            ))
            .await
            .unwrap()
            .into_inner();
        for expect in after + 1..=after + 100 {
            let e = resumed.message().await.unwrap().unwrap();
            assert_eq!(e.seq, expect, "events must arrive once, in order");
            let v: serde_json::Value = serde_json::from_str(&e.json).unwrap();
            assert_eq!(v["type"], e.kind);
        }
        drop(resumed);

        // --- Talk: granted, a second one refused, audio keys the radios ---
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::TalkRequest>(64);
        tx.send(start.clone()).await.unwrap();
        let mut replies = audio
            .talk(with_token(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                Some("operator-secret"),
            ))
            .await
            .unwrap()
            .into_inner();
        let grant = replies.message().await.unwrap().unwrap();
        assert!(grant.granted, "{grant:?}");
        let second = audio
            .talk(with_token(
                tokio_stream::iter(vec![start.clone()]),
                Some("admin-secret"),
            ))
            .await
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .unwrap();
        assert!(
            !second.granted,
            "a second Talk must be refused while the first holds"
        );
        assert!(second.reason.contains("busy"), "{}", second.reason);
        for n in 0..75 {
            tx.send(pb::TalkRequest {
                msg: Some(pb::talk_request::Msg::Audio(pb::TalkAudio {
                    pcm: tone_frame(n),
                })),
            })
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(tx);
        let end = replies.message().await.unwrap().unwrap();
        assert!(!end.granted);
        assert!(end.frames >= 70, "{end:?}");

        // The console's transmission is recorded.
        let deadline = Instant::now() + Duration::from_secs(10);
        let rec = loop {
            let found = recs
                .search(with_token(
                    pb::SearchRecordingsRequest {
                        direction: "tx".into(),
                        ..Default::default()
                    },
                    Some("viewer-secret"),
                ))
                .await
                .unwrap()
                .into_inner()
                .recordings
                .into_iter()
                .find(|r| r.source == "console");
            if let Some(r) = found {
                break r;
            }
            assert!(Instant::now() < deadline, "no console recording");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            rec.duration_ms >= 1400 && rec.duration_ms <= 1600,
            "{rec:?}"
        );
        let mut stream = recs
            .fetch(with_token(
                pb::FetchRecordingRequest { id: rec.id },
                Some("viewer-secret"),
            ))
            .await
            .unwrap()
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            bytes.extend(chunk.data);
        }
        assert_eq!(bytes.len() as i64, rec.bytes);
        assert_eq!(&bytes[..4], b"OggS");
        let e = recs
            .fetch(with_token(
                pb::FetchRecordingRequest { id: 999_999 },
                Some("viewer-secret"),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    });

    // /metrics parses as Prometheus text and its counters move with traffic.
    let key = "rollcalld_link_frames_in_total{link=\"guards\"}";
    let first = scrape(metrics_port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = scrape(metrics_port);
        if now[key] > first[key] {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "frames_in did not move from {}",
            first[key]
        );
    };
    assert!(second["rollcalld_link_frames_out_total{link=\"police\"}"] > 0.0);
    assert!(
        second
            .iter()
            .any(|(k, v)| k.starts_with("rollcalld_grpc_requests_total{method=\"/rollcall.v1.AudioService/Talk\",code=\"PermissionDenied\"") && *v >= 1.0),
        "{second:?}"
    );
    assert!(second["rollcalld_recordings_files_total"] >= 1.0);

    // The police station was keyed by the console.
    let police = std::fs::read_to_string(dir.path().join("data/police.jsonl")).unwrap_or_default();
    assert!(
        police.contains("gateway_tx"),
        "police station never keyed:\n{police}"
    );

    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    // Audit rows name the token holder.
    let conn = rusqlite::Connection::open(dir.path().join("data/rollcalld.sqlite")).unwrap();
    let rows: Vec<(String, String, String)> = conn
        .prepare("SELECT actor, action, detail FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        rows.contains(&("desk-1".into(), "talk".into(), "granted".into())),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.0 == "chief" && r.1 == "talk" && r.2.starts_with("refused")),
        "{rows:?}"
    );
}

/// Fetches /metrics and checks every line against the text exposition
/// format; returns samples by `name{labels}`.
fn scrape(port: u16) -> std::collections::HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    sock.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut samples = std::collections::HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            assert!(matches!(it.next(), Some("counter" | "gauge")), "{line}");
            assert!(
                typed.insert(name.to_string()),
                "family {name} declared twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line:?}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line:?}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line:?}"
                );
            }
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(series.to_string(), v);
    }
    samples
}
