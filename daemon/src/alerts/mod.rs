//! Alerts: warnings and instructions pushed to every targeted guard, with
//! acknowledgement tracking per guard and an acknowledgement rate per company.
//!
//! - [`AlertService`]: the Rust API the gRPC `AlertService` wraps — create,
//!   list, get (with per-guard and per-company status), acknowledge on a
//!   guard's behalf (audited). Cloneable; every method is async and never
//!   blocks the caller on the radio.
//! - [`tracker`]: the pure acknowledgement state machine (time passed in).
//! - `task`: the thin tokio driver around it — listens to the bus for ANIs,
//!   takes app acks from the MQTT bridge, fires reminders, escalations and
//!   closes, resumes open alerts at start-up, transmits the tone and clip.
//! - `store`: the SQLite rows (`alerts`, `alert_guards`).
//! - `audio`: the alert tone and the voice clip (WAV).
//!
//! Everything the outside world sees goes out as [`Event`]s (`alert_*`),
//! stored by the bus before anyone else sees them; the MQTT bridge turns them
//! into QoS 1 outbox messages. An acknowledgement is stored before its
//! `AlertAcked` event is published or the API call returns.

pub mod audio;
pub mod store;
mod task;
pub mod tracker;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::channel::Transmitter;
use crate::config::{AlertsConfig, Config};
use crate::events::{Bus, Event};
use crate::roster::Roster;
use crate::storage::{now_ms, Storage, StorageError};
pub use tracker::{AckError, AckOutcome, AckVia, CompanyRate};

/// Longest alert text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest deadline accepted, seconds (a week).
pub const MAX_DEADLINE_S: u64 = 7 * 24 * 3600;

/// Who an alert is for. Guards selected = the union of `guards`, every guard
/// of `companies` and every guard of `groups`; when all three are empty,
/// every guard in the roster. `channels` is where the tone and clip go out
/// (and where an ANI counts as an ack); empty = every configured channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertTarget {
    pub channels: Vec<String>,
    pub companies: Vec<String>,
    pub groups: Vec<String>,
    pub guards: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Routine,
    Urgent,
    Emergency,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Emergency => "emergency",
        }
    }
}

/// A request to create an alert.
#[derive(Debug, Clone, Default)]
pub struct NewAlert {
    pub text: String,
    pub priority: Priority,
    pub target: AlertTarget,
    /// Voice clip (WAV) sent after the tone.
    pub clip: Option<PathBuf>,
    /// Acknowledgement deadline; `[alerts] deadline_min` when `None`.
    pub deadline: Option<std::time::Duration>,
    /// Who asked (API user, `schedule:<id>`, `mqtt`), for the audit log.
    pub created_by: String,
}

/// An alert with its counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertInfo {
    pub id: i64,
    pub created_ms: i64,
    pub created_by: String,
    pub text: String,
    pub priority: String,
    pub target: AlertTarget,
    pub channels: Vec<String>,
    pub clip: Option<String>,
    pub deadline_ms: i64,
    /// When late acknowledgements stop being taken.
    pub close_ms: i64,
    pub closed_ms: Option<i64>,
    pub total: usize,
    pub on_time: usize,
    pub late: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardAckState {
    /// Not yet, and the deadline has not passed.
    Pending,
    Acknowledged,
    Late,
    /// Not acknowledged by the deadline (may still turn late while open).
    Missed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardStatus {
    pub guard: String,
    pub company: String,
    pub ack_ms: Option<i64>,
    /// `ani`, `app`, `operator`.
    pub via: Option<String>,
    /// Unit heard, app topic or operator name.
    pub by: Option<String>,
    pub state: GuardAckState,
}

/// An alert with every guard's status and each company's rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertDetail {
    pub info: AlertInfo,
    pub guards: Vec<GuardStatus>,
    pub companies: Vec<CompanyRate>,
}

impl AlertDetail {
    fn new(info: AlertInfo, guards: Vec<GuardStatus>) -> AlertDetail {
        let mut companies: Vec<CompanyRate> = Vec::new();
        for g in &guards {
            let i = match companies.iter().position(|c| c.company == g.company) {
                Some(i) => i,
                None => {
                    companies.push(CompanyRate {
                        company: g.company.clone(),
                        ..CompanyRate::default()
                    });
                    companies.len() - 1
                }
            };
            let c = &mut companies[i];
            c.total += 1;
            match g.state {
                GuardAckState::Acknowledged => c.on_time += 1,
                GuardAckState::Late => c.late += 1,
                GuardAckState::Pending | GuardAckState::Missed => c.missed += 1,
            }
        }
        companies.sort_by(|a, b| a.company.cmp(&b.company));
        AlertDetail {
            info,
            guards,
            companies,
        }
    }
}

impl serde::Serialize for CompanyRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("CompanyRate", 6)?;
        st.serialize_field("company", &self.company)?;
        st.serialize_field("total", &self.total)?;
        st.serialize_field("on_time", &self.on_time)?;
        st.serialize_field("late", &self.late)?;
        st.serialize_field("missed", &self.missed)?;
        st.serialize_field("rate", &self.rate())?;
        st.end()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert text is empty")]
    EmptyText,
    #[error("alert text has {0} characters; at most {MAX_TEXT_CHARS} are allowed")]
    TextTooLong(usize),
    #[error("deadline must be 1 s to {MAX_DEADLINE_S} s, got {0} s")]
    BadDeadline(u64),
    #[error("unknown {kind} \"{id}\" in the alert target")]
    UnknownTarget { kind: &'static str, id: String },
    #[error("the alert target selects no guard")]
    NoGuards,
    #[error("no channel to transmit on: none configured and none given")]
    NoChannels,
    #[error("voice clip {path}: {message}")]
    Clip { path: PathBuf, message: String },
    #[error("no alert {0}")]
    NotFound(i64),
    #[error("unknown guard \"{0}\"")]
    UnknownGuard(String),
    #[error(transparent)]
    Ack(#[from] AckError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the alert tracker has stopped")]
    Stopped,
}

/// Requests to the tracker task.
enum Cmd {
    Track(tracker::TrackedAlert, Option<Arc<Vec<i16>>>),
    Ack {
        alert_id: i64,
        guard: String,
        via: AckVia,
        /// Operator name or MQTT topic, stored as `ack_by`.
        by: String,
        /// `None`: the caller does not wait; a refusal becomes an
        /// `Event::Error` with `by` as its source.
        reply: Option<oneshot::Sender<Result<AckOutcome, AlertError>>>,
        /// Fired once the ack is stored or refused for good; dropped when
        /// it could not be stored (the sender should offer it again).
        handled: Option<oneshot::Sender<()>>,
    },
}

/// The alert API. Cloneable.
#[derive(Clone)]
pub struct AlertService {
    storage: Storage,
    bus: Bus,
    roster: Roster,
    defaults: AlertsConfig,
    channels: Vec<String>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

/// Starts the tracker task: resumes open alerts from storage (closing those
/// whose time ran out while the daemon was down) and returns the API handle.
/// `transmitter` is `None` until channels exist; alerts then reach apps only.
pub async fn start(
    config: &Config,
    storage: Storage,
    bus: Bus,
    roster: Roster,
    transmitter: Option<Arc<dyn Transmitter>>,
    cancel: CancellationToken,
) -> Result<(AlertService, tokio::task::JoinHandle<()>), StorageError> {
    let open = storage.call(store::load_open).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let service = AlertService {
        storage: storage.clone(),
        bus: bus.clone(),
        roster: roster.clone(),
        defaults: config.alerts.clone(),
        channels: config.channels.iter().map(|c| c.id.clone()).collect(),
        cmd: tx,
    };
    let task = task::spawn(
        task::Parts {
            storage,
            bus,
            roster,
            transmitter,
            tone_hz: config.alerts.tone_hz,
            tone_ms: config.alerts.tone_ms,
            open,
        },
        rx,
        cancel,
    );
    Ok((service, task))
}

impl AlertService {
    /// Validates, stores, then starts tracking and transmitting an alert.
    /// Returns after the alert and its guards are committed.
    pub async fn create(&self, new: NewAlert) -> Result<AlertInfo, AlertError> {
        let text = new.text.trim().to_owned();
        if text.is_empty() {
            return Err(AlertError::EmptyText);
        }
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(AlertError::TextTooLong(chars));
        }
        let deadline_s = new
            .deadline
            .map(|d| d.as_secs())
            .unwrap_or(u64::from(self.defaults.deadline_min) * 60);
        if deadline_s == 0 || deadline_s > MAX_DEADLINE_S {
            return Err(AlertError::BadDeadline(deadline_s));
        }
        let guards = self.resolve(&new.target)?;
        let channels = if new.target.channels.is_empty() {
            self.channels.clone()
        } else {
            for c in &new.target.channels {
                if !self.channels.contains(c) {
                    return Err(AlertError::UnknownTarget {
                        kind: "channel",
                        id: c.clone(),
                    });
                }
            }
            new.target.channels.clone()
        };
        if channels.is_empty() && new.clip.is_some() {
            return Err(AlertError::NoChannels);
        }
        let clip = match &new.clip {
            Some(path) => {
                let p = path.clone();
                let samples = tokio::task::spawn_blocking(move || audio::load_clip(&p))
                    .await
                    .map_err(|e| AlertError::Clip {
                        path: path.clone(),
                        message: e.to_string(),
                    })?
                    .map_err(|message| AlertError::Clip {
                        path: path.clone(),
                        message,
                    })?;
                Some(Arc::new(samples))
            }
            None => None,
        };

        let created_ms = now_ms();
        let deadline_ms = created_ms + deadline_s as i64 * 1000;
        let reminder_s = u64::from(self.defaults.reminder_min) * 60;
        let reminder_ms = (reminder_s > 0 && reminder_s < deadline_s)
            .then(|| deadline_ms - reminder_s as i64 * 1000);
        let close_ms = deadline_ms + i64::from(self.defaults.late_window_min) * 60_000;
        let row = store::NewRow {
            created_ms,
            created_by: new.created_by.clone(),
            text: text.clone(),
            priority: new.priority.as_str().into(),
            target: new.target.clone(),
            channels: channels.clone(),
            clip: new.clip.as_ref().map(|p| p.display().to_string()),
            deadline_ms,
            reminder_ms,
            close_ms,
            guards: guards.clone(),
        };
        let (row, id) = self
            .storage
            .call(move |c| {
                let id = store::insert(c, &row)?;
                Ok((row, id))
            })
            .await?;
        self.storage
            .audit(
                &new.created_by,
                "alert.create",
                &format!("alert/{id}"),
                &format!("{} guard(s); {text}", guards.len()),
            )
            .await?;
        self.bus.publish(Event::AlertCreated {
            alert_id: id,
            text: text.clone(),
            priority: row.priority.clone(),
            created_by: row.created_by.clone(),
            guards: guards.iter().map(|(g, _)| g.clone()).collect(),
            channels: channels.clone(),
            deadline_ms,
        });
        let tracked = tracker::TrackedAlert {
            id,
            text: text.clone(),
            channels: channels.clone(),
            created_ms,
            deadline_ms,
            reminder_ms,
            close_ms,
            reminded: false,
            escalated: false,
            guards: guards
                .iter()
                .map(|(g, c)| {
                    (
                        g.clone(),
                        tracker::GuardEntry {
                            company: c.clone(),
                            ack: None,
                        },
                    )
                })
                .collect(),
        };
        self.cmd
            .send(Cmd::Track(tracked, clip))
            .map_err(|_| AlertError::Stopped)?;
        Ok(AlertInfo {
            id,
            created_ms,
            created_by: row.created_by,
            text,
            priority: row.priority,
            target: row.target,
            channels,
            clip: row.clip,
            deadline_ms,
            close_ms,
            closed_ms: None,
            total: guards.len(),
            on_time: 0,
            late: 0,
        })
    }

    /// (guard, company) for every guard the target selects.
    fn resolve(&self, target: &AlertTarget) -> Result<Vec<(String, String)>, AlertError> {
        let roster = self.roster.snapshot();
        for c in &target.companies {
            if roster.company(c).is_none() {
                return Err(AlertError::UnknownTarget {
                    kind: "company",
                    id: c.clone(),
                });
            }
        }
        for g in &target.groups {
            if !roster.groups.iter().any(|x| &x.id == g) {
                return Err(AlertError::UnknownTarget {
                    kind: "group",
                    id: g.clone(),
                });
            }
        }
        for g in &target.guards {
            if roster.guard(g).is_none() {
                return Err(AlertError::UnknownTarget {
                    kind: "guard",
                    id: g.clone(),
                });
            }
        }
        let everyone =
            target.companies.is_empty() && target.groups.is_empty() && target.guards.is_empty();
        let selected: Vec<(String, String)> = roster
            .guards
            .iter()
            .filter(|g| {
                everyone
                    || target.guards.contains(&g.id)
                    || target.companies.contains(&g.company)
                    || g.groups.iter().any(|x| target.groups.contains(x))
            })
            .map(|g| (g.id.clone(), g.company.clone()))
            .collect();
        if selected.is_empty() {
            return Err(AlertError::NoGuards);
        }
        Ok(selected)
    }

    /// Newest first.
    pub async fn list(&self, open_only: bool, limit: usize) -> Result<Vec<AlertInfo>, AlertError> {
        Ok(self
            .storage
            .call(move |c| store::list(c, open_only, limit))
            .await?)
    }

    /// One alert with every guard's acknowledgement status.
    pub async fn get(&self, id: i64) -> Result<AlertDetail, AlertError> {
        let now = now_ms();
        self.storage
            .call(move |c| store::get(c, id, now))
            .await?
            .ok_or(AlertError::NotFound(id))
    }

    /// An operator acknowledges on a guard's behalf (e.g. he phoned in).
    /// Stored and audited before it returns.
    pub async fn acknowledge(
        &self,
        alert_id: i64,
        guard: &str,
        operator: &str,
    ) -> Result<AckOutcome, AlertError> {
        if self.roster.snapshot().guard(guard).is_none() {
            return Err(AlertError::UnknownGuard(guard.into()));
        }
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Ack {
                alert_id,
                guard: guard.into(),
                via: AckVia::Operator,
                by: operator.into(),
                reply: Some(tx),
                handled: None,
            })
            .map_err(|_| AlertError::Stopped)?;
        let outcome = rx.await.map_err(|_| AlertError::Stopped)??;
        self.storage
            .audit(
                operator,
                "alert.ack_on_behalf",
                &format!("alert/{alert_id}"),
                &format!("guard {guard}"),
            )
            .await?;
        Ok(outcome)
    }

    /// An acknowledgement from a guard's app (MQTT). Never blocks; a refusal
    /// is published as `Event::Error { source: topic, .. }`. The receiver
    /// resolves once the ack is stored or refused for good, and fails if it
    /// could not be stored: the MQTT bridge PUBACKs only then, so a crash
    /// in between leaves the ack with the broker for the next start.
    pub fn submit_app_ack(&self, alert_id: i64, guard: &str, topic: &str) -> oneshot::Receiver<()> {
        let (handled, rx) = oneshot::channel();
        let _ = self.cmd.send(Cmd::Ack {
            alert_id,
            guard: guard.into(),
            via: AckVia::App,
            by: topic.into(),
            reply: None,
            handled: Some(handled),
        });
        rx
    }
}

#[cfg(test)]
mod tests;
