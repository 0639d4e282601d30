//! Streaming 5-tone selcall decoder for one configured standard.
//!
//! Sixteen correlators (a `ToneBank`) analyse blocks sized to the standard's
//! tone length (20 ms blocks for CCIR's 100 ms tones down to 10 ms for EIA's
//! 33 ms), every half block. A block votes for a tone when that tone carries
//! at least 30 % of the block's energy, is 3 dB above every other tone and its
//! measured frequency is within 2.5 % of nominal (and within a third of the
//! way to the nearest other tone of the table). Votes for one tone, allowing
//! short drop-outs, make a tone once there are at least half as many as a
//! full-length tone gives; a tone sounding much longer than the standard
//! spoils the sequence (that is a carrier or an alert tone, not selcall).
//! Tones follow each other without gaps; a silence of 1.5 tone lengths ends
//! the sequence, which is reported when it has at least `min_tones` tones,
//! lasts 0.7–1.5 times as long as that many tones should, and uses the
//! repeat tone ('E') properly; repeat tones are resolved to the digit they
//! repeat.

use super::dtmf::best_two;
use super::selcall_tables::{SelcallStandard, REPEAT_INDEX, SYMBOLS};
use super::tonebank::{BlockAnalysis, ToneBank};
use crate::audio::SAMPLE_RATE;

/// Share of a block's energy the tone must carry: low enough to work at
/// 0 dB SNR (where it is about half), high enough that speech rarely passes.
const MIN_TONE_SHARE: f32 = 0.3;

/// Longest sequence reported; anything longer is not a selcall.
pub const MAX_TONES: usize = 16;

/// One decoded selcall sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SelcallSequence {
    pub standard: SelcallStandard,
    /// Digits with repeat tones resolved ("1E23E" → "11233").
    pub digits: String,
    /// Symbols as heard on air, repeat tones included.
    pub symbols: String,
    pub start_sample: u64,
    pub end_sample: u64,
    /// Mean share of the expected votes each tone got (0–1).
    pub confidence: f32,
}

#[derive(Debug, Clone)]
struct ToneRun {
    tone: usize,
    votes: u32,
    first_block_end: u64,
    last_block_end: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    symbols: Vec<usize>,
    confidences: Vec<f32>,
    start: u64,
    end: u64,
    spoiled: bool,
}

/// Streaming selcall decoder (sans-IO) for one standard.
#[derive(Debug, Clone)]
pub struct SelcallDecoder {
    standard: SelcallStandard,
    bank: ToneBank,
    min_power: f32,
    /// Largest accepted offset per tone, in Hz.
    tolerance_hz: Vec<f32>,
    min_votes: u32,
    full_votes: f32,
    max_gap_blocks: u64,
    tone_len: u64,
    min_tones: usize,
    run: Option<ToneRun>,
    pending: Option<Pending>,
    now: u64,
}

impl SelcallDecoder {
    /// A decoder reporting sequences of 5 or more tones.
    pub fn new(standard: SelcallStandard) -> SelcallDecoder {
        SelcallDecoder::with_min_tones(standard, 5)
    }

    /// A decoder reporting sequences of at least `min_tones` tones (≥ 1).
    pub fn with_min_tones(standard: SelcallStandard, min_tones: usize) -> SelcallDecoder {
        let half = match standard {
            SelcallStandard::Ccir => 80,
            SelcallStandard::Ccir2 | SelcallStandard::Zvei1 => 60,
            SelcallStandard::Eea => 50,
            SelcallStandard::Eia => 40,
        };
        let tones = standard.tones();
        let bank = ToneBank::new(tones, half);
        let tone_len = u64::from(SAMPLE_RATE) * u64::from(standard.tone_ms()) / 1000;
        let full_votes = ((tone_len as f32 - 2.0 * half as f32) / half as f32 + 1.0).max(1.0);
        let min_votes = ((full_votes * 0.5).floor() as u32).max(2);
        // Phase steps alias beyond ±rate/(2·half); stay inside that and
        // closer to the nominal tone than to any neighbour.
        let alias = SAMPLE_RATE as f32 / (2.0 * half as f32) * 0.9;
        let tolerance_hz = tones
            .iter()
            .map(|&f| {
                let nearest = tones
                    .iter()
                    .filter(|&&g| g != f)
                    .map(|&g| (g - f).abs())
                    .fold(f32::MAX, f32::min);
                (0.025 * f).min(nearest / 3.0).min(alias)
            })
            .collect();
        let amp = 10f32.powf(-42.0 / 20.0) * 32768.0;
        SelcallDecoder {
            standard,
            min_power: amp * amp / 2.0 * bank.block_len() as f32,
            bank,
            tolerance_hz,
            min_votes,
            full_votes,
            max_gap_blocks: 2,
            tone_len,
            min_tones: min_tones.max(1),
            run: None,
            pending: None,
            now: 0,
        }
    }

    pub fn standard(&self) -> SelcallStandard {
        self.standard
    }

    /// Feeds samples (any chunk size); returns sequences that ended in them.
    pub fn push(&mut self, samples: &[i16]) -> Vec<SelcallSequence> {
        let mut blocks = Vec::new();
        self.bank.push(samples, |b| blocks.push(b.clone()));
        let mut out = Vec::new();
        for b in &blocks {
            self.now = b.end_sample;
            let vote = self.vote(b);
            self.step(vote, b.end_sample, &mut out);
        }
        out
    }

    /// End of transmission: reports a sequence still pending.
    pub fn flush(&mut self) -> Vec<SelcallSequence> {
        let mut out = Vec::new();
        self.close_run();
        if let Some(p) = self.pending.take() {
            self.emit(p, &mut out);
        }
        out
    }

    fn vote(&self, b: &BlockAnalysis) -> Option<usize> {
        let (best, p, second) = best_two(&b.power);
        if p < self.min_power || p < 2.0 * second || p < MIN_TONE_SHARE * b.energy {
            return None;
        }
        let offset = self.bank.offset_hz(b.phase_step[best]);
        (offset.abs() <= self.tolerance_hz[best]).then_some(best)
    }

    fn step(&mut self, vote: Option<usize>, block_end: u64, out: &mut Vec<SelcallSequence>) {
        let gap = self.max_gap_blocks * self.bank.hop() as u64;
        match (&mut self.run, vote) {
            (Some(run), Some(t))
                if run.tone == t
                    && block_end - run.last_block_end <= gap + self.bank.hop() as u64 =>
            {
                run.votes += 1;
                run.last_block_end = block_end;
                if run.last_block_end - run.first_block_end > self.tone_len * 5 / 2 {
                    if let Some(p) = &mut self.pending {
                        p.spoiled = true;
                    }
                }
            }
            (_, Some(t)) => {
                self.close_run();
                self.run = Some(ToneRun {
                    tone: t,
                    votes: 1,
                    first_block_end: block_end,
                    last_block_end: block_end,
                });
            }
            (Some(run), None) if block_end - run.last_block_end > gap => self.close_run(),
            _ => {}
        }
        let quiet_since = self
            .run
            .as_ref()
            .map(|r| r.last_block_end)
            .or(self.pending.as_ref().map(|p| p.end));
        if let Some(since) = quiet_since {
            if block_end.saturating_sub(since) > self.tone_len * 3 / 2 {
                self.close_run();
                if let Some(p) = self.pending.take() {
                    self.emit(p, out);
                }
            }
        }
    }

    /// Turns the current run into a tone of the pending sequence if it had
    /// enough votes.
    fn close_run(&mut self) {
        let Some(run) = self.run.take() else { return };
        if run.votes < self.min_votes {
            return;
        }
        let n = self.bank.block_len() as u64;
        let start = run.first_block_end.saturating_sub(n);
        let end = run.last_block_end;
        let confidence = (run.votes as f32 / self.full_votes).min(1.0);
        let long = end - start > self.tone_len * 5 / 2;
        match &mut self.pending {
            // A tone interrupted by a glitch comes back as the same symbol:
            // on air a repeated digit is always sent as 'E', so merge.
            Some(p) if p.symbols.last() == Some(&run.tone) && start <= p.end + n => {
                p.end = end;
                p.spoiled |= long;
            }
            Some(p) => {
                // A warble or data stream is not a selcall: stop collecting.
                if p.symbols.len() >= MAX_TONES {
                    p.spoiled = true;
                } else {
                    p.symbols.push(run.tone);
                    p.confidences.push(confidence);
                }
                p.end = end;
                p.spoiled |= long;
            }
            None => {
                self.pending = Some(Pending {
                    symbols: vec![run.tone],
                    confidences: vec![confidence],
                    start,
                    end,
                    spoiled: long,
                })
            }
        }
    }

    fn emit(&self, p: Pending, out: &mut Vec<SelcallSequence>) {
        if p.spoiled || p.symbols.len() < self.min_tones {
            return;
        }
        // The repeat tone repeats the digit before it: it cannot come first
        // or twice in a row.
        let repeat_misplaced = p.symbols.first() == Some(&REPEAT_INDEX)
            || p.symbols
                .windows(2)
                .any(|w| w[0] == REPEAT_INDEX && w[1] == REPEAT_INDEX);
        // Tones follow back to back: the whole sequence lasts about n tones.
        let nominal = self.tone_len * p.symbols.len() as u64;
        let length = p.end - p.start;
        if repeat_misplaced || length * 10 < nominal * 7 || length * 2 > nominal * 3 {
            return;
        }
        let symbols: String = p.symbols.iter().map(|&i| SYMBOLS[i]).collect();
        let mut digits = String::with_capacity(symbols.len());
        let mut previous: Option<char> = None;
        for &i in &p.symbols {
            let c = match (i, previous) {
                (REPEAT_INDEX, Some(prev)) => prev,
                _ => SYMBOLS[i],
            };
            digits.push(c);
            previous = Some(c);
        }
        let confidence = p.confidences.iter().sum::<f32>() / p.confidences.len() as f32;
        out.push(SelcallSequence {
            standard: self.standard,
            digits,
            symbols,
            start_sample: p.start,
            end_sample: p.end,
            confidence,
        });
    }
}
