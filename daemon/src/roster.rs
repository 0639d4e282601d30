//! The roster: companies, guards and groups, and the lookups the roll-call
//! engine, the alert tracker and the MQTT bridge need (guard by ANI code, by
//! app id, by group).
//!
//! The config seeds it; run-time edits (through the API) replace the shared
//! snapshot atomically, so readers never see a half-edited roster.
//!
//! [`RosterStore`] keeps it in SQLite: at start the config's entries are
//! written (source `config`) and config entries no longer in the file are
//! dropped; an entry edited through the API becomes source `api`, survives
//! restarts, and is no longer overwritten by its config entry (a warning says
//! so). Deleting a config entry through the API lasts until the next start
//! while the config still defines it. Every edit is validated like the config (ids, company and group
//! references, code formats, codes unique across guards), committed together
//! with its audit row, and only then published as the new snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use rusqlite::OptionalExtension;

use crate::config::{is_ident, Config, GuardConfig};
use crate::storage::{now_ms, Storage, StorageError};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub supervisor: Option<String>,
    pub supervisor_phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
}

/// One guard and every way he can identify himself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Why a roster edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("{0}")]
    Invalid(String),
    #[error("no {kind} \"{id}\"")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} \"{id}\" is still used by {users}; change or remove those first")]
    InUse {
        kind: &'static str,
        id: String,
        users: String,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Every problem of a snapshot, in the config loader's words.
pub fn validate(snap: &RosterSnapshot) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for c in &snap.companies {
        if !is_ident(&c.id) {
            errs.push(format!(
                "company id \"{}\" is not valid; use 1–64 of A-Z a-z 0-9 - _",
                c.id
            ));
        }
        if !seen.insert(("company", c.id.as_str())) {
            errs.push(format!("duplicate company id \"{}\"", c.id));
        }
        if c.name.trim().is_empty() {
            errs.push(format!("company \"{}\" needs a name", c.id));
        }
    }
    for g in &snap.groups {
        if !is_ident(&g.id) {
            errs.push(format!(
                "group id \"{}\" is not valid; use 1–64 of A-Z a-z 0-9 - _",
                g.id
            ));
        }
        if !seen.insert(("group", g.id.as_str())) {
            errs.push(format!("duplicate group id \"{}\"", g.id));
        }
    }
    let mut codes: HashMap<(&str, String), &str> = HashMap::new();
    for g in &snap.guards {
        if !is_ident(&g.id) {
            errs.push(format!(
                "guard id \"{}\" is not valid; use 1–64 of A-Z a-z 0-9 - _",
                g.id
            ));
        }
        if !seen.insert(("guard", g.id.as_str())) {
            errs.push(format!("duplicate guard id \"{}\"", g.id));
        }
        if g.name.trim().is_empty() {
            errs.push(format!("guard \"{}\" needs a name", g.id));
        }
        if snap.company(&g.company).is_none() {
            errs.push(format!(
                "guard \"{}\" names company \"{}\", which is not defined",
                g.id, g.company
            ));
        }
        for grp in &g.groups {
            if !snap.groups.iter().any(|x| &x.id == grp) {
                errs.push(format!(
                    "guard \"{}\": group \"{grp}\" is not defined",
                    g.id
                ));
            }
        }
        if let Some(d) = &g.dtmf {
            if d.is_empty() || d.len() > 8 || !d.chars().all(|c| "0123456789ABCD*#".contains(c)) {
                errs.push(format!(
                    "guard \"{}\": \"{d}\" is not a DTMF PTT-ID; use 1–8 of 0-9 A-D * #",
                    g.id
                ));
            }
        }
        if let Some(s) = &g.selcall {
            if s.is_empty() || s.len() > 8 || !s.chars().all(|c| c.is_ascii_digit()) {
                errs.push(format!(
                    "guard \"{}\": \"{s}\" is not a 5-tone code; use 1–8 digits",
                    g.id
                ));
            }
        }
        if let Some(m) = &g.mdc1200 {
            if m.len() != 4 || !m.chars().all(|c| c.is_ascii_hexdigit()) {
                errs.push(format!(
                    "guard \"{}\": \"{m}\" is not an MDC1200 unit id; use four hex digits, e.g. \"1A2B\"",
                    g.id
                ));
            }
        }
        if let Some(d) = g.dmr {
            if d == 0 || d > 16_776_415 {
                errs.push(format!(
                    "guard \"{}\": {d} is not a DMR radio id; allowed 1–16776415",
                    g.id
                ));
            }
        }
        if let Some(a) = &g.app_id {
            if a.is_empty() || a.len() > 128 || a.chars().any(|c| c.is_control()) {
                errs.push(format!(
                    "guard \"{}\": app id must be 1–128 printable characters",
                    g.id
                ));
            }
        }
        let all = [
            ("dtmf", g.dtmf.clone()),
            ("selcall", g.selcall.clone()),
            (
                "mdc1200",
                g.mdc1200.as_ref().map(|m| m.to_ascii_uppercase()),
            ),
            ("dmr", g.dmr.map(|d| d.to_string())),
            ("app_id", g.app_id.clone()),
        ];
        for (kind, code) in all {
            if let Some(code) = code {
                if let Some(other) = codes.insert((kind, code.clone()), &g.id) {
                    errs.push(format!(
                        "{kind} code \"{code}\" is already used by guard \"{other}\"; codes must identify one guard"
                    ));
                }
            }
        }
    }
    errs
}

/// The roster in SQLite, with audited, validated run-time edits.
#[derive(Clone)]
pub struct RosterStore {
    roster: Roster,
    storage: Storage,
    /// One edit at a time, so validation sees the snapshot it replaces.
    edit: Arc<tokio::sync::Mutex<()>>,
}

type Row = (String, String, String); // (id, json, source)

impl RosterStore {
    /// Seeds the database from `config` and loads the roster from it.
    pub async fn open(storage: Storage, config: &Config) -> Result<RosterStore, RosterError> {
        let seed = RosterSnapshot::from_config(config);
        let snap = storage
            .call(move |c| {
                let tx = c.transaction()?;
                seed_table(
                    &tx,
                    "company",
                    seed.companies.iter().map(|x| (x.id.clone(), json(x))),
                )?;
                seed_table(
                    &tx,
                    "group",
                    seed.groups.iter().map(|x| (x.id.clone(), json(x))),
                )?;
                seed_table(
                    &tx,
                    "guard",
                    seed.guards.iter().map(|x| (x.id.clone(), json(x))),
                )?;
                tx.commit()?;
                load(c)
            })
            .await?;
        for e in validate(&snap) {
            tracing::warn!(problem = %e, "stored roster has a problem; fix it through the API or the config");
        }
        tracing::info!(
            companies = snap.companies.len(),
            guards = snap.guards.len(),
            groups = snap.groups.len(),
            "roster loaded"
        );
        Ok(RosterStore {
            roster: Roster::new(snap),
            storage,
            edit: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The shared roster readers use.
    pub fn roster(&self) -> Roster {
        self.roster.clone()
    }

    pub fn list_companies(&self) -> Vec<Company> {
        self.roster.snapshot().companies.clone()
    }
    pub fn list_guards(&self) -> Vec<Guard> {
        self.roster.snapshot().guards.clone()
    }
    pub fn list_groups(&self) -> Vec<Group> {
        self.roster.snapshot().groups.clone()
    }
    pub fn get_company(&self, id: &str) -> Option<Company> {
        self.roster.snapshot().company(id).cloned()
    }
    pub fn get_guard(&self, id: &str) -> Option<Guard> {
        self.roster.snapshot().guard(id).cloned()
    }
    pub fn get_group(&self, id: &str) -> Option<Group> {
        self.roster
            .snapshot()
            .groups
            .iter()
            .find(|g| g.id == id)
            .cloned()
    }

    pub async fn upsert_company(&self, c: Company, actor: &str) -> Result<(), RosterError> {
        self.edit(actor, "company", &c.id.clone(), Some(json(&c)), move |s| {
            match s.companies.iter_mut().find(|x| x.id == c.id) {
                Some(x) => *x = c,
                None => s.companies.push(c),
            }
            Ok(())
        })
        .await
    }

    pub async fn delete_company(&self, id: &str, actor: &str) -> Result<(), RosterError> {
        let id2 = id.to_owned();
        self.edit(actor, "company", id, None, move |s| {
            let users: Vec<&str> = s
                .guards
                .iter()
                .filter(|g| g.company == id2)
                .map(|g| g.id.as_str())
                .collect();
            if !users.is_empty() {
                return Err(RosterError::InUse {
                    kind: "company",
                    id: id2.clone(),
                    users: format!("guards {}", users.join(", ")),
                });
            }
            let before = s.companies.len();
            s.companies.retain(|c| c.id != id2);
            found(before != s.companies.len(), "company", &id2)
        })
        .await
    }

    pub async fn upsert_group(&self, g: Group, actor: &str) -> Result<(), RosterError> {
        self.edit(actor, "group", &g.id.clone(), Some(json(&g)), move |s| {
            match s.groups.iter_mut().find(|x| x.id == g.id) {
                Some(x) => *x = g,
                None => s.groups.push(g),
            }
            Ok(())
        })
        .await
    }

    pub async fn delete_group(&self, id: &str, actor: &str) -> Result<(), RosterError> {
        let id2 = id.to_owned();
        self.edit(actor, "group", id, None, move |s| {
            let users: Vec<&str> = s
                .guards
                .iter()
                .filter(|g| g.groups.contains(&id2))
                .map(|g| g.id.as_str())
                .collect();
            if !users.is_empty() {
                return Err(RosterError::InUse {
                    kind: "group",
                    id: id2.clone(),
                    users: format!("guards {}", users.join(", ")),
                });
            }
            let before = s.groups.len();
            s.groups.retain(|g| g.id != id2);
            found(before != s.groups.len(), "group", &id2)
        })
        .await
    }

    pub async fn upsert_guard(&self, mut g: Guard, actor: &str) -> Result<(), RosterError> {
        g.mdc1200 = g.mdc1200.map(|m| m.to_ascii_uppercase());
        self.edit(actor, "guard", &g.id.clone(), Some(json(&g)), move |s| {
            match s.guards.iter_mut().find(|x| x.id == g.id) {
                Some(x) => *x = g,
                None => s.guards.push(g),
            }
            Ok(())
        })
        .await
    }

    pub async fn delete_guard(&self, id: &str, actor: &str) -> Result<(), RosterError> {
        let id2 = id.to_owned();
        self.edit(actor, "guard", id, None, move |s| {
            let before = s.guards.len();
            s.guards.retain(|g| g.id != id2);
            found(before != s.guards.len(), "guard", &id2)
        })
        .await
    }

    /// Applies `change` to a copy of the roster, validates the result,
    /// commits the row (`body` = new JSON, `None` = delete) with its audit
    /// row in one transaction, then swaps the snapshot in.
    async fn edit(
        &self,
        actor: &str,
        kind: &'static str,
        id: &str,
        body: Option<String>,
        change: impl FnOnce(&mut Parts) -> Result<(), RosterError>,
    ) -> Result<(), RosterError> {
        let _guard = self.edit.lock().await;
        let cur = self.roster.snapshot();
        let mut parts = Parts {
            companies: cur.companies.clone(),
            guards: cur.guards.clone(),
            groups: cur.groups.clone(),
        };
        change(&mut parts)?;
        let next = RosterSnapshot::new(parts.companies, parts.guards, parts.groups);
        // Only problems this edit introduces are refused; an older problem
        // (e.g. from the config) must not block fixing something else.
        let before: HashSet<String> = validate(&cur).into_iter().collect();
        let new_errs: Vec<String> = validate(&next)
            .into_iter()
            .filter(|e| !before.contains(e))
            .collect();
        if !new_errs.is_empty() {
            return Err(RosterError::Invalid(new_errs.join("; ")));
        }
        let (actor, id) = (actor.to_owned(), id.to_owned());
        self.storage
            .call(move |c| {
                let tx = c.transaction()?;
                let table = table_of(kind);
                let action = match &body {
                    Some(b) => {
                        tx.execute(
                            &format!(
                                "INSERT INTO {table} (id, body, source) VALUES (?1, ?2, 'api')
                                 ON CONFLICT(id) DO UPDATE SET body = excluded.body, source = 'api'"
                            ),
                            rusqlite::params![id, b],
                        )?;
                        "upsert"
                    }
                    None => {
                        tx.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [&id])?;
                        "delete"
                    }
                };
                tx.execute(
                    "INSERT INTO audit (ts_ms, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![
                        now_ms(),
                        actor,
                        format!("roster.{kind}.{action}"),
                        id,
                        body.unwrap_or_default()
                    ],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        self.roster.replace(next);
        Ok(())
    }
}

/// The editable parts of a snapshot.
pub struct Parts {
    pub companies: Vec<Company>,
    pub guards: Vec<Guard>,
    pub groups: Vec<Group>,
}

fn found(ok: bool, kind: &'static str, id: &str) -> Result<(), RosterError> {
    if ok {
        Ok(())
    } else {
        Err(RosterError::NotFound {
            kind,
            id: id.to_owned(),
        })
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn table_of(kind: &str) -> &'static str {
    match kind {
        "company" => "roster_companies",
        "group" => "roster_groups",
        _ => "roster_guards",
    }
}

/// Writes config entries (unless the API owns them) and drops config
/// entries that left the config.
fn seed_table(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    entries: impl Iterator<Item = (String, String)>,
) -> Result<(), StorageError> {
    let table = table_of(kind);
    let mut ids = HashSet::new();
    for (id, body) in entries {
        let source: Option<String> = tx
            .query_row(
                &format!("SELECT source FROM {table} WHERE id = ?1"),
                [&id],
                |r| r.get(0),
            )
            .optional()?;
        if source.as_deref() == Some("api") {
            tracing::warn!(kind, id = %id, "roster entry was edited through the API; its config entry is ignored");
        } else {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (id, body, source) VALUES (?1, ?2, 'config')
                     ON CONFLICT(id) DO UPDATE SET body = excluded.body"
                ),
                rusqlite::params![id, body],
            )?;
        }
        ids.insert(id);
    }
    let stored: Vec<String> = tx
        .prepare(&format!("SELECT id FROM {table} WHERE source = 'config'"))?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in stored.into_iter().filter(|i| !ids.contains(i)) {
        tx.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [&id])?;
    }
    Ok(())
}

fn load(c: &rusqlite::Connection) -> Result<RosterSnapshot, StorageError> {
    fn rows<T: serde::de::DeserializeOwned>(
        c: &rusqlite::Connection,
        table: &str,
    ) -> Result<Vec<T>, StorageError> {
        let rows: Vec<Row> = c
            .prepare(&format!(
                "SELECT id, body, source FROM {table} ORDER BY rowid"
            ))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (id, body, _) in rows {
            match serde_json::from_str(&body) {
                Ok(v) => out.push(v),
                // Kept in the table; skipped in the snapshot.
                Err(e) => {
                    tracing::error!(table, id = %id, error = %e, "unreadable roster row skipped")
                }
            }
        }
        Ok(out)
    }
    Ok(RosterSnapshot::new(
        rows(c, "roster_companies")?,
        rows(c, "roster_guards")?,
        rows(c, "roster_groups")?,
    ))
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
    const CFG: &str = r#"
[daemon]
station_id = "st-1"

[[roster.company]]
id = "acme"
name = "Acme Security"
supervisor = "sup-acme"

[[roster.group]]
id = "night"

[[roster.guard]]
id = "g1"
name = "Li"
company = "acme"
dtmf = "101"
groups = ["night"]

[[roster.guard]]
id = "g2"
name = "Wang"
company = "acme"
mdc1200 = "1a2b"
"#;

    fn cfg(src: &str) -> Config {
        crate::config::load_str(src, std::path::Path::new("t.toml")).unwrap()
    }

    #[tokio::test]
    async fn store_seeds_validates_audits_and_keeps_api_edits() {
        let dir = crate::storage::tests_support::tempdir();
        let path = dir.join("db.sqlite");
        let (storage, thread) = crate::storage::open(&path).unwrap();
        let rs = RosterStore::open(storage.clone(), &cfg(CFG)).await.unwrap();
        assert_eq!(rs.list_guards().len(), 2);
        assert_eq!(rs.get_guard("g2").unwrap().mdc1200.as_deref(), Some("1A2B"));

        // A code already used by another guard is refused, nothing changes.
        let mut g3 = rs.get_guard("g1").unwrap();
        g3.id = "g3".into();
        let e = rs.upsert_guard(g3.clone(), "alice").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("dtmf code \"101\" is already used by guard \"g1\""),
            "{e}"
        );
        g3.dtmf = Some("1x".into());
        let e = rs.upsert_guard(g3.clone(), "alice").await.unwrap_err();
        assert!(e.to_string().contains("\"1x\" is not a DTMF PTT-ID"), "{e}");
        g3.dtmf = Some("103".into());
        g3.company = "nobody".into();
        let e = rs.upsert_guard(g3.clone(), "alice").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("company \"nobody\", which is not defined"),
            "{e}"
        );
        assert!(rs.get_guard("g3").is_none());

        // Valid edits: a new guard, and an edit of a config guard.
        g3.company = "acme".into();
        rs.upsert_guard(g3, "alice").await.unwrap();
        let mut g1 = rs.get_guard("g1").unwrap();
        g1.name = "Li Wei".into();
        rs.upsert_guard(g1, "bob").await.unwrap();
        assert_eq!(
            rs.roster()
                .snapshot()
                .guard_by_code("dtmf", "103")
                .unwrap()
                .id,
            "g3"
        );
        // In use: refused with who uses it.
        let e = rs.delete_company("acme", "alice").await.unwrap_err();
        assert!(e.to_string().contains("g1"), "{e}");
        let e = rs.delete_guard("zz", "alice").await.unwrap_err();
        assert_eq!(e.to_string(), "no guard \"zz\"");
        rs.delete_guard("g2", "alice").await.unwrap();

        let audit: Vec<(String, String, String)> = storage
            .call(|c| {
                let mut st = c.prepare("SELECT actor, action, target FROM audit ORDER BY id")?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(
            audit,
            vec![
                ("alice".into(), "roster.guard.upsert".into(), "g3".into()),
                ("bob".into(), "roster.guard.upsert".into(), "g1".into()),
                ("alice".into(), "roster.guard.delete".into(), "g2".into()),
            ]
        );
        drop((rs, storage));
        thread.join().unwrap();

        // Restart with the same config: API edits survive; the deleted
        // config guard g2 comes back from the config (the config still
        // defines it).
        let (storage, thread) = crate::storage::open(&path).unwrap();
        let rs = RosterStore::open(storage.clone(), &cfg(CFG)).await.unwrap();
        assert_eq!(rs.get_guard("g1").unwrap().name, "Li Wei");
        assert!(rs.get_guard("g3").is_some());
        assert!(rs.get_guard("g2").is_some());
        drop((rs, storage));
        thread.join().unwrap();

        // Config without g2: the config entry is dropped; API ones stay.
        let (storage, thread) = crate::storage::open(&path).unwrap();
        let src = CFG.split("[[roster.guard]]\nid = \"g2\"").next().unwrap();
        let rs = RosterStore::open(storage.clone(), &cfg(src)).await.unwrap();
        assert!(rs.get_guard("g2").is_none());
        assert_eq!(rs.list_guards().len(), 2);
        drop((rs, storage));
        thread.join().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
