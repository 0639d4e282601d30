//! An alert to 30 guards of 3 companies, driven through the daemon library
//! (storage, bus, alert tracker, MQTT bridge) against a real mosquitto:
//! acks by ANI (bus events, as the channel task publishes them) and by app
//! (`mosquitto_pub`), some late, some never; noise that must not count.
//! Per-guard and per-company outcomes, and the supervisors' escalations,
//! must match the ground truth of the script. (Reminder timing on a
//! simulated clock is covered by the tracker's unit tests.)

#[path = "support/mqtt.rs"]
mod mqtt_support;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use mqtt_support::*;
use rollcalld::alerts::{self, GuardAckState, NewAlert};
use rollcalld::events::{Bus, Event};
use rollcalld::roster::{Roster, RosterSnapshot};
use support::*;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(10);
const DEADLINE: Duration = Duration::from_secs(5);

fn company(i: usize) -> &'static str {
    match i {
        0..=11 => "c0",
        12..=21 => "c1",
        _ => "c2",
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    Never,
    AniOnTime,
    AppOnTime,
    AppLate,
    AniLate,
}

fn plan(i: usize) -> Plan {
    [
        Plan::Never,
        Plan::AniOnTime,
        Plan::AppOnTime,
        Plan::AppLate,
        Plan::AniLate,
    ][i % 5]
}

fn config(data: &Path, broker: &str) -> String {
    let mut s = format!(
        r#"
[daemon]
station_id = "sc"
data_dir = "{}"
[mqtt]
enabled = true
broker = "{broker}"
prefix = "rc"
keepalive_s = 2
[alerts]
reminder_min = 0
late_window_min = 1
[[link]]
id = "guards"
kind = "roip"
[link.roip]
bind = "127.0.0.1:5000"
peer = "127.0.0.1:5001"
codec = {{ name = "pcmu" }}
[[channel]]
id = "merged"
links = ["guards"]
"#,
        data.display()
    );
    for c in ["c0", "c1", "c2"] {
        s.push_str(&format!(
            "[[roster.company]]\nid = \"{c}\"\nname = \"{c}\"\nsupervisor = \"sup-{c}\"\n"
        ));
    }
    for i in 0..30 {
        s.push_str(&format!(
            "[[roster.guard]]\nid = \"g{i:02}\"\nname = \"Guard {i}\"\ncompany = \"{}\"\ndtmf = \"1{i:02}\"\napp_id = \"app-{i:02}\"\n",
            company(i)
        ));
    }
    s
}

fn ani(bus: &Bus, channel: &str, i: usize) {
    bus.publish(Event::Ani {
        channel: channel.into(),
        link: "guards".into(),
        kind: "dtmf".into(),
        unit: format!("1{i:02}"),
        op: "ptt_id".into(),
        guard: Some(format!("g{i:02}")),
    });
}

/// Guard i acks from the app: by roster id for even i, by app id for odd.
fn app_ack(port: u16, i: usize) {
    let who = if i % 2 == 0 {
        format!("g{i:02}")
    } else {
        format!("app-{i:02}")
    };
    assert!(publish(
        port,
        &format!("rc/sc/ack/{who}"),
        br#"{"v":1,"alert_id":1}"#,
        false
    ));
}

#[test]
fn thirty_guards_three_companies_ani_and_app_acks() {
    let dir = TempDir::new("alerts-30");
    let broker = Broker::start(&dir.path().join("broker"), false);
    let port = broker.port;
    let sub = Sub::start(port, &["rc/sc/#"], None);
    sub.wait_ready(port, "rc/sc/probe");

    let data = dir.path().join("data");
    let cfg = rollcalld::config::load_str(&config(&data, &broker.url()), Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let (storage, thread) = rollcalld::storage::open(&data.join("db.sqlite")).unwrap();
    let (bus, bus_task) = rt.block_on(async { Bus::spawn(storage.clone(), cancel.child_token()) });
    let roster = Roster::new(RosterSnapshot::from_config(&cfg));
    let (service, alert_task) = rt
        .block_on(alerts::start(
            &cfg,
            storage.clone(),
            bus.clone(),
            roster.clone(),
            None,
            cancel.child_token(),
        ))
        .unwrap();
    let settings = rollcalld::mqtt::Settings::from_config(&cfg).unwrap();
    let bridge = {
        // spawn needs a runtime context, not a future.
        let _rt = rt.enter();
        rollcalld::mqtt::spawn(
            settings,
            storage.clone(),
            bus.clone(),
            roster,
            Some(service.clone()),
            cancel.child_token(),
        )
    };
    assert!(sub
        .wait(|t, v| t == "rc/sc/status" && v["state"] == "online", T)
        .is_some());

    let info = rt
        .block_on(service.create(NewAlert {
            text: "Theft pattern: copper cable from substations".into(),
            deadline: Some(DEADLINE),
            created_by: "operator-1".into(),
            ..Default::default()
        }))
        .unwrap();
    assert_eq!(info.total, 30);
    let deadline_ms = info.deadline_ms;

    // Noise first: everyone keys up on a channel the alert did not go out
    // on; nobody is acked by that.
    for i in 0..30 {
        ani(&bus, "police", i);
    }
    // On time: ANI on the alert's channel and app acks.
    for i in 0..30 {
        match plan(i) {
            Plan::AniOnTime => ani(&bus, "merged", i),
            Plan::AppOnTime => app_ack(port, i),
            _ => {}
        }
    }
    let on_time = (0..30)
        .filter(|&i| matches!(plan(i), Plan::AniOnTime | Plan::AppOnTime))
        .count();
    let count_acks = |late: bool| {
        sub.json()
            .iter()
            .filter(|(t, v)| {
                t == "rc/sc/alerts/1" && v["type"] == "alert_acked" && v["late"] == late
            })
            .count()
    };
    assert!(
        poll(T, || (count_acks(false) == on_time).then_some(())).is_some(),
        "{} of {on_time} on-time acks",
        count_acks(false)
    );
    assert!(
        rollcalld::storage::now_ms() < deadline_ms,
        "machine too slow: on-time acks took past the {DEADLINE:?} deadline"
    );

    // The deadline passes: one escalation per company to its supervisor,
    // listing exactly the guards not acknowledged by then.
    let pending = |c: &str| -> Vec<String> {
        (0..30)
            .filter(|&i| {
                company(i) == c && matches!(plan(i), Plan::Never | Plan::AppLate | Plan::AniLate)
            })
            .map(|i| format!("g{i:02}"))
            .collect()
    };
    for c in ["c0", "c1", "c2"] {
        let (_, esc) = sub
            .wait(|t, _| t == format!("rc/sc/supervisors/{c}"), T)
            .unwrap_or_else(|| panic!("no escalation for {c}"));
        assert_eq!(esc["supervisor"], format!("sup-{c}"));
        let guards: Vec<String> = serde_json::from_value(esc["guards"].clone()).unwrap();
        assert_eq!(guards, pending(c), "escalation for {c}");
        assert!(esc["ts_ms"].as_i64().unwrap() >= deadline_ms);
    }

    // Late acks, by app and by ANI; a duplicate app ack is refused.
    for i in 0..30 {
        match plan(i) {
            Plan::AniLate => ani(&bus, "merged", i),
            Plan::AppLate => app_ack(port, i),
            _ => {}
        }
    }
    app_ack(port, 2);
    let late = (0..30)
        .filter(|&i| matches!(plan(i), Plan::AniLate | Plan::AppLate))
        .count();
    assert!(poll(T, || (count_acks(true) == late).then_some(())).is_some());
    assert!(sub
        .wait(
            |t, v| t == "rc/sc/events"
                && v["type"] == "error"
                && v["source"] == "rc/sc/ack/g02"
                && v["message"].as_str().unwrap_or("").contains("already"),
            T
        )
        .is_some());

    // Per guard and per company, from the API, against the script.
    let detail = rt.block_on(service.get(info.id)).unwrap();
    assert_eq!(detail.guards.len(), 30);
    for (i, g) in detail.guards.iter().enumerate() {
        assert_eq!(g.guard, format!("g{i:02}"));
        let want = match plan(i) {
            Plan::Never => (GuardAckState::Missed, None),
            Plan::AniOnTime => (GuardAckState::Acknowledged, Some("ani")),
            Plan::AppOnTime => (GuardAckState::Acknowledged, Some("app")),
            Plan::AppLate => (GuardAckState::Late, Some("app")),
            Plan::AniLate => (GuardAckState::Late, Some("ani")),
        };
        assert_eq!((g.state, g.via.as_deref()), want, "guard {i}");
    }
    let mut truth: BTreeMap<&str, (usize, usize, usize, usize)> = BTreeMap::new();
    for i in 0..30 {
        let e = truth.entry(company(i)).or_default();
        e.0 += 1;
        match plan(i) {
            Plan::AniOnTime | Plan::AppOnTime => e.1 += 1,
            Plan::AppLate | Plan::AniLate => e.2 += 1,
            Plan::Never => e.3 += 1,
        }
    }
    for c in &detail.companies {
        let (total, on_time, late, missed) = truth[c.company.as_str()];
        assert_eq!(
            (c.total, c.on_time, c.late, c.missed),
            (total, on_time, late, missed),
            "{}",
            c.company
        );
        assert!((c.rate() - on_time as f64 / total as f64).abs() < 1e-9);
    }
    // The truth table itself, worked out by hand from `plan` and `company`
    // (c0 = g00..g11: never 0,5,10; on time 1,2,6,7,11; late 3,4,8,9).
    assert_eq!(truth["c0"], (12, 5, 4, 3));

    cancel.cancel();
    rt.block_on(async {
        let _ = alert_task.await;
        let _ = bridge.await;
        let _ = bus_task.await;
    });
    drop((service, storage, bus));
    thread.join().unwrap();
}
