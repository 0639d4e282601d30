//! `rollcallctl decode` on audio made by sox (an independent generator):
//! prints the IDs in it, as text and JSON; refuses non-audio and truncated
//! files with a clear error and a non-zero exit.

mod support;

use std::process::Command;

use support::*;

fn sox(args: &[&str]) {
    let out = Command::new("sox")
        .args(args)
        .output()
        .expect("sox (apt install sox)");
    assert!(
        out.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn decodes_dtmf_and_refuses_bad_files() {
    let dir = TempDir::new("decode");
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // "207" as a radio sends it: 80 ms tones, 60 ms gaps, at 44.1 kHz.
    let digits = [("2", 697, 1336), ("0", 941, 1336), ("7", 852, 1209)];
    let mut parts = vec![];
    sox(&[
        "-n",
        "-r",
        "44100",
        "-b",
        "16",
        &p("gap.wav"),
        "synth",
        "0.06",
        "sine",
        "0",
    ]);
    for (d, lo, hi) in digits {
        let f = p(&format!("d{d}.wav"));
        sox(&[
            "-n",
            "-r",
            "44100",
            "-b",
            "16",
            &f,
            "synth",
            "0.08",
            "sine",
            &lo.to_string(),
            "sine",
            &hi.to_string(),
            "remix",
            "-",
            "gain",
            "-6",
        ]);
        parts.push(p("gap.wav"));
        parts.push(f);
    }
    parts.push(p("gap.wav"));
    parts.push(p("gap.wav"));
    let mut args: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
    let all = p("ptt-id.wav");
    args.push(&all);
    sox(&args);

    let out = Command::new(ROLLCALLCTL)
        .args(["decode", &all])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dtmf") && text.contains("207"), "{text}");

    let out = Command::new(ROLLCALLCTL)
        .args(["decode", "--json", &all])
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(v["kind"], "dtmf");
    assert_eq!(v["unit"], "207");
    assert!(
        v["start_s"].as_f64().unwrap() > 0.05 && v["start_s"].as_f64().unwrap() < 0.08,
        "{v}"
    );

    // Not audio.
    std::fs::write(p("notes.wav"), b"shopping list: eggs").unwrap();
    let out = Command::new(ROLLCALLCTL)
        .args(["decode", &p("notes.wav")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WAV file"));
    // Truncated inside the header.
    let bytes = std::fs::read(&all).unwrap();
    std::fs::write(p("cut.wav"), &bytes[..30]).unwrap();
    let out = Command::new(ROLLCALLCTL)
        .args(["decode", &p("cut.wav")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut.wav") && (err.contains("truncated") || err.contains("no fmt")),
        "{err}"
    );
    // Unknown selcall standard is a usage error.
    let out = Command::new(ROLLCALLCTL)
        .args(["decode", "--selcall", "morse", &all])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
