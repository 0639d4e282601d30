//! Kenwood CAT framing and parsing: arbitrary bytes, split at an arbitrary
//! point, must never panic, and every accepted frame must re-encode to a
//! frame that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::serial::cat::{CatDecoder, Frame, IfReply};

fuzz_target!(|data: &[u8]| {
    let _ = IfReply::parse(&String::from_utf8_lossy(data));
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let mut decoder = CatDecoder::default();
    decoder.push(&data[..split]);
    let mut frames = Vec::new();
    while let Some(f) = decoder.next_frame() {
        frames.push(f);
    }
    decoder.push(&data[split..]);
    while let Some(f) = decoder.next_frame() {
        frames.push(f);
    }
    for frame in frames.into_iter().flatten() {
        let bytes = frame.encode();
        let again = Frame::parse(&bytes[..bytes.len() - 1]).expect("re-encoded frame parses");
        assert_eq!(again, frame);
        let _ = IfReply::parse(&frame.params);
    }
});
