//! The tracker on a simulated clock: the 30-guard scenario, resume after
//! downtime, and refusals.

use super::*;

const MIN: Ms = 60_000;
const T0: Ms = 1_800_000_000_000;

fn alert(id: i64, guards: &[(&str, &str)], channels: &[&str]) -> TrackedAlert {
    TrackedAlert {
        id,
        text: format!("alert {id}"),
        channels: channels.iter().map(|s| s.to_string()).collect(),
        created_ms: T0,
        deadline_ms: T0 + 10 * MIN,
        reminder_ms: Some(T0 + 7 * MIN),
        close_ms: T0 + 20 * MIN,
        reminded: false,
        escalated: false,
        guards: guards
            .iter()
            .map(|(g, c)| {
                (
                    g.to_string(),
                    GuardEntry {
                        company: c.to_string(),
                        ack: None,
                    },
                )
            })
            .collect(),
    }
}

/// What guard `i` of the scenario does, as (time, via); `None` = never.
fn script(i: usize) -> Option<(Ms, AckVia)> {
    let s = 1000;
    match i % 5 {
        0 => None,
        1 => Some((T0 + (i as Ms) * 10 * s, AckVia::Ani)),
        2 => Some((T0 + 60 * s + i as Ms * s, AckVia::App)),
        3 => Some((T0 + 10 * MIN + 30 * s + i as Ms * s, AckVia::App)),
        _ => Some((T0 + 20 * MIN + 100 * s, AckVia::Ani)), // after close
    }
}

fn company(i: usize) -> &'static str {
    match i {
        0..=11 => "c0",
        12..=21 => "c1",
        _ => "c2",
    }
}

fn guard_id(i: usize) -> String {
    format!("g{i:02}")
}

#[derive(Debug)]
enum Input {
    Ack(usize, AckVia),
    /// ANI on a channel the alert did not go out on: must not count.
    OtherChannelAni(usize),
}

#[test]
fn thirty_guards_three_companies_on_a_simulated_clock() {
    let ids: Vec<String> = (0..30).map(guard_id).collect();
    let guards: Vec<(&str, &str)> = (0..30).map(|i| (ids[i].as_str(), company(i))).collect();
    let mut t = Tracker::new();
    t.insert(alert(7, &guards, &["merged"]));

    // The script, in time order, plus noise: every guard keys up on another
    // channel one minute in.
    let mut inputs: Vec<(Ms, Input)> = (0..30)
        .filter_map(|i| script(i).map(|(at, via)| (at, Input::Ack(i, via))))
        .collect();
    inputs.extend((0..30).map(|i| (T0 + MIN, Input::OtherChannelAni(i))));
    inputs.sort_by_key(|(at, _)| *at);

    let mut actions: Vec<(Ms, Action)> = Vec::new();
    let mut refused = Vec::new();
    let drive = |t: &mut Tracker, until: Ms, actions: &mut Vec<(Ms, Action)>| {
        while let Some(due) = t.poll_timeout().filter(|&d| d <= until) {
            for a in t.handle_timeout(due) {
                actions.push((due, a));
            }
        }
    };
    for (at, input) in inputs {
        drive(&mut t, at, &mut actions);
        match input {
            Input::Ack(i, AckVia::Ani) => {
                let out = t.handle_ani(at, "merged", &ids[i]);
                if out.is_empty() {
                    refused.push(i);
                }
            }
            Input::Ack(i, via) => {
                if t.handle_ack(at, 7, &ids[i], via).is_err() {
                    refused.push(i);
                }
            }
            Input::OtherChannelAni(i) => {
                assert!(t.handle_ani(at, "police", &ids[i]).is_empty());
            }
        }
    }
    drive(&mut t, T0 + 60 * MIN, &mut actions);
    assert_eq!(t.poll_timeout(), None, "closed alerts are not tracked");

    // Acks after the close are refused: guards with script class 4.
    let after_close: Vec<usize> = (0..30).filter(|i| i % 5 == 4).collect();
    assert_eq!(refused, after_close);

    // Reminder exactly at its time, to the guards pending then.
    let pending_at = |when: Ms| -> Vec<String> {
        (0..30)
            .filter(|&i| script(i).is_none_or(|(at, _)| at > when))
            .map(guard_id)
            .collect()
    };
    let reminders: Vec<_> = actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::Remind { .. }))
        .collect();
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].0, T0 + 7 * MIN);
    assert_eq!(
        reminders[0].1,
        Action::Remind {
            alert_id: 7,
            guards: pending_at(T0 + 7 * MIN)
        }
    );

    // Escalations exactly at the deadline, one per company, listing that
    // company's guards not acknowledged by then.
    let escalations: Vec<_> = actions
        .iter()
        .filter_map(|(at, a)| match a {
            Action::Escalate {
                company, guards, ..
            } => Some((*at, company.clone(), guards.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(escalations.len(), 3);
    let pending = pending_at(T0 + 10 * MIN);
    for (at, c, gs) in &escalations {
        assert_eq!(*at, T0 + 10 * MIN);
        let expected: Vec<String> = pending
            .iter()
            .filter(|g| company(g[1..].parse().unwrap()) == c)
            .cloned()
            .collect();
        assert_eq!(gs, &expected, "company {c}");
    }

    // Close at deadline + late window, with per-company outcomes matching
    // the ground truth worked out by hand from `script` and `company`:
    // c0 = g00..g11, c1 = g12..g21, c2 = g22..g29.
    let (close_at, summary) = actions
        .iter()
        .find_map(|(at, a)| match a {
            Action::Close { summary, .. } => Some((*at, summary.clone())),
            _ => None,
        })
        .expect("closed");
    assert_eq!(close_at, T0 + 20 * MIN);
    let rate = |c: &str, total, on_time, late, missed| CompanyRate {
        company: c.into(),
        total,
        on_time,
        late,
        missed,
    };
    assert_eq!(
        summary.by_company,
        vec![
            rate("c0", 12, 5, 2, 5),
            rate("c1", 10, 4, 2, 4),
            rate("c2", 8, 3, 2, 3),
        ]
    );
    assert_eq!(
        (summary.total, summary.on_time, summary.late, summary.missed),
        (30, 12, 6, 12)
    );
    assert!((summary.by_company[0].rate() - 5.0 / 12.0).abs() < 1e-9);
}

#[test]
fn per_guard_outcome_records_when_and_how() {
    let mut t = Tracker::new();
    t.insert(alert(1, &[("a", "c"), ("b", "c"), ("x", "d")], &["ch"]));
    let on_time = t.handle_ani(T0 + MIN, "ch", "a");
    assert_eq!(on_time.len(), 1);
    assert_eq!(on_time[0].via, AckVia::Ani);
    assert!(!on_time[0].late);
    // Exactly at the deadline is still on time; a millisecond later is late.
    assert!(
        !t.handle_ack(T0 + 10 * MIN, 1, "b", AckVia::App)
            .unwrap()
            .late
    );
    assert!(
        t.handle_ack(T0 + 10 * MIN + 1, 1, "x", AckVia::Operator)
            .unwrap()
            .late
    );
    let a = t.get(1).unwrap();
    assert_eq!(
        a.guards["a"].ack,
        Some(Ack {
            at_ms: T0 + MIN,
            via: AckVia::Ani,
            late: false
        })
    );
}

#[test]
fn refusals_leave_state_unchanged() {
    let mut t = Tracker::new();
    t.insert(alert(1, &[("a", "c")], &["ch"]));
    let before = t.get(1).unwrap().clone();
    assert_eq!(
        t.handle_ack(T0, 2, "a", AckVia::App),
        Err(AckError::NotOpen(2))
    );
    assert!(matches!(
        t.handle_ack(T0, 1, "zz", AckVia::App),
        Err(AckError::NotTargeted { .. })
    ));
    assert!(matches!(
        t.handle_ack(T0 - 1, 1, "a", AckVia::App),
        Err(AckError::BeforeAlert { .. })
    ));
    assert!(
        t.handle_ani(T0 - 1, "ch", "a").is_empty(),
        "ANI before the alert"
    );
    assert_eq!(t.get(1).unwrap(), &before);
    t.handle_ack(T0 + 1, 1, "a", AckVia::App).unwrap();
    let after = t.get(1).unwrap().clone();
    assert!(matches!(
        t.handle_ack(T0 + 2, 1, "a", AckVia::Ani),
        Err(AckError::AlreadyAcked { .. })
    ));
    assert!(t.handle_ani(T0 + 2, "ch", "a").is_empty());
    assert_eq!(t.get(1).unwrap(), &after, "first ack wins");
    // An ack the driver could not store is forgotten; a retry is taken.
    t.forget_ack(1, "a");
    assert_eq!(t.get(1).unwrap(), &before);
    assert_eq!(t.handle_ani(T0 + 3, "ch", "a").len(), 1);
}

#[test]
fn all_acked_early_means_no_reminder_and_no_escalation() {
    let mut t = Tracker::new();
    t.insert(alert(1, &[("a", "c")], &["ch"]));
    t.handle_ack(T0 + 1, 1, "a", AckVia::App).unwrap();
    assert_eq!(t.poll_timeout(), Some(T0 + 7 * MIN));
    assert!(t.handle_timeout(T0 + 7 * MIN).is_empty());
    assert_eq!(t.poll_timeout(), Some(T0 + 10 * MIN));
    assert!(t.handle_timeout(T0 + 10 * MIN).is_empty());
    assert_eq!(t.poll_timeout(), Some(T0 + 20 * MIN));
    let acts = t.handle_timeout(T0 + 20 * MIN);
    assert!(matches!(&acts[..], [Action::Close { summary, .. }] if summary.on_time == 1));
}

#[test]
fn resume_after_downtime_past_the_deadline_escalates_without_reminding() {
    let mut t = Tracker::new();
    t.insert(alert(1, &[("a", "c"), ("b", "d")], &["ch"]));
    // Back up 12 minutes in: the reminder is stale, the escalation is not.
    let acts = t.handle_timeout(T0 + 12 * MIN);
    assert_eq!(
        acts,
        vec![
            Action::Escalate {
                alert_id: 1,
                company: "c".into(),
                guards: vec!["a".into()]
            },
            Action::Escalate {
                alert_id: 1,
                company: "d".into(),
                guards: vec!["b".into()]
            },
        ]
    );
    // A late ack is still taken until the close.
    assert!(
        t.handle_ack(T0 + 13 * MIN, 1, "a", AckVia::App)
            .unwrap()
            .late
    );
    assert_eq!(t.poll_timeout(), Some(T0 + 20 * MIN));
}

#[test]
fn resume_after_the_close_escalates_and_closes_with_the_acks_it_had() {
    let mut t = Tracker::new();
    let mut a = alert(1, &[("a", "c"), ("b", "c")], &["ch"]);
    a.guards.get_mut("a").unwrap().ack = Some(Ack {
        at_ms: T0 + MIN,
        via: AckVia::Ani,
        late: false,
    });
    t.insert(a);
    let acts = t.handle_timeout(T0 + 90 * MIN);
    assert_eq!(acts.len(), 2, "no stale reminder: {acts:?}");
    assert_eq!(
        acts[0],
        Action::Escalate {
            alert_id: 1,
            company: "c".into(),
            guards: vec!["b".into()]
        }
    );
    let Action::Close { summary, .. } = &acts[1] else {
        panic!("{acts:?}")
    };
    assert_eq!((summary.on_time, summary.missed), (1, 1));
    assert!(t.get(1).is_none());
}
