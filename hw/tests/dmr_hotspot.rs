//! The simulated hotspot logs in to a real `HomebrewLink` over loopback UDP;
//! a hardware-level roll call over 20 DMR radios (some call in by voice,
//! some answer radio checks, some don't) must match the simulator's ground
//! truth exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rollcall_hw::ani::{AniKind, AniOp};
use rollcall_hw::dmr::master::HomebrewError;
use rollcall_hw::dmr::{
    HomebrewConfig, HomebrewLink, PeerCredentials, RadioCheckError, RadioCheckOutcome, Slot,
};
use rollcall_hw::link::{spawn_supervised, Backoff, LinkEvent};
use rollcall_hw::sim::hotspot::{self, GroundTruth, HotspotConfig, SimRadio, VoiceCall};
use tokio_util::sync::CancellationToken;

const PEER_ID: u32 = 3_100_001;
const PASSWORD: &str = "passw0rd";
const CHECKER: u32 = 9990;

/// Link events collected in the background so the driver never blocks.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<LinkEvent>>>);

impl Collected {
    fn spawn(mut rx: tokio::sync::mpsc::Receiver<LinkEvent>) -> Collected {
        let collected = Collected::default();
        let sink = collected.0.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                sink.lock().unwrap().push(event);
            }
        });
        collected
    }

    fn snapshot(&self) -> Vec<LinkEvent> {
        self.0.lock().unwrap().clone()
    }

    /// Polls until `done` holds over the events so far, or panics at the deadline.
    async fn wait_until(&self, what: &str, within: Duration, done: impl Fn(&[LinkEvent]) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if done(&self.snapshot()) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {what}; events: {:?}",
                    self.snapshot()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn voice_anis(events: &[LinkEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Ani(a) if a.kind == AniKind::Dmr && a.op == AniOp::Identify => {
                a.unit.parse().ok()
            }
            _ => None,
        })
        .collect()
}

fn start_link(
    cancel: &CancellationToken,
) -> (
    std::net::SocketAddr,
    rollcall_hw::dmr::RadioCheckHandle,
    Collected,
) {
    let mut config = HomebrewConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![PeerCredentials {
            id: PEER_ID,
            password: PASSWORD.into(),
        }],
    );
    config.ping_timeout = Duration::from_secs(5);
    config.stream_timeout = Duration::from_secs(1);
    config.checker_id = CHECKER;
    config.validate().expect("valid config");
    let (mut link, checks) = HomebrewLink::new(config);
    let addr = link.bind().expect("bind loopback");
    let backoff = Backoff {
        initial: Duration::from_millis(50),
        ..Backoff::default()
    };
    let (_handle, events, _task) = spawn_supervised("dmr", Box::new(link), backoff, cancel.clone());
    (addr, checks, Collected::spawn(events))
}

fn radios() -> Vec<SimRadio> {
    (0..20u32)
        .map(|i| {
            let id = 2_300_001 + i;
            let delay = Duration::from_millis(10 + 7 * u64::from(i % 5));
            match i % 4 {
                0 | 3 => SimRadio::answering(id, delay),
                1 => SimRadio::silent(id),
                _ => SimRadio {
                    id,
                    answer_probability: 0.5,
                    reply_delay: delay,
                },
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_call_over_20_radios_matches_ground_truth() {
    let cancel = CancellationToken::new();
    let (addr, checks, events) = start_link(&cancel);

    // No peer yet: a radio check is refused, not left hanging.
    assert_eq!(
        checks
            .radio_check(2_300_001, Slot::One, Duration::from_millis(100), 0)
            .await,
        Err(RadioCheckError::Refused(HomebrewError::NoPeer))
    );

    let mut config = HotspotConfig::new(addr, PEER_ID, PASSWORD, radios());
    config.seed = 42;
    config.frame_interval = Duration::from_millis(5);
    config.ping_interval = Duration::from_millis(500);
    config.options = Some("TS1=9;TS2=91".into());
    let hotspot_cancel = cancel.child_token();
    let hotspot = hotspot::spawn(config, hotspot_cancel.clone());
    assert!(
        hotspot.wait_logged_in(Duration::from_secs(5)).await,
        "hotspot login"
    );
    events
        .wait_until("link up", Duration::from_secs(5), |e| {
            e.iter().any(|e| matches!(e, LinkEvent::Up))
        })
        .await;

    // Group phase: a few guards call in by voice (one of them has his radio
    // check answering disabled, another is a 50 % radio).
    let voice_callers = [2_300_002, 2_300_006, 2_300_009, 2_300_015];
    for (n, radio) in voice_callers.iter().enumerate() {
        let slot = if n % 2 == 0 { Slot::One } else { Slot::Two };
        hotspot
            .call(*radio, VoiceCall::group(slot, 9))
            .await
            .expect("call sent");
    }
    events
        .wait_until(
            "every voice call identified and COR closed",
            Duration::from_secs(5),
            |e| {
                voice_anis(e).len() == voice_callers.len()
                    && matches!(
                        e.iter().rev().find(|e| matches!(e, LinkEvent::Cor(_))),
                        Some(LinkEvent::Cor(false))
                    )
            },
        )
        .await;
    let heard_by_voice: BTreeSet<u32> = voice_anis(&events.snapshot()).into_iter().collect();

    // Individual phase: radio-check everyone not heard yet, all at once;
    // the link serialises them per slot.
    let mut jobs = tokio::task::JoinSet::new();
    for radio in radios()
        .iter()
        .map(|r| r.id)
        .filter(|id| !heard_by_voice.contains(id))
    {
        let checks = checks.clone();
        let slot = if radio % 2 == 0 { Slot::Two } else { Slot::One };
        jobs.spawn(async move {
            let outcome = checks
                .radio_check(radio, slot, Duration::from_millis(400), 1)
                .await;
            (radio, outcome)
        });
    }
    let mut outcomes = BTreeMap::new();
    while let Some(joined) = jobs.join_next().await {
        let (radio, outcome) = joined.expect("check task");
        outcomes.insert(radio, outcome.expect("radio check ran"));
    }

    // Ground truth from the simulator.
    let log = hotspot.log();
    let truth_voice: BTreeSet<u32> = log
        .iter()
        .filter_map(|g| match g {
            GroundTruth::VoiceCall { radio, .. } => Some(*radio),
            _ => None,
        })
        .collect();
    let mut truth_checks: BTreeMap<u32, Vec<bool>> = BTreeMap::new();
    for entry in &log {
        if let GroundTruth::RadioCheck {
            radio,
            checker,
            answered,
        } = entry
        {
            assert_eq!(*checker, CHECKER);
            truth_checks.entry(*radio).or_default().push(*answered);
        }
    }

    assert_eq!(heard_by_voice, truth_voice, "voice ANI matches who called");
    assert_eq!(outcomes.len(), 20 - voice_callers.len());
    for (radio, outcome) in &outcomes {
        let heard = truth_checks.get(radio).cloned().unwrap_or_default();
        match outcome {
            RadioCheckOutcome::Answered { attempts, .. } => {
                assert_eq!(
                    heard.len() as u32,
                    *attempts,
                    "radio {radio}: attempts {heard:?}"
                );
                assert_eq!(heard.last(), Some(&true), "radio {radio} answered last");
                assert!(heard[..heard.len() - 1].iter().all(|a| !a));
            }
            RadioCheckOutcome::NoAnswer { attempts } => {
                assert_eq!(*attempts, 2);
                assert_eq!(
                    heard,
                    vec![false, false],
                    "radio {radio} heard both requests, answered none"
                );
            }
            other => panic!("radio {radio}: {other:?}"),
        }
    }

    // The roll call: present = called in by voice or answered a check.
    let present: BTreeSet<u32> = heard_by_voice
        .iter()
        .copied()
        .chain(
            outcomes
                .iter()
                .filter(|(_, o)| matches!(o, RadioCheckOutcome::Answered { .. }))
                .map(|(r, _)| *r),
        )
        .collect();
    let truth_present: BTreeSet<u32> = truth_voice
        .iter()
        .copied()
        .chain(
            truth_checks
                .iter()
                .filter(|(_, a)| a.contains(&true))
                .map(|(r, _)| *r),
        )
        .collect();
    assert_eq!(present, truth_present);
    let silent_ids: BTreeSet<u32> = radios()
        .iter()
        .filter(|r| r.answer_probability == 0.0)
        .map(|r| r.id)
        .collect();
    assert!(
        present.len() > voice_callers.len() && present.len() < 20,
        "a mixed roll call: {present:?}"
    );
    for id in &silent_ids {
        assert_eq!(
            present.contains(id),
            truth_voice.contains(id),
            "silent radio {id} present only by voice"
        );
    }

    // Every answer was also reported as a radio-check ANI (the collector
    // may still be draining the event queue, so poll).
    let answered: BTreeSet<u32> = present.difference(&heard_by_voice).copied().collect();
    let ack_anis = |events: &[LinkEvent]| -> BTreeSet<u32> {
        events
            .iter()
            .filter_map(|e| match e {
                LinkEvent::Ani(a) if a.op == AniOp::RadioCheckAck => a.unit.parse().ok(),
                _ => None,
            })
            .collect()
    };
    events
        .wait_until(
            "a radio-check ANI per answer",
            Duration::from_secs(2),
            |e| ack_anis(e) == answered,
        )
        .await;

    // The hotspot leaves: the link reports down (its last peer closed).
    hotspot_cancel.cancel();
    events
        .wait_until("link down", Duration::from_secs(5), |e| {
            e.iter()
                .any(|e| matches!(e, LinkEvent::Down { reason, .. } if reason.contains("closed")))
        })
        .await;
    cancel.cancel();
}

#[tokio::test]
async fn wrong_password_is_refused_and_link_stays_down() {
    let cancel = CancellationToken::new();
    let (addr, _checks, events) = start_link(&cancel);
    let mut config =
        HotspotConfig::new(addr, PEER_ID, "not-the-password", vec![SimRadio::silent(1)]);
    config.retry_interval = Duration::from_millis(100);
    let hotspot = hotspot::spawn(config, cancel.child_token());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while hotspot
        .log()
        .iter()
        .filter(|g| **g == GroundTruth::Refused)
        .count()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no MSTNAK seen: {:?}",
            hotspot.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!hotspot.is_logged_in());
    assert!(!events.snapshot().iter().any(|e| matches!(e, LinkEvent::Up)));
    cancel.cancel();
}

/// A hand-driven peer on a raw socket: logs in, goes silent, and the link
/// must report it down (peer silent) and come back on the same port.
#[tokio::test]
async fn silent_peer_times_out_and_link_comes_back_on_the_same_port() {
    use rollcall_hw::dmr::master::login_digest;
    use rollcall_hw::dmr::{Message, PeerConfig};

    let cancel = CancellationToken::new();
    let mut config = HomebrewConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![PeerCredentials {
            id: PEER_ID,
            password: PASSWORD.into(),
        }],
    );
    config.ping_timeout = Duration::from_millis(300);
    let (mut link, _checks) = HomebrewLink::new(config);
    let addr = link.bind().unwrap();
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        ..Backoff::default()
    };
    let (_handle, rx, _task) = spawn_supervised("dmr", Box::new(link), backoff, cancel.clone());
    let events = Collected::spawn(rx);

    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Resends like a real peer: right after a restart the port is briefly
    // closed (the supervisor's back-off) and the first datagram is lost.
    let exchange = |message: Message| {
        let peer = &peer;
        async move {
            let mut buf = [0u8; 512];
            for _ in 0..10 {
                peer.send_to(&message.to_bytes(), addr).await.unwrap();
                if let Ok(Ok((len, _))) =
                    tokio::time::timeout(Duration::from_millis(200), peer.recv_from(&mut buf)).await
                {
                    return Message::parse(&buf[..len]).unwrap();
                }
            }
            panic!("master never answered {}", message.command());
        }
    };
    for round in 0..2 {
        let Message::Ack { value: salt } = exchange(Message::Login { peer: PEER_ID }).await else {
            panic!("round {round}: no salt")
        };
        let digest = login_digest(salt, PASSWORD);
        assert_eq!(
            exchange(Message::Key {
                peer: PEER_ID,
                digest
            })
            .await,
            Message::Ack { value: PEER_ID }
        );
        let config = Box::new(PeerConfig {
            callsign: "RAW".into(),
            ..PeerConfig::default()
        });
        assert_eq!(
            exchange(Message::Config {
                peer: PEER_ID,
                config
            })
            .await,
            Message::Ack { value: PEER_ID }
        );
        assert_eq!(
            exchange(Message::Ping { peer: PEER_ID }).await,
            Message::Pong { peer: PEER_ID }
        );
        let ups = round + 1;
        events
            .wait_until("link up", Duration::from_secs(2), |e| {
                e.iter().filter(|e| matches!(e, LinkEvent::Up)).count() == ups
            })
            .await;
        // Silence: the link drops the peer after 300 ms and goes down.
        events
            .wait_until("link down after silence", Duration::from_secs(3), |e| {
                e.iter().filter(|e| matches!(e, LinkEvent::Down { reason, .. } if reason.contains("silent"))).count() == ups
            })
            .await;
    }
    cancel.cancel();
}
