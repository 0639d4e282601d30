//! An adaptive jitter buffer for 20 ms RTP packets, sans-IO.
//!
//! Packets go in with their arrival time ([`JitterBuffer::push`]); the owner
//! asks for the next frame whenever [`JitterBuffer::poll_timeout`] is due
//! ([`JitterBuffer::pop`]), one frame every 20 ms of playout clock. What it
//! handles:
//! - **reorder**: packets are held by extended sequence number until played;
//!   one that overtook a talkspurt's first packet before playout began is
//!   played in front of it (the start moves back, never before now);
//! - **duplicates and late packets**: dropped and counted;
//! - **loss**: a missing packet at its playout time yields [`Playout::Lost`],
//!   and the codec conceals it (Opus PLC, G.711 repeat/fade);
//! - **sequence wrap**: 16-bit numbers are extended to 64 bits;
//! - **SSRC change or a large sequence jump**: the stream is restarted;
//! - **adaptation**: the playout delay is re-chosen at each talkspurt start
//!   from the RFC 3550 interarrival jitter (delay ≈ 3 × jitter + one frame),
//!   clamped to `[min, max]`, shrinking by at most a frame per talkspurt. A
//!   late packet grows it by one frame at once: playout is stretched by one
//!   concealed frame, so a stream that never pauses adapts too. Shrinking
//!   only happens at talkspurt starts, where a shift is inaudible.
//!
//! A talkspurt ends when the buffer runs dry for longer than
//! `max_conceal` frames; the next packet (marker bit or not) re-anchors the
//! playout clock. Every packet is assumed to carry one 20 ms frame, as every
//! RoIP box we target sends (`ptime` 20).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Playout period: one frame.
pub const FRAME: Duration = Duration::from_millis(20);
/// Sequence jumps larger than this restart the stream (the sender rebooted).
const MAX_SEQ_JUMP: i64 = 3000;
/// How many frames a talkspurt's start may move back for packets that
/// overtook its first one (within the start delay, at most 200 ms).
const MAX_PREPEND: u64 = 10;

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy)]
pub struct JitterConfig {
    /// Starting and smallest playout delay.
    pub min_delay: Duration,
    /// Largest playout delay (at most 200 ms makes sense for a radio link).
    pub max_delay: Duration,
    /// RTP clock rate of the payload (8000 for G.711, 48000 for Opus).
    pub clock_rate: u32,
    /// Frames concealed after the buffer runs dry before the talkspurt is
    /// declared over.
    pub max_conceal: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(200),
            clock_rate: 8000,
            max_conceal: 3,
        }
    }
}

/// What the buffer hands out for one 20 ms playout slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout<T> {
    /// The packet for this slot. `talkspurt_start` is set on the first frame
    /// after the playout clock was (re-)anchored.
    Frame { item: T, talkspurt_start: bool },
    /// The packet for this slot is missing: conceal.
    Lost,
}

/// Counters for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicate: u64,
    pub restarts: u64,
}

/// [`JitterStats`] summed over a link's runs (each run has a fresh buffer),
/// readable from other threads: the driver adds what changed, the daemon's
/// metrics read it. Duplicates and late packets are the buffer's proof that
/// a repeated or reordered datagram never played twice.
#[derive(Debug, Default)]
pub struct RtpCounters {
    pub received: AtomicU64,
    pub played: AtomicU64,
    pub lost: AtomicU64,
    pub late: AtomicU64,
    pub duplicate: AtomicU64,
    pub restarts: AtomicU64,
}

impl RtpCounters {
    /// Adds the growth from `before` to `after` (two snapshots of one
    /// buffer's stats).
    pub fn add_growth(&self, before: &JitterStats, after: &JitterStats) {
        for (counter, b, a) in [
            (&self.received, before.received, after.received),
            (&self.played, before.played, after.played),
            (&self.lost, before.lost, after.lost),
            (&self.late, before.late, after.late),
            (&self.duplicate, before.duplicate, after.duplicate),
            (&self.restarts, before.restarts, after.restarts),
        ] {
            if a > b {
                counter.fetch_add(a - b, Relaxed);
            }
        }
    }

    /// The current totals.
    pub fn snapshot(&self) -> JitterStats {
        JitterStats {
            received: self.received.load(Relaxed),
            played: self.played.load(Relaxed),
            lost: self.lost.load(Relaxed),
            late: self.late.load(Relaxed),
            duplicate: self.duplicate.load(Relaxed),
            restarts: self.restarts.load(Relaxed),
        }
    }
}

#[derive(Debug)]
struct Slot<T> {
    item: Option<T>,
}

/// The buffer. `T` is whatever the owner wants back per packet (payload
/// bytes, or a marker for a packet that occupies a sequence number but
/// produces no audio, see [`JitterBuffer::push_filler`]).
#[derive(Debug)]
pub struct JitterBuffer<T> {
    cfg: JitterConfig,
    ssrc: Option<u32>,
    highest: Option<u64>,
    slots: BTreeMap<u64, Slot<T>>,
    /// Next sequence to play, and when.
    next_seq: Option<u64>,
    next_playout: Option<Instant>,
    /// The sequence the current talkspurt was anchored on, while none of
    /// it has been handed out; packets older than `floor` belong to the
    /// previous talkspurt.
    anchor: Option<u64>,
    floor: Option<u64>,
    talkspurt_start: bool,
    dry_frames: u32,
    /// Frames of extra delay still to insert (after late packets).
    stretch: u32,
    delay: Duration,
    /// RFC 3550 interarrival jitter, in seconds.
    jitter: f64,
    last_transit: Option<f64>,
    epoch: Option<Instant>,
    stats: JitterStats,
}

impl<T> JitterBuffer<T> {
    pub fn new(cfg: JitterConfig) -> JitterBuffer<T> {
        let cfg = JitterConfig {
            max_delay: cfg.max_delay.max(cfg.min_delay),
            clock_rate: cfg.clock_rate.max(1),
            ..cfg
        };
        JitterBuffer {
            cfg,
            ssrc: None,
            highest: None,
            slots: BTreeMap::new(),
            next_seq: None,
            next_playout: None,
            anchor: None,
            floor: None,
            talkspurt_start: false,
            dry_frames: 0,
            stretch: 0,
            delay: cfg.min_delay,
            jitter: 0.0,
            last_transit: None,
            epoch: None,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The playout delay the next talkspurt will use.
    pub fn target_delay(&self) -> Duration {
        self.delay
    }

    /// Whether a talkspurt is being played out.
    pub fn is_playing(&self) -> bool {
        self.next_playout.is_some()
    }

    /// Adds a packet carrying audio.
    pub fn push(&mut self, ssrc: u32, seq: u16, timestamp: u32, item: T, now: Instant) {
        self.insert(ssrc, seq, timestamp, Some(item), now);
    }

    /// Records a packet that uses a sequence number but carries no audio
    /// (an RFC 4733 event inside a talkspurt), so its slot is skipped rather
    /// than concealed.
    pub fn push_filler(&mut self, ssrc: u32, seq: u16, timestamp: u32, now: Instant) {
        self.insert(ssrc, seq, timestamp, None, now);
    }

    fn insert(&mut self, ssrc: u32, seq: u16, timestamp: u32, item: Option<T>, now: Instant) {
        self.stats.received += 1;
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.restart();
            }
            self.ssrc = Some(ssrc);
        }
        let mut ext = self.extend(seq);
        if let Some(highest) = self.highest {
            if (ext as i64 - highest as i64).abs() > MAX_SEQ_JUMP {
                self.restart();
                self.ssrc = Some(ssrc);
                ext = seq as u64 + (1 << 16);
            }
        }
        self.update_jitter(timestamp, now);
        if let Some(next) = self.next_seq {
            // Reordered past the packet that started the talkspurt, but
            // nothing has been played yet: it still fits in front, played
            // that much earlier (never before now).
            let prepend = ext < next
                && self.anchor == Some(next)
                && next - ext <= MAX_PREPEND
                && self.floor.is_none_or(|f| ext >= f);
            if prepend {
                if let Some(due) = self.next_playout {
                    let earlier = due
                        .checked_sub(FRAME * (next - ext) as u32)
                        .map_or(now, |t| t.max(now));
                    self.next_playout = Some(earlier);
                }
                self.next_seq = Some(ext);
                self.anchor = Some(ext);
            } else if ext < next {
                if self.next_playout.is_some() {
                    self.stats.late += 1;
                    // Grow at once by stretching playout one frame, so a
                    // stream that never pauses adapts too.
                    if self.delay + FRAME <= self.cfg.max_delay {
                        self.delay += FRAME;
                        self.stretch += 1;
                    }
                    return;
                }
                // Idle: a packet older than what we played is a stale retransmission.
                if next - ext < 64 {
                    self.stats.late += 1;
                    return;
                }
            }
        }
        if self.slots.contains_key(&ext) {
            self.stats.duplicate += 1;
            return;
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.slots.insert(ext, Slot { item });
        if self.next_playout.is_none() {
            // Start (or restart after silence) a talkspurt.
            self.delay = self.adapted_delay();
            self.next_playout = Some(now + self.delay);
            self.floor = self.next_seq;
            self.next_seq = Some(ext);
            self.anchor = Some(ext);
            self.talkspurt_start = true;
            self.dry_frames = 0;
            self.stretch = 0;
        }
    }

    /// Extends a 16-bit sequence number to the one nearest the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Start one cycle up so numbers just below the first stay positive.
            return seq as u64 + (1 << 16);
        };
        let cycle = highest & !0xffff;
        let candidates = [cycle.wrapping_sub(1 << 16), cycle, cycle + (1 << 16)];
        candidates
            .iter()
            .map(|c| c.wrapping_add(seq as u64))
            .min_by_key(|&e| (e as i64 - highest as i64).unsigned_abs())
            .unwrap_or(seq as u64)
    }

    fn update_jitter(&mut self, timestamp: u32, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.duration_since(epoch).as_secs_f64();
        let transit = arrival - timestamp as f64 / self.cfg.clock_rate as f64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            // Timestamp jumps (new talkspurt after silence) are not jitter.
            if d < 1.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
    }

    fn adapted_delay(&self) -> Duration {
        let wanted = Duration::from_secs_f64(3.0 * self.jitter) + FRAME;
        // Never shrink by more than a frame per talkspurt, so one calm
        // talkspurt does not undo what a late packet taught us.
        let floor = self.delay.saturating_sub(FRAME);
        wanted
            .max(floor)
            .clamp(self.cfg.min_delay, self.cfg.max_delay)
    }

    fn restart(&mut self) {
        self.stats.restarts += 1;
        self.slots.clear();
        self.highest = None;
        self.next_seq = None;
        self.next_playout = None;
        self.anchor = None;
        self.floor = None;
        self.last_transit = None;
        self.stretch = 0;
    }

    /// When [`pop`](Self::pop) next has a slot to hand out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_playout
    }

    /// Hands out the slot due at `now`, if any. Call again until `None`:
    /// a caller that woke late gets every slot it missed.
    pub fn pop(&mut self, now: Instant) -> Option<Playout<T>> {
        loop {
            let due = self.next_playout?;
            if now < due {
                return None;
            }
            if self.stretch > 0 {
                // One extra concealed frame: the buffer gains 20 ms of depth.
                self.stretch -= 1;
                self.next_playout = Some(due + FRAME);
                return Some(Playout::Lost);
            }
            let seq = self.next_seq?;
            self.next_seq = Some(seq + 1);
            self.anchor = None;
            self.next_playout = Some(due + FRAME);
            match self.slots.remove(&seq) {
                Some(Slot { item: Some(item) }) => {
                    self.dry_frames = 0;
                    self.stats.played += 1;
                    let talkspurt_start = std::mem::take(&mut self.talkspurt_start);
                    return Some(Playout::Frame {
                        item,
                        talkspurt_start,
                    });
                }
                // A filler occupies the slot: play on without concealing.
                Some(Slot { item: None }) => {
                    self.next_playout = Some(due);
                    continue;
                }
                None if self.slots.is_empty() => {
                    self.dry_frames += 1;
                    if self.dry_frames > self.cfg.max_conceal {
                        // Talkspurt over; the next packet re-anchors. The
                        // slots concealed at its end were never sent, so the
                        // next talkspurt may start right after the last
                        // packet played.
                        self.next_playout = None;
                        self.next_seq = Some(seq + 1 - self.dry_frames as u64);
                        return None;
                    }
                    // Not counted as lost: the sender may simply have stopped.
                    return Some(Playout::Lost);
                }
                None => {
                    self.stats.lost += 1;
                    return Some(Playout::Lost);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> JitterConfig {
        JitterConfig {
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(200),
            clock_rate: 8000,
            max_conceal: 2,
        }
    }

    /// Pops every slot due up to `until`, stepping 20 ms from `from`.
    fn drain(jb: &mut JitterBuffer<u16>, from: Instant, until: Instant) -> Vec<Option<u16>> {
        let mut out = Vec::new();
        let mut now = from;
        while now <= until {
            while let Some(p) = jb.pop(now) {
                out.push(match p {
                    Playout::Frame { item, .. } => Some(item),
                    Playout::Lost => None,
                });
            }
            now += FRAME;
        }
        out
    }

    #[test]
    fn plays_in_order_after_the_start_delay() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        jb.push(1, 10, 0, 10, t0);
        assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(40)));
        assert_eq!(jb.pop(t0 + Duration::from_millis(39)), None);
        jb.push(1, 11, 160, 11, t0 + FRAME);
        let first = jb.pop(t0 + Duration::from_millis(40));
        assert_eq!(
            first,
            Some(Playout::Frame {
                item: 10,
                talkspurt_start: true
            })
        );
        assert_eq!(
            jb.pop(t0 + Duration::from_millis(60)),
            Some(Playout::Frame {
                item: 11,
                talkspurt_start: false
            })
        );
    }

    #[test]
    fn reorders_drops_duplicates_and_conceals_loss() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        // 0, 2, 1, 1 (dup), 4 (3 lost), 5
        for (i, seq) in [0u16, 2, 1, 1, 4, 5].iter().enumerate() {
            jb.push(
                7,
                *seq,
                *seq as u32 * 160,
                *seq,
                t0 + Duration::from_millis(i as u64 * 10),
            );
        }
        let out = drain(&mut jb, t0, t0 + Duration::from_millis(300));
        assert_eq!(
            out,
            vec![
                Some(0),
                Some(1),
                Some(2),
                None,
                Some(4),
                Some(5),
                None,
                None
            ]
        );
        let s = jb.stats();
        assert_eq!((s.duplicate, s.lost, s.played), (1, 1, 5));
        assert!(!jb.is_playing());
    }

    #[test]
    fn late_packet_is_dropped_and_grows_the_delay() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        jb.push(7, 0, 0, 0, t0);
        jb.push(7, 2, 320, 2, t0 + Duration::from_millis(40));
        let out = drain(&mut jb, t0, t0 + Duration::from_millis(80));
        assert_eq!(out, vec![Some(0), None, Some(2)]);
        jb.push(7, 1, 160, 1, t0 + Duration::from_millis(90));
        assert_eq!(jb.stats().late, 1);
        assert_eq!(jb.target_delay(), Duration::from_millis(60));
        // The stream goes on: one stretch frame, then 3 and 4 in order.
        jb.push(7, 3, 480, 3, t0 + Duration::from_millis(95));
        jb.push(7, 4, 640, 4, t0 + Duration::from_millis(110));
        let out = drain(
            &mut jb,
            t0 + Duration::from_millis(100),
            t0 + Duration::from_millis(140),
        );
        assert_eq!(out, vec![None, Some(3), Some(4)]);
        assert_eq!(jb.stats().lost, 1, "the stretch frame is not a loss");
    }

    #[test]
    fn delay_growth_stops_at_the_cap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig {
            max_delay: Duration::from_millis(60),
            ..cfg()
        });
        for seq in 0..10u16 {
            jb.push(7, seq, seq as u32 * 160, seq, t0);
        }
        let out = drain(&mut jb, t0, t0 + Duration::from_millis(60));
        assert_eq!(out, vec![Some(0), Some(1)]);
        for _ in 0..5 {
            jb.push(7, 0, 0, 0, t0 + Duration::from_millis(70));
        }
        assert_eq!(jb.stats().late, 5);
        assert_eq!(jb.target_delay(), Duration::from_millis(60));
    }

    #[test]
    fn sequence_wrap_is_seamless() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        let seqs = [65534u16, 65535, 0, 1];
        for (i, seq) in seqs.iter().enumerate() {
            jb.push(7, *seq, i as u32 * 160, *seq, t0 + FRAME * i as u32);
        }
        let out = drain(&mut jb, t0, t0 + Duration::from_millis(100));
        assert_eq!(out, vec![Some(65534), Some(65535), Some(0), Some(1)]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn ssrc_change_restarts_the_stream() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        jb.push(1, 500, 0, 500, t0);
        jb.push(1, 501, 160, 501, t0 + FRAME);
        // The peer rebooted: new SSRC, sequence far away.
        jb.push(2, 9, 0, 9, t0 + FRAME);
        jb.push(2, 10, 160, 10, t0 + FRAME * 2);
        let out = drain(&mut jb, t0, t0 + Duration::from_millis(80));
        assert_eq!(out, vec![Some(9), Some(10)]);
        assert_eq!(jb.stats().restarts, 1);
    }

    #[test]
    fn next_talkspurt_may_continue_the_sequence() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        jb.push(1, 0, 0, 0, t0);
        let out = drain(&mut jb, t0, t0 + Duration::from_millis(200));
        assert_eq!(out, vec![Some(0), None, None]);
        jb.push(1, 1, 8000, 1, t0 + Duration::from_secs(1));
        let out = drain(
            &mut jb,
            t0 + Duration::from_secs(1),
            t0 + Duration::from_millis(1040),
        );
        assert_eq!(out, vec![Some(1)]);
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn filler_slots_are_skipped_without_concealment() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        jb.push(1, 0, 0, 0, t0);
        jb.push_filler(1, 1, 160, t0);
        jb.push(1, 2, 320, 2, t0);
        let out = drain(&mut jb, t0, t0 + Duration::from_millis(60));
        assert_eq!(out, vec![Some(0), Some(2)]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn delay_adapts_to_jitter_within_the_cap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        // Packets every 20 ms of media time, arriving with ±50 ms jitter.
        for i in 0..200u32 {
            let wobble = if i % 2 == 0 { 0 } else { 50 };
            let at = t0 + FRAME * i + Duration::from_millis(wobble);
            jb.push(1, i as u16, i * 160, i as u16, at);
            while jb.pop(at).is_some() {}
        }
        // Silence ends the talkspurt, then a new one picks the adapted delay.
        let later = t0 + Duration::from_secs(10);
        while jb.pop(later - Duration::from_secs(1)).is_some() {}
        assert!(!jb.is_playing());
        jb.push(1, 200, 200 * 160 + 40_000, 200, later);
        let delay = jb.poll_timeout().unwrap() - later;
        assert!(delay > Duration::from_millis(100), "{delay:?}");
        assert!(delay <= Duration::from_millis(200));
    }

    #[test]
    fn counters_sum_the_growth_of_every_run() {
        let t0 = Instant::now();
        let counters = RtpCounters::default();
        for _run in 0..2 {
            // Each driver run has a fresh buffer; the counters keep the sum.
            let mut jb = JitterBuffer::new(cfg());
            let mut seen = JitterStats::default();
            for seq in [0u16, 1, 1, 2] {
                jb.push(1, seq, seq as u32 * 160, seq, t0);
                counters.add_growth(&seen, &jb.stats());
                seen = jb.stats();
            }
        }
        let s = counters.snapshot();
        assert_eq!((s.received, s.duplicate), (8, 2));
    }

    #[test]
    fn a_packet_that_overtook_the_talkspurt_start_is_played_first() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(cfg());
        // Packet 1 arrives first and anchors playout at +40 ms; packet 0,
        // held back 25 ms by the network, arrives before anything played.
        jb.push(1, 1, 160, 1, t0);
        jb.push(1, 0, 0, 0, t0 + Duration::from_millis(25));
        jb.push(1, 2, 320, 2, t0 + Duration::from_millis(40));
        assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(25)));
        let out = drain(&mut jb, t0, t0 + Duration::from_millis(80));
        assert_eq!(out, vec![Some(0), Some(1), Some(2)]);
        assert_eq!((jb.stats().late, jb.stats().played), (0, 3));
        // Once playout has begun, an older packet is late as before.
        jb.push(1, 3, 480, 3, t0 + Duration::from_millis(60));
        let _ = drain(
            &mut jb,
            t0 + Duration::from_millis(80),
            t0 + Duration::from_millis(100),
        );
        jb.push(1, 4, 640, 4, t0 + Duration::from_millis(300));
        jb.push(1, 1, 160, 1, t0 + Duration::from_millis(301));
        assert_eq!(jb.stats().late, 1);
    }
}
