//! MDC1200: the decoder on arbitrary audio never panics; the block decoder
//! on arbitrary bits never panics; and any packet survives an encode/decode
//! round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::signalling::mdc1200::{self, MdcDecoder, MdcPacket};

fuzz_target!(|data: &[u8]| {
    let samples: Vec<i16> = data
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut decoder = MdcDecoder::new();
    for part in samples.chunks(160) {
        decoder.push(part);
    }
    decoder.flush();

    let mut bits = [0u8; 112];
    for (i, bit) in bits.iter_mut().enumerate() {
        *bit = data.get(i / 8).map_or(0, |b| (b >> (i % 8)) & 1);
    }
    let _ = mdc1200::decode_block(&bits);

    if data.len() >= 4 {
        let packet = MdcPacket {
            op: data[0],
            arg: data[1],
            unit_id: u16::from_le_bytes([data[2], data[3]]),
        };
        assert_eq!(
            mdc1200::decode_block(&mdc1200::encode_block(&packet.data_bytes())),
            packet.data_bytes()
        );
    }
});
