//! Live station state shared by the link tasks and the API: which links are
//! up, their squelch and PTT, and when they last changed. Written by the link
//! tasks, read by `GetStatus`, MQTT status and metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::storage::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Starting,
    Up,
    Down,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Starting => "starting",
            LinkState::Up => "up",
            LinkState::Down => "down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub id: String,
    pub kind: String,
    pub state: LinkState,
    pub reason: String,
    pub cor: bool,
    pub ptt: bool,
    pub since_ms: i64,
}

/// Shared, cheap-to-clone view of the station.
#[derive(Clone)]
pub struct Station {
    inner: Arc<Inner>,
}

struct Inner {
    station_id: String,
    time_zone: String,
    started: std::time::Instant,
    links: RwLock<BTreeMap<String, LinkStatus>>,
}

impl Station {
    pub fn new(station_id: &str, time_zone: &str) -> Station {
        Station {
            inner: Arc::new(Inner {
                station_id: station_id.to_owned(),
                time_zone: time_zone.to_owned(),
                started: std::time::Instant::now(),
                links: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    pub fn station_id(&self) -> &str {
        &self.inner.station_id
    }
    pub fn time_zone(&self) -> &str {
        &self.inner.time_zone
    }
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }

    pub fn add_link(&self, id: &str, kind: &str) {
        self.write().insert(
            id.to_owned(),
            LinkStatus {
                id: id.to_owned(),
                kind: kind.to_owned(),
                state: LinkState::Starting,
                reason: String::new(),
                cor: false,
                ptt: false,
                since_ms: now_ms(),
            },
        );
    }

    /// Applies `f` to a link's status.
    pub fn update_link(&self, id: &str, f: impl FnOnce(&mut LinkStatus)) {
        if let Some(s) = self.write().get_mut(id) {
            f(s);
        }
    }

    pub fn set_link_state(&self, id: &str, state: LinkState, reason: &str) {
        self.update_link(id, |s| {
            s.state = state;
            s.reason = reason.to_owned();
            s.since_ms = now_ms();
            if state != LinkState::Up {
                s.cor = false;
                s.ptt = false;
            }
        });
    }

    pub fn links(&self) -> Vec<LinkStatus> {
        match self.inner.links.read() {
            Ok(g) => g.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, LinkStatus>> {
        // A panic while holding the lock must not take the status API down.
        self.inner.links.write().unwrap_or_else(|p| p.into_inner())
    }
}
