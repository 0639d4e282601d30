//! How many simultaneously active channels one core carries with everything
//! a channel does to received audio: RoIP in (depacketise + jitter buffer +
//! G.711 decode + COR), ANI decoding (DTMF + 5-tone + MDC1200), patching
//! (re-packetise for the other link) and recording (Opus at 8 kHz, default
//! complexity 5, Ogg pages). Goal: ≥ 128 channels per core, 0 frames
//! dropped. Bare libopus encoding of the same audio is measured in the same
//! run as the reference (≈ 140 channels per core at complexity 10).
//!
//! Run with `cargo bench -p rollcall-hw --bench channel_capacity`.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use rollcall_hw::audio::AudioFrame;
use rollcall_hw::link::LinkEvent;
use rollcall_hw::ogg::{Direction, EncoderSettings, OggOpusEncoder, RecordingTags};
use rollcall_hw::roip::{ReceiverConfig, RoipReceiver};
use rollcall_hw::rtp::{Codec, RtpSender};
use rollcall_hw::signalling::{AniDecoder, AniDecoderConfig, SelcallStandard};

const SECONDS: usize = 60;
const COMPLEXITY: i32 = 5;

fn voice_like(n: usize) -> AudioFrame {
    let mut f = AudioFrame::SILENCE;
    for (i, s) in f.samples.iter_mut().enumerate() {
        let t = (n * 160 + i) as f32 / 8000.0;
        let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
        *s = (env
            * (3000.0 * (2.0 * std::f32::consts::PI * 180.0 * t).sin()
                + 2000.0 * (2.0 * std::f32::consts::PI * 540.0 * t).sin()
                + 800.0 * (2.0 * std::f32::consts::PI * 1500.0 * t).sin())) as i16;
    }
    f
}

fn datagrams() -> Vec<(Instant, Vec<u8>)> {
    let t0 = Instant::now();
    let mut tx = RtpSender::new(Codec::Pcmu, 101, 7, 0, 0).expect("encoder");
    (0..SECONDS * 50)
        .map(|n| {
            let at = t0 + Duration::from_millis(20 * n as u64);
            if n % 600 == 0 {
                tx.end_talkspurt();
            }
            (at, tx.audio(&voice_like(n), at).expect("encode"))
        })
        .collect()
}

/// One channel's full receive path; returns (CPU time, frames handled).
fn full_channel(input: &[(Instant, Vec<u8>)]) -> (Duration, usize) {
    let mut rx = RoipReceiver::new(ReceiverConfig {
        codec: Codec::Pcmu,
        telephone_event_pt: 101,
        jitter_min: Duration::from_millis(40),
        jitter_max: Duration::from_millis(200),
        cor_hang: Duration::from_millis(300),
    })
    .expect("decoder");
    let mut ani = AniDecoder::new(AniDecoderConfig {
        dtmf: true,
        selcall: Some(SelcallStandard::Ccir),
        mdc1200: true,
    });
    let mut patch = RtpSender::new(Codec::Pcmu, 101, 9, 0, 0).expect("encoder");
    let mut rec = OggOpusEncoder::new(EncoderSettings::new(None, COMPLEXITY).expect("settings"))
        .expect("opus");
    let mut file = Vec::with_capacity(1 << 20);
    let tags = RecordingTags {
        channel: "bench".into(),
        link: "a".into(),
        direction: Direction::Rx,
        start: SystemTime::now(),
        ani: None,
    };
    rec.start(&tags, 1, &mut file).expect("start");
    let started = Instant::now();
    let mut frames = 0;
    // After the last packet, play out what the jitter buffer still holds.
    let end = input.last().map(|(t, _)| *t + Duration::from_millis(500));
    let tail = end.map(|t| (t, Vec::new()));
    for (at, d) in input.iter().chain(tail.iter()) {
        if !d.is_empty() {
            rx.handle_datagram(black_box(d), *at).expect("valid packet");
        }
        while rx.poll_timeout().is_some_and(|t| t <= *at) {
            rx.handle_timeout(*at);
        }
        while let Some(e) = rx.poll_event() {
            if let LinkEvent::Audio { frame, cor: true } = e {
                black_box(ani.push(&frame.samples));
                black_box(patch.audio(&frame, *at).expect("packetise"));
                rec.push_frame(&frame, &mut file).expect("encode");
                if file.len() > 1 << 19 {
                    file.clear();
                }
                frames += 1;
            }
        }
    }
    (started.elapsed(), frames)
}

/// Bare libopus on the same audio, the reference.
fn bare_opus() -> Duration {
    let mut enc = opus::Encoder::new(8000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(12_000)).unwrap();
    enc.set_complexity(COMPLEXITY).unwrap();
    let frames: Vec<AudioFrame> = (0..SECONDS * 50).map(voice_like).collect();
    let mut out = [0u8; 400];
    let started = Instant::now();
    for f in &frames {
        black_box(enc.encode(&f.samples, &mut out).unwrap());
    }
    started.elapsed()
}

fn main() {
    let input = datagrams();
    full_channel(&input);
    let (full, frames) = (0..3).map(|_| full_channel(&input)).min().unwrap();
    bare_opus();
    let bare = (0..3).map(|_| bare_opus()).min().unwrap();
    let expected = SECONDS * 50;
    let per_s = |d: Duration| d.as_secs_f64() / SECONDS as f64;
    let channels = 1.0 / per_s(full);
    println!("active channel: RoIP in + jitter buffer + ANI (DTMF, CCIR, MDC1200) + patch + recorder, {SECONDS} s");
    println!(
        "  full channel : {:7.2} ms CPU per audio-second → {:6.0} channels per core (goal ≥ 128: {})",
        per_s(full) * 1e3,
        channels,
        if channels >= 128.0 { "met" } else { "MISSED" }
    );
    println!(
        "  bare libopus : {:7.2} ms CPU per audio-second → {:6.0} channels per core (reference)",
        per_s(bare) * 1e3,
        1.0 / per_s(bare)
    );
    println!(
        "  full / bare libopus: {:.2}x",
        full.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "  frames: {frames} recorded of {expected} sent ({} dropped)",
        expected.saturating_sub(frames)
    );
}
