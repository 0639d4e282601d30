//! Streaming DTMF decoder: samples in, one event per digit out.
//!
//! Eight correlators (a `ToneBank`) analyse 106-sample blocks (13.25 ms) every
//! 53 samples. A block votes for a digit when one row and one column tone
//! stand out: each at least 4 dB above the rest of its group, above the
//! minimum level, within the twist limits (with 2 dB slack per block),
//! within 3.75 % of nominal frequency, and together carrying at least 38 % of
//! the block's energy (speech and noise spread theirs; at 0 dB SNR a real
//! digit still carries ~50 %). A digit starts after four votes, one failed
//! block between them forgiven (≈ 33 ms of tone, so 40 ms tones always pass
//! and 20 ms tones never do) and ends after three votes against it (a 40 ms
//! pause always gives them; a 10 ms drop-out never does). When it ends, the phase
//! advance between block halves, averaged over the whole digit, gives each
//! tone's frequency to a few hertz: digits off by more than the configured
//! deviation (2.5 %: accept ±1.5 %, reject beyond ±3.5 %) are dropped, and
//! so are digits whose average twist is out of limits.

use super::tonebank::{BlockAnalysis, Cplx, ToneBank};

/// Row (low group) frequencies in Hz.
pub const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high group) frequencies in Hz.
pub const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// The DTMF symbol set, for error messages.
pub const DTMF_SYMBOLS: &str = "0-9, A-D, *, #";

const HALF_BLOCK: usize = 53;
const VOTES_TO_START: u32 = 4;
const VOTES_TO_END: u32 = 3;
const TWIST_SLACK_DB: f32 = 2.0;
/// Power ratio of the strongest tone of a group over the next one (4 dB).
const MIN_DOMINANCE: f32 = 2.5;

/// Row and column frequency of a DTMF symbol (a–d accepted).
pub fn dtmf_freqs(symbol: char) -> Option<(f32, f32)> {
    let upper = symbol.to_ascii_uppercase();
    KEYPAD.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|&c| c == upper)
            .map(|c| (ROWS[r], COLS[c]))
    })
}

/// Acceptance limits; the defaults follow ITU-T Q.24 / Bell practice.
#[derive(Debug, Clone, PartialEq)]
pub struct DtmfConfig {
    /// Column tone louder than row tone, in dB (normal twist).
    pub max_normal_twist_db: f32,
    /// Row tone louder than column tone, in dB (reverse twist).
    pub max_reverse_twist_db: f32,
    /// Each tone's level must be at least this (dBFS of its peak amplitude).
    pub min_level_dbfs: f32,
    /// Largest accepted frequency deviation, as a fraction (0.025 = 2.5 %).
    pub max_deviation: f32,
    /// Share of the block's energy the two tones must carry (0–1).
    pub min_tone_share: f32,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        DtmfConfig {
            max_normal_twist_db: 8.0,
            max_reverse_twist_db: 4.0,
            min_level_dbfs: -42.0,
            max_deviation: 0.025,
            min_tone_share: 0.38,
        }
    }
}

/// One decoded DTMF digit.
#[derive(Debug, Clone, PartialEq)]
pub struct DtmfDigit {
    pub digit: char,
    /// Estimated first and last sample of the tone (±7 ms).
    pub start_sample: u64,
    pub end_sample: u64,
}

#[derive(Debug, Clone)]
struct Run {
    row: usize,
    col: usize,
    votes: u32,
    first_block_end: u64,
    last_block_end: u64,
    row_step: Cplx,
    col_step: Cplx,
    row_power: f32,
    col_power: f32,
}

impl Run {
    fn digit(&self) -> char {
        KEYPAD[self.row][self.col]
    }
}

/// Streaming DTMF decoder (sans-IO): push samples at 8 kHz, get digits.
#[derive(Debug, Clone)]
pub struct DtmfDecoder {
    config: DtmfConfig,
    bank: ToneBank,
    min_power: f32,
    candidate: Option<Run>,
    /// Failed votes since the candidate's last vote.
    candidate_gap: u32,
    active: Option<Run>,
    misses: u32,
}

impl DtmfDecoder {
    pub fn new(config: DtmfConfig) -> DtmfDecoder {
        let freqs: Vec<f32> = ROWS.iter().chain(COLS.iter()).copied().collect();
        let bank = ToneBank::new(&freqs, HALF_BLOCK);
        let amp = 10f32.powf(config.min_level_dbfs / 20.0) * 32768.0;
        let min_power = amp * amp / 2.0 * bank.block_len() as f32;
        DtmfDecoder {
            config,
            bank,
            min_power,
            candidate: None,
            candidate_gap: 0,
            active: None,
            misses: 0,
        }
    }

    /// Feeds samples (any chunk size); returns digits that ended in them.
    pub fn push(&mut self, samples: &[i16]) -> Vec<DtmfDigit> {
        let mut blocks = Vec::new();
        self.bank.push(samples, |block| blocks.push(block.clone()));
        let mut out = Vec::new();
        for block in &blocks {
            let vote = self.vote(block);
            self.step(vote, block, &mut out);
        }
        out
    }

    /// End of transmission: reports a digit still sounding, if long enough.
    pub fn flush(&mut self) -> Vec<DtmfDigit> {
        let mut out = Vec::new();
        if let Some(run) = self.active.take() {
            self.finish(run, &mut out);
        }
        self.candidate = None;
        self.candidate_gap = 0;
        self.misses = 0;
        out
    }

    /// True while a digit is sounding or about to be confirmed.
    pub fn busy(&self) -> bool {
        self.active.is_some() || self.candidate.is_some()
    }

    fn vote(&self, b: &BlockAnalysis) -> Option<(usize, usize)> {
        let (row, row_p, row_second) = best_two(&b.power[..4]);
        let (col, col_p, col_second) = best_two(&b.power[4..]);
        let c = &self.config;
        if row_p < self.min_power || col_p < self.min_power {
            return None;
        }
        if row_p < MIN_DOMINANCE * row_second || col_p < MIN_DOMINANCE * col_second {
            return None;
        }
        // Leakage makes one block's twist wobble by about a decibel: allow
        // that here; the strict check runs on the whole digit's average.
        if !self.twist_ok(row_p, col_p, TWIST_SLACK_DB) {
            return None;
        }
        if row_p + col_p < c.min_tone_share * b.energy {
            return None;
        }
        // A loose per-block frequency check weeds out speech early; the
        // strict one runs over the whole digit.
        let loose = 1.5 * c.max_deviation;
        let row_off = self.bank.offset_hz(b.phase_step[row]).abs() / ROWS[row];
        let col_off = self.bank.offset_hz(b.phase_step[4 + col]).abs() / COLS[col];
        if row_off > loose || col_off > loose {
            return None;
        }
        Some((row, col))
    }

    fn step(&mut self, vote: Option<(usize, usize)>, b: &BlockAnalysis, out: &mut Vec<DtmfDigit>) {
        if let Some(active) = &mut self.active {
            if vote == Some((active.row, active.col)) {
                self.misses = 0;
                extend(active, b);
                return;
            }
            self.misses += 1;
            if self.misses >= VOTES_TO_END {
                if let Some(run) = self.active.take() {
                    self.finish(run, out);
                }
                self.misses = 0;
            }
        }
        match (vote, &mut self.candidate) {
            (Some((r, c)), Some(run)) if run.row == r && run.col == c => {
                self.candidate_gap = 0;
                extend(run, b)
            }
            // In heavy noise a block of a real tone fails now and then: a
            // candidate survives one failed vote (it still needs four votes).
            (None, Some(_)) if self.candidate_gap == 0 => self.candidate_gap = 1,
            (Some((r, c)), _) => {
                self.candidate_gap = 0;
                self.candidate = Some(Run {
                    row: r,
                    col: c,
                    votes: 1,
                    first_block_end: b.end_sample,
                    last_block_end: b.end_sample,
                    row_step: b.phase_step[r],
                    col_step: b.phase_step[4 + c],
                    row_power: b.power[r],
                    col_power: b.power[4 + c],
                })
            }
            (None, _) => self.candidate = None,
        }
        if self.active.is_none()
            && self
                .candidate
                .as_ref()
                .is_some_and(|r| r.votes >= VOTES_TO_START)
        {
            self.active = self.candidate.take();
            self.misses = 0;
        }
    }

    fn twist_ok(&self, row_power: f32, col_power: f32, slack_db: f32) -> bool {
        let twist_db = 10.0 * (col_power / row_power).log10();
        twist_db <= self.config.max_normal_twist_db + slack_db
            && -twist_db <= self.config.max_reverse_twist_db + slack_db
    }

    fn finish(&self, run: Run, out: &mut Vec<DtmfDigit>) {
        let row_dev = self.bank.offset_hz(run.row_step).abs() / ROWS[run.row];
        let col_dev = self.bank.offset_hz(run.col_step).abs() / COLS[run.col];
        if row_dev > self.config.max_deviation || col_dev > self.config.max_deviation {
            return;
        }
        if !self.twist_ok(run.row_power, run.col_power, 0.0) {
            return;
        }
        let n = self.bank.block_len() as u64;
        let start = run.first_block_end.saturating_sub(n * 3 / 4);
        let end = run.last_block_end.saturating_sub(n / 4).max(start);
        out.push(DtmfDigit {
            digit: run.digit(),
            start_sample: start,
            end_sample: end,
        });
    }
}

impl Default for DtmfDecoder {
    fn default() -> Self {
        DtmfDecoder::new(DtmfConfig::default())
    }
}

fn extend(run: &mut Run, b: &BlockAnalysis) {
    run.votes += 1;
    run.last_block_end = b.end_sample;
    run.row_step = run.row_step.add(b.phase_step[run.row]);
    run.col_step = run.col_step.add(b.phase_step[4 + run.col]);
    run.row_power += b.power[run.row];
    run.col_power += b.power[4 + run.col];
}

/// Index and value of the largest element, and the second largest value.
pub(crate) fn best_two(values: &[f32]) -> (usize, f32, f32) {
    let mut best = (0, f32::MIN, f32::MIN);
    for (i, &v) in values.iter().enumerate() {
        if v > best.1 {
            best = (i, v, best.1);
        } else if v > best.2 {
            best.2 = v;
        }
    }
    (best.0, best.1, best.2.max(0.0))
}
