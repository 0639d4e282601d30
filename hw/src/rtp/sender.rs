//! The transmit side of an RTP stream, sans-IO: turns 20 ms frames, DTMF
//! digits and keep-alives into datagrams with correct sequence numbers,
//! timestamps and marker bits.
//!
//! Timestamps advance by one frame per packet inside a talkspurt and by the
//! elapsed wall time (rounded to whole frames) across silence, as RFC 3550
//! §5.1 asks, so a receiver's jitter estimate is not disturbed by pauses.

use std::time::{Duration, Instant};

use crate::audio::AudioFrame;

use super::codec::{Codec, CodecError, PayloadEncoder};
use super::event::{char_to_event, TelephoneEvent};
use super::packet::RtpHeader;

/// Payload type of RFC 3389 comfort noise, used for keep-alives.
pub const COMFORT_NOISE_PT: u8 = 13;

/// One outgoing stream.
#[derive(Debug)]
pub struct RtpSender {
    codec: Codec,
    encoder: PayloadEncoder,
    telephone_event_pt: u8,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// Time the last packet's timestamp refers to.
    last_sent: Option<Instant>,
    in_talkspurt: bool,
}

impl RtpSender {
    /// `ssrc`, first sequence number and first timestamp should be random
    /// (RFC 3550 §5.1); the caller supplies them so tests are repeatable.
    pub fn new(
        codec: Codec,
        telephone_event_pt: u8,
        ssrc: u32,
        first_sequence: u16,
        first_timestamp: u32,
    ) -> Result<RtpSender, CodecError> {
        Ok(RtpSender {
            codec,
            encoder: PayloadEncoder::new(codec)?,
            telephone_event_pt,
            ssrc,
            sequence: first_sequence,
            timestamp: first_timestamp,
            last_sent: None,
            in_talkspurt: false,
        })
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Ends the current talkspurt: the next frame carries the marker bit.
    pub fn end_talkspurt(&mut self) {
        self.in_talkspurt = false;
    }

    /// Moves the timestamp on by the wall time since the last packet.
    fn catch_up(&mut self, now: Instant) {
        let ticks = self.codec.ticks_per_frame();
        if let Some(last) = self.last_sent {
            let elapsed = now.saturating_duration_since(last);
            let frames = (elapsed.as_micros() / 20_000).max(1) as u32;
            self.timestamp = self.timestamp.wrapping_add(frames.wrapping_mul(ticks));
        }
        self.last_sent = Some(now);
    }

    fn header(&mut self, payload_type: u8, marker: bool) -> RtpHeader {
        let header = RtpHeader {
            marker,
            payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        header
    }

    /// One audio packet for `frame`.
    pub fn audio(&mut self, frame: &AudioFrame, now: Instant) -> Result<Vec<u8>, CodecError> {
        let payload = self.encoder.encode(frame)?;
        let marker = !self.in_talkspurt;
        if marker {
            self.catch_up(now);
        } else {
            self.timestamp = self.timestamp.wrapping_add(self.codec.ticks_per_frame());
            self.last_sent = Some(now);
        }
        self.in_talkspurt = true;
        let header = self.header(self.codec.payload_type(), marker);
        Ok(header.to_datagram(&payload))
    }

    /// A comfort-noise packet (RFC 3389, −127 dBov: silence) that keeps a NAT
    /// mapping open and tells the peer we are alive. It never opens COR.
    pub fn keepalive(&mut self, now: Instant) -> Vec<u8> {
        self.in_talkspurt = false;
        self.catch_up(now);
        let header = self.header(COMFORT_NOISE_PT, false);
        header.to_datagram(&[127])
    }

    /// RFC 4733 packets for `digits`, each tone `tone` long followed by
    /// `pause`, as (offset from `now`, datagram). The caller sends each at its
    /// offset. Characters that are not DTMF digits are skipped. Packets go out
    /// every 20 ms; the end of each digit is sent three times.
    pub fn dtmf(
        &mut self,
        digits: &str,
        tone: Duration,
        pause: Duration,
        now: Instant,
    ) -> Vec<(Duration, Vec<u8>)> {
        let clock = self.codec.clock_rate() as u64;
        let to_ticks = |d: Duration| (d.as_micros() as u64 * clock / 1_000_000) as u32;
        let step = Duration::from_millis(20);
        let mut out = Vec::new();
        let mut offset = Duration::ZERO;
        self.in_talkspurt = false;
        self.catch_up(now);
        for event in digits.chars().filter_map(char_to_event) {
            let event_ts = self.timestamp.wrapping_add(to_ticks(offset));
            let mut elapsed = Duration::ZERO;
            let mut first = true;
            loop {
                elapsed += step;
                let end = elapsed >= tone;
                let te = TelephoneEvent {
                    event,
                    end,
                    volume: 10,
                    duration: to_ticks(elapsed.min(tone)).min(u16::MAX as u32) as u16,
                };
                let repeats = if end { 3 } else { 1 };
                for _ in 0..repeats {
                    let mut header = self.header(self.telephone_event_pt, first);
                    header.timestamp = event_ts;
                    out.push((offset + elapsed, header.to_datagram(&te.emit())));
                    first = false;
                }
                if end {
                    break;
                }
            }
            offset += tone + pause;
        }
        self.timestamp = self.timestamp.wrapping_add(to_ticks(offset));
        self.last_sent = Some(now + offset);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{RtpPacket, TelephoneEvent};

    #[test]
    fn talkspurts_have_markers_and_wall_clock_timestamps() {
        let t0 = Instant::now();
        let mut tx = RtpSender::new(Codec::Opus { pt: 111 }, 101, 42, 65535, 1000).unwrap();
        let frame = AudioFrame::SILENCE;
        let mut headers = Vec::new();
        for i in 0..3 {
            let d = tx
                .audio(&frame, t0 + Duration::from_millis(20 * i))
                .unwrap();
            headers.push(RtpPacket::parse(&d).unwrap().header);
        }
        tx.end_talkspurt();
        let d = tx.audio(&frame, t0 + Duration::from_millis(1040)).unwrap();
        headers.push(RtpPacket::parse(&d).unwrap().header);
        let seqs: Vec<u16> = headers.iter().map(|h| h.sequence).collect();
        let stamps: Vec<u32> = headers.iter().map(|h| h.timestamp).collect();
        let markers: Vec<bool> = headers.iter().map(|h| h.marker).collect();
        assert_eq!(seqs, vec![65535, 0, 1, 2]);
        assert_eq!(stamps, vec![1000, 1960, 2920, 1000 + 52 * 960]);
        assert_eq!(markers, vec![true, false, false, true]);
        assert!(headers
            .iter()
            .all(|h| h.payload_type == 111 && h.ssrc == 42));
    }

    #[test]
    fn dtmf_packets_follow_rfc4733() {
        let t0 = Instant::now();
        let mut tx = RtpSender::new(Codec::Pcmu, 101, 1, 0, 0).unwrap();
        let packets = tx.dtmf(
            "1#",
            Duration::from_millis(60),
            Duration::from_millis(40),
            t0,
        );
        // Per digit: 2 updates + 3 end packets.
        assert_eq!(packets.len(), 10);
        let parsed: Vec<_> = packets
            .iter()
            .map(|(at, d)| {
                let p = RtpPacket::parse(d).unwrap();
                let e = TelephoneEvent::parse(p.payload).unwrap();
                (*at, p.header, e)
            })
            .collect();
        assert!(parsed[0].1.marker && !parsed[1].1.marker && parsed[5].1.marker);
        assert_eq!(parsed[0].2.event, 1);
        assert_eq!(parsed[5].2.event, 11);
        assert_eq!(parsed[5].1.timestamp, 800, "second digit starts 100 ms in");
        assert!(parsed[2..5].iter().all(|p| p.2.end && p.2.duration == 480));
        assert_eq!(parsed[9].0, Duration::from_millis(160));
        let seqs: Vec<u16> = parsed.iter().map(|p| p.1.sequence).collect();
        assert_eq!(seqs, (0..10).collect::<Vec<u16>>());
    }

    #[test]
    fn keepalive_is_comfort_noise() {
        let mut tx = RtpSender::new(Codec::Pcma, 101, 9, 5, 0).unwrap();
        let d = tx.keepalive(Instant::now());
        let p = RtpPacket::parse(&d).unwrap();
        assert_eq!(p.header.payload_type, COMFORT_NOISE_PT);
        assert_eq!(p.payload, &[127]);
    }
}
