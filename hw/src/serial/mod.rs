//! Control interfaces: how rollcalld keys a base station and senses its
//! squelch (COR) when audio travels separately, over a sound card.
//!
//! # Layout
//! - [`lines`]: modem-line keying (PTT on RTS/DTR, COR on DCD/CTS/DSR/RI) —
//!   the sans-IO [`lines::LineKeyer`] (lead-in, tail, polarity, debounce) and
//!   the [`lines::ModemLines`] trait with tokio-serial and in-memory lines.
//! - [`cm108`]: CM108/CM119 USB sound-card GPIO over `/dev/hidrawN`.
//! - [`svxlink`]: the SvxLink-style PTY text protocol (`O`/`Z`, `T`/`R`).
//! - [`cat`]: Kenwood-style CAT (`TX;`, `RX;`, `IF;`, busy query).
//! - [`sa818`]: SA818/DRA818 module AT commands (channel set-up at start).
//! - [`rigctld`]: the Hamlib `rigctld` network protocol, so any Hamlib model
//!   can be keyed.
//! - [`framing`]: the bounded line buffer the text protocols share.
//! - [`port`]: opening serial devices and PTYs, and noticing when they vanish.
//!
//! Every protocol has a pure core (bytes in, values out, no I/O, no clock,
//! never panics on any input) and a thin tokio shell.
//!
//! # Pairing a control half with an audio half
//! A station's link is usually a sound card (audio) plus one of the control
//! interfaces above (PTT and COR). The control half is a [`ControlBackend`]:
//!
//! ```text
//! let backend: Box<dyn ControlBackend> = serial::backend_from_config(&cfg.control);
//! let (ptt_tx, ptt_rx) = tokio::sync::watch::channel(false);   // requested PTT
//! let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel(32);       // ControlEvent
//! let mut control = ControlIo { ptt: ptt_rx, events: ev_tx };
//! // inside the sound-card driver's LinkDriver::run:
//! tokio::select! {
//!     r = backend.run(&mut control, cancel.child_token()) => return r, // device lost
//!     r = audio_loop(&ptt_tx, &mut ev_rx, io) => return r,
//! }
//! ```
//!
//! The audio driver sets `ptt_tx` from `LinkCommand::Ptt`, starts playing
//! frames once it sees [`ControlEvent::Ptt`]`(true)` (that is after the
//! lead-in), tags captured frames with the last [`ControlEvent::Cor`] and
//! forwards both as `LinkEvent::Ptt`/`LinkEvent::Cor`. A backend returns an
//! error when its device is lost (read error, or the configured path vanished —
//! noticed within [`port::PATH_CHECK`]); the audio driver returns it too, so
//! the supervisor restarts the pair. Backends release PTT before returning.
//!
//! For a control-only link (COR and PTT, no audio) wrap the backend in
//! [`ControlLink`], a [`LinkDriver`] for `hw::link::spawn_supervised`.

pub mod cat;
pub mod cm108;
pub mod framing;
pub mod lines;
pub mod port;
pub mod rigctld;
pub mod sa818;
pub mod svxlink;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::link::{BoxFuture, DriverIo, LinkCommand, LinkDriver, LinkError, LinkEvent};

/// What a control backend reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlEvent {
    /// The device is open and answering.
    Up,
    /// The squelch opened (`true`) or closed.
    Cor(bool),
    /// The transmitter's real keying state: `true` once keyed and past the
    /// lead-in (audio may start), `false` once released after the tail.
    Ptt(bool),
}

/// The channels a backend works with during one run.
pub struct ControlIo {
    /// The requested PTT state; the backend follows its latest value.
    pub ptt: watch::Receiver<bool>,
    pub events: mpsc::Sender<ControlEvent>,
}

impl ControlIo {
    /// Sends an event, dropping it if the receiver is gone (shutdown).
    pub async fn emit(&self, event: ControlEvent) {
        let _ = self.events.send(event).await;
    }
}

/// The control half of a link: keys the transmitter and reports COR.
///
/// `run` opens the device, emits [`ControlEvent::Up`], follows `io.ptt` and
/// reports COR until the device fails (returns the error) or `cancel` fires
/// (releases PTT and returns `Ok`).
pub trait ControlBackend: Send + 'static {
    /// A short description for logs, e.g. `cat /dev/ttyUSB0`.
    fn describe(&self) -> String;
    fn run<'a>(
        &'a mut self,
        io: &'a mut ControlIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>>;
}

/// The control interface of a link, as the daemon's config names it
/// (`kind = "modem_lines" | "cm108" | "svxlink_pty" | "cat" | "sa818" | "rigctld"`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlConfig {
    ModemLines(lines::ModemLinesConfig),
    Cm108(cm108::Cm108Config),
    SvxlinkPty(svxlink::SvxlinkPtyConfig),
    Cat(cat::CatConfig),
    Sa818(sa818::Sa818Config),
    Rigctld(rigctld::RigctldConfig),
}

/// Builds the backend a config names. Nothing is opened until `run`.
pub fn backend_from_config(config: &ControlConfig) -> Box<dyn ControlBackend> {
    match config.clone() {
        ControlConfig::ModemLines(c) => Box::new(lines::ModemLinesBackend::new(c)),
        ControlConfig::Cm108(c) => Box::new(cm108::Cm108Backend::new(c)),
        ControlConfig::SvxlinkPty(c) => Box::new(svxlink::SvxlinkBackend::new(c)),
        ControlConfig::Cat(c) => Box::new(cat::CatBackend::new(c)),
        ControlConfig::Sa818(c) => Box::new(sa818::Sa818Backend::new(c)),
        ControlConfig::Rigctld(c) => Box::new(rigctld::RigctldBackend::new(c)),
    }
}

/// A control-only link: COR and PTT, no audio. Runs a [`ControlBackend`] as a
/// [`LinkDriver`], so the supervisor reopens the device when it comes back.
pub struct ControlLink {
    backend: Box<dyn ControlBackend>,
}

impl ControlLink {
    pub fn new(backend: Box<dyn ControlBackend>) -> ControlLink {
        ControlLink { backend }
    }
}

impl LinkDriver for ControlLink {
    fn describe(&self) -> String {
        self.backend.describe()
    }

    fn run<'a>(
        &'a mut self,
        io: &'a mut DriverIo,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        Box::pin(async move {
            // Every run starts unkeyed: a PTT held before a restart is stale.
            let (ptt_tx, ptt_rx) = watch::channel(false);
            let (ev_tx, mut ev_rx) = mpsc::channel(32);
            let mut control = ControlIo {
                ptt: ptt_rx,
                events: ev_tx,
            };
            let backend = self.backend.run(&mut control, cancel.clone());
            tokio::pin!(backend);
            let mut commands_open = true;
            loop {
                tokio::select! {
                    result = &mut backend => {
                        // Forward what the backend said before it ended
                        // (e.g. its final Ptt(false)).
                        while let Ok(ev) = ev_rx.try_recv() {
                            io.emit(control_to_link(ev)).await;
                        }
                        return result;
                    }
                    Some(ev) = ev_rx.recv() => io.emit(control_to_link(ev)).await,
                    cmd = io.commands.recv(), if commands_open => match cmd {
                        Some(LinkCommand::Ptt(on)) => { ptt_tx.send_replace(on); }
                        // No audio path on a control-only link.
                        Some(LinkCommand::Transmit(_)) => {}
                        // The daemon dropped the handle: unkey and keep reporting.
                        None => {
                            ptt_tx.send_replace(false);
                            commands_open = false;
                        }
                    },
                }
            }
        })
    }
}

fn control_to_link(ev: ControlEvent) -> LinkEvent {
    match ev {
        ControlEvent::Up => LinkEvent::Up,
        ControlEvent::Cor(open) => LinkEvent::Cor(open),
        ControlEvent::Ptt(on) => LinkEvent::Ptt(on),
    }
}

fn default_baud() -> u32 {
    9600
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parse(json: &str) -> Result<ControlConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn modem_lines_config_defaults() {
        let c = parse(r#"{"kind":"modem_lines","device":"/dev/ttyUSB0"}"#).unwrap();
        assert_eq!(
            c,
            ControlConfig::ModemLines(lines::ModemLinesConfig {
                device: PathBuf::from("/dev/ttyUSB0"),
                baud: 9600,
                ptt_lines: vec![lines::OutputLine::Rts],
                ptt_invert: false,
                cor_line: lines::CorLine::Dcd,
                cor_invert: false,
                lead_in_ms: 200,
                tail_ms: 100,
                debounce_ms: 40,
                poll_ms: 10,
            })
        );
        let c = parse(
            r#"{"kind":"modem_lines","device":"/dev/ttyS0","ptt_lines":["rts","dtr"],"cor_line":"none","ptt_invert":true}"#,
        )
        .unwrap();
        let ControlConfig::ModemLines(c) = c else {
            panic!("wrong kind")
        };
        assert_eq!(c.keying().ptt_lines.len(), 2);
        assert_eq!(c.keying().cor_line.input(), None);
    }

    #[test]
    fn unknown_fields_and_values_are_rejected() {
        let err =
            parse(r#"{"kind":"modem_lines","device":"/dev/x","ptt_line":"rts"}"#).unwrap_err();
        assert!(err.contains("unknown field `ptt_line`"), "{err}");
        let err = parse(r#"{"kind":"modem_lines","device":"/dev/x","cor_line":"cd"}"#).unwrap_err();
        assert!(err.contains("unknown variant `cd`"), "{err}");
        let err = parse(r#"{"kind":"telepathy"}"#).unwrap_err();
        assert!(err.contains("unknown variant `telepathy`"), "{err}");
        let err = parse(r#"{"kind":"rigctld","addr":"127.0.0.1:4532","pol_ms":5}"#).unwrap_err();
        assert!(err.contains("unknown field `pol_ms`"), "{err}");
    }

    #[test]
    fn every_kind_parses_with_defaults() {
        let c = parse(r#"{"kind":"cm108","product_id":316}"#).unwrap();
        assert_eq!(
            c,
            ControlConfig::Cm108(cm108::Cm108Config {
                product_id: Some(0x013c),
                ..cm108::Cm108Config::default()
            })
        );
        let c = parse(r#"{"kind":"svxlink_pty","path":"/run/radio"}"#).unwrap();
        assert!(matches!(c, ControlConfig::SvxlinkPty(_)));
        let c = parse(r#"{"kind":"cat","device":"/dev/ttyUSB1"}"#).unwrap();
        assert_eq!(
            c,
            ControlConfig::Cat(cat::CatConfig::for_device("/dev/ttyUSB1"))
        );
        let c = parse(r#"{"kind":"rigctld","addr":"127.0.0.1:4532"}"#).unwrap();
        assert_eq!(
            c,
            ControlConfig::Rigctld(rigctld::RigctldConfig::for_addr("127.0.0.1:4532"))
        );
        let c = parse(
            r#"{"kind":"sa818","device":"/dev/ttyAMA0","group":{"tx_mhz":145.5,"rx_mhz":145.5,"rx_ctcss":88.5},
                "keying":{"via":"lines","ptt_lines":["dtr"],"cor_line":"cts"}}"#,
        )
        .unwrap();
        let ControlConfig::Sa818(s) = c else {
            panic!("wrong kind")
        };
        assert_eq!(s.baud, 9600);
        assert_eq!(s.group.squelch, 1);
        assert_eq!(s.group.to_group().unwrap().rx_ctcss, 8);
        let sa818::Sa818Keying::Lines(k) = &s.keying else {
            panic!("wrong keying")
        };
        assert_eq!(k.cor_line, lines::CorLine::Cts);
        assert_eq!(k.lead_in_ms, 200);
        // Keying defaults to the port's lines; cm108 keying takes its fields.
        let c = parse(
            r#"{"kind":"sa818","device":"/dev/x","group":{"tx_mhz":433.0,"rx_mhz":433.0},"keying":{"via":"cm108","ptt_gpio":4}}"#,
        )
        .unwrap();
        let ControlConfig::Sa818(s) = c else {
            panic!("wrong kind")
        };
        assert!(matches!(s.keying, sa818::Sa818Keying::Cm108(ref g) if g.ptt_gpio == 4));
        let err = parse(
            r#"{"kind":"sa818","device":"/dev/x","group":{"tx_mhz":433.0,"rx_mhz":433.0},"keying":{"via":"lines","bogus":1}}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }

    /// Echoes requested PTT back as keying events, like a radio with no
    /// lead-in, and records what it saw.
    struct EchoBackend {
        seen: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
    }

    impl ControlBackend for EchoBackend {
        fn describe(&self) -> String {
            "echo".into()
        }
        fn run<'a>(
            &'a mut self,
            io: &'a mut ControlIo,
            cancel: CancellationToken,
        ) -> BoxFuture<'a, Result<(), LinkError>> {
            Box::pin(async move {
                io.emit(ControlEvent::Up).await;
                io.emit(ControlEvent::Cor(true)).await;
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        r = io.ptt.changed() => {
                            if r.is_err() {
                                return Err(LinkError::Protocol("ptt sender gone".into()));
                            }
                            let on = *io.ptt.borrow_and_update();
                            self.seen.lock().unwrap().push(on);
                            io.emit(ControlEvent::Ptt(on)).await;
                        }
                    }
                }
            })
        }
    }

    #[tokio::test]
    async fn control_link_forwards_commands_and_events() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut link = ControlLink::new(Box::new(EchoBackend { seen: seen.clone() }));
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let (ev_tx, mut ev_rx) = mpsc::channel(8);
        let mut io = DriverIo::new(ev_tx, cmd_rx);
        let cancel = CancellationToken::new();
        let run_cancel = cancel.clone();
        let task = tokio::spawn(async move { link.run(&mut io, run_cancel).await });
        assert!(matches!(ev_rx.recv().await, Some(LinkEvent::Up)));
        assert!(matches!(ev_rx.recv().await, Some(LinkEvent::Cor(true))));
        cmd_tx
            .send(LinkCommand::Transmit(crate::audio::AudioFrame::SILENCE))
            .await
            .unwrap();
        cmd_tx.send(LinkCommand::Ptt(true)).await.unwrap();
        assert!(matches!(ev_rx.recv().await, Some(LinkEvent::Ptt(true))));
        // The daemon dropping its handle unkeys the transmitter.
        drop(cmd_tx);
        assert!(matches!(ev_rx.recv().await, Some(LinkEvent::Ptt(false))));
        cancel.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![true, false]);
    }
}
