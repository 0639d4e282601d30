//! Evidence: links the recording of a guard's reply to his roll-call result
//! and keeps it out of retention while the run is open.
//!
//! The roll-call engine hears an answer (`rollcall_answer_heard`) while the
//! guard is still transmitting; the recorder closes that transmission's file
//! a moment later (`recording_written`, with the caller's roster id). This
//! task joins the two by guard, stores the link on the result row, pins the
//! recording for the run, and unpins everything when the run finishes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::{Bus, Event};
use crate::recorder;
use crate::rollcall::RollcallService;
use crate::storage::Storage;

/// An answer whose recording has not been written after this long is not
/// waited for any more (the transmission was not recorded).
const WAIT: Duration = Duration::from_secs(300);

pub fn spawn(
    bus: &Bus,
    storage: Storage,
    rollcall: RollcallService,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    tokio::spawn(async move {
        // guard → (run, when heard)
        let mut waiting: HashMap<String, (i64, Instant)> = HashMap::new();
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => break,
                ev = rx.recv() => ev,
            };
            let n = match ev {
                Ok(n) => n,
                Err(RecvError::Lagged(k)) => {
                    tracing::warn!(
                        skipped = k,
                        "evidence linker fell behind; some replies stay unlinked"
                    );
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            match &n.event {
                Event::RollcallAnswerHeard { run_id, guard, .. } => {
                    waiting.insert(guard.clone(), (*run_id, Instant::now()));
                }
                Event::RecordingWritten {
                    id,
                    guard: Some(guard),
                    ..
                } => {
                    waiting.retain(|_, (_, at)| at.elapsed() < WAIT);
                    if let Some((run_id, _)) = waiting.remove(guard) {
                        match rollcall.set_recording(run_id, guard, *id).await {
                            Ok(true) => {
                                if let Err(e) =
                                    recorder::pin(&storage, *id, &format!("run:{run_id}")).await
                                {
                                    tracing::warn!(error = %e, "cannot pin reply recording");
                                }
                            }
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, run_id, %guard, "cannot link reply recording")
                            }
                        }
                    }
                }
                Event::RollcallFinished { run_id, .. } => {
                    if let Err(e) = recorder::unpin_owner(&storage, &format!("run:{run_id}")).await
                    {
                        tracing::warn!(error = %e, "cannot unpin recordings of a finished run");
                    }
                }
                _ => {}
            }
        }
    })
}
