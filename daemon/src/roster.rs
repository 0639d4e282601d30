//! The roster: companies, guards and groups, and the lookups the roll-call
//! engine, the alert tracker and the MQTT bridge need (guard by ANI code, by
//! app id, by group).
//!
//! The config seeds it; run-time edits (through the API) replace the shared
//! snapshot atomically, so readers never see a half-edited roster.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::{Config, GuardConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub supervisor: Option<String>,
    pub supervisor_phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
}

/// One guard and every way he can identify himself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub id: String,
    pub name: String,
    pub company: String,
    pub post: Option<String>,
    pub dtmf: Option<String>,
    pub selcall: Option<String>,
    /// Four upper-case hex digits.
    pub mdc1200: Option<String>,
    pub dmr: Option<u32>,
    pub app_id: Option<String>,
    pub groups: Vec<String>,
}

impl From<&GuardConfig> for Guard {
    fn from(g: &GuardConfig) -> Guard {
        Guard {
            id: g.id.clone(),
            name: g.name.clone(),
            company: g.company.clone(),
            post: g.post.clone(),
            dtmf: g.dtmf.clone(),
            selcall: g.selcall.clone(),
            mdc1200: g.mdc1200.as_ref().map(|m| m.to_ascii_uppercase()),
            dmr: g.dmr,
            app_id: g.app_id.clone(),
            groups: g.groups.clone(),
        }
    }
}

/// An immutable roster snapshot with indexes.
#[derive(Debug, Clone, Default)]
pub struct RosterSnapshot {
    pub companies: Vec<Company>,
    pub guards: Vec<Guard>,
    pub groups: Vec<Group>,
    by_code: HashMap<(&'static str, String), usize>,
    by_id: HashMap<String, usize>,
}

impl RosterSnapshot {
    pub fn new(companies: Vec<Company>, guards: Vec<Guard>, groups: Vec<Group>) -> RosterSnapshot {
        let mut by_code = HashMap::new();
        let mut by_id = HashMap::new();
        for (i, g) in guards.iter().enumerate() {
            by_id.insert(g.id.clone(), i);
            if let Some(c) = &g.dtmf {
                by_code.insert(("dtmf", c.clone()), i);
            }
            if let Some(c) = &g.selcall {
                by_code.insert(("selcall", c.clone()), i);
            }
            if let Some(c) = &g.mdc1200 {
                by_code.insert(("mdc1200", c.to_ascii_uppercase()), i);
            }
            if let Some(c) = g.dmr {
                by_code.insert(("dmr", c.to_string()), i);
            }
            if let Some(c) = &g.app_id {
                by_code.insert(("app", c.clone()), i);
            }
        }
        RosterSnapshot {
            companies,
            guards,
            groups,
            by_code,
            by_id,
        }
    }

    pub fn from_config(config: &Config) -> RosterSnapshot {
        let r = &config.roster;
        RosterSnapshot::new(
            r.companies
                .iter()
                .map(|c| Company {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    supervisor: c.supervisor.clone(),
                    supervisor_phone: c.supervisor_phone.clone(),
                })
                .collect(),
            r.guards.iter().map(Guard::from).collect(),
            r.groups
                .iter()
                .map(|g| Group {
                    id: g.id.clone(),
                    name: g.name.clone().unwrap_or_else(|| g.id.clone()),
                })
                .collect(),
        )
    }

    pub fn guard(&self, id: &str) -> Option<&Guard> {
        self.by_id.get(id).map(|&i| &self.guards[i])
    }

    /// The guard an identity belongs to. `kind` is an `AniKind` name
    /// (`dtmf`, `selcall`, `mdc1200`, `dmr`) or `app` for an app id.
    pub fn guard_by_code(&self, kind: &str, code: &str) -> Option<&Guard> {
        let key = match kind {
            "dtmf" => "dtmf",
            "selcall" => "selcall",
            "mdc1200" => "mdc1200",
            "dmr" => "dmr",
            "app" => "app",
            _ => return None,
        };
        let code = if key == "mdc1200" {
            code.to_ascii_uppercase()
        } else {
            code.to_owned()
        };
        self.by_code.get(&(key, code)).map(|&i| &self.guards[i])
    }

    pub fn company(&self, id: &str) -> Option<&Company> {
        self.companies.iter().find(|c| c.id == id)
    }

    /// Guards in any of `groups`; every guard when `groups` is empty.
    pub fn guards_in(&self, groups: &[String]) -> Vec<&Guard> {
        self.guards
            .iter()
            .filter(|g| groups.is_empty() || g.groups.iter().any(|x| groups.contains(x)))
            .collect()
    }
}

/// The shared, swappable roster.
#[derive(Clone, Default)]
pub struct Roster {
    current: Arc<RwLock<Arc<RosterSnapshot>>>,
}

impl Roster {
    pub fn new(snapshot: RosterSnapshot) -> Roster {
        Roster {
            current: Arc::new(RwLock::new(Arc::new(snapshot))),
        }
    }

    /// The current snapshot; cheap (an `Arc` clone).
    pub fn snapshot(&self) -> Arc<RosterSnapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the roster atomically.
    pub fn replace(&self, snapshot: RosterSnapshot) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(id: &str, dtmf: &str, mdc: &str, groups: &[&str]) -> Guard {
        Guard {
            id: id.into(),
            name: id.into(),
            company: "acme".into(),
            post: None,
            dtmf: Some(dtmf.into()),
            selcall: None,
            mdc1200: Some(mdc.into()),
            dmr: None,
            app_id: Some(format!("app-{id}")),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn lookups_by_code_and_group() {
        let snap = RosterSnapshot::new(
            vec![],
            vec![
                guard("g1", "101", "1A2B", &["night"]),
                guard("g2", "102", "00FF", &[]),
            ],
            vec![],
        );
        assert_eq!(snap.guard_by_code("dtmf", "101").unwrap().id, "g1");
        assert_eq!(snap.guard_by_code("mdc1200", "1a2b").unwrap().id, "g1");
        assert_eq!(snap.guard_by_code("app", "app-g2").unwrap().id, "g2");
        assert!(snap.guard_by_code("dtmf", "999").is_none());
        assert!(snap.guard_by_code("bogus", "101").is_none());
        assert_eq!(snap.guards_in(&["night".into()]).len(), 1);
        assert_eq!(snap.guards_in(&[]).len(), 2);
    }
}
