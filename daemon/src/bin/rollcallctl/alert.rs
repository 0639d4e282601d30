//! `alert …`: send alerts to guards and follow their acknowledgements over
//! `AlertService`.

use clap::Subcommand;
use rollcall_proto::v1 as pb;
use serde_json::json;

use crate::out::*;
use crate::Client;

#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// Send an alert: tone (and clip) on the target's channels, text to the
    /// guards' apps. Give at least one target.
    Send {
        /// The alert text.
        text: String,
        /// routine, urgent or emergency.
        #[arg(long, default_value = "routine")]
        priority: String,
        /// Target channel (repeat).
        #[arg(long = "channel")]
        channels: Vec<String>,
        /// Target company (repeat).
        #[arg(long = "company")]
        companies: Vec<String>,
        /// Target roster group (repeat).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Target guard (repeat).
        #[arg(long = "guard")]
        guards: Vec<String>,
        /// Voice clip (WAV) on the daemon's machine.
        #[arg(long)]
        clip: Option<String>,
        /// Seconds to acknowledge; the station's default when unset.
        #[arg(long)]
        deadline: Option<u32>,
    },
    /// Alerts, newest first.
    List {
        /// Only alerts still taking acknowledgements.
        #[arg(long)]
        open: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One alert with every guard's acknowledgement and each company's rate.
    Show { id: i64 },
    /// Acknowledge on a guard's behalf (he phoned in).
    Ack { id: i64, guard: String },
}

fn alert_json(a: &pb::Alert) -> serde_json::Value {
    let t = a.target.clone().unwrap_or_default();
    json!({
        "id": a.id, "created_ms": a.created_ms, "created_by": a.created_by,
        "text": a.text, "priority": a.priority,
        "target": {
            "channels": t.channels, "companies": t.companies,
            "groups": t.groups, "guards": t.guards,
        },
        "channels": a.channels, "deadline_ms": a.deadline_ms, "close_ms": a.close_ms,
        "closed_ms": a.closed_ms, "total": a.total, "on_time": a.on_time, "late": a.late,
    })
}

pub async fn run(c: &Client, cmd: AlertCmd, json_out: bool) -> CmdResult {
    let mut api = pb::alert_service_client::AlertServiceClient::new(c.channel.clone());
    match cmd {
        AlertCmd::Send {
            text,
            priority,
            channels,
            companies,
            groups,
            guards,
            clip,
            deadline,
        } => {
            if channels.is_empty() && companies.is_empty() && groups.is_empty() && guards.is_empty()
            {
                return Err(CmdError::Usage(
                    "give a target: --channel, --company, --group or --guard".into(),
                ));
            }
            let req = pb::CreateAlertRequest {
                text,
                priority,
                target: Some(pb::AlertTarget {
                    channels,
                    companies,
                    groups,
                    guards,
                }),
                clip_path: clip.unwrap_or_default(),
                deadline_s: deadline.unwrap_or(0),
            };
            let a = api.create(c.request(req)).await?.into_inner();
            if json_out {
                print_json(&alert_json(&a));
            } else {
                println!(
                    "alert {} sent on {} to {} guard(s); acknowledge by {}",
                    a.id,
                    join(&a.channels),
                    a.total,
                    when(a.deadline_ms)
                );
            }
        }
        AlertCmd::List { open, limit } => {
            let list = api
                .list(c.request(pb::ListAlertsRequest {
                    open_only: open,
                    limit,
                }))
                .await?
                .into_inner()
                .alerts;
            if json_out {
                print_json(&json!(list.iter().map(alert_json).collect::<Vec<_>>()));
                return Ok(());
            }
            let mut t = Table::new(&[
                "ALERT", "CREATED", "BY", "PRIORITY", "ACKED", "LATE", "TOTAL", "STATE", "TEXT",
            ]);
            for a in &list {
                t.row(vec![
                    a.id.to_string(),
                    when(a.created_ms),
                    a.created_by.clone(),
                    a.priority.clone(),
                    a.on_time.to_string(),
                    a.late.to_string(),
                    a.total.to_string(),
                    if a.closed_ms == 0 { "open" } else { "closed" }.into(),
                    a.text.clone(),
                ]);
            }
            if t.is_empty() {
                println!("no alerts");
            } else {
                t.print();
            }
        }
        AlertCmd::Show { id } => {
            let d = api
                .get(c.request(pb::GetAlertRequest { id }))
                .await?
                .into_inner();
            let a = d.alert.unwrap_or_default();
            if json_out {
                let guards: Vec<_> = d
                    .guards
                    .iter()
                    .map(|g| {
                        json!({
                            "guard": g.guard, "company": g.company, "state": g.state,
                            "ack_ms": g.ack_ms, "via": g.via, "by": g.by,
                        })
                    })
                    .collect();
                let companies: Vec<_> = d
                    .companies
                    .iter()
                    .map(|r| {
                        json!({
                            "company": r.company, "total": r.total, "on_time": r.on_time,
                            "late": r.late, "missed": r.missed, "rate": r.rate,
                        })
                    })
                    .collect();
                print_json(&json!({
                    "alert": alert_json(&a), "guards": guards, "companies": companies,
                }));
                return Ok(());
            }
            println!(
                "alert {} ({}) by {}: {}",
                a.id, a.priority, a.created_by, a.text
            );
            println!(
                "sent {} on {}  deadline {}  {}",
                when(a.created_ms),
                join(&a.channels),
                when(a.deadline_ms),
                if a.closed_ms == 0 {
                    format!("open until {}", when(a.close_ms))
                } else {
                    format!("closed {}", when(a.closed_ms))
                }
            );
            println!(
                "acknowledged {} on time, {} late, of {}\n",
                a.on_time, a.late, a.total
            );
            let mut t = Table::new(&["GUARD", "COMPANY", "STATE", "AT", "VIA", "BY"]);
            for g in &d.guards {
                t.row(vec![
                    g.guard.clone(),
                    g.company.clone(),
                    g.state.clone(),
                    when(g.ack_ms),
                    dash(&g.via),
                    dash(&g.by),
                ]);
            }
            t.print();
            if !d.companies.is_empty() {
                println!();
                let mut t = Table::new(&["COMPANY", "TOTAL", "ON TIME", "LATE", "MISSED", "RATE"]);
                for r in &d.companies {
                    t.row(vec![
                        r.company.clone(),
                        r.total.to_string(),
                        r.on_time.to_string(),
                        r.late.to_string(),
                        r.missed.to_string(),
                        format!("{:.1}%", r.rate * 100.0),
                    ]);
                }
                t.print();
            }
        }
        AlertCmd::Ack { id, guard } => {
            let r = api
                .acknowledge(c.request(pb::AcknowledgeRequest {
                    alert_id: id,
                    guard: guard.clone(),
                }))
                .await?
                .into_inner();
            if json_out {
                print_json(&json!({ "alert_id": id, "guard": guard, "outcome": r.outcome }));
            } else {
                println!("alert {id}: {guard} {}", r.outcome);
            }
        }
    }
    Ok(())
}
