//! Roll-call rows in SQLite: runs, per-guard results, unknown identities,
//! the fired set of schedules, and the schedules themselves.
//!
//! Plain synchronous functions over a `rusqlite::Connection`, called inside
//! `Storage::call` by the service (and directly by tests). Every function
//! that writes more than one row does it in one transaction, so a crash
//! leaves either all of it or none.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::config::RollcallMode;
use crate::storage::StorageError;

use super::engine::{Outcome, RunGuard, RunState, SavedSlot, StoreOp};
use super::schedule::{RunOptions, ScheduleSpec};

/// A run about to start, as stored.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// `(schedule id, due time)` for a scheduled run.
    pub due: Option<(&'a str, Timestamp)>,
    pub channel: &'a str,
    pub groups: &'a [String],
    pub modes: &'a [RollcallMode],
    pub options: &'a RunOptions,
    pub started: Timestamp,
    pub resume_until: Timestamp,
    pub guards: &'a [RunGuard],
}

pub fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Inserts a run and its pending result rows. For a scheduled run the fired
/// row goes in the same transaction; if that due time was already decided
/// (the UNIQUE pair exists) nothing is written and `None` comes back: the
/// caller must not start it.
pub fn create_run(conn: &mut Connection, run: &NewRun<'_>) -> Result<Option<i64>, StorageError> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO rollcall_runs (schedule_id, due_ms, channel, groups, modes, options, state,
            started_ms, resume_until_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8)",
        params![
            run.due.map(|d| d.0),
            run.due.map(|d| ms(d.1)),
            run.channel,
            json(&run.groups),
            json(&run.modes),
            json(run.options),
            ms(run.started),
            ms(run.resume_until),
        ],
    )?;
    let id = tx.last_insert_rowid();
    if let Some((schedule, due)) = run.due {
        let n = tx.execute(
            "INSERT OR IGNORE INTO rollcall_fired (schedule_id, due_ms, run_id, outcome, decided_ms)
             VALUES (?1, ?2, ?3, 'started', ?4)",
            params![schedule, ms(due), id, ms(run.started)],
        )?;
        if n == 0 {
            // Dropping the transaction rolls the run row back.
            return Ok(None);
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO rollcall_results (run_id, position, guard_id, guard_name, company, call_kind,
                app_id, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
        )?;
        for (i, g) in run.guards.iter().enumerate() {
            stmt.execute(params![
                id,
                i as i64,
                g.id,
                g.name,
                g.company,
                g.call.as_ref().map(|c| c.kind()),
                g.app_id
            ])?;
        }
    }
    tx.commit()?;
    Ok(Some(id))
}

/// Records a due time that will not run, as a run in state `missed` with
/// its reason. `None` when the due time was already decided.
#[allow(clippy::too_many_arguments)]
pub fn record_missed(
    conn: &mut Connection,
    schedule: &ScheduleSpec,
    due: Timestamp,
    reason: &str,
    now: Timestamp,
) -> Result<Option<i64>, StorageError> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO rollcall_runs (schedule_id, due_ms, channel, groups, modes, options, state,
            reason, started_ms, resume_until_ms, finished_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'missed', ?7, ?2, ?2, ?8)",
        params![
            schedule.id,
            ms(due),
            schedule.channel,
            json(&schedule.groups),
            json(&schedule.modes),
            json(&schedule.options),
            reason,
            ms(now)
        ],
    )?;
    let id = tx.last_insert_rowid();
    let n = tx.execute(
        "INSERT OR IGNORE INTO rollcall_fired (schedule_id, due_ms, run_id, outcome, decided_ms)
         VALUES (?1, ?2, ?3, 'missed', ?4)",
        params![schedule.id, ms(due), id, ms(now)],
    )?;
    if n == 0 {
        return Ok(None);
    }
    tx.commit()?;
    Ok(Some(id))
}

/// The last decided due time of every schedule.
pub fn last_decided(conn: &Connection) -> Result<HashMap<String, Timestamp>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT schedule_id, MAX(due_ms) FROM rollcall_fired GROUP BY schedule_id",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows.into_iter().map(|(k, v)| (k, ts(v))).collect())
}

/// Commits a batch of engine store operations for several runs in one
/// transaction (one fsync per tick, however many acks arrived).
pub fn apply(conn: &mut Connection, batch: &[(i64, StoreOp)]) -> Result<(), StorageError> {
    let tx = conn.transaction()?;
    for (run_id, op) in batch {
        match op {
            StoreOp::Called { guard, attempts } => {
                tx.prepare_cached(
                    "UPDATE rollcall_results SET attempts = ?3 WHERE run_id = ?1 AND guard_id = ?2",
                )?
                .execute(params![run_id, guard, attempts])?;
            }
            StoreOp::Window { end } => {
                tx.prepare_cached("UPDATE rollcall_runs SET window_end_ms = ?2 WHERE id = ?1")?
                    .execute(params![run_id, ms(*end)])?;
            }
            StoreOp::Outcome {
                guard,
                outcome,
                at,
                offset_ms,
                kind,
                unit,
            } => {
                tx.prepare_cached(
                    "UPDATE rollcall_results SET outcome = ?3, answered_ms = ?4, offset_ms = ?5,
                        how_kind = ?6, how_unit = ?7
                     WHERE run_id = ?1 AND guard_id = ?2",
                )?
                .execute(params![
                    run_id,
                    guard,
                    outcome.as_str(),
                    at.map(ms),
                    offset_ms,
                    kind,
                    unit
                ])?;
            }
            StoreOp::Unknown {
                at,
                kind,
                unit,
                link,
            } => {
                tx.prepare_cached(
                    "INSERT INTO rollcall_unknown (run_id, ts_ms, kind, unit, link) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![run_id, ms(*at), kind, unit, link])?;
            }
            StoreOp::Finish { state, at, counts } => {
                tx.prepare_cached(
                    "UPDATE rollcall_runs SET state = ?2, finished_ms = ?3, answered = ?4, late = ?5,
                        missed = ?6, interrupted = ?7
                     WHERE id = ?1",
                )?
                .execute(params![
                    run_id,
                    state.as_str(),
                    ms(*at),
                    counts.answered,
                    counts.late,
                    counts.missed,
                    counts.interrupted
                ])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Fills in the recording of a guard's reply (the recorder calls this).
pub fn set_recording(
    conn: &Connection,
    run_id: i64,
    guard: &str,
    recording_id: i64,
) -> Result<bool, StorageError> {
    let n = conn.execute(
        "UPDATE rollcall_results SET recording_id = ?3 WHERE run_id = ?1 AND guard_id = ?2",
        params![run_id, guard, recording_id],
    )?;
    Ok(n == 1)
}

/// A run's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: i64,
    pub schedule_id: Option<String>,
    pub due_ms: Option<i64>,
    pub channel: String,
    pub groups: Vec<String>,
    pub modes: Vec<RollcallMode>,
    pub options: Option<RunOptions>,
    /// running, finished, interrupted or missed.
    pub state: String,
    pub reason: Option<String>,
    pub started_ms: i64,
    pub resume_until_ms: i64,
    pub window_end_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub answered: u32,
    pub late: u32,
    pub missed: u32,
    pub interrupted: u32,
}

/// One guard's line of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    pub position: u32,
    pub guard_id: String,
    pub guard_name: String,
    pub company: String,
    pub call_kind: Option<String>,
    pub app_id: Option<String>,
    pub outcome: String,
    pub attempts: u32,
    pub answered_ms: Option<i64>,
    pub offset_ms: Option<i64>,
    pub how_kind: Option<String>,
    pub how_unit: Option<String>,
    pub recording_id: Option<i64>,
}

/// An identity heard during a run that was none of its guards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownRow {
    pub ts_ms: i64,
    pub kind: String,
    pub unit: String,
    pub link: String,
}

/// A run with its results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub run: RunSummary,
    pub results: Vec<ResultRow>,
    pub unknown: Vec<UnknownRow>,
}

const RUN_COLS: &str = "id, schedule_id, due_ms, channel, groups, modes, options, state, reason,
    started_ms, resume_until_ms, window_end_ms, finished_ms, answered, late, missed, interrupted";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    let groups: String = r.get(4)?;
    let modes: String = r.get(5)?;
    let options: String = r.get(6)?;
    Ok(RunSummary {
        id: r.get(0)?,
        schedule_id: r.get(1)?,
        due_ms: r.get(2)?,
        channel: r.get(3)?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        modes: serde_json::from_str(&modes).unwrap_or_default(),
        options: serde_json::from_str(&options).ok(),
        state: r.get(7)?,
        reason: r.get(8)?,
        started_ms: r.get(9)?,
        resume_until_ms: r.get(10)?,
        window_end_ms: r.get(11)?,
        finished_ms: r.get(12)?,
        answered: r.get(13)?,
        late: r.get(14)?,
        missed: r.get(15)?,
        interrupted: r.get(16)?,
    })
}

pub fn load_run(conn: &Connection, id: i64) -> Result<Option<RunRecord>, StorageError> {
    let run = conn
        .query_row(
            &format!("SELECT {RUN_COLS} FROM rollcall_runs WHERE id = ?1"),
            [id],
            run_row,
        )
        .optional()?;
    let Some(run) = run else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT position, guard_id, guard_name, company, call_kind, app_id, outcome, attempts,
            answered_ms, offset_ms, how_kind, how_unit, recording_id
         FROM rollcall_results WHERE run_id = ?1 ORDER BY position",
    )?;
    let results = stmt
        .query_map([id], |r| {
            Ok(ResultRow {
                position: r.get(0)?,
                guard_id: r.get(1)?,
                guard_name: r.get(2)?,
                company: r.get(3)?,
                call_kind: r.get(4)?,
                app_id: r.get(5)?,
                outcome: r.get(6)?,
                attempts: r.get(7)?,
                answered_ms: r.get(8)?,
                offset_ms: r.get(9)?,
                how_kind: r.get(10)?,
                how_unit: r.get(11)?,
                recording_id: r.get(12)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT ts_ms, kind, unit, link FROM rollcall_unknown WHERE run_id = ?1 ORDER BY id",
    )?;
    let unknown = stmt
        .query_map([id], |r| {
            Ok(UnknownRow {
                ts_ms: r.get(0)?,
                kind: r.get(1)?,
                unit: r.get(2)?,
                link: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(RunRecord {
        run,
        results,
        unknown,
    }))
}

/// Which runs [`list_runs`] returns.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Started at or after.
    pub from: Option<Timestamp>,
    /// Started before.
    pub to: Option<Timestamp>,
    pub schedule_id: Option<String>,
    pub state: Option<String>,
    /// Newest first; default 100.
    pub limit: Option<u32>,
}

pub fn list_runs(conn: &Connection, f: &RunFilter) -> Result<Vec<RunSummary>, StorageError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUN_COLS} FROM rollcall_runs
         WHERE (?1 IS NULL OR started_ms >= ?1) AND (?2 IS NULL OR started_ms < ?2)
           AND (?3 IS NULL OR schedule_id = ?3) AND (?4 IS NULL OR state = ?4)
         ORDER BY started_ms DESC, id DESC LIMIT ?5"
    ))?;
    let rows = stmt
        .query_map(
            params![
                f.from.map(ms),
                f.to.map(ms),
                f.schedule_id,
                f.state,
                f.limit.unwrap_or(100) as i64
            ],
            run_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The identities and app acks stored on the bus since `since_ms` (a run's
/// start), oldest first, with their times: what a resumed run may have heard
/// without committing its result.
pub fn heard_since(
    conn: &Connection,
    since_ms: i64,
) -> Result<Vec<(Timestamp, crate::events::Event)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ts_ms, body FROM events WHERE ts_ms >= ?1 AND kind IN ('ani', 'app_ack') ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([since_ms], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|(ts, body)| {
            Some((
                Timestamp::from_millisecond(ts).ok()?,
                serde_json::from_str(&body).ok()?,
            ))
        })
        .collect())
}

/// Guards of run `run_id` whose `rollcall_guard_closed` event is stored
/// (looked up from `since_ms`, the run's start).
pub fn announced_guards(
    conn: &Connection,
    run_id: i64,
    since_ms: i64,
) -> Result<HashSet<String>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT body FROM events WHERE ts_ms >= ?1 AND kind = 'rollcall_guard_closed'",
    )?;
    let bodies = stmt
        .query_map([since_ms], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(bodies
        .iter()
        .filter_map(|b| match serde_json::from_str(b).ok()? {
            crate::events::Event::RollcallGuardClosed {
                run_id: r, guard, ..
            } if r == run_id => Some(guard),
            _ => None,
        })
        .collect())
}

/// Per-guard saved state of a run, for resuming it.
pub fn saved_slots(
    conn: &Connection,
    run_id: i64,
) -> Result<HashMap<String, SavedSlot>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT guard_id, outcome, attempts FROM rollcall_results WHERE run_id = ?1",
    )?;
    let rows = stmt
        .query_map([run_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .map(|(g, o, attempts)| {
            (
                g,
                SavedSlot {
                    outcome: Outcome::parse(&o).unwrap_or(Outcome::Pending),
                    attempts,
                },
            )
        })
        .collect())
}

/// Closes a run without an engine (e.g. its plan can no longer be rebuilt):
/// pending guards become interrupted.
pub fn close_interrupted(
    conn: &mut Connection,
    run_id: i64,
    reason: &str,
    now: Timestamp,
) -> Result<(), StorageError> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE rollcall_results SET outcome = 'interrupted' WHERE run_id = ?1 AND outcome = 'pending'",
        [run_id],
    )?;
    tx.execute(
        "UPDATE rollcall_runs SET state = ?2, reason = ?3, finished_ms = ?4,
            answered = (SELECT COUNT(*) FROM rollcall_results WHERE run_id = ?1 AND outcome = 'answered'),
            late = (SELECT COUNT(*) FROM rollcall_results WHERE run_id = ?1 AND outcome = 'late'),
            missed = (SELECT COUNT(*) FROM rollcall_results WHERE run_id = ?1 AND outcome = 'missed'),
            interrupted = (SELECT COUNT(*) FROM rollcall_results WHERE run_id = ?1 AND outcome = 'interrupted')
         WHERE id = ?1",
        params![run_id, RunState::Interrupted.as_str(), reason, ms(now)],
    )?;
    tx.commit()?;
    Ok(())
}

/// Sets a run's reason text (why it was interrupted or resumed).
pub fn set_reason(conn: &Connection, run_id: i64, reason: &str) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE rollcall_runs SET reason = ?2 WHERE id = ?1",
        params![run_id, reason],
    )?;
    Ok(())
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredSchedule {
    pub spec: ScheduleSpec,
    /// `config` or `api`.
    pub source: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

pub fn load_schedules(conn: &Connection) -> Result<Vec<StoredSchedule>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, spec, source, created_ms, updated_ms FROM rollcall_schedules ORDER BY id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for (id, spec, source, created_ms, updated_ms) in rows {
        match serde_json::from_str::<ScheduleSpec>(&spec) {
            Ok(spec) => out.push(StoredSchedule {
                spec,
                source,
                created_ms,
                updated_ms,
            }),
            // Kept in the table (nothing stored is lost), skipped here.
            Err(e) => {
                tracing::error!(schedule = %id, error = %e, "stored schedule is unreadable; skipped")
            }
        }
    }
    Ok(out)
}

/// Inserts or replaces a schedule; returns its creation time.
pub fn save_schedule(
    conn: &Connection,
    spec: &ScheduleSpec,
    source: &str,
    now: Timestamp,
) -> Result<Timestamp, StorageError> {
    conn.execute(
        "INSERT INTO rollcall_schedules (id, spec, source, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT(id) DO UPDATE SET spec = excluded.spec, source = excluded.source,
            updated_ms = excluded.updated_ms",
        params![spec.id, json(spec), source, ms(now)],
    )?;
    let created: i64 = conn.query_row(
        "SELECT created_ms FROM rollcall_schedules WHERE id = ?1",
        [&spec.id],
        |r| r.get(0),
    )?;
    Ok(ts(created))
}

pub fn delete_schedule(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM rollcall_schedules WHERE id = ?1", [id])? == 1)
}

/// Ids of runs still marked running (after a restart: to resume or close).
pub fn running_runs(conn: &Connection) -> Result<Vec<RunSummary>, StorageError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUN_COLS} FROM rollcall_runs WHERE state = 'running' ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([], run_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::storage::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn a_due_time_is_decided_once() {
        let mut c = conn();
        let opts = RunOptions {
            reply_window_s: 8,
            window_s: 60,
            on_time_s: 30,
            retries: 1,
            escalate: true,
        };
        let due: Timestamp = "2026-05-04T08:00:00Z".parse().unwrap();
        let run = NewRun {
            due: Some(("morning", due)),
            channel: "ch1",
            groups: &[],
            modes: &[RollcallMode::App],
            options: &opts,
            started: due,
            resume_until: due,
            guards: &[],
        };
        assert!(create_run(&mut c, &run).unwrap().is_some());
        // A second start of the same due time (e.g. after a restart) is
        // refused and leaves no stray run row behind.
        assert!(create_run(&mut c, &run).unwrap().is_none());
        let spec = ScheduleSpec {
            id: "morning".into(),
            name: "m".into(),
            channel: "ch1".into(),
            groups: vec![],
            times: vec!["08:00".into()],
            days: vec!["daily".into()],
            time_zone: "UTC".into(),
            modes: vec![RollcallMode::App],
            announcement: None,
            call_clip: None,
            options: opts.clone(),
            grace_s: 0,
            enabled: true,
        };
        assert!(record_missed(&mut c, &spec, due, "x", due)
            .unwrap()
            .is_none());
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM rollcall_runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(last_decided(&c).unwrap()["morning"], due);
    }
}
