//! SA818/DRA818 radio modules (DIY RoIP nodes): AT commands at 9600 8N1,
//! lines ended by CRLF. At link start-up the module is connected
//! (`AT+DMOCONNECT` → `+DMOCONNECT:0`) and set to its channel
//! (`AT+DMOSETGROUP=GBW,TFV,RFV,TxCXCSS,SQ,RxCXCSS` → `+DMOSETGROUP:0`).
//! The module has separate PTT and squelch pins, wired here to the same
//! port's modem lines (or to a CM108 sound card's GPIO).
//!
//! [`Command`] and [`Response`] are the pure wire types (both directions,
//! used by the backend and the simulated module); parsers never panic.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::framing::{FrameError, LineBuffer};
use super::lines::{run_line_keying, LineKeying};
use super::{cm108, default_baud, port, ControlBackend, ControlIo};
use crate::link::{BoxFuture, LinkError};

/// Longest AT line accepted, CRLF excluded.
pub const MAX_LINE: usize = 80;

/// The 38 standard CTCSS tones in SA818 code order (code 1 = 67.0 Hz).
pub const CTCSS_TONES: [f32; 38] = [
    67.0, 71.9, 74.4, 77.0, 79.7, 82.5, 85.4, 88.5, 91.5, 94.8, 97.4, 100.0, 103.5, 107.2, 110.9,
    114.8, 118.8, 123.0, 127.3, 131.8, 136.5, 141.3, 146.2, 151.4, 156.7, 162.2, 167.9, 173.8,
    179.9, 186.2, 192.8, 203.5, 210.7, 218.1, 225.7, 233.6, 241.8, 250.3,
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Sa818Error {
    #[error(transparent)]
    Framing(#[from] FrameError),
    #[error("AT line holds a non-printable byte 0x{0:02x}")]
    NotPrintable(u8),
    #[error("unknown AT line {0:?}")]
    Unknown(String),
    #[error("malformed {what}: {line:?}")]
    Malformed { what: &'static str, line: String },
    #[error("CTCSS tone {0} Hz is not one of the 38 standard tones")]
    UnknownTone(f32),
    #[error("bandwidth {0} kHz is not supported; use 12.5 or 25")]
    Bandwidth(f32),
    #[error("squelch level {0} is out of range 0..=8")]
    Squelch(u8),
    #[error("frequency {0} MHz is outside 134..=480")]
    Frequency(f64),
}

/// A channel set-up (`AT+DMOSETGROUP`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    /// `true` for 25 kHz, `false` for 12.5 kHz.
    pub wide: bool,
    pub tx_mhz: f64,
    pub rx_mhz: f64,
    /// CTCSS code 0 (none) or 1..=38.
    pub tx_ctcss: u8,
    pub squelch: u8,
    pub rx_ctcss: u8,
}

/// A command from host to module.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Connect,
    SetGroup(Group),
    /// `AT+DMOSETVOLUME=n` (1..=8).
    SetVolume(u8),
    /// `RSSI?`
    ReadRssi,
}

/// An answer from module to host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+DMOCONNECT:n` (0 = ok).
    Connect(u8),
    /// `+DMOSETGROUP:n` (0 = ok, 1 = out of range).
    SetGroup(u8),
    /// `+DMOSETVOLUME:n`.
    SetVolume(u8),
    /// `RSSI=n`.
    Rssi(u16),
}

fn printable(line: &[u8]) -> Result<String, Sa818Error> {
    let line = line.trim_ascii();
    if let Some(&b) = line.iter().find(|b| !(0x20..0x7f).contains(*b)) {
        return Err(Sa818Error::NotPrintable(b));
    }
    Ok(String::from_utf8_lossy(line).into_owned())
}

fn number<T: std::str::FromStr>(s: &str, what: &'static str, line: &str) -> Result<T, Sa818Error> {
    s.trim().parse().map_err(|_| Sa818Error::Malformed {
        what,
        line: line.into(),
    })
}

impl Command {
    pub fn parse(line: &[u8]) -> Result<Command, Sa818Error> {
        let text = printable(line)?;
        let upper = text.to_ascii_uppercase();
        if upper == "AT+DMOCONNECT" {
            return Ok(Command::Connect);
        }
        if upper == "RSSI?" {
            return Ok(Command::ReadRssi);
        }
        if let Some(v) = upper.strip_prefix("AT+DMOSETVOLUME=") {
            return Ok(Command::SetVolume(number(v, "volume", &text)?));
        }
        if let Some(args) = upper.strip_prefix("AT+DMOSETGROUP=") {
            let f: Vec<&str> = args.split(',').collect();
            if f.len() != 6 {
                return Err(Sa818Error::Malformed {
                    what: "DMOSETGROUP (want 6 fields)",
                    line: text,
                });
            }
            let ctcss = |s: &str| number::<u8>(s, "CTCSS code", &text);
            let group = Group {
                wide: number::<u8>(f[0], "bandwidth", &text)? == 1,
                tx_mhz: number(f[1], "TX frequency", &text)?,
                rx_mhz: number(f[2], "RX frequency", &text)?,
                tx_ctcss: ctcss(f[3])?,
                squelch: number(f[4], "squelch", &text)?,
                rx_ctcss: ctcss(f[5])?,
            };
            return Ok(Command::SetGroup(group));
        }
        Err(Sa818Error::Unknown(text))
    }

    pub fn encode(&self) -> Vec<u8> {
        let s = match self {
            Command::Connect => "AT+DMOCONNECT".to_string(),
            Command::SetGroup(g) => format!(
                "AT+DMOSETGROUP={},{:.4},{:.4},{:04},{},{:04}",
                u8::from(g.wide),
                g.tx_mhz,
                g.rx_mhz,
                g.tx_ctcss,
                g.squelch,
                g.rx_ctcss
            ),
            Command::SetVolume(v) => format!("AT+DMOSETVOLUME={v}"),
            Command::ReadRssi => "RSSI?".to_string(),
        };
        format!("{s}\r\n").into_bytes()
    }
}

impl Response {
    pub fn parse(line: &[u8]) -> Result<Response, Sa818Error> {
        let text = printable(line)?;
        let upper = text.to_ascii_uppercase();
        if let Some(v) = upper.strip_prefix("+DMOCONNECT:") {
            return Ok(Response::Connect(number(v, "DMOCONNECT status", &text)?));
        }
        if let Some(v) = upper.strip_prefix("+DMOSETGROUP:") {
            return Ok(Response::SetGroup(number(v, "DMOSETGROUP status", &text)?));
        }
        if let Some(v) = upper.strip_prefix("+DMOSETVOLUME:") {
            return Ok(Response::SetVolume(number(
                v,
                "DMOSETVOLUME status",
                &text,
            )?));
        }
        if let Some(v) = upper.strip_prefix("RSSI=") {
            return Ok(Response::Rssi(number(v, "RSSI", &text)?));
        }
        Err(Sa818Error::Unknown(text))
    }

    pub fn encode(&self) -> Vec<u8> {
        let s = match self {
            Response::Connect(n) => format!("+DMOCONNECT:{n}"),
            Response::SetGroup(n) => format!("+DMOSETGROUP:{n}"),
            Response::SetVolume(n) => format!("+DMOSETVOLUME:{n}"),
            Response::Rssi(n) => format!("RSSI={n}"),
        };
        format!("{s}\r\n").into_bytes()
    }
}

/// Splits an AT byte stream into lines (LF-terminated; the CR is trimmed).
pub fn line_buffer() -> LineBuffer {
    LineBuffer::new(b'\n', MAX_LINE)
}

/// The channel an SA818 is set to at link start-up.
///
/// TOML: `group = { tx_mhz = 145.5, rx_mhz = 145.5 }` plus optionally
/// `tx_ctcss` / `rx_ctcss` (Hz, one of the 38 standard tones; absent = none),
/// `squelch` (1, range 0..=8), `bandwidth` (12.5 or 25 kHz; default 12.5).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub tx_mhz: f64,
    pub rx_mhz: f64,
    #[serde(default)]
    pub tx_ctcss: Option<f32>,
    #[serde(default)]
    pub rx_ctcss: Option<f32>,
    #[serde(default = "default_squelch")]
    pub squelch: u8,
    #[serde(default = "default_bandwidth")]
    pub bandwidth: f32,
}

fn default_squelch() -> u8 {
    1
}
fn default_bandwidth() -> f32 {
    12.5
}

/// The CTCSS code for a tone in Hz (within 0.05 Hz), `0` for none.
pub fn ctcss_code(tone: Option<f32>) -> Result<u8, Sa818Error> {
    let Some(hz) = tone else { return Ok(0) };
    CTCSS_TONES
        .iter()
        .position(|t| (t - hz).abs() < 0.05)
        .map(|i| i as u8 + 1)
        .ok_or(Sa818Error::UnknownTone(hz))
}

impl GroupConfig {
    /// Validates and converts to the wire group.
    pub fn to_group(&self) -> Result<Group, Sa818Error> {
        for f in [self.tx_mhz, self.rx_mhz] {
            if !(134.0..=480.0).contains(&f) {
                return Err(Sa818Error::Frequency(f));
            }
        }
        let wide = match self.bandwidth {
            b if (b - 12.5).abs() < 0.01 => false,
            b if (b - 25.0).abs() < 0.01 => true,
            b => return Err(Sa818Error::Bandwidth(b)),
        };
        if self.squelch > 8 {
            return Err(Sa818Error::Squelch(self.squelch));
        }
        Ok(Group {
            wide,
            tx_mhz: self.tx_mhz,
            rx_mhz: self.rx_mhz,
            tx_ctcss: ctcss_code(self.tx_ctcss)?,
            squelch: self.squelch,
            rx_ctcss: ctcss_code(self.rx_ctcss)?,
        })
    }
}

/// How the module's PTT and squelch pins are wired.
///
/// TOML: `keying = { via = "lines", ptt_lines = ["rts"], cor_line = "cts", ... }`
/// (the fields of [`LineKeying`], on the module's own port) or
/// `keying = { via = "cm108", ... }` (the fields of [`cm108::Cm108Config`]).
/// Default: `via = "lines"` with [`LineKeying`]'s defaults.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Sa818Keying {
    Lines(LineKeying),
    Cm108(cm108::Cm108Config),
}

impl Default for Sa818Keying {
    fn default() -> Self {
        Sa818Keying::Lines(LineKeying::default())
    }
}

/// An SA818/DRA818 module.
///
/// TOML: `kind = "sa818"`, `device = "/dev/ttyUSB0"`, `group = {...}` (see
/// [`GroupConfig`]), optionally `baud` (9600), `volume` (absent = leave as
/// is, else 1..=8), `reply_timeout_ms` (1000), `keying` (see [`Sa818Keying`]).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sa818Config {
    pub device: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    pub group: GroupConfig,
    #[serde(default)]
    pub volume: Option<u8>,
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    #[serde(default)]
    pub keying: Sa818Keying,
}

fn default_reply_timeout_ms() -> u64 {
    1000
}

/// Sends `command` and waits for its answer, skipping unrelated lines.
async fn exchange<P: AsyncRead + AsyncWrite + Unpin>(
    port: &mut P,
    lines: &mut LineBuffer,
    command: &Command,
    timeout: Duration,
) -> Result<Response, LinkError> {
    let io_err = |source| LinkError::Io {
        what: "sa818".into(),
        source,
    };
    port.write_all(&command.encode()).await.map_err(io_err)?;
    let wait = async {
        let mut buf = [0u8; 128];
        loop {
            while let Some(line) = lines.next_line() {
                match line
                    .map_err(Sa818Error::from)
                    .and_then(|l| Response::parse(&l))
                {
                    Ok(r) => return Ok(r),
                    // Modules print a banner or echo at power-up.
                    Err(e) => tracing::debug!("sa818: skipping line: {e}"),
                }
            }
            let n = port.read(&mut buf).await.map_err(io_err)?;
            if n == 0 {
                return Err(io_err(std::io::ErrorKind::UnexpectedEof.into()));
            }
            lines.push(&buf[..n]);
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| LinkError::Timeout(timeout))?
}

/// Connects to the module and sets its channel (and volume). Returns the
/// error naming the step the module refused.
pub async fn configure<P: AsyncRead + AsyncWrite + Unpin>(
    port: &mut P,
    group: &Group,
    volume: Option<u8>,
    timeout: Duration,
) -> Result<(), LinkError> {
    let mut lines = line_buffer();
    let mut steps = vec![Command::Connect, Command::SetGroup(*group)];
    if let Some(v) = volume {
        steps.push(Command::SetVolume(v));
    }
    for step in &steps {
        let reply = exchange(port, &mut lines, step, timeout).await?;
        let ok = matches!(
            (step, &reply),
            (Command::Connect, Response::Connect(0))
                | (Command::SetGroup(_), Response::SetGroup(0))
                | (Command::SetVolume(_), Response::SetVolume(0))
        );
        if !ok {
            return Err(LinkError::Protocol(format!(
                "sa818 refused {:?}: answered {reply:?}",
                String::from_utf8_lossy(step.encode().trim_ascii())
            )));
        }
    }
    Ok(())
}

/// [`ControlBackend`] for an SA818/DRA818 module.
pub struct Sa818Backend {
    config: Sa818Config,
}

impl Sa818Backend {
    pub fn new(config: Sa818Config) -> Sa818Backend {
        Sa818Backend { config }
    }
}

impl ControlBackend for Sa818Backend {
    fn describe(&self) -> String {
        format!("sa818 {}", self.config.device.display())
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut ControlIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(async move {
            let group = self
                .config
                .group
                .to_group()
                .map_err(|e| LinkError::Protocol(format!("sa818 config: {e}")))?;
            let device = self.config.device.clone();
            if !port::wait_for_path(&device, &cancel).await {
                return Ok(());
            }
            let mut port = port::open_serial(&device, self.config.baud)?;
            let timeout = Duration::from_millis(self.config.reply_timeout_ms);
            configure(&mut port, &group, self.config.volume, timeout).await?;
            match &self.config.keying {
                Sa818Keying::Lines(keying) => {
                    port::check_modem_lines(&port, &device)?;
                    run_line_keying(&mut port, keying, Some(&device), io, cancel).await
                }
                Sa818Keying::Cm108(c) => {
                    // Keep the serial port open so an unplug of the module is seen.
                    let mut gpio = cm108::Cm108Backend::new(c.clone());
                    tokio::select! {
                        r = gpio.run(io, cancel.clone()) => r,
                        e = port::watch_path(&device) => Err(e),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_command_round_trips() {
        let g = Group {
            wide: false,
            tx_mhz: 145.5,
            rx_mhz: 145.525,
            tx_ctcss: 12,
            squelch: 4,
            rx_ctcss: 0,
        };
        let bytes = Command::SetGroup(g).encode();
        assert_eq!(
            bytes,
            b"AT+DMOSETGROUP=0,145.5000,145.5250,0012,4,0000\r\n".to_vec()
        );
        assert_eq!(Command::parse(&bytes), Ok(Command::SetGroup(g)));
        for c in [Command::Connect, Command::SetVolume(5), Command::ReadRssi] {
            assert_eq!(Command::parse(&c.encode()), Ok(c));
        }
        for r in [
            Response::Connect(0),
            Response::SetGroup(1),
            Response::SetVolume(0),
            Response::Rssi(87),
        ] {
            assert_eq!(Response::parse(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn garbage_and_partial_lines() {
        let mut lb = line_buffer();
        lb.push(b"+DMOCON");
        assert!(lb.next_line().is_none());
        lb.push(b"NECT:0\r\n\x01\x02\r\nAT+DMOSETGROUP=0,1,2\r\n");
        let parsed: Vec<_> = std::iter::from_fn(|| lb.next_line())
            .map(|l| l.map_err(Sa818Error::from))
            .collect();
        assert_eq!(
            Response::parse(parsed[0].as_ref().unwrap()),
            Ok(Response::Connect(0))
        );
        assert_eq!(
            Response::parse(parsed[1].as_ref().unwrap()),
            Err(Sa818Error::NotPrintable(1))
        );
        assert!(matches!(
            Command::parse(parsed[2].as_ref().unwrap()),
            Err(Sa818Error::Malformed { .. })
        ));
        assert_eq!(
            Command::parse(b"AT+DMOSETGROUP=0,abc,1,0,0,0")
                .unwrap_err()
                .to_string(),
            "malformed TX frequency: \"AT+DMOSETGROUP=0,abc,1,0,0,0\""
        );
        assert!(matches!(
            Response::parse(b"hello"),
            Err(Sa818Error::Unknown(_))
        ));
        // Overlong line.
        lb.push(&[b'A'; 500]);
        assert_eq!(
            lb.next_line(),
            Some(Err(FrameError::Overlong { max: MAX_LINE }))
        );
    }

    #[test]
    fn group_config_validates() {
        let mut c = GroupConfig {
            tx_mhz: 145.5,
            rx_mhz: 145.5,
            tx_ctcss: Some(88.5),
            rx_ctcss: None,
            squelch: 1,
            bandwidth: 25.0,
        };
        let g = c.to_group().unwrap();
        assert_eq!((g.tx_ctcss, g.rx_ctcss, g.wide), (8, 0, true));
        assert_eq!(ctcss_code(Some(250.3)), Ok(38));
        c.tx_ctcss = Some(88.0);
        assert_eq!(c.to_group(), Err(Sa818Error::UnknownTone(88.0)));
        c.tx_ctcss = None;
        c.bandwidth = 20.0;
        assert_eq!(c.to_group(), Err(Sa818Error::Bandwidth(20.0)));
        c.bandwidth = 12.5;
        c.squelch = 9;
        assert_eq!(c.to_group(), Err(Sa818Error::Squelch(9)));
        c.squelch = 1;
        c.rx_mhz = 600.0;
        assert_eq!(c.to_group(), Err(Sa818Error::Frequency(600.0)));
    }
}
