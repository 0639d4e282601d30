//! The recordings index: crash repair at start-up and search.

use std::path::Path;

use crate::storage::{Storage, StorageError};

/// One indexed recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingRow {
    pub id: i64,
    pub channel: String,
    pub link: String,
    pub direction: String,
    pub source: String,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub ani_kind: Option<String>,
    pub ani: Option<String>,
    pub guard: Option<String>,
    pub bytes: i64,
    pub path: String,
}

/// Search criteria; every field is optional and they combine with AND.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub channel: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Matches the ANI unit id exactly.
    pub ani: Option<String>,
    pub guard: Option<String>,
    /// `rx` or `tx`.
    pub direction: Option<String>,
    pub limit: u32,
    /// Return rows with `id < before_id` (paging, newest first).
    pub before_id: Option<i64>,
}

/// Newest first.
pub async fn search(storage: &Storage, f: SearchFilter) -> Result<Vec<RecordingRow>, StorageError> {
    storage
        .call(move |c| {
            let mut sql = String::from(
                "SELECT id, channel, link, direction, source, start_ms, duration_ms, ani_kind, ani, guard, bytes, path
                 FROM recordings WHERE complete = 1",
            );
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut add = |clause: &str, v: rusqlite::types::Value| {
                args.push(v);
                sql.push_str(&format!(" AND {clause} ?{}", args.len()));
            };
            if let Some(ch) = f.channel {
                add("channel =", ch.into());
            }
            if let Some(t) = f.from_ms {
                add("start_ms >=", t.into());
            }
            if let Some(t) = f.to_ms {
                add("start_ms <", t.into());
            }
            if let Some(a) = f.ani {
                add("ani =", a.into());
            }
            if let Some(g) = f.guard {
                add("guard =", g.into());
            }
            if let Some(d) = f.direction {
                add("direction =", d.into());
            }
            if let Some(b) = f.before_id {
                add("id <", b.into());
            }
            let limit = if f.limit == 0 { 100 } else { f.limit.min(1000) };
            sql.push_str(&format!(" ORDER BY start_ms DESC, id DESC LIMIT {limit}"));
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok(RecordingRow {
                        id: r.get(0)?,
                        channel: r.get(1)?,
                        link: r.get(2)?,
                        direction: r.get(3)?,
                        source: r.get(4)?,
                        start_ms: r.get(5)?,
                        duration_ms: r.get(6)?,
                        ani_kind: r.get(7)?,
                        ani: r.get(8)?,
                        guard: r.get(9)?,
                        bytes: r.get(10)?,
                        path: r.get(11)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

/// One recording by id (complete or not).
pub async fn get(storage: &Storage, id: i64) -> Result<Option<RecordingRow>, StorageError> {
    let mut rows = search(
        storage,
        SearchFilter {
            before_id: Some(id + 1),
            limit: 1,
            ..Default::default()
        },
    )
    .await?;
    Ok(rows.pop().filter(|r| r.id == id))
}

/// Repairs every recording whose row is still incomplete (the daemon died
/// while writing it) and completes its row; a file that is gone or holds no
/// audio loses its row. Returns how many were repaired.
pub async fn repair_incomplete(storage: &Storage) -> Result<usize, StorageError> {
    let pending: Vec<(i64, String)> = storage
        .call(|c| {
            let mut stmt = c.prepare("SELECT id, path FROM recordings WHERE complete = 0")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    let mut repaired = 0;
    for (id, path) in pending {
        let p = path.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            if !Path::new(&p).exists() {
                return Err("file is missing".to_string());
            }
            let outcome = rollcall_hw::ogg::repair(&p).map_err(|e| e.to_string())?;
            let bytes = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            Ok((outcome, bytes))
        })
        .await
        .unwrap_or_else(|e| Err(format!("repair panicked: {e}")));
        match outcome {
            Ok((o, bytes)) => {
                tracing::warn!(
                    id,
                    %path,
                    duration_ms = o.duration_ms,
                    cut_bytes = o.truncated_bytes,
                    "repaired a recording left open by a crash"
                );
                storage
                    .call(move |c| {
                        c.execute(
                            "UPDATE recordings SET duration_ms = ?2, bytes = ?3, complete = 1 WHERE id = ?1",
                            rusqlite::params![id, o.duration_ms as i64, bytes as i64],
                        )?;
                        Ok(())
                    })
                    .await?;
                repaired += 1;
            }
            Err(reason) => {
                tracing::warn!(id, %path, %reason, "dropping an unrecoverable recording");
                let _ = std::fs::remove_file(&path);
                storage
                    .call(move |c| {
                        c.execute("DELETE FROM recordings WHERE id = ?1", [id])?;
                        Ok(())
                    })
                    .await?;
            }
        }
    }
    Ok(repaired)
}
