//! RFC 4733 telephone-events: the 4-byte payload and a sans-IO decoder that
//! groups the DTMF digits of one burst into one ANI unit string.
//!
//! A sender repeats each event every packet interval with a growing duration,
//! all packets sharing the RTP timestamp of the event start, and marks the
//! last three with the E bit. The decoder therefore keys digits by timestamp
//! (so repeats and retransmitted end packets count once) and closes a burst
//! when no new digit starts within `burst_gap` of the last one ending. Time is
//! passed in; nothing here reads a clock.

use std::time::{Duration, Instant};

use crate::ani::{AniEvent, AniKind, AniOp};

/// Why a telephone-event payload is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("telephone-event payload of {0} bytes is shorter than 4")]
    TooShort(usize),
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// 0–9 digits, 10 `*`, 11 `#`, 12–15 A–D, other values other events.
    pub event: u8,
    pub end: bool,
    /// Power level in −dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first 4 bytes; extra bytes (redundant blocks) are ignored.
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, EventError> {
        match payload {
            [event, flags, d0, d1, ..] => Ok(TelephoneEvent {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(EventError::TooShort(payload.len())),
        }
    }

    pub fn emit(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            ((self.end as u8) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    /// The DTMF character for events 0–15.
    pub fn dtmf_char(self) -> Option<char> {
        event_to_char(self.event)
    }
}

/// Maps a DTMF character to its RFC 4733 event code.
pub fn char_to_event(c: char) -> Option<u8> {
    Some(match c {
        '0'..='9' => c as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => c as u8 - b'A' + 12,
        'a'..='d' => c as u8 - b'a' + 12,
        _ => return None,
    })
}

fn event_to_char(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// Groups telephone-event packets into DTMF bursts.
#[derive(Debug)]
pub struct DtmfEventDecoder {
    clock_rate: u32,
    burst_gap: Duration,
    digits: String,
    /// RTP timestamp of the digit being received, if any.
    current: Option<u32>,
    /// Timestamps of digits already counted, so late repeats are ignored.
    last_ts: Option<u32>,
    burst_start_ts: u32,
    burst_end_ts: u32,
    last_activity: Option<Instant>,
}

impl DtmfEventDecoder {
    /// `clock_rate` is the telephone-event clock (8000 for G.711 streams,
    /// 48000 beside Opus); `burst_gap` closes a burst after this silence.
    pub fn new(clock_rate: u32, burst_gap: Duration) -> DtmfEventDecoder {
        DtmfEventDecoder {
            clock_rate: clock_rate.max(1),
            burst_gap,
            digits: String::new(),
            current: None,
            last_ts: None,
            burst_start_ts: 0,
            burst_end_ts: 0,
            last_activity: None,
        }
    }

    /// Feeds one telephone-event packet with its RTP timestamp.
    pub fn handle_event(&mut self, event: TelephoneEvent, rtp_timestamp: u32, now: Instant) {
        let Some(c) = event.dtmf_char() else {
            return;
        };
        self.last_activity = Some(now);
        let is_new = self.current != Some(rtp_timestamp) && self.last_ts != Some(rtp_timestamp);
        if is_new {
            if self.digits.is_empty() {
                self.burst_start_ts = rtp_timestamp;
            }
            self.digits.push(c);
            self.current = Some(rtp_timestamp);
            self.last_ts = Some(rtp_timestamp);
        }
        if self.last_ts == Some(rtp_timestamp) {
            self.burst_end_ts = rtp_timestamp.wrapping_add(event.duration as u32);
        }
        if event.end {
            self.current = None;
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.digits.is_empty() {
            return None;
        }
        self.last_activity.map(|t| t + self.burst_gap)
    }

    /// Closes the burst if it has been quiet for `burst_gap`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<AniEvent> {
        let due = self.poll_timeout()?;
        if now < due {
            return None;
        }
        self.current = None;
        let to_samples =
            |ts: u32| ts as u64 * crate::audio::SAMPLE_RATE as u64 / self.clock_rate as u64;
        Some(AniEvent {
            kind: AniKind::Dtmf,
            unit: std::mem::take(&mut self.digits),
            op: AniOp::Identify,
            detail: Some("rfc4733".into()),
            start_sample: to_samples(self.burst_start_ts),
            end_sample: to_samples(self.burst_end_ts),
            confidence: 1.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: u8, end: bool, duration: u16) -> TelephoneEvent {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    #[test]
    fn payload_round_trip() {
        let bytes = [0x0b, 0x8a, 0x03, 0x20];
        let e = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(e, ev(11, true, 800));
        assert_eq!(e.emit(), bytes);
        assert_eq!(e.dtmf_char(), Some('#'));
        assert_eq!(TelephoneEvent::parse(&[1, 2]), Err(EventError::TooShort(2)));
        for c in "0123456789*#ABCD".chars() {
            assert_eq!(event_to_char(char_to_event(c).unwrap()), Some(c));
        }
    }

    #[test]
    fn groups_a_burst_and_ignores_repeats() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = DtmfEventDecoder::new(8000, Duration::from_millis(300));
        // "12" then "3": each digit sent as start, update, three end packets.
        for (i, digit) in [1u8, 2, 3].iter().enumerate() {
            let ts = 1000 + i as u32 * 1040;
            let at = i as u64 * 130;
            d.handle_event(ev(*digit, false, 160), ts, ms(at));
            d.handle_event(ev(*digit, false, 480), ts, ms(at + 40));
            for k in 0..3 {
                d.handle_event(ev(*digit, true, 640), ts, ms(at + 80 + k));
            }
            assert_eq!(d.handle_timeout(ms(at + 100)), None);
        }
        assert_eq!(d.poll_timeout(), Some(ms(260 + 82 + 300)));
        let ani = d.handle_timeout(ms(700)).unwrap();
        assert_eq!(ani.unit, "123");
        assert_eq!(ani.kind, AniKind::Dtmf);
        assert_eq!(ani.start_sample, 1000);
        assert_eq!(ani.end_sample, 1000 + 2080 + 640);
        assert_eq!(d.handle_timeout(ms(2000)), None);
    }

    #[test]
    fn repeated_digit_with_new_timestamp_counts_twice() {
        let t0 = Instant::now();
        let mut d = DtmfEventDecoder::new(48000, Duration::from_millis(300));
        d.handle_event(ev(7, true, 100), 0, t0);
        d.handle_event(ev(7, true, 100), 0, t0); // retransmitted end
        d.handle_event(ev(7, true, 100), 6000, t0);
        d.handle_event(ev(16, true, 100), 9000, t0); // flash: not DTMF
        let ani = d.handle_timeout(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(ani.unit, "77");
        assert_eq!(ani.end_sample, 6100 / 6);
    }
}
