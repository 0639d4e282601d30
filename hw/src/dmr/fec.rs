//! Forward error correction and checksums of the DMR air interface (ETSI TS
//! 102 361-1 annex B) that a Homebrew master needs to build and read data
//! bursts: Hamming (15,11,3) and (13,9,3), the BPTC (196,96) product code built
//! from them, Golay (20,8,7) for the slot type, and CRC-CCITT for CSBKs.
//!
//! Bits are handled as `bool` slices, most significant bit first, the way the
//! standard numbers them. Every function is total: decoders correct what the
//! code can correct and report the rest, they never panic.

/// Parity equations of Hamming (15,11,3) as used by BPTC rows: each row lists
/// the data bits XORed into that parity bit.
const HAMMING_15_11: [&[usize]; 4] = [
    &[0, 1, 2, 3, 5, 7, 8],
    &[1, 2, 3, 4, 6, 8, 9],
    &[2, 3, 4, 5, 7, 9, 10],
    &[0, 1, 2, 4, 6, 7, 10],
];

/// Parity equations of Hamming (13,9,3) as used by BPTC columns.
const HAMMING_13_9: [&[usize]; 4] = [
    &[0, 1, 3, 5, 6],
    &[0, 1, 2, 4, 6, 7],
    &[0, 1, 2, 3, 5, 7, 8],
    &[0, 2, 4, 5, 8],
];

/// A systematic Hamming code with four parity bits after `k` data bits.
struct Hamming {
    k: usize,
    parity: [&'static [usize]; 4],
}

const H15: Hamming = Hamming {
    k: 11,
    parity: HAMMING_15_11,
};
const H13: Hamming = Hamming {
    k: 9,
    parity: HAMMING_13_9,
};

impl Hamming {
    fn parity_bit(&self, data: &[bool], i: usize) -> bool {
        self.parity[i].iter().fold(false, |acc, &j| acc ^ data[j])
    }

    /// Writes the four parity bits after the `k` data bits of `word`.
    fn encode(&self, word: &mut [bool]) {
        for i in 0..4 {
            word[self.k + i] = self.parity_bit(word, i);
        }
    }

    /// Four-bit syndrome of `word`: zero when every parity bit checks.
    fn syndrome(&self, word: &[bool]) -> u8 {
        (0..4).fold(0u8, |s, i| {
            s | (u8::from(self.parity_bit(word, i) ^ word[self.k + i]) << i)
        })
    }

    /// The syndrome a single error at `pos` produces.
    fn error_syndrome(&self, pos: usize) -> u8 {
        if pos >= self.k {
            1 << (pos - self.k)
        } else {
            (0..4).fold(0u8, |s, i| {
                s | (u8::from(self.parity[i].contains(&pos)) << i)
            })
        }
    }

    /// Corrects a single-bit error in place. Returns `Ok(true)` when a bit
    /// was flipped, `Err(())` when the syndrome matches no single error.
    fn correct(&self, word: &mut [bool]) -> Result<bool, ()> {
        let s = self.syndrome(word);
        if s == 0 {
            return Ok(false);
        }
        match (0..self.k + 4).find(|&pos| self.error_syndrome(pos) == s) {
            Some(pos) => {
                word[pos] = !word[pos];
                Ok(true)
            }
            None => Err(()),
        }
    }
}

/// Appends Hamming (15,11,3) parity: `word[0..11]` is data, `word[11..15]` is written.
pub fn hamming_15_11_encode(word: &mut [bool; 15]) {
    H15.encode(word);
}

/// Appends Hamming (13,9,3) parity: `word[0..9]` is data, `word[9..13]` is written.
pub fn hamming_13_9_encode(word: &mut [bool; 13]) {
    H13.encode(word);
}

/// Corrects up to one bit error; `false` when the word has an uncorrectable error.
pub fn hamming_15_11_correct(word: &mut [bool; 15]) -> bool {
    H15.correct(word).is_ok()
}

/// Corrects up to one bit error; `false` when the word has an uncorrectable error.
pub fn hamming_13_9_correct(word: &mut [bool; 13]) -> bool {
    H13.correct(word).is_ok()
}

/// Generator polynomial of the (23,12) Golay code, x^11+x^10+x^6+x^5+x^4+x^2+1.
/// Golay (20,8,7) is that code shortened to 8 data bits plus an even-parity bit.
const GOLAY_23_12_POLY: u32 = 0xC75;

/// Encodes 8 data bits into a 20-bit Golay (20,8,7) codeword: data in bits
/// 19..12, parity in bits 11..0.
pub fn golay_20_8_encode(data: u8) -> u32 {
    let mut rem = u32::from(data) << 11;
    for bit in (11..19).rev() {
        if rem & (1 << bit) != 0 {
            rem ^= GOLAY_23_12_POLY << (bit - 11);
        }
    }
    let word = (u32::from(data) << 11) | (rem & 0x7FF);
    (word << 1) | (word.count_ones() & 1)
}

/// Decodes a 20-bit Golay (20,8,7) word to the nearest codeword. Returns the
/// data byte and the number of corrected bits, or `None` when more than three
/// bits are wrong (beyond what distance 7 guarantees to correct).
pub fn golay_20_8_decode(word: u32) -> Option<(u8, u32)> {
    let word = word & 0xF_FFFF;
    // 256 candidates: exhaustive nearest-codeword search is simpler than a
    // syndrome table and cheap at slot-type rates.
    let (data, distance) = (0..=255u8)
        .map(|d| (d, (golay_20_8_encode(d) ^ word).count_ones()))
        .min_by_key(|&(_, dist)| dist)?;
    (distance <= 3).then_some((data, distance))
}

/// CRC-CCITT (x^16+x^12+x^5+1, initial value 0, inverted) over `data`, as DMR
/// uses for CSBKs and data headers before the type-specific mask is applied.
pub fn crc_ccitt(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    !crc
}

/// Number of bits in a BPTC (196,96) block.
pub const BPTC_BITS: usize = 196;

const ROWS: usize = 13;
const COLS: usize = 15;
/// Rows 0..9 carry data (plus row parity); rows 9..13 are column parity.
const DATA_ROWS: usize = 9;

/// Position of matrix cell (row, col) in the de-interleaved 196-bit block:
/// bit 0 is a reserved bit ahead of the 13 × 15 matrix.
fn cell(row: usize, col: usize) -> usize {
    1 + row * COLS + col
}

/// The cells that carry the 96 information bits, in order: row 0 starts after
/// three more reserved bits, rows 1..9 carry 11 data bits each.
fn info_cells() -> impl Iterator<Item = usize> {
    (3..11)
        .map(|col| cell(0, col))
        .chain((1..DATA_ROWS).flat_map(|row| (0..11).map(move |col| cell(row, col))))
}

/// On-air position of de-interleaved bit `i`.
fn interleaved_index(i: usize) -> usize {
    (i * 181) % BPTC_BITS
}

/// Encodes 96 information bits (12 bytes) into 196 interleaved BPTC bits.
pub fn bptc_196_96_encode(info: &[u8; 12]) -> [bool; BPTC_BITS] {
    let mut block = [false; BPTC_BITS];
    for (n, pos) in info_cells().enumerate() {
        block[pos] = info[n / 8] & (0x80 >> (n % 8)) != 0;
    }
    for row in 0..DATA_ROWS {
        let mut word = [false; 15];
        word.copy_from_slice(&block[cell(row, 0)..cell(row, 0) + COLS]);
        hamming_15_11_encode(&mut word);
        block[cell(row, 0)..cell(row, 0) + COLS].copy_from_slice(&word);
    }
    for col in 0..COLS {
        let mut word = [false; ROWS];
        for (row, bit) in word.iter_mut().enumerate().take(DATA_ROWS) {
            *bit = block[cell(row, col)];
        }
        hamming_13_9_encode(&mut word);
        for (row, &bit) in word.iter().enumerate().skip(DATA_ROWS) {
            block[cell(row, col)] = bit;
        }
    }
    let mut air = [false; BPTC_BITS];
    for (i, &bit) in block.iter().enumerate() {
        air[interleaved_index(i)] = bit;
    }
    air
}

/// Result of BPTC decoding: the information bytes and how much the FEC did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BptcDecoded {
    pub info: [u8; 12],
    /// Bits flipped by the row and column Hamming codes.
    pub corrected: u32,
    /// Whether every row and column checks after correction. When `false`
    /// the information bits are a best effort; the CRC above decides.
    pub clean: bool,
}

/// Decodes 196 interleaved BPTC bits, correcting errors iteratively over
/// columns and rows (each pass can fix what the other could not).
pub fn bptc_196_96_decode(air: &[bool; BPTC_BITS]) -> BptcDecoded {
    let mut block = [false; BPTC_BITS];
    for (i, bit) in block.iter_mut().enumerate() {
        *bit = air[interleaved_index(i)];
    }
    let mut corrected = 0;
    let mut clean = false;
    for _pass in 0..5 {
        let mut changed = false;
        let mut all_ok = true;
        for col in 0..COLS {
            let mut word = [false; ROWS];
            for (row, bit) in word.iter_mut().enumerate() {
                *bit = block[cell(row, col)];
            }
            match H13.correct(&mut word) {
                Ok(true) => {
                    changed = true;
                    corrected += 1;
                    for (row, &bit) in word.iter().enumerate() {
                        block[cell(row, col)] = bit;
                    }
                }
                Ok(false) => {}
                Err(()) => all_ok = false,
            }
        }
        for row in 0..DATA_ROWS {
            let mut word = [false; 15];
            word.copy_from_slice(&block[cell(row, 0)..cell(row, 0) + COLS]);
            match H15.correct(&mut word) {
                Ok(true) => {
                    changed = true;
                    corrected += 1;
                    block[cell(row, 0)..cell(row, 0) + COLS].copy_from_slice(&word);
                }
                Ok(false) => {}
                Err(()) => all_ok = false,
            }
        }
        if !changed {
            clean = all_ok;
            break;
        }
    }
    let mut info = [0u8; 12];
    for (n, pos) in info_cells().enumerate() {
        if block[pos] {
            info[n / 8] |= 0x80 >> (n % 8);
        }
    }
    BptcDecoded {
        info,
        corrected,
        clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hamming_codes_correct_every_single_error() {
        for data in 0u16..(1 << 11) {
            let mut word = [false; 15];
            for (i, bit) in word.iter_mut().enumerate().take(11) {
                *bit = data & (1 << i) != 0;
            }
            hamming_15_11_encode(&mut word);
            let good = word;
            for pos in 0..15 {
                let mut bad = good;
                bad[pos] = !bad[pos];
                assert!(hamming_15_11_correct(&mut bad));
                assert_eq!(bad, good, "data {data:#x} error at {pos}");
            }
        }
        for data in 0u16..(1 << 9) {
            let mut word = [false; 13];
            for (i, bit) in word.iter_mut().enumerate().take(9) {
                *bit = data & (1 << i) != 0;
            }
            hamming_13_9_encode(&mut word);
            let good = word;
            for pos in 0..13 {
                let mut bad = good;
                bad[pos] = !bad[pos];
                assert!(hamming_13_9_correct(&mut bad));
                assert_eq!(bad, good);
            }
        }
    }

    #[test]
    fn golay_golden_words_and_correction() {
        // Slot types (colour code << 4 | data type): CC 1 CSBK, CC 1 data type 15,
        // CC 15 CSBK; values checked against ok-dmrlib's ETSI generator matrix.
        assert_eq!(golay_20_8_encode(0x13), 0x1_32B2);
        assert_eq!(golay_20_8_encode(0x1F), 0x1_F5E3);
        assert_eq!(golay_20_8_encode(0xF3), 0xF_3A3C);
        assert_eq!(golay_20_8_encode(0x00), 0);
        for data in 0..=255u8 {
            let word = golay_20_8_encode(data);
            assert_eq!(golay_20_8_decode(word), Some((data, 0)));
            // Any three errors are corrected.
            let bad = word ^ (1 << (data % 20)) ^ (1 << ((data / 7) % 20)) ^ (1 << 19);
            let (decoded, _) = golay_20_8_decode(bad).expect("correctable");
            assert_eq!(decoded, data);
        }
    }

    #[test]
    fn crc_ccitt_check_value() {
        // Catalogue check value of CRC-16/GSM (init 0, xorout FFFF) for "123456789".
        assert_eq!(crc_ccitt(b"123456789"), 0xCE3C);
    }

    #[test]
    fn bptc_round_trip_and_error_correction() {
        let info: [u8; 12] = *b"\xA4\x10\x00\x80\x00\x30\x39\x00\x00\x01\xAB\xCD";
        let air = bptc_196_96_encode(&info);
        let clean = bptc_196_96_decode(&air);
        assert_eq!(clean.info, info);
        assert_eq!(clean.corrected, 0);
        assert!(clean.clean);
        // A burst of errors spread by the interleaver is corrected.
        let mut noisy = air;
        for pos in [3, 50, 51, 52, 120, 195] {
            noisy[pos] = !noisy[pos];
        }
        let fixed = bptc_196_96_decode(&noisy);
        assert_eq!(fixed.info, info);
        assert!(fixed.corrected >= 6);
        assert!(fixed.clean);
    }
}
