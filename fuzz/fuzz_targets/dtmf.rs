//! DTMF decoder on arbitrary audio, in arbitrary chunks: never panics, and
//! every digit it reports is a DTMF symbol with ordered sample times.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::signalling::dtmf::{dtmf_freqs, DtmfDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let samples: Vec<i16> = rest
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut decoder = DtmfDecoder::default();
    let mut digits = Vec::new();
    for part in samples.chunks(usize::from(chunk).max(1)) {
        digits.extend(decoder.push(part));
    }
    digits.extend(decoder.flush());
    for d in digits {
        assert!(dtmf_freqs(d.digit).is_some());
        assert!(d.start_sample <= d.end_sample);
    }
});
