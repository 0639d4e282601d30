//! Selcall decoders (every standard) on arbitrary audio, in arbitrary chunks:
//! never panic, and report only table symbols.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::signalling::selcall::SelcallDecoder;
use rollcall_hw::signalling::{symbol_index, SelcallStandard};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let standard = SelcallStandard::ALL[usize::from(control) % SelcallStandard::ALL.len()];
    let chunk = usize::from(control >> 3).max(1) * 7;
    let samples: Vec<i16> = rest
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut decoder = SelcallDecoder::with_min_tones(standard, 1);
    let mut found = Vec::new();
    for part in samples.chunks(chunk) {
        found.extend(decoder.push(part));
    }
    found.extend(decoder.flush());
    for seq in found {
        assert!(seq.digits.chars().all(|c| symbol_index(c).is_some()));
        assert_eq!(seq.digits.len(), seq.symbols.len());
        assert!(seq.start_sample <= seq.end_sample);
    }
});
