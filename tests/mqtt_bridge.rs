//! The MQTT bridge through the real binary against a real mosquitto, with
//! `mosquitto_sub` / `mosquitto_pub` as the independent clients: retained
//! status and the last will on kill -9; events and alerts with the
//! documented schema; an app ack closing the guard's entry; malformed
//! payloads refused with error events and no state change.

#[path = "support/mqtt.rs"]
mod mqtt_support;
mod support;

use std::time::{Duration, Instant};

use mqtt_support::*;
use support::*;

const T: Duration = Duration::from_secs(10);

fn acks(data: &std::path::Path) -> Vec<(String, Option<String>)> {
    let c = db(data);
    let mut s = c
        .prepare("SELECT guard, ack_via FROM alert_guards WHERE alert_id = 1 ORDER BY guard")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn status_events_alert_ack_errors_and_last_will() {
    let dir = TempDir::new("mqtt");
    let broker = Broker::start(&dir.path().join("broker"), false);
    let port = broker.port;
    let sub = Sub::start(port, &["rc/it/#"], None);
    sub.wait_ready(port, "rc/it/probe");

    let data = dir.path().join("data");
    let mut daemon = Daemon::start(dir.path(), &daemon_config(&data, &broker.url()));

    // Retained status with the documented fields.
    let (_, status) = sub
        .wait(|t, v| t == "rc/it/status" && v["state"] == "online", T)
        .unwrap_or_else(|| panic!("no online status\n{}", daemon.log_text()));
    assert_eq!(status["v"], 1);
    assert_eq!(status["station"], "it");
    let kept = retained(port, "rc/it/status").expect("status is retained");
    assert!(kept.contains("\"online\""), "{kept}");

    // An alert through the remote command.
    assert!(publish(
        port,
        "rc/it/cmd/alert",
        br#"{"v":1,"text":"Theft pattern: copper cable","priority":"urgent","target":{"companies":["acme"]}}"#,
        false
    ));
    let (_, result) = sub
        .wait(|t, _| t == "rc/it/cmd/result", T)
        .unwrap_or_else(|| panic!("no command result\n{}", daemon.log_text()));
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["alert_id"], 1);

    let (_, created) = sub
        .wait(
            |t, v| t == "rc/it/alerts/1" && v["type"] == "alert_created",
            T,
        )
        .expect("alert_created on alerts/1");
    for key in ["v", "msg_id", "station", "seq", "ts_ms", "deadline_ms"] {
        assert!(!created[key].is_null(), "{key} missing in {created}");
    }
    assert_eq!(created["guards"], serde_json::json!(["g1", "g2", "g3"]));
    assert_eq!(created["msg_id"], format!("it-{}", created["seq"]));
    // Each targeted guard's app gets the text; g4 (bolt) does not.
    for g in ["g1", "g2", "g3"] {
        let (_, m) = sub
            .wait(|t, _| t == format!("rc/it/guards/{g}/alerts"), T)
            .unwrap_or_else(|| panic!("no alert for {g}"));
        assert_eq!(m["text"], "Theft pattern: copper cable");
        assert_eq!(m["kind"], "alert");
        assert_eq!(m["ack_topic"], format!("rc/it/ack/{g}"));
    }
    // Every bus event is on `events` too, with the same schema.
    let (_, ev) = sub
        .wait(
            |t, v| t == "rc/it/events" && v["type"] == "alert_created",
            T,
        )
        .expect("alert_created on events");
    assert_eq!(ev["msg_id"], created["msg_id"]);

    // g1 acknowledges from his app (by app id in the topic).
    assert!(publish(
        port,
        "rc/it/ack/phone-1",
        br#"{"v":1,"alert_id":1}"#,
        false
    ));
    let (_, acked) = sub
        .wait(
            |t, v| t == "rc/it/alerts/1" && v["type"] == "alert_acked",
            T,
        )
        .unwrap_or_else(|| panic!("no ack\n{}", daemon.log_text()));
    assert_eq!(acked["guard"], "g1");
    assert_eq!(acked["via"], "app");
    assert_eq!(acked["company"], "acme");
    assert_eq!(acked["late"], false);
    let after_ack = acks(&data);
    assert_eq!(after_ack[0], ("g1".into(), Some("app".into())));

    // Malformed and refused payloads: each an error event naming the topic.
    let huge = vec![b'x'; 100_000];
    let bad: Vec<(&str, &[u8], &str)> = vec![
        ("rc/it/ack/g2", b"{not json", "not valid JSON"),
        (
            "rc/it/ack/g2",
            br#"{"v":1,"alert_id":"one"}"#,
            "invalid type",
        ),
        ("rc/it/ack/g2", br#"{"v":7,"alert_id":1}"#, "version 7"),
        ("rc/it/ack/g2", &huge, "larger than"),
        (
            "rc/it/ack/nobody",
            br#"{"v":1,"alert_id":1}"#,
            "unknown guard",
        ),
        ("rc/it/ack/g4", br#"{"v":1,"alert_id":1}"#, "not a target"),
        ("rc/it/ack/g2", br#"{"v":1,"alert_id":99}"#, "not open"),
        (
            "rc/it/ack/g1",
            br#"{"v":1,"alert_id":1}"#,
            "already acknowledged",
        ),
        (
            "rc/it/cmd/alert",
            br#"{"v":1,"text":"x","target":{"guards":["ghost"]}}"#,
            "unknown guard \"ghost\"",
        ),
    ];
    for (i, (topic, payload, needle)) in bad.iter().enumerate() {
        assert!(publish(port, topic, payload, false));
        let found = sub.wait(
            |t, v| {
                t == "rc/it/events"
                    && v["type"] == "error"
                    && v["source"] == *topic
                    && v["message"].as_str().is_some_and(|m| m.contains(needle))
            },
            T,
        );
        assert!(
            found.is_some(),
            "case {i} ({topic}): no error event containing {needle:?}\n{}",
            daemon.log_text()
        );
    }
    assert_eq!(acks(&data), after_ack, "refused messages changed nothing");
    let alerts: i64 = db(&data)
        .query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(alerts, 1);

    // Every durable message was acknowledged by the broker and left the
    // outbox.
    let drained = poll(T, || {
        let n: i64 = db(&data)
            .query_row("SELECT COUNT(*) FROM mqtt_outbox", [], |r| r.get(0))
            .unwrap();
        (n == 0).then_some(())
    });
    assert!(drained.is_some(), "outbox not drained");

    // kill -9: the broker publishes the will after 1.5 × keepalive (1 s).
    daemon.signal(libc::SIGKILL);
    let killed = Instant::now();
    let (_, will) = sub
        .wait(|t, v| t == "rc/it/status" && v["state"] == "offline", T)
        .expect("last will");
    let took = killed.elapsed();
    eprintln!("last will after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(will["v"], 1);
    let kept = retained(port, "rc/it/status").unwrap();
    assert!(kept.contains("\"offline\""), "{kept}");
    let _ = daemon.wait_exit(Duration::from_secs(2));
}

#[test]
fn clean_stop_says_offline_and_bad_password_file_fails_start_up() {
    let dir = TempDir::new("mqtt-stop");
    let broker = Broker::start(&dir.path().join("broker"), false);
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(dir.path(), &daemon_config(&data, &broker.url()));
    assert!(
        poll(T, || retained(broker.port, "rc/it/status")
            .filter(|s| s.contains("online")))
        .is_some(),
        "{}",
        daemon.log_text()
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(T), Some(Some(0)), "{}", daemon.log_text());
    let kept = retained(broker.port, "rc/it/status").unwrap();
    assert!(kept.contains("\"offline\""), "{kept}");

    // A world-readable password file is refused before anything starts.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = daemon_config(&data, &broker.url()).replace(
        "commands = true",
        &format!(
            "commands = true\nusername = \"u\"\npassword_file = \"{}\"",
            pw.display()
        ),
    );
    let mut bad = Daemon::start(dir.path(), &config);
    let code = bad.wait_exit(T);
    assert!(matches!(code, Some(Some(c)) if c != 0), "{code:?}");
    // The log reader thread may still be draining stderr.
    assert!(bad.wait_log("must be 0600", T), "{}", bad.log_text());
}
