//! MDC1200 data bursts: packet format, encoder and streaming decoder.
//!
//! # Format
//! 1200 baud, precoded MSK: each bit is sent as 1200 Hz when it equals the bit
//! before and 1800 Hz when it differs, phase-continuous, bits MSB first.
//! A burst is 7 × 0x55 preamble, the sync word 07 09 2A 44 6F and one 14-byte
//! coded block. The block carries 7 data bytes — opcode, argument, unit id
//! (high, low), CRC (low, high), 0 — followed by 7 parity bytes of a rate-½
//! systematic convolutional code (K = 7, parity bit `d[n] ^ d[n-2] ^ d[n-5]
//! ^ d[n-6]`, data bits LSB first). The 112 coded bits are interleaved 16 × 7:
//! coded bit `n` goes out at position `(n mod 7) · 16 + n / 7`. The CRC is
//! CRC-16/CCITT in its reflected form (polynomial 0x8408, initial value 0,
//! output inverted) over the first four bytes. A burst takes 26 bytes =
//! 173.3 ms.
//!
//! # Decoder
//! The audio is mixed down from 1500 Hz to complex baseband, low-pass
//! filtered; over one bit its phase turns +π/2 for 1800 Hz and −π/2 for
//! 1200 Hz. Eight slicers, each on its own bit-clock phase (boundaries
//! interpolated between samples), sample it once per bit, so one of them is
//! always within 1/16 bit of the right timing without a clock-recovery loop.
//! The sign of `Im(z(now) · conj(z(one bit ago)))` is the tone bit, i.e. the
//! transition of the data bits: the sync is searched on those (polarity-free,
//! up to 3 bit errors). The block is then detected coherently: with the
//! quarter turn per bit undone, what remains is the carrier phase times ±1,
//! the sign being the data bit itself (that is what precoding buys). The 41
//! known bits before the block give the phase reference, a decision-directed
//! tracker follows it, and a bit error stays one bit error instead of
//! inverting the rest of the block as differential decoding would. The 112
//! bits are then de-interleaved, corrected by majority-logic decoding
//! of the self-orthogonal convolutional code (up to two errors per
//! constraint span) and accepted only when the CRC matches. Several slicers
//! report the same burst; duplicates within one burst length are dropped.
//!
//! Double packets (call alert, selective call) are reported by their first
//! block; the second block is not decoded.

use crate::ani::{AniEvent, AniKind, AniOp};
use crate::audio::SAMPLE_RATE;

/// Bits per second.
pub const BAUD: u32 = 1200;
/// Preamble bytes before the sync word.
pub const PREAMBLE: [u8; 7] = [0x55; 7];
/// The 40-bit sync word.
pub const SYNC: [u8; 5] = [0x07, 0x09, 0x2A, 0x44, 0x6F];
const SYNC_BITS: u64 = 0x07_092A_446F;
const BLOCK_BITS: usize = 112;
const MAX_SYNC_ERRORS: u32 = 3;
const SLICERS: usize = 8;

/// Opcodes from the community table.
pub mod op {
    pub const EMERGENCY: u8 = 0x00;
    pub const PTT_ID: u8 = 0x01;
    pub const EMERGENCY_ACK: u8 = 0x20;
    pub const RADIO_CHECK_ACK: u8 = 0x30;
    pub const CALL_ALERT: u8 = 0x35;
    pub const STATUS: u8 = 0x46;
    pub const MESSAGE: u8 = 0x47;
    pub const RADIO_CHECK: u8 = 0x63;
}

/// One MDC1200 single-block packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MdcPacket {
    pub op: u8,
    pub arg: u8,
    pub unit_id: u16,
}

impl MdcPacket {
    /// PTT-ID sent before the voice.
    pub fn ptt_id_pre(unit_id: u16) -> MdcPacket {
        MdcPacket {
            op: op::PTT_ID,
            arg: 0x80,
            unit_id,
        }
    }
    /// PTT-ID sent after the voice.
    pub fn ptt_id_post(unit_id: u16) -> MdcPacket {
        MdcPacket {
            op: op::PTT_ID,
            arg: 0x00,
            unit_id,
        }
    }
    /// Emergency alarm from `unit_id`.
    pub fn emergency(unit_id: u16) -> MdcPacket {
        MdcPacket {
            op: op::EMERGENCY,
            arg: 0x81,
            unit_id,
        }
    }
    /// Radio-check request addressed to `unit_id`.
    pub fn radio_check(unit_id: u16) -> MdcPacket {
        MdcPacket {
            op: op::RADIO_CHECK,
            arg: 0x85,
            unit_id,
        }
    }
    /// Radio-check acknowledgement from `unit_id`.
    pub fn radio_check_ack(unit_id: u16) -> MdcPacket {
        MdcPacket {
            op: op::RADIO_CHECK_ACK,
            arg: 0x00,
            unit_id,
        }
    }

    /// What the packet means for the roll-call engine.
    pub fn ani_op(&self) -> AniOp {
        match self.op {
            op::PTT_ID if self.arg & 0x80 != 0 => AniOp::PttIdPre,
            op::PTT_ID => AniOp::PttIdPost,
            op::EMERGENCY => AniOp::Emergency,
            op::RADIO_CHECK => AniOp::RadioCheckRequest,
            op::RADIO_CHECK_ACK => AniOp::RadioCheckAck,
            _ => AniOp::Other {
                op: self.op,
                arg: self.arg,
            },
        }
    }

    /// Short text for [`AniEvent::detail`].
    pub fn describe(&self) -> String {
        let name = match self.ani_op() {
            AniOp::PttIdPre => "ptt-id-pre",
            AniOp::PttIdPost => "ptt-id-post",
            AniOp::Emergency => "emergency",
            AniOp::RadioCheckRequest => "radio-check",
            AniOp::RadioCheckAck => "radio-check-ack",
            _ => "other",
        };
        format!("{name} op={:02x} arg={:02x}", self.op, self.arg)
    }

    /// The 7 data bytes of the block: op, arg, unit (hi, lo), CRC (lo, hi), 0.
    pub fn data_bytes(&self) -> [u8; 7] {
        let [hi, lo] = self.unit_id.to_be_bytes();
        let head = [self.op, self.arg, hi, lo];
        let crc = crc16(&head);
        [self.op, self.arg, hi, lo, crc as u8, (crc >> 8) as u8, 0]
    }
}

/// MDC1200's CRC: reflected CRC-16/CCITT (poly 0x8408), init 0, output
/// inverted.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn parity_bit(d: &[u8; 56], n: usize) -> u8 {
    let tap = |k: usize| if n >= k { d[n - k] } else { 0 };
    d[n] ^ tap(2) ^ tap(5) ^ tap(6)
}

/// Encodes the 7 data bytes into the 112 interleaved air bits.
pub fn encode_block(data: &[u8; 7]) -> [u8; BLOCK_BITS] {
    let mut d = [0u8; 56];
    for (n, bit) in d.iter_mut().enumerate() {
        *bit = (data[n / 8] >> (n % 8)) & 1;
    }
    let mut coded = [0u8; BLOCK_BITS];
    coded[..56].copy_from_slice(&d);
    for n in 0..56 {
        coded[56 + n] = parity_bit(&d, n);
    }
    let mut air = [0u8; BLOCK_BITS];
    for (n, &bit) in coded.iter().enumerate() {
        air[(n % 7) * 16 + n / 7] = bit;
    }
    air
}

/// Undoes the interleave, corrects what the code can and returns the 7 data
/// bytes (the caller checks the CRC).
pub fn decode_block(air: &[u8; BLOCK_BITS]) -> [u8; 7] {
    let mut coded = [0u8; BLOCK_BITS];
    for (n, bit) in coded.iter_mut().enumerate() {
        *bit = air[(n % 7) * 16 + n / 7] & 1;
    }
    let mut d = [0u8; 56];
    d.copy_from_slice(&coded[..56]);
    let mut syndrome = [0u8; 56];
    for (n, s) in syndrome.iter_mut().enumerate() {
        *s = parity_bit(&d, n) ^ coded[56 + n];
    }
    // Majority logic: the four syndromes that check d[n] are orthogonal on
    // it (tap differences 2, 5, 6, 3, 4, 1 are all distinct).
    #[allow(clippy::needless_range_loop)] // n indexes d and the syndromes after it
    for n in 0..56 {
        let checks: Vec<usize> = [0, 2, 5, 6]
            .iter()
            .map(|k| n + k)
            .filter(|&m| m < 56)
            .collect();
        let ones = checks.iter().filter(|&&m| syndrome[m] == 1).count();
        if checks.len() >= 3 && ones * 2 > checks.len() {
            d[n] ^= 1;
            for m in checks {
                syndrome[m] ^= 1;
            }
        }
    }
    let mut out = [0u8; 7];
    for (n, &bit) in d.iter().enumerate() {
        out[n / 8] |= bit << (n % 8);
    }
    out
}

/// The whole burst as bits, MSB first: preamble, sync, coded block.
pub fn burst_bits(packet: &MdcPacket) -> Vec<u8> {
    let mut bits = Vec::with_capacity(208);
    for byte in PREAMBLE.iter().chain(SYNC.iter()) {
        for k in (0..8).rev() {
            bits.push((byte >> k) & 1);
        }
    }
    bits.extend_from_slice(&encode_block(&packet.data_bytes()));
    bits
}

/// Modulates one packet to 8 kHz audio; `amplitude` is the peak as a fraction
/// of full scale.
pub fn encode(packet: &MdcPacket, amplitude: f32) -> Vec<i16> {
    modulate(&burst_bits(packet), amplitude, 0.0)
}

/// Precoded MSK modulator from a start phase (radians).
pub fn modulate(bits: &[u8], amplitude: f32, start_phase: f64) -> Vec<i16> {
    let amplitude = if amplitude.is_finite() {
        f64::from(amplitude.clamp(0.0, 1.0))
    } else {
        0.0
    };
    let rate = f64::from(SAMPLE_RATE);
    let total = (bits.len() as f64 * rate / f64::from(BAUD)).ceil() as usize;
    let mut out = Vec::with_capacity(total);
    let mut phase = start_phase;
    let mut last = 0u8;
    let mut freqs = Vec::with_capacity(bits.len());
    for &b in bits {
        freqs.push(if b & 1 != last { 1800.0 } else { 1200.0 });
        last = b & 1;
    }
    for n in 0..total {
        let bit = ((n as f64 * f64::from(BAUD) / rate) as usize).min(bits.len().saturating_sub(1));
        let Some(&f) = freqs.get(bit) else { break };
        out.push((amplitude * 32767.0 * phase.sin()).round() as i16);
        phase = (phase + 2.0 * std::f64::consts::PI * f / rate) % (2.0 * std::f64::consts::PI);
    }
    out
}

/// Known bits before the block: the preamble's last bit and the sync word.
const FRAMED_BITS: usize = 41;
/// Step of the decision-directed phase tracker (per bit).
const TRACK_GAIN: f32 = 0.08;

#[derive(Debug, Clone, Copy, Default)]
struct Cx {
    re: f32,
    im: f32,
}

impl Cx {
    fn scale(self, k: f32) -> Cx {
        Cx {
            re: self.re * k,
            im: self.im * k,
        }
    }
    fn add(self, o: Cx) -> Cx {
        Cx {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    /// Re(self · conj(o)) and Im(self · conj(o)).
    fn dot(self, o: Cx) -> f32 {
        self.re * o.re + self.im * o.im
    }
    fn cross(self, o: Cx) -> f32 {
        self.im * o.re - self.re * o.im
    }
    /// Multiplies by j^k.
    fn rotate_quarter(self, k: u8) -> Cx {
        match k & 3 {
            0 => self,
            1 => Cx {
                re: -self.im,
                im: self.re,
            },
            2 => Cx {
                re: -self.re,
                im: -self.im,
            },
            _ => Cx {
                re: self.im,
                im: -self.re,
            },
        }
    }
}

#[derive(Debug, Clone)]
struct Slicer {
    /// Baseband value at this slicer's previous bit boundary.
    last: Cx,
    /// Bits counted mod 4, to undo MSK's quarter turn per bit.
    quarter: u8,
    /// Last 64 tone bits (1 = 1800 Hz = transition).
    history: u64,
    /// De-rotated baseband values of the last `FRAMED_BITS` boundaries.
    recent: [Cx; FRAMED_BITS],
    recent_pos: usize,
    /// After a sync: bits collected so far and the carrier phase reference.
    collecting: Option<(usize, Cx)>,
    block: [u8; BLOCK_BITS],
    sync_end: u64,
}

/// Streaming MDC1200 decoder (sans-IO).
#[derive(Debug, Clone)]
pub struct MdcDecoder {
    lowpass: [f32; LOWPASS_TAPS],
    /// Mixed-down samples, each written twice so the filter reads one
    /// contiguous window.
    ring_i: [f32; 2 * LOWPASS_TAPS],
    ring_q: [f32; 2 * LOWPASS_TAPS],
    ring_pos: usize,
    /// Filtered baseband at the previous sample, for interpolation.
    prev: Cx,
    sample: u64,
    /// Index of the next slicer boundary: boundary `m` falls at sample time
    /// 5m/6 (interpolated) and belongs to slicer `m mod 8` (8 slicers ×
    /// 1200 baud = one boundary every 5/6 sample at 8 kHz).
    next_boundary: u64,
    slicers: Vec<Slicer>,
    sync_transitions: u64,
    framed: u64,
    last_emitted: Option<(MdcPacket, u64)>,
}

impl Default for MdcDecoder {
    fn default() -> Self {
        MdcDecoder::new()
    }
}

const LOWPASS_TAPS: usize = 15;

impl MdcDecoder {
    pub fn new() -> MdcDecoder {
        // Windowed-sinc low-pass, cutoff 1000 Hz: passes the ±300 Hz MSK
        // deviation and its sidebands, stops the 3000 Hz mixing image.
        let fc = 1000.0 / f64::from(SAMPLE_RATE);
        let mid = (LOWPASS_TAPS / 2) as f64;
        let mut lowpass = [0.0f32; LOWPASS_TAPS];
        for (i, tap) in lowpass.iter_mut().enumerate() {
            let x = i as f64 - mid;
            let sinc = if x == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
            };
            let w = 0.54
                - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / (LOWPASS_TAPS - 1) as f64).cos();
            *tap = (sinc * w) as f32;
        }
        let sum: f32 = lowpass.iter().sum();
        lowpass.iter_mut().for_each(|t| *t /= sum);
        // The preamble's last bit followed by the sync word, and its tone
        // bits (transitions).
        let framed = SYNC_BITS | (u64::from(PREAMBLE[6] & 1) << 40);
        let sync_transitions = (framed ^ (framed >> 1)) & ((1u64 << 40) - 1);
        let slicers = (0..SLICERS)
            .map(|_| Slicer {
                last: Cx::default(),
                quarter: 0,
                history: 0,
                recent: [Cx::default(); FRAMED_BITS],
                recent_pos: 0,
                collecting: None,
                block: [0; BLOCK_BITS],
                sync_end: 0,
            })
            .collect();
        MdcDecoder {
            lowpass,
            ring_i: [0.0; 2 * LOWPASS_TAPS],
            ring_q: [0.0; 2 * LOWPASS_TAPS],
            ring_pos: 0,
            prev: Cx::default(),
            sample: 0,
            next_boundary: 1,
            slicers,
            sync_transitions,
            framed,
            last_emitted: None,
        }
    }

    /// Feeds samples (any chunk size); returns packets whose CRC checked.
    pub fn push(&mut self, samples: &[i16]) -> Vec<(MdcPacket, u64, u64)> {
        // exp(-j 2π 1500 n / 8000) repeats every 16 samples.
        const MIX_COS: [f32; 16] = mix_table(false);
        const MIX_SIN: [f32; 16] = mix_table(true);
        let mut out = Vec::new();
        for &x in samples {
            let phase = (self.sample % 16) as usize;
            let x = f32::from(x);
            let (mi, mq) = (x * MIX_COS[phase], -x * MIX_SIN[phase]);
            self.ring_i[self.ring_pos] = mi;
            self.ring_i[self.ring_pos + LOWPASS_TAPS] = mi;
            self.ring_q[self.ring_pos] = mq;
            self.ring_q[self.ring_pos + LOWPASS_TAPS] = mq;
            self.ring_pos = (self.ring_pos + 1) % LOWPASS_TAPS;
            let window = self.ring_pos..self.ring_pos + LOWPASS_TAPS;
            let (mut i, mut q) = (0.0f32, 0.0f32);
            for ((&h, &wi), &wq) in self
                .lowpass
                .iter()
                .zip(&self.ring_i[window.clone()])
                .zip(&self.ring_q[window])
            {
                i += h * wi;
                q += h * wq;
            }
            let now = Cx { re: i, im: q };
            self.sample += 1;
            // Boundary time 5m/6 lies in (sample − 1, sample]: interpolate.
            while 6 * self.sample >= 5 * self.next_boundary {
                let into = (5 * self.next_boundary + 6 - 6 * self.sample) as f32 / 6.0;
                let z = self.prev.add(now.add(self.prev.scale(-1.0)).scale(into));
                let s = (self.next_boundary % SLICERS as u64) as usize;
                self.next_boundary += 1;
                if let Some(found) = self.on_boundary(s, z) {
                    out.push(found);
                }
            }
            self.prev = now;
        }
        out
    }

    /// End of transmission: a burst that ends exactly where the audio stops
    /// still has its last bits inside the filter, so run a short silent tail
    /// through a copy of the decoder. The stream clock is not advanced; the
    /// duplicate filter learns what was reported.
    pub fn flush(&mut self) -> Vec<(MdcPacket, u64, u64)> {
        let mut tail = self.clone();
        let found = tail.push(&[0; 2 * LOWPASS_TAPS]);
        self.last_emitted = tail.last_emitted;
        found
    }

    fn on_boundary(&mut self, s: usize, z: Cx) -> Option<(MdcPacket, u64, u64)> {
        let sample = self.sample;
        let slicer = &mut self.slicers[s];
        // Over one bit the phase turns +π/2 for 1800 Hz, −π/2 for 1200 Hz.
        let tone_bit = u8::from(z.cross(slicer.last) > 0.0);
        slicer.last = z;
        slicer.history = (slicer.history << 1) | u64::from(tone_bit);
        // Undo the quarter turn per bit: what is left is ±(carrier phase),
        // the sign being the data bit itself (precoded MSK).
        slicer.quarter = slicer.quarter.wrapping_add(1);
        let w = z.rotate_quarter(slicer.quarter);
        slicer.recent[slicer.recent_pos] = w;
        slicer.recent_pos = (slicer.recent_pos + 1) % FRAMED_BITS;

        if let Some((filled, reference)) = slicer.collecting {
            let bit = u8::from(w.dot(reference) < 0.0);
            slicer.block[filled] = bit;
            let sign = if bit == 1 { -1.0 } else { 1.0 };
            let reference = reference
                .scale(1.0 - TRACK_GAIN)
                .add(w.scale(sign * TRACK_GAIN));
            if filled + 1 < BLOCK_BITS {
                slicer.collecting = Some((filled + 1, reference));
                return None;
            }
            slicer.collecting = None;
            let data = decode_block(&slicer.block);
            let crc = crc16(&data[..4]);
            if data[4] != crc as u8 || data[5] != (crc >> 8) as u8 {
                return None;
            }
            let packet = MdcPacket {
                op: data[0],
                arg: data[1],
                unit_id: u16::from_be_bytes([data[2], data[3]]),
            };
            let bit_len = u64::from(SAMPLE_RATE) / u64::from(BAUD);
            let start = slicer
                .sync_end
                .saturating_sub(96 * u64::from(SAMPLE_RATE) / u64::from(BAUD) + bit_len);
            if let Some((last, at)) = self.last_emitted {
                if last == packet && start.abs_diff(at) < 600 {
                    return None;
                }
            }
            self.last_emitted = Some((packet, start));
            return Some((packet, start, sample));
        }
        let diff = (slicer.history ^ self.sync_transitions) & ((1u64 << 40) - 1);
        if diff.count_ones() <= MAX_SYNC_ERRORS {
            // Carrier phase reference from the 41 known bits (their signs
            // removed); it also fixes the bit polarity.
            let mut reference = Cx::default();
            for age in 0..FRAMED_BITS {
                let idx = (slicer.recent_pos + FRAMED_BITS - 1 - age) % FRAMED_BITS;
                let bit = (self.framed >> age) & 1;
                let sign = if bit == 1 { -1.0 } else { 1.0 };
                reference = reference.add(slicer.recent[idx].scale(sign));
            }
            slicer.collecting = Some((0, reference.scale(1.0 / FRAMED_BITS as f32)));
            slicer.sync_end = sample;
        }
        None
    }

    /// Converts a decoded packet into the shared identity event.
    pub fn to_event(packet: &MdcPacket, start: u64, end: u64) -> AniEvent {
        AniEvent {
            kind: AniKind::Mdc1200,
            unit: format!("{:04X}", packet.unit_id),
            op: packet.ani_op(),
            detail: Some(packet.describe()),
            start_sample: start,
            end_sample: end,
            confidence: 1.0,
        }
    }
}

const fn mix_table(sine: bool) -> [f32; 16] {
    // cos/sin(2π·3k/16) for k = 0..16, written out (const fn has no trig).
    const C: [f32; 16] = [
        1.0,
        0.382_683_43,
        -0.707_106_77,
        -0.923_879_5,
        0.0,
        0.923_879_5,
        0.707_106_77,
        -0.382_683_43,
        -1.0,
        -0.382_683_43,
        0.707_106_77,
        0.923_879_5,
        0.0,
        -0.923_879_5,
        -0.707_106_77,
        0.382_683_43,
    ];
    const S: [f32; 16] = [
        0.0,
        0.923_879_5,
        0.707_106_77,
        -0.382_683_43,
        -1.0,
        -0.382_683_43,
        0.707_106_77,
        0.923_879_5,
        0.0,
        -0.923_879_5,
        -0.707_106_77,
        0.382_683_43,
        1.0,
        0.382_683_43,
        -0.707_106_77,
        -0.923_879_5,
    ];
    if sine {
        S
    } else {
        C
    }
}
