//! Modem-line keying: PTT on RTS and/or DTR, COR sensed on DCD, CTS, DSR or
//! RI, each invertible, as most radio interface boxes wire it.
//!
//! [`LineKeyer`] is the sans-IO state machine (PTT lead-in and tail, COR
//! debounce, polarity); time is passed in. [`ModemLines`] is the hardware
//! behind it: a tokio-serial port in production (each read is one
//! `TIOCMGET`), [`MemoryLines`] in tests, since PTYs have no modem lines.
//! [`run_line_keying`] is the thin async loop joining them; it polls the COR
//! line every `poll_ms` (the kernel's wait-for-change ioctl blocks a thread
//! and is not offered by every USB serial driver, so polling is the portable
//! choice).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{default_baud, port, ControlBackend, ControlEvent, ControlIo};
use crate::link::{BoxFuture, LinkError};

/// An output line that can key the transmitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputLine {
    Rts,
    Dtr,
}

/// An input line that can carry the squelch (COR) signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputLine {
    Dcd,
    Cts,
    Dsr,
    Ri,
}

/// Where COR comes from: one input line, or `none` (transmit-only link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorLine {
    Dcd,
    Cts,
    Dsr,
    Ri,
    None,
}

impl CorLine {
    pub fn input(self) -> Option<InputLine> {
        match self {
            CorLine::Dcd => Some(InputLine::Dcd),
            CorLine::Cts => Some(InputLine::Cts),
            CorLine::Dsr => Some(InputLine::Dsr),
            CorLine::Ri => Some(InputLine::Ri),
            CorLine::None => None,
        }
    }
}

/// A serial port used only for its modem lines.
///
/// TOML: `kind = "modem_lines"`, `device = "/dev/ttyUSB0"`, and optionally
/// `baud` (9600), `ptt_lines` (`["rts"]`), `ptt_invert` (false), `cor_line`
/// (`"dcd"`), `cor_invert` (false), `lead_in_ms` (200), `tail_ms` (100),
/// `debounce_ms` (40), `poll_ms` (10).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModemLinesConfig {
    pub device: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_ptt_lines")]
    pub ptt_lines: Vec<OutputLine>,
    #[serde(default)]
    pub ptt_invert: bool,
    #[serde(default = "default_cor_line")]
    pub cor_line: CorLine,
    #[serde(default)]
    pub cor_invert: bool,
    #[serde(default = "default_lead_in_ms")]
    pub lead_in_ms: u64,
    #[serde(default = "default_tail_ms")]
    pub tail_ms: u64,
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

impl ModemLinesConfig {
    /// The keying part, without the device.
    pub fn keying(&self) -> LineKeying {
        LineKeying {
            ptt_lines: self.ptt_lines.clone(),
            ptt_invert: self.ptt_invert,
            cor_line: self.cor_line,
            cor_invert: self.cor_invert,
            lead_in_ms: self.lead_in_ms,
            tail_ms: self.tail_ms,
            debounce_ms: self.debounce_ms,
            poll_ms: self.poll_ms,
        }
    }
}

/// How PTT and COR map onto modem lines; the same fields and defaults as
/// [`ModemLinesConfig`] without `device`/`baud` (used by SA818 modules keyed
/// through their own port's lines).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineKeying {
    #[serde(default = "default_ptt_lines")]
    pub ptt_lines: Vec<OutputLine>,
    #[serde(default)]
    pub ptt_invert: bool,
    #[serde(default = "default_cor_line")]
    pub cor_line: CorLine,
    #[serde(default)]
    pub cor_invert: bool,
    #[serde(default = "default_lead_in_ms")]
    pub lead_in_ms: u64,
    #[serde(default = "default_tail_ms")]
    pub tail_ms: u64,
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

impl Default for LineKeying {
    fn default() -> Self {
        LineKeying {
            ptt_lines: default_ptt_lines(),
            ptt_invert: false,
            cor_line: default_cor_line(),
            cor_invert: false,
            lead_in_ms: default_lead_in_ms(),
            tail_ms: default_tail_ms(),
            debounce_ms: default_debounce_ms(),
            poll_ms: default_poll_ms(),
        }
    }
}

fn default_ptt_lines() -> Vec<OutputLine> {
    vec![OutputLine::Rts]
}
fn default_cor_line() -> CorLine {
    CorLine::Dcd
}
fn default_lead_in_ms() -> u64 {
    200
}
fn default_tail_ms() -> u64 {
    100
}
fn default_debounce_ms() -> u64 {
    40
}
fn default_poll_ms() -> u64 {
    10
}

/// What the keyer asks its shell to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyerAction {
    /// Drive the PTT line(s) to this electrical level (polarity applied).
    SetPttLevel(bool),
    /// Report this to the link.
    Event(ControlEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PttState {
    Idle,
    /// Keyed, waiting for the transmitter to settle before audio.
    LeadIn {
        until: Instant,
    },
    Keyed,
    /// Released by the daemon, still keyed so the last syllable gets out.
    Tail {
        until: Instant,
    },
}

/// The sans-IO modem-line state machine.
#[derive(Debug)]
pub struct LineKeyer {
    lead_in: Duration,
    tail: Duration,
    debounce: Duration,
    ptt_invert: bool,
    cor_invert: bool,
    ptt: PttState,
    cor_reported: Option<bool>,
    /// A COR level that differs from the reported one, and since when.
    cor_candidate: Option<(bool, Instant)>,
    actions: VecDeque<KeyerAction>,
}

impl LineKeyer {
    pub fn new(keying: &LineKeying) -> LineKeyer {
        LineKeyer {
            lead_in: Duration::from_millis(keying.lead_in_ms),
            tail: Duration::from_millis(keying.tail_ms),
            debounce: Duration::from_millis(keying.debounce_ms),
            ptt_invert: keying.ptt_invert,
            cor_invert: keying.cor_invert,
            ptt: PttState::Idle,
            cor_reported: None,
            cor_candidate: None,
            actions: VecDeque::new(),
        }
    }

    /// The electrical PTT level that means "unkeyed", to set at start-up.
    pub fn idle_level(&self) -> bool {
        self.ptt_invert
    }

    /// The daemon wants the transmitter keyed (`true`) or released.
    pub fn request_ptt(&mut self, now: Instant, on: bool) {
        match (self.ptt, on) {
            (PttState::Idle, true) => {
                self.set_level(true);
                self.ptt = PttState::LeadIn {
                    until: now + self.lead_in,
                };
                self.handle_timeout(now);
            }
            // Re-keyed during the tail: the transmitter never dropped.
            (PttState::Tail { .. }, true) => self.ptt = PttState::Keyed,
            // Released before any audio went out: no tail needed.
            (PttState::LeadIn { .. }, false) => {
                self.set_level(false);
                self.ptt = PttState::Idle;
            }
            (PttState::Keyed, false) => {
                self.ptt = PttState::Tail {
                    until: now + self.tail,
                };
                self.handle_timeout(now);
            }
            _ => {}
        }
    }

    /// Unkeys at once (shutdown, device lost), skipping the tail.
    pub fn release_now(&mut self) {
        match self.ptt {
            PttState::Idle => {}
            PttState::LeadIn { .. } => self.set_level(false),
            PttState::Keyed | PttState::Tail { .. } => {
                self.set_level(false);
                self.actions
                    .push_back(KeyerAction::Event(ControlEvent::Ptt(false)));
            }
        }
        self.ptt = PttState::Idle;
    }

    /// One reading of the COR line's electrical level at `now`.
    pub fn cor_sample(&mut self, now: Instant, level: bool) {
        let open = level != self.cor_invert;
        if self.cor_reported == Some(open) {
            self.cor_candidate = None;
            return;
        }
        let since = match self.cor_candidate {
            Some((candidate, since)) if candidate == open => since,
            _ => {
                self.cor_candidate = Some((open, now));
                now
            }
        };
        if now.saturating_duration_since(since) >= self.debounce {
            self.cor_reported = Some(open);
            self.cor_candidate = None;
            self.actions
                .push_back(KeyerAction::Event(ControlEvent::Cor(open)));
        }
    }

    /// Advances the lead-in and tail timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.ptt {
            PttState::LeadIn { until } if now >= until => {
                self.ptt = PttState::Keyed;
                self.actions
                    .push_back(KeyerAction::Event(ControlEvent::Ptt(true)));
            }
            PttState::Tail { until } if now >= until => {
                self.ptt = PttState::Idle;
                self.set_level(false);
                self.actions
                    .push_back(KeyerAction::Event(ControlEvent::Ptt(false)));
            }
            _ => {}
        }
    }

    /// When [`LineKeyer::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.ptt {
            PttState::LeadIn { until } | PttState::Tail { until } => Some(until),
            _ => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<KeyerAction> {
        self.actions.pop_front()
    }

    fn set_level(&mut self, keyed: bool) {
        self.actions
            .push_back(KeyerAction::SetPttLevel(keyed != self.ptt_invert));
    }
}

/// The modem lines of one port.
pub trait ModemLines: Send {
    fn set_output(&mut self, line: OutputLine, level: bool) -> io::Result<()>;
    fn read_input(&mut self, line: InputLine) -> io::Result<bool>;
}

impl ModemLines for tokio_serial::SerialStream {
    fn set_output(&mut self, line: OutputLine, level: bool) -> io::Result<()> {
        use tokio_serial::SerialPort;
        match line {
            OutputLine::Rts => self.write_request_to_send(level)?,
            OutputLine::Dtr => self.write_data_terminal_ready(level)?,
        }
        Ok(())
    }

    fn read_input(&mut self, line: InputLine) -> io::Result<bool> {
        use tokio_serial::SerialPort;
        Ok(match line {
            InputLine::Dcd => self.read_carrier_detect()?,
            InputLine::Cts => self.read_clear_to_send()?,
            InputLine::Dsr => self.read_data_set_ready()?,
            InputLine::Ri => self.read_ring_indicator()?,
        })
    }
}

/// Modem lines in memory, shared between a driver and a test.
#[derive(Debug, Clone, Default)]
pub struct MemoryLines {
    state: Arc<Mutex<MemoryLineState>>,
}

/// The levels of [`MemoryLines`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryLineState {
    pub rts: bool,
    pub dtr: bool,
    pub dcd: bool,
    pub cts: bool,
    pub dsr: bool,
    pub ri: bool,
    /// Makes every access fail like an unplugged USB adapter.
    pub unplugged: bool,
}

impl MemoryLines {
    pub fn new() -> MemoryLines {
        MemoryLines::default()
    }

    pub fn state(&self) -> MemoryLineState {
        *self.lock()
    }

    pub fn set_input(&self, line: InputLine, level: bool) {
        let mut s = self.lock();
        match line {
            InputLine::Dcd => s.dcd = level,
            InputLine::Cts => s.cts = level,
            InputLine::Dsr => s.dsr = level,
            InputLine::Ri => s.ri = level,
        }
    }

    pub fn unplug(&self) {
        self.lock().unplugged = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryLineState> {
        // A panicking test thread cannot leave the plain-data state invalid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ModemLines for MemoryLines {
    fn set_output(&mut self, line: OutputLine, level: bool) -> io::Result<()> {
        let mut s = self.lock();
        if s.unplugged {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        match line {
            OutputLine::Rts => s.rts = level,
            OutputLine::Dtr => s.dtr = level,
        }
        Ok(())
    }

    fn read_input(&mut self, line: InputLine) -> io::Result<bool> {
        let s = self.lock();
        if s.unplugged {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(match line {
            InputLine::Dcd => s.dcd,
            InputLine::Cts => s.cts,
            InputLine::Dsr => s.dsr,
            InputLine::Ri => s.ri,
        })
    }
}

/// Runs the keyer over `lines` until cancelled (PTT released, `Ok`) or the
/// lines fail or `device` vanishes (`Err`). Emits [`ControlEvent::Up`] first.
pub async fn run_line_keying<L: ModemLines>(
    lines: &mut L,
    keying: &LineKeying,
    device: Option<&Path>,
    io: &mut ControlIo,
    cancel: CancellationToken,
) -> Result<(), LinkError> {
    let what = device
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "modem lines".into());
    let io_err = |source: io::Error| LinkError::Io {
        what: what.clone(),
        source,
    };
    let mut keyer = LineKeyer::new(keying);
    for line in &keying.ptt_lines {
        lines
            .set_output(*line, keyer.idle_level())
            .map_err(io_err)?;
    }
    io.emit(ControlEvent::Up).await;
    let cor_input = keying.cor_line.input();
    let mut poll = tokio::time::interval(Duration::from_millis(keying.poll_ms.max(1)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let initial = *io.ptt.borrow_and_update();
    keyer.request_ptt(now(), initial);
    let mut ptt_open = true;
    let result = loop {
        if let Err(e) = apply_actions(&mut keyer, lines, keying, io).await {
            break Err(io_err(e));
        }
        let deadline = keyer.poll_timeout();
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            changed = io.ptt.changed(), if ptt_open => match changed {
                Ok(()) => {
                    let on = *io.ptt.borrow_and_update();
                    keyer.request_ptt(now(), on);
                }
                Err(_) => {
                    ptt_open = false;
                    keyer.request_ptt(now(), false);
                }
            },
            _ = poll.tick(), if cor_input.is_some() => {
                if let Some(input) = cor_input {
                    match lines.read_input(input) {
                        Ok(level) => keyer.cor_sample(now(), level),
                        Err(e) => break Err(io_err(e)),
                    }
                }
            }
            _ = sleep_until_opt(deadline) => keyer.handle_timeout(now()),
            e = watch_opt(device) => break Err(e),
        }
    };
    keyer.release_now();
    // Best effort: on a lost device the release cannot reach the wire.
    let _ = apply_actions(&mut keyer, lines, keying, io).await;
    result
}

async fn apply_actions<L: ModemLines>(
    keyer: &mut LineKeyer,
    lines: &mut L,
    keying: &LineKeying,
    io: &ControlIo,
) -> io::Result<()> {
    while let Some(action) = keyer.poll_action() {
        match action {
            KeyerAction::SetPttLevel(level) => {
                for line in &keying.ptt_lines {
                    lines.set_output(*line, level)?;
                }
            }
            KeyerAction::Event(ev) => io.emit(ev).await,
        }
    }
    Ok(())
}

/// The current time on tokio's clock (paused in tests), as the core expects.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn watch_opt(device: Option<&Path>) -> LinkError {
    match device {
        Some(path) => port::watch_path(path).await,
        None => std::future::pending().await,
    }
}

/// [`ControlBackend`] for a serial port's modem lines.
pub struct ModemLinesBackend {
    config: ModemLinesConfig,
}

impl ModemLinesBackend {
    pub fn new(config: ModemLinesConfig) -> ModemLinesBackend {
        ModemLinesBackend { config }
    }
}

impl ControlBackend for ModemLinesBackend {
    fn describe(&self) -> String {
        format!("modem lines {}", self.config.device.display())
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
            let mut port = port::open_serial(&device, self.config.baud)?;
            port::check_modem_lines(&port, &device)?;
            let keying = self.config.keying();
            run_line_keying(&mut port, &keying, Some(&device), io, cancel).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keying(lead_in_ms: u64, tail_ms: u64, debounce_ms: u64) -> LineKeying {
        LineKeying {
            lead_in_ms,
            tail_ms,
            debounce_ms,
            ..LineKeying::default()
        }
    }

    fn actions(k: &mut LineKeyer) -> Vec<KeyerAction> {
        std::iter::from_fn(|| k.poll_action()).collect()
    }

    use KeyerAction::{Event, SetPttLevel};

    #[test]
    fn lead_in_then_tail() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut k = LineKeyer::new(&keying(200, 100, 0));
        k.request_ptt(t0, true);
        assert_eq!(actions(&mut k), vec![SetPttLevel(true)]);
        assert_eq!(k.poll_timeout(), Some(ms(200)));
        k.handle_timeout(ms(199));
        assert_eq!(actions(&mut k), vec![]);
        k.handle_timeout(ms(200));
        assert_eq!(actions(&mut k), vec![Event(ControlEvent::Ptt(true))]);
        assert_eq!(k.poll_timeout(), None);
        k.request_ptt(ms(1000), false);
        assert_eq!(actions(&mut k), vec![]);
        assert_eq!(k.poll_timeout(), Some(ms(1100)));
        k.handle_timeout(ms(1100));
        assert_eq!(
            actions(&mut k),
            vec![SetPttLevel(false), Event(ControlEvent::Ptt(false))]
        );
    }

    #[test]
    fn rekey_during_tail_keeps_transmitter_up() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut k = LineKeyer::new(&keying(0, 100, 0));
        k.request_ptt(t0, true);
        assert_eq!(
            actions(&mut k),
            vec![SetPttLevel(true), Event(ControlEvent::Ptt(true))]
        );
        k.request_ptt(ms(10), false);
        k.request_ptt(ms(50), true);
        k.handle_timeout(ms(200));
        assert_eq!(actions(&mut k), vec![]);
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn release_during_lead_in_drops_line_without_event() {
        let t0 = Instant::now();
        let mut k = LineKeyer::new(&keying(300, 100, 0));
        k.request_ptt(t0, true);
        k.request_ptt(t0 + Duration::from_millis(100), false);
        assert_eq!(actions(&mut k), vec![SetPttLevel(true), SetPttLevel(false)]);
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn polarity_inverts_ptt_and_cor() {
        let t0 = Instant::now();
        let mut k = LineKeyer::new(&LineKeying {
            ptt_invert: true,
            cor_invert: true,
            lead_in_ms: 0,
            debounce_ms: 0,
            ..LineKeying::default()
        });
        assert!(k.idle_level());
        k.request_ptt(t0, true);
        assert_eq!(
            actions(&mut k),
            vec![SetPttLevel(false), Event(ControlEvent::Ptt(true))]
        );
        k.cor_sample(t0, true);
        assert_eq!(actions(&mut k), vec![Event(ControlEvent::Cor(false))]);
        k.cor_sample(t0, false);
        assert_eq!(actions(&mut k), vec![Event(ControlEvent::Cor(true))]);
    }

    #[test]
    fn debounce_ignores_short_glitches() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut k = LineKeyer::new(&keying(0, 0, 40));
        k.cor_sample(ms(0), false);
        k.cor_sample(ms(40), false);
        assert_eq!(actions(&mut k), vec![Event(ControlEvent::Cor(false))]);
        // A 30 ms glitch is ignored.
        k.cor_sample(ms(50), true);
        k.cor_sample(ms(60), true);
        k.cor_sample(ms(80), true);
        k.cor_sample(ms(90), false);
        k.cor_sample(ms(130), true);
        assert_eq!(actions(&mut k), vec![]);
        // Held 40 ms: reported once.
        k.cor_sample(ms(170), true);
        k.cor_sample(ms(180), true);
        assert_eq!(actions(&mut k), vec![Event(ControlEvent::Cor(true))]);
    }
}
