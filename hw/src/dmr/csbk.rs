//! Control Signalling BlocK (CSBK): 12 bytes = last-block and protect flags,
//! a 6-bit opcode, the feature set id (FID), 8 opcode-specific bytes and a
//! CRC-CCITT masked with `A5A5` (ETSI TS 102 361-2 §7.1.2).
//!
//! The one CSBK rollcalld originates is the radio check (opcode 0x24 with the
//! Motorola FID 0x10), checked against MMDVMHost's `DMRCSBK.cpp`: the same
//! opcode serves request and acknowledgement, byte 3 is `0x80` in a request
//! and anything else in an ack, and the two id fields swap meaning:
//! - request: bytes 4–6 = the radio being checked, bytes 7–9 = the checker;
//! - ack: bytes 4–6 = the radio that answers (the one checked), bytes 7–9 =
//!   the checker it answers.
//!
//! So bytes 4–6 always name the checked radio, which is what a reply is
//! matched on.

use super::burst::{sync, DataBurst, DataType, BURST_LEN};
use super::fec::crc_ccitt;

/// CRC mask for CSBKs (ETSI TS 102 361-1 §B.3.12).
pub const CSBK_CRC_MASK: u16 = 0xA5A5;
/// Radio check / radio check ack opcode.
pub const OPCODE_RADIO_CHECK: u8 = 0x24;
/// Motorola (DMRA) feature set id, used by radio checks.
pub const FID_MOTOROLA: u8 = 0x10;
/// Byte 3 of a radio-check request; any other value is an ack.
const RADIO_CHECK_REQUEST_MARK: u8 = 0x80;

/// A CSBK as a value. [`Csbk::to_bytes`] computes the CRC;
/// [`Csbk::from_bytes`] verifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Csbk {
    pub last_block: bool,
    pub protect: bool,
    /// Six bits.
    pub opcode: u8,
    pub fid: u8,
    /// Bytes 2–9: the opcode-specific fields.
    pub body: [u8; 8],
}

/// Why 12 bytes are not a CSBK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsbkError {
    #[error("CSBK CRC {received:04X} does not match computed {computed:04X} (mask A5A5)")]
    Crc { received: u16, computed: u16 },
    #[error("burst carries data type {0:?}, not a CSBK")]
    NotCsbk(DataType),
    #[error(transparent)]
    Burst(#[from] super::burst::BurstError),
}

/// A radio check, either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RadioCheck {
    /// `checker` asks whether `radio` is on the air.
    Request { radio: u32, checker: u32 },
    /// `radio` answers `checker`.
    Ack { radio: u32, checker: u32 },
}

fn put_id(bytes: &mut [u8], id: u32) {
    bytes[0] = (id >> 16) as u8;
    bytes[1] = (id >> 8) as u8;
    bytes[2] = id as u8;
}

fn get_id(bytes: &[u8]) -> u32 {
    (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2])
}

impl Csbk {
    /// The 12 bytes with the masked CRC in bytes 10–11.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut bytes = [0u8; 12];
        bytes[0] =
            (u8::from(self.last_block) << 7) | (u8::from(self.protect) << 6) | (self.opcode & 0x3F);
        bytes[1] = self.fid;
        bytes[2..10].copy_from_slice(&self.body);
        let crc = crc_ccitt(&bytes[..10]) ^ CSBK_CRC_MASK;
        bytes[10..12].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    /// Parses 12 bytes, rejecting a wrong CRC.
    pub fn from_bytes(bytes: &[u8; 12]) -> Result<Csbk, CsbkError> {
        let received = u16::from_be_bytes([bytes[10], bytes[11]]);
        let computed = crc_ccitt(&bytes[..10]) ^ CSBK_CRC_MASK;
        if received != computed {
            return Err(CsbkError::Crc { received, computed });
        }
        let mut body = [0u8; 8];
        body.copy_from_slice(&bytes[2..10]);
        Ok(Csbk {
            last_block: bytes[0] & 0x80 != 0,
            protect: bytes[0] & 0x40 != 0,
            opcode: bytes[0] & 0x3F,
            fid: bytes[1],
            body,
        })
    }

    /// Encodes into a 33-byte data burst (BPTC, slot type, BS data sync).
    pub fn to_burst(&self, colour_code: u8) -> [u8; BURST_LEN] {
        self.to_burst_with_sync(colour_code, sync::BS_DATA)
    }

    /// As [`Csbk::to_burst`] with an explicit sync pattern (a simulated
    /// simplex hotspot forwards radios' bursts with MS data sync).
    pub fn to_burst_with_sync(&self, colour_code: u8, sync_pattern: u64) -> [u8; BURST_LEN] {
        DataBurst {
            colour_code,
            data_type: DataType::Csbk,
            info: self.to_bytes(),
        }
        .encode(sync_pattern)
    }

    /// Decodes a 33-byte burst that should carry a CSBK. Returns the colour
    /// code with it.
    pub fn from_burst(burst: &[u8]) -> Result<(Csbk, u8), CsbkError> {
        let data = DataBurst::decode(burst)?;
        if data.data_type != DataType::Csbk {
            return Err(CsbkError::NotCsbk(data.data_type));
        }
        Ok((Csbk::from_bytes(&data.info)?, data.colour_code))
    }

    /// The CSBK for a radio check (request or ack).
    pub fn radio_check(check: RadioCheck) -> Csbk {
        let (mark, radio, checker) = match check {
            RadioCheck::Request { radio, checker } => (RADIO_CHECK_REQUEST_MARK, radio, checker),
            RadioCheck::Ack { radio, checker } => (0x00, radio, checker),
        };
        let mut body = [0u8; 8];
        body[1] = mark;
        put_id(&mut body[2..5], radio);
        put_id(&mut body[5..8], checker);
        Csbk {
            last_block: true,
            protect: false,
            opcode: OPCODE_RADIO_CHECK,
            fid: FID_MOTOROLA,
            body,
        }
    }

    /// Reads this CSBK as a radio check, if it is one.
    pub fn as_radio_check(&self) -> Option<RadioCheck> {
        if self.opcode != OPCODE_RADIO_CHECK || self.fid != FID_MOTOROLA {
            return None;
        }
        let radio = get_id(&self.body[2..5]);
        let checker = get_id(&self.body[5..8]);
        Some(if self.body[1] == RADIO_CHECK_REQUEST_MARK {
            RadioCheck::Request { radio, checker }
        } else {
            RadioCheck::Ack { radio, checker }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Radio check from checker 9990 to radio 2_300_001 (0x231861), FID 0x10.
    /// CRC computed with CRC-CCITT ^ A5A5 and cross-checked with ok-dmrlib.
    /// The masked CRC (FF1F) was computed independently by ok-dmrlib's
    /// `CRC16.calculate(data, CrcMasks.CSBK)`.
    const REQUEST: [u8; 12] = [
        0xA4, 0x10, 0x00, 0x80, 0x23, 0x18, 0x61, 0x00, 0x27, 0x06, 0xFF, 0x1F,
    ];
    /// The matching ack; CRC 54E6 from ok-dmrlib likewise.
    const ACK: [u8; 12] = [
        0xA4, 0x10, 0x00, 0x00, 0x23, 0x18, 0x61, 0x00, 0x27, 0x06, 0x54, 0xE6,
    ];

    #[test]
    fn radio_check_request_golden_bytes() {
        let csbk = Csbk::radio_check(RadioCheck::Request {
            radio: 2_300_001,
            checker: 9990,
        });
        assert_eq!(csbk.to_bytes(), REQUEST);
        assert_eq!(Csbk::from_bytes(&REQUEST), Ok(csbk));
        assert_eq!(
            csbk.as_radio_check(),
            Some(RadioCheck::Request {
                radio: 2_300_001,
                checker: 9990
            })
        );
    }

    #[test]
    fn radio_check_ack_golden_bytes() {
        let ack = Csbk::radio_check(RadioCheck::Ack {
            radio: 2_300_001,
            checker: 9990,
        });
        assert_eq!(ack.to_bytes(), ACK);
        assert_eq!(
            Csbk::from_bytes(&ACK).map(|c| c.as_radio_check()),
            Ok(Some(RadioCheck::Ack {
                radio: 2_300_001,
                checker: 9990
            }))
        );
    }

    #[test]
    fn crc_without_mask_is_rejected() {
        let mut bytes = REQUEST;
        let unmasked = crc_ccitt(&bytes[..10]);
        bytes[10..].copy_from_slice(&unmasked.to_be_bytes());
        assert!(matches!(
            Csbk::from_bytes(&bytes),
            Err(CsbkError::Crc { .. })
        ));
    }

    /// The radio-check request of [`REQUEST`] as a complete burst with colour
    /// code 1 and BS data sync. ok-dmrlib (`hw/tests/dmr_csbk_check.py`) reads
    /// these bytes as sync BsSourcedData, CC 1, CSBK, CRC valid, opcode 0x24,
    /// FID 0x10, ids 2300001 / 9990.
    const REQUEST_BURST: [u8; 33] = [
        0x00, 0x73, 0x89, 0xFE, 0x37, 0xF8, 0x9B, 0xEC, 0x34, 0x70, 0x98, 0x40, 0x84, 0xCD, 0xFF,
        0x57, 0xD7, 0x5D, 0xF5, 0xDA, 0xCA, 0x37, 0x27, 0x18, 0xE6, 0x58, 0x45, 0x07, 0x24, 0x0A,
        0x1C, 0x91, 0x38,
    ];

    #[test]
    fn radio_check_request_golden_burst() {
        let csbk = Csbk::radio_check(RadioCheck::Request {
            radio: 2_300_001,
            checker: 9990,
        });
        assert_eq!(csbk.to_burst(1), REQUEST_BURST);
        assert_eq!(Csbk::from_burst(&REQUEST_BURST), Ok((csbk, 1)));
    }

    #[test]
    fn burst_round_trip() {
        let csbk = Csbk::radio_check(RadioCheck::Request {
            radio: 16_777_215,
            checker: 1,
        });
        let burst = csbk.to_burst(12);
        assert_eq!(Csbk::from_burst(&burst), Ok((csbk, 12)));
    }
}
