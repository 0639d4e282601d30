//! Master state machine tests: no sockets, a virtual clock, peers played by
//! building their datagrams with the wire module.

use super::*;
use crate::dmr::burst::DataType;
use crate::dmr::csbk::{Csbk, RadioCheck};
use crate::dmr::wire::{FrameType, Message, PeerConfig};

const PEER: u32 = 3_100_001;
const PASSWORD: &str = "s3cret";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Rig {
    master: Master,
    now: Instant,
}

impl Rig {
    fn new() -> Rig {
        let config = MasterConfig {
            peers: vec![
                PeerCredentials {
                    id: PEER,
                    password: PASSWORD.into(),
                },
                PeerCredentials {
                    id: PEER + 1,
                    password: "other".into(),
                },
            ],
            ping_timeout: Duration::from_secs(30),
            stream_timeout: Duration::from_millis(500),
            checker_id: 9990,
            default_colour_code: 1,
        };
        Rig {
            master: Master::new(config, 7),
            now: Instant::now(),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.master.handle_timeout(self.now);
    }

    fn send(&mut self, from: SocketAddr, message: &Message) -> Result<(), HomebrewError> {
        self.master
            .handle_datagram(self.now, from, &message.to_bytes())
    }

    fn transmits(&mut self) -> Vec<(SocketAddr, Message)> {
        std::iter::from_fn(|| self.master.poll_transmit())
            .map(|(to, bytes)| {
                (
                    to,
                    Message::parse(&bytes).expect("master sends valid datagrams"),
                )
            })
            .collect()
    }

    fn events(&mut self) -> Vec<MasterEvent> {
        std::iter::from_fn(|| self.master.poll_event()).collect()
    }

    /// The full login exchange, asserting every reply.
    fn login(&mut self, from: SocketAddr, peer: u32, password: &str) {
        self.send(from, &Message::Login { peer }).unwrap();
        let salt = match self.transmits().as_slice() {
            [(to, Message::Ack { value })] if *to == from => *value,
            other => panic!("expected RPTACK with salt, got {other:?}"),
        };
        let digest = login_digest(salt, password);
        self.send(from, &Message::Key { peer, digest }).unwrap();
        assert_eq!(self.transmits(), vec![(from, Message::Ack { value: peer })]);
        let config = Box::new(PeerConfig {
            callsign: "BA1ABC".into(),
            colour_code: "3".into(),
            ..PeerConfig::default()
        });
        self.send(from, &Message::Config { peer, config }).unwrap();
        assert_eq!(self.transmits(), vec![(from, Message::Ack { value: peer })]);
    }

    fn dmrd(
        &mut self,
        from: SocketAddr,
        frame: FrameType,
        slot: Slot,
        source: u32,
        stream_id: u32,
    ) {
        let repr = DmrdRepr {
            seq: 0,
            source,
            destination: 91,
            repeater_id: PEER,
            slot,
            call_type: CallType::Group,
            frame,
            stream_id,
            burst: [0x55; 33],
            ber: 0,
            rssi: 0,
        };
        self.send(from, &Message::Data(repr)).unwrap();
    }
}

#[test]
fn login_with_good_password_then_options_and_ping() {
    let mut rig = Rig::new();
    rig.login(addr(5000), PEER, PASSWORD);
    match rig.events().as_slice() {
        [MasterEvent::PeerLoggedIn {
            peer,
            addr: a,
            config,
        }] => {
            assert_eq!((*peer, *a), (PEER, addr(5000)));
            assert_eq!(config.colour_code(), Some(3));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rig.master.logged_in_peers(), vec![PEER]);

    rig.send(
        addr(5000),
        &Message::Options {
            peer: PEER,
            options: "TS2=9".into(),
        },
    )
    .unwrap();
    assert_eq!(
        rig.transmits(),
        vec![(addr(5000), Message::Ack { value: PEER })]
    );
    assert_eq!(
        rig.events(),
        vec![MasterEvent::PeerOptions {
            peer: PEER,
            options: "TS2=9".into()
        }]
    );

    rig.send(addr(5000), &Message::Ping { peer: PEER }).unwrap();
    assert_eq!(
        rig.transmits(),
        vec![(addr(5000), Message::Pong { peer: PEER })]
    );
}

#[test]
fn salt_is_the_one_hashed_and_login_digest_matches_sha256() {
    // SHA-256 of the bytes 01 02 03 04 followed by "s3cret", computed with
    // `printf '\x01\x02\x03\x04s3cret' | sha256sum`.
    let digest = login_digest(0x0102_0304, PASSWORD);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN_DIGEST);
}

const GOLDEN_DIGEST: &str = "babf856c93e06350e528c5b65b52bcba1021921021c91d600a9152f8f4e0da6f";

#[test]
fn bad_password_is_refused_with_nak() {
    let mut rig = Rig::new();
    rig.send(addr(5000), &Message::Login { peer: PEER })
        .unwrap();
    let salt = match rig.transmits().as_slice() {
        [(_, Message::Ack { value })] => *value,
        other => panic!("{other:?}"),
    };
    let digest = login_digest(salt, "wrong");
    rig.send(addr(5000), &Message::Key { peer: PEER, digest })
        .unwrap();
    assert_eq!(
        rig.transmits(),
        vec![(addr(5000), Message::Nak { peer: PEER })]
    );
    assert_eq!(
        rig.events(),
        vec![MasterEvent::PeerRejected {
            peer: PEER,
            addr: addr(5000),
            reason: RejectReason::BadPassword
        }]
    );
    // It is not logged in: config and ping are refused too.
    let err = rig
        .send(addr(5000), &Message::Ping { peer: PEER })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "RPTPING from peer 3100001 at 127.0.0.1:5000, which is not logged in there (sent MSTNAK)"
    );
    assert_eq!(
        rig.transmits(),
        vec![(addr(5000), Message::Nak { peer: PEER })]
    );
    assert!(rig.master.logged_in_peers().is_empty());
}

#[test]
fn unknown_peer_and_out_of_sequence_steps_are_refused() {
    let mut rig = Rig::new();
    rig.send(addr(5000), &Message::Login { peer: 42 }).unwrap();
    assert_eq!(
        rig.transmits(),
        vec![(addr(5000), Message::Nak { peer: 42 })]
    );
    assert_eq!(
        rig.events(),
        vec![MasterEvent::PeerRejected {
            peer: 42,
            addr: addr(5000),
            reason: RejectReason::UnknownPeer
        }]
    );
    // Key without login.
    rig.send(
        addr(5000),
        &Message::Key {
            peer: PEER,
            digest: [0; 32],
        },
    )
    .unwrap();
    assert_eq!(
        rig.transmits(),
        vec![(addr(5000), Message::Nak { peer: PEER })]
    );
    assert!(matches!(
        rig.events().as_slice(),
        [MasterEvent::PeerRejected {
            reason: RejectReason::OutOfSequence,
            ..
        }]
    ));
    // Config before key.
    rig.send(addr(5000), &Message::Login { peer: PEER })
        .unwrap();
    rig.transmits();
    rig.send(
        addr(5000),
        &Message::Config {
            peer: PEER,
            config: Box::default(),
        },
    )
    .unwrap();
    assert_eq!(
        rig.transmits(),
        vec![(addr(5000), Message::Nak { peer: PEER })]
    );
    // Key from a different address than the login.
    rig.send(addr(5000), &Message::Login { peer: PEER })
        .unwrap();
    let salt = match rig.transmits().as_slice() {
        [(_, Message::Ack { value })] => *value,
        other => panic!("{other:?}"),
    };
    let digest = login_digest(salt, PASSWORD);
    rig.send(addr(5001), &Message::Key { peer: PEER, digest })
        .unwrap();
    assert_eq!(
        rig.transmits(),
        vec![(addr(5001), Message::Nak { peer: PEER })]
    );
}

#[test]
fn malformed_and_master_only_datagrams_are_errors() {
    let mut rig = Rig::new();
    let err = rig
        .master
        .handle_datagram(rig.now, addr(5000), b"RPTL\x00")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed datagram from 127.0.0.1:5000: RPTL is 5 bytes, expected 8"
    );
    let err = rig
        .master
        .handle_datagram(rig.now, addr(5000), &[0xFF; 2000])
        .unwrap_err();
    assert!(matches!(
        err,
        HomebrewError::Wire {
            source: WireError::UnknownCommand(_),
            ..
        }
    ));
    let err = rig
        .send(addr(5000), &Message::Pong { peer: 1 })
        .unwrap_err();
    assert!(matches!(
        err,
        HomebrewError::MasterMessage {
            command: "MSTPONG",
            ..
        }
    ));
    assert!(rig.transmits().is_empty());
}

#[test]
fn silent_peer_times_out_and_ping_keeps_it_alive() {
    let mut rig = Rig::new();
    rig.login(addr(5000), PEER, PASSWORD);
    rig.events();
    assert_eq!(
        rig.master.poll_timeout(),
        Some(rig.now + Duration::from_secs(30))
    );
    rig.advance(Duration::from_secs(20));
    rig.send(addr(5000), &Message::Ping { peer: PEER }).unwrap();
    rig.advance(Duration::from_secs(20));
    assert!(rig.events().is_empty(), "ping restarted the timer");
    rig.advance(Duration::from_secs(10));
    assert_eq!(
        rig.events(),
        vec![MasterEvent::PeerGone {
            peer: PEER,
            reason: PeerGoneReason::TimedOut
        }]
    );
    assert_eq!(rig.master.poll_timeout(), None);
}

#[test]
fn voice_call_start_and_end_on_terminator() {
    let mut rig = Rig::new();
    rig.login(addr(5000), PEER, PASSWORD);
    rig.events();
    let t0 = rig.now;
    rig.dmrd(
        addr(5000),
        FrameType::Data(DataType::VoiceLcHeader),
        Slot::Two,
        2_300_001,
        77,
    );
    for n in 0..6 {
        rig.advance(Duration::from_millis(60));
        let frame = if n == 0 {
            FrameType::VoiceSync
        } else {
            FrameType::Voice { n }
        };
        rig.dmrd(addr(5000), frame, Slot::Two, 2_300_001, 77);
    }
    rig.dmrd(
        addr(5000),
        FrameType::Data(DataType::TerminatorWithLc),
        Slot::Two,
        2_300_001,
        77,
    );
    let call = CallInfo {
        peer: PEER,
        slot: Slot::Two,
        source: 2_300_001,
        destination: 91,
        call_type: CallType::Group,
        stream_id: 77,
        started: t0,
    };
    assert_eq!(
        rig.events(),
        vec![
            MasterEvent::CallStart(call),
            MasterEvent::CallEnd {
                call,
                reason: CallEndReason::Terminator,
                at: rig.now
            },
        ]
    );
    assert!(rig.master.active_calls().is_empty());
}

#[test]
fn late_entry_stream_timeout_superseding_and_independent_slots() {
    let mut rig = Rig::new();
    rig.login(addr(5000), PEER, PASSWORD);
    rig.events();
    // Late entry: voice without a header starts the call.
    rig.dmrd(addr(5000), FrameType::Voice { n: 2 }, Slot::One, 1001, 1);
    rig.dmrd(addr(5000), FrameType::VoiceSync, Slot::Two, 1002, 2);
    assert_eq!(rig.master.active_calls().len(), 2);
    rig.advance(Duration::from_millis(100));
    // A new stream on slot 1 supersedes the first call.
    rig.dmrd(
        addr(5000),
        FrameType::Data(DataType::VoiceLcHeader),
        Slot::One,
        1003,
        3,
    );
    let kinds: Vec<String> = rig
        .events()
        .iter()
        .map(|e| match e {
            MasterEvent::CallStart(c) => format!("start {} s{}", c.source, c.slot.number()),
            MasterEvent::CallEnd { call, reason, .. } => {
                format!("end {} {reason:?}", call.source)
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start 1001 s1",
            "start 1002 s2",
            "end 1001 Superseded",
            "start 1003 s1"
        ]
    );
    // Slot 2 goes silent: stream timeout 500 ms after its last frame.
    let slot2_last = rig.now - Duration::from_millis(100);
    assert_eq!(
        rig.master.poll_timeout(),
        Some(slot2_last + Duration::from_millis(500))
    );
    rig.advance(Duration::from_millis(400));
    match rig.events().as_slice() {
        [MasterEvent::CallEnd {
            call,
            reason: CallEndReason::StreamTimeout,
            ..
        }] => {
            assert_eq!(call.source, 1002)
        }
        other => panic!("{other:?}"),
    }
    // A terminator for some other stream does not end the slot-1 call.
    rig.dmrd(
        addr(5000),
        FrameType::Data(DataType::TerminatorWithLc),
        Slot::One,
        1003,
        99,
    );
    assert_eq!(rig.master.active_calls().len(), 1);
    // The peer closes: its call ends with it.
    rig.send(addr(5000), &Message::Close { peer: PEER })
        .unwrap();
    match rig.events().as_slice() {
        [MasterEvent::CallEnd {
            reason: CallEndReason::PeerGone,
            ..
        }, MasterEvent::PeerGone {
            reason: PeerGoneReason::Closed,
            ..
        }] => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_from_a_peer_that_is_not_logged_in_gets_nak() {
    let mut rig = Rig::new();
    let repr = DmrdRepr {
        seq: 0,
        source: 1,
        destination: 2,
        repeater_id: PEER,
        slot: Slot::One,
        call_type: CallType::Group,
        frame: FrameType::VoiceSync,
        stream_id: 1,
        burst: [0; 33],
        ber: 0,
        rssi: 0,
    };
    assert!(rig.send(addr(5000), &Message::Data(repr)).is_err());
    assert_eq!(
        rig.transmits(),
        vec![(addr(5000), Message::Nak { peer: PEER })]
    );
    assert!(rig.events().is_empty());
}

/// Decodes a master-sent radio check; returns (destination, slot, request).
fn sent_check(message: &Message) -> (u32, Slot, RadioCheck, u8) {
    let Message::Data(repr) = message else {
        panic!("expected DMRD, got {message:?}")
    };
    assert_eq!(repr.frame, FrameType::Data(DataType::Csbk));
    assert_eq!(repr.call_type, CallType::Private);
    assert_eq!(repr.source, 9990);
    let (csbk, cc) = Csbk::from_burst(&repr.burst).expect("valid CSBK burst");
    (
        repr.destination,
        repr.slot,
        csbk.as_radio_check().expect("radio check"),
        cc,
    )
}

fn ack_from(rig: &mut Rig, radio: u32, checker: u32) {
    let repr = DmrdRepr {
        seq: 0,
        source: radio,
        destination: checker,
        repeater_id: PEER,
        slot: Slot::One,
        call_type: CallType::Private,
        frame: FrameType::Data(DataType::Csbk),
        stream_id: 5,
        burst: Csbk::radio_check(RadioCheck::Ack { radio, checker })
            .to_burst_with_sync(3, crate::dmr::burst::sync::MS_DATA),
        ber: 0,
        rssi: 0,
    };
    rig.send(addr(5000), &Message::Data(repr)).unwrap();
}

#[test]
fn radio_check_answered_on_second_attempt() {
    let mut rig = Rig::new();
    assert_eq!(
        rig.master.start_radio_check(
            rig.now,
            RadioCheckRequest {
                radio_id: 2_300_001,
                slot: Slot::One,
                timeout: Duration::from_secs(1),
                retries: 2,
            }
        ),
        Err(HomebrewError::NoPeer)
    );
    rig.login(addr(5000), PEER, PASSWORD);
    rig.events();
    let request = RadioCheckRequest {
        radio_id: 2_300_001,
        slot: Slot::One,
        timeout: Duration::from_secs(1),
        retries: 2,
    };
    let id = rig.master.start_radio_check(rig.now, request).unwrap();
    let sent = rig.transmits();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, addr(5000));
    assert_eq!(
        sent_check(&sent[0].1),
        (
            2_300_001,
            Slot::One,
            RadioCheck::Request {
                radio: 2_300_001,
                checker: 9990
            },
            3
        ),
        "colour code comes from the peer's RPTC"
    );
    rig.advance(Duration::from_secs(1));
    assert_eq!(rig.transmits().len(), 1, "retry after the time-out");
    rig.advance(Duration::from_millis(300));
    // An ack to some other checker, or from another radio, does not count.
    ack_from(&mut rig, 2_300_001, 1234);
    ack_from(&mut rig, 2_300_002, 9990);
    assert!(!rig
        .events()
        .iter()
        .any(|e| matches!(e, MasterEvent::RadioCheckDone { .. })));
    ack_from(&mut rig, 2_300_001, 9990);
    let done: Vec<_> = rig
        .events()
        .into_iter()
        .filter(|e| matches!(e, MasterEvent::RadioCheckDone { .. }))
        .collect();
    assert_eq!(
        done,
        vec![MasterEvent::RadioCheckDone {
            id,
            radio_id: 2_300_001,
            outcome: RadioCheckOutcome::Answered {
                attempts: 2,
                after: Duration::from_millis(1300),
                peer: PEER
            }
        }]
    );
    // Nothing pending but the peer's keep-alive, refreshed by the ack's DMRD.
    assert_eq!(
        rig.master.poll_timeout(),
        Some(rig.now + Duration::from_secs(30))
    );
}

#[test]
fn unanswered_checks_retry_then_give_up_one_at_a_time_per_slot() {
    let mut rig = Rig::new();
    rig.login(addr(5000), PEER, PASSWORD);
    rig.events();
    let request = |radio_id, slot| RadioCheckRequest {
        radio_id,
        slot,
        timeout: Duration::from_millis(500),
        retries: 1,
    };
    let first = rig
        .master
        .start_radio_check(rig.now, request(11, Slot::One))
        .unwrap();
    let second = rig
        .master
        .start_radio_check(rig.now, request(12, Slot::One))
        .unwrap();
    let other_slot = rig
        .master
        .start_radio_check(rig.now, request(13, Slot::Two))
        .unwrap();
    let radios = |sent: Vec<(SocketAddr, Message)>| -> Vec<u32> {
        sent.iter().map(|(_, m)| sent_check(m).0).collect()
    };
    assert_eq!(
        radios(rig.transmits()),
        [11, 13],
        "slot 1 queues radio 12 behind 11"
    );
    rig.advance(Duration::from_millis(500));
    assert_eq!(radios(rig.transmits()), [11, 13], "one retry each");
    rig.advance(Duration::from_millis(500));
    assert_eq!(
        radios(rig.transmits()),
        [12],
        "radio 12 goes out when 11 gave up"
    );
    let done = |events: Vec<MasterEvent>| -> Vec<(RadioCheckId, RadioCheckOutcome)> {
        events
            .into_iter()
            .filter_map(|e| match e {
                MasterEvent::RadioCheckDone { id, outcome, .. } => Some((id, outcome)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        done(rig.events()),
        vec![
            (first, RadioCheckOutcome::NoAnswer { attempts: 2 }),
            (other_slot, RadioCheckOutcome::NoAnswer { attempts: 2 }),
        ]
    );
    // The peer vanishes while radio 12 is being checked.
    rig.send(addr(5000), &Message::Close { peer: PEER })
        .unwrap();
    rig.advance(Duration::from_millis(500));
    assert_eq!(
        done(rig.events()),
        vec![(second, RadioCheckOutcome::NoPeer { attempts: 1 })]
    );
}

#[test]
fn radio_id_must_fit_24_bits() {
    let mut rig = Rig::new();
    rig.login(addr(5000), PEER, PASSWORD);
    let err = rig
        .master
        .start_radio_check(
            rig.now,
            RadioCheckRequest {
                radio_id: 1 << 24,
                slot: Slot::One,
                timeout: Duration::from_secs(1),
                retries: 0,
            },
        )
        .unwrap_err();
    assert_eq!(err, HomebrewError::RadioId(1 << 24));
}

#[test]
fn relogin_replaces_the_session_and_close_says_goodbye() {
    let mut rig = Rig::new();
    rig.login(addr(5000), PEER, PASSWORD);
    rig.login(addr(5002), PEER, PASSWORD);
    let events = rig.events();
    assert!(events.contains(&MasterEvent::PeerGone {
        peer: PEER,
        reason: PeerGoneReason::Relogin
    }));
    // The old address is no longer the peer.
    assert!(rig.send(addr(5000), &Message::Ping { peer: PEER }).is_err());
    rig.transmits();
    rig.master.close(rig.now);
    assert_eq!(
        rig.transmits(),
        vec![(addr(5002), Message::MasterClose { peer: PEER })]
    );
}

#[test]
fn absurd_durations_are_clamped_not_overflowed() {
    let mut rig = Rig::new();
    rig.master.config.ping_timeout = Duration::MAX;
    rig.login(addr(5000), PEER, PASSWORD);
    let request = RadioCheckRequest {
        radio_id: 5,
        slot: Slot::One,
        timeout: Duration::MAX,
        retries: u32::MAX,
    };
    rig.master.start_radio_check(rig.now, request).unwrap();
    assert!(rig.master.poll_timeout().is_some_and(|t| t > rig.now));
    rig.advance(Duration::from_secs(3600));
    assert_eq!(rig.master.logged_in_peers(), vec![PEER]);
}
