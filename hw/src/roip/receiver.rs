//! The receive side of a RoIP link, sans-IO: datagrams in, [`LinkEvent`]s out.
//!
//! Combines the jitter buffer, the payload decoder, the RFC 4733 DTMF decoder
//! and the COR tracker. COR means "a talkspurt is present": it opens with the
//! first frame played out of a talkspurt (or the first telephone-event) and
//! closes `cor_hang` after the last real packet was played, which bridges the
//! short gaps of a lossy link without cutting a sentence in two. The marker
//! bit is not relied on: a talkspurt starts with the first packet after the
//! jitter buffer ran dry, so losing the marked packet cannot lose the
//! talkspurt (senders that mark every talkspurt start agree with this).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::link::LinkEvent;
use crate::rtp::{
    Codec, CodecError, DtmfEventDecoder, JitterBuffer, JitterConfig, JitterStats, PayloadDecoder,
    Playout, RtpError, RtpPacket, TelephoneEvent, COMFORT_NOISE_PT,
};

/// How long after the last DTMF event a burst is considered complete.
const DTMF_BURST_GAP: Duration = Duration::from_millis(400);

/// Why a datagram was not used. None of these ends the link.
#[derive(Debug, thiserror::Error)]
pub enum DatagramError {
    #[error("not RTP: {0}")]
    Rtp(#[from] RtpError),
    #[error("unexpected payload type {0}")]
    PayloadType(u8),
}

/// Receiver settings (a subset of [`super::RoipConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct ReceiverConfig {
    pub codec: Codec,
    pub telephone_event_pt: u8,
    pub jitter_min: Duration,
    pub jitter_max: Duration,
    pub cor_hang: Duration,
}

/// The receive-side state machine.
#[derive(Debug)]
pub struct RoipReceiver {
    cfg: ReceiverConfig,
    jitter: JitterBuffer<Vec<u8>>,
    decoder: PayloadDecoder,
    dtmf: DtmfEventDecoder,
    cor: bool,
    last_activity: Option<Instant>,
    last_heard: Option<Instant>,
    events: VecDeque<LinkEvent>,
    decode_errors: u64,
}

impl RoipReceiver {
    pub fn new(cfg: ReceiverConfig) -> Result<RoipReceiver, CodecError> {
        Ok(RoipReceiver {
            cfg,
            jitter: JitterBuffer::new(JitterConfig {
                min_delay: cfg.jitter_min,
                max_delay: cfg.jitter_max,
                clock_rate: cfg.codec.clock_rate(),
                max_conceal: 3,
            }),
            decoder: PayloadDecoder::new(cfg.codec)?,
            dtmf: DtmfEventDecoder::new(cfg.codec.clock_rate(), DTMF_BURST_GAP),
            cor: false,
            last_activity: None,
            last_heard: None,
            events: VecDeque::new(),
            decode_errors: 0,
        })
    }

    /// When the peer last sent anything (audio, events or keep-alives).
    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    pub fn cor(&self) -> bool {
        self.cor
    }

    /// Feeds one datagram from the peer.
    pub fn handle_datagram(&mut self, buf: &[u8], now: Instant) -> Result<(), DatagramError> {
        let packet = RtpPacket::parse(buf)?;
        let h = packet.header;
        self.last_heard = Some(now);
        if h.payload_type == self.cfg.codec.payload_type() {
            self.jitter.push(
                h.ssrc,
                h.sequence,
                h.timestamp,
                packet.payload.to_vec(),
                now,
            );
        } else if h.payload_type == self.cfg.telephone_event_pt {
            let event = match TelephoneEvent::parse(packet.payload) {
                Ok(e) => e,
                Err(_) => {
                    self.decode_errors += 1;
                    return Ok(());
                }
            };
            if self.jitter.is_playing() {
                self.jitter
                    .push_filler(h.ssrc, h.sequence, h.timestamp, now);
            }
            self.dtmf.handle_event(event, h.timestamp, now);
            self.mark_activity(now);
        } else if h.payload_type != COMFORT_NOISE_PT {
            return Err(DatagramError::PayloadType(h.payload_type));
        }
        Ok(())
    }

    fn mark_activity(&mut self, now: Instant) {
        self.last_activity = Some(now);
        if !self.cor {
            self.cor = true;
            self.events.push_back(LinkEvent::Cor(true));
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let cor_close = if self.cor {
            self.last_activity.map(|t| t + self.cfg.cor_hang)
        } else {
            None
        };
        [
            self.jitter.poll_timeout(),
            self.dtmf.poll_timeout(),
            cor_close,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Plays out due frames, closes COR and DTMF bursts that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(playout) = self.jitter.pop(now) {
            let (frame, concealed) = match playout {
                Playout::Frame { item, .. } => match self.decoder.decode(&item) {
                    Ok(frame) => {
                        self.mark_activity(now);
                        (frame, false)
                    }
                    Err(_) => {
                        self.decode_errors += 1;
                        (self.decoder.conceal(), true)
                    }
                },
                Playout::Lost => (self.decoder.conceal(), true),
            };
            self.events.push_back(if concealed && self.cor {
                LinkEvent::Concealed { frame }
            } else {
                LinkEvent::Audio {
                    frame,
                    cor: self.cor,
                }
            });
        }
        if let Some(ani) = self.dtmf.handle_timeout(now) {
            self.events.push_back(LinkEvent::Ani(ani));
        }
        if self.cor {
            if let Some(last) = self.last_activity {
                if now >= last + self.cfg.cor_hang {
                    self.cor = false;
                    self.events.push_back(LinkEvent::Cor(false));
                }
            }
        }
    }

    /// The next event for the daemon.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }
}

/// Test helper shared with the driver tests: a talkspurt of `frames`.
#[cfg(test)]
pub(crate) fn talkspurt(
    sender: &mut crate::rtp::RtpSender,
    frames: &[crate::audio::AudioFrame],
    start: Instant,
) -> Vec<(Instant, Vec<u8>)> {
    sender.end_talkspurt();
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let at = start + Duration::from_millis(20 * i as u64);
            (at, sender.audio(f, at).expect("encode"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ani::AniKind;
    use crate::audio::AudioFrame;
    use crate::rtp::RtpSender;

    fn receiver(codec: Codec) -> RoipReceiver {
        RoipReceiver::new(ReceiverConfig {
            codec,
            telephone_event_pt: 101,
            jitter_min: Duration::from_millis(40),
            jitter_max: Duration::from_millis(200),
            cor_hang: Duration::from_millis(200),
        })
        .unwrap()
    }

    /// Runs the receiver over `datagrams`, ticking every 10 ms until `end`;
    /// returns (time, event) pairs.
    fn run(
        rx: &mut RoipReceiver,
        mut datagrams: Vec<(Instant, Vec<u8>)>,
        start: Instant,
        end: Instant,
    ) -> Vec<(Instant, LinkEvent)> {
        datagrams.sort_by_key(|d| d.0);
        let mut queue: VecDeque<_> = datagrams.into();
        let mut out = Vec::new();
        let mut now = start;
        while now <= end {
            while queue.front().is_some_and(|d| d.0 <= now) {
                let (_, d) = queue.pop_front().unwrap();
                rx.handle_datagram(&d, now).unwrap();
            }
            if rx.poll_timeout().is_some_and(|t| t <= now) {
                rx.handle_timeout(now);
            }
            while let Some(e) = rx.poll_event() {
                out.push((now, e));
            }
            now += Duration::from_millis(10);
        }
        out
    }

    fn tone_frame(level: i16) -> AudioFrame {
        let mut f = AudioFrame::SILENCE;
        for (n, s) in f.samples.iter_mut().enumerate() {
            *s = ((n as f32 * 0.6).sin() * level as f32) as i16;
        }
        f
    }

    #[test]
    fn talkspurts_open_and_close_cor_for_every_codec() {
        for codec in [Codec::Pcmu, Codec::Pcma, Codec::Opus { pt: 111 }] {
            let t0 = Instant::now();
            let mut tx = RtpSender::new(codec, 101, 5, 100, 0).unwrap();
            let frames = vec![tone_frame(6000); 25];
            let mut datagrams = talkspurt(&mut tx, &frames, t0);
            datagrams.extend(talkspurt(&mut tx, &frames, t0 + Duration::from_secs(2)));
            let mut rx = receiver(codec);
            let events = run(&mut rx, datagrams, t0, t0 + Duration::from_secs(4));
            let cor: Vec<(u128, bool)> = events
                .iter()
                .filter_map(|(at, e)| match e {
                    LinkEvent::Cor(c) => Some((at.duration_since(t0).as_millis(), *c)),
                    _ => None,
                })
                .collect();
            // Opens at the first playout (40 ms), closes 200 ms after the
            // last frame played (480 + 40 ms); again 2 s later.
            assert_eq!(
                cor,
                vec![(40, true), (720, false), (2040, true), (2720, false)],
                "{codec:?}"
            );
            let audio: Vec<&AudioFrame> = events
                .iter()
                .filter_map(|(_, e)| match e {
                    LinkEvent::Audio { frame, cor: true } => Some(frame),
                    _ => None,
                })
                .collect();
            // 25 heard frames per talkspurt; the 3 concealed at each tail are
            // marked as such.
            assert_eq!(audio.len(), 50, "{codec:?}");
            let concealed = events
                .iter()
                .filter(|(_, e)| matches!(e, LinkEvent::Concealed { .. }))
                .count();
            assert_eq!(concealed, 6, "{codec:?}");
            assert!(audio[20].level_dbfs() > -20.0, "{codec:?}");
            assert_eq!(rx.jitter_stats().lost, 0);
        }
    }

    #[test]
    fn telephone_events_become_one_dtmf_ani() {
        let t0 = Instant::now();
        let mut tx = RtpSender::new(Codec::Pcmu, 101, 5, 100, 0).unwrap();
        let packets = tx.dtmf(
            "4711",
            Duration::from_millis(80),
            Duration::from_millis(50),
            t0,
        );
        let datagrams = packets.into_iter().map(|(d, p)| (t0 + d, p)).collect();
        let mut rx = receiver(Codec::Pcmu);
        let events = run(&mut rx, datagrams, t0, t0 + Duration::from_secs(2));
        let anis: Vec<_> = events
            .iter()
            .filter_map(|(_, e)| match e {
                LinkEvent::Ani(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(anis.len(), 1);
        assert_eq!(anis[0].unit, "4711");
        assert_eq!(anis[0].kind, AniKind::Dtmf);
        assert!(events
            .iter()
            .any(|(_, e)| matches!(e, LinkEvent::Cor(true))));
    }

    #[test]
    fn keepalives_count_as_heard_but_do_not_open_cor() {
        let t0 = Instant::now();
        let mut tx = RtpSender::new(Codec::Pcmu, 101, 5, 100, 0).unwrap();
        let mut rx = receiver(Codec::Pcmu);
        rx.handle_datagram(&tx.keepalive(t0), t0).unwrap();
        assert_eq!(rx.last_heard(), Some(t0));
        assert_eq!(rx.poll_timeout(), None);
        assert!(rx.poll_event().is_none());
        assert!(matches!(
            rx.handle_datagram(&[0x80, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], t0),
            Err(DatagramError::PayloadType(99))
        ));
        assert!(matches!(
            rx.handle_datagram(&[1, 2, 3], t0),
            Err(DatagramError::Rtp(RtpError::TooShort(3)))
        ));
    }

    #[test]
    fn random_datagrams_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let t0 = Instant::now();
        for codec in [Codec::Pcmu, Codec::Pcma, Codec::Opus { pt: 111 }] {
            let mut rx = receiver(codec);
            let mut now = t0;
            for _ in 0..5000 {
                let len = rng.random_range(0..200);
                let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                if d.len() >= 12 && rng.random_bool(0.7) {
                    // Mostly valid headers, so the deeper layers get exercised.
                    d[0] = 0x80;
                    d[1] = [0u8, 8, 111, 101, 13][rng.random_range(0..5)] | (d[1] & 0x80);
                }
                now += Duration::from_millis(rng.random_range(0..40));
                let _ = rx.handle_datagram(&d, now);
                if rx.poll_timeout().is_some_and(|t| t <= now) {
                    rx.handle_timeout(now);
                }
                while rx.poll_event().is_some() {}
            }
        }
    }
}
