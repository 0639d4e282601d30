//! The transmit side of an RTP stream, sans-IO: turns 20 ms frames, DTMF
//! digits and keep-alives into datagrams with correct sequence numbers,
//! timestamps and marker bits.
//!
//! Timestamps advance by one frame per packet inside a talkspurt and by the
//! elapsed wall time (rounded to whole frames) across silence, as RFC 3550
//! §5.1 asks, so a receiver's jitter estimate is not disturbed by pauses.

use std::collections::VecDeque;
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
    dtmf: Option<DtmfBurst>,
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
            dtmf: None,
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
            let frames = ((elapsed.as_micros() + 10_000) / 20_000).max(1) as u32;
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
        // A gap inside a talkspurt (frames replaced by DTMF events, a late
        // producer) moves the clock on by wall time too.
        let gap = self
            .last_sent
            .is_some_and(|t| now.saturating_duration_since(t) > Duration::from_millis(40));
        if marker || gap {
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
        self.catch_up(now);
        let header = self.header(COMFORT_NOISE_PT, false);
        header.to_datagram(&[127])
    }

    /// Starts (or extends) a burst of RFC 4733 DTMF `digits`, each `tone`
    /// long followed by `pause`. The packets come out of
    /// [`poll_dtmf`](Self::poll_dtmf) when due, so sequence numbers are
    /// allocated at send time and never clash with audio. Characters that
    /// are not DTMF digits are skipped.
    pub fn start_dtmf(&mut self, digits: &str, tone: Duration, pause: Duration, now: Instant) {
        let burst = self.dtmf.get_or_insert_with(|| DtmfBurst {
            pending: VecDeque::new(),
            tone,
            pause,
            current: None,
            next_start: now,
        });
        burst
            .pending
            .extend(digits.chars().filter_map(char_to_event));
    }

    /// Whether a DTMF burst is being sent. Audio frames offered meanwhile
    /// should be dropped: the events replace the audio (RFC 4733 §2.6).
    pub fn dtmf_active(&self) -> bool {
        self.dtmf.is_some()
    }

    /// When [`poll_dtmf`](Self::poll_dtmf) next has a packet.
    pub fn poll_dtmf_timeout(&self) -> Option<Instant> {
        let burst = self.dtmf.as_ref()?;
        Some(match &burst.current {
            Some(c) if c.ends_left > 0 => c.started + PACKET_INTERVAL * c.sent,
            Some(c) => c.started + PACKET_INTERVAL * (c.sent + 1),
            None => burst.next_start,
        })
    }

    /// The next telephone-event packet due at `now`; call until `None`.
    /// Each event is updated every 20 ms; its end is sent three times.
    pub fn poll_dtmf(&mut self, now: Instant) -> Option<Vec<u8>> {
        let clock = self.codec.clock_rate() as u64;
        let to_ticks = |d: Duration| (d.as_micros() as u64 * clock / 1_000_000) as u32;
        let burst = self.dtmf.as_mut()?;
        if burst.current.is_none() {
            if burst.pending.is_empty() {
                self.dtmf = None;
                return None;
            }
            if now < burst.next_start {
                return None;
            }
            let start = burst.next_start;
            let event = burst.pending.pop_front()?;
            self.catch_up(start);
            let burst = self.dtmf.as_mut()?;
            burst.current = Some(CurrentEvent {
                event,
                timestamp: self.timestamp,
                started: start,
                sent: 0,
                ends_left: 0,
            });
        }
        let burst = self.dtmf.as_mut()?;
        let (tone, pause) = (burst.tone, burst.pause);
        let current = burst.current.as_mut()?;
        let (end, duration, marker);
        if current.ends_left > 0 {
            current.ends_left -= 1;
            (end, duration, marker) = (true, tone, false);
        } else {
            if now < current.started + PACKET_INTERVAL * (current.sent + 1) {
                return None;
            }
            current.sent += 1;
            let elapsed = PACKET_INTERVAL * current.sent;
            end = elapsed >= tone;
            duration = elapsed.min(tone);
            marker = current.sent == 1;
            if end {
                current.ends_left = 2;
            }
        }
        let payload = TelephoneEvent {
            event: current.event,
            end,
            volume: 10,
            duration: to_ticks(duration).min(u16::MAX as u32) as u16,
        }
        .emit();
        let event_ts = current.timestamp;
        let started = current.started;
        let finished = end && current.ends_left == 0;
        if finished {
            burst.current = None;
            burst.next_start = started + tone + pause;
        }
        let mut header = self.header(self.telephone_event_pt, marker);
        header.timestamp = event_ts;
        if finished {
            // The stream's clock resumes where the tone ended.
            self.timestamp = event_ts.wrapping_add(to_ticks(tone));
            self.last_sent = Some(started + tone);
        }
        Some(header.to_datagram(&payload))
    }

    /// The whole burst for `digits` at once, as (offset from `now`,
    /// datagram): [`start_dtmf`](Self::start_dtmf) and
    /// [`poll_dtmf`](Self::poll_dtmf) run over virtual time. For tests and
    /// captures; a live sender polls instead.
    pub fn dtmf(
        &mut self,
        digits: &str,
        tone: Duration,
        pause: Duration,
        now: Instant,
    ) -> Vec<(Duration, Vec<u8>)> {
        self.start_dtmf(digits, tone, pause, now);
        let mut out = Vec::new();
        let mut t = now;
        loop {
            while let Some(packet) = self.poll_dtmf(t) {
                out.push((t - now, packet));
            }
            match self.poll_dtmf_timeout() {
                Some(next) => t = next.max(t),
                None => break,
            }
        }
        out
    }
}

/// Telephone-event packets go out every 20 ms.
const PACKET_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug)]
struct DtmfBurst {
    pending: VecDeque<u8>,
    tone: Duration,
    pause: Duration,
    current: Option<CurrentEvent>,
    next_start: Instant,
}

#[derive(Debug)]
struct CurrentEvent {
    event: u8,
    timestamp: u32,
    started: Instant,
    /// Progress packets sent so far.
    sent: u32,
    /// Retransmissions of the end packet still to send.
    ends_left: u8,
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
    fn dtmf_inside_a_talkspurt_keeps_sequence_and_clock() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut tx = RtpSender::new(Codec::Pcmu, 101, 1, 100, 0).unwrap();
        let mut sent = Vec::new();
        for n in 0..3 {
            sent.push(tx.audio(&AudioFrame::SILENCE, ms(20 * n)).unwrap());
        }
        tx.start_dtmf(
            "5",
            Duration::from_millis(60),
            Duration::from_millis(40),
            ms(60),
        );
        let mut t = 60;
        while tx.dtmf_active() {
            while let Some(p) = tx.poll_dtmf(ms(t)) {
                sent.push(p);
            }
            t += 10;
        }
        sent.push(tx.audio(&AudioFrame::SILENCE, ms(t)).unwrap());
        let headers: Vec<_> = sent
            .iter()
            .map(|d| RtpPacket::parse(d).unwrap().header)
            .collect();
        let seqs: Vec<u16> = headers.iter().map(|h| h.sequence).collect();
        assert_eq!(seqs, (100..100 + headers.len() as u16).collect::<Vec<_>>());
        let event_ts = headers[3].timestamp;
        assert_eq!(event_ts, 480, "event starts where audio stopped");
        assert!(headers[3].marker && headers[3].payload_type == 101);
        let last = headers.last().unwrap();
        assert_eq!(last.payload_type, 0);
        assert!(!last.marker, "still the same talkspurt");
        // The clock resumed at the end of the 60 ms tone; the next frame
        // follows it.
        assert_eq!(last.timestamp, event_ts + 480 + 160);
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
