//! The alert service around real storage and a real bus, with a fake
//! transmitter: create → transmit → acks by ANI and by operator (stored,
//! audited) → status; refusals; resume after a restart.

use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::channel::{BoxFuture, TxError, TxSource};
use crate::roster::RosterSnapshot;

pub(crate) const CONFIG: &str = r#"
[daemon]
station_id = "t"
[alerts]
deadline_min = 10
reminder_min = 3
late_window_min = 5
tone_hz = 1000
tone_ms = 200
[[link]]
id = "guards"
kind = "roip"
[link.roip]
bind = "127.0.0.1:5000"
peer = "127.0.0.1:5001"
codec = { name = "pcmu" }
[[channel]]
id = "merged"
links = ["guards"]
[[roster.company]]
id = "acme"
name = "Acme"
supervisor = "sup-acme"
[[roster.company]]
id = "bolt"
name = "Bolt"
[[roster.group]]
id = "night"
[[roster.guard]]
id = "g1"
name = "One"
company = "acme"
dtmf = "101"
groups = ["night"]
[[roster.guard]]
id = "g2"
name = "Two"
company = "acme"
dtmf = "102"
[[roster.guard]]
id = "g3"
name = "Three"
company = "bolt"
dtmf = "103"
groups = ["night"]
"#;

#[derive(Default)]
struct FakeTx {
    sent: Mutex<Vec<(String, TxSource, usize)>>,
}

impl Transmitter for FakeTx {
    fn transmit(
        &self,
        channel: &str,
        source: TxSource,
        samples: Vec<i16>,
    ) -> BoxFuture<'_, Result<(), TxError>> {
        self.sent
            .lock()
            .unwrap()
            .push((channel.into(), source, samples.len()));
        Box::pin(async { Ok(()) })
    }
}

struct Rig {
    service: AlertService,
    storage: Storage,
    bus: Bus,
    tx: Arc<FakeTx>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    bus_task: tokio::task::JoinHandle<()>,
    thread: std::thread::JoinHandle<()>,
}

async fn rig(db: &Path) -> Rig {
    let config = crate::config::load_str(CONFIG, Path::new("t.toml")).unwrap();
    let (storage, thread) = crate::storage::open(db).unwrap();
    let cancel = CancellationToken::new();
    let (bus, bus_task) = Bus::spawn(storage.clone(), cancel.child_token());
    let roster = Roster::new(RosterSnapshot::from_config(&config));
    let tx = Arc::new(FakeTx::default());
    let (service, task) = start(
        &config,
        storage.clone(),
        bus.clone(),
        roster,
        Some(tx.clone() as Arc<dyn Transmitter>),
        cancel.child_token(),
    )
    .await
    .unwrap();
    Rig {
        service,
        storage,
        bus,
        tx,
        cancel,
        task,
        bus_task,
        thread,
    }
}

impl Rig {
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
        self.bus_task.await.unwrap();
        drop((self.service, self.storage, self.bus));
        self.thread.join().unwrap();
    }
}

async fn next_kind(
    rx: &mut broadcast::Receiver<Arc<crate::events::Numbered>>,
    kind: &str,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event"))
            .unwrap();
        if n.event.kind() == kind {
            return n.event.clone();
        }
    }
}

use std::time::Duration;
use tokio::sync::broadcast;

#[tokio::test]
async fn create_transmit_ack_by_ani_and_operator() {
    let dir = crate::storage::tests_support::tempdir();
    let r = rig(&dir.join("db")).await;
    let mut rx = r.bus.subscribe();
    let info = r
        .service
        .create(NewAlert {
            text: "Theft pattern: copper cable".into(),
            priority: Priority::Urgent,
            target: AlertTarget {
                groups: vec!["night".into()],
                ..Default::default()
            },
            created_by: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(info.total, 2, "g1 and g3 are in the night group");
    assert_eq!(info.channels, ["merged"]);
    let Event::AlertCreated { guards, .. } = next_kind(&mut rx, "alert_created").await else {
        unreachable!()
    };
    assert_eq!(guards, ["g1", "g3"]);

    // ANI from g1 on the alert's channel acks; on another channel it doesn't;
    // g2 is not targeted.
    for (channel, guard) in [("police", "g3"), ("merged", "g2"), ("merged", "g1")] {
        r.bus.publish(Event::Ani {
            channel: channel.into(),
            link: "guards".into(),
            kind: "dtmf".into(),
            unit: "1".into(),
            op: "ptt_id".into(),
            guard: Some(guard.into()),
        });
    }
    let Event::AlertAcked {
        guard, via, late, ..
    } = next_kind(&mut rx, "alert_acked").await
    else {
        unreachable!()
    };
    assert_eq!((guard.as_str(), via.as_str(), late), ("g1", "ani", false));

    // Operator acks for g3: stored, audited.
    let o = r.service.acknowledge(info.id, "g3", "bob").await.unwrap();
    assert_eq!(o.via, AckVia::Operator);
    assert!(matches!(
        r.service.acknowledge(info.id, "g3", "bob").await,
        Err(AlertError::Ack(AckError::AlreadyAcked { .. }))
    ));
    assert!(matches!(
        r.service.acknowledge(info.id, "nobody", "bob").await,
        Err(AlertError::UnknownGuard(_))
    ));
    let audit: Vec<(String, String)> = r
        .storage
        .call(|c| {
            let mut s = c.prepare("SELECT actor, action FROM audit ORDER BY id")?;
            let v = s
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v)
        })
        .await
        .unwrap();
    assert_eq!(
        audit,
        [
            ("alice".into(), "alert.create".into()),
            ("bob".into(), "alert.ack_on_behalf".into())
        ]
    );

    let d = r.service.get(info.id).await.unwrap();
    let states: Vec<_> = d
        .guards
        .iter()
        .map(|g| (g.guard.as_str(), g.state, g.via.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            ("g1", GuardAckState::Acknowledged, Some("ani")),
            ("g3", GuardAckState::Acknowledged, Some("operator")),
        ]
    );
    assert_eq!(d.companies.len(), 2);
    assert!(d.companies.iter().all(|c| c.rate() == 1.0));
    assert_eq!(r.service.list(true, 10).await.unwrap().len(), 1);

    // Tone (200 ms at 8 kHz) went out once on the channel as an alert.
    let sent = r.tx.sent.lock().unwrap().clone();
    assert_eq!(sent, [("merged".to_string(), TxSource::Alert, 1600)]);
    r.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn bad_requests_are_refused_and_store_nothing() {
    let dir = crate::storage::tests_support::tempdir();
    let r = rig(&dir.join("db")).await;
    let base = NewAlert {
        text: "x".into(),
        created_by: "t".into(),
        ..Default::default()
    };
    let cases = [
        (
            NewAlert {
                text: "  ".into(),
                ..base.clone()
            },
            "empty",
        ),
        (
            NewAlert {
                text: "é".repeat(MAX_TEXT_CHARS + 1),
                ..base.clone()
            },
            "characters",
        ),
        (
            NewAlert {
                deadline: Some(Duration::ZERO),
                ..base.clone()
            },
            "deadline",
        ),
        (
            NewAlert {
                target: AlertTarget {
                    companies: vec!["nope".into()],
                    ..Default::default()
                },
                ..base.clone()
            },
            "unknown company \"nope\"",
        ),
        (
            NewAlert {
                target: AlertTarget {
                    channels: vec!["nope".into()],
                    ..Default::default()
                },
                ..base.clone()
            },
            "unknown channel",
        ),
        (
            NewAlert {
                clip: Some(dir.join("missing.wav")),
                ..base.clone()
            },
            "voice clip",
        ),
    ];
    for (req, needle) in cases {
        let e = r.service.create(req).await.unwrap_err().to_string();
        assert!(e.contains(needle), "{e} should mention {needle}");
        assert!(!e.ends_with('.'));
    }
    assert!(r.service.list(false, 10).await.unwrap().is_empty());
    assert!(matches!(
        r.service.get(99).await,
        Err(AlertError::NotFound(99))
    ));
    r.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn restart_closes_expired_alerts_with_their_acks_and_resumes_open_ones() {
    let dir = crate::storage::tests_support::tempdir();
    let db = dir.join("db");
    let now = now_ms();
    let row = |created_ms: i64| store::NewRow {
        created_ms,
        created_by: "t".into(),
        text: "old".into(),
        priority: "routine".into(),
        target: AlertTarget::default(),
        channels: vec!["merged".into()],
        clip: None,
        deadline_ms: created_ms + 600_000,
        reminder_ms: None,
        close_ms: created_ms + 900_000,
        guards: vec![("g1".into(), "acme".into()), ("g2".into(), "acme".into())],
    };
    {
        let (storage, thread) = crate::storage::open(&db).unwrap();
        storage
            .call(move |c| {
                // Expired while down: one ack on time.
                let old = store::insert(c, &row(now - 3_600_000))?;
                store::record_ack(c, old, "g1", now - 3_500_000, AckVia::Ani, "dtmf:101")?;
                // Still open.
                store::insert(c, &row(now - 60_000))?;
                Ok(())
            })
            .await
            .unwrap();
        drop(storage);
        thread.join().unwrap();
    }
    let r = rig(&db).await;
    let mut rx = r.bus.subscribe();
    // The expired one closes at start-up with the ack it had.
    let closed = loop {
        let d = r.service.get(1).await.unwrap();
        if d.info.closed_ms.is_some() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(closed.info.on_time, 1);
    assert_eq!(closed.guards[1].state, GuardAckState::Missed);
    // The open one is tracked again: an app ack is taken.
    let handled = r.service.submit_app_ack(2, "g2", "rollcall/t/ack/g2");
    // Resolved once stored: only then may MQTT PUBACK it.
    handled.await.expect("stored");
    let Event::AlertAcked { alert_id, via, .. } = next_kind(&mut rx, "alert_acked").await else {
        unreachable!()
    };
    assert_eq!((alert_id, via.as_str()), (2, "app"));
    // Acks to the closed alert become error events naming the source; a
    // refusal is final, so it is handled too (no redelivery wanted).
    let handled = r.service.submit_app_ack(1, "g2", "rollcall/t/ack/g2");
    handled.await.expect("refused for good");
    let Event::Error { source, message } = next_kind(&mut rx, "error").await else {
        unreachable!()
    };
    assert_eq!(source, "rollcall/t/ack/g2");
    assert!(message.contains("not open"), "{message}");
    assert_eq!(r.service.get(1).await.unwrap().info.on_time, 1);
    r.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
