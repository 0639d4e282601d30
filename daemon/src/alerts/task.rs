//! The thin tokio driver around the [`Tracker`]: feeds it ANIs from the bus,
//! acks from the API and MQTT, and timeouts from one timer; stores every
//! outcome, then publishes it as an event. Transmissions run in their own
//! tasks so a busy channel never delays an acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::tracker::{AckVia, Action, TrackedAlert, Tracker};
use super::{audio, store, AlertError, Cmd};
use crate::channel::{Transmitter, TxSource};
use crate::events::{Bus, Event};
use crate::roster::Roster;
use crate::storage::{now_ms, Storage};

pub(super) struct Parts {
    pub storage: Storage,
    pub bus: Bus,
    pub roster: Roster,
    pub transmitter: Option<Arc<dyn Transmitter>>,
    pub tone_hz: u32,
    pub tone_ms: u32,
    pub open: Vec<TrackedAlert>,
}

pub(super) fn spawn(
    parts: Parts,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // Subscribe before spawning so no ANI published after start() is missed.
    let mut events = parts.bus.subscribe();
    tokio::spawn(async move {
        let mut tracker = Tracker::new();
        let resumed = parts.open.len();
        for a in parts.open.iter().cloned() {
            tracker.insert(a);
        }
        if resumed > 0 {
            tracing::info!(alerts = resumed, "resumed open alerts");
        }
        let cx = &parts;
        // Steps that fell due while the daemon was down.
        run_actions(cx, &mut tracker).await;
        loop {
            let sleep = match tracker.poll_timeout() {
                Some(at) => Duration::from_millis((at - now_ms()).max(0) as u64),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Track(alert, clip)) => {
                        transmit(cx, &alert, clip);
                        tracker.insert(alert);
                    }
                    Some(Cmd::Ack { alert_id, guard, via, by, reply, handled }) => {
                        let r = ack(cx, &mut tracker, now_ms(), alert_id, &guard, via, &by).await;
                        if !matches!(r, Err(AlertError::Storage(_))) {
                            if let Some(h) = handled { let _ = h.send(()); }
                        }
                        match reply {
                            Some(reply) => { let _ = reply.send(r); }
                            None => if let Err(e) = r {
                                cx.bus.publish(Event::Error { source: by, message: e.to_string() });
                            }
                        }
                    }
                    None => break,
                },
                ev = events.recv() => match ev {
                    Ok(n) => if let Event::Ani { channel, guard: Some(guard), unit, kind, .. } = &n.event {
                        let by = format!("{kind}:{unit}@{channel}");
                        for outcome in tracker.handle_ani(n.ts_ms, channel, guard) {
                            // A storage failure is logged and published inside.
                            if persist_ack(cx, &outcome, &by).await.is_err() {
                                tracker.forget_ack(outcome.alert_id, &outcome.guard);
                            }
                        }
                    },
                    Err(broadcast::error::RecvError::Lagged(k)) => {
                        tracing::warn!(missed = k, "alert tracker lagged behind the event bus");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tokio::time::sleep(sleep) => run_actions(cx, &mut tracker).await,
            }
        }
        tracing::info!("alert tracker stopped");
    })
}

/// Validates the ack against the tracker, stores it, publishes it.
async fn ack(
    cx: &Parts,
    tracker: &mut Tracker,
    now: i64,
    alert_id: i64,
    guard: &str,
    via: AckVia,
    by: &str,
) -> Result<super::AckOutcome, AlertError> {
    if cx.roster.snapshot().guard(guard).is_none() {
        return Err(AlertError::UnknownGuard(guard.into()));
    }
    let outcome = tracker.handle_ack(now, alert_id, guard, via)?;
    if let Err(e) = persist_ack(cx, &outcome, by).await {
        tracker.forget_ack(alert_id, guard);
        return Err(e);
    }
    Ok(outcome)
}

async fn persist_ack(cx: &Parts, o: &super::AckOutcome, by: &str) -> Result<(), AlertError> {
    let (id, g, at, via, b) = (o.alert_id, o.guard.clone(), o.at_ms, o.via, by.to_owned());
    match cx
        .storage
        .call(move |c| store::record_ack(c, id, &g, at, via, &b))
        .await
    {
        Ok(_) => {
            cx.bus.publish(Event::AlertAcked {
                alert_id: o.alert_id,
                guard: o.guard.clone(),
                company: o.company.clone(),
                via: o.via.as_str().into(),
                at_ms: o.at_ms,
                late: o.late,
            });
            Ok(())
        }
        Err(e) => {
            tracing::error!(alert = o.alert_id, guard = %o.guard, error = %e, "cannot store acknowledgement");
            cx.bus.publish(Event::Error {
                source: format!("alert/{}", o.alert_id),
                message: format!("acknowledgement by {} not stored: {e}", o.guard),
            });
            Err(e.into())
        }
    }
}

async fn run_actions(cx: &Parts, tracker: &mut Tracker) {
    let now = now_ms();
    for action in tracker.handle_timeout(now) {
        match action {
            Action::Remind { alert_id, guards } => {
                let (text, deadline_ms) = tracker
                    .get(alert_id)
                    .map(|a| (a.text.clone(), a.deadline_ms))
                    .unwrap_or_default();
                if let Err(e) = cx
                    .storage
                    .call(move |c| store::mark_reminded(c, alert_id))
                    .await
                {
                    tracing::error!(alert = alert_id, error = %e, "cannot store reminder flag");
                }
                cx.bus.publish(Event::AlertReminder {
                    alert_id,
                    text,
                    guards,
                    deadline_ms,
                });
            }
            Action::Escalate {
                alert_id,
                company,
                guards,
            } => {
                if let Err(e) = cx
                    .storage
                    .call(move |c| store::mark_escalated(c, alert_id))
                    .await
                {
                    tracing::error!(alert = alert_id, error = %e, "cannot store escalation flag");
                }
                let supervisor = cx
                    .roster
                    .snapshot()
                    .company(&company)
                    .and_then(|c| c.supervisor.clone());
                cx.bus.publish(Event::AlertEscalated {
                    alert_id,
                    company,
                    supervisor,
                    guards,
                });
            }
            Action::Close { alert_id, summary } => {
                if let Err(e) = cx
                    .storage
                    .call(move |c| store::close(c, alert_id, now))
                    .await
                {
                    tracing::error!(alert = alert_id, error = %e, "cannot store alert close");
                }
                cx.bus.publish(Event::AlertClosed {
                    alert_id,
                    total: summary.total,
                    on_time: summary.on_time,
                    late: summary.late,
                    missed: summary.missed,
                });
            }
        }
    }
}

/// Sends tone + clip on every channel of the alert, each in its own task.
fn transmit(cx: &Parts, alert: &TrackedAlert, clip: Option<Arc<Vec<i16>>>) {
    let Some(tx) = cx.transmitter.clone() else {
        if !alert.channels.is_empty() {
            tracing::warn!(
                alert = alert.id,
                "no transmitter wired: alert goes to apps only"
            );
        }
        return;
    };
    let samples = Arc::new(audio::compose(
        cx.tone_hz,
        cx.tone_ms,
        clip.as_deref().map(|v| v.as_slice()),
    ));
    for channel in alert.channels.clone() {
        let (tx, bus, samples, id) = (tx.clone(), cx.bus.clone(), samples.clone(), alert.id);
        tokio::spawn(async move {
            if let Err(e) = tx
                .transmit(&channel, TxSource::Alert, samples.as_ref().clone())
                .await
            {
                tracing::warn!(alert = id, channel = %channel, error = %e, "alert not transmitted");
                bus.publish(Event::Error {
                    source: format!("alert/{id}/channel/{channel}"),
                    message: format!("alert not transmitted: {e}"),
                });
            }
        });
    }
}
