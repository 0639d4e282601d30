//! SQLite rows for alerts and per-guard acknowledgements (tables `alerts`,
//! `alert_guards`, migration 2). Plain functions over a connection, run on
//! the storage thread through `Storage::call`.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::tracker::{Ack, AckVia, GuardEntry, TrackedAlert};
use super::{AlertDetail, AlertInfo, AlertTarget, GuardAckState, GuardStatus};
use crate::storage::StorageError;

/// Everything stored for a new alert.
pub struct NewRow {
    pub created_ms: i64,
    pub created_by: String,
    pub text: String,
    pub priority: String,
    pub target: AlertTarget,
    pub channels: Vec<String>,
    pub clip: Option<String>,
    pub deadline_ms: i64,
    pub reminder_ms: Option<i64>,
    pub close_ms: i64,
    /// (guard, company)
    pub guards: Vec<(String, String)>,
}

/// Inserts the alert and its guards in one transaction; returns the id.
pub fn insert(c: &mut Connection, row: &NewRow) -> Result<i64, StorageError> {
    let tx = c.transaction()?;
    tx.execute(
        "INSERT INTO alerts (created_ms, created_by, text, priority, target, channels, clip,
             deadline_ms, reminder_ms, close_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            row.created_ms,
            row.created_by,
            row.text,
            row.priority,
            serde_json::to_string(&row.target).unwrap_or_default(),
            serde_json::to_string(&row.channels).unwrap_or_default(),
            row.clip,
            row.deadline_ms,
            row.reminder_ms,
            row.close_ms,
        ],
    )?;
    let id = tx.last_insert_rowid();
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO alert_guards (alert_id, guard, company) VALUES (?1, ?2, ?3)",
        )?;
        for (g, company) in &row.guards {
            stmt.execute(params![id, g, company])?;
        }
    }
    tx.commit()?;
    Ok(id)
}

/// Stores an acknowledgement unless one is already stored; returns whether
/// this call stored it.
pub fn record_ack(
    c: &mut Connection,
    alert_id: i64,
    guard: &str,
    at_ms: i64,
    via: AckVia,
    by: &str,
) -> Result<bool, StorageError> {
    let n = c.execute(
        "UPDATE alert_guards SET ack_ms = ?3, ack_via = ?4, ack_by = ?5
         WHERE alert_id = ?1 AND guard = ?2 AND ack_ms IS NULL",
        params![alert_id, guard, at_ms, via.as_str(), by],
    )?;
    Ok(n == 1)
}

pub fn mark_reminded(c: &mut Connection, alert_id: i64) -> Result<(), StorageError> {
    c.execute("UPDATE alerts SET reminded = 1 WHERE id = ?1", [alert_id])?;
    Ok(())
}

pub fn mark_escalated(c: &mut Connection, alert_id: i64) -> Result<(), StorageError> {
    c.execute("UPDATE alerts SET escalated = 1 WHERE id = ?1", [alert_id])?;
    Ok(())
}

pub fn close(c: &mut Connection, alert_id: i64, at_ms: i64) -> Result<(), StorageError> {
    c.execute(
        "UPDATE alerts SET closed_ms = ?2 WHERE id = ?1 AND closed_ms IS NULL",
        params![alert_id, at_ms],
    )?;
    Ok(())
}

/// Every open alert, for the tracker at start-up.
pub fn load_open(c: &mut Connection) -> Result<Vec<TrackedAlert>, StorageError> {
    let mut alerts: BTreeMap<i64, TrackedAlert> = BTreeMap::new();
    {
        let mut stmt = c.prepare(
            "SELECT id, text, channels, created_ms, deadline_ms, reminder_ms, close_ms,
                    reminded, escalated
             FROM alerts WHERE closed_ms IS NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            let channels: String = r.get(2)?;
            Ok(TrackedAlert {
                id: r.get(0)?,
                text: r.get(1)?,
                channels: serde_json::from_str(&channels).unwrap_or_default(),
                created_ms: r.get(3)?,
                deadline_ms: r.get(4)?,
                reminder_ms: r.get(5)?,
                close_ms: r.get(6)?,
                reminded: r.get(7)?,
                escalated: r.get(8)?,
                guards: BTreeMap::new(),
            })
        })?;
        for a in rows {
            let a = a?;
            alerts.insert(a.id, a);
        }
    }
    let mut stmt = c.prepare(
        "SELECT g.alert_id, g.guard, g.company, g.ack_ms, g.ack_via
         FROM alert_guards g JOIN alerts a ON a.id = g.alert_id
         WHERE a.closed_ms IS NULL",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    for row in rows {
        let (id, guard, company, ack_ms, via) = row?;
        if let Some(a) = alerts.get_mut(&id) {
            let ack = match (ack_ms, via.as_deref().and_then(AckVia::parse)) {
                (Some(at_ms), Some(via)) => Some(Ack {
                    at_ms,
                    via,
                    late: at_ms > a.deadline_ms,
                }),
                _ => None,
            };
            a.guards.insert(guard, GuardEntry { company, ack });
        }
    }
    Ok(alerts.into_values().collect())
}

fn info_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertInfo> {
    let target: String = r.get(5)?;
    let channels: String = r.get(6)?;
    Ok(AlertInfo {
        id: r.get(0)?,
        created_ms: r.get(1)?,
        created_by: r.get(2)?,
        text: r.get(3)?,
        priority: r.get(4)?,
        target: serde_json::from_str(&target).unwrap_or_default(),
        channels: serde_json::from_str(&channels).unwrap_or_default(),
        clip: r.get(7)?,
        deadline_ms: r.get(8)?,
        close_ms: r.get(9)?,
        closed_ms: r.get(10)?,
        total: r.get::<_, i64>(11)? as usize,
        on_time: r.get::<_, i64>(12)? as usize,
        late: r.get::<_, i64>(13)? as usize,
    })
}

const INFO_SELECT: &str = "SELECT a.id, a.created_ms, a.created_by, a.text, a.priority, a.target,
        a.channels, a.clip, a.deadline_ms, a.close_ms, a.closed_ms,
        (SELECT COUNT(*) FROM alert_guards g WHERE g.alert_id = a.id),
        (SELECT COUNT(*) FROM alert_guards g WHERE g.alert_id = a.id AND g.ack_ms <= a.deadline_ms),
        (SELECT COUNT(*) FROM alert_guards g WHERE g.alert_id = a.id AND g.ack_ms > a.deadline_ms)
    FROM alerts a";

/// Newest first.
pub fn list(
    c: &mut Connection,
    open_only: bool,
    limit: usize,
) -> Result<Vec<AlertInfo>, StorageError> {
    let sql = format!(
        "{INFO_SELECT} {} ORDER BY a.id DESC LIMIT ?1",
        if open_only {
            "WHERE a.closed_ms IS NULL"
        } else {
            ""
        }
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt
        .query_map([limit as i64], info_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn get(c: &mut Connection, id: i64, now_ms: i64) -> Result<Option<AlertDetail>, StorageError> {
    let info = c
        .query_row(
            &format!("{INFO_SELECT} WHERE a.id = ?1"),
            [id],
            info_from_row,
        )
        .optional()?;
    let Some(info) = info else { return Ok(None) };
    let mut stmt = c.prepare(
        "SELECT guard, company, ack_ms, ack_via, ack_by FROM alert_guards
         WHERE alert_id = ?1 ORDER BY guard",
    )?;
    let finished = info.closed_ms.is_some() || now_ms >= info.close_ms;
    let guards = stmt
        .query_map([id], |r| {
            let ack_ms: Option<i64> = r.get(2)?;
            let state = match ack_ms {
                Some(t) if t > info.deadline_ms => GuardAckState::Late,
                Some(_) => GuardAckState::Acknowledged,
                None if finished || now_ms > info.deadline_ms => GuardAckState::Missed,
                None => GuardAckState::Pending,
            };
            Ok(GuardStatus {
                guard: r.get(0)?,
                company: r.get(1)?,
                ack_ms,
                via: r.get(3)?,
                by: r.get(4)?,
                state,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(AlertDetail::new(info, guards)))
}
