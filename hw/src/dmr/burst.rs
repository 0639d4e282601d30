//! The 33-byte (264-bit) DMR data burst carried in a `DMRD` packet: 98 info
//! bits, 10 bits of slot type, 48 bits of sync, 10 more bits of slot type, 98
//! more info bits (ETSI TS 102 361-1 §4.2.2). The 196 info bits hold a BPTC
//! (196,96) block; the slot type holds the colour code and data type under
//! Golay (20,8,7).
//!
//! Only the BPTC-coded data types (headers, terminators, CSBKs, rate ½ data)
//! are decoded; rate ¾ (trellis) and rate 1 payloads are reported as such.
//! Decoding never panics: wrong sync, an uncorrectable slot type or an
//! unsupported data type is an error value.

use super::fec;

/// Length of a DMR burst in bytes.
pub const BURST_LEN: usize = 33;

/// 48-bit sync patterns (ETSI TS 102 361-1 §9.1.1).
pub mod sync {
    /// Base-station-sourced data sync: what a master sends towards radios.
    pub const BS_DATA: u64 = 0xDFF5_7D75_DF5D;
    /// Mobile-station-sourced data sync (simplex hotspots forward radios' data with it).
    pub const MS_DATA: u64 = 0xD5D7_F77F_D757;
    /// Base-station-sourced voice sync.
    pub const BS_VOICE: u64 = 0x755F_D7DF_75F7;
    /// Mobile-station-sourced voice sync.
    pub const MS_VOICE: u64 = 0x7F7D_5DD5_7DFD;
}

/// Sync words within this many bit errors of a pattern are accepted.
const SYNC_TOLERANCE: u32 = 4;

/// The data type in the slot type field and in a `DMRD` data frame's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    PiHeader,
    VoiceLcHeader,
    TerminatorWithLc,
    Csbk,
    MbcHeader,
    MbcContinuation,
    DataHeader,
    Rate12Data,
    Rate34Data,
    Idle,
    Rate1Data,
    /// Values 11–15, reserved by ETSI (kept so packets round-trip).
    Reserved(u8),
}

impl DataType {
    /// From the four-bit field (higher bits ignored).
    pub fn from_bits(value: u8) -> DataType {
        match value & 0x0F {
            0 => DataType::PiHeader,
            1 => DataType::VoiceLcHeader,
            2 => DataType::TerminatorWithLc,
            3 => DataType::Csbk,
            4 => DataType::MbcHeader,
            5 => DataType::MbcContinuation,
            6 => DataType::DataHeader,
            7 => DataType::Rate12Data,
            8 => DataType::Rate34Data,
            9 => DataType::Idle,
            10 => DataType::Rate1Data,
            other => DataType::Reserved(other),
        }
    }

    pub fn to_bits(self) -> u8 {
        match self {
            DataType::PiHeader => 0,
            DataType::VoiceLcHeader => 1,
            DataType::TerminatorWithLc => 2,
            DataType::Csbk => 3,
            DataType::MbcHeader => 4,
            DataType::MbcContinuation => 5,
            DataType::DataHeader => 6,
            DataType::Rate12Data => 7,
            DataType::Rate34Data => 8,
            DataType::Idle => 9,
            DataType::Rate1Data => 10,
            DataType::Reserved(v) => v & 0x0F,
        }
    }

    /// Whether the info bits are a BPTC (196,96) block.
    pub fn is_bptc(self) -> bool {
        !matches!(
            self,
            DataType::Rate34Data | DataType::Rate1Data | DataType::Reserved(_)
        )
    }
}

/// Why a burst could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BurstError {
    #[error("burst is {0} bytes, a DMR burst is 33")]
    Length(usize),
    #[error("sync {0:012X} is not a data sync pattern")]
    NotDataSync(u64),
    #[error("slot type has more than 3 bit errors")]
    SlotType,
    #[error("data type {0:?} is not BPTC (196,96) coded")]
    NotBptc(DataType),
}

/// A decoded data burst: slot type plus the 12 information bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataBurst {
    /// 0–15.
    pub colour_code: u8,
    pub data_type: DataType,
    /// The 96 information bits (CRC included, still masked).
    pub info: [u8; 12],
}

fn get_bit(bytes: &[u8], n: usize) -> bool {
    bytes[n / 8] & (0x80 >> (n % 8)) != 0
}

fn set_bit(bytes: &mut [u8], n: usize, value: bool) {
    if value {
        bytes[n / 8] |= 0x80 >> (n % 8);
    } else {
        bytes[n / 8] &= !(0x80 >> (n % 8));
    }
}

/// Burst bit positions of the 196 info bits: 0..98 and 166..264.
fn info_position(i: usize) -> usize {
    if i < 98 {
        i
    } else {
        i + 68
    }
}

/// Burst bit positions of the 20 slot type bits: 98..108 and 156..166.
fn slot_type_position(i: usize) -> usize {
    if i < 10 {
        98 + i
    } else {
        146 + i
    }
}

const SYNC_START: usize = 108;

/// The 48-bit sync (or embedded signalling) field of a burst.
pub fn sync_field(burst: &[u8; BURST_LEN]) -> u64 {
    (0..48).fold(0u64, |acc, i| {
        (acc << 1) | u64::from(get_bit(burst, SYNC_START + i))
    })
}

/// Overwrites the 48-bit sync field of a burst (e.g. voice sync in burst A).
pub fn set_sync_field(burst: &mut [u8; BURST_LEN], pattern: u64) {
    for i in 0..48 {
        set_bit(burst, SYNC_START + i, pattern & (1 << (47 - i)) != 0);
    }
}

impl DataBurst {
    /// Builds the 33-byte burst with the given 48-bit sync pattern
    /// (normally [`sync::BS_DATA`] from a master).
    pub fn encode(&self, sync_pattern: u64) -> [u8; BURST_LEN] {
        let mut burst = [0u8; BURST_LEN];
        let air = fec::bptc_196_96_encode(&self.info);
        for (i, &bit) in air.iter().enumerate() {
            set_bit(&mut burst, info_position(i), bit);
        }
        let slot_type =
            fec::golay_20_8_encode(((self.colour_code & 0x0F) << 4) | self.data_type.to_bits());
        for i in 0..20 {
            set_bit(
                &mut burst,
                slot_type_position(i),
                slot_type & (1 << (19 - i)) != 0,
            );
        }
        for i in 0..48 {
            set_bit(
                &mut burst,
                SYNC_START + i,
                sync_pattern & (1 << (47 - i)) != 0,
            );
        }
        burst
    }

    /// Decodes a data burst with BS- or MS-sourced data sync.
    pub fn decode(burst: &[u8]) -> Result<DataBurst, BurstError> {
        let burst: &[u8; BURST_LEN] = burst
            .try_into()
            .map_err(|_| BurstError::Length(burst.len()))?;
        let sync_word = sync_field(burst);
        let near = |pattern: u64| (sync_word ^ pattern).count_ones() <= SYNC_TOLERANCE;
        if !near(sync::BS_DATA) && !near(sync::MS_DATA) {
            return Err(BurstError::NotDataSync(sync_word));
        }
        let slot_type_word = (0..20).fold(0u32, |acc, i| {
            (acc << 1) | u32::from(get_bit(burst, slot_type_position(i)))
        });
        let (slot_type, _) = fec::golay_20_8_decode(slot_type_word).ok_or(BurstError::SlotType)?;
        let data_type = DataType::from_bits(slot_type);
        if !data_type.is_bptc() {
            return Err(BurstError::NotBptc(data_type));
        }
        let mut air = [false; fec::BPTC_BITS];
        for (i, bit) in air.iter_mut().enumerate() {
            *bit = get_bit(burst, info_position(i));
        }
        let decoded = fec::bptc_196_96_decode(&air);
        Ok(DataBurst {
            colour_code: slot_type >> 4,
            data_type,
            info: decoded.info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_both_data_syncs_and_noise() {
        let burst = DataBurst {
            colour_code: 7,
            data_type: DataType::Csbk,
            info: [
                0xA4, 0x10, 0, 0x80, 0x01, 0x02, 0x03, 0x00, 0x23, 0x28, 0x55, 0xAA,
            ],
        };
        for pattern in [sync::BS_DATA, sync::MS_DATA] {
            let bytes = burst.encode(pattern);
            assert_eq!(sync_field(&bytes), pattern);
            assert_eq!(DataBurst::decode(&bytes), Ok(burst));
            let mut noisy = bytes;
            noisy[0] ^= 0x80; // BPTC (burst bit 0)
            noisy[12] ^= 0x20; // slot type (burst bit 98)
            noisy[15] ^= 0x01; // sync (burst bit 127)
            assert_eq!(DataBurst::decode(&noisy), Ok(burst));
        }
    }

    #[test]
    fn rejects_voice_sync_short_input_and_trellis_data() {
        let burst = DataBurst {
            colour_code: 1,
            data_type: DataType::Csbk,
            info: [0; 12],
        };
        let voice = burst.encode(sync::BS_VOICE);
        assert_eq!(
            DataBurst::decode(&voice),
            Err(BurstError::NotDataSync(sync::BS_VOICE))
        );
        assert_eq!(DataBurst::decode(&voice[..20]), Err(BurstError::Length(20)));
        let rate34 = DataBurst {
            data_type: DataType::Rate34Data,
            ..burst
        }
        .encode(sync::BS_DATA);
        assert_eq!(
            DataBurst::decode(&rate34),
            Err(BurstError::NotBptc(DataType::Rate34Data))
        );
    }

    #[test]
    fn data_type_bits_round_trip() {
        for v in 0..16u8 {
            assert_eq!(DataType::from_bits(v).to_bits(), v);
        }
    }
}
