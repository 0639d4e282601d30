//! The Ogg page checksum: CRC-32 with polynomial 0x04C11DB7, no input or output
//! reflection, initial value 0 and no final XOR (RFC 3533 §6).
//!
//! It differs from the zlib/Ethernet CRC-32 (reflected, init and final XOR
//! 0xFFFFFFFF), so no general-purpose crate is reused here.

const POLY: u32 = 0x04C1_1DB7;

/// Byte-at-a-time lookup table, built at compile time.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ POLY
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
}

/// Continues a checksum over `bytes`; start with `crc = 0`.
pub fn update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = (crc << 8) ^ TABLE[((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// The checksum of `bytes` from the initial value 0.
pub fn checksum(bytes: &[u8]) -> u32 {
    update(0, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit reference straight from the definition, to check the table.
    fn bitwise(bytes: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in bytes {
            crc ^= (b as u32) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ POLY
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn check_value_of_crc32_mpeg2_without_init_matches() {
        // CRC-32 with poly 04C11DB7, init 0, no reflection, no xorout is the
        // catalogued "CRC-32/POSIX" before its final complement: POSIX's check
        // value for "123456789" is 0x765E7680 = !0x89A1897F.
        assert_eq!(checksum(b"123456789"), 0x89A1_897F);
        assert_eq!(!checksum(b"123456789"), 0x765E_7680);
    }

    #[test]
    fn table_matches_bitwise_definition() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        assert_eq!(checksum(&data), bitwise(&data));
        assert_eq!(checksum(&[]), 0);
        assert_eq!(checksum(&[0x80]), bitwise(&[0x80]));
    }

    #[test]
    fn update_is_incremental() {
        let data = b"OggS rollcall incremental";
        let split = update(update(0, &data[..7]), &data[7..]);
        assert_eq!(split, checksum(data));
    }
}
