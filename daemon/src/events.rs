//! The event bus: one closed [`Event`] enum for everything that happens, a
//! sequence number per event, persisted before anyone else sees it.
//!
//! Producers call [`Bus::publish`] (never blocks: an unbounded queue into the
//! bus task, so the audio path cannot stall on storage). The bus task drains
//! the queue in batches, writes each batch to the `events` table in one
//! transaction, and only then broadcasts the numbered events to subscribers
//! (roll-call engine, alerts, MQTT bridge, gRPC `Subscribe`). A subscriber
//! that falls behind the broadcast buffer reads what it missed from storage
//! by sequence number. [`Bus::publish_stored`] also tells the producer when
//! its event is committed (the MQTT bridge PUBACKs an app ack only then).

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::storage::{now_ms, Storage, StorageError};

/// Everything that happens in the daemon.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    DaemonStarted {
        version: String,
        station_id: String,
    },
    DaemonStopping,
    LinkUp {
        link: String,
    },
    LinkDown {
        link: String,
        reason: String,
    },
    /// Squelch opened or closed on a link.
    Cor {
        link: String,
        open: bool,
    },
    /// A link's transmitter keyed or unkeyed.
    Ptt {
        link: String,
        on: bool,
    },
    /// An identity heard on a channel.
    Ani {
        channel: String,
        link: String,
        kind: String,
        unit: String,
        op: String,
        /// Roster guard the unit belongs to, when known.
        guard: Option<String>,
    },
    /// A transmission started on a channel: received on `link` (direction
    /// `rx`) or sent by `source` on the channel's links (direction `tx`).
    TransmissionStarted {
        channel: String,
        link: String,
        direction: String,
        source: String,
    },
    TransmissionEnded {
        channel: String,
        link: String,
        direction: String,
        source: String,
        /// `released`, `preempted by <source>`, `timed out`, `no links`, `squelch closed`.
        reason: String,
        duration_ms: u64,
    },
    /// The transmit time-out cut a transmission that ran too long.
    TxTimeout {
        channel: String,
        source: String,
        after_s: u64,
    },
    /// A recording was closed and indexed.
    RecordingWritten {
        id: i64,
        channel: String,
        link: String,
        direction: String,
        path: String,
        duration_ms: u64,
        bytes: u64,
        ani: Option<String>,
        guard: Option<String>,
    },
    /// Recording stopped because the recordings' disk is (nearly) full:
    /// free space fell below `recorder.min_free_mb` or a write failed.
    /// Transmissions are still relayed and roll calls still run; they are
    /// just not recorded until [`Event::RecordingResumed`].
    RecordingPaused {
        reason: String,
        free_bytes: u64,
    },
    /// Space is back: recording started again, including transmissions
    /// already in progress (their files start now).
    RecordingResumed {
        paused_ms: u64,
        free_bytes: u64,
    },
    /// Something was refused or failed; `source` names where (e.g. an MQTT
    /// topic), `message` what was wrong.
    Error {
        source: String,
        message: String,
    },
    // --- alerts (daemon/src/alerts) ---
    /// An alert was stored and is being pushed to radio and apps.
    AlertCreated {
        alert_id: i64,
        text: String,
        priority: String,
        created_by: String,
        /// Guards expected to acknowledge.
        guards: Vec<String>,
        /// Channels the tone and clip go out on.
        channels: Vec<String>,
        deadline_ms: i64,
    },
    /// A guard acknowledged an alert (stored before this event).
    AlertAcked {
        alert_id: i64,
        guard: String,
        company: String,
        /// `ani`, `app` or `operator`.
        via: String,
        at_ms: i64,
        /// After the deadline.
        late: bool,
    },
    /// Reminder before the deadline to the guards who have not acknowledged.
    AlertReminder {
        alert_id: i64,
        text: String,
        guards: Vec<String>,
        deadline_ms: i64,
    },
    /// Deadline passed: guards of one company who have not acknowledged,
    /// for that company's supervisor.
    AlertEscalated {
        alert_id: i64,
        company: String,
        supervisor: Option<String>,
        guards: Vec<String>,
    },
    /// The alert stopped accepting acknowledgements.
    AlertClosed {
        alert_id: i64,
        total: usize,
        on_time: usize,
        late: usize,
        missed: usize,
    },
    /// A guard's phone app acknowledged a request (the MQTT bridge publishes
    /// it). `ref_id` is what the request carried: `rollcall-<run>` for a
    /// roll call, the alert's reference for an alert.
    AppAck {
        app_id: String,
        ref_id: String,
        ts_ms: i64,
    },
    // --- roll calls (rollcall::engine); each carries its run id ---
    RollcallStarted {
        run_id: i64,
        /// `None` for a run started by hand.
        schedule_id: Option<String>,
        channel: String,
        modes: Vec<String>,
        guards: u32,
        /// Picked up again after a daemon restart.
        resumed: bool,
    },
    /// A scheduled due time that did not run, with why.
    RollcallMissedRun {
        run_id: i64,
        schedule_id: String,
        due_ms: i64,
        reason: String,
    },
    /// A guard's selective call (or DMR radio check) went out.
    RollcallGuardCalled {
        run_id: i64,
        guard: String,
        attempt: u32,
        how: String,
    },
    /// Ask the guard's app to acknowledge (the MQTT bridge forwards it and
    /// publishes the answer as `AppAck` with the same `ref_id`).
    RollcallAppRequest {
        run_id: i64,
        guard: String,
        app_id: String,
        ref_id: String,
    },
    /// A guard answered (stored before this is published).
    RollcallAnswerHeard {
        run_id: i64,
        guard: String,
        kind: String,
        unit: String,
        offset_ms: i64,
    },
    /// A guard's outcome is final: answered, late, missed or interrupted.
    RollcallGuardClosed {
        run_id: i64,
        guard: String,
        outcome: String,
    },
    /// An identity heard during a run that is none of its guards.
    RollcallUnknownAni {
        run_id: i64,
        kind: String,
        unit: String,
        guard: Option<String>,
    },
    /// A missed guard, for his company's supervisor (MQTT bridge forwards).
    RollcallEscalation {
        run_id: i64,
        guard: String,
        company: String,
        supervisor: Option<String>,
    },
    RollcallFinished {
        run_id: i64,
        /// `finished` or `interrupted`.
        state: String,
        answered: u32,
        late: u32,
        missed: u32,
        interrupted: u32,
    },
}

impl Event {
    /// The `type` tag, also stored in the `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::DaemonStarted { .. } => "daemon_started",
            Event::DaemonStopping => "daemon_stopping",
            Event::LinkUp { .. } => "link_up",
            Event::LinkDown { .. } => "link_down",
            Event::Cor { .. } => "cor",
            Event::Ptt { .. } => "ptt",
            Event::Ani { .. } => "ani",
            Event::TransmissionStarted { .. } => "transmission_started",
            Event::TransmissionEnded { .. } => "transmission_ended",
            Event::TxTimeout { .. } => "tx_timeout",
            Event::RecordingWritten { .. } => "recording_written",
            Event::RecordingPaused { .. } => "recording_paused",
            Event::RecordingResumed { .. } => "recording_resumed",
            Event::Error { .. } => "error",
            Event::AlertCreated { .. } => "alert_created",
            Event::AlertAcked { .. } => "alert_acked",
            Event::AlertReminder { .. } => "alert_reminder",
            Event::AlertEscalated { .. } => "alert_escalated",
            Event::AlertClosed { .. } => "alert_closed",
            Event::AppAck { .. } => "app_ack",
            Event::RollcallStarted { .. } => "rollcall_started",
            Event::RollcallMissedRun { .. } => "rollcall_missed_run",
            Event::RollcallGuardCalled { .. } => "rollcall_guard_called",
            Event::RollcallAppRequest { .. } => "rollcall_app_request",
            Event::RollcallAnswerHeard { .. } => "rollcall_answer_heard",
            Event::RollcallGuardClosed { .. } => "rollcall_guard_closed",
            Event::RollcallUnknownAni { .. } => "rollcall_unknown_ani",
            Event::RollcallEscalation { .. } => "rollcall_escalation",
            Event::RollcallFinished { .. } => "rollcall_finished",
        }
    }
}

/// An event with its place in the log.
#[derive(Debug, Clone, Serialize)]
pub struct Numbered {
    pub seq: i64,
    pub ts_ms: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// A queued event: time, event, and who wants to know it was committed.
type Queued = (i64, Event, Option<oneshot::Sender<()>>);

/// Cloneable publisher and subscription point.
#[derive(Clone)]
pub struct Bus {
    queue: mpsc::UnboundedSender<Queued>,
    live: broadcast::Sender<Arc<Numbered>>,
}

/// How many events a live subscriber may lag before it must catch up from
/// storage.
const BROADCAST_DEPTH: usize = 4096;
/// Largest batch written in one transaction.
const BATCH: usize = 512;

impl Bus {
    /// Starts the bus task. It stops after `cancel` fires and the queue is
    /// drained, so events published during shutdown are still stored.
    pub fn spawn(
        storage: Storage,
        cancel: CancellationToken,
    ) -> (Bus, tokio::task::JoinHandle<()>) {
        let (queue, mut rx) = mpsc::unbounded_channel::<Queued>();
        let (live, _) = broadcast::channel(BROADCAST_DEPTH);
        let bus = Bus {
            queue,
            live: live.clone(),
        };
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                tokio::select! {
                    biased;
                    n = rx.recv_many(&mut batch, BATCH) => {
                        if n == 0 { break; }
                    }
                    _ = cancel.cancelled() => {
                        // Drain what is already queued, then stop.
                        while let Ok(e) = rx.try_recv() { batch.push(e); }
                        if !batch.is_empty() {
                            persist_and_broadcast(&storage, &live, std::mem::take(&mut batch), &cancel).await;
                        }
                        break;
                    }
                }
                persist_and_broadcast(&storage, &live, std::mem::take(&mut batch), &cancel).await;
            }
            tracing::info!("event bus stopped");
        });
        (bus, task)
    }

    /// Publishes an event. Never blocks.
    pub fn publish(&self, event: Event) {
        let _ = self.queue.send((now_ms(), event, None));
    }

    /// Publishes an event; the receiver resolves once it is committed to
    /// the `events` table (and fails if it could not be stored). Never
    /// blocks.
    pub fn publish_stored(&self, event: Event) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.queue.send((now_ms(), event, Some(tx)));
        rx
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Numbered>> {
        self.live.subscribe()
    }
}

/// First and longest wait between attempts to store a batch that failed.
const RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);
/// Attempts made once shutdown started before a failing batch is given up.
const RETRIES_AT_SHUTDOWN: u32 = 3;

/// Stores a batch, then broadcasts it. A batch that cannot be stored (the
/// disk is full, say) is retried with back-off, holding every later event
/// behind it: subscribers such as the roll-call engine see answers late
/// rather than never, and the log keeps its order. Only at shutdown, or when
/// the storage thread is gone, is a failing batch given up (and counted in
/// the log).
async fn persist_and_broadcast(
    storage: &Storage,
    live: &broadcast::Sender<Arc<Numbered>>,
    batch: Vec<Queued>,
    cancel: &CancellationToken,
) {
    // Callers of `publish_stored` learn when their event is committed; if it
    // never is, their sender is dropped and they see an error.
    let mut stored = Vec::new();
    let mut batch: Vec<(i64, Event)> = batch
        .into_iter()
        .map(|(ts, ev, done)| {
            stored.extend(done);
            (ts, ev)
        })
        .collect();
    let count = batch.len();
    let mut delay = RETRY_MIN;
    let mut failures = 0u32;
    let mut shutdown_attempts = 0u32;
    loop {
        // The batch travels to the storage thread and back on failure, so
        // the common (successful) path copies nothing.
        let attempt = std::mem::take(&mut batch);
        match store(storage, attempt).await {
            Ok(numbered) => {
                if failures > 0 {
                    tracing::warn!(attempts = failures + 1, "events stored after retrying");
                }
                for done in stored {
                    let _ = done.send(());
                }
                for n in numbered {
                    let _ = live.send(Arc::new(n));
                }
                return;
            }
            Err((e, returned)) => {
                batch = returned;
                failures += 1;
                if failures == 1 {
                    tracing::error!(error = %e, events = count, "cannot store events; holding them and every later event, retrying");
                }
                if cancel.is_cancelled() {
                    shutdown_attempts += 1;
                }
                if matches!(e, StorageError::Closed) || shutdown_attempts > RETRIES_AT_SHUTDOWN {
                    tracing::error!(error = %e, lost = count, "giving up storing events; they are not broadcast");
                    return;
                }
                // Shutdown does not wait out a long back-off.
                let wait = if cancel.is_cancelled() {
                    RETRY_MIN
                } else {
                    delay
                };
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Inserts `batch` in one transaction. On failure the batch comes back with
/// the error (empty if the storage thread is gone), to be retried.
async fn store(
    storage: &Storage,
    batch: Vec<(i64, Event)>,
) -> Result<Vec<Numbered>, (StorageError, Vec<(i64, Event)>)> {
    let result = storage
        .call(move |c| {
            let inserted = (|| -> Result<Vec<i64>, StorageError> {
                let tx = c.transaction()?;
                let mut seqs = Vec::with_capacity(batch.len());
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO events (ts_ms, kind, body) VALUES (?1, ?2, ?3)",
                    )?;
                    for (ts_ms, event) in &batch {
                        let body = serde_json::to_string(event).unwrap_or_else(|e| {
                            format!(
                                "{{\"type\":\"error\",\"message\":\"unserialisable event: {e}\"}}"
                            )
                        });
                        stmt.execute(rusqlite::params![ts_ms, event.kind(), body])?;
                        seqs.push(tx.last_insert_rowid());
                    }
                }
                tx.commit()?;
                Ok(seqs)
            })();
            Ok(match inserted {
                Ok(seqs) => Ok(seqs
                    .into_iter()
                    .zip(batch)
                    .map(|(seq, (ts_ms, event))| Numbered { seq, ts_ms, event })
                    .collect()),
                Err(e) => Err((e, batch)),
            })
        })
        .await;
    match result {
        Ok(inner) => inner,
        Err(e) => Err((e, Vec::new())),
    }
}

/// Reads stored events with `seq > after`, oldest first, at most `limit`.
pub async fn read_after(
    storage: &Storage,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, i64, String, String)>, StorageError> {
    storage
        .call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, ts_ms, kind, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(rusqlite::params![after, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_numbered_stored_then_broadcast() {
        let dir = crate::storage::tests_support::tempdir();
        let (storage, thread) = crate::storage::open(&dir.join("db")).unwrap();
        let cancel = CancellationToken::new();
        let (bus, task) = Bus::spawn(storage.clone(), cancel.clone());
        let mut rx = bus.subscribe();
        for i in 0..10 {
            bus.publish(Event::LinkUp {
                link: format!("l{i}"),
            });
        }
        let mut last = 0;
        for i in 0..10 {
            let n = rx.recv().await.unwrap();
            assert!(n.seq > last);
            last = n.seq;
            assert_eq!(
                n.event,
                Event::LinkUp {
                    link: format!("l{i}")
                }
            );
            // Stored before broadcast.
            let stored = read_after(&storage, n.seq - 1, 1).await.unwrap();
            assert_eq!(stored[0].0, n.seq);
            assert!(stored[0].3.contains("\"type\":\"link_up\""));
        }
        bus.publish(Event::DaemonStopping);
        cancel.cancel();
        task.await.unwrap();
        let all = read_after(&storage, 0, 100).await.unwrap();
        assert_eq!(all.len(), 11, "the event published at shutdown is kept");
        drop((bus, storage));
        thread.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A store that fails (a full disk) holds the events and retries: none
    /// is broadcast before it is stored, none is lost, order is kept.
    #[tokio::test]
    async fn events_that_cannot_be_stored_are_retried_not_dropped() {
        let dir = crate::storage::tests_support::tempdir();
        let (storage, thread) = crate::storage::open(&dir.join("db")).unwrap();
        storage
            .call(|c| {
                c.execute_batch(
                    "CREATE TRIGGER full BEFORE INSERT ON events
                     BEGIN SELECT RAISE(ABORT, 'simulated disk full'); END;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let cancel = CancellationToken::new();
        let (bus, task) = Bus::spawn(storage.clone(), cancel.clone());
        let mut rx = bus.subscribe();
        for i in 0..5 {
            bus.publish(Event::LinkUp {
                link: format!("l{i}"),
            });
        }
        let early = tokio::time::timeout(std::time::Duration::from_millis(400), rx.recv()).await;
        assert!(early.is_err(), "broadcast before it was stored: {early:?}");
        bus.publish(Event::LinkUp { link: "l5".into() });
        storage
            .call(|c| {
                c.execute_batch("DROP TRIGGER full;")?;
                Ok(())
            })
            .await
            .unwrap();
        for i in 0..6 {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .expect("retried within the back-off")
                .unwrap();
            assert_eq!(
                n.event,
                Event::LinkUp {
                    link: format!("l{i}")
                }
            );
        }
        assert_eq!(read_after(&storage, 0, 100).await.unwrap().len(), 6);
        cancel.cancel();
        task.await.unwrap();
        drop((bus, storage));
        thread.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn publish_stored_resolves_once_the_event_is_committed() {
        let dir = crate::storage::tests_support::tempdir();
        let (storage, thread) = crate::storage::open(&dir.join("db")).unwrap();
        let cancel = CancellationToken::new();
        let (bus, task) = Bus::spawn(storage.clone(), cancel.clone());
        let done = bus.publish_stored(Event::AppAck {
            app_id: "phone-1".into(),
            ref_id: "rollcall-1".into(),
            ts_ms: 1,
        });
        done.await.expect("committed");
        // Already readable by anyone: a crash now cannot lose it.
        let rows = read_after(&storage, 0, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].2, "app_ack");
        cancel.cancel();
        task.await.unwrap();
        drop((bus, storage));
        thread.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
