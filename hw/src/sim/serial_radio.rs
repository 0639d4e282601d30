//! Simulated serial radios on PTY pairs, one per text protocol: a Kenwood
//! TS-2000-ish CAT radio (enough for Hamlib's `rigctl -m 2014` to read
//! frequency and mode and get/set PTT), an SA818 module, and a SvxLink-PTY
//! squelch/PTT peer.
//!
//! Each `spawn_*` opens a PTY (the slave path is what a client opens), starts
//! a tokio task answering on the master, and returns a [`SimRadio`] handle:
//! raise or lower the squelch, read the PTT state the client set, see every
//! line the client sent, or [`SimRadio::close`] the PTY to simulate an
//! unplugged device. The radios use the same pure codecs as the backends in
//! [`crate::serial`].
//!
//! What Hamlib 4.5 sends, logged against these radios (`tests/serial_hamlib.rs`):
//! - `rigctl -m 2014` (TS-2000) for `f m t T 1 t`: `ID; PS; IF; AI; FA; FB; MD;
//!   PS; TX;` then `ID; AI0; ID;` on close. It reads PTT from the `IF` answer
//!   (byte 28) and caches it, so `t` sends nothing of its own.
//! - `rigctl -m 31001` (DRA818V): `AT+DMOCONNECT`, `AT+DMOSETVOLUME=6`,
//!   `AT+DMOSETGROUP=...` on open; `F` sends another `AT+DMOSETGROUP`.
//!   Unknown input is answered `?;` (CAT) or ignored (AT) and recorded in
//!   [`SimRadioState::rejected`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::serial::cat::{CatDecoder, Frame, IfReply};
use crate::serial::port::{open_pty, FdIo};
use crate::serial::sa818::{self, Command, Group, Response};
use crate::serial::svxlink::{self, Message};

/// What a simulated radio knows; readable through [`SimRadio::state`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimRadioState {
    pub ptt: bool,
    pub squelch_open: bool,
    pub frequency_hz: u64,
    /// Kenwood mode digit (4 = FM).
    pub mode: u8,
    /// The SA818 channel last set by `AT+DMOSETGROUP`.
    pub group: Option<Group>,
    pub volume: Option<u8>,
    /// Every command received, as text (CAT frames with `;`, AT lines without
    /// CRLF, SvxLink characters).
    pub received: Vec<String>,
    /// Received input the codec rejected, with the reason.
    pub rejected: Vec<String>,
}

/// A running simulated radio. Dropping it closes the PTY.
#[derive(Debug)]
pub struct SimRadio {
    slave_path: PathBuf,
    state: Arc<Mutex<SimRadioState>>,
    squelch: mpsc::UnboundedSender<bool>,
    ptt: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl SimRadio {
    /// The PTY slave path a client opens (e.g. `/dev/pts/7`).
    pub fn path(&self) -> &Path {
        &self.slave_path
    }

    /// Opens (`true`) or closes the squelch. The SvxLink radio also sends
    /// `O`/`Z` to the client at once.
    pub fn set_squelch(&self, open: bool) {
        let _ = self.squelch.send(open);
    }

    /// The PTT state the client last set.
    pub fn ptt(&self) -> bool {
        *self.ptt.borrow()
    }

    /// Follows PTT changes.
    pub fn ptt_watch(&self) -> watch::Receiver<bool> {
        self.ptt.clone()
    }

    pub fn state(&self) -> SimRadioState {
        lock(&self.state).clone()
    }

    /// Closes the PTY, as if the device were unplugged.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for SimRadio {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<SimRadioState>) -> std::sync::MutexGuard<'_, SimRadioState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// One protocol's behaviour: bytes from the client in, bytes to send back.
trait Personality: Send + 'static {
    fn on_input(&mut self, bytes: &[u8], state: &mut SimRadioState) -> Vec<u8>;
    /// Bytes to send when the squelch changes unprompted.
    fn on_squelch(&mut self, _open: bool) -> Vec<u8> {
        Vec::new()
    }
}

fn spawn(personality: impl Personality, initial: SimRadioState) -> io::Result<SimRadio> {
    let pty = open_pty()?;
    let master = FdIo::new(pty.master)?;
    // Held so the master never reads EIO between client sessions.
    let slave_keepalive = pty.slave;
    let state = Arc::new(Mutex::new(initial));
    let (squelch_tx, mut squelch_rx) = mpsc::unbounded_channel();
    let (ptt_tx, ptt_rx) = watch::channel(false);
    let task_state = state.clone();
    let mut personality = personality;
    let task = tokio::spawn(async move {
        let _slave = slave_keepalive;
        let mut buf = [0u8; 512];
        loop {
            let out = tokio::select! {
                read = master.read(&mut buf) => match read {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut s = lock(&task_state);
                        let out = personality.on_input(&buf[..n], &mut s);
                        ptt_tx.send_if_modified(|p| std::mem::replace(p, s.ptt) != s.ptt);
                        out
                    }
                    Err(e) => {
                        tracing::warn!("simulated radio: pty read failed: {e}");
                        break;
                    }
                },
                Some(open) = squelch_rx.recv() => {
                    lock(&task_state).squelch_open = open;
                    personality.on_squelch(open)
                }
            };
            if !out.is_empty() && master.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    Ok(SimRadio {
        slave_path: pty.slave_path,
        state,
        squelch: squelch_tx,
        ptt: ptt_rx,
        task,
    })
}

/// A Kenwood TS-2000-ish CAT radio on 145.500 MHz FM.
pub fn spawn_cat_radio() -> io::Result<SimRadio> {
    spawn(
        CatRadio::default(),
        SimRadioState {
            frequency_hz: 145_500_000,
            mode: 4,
            ..SimRadioState::default()
        },
    )
}

#[derive(Default)]
struct CatRadio {
    decoder: CatDecoder,
    auto_info: u8,
}

impl CatRadio {
    /// The answer to one frame: `Ok(None)` for a set command (no answer),
    /// `Err(())` for a command or parameter the radio rejects with `?;`.
    fn answer(&mut self, f: &Frame, s: &mut SimRadioState) -> Result<Option<String>, ()> {
        let p = f.params.as_str();
        let digit = |p: &str| p.parse::<u8>().map_err(|_| ());
        let reply = match (f.command.as_str(), p) {
            ("ID", "") => "ID019;".to_string(),
            ("IF", "") => format!(
                "IF{};",
                IfReply {
                    frequency_hz: s.frequency_hz,
                    transmitting: s.ptt,
                    mode: s.mode
                }
                .encode_params()
            ),
            ("FA" | "FB", "") => format!("{}{:011};", f.command, s.frequency_hz),
            ("FA" | "FB", _) => {
                s.frequency_hz = p.parse().map_err(|_| ())?;
                return Ok(None);
            }
            ("MD", "") => format!("MD{};", s.mode),
            ("MD", _) => {
                s.mode = digit(p)?;
                return Ok(None);
            }
            // TX, TX0 (mic), TX1 (data): key. The TS-2000 answers nothing.
            ("TX", "" | "0" | "1" | "2") => {
                s.ptt = true;
                return Ok(None);
            }
            ("RX", "") => {
                s.ptt = false;
                return Ok(None);
            }
            ("BY", "") => format!("BY{}0;", u8::from(s.squelch_open)),
            ("AI", "") => format!("AI{};", self.auto_info),
            ("AI", _) => {
                self.auto_info = digit(p)?;
                return Ok(None);
            }
            ("PS", "") => "PS1;".into(),
            ("FR" | "FT" | "DC", "") => format!("{}0;", f.command),
            ("FR" | "FT" | "DC", _) => return Ok(None),
            ("SM", "0") => format!("SM0{:04};", if s.squelch_open { 15 } else { 0 }),
            ("SQ", "0") => "SQ0030;".into(),
            ("FW", "") => "FW0000;".into(),
            ("KS", "") => "KS020;".into(),
            _ => return Err(()),
        };
        Ok(Some(reply))
    }
}

impl Personality for CatRadio {
    fn on_input(&mut self, bytes: &[u8], s: &mut SimRadioState) -> Vec<u8> {
        self.decoder.push(bytes);
        let mut out = String::new();
        while let Some(frame) = self.decoder.next_frame() {
            match frame {
                Ok(f) => {
                    s.received.push(format!("{}{};", f.command, f.params));
                    match self.answer(&f, s) {
                        Ok(Some(reply)) => out.push_str(&reply),
                        Ok(None) => {}
                        Err(()) => {
                            s.rejected.push(format!("{}{};", f.command, f.params));
                            out.push_str("?;");
                        }
                    }
                }
                Err(e) => {
                    s.rejected.push(e.to_string());
                    out.push_str("?;");
                }
            }
        }
        out.into_bytes()
    }
}

/// An SA818 module (answers connect, set-group, set-volume and RSSI).
pub fn spawn_sa818_radio() -> io::Result<SimRadio> {
    spawn(
        Sa818Radio {
            lines: sa818::line_buffer(),
        },
        SimRadioState::default(),
    )
}

struct Sa818Radio {
    lines: crate::serial::framing::LineBuffer,
}

impl Personality for Sa818Radio {
    fn on_input(&mut self, bytes: &[u8], s: &mut SimRadioState) -> Vec<u8> {
        self.lines.push(bytes);
        let mut out = Vec::new();
        while let Some(line) = self.lines.next_line() {
            let parsed = line.map_err(sa818::Sa818Error::from).and_then(|l| {
                s.received
                    .push(String::from_utf8_lossy(l.trim_ascii()).into_owned());
                Command::parse(&l)
            });
            let reply = match parsed {
                Ok(Command::Connect) => Response::Connect(0),
                Ok(Command::SetGroup(g)) => {
                    let in_band =
                        |f: f64| (134.0..=174.0).contains(&f) || (400.0..=480.0).contains(&f);
                    let ok = in_band(g.tx_mhz)
                        && in_band(g.rx_mhz)
                        && g.squelch <= 8
                        && g.tx_ctcss <= 38
                        && g.rx_ctcss <= 38;
                    if ok {
                        s.group = Some(g);
                        s.frequency_hz = (g.rx_mhz * 1e6).round() as u64;
                    }
                    Response::SetGroup(u8::from(!ok))
                }
                Ok(Command::SetVolume(v)) => {
                    let ok = (1..=8).contains(&v);
                    if ok {
                        s.volume = Some(v);
                    }
                    Response::SetVolume(u8::from(!ok))
                }
                Ok(Command::ReadRssi) => Response::Rssi(if s.squelch_open { 110 } else { 20 }),
                Err(e) => {
                    s.rejected.push(e.to_string());
                    continue;
                }
            };
            out.extend(reply.encode());
        }
        out
    }
}

/// A SvxLink-PTY peer: sends `O`/`Z` on [`SimRadio::set_squelch`], records
/// `T`/`R`.
pub fn spawn_svxlink_radio() -> io::Result<SimRadio> {
    spawn(SvxlinkRadio, SimRadioState::default())
}

struct SvxlinkRadio;

impl Personality for SvxlinkRadio {
    fn on_input(&mut self, bytes: &[u8], s: &mut SimRadioState) -> Vec<u8> {
        for msg in svxlink::decode(bytes) {
            match msg {
                Ok(m) => {
                    s.received.push((m.encode() as char).to_string());
                    match m {
                        Message::Transmit => s.ptt = true,
                        Message::Receive => s.ptt = false,
                        _ => s.rejected.push(format!("{m:?} is the radio's message")),
                    }
                }
                Err(e) => s.rejected.push(e.to_string()),
            }
        }
        Vec::new()
    }

    fn on_squelch(&mut self, open: bool) -> Vec<u8> {
        let m = if open {
            Message::SquelchOpen
        } else {
            Message::SquelchClosed
        };
        vec![m.encode()]
    }
}
