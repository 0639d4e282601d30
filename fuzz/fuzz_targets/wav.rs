//! WAV reader and resampler on arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_hw::wav;

fuzz_target!(|data: &[u8]| {
    if let Ok((samples, rate)) = wav::read_wav(data) {
        // Keep each run short: resample at most a second of audio.
        let n = samples.len().min(rate as usize);
        let out = wav::resample_to_internal(&samples[..n], rate);
        assert!(out.len() <= n * 8000 / rate as usize + 1);
    }
});
