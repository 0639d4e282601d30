//! G.711 µ-law (PCMU, PT 0) and A-law (PCMA, PT 8) companding, ITU-T G.711.
//!
//! Pure sample conversions; every byte value decodes, so there is nothing to
//! reject.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Encodes one linear sample to µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(ULAW_CLIP) + ULAW_BIAS;
    // Exponent: position of the highest set bit above bit 7.
    let exponent = (31 - (s as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Decodes one µ-law byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let exponent = ((b >> 4) & 0x07) as i32;
    let mantissa = (b & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if b & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one linear sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 {
        (0x80u8, (sample as i32) >> 3)
    } else {
        (0x00u8, (-(sample as i32) - 1) >> 3)
    };
    let magnitude = magnitude.min(0x0fff);
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        // Segment = position of the highest set bit above bit 4.
        let segment = (31 - (magnitude as u32).leading_zeros()) as i32 - 4;
        let mantissa = (magnitude >> segment) & 0x0f;
        ((segment << 4) | mantissa) as u8
    };
    (sign | code) ^ 0x55
}

/// Decodes one A-law byte.
pub fn alaw_decode(byte: u8) -> i16 {
    let b = byte ^ 0x55;
    let exponent = ((b >> 4) & 0x07) as i32;
    let mantissa = (b & 0x0f) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if b & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_decode(0xaa), 32256);
    }

    #[test]
    fn every_code_round_trips_and_error_is_bounded() {
        for code in 0..=255u8 {
            // 0x7f and 0xff both mean zero in µ-law.
            let u = ulaw_decode(code);
            assert_eq!(ulaw_decode(ulaw_encode(u)), u, "ulaw {code:#x}");
            let a = alaw_decode(code);
            assert_eq!(alaw_encode(a), code, "alaw {code:#x}");
        }
        for s in (-32768..=32767).step_by(7) {
            let s = s as i16;
            let tolerance = (s as i32).abs() / 16 + 16;
            assert!((ulaw_decode(ulaw_encode(s)) as i32 - s as i32).abs() <= tolerance);
            assert!((alaw_decode(alaw_encode(s)) as i32 - s as i32).abs() <= tolerance);
        }
    }
}
