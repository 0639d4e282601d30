//! The SvxLink-style PTY text protocol: one ASCII character per state change.
//! The radio side sends `O` (squelch open) / `Z` (squelch closed); the
//! controller sends `T` (transmit) / `R` (receive). Whitespace (CR, LF,
//! space) between characters is ignored; anything else is an error naming
//! the byte, and the stream carries on.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{port, ControlBackend, ControlEvent, ControlIo};
use crate::link::{BoxFuture, LinkError};

/// One protocol message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `O`
    SquelchOpen,
    /// `Z`
    SquelchClosed,
    /// `T`
    Transmit,
    /// `R`
    Receive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SvxlinkError {
    #[error("unexpected byte 0x{0:02x}; expected O, Z, T or R")]
    UnexpectedByte(u8),
}

impl Message {
    /// Parses one byte: `Ok(None)` for ignorable whitespace.
    pub fn parse(byte: u8) -> Result<Option<Message>, SvxlinkError> {
        match byte {
            b'O' => Ok(Some(Message::SquelchOpen)),
            b'Z' => Ok(Some(Message::SquelchClosed)),
            b'T' => Ok(Some(Message::Transmit)),
            b'R' => Ok(Some(Message::Receive)),
            b'\r' | b'\n' | b' ' | b'\t' => Ok(None),
            other => Err(SvxlinkError::UnexpectedByte(other)),
        }
    }

    pub fn encode(self) -> u8 {
        match self {
            Message::SquelchOpen => b'O',
            Message::SquelchClosed => b'Z',
            Message::Transmit => b'T',
            Message::Receive => b'R',
        }
    }
}

/// Decodes a received buffer into messages and per-byte errors.
pub fn decode(bytes: &[u8]) -> impl Iterator<Item = Result<Message, SvxlinkError>> + '_ {
    bytes.iter().filter_map(|&b| Message::parse(b).transpose())
}

/// A radio interface speaking the SvxLink PTY protocol on a serial port or
/// PTY.
///
/// TOML: `kind = "svxlink_pty"`, `path = "/dev/ttyUSB0"` (or a symlink to a
/// PTY). No other fields.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SvxlinkPtyConfig {
    pub path: PathBuf,
}

/// [`ControlBackend`] for the SvxLink PTY protocol.
pub struct SvxlinkBackend {
    config: SvxlinkPtyConfig,
}

impl SvxlinkBackend {
    pub fn new(config: SvxlinkPtyConfig) -> SvxlinkBackend {
        SvxlinkBackend { config }
    }
}

impl ControlBackend for SvxlinkBackend {
    fn describe(&self) -> String {
        format!("svxlink pty {}", self.config.path.display())
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut ControlIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(async move {
            let path = self.config.path.clone();
            if !port::wait_for_path(&path, &cancel).await {
                return Ok(());
            }
            // Baud rate means nothing on a PTY; 9600 suits real serial boxes.
            let mut port = port::open_serial(&path, 9600)?;
            let what = path.display().to_string();
            let io_err = |source| LinkError::Io {
                what: what.clone(),
                source,
            };
            let mut keyed = false;
            port.write_all(&[Message::Receive.encode()])
                .await
                .map_err(io_err)?;
            io.emit(ControlEvent::Up).await;
            let mut buf = [0u8; 256];
            let mut ptt_open = true;
            let result = loop {
                tokio::select! {
                    _ = cancel.cancelled() => break Ok(()),
                    changed = io.ptt.changed(), if ptt_open => {
                        let on = changed.is_ok() && *io.ptt.borrow_and_update();
                        ptt_open = changed.is_ok();
                        if on != keyed {
                            let msg = if on { Message::Transmit } else { Message::Receive };
                            if let Err(e) = port.write_all(&[msg.encode()]).await {
                                break Err(io_err(e));
                            }
                            keyed = on;
                            io.emit(ControlEvent::Ptt(on)).await;
                        }
                    }
                    read = port.read(&mut buf) => match read {
                        Ok(0) => break Err(io_err(std::io::ErrorKind::UnexpectedEof.into())),
                        Ok(n) => {
                            for msg in decode(&buf[..n]) {
                                match msg {
                                    Ok(Message::SquelchOpen) => io.emit(ControlEvent::Cor(true)).await,
                                    Ok(Message::SquelchClosed) => io.emit(ControlEvent::Cor(false)).await,
                                    Ok(other) => tracing::debug!(?other, "ignoring controller message from radio side"),
                                    Err(e) => tracing::warn!(path = %what, "svxlink pty: {e}"),
                                }
                            }
                        }
                        Err(e) => break Err(io_err(e)),
                    },
                    e = port::watch_path(&path) => break Err(e),
                }
            };
            if keyed {
                // Best effort: a vanished device cannot be told.
                let _ = port.write_all(&[Message::Receive.encode()]).await;
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
    fn decodes_messages_and_skips_whitespace() {
        let got: Vec<_> = decode(b"O\r\nZ T R").collect();
        assert_eq!(
            got,
            vec![
                Ok(Message::SquelchOpen),
                Ok(Message::SquelchClosed),
                Ok(Message::Transmit),
                Ok(Message::Receive)
            ]
        );
    }

    #[test]
    fn garbage_is_reported_per_byte_and_decoding_continues() {
        let got: Vec<_> = decode(b"xO\xffZ").collect();
        assert_eq!(
            got,
            vec![
                Err(SvxlinkError::UnexpectedByte(b'x')),
                Ok(Message::SquelchOpen),
                Err(SvxlinkError::UnexpectedByte(0xff)),
                Ok(Message::SquelchClosed)
            ]
        );
        assert_eq!(
            SvxlinkError::UnexpectedByte(b'x').to_string(),
            "unexpected byte 0x78; expected O, Z, T or R"
        );
    }

    #[test]
    fn overlong_input_is_decoded_without_growth() {
        let big = vec![b'O'; 100_000];
        assert_eq!(decode(&big).filter(|m| m.is_ok()).count(), 100_000);
    }

    #[test]
    fn encode_round_trips() {
        for m in [
            Message::SquelchOpen,
            Message::SquelchClosed,
            Message::Transmit,
            Message::Receive,
        ] {
            assert_eq!(Message::parse(m.encode()), Ok(Some(m)));
        }
    }
}
