//! MQTT topics and JSON payloads (documented in `docs/mqtt.md`), as pure
//! functions: bus events in, messages out; inbound bytes in, validated
//! requests or an [`InboundError`] out. No I/O, no clock, never panics on
//! input.
//!
//! Every payload is a JSON object with `"v": 1`. Messages that matter carry a
//! `msg_id` derived from the event's sequence number, so a re-send after a
//! broker outage or a daemon restart has the same id and consumers can drop
//! duplicates.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::alerts::{AlertTarget, Priority};
use crate::roster::RosterSnapshot;

/// Schema version in every payload.
pub const VERSION: u64 = 1;
/// Largest inbound payload read; bigger ones are refused unread.
pub const MAX_INBOUND: usize = 16 * 1024;

/// Topic names under `<prefix>/<station>`.
#[derive(Debug, Clone)]
pub struct Topics {
    pub base: String,
    pub station: String,
}

impl Topics {
    pub fn new(prefix: &str, station: &str) -> Topics {
        Topics {
            base: format!("{prefix}/{station}"),
            station: station.into(),
        }
    }
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
    pub fn events(&self) -> String {
        format!("{}/events", self.base)
    }
    pub fn link(&self, id: &str) -> String {
        format!("{}/links/{id}", self.base)
    }
    pub fn ack_filter(&self) -> String {
        format!("{}/ack/+", self.base)
    }
    pub fn cmd_filter(&self) -> String {
        format!("{}/cmd/#", self.base)
    }
    pub fn cmd_result(&self) -> String {
        format!("{}/cmd/result", self.base)
    }
}

/// Retained station status; `online = false` is also the last will.
pub fn status(topics: &Topics, online: bool, version: &str) -> Vec<u8> {
    json!({
        "v": VERSION,
        "station": topics.station,
        "state": if online { "online" } else { "offline" },
        "version": version,
    })
    .to_string()
    .into_bytes()
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMsg {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Kept in the outbox and sent QoS 1 until the broker acknowledges it.
    pub durable: bool,
    pub retain: bool,
    /// Empty for non-durable messages.
    pub msg_id: String,
}

/// The messages one stored event becomes. `event` is the event's JSON as
/// the bus serialises it (`type` plus its fields).
pub fn outbound(topics: &Topics, seq: i64, ts_ms: i64, event: &Value) -> Vec<OutMsg> {
    let Some(obj) = event.as_object() else {
        return Vec::new();
    };
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let msg_id = format!("{}-{seq}", topics.station);
    let mut body = Map::new();
    body.insert("v".into(), VERSION.into());
    body.insert("msg_id".into(), msg_id.clone().into());
    body.insert("station".into(), topics.station.clone().into());
    body.insert("seq".into(), seq.into());
    body.insert("ts_ms".into(), ts_ms.into());
    for (k, v) in obj {
        body.insert(k.clone(), v.clone());
    }
    let body = Value::Object(body);
    let mut out = vec![OutMsg {
        topic: topics.events(),
        payload: body.to_string().into_bytes(),
        durable: false,
        retain: false,
        msg_id: msg_id.clone(),
    }];
    let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("");
    let durable = |topic: String, payload: &Value, id: String| OutMsg {
        topic,
        payload: payload.to_string().into_bytes(),
        durable: true,
        retain: false,
        msg_id: id,
    };
    match kind {
        "link_up" | "link_down" => {
            let link = s("link");
            if valid_level(link) {
                out.push(OutMsg {
                    topic: topics.link(link),
                    payload: json!({
                        "v": VERSION,
                        "station": topics.station,
                        "link": link,
                        "state": if kind == "link_up" { "up" } else { "down" },
                        "reason": obj.get("reason").cloned().unwrap_or(Value::Null),
                        "ts_ms": ts_ms,
                    })
                    .to_string()
                    .into_bytes(),
                    durable: false,
                    retain: true,
                    msg_id: String::new(),
                });
            }
        }
        k if k.starts_with("rollcall_") => {
            let run = match obj.get("run_id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => "unknown".into(),
            };
            if valid_level(&run) {
                out.push(durable(
                    format!("{}/rollcall/{run}", topics.base),
                    &body,
                    msg_id.clone(),
                ));
            }
            // App mode: the guard's app is asked to answer.
            let guard = s("guard");
            if k == "rollcall_app_request" && valid_level(guard) {
                let id_g = format!("{msg_id}-{guard}");
                out.push(durable(
                    format!("{}/guards/{guard}/rollcall", topics.base),
                    &json!({
                        "v": VERSION,
                        "msg_id": id_g,
                        "station": topics.station,
                        "kind": "rollcall",
                        "run_id": obj.get("run_id").cloned().unwrap_or(Value::Null),
                        "ack_topic": format!("{}/ack/{guard}", topics.base),
                        "ts_ms": ts_ms,
                    }),
                    id_g.clone(),
                ));
            }
            if k == "rollcall_escalation" {
                let company = s("company");
                if valid_level(company) {
                    let id_s = format!("{msg_id}-s");
                    let mut b = body.clone();
                    b["msg_id"] = id_s.clone().into();
                    out.push(durable(
                        format!("{}/supervisors/{company}", topics.base),
                        &b,
                        id_s,
                    ));
                }
            }
        }
        k if k.starts_with("alert_") => {
            let Some(id) = obj.get("alert_id").and_then(Value::as_i64) else {
                return out;
            };
            out.push(durable(
                format!("{}/alerts/{id}", topics.base),
                &body,
                msg_id.clone(),
            ));
            // The guard's app gets the text (new alert, reminder).
            let notice = match k {
                "alert_created" => Some("alert"),
                "alert_reminder" => Some("reminder"),
                _ => None,
            };
            if let Some(notice) = notice {
                let guards = obj.get("guards").and_then(Value::as_array);
                for g in guards.into_iter().flatten().filter_map(Value::as_str) {
                    if !valid_level(g) {
                        continue;
                    }
                    let id_g = format!("{msg_id}-{g}");
                    out.push(durable(
                        format!("{}/guards/{g}/alerts", topics.base),
                        &json!({
                            "v": VERSION,
                            "msg_id": id_g,
                            "station": topics.station,
                            "kind": notice,
                            "alert_id": id,
                            "text": obj.get("text").cloned().unwrap_or(Value::Null),
                            "priority": obj.get("priority").cloned().unwrap_or(Value::Null),
                            "deadline_ms": obj.get("deadline_ms").cloned().unwrap_or(Value::Null),
                            "ack_topic": format!("{}/ack/{g}", topics.base),
                            "ts_ms": ts_ms,
                        }),
                        id_g.clone(),
                    ));
                }
            }
            if k == "alert_escalated" {
                let company = s("company");
                if valid_level(company) {
                    let id_s = format!("{msg_id}-s");
                    let mut b = body.clone();
                    b["msg_id"] = id_s.clone().into();
                    out.push(durable(
                        format!("{}/supervisors/{company}", topics.base),
                        &b,
                        id_s,
                    ));
                }
            }
        }
        _ => {}
    }
    out
}

/// A topic level we may publish under: non-empty, no wildcard or separator.
pub fn valid_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

/// A validated inbound request.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Guard (roster id) acknowledges an alert from his app.
    Ack { guard: String, alert_id: i64 },
    /// Guard answers a roll call from his app (`run_id` instead of
    /// `alert_id`); `app_id` is the app id the roll call asked.
    RollcallAck {
        guard: String,
        app_id: String,
        run_id: i64,
    },
    /// `cmd/alert`: create an alert.
    CreateAlert {
        text: String,
        priority: Priority,
        target: AlertTarget,
        deadline: Option<std::time::Duration>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("payload of {0} bytes is larger than the {MAX_INBOUND} allowed")]
    TooLarge(usize),
    #[error("payload is not valid JSON for this topic: {0}")]
    BadJson(String),
    #[error("unsupported schema version {0}; this daemon speaks v {VERSION}")]
    Version(u64),
    #[error("unknown guard \"{0}\" (neither a roster id nor an app id)")]
    UnknownGuard(String),
    #[error("guard \"{0}\" has no app id in the roster, so he cannot answer roll calls by app")]
    NoAppId(String),
    #[error("remote commands are disabled ([mqtt] commands = false)")]
    CommandsDisabled,
    #[error("no handler for this topic")]
    UnknownTopic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckMsg {
    v: u64,
    /// Exactly one of `alert_id` (an alert) and `run_id` (a roll call).
    #[serde(default)]
    alert_id: Option<i64>,
    #[serde(default)]
    run_id: Option<i64>,
    /// The app's own id for the message; accepted, not used.
    #[serde(default)]
    #[allow(dead_code)]
    msg_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertCmd {
    v: u64,
    text: String,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    target: AlertTarget,
    #[serde(default)]
    deadline_min: Option<u32>,
    /// Finer than `deadline_min` (drills, tests); wins when both are set.
    #[serde(default)]
    deadline_s: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    msg_id: Option<String>,
}

/// Parses a JSON object (serde would also take an array for a struct).
fn parse_object<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, InboundError> {
    let bad = |e: serde_json::Error| InboundError::BadJson(e.to_string());
    let value: Value = serde_json::from_slice(payload).map_err(bad)?;
    if !value.is_object() {
        return Err(InboundError::BadJson("expected a JSON object".into()));
    }
    serde_json::from_value(value).map_err(bad)
}

fn check_version(v: u64) -> Result<(), InboundError> {
    if v == VERSION {
        Ok(())
    } else {
        Err(InboundError::Version(v))
    }
}

/// Validates an inbound message on `topic` (full topic name).
pub fn parse_inbound(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
    roster: &RosterSnapshot,
    commands: bool,
) -> Result<Inbound, InboundError> {
    let rest = topic
        .strip_prefix(topics.base.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(InboundError::UnknownTopic)?;
    if payload.len() > MAX_INBOUND {
        return Err(InboundError::TooLarge(payload.len()));
    }
    if let Some(who) = rest.strip_prefix("ack/") {
        let msg: AckMsg = parse_object(payload)?;
        check_version(msg.v)?;
        let guard = roster
            .guard(who)
            .or_else(|| roster.guard_by_code("app", who))
            .ok_or_else(|| InboundError::UnknownGuard(who.into()))?;
        return match (msg.alert_id, msg.run_id) {
            (Some(alert_id), None) => Ok(Inbound::Ack {
                guard: guard.id.clone(),
                alert_id,
            }),
            (None, Some(run_id)) => match &guard.app_id {
                Some(app_id) => Ok(Inbound::RollcallAck {
                    guard: guard.id.clone(),
                    app_id: app_id.clone(),
                    run_id,
                }),
                None => Err(InboundError::NoAppId(guard.id.clone())),
            },
            _ => Err(InboundError::BadJson(
                "an ack names exactly one of alert_id and run_id".into(),
            )),
        };
    }
    if rest.starts_with("cmd/") {
        if rest == "cmd/result" {
            // Our own replies echo back through the `cmd/#` subscription.
            return Err(InboundError::UnknownTopic);
        }
        if !commands {
            return Err(InboundError::CommandsDisabled);
        }
        if rest == "cmd/alert" {
            let msg: AlertCmd = parse_object(payload)?;
            check_version(msg.v)?;
            return Ok(Inbound::CreateAlert {
                text: msg.text,
                priority: msg.priority,
                target: msg.target,
                deadline: msg
                    .deadline_s
                    .map(|s| std::time::Duration::from_secs(s.into()))
                    .or(msg
                        .deadline_min
                        .map(|m| std::time::Duration::from_secs(u64::from(m) * 60))),
            });
        }
    }
    Err(InboundError::UnknownTopic)
}

#[cfg(test)]
mod tests;
