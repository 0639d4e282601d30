//! The acknowledgement tracker: a pure state machine over open alerts.
//!
//! No clock, no I/O: the caller passes wall-clock Unix milliseconds into
//! [`Tracker::handle_ack`], [`Tracker::handle_ani`] and
//! [`Tracker::handle_timeout`], asks [`Tracker::poll_timeout`] when to call
//! back, and carries out the returned [`Action`]s (store, publish). The tokio
//! task in `task.rs` is the thin driver; tests drive it on a simulated clock.
//!
//! Per alert the timeline is: created → reminder (pending guards) → deadline
//! (escalation per company of the guards still pending) → close
//! (`late_window` after the deadline; acks in between count as late). A step
//! whose time passed while the daemon was down is taken at the next
//! `handle_timeout`, except that a reminder is pointless once the deadline
//! passed and is skipped. The escalation is always sent once the deadline
//! passed, even together with the close (a zero late window, or both times
//! passed while down): the supervisor still needs to know who missed it.

use std::collections::{BTreeMap, BTreeSet};

/// Unix milliseconds.
pub type Ms = i64;

/// How an acknowledgement arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckVia {
    /// The guard's PTT-ID heard on a channel the alert went out on.
    Ani,
    /// The guard's phone app over MQTT.
    App,
    /// An operator acknowledged on the guard's behalf (audited).
    Operator,
}

impl AckVia {
    pub fn as_str(self) -> &'static str {
        match self {
            AckVia::Ani => "ani",
            AckVia::App => "app",
            AckVia::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<AckVia> {
        match s {
            "ani" => Some(AckVia::Ani),
            "app" => Some(AckVia::App),
            "operator" => Some(AckVia::Operator),
            _ => None,
        }
    }
}

/// A guard's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub at_ms: Ms,
    pub via: AckVia,
    pub late: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardEntry {
    pub company: String,
    pub ack: Option<Ack>,
}

/// One open alert as the tracker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedAlert {
    pub id: i64,
    pub text: String,
    /// Channels the alert went out on: an ANI heard there acknowledges.
    pub channels: Vec<String>,
    pub created_ms: Ms,
    pub deadline_ms: Ms,
    /// `None`: no reminder.
    pub reminder_ms: Option<Ms>,
    pub close_ms: Ms,
    pub reminded: bool,
    pub escalated: bool,
    pub guards: BTreeMap<String, GuardEntry>,
}

impl TrackedAlert {
    fn pending(&self) -> impl Iterator<Item = (&String, &GuardEntry)> {
        self.guards.iter().filter(|(_, e)| e.ack.is_none())
    }

    /// Totals so far; pending guards count as missed.
    pub fn summary(&self) -> Summary {
        let mut by_company: BTreeMap<&str, CompanyRate> = BTreeMap::new();
        for entry in self.guards.values() {
            let c = by_company
                .entry(&entry.company)
                .or_insert_with(|| CompanyRate {
                    company: entry.company.clone(),
                    ..CompanyRate::default()
                });
            c.total += 1;
            match &entry.ack {
                Some(a) if a.late => c.late += 1,
                Some(_) => c.on_time += 1,
                None => c.missed += 1,
            }
        }
        let by_company: Vec<CompanyRate> = by_company.into_values().collect();
        Summary {
            total: by_company.iter().map(|c| c.total).sum(),
            on_time: by_company.iter().map(|c| c.on_time).sum(),
            late: by_company.iter().map(|c| c.late).sum(),
            missed: by_company.iter().map(|c| c.missed).sum(),
            by_company,
        }
    }
}

/// Acknowledgement counts of one company for one alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompanyRate {
    pub company: String,
    pub total: usize,
    pub on_time: usize,
    pub late: usize,
    /// Not acknowledged (yet, while the alert is open).
    pub missed: usize,
}

impl CompanyRate {
    /// The score stations use: on-time acknowledgements / guards targeted.
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.on_time as f64 / self.total as f64
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub on_time: usize,
    pub late: usize,
    pub missed: usize,
    pub by_company: Vec<CompanyRate>,
}

/// What the driver must do after a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remind these guards (not yet acknowledged) before the deadline.
    Remind { alert_id: i64, guards: Vec<String> },
    /// Deadline passed: tell `company`'s supervisor about these guards.
    Escalate {
        alert_id: i64,
        company: String,
        guards: Vec<String>,
    },
    /// The alert closed; it is no longer tracked.
    Close { alert_id: i64, summary: Summary },
}

/// A recorded acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckOutcome {
    pub alert_id: i64,
    pub guard: String,
    pub company: String,
    pub at_ms: Ms,
    pub via: AckVia,
    pub late: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("alert {0} is not open")]
    NotOpen(i64),
    #[error("guard {guard} is not a target of alert {alert_id}")]
    NotTargeted { alert_id: i64, guard: String },
    #[error("guard {guard} already acknowledged alert {alert_id}")]
    AlreadyAcked { alert_id: i64, guard: String },
    #[error("acknowledgement at {at_ms} precedes alert {alert_id}")]
    BeforeAlert { alert_id: i64, at_ms: Ms },
}

/// Every open alert.
#[derive(Debug, Default)]
pub struct Tracker {
    alerts: BTreeMap<i64, TrackedAlert>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Starts tracking an alert (new, or resumed from storage).
    pub fn insert(&mut self, alert: TrackedAlert) {
        self.alerts.insert(alert.id, alert);
    }

    pub fn get(&self, id: i64) -> Option<&TrackedAlert> {
        self.alerts.get(&id)
    }

    pub fn open_ids(&self) -> Vec<i64> {
        self.alerts.keys().copied().collect()
    }

    /// Records an acknowledgement by `guard` of `alert_id` at `now`.
    pub fn handle_ack(
        &mut self,
        now: Ms,
        alert_id: i64,
        guard: &str,
        via: AckVia,
    ) -> Result<AckOutcome, AckError> {
        let alert = self
            .alerts
            .get_mut(&alert_id)
            .filter(|a| now < a.close_ms)
            .ok_or(AckError::NotOpen(alert_id))?;
        if now < alert.created_ms {
            return Err(AckError::BeforeAlert {
                alert_id,
                at_ms: now,
            });
        }
        let deadline = alert.deadline_ms;
        let entry = alert
            .guards
            .get_mut(guard)
            .ok_or_else(|| AckError::NotTargeted {
                alert_id,
                guard: guard.to_owned(),
            })?;
        if entry.ack.is_some() {
            return Err(AckError::AlreadyAcked {
                alert_id,
                guard: guard.to_owned(),
            });
        }
        let late = now > deadline;
        entry.ack = Some(Ack {
            at_ms: now,
            via,
            late,
        });
        Ok(AckOutcome {
            alert_id,
            guard: guard.to_owned(),
            company: entry.company.clone(),
            at_ms: now,
            via,
            late,
        })
    }

    /// Undoes an acknowledgement the driver could not store, so memory does
    /// not claim what the database does not hold (and a retry is accepted).
    pub fn forget_ack(&mut self, alert_id: i64, guard: &str) {
        if let Some(e) = self
            .alerts
            .get_mut(&alert_id)
            .and_then(|a| a.guards.get_mut(guard))
        {
            e.ack = None;
        }
    }

    /// An ANI from `guard` heard on `channel` at `now`: acknowledges every
    /// open alert that went out on that channel, targets him and is still
    /// unacknowledged by him. Anything else is ignored (radio traffic is not
    /// an error).
    pub fn handle_ani(&mut self, now: Ms, channel: &str, guard: &str) -> Vec<AckOutcome> {
        let ids: Vec<i64> = self
            .alerts
            .values()
            .filter(|a| {
                a.channels.iter().any(|c| c == channel)
                    && a.created_ms <= now
                    && now < a.close_ms
                    && a.guards.get(guard).is_some_and(|e| e.ack.is_none())
            })
            .map(|a| a.id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.handle_ack(now, id, guard, AckVia::Ani).ok())
            .collect()
    }

    /// Takes every step due at `now`, oldest alert first.
    pub fn handle_timeout(&mut self, now: Ms) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut closed = BTreeSet::new();
        for alert in self.alerts.values_mut() {
            if let Some(at) = alert.reminder_ms {
                if !alert.reminded && at <= now {
                    alert.reminded = true;
                    let guards: Vec<String> = alert.pending().map(|(g, _)| g.clone()).collect();
                    if now < alert.deadline_ms && !guards.is_empty() {
                        actions.push(Action::Remind {
                            alert_id: alert.id,
                            guards,
                        });
                    }
                }
            }
            if !alert.escalated && alert.deadline_ms <= now {
                alert.escalated = true;
                let mut by_company: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (g, e) in alert.pending() {
                    by_company
                        .entry(e.company.clone())
                        .or_default()
                        .push(g.clone());
                }
                for (company, guards) in by_company {
                    actions.push(Action::Escalate {
                        alert_id: alert.id,
                        company,
                        guards,
                    });
                }
            }
            if alert.close_ms <= now {
                closed.insert(alert.id);
                actions.push(Action::Close {
                    alert_id: alert.id,
                    summary: alert.summary(),
                });
            }
        }
        for id in closed {
            self.alerts.remove(&id);
        }
        actions
    }

    /// When `handle_timeout` must next be called; `None` when idle.
    pub fn poll_timeout(&self) -> Option<Ms> {
        self.alerts
            .values()
            .map(|a| {
                let mut t = a.close_ms;
                if !a.escalated {
                    t = t.min(a.deadline_ms);
                }
                if let (false, Some(r)) = (a.reminded, a.reminder_ms) {
                    t = t.min(r);
                }
                t
            })
            .min()
    }
}

#[cfg(test)]
mod tests;
