//! The roll-call scheduler: which due times a schedule has, and when each one
//! fires. Pure: wall time is passed in, nothing here reads a clock, sleeps or
//! touches SQLite.
//!
//! Cron semantics, in the schedule's own IANA time zone:
//! - a local time inside a skipped DST hour fires at the first valid instant
//!   after it (the transition itself: 02:30 on a spring-forward night fires
//!   at 03:00 local);
//! - a local time inside a repeated hour fires once, at its first occurrence.
//!
//! Exactly once per due time: each schedule keeps the next due instant and
//! only ever moves it forward (strictly after the last due time it decided),
//! so a wall clock stepping backwards cannot make a due time fire again, and
//! one stepping forwards makes the skipped due times pass through the grace
//! check like a restart does. Across restarts the caller seeds each schedule
//! with the last due time recorded in SQLite (`since`), and the store's
//! UNIQUE (schedule, due) constraint is the final guard.

use std::collections::{BTreeMap, VecDeque};

use jiff::civil::{Date, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::config::{parse_days, parse_hhmm, Days, RollcallDefaults, RollcallMode, ScheduleConfig};

/// Per-run timing and escalation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Individual mode: seconds to wait for a guard's reply after a call.
    pub reply_window_s: u64,
    /// Group/app mode: the response window, seconds.
    pub window_s: u64,
    /// Answers later than this (from the run's start, or after a guard's
    /// first reply window) count as late.
    pub on_time_s: u64,
    /// Individual mode: calls after the first one.
    pub retries: u32,
    /// Escalate missed guards to their company's supervisor.
    pub escalate: bool,
}

impl RunOptions {
    pub fn from_defaults(d: &RollcallDefaults) -> RunOptions {
        RunOptions {
            reply_window_s: d.reply_window_s,
            window_s: d.window_s,
            on_time_s: d.on_time_s,
            retries: d.retries,
            escalate: d.escalate,
        }
    }
}

/// A validated schedule, as stored (JSON) and as the API edits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub id: String,
    pub name: String,
    pub channel: String,
    /// Roster groups called; empty = every guard.
    pub groups: Vec<String>,
    /// Local `HH:MM` times.
    pub times: Vec<String>,
    /// `daily`, `weekdays`, `weekends` or day names (`mon` … `sun`).
    pub days: Vec<String>,
    pub time_zone: String,
    pub modes: Vec<RollcallMode>,
    pub announcement: Option<std::path::PathBuf>,
    /// Individual mode: WAV clip sent after each selective call.
    #[serde(default)]
    pub call_clip: Option<std::path::PathBuf>,
    pub options: RunOptions,
    /// A due time passed by at most this many seconds still runs (late).
    pub grace_s: u64,
    pub enabled: bool,
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule id \"{0}\" is not valid; use 1–64 of A-Z a-z 0-9 - _")]
    BadId(String),
    #[error("schedule \"{id}\": {message}")]
    Invalid { id: String, message: String },
}

impl ScheduleSpec {
    /// Builds a spec from config, filling defaults from `[rollcall]` and the
    /// daemon's time zone.
    pub fn from_config(s: &ScheduleConfig, d: &RollcallDefaults, daemon_tz: &str) -> ScheduleSpec {
        ScheduleSpec {
            id: s.id.clone(),
            name: s.name.clone().unwrap_or_else(|| s.id.clone()),
            channel: s.channel.clone(),
            groups: s.groups.clone(),
            times: s.times.clone(),
            days: match &s.days {
                Days::Named(n) => vec![n.clone()],
                Days::List(l) => l.clone(),
            },
            time_zone: s.time_zone.clone().unwrap_or_else(|| daemon_tz.to_owned()),
            modes: s.modes.clone(),
            announcement: s.announcement.clone(),
            call_clip: s.call_clip.clone(),
            options: RunOptions {
                reply_window_s: s.reply_window_s.unwrap_or(d.reply_window_s),
                window_s: s.window_s.unwrap_or(d.window_s),
                on_time_s: s.on_time_s.unwrap_or(d.on_time_s),
                retries: s.retries.unwrap_or(d.retries),
                escalate: d.escalate,
            },
            grace_s: s.grace_s.unwrap_or(d.grace_s),
            enabled: s.enabled,
        }
    }

    /// Checks every field, like the config loader does; returns the compiled
    /// form the scheduler uses.
    pub fn compile(&self) -> Result<Compiled, ScheduleError> {
        let bad = |message: String| ScheduleError::Invalid {
            id: self.id.clone(),
            message,
        };
        if !crate::config::is_ident(&self.id) {
            return Err(ScheduleError::BadId(self.id.clone()));
        }
        if self.times.is_empty() {
            return Err(bad(
                "needs at least one time, e.g. [\"08:00\", \"20:00\"]".into()
            ));
        }
        let mut times = Vec::with_capacity(self.times.len());
        for t in &self.times {
            let (h, m) = parse_hhmm(t).ok_or_else(|| {
                bad(format!(
                    "\"{t}\" is not a time; use 24-hour HH:MM, e.g. \"08:00\""
                ))
            })?;
            times.push(Time::constant(h as i8, m as i8, 0, 0));
        }
        times.sort();
        times.dedup();
        let days = match self.days.as_slice() {
            [] => [true; 7],
            [one] if ["daily", "weekdays", "weekends"].contains(&one.as_str()) => {
                parse_days(&Days::Named(one.clone())).map_err(bad)?
            }
            list => parse_days(&Days::List(list.to_vec())).map_err(bad)?,
        };
        let tz = TimeZone::get(&self.time_zone).map_err(|e| {
            bad(format!(
                "unknown IANA time zone \"{}\": {e}",
                self.time_zone
            ))
        })?;
        if self.modes.is_empty() {
            return Err(bad("needs at least one of individual, group, app".into()));
        }
        if self.channel.is_empty() {
            return Err(bad("needs a channel".into()));
        }
        if self.options.reply_window_s == 0 || self.options.window_s == 0 {
            return Err(bad(
                "reply and response windows must be at least 1 second".into()
            ));
        }
        Ok(Compiled { times, days, tz })
    }
}

/// The parts of a schedule the due-time arithmetic needs.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Sorted, unique local times.
    pub times: Vec<Time>,
    /// Monday = 0.
    pub days: [bool; 7],
    pub tz: TimeZone,
}

impl Compiled {
    /// The instant local `time` on `date` fires, with cron's DST rules.
    fn resolve(&self, date: Date, time: Time) -> Option<Timestamp> {
        let dt = date.to_datetime(time);
        let amb = self.tz.to_ambiguous_timestamp(dt);
        match amb.offset() {
            AmbiguousOffset::Unambiguous { .. } => amb.compatible().ok(),
            // Repeated hour: the first occurrence.
            AmbiguousOffset::Fold { .. } => amb.earlier().ok(),
            // Skipped hour: the transition instant, i.e. the first valid
            // local time after the requested one. `earlier()` reads the
            // time with the pre-gap offset, which lands before the gap.
            AmbiguousOffset::Gap { .. } => {
                let before = amb.earlier().ok()?;
                self.tz.following(before).next().map(|t| t.timestamp())
            }
        }
    }

    /// The first due instant strictly after `after`.
    pub fn next_due_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.tz.clone()).date();
        let mut best: Option<Timestamp> = None;
        // A day back covers offsets that put a local date's time before
        // `after`'s local date; eight ahead covers any weekday pattern.
        for delta in -1..=8i64 {
            let Ok(date) = start.checked_add(jiff::Span::new().days(delta)) else {
                continue;
            };
            if !self.days[date.weekday().to_monday_zero_offset() as usize] {
                continue;
            }
            for &t in &self.times {
                if let Some(ts) = self.resolve(date, t) {
                    if ts > after && best.is_none_or(|b| ts < b) {
                        best = Some(ts);
                    }
                }
            }
            if best.is_some() && delta >= 1 {
                break;
            }
        }
        best
    }
}

/// Why a due time did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// Passed by more than the grace window when first seen.
    TooLate { late_by_s: i64, grace_s: u64 },
    /// A later due time of the same schedule had also passed.
    Superseded { by: Timestamp },
}

impl std::fmt::Display for MissReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MissReason::TooLate { late_by_s, grace_s } => write!(
                f,
                "due time passed {late_by_s} s before it could start (daemon down or clock jumped), beyond the {grace_s} s grace window"
            ),
            MissReason::Superseded { by } => {
                write!(f, "superseded by the later due time {by} that had also passed")
            }
        }
    }
}

/// What the scheduler asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedAction {
    /// Start a run for `due`. `late_by` is zero when on time.
    Fire {
        schedule_id: String,
        due: Timestamp,
        late_by: SignedDuration,
    },
    /// Record `due` as a missed run.
    Missed {
        schedule_id: String,
        due: Timestamp,
        reason: MissReason,
    },
}

impl SchedAction {
    pub fn schedule_id(&self) -> &str {
        match self {
            SchedAction::Fire { schedule_id, .. } | SchedAction::Missed { schedule_id, .. } => {
                schedule_id
            }
        }
    }
    pub fn due(&self) -> Timestamp {
        match self {
            SchedAction::Fire { due, .. } | SchedAction::Missed { due, .. } => *due,
        }
    }
}

struct Entry {
    spec: ScheduleSpec,
    compiled: Compiled,
    next_due: Option<Timestamp>,
}

/// Due times older than this are not enumerated one by one after a long
/// outage: the oldest one recorded is the first within this horizon.
const LOOKBACK: SignedDuration = SignedDuration::from_hours(24 * 31);
/// Passing a due time by less than this is "on time", not "late".
const ON_TIME_SLACK: SignedDuration = SignedDuration::from_secs(2);

/// Every schedule's next due time; `handle_timeout(now)` turns passed due
/// times into [`SchedAction`]s.
#[derive(Default)]
pub struct Scheduler {
    entries: BTreeMap<String, Entry>,
    actions: VecDeque<SchedAction>,
    last_now: Option<Timestamp>,
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    /// Adds or replaces a schedule. `since` is the last due time already
    /// decided for it (fired or missed, from storage) or, for a schedule
    /// never run, the moment it was created: due times strictly after
    /// `since` are this scheduler's to decide.
    pub fn upsert(&mut self, spec: ScheduleSpec, since: Timestamp) -> Result<(), ScheduleError> {
        let compiled = spec.compile()?;
        let floor = self.last_now.map(|n| n - LOOKBACK);
        let since = match floor {
            Some(f) if since < f => f,
            _ => since,
        };
        let next_due = compiled.next_due_after(since);
        self.entries.insert(
            spec.id.clone(),
            Entry {
                spec,
                compiled,
                next_due,
            },
        );
        Ok(())
    }

    pub fn remove(&mut self, id: &str) -> bool {
        self.entries.remove(id).is_some()
    }

    pub fn spec(&self, id: &str) -> Option<&ScheduleSpec> {
        self.entries.get(id).map(|e| &e.spec)
    }

    pub fn next_due(&self, id: &str) -> Option<Timestamp> {
        self.entries.get(id).and_then(|e| e.next_due)
    }

    /// Decides every due time at or before `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.last_now = Some(now);
        for (id, e) in &mut self.entries {
            // Horizon after a long outage (or a huge forward jump).
            if let Some(d) = e.next_due {
                if d < now - LOOKBACK {
                    e.next_due = e
                        .compiled
                        .next_due_after(now - LOOKBACK - SignedDuration::from_secs(1));
                }
            }
            let mut passed = Vec::new();
            while let Some(due) = e.next_due.filter(|d| *d <= now) {
                passed.push(due);
                e.next_due = e.compiled.next_due_after(due);
            }
            if !e.spec.enabled {
                continue;
            }
            let grace = SignedDuration::from_secs(e.spec.grace_s as i64);
            let last = passed.last().copied();
            for due in passed {
                let late_by = now.duration_since(due);
                let action = if Some(due) != last && late_by <= grace {
                    SchedAction::Missed {
                        schedule_id: id.clone(),
                        due,
                        reason: MissReason::Superseded {
                            by: last.unwrap_or(due),
                        },
                    }
                } else if Some(due) == last && late_by <= ON_TIME_SLACK {
                    SchedAction::Fire {
                        schedule_id: id.clone(),
                        due,
                        late_by: SignedDuration::ZERO,
                    }
                } else if Some(due) == last && late_by <= grace {
                    SchedAction::Fire {
                        schedule_id: id.clone(),
                        due,
                        late_by,
                    }
                } else {
                    SchedAction::Missed {
                        schedule_id: id.clone(),
                        due,
                        reason: MissReason::TooLate {
                            late_by_s: late_by.as_secs(),
                            grace_s: e.spec.grace_s,
                        },
                    }
                };
                self.actions.push_back(action);
            }
        }
    }

    /// The earliest next due time (wall clock). The driver sleeps towards it
    /// in bounded steps and re-reads the wall clock, so a clock step is seen.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.entries
            .values()
            .filter(|e| e.spec.enabled)
            .filter_map(|e| e.next_due)
            .min()
    }

    pub fn poll_action(&mut self) -> Option<SchedAction> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, tz: &str, times: &[&str], days: &str, grace_s: u64) -> ScheduleSpec {
        ScheduleSpec {
            id: id.into(),
            name: id.into(),
            channel: "ch1".into(),
            groups: vec![],
            times: times.iter().map(|s| s.to_string()).collect(),
            days: vec![days.into()],
            time_zone: tz.into(),
            modes: vec![RollcallMode::Group],
            announcement: None,
            call_clip: None,
            options: RunOptions::from_defaults(&RollcallDefaults::default()),
            grace_s,
            enabled: true,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Drives the scheduler on a simulated wall clock from `from` to `to` in
    /// `step` increments (jumping straight to each due time, as the driver's
    /// timer would), collecting every action.
    fn run(
        s: &mut Scheduler,
        from: Timestamp,
        to: Timestamp,
        step: SignedDuration,
    ) -> Vec<SchedAction> {
        let mut out = vec![];
        let mut now = from;
        while now <= to {
            s.handle_timeout(now);
            while let Some(a) = s.poll_action() {
                out.push(a);
            }
            let next = now + step;
            now = match s.poll_timeout() {
                Some(d) if d > now && d < next => d,
                _ => next,
            };
        }
        out
    }

    fn fires(actions: &[SchedAction]) -> Vec<Timestamp> {
        actions
            .iter()
            .filter(|a| matches!(a, SchedAction::Fire { .. }))
            .map(|a| a.due())
            .collect()
    }

    #[test]
    fn shanghai_morning_and_evening_on_weekdays() {
        let mut s = Scheduler::new();
        // Monday 2026-03-02 00:00 Shanghai = 2026-03-01T16:00Z.
        let start = ts("2026-03-01T16:00:00Z");
        s.upsert(
            spec("a", "Asia/Shanghai", &["20:00", "08:00"], "weekdays", 900),
            start,
        )
        .unwrap();
        let acts = run(
            &mut s,
            start,
            start + SignedDuration::from_hours(24 * 7),
            SignedDuration::from_mins(7),
        );
        let f = fires(&acts);
        assert_eq!(f.len(), 10, "{f:?}");
        assert_eq!(f[0], ts("2026-03-02T00:00:00Z")); // 08:00 +08
        assert_eq!(f[1], ts("2026-03-02T12:00:00Z")); // 20:00 +08
        assert_eq!(f[9], ts("2026-03-06T12:00:00Z")); // Friday evening
        assert!(acts
            .iter()
            .all(|a| matches!(a, SchedAction::Fire { late_by, .. } if late_by.is_zero())));
    }

    #[test]
    fn berlin_spring_forward_fires_once_at_the_transition() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z).
        let mut s = Scheduler::new();
        let start = ts("2026-03-27T12:00:00Z");
        s.upsert(
            spec("gap", "Europe/Berlin", &["02:30", "03:30"], "daily", 900),
            start,
        )
        .unwrap();
        let acts = run(
            &mut s,
            start,
            ts("2026-03-31T00:00:00Z"),
            SignedDuration::from_mins(1),
        );
        let f = fires(&acts);
        assert_eq!(
            f,
            vec![
                ts("2026-03-28T01:30:00Z"), // 02:30 CET
                ts("2026-03-28T02:30:00Z"), // 03:30 CET
                ts("2026-03-29T01:00:00Z"), // 02:30 skipped → 03:00 CEST
                ts("2026-03-29T01:30:00Z"), // 03:30 CEST
                ts("2026-03-30T00:30:00Z"), // 02:30 CEST
                ts("2026-03-30T01:30:00Z"), // 03:30 CEST
            ]
        );
        assert_eq!(acts.len(), f.len(), "no missed runs: {acts:?}");
    }

    #[test]
    fn berlin_fall_back_fires_once_at_the_first_occurrence() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00Z); 02:30
        // happens at 00:30Z and again at 01:30Z.
        let mut s = Scheduler::new();
        let start = ts("2026-10-24T12:00:00Z");
        s.upsert(
            spec("fold", "Europe/Berlin", &["02:30"], "daily", 900),
            start,
        )
        .unwrap();
        let acts = run(
            &mut s,
            start,
            ts("2026-10-26T12:00:00Z"),
            SignedDuration::from_secs(30),
        );
        assert_eq!(
            fires(&acts),
            vec![ts("2026-10-25T00:30:00Z"), ts("2026-10-26T01:30:00Z")]
        );
        assert_eq!(acts.len(), 2);
    }

    #[test]
    fn clock_jump_backwards_does_not_refire() {
        let mut s = Scheduler::new();
        let start = ts("2026-05-04T07:00:00Z");
        s.upsert(spec("a", "UTC", &["08:00"], "daily", 900), start)
            .unwrap();
        let mut acts = run(
            &mut s,
            start,
            ts("2026-05-04T08:30:00Z"),
            SignedDuration::from_mins(1),
        );
        assert_eq!(fires(&acts), vec![ts("2026-05-04T08:00:00Z")]);
        // The wall clock is stepped back an hour (NTP correction) and runs
        // on through 08:00 again, then to the next day.
        acts = run(
            &mut s,
            ts("2026-05-04T07:30:00Z"),
            ts("2026-05-05T09:00:00Z"),
            SignedDuration::from_mins(1),
        );
        assert_eq!(fires(&acts), vec![ts("2026-05-05T08:00:00Z")]);
        assert_eq!(acts.len(), 1);
    }

    #[test]
    fn clock_jump_forward_goes_through_grace() {
        let mut s = Scheduler::new();
        let start = ts("2026-05-04T07:00:00Z");
        s.upsert(spec("a", "UTC", &["08:00", "12:00"], "daily", 600), start)
            .unwrap();
        s.handle_timeout(start);
        // Jump 5 h 5 min forward: 08:00 passed beyond grace (missed), 12:00
        // is 5 min late (inside the 10 min grace) and runs late.
        s.handle_timeout(ts("2026-05-04T12:05:00Z"));
        let a1 = s.poll_action().unwrap();
        let a2 = s.poll_action().unwrap();
        assert!(s.poll_action().is_none());
        assert!(matches!(
            a1,
            SchedAction::Missed {
                reason: MissReason::TooLate {
                    late_by_s: 14700,
                    ..
                },
                ..
            }
        ));
        assert_eq!(a1.due(), ts("2026-05-04T08:00:00Z"));
        assert_eq!(
            a2,
            SchedAction::Fire {
                schedule_id: "a".into(),
                due: ts("2026-05-04T12:00:00Z"),
                late_by: SignedDuration::from_mins(5)
            }
        );
    }

    #[test]
    fn restart_between_due_and_start_does_not_double_fire() {
        // First life: 08:00 fires; the driver persists (a, 08:00) and then
        // the daemon dies before the run really started.
        let mut s = Scheduler::new();
        let start = ts("2026-05-04T07:00:00Z");
        s.upsert(spec("a", "UTC", &["08:00"], "daily", 900), start)
            .unwrap();
        let acts = run(
            &mut s,
            start,
            ts("2026-05-04T08:00:00Z"),
            SignedDuration::from_mins(1),
        );
        let fired = fires(&acts);
        assert_eq!(fired, vec![ts("2026-05-04T08:00:00Z")]);
        // Second life, 1 minute later: seeded with the persisted fired set.
        let mut s = Scheduler::new();
        s.upsert(
            spec("a", "UTC", &["08:00"], "daily", 900),
            *fired.last().unwrap(),
        )
        .unwrap();
        let acts = run(
            &mut s,
            ts("2026-05-04T08:01:00Z"),
            ts("2026-05-05T08:00:00Z"),
            SignedDuration::from_mins(1),
        );
        assert_eq!(fires(&acts), vec![ts("2026-05-05T08:00:00Z")]);
        assert_eq!(acts.len(), 1);
    }

    #[test]
    fn missed_while_down_inside_and_outside_grace() {
        // Last decided due: Monday 08:00. Down until Tuesday 08:10: the
        // 08:00 due is 10 min late, inside a 15 min grace → runs late, once.
        let mut s = Scheduler::new();
        s.upsert(
            spec("a", "UTC", &["08:00"], "daily", 900),
            ts("2026-05-04T08:00:00Z"),
        )
        .unwrap();
        let acts = run(
            &mut s,
            ts("2026-05-05T08:10:00Z"),
            ts("2026-05-05T12:00:00Z"),
            SignedDuration::from_mins(1),
        );
        assert_eq!(
            acts,
            vec![SchedAction::Fire {
                schedule_id: "a".into(),
                due: ts("2026-05-05T08:00:00Z"),
                late_by: SignedDuration::from_mins(10)
            }]
        );
        // Same outage but back at 08:20: outside grace → one missed record
        // with its reason, and no run.
        let mut s = Scheduler::new();
        s.upsert(
            spec("a", "UTC", &["08:00"], "daily", 900),
            ts("2026-05-04T08:00:00Z"),
        )
        .unwrap();
        let acts = run(
            &mut s,
            ts("2026-05-05T08:20:00Z"),
            ts("2026-05-05T12:00:00Z"),
            SignedDuration::from_mins(1),
        );
        assert_eq!(acts.len(), 1);
        match &acts[0] {
            SchedAction::Missed { due, reason, .. } => {
                assert_eq!(*due, ts("2026-05-05T08:00:00Z"));
                assert_eq!(
                    *reason,
                    MissReason::TooLate {
                        late_by_s: 1200,
                        grace_s: 900
                    }
                );
                assert!(reason.to_string().contains("beyond the 900 s grace window"));
            }
            other => panic!("expected a missed run, got {other:?}"),
        }
    }

    #[test]
    fn bad_specs_are_refused_with_what_was_wrong() {
        let mut s = Scheduler::new();
        let now = ts("2026-05-04T07:00:00Z");
        let e = s
            .upsert(spec("a", "Mars/Olympus", &["08:00"], "daily", 0), now)
            .unwrap_err();
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
        let e = s
            .upsert(spec("a", "UTC", &["25:00"], "daily", 0), now)
            .unwrap_err();
        assert!(e.to_string().contains("\"25:00\" is not a time"), "{e}");
        let e = s
            .upsert(spec("a", "UTC", &["08:00"], "sometimes", 0), now)
            .unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = s
            .upsert(spec("a b", "UTC", &["08:00"], "daily", 0), now)
            .unwrap_err();
        assert!(matches!(e, ScheduleError::BadId(_)));
        assert!(s.poll_timeout().is_none());
    }
}
