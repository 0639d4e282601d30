//! The run state machine: one roll-call run from start to its last guard's
//! outcome. Pure: time is passed in (`Now`: wall `Timestamp` for the record,
//! monotonic `Instant` for every wait), inputs arrive through
//! [`Run::handle_event`], [`Run::handle_tx_done`] and
//! [`Run::handle_timeout`], and what must happen comes out of
//! [`Run::poll_action`] in order. The driver (`service.rs`) executes
//! [`Action::Store`]s before any later [`Action::Publish`], so nothing is
//! announced before it is committed.
//!
//! Phases of a run, any combination of modes:
//! 1. app: one `rollcall_app_request` per guard with an app id; the response
//!    window starts at once.
//! 2. group: one announcement (clip or built-in tones); the response window
//!    starts when it has been sent (or failed to be).
//! 3. individual: each guard not yet answered in turn: his selective call
//!    (DTMF / 5-tone / MDC1200 radio check, or a DMR radio check through the
//!    [`Action::RadioCheck`] extension point), then his reply window; retried
//!    `retries` times.
//!
//! Any ANI on the run's channel from a guard of the run, or an app ack with
//! the run's reference, answers him, whatever phase is going on. A guard is
//! on time when he answers by `max(start + on_time, first call + reply
//! window)`, late after that. The run ends when every guard answered, or
//! when the individual sequence is done and the response window is over;
//! unanswered guards are then missed (and escalated when configured).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rollcall_hw::signalling::encode;
use rollcall_hw::signalling::mdc1200::{self, MdcPacket};
use rollcall_hw::signalling::SelcallStandard;
use tokio::time::Instant;

use crate::channel::TxError;
use crate::config::RollcallMode;
use crate::events::Event;
use crate::roster::Guard;

use super::schedule::RunOptions;

/// A moment, on both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall: Timestamp,
    pub mono: Instant,
}

/// How a guard is called individually.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCode {
    Dtmf(String),
    Selcall(String),
    Mdc1200(u16),
    Dmr(u32),
}

impl CallCode {
    pub fn kind(&self) -> &'static str {
        match self {
            CallCode::Dtmf(_) => "dtmf",
            CallCode::Selcall(_) => "selcall",
            CallCode::Mdc1200(_) => "mdc1200",
            CallCode::Dmr(_) => "dmr",
        }
    }

    /// The best way to call `g`: an MDC1200 radio check gets an automatic
    /// acknowledgement from the radio, so it is preferred; then DMR, then
    /// 5-tone, then DTMF.
    pub fn for_guard(g: &Guard) -> Option<CallCode> {
        if let Some(m) = g
            .mdc1200
            .as_deref()
            .and_then(|m| u16::from_str_radix(m, 16).ok())
        {
            return Some(CallCode::Mdc1200(m));
        }
        if let Some(d) = g.dmr {
            return Some(CallCode::Dmr(d));
        }
        if let Some(s) = &g.selcall {
            return Some(CallCode::Selcall(s.clone()));
        }
        g.dtmf.clone().map(CallCode::Dtmf)
    }
}

/// One guard of a run, frozen from the roster at the run's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunGuard {
    pub id: String,
    pub name: String,
    pub company: String,
    pub supervisor: Option<String>,
    pub call: Option<CallCode>,
    /// Every (kind, unit) he may answer with; kinds as in `Event::Ani`,
    /// MDC1200 units upper-case.
    pub codes: Vec<(String, String)>,
    pub app_id: Option<String>,
}

impl RunGuard {
    pub fn from_roster(g: &Guard, supervisor: Option<String>) -> RunGuard {
        let mut codes = Vec::new();
        if let Some(c) = &g.dtmf {
            codes.push(("dtmf".into(), c.clone()));
        }
        if let Some(c) = &g.selcall {
            codes.push(("selcall".into(), c.clone()));
        }
        if let Some(c) = &g.mdc1200 {
            codes.push(("mdc1200".into(), c.to_ascii_uppercase()));
        }
        if let Some(c) = g.dmr {
            codes.push(("dmr".into(), c.to_string()));
        }
        RunGuard {
            id: g.id.clone(),
            name: g.name.clone(),
            company: g.company.clone(),
            supervisor,
            call: CallCode::for_guard(g),
            codes,
            app_id: g.app_id.clone(),
        }
    }
}

/// Everything a run needs to know at its start.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub run_id: i64,
    /// The schedule that started it; `None` for a manual run.
    pub schedule_id: Option<String>,
    pub channel: String,
    pub modes: Vec<RollcallMode>,
    pub guards: Vec<RunGuard>,
    pub options: RunOptions,
    /// Group-mode announcement (8 kHz mono); `None` plays built-in tones.
    pub announcement: Option<Arc<Vec<i16>>>,
    /// Individual mode: a clip sent after each selective call (not after a
    /// DMR radio check, which is data, not audio).
    pub call_clip: Option<Arc<Vec<i16>>>,
    /// 5-tone standard of the channel.
    pub selcall: SelcallStandard,
}

impl RunPlan {
    fn has(&self, m: RollcallMode) -> bool {
        self.modes.contains(&m)
    }

    /// The reference an app ack must carry to answer this run.
    pub fn ref_id(&self) -> String {
        ref_id(self.run_id)
    }

    /// Upper bound of a run's length, for deciding after a restart whether
    /// it can still resume.
    pub fn budget(&self) -> Duration {
        let mut b = Duration::ZERO;
        if self.has(RollcallMode::Group) || self.has(RollcallMode::App) {
            b = Duration::from_secs(self.options.window_s + 60);
        }
        if self.has(RollcallMode::Individual) {
            let per_call = Duration::from_secs(self.options.reply_window_s + 3);
            let calls = self.guards.len() as u32 * (self.options.retries + 1);
            b = b.max(per_call * calls + Duration::from_secs(60));
        }
        b
    }
}

/// The app-ack reference of run `run_id`.
pub fn ref_id(run_id: i64) -> String {
    format!("rollcall-{run_id}")
}

/// How a guard's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Pending,
    Answered,
    Late,
    Missed,
    /// The run was closed by a restart before he answered.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Answered => "answered",
            Outcome::Late => "late",
            Outcome::Missed => "missed",
            Outcome::Interrupted => "interrupted",
        }
    }
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "pending" => Outcome::Pending,
            "answered" => Outcome::Answered,
            "late" => Outcome::Late,
            "missed" => Outcome::Missed,
            "interrupted" => Outcome::Interrupted,
            _ => return None,
        })
    }
    pub fn is_answer(self) -> bool {
        matches!(self, Outcome::Answered | Outcome::Late)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Finished,
    Interrupted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Interrupted => "interrupted",
        }
    }
}

/// Outcome counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub answered: u32,
    pub late: u32,
    pub missed: u32,
    pub interrupted: u32,
}

/// Rows the driver commits.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// A guard was called (again).
    Called { guard: String, attempts: u32 },
    /// The response window's wall-clock end, once known.
    Window { end: Timestamp },
    /// A guard's final outcome.
    Outcome {
        guard: String,
        outcome: Outcome,
        at: Option<Timestamp>,
        /// From the run's start.
        offset_ms: Option<i64>,
        kind: Option<String>,
        unit: Option<String>,
    },
    /// An identity heard during the run that is not one of its guards.
    Unknown {
        at: Timestamp,
        kind: String,
        unit: String,
        link: String,
    },
    /// The run ended.
    Finish {
        state: RunState,
        at: Timestamp,
        counts: Counts,
    },
}

/// What the driver must do, in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send audio on the run's channel (`TxSource::RollCall`); report with
    /// [`Run::handle_tx_done`]. `guard` is `None` for the announcement.
    Transmit {
        guard: Option<String>,
        samples: Arc<Vec<i16>>,
    },
    /// Ask the DMR side for a radio check of `dmr_id`; report with
    /// [`Run::handle_tx_done`]. The acknowledgement comes back as an
    /// `Event::Ani` of kind `dmr`.
    RadioCheck {
        guard: String,
        dmr_id: u32,
    },
    Store(StoreOp),
    Publish(Event),
}

#[derive(Debug, Clone)]
struct Slot {
    outcome: Outcome,
    attempts: u32,
    first_call: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Group announcement being sent.
    Announcing,
    /// Next guard to consider in the individual sequence.
    Next(usize),
    /// Waiting for the transmitter to finish calling guard `i`.
    Calling(usize),
    /// Reply window of guard `i`.
    Waiting(usize, Instant),
    Done,
}

/// One run.
pub struct Run {
    plan: RunPlan,
    start: Instant,
    start_wall: Timestamp,
    slots: Vec<Slot>,
    by_id: HashMap<String, usize>,
    by_code: HashMap<(String, String), usize>,
    by_app: HashMap<String, usize>,
    stage: Stage,
    window_end: Option<Instant>,
    state: RunState,
    actions: VecDeque<Action>,
}

/// What an event means to a run.
enum Heard {
    /// Guard `i` answered with (kind, unit).
    Guard(usize, String, String),
    /// An identity on the run's channel that is nobody in the run.
    Unknown {
        kind: String,
        unit: String,
        link: String,
        guard: Option<String>,
    },
    Nothing,
}

/// A guard's state saved in storage, for [`Run::resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSlot {
    pub outcome: Outcome,
    pub attempts: u32,
}

impl Run {
    /// Starts a run now.
    pub fn start(plan: RunPlan, now: Now) -> Run {
        let mut run = Run::new(plan, now.mono, now.wall, None);
        run.actions
            .push_back(Action::Publish(Event::RollcallStarted {
                run_id: run.plan.run_id,
                schedule_id: run.plan.schedule_id.clone(),
                channel: run.plan.channel.clone(),
                modes: run
                    .plan
                    .modes
                    .iter()
                    .map(|m| m.as_str().to_owned())
                    .collect(),
                guards: run.plan.guards.len() as u32,
                resumed: false,
            }));
        if run.plan.has(RollcallMode::App) {
            for g in &run.plan.guards {
                if let Some(app_id) = &g.app_id {
                    run.actions
                        .push_back(Action::Publish(Event::RollcallAppRequest {
                            run_id: run.plan.run_id,
                            guard: g.id.clone(),
                            app_id: app_id.clone(),
                            ref_id: run.plan.ref_id(),
                        }));
                }
            }
            run.open_window(now);
        }
        if run.plan.has(RollcallMode::Group) {
            let samples = run
                .plan
                .announcement
                .clone()
                .unwrap_or_else(|| Arc::new(builtin_announcement()));
            run.stage = Stage::Announcing;
            run.actions.push_back(Action::Transmit {
                guard: None,
                samples,
            });
        } else {
            run.stage = Stage::Next(0);
        }
        run.advance(now);
        run
    }

    /// Rebuilds a run after a restart from what storage holds. `window_end`
    /// is the stored end of the response window (if it had started) and
    /// `until` the latest moment the run may go on; the caller closes runs
    /// past `until` with [`Run::interrupt`] instead.
    ///
    /// `heard` are the stored `Ani`/`AppAck` events since the run started,
    /// with their times: the previous life may have stored an answer's event
    /// (and acknowledged it to the sender) but died before the result was
    /// committed. A guard still pending in `saved` who answered there counts
    /// as having answered at that time; unknown identities are not replayed.
    ///
    /// Group mode: if guards are still pending and the window is open, the
    /// built-in announcement goes out again. Whoever answered while the
    /// daemon was down was not heard (not a lost answer, but he must be
    /// asked again), and a kill during the first announcement may have cut
    /// it short; those who were heard and answer twice count once.
    pub fn resume(
        plan: RunPlan,
        saved: &HashMap<String, SavedSlot>,
        heard: &[(Timestamp, Event)],
        start_wall: Timestamp,
        window_end: Option<Timestamp>,
        now: Now,
    ) -> Run {
        let elapsed = now.wall.duration_since(start_wall).unsigned_abs();
        let start = now.mono.checked_sub(elapsed).unwrap_or(now.mono);
        let mut run = Run::new(plan, start, start_wall, Some(saved));
        for (at, ev) in heard {
            let in_window = window_end.is_none_or(|end| *at <= end);
            if *at < start_wall || *at > now.wall || !in_window {
                continue;
            }
            if let Heard::Guard(i, kind, unit) = run.heard(ev) {
                let since = at.duration_since(start_wall).unsigned_abs();
                let then = Now {
                    wall: *at,
                    mono: start + since,
                };
                run.answer(i, &kind, &unit, then);
            }
        }
        run.actions
            .push_back(Action::Publish(Event::RollcallStarted {
                run_id: run.plan.run_id,
                schedule_id: run.plan.schedule_id.clone(),
                channel: run.plan.channel.clone(),
                modes: run
                    .plan
                    .modes
                    .iter()
                    .map(|m| m.as_str().to_owned())
                    .collect(),
                guards: run.plan.guards.len() as u32,
                resumed: true,
            }));
        let windowed = run.plan.has(RollcallMode::Group) || run.plan.has(RollcallMode::App);
        if windowed {
            // The announcement is not replayed: the window goes on from
            // where it was, or starts now if it never did.
            let end = match window_end {
                Some(end) => {
                    let left = end.duration_since(now.wall);
                    now.mono + left.try_into().unwrap_or(Duration::ZERO)
                }
                None => {
                    let w = Duration::from_secs(run.plan.options.window_s);
                    run.actions.push_back(Action::Store(StoreOp::Window {
                        end: now.wall + jiff::SignedDuration::try_from(w).unwrap_or_default(),
                    }));
                    now.mono + w
                }
            };
            run.window_end = Some(end);
        }
        let pending = run.slots.iter().any(|s| s.outcome == Outcome::Pending);
        let open = run.window_end.is_some_and(|end| now.mono < end);
        if run.plan.has(RollcallMode::Group) && pending && open {
            run.stage = Stage::Announcing;
            run.actions.push_back(Action::Transmit {
                guard: None,
                samples: Arc::new(builtin_announcement()),
            });
        } else {
            run.stage = Stage::Next(0);
        }
        run.advance(now);
        run
    }

    fn new(
        plan: RunPlan,
        start: Instant,
        start_wall: Timestamp,
        saved: Option<&HashMap<String, SavedSlot>>,
    ) -> Run {
        let mut by_id = HashMap::new();
        let mut by_code = HashMap::new();
        let mut by_app = HashMap::new();
        let mut slots = Vec::with_capacity(plan.guards.len());
        for (i, g) in plan.guards.iter().enumerate() {
            by_id.insert(g.id.clone(), i);
            for c in &g.codes {
                by_code.insert(c.clone(), i);
            }
            if let Some(a) = &g.app_id {
                by_app.insert(a.clone(), i);
            }
            let s = saved.and_then(|s| s.get(&g.id));
            slots.push(Slot {
                outcome: s.map(|s| s.outcome).unwrap_or(Outcome::Pending),
                attempts: s.map(|s| s.attempts).unwrap_or(0),
                // A guard called before the restart had his first window.
                first_call: s.filter(|s| s.attempts > 0).map(|_| start),
            });
        }
        Run {
            plan,
            start,
            start_wall,
            slots,
            by_id,
            by_code,
            by_app,
            stage: Stage::Done,
            window_end: None,
            state: RunState::Running,
            actions: VecDeque::new(),
        }
    }

    pub fn run_id(&self) -> i64 {
        self.plan.run_id
    }

    pub fn state(&self) -> RunState {
        self.state
    }

    pub fn plan(&self) -> &RunPlan {
        &self.plan
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.slots {
            match s.outcome {
                Outcome::Answered => c.answered += 1,
                Outcome::Late => c.late += 1,
                Outcome::Missed => c.missed += 1,
                Outcome::Interrupted => c.interrupted += 1,
                Outcome::Pending => {}
            }
        }
        c
    }

    /// Outcome of guard `id` so far.
    pub fn outcome(&self, id: &str) -> Option<Outcome> {
        self.by_id.get(id).map(|&i| self.slots[i].outcome)
    }

    fn open_window(&mut self, now: Now) {
        if self.window_end.is_none() {
            let w = Duration::from_secs(self.plan.options.window_s);
            self.window_end = Some(now.mono + w);
            self.actions.push_back(Action::Store(StoreOp::Window {
                end: now.wall + jiff::SignedDuration::try_from(w).unwrap_or_default(),
            }));
        }
    }

    /// A bus event. Only `Ani` on this run's channel and `AppAck` with this
    /// run's reference matter; everything else is ignored.
    pub fn handle_event(&mut self, ev: &Event, now: Now) {
        if self.state != RunState::Running {
            return;
        }
        match self.heard(ev) {
            Heard::Guard(i, kind, unit) => self.answer(i, &kind, &unit, now),
            Heard::Unknown {
                kind,
                unit,
                link,
                guard,
            } => {
                self.actions.push_back(Action::Store(StoreOp::Unknown {
                    at: now.wall,
                    kind: kind.clone(),
                    unit: unit.clone(),
                    link,
                }));
                self.actions
                    .push_back(Action::Publish(Event::RollcallUnknownAni {
                        run_id: self.plan.run_id,
                        kind,
                        unit,
                        guard,
                    }));
            }
            Heard::Nothing => {}
        }
        self.advance(now);
    }

    /// What an event means to this run.
    fn heard(&self, ev: &Event) -> Heard {
        match ev {
            Event::Ani {
                channel,
                link,
                kind,
                unit,
                op,
                guard,
            } if *channel == self.plan.channel => {
                // Our own radio-check requests, decoded back, are not answers.
                if op
                    .replace('_', "")
                    .eq_ignore_ascii_case("radiocheckrequest")
                {
                    return Heard::Nothing;
                }
                let unit_key = if kind == "mdc1200" {
                    unit.to_ascii_uppercase()
                } else {
                    unit.clone()
                };
                let idx = guard
                    .as_ref()
                    .and_then(|g| self.by_id.get(g))
                    .or_else(|| self.by_code.get(&(kind.clone(), unit_key)))
                    .copied();
                match idx {
                    Some(i) => Heard::Guard(i, kind.clone(), unit.clone()),
                    None => Heard::Unknown {
                        kind: kind.clone(),
                        unit: unit.clone(),
                        link: link.clone(),
                        guard: guard.clone(),
                    },
                }
            }
            Event::AppAck { app_id, ref_id, .. } if *ref_id == self.plan.ref_id() => {
                match self.by_app.get(app_id) {
                    Some(&i) => Heard::Guard(i, "app".into(), app_id.clone()),
                    None => Heard::Nothing,
                }
            }
            _ => Heard::Nothing,
        }
    }

    fn answer(&mut self, i: usize, kind: &str, unit: &str, now: Now) {
        let slot = &mut self.slots[i];
        if slot.outcome != Outcome::Pending {
            return;
        }
        let on_time = Duration::from_secs(self.plan.options.on_time_s);
        let reply = Duration::from_secs(self.plan.options.reply_window_s);
        let mut deadline = self.start + on_time;
        if let Some(first) = slot.first_call {
            deadline = deadline.max(first + reply);
        }
        let outcome = if now.mono <= deadline {
            Outcome::Answered
        } else {
            Outcome::Late
        };
        slot.outcome = outcome;
        let offset = now.mono.saturating_duration_since(self.start);
        let guard = self.plan.guards[i].id.clone();
        self.actions.push_back(Action::Store(StoreOp::Outcome {
            guard: guard.clone(),
            outcome,
            at: Some(now.wall),
            offset_ms: Some(offset.as_millis() as i64),
            kind: Some(kind.to_owned()),
            unit: Some(unit.to_owned()),
        }));
        self.actions
            .push_back(Action::Publish(Event::RollcallAnswerHeard {
                run_id: self.plan.run_id,
                guard: guard.clone(),
                kind: kind.to_owned(),
                unit: unit.to_owned(),
                offset_ms: offset.as_millis() as i64,
            }));
        self.actions
            .push_back(Action::Publish(Event::RollcallGuardClosed {
                run_id: self.plan.run_id,
                guard,
                outcome: outcome.as_str().to_owned(),
            }));
        // The guard being called answered: stop waiting for him.
        if let Stage::Waiting(j, _) = self.stage {
            if j == i {
                self.stage = Stage::Next(i + 1);
            }
        }
    }

    /// The transmitter finished (or refused) the last [`Action::Transmit`]
    /// or [`Action::RadioCheck`].
    pub fn handle_tx_done(&mut self, result: Result<(), TxError>, now: Now) {
        if self.state != RunState::Running {
            return;
        }
        if let Err(e) = &result {
            self.actions.push_back(Action::Publish(Event::Error {
                source: format!("rollcall run {}", self.plan.run_id),
                message: format!("transmission failed: {e}"),
            }));
        }
        match self.stage {
            Stage::Announcing => {
                self.open_window(now);
                self.stage = Stage::Next(0);
            }
            // He may have answered (e.g. by app) while being called.
            Stage::Calling(i) if self.slots[i].outcome != Outcome::Pending => {
                self.stage = Stage::Next(i + 1);
            }
            Stage::Calling(i) => {
                let reply = Duration::from_secs(self.plan.options.reply_window_s);
                self.stage = Stage::Waiting(i, now.mono + reply);
            }
            _ => {}
        }
        self.advance(now);
    }

    pub fn handle_timeout(&mut self, now: Now) {
        if self.state != RunState::Running {
            return;
        }
        if let Stage::Waiting(i, until) = self.stage {
            if now.mono >= until {
                let max = self.plan.options.retries + 1;
                self.stage =
                    if self.slots[i].attempts < max && self.slots[i].outcome == Outcome::Pending {
                        // Call him again.
                        Stage::Next(i)
                    } else {
                        Stage::Next(i + 1)
                    };
            }
        }
        self.advance(now);
    }

    /// The next moment [`Run::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != RunState::Running {
            return None;
        }
        match self.stage {
            Stage::Waiting(_, until) => Some(match self.window_end {
                Some(w) => w.min(until),
                None => until,
            }),
            _ => self.window_end,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Moves the individual sequence on and finishes the run when nothing is
    /// left to wait for.
    fn advance(&mut self, now: Now) {
        if self.state != RunState::Running {
            return;
        }
        let individual = self.plan.has(RollcallMode::Individual);
        while let Stage::Next(i) = self.stage {
            if !individual || i >= self.slots.len() {
                self.stage = Stage::Done;
                break;
            }
            let max = self.plan.options.retries + 1;
            let slot = &mut self.slots[i];
            let call = self.plan.guards[i].call.clone();
            let Some(call) =
                call.filter(|_| slot.outcome == Outcome::Pending && slot.attempts < max)
            else {
                self.stage = Stage::Next(i + 1);
                continue;
            };
            slot.attempts += 1;
            slot.first_call.get_or_insert(now.mono);
            let attempts = slot.attempts;
            let guard = self.plan.guards[i].id.clone();
            self.actions.push_back(Action::Store(StoreOp::Called {
                guard: guard.clone(),
                attempts,
            }));
            self.actions
                .push_back(Action::Publish(Event::RollcallGuardCalled {
                    run_id: self.plan.run_id,
                    guard: guard.clone(),
                    attempt: attempts,
                    how: call.kind().to_owned(),
                }));
            match call {
                CallCode::Dmr(dmr_id) => {
                    self.actions.push_back(Action::RadioCheck { guard, dmr_id })
                }
                other => {
                    let mut samples = call_audio(&other, self.plan.selcall);
                    if let Some(clip) = &self.plan.call_clip {
                        samples.extend(encode::silence(CLIP_GAP_MS));
                        samples.extend_from_slice(clip);
                    }
                    self.actions.push_back(Action::Transmit {
                        guard: Some(guard),
                        samples: Arc::new(samples),
                    })
                }
            }
            self.stage = Stage::Calling(i);
        }
        let all_closed = self.slots.iter().all(|s| s.outcome != Outcome::Pending);
        let window_over = self.window_end.is_none_or(|w| now.mono >= w);
        let calls_over = self.stage == Stage::Done;
        if all_closed && !matches!(self.stage, Stage::Calling(_) | Stage::Announcing)
            || calls_over && window_over
        {
            self.finish(RunState::Finished, now);
        }
    }

    fn finish(&mut self, state: RunState, now: Now) {
        let pending_to = if state == RunState::Finished {
            Outcome::Missed
        } else {
            Outcome::Interrupted
        };
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.outcome != Outcome::Pending {
                continue;
            }
            slot.outcome = pending_to;
            let g = &self.plan.guards[i];
            self.actions.push_back(Action::Store(StoreOp::Outcome {
                guard: g.id.clone(),
                outcome: pending_to,
                at: None,
                offset_ms: None,
                kind: None,
                unit: None,
            }));
            self.actions
                .push_back(Action::Publish(Event::RollcallGuardClosed {
                    run_id: self.plan.run_id,
                    guard: g.id.clone(),
                    outcome: pending_to.as_str().to_owned(),
                }));
            if pending_to == Outcome::Missed && self.plan.options.escalate {
                self.actions
                    .push_back(Action::Publish(Event::RollcallEscalation {
                        run_id: self.plan.run_id,
                        guard: g.id.clone(),
                        company: g.company.clone(),
                        supervisor: g.supervisor.clone(),
                    }));
            }
        }
        self.state = state;
        self.stage = Stage::Done;
        let counts = self.counts();
        self.actions.push_back(Action::Store(StoreOp::Finish {
            state,
            at: now.wall,
            counts,
        }));
        self.actions
            .push_back(Action::Publish(Event::RollcallFinished {
                run_id: self.plan.run_id,
                state: state.as_str().to_owned(),
                answered: counts.answered,
                late: counts.late,
                missed: counts.missed,
                interrupted: counts.interrupted,
            }));
    }

    /// Closes the run as interrupted (after a restart too late to resume, or
    /// at shutdown): pending guards are recorded as interrupted, never as
    /// missed, and nobody is escalated.
    pub fn interrupt(&mut self, now: Now) {
        if self.state == RunState::Running {
            self.finish(RunState::Interrupted, now);
        }
    }

    /// Wall-clock start.
    pub fn start_wall(&self) -> Timestamp {
        self.start_wall
    }
}

/// Pause between a selective call and the clip after it, so the radio has
/// opened its speaker.
pub const CLIP_GAP_MS: u32 = 300;

/// The selective call for one guard, at the internal rate.
pub fn call_audio(call: &CallCode, selcall: SelcallStandard) -> Vec<i16> {
    match call {
        CallCode::Dtmf(d) => encode::dtmf(d, 80, 50, 0.7),
        // Codes are validated as digits, so the encoder cannot refuse them;
        // an empty call is sent as nothing rather than panicking.
        CallCode::Selcall(s) => encode::selcall(selcall, s, 0.7).unwrap_or_default(),
        CallCode::Mdc1200(unit) => mdc1200::encode(&MdcPacket::radio_check(*unit), 0.7),
        CallCode::Dmr(_) => Vec::new(),
    }
}

/// The group announcement when no clip is configured: three rising tones.
pub fn builtin_announcement() -> Vec<i16> {
    let mut out = Vec::new();
    for f in [880.0, 1100.0, 1320.0] {
        out.extend(encode::tone(f, 250, 0.5));
        out.extend(encode::silence(80));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(
        id: &str,
        call: Option<CallCode>,
        codes: &[(&str, &str)],
        app: Option<&str>,
    ) -> RunGuard {
        RunGuard {
            id: id.into(),
            name: id.into(),
            company: "acme".into(),
            supervisor: Some("sup".into()),
            call,
            codes: codes
                .iter()
                .map(|(k, u)| (k.to_string(), u.to_string()))
                .collect(),
            app_id: app.map(Into::into),
        }
    }

    fn plan(modes: &[RollcallMode], guards: Vec<RunGuard>) -> RunPlan {
        RunPlan {
            run_id: 7,
            schedule_id: None,
            channel: "ch1".into(),
            modes: modes.to_vec(),
            guards,
            options: RunOptions {
                reply_window_s: 8,
                window_s: 60,
                on_time_s: 5,
                retries: 1,
                escalate: true,
            },
            announcement: None,
            call_clip: None,
            selcall: SelcallStandard::Ccir,
        }
    }

    /// A simulated clock: both faces move together.
    struct Clock(Now);
    impl Clock {
        fn new() -> Clock {
            Clock(Now {
                wall: "2026-05-04T08:00:00Z".parse().unwrap(),
                mono: Instant::now(),
            })
        }
        fn advance(&mut self, ms: u64) -> Now {
            self.0.mono += Duration::from_millis(ms);
            self.0.wall += jiff::SignedDuration::from_millis(ms as i64);
            self.0
        }
    }

    fn drain(run: &mut Run) -> Vec<Action> {
        std::iter::from_fn(|| run.poll_action()).collect()
    }

    fn ani(kind: &str, unit: &str, op: &str) -> Event {
        Event::Ani {
            channel: "ch1".into(),
            link: "l1".into(),
            kind: kind.into(),
            unit: unit.into(),
            op: op.into(),
            guard: None,
        }
    }

    fn outcome_ops(actions: &[Action]) -> Vec<(String, Outcome)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Store(StoreOp::Outcome { guard, outcome, .. }) => {
                    Some((guard.clone(), *outcome))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn individual_calls_retry_then_move_on_and_stores_precede_events() {
        let mut clk = Clock::new();
        let mut run = Run::start(
            plan(
                &[RollcallMode::Individual],
                vec![
                    guard(
                        "a",
                        Some(CallCode::Dtmf("101".into())),
                        &[("dtmf", "101")],
                        None,
                    ),
                    guard(
                        "b",
                        Some(CallCode::Mdc1200(0x1A2B)),
                        &[("mdc1200", "1A2B")],
                        None,
                    ),
                ],
            ),
            clk.0,
        );
        let acts = drain(&mut run);
        // Started, called a, transmitting a's DTMF (which decodes as 101).
        assert!(matches!(
            acts[0],
            Action::Publish(Event::RollcallStarted { guards: 2, .. })
        ));
        assert!(
            matches!(&acts[1], Action::Store(StoreOp::Called { guard, attempts: 1 }) if guard == "a")
        );
        let Action::Transmit {
            guard: Some(g),
            samples,
        } = &acts[3]
        else {
            panic!("{acts:?}")
        };
        assert_eq!(g, "a");
        let heard = rollcall_hw::signalling::decode_all(samples, &Default::default());
        assert_eq!(heard[0].unit, "101");
        assert_eq!(run.poll_timeout(), None, "no timer while transmitting");
        run.handle_tx_done(Ok(()), clk.advance(500));
        assert_eq!(
            run.poll_timeout(),
            Some(clk.0.mono + Duration::from_secs(8))
        );
        // a stays silent: after 8 s he is called again, then given up on.
        run.handle_timeout(clk.advance(8000));
        let acts = drain(&mut run);
        assert!(
            matches!(&acts[0], Action::Store(StoreOp::Called { guard, attempts: 2 }) if guard == "a")
        );
        run.handle_tx_done(Err(TxError::Busy("console")), clk.advance(10));
        let acts = drain(&mut run);
        assert!(
            matches!(&acts[0], Action::Publish(Event::Error { message, .. }) if message.contains("console"))
        );
        run.handle_timeout(clk.advance(8000));
        // Now b: an MDC1200 radio check; our own request decoded back is
        // not an answer, his acknowledgement (lower-case unit) is.
        let acts = drain(&mut run);
        assert!(matches!(&acts[0], Action::Store(StoreOp::Called { guard, .. }) if guard == "b"));
        run.handle_tx_done(Ok(()), clk.advance(200));
        run.handle_event(
            &ani("mdc1200", "1A2B", "radio_check_request"),
            clk.advance(10),
        );
        assert_eq!(run.outcome("b"), Some(Outcome::Pending));
        run.handle_event(
            &ani("mdc1200", "1a2b", "radio_check_ack"),
            clk.advance(2000),
        );
        let acts = drain(&mut run);
        assert_eq!(
            outcome_ops(&acts),
            vec![
                ("b".into(), Outcome::Answered),
                ("a".into(), Outcome::Missed)
            ]
        );
        // Every event about an outcome comes after its store.
        let first_store = acts
            .iter()
            .position(|a| matches!(a, Action::Store(StoreOp::Outcome { .. })));
        let first_heard = acts
            .iter()
            .position(|a| matches!(a, Action::Publish(Event::RollcallAnswerHeard { .. })));
        assert!(first_store < first_heard);
        assert!(acts.iter().any(
            |a| matches!(a, Action::Publish(Event::RollcallEscalation { guard, supervisor: Some(s), .. }) if guard == "a" && s == "sup")
        ));
        assert!(matches!(
            acts.last(),
            Some(Action::Publish(Event::RollcallFinished {
                answered: 1,
                missed: 1,
                late: 0,
                ..
            }))
        ));
        assert_eq!(run.state(), RunState::Finished);
        assert_eq!(run.poll_timeout(), None);
    }

    #[test]
    fn the_call_clip_follows_each_selective_call() {
        let clk = Clock::new();
        let mut p = plan(
            &[RollcallMode::Individual],
            vec![guard(
                "a",
                Some(CallCode::Dtmf("101".into())),
                &[("dtmf", "101")],
                None,
            )],
        );
        p.call_clip = Some(Arc::new(vec![1000; 800]));
        let mut run = Run::start(p, clk.0);
        let sent = drain(&mut run)
            .into_iter()
            .find_map(|a| match a {
                Action::Transmit { samples, .. } => Some(samples),
                _ => None,
            })
            .unwrap();
        let call = call_audio(&CallCode::Dtmf("101".into()), SelcallStandard::Ccir);
        assert_eq!(sent.len(), call.len() + 2400 + 800);
        assert_eq!(&sent[..call.len()], &call[..]);
        assert!(sent[sent.len() - 800..].iter().all(|&s| s == 1000));
    }

    #[test]
    fn answer_on_the_retry_is_late_and_dmr_goes_to_the_radio_check_hook() {
        let mut clk = Clock::new();
        let mut run = Run::start(
            plan(
                &[RollcallMode::Individual],
                vec![
                    guard(
                        "a",
                        Some(CallCode::Selcall("12345".into())),
                        &[("selcall", "12345")],
                        None,
                    ),
                    guard(
                        "d",
                        Some(CallCode::Dmr(2_345_678)),
                        &[("dmr", "2345678")],
                        None,
                    ),
                ],
            ),
            clk.0,
        );
        drain(&mut run);
        run.handle_tx_done(Ok(()), clk.advance(500));
        run.handle_timeout(clk.advance(8000));
        drain(&mut run);
        run.handle_tx_done(Ok(()), clk.advance(500));
        run.handle_event(&ani("selcall", "12345", "identify"), clk.advance(1500));
        assert_eq!(run.outcome("a"), Some(Outcome::Late));
        let acts = drain(&mut run);
        assert!(acts
            .iter()
            .any(|a| matches!(a, Action::RadioCheck { guard, dmr_id: 2_345_678 } if guard == "d")));
        run.handle_tx_done(Ok(()), clk.advance(1200));
        run.handle_event(&ani("dmr", "2345678", "radio_check_ack"), clk.advance(300));
        assert_eq!(run.outcome("d"), Some(Outcome::Answered));
        assert_eq!(run.state(), RunState::Finished);
    }

    #[test]
    fn group_and_app_share_one_window_and_ignore_other_traffic() {
        let mut clk = Clock::new();
        let t0 = clk.0.mono;
        let mut run = Run::start(
            plan(
                &[RollcallMode::Group, RollcallMode::App],
                vec![
                    guard("r", None, &[("dtmf", "101")], None),
                    guard("p", None, &[], Some("app-p")),
                    guard("s", None, &[("dtmf", "103")], Some("app-s")),
                ],
            ),
            clk.0,
        );
        let acts = drain(&mut run);
        let requests: Vec<_> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Publish(Event::RollcallAppRequest { app_id, ref_id, .. }) => {
                    Some((app_id.clone(), ref_id.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            requests,
            vec![
                ("app-p".into(), "rollcall-7".into()),
                ("app-s".into(), "rollcall-7".into())
            ]
        );
        assert!(acts
            .iter()
            .any(|a| matches!(a, Action::Transmit { guard: None, .. })));
        run.handle_tx_done(Ok(()), clk.advance(1000));
        // Wrong channel, wrong run, unknown unit: none answers anyone.
        let mut other = ani("dtmf", "101", "identify");
        if let Event::Ani { channel, .. } = &mut other {
            *channel = "ch2".into();
        }
        run.handle_event(&other, clk.advance(100));
        run.handle_event(
            &Event::AppAck {
                app_id: "app-p".into(),
                ref_id: "rollcall-8".into(),
                ts_ms: 0,
            },
            clk.advance(100),
        );
        run.handle_event(&ani("dtmf", "999", "identify"), clk.advance(100));
        let acts = drain(&mut run);
        assert!(outcome_ops(&acts).is_empty());
        assert!(acts
            .iter()
            .any(|a| matches!(a, Action::Store(StoreOp::Unknown { unit, .. }) if unit == "999")));
        // On time (≤ 5 s), then late, then the window closes on s.
        run.handle_event(&ani("dtmf", "101", "identify"), clk.advance(2000));
        run.handle_event(
            &Event::AppAck {
                app_id: "app-p".into(),
                ref_id: "rollcall-7".into(),
                ts_ms: 0,
            },
            clk.advance(20_000),
        );
        // A second answer from the same guard changes nothing.
        run.handle_event(&ani("dtmf", "101", "identify"), clk.advance(100));
        let acts = drain(&mut run);
        assert_eq!(
            outcome_ops(&acts),
            vec![("r".into(), Outcome::Answered), ("p".into(), Outcome::Late)]
        );
        let end = run.poll_timeout().unwrap();
        // App mode opened the window at the start; the announcement does
        // not move it.
        assert_eq!(end, t0 + Duration::from_secs(60));
        run.handle_timeout(Now {
            mono: end,
            wall: clk.0.wall,
        });
        assert_eq!(
            outcome_ops(&drain(&mut run)),
            vec![("s".into(), Outcome::Missed)]
        );
        assert_eq!(
            run.counts(),
            Counts {
                answered: 1,
                late: 1,
                missed: 1,
                interrupted: 0
            }
        );
    }

    #[test]
    fn resume_keeps_outcomes_and_interrupt_never_escalates() {
        let mut clk = Clock::new();
        let p = plan(
            &[RollcallMode::App],
            vec![
                guard("p", None, &[], Some("app-p")),
                guard("q", None, &[], Some("app-q")),
            ],
        );
        let start = clk.0.wall;
        let saved: HashMap<String, SavedSlot> = [(
            "p".to_string(),
            SavedSlot {
                outcome: Outcome::Answered,
                attempts: 0,
            },
        )]
        .into();
        let now = clk.advance(30_000);
        let mut run = Run::resume(
            p.clone(),
            &saved,
            &[],
            start,
            Some(start + jiff::SignedDuration::from_secs(60)),
            now,
        );
        assert!(matches!(
            run.poll_action(),
            Some(Action::Publish(Event::RollcallStarted {
                resumed: true,
                ..
            }))
        ));
        // 30 s of the window left.
        assert_eq!(run.poll_timeout(), Some(now.mono + Duration::from_secs(30)));
        assert_eq!(run.outcome("p"), Some(Outcome::Answered));
        run.interrupt(clk.advance(1000));
        let acts = drain(&mut run);
        assert_eq!(outcome_ops(&acts), vec![("q".into(), Outcome::Interrupted)]);
        assert!(!acts
            .iter()
            .any(|a| matches!(a, Action::Publish(Event::RollcallEscalation { .. }))));
        assert_eq!(run.state(), RunState::Interrupted);
    }

    #[test]
    fn resume_counts_answers_stored_but_not_committed_at_their_time() {
        // The previous life stored these events (and PUBACKed the app
        // acks) but was killed before the results were committed.
        let mut clk = Clock::new();
        let p = plan(
            &[RollcallMode::App],
            vec![
                guard("p", None, &[], Some("app-p")),
                guard("q", None, &[], Some("app-q")),
                guard("r", None, &[("dtmf", "303")], None),
                guard("s", None, &[], Some("app-s")),
            ],
        );
        let start = clk.0.wall;
        let at = |s: i64| start + jiff::SignedDuration::from_secs(s);
        let ack = |app: &str, run: i64| Event::AppAck {
            app_id: app.into(),
            ref_id: ref_id(run),
            ts_ms: 0,
        };
        let heard = vec![
            // p's answer was committed: his result stands.
            (at(2), ack("app-p", 7)),
            (at(3), ack("app-q", 7)),
            (at(12), ani("dtmf", "303", "")),
            // An identity nobody in the run has: not replayed.
            (at(13), ani("dtmf", "999", "")),
            // Another run's ack, and one after the window closed.
            (at(14), ack("app-s", 8)),
            (at(55), ack("app-s", 7)),
        ];
        let saved: HashMap<String, SavedSlot> = [(
            "p".to_string(),
            SavedSlot {
                outcome: Outcome::Late,
                attempts: 0,
            },
        )]
        .into();
        let now = clk.advance(70_000);
        let mut run = Run::resume(p, &saved, &heard, start, Some(at(50)), now);
        let acts = drain(&mut run);
        // Judged at their own time: q within on_time (5 s), r after it;
        // s never answered inside the window, which is over by now.
        assert_eq!(
            outcome_ops(&acts),
            vec![
                ("q".into(), Outcome::Answered),
                ("r".into(), Outcome::Late),
                ("s".into(), Outcome::Missed)
            ]
        );
        // Heard at its own time, not at the restart.
        assert!(acts.iter().any(|a| matches!(a,
            Action::Store(StoreOp::Outcome { guard, offset_ms: Some(3_000), at: Some(t), .. })
                if guard == "q" && *t == start + jiff::SignedDuration::from_secs(3))));
        assert!(!acts
            .iter()
            .any(|a| matches!(a, Action::Store(StoreOp::Unknown { .. }))));
        assert_eq!(run.outcome("p"), Some(Outcome::Late));
        assert_eq!(run.state(), RunState::Finished);
    }

    #[test]
    fn resumed_group_run_announces_again_while_guards_are_pending() {
        let mut clk = Clock::new();
        let guards = vec![
            guard("p", None, &[("dtmf", "301")], None),
            guard("q", None, &[("dtmf", "302")], None),
        ];
        let p = plan(&[RollcallMode::Group], guards);
        let start = clk.0.wall;
        let end = start + jiff::SignedDuration::from_secs(60);
        let answered = |g: &str| -> HashMap<String, SavedSlot> {
            [(
                g.to_string(),
                SavedSlot {
                    outcome: Outcome::Answered,
                    attempts: 0,
                },
            )]
            .into()
        };
        let announces = |acts: &[Action]| {
            acts.iter()
                .filter(|a| matches!(a, Action::Transmit { guard: None, .. }))
                .count()
        };
        // q is pending, 30 s of the window left: announce again; his answer
        // to it counts, and the run closes once everyone answered.
        let now = clk.advance(30_000);
        let mut run = Run::resume(p.clone(), &answered("p"), &[], start, Some(end), now);
        assert_eq!(announces(&drain(&mut run)), 1);
        run.handle_tx_done(Ok(()), clk.advance(2_000));
        assert_eq!(run.poll_timeout(), Some(now.mono + Duration::from_secs(30)));
        run.handle_event(&ani("dtmf", "302", ""), clk.advance(1_000));
        assert_eq!(run.outcome("q"), Some(Outcome::Late));
        assert_eq!(run.state(), RunState::Finished);
        // Killed during the first announcement (no window stored yet): the
        // announcement goes out again and the window starts now.
        let mut run = Run::resume(p.clone(), &HashMap::new(), &[], start, None, clk.0);
        assert_eq!(announces(&drain(&mut run)), 1);
        // Nobody pending, or the window over: no announcement.
        let mut both = answered("p");
        both.extend(answered("q"));
        let mut run = Run::resume(p.clone(), &both, &[], start, Some(end), clk.0);
        assert_eq!(announces(&drain(&mut run)), 0);
        assert_eq!(run.state(), RunState::Finished);
        let late = clk.advance(60_000);
        let mut run = Run::resume(p, &answered("p"), &[], start, Some(end), late);
        assert_eq!(announces(&drain(&mut run)), 0);
        assert_eq!(run.outcome("q"), Some(Outcome::Missed));
    }
}
