//! RTP parsing and the whole RoIP receive path must never panic: every
//! input is parsed as a packet, then fed (with arrival times taken from the
//! input too) to a receiver that runs the jitter buffer, the decoders and the
//! RFC 4733 decoder.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rollcall_hw::roip::{ReceiverConfig, RoipReceiver};
use rollcall_hw::rtp::{Codec, RtpPacket, TelephoneEvent};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = RtpPacket::parse(data) {
        let _ = TelephoneEvent::parse(packet.payload);
        let mut out = Vec::new();
        packet.header.emit(packet.payload, &mut out);
        let again = RtpPacket::parse(&out).expect("our own output parses");
        assert_eq!(again.header, packet.header);
        assert_eq!(again.payload, packet.payload);
    }
    // Split the input into datagrams: [len][gap_ms][bytes...] records.
    let codec = match data.first().copied().unwrap_or(0) % 3 {
        0 => Codec::Pcmu,
        1 => Codec::Pcma,
        _ => Codec::Opus { pt: 111 },
    };
    let Ok(mut rx) = RoipReceiver::new(ReceiverConfig {
        codec,
        telephone_event_pt: 101,
        jitter_min: Duration::from_millis(20),
        jitter_max: Duration::from_millis(200),
        cor_hang: Duration::from_millis(100),
    }) else {
        return;
    };
    let mut now = Instant::now();
    let mut rest = data.get(1..).unwrap_or_default();
    while rest.len() >= 2 {
        let len = rest[0] as usize;
        now += Duration::from_millis(rest[1] as u64);
        let body = &rest[2..];
        let take = len.min(body.len());
        let _ = rx.handle_datagram(&body[..take], now);
        if rx.poll_timeout().is_some_and(|t| t <= now) {
            rx.handle_timeout(now);
        }
        while rx.poll_event().is_some() {}
        rest = &body[take..];
    }
    rx.handle_timeout(now + Duration::from_secs(5));
});
