//! Cost of one RoIP receive channel: parse + jitter buffer + decode + COR,
//! per second of audio, and how many channels one core carries in real time.
//!
//! Run with `cargo bench -p rollcall-hw --bench roip_capacity`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rollcall_hw::audio::AudioFrame;
use rollcall_hw::roip::{ReceiverConfig, RoipReceiver};
use rollcall_hw::rtp::{Codec, RtpSender};

/// Seconds of audio per measurement.
const SECONDS: usize = 120;

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

fn measure(codec: Codec) -> Duration {
    let t0 = Instant::now();
    let frames = SECONDS * 50;
    let mut tx = RtpSender::new(codec, 101, 7, 0, 0).expect("encoder");
    // Talkspurts of 10 s with 2 s pauses, as a busy channel.
    let datagrams: Vec<(Instant, Vec<u8>)> = (0..frames)
        .map(|n| {
            let at = t0 + Duration::from_millis(20 * n as u64);
            if n % 600 == 0 {
                tx.end_talkspurt();
            }
            (at, tx.audio(&voice_like(n), at).expect("encode"))
        })
        .collect();
    let mut rx = RoipReceiver::new(ReceiverConfig {
        codec,
        telephone_event_pt: 101,
        jitter_min: Duration::from_millis(40),
        jitter_max: Duration::from_millis(200),
        cor_hang: Duration::from_millis(300),
    })
    .expect("decoder");
    let started = Instant::now();
    let mut produced = 0usize;
    for (at, d) in &datagrams {
        rx.handle_datagram(black_box(d), *at).expect("valid packet");
        if rx.poll_timeout().is_some_and(|t| t <= *at) {
            rx.handle_timeout(*at);
        }
        while let Some(e) = rx.poll_event() {
            black_box(&e);
            produced += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(produced >= frames * 9 / 10, "only {produced} events");
    elapsed
}

fn main() {
    println!(
        "RoIP receive channel (depacketise + jitter buffer + decode + COR), {SECONDS} s of audio:"
    );
    for codec in [Codec::Pcmu, Codec::Opus { pt: 111 }] {
        // Warm up, then take the best of three.
        measure(codec);
        let best = (0..3).map(|_| measure(codec)).min().unwrap_or_default();
        let per_second = best / SECONDS as u32;
        let channels = 1.0 / per_second.as_secs_f64();
        println!(
            "  {:5}: {:8.1} µs CPU per audio-second  →  {:8.0} channels per core in real time",
            codec.name(),
            per_second.as_secs_f64() * 1e6,
            channels
        );
    }
}
