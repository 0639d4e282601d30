//! Retention: delete recordings older than the configured age, then the
//! oldest while the total exceeds the size cap — never a pinned one (a
//! recording an open roll call or alert refers to).

use crate::storage::{Storage, StorageError};

#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// 0 = keep for ever.
    pub max_age_days: u32,
    /// 0 = no size cap.
    pub max_total_bytes: u64,
}

/// Keeps `recording_id` out of retention until `owner` is unpinned.
pub async fn pin(storage: &Storage, recording_id: i64, owner: &str) -> Result<(), StorageError> {
    let owner = owner.to_owned();
    storage
        .call(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO recording_pins (recording_id, owner) VALUES (?1, ?2)",
                rusqlite::params![recording_id, owner],
            )?;
            Ok(())
        })
        .await
}

/// Releases every pin held by `owner` (e.g. `run:42` when the run closes).
pub async fn unpin_owner(storage: &Storage, owner: &str) -> Result<(), StorageError> {
    let owner = owner.to_owned();
    storage
        .call(move |c| {
            c.execute("DELETE FROM recording_pins WHERE owner = ?1", [owner])?;
            Ok(())
        })
        .await
}

/// Applies the policy at `now_ms`; returns the ids deleted.
pub async fn enforce(
    storage: &Storage,
    policy: RetentionPolicy,
    now_ms: i64,
) -> Result<Vec<i64>, StorageError> {
    let victims: Vec<(i64, String)> = storage
        .call(move |c| {
            let unpinned = "complete = 1 AND id NOT IN (SELECT recording_id FROM recording_pins)";
            let mut stmt = c.prepare(&format!(
                "SELECT id, path, bytes, start_ms FROM recordings WHERE {unpinned} ORDER BY start_ms, id"
            ))?;
            let candidates = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let total: i64 =
                c.query_row("SELECT COALESCE(SUM(bytes), 0) FROM recordings", [], |r| r.get(0))?;
            let cutoff = (policy.max_age_days > 0)
                .then(|| now_ms - i64::from(policy.max_age_days) * 86_400_000);
            let cap = (policy.max_total_bytes > 0).then_some(policy.max_total_bytes as i64);
            let mut remaining = total;
            let mut out = Vec::new();
            // Oldest first: too old, or needed to get under the cap.
            for (id, path, bytes, start_ms) in candidates {
                let too_old = cutoff.is_some_and(|c| start_ms < c);
                let over_cap = cap.is_some_and(|cap| remaining > cap);
                if !too_old && !over_cap {
                    // Everything after this one is newer and the cap is met.
                    break;
                }
                remaining -= bytes;
                out.push((id, path));
            }
            Ok(out)
        })
        .await?;
    let mut deleted = Vec::new();
    for (id, path) in victims {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(id, %path, error = %e, "cannot delete recording; keeping its row");
                continue;
            }
        }
        storage
            .call(move |c| {
                c.execute("DELETE FROM recordings WHERE id = ?1", [id])?;
                Ok(())
            })
            .await?;
        deleted.push(id);
    }
    if !deleted.is_empty() {
        tracing::info!(count = deleted.len(), "retention deleted recordings");
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Indexes `n` recordings of `bytes` each, one a minute apart, oldest
    /// first; returns their ids.
    async fn seed(storage: &Storage, dir: &std::path::Path, n: usize, bytes: usize) -> Vec<i64> {
        let mut ids = Vec::new();
        for i in 0..n {
            let path = dir.join(format!("{i}.opus"));
            std::fs::write(&path, vec![0u8; bytes]).unwrap();
            let p = path.to_string_lossy().into_owned();
            let id = storage
                .call(move |c| {
                    c.execute(
                        "INSERT INTO recordings (channel, link, direction, start_ms, bytes, path, complete)
                         VALUES ('ch', 'l', 'rx', ?1, ?2, ?3, 1)",
                        rusqlite::params![1_000_000 + i as i64 * 60_000, bytes as i64, p],
                    )?;
                    Ok(c.last_insert_rowid())
                })
                .await
                .unwrap();
            ids.push(id);
        }
        ids
    }

    #[tokio::test]
    async fn tiny_quota_deletes_oldest_first_and_keeps_pinned() {
        let dir = crate::storage::tests_support::tempdir();
        let (storage, thread) = crate::storage::open(&dir.join("db")).unwrap();
        let ids = seed(&storage, &dir, 6, 1000).await;
        // The oldest is referenced by an open roll call.
        pin(&storage, ids[0], "run:7").await.unwrap();
        // 6000 bytes stored, 2500 allowed: three must go, oldest unpinned first.
        let policy = RetentionPolicy {
            max_age_days: 0,
            max_total_bytes: 2500,
        };
        let deleted = enforce(&storage, policy, 2_000_000).await.unwrap();
        assert_eq!(deleted, vec![ids[1], ids[2], ids[3], ids[4]]);
        assert!(dir.join("0.opus").exists(), "pinned file kept");
        assert!(!dir.join("1.opus").exists());
        assert!(dir.join("5.opus").exists());
        // Under the cap now: nothing more goes.
        assert!(enforce(&storage, policy, 2_000_000)
            .await
            .unwrap()
            .is_empty());
        // The run closes: its pin goes, and the age limit takes the old one.
        unpin_owner(&storage, "run:7").await.unwrap();
        let by_age = RetentionPolicy {
            max_age_days: 1,
            max_total_bytes: 0,
        };
        let now = 1_000_000 + 86_400_000 + 30_000; // day-old cut between 0 and 5
        assert_eq!(enforce(&storage, by_age, now).await.unwrap(), vec![ids[0]]);
        drop(storage);
        thread.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
