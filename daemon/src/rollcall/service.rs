//! The roll-call service: the thin async shell around the pure scheduler and
//! run engine, and the Rust API the gRPC layer exposes.
//!
//! - one scheduler task: sleeps towards the next due time in steps of at
//!   most [`WAKE_STEP`] of the monotonic clock and re-reads the wall clock on
//!   each wake, so a wall-clock step is noticed; persists each decided due
//!   time (UNIQUE schedule + due) before a run starts;
//! - one task per run: feeds bus events, transmitter completions and timers
//!   to its [`Run`], then executes its actions — all `Store`s of a tick in one
//!   transaction first, then the events, so nothing is published before it
//!   is committed;
//! - at start-up, runs left `running` by a previous life resume their
//!   remaining time or are closed as interrupted.
//!
//! At shutdown a run task stops where it is and its run stays `running` in
//! storage, so the next start resumes it: nothing is lost or closed twice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use rollcall_hw::signalling::SelcallStandard;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channel::{BoxFuture, Transmitter, TxError, TxSource};
use crate::config::{Config, RollcallDefaults, RollcallMode};
use crate::events::{Bus, Event, Numbered};
use crate::roster::Roster;
use crate::storage::{Storage, StorageError};

use super::engine::{Action, Now, Run, RunGuard, RunPlan, RunState, StoreOp};
use super::report::{self, CompanyStats};
use super::schedule::{RunOptions, SchedAction, ScheduleError, ScheduleSpec, Scheduler};
use super::store::{self, NewRun, RunFilter, RunRecord, RunSummary, StoredSchedule};

/// How soon a failed commit of roll-call results is retried.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Results and events waiting for a commit that failed.
#[derive(Default)]
struct Backlog {
    stores: Vec<(i64, StoreOp)>,
    events: Vec<Event>,
    failing: bool,
}

/// Longest the scheduler sleeps before re-reading the wall clock.
pub const WAKE_STEP: Duration = Duration::from_secs(15);

/// DMR radio checks, done by the DMR side (the lead wires it). Resolves
/// when the request went out; the radio's answer arrives as an
/// `Event::Ani` of kind `dmr` on the run's channel.
pub trait RadioCheck: Send + Sync + 'static {
    fn radio_check(&self, channel: &str, dmr_id: u32) -> BoxFuture<'_, Result<(), TxError>>;
}

/// The wall clock, replaceable in tests (tokio's paused clock moves only
/// `Instant`s).
pub trait WallClock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Errors of the roll-call API.
#[derive(Debug, thiserror::Error)]
pub enum RollcallError {
    #[error("no channel \"{0}\"; roll calls need a configured channel")]
    UnknownChannel(String),
    #[error("no roster group \"{0}\"")]
    UnknownGroup(String),
    #[error("a roll call needs at least one of individual, group, app")]
    NoModes,
    #[error("no guards in groups {0:?}: nothing to call")]
    NoGuards(Vec<String>),
    #[error("announcement {path}: {message}")]
    Announcement { path: PathBuf, message: String },
    #[error("window lengths must be at least 1 second")]
    BadOptions,
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("no schedule \"{0}\"")]
    NoSuchSchedule(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// A roll call started by hand.
#[derive(Debug, Clone)]
pub struct StartRun {
    pub channel: String,
    pub groups: Vec<String>,
    pub modes: Vec<RollcallMode>,
    /// `None`: the `[rollcall]` defaults.
    pub options: Option<RunOptions>,
    pub announcement: Option<PathBuf>,
    /// Individual mode: WAV clip sent after each selective call.
    pub call_clip: Option<PathBuf>,
}

/// Everything the service needs from the daemon.
pub struct Deps {
    pub storage: Storage,
    pub bus: Bus,
    pub roster: Roster,
    pub transmitter: Arc<dyn Transmitter>,
    pub radio_check: Option<Arc<dyn RadioCheck>>,
    pub clock: Arc<dyn WallClock>,
}

enum SchedCmd {
    Upsert(Box<ScheduleSpec>, Timestamp),
    Remove(String),
}

struct Inner {
    storage: Storage,
    bus: Bus,
    roster: Roster,
    transmitter: Arc<dyn Transmitter>,
    radio_check: Option<Arc<dyn RadioCheck>>,
    clock: Arc<dyn WallClock>,
    defaults: RollcallDefaults,
    daemon_tz: String,
    channels: HashMap<String, SelcallStandard>,
    watchers: Mutex<HashMap<i64, broadcast::Sender<Event>>>,
    sched: mpsc::UnboundedSender<SchedCmd>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// The roll-call API. Cheap to clone.
#[derive(Clone)]
pub struct RollcallService {
    inner: Arc<Inner>,
}

impl RollcallService {
    /// Seeds config schedules, recovers runs left by a previous life, and
    /// starts the scheduler. Tasks stop when `cancel` fires; await
    /// [`RollcallService::stopped`] to drain them.
    pub async fn start(
        config: &Config,
        deps: Deps,
        cancel: CancellationToken,
    ) -> Result<RollcallService, RollcallError> {
        let (sched_tx, sched_rx) = mpsc::unbounded_channel();
        let channels = config
            .channels
            .iter()
            .map(|c| {
                let std = c
                    .ani
                    .selcall
                    .as_deref()
                    .and_then(SelcallStandard::parse)
                    .unwrap_or(SelcallStandard::Ccir);
                (c.id.clone(), std)
            })
            .collect();
        let svc = RollcallService {
            inner: Arc::new(Inner {
                storage: deps.storage,
                bus: deps.bus,
                roster: deps.roster,
                transmitter: deps.transmitter,
                radio_check: deps.radio_check,
                clock: deps.clock,
                defaults: config.rollcall.defaults.clone(),
                daemon_tz: config.daemon.time_zone.clone(),
                channels,
                watchers: Mutex::new(HashMap::new()),
                sched: sched_tx,
                cancel,
                tracker: TaskTracker::new(),
            }),
        };
        let specs: Vec<ScheduleSpec> = config
            .rollcall
            .schedules
            .iter()
            .map(|s| {
                ScheduleSpec::from_config(s, &config.rollcall.defaults, &config.daemon.time_zone)
            })
            .collect();
        let scheduler = svc.seed_schedules(specs).await?;
        svc.recover_runs().await?;
        let me = svc.clone();
        svc.inner
            .tracker
            .spawn(async move { me.scheduler_task(scheduler, sched_rx).await });
        Ok(svc)
    }

    /// Resolves when every task of the service has stopped (after cancel).
    pub async fn stopped(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn now(&self) -> Now {
        Now {
            wall: self.inner.clock.now(),
            mono: Instant::now(),
        }
    }

    // ---- schedules -------------------------------------------------------

    /// Config schedules replace stored config ones (an API-edited schedule
    /// keeps its edit); config ones no longer in the config are dropped.
    async fn seed_schedules(&self, specs: Vec<ScheduleSpec>) -> Result<Scheduler, RollcallError> {
        let now = self.inner.clock.now();
        for s in &specs {
            s.compile()?;
        }
        let (stored, last) = self
            .inner
            .storage
            .call(move |c| {
                let existing = store::load_schedules(c)?;
                let ids: HashSet<&str> = specs.iter().map(|s| s.id.as_str()).collect();
                for e in &existing {
                    if e.source == "config" && !ids.contains(e.spec.id.as_str()) {
                        store::delete_schedule(c, &e.spec.id)?;
                    }
                }
                for s in &specs {
                    match existing.iter().find(|e| e.spec.id == s.id) {
                        Some(e) if e.source == "api" => {
                            tracing::warn!(schedule = %s.id, "schedule was edited through the API; its config entry is ignored");
                        }
                        // Unchanged: keep `updated_ms`, it dates the last edit.
                        Some(e) if e.spec == *s => {}
                        _ => {
                            store::save_schedule(c, s, "config", now)?;
                        }
                    }
                }
                Ok((store::load_schedules(c)?, store::last_decided(c)?))
            })
            .await?;
        let mut scheduler = Scheduler::new();
        for s in stored {
            // Due times are this life's to decide from the last one decided,
            // but an edit never resurrects due times from before it.
            let edited = Timestamp::from_millisecond(s.updated_ms).unwrap_or(now);
            let since = last.get(&s.spec.id).copied().unwrap_or(edited).max(edited);
            if let Err(e) = scheduler.upsert(s.spec.clone(), since) {
                tracing::error!(schedule = %s.spec.id, error = %e, "stored schedule refused; not scheduled");
            }
        }
        Ok(scheduler)
    }

    pub async fn list_schedules(&self) -> Result<Vec<StoredSchedule>, RollcallError> {
        Ok(self
            .inner
            .storage
            .call(|c| store::load_schedules(c))
            .await?)
    }

    /// Creates or replaces a schedule (persisted, audited, live at once).
    pub async fn upsert_schedule(
        &self,
        spec: ScheduleSpec,
        actor: &str,
    ) -> Result<(), RollcallError> {
        spec.compile()?;
        if !self.inner.channels.contains_key(&spec.channel) {
            return Err(RollcallError::UnknownChannel(spec.channel));
        }
        self.check_groups(&spec.groups)?;
        let now = self.inner.clock.now();
        let s = spec.clone();
        let (created, last) = self
            .inner
            .storage
            .call(move |c| {
                let created = store::save_schedule(c, &s, "api", now)?;
                Ok((created, store::last_decided(c)?.remove(&s.id)))
            })
            .await?;
        let detail = serde_json::to_string(&spec).unwrap_or_default();
        self.inner
            .storage
            .audit(actor, "rollcall.schedule.upsert", &spec.id, &detail)
            .await?;
        // Never before the last decided due time, never before now for a
        // new or edited schedule (an edit does not resurrect past times).
        let since = last.unwrap_or(created).max(now);
        let _ = self
            .inner
            .sched
            .send(SchedCmd::Upsert(Box::new(spec), since));
        Ok(())
    }

    pub async fn delete_schedule(&self, id: &str, actor: &str) -> Result<(), RollcallError> {
        let i = id.to_owned();
        let gone = self
            .inner
            .storage
            .call(move |c| store::delete_schedule(c, &i))
            .await?;
        if !gone {
            return Err(RollcallError::NoSuchSchedule(id.to_owned()));
        }
        self.inner
            .storage
            .audit(actor, "rollcall.schedule.delete", id, "")
            .await?;
        let _ = self.inner.sched.send(SchedCmd::Remove(id.to_owned()));
        Ok(())
    }

    async fn scheduler_task(
        self,
        mut scheduler: Scheduler,
        mut cmds: mpsc::UnboundedReceiver<SchedCmd>,
    ) {
        // Where the wall clock should be, judged by the monotonic clock:
        // a difference means the wall clock was stepped.
        let mut last: Option<(Timestamp, Instant)> = None;
        loop {
            let now = self.inner.clock.now();
            if let Some((wall, mono)) = last {
                let expected =
                    wall + jiff::SignedDuration::try_from(mono.elapsed()).unwrap_or_default();
                let step = now.duration_since(expected);
                if step.abs() > jiff::SignedDuration::from_secs(5) {
                    tracing::warn!(
                        step_s = step.as_secs(),
                        "wall clock stepped; due times are re-read from it (none fires twice)"
                    );
                }
            }
            last = Some((now, Instant::now()));
            scheduler.handle_timeout(now);
            while let Some(action) = scheduler.poll_action() {
                let Some(spec) = scheduler.spec(action.schedule_id()).cloned() else {
                    continue;
                };
                self.on_sched_action(&spec, action).await;
            }
            let wait = scheduler
                .poll_timeout()
                .map(|due| due.duration_since(self.inner.clock.now()))
                .map(|d| d.try_into().unwrap_or(Duration::ZERO))
                .unwrap_or(WAKE_STEP)
                .min(WAKE_STEP);
            tokio::select! {
                _ = self.inner.cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                cmd = cmds.recv() => match cmd {
                    Some(SchedCmd::Upsert(spec, since)) => {
                        let id = spec.id.clone();
                        if let Err(e) = scheduler.upsert(*spec, since) {
                            tracing::error!(schedule = %id, error = %e, "schedule refused");
                        }
                    }
                    Some(SchedCmd::Remove(id)) => { scheduler.remove(&id); }
                    None => break,
                },
            }
        }
        tracing::info!(task = "rollcall scheduler", "stopped");
    }

    async fn on_sched_action(&self, spec: &ScheduleSpec, action: SchedAction) {
        match action {
            SchedAction::Fire { due, late_by, .. } => {
                if !late_by.is_zero() {
                    tracing::warn!(schedule = %spec.id, %due, late_s = late_by.as_secs(), "running a due time late (inside grace)");
                }
                let req = StartRun {
                    channel: spec.channel.clone(),
                    groups: spec.groups.clone(),
                    modes: spec.modes.clone(),
                    options: Some(spec.options.clone()),
                    announcement: spec.announcement.clone(),
                    call_clip: spec.call_clip.clone(),
                };
                match self.launch(req, Some((spec.id.clone(), due)), true).await {
                    Ok(Some(id)) => {
                        tracing::info!(schedule = %spec.id, %due, run = id, "scheduled roll call started")
                    }
                    Ok(None) => {
                        tracing::info!(schedule = %spec.id, %due, "due time already decided; not run again")
                    }
                    Err(e) => {
                        // Recorded as missed so the log stays honest.
                        let reason = format!("could not start: {e}");
                        self.record_missed(spec, due, reason).await;
                    }
                }
            }
            SchedAction::Missed { due, reason, .. } => {
                self.record_missed(spec, due, reason.to_string()).await;
            }
        }
    }

    async fn record_missed(&self, spec: &ScheduleSpec, due: Timestamp, reason: String) {
        let now = self.inner.clock.now();
        let (s, r) = (spec.clone(), reason.clone());
        match self
            .inner
            .storage
            .call(move |c| store::record_missed(c, &s, due, &r, now))
            .await
        {
            Ok(Some(run_id)) => {
                tracing::warn!(schedule = %spec.id, %due, %reason, "roll call missed");
                self.inner.bus.publish(Event::RollcallMissedRun {
                    run_id,
                    schedule_id: spec.id.clone(),
                    due_ms: due.as_millisecond(),
                    reason,
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(schedule = %spec.id, error = %e, "cannot record missed roll call")
            }
        }
    }

    // ---- runs ------------------------------------------------------------

    fn check_groups(&self, groups: &[String]) -> Result<(), RollcallError> {
        let snap = self.inner.roster.snapshot();
        for g in groups {
            if !snap.groups.iter().any(|x| &x.id == g) {
                return Err(RollcallError::UnknownGroup(g.clone()));
            }
        }
        Ok(())
    }

    /// Starts a roll call now; returns its run id once its rows committed.
    pub async fn start_run_now(&self, req: StartRun, actor: &str) -> Result<i64, RollcallError> {
        let detail = format!(
            "channel={} groups={:?} modes={:?}",
            req.channel, req.groups, req.modes
        );
        let id = self
            .launch(req, None, false)
            .await?
            .ok_or(RollcallError::NoModes)?;
        self.inner
            .storage
            .audit(actor, "rollcall.start", &id.to_string(), &detail)
            .await?;
        Ok(id)
    }

    async fn launch(
        &self,
        req: StartRun,
        due: Option<(String, Timestamp)>,
        clip_fallback: bool,
    ) -> Result<Option<i64>, RollcallError> {
        let Some(&selcall) = self.inner.channels.get(&req.channel) else {
            return Err(RollcallError::UnknownChannel(req.channel));
        };
        if req.modes.is_empty() {
            return Err(RollcallError::NoModes);
        }
        self.check_groups(&req.groups)?;
        let options = req
            .options
            .clone()
            .unwrap_or_else(|| RunOptions::from_defaults(&self.inner.defaults));
        if options.reply_window_s == 0 || options.window_s == 0 {
            return Err(RollcallError::BadOptions);
        }
        let clip = match (&req.announcement, req.modes.contains(&RollcallMode::Group)) {
            (Some(path), true) => Some(load_clip_off_executor(path.clone()).await),
            _ => None,
        };
        let announcement = match clip {
            Some(Ok(s)) => Some(Arc::new(s)),
            Some(Err(e)) if clip_fallback => {
                self.inner.bus.publish(Event::Error {
                    source: "rollcall".into(),
                    message: format!("{e}; playing the built-in tones instead"),
                });
                None
            }
            Some(Err(e)) => return Err(e),
            None => None,
        };
        let call_clip = match (
            &req.call_clip,
            req.modes.contains(&RollcallMode::Individual),
        ) {
            (Some(path), true) => match load_clip_off_executor(path.clone()).await {
                Ok(s) => Some(Arc::new(s)),
                Err(e) if clip_fallback => {
                    self.inner.bus.publish(Event::Error {
                        source: "rollcall".into(),
                        message: format!("{e}; calling without the clip"),
                    });
                    None
                }
                Err(e) => return Err(e),
            },
            _ => None,
        };
        let snap = self.inner.roster.snapshot();
        let guards: Vec<RunGuard> = snap
            .guards_in(&req.groups)
            .into_iter()
            .map(|g| {
                let sup = snap.company(&g.company).and_then(|c| c.supervisor.clone());
                RunGuard::from_roster(g, sup)
            })
            .collect();
        if guards.is_empty() {
            return Err(RollcallError::NoGuards(req.groups));
        }
        let mut plan = RunPlan {
            run_id: 0,
            schedule_id: due.as_ref().map(|(s, _)| s.clone()),
            channel: req.channel.clone(),
            modes: req.modes.clone(),
            guards,
            options,
            announcement,
            call_clip,
            selcall,
        };
        let now = self.now();
        let budget =
            jiff::SignedDuration::try_from(plan.budget()).unwrap_or(jiff::SignedDuration::MAX);
        let resume_until = now.wall.saturating_add(budget).unwrap_or(now.wall);
        let (p, groups) = (plan.clone(), req.groups.clone());
        let id = self
            .inner
            .storage
            .call(move |c| {
                store::create_run(
                    c,
                    &NewRun {
                        due: due.as_ref().map(|(s, d)| (s.as_str(), *d)),
                        channel: &p.channel,
                        groups: &groups,
                        modes: &p.modes,
                        options: &p.options,
                        started: now.wall,
                        resume_until,
                        guards: &p.guards,
                    },
                )
            })
            .await?;
        let Some(id) = id else { return Ok(None) };
        plan.run_id = id;
        // Subscribe before the first action so no answer can slip past.
        let rx = self.inner.bus.subscribe();
        let run = Run::start(plan, self.now());
        self.spawn_run(run, rx);
        Ok(Some(id))
    }

    /// Resumes or closes runs a previous life left running.
    async fn recover_runs(&self) -> Result<(), RollcallError> {
        let running = self.inner.storage.call(|c| store::running_runs(c)).await?;
        for r in running {
            let now = self.now();
            let id = r.id;
            if now.wall.as_millisecond() >= r.resume_until_ms || r.options.is_none() {
                let reason = "daemon was down past the run's end; closed with what was collected";
                self.inner
                    .storage
                    .call(move |c| store::close_interrupted(c, id, reason, now.wall))
                    .await?;
                if let Some(rec) = self.get_run(id).await? {
                    self.inner.bus.publish(Event::RollcallFinished {
                        run_id: id,
                        state: RunState::Interrupted.as_str().into(),
                        answered: rec.run.answered,
                        late: rec.run.late,
                        missed: rec.run.missed,
                        interrupted: rec.run.interrupted,
                    });
                }
                tracing::warn!(run = id, "unfinished roll call closed as interrupted");
                continue;
            }
            let (rec, saved, heard, announced) = self
                .inner
                .storage
                .call(move |c| {
                    let rec = store::load_run(c, id)?;
                    let since = rec.as_ref().map_or(i64::MAX, |r| r.run.started_ms);
                    Ok((
                        rec,
                        store::saved_slots(c, id)?,
                        store::heard_since(c, since)?,
                        store::announced_guards(c, id, since)?,
                    ))
                })
                .await?;
            let Some(rec) = rec else { continue };
            // Results the previous life committed but died before
            // announcing: announced now, late rather than never.
            for row in &rec.results {
                if row.outcome != "pending" && !announced.contains(&row.guard_id) {
                    self.inner.bus.publish(Event::RollcallGuardClosed {
                        run_id: id,
                        guard: row.guard_id.clone(),
                        outcome: row.outcome.clone(),
                    });
                }
            }
            let snap = self.inner.roster.snapshot();
            let guards = rec
                .results
                .iter()
                .map(|row| match snap.guard(&row.guard_id) {
                    Some(g) => RunGuard::from_roster(
                        g,
                        snap.company(&g.company).and_then(|c| c.supervisor.clone()),
                    ),
                    // Removed from the roster meanwhile: he can still answer
                    // by app id if he had one, not by radio.
                    None => RunGuard {
                        id: row.guard_id.clone(),
                        name: row.guard_name.clone(),
                        company: row.company.clone(),
                        supervisor: None,
                        call: None,
                        codes: vec![],
                        app_id: row.app_id.clone(),
                    },
                })
                .collect();
            let plan = RunPlan {
                run_id: id,
                schedule_id: rec.run.schedule_id.clone(),
                selcall: self
                    .inner
                    .channels
                    .get(&rec.run.channel)
                    .copied()
                    .unwrap_or(SelcallStandard::Ccir),
                channel: rec.run.channel.clone(),
                modes: rec.run.modes.clone(),
                guards,
                options: rec
                    .run
                    .options
                    .clone()
                    .unwrap_or_else(|| RunOptions::from_defaults(&self.inner.defaults)),
                // Clips are not replayed after a restart: the calls still
                // go out, and a group run with guards pending announces
                // again with the built-in tones (see `Run::resume`).
                announcement: None,
                call_clip: None,
            };
            let start = Timestamp::from_millisecond(rec.run.started_ms).unwrap_or(now.wall);
            let window_end = rec
                .run
                .window_end_ms
                .and_then(|m| Timestamp::from_millisecond(m).ok());
            let rx = self.inner.bus.subscribe();
            let run = Run::resume(plan, &saved, &heard, start, window_end, now);
            tracing::info!(run = id, "unfinished roll call resumed");
            self.spawn_run(run, rx);
        }
        Ok(())
    }

    fn spawn_run(&self, run: Run, rx: broadcast::Receiver<Arc<Numbered>>) {
        let (wtx, _) = broadcast::channel(1024);
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run.run_id(), wtx.clone());
        let me = self.clone();
        self.inner
            .tracker
            .spawn(async move { me.drive_run(run, rx, wtx).await });
    }

    async fn drive_run(
        self,
        mut run: Run,
        mut rx: broadcast::Receiver<Arc<Numbered>>,
        watch: broadcast::Sender<Event>,
    ) {
        let run_id = run.run_id();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), TxError>>();
        let mut last_seq: i64 = 0;
        let mut backlog = Backlog::default();
        loop {
            self.execute(&mut run, &mut backlog, &done_tx, &watch).await;
            let retry = !backlog.stores.is_empty();
            if run.state() != RunState::Running && !retry {
                break;
            }
            let deadline = match (run.poll_timeout(), retry) {
                (d, false) => d,
                (d, true) => {
                    let r = Instant::now() + STORE_RETRY;
                    Some(d.map_or(r, |d| d.min(r)))
                }
            };
            tokio::select! {
                biased;
                _ = self.inner.cancel.cancelled() => {
                    // Left `running` in storage: the next start resumes it.
                    tracing::info!(run = run_id, "daemon stopping; roll call will resume at next start");
                    break;
                }
                r = done_rx.recv() => {
                    if let Some(r) = r { run.handle_tx_done(r, self.now()); }
                }
                ev = rx.recv() => {
                    let mut ev = Some(ev);
                    // Drain what is already queued: one store batch per tick.
                    while let Some(e) = ev.take() {
                        match e {
                            Ok(n) => {
                                if n.seq > last_seq {
                                    last_seq = n.seq;
                                    run.handle_event(&n.event, self.now());
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(k)) => {
                                tracing::warn!(run = run_id, lagged = k, "roll call fell behind the bus; reading the missed events from storage");
                                last_seq = self.catch_up(&mut run, last_seq).await;
                            }
                            Err(broadcast::error::RecvError::Closed) => {
                                tracing::warn!(run = run_id, "event bus closed");
                                self.inner.cancel.cancelled().await;
                                break;
                            }
                        }
                        ev = match rx.try_recv() {
                            Ok(n) => Some(Ok(n)),
                            Err(broadcast::error::TryRecvError::Lagged(k)) => Some(Err(broadcast::error::RecvError::Lagged(k))),
                            Err(_) => None,
                        };
                    }
                }
                _ = sleep_until(deadline) => run.handle_timeout(self.now()),
            }
        }
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run_id);
    }

    /// Feeds the run every stored event after `after`; returns the last seq.
    async fn catch_up(&self, run: &mut Run, mut after: i64) -> i64 {
        loop {
            match crate::events::read_after(&self.inner.storage, after, 1024).await {
                Ok(rows) if rows.is_empty() => return after,
                Ok(rows) => {
                    for (seq, _ts, _kind, body) in rows {
                        after = seq;
                        if let Ok(ev) = serde_json::from_str::<Event>(&body) {
                            run.handle_event(&ev, self.now());
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read missed events");
                    return after;
                }
            }
        }
    }

    /// Executes every pending action: stores first (one transaction), then
    /// events and transmissions in order. If the commit fails, the rows and
    /// the events about them wait in `backlog` and are retried on the next
    /// tick: nothing is announced before it is stored, nothing is dropped.
    async fn execute(
        &self,
        run: &mut Run,
        backlog: &mut Backlog,
        done: &mpsc::UnboundedSender<Result<(), TxError>>,
        watch: &broadcast::Sender<Event>,
    ) {
        let run_id = run.run_id();
        let channel = run.plan().channel.clone();
        let mut rest = Vec::new();
        while let Some(a) = run.poll_action() {
            match a {
                Action::Store(op) => backlog.stores.push((run_id, op)),
                Action::Publish(ev) => backlog.events.push(ev),
                other => rest.push(other),
            }
        }
        if !backlog.stores.is_empty() {
            let batch = std::mem::take(&mut backlog.stores);
            let result = {
                let batch = batch.clone();
                self.inner
                    .storage
                    .call(move |c| store::apply(c, &batch))
                    .await
            };
            if let Err(e) = result {
                backlog.stores = batch;
                if !backlog.failing {
                    backlog.failing = true;
                    tracing::error!(run = run_id, error = %e, "roll-call results not committed; retrying, their events withheld");
                    self.inner.bus.publish(Event::Error {
                        source: format!("rollcall run {run_id}"),
                        message: format!("results could not be stored yet: {e}"),
                    });
                }
            } else if backlog.failing {
                backlog.failing = false;
                tracing::info!(run = run_id, "roll-call results committed after retrying");
            }
        }
        if backlog.stores.is_empty() {
            for ev in backlog.events.drain(..) {
                let _ = watch.send(ev.clone());
                self.inner.bus.publish(ev);
            }
        }
        for a in rest {
            match a {
                Action::Transmit { samples, .. } => {
                    let tx = self.inner.transmitter.clone();
                    let done = done.clone();
                    let ch = channel.clone();
                    let cancel = self.inner.cancel.clone();
                    self.inner.tracker.spawn(async move {
                        // Dropping the transmission at shutdown unkeys it.
                        tokio::select! {
                            r = tx.transmit(&ch, TxSource::RollCall, samples.to_vec()) => { let _ = done.send(r); }
                            _ = cancel.cancelled() => {}
                        }
                    });
                }
                Action::RadioCheck { dmr_id, .. } => {
                    let rc = self.inner.radio_check.clone();
                    let done = done.clone();
                    let ch = channel.clone();
                    let cancel = self.inner.cancel.clone();
                    self.inner.tracker.spawn(async move {
                        let check = async {
                            match rc {
                                Some(rc) => rc.radio_check(&ch, dmr_id).await,
                                None => Err(TxError::NoLinkUp),
                            }
                        };
                        tokio::select! {
                            r = check => { let _ = done.send(r); }
                            _ = cancel.cancelled() => {}
                        }
                    });
                }
                Action::Store(_) | Action::Publish(_) => {}
            }
        }
    }

    pub async fn get_run(&self, id: i64) -> Result<Option<RunRecord>, RollcallError> {
        Ok(self
            .inner
            .storage
            .call(move |c| store::load_run(c, id))
            .await?)
    }

    pub async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunSummary>, RollcallError> {
        Ok(self
            .inner
            .storage
            .call(move |c| store::list_runs(c, &filter))
            .await?)
    }

    /// Live progress events of a running run; `None` once it has ended
    /// (read it with [`RollcallService::get_run`]).
    pub fn watch_run(&self, id: i64) -> Option<broadcast::Receiver<Event>> {
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|w| w.subscribe())
    }

    pub async fn run_report_csv(&self, id: i64) -> Result<Option<Vec<u8>>, RollcallError> {
        Ok(self.get_run(id).await?.map(|r| report::run_csv(&r)))
    }

    /// Per-company figures for runs started in `[from, to)`.
    pub async fn company_report(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<CompanyStats>, RollcallError> {
        Ok(self
            .inner
            .storage
            .call(move |c| report::company_report(c, from, to))
            .await?)
    }

    pub async fn company_report_csv(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<u8>, RollcallError> {
        Ok(report::company_csv(&self.company_report(from, to).await?))
    }

    /// SVG line chart of each company's daily answer rate (days in the
    /// daemon's time zone).
    pub async fn company_chart_svg(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<String, RollcallError> {
        let tz = jiff::tz::TimeZone::get(&self.inner.daemon_tz).unwrap_or(jiff::tz::TimeZone::UTC);
        let rates = self
            .inner
            .storage
            .call(move |c| report::daily_answer_rates(c, from, to, &tz))
            .await?;
        Ok(report::answer_rate_svg(&rates))
    }

    /// Links a guard's reply to its recording (the recorder calls this).
    pub async fn set_recording(
        &self,
        run_id: i64,
        guard: &str,
        recording_id: i64,
    ) -> Result<bool, RollcallError> {
        let g = guard.to_owned();
        Ok(self
            .inner
            .storage
            .call(move |c| store::set_recording(c, run_id, &g, recording_id))
            .await?)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// [`load_clip`] on the blocking pool: file I/O and resampling stay off the
/// executor.
async fn load_clip_off_executor(path: PathBuf) -> Result<Vec<i16>, RollcallError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || load_clip(&p))
        .await
        .unwrap_or_else(|e| {
            Err(RollcallError::Announcement {
                path,
                message: format!("loader failed: {e}"),
            })
        })
}

/// Reads a WAV announcement and brings it to the internal rate.
fn load_clip(path: &Path) -> Result<Vec<i16>, RollcallError> {
    let err = |message: String| RollcallError::Announcement {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let (samples, rate) = rollcall_hw::wav::read_wav(&bytes).map_err(|e| err(e.to_string()))?;
    Ok(rollcall_hw::wav::resample_to_internal(&samples, rate))
}
