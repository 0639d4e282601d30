//! Decoder throughput as × real time on one core: each decoder alone and all
//! of them together (DTMF + selcall + MDC1200, as a channel runs them), fed
//! in 20 ms frames. Goal: ≥ 500× for all together.

use rollcall_hw::audio::FRAME_SAMPLES;
use rollcall_hw::signalling::dtmf::DtmfDecoder;
use rollcall_hw::signalling::impair::{add_noise, fm_channel, white_noise};
use rollcall_hw::signalling::mdc1200::{self, MdcDecoder, MdcPacket};
use rollcall_hw::signalling::selcall::SelcallDecoder;
use rollcall_hw::signalling::{encode, AniDecoder, AniDecoderConfig, SelcallStandard};
use std::hint::black_box;
use std::time::Instant;

const SECONDS: usize = 120;

fn corpus() -> Vec<i16> {
    let mut audio = Vec::with_capacity(SECONDS * 8000);
    let mut k = 0u16;
    while audio.len() < SECONDS * 8000 {
        audio.extend(mdc1200::encode(&MdcPacket::ptt_id_pre(k), 0.4));
        audio.extend(fm_channel(&white_noise(16_000, 3000.0, u64::from(k))));
        audio.extend(encode::dtmf("12345678", 70, 60, 0.4));
        audio.extend(encode::selcall(SelcallStandard::Ccir, "12345", 0.4).unwrap_or_default());
        audio.extend(encode::silence(500));
        k = k.wrapping_add(1);
    }
    audio.truncate(SECONDS * 8000);
    add_noise(&audio, 20.0, 1)
}

fn measure(name: &str, audio: &[i16], mut run: impl FnMut(&[i16]) -> usize) -> f64 {
    // Warm up, then take the best of three.
    run(&audio[..8000]);
    let mut best = f64::MAX;
    let mut events = 0;
    for _ in 0..3 {
        let t = Instant::now();
        events = 0;
        for frame in audio.chunks(FRAME_SAMPLES) {
            events += run(black_box(frame));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let realtime = audio.len() as f64 / 8000.0 / best;
    println!("| {name} | {realtime:.0}× | {events} |");
    realtime
}

fn main() {
    let audio = corpus();
    println!("## ANI decoder throughput ({SECONDS} s of audio, 20 ms frames, one core)\n");
    println!("| decoder | × real time | events |");
    println!("|---|---:|---:|");
    let mut dtmf = DtmfDecoder::default();
    measure("DTMF", &audio, |f| dtmf.push(f).len());
    for standard in [SelcallStandard::Ccir, SelcallStandard::Eia] {
        let mut sel = SelcallDecoder::new(standard);
        measure(&format!("selcall {standard}"), &audio, |f| {
            sel.push(f).len()
        });
    }
    let mut mdc = MdcDecoder::new();
    measure("MDC1200", &audio, |f| mdc.push(f).len());
    let config = AniDecoderConfig {
        dtmf: true,
        selcall: Some(SelcallStandard::Ccir),
        mdc1200: true,
    };
    let mut all = AniDecoder::new(config);
    let together = measure("all together (AniDecoder)", &audio, |f| all.push(f).len());
    println!("\nall decoders together: {together:.0}× real time per core (goal ≥ 500×)");
}
