//! Decoder tests over sample buffers: every standard, its limits, chunking,
//! FM-channel audio with noise, and hostile input.

use super::dtmf::{DtmfConfig, DtmfDecoder, COLS, ROWS};
use super::encode::{self, dtmf_with_twist};
use super::impair::{add_noise, fm_channel, white_noise};
use super::mdc1200::{self, MdcPacket};
use super::selcall::SelcallDecoder;
use super::*;
use crate::ani::{AniKind, AniOp};

fn two_tone(f1: f32, f2: f32, ms: u32, amp: f32) -> Vec<i16> {
    let a = encode::tone(f1, ms, amp);
    let b = encode::tone(f2, ms, amp);
    a.iter()
        .zip(&b)
        .map(|(&x, &y)| x.saturating_add(y))
        .collect()
}

fn dtmf_digits(samples: &[i16]) -> String {
    let mut dec = DtmfDecoder::default();
    let mut out: String = dec.push(samples).iter().map(|d| d.digit).collect();
    out.extend(dec.flush().iter().map(|d| d.digit));
    out
}

fn cat(parts: &[Vec<i16>]) -> Vec<i16> {
    parts.concat()
}

// ---------------------------------------------------------------- DTMF

#[test]
fn dtmf_decodes_every_digit_as_one_burst() {
    let all = "0123456789ABCD*#";
    let audio = cat(&[
        encode::silence(100),
        encode::dtmf(all, 70, 50, 0.5),
        encode::silence(500),
    ]);
    let events = decode_all(&audio, &AniDecoderConfig::default());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, AniKind::Dtmf);
    assert_eq!(events[0].unit, all);
    // 100 ms of lead-in silence: the burst starts near sample 800.
    assert!(
        events[0].start_sample.abs_diff(800) < 80,
        "{}",
        events[0].start_sample
    );
    let expected_end = 800 + 16 * 960 - 400;
    assert!(
        events[0].end_sample.abs_diff(expected_end) < 120,
        "{}",
        events[0].end_sample
    );
}

#[test]
fn dtmf_bursts_split_on_a_long_pause_and_on_flush() {
    let audio = cat(&[
        encode::dtmf("123", 80, 60, 0.5),
        encode::silence(400),
        encode::dtmf("45", 80, 60, 0.5),
    ]);
    let mut dec = AniDecoder::new(AniDecoderConfig::default());
    let mut events = dec.push(&audio);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].unit, "123");
    events = dec.flush();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].unit, "45");
    assert!(events[0].start_sample > 2 * 1120 + 3200);
    assert!(dec.flush().is_empty());
}

#[test]
fn endless_signalling_is_bounded() {
    // 40 DTMF digits without a pause: reported in bursts of at most 32.
    let digits = "1234567890".repeat(4);
    let events = decode_all(
        &encode::dtmf(&digits, 50, 50, 0.5),
        &AniDecoderConfig::default(),
    );
    let units: Vec<&str> = events.iter().map(|e| e.unit.as_str()).collect();
    assert_eq!(units, [&digits[..32], &digits[32..]]);
    // A 40-tone selcall "sequence" (a warble) is not a selcall at all.
    let warble = encode::selcall(SelcallStandard::Eea, &"12".repeat(20), 0.5).unwrap();
    assert!(selcall_units(SelcallStandard::Eea, &warble).is_empty());
}

#[test]
fn dtmf_frequency_limits() {
    for (r, &row) in ROWS.iter().enumerate() {
        for (c, &col) in COLS.iter().enumerate() {
            let digit = [
                '1', '2', '3', 'A', '4', '5', '6', 'B', '7', '8', '9', 'C', '*', '0', '#', 'D',
            ][r * 4 + c];
            for dev in [-0.015f32, 0.015] {
                let a = two_tone(row * (1.0 + dev), col, 80, 0.3);
                assert_eq!(dtmf_digits(&a), digit.to_string(), "row {row} dev {dev}");
                let b = two_tone(row, col * (1.0 + dev), 80, 0.3);
                assert_eq!(dtmf_digits(&b), digit.to_string(), "col {col} dev {dev}");
            }
            for dev in [-0.035f32, 0.035, -0.05, 0.05] {
                let a = two_tone(row * (1.0 + dev), col, 80, 0.3);
                assert_eq!(dtmf_digits(&a), "", "row {row} dev {dev}");
                let b = two_tone(row, col * (1.0 + dev), 80, 0.3);
                assert_eq!(dtmf_digits(&b), "", "col {col} dev {dev}");
            }
        }
    }
}

#[test]
fn dtmf_twist_limits() {
    for digit in ["1", "5", "9", "D"] {
        let ok_normal = dtmf_with_twist(digit, 80, 0, 0.6, 7.5).unwrap();
        let ok_reverse = dtmf_with_twist(digit, 80, 0, 0.6, -3.5).unwrap();
        let bad_normal = dtmf_with_twist(digit, 80, 0, 0.6, 9.5).unwrap();
        let bad_reverse = dtmf_with_twist(digit, 80, 0, 0.6, -5.5).unwrap();
        assert_eq!(dtmf_digits(&ok_normal), digit);
        assert_eq!(dtmf_digits(&ok_reverse), digit);
        assert_eq!(dtmf_digits(&bad_normal), "");
        assert_eq!(dtmf_digits(&bad_reverse), "");
    }
    // Radio audio often needs more: the limits are configurable.
    let cfg = DtmfConfig {
        max_reverse_twist_db: 8.0,
        ..DtmfConfig::default()
    };
    let mut dec = DtmfDecoder::new(cfg);
    let audio = dtmf_with_twist("7", 80, 0, 0.6, -5.5).unwrap();
    let mut got = dec.push(&audio);
    got.extend(dec.flush());
    assert_eq!(got.len(), 1);
}

#[test]
fn dtmf_minimum_durations() {
    // 40 ms tones with 40 ms pauses: every digit, repeats included.
    assert_eq!(dtmf_digits(&encode::dtmf("1155#", 40, 40, 0.5)), "1155#");
    // 20 ms tones are too short.
    assert_eq!(dtmf_digits(&encode::dtmf("1234", 20, 40, 0.5)), "");
    // A 10 ms drop-out inside a tone does not split the digit.
    let broken = cat(&[
        encode::dtmf("8", 60, 0, 0.5),
        encode::silence(10),
        encode::dtmf("8", 60, 0, 0.5),
    ]);
    assert_eq!(dtmf_digits(&broken), "8");
    // A 40 ms pause does.
    let two = cat(&[
        encode::dtmf("8", 60, 0, 0.5),
        encode::silence(40),
        encode::dtmf("8", 60, 0, 0.5),
    ]);
    assert_eq!(dtmf_digits(&two), "88");
}

#[test]
fn dtmf_level_floor() {
    assert_eq!(dtmf_digits(&encode::dtmf("3", 80, 0, 0.02)), "3");
    assert_eq!(dtmf_digits(&encode::dtmf("3", 80, 0, 0.005)), "");
}

#[test]
fn digits_split_across_any_frame_boundary_decode_identically() {
    let audio = cat(&[
        encode::dtmf("159#", 45, 45, 0.4),
        encode::silence(400),
        mdc1200::encode(&MdcPacket::ptt_id_post(0x4321), 0.5),
        encode::selcall(SelcallStandard::Zvei1, "40102", 0.5).unwrap(),
        encode::silence(300),
    ]);
    let audio = add_noise(&audio, 20.0, 7);
    let config = AniDecoderConfig {
        selcall: Some(SelcallStandard::Zvei1),
        ..AniDecoderConfig::default()
    };
    let reference = decode_all(&audio, &config);
    let kinds: Vec<_> = reference
        .iter()
        .map(|e| (e.kind, e.unit.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (AniKind::Dtmf, "159#"),
            (AniKind::Mdc1200, "4321"),
            (AniKind::Selcall, "40102")
        ]
    );
    for chunk in [1usize, 7, 53, 106, 333, 4096] {
        let mut dec = AniDecoder::new(config.clone());
        let mut events = Vec::new();
        for part in audio.chunks(chunk) {
            events.extend(dec.push(part));
        }
        events.extend(dec.flush());
        // Which push reports an event depends on the chunking; what is
        // reported does not.
        let mut sorted = events.clone();
        sorted.sort_by_key(|e| e.start_sample);
        let mut expected = reference.clone();
        expected.sort_by_key(|e| e.start_sample);
        assert_eq!(sorted, expected, "chunk size {chunk}");
        if chunk == 160 {
            assert_eq!(events, reference);
        }
    }
}

#[test]
fn dtmf_survives_fm_channel_noise_and_squelch_tail() {
    for seed in 0..5 {
        let clean = cat(&[
            encode::silence(200),
            encode::dtmf("20517#", 70, 60, 0.4),
            encode::silence(100),
        ]);
        let mut audio = add_noise(&fm_channel(&clean), 12.0, seed);
        // Squelch tail: a loud burst of noise as the carrier drops.
        audio.extend(fm_channel(&white_noise(1200, 9000.0, seed + 100)));
        audio.extend(encode::silence(400));
        let events = decode_all(&audio, &AniDecoderConfig::default());
        assert_eq!(events.len(), 1, "seed {seed}: {events:?}");
        assert_eq!(events[0].unit, "20517#");
    }
}

// ---------------------------------------------------------------- selcall

fn selcall_units(standard: SelcallStandard, audio: &[i16]) -> Vec<(String, Option<String>)> {
    let config = AniDecoderConfig {
        dtmf: false,
        selcall: Some(standard),
        mdc1200: false,
    };
    decode_all(audio, &config)
        .into_iter()
        .map(|e| (e.unit, e.detail))
        .collect()
}

#[test]
fn selcall_every_standard_with_repeat_tones() {
    for standard in SelcallStandard::ALL {
        for digits in ["12345", "11233", "90909", "55555", "0A1F7"] {
            let audio = cat(&[
                encode::silence(100),
                encode::selcall(standard, digits, 0.5).unwrap(),
                encode::silence(400),
            ]);
            let got = selcall_units(standard, &audio);
            assert_eq!(
                got,
                [(digits.to_string(), Some(standard.as_str().to_string()))],
                "{standard} {digits}"
            );
        }
    }
}

#[test]
fn selcall_two_calls_back_to_back_and_timing() {
    let standard = SelcallStandard::Ccir;
    let audio = cat(&[
        encode::silence(50),
        encode::selcall(standard, "12345", 0.5).unwrap(),
        encode::silence(250),
        encode::selcall(standard, "67890", 0.5).unwrap(),
    ]);
    let mut dec = SelcallDecoder::new(standard);
    let mut seqs = dec.push(&audio);
    seqs.extend(dec.flush());
    assert_eq!(seqs.len(), 2);
    assert_eq!(seqs[0].digits, "12345");
    assert_eq!(seqs[1].digits, "67890");
    assert!(
        seqs[0].start_sample.abs_diff(400) < 100,
        "{}",
        seqs[0].start_sample
    );
    assert!(
        seqs[0].end_sample.abs_diff(4400) < 100,
        "{}",
        seqs[0].end_sample
    );
    assert!(seqs[0].confidence > 0.8);
}

#[test]
fn selcall_rejects_other_standards_long_tones_and_short_sequences() {
    let zvei = encode::selcall(SelcallStandard::Zvei1, "12345", 0.5).unwrap();
    assert!(selcall_units(SelcallStandard::Ccir, &zvei).is_empty());
    let eia = encode::selcall(SelcallStandard::Eia, "12345", 0.5).unwrap();
    assert!(selcall_units(SelcallStandard::Zvei1, &eia).is_empty());
    // EEA tones (40 ms) are too short for a CCIR decoder (100 ms).
    let eea = encode::selcall(SelcallStandard::Eea, "12345", 0.5).unwrap();
    assert!(selcall_units(SelcallStandard::Ccir, &eea).is_empty());
    // A 1 s carrier tone on a selcall frequency followed by tones is spoiled.
    let long = cat(&[
        encode::tone(1981.0, 1000, 0.5),
        encode::selcall(SelcallStandard::Ccir, "1234", 0.5).unwrap(),
    ]);
    assert!(selcall_units(SelcallStandard::Ccir, &long).is_empty());
    // A repeat tone first, or twice in a row, is not a valid sequence.
    let tones = |symbols: &str| -> Vec<i16> {
        symbols
            .chars()
            .flat_map(|c| encode::tone(SelcallStandard::Ccir.tone_of(c).unwrap(), 100, 0.5))
            .collect()
    };
    assert!(selcall_units(SelcallStandard::Ccir, &tones("E1234")).is_empty());
    assert!(selcall_units(SelcallStandard::Ccir, &tones("12EE4")).is_empty());
    assert_eq!(
        selcall_units(SelcallStandard::Ccir, &tones("12E45")).len(),
        1
    );
    // Tones with gaps between them take too long for a sequence.
    let gappy: Vec<i16> = "12345"
        .chars()
        .flat_map(|c| {
            cat(&[
                encode::tone(SelcallStandard::Ccir.tone_of(c).unwrap(), 100, 0.5),
                encode::silence(100),
            ])
        })
        .collect();
    assert!(selcall_units(SelcallStandard::Ccir, &gappy).is_empty());
    let short = encode::selcall(SelcallStandard::Ccir, "123", 0.5).unwrap();
    assert!(selcall_units(SelcallStandard::Ccir, &short).is_empty());
    let mut dec = SelcallDecoder::with_min_tones(SelcallStandard::Ccir, 3);
    let mut got = dec.push(&short);
    got.extend(dec.flush());
    assert_eq!(got.len(), 1);
}

#[test]
fn selcall_survives_fm_channel_and_noise() {
    for standard in SelcallStandard::ALL {
        for seed in 0..4 {
            let clean = cat(&[
                encode::silence(100),
                encode::selcall(standard, "24680", 0.4).unwrap(),
                encode::silence(300),
            ]);
            let audio = add_noise(&fm_channel(&clean), 12.0, seed);
            let got = selcall_units(standard, &audio);
            assert_eq!(got.len(), 1, "{standard} seed {seed}: {got:?}");
            assert_eq!(got[0].0, "24680");
        }
    }
}

#[test]
fn selcall_frequency_tolerance() {
    // 1.5 % off-frequency still decodes; 4 % off does not (nor does it pass
    // for the neighbouring tone).
    let standard = SelcallStandard::Ccir;
    let seq = |scale: f32| -> Vec<i16> {
        "12345"
            .chars()
            .flat_map(|c| encode::tone(standard.tone_of(c).unwrap() * scale, 100, 0.5))
            .collect()
    };
    assert_eq!(selcall_units(standard, &seq(1.015)).len(), 1);
    assert!(selcall_units(standard, &seq(1.04)).is_empty());
    assert!(selcall_units(standard, &seq(0.96)).is_empty());
    assert_eq!(selcall_units(standard, &seq(0.985)).len(), 1);
}

// ---------------------------------------------------------------- MDC1200

#[test]
fn mdc_crc_and_block_match_hand_checked_vectors() {
    // Computed with an independent bit-by-bit model of the format (CRC run
    // MSB first over bit-reversed bytes with poly 0x1021, result reversed and
    // inverted; shift-register parity; 16×7 interleave).
    let cases: [(MdcPacket, u16, [u8; 14]); 4] = [
        (
            MdcPacket::ptt_id_pre(0x1234),
            0x3e2e,
            [
                0x8e, 0x94, 0x2a, 0x2e, 0x06, 0x99, 0x22, 0x04, 0x00, 0x1c, 0x18, 0xa2, 0x2c, 0x88,
            ],
        ),
        (
            MdcPacket::emergency(0xBEEF),
            0x1648,
            [
                0x16, 0x37, 0x68, 0x61, 0x1a, 0x0a, 0x3c, 0x54, 0x30, 0x28, 0x30, 0x00, 0x34, 0x7a,
            ],
        ),
        (
            MdcPacket::radio_check(0x0001),
            0x670e,
            [
                0x86, 0xb0, 0xe0, 0x8f, 0x00, 0xae, 0x52, 0xf5, 0x02, 0x02, 0x8c, 0x1e, 0x8c, 0xe8,
            ],
        ),
        (
            MdcPacket::radio_check_ack(0xFFFF),
            0x43b5,
            [
                0x18, 0x52, 0x1c, 0x00, 0x3c, 0x67, 0x38, 0x21, 0xbe, 0xc6, 0xb4, 0x8a, 0x3c, 0x86,
            ],
        ),
    ];
    for (packet, crc, air) in cases {
        let data = packet.data_bytes();
        assert_eq!(mdc1200::crc16(&data[..4]), crc, "{packet:?}");
        let bits = mdc1200::encode_block(&data);
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|b| b.iter().fold(0, |acc, &x| (acc << 1) | x))
            .collect();
        assert_eq!(bytes, air, "{packet:?}");
        assert_eq!(mdc1200::decode_block(&bits), data);
    }
}

#[test]
fn mdc_burst_layout() {
    let bits = mdc1200::burst_bits(&MdcPacket::ptt_id_pre(0x1234));
    assert_eq!(bits.len(), 208);
    let bytes: Vec<u8> = bits
        .chunks(8)
        .map(|b| b.iter().fold(0, |acc, &x| (acc << 1) | x))
        .collect();
    assert_eq!(
        &bytes[..12],
        &[0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x07, 0x09, 0x2A, 0x44, 0x6F]
    );
    // 208 bits at 1200 baud = 173.3 ms.
    assert_eq!(mdc1200::encode(&MdcPacket::ptt_id_pre(1), 0.5).len(), 1387);
}

#[test]
fn mdc_fec_corrects_two_errors_and_crc_rejects_more() {
    let data = MdcPacket::emergency(0x0042).data_bytes();
    let clean = mdc1200::encode_block(&data);
    for (a, b) in [(0usize, 50usize), (3, 97), (17, 18), (111, 64)] {
        let mut bits = clean;
        bits[a] ^= 1;
        bits[b] ^= 1;
        assert_eq!(mdc1200::decode_block(&bits), data, "errors at {a}, {b}");
    }
    // Garbage never passes the CRC check as this packet.
    let mut bits = clean;
    for k in (0..112).step_by(5) {
        bits[k] ^= 1;
    }
    let decoded = mdc1200::decode_block(&bits);
    let crc = mdc1200::crc16(&decoded[..4]);
    assert!(decoded != data);
    assert!(decoded[4] != crc as u8 || decoded[5] != (crc >> 8) as u8);
}

fn mdc_events(audio: &[i16]) -> Vec<AniEvent> {
    let config = AniDecoderConfig {
        dtmf: false,
        selcall: None,
        mdc1200: true,
    };
    decode_all(audio, &config)
}

#[test]
fn mdc_roundtrip_every_op_any_phase_and_offset() {
    let packets = [
        (MdcPacket::ptt_id_pre(0x1234), AniOp::PttIdPre),
        (MdcPacket::ptt_id_post(0x00AB), AniOp::PttIdPost),
        (MdcPacket::emergency(0xBEEF), AniOp::Emergency),
        (MdcPacket::radio_check(0x0001), AniOp::RadioCheckRequest),
        (MdcPacket::radio_check_ack(0xFFFF), AniOp::RadioCheckAck),
        (
            MdcPacket {
                op: 0x46,
                arg: 0x03,
                unit_id: 0x5150,
            },
            AniOp::Other {
                op: 0x46,
                arg: 0x03,
            },
        ),
    ];
    for (i, (packet, op)) in packets.iter().enumerate() {
        for offset in [0usize, 1, 3, 5, 6] {
            let phase = i as f64 * 0.9 + offset as f64 * 0.37;
            let burst = mdc1200::modulate(&mdc1200::burst_bits(packet), 0.5, phase);
            let audio = cat(&[vec![0; 400 + offset], burst, encode::silence(100)]);
            let events = mdc_events(&audio);
            assert_eq!(events.len(), 1, "{packet:?} offset {offset}: {events:?}");
            let e = &events[0];
            assert_eq!(e.unit, format!("{:04X}", packet.unit_id));
            assert_eq!(e.op, *op);
            assert_eq!(e.confidence, 1.0);
            assert!(
                e.start_sample.abs_diff(400 + offset as u64) < 40,
                "start {}",
                e.start_sample
            );
            assert!(
                e.end_sample.abs_diff(400 + offset as u64 + 1387) < 40,
                "end {}",
                e.end_sample
            );
        }
    }
}

#[test]
fn mdc_survives_fm_channel_noise_and_level() {
    let mut decoded = 0;
    for seed in 0..20u64 {
        let clean = cat(&[
            encode::silence(100),
            mdc1200::encode(&MdcPacket::ptt_id_pre(0x2000 + seed as u16), 0.3),
            encode::silence(100),
        ]);
        let audio = add_noise(&fm_channel(&clean), 3.0, seed);
        let events = mdc_events(&audio);
        assert!(events.len() <= 1);
        if events
            .first()
            .is_some_and(|e| e.unit == format!("{:04X}", 0x2000 + seed))
        {
            decoded += 1;
        }
    }
    assert!(decoded >= 19, "decoded {decoded}/20 at 3 dB SNR");
    // A sound card 0.2 % off its nominal rate shifts tones and baud alike;
    // the phase tracker follows.
    for (from, to) in [(8016, 8000), (8000, 8016)] {
        let burst = cat(&[
            encode::silence(50),
            mdc1200::encode(&MdcPacket::emergency(0x0BAD), 0.5),
            encode::silence(100),
        ]);
        let skewed = crate::wav::resample(&burst, from, to);
        let events = mdc_events(&add_noise(&skewed, 10.0, 3));
        assert_eq!(events.len(), 1, "{from}->{to}");
        assert_eq!(events[0].unit, "0BAD");
    }
    // Quiet audio (−40 dBFS) decodes as well as loud.
    let quiet = cat(&[
        encode::silence(50),
        mdc1200::encode(&MdcPacket::ptt_id_post(7), 0.01),
        encode::silence(50),
    ]);
    assert_eq!(mdc_events(&quiet).len(), 1);
}

#[test]
fn mdc_pre_and_post_around_voice() {
    let voice = fm_channel(&white_noise(8000, 3000.0, 5));
    let audio = cat(&[
        mdc1200::encode(&MdcPacket::ptt_id_pre(0x0815), 0.5),
        voice,
        mdc1200::encode(&MdcPacket::ptt_id_post(0x0815), 0.5),
    ]);
    let events = decode_all(&audio, &AniDecoderConfig::default());
    let ops: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.unit.as_str(), e.op))
        .collect();
    assert_eq!(
        ops,
        [
            (AniKind::Mdc1200, "0815", AniOp::PttIdPre),
            (AniKind::Mdc1200, "0815", AniOp::PttIdPost)
        ]
    );
}

// ---------------------------------------------------------------- hostile input

#[test]
fn hostile_audio_never_panics_or_invents_events() {
    let square = |period: usize| -> Vec<i16> {
        (0..16000)
            .map(|i| {
                if (i / period) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect()
    };
    let inputs: Vec<Vec<i16>> = vec![
        vec![],
        vec![0; 16000],
        vec![i16::MAX; 16000],
        vec![i16::MIN; 16000],
        square(1),
        square(3),
        square(6),
        square(40),
        (0..16000)
            .map(|i| if i % 2 == 0 { i16::MIN } else { 0 })
            .collect(),
        white_noise(16000, 40000.0, 1),
    ];
    let config = AniDecoderConfig {
        dtmf: true,
        selcall: Some(SelcallStandard::Eia),
        mdc1200: true,
    };
    for (i, input) in inputs.iter().enumerate() {
        let events = decode_all(input, &config);
        assert!(events.is_empty(), "input {i}: {events:?}");
    }
}

#[test]
fn no_false_events_in_half_a_minute_of_noise() {
    let noise = fm_channel(&white_noise(240_000, 5000.0, 11));
    let config = AniDecoderConfig {
        dtmf: true,
        selcall: Some(SelcallStandard::Eia),
        mdc1200: true,
    };
    assert!(decode_all(&noise, &config).is_empty());
}

#[test]
fn decode_recording_reads_wav_and_raw() {
    let audio = cat(&[
        encode::silence(100),
        mdc1200::encode(&MdcPacket::ptt_id_post(0x77), 0.5),
        encode::silence(100),
    ]);
    let at_16k = crate::wav::resample(&audio, 8000, 16000);
    let wav = crate::wav::write_wav(&at_16k, 16000);
    let raw: Vec<u8> = at_16k.iter().flat_map(|s| s.to_le_bytes()).collect();
    let config = AniDecoderConfig::default();
    let from_wav = decode_recording(&wav, None, &config).unwrap();
    let from_raw = decode_recording(&raw, Some(16000), &config).unwrap();
    assert_eq!(from_wav.len(), 1);
    assert_eq!(from_wav[0].unit, "0077");
    assert_eq!(from_wav, from_raw);
    assert!(decode_recording(b"not audio", None, &config).is_err());
    assert!(decode_recording(&raw, Some(10), &config).is_err());
}

#[test]
fn dc_offset_does_not_hide_signalling() {
    let audio = cat(&[
        encode::silence(100),
        encode::dtmf("1234", 70, 60, 0.3),
        encode::silence(400),
        encode::selcall(SelcallStandard::Eia, "12345", 0.3).unwrap(),
        encode::silence(200),
        mdc1200::encode(&MdcPacket::ptt_id_pre(0x4242), 0.3),
        encode::silence(100),
    ]);
    let shifted: Vec<i16> = audio.iter().map(|&s| s.saturating_add(12000)).collect();
    let config = AniDecoderConfig {
        selcall: Some(SelcallStandard::Eia),
        ..AniDecoderConfig::default()
    };
    let units: Vec<String> = decode_all(&shifted, &config)
        .into_iter()
        .map(|e| e.unit)
        .collect();
    assert_eq!(units, ["1234", "12345", "4242"]);
}

#[test]
fn hard_clipped_audio_still_decodes() {
    // Transmitters limit deviation: loud signalling arrives clipped, up to
    // 18 dB here.
    for clip in [16_000i16, 8000, 4000] {
        let audio: Vec<i16> = cat(&[
            encode::silence(100),
            encode::dtmf("1592#", 70, 60, 1.0),
            encode::silence(400),
            encode::selcall(SelcallStandard::Ccir, "12345", 1.0).unwrap(),
            encode::silence(300),
            mdc1200::encode(&MdcPacket::radio_check_ack(0x0042), 1.0),
            encode::silence(100),
        ])
        .iter()
        .map(|&s| s.clamp(-clip, clip))
        .collect();
        let config = AniDecoderConfig {
            selcall: Some(SelcallStandard::Ccir),
            ..AniDecoderConfig::default()
        };
        let units: Vec<String> = decode_all(&audio, &config)
            .into_iter()
            .map(|e| e.unit)
            .collect();
        assert_eq!(units, ["1592#", "12345", "0042"], "clipped at {clip}");
    }
}
