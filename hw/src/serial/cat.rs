//! Kenwood-style CAT: ASCII commands of two letters plus parameters, each
//! ended by `;` (`TX;`, `RX;`, `IF;`, `BY;`). The radio answers queries with
//! the same two letters and its values, or `?;` when it rejects a command.
//!
//! [`Frame::parse`] is the pure parser both sides use (the backend for
//! replies, the simulated radio for commands); [`IfReply::parse`] reads the
//! TS-2000 `IF` answer. Parsers never panic; they return a [`CatError`] that
//! names what was wrong.
//!
//! Model differences are configuration: the busy query and the reply prefix
//! that means "squelch open" (`BY1` on the TS-2000, whose `BY` answer carries
//! main- and sub-band flags), and the keying commands.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

use super::framing::{FrameError, LineBuffer};
use super::{default_baud, port, ControlBackend, ControlEvent, ControlIo};
use crate::link::{BoxFuture, LinkError};

/// Longest CAT frame accepted, terminator excluded (the TS-2000 `IF` answer
/// is 37 bytes; menu dumps are longer but never needed here).
pub const MAX_FRAME: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatError {
    #[error("empty CAT frame")]
    Empty,
    #[error("radio rejected the command (?;)")]
    Rejected,
    #[error("CAT frame does not start with two letters: {0:?}")]
    BadCommand(String),
    #[error("CAT frame holds a non-printable byte 0x{0:02x}")]
    NotPrintable(u8),
    #[error(transparent)]
    Framing(#[from] FrameError),
    #[error("IF answer is {0} characters of parameters; expected 35")]
    BadIfLength(usize),
    #[error("IF answer has a non-numeric {field}: {value:?}")]
    BadIfField { field: &'static str, value: String },
}

/// One CAT frame without its `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The two-letter command, upper case.
    pub command: String,
    pub params: String,
}

impl Frame {
    /// Parses one frame (terminator already removed). Lower-case commands
    /// are accepted and upper-cased, as Kenwood radios do.
    pub fn parse(bytes: &[u8]) -> Result<Frame, CatError> {
        // Radios and hosts put CR/LF between frames now and then.
        let bytes = bytes.trim_ascii();
        if bytes.is_empty() {
            return Err(CatError::Empty);
        }
        if let Some(&b) = bytes.iter().find(|b| !(0x20..0x7f).contains(*b)) {
            return Err(CatError::NotPrintable(b));
        }
        // Checked printable ASCII above, so this is valid UTF-8.
        let text = String::from_utf8_lossy(bytes);
        if text == "?" {
            return Err(CatError::Rejected);
        }
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(a), Some(b)) if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Ok(Frame {
                command: text[..2].to_ascii_uppercase(),
                params: text[2..].to_string(),
            }),
            _ => Err(CatError::BadCommand(text.into_owned())),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        format!("{}{};", self.command, self.params).into_bytes()
    }
}

/// Splits a CAT byte stream into frames.
#[derive(Debug, Clone)]
pub struct CatDecoder {
    lines: LineBuffer,
}

impl Default for CatDecoder {
    fn default() -> Self {
        CatDecoder {
            lines: LineBuffer::new(b';', MAX_FRAME),
        }
    }
}

impl CatDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.lines.push(bytes);
    }

    pub fn next_frame(&mut self) -> Option<Result<Frame, CatError>> {
        self.lines
            .next_line()
            .map(|line| line.map_err(CatError::from).and_then(|l| Frame::parse(&l)))
    }
}

/// The fields of a TS-2000 `IF` answer that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfReply {
    pub frequency_hz: u64,
    pub transmitting: bool,
    /// Kenwood mode digit (1 LSB, 2 USB, 3 CW, 4 FM, 5 AM, ...).
    pub mode: u8,
}

impl IfReply {
    /// Length of the parameters of an `IF` answer (after `IF`, before `;`).
    pub const PARAMS_LEN: usize = 35;

    /// Parses the parameters of an `IF` answer. Layout: frequency (11), step
    /// (5, spaces on the TS-2000), RIT offset (5), RIT, XIT, bank (1+2),
    /// TX/RX, mode, VFO, scan, split, tone, tone number (2), shift.
    pub fn parse(params: &str) -> Result<IfReply, CatError> {
        let b = params.as_bytes();
        // Byte offsets below are only char boundaries in ASCII text.
        if let Some(&c) = b.iter().find(|c| !c.is_ascii()) {
            return Err(CatError::NotPrintable(c));
        }
        if b.len() != Self::PARAMS_LEN {
            return Err(CatError::BadIfLength(b.len()));
        }
        let freq = &params[0..11];
        let frequency_hz = freq.parse().map_err(|_| CatError::BadIfField {
            field: "frequency",
            value: freq.into(),
        })?;
        let digit = |i: usize, field: &'static str| {
            let c = b[i];
            if c.is_ascii_digit() {
                Ok(c - b'0')
            } else {
                Err(CatError::BadIfField {
                    field,
                    value: (c as char).to_string(),
                })
            }
        };
        Ok(IfReply {
            frequency_hz,
            transmitting: digit(26, "TX/RX flag")? == 1,
            mode: digit(27, "mode")?,
        })
    }

    /// The parameters of an `IF` answer for these values (simulator side).
    pub fn encode_params(&self) -> String {
        format!(
            "{:011}{:5}{:+05}{}{}{}{:02}{}{}{}{}{}{}{:02}{}",
            self.frequency_hz.min(99_999_999_999),
            "",
            0,
            0,
            0,
            0,
            0,
            u8::from(self.transmitting),
            self.mode.min(9),
            0,
            0,
            0,
            0,
            0,
            0
        )
    }
}

/// A Kenwood-style CAT radio.
///
/// TOML: `kind = "cat"`, `device = "/dev/ttyUSB0"`, and optionally `baud`
/// (9600), `poll_ms` (200, how often the busy query runs), `reply_timeout_ms`
/// (1000), `tx_command` (`"TX;"`), `rx_command` (`"RX;"`), `busy_command`
/// (`"BY;"`), `busy_open_prefix` (`"BY1"`: an answer starting with it means
/// squelch open, any other answer to the busy query means closed),
/// `verify_ptt` (true: read `IF;` after keying and check the TX flag).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatConfig {
    pub device: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    #[serde(default = "default_tx_command")]
    pub tx_command: String,
    #[serde(default = "default_rx_command")]
    pub rx_command: String,
    #[serde(default = "default_busy_command")]
    pub busy_command: String,
    #[serde(default = "default_busy_open_prefix")]
    pub busy_open_prefix: String,
    #[serde(default = "default_true")]
    pub verify_ptt: bool,
}

fn default_poll_ms() -> u64 {
    200
}
fn default_reply_timeout_ms() -> u64 {
    1000
}
fn default_tx_command() -> String {
    "TX;".into()
}
fn default_rx_command() -> String {
    "RX;".into()
}
fn default_busy_command() -> String {
    "BY;".into()
}
fn default_busy_open_prefix() -> String {
    "BY1".into()
}
fn default_true() -> bool {
    true
}

impl CatConfig {
    /// A config with every default, for `device`.
    pub fn for_device(device: impl Into<PathBuf>) -> CatConfig {
        CatConfig {
            device: device.into(),
            baud: default_baud(),
            poll_ms: default_poll_ms(),
            reply_timeout_ms: default_reply_timeout_ms(),
            tx_command: default_tx_command(),
            rx_command: default_rx_command(),
            busy_command: default_busy_command(),
            busy_open_prefix: default_busy_open_prefix(),
            verify_ptt: true,
        }
    }

    /// Whether a busy-query answer means squelch open.
    pub fn busy_means_open(&self, reply: &Frame) -> bool {
        let text = format!("{}{}", reply.command, reply.params);
        text.starts_with(&self.busy_open_prefix)
    }

    /// The two letters the busy query is answered with.
    fn busy_reply_command(&self) -> String {
        self.busy_command
            .trim_end_matches(';')
            .chars()
            .take(2)
            .collect::<String>()
            .to_ascii_uppercase()
    }
}

/// A CAT session on an open port: sends commands, waits for answers.
pub struct CatSession<P> {
    port: P,
    decoder: CatDecoder,
    timeout: Duration,
    what: String,
}

impl<P: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> CatSession<P> {
    pub fn new(port: P, timeout: Duration, what: impl Into<String>) -> Self {
        CatSession {
            port,
            decoder: CatDecoder::default(),
            timeout,
            what: what.into(),
        }
    }

    fn io_err(&self, source: std::io::Error) -> LinkError {
        LinkError::Io {
            what: self.what.clone(),
            source,
        }
    }

    /// Sends a set command that has no answer.
    pub async fn send(&mut self, command: &str) -> Result<(), LinkError> {
        let r = self.port.write_all(command.as_bytes()).await;
        r.map_err(|e| self.io_err(e))
    }

    /// Sends `command` and returns the first answer whose two letters are
    /// `answer` (frames of other commands, e.g. auto-information, are skipped).
    pub async fn query(&mut self, command: &str, answer: &str) -> Result<Frame, LinkError> {
        self.send(command).await?;
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.read_answer(answer)).await {
            Ok(result) => result,
            Err(_) => Err(LinkError::Timeout(timeout)),
        }
    }

    async fn read_answer(&mut self, answer: &str) -> Result<Frame, LinkError> {
        let mut buf = [0u8; 128];
        loop {
            while let Some(frame) = self.decoder.next_frame() {
                match frame {
                    Ok(f) if f.command == answer => return Ok(f),
                    Ok(f) => tracing::debug!(what = %self.what, ?f, "skipping CAT frame"),
                    Err(CatError::Rejected) => {
                        return Err(LinkError::Protocol(format!(
                            "{}: radio rejected the command sent before {answer}",
                            self.what
                        )))
                    }
                    Err(e) => tracing::warn!(what = %self.what, "CAT: {e}"),
                }
            }
            let n = self.port.read(&mut buf).await.map_err(|e| self.io_err(e))?;
            if n == 0 {
                return Err(self.io_err(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// Reads the `IF` state.
    pub async fn read_if(&mut self) -> Result<IfReply, LinkError> {
        let frame = self.query("IF;", "IF").await?;
        IfReply::parse(&frame.params)
            .map_err(|e| LinkError::Protocol(format!("{}: {e}", self.what)))
    }
}

/// [`ControlBackend`] for a Kenwood-style CAT radio.
pub struct CatBackend {
    config: CatConfig,
}

impl CatBackend {
    pub fn new(config: CatConfig) -> CatBackend {
        CatBackend { config }
    }
}

impl ControlBackend for CatBackend {
    fn describe(&self) -> String {
        format!("cat {}", self.config.device.display())
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut ControlIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(async move {
            let device = self.config.device.clone();
            if !port::wait_for_path(&device, &cancel).await {
                return Ok(());
            }
            let port = port::open_serial(&device, self.config.baud)?;
            run_cat(port, &self.config, io, cancel).await
        })
    }
}

/// The CAT loop on an open port: checks the radio answers `IF;`, then
/// follows PTT requests and polls the busy query.
pub async fn run_cat(
    port: SerialStream,
    config: &CatConfig,
    io: &mut ControlIo,
    cancel: CancellationToken,
) -> Result<(), LinkError> {
    let device = config.device.clone();
    let mut cat = CatSession::new(
        port,
        Duration::from_millis(config.reply_timeout_ms),
        device.display().to_string(),
    );
    let initial = cat.read_if().await?;
    let mut keyed = initial.transmitting;
    if keyed {
        // Left keyed by a previous run or another program: release it.
        cat.send(&config.rx_command).await?;
        keyed = false;
    }
    io.emit(ControlEvent::Up).await;
    let busy_answer = config.busy_reply_command();
    let mut poll = tokio::time::interval(Duration::from_millis(config.poll_ms.max(10)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cor: Option<bool> = None;
    let mut ptt_open = true;
    let result: Result<(), LinkError> = async {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                changed = io.ptt.changed(), if ptt_open => {
                    ptt_open = changed.is_ok();
                    let on = ptt_open && *io.ptt.borrow_and_update();
                    if on != keyed {
                        let cmd = if on { &config.tx_command } else { &config.rx_command };
                        cat.send(cmd).await?;
                        if config.verify_ptt {
                            let state = cat.read_if().await?;
                            if state.transmitting != on {
                                return Err(LinkError::Protocol(format!(
                                    "{}: sent {cmd} but IF reports transmitting={}",
                                    device.display(),
                                    state.transmitting
                                )));
                            }
                        }
                        keyed = on;
                        io.emit(ControlEvent::Ptt(on)).await;
                    }
                }
                _ = poll.tick() => {
                    let reply = cat.query(&config.busy_command, &busy_answer).await?;
                    let open = config.busy_means_open(&reply);
                    if cor != Some(open) {
                        cor = Some(open);
                        io.emit(ControlEvent::Cor(open)).await;
                    }
                }
                e = port::watch_path(&device) => return Err(e),
            }
        }
    }
    .await;
    if keyed {
        let _ = cat.send(&config.rx_command).await;
        io.emit(ControlEvent::Ptt(false)).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8]) -> Vec<Result<Frame, CatError>> {
        let mut d = CatDecoder::default();
        d.push(bytes);
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    fn f(c: &str, p: &str) -> Frame {
        Frame {
            command: c.into(),
            params: p.into(),
        }
    }

    #[test]
    fn parses_commands_and_answers() {
        assert_eq!(
            frames(b"TX;rx;BY10;\r\nID019;"),
            vec![
                Ok(f("TX", "")),
                Ok(f("RX", "")),
                Ok(f("BY", "10")),
                Ok(f("ID", "019"))
            ]
        );
    }

    #[test]
    fn partial_frames_wait_for_terminator() {
        let mut d = CatDecoder::default();
        d.push(b"FA0001");
        assert!(d.next_frame().is_none());
        d.push(b"4250000;");
        assert_eq!(d.next_frame(), Some(Ok(f("FA", "00014250000"))));
    }

    #[test]
    fn garbage_gives_named_errors() {
        assert_eq!(
            frames(b"?;;1X;T\x01;"),
            vec![
                Err(CatError::Rejected),
                Err(CatError::Empty),
                Err(CatError::BadCommand("1X".into())),
                Err(CatError::NotPrintable(1)),
            ]
        );
        assert_eq!(
            CatError::BadCommand("1X".into()).to_string(),
            "CAT frame does not start with two letters: \"1X\""
        );
    }

    #[test]
    fn overlong_input_is_skipped() {
        let mut input = vec![b'A'; 10_000];
        input.extend_from_slice(b";RX;");
        assert_eq!(
            frames(&input),
            vec![
                Err(CatError::Framing(FrameError::Overlong { max: MAX_FRAME })),
                Ok(f("RX", ""))
            ]
        );
    }

    #[test]
    fn if_reply_round_trips_at_hamlib_offsets() {
        let state = IfReply {
            frequency_hz: 145_500_000,
            transmitting: true,
            mode: 4,
        };
        let params = state.encode_params();
        assert_eq!(params.len(), IfReply::PARAMS_LEN);
        let whole = format!("IF{params};");
        // Hamlib reads the TX flag at byte 28 and the mode at 29 of the answer.
        assert_eq!(&whole[28..30], "14");
        assert_eq!(&whole[2..13], "00145500000");
        assert_eq!(IfReply::parse(&params), Ok(state));
    }

    #[test]
    fn if_reply_errors() {
        assert_eq!(IfReply::parse("123"), Err(CatError::BadIfLength(3)));
        // 35 bytes, but not 35 characters: must not slice inside a character.
        let wide = format!("{}é", "0".repeat(33));
        assert_eq!(IfReply::parse(&wide), Err(CatError::NotPrintable(0xc3)));
        let mut p = IfReply {
            frequency_hz: 1,
            transmitting: false,
            mode: 1,
        }
        .encode_params();
        p.replace_range(26..27, "x");
        assert!(matches!(
            IfReply::parse(&p),
            Err(CatError::BadIfField {
                field: "TX/RX flag",
                ..
            })
        ));
        assert!(matches!(
            IfReply::parse(&"x".repeat(35)),
            Err(CatError::BadIfField {
                field: "frequency",
                ..
            })
        ));
    }

    #[test]
    fn busy_prefix_is_configurable() {
        let mut c = CatConfig::for_device("/dev/null");
        assert!(c.busy_means_open(&f("BY", "10")));
        assert!(!c.busy_means_open(&f("BY", "00")));
        c.busy_open_prefix = "BY01".into();
        assert!(c.busy_means_open(&f("BY", "01")));
        assert_eq!(c.busy_reply_command(), "BY");
    }
}
