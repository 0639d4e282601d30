//! The persisted outbox (table `mqtt_outbox`): messages that matter stay
//! here until the broker acknowledged them (PubAck), across broker outages
//! and daemon restarts. The outbox, not rumqttc, is the source of truth.
//!
//! `mqtt_cursor` holds the sequence number of the last bus event turned into
//! outbox rows; it moves in the same transaction as the rows, so at start-up
//! the bridge re-reads the event log after the cursor and nothing stored on
//! the bus is skipped, even if the daemon died between storing an event and
//! queueing its messages.

use rusqlite::{params, Connection, OptionalExtension};

use crate::storage::StorageError;

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub msg_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Adds messages (ignoring msg_ids already queued) and moves the cursor to
/// `seq`, in one transaction. Callers must not pass events at or below the
/// cursor: their rows may have been delivered and deleted already. Returns the rows that are now queued for these
/// messages, in order.
pub fn enqueue(
    c: &mut Connection,
    seq: i64,
    msgs: &[(String, String, Vec<u8>)],
    now_ms: i64,
) -> Result<Vec<Row>, StorageError> {
    let tx = c.transaction()?;
    let mut out = Vec::with_capacity(msgs.len());
    {
        let mut ins = tx.prepare_cached(
            "INSERT OR IGNORE INTO mqtt_outbox (msg_id, topic, payload, created_ms)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut get = tx.prepare_cached("SELECT id FROM mqtt_outbox WHERE msg_id = ?1")?;
        for (msg_id, topic, payload) in msgs {
            ins.execute(params![msg_id, topic, payload, now_ms])?;
            // Always present inside this transaction; `optional` keeps a
            // surprise from becoming a panic.
            if let Some(id) = get.query_row([msg_id], |r| r.get::<_, i64>(0)).optional()? {
                out.push(Row {
                    id,
                    msg_id: msg_id.clone(),
                    topic: topic.clone(),
                    payload: payload.clone(),
                });
            }
        }
        tx.execute(
            "INSERT INTO mqtt_cursor (id, seq) VALUES (1, ?1)
             ON CONFLICT(id) DO UPDATE SET seq = max(seq, excluded.seq)",
            [seq],
        )?;
    }
    tx.commit()?;
    Ok(out)
}

/// Where the bridge left off. On a database that never ran the bridge the
/// cursor starts at the newest event (history is not replayed to MQTT).
pub fn cursor(c: &mut Connection) -> Result<i64, StorageError> {
    if let Some(seq) = c
        .query_row("SELECT seq FROM mqtt_cursor WHERE id = 1", [], |r| r.get(0))
        .optional()?
    {
        return Ok(seq);
    }
    let newest: i64 = c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    c.execute("INSERT INTO mqtt_cursor (id, seq) VALUES (1, ?1)", [newest])?;
    Ok(newest)
}

/// Queued rows with `id > after`, oldest first.
pub fn pending(c: &mut Connection, after: i64, limit: usize) -> Result<Vec<Row>, StorageError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, msg_id, topic, payload FROM mqtt_outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![after, limit as i64], |r| {
            Ok(Row {
                id: r.get(0)?,
                msg_id: r.get(1)?,
                topic: r.get(2)?,
                payload: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Removes delivered rows.
pub fn delete(c: &mut Connection, ids: &[i64]) -> Result<(), StorageError> {
    let tx = c.transaction()?;
    {
        let mut stmt = tx.prepare_cached("DELETE FROM mqtt_outbox WHERE id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub fn count(c: &mut Connection) -> Result<usize, StorageError> {
    Ok(c.query_row("SELECT COUNT(*) FROM mqtt_outbox", [], |r| {
        r.get::<_, i64>(0)
    })? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::storage::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn enqueue_is_idempotent_by_msg_id_and_moves_the_cursor() {
        let mut c = db();
        assert_eq!(cursor(&mut c).unwrap(), 0);
        let m = |id: &str| (id.to_string(), "t/x".to_string(), b"{}".to_vec());
        let a = enqueue(&mut c, 5, &[m("s-5"), m("s-5-g1")], 1).unwrap();
        assert_eq!(a.len(), 2);
        let b = enqueue(&mut c, 5, &[m("s-5")], 2).unwrap();
        assert_eq!(b[0].id, a[0].id, "a replay maps to the queued row");
        assert_eq!(count(&mut c).unwrap(), 2);
        assert_eq!(cursor(&mut c).unwrap(), 5);
        enqueue(&mut c, 3, &[], 3).unwrap();
        assert_eq!(cursor(&mut c).unwrap(), 5, "the cursor never goes back");
        delete(&mut c, &[a[0].id]).unwrap();
        let left = pending(&mut c, 0, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].msg_id, "s-5-g1");
    }

    #[test]
    fn a_fresh_bridge_starts_at_the_newest_event() {
        let mut c = db();
        c.execute_batch(
            "INSERT INTO events (ts_ms, kind, body) VALUES (1, 'x', '{}'), (2, 'x', '{}');",
        )
        .unwrap();
        assert_eq!(cursor(&mut c).unwrap(), 2);
    }
}
