//! Channel impairments for tests and benches: white noise at a given SNR and a
//! model of FM receiver audio (300–3000 Hz band, residual de-emphasis tilt).
//!
//! Deterministic (seeded) so tests are repeatable.

/// A small deterministic Gaussian noise source (xorshift64* + Box–Muller).
#[derive(Debug, Clone)]
pub struct Noise {
    state: u64,
    spare: Option<f64>,
}

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// One standard-normal sample.
    pub fn gaussian(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * v;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.uniform()
    }
}

/// Mean power of the samples that are not exactly zero (the signal while it
/// sounds), so gaps between tones do not dilute the SNR.
pub fn active_power(signal: &[i16]) -> f64 {
    let (sum, n) = signal
        .iter()
        .filter(|&&s| s != 0)
        .fold((0.0f64, 0usize), |(sum, n), &s| {
            (sum + f64::from(s).powi(2), n + 1)
        });
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Adds white Gaussian noise (full 0–4 kHz band) so that the signal's active
/// power over the noise power is `snr_db`.
pub fn add_noise(signal: &[i16], snr_db: f64, seed: u64) -> Vec<i16> {
    let power = active_power(signal);
    let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt();
    let mut noise = Noise::new(seed);
    signal
        .iter()
        .map(|&s| {
            (f64::from(s) + sigma * noise.gaussian())
                .round()
                .clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// White noise of the given RMS level.
pub fn white_noise(len: usize, rms: f64, seed: u64) -> Vec<i16> {
    let mut noise = Noise::new(seed);
    (0..len)
        .map(|_| (rms * noise.gaussian()).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// A biquad section (RBJ cookbook), direct form I.
#[derive(Debug, Clone)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    x: [f64; 2],
    y: [f64; 2],
}

impl Biquad {
    fn new(highpass: bool, freq: f64, q: f64) -> Biquad {
        let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
        let alpha = w.sin() / (2.0 * q);
        let cos = w.cos();
        let a0 = 1.0 + alpha;
        let b = if highpass {
            [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0]
        } else {
            [(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0]
        };
        Biquad {
            b: [b[0] / a0, b[1] / a0, b[2] / a0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn run(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

/// FM receiver audio: 4th-order high-pass at 300 Hz and low-pass at 3000 Hz,
/// plus a gentle de-emphasis tilt (one pole at 2.5 kHz, ≈ −2 dB at 1.6 kHz).
pub fn fm_channel(signal: &[i16]) -> Vec<i16> {
    let q = [0.541, 1.307];
    let mut stages = vec![
        Biquad::new(true, 300.0, q[0]),
        Biquad::new(true, 300.0, q[1]),
        Biquad::new(false, 3000.0, q[0]),
        Biquad::new(false, 3000.0, q[1]),
    ];
    let pole = (-2.0 * std::f64::consts::PI * 2500.0 / 8000.0).exp();
    let mut tilt = 0.0f64;
    signal
        .iter()
        .map(|&s| {
            let mut v = f64::from(s);
            for st in &mut stages {
                v = st.run(v);
            }
            tilt = (1.0 - pole) * v + pole * tilt;
            tilt.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}
