//! What recording costs per channel: libopus at 8 kHz plus Ogg page writing,
//! next to bare libopus encoding the same audio with the same settings, in
//! CPU-ms per audio-second and channels per core. Goal: the recorder within
//! 1.1× of bare libopus. Also: creating an encoder versus resetting one (the
//! reuse between transmissions), and page overhead in bytes.
//!
//! Run: `cargo bench -p rollcall-hw --bench recorder_cost`.

#[path = "../tests/ogg_support/mod.rs"]
mod ogg_support;

use std::hint::black_box;

use rollcall_hw::audio::{AudioFrame, SAMPLE_RATE};
use rollcall_hw::ogg::{
    Direction, EncoderSettings, OggOpusEncoder, RecordingWriter, DEFAULT_BITRATE_BPS,
};

const AUDIO_SECONDS: usize = 60;
const REPEATS: usize = 5;

/// CPU time of this thread in nanoseconds (what a recorder channel costs,
/// unlike wall time on a shared machine).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Least CPU time over `REPEATS` runs of `f`, in ms.
fn best_of(mut f: impl FnMut()) -> f64 {
    (0..REPEATS)
        .map(|_| {
            let start = thread_cpu_ns();
            f();
            (thread_cpu_ns() - start) as f64 / 1e6
        })
        .fold(f64::INFINITY, f64::min)
}

fn bare_encoder(complexity: i32) -> opus::Encoder {
    let mut e = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
        .expect("encoder");
    e.set_bitrate(opus::Bitrate::Bits(DEFAULT_BITRATE_BPS))
        .expect("bitrate");
    e.set_complexity(complexity).expect("complexity");
    e.set_signal(opus::Signal::Voice).expect("signal");
    e.set_max_bandwidth(opus::Bandwidth::Narrowband)
        .expect("bandwidth");
    e
}

fn main() {
    let audio: Vec<AudioFrame> = ogg_support::speech_like(AUDIO_SECONDS * 50);
    let tags = ogg_support::tags(Direction::Rx);
    let dir = ogg_support::TempDir::new("bench");
    println!(
        "recorder cost, {AUDIO_SECONDS} s of speech-like audio at 8 kHz, {} kbit/s, best of {REPEATS}",
        DEFAULT_BITRATE_BPS / 1000
    );
    println!(
        "{:>10} {:>24} {:>9} {:>14}",
        "complexity", "variant", "ms/s", "channels/core"
    );
    for complexity in [5, 10] {
        let mut bare = bare_encoder(complexity);
        let mut packet = [0u8; 1275];
        let mut raw_bytes = 0usize;
        let bare_ms = best_of(|| {
            bare.reset_state().expect("reset");
            raw_bytes = 0;
            for f in &audio {
                raw_bytes += bare.encode(&f.samples, &mut packet).expect("encode");
            }
            black_box(&packet);
        });

        let settings = EncoderSettings::new(None, complexity).expect("settings");
        let mut enc = OggOpusEncoder::new(settings).expect("encoder");
        let mut out = Vec::with_capacity(4096);
        let mut ogg_bytes = 0u64;
        let core_ms = best_of(|| {
            out.clear();
            enc.start(&tags, 1, &mut out).expect("start");
            for f in &audio {
                enc.push_frame(f, &mut out).expect("push");
                // Pages are handed on and dropped, as the file shell does.
                out.clear();
            }
            ogg_bytes = enc.finish(&mut out).expect("finish").bytes;
        });

        let mut n = 0;
        let file_ms = best_of(|| {
            n += 1;
            let path = dir.join(&format!("c{complexity}-{n}.opus"));
            let mut w = RecordingWriter::create(&path, &tags, None, complexity).expect("create");
            for f in &audio {
                w.push_frame(f).expect("push");
            }
            w.finish().expect("finish");
            let _ = std::fs::remove_file(&path);
        });

        for (variant, ms) in [
            ("bare libopus", bare_ms),
            ("OggOpusEncoder (Vec)", core_ms),
            ("RecordingWriter (file)", file_ms),
        ] {
            let per_second = ms / AUDIO_SECONDS as f64;
            println!(
                "{complexity:>10} {variant:>24} {per_second:>9.3} {:>14.0}",
                1000.0 / per_second
            );
        }
        println!(
            "{complexity:>10} {:>24} {:>9.3}x (goal <= 1.10x); file writer {:.3}x incl. create+fsync",
            "recorder / bare",
            core_ms / bare_ms,
            file_ms / bare_ms
        );
        println!(
            "{complexity:>10} {:>24} {:>9.1} % ({} packet bytes, {} file bytes)",
            "Ogg overhead",
            (ogg_bytes as f64 / raw_bytes as f64 - 1.0) * 100.0,
            raw_bytes,
            ogg_bytes
        );
    }

    // Per-transmission set-up: a new libopus state versus reusing one.
    const SETUPS: usize = 2000;
    let settings = EncoderSettings::default();
    let create_ms = best_of(|| {
        for _ in 0..SETUPS {
            black_box(OggOpusEncoder::new(settings).expect("encoder"));
        }
    });
    let mut enc = OggOpusEncoder::new(settings).expect("encoder");
    let mut out = Vec::new();
    let reuse_ms = best_of(|| {
        for _ in 0..SETUPS {
            out.clear();
            enc.start(&tags, 1, &mut out).expect("start");
            enc.abandon();
        }
    });
    let header_ms = best_of(|| {
        for _ in 0..SETUPS {
            let mut e = OggOpusEncoder::new(settings).expect("encoder");
            out.clear();
            e.start(&tags, 1, &mut out).expect("start");
        }
    });
    println!(
        "per transmission: new encoder + headers {:.1} us, reused encoder (reset) + headers {:.1} us, new encoder alone {:.1} us",
        header_ms * 1000.0 / SETUPS as f64,
        reuse_ms * 1000.0 / SETUPS as f64,
        create_ms * 1000.0 / SETUPS as f64
    );
}
