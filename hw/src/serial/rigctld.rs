//! The Hamlib `rigctld` network protocol (TCP, one command per line), so any
//! radio Hamlib supports can be keyed: `T 1` / `T 0` set PTT (answered
//! `RPRT 0`), `t` reads PTT, `\get_dcd` reads the squelch (`0`/`1`).
//!
//! [`Reply::parse`] is the pure parser for one answer line; it never panics.
//! Note that the dummy rig (`rigctld -m 1`) toggles its DCD on every read.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::framing::{FrameError, LineBuffer};
use super::{ControlBackend, ControlEvent, ControlIo};
use crate::link::{BoxFuture, LinkError};

/// Longest answer line accepted, LF excluded.
pub const MAX_LINE: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RigctldError {
    #[error(transparent)]
    Framing(#[from] FrameError),
    #[error("rigctld answer is not UTF-8")]
    NotUtf8,
    #[error("malformed RPRT line {0:?}")]
    BadReport(String),
    #[error("rigctld reported error {0}")]
    Report(i32),
    #[error("expected 0 or 1, got {0:?}")]
    NotABool(String),
}

/// One answer line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `RPRT n`: the result of a set command (0 = ok, negative = Hamlib error).
    Report(i32),
    /// A value line of a get command.
    Value(String),
}

impl Reply {
    pub fn parse(line: &[u8]) -> Result<Reply, RigctldError> {
        let text = std::str::from_utf8(line).map_err(|_| RigctldError::NotUtf8)?;
        let text = text.trim_end_matches('\r');
        match text.strip_prefix("RPRT") {
            Some(code) => code
                .trim()
                .parse()
                .map(Reply::Report)
                .map_err(|_| RigctldError::BadReport(text.into())),
            None => Ok(Reply::Value(text.into())),
        }
    }

    /// The value as a boolean flag (`t`, `\get_dcd` answers).
    pub fn flag(&self) -> Result<bool, RigctldError> {
        match self {
            Reply::Report(code) => Err(RigctldError::Report(*code)),
            Reply::Value(v) => match v.trim() {
                "0" => Ok(false),
                "1" => Ok(true),
                other => Err(RigctldError::NotABool(other.into())),
            },
        }
    }
}

/// A rigctld server to key.
///
/// TOML: `kind = "rigctld"`, `addr = "127.0.0.1:4532"`, optionally `poll_ms`
/// (200, how often DCD is read), `reply_timeout_ms` (1000), `poll_dcd`
/// (true; false for rigs without a busy signal).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigctldConfig {
    pub addr: String,
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    #[serde(default = "default_true")]
    pub poll_dcd: bool,
}

fn default_poll_ms() -> u64 {
    200
}
fn default_reply_timeout_ms() -> u64 {
    1000
}
fn default_true() -> bool {
    true
}

impl RigctldConfig {
    pub fn for_addr(addr: impl Into<String>) -> RigctldConfig {
        RigctldConfig {
            addr: addr.into(),
            poll_ms: default_poll_ms(),
            reply_timeout_ms: default_reply_timeout_ms(),
            poll_dcd: true,
        }
    }
}

/// A connection to rigctld.
pub struct RigctldClient {
    stream: TcpStream,
    lines: LineBuffer,
    timeout: Duration,
    addr: String,
}

impl RigctldClient {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<RigctldClient, LinkError> {
        let open_err = |source| LinkError::Open {
            what: format!("rigctld {addr}"),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| LinkError::Timeout(timeout))?
            .map_err(open_err)?;
        let _ = stream.set_nodelay(true);
        Ok(RigctldClient {
            stream,
            lines: LineBuffer::new(b'\n', MAX_LINE),
            timeout,
            addr: addr.into(),
        })
    }

    fn protocol(&self, e: RigctldError) -> LinkError {
        LinkError::Protocol(format!("rigctld {}: {e}", self.addr))
    }

    /// Sends one command line and returns the first answer line.
    pub async fn command(&mut self, line: &str) -> Result<Reply, LinkError> {
        let what = format!("rigctld {}", self.addr);
        let io_err = |source| LinkError::Io {
            what: what.clone(),
            source,
        };
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(io_err)?;
        let timeout = self.timeout;
        let read = async {
            let mut buf = [0u8; 256];
            loop {
                if let Some(line) = self.lines.next_line() {
                    return line
                        .map_err(RigctldError::from)
                        .and_then(|l| Reply::parse(&l))
                        .map_err(|e| self.protocol(e));
                }
                let n = self.stream.read(&mut buf).await.map_err(io_err)?;
                if n == 0 {
                    return Err(io_err(std::io::ErrorKind::UnexpectedEof.into()));
                }
                self.lines.push(&buf[..n]);
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| LinkError::Timeout(timeout))?
    }

    /// Keys or unkeys; errors unless rigctld answers `RPRT 0`.
    pub async fn set_ptt(&mut self, on: bool) -> Result<(), LinkError> {
        match self.command(if on { "T 1" } else { "T 0" }).await? {
            Reply::Report(0) => Ok(()),
            Reply::Report(code) => Err(self.protocol(RigctldError::Report(code))),
            Reply::Value(v) => Err(self.protocol(RigctldError::BadReport(v))),
        }
    }

    pub async fn get_ptt(&mut self) -> Result<bool, LinkError> {
        let reply = self.command("t").await?;
        reply.flag().map_err(|e| self.protocol(e))
    }

    pub async fn get_dcd(&mut self) -> Result<bool, LinkError> {
        let reply = self.command("\\get_dcd").await?;
        reply.flag().map_err(|e| self.protocol(e))
    }
}

/// [`ControlBackend`] for a rigctld server.
pub struct RigctldBackend {
    config: RigctldConfig,
}

impl RigctldBackend {
    pub fn new(config: RigctldConfig) -> RigctldBackend {
        RigctldBackend { config }
    }
}

impl ControlBackend for RigctldBackend {
    fn describe(&self) -> String {
        format!("rigctld {}", self.config.addr)
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut ControlIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(async move {
            let timeout = Duration::from_millis(self.config.reply_timeout_ms);
            let mut rig = RigctldClient::connect(&self.config.addr, timeout).await?;
            // Start unkeyed; this also proves the server answers.
            rig.set_ptt(false).await?;
            io.emit(ControlEvent::Up).await;
            let mut keyed = false;
            let mut cor: Option<bool> = None;
            let mut poll =
                tokio::time::interval(Duration::from_millis(self.config.poll_ms.max(10)));
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ptt_open = true;
            let result: Result<(), LinkError> = async {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        changed = io.ptt.changed(), if ptt_open => {
                            ptt_open = changed.is_ok();
                            let on = ptt_open && *io.ptt.borrow_and_update();
                            if on != keyed {
                                rig.set_ptt(on).await?;
                                keyed = on;
                                io.emit(ControlEvent::Ptt(on)).await;
                            }
                        }
                        _ = poll.tick(), if self.config.poll_dcd => {
                            let open = rig.get_dcd().await?;
                            if cor != Some(open) {
                                cor = Some(open);
                                io.emit(ControlEvent::Cor(open)).await;
                            }
                        }
                    }
                }
            }
            .await;
            if keyed {
                let _ = rig.set_ptt(false).await;
                io.emit(ControlEvent::Ptt(false)).await;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reports_and_values() {
        assert_eq!(Reply::parse(b"RPRT 0"), Ok(Reply::Report(0)));
        assert_eq!(Reply::parse(b"RPRT -11\r"), Ok(Reply::Report(-11)));
        assert_eq!(Reply::parse(b"1"), Ok(Reply::Value("1".into())));
        assert_eq!(Reply::parse(b"1").unwrap().flag(), Ok(true));
        assert_eq!(Reply::parse(b"0").unwrap().flag(), Ok(false));
    }

    #[test]
    fn garbage_gives_named_errors() {
        assert_eq!(
            Reply::parse(b"RPRT x"),
            Err(RigctldError::BadReport("RPRT x".into()))
        );
        assert_eq!(Reply::parse(b"\xff\xfe"), Err(RigctldError::NotUtf8));
        assert_eq!(
            Reply::parse(b"145000000").unwrap().flag(),
            Err(RigctldError::NotABool("145000000".into()))
        );
        assert_eq!(
            Reply::Report(-8).flag().unwrap_err().to_string(),
            "rigctld reported error -8"
        );
    }

    #[test]
    fn partial_and_overlong_lines() {
        let mut lb = LineBuffer::new(b'\n', MAX_LINE);
        lb.push(b"RPR");
        assert!(lb.next_line().is_none());
        lb.push(b"T 0\n");
        let line = lb.next_line().unwrap().unwrap();
        assert_eq!(Reply::parse(&line), Ok(Reply::Report(0)));
        lb.push(&[b'9'; 1000]);
        assert_eq!(
            lb.next_line(),
            Some(Err(FrameError::Overlong { max: MAX_LINE }))
        );
    }
}
