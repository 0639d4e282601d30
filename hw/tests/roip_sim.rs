//! The RoIP driver against simulated stations over real loopback UDP.

use std::net::SocketAddr;
use std::time::Duration;

use rollcall_hw::ani::{AniKind, AniOp};
use rollcall_hw::audio::{AudioFrame, FRAME_SAMPLES};
use rollcall_hw::link::{spawn_supervised, Backoff, LinkEvent, LinkHandle};
use rollcall_hw::roip::{Codec, RoipConfig, RoipDriver};
use rollcall_hw::signalling::mdc1200::{self, MdcPacket};
use rollcall_hw::signalling::{encode, AniDecoder, AniDecoderConfig};
use rollcall_hw::sim::{GuardConfig, SimRecord, Station, StationConfig, StationHandle};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn free_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

fn link_cfg(bind: SocketAddr, peer: SocketAddr, codec: Codec) -> RoipConfig {
    let mut c = RoipConfig::new(bind, peer, codec);
    c.keepalive_ms = 100;
    c.peer_timeout_ms = 800;
    c.cor_hang_ms = 300;
    // Loopback on a box shared by parallel builds stalls tasks for tens of
    // milliseconds; a deeper buffer keeps the ANI tests about decoding, not
    // about scheduler luck.
    c.jitter_min_ms = 100;
    c
}

fn guard(id: &str, ani: &str, code: &str) -> GuardConfig {
    GuardConfig {
        id: id.into(),
        ani: ani.into(),
        code: code.into(),
        behaviour: rollcall_hw::sim::Behaviour::OnTime,
        reply_delay_ms: 300,
        late_delay_ms: 5000,
        talk_ms: 600,
        transport: Default::default(),
        miss_chance: 0.0,
        late_chance: 0.0,
    }
}

struct Setup {
    daemon: LinkHandle,
    events: mpsc::Receiver<LinkEvent>,
    sim: StationHandle,
    records: broadcast::Receiver<SimRecord>,
    sim_cfg: StationConfig,
    sim_cancel: CancellationToken,
    cancel: CancellationToken,
}

fn station_cfg(daemon: SocketAddr, sim: SocketAddr, codec: Codec) -> StationConfig {
    StationConfig {
        name: "sim".into(),
        seed: 1,
        roip: link_cfg(sim, daemon, codec),
        selcall_standard: "ccir".into(),
        roll_call_min_ms: 3000,
        roll_call_tone_hz: None,
        log: None,
        background: None,
        guards: vec![],
    }
}

async fn setup(codec: Codec, edit: impl FnOnce(&mut StationConfig)) -> Setup {
    let daemon_addr = free_addr();
    let sim_addr = free_addr();
    let mut sim_cfg = station_cfg(daemon_addr, sim_addr, codec);
    edit(&mut sim_cfg);
    let cancel = CancellationToken::new();
    let sim_cancel = CancellationToken::new();
    let sim = Station::spawn(sim_cfg.clone(), sim_cancel.clone()).unwrap();
    let records = sim.subscribe();
    let (daemon, events, _task) = spawn_supervised(
        "daemon",
        Box::new(RoipDriver::new(link_cfg(daemon_addr, sim_addr, codec))),
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            reset_after: Duration::from_secs(10),
        },
        cancel.clone(),
    );
    let mut s = Setup {
        daemon,
        events,
        sim,
        records,
        sim_cfg,
        sim_cancel,
        cancel,
    };
    s.wait_event(Duration::from_secs(5), |e| matches!(e, LinkEvent::Up))
        .await;
    s
}

impl Setup {
    /// Waits for an event matching `pred`, returning every event seen.
    async fn wait_event(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&LinkEvent) -> bool,
    ) -> Vec<LinkEvent> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out; saw {} events", seen.len()))
                .expect("link task ended");
            let done = pred(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }

    async fn wait_record(&mut self, within: Duration, event: &str) -> SimRecord {
        let deadline = Instant::now() + within;
        loop {
            let r = tokio::time::timeout_at(deadline, self.records.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for sim record {event}"))
                .expect("sim records closed");
            if r.event == event {
                return r;
            }
        }
    }

    /// Keys the daemon side and sends `samples` paced in real time.
    async fn transmit(&self, samples: &[i16]) {
        assert!(self.daemon.ptt(true));
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for chunk in samples.chunks(FRAME_SAMPLES) {
            tick.tick().await;
            assert!(self.daemon.transmit(AudioFrame::from_slice(chunk)));
        }
        tick.tick().await;
        assert!(self.daemon.ptt(false));
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.sim_cancel.cancel();
        self.sim.join().await;
    }
}

async fn background_audio_arrives_with_cor(codec: Codec) {
    let mut s = setup(codec, |c| {
        c.background = Some(rollcall_hw::sim::station::BackgroundConfig {
            mean_interval_ms: 60_000,
            talk_min_ms: 1000,
            talk_max_ms: 1000,
            first_after_ms: Some(200),
        });
    })
    .await;
    let before = s
        .wait_event(Duration::from_secs(10), |e| {
            matches!(e, LinkEvent::Cor(true))
        })
        .await;
    assert!(
        !before
            .iter()
            .any(|e| matches!(e, LinkEvent::Audio { cor: true, .. })),
        "no squelched audio before COR opens"
    );
    let during = s
        .wait_event(Duration::from_secs(5), |e| {
            matches!(e, LinkEvent::Cor(false))
        })
        .await;
    let frames: Vec<&AudioFrame> = during
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Audio { frame, cor: true } => Some(frame),
            _ => None,
        })
        .collect();
    // 1 s of voice is 50 frames, plus at most 3 concealed at the tail.
    assert!(
        (50..=54).contains(&frames.len()),
        "{codec:?}: {} frames",
        frames.len()
    );
    let loud = frames.iter().filter(|f| f.level_dbfs() > -40.0).count();
    assert!(loud > 30, "{codec:?}: only {loud} frames carry voice");
    let record = s.wait_record(Duration::from_secs(1), "background").await;
    assert_eq!(record.duration_ms, Some(1000));
    s.stop().await;
}

#[tokio::test]
async fn sim_audio_arrives_as_frames_with_cor_pcmu() {
    background_audio_arrives_with_cor(Codec::Pcmu).await;
}

#[tokio::test]
async fn sim_audio_arrives_as_frames_with_cor_opus() {
    background_audio_arrives_with_cor(Codec::Opus { pt: 111 }).await;
}

#[tokio::test]
async fn daemon_ptt_keys_the_simulated_radio() {
    let mut s = setup(Codec::Pcma, |_| {}).await;
    let voice: Vec<i16> = (0..8000 * 8 / 10)
        .map(|n| (6000.0 * (n as f32 * 0.3).sin()) as i16)
        .collect();
    s.transmit(&voice).await;
    let ptt: Vec<bool> = s
        .wait_event(Duration::from_secs(2), |e| {
            matches!(e, LinkEvent::Ptt(false))
        })
        .await
        .into_iter()
        .filter_map(|e| match e {
            LinkEvent::Ptt(on) => Some(on),
            _ => None,
        })
        .collect();
    assert_eq!(ptt, vec![true, false], "driver reports keying");
    let r = s.wait_record(Duration::from_secs(3), "gateway_tx").await;
    let ms = r.duration_ms.unwrap();
    assert!((740..=860).contains(&ms), "sim heard {ms} ms");
    s.stop().await;
}

/// Collects ANI decoded from received audio until `want` shows up.
async fn decode_until(
    s: &mut Setup,
    within: Duration,
    want: impl Fn(&rollcall_hw::ani::AniEvent) -> bool,
) -> rollcall_hw::ani::AniEvent {
    let mut decoder = AniDecoder::new(AniDecoderConfig {
        dtmf: true,
        selcall: Some(rollcall_hw::signalling::SelcallStandard::Ccir),
        mdc1200: true,
    });
    let deadline = Instant::now() + within;
    loop {
        let e = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .expect("timed out waiting for the guard's ANI")
            .expect("link ended");
        let found = match e {
            LinkEvent::Audio { frame, .. } => decoder.push(&frame.samples),
            LinkEvent::Cor(false) => decoder.flush(),
            LinkEvent::Ani(a) => vec![a],
            _ => vec![],
        };
        if let Some(a) = found.into_iter().find(|a| want(a)) {
            return a;
        }
    }
}

#[tokio::test]
async fn guard_called_by_dtmf_answers_with_dtmf_ani_in_audio() {
    let mut s = setup(Codec::Pcmu, |c| {
        c.guards = vec![guard("g1", "dtmf", "4711")]
    })
    .await;
    s.transmit(&encode::dtmf("4711", 80, 60, 0.6)).await;
    let called = s.wait_record(Duration::from_secs(3), "called").await;
    assert_eq!(called.guard.as_deref(), Some("g1"));
    let ani = decode_until(&mut s, Duration::from_secs(5), |a| a.kind == AniKind::Dtmf).await;
    assert_eq!(ani.unit, "4711");
    s.stop().await;
}

#[tokio::test]
async fn mdc_radio_check_is_acknowledged_by_the_guard() {
    let mut s = setup(Codec::Opus { pt: 111 }, |c| {
        c.guards = vec![
            guard("g7", "mdc1200", "1A2B"),
            guard("g8", "mdc1200", "0042"),
        ]
    })
    .await;
    let mut call = encode::silence(100);
    call.extend(mdc1200::encode(&MdcPacket::radio_check(0x1A2B), 0.6));
    call.extend(encode::silence(100));
    s.transmit(&call).await;
    let called = s.wait_record(Duration::from_secs(3), "called").await;
    assert_eq!(called.guard.as_deref(), Some("g7"));
    let ani = decode_until(&mut s, Duration::from_secs(5), |a| {
        a.kind == AniKind::Mdc1200
    })
    .await;
    assert_eq!(ani.unit, "1A2B");
    assert_eq!(ani.op, AniOp::RadioCheckAck);
    s.stop().await;
}

#[tokio::test]
async fn roll_call_is_answered_by_selcall_and_rfc4733_guards() {
    let mut s = setup(Codec::Pcmu, |c| {
        c.roll_call_min_ms = 1000;
        let mut rfc = guard("g2", "dtmf", "5678");
        rfc.transport = rollcall_hw::sim::AniTransport::Rfc4733;
        rfc.reply_delay_ms = 200;
        let mut sel = guard("g3", "selcall", "12345");
        sel.reply_delay_ms = 400;
        let mut silent = guard("g4", "dtmf", "999");
        silent.behaviour = rollcall_hw::sim::Behaviour::Silent;
        c.guards = vec![rfc, sel, silent];
    })
    .await;
    // A 1.2 s announcement: longer than roll_call_min_ms.
    let announcement: Vec<i16> = (0..9600)
        .map(|n| (5000.0 * (n as f32 * 0.2).sin()) as i16)
        .collect();
    s.transmit(&announcement).await;
    let rfc = decode_until(&mut s, Duration::from_secs(5), |a| a.kind == AniKind::Dtmf).await;
    assert_eq!(rfc.unit, "5678");
    assert_eq!(rfc.detail.as_deref(), Some("rfc4733"));
    let sel = decode_until(&mut s, Duration::from_secs(6), |a| {
        a.kind == AniKind::Selcall
    })
    .await;
    assert_eq!(sel.unit, "12345");
    // Ground truth: three called, one ignored, two answered.
    let mut seen = Vec::new();
    while let Ok(r) = s.records.try_recv() {
        seen.push((r.event, r.guard.unwrap_or_default()));
    }
    for want in [
        ("called", "g2"),
        ("called", "g3"),
        ("called", "g4"),
        ("ignored", "g4"),
        ("answered", "g2"),
        ("answered", "g3"),
    ] {
        assert!(
            seen.iter().any(|(e, g)| e == want.0 && g == want.1),
            "{want:?} missing from {seen:?}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn killing_and_restarting_the_sim_task_marks_the_link_down_then_up() {
    let mut s = setup(Codec::Pcmu, |_| {}).await;
    s.sim_cancel.cancel();
    let seen = s
        .wait_event(Duration::from_secs(5), |e| {
            matches!(e, LinkEvent::Down { .. })
        })
        .await;
    if let Some(LinkEvent::Down { reason, .. }) = seen.last() {
        assert!(reason.contains("silent"), "{reason}");
    }
    let restarted = CancellationToken::new();
    let sim = Station::spawn(s.sim_cfg.clone(), restarted.clone()).unwrap();
    s.wait_event(Duration::from_secs(5), |e| matches!(e, LinkEvent::Up))
        .await;
    restarted.cancel();
    sim.join().await;
    s.stop().await;
}

#[tokio::test]
async fn killing_and_restarting_the_radiosim_binary_marks_the_link_down_then_up() {
    let daemon_addr = free_addr();
    let sim_addr = free_addr();
    let dir = std::env::temp_dir().join(format!("radiosim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = station_cfg(daemon_addr, sim_addr, Codec::Pcmu);
    cfg.log = Some(dir.join("truth.jsonl"));
    let config = dir.join("sim.json");
    std::fs::write(&config, serde_json::to_string(&cfg).unwrap()).unwrap();
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_radiosim"))
            .arg(&config)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let cancel = CancellationToken::new();
    let (_h, mut events, _task) = spawn_supervised(
        "daemon",
        Box::new(RoipDriver::new(link_cfg(
            daemon_addr,
            sim_addr,
            Codec::Pcmu,
        ))),
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            reset_after: Duration::from_secs(10),
        },
        cancel.clone(),
    );
    let mut child = spawn();
    wait_for(&mut events, |e| matches!(e, LinkEvent::Up)).await;
    child.kill().await.unwrap();
    wait_for(&mut events, |e| matches!(e, LinkEvent::Down { .. })).await;
    let mut child = spawn();
    wait_for(&mut events, |e| matches!(e, LinkEvent::Up)).await;
    // Both runs of the simulator logged hearing the daemon.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let truth = std::fs::read_to_string(dir.join("truth.jsonl")).unwrap_or_default();
        if truth.lines().filter(|l| l.contains("\"link_up\"")).count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ground truth lacks two link_up: {truth}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    cancel.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_for(events: &mut mpsc::Receiver<LinkEvent>, pred: fn(&LinkEvent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out")
            .expect("link ended");
        if pred(&e) {
            return;
        }
    }
}
