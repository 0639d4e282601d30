//! `decode`: offline decoding of radio IDs in an audio file with the
//! daemon's own decoders, to check what a radio actually sends.

use std::process::ExitCode;

pub fn decode(
    path: &std::path::Path,
    rate: Option<u32>,
    selcall: Option<&str>,
    dtmf: bool,
    mdc1200: bool,
    json: bool,
) -> ExitCode {
    use rollcall_hw::signalling::{decode_recording, AniDecoderConfig, SelcallStandard};
    let selcall = match selcall {
        None => None,
        Some(s) => match SelcallStandard::parse(s) {
            Some(std) => Some(std),
            None => {
                eprintln!("rollcallctl: unknown selcall standard \"{s}\"; use ccir, ccir2, zvei1, eea or eia");
                return ExitCode::from(2);
            }
        },
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("rollcallctl: cannot read {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let config = AniDecoderConfig {
        dtmf,
        selcall,
        mdc1200,
    };
    let events = match decode_recording(&bytes, rate, &config) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("rollcallctl: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let rate = f64::from(rollcall_hw::audio::SAMPLE_RATE);
    for e in &events {
        let (start, end) = (e.start_sample as f64 / rate, e.end_sample as f64 / rate);
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "start_s": (start * 1000.0).round() / 1000.0,
                    "end_s": (end * 1000.0).round() / 1000.0,
                    "kind": e.kind.as_str(),
                    "unit": e.unit,
                    "op": format!("{:?}", e.op),
                    "detail": e.detail,
                    "confidence": e.confidence,
                })
            );
        } else {
            println!(
                "{start:8.3}s  {:<8} {:<10} {:?}{}",
                e.kind.as_str(),
                e.unit,
                e.op,
                e.detail
                    .as_ref()
                    .map(|d| format!("  ({d})"))
                    .unwrap_or_default()
            );
        }
    }
    if events.is_empty() && !json {
        eprintln!("no radio IDs found in {}", path.display());
    }
    ExitCode::SUCCESS
}
