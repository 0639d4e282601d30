//! Payload mapping and inbound validation over sample messages.

use super::*;
use crate::events::Event;
use crate::roster::{Guard, RosterSnapshot};

fn topics() -> Topics {
    Topics::new("rc", "st1")
}

fn roster() -> RosterSnapshot {
    let g = |id: &str, app: &str| Guard {
        id: id.into(),
        name: id.into(),
        company: "acme".into(),
        post: None,
        dtmf: None,
        selcall: None,
        mdc1200: None,
        dmr: None,
        app_id: Some(app.into()),
        groups: vec![],
    };
    RosterSnapshot::new(vec![], vec![g("g1", "phone-1"), g("g2", "phone-2")], vec![])
}

fn out(event: &Event, seq: i64) -> Vec<OutMsg> {
    outbound(&topics(), seq, 1000, &serde_json::to_value(event).unwrap())
}

fn json(m: &OutMsg) -> Value {
    serde_json::from_slice(&m.payload).unwrap()
}

#[test]
fn every_event_goes_to_events_with_version_and_msg_id() {
    let msgs = out(
        &Event::Cor {
            link: "l".into(),
            open: true,
        },
        42,
    );
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].topic, "rc/st1/events");
    assert!(!msgs[0].durable);
    let j = json(&msgs[0]);
    assert_eq!(j["v"], 1);
    assert_eq!(j["msg_id"], "st1-42");
    assert_eq!(j["seq"], 42);
    assert_eq!(j["type"], "cor");
    assert_eq!(j["open"], true);
}

#[test]
fn link_state_is_retained() {
    let msgs = out(
        &Event::LinkDown {
            link: "police".into(),
            reason: "eof".into(),
        },
        1,
    );
    let m = &msgs[1];
    assert_eq!(m.topic, "rc/st1/links/police");
    assert!(m.retain && !m.durable);
    assert_eq!(json(m)["state"], "down");
    assert_eq!(json(m)["reason"], "eof");
}

#[test]
fn alert_messages_are_durable_with_stable_ids() {
    let created = Event::AlertCreated {
        alert_id: 9,
        text: "Missing person".into(),
        priority: "urgent".into(),
        created_by: "op".into(),
        guards: vec!["g1".into(), "bad/guard".into(), "g2".into()],
        channels: vec![],
        deadline_ms: 5000,
    };
    let msgs = out(&created, 7);
    let topics: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "rc/st1/events",
            "rc/st1/alerts/9",
            "rc/st1/guards/g1/alerts",
            "rc/st1/guards/g2/alerts"
        ],
        "a guard id that is not a topic level is skipped"
    );
    assert!(msgs[1..].iter().all(|m| m.durable));
    let g1 = json(&msgs[2]);
    assert_eq!(g1["msg_id"], "st1-7-g1");
    assert_eq!(g1["kind"], "alert");
    assert_eq!(g1["text"], "Missing person");
    assert_eq!(g1["ack_topic"], "rc/st1/ack/g1");
    assert_eq!(out(&created, 7), msgs, "same event, same messages");

    let esc = Event::AlertEscalated {
        alert_id: 9,
        company: "acme".into(),
        supervisor: Some("boss".into()),
        guards: vec!["g2".into()],
    };
    let msgs = out(&esc, 8);
    assert_eq!(msgs[2].topic, "rc/st1/supervisors/acme");
    assert_eq!(json(&msgs[2])["msg_id"], "st1-8-s");
    assert_eq!(json(&msgs[1])["msg_id"], "st1-8");
}

#[test]
fn rollcall_events_go_to_their_run() {
    let ev = serde_json::json!({"type": "rollcall_result", "run_id": 12, "guard": "g1"});
    let msgs = outbound(&topics(), 3, 0, &ev);
    assert_eq!(msgs[1].topic, "rc/st1/rollcall/12");
    assert!(msgs[1].durable);
    assert_eq!(json(&msgs[1])["guard"], "g1");
}

#[test]
fn acks_by_guard_id_or_app_id() {
    let t = topics();
    let r = roster();
    let ok = |topic: &str| parse_inbound(&t, topic, br#"{"v":1,"alert_id":3}"#, &r, false);
    let want = Inbound::Ack {
        guard: "g1".into(),
        alert_id: 3,
    };
    assert_eq!(ok("rc/st1/ack/g1"), Ok(want.clone()));
    assert_eq!(ok("rc/st1/ack/phone-1"), Ok(want));
}

#[test]
fn malformed_inbound_is_refused_with_a_reason() {
    let t = topics();
    let r = roster();
    let huge = vec![b' '; MAX_INBOUND + 1];
    let cases: &[(&str, &[u8], &str)] = &[
        ("rc/st1/ack/g1", b"{not json", "not valid JSON"),
        ("rc/st1/ack/g1", b"", "not valid JSON"),
        (
            "rc/st1/ack/g1",
            br#"{"v":1,"alert_id":"3"}"#,
            "invalid type",
        ),
        (
            "rc/st1/ack/g1",
            br#"{"v":1}"#,
            "exactly one of alert_id and run_id",
        ),
        (
            "rc/st1/ack/g1",
            br#"{"v":1,"alert_id":3,"run_id":4}"#,
            "exactly one of alert_id and run_id",
        ),
        (
            "rc/st1/ack/g1",
            br#"{"v":1,"alert_id":3,"x":1}"#,
            "unknown field",
        ),
        ("rc/st1/ack/g1", br#"{"v":2,"alert_id":3}"#, "version 2"),
        ("rc/st1/ack/g1", br#"[1,2]"#, "not valid JSON"),
        ("rc/st1/ack/g1", &huge, "larger than"),
        (
            "rc/st1/ack/nobody",
            br#"{"v":1,"alert_id":3}"#,
            "unknown guard \"nobody\"",
        ),
        ("rc/st1/cmd/alert", br#"{"v":1,"text":"x"}"#, "disabled"),
        ("rc/st1/other", b"{}", "no handler"),
        ("rc/st1/ack/g1", &[0xff, 0xfe, 0x00], "not valid JSON"),
    ];
    for (topic, payload, needle) in cases {
        let e = parse_inbound(&t, topic, payload, &r, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(needle),
            "{topic} {:?}: {e}",
            String::from_utf8_lossy(&payload[..payload.len().min(40)])
        );
    }
}

#[test]
fn alert_command_when_enabled() {
    let t = topics();
    let r = roster();
    let p = br#"{"v":1,"text":"Weekly instruction","priority":"urgent","target":{"companies":["acme"]},"deadline_min":5}"#;
    let Ok(Inbound::CreateAlert {
        text,
        priority,
        target,
        deadline,
    }) = parse_inbound(&t, "rc/st1/cmd/alert", p, &r, true)
    else {
        panic!()
    };
    assert_eq!(text, "Weekly instruction");
    assert_eq!(priority, Priority::Urgent);
    assert_eq!(target.companies, ["acme"]);
    assert_eq!(deadline, Some(std::time::Duration::from_secs(300)));
    let bad = br#"{"v":1,"text":"x","priority":"whenever"}"#;
    assert!(parse_inbound(&t, "rc/st1/cmd/alert", bad, &r, true).is_err());
}
