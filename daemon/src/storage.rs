//! Embedded storage: one SQLite database (WAL, `synchronous=FULL`) owned by a
//! dedicated thread, so no SQLite call ever runs on the async executor.
//!
//! Callers send closures to the thread through a cloneable [`Storage`] handle
//! and await the result; a write is reported as saved only after its
//! transaction committed. Migrations are versioned in code ([`MIGRATIONS`],
//! tracked in `PRAGMA user_version`) and applied at open, before any listener
//! starts.
//!
//! `synchronous=FULL` for every commit keeps the rule simple: roll-call
//! results, acks, alerts and audit rows survive a power cut, and the event
//! log, which is batched, costs one fsync per batch rather than per event.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("migration to schema version {version} failed: {source}")]
    Migrate {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database is newer (schema {found}) than this rollcalld understands ({known}); refusing to touch it")]
    TooNew { found: usize, known: usize },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("storage thread has stopped")]
    Closed,
}

/// Schema migrations, applied in order. Never edit one that has shipped; add
/// a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: event log and audit log.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX events_ts ON events(ts_ms);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;",
    // 2: recordings index. `complete = 0` marks a file being written; rows
    // still 0 at start-up belong to a crash and are repaired. `pins` keeps
    // recordings an open roll call or alert refers to out of retention.
    "CREATE TABLE recordings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        link TEXT NOT NULL,
        direction TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        start_ms INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL DEFAULT 0,
        ani_kind TEXT,
        ani TEXT,
        guard TEXT,
        bytes INTEGER NOT NULL DEFAULT 0,
        path TEXT NOT NULL UNIQUE,
        complete INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX recordings_channel_start ON recordings(channel, start_ms);
    CREATE INDEX recordings_start ON recordings(start_ms);
    CREATE INDEX recordings_guard ON recordings(guard, start_ms);
    CREATE TABLE recording_pins (
        recording_id INTEGER NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
        owner TEXT NOT NULL,
        PRIMARY KEY (recording_id, owner)
    );",
    // 3: alerts with per-guard acknowledgements; the MQTT outbox and the
    // cursor of the last event the bridge turned into outbox rows.
    "CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_ms INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        text TEXT NOT NULL,
        priority TEXT NOT NULL,
        target TEXT NOT NULL,
        channels TEXT NOT NULL,
        clip TEXT,
        deadline_ms INTEGER NOT NULL,
        reminder_ms INTEGER,
        close_ms INTEGER NOT NULL,
        reminded INTEGER NOT NULL DEFAULT 0,
        escalated INTEGER NOT NULL DEFAULT 0,
        closed_ms INTEGER
    );
    CREATE INDEX alerts_open ON alerts(closed_ms);
    CREATE TABLE alert_guards (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        guard TEXT NOT NULL,
        company TEXT NOT NULL,
        ack_ms INTEGER,
        ack_via TEXT,
        ack_by TEXT,
        PRIMARY KEY (alert_id, guard)
    );
    CREATE TABLE mqtt_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE mqtt_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL
    );",
    // 4: roster (config-seeded, API-editable) and roll calls.
    // Roster rows are JSON bodies of `roster::{Company, Group, Guard}`;
    // `source` says whether the config or the API owns the entry.
    "CREATE TABLE roster_companies (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('config', 'api'))
    );
    CREATE TABLE roster_groups (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('config', 'api'))
    );
    CREATE TABLE roster_guards (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('config', 'api'))
    );
    CREATE TABLE rollcall_schedules (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('config', 'api')),
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE rollcall_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        schedule_id TEXT,
        due_ms INTEGER,
        channel TEXT NOT NULL,
        groups TEXT NOT NULL,
        modes TEXT NOT NULL,
        options TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'finished', 'interrupted', 'missed')),
        reason TEXT,
        started_ms INTEGER NOT NULL,
        resume_until_ms INTEGER NOT NULL,
        window_end_ms INTEGER,
        finished_ms INTEGER,
        answered INTEGER NOT NULL DEFAULT 0,
        late INTEGER NOT NULL DEFAULT 0,
        missed INTEGER NOT NULL DEFAULT 0,
        interrupted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX rollcall_runs_started ON rollcall_runs(started_ms);
    CREATE INDEX rollcall_runs_state ON rollcall_runs(state);
    -- One row per decided due time: the UNIQUE pair is what makes a
    -- schedule fire exactly once across restarts.
    CREATE TABLE rollcall_fired (
        schedule_id TEXT NOT NULL,
        due_ms INTEGER NOT NULL,
        run_id INTEGER NOT NULL REFERENCES rollcall_runs(id),
        outcome TEXT NOT NULL CHECK (outcome IN ('started', 'missed')),
        decided_ms INTEGER NOT NULL,
        UNIQUE (schedule_id, due_ms)
    );
    CREATE TABLE rollcall_results (
        run_id INTEGER NOT NULL REFERENCES rollcall_runs(id),
        position INTEGER NOT NULL,
        guard_id TEXT NOT NULL,
        guard_name TEXT NOT NULL,
        company TEXT NOT NULL,
        call_kind TEXT,
        app_id TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'answered', 'late', 'missed', 'interrupted')),
        attempts INTEGER NOT NULL DEFAULT 0,
        answered_ms INTEGER,
        offset_ms INTEGER,
        how_kind TEXT,
        how_unit TEXT,
        recording_id INTEGER,
        PRIMARY KEY (run_id, guard_id)
    );
    CREATE INDEX rollcall_results_company ON rollcall_results(company);
    CREATE TABLE rollcall_unknown (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES rollcall_runs(id),
        ts_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        unit TEXT NOT NULL,
        link TEXT NOT NULL
    );",
];

enum Job {
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Finish what is queued before this, checkpoint, stop.
    Close,
}

/// Cloneable handle to the storage thread.
#[derive(Clone)]
pub struct Storage {
    jobs: mpsc::UnboundedSender<Job>,
    path: PathBuf,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").field("path", &self.path).finish()
    }
}

/// Opens (creating if needed) the database, applies migrations, and starts
/// the storage thread. Returns the handle and the thread's join handle; the
/// thread ends when every handle is dropped, after finishing queued jobs.
pub fn open(path: &Path) -> Result<(Storage, std::thread::JoinHandle<()>), StorageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut conn = Connection::open(path).map_err(|source| StorageError::Open {
        path: path.to_owned(),
        source,
    })?;
    configure(&conn).map_err(|source| StorageError::Open {
        path: path.to_owned(),
        source,
    })?;
    migrate(&mut conn)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let thread = std::thread::Builder::new()
        .name("rollcalld-sqlite".into())
        .spawn(move || {
            while let Some(job) = rx.blocking_recv() {
                match job {
                    Job::Run(f) => f(&mut conn),
                    Job::Close => break,
                }
            }
            // Fold the WAL back into the main file on a clean stop.
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
            }
            tracing::info!("storage closed");
        })
        .expect("spawning the storage thread");
    Ok((
        Storage {
            jobs: tx,
            path: path.to_owned(),
        },
        thread,
    ))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Applies every migration newer than the database's `user_version`, each in
/// its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<usize, StorageError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let current = current.max(0) as usize;
    if current > MIGRATIONS.len() {
        return Err(StorageError::TooNew {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        let tx = conn
            .transaction()
            .map_err(|source| StorageError::Migrate { version, source })?;
        tx.execute_batch(sql)
            .and_then(|_| tx.pragma_update(None, "user_version", version as i64))
            .map_err(|source| StorageError::Migrate { version, source })?;
        tx.commit()
            .map_err(|source| StorageError::Migrate { version, source })?;
        tracing::info!(version, "applied database migration");
    }
    Ok(MIGRATIONS.len())
}

impl Storage {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the storage thread after the jobs already queued, even if other
    /// handles are still alive (a hung client connection, say); later calls
    /// fail with [`StorageError::Closed`].
    pub fn close(&self) {
        let _ = self.jobs.send(Job::Close);
    }

    /// Runs `f` on the storage thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StorageError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Job::Run(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        }));
        self.jobs.send(job).map_err(|_| StorageError::Closed)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Appends an audit row. Returns after it committed.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<i64, StorageError> {
        let (actor, action, target, detail) = (
            actor.to_owned(),
            action.to_owned(),
            target.to_owned(),
            detail.to_owned(),
        );
        self.call(move |c| {
            c.execute(
                "INSERT INTO audit (ts_ms, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![now_ms(), actor, action, target, detail],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }
}

/// Wall-clock Unix milliseconds, for timestamps stored in rows.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrates_and_audits() {
        let dir = tempdir();
        let path = dir.join("db.sqlite");
        let (storage, thread) = open(&path).unwrap();
        let id = storage
            .audit("alice", "ptt", "ch1", "granted")
            .await
            .unwrap();
        assert_eq!(id, 1);
        let mode: String = storage
            .call(|c| Ok(c.pragma_query_value(None, "journal_mode", |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        // The audit log refuses edits.
        let err = storage
            .call(|c| Ok(c.execute("DELETE FROM audit", [])?))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        drop(storage);
        thread.join().unwrap();
        // Re-opening is idempotent.
        let (storage, thread) = open(&path).unwrap();
        let v: i64 = storage
            .call(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        drop(storage);
        thread.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_a_newer_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StorageError::TooNew { .. })
        ));
    }

    pub(crate) use super::tests_support::tempdir;
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir.
    pub(crate) fn tempdir() -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "rollcalld-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}
