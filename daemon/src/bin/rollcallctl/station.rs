//! Station-wide commands: `status`, `patch on|off`, `roster list`, and
//! `recordings search|fetch`.

use std::path::PathBuf;

use clap::Subcommand;
use rollcall_proto::v1 as pb;
use serde_json::json;

use crate::out::*;
use crate::Client;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum RosterCmd {
    /// Companies, guards and groups.
    List,
}

#[derive(Subcommand, Debug)]
pub enum RecordingsCmd {
    /// Recordings, newest first; filters combine.
    Search {
        #[arg(long)]
        channel: Option<String>,
        /// Started on or after (YYYY-MM-DD, "YYYY-MM-DD HH:MM" or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Started before the end of (same forms).
        #[arg(long)]
        to: Option<String>,
        /// Radio unit id heard, e.g. 101 or 1A03.
        #[arg(long)]
        ani: Option<String>,
        #[arg(long)]
        guard: Option<String>,
        /// rx or tx.
        #[arg(long)]
        direction: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Paging: only recordings older than this id.
        #[arg(long)]
        before: Option<i64>,
    },
    /// Download one recording (Ogg Opus).
    Fetch {
        id: i64,
        /// Where to write the .ogg file.
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn station_api(
    c: &Client,
) -> pb::station_service_client::StationServiceClient<tonic::transport::Channel> {
    pb::station_service_client::StationServiceClient::new(c.channel.clone())
}

pub async fn status(c: &Client, json_out: bool) -> CmdResult {
    let s = station_api(c)
        .get_status(c.request(pb::GetStatusRequest {}))
        .await?
        .into_inner();
    if json_out {
        let links: Vec<_> = s
            .links
            .iter()
            .map(|l| {
                json!({
                    "id": l.id, "kind": l.kind,
                    "state": link_state(l.state), "reason": l.reason,
                    "cor": l.cor, "ptt": l.ptt, "since_ms": l.since_ms,
                })
            })
            .collect();
        let channels: Vec<_> = s
            .channels
            .iter()
            .map(|c| json!({"id": c.id, "name": c.name, "links": c.links, "state": c.state}))
            .collect();
        print_json(&json!({
            "station_id": s.station_id, "version": s.version,
            "uptime_seconds": s.uptime_seconds, "time_zone": s.time_zone,
            "links": links, "channels": channels,
        }));
        return Ok(());
    }
    println!(
        "station {}  rollcalld {}  up {}  ({})",
        s.station_id,
        s.version,
        human_duration(s.uptime_seconds),
        s.time_zone
    );
    if s.links.is_empty() {
        println!("no links configured");
    } else {
        println!();
        let mut t = Table::new(&["LINK", "KIND", "STATE", "COR", "PTT", "SINCE", "REASON"]);
        for l in &s.links {
            t.row(vec![
                l.id.clone(),
                l.kind.clone(),
                link_state(l.state).into(),
                if l.cor { "on" } else { "-" }.into(),
                if l.ptt { "on" } else { "-" }.into(),
                when(l.since_ms),
                l.reason.clone(),
            ]);
        }
        t.print();
    }
    if !s.channels.is_empty() {
        println!();
        let mut t = Table::new(&["CHANNEL", "NAME", "STATE", "LINKS"]);
        for ch in &s.channels {
            t.row(vec![
                ch.id.clone(),
                dash(&ch.name),
                ch.state.clone(),
                ch.links.join(", "),
            ]);
        }
        t.print();
    }
    Ok(())
}

fn link_state(v: i32) -> &'static str {
    match pb::LinkState::try_from(v) {
        Ok(pb::LinkState::Up) => "up",
        Ok(pb::LinkState::Down) => "down",
        Ok(pb::LinkState::Starting) => "starting",
        _ => "unknown",
    }
}

pub async fn patch(c: &Client, state: OnOff, a: String, b: String, json_out: bool) -> CmdResult {
    let enabled = matches!(state, OnOff::On);
    let active = station_api(c)
        .set_patch(c.request(pb::SetPatchRequest {
            channel_a: a,
            channel_b: b,
            enabled,
        }))
        .await?
        .into_inner()
        .active;
    if json_out {
        print_json(&json!({ "active": active }));
    } else if active.is_empty() {
        println!("no patches active");
    } else {
        println!("patches active: {}", active.join(", "));
    }
    Ok(())
}

pub async fn roster(c: &Client, cmd: RosterCmd, json_out: bool) -> CmdResult {
    let RosterCmd::List = cmd;
    let r = pb::roster_service_client::RosterServiceClient::new(c.channel.clone())
        .list(c.request(pb::ListRosterRequest {}))
        .await?
        .into_inner();
    if json_out {
        let companies: Vec<_> = r
            .companies
            .iter()
            .map(|x| {
                json!({
                    "id": x.id, "name": x.name, "supervisor": x.supervisor,
                    "supervisor_phone": x.supervisor_phone,
                })
            })
            .collect();
        let guards: Vec<_> = r
            .guards
            .iter()
            .map(|g| {
                json!({
                    "id": g.id, "name": g.name, "company": g.company, "post": g.post,
                    "dtmf": g.dtmf, "selcall": g.selcall, "mdc1200": g.mdc1200,
                    "dmr": g.dmr, "app_id": g.app_id, "groups": g.groups,
                })
            })
            .collect();
        let groups: Vec<_> = r
            .groups
            .iter()
            .map(|g| json!({ "id": g.id, "name": g.name }))
            .collect();
        print_json(&json!({ "companies": companies, "guards": guards, "groups": groups }));
        return Ok(());
    }
    let mut t = Table::new(&["COMPANY", "NAME", "SUPERVISOR", "PHONE"]);
    for x in &r.companies {
        t.row(vec![
            x.id.clone(),
            x.name.clone(),
            dash(&x.supervisor),
            dash(&x.supervisor_phone),
        ]);
    }
    t.print();
    println!();
    let mut t = Table::new(&["GUARD", "NAME", "COMPANY", "POST", "IDS", "GROUPS"]);
    for g in &r.guards {
        let mut ids = Vec::new();
        for (kind, v) in [
            ("dtmf", &g.dtmf),
            ("selcall", &g.selcall),
            ("mdc1200", &g.mdc1200),
            ("app", &g.app_id),
        ] {
            if !v.is_empty() {
                ids.push(format!("{kind}:{v}"));
            }
        }
        if g.dmr != 0 {
            ids.push(format!("dmr:{}", g.dmr));
        }
        t.row(vec![
            g.id.clone(),
            g.name.clone(),
            g.company.clone(),
            dash(&g.post),
            join(&ids),
            join(&g.groups),
        ]);
    }
    t.print();
    if !r.groups.is_empty() {
        println!();
        let mut t = Table::new(&["GROUP", "NAME"]);
        for g in &r.groups {
            t.row(vec![g.id.clone(), dash(&g.name)]);
        }
        t.print();
    }
    Ok(())
}

fn recording_json(r: &pb::Recording) -> serde_json::Value {
    json!({
        "id": r.id, "channel": r.channel, "link": r.link, "direction": r.direction,
        "source": r.source, "start_ms": r.start_ms, "duration_ms": r.duration_ms,
        "ani_kind": r.ani_kind, "ani": r.ani, "guard": r.guard, "bytes": r.bytes,
    })
}

pub async fn recordings(c: &Client, cmd: RecordingsCmd, json_out: bool) -> CmdResult {
    let mut api = pb::recording_service_client::RecordingServiceClient::new(c.channel.clone());
    match cmd {
        RecordingsCmd::Search {
            channel,
            from,
            to,
            ani,
            guard,
            direction,
            limit,
            before,
        } => {
            let req = pb::SearchRecordingsRequest {
                channel: channel.unwrap_or_default(),
                from_ms: opt_when(&from, "--from", false)?,
                to_ms: opt_when(&to, "--to", true)?,
                ani: ani.unwrap_or_default(),
                guard: guard.unwrap_or_default(),
                direction: direction.unwrap_or_default(),
                limit,
                before_id: before.unwrap_or(0),
            };
            let list = api.search(c.request(req)).await?.into_inner().recordings;
            if json_out {
                print_json(&json!(list.iter().map(recording_json).collect::<Vec<_>>()));
                return Ok(());
            }
            let mut t = Table::new(&[
                "ID", "START", "LENGTH", "CHANNEL", "LINK", "DIR", "SOURCE", "ANI", "GUARD",
                "BYTES",
            ]);
            for r in &list {
                t.row(vec![
                    r.id.to_string(),
                    when(r.start_ms),
                    secs(r.duration_ms),
                    r.channel.clone(),
                    dash(&r.link),
                    r.direction.clone(),
                    r.source.clone(),
                    if r.ani.is_empty() {
                        "-".into()
                    } else {
                        format!("{} {}", r.ani_kind, r.ani)
                    },
                    dash(&r.guard),
                    r.bytes.to_string(),
                ]);
            }
            if t.is_empty() {
                println!("no recordings");
            } else {
                t.print();
            }
            Ok(())
        }
        RecordingsCmd::Fetch { id, output } => {
            let mut stream = api
                .fetch(c.request(pb::FetchRecordingRequest { id }))
                .await?
                .into_inner();
            // Collect the chunks first: a stream broken half-way must not
            // leave a truncated .ogg under the asked name.
            let mut data = Vec::new();
            let mut meta = None;
            while let Some(chunk) = stream.message().await? {
                if meta.is_none() {
                    meta = chunk.recording;
                }
                data.extend_from_slice(&chunk.data);
            }
            if let Some(m) = &meta {
                if m.bytes > 0 && m.bytes as usize != data.len() {
                    return Err(CmdError::Local(format!(
                        "recording {id}: got {} bytes of {}",
                        data.len(),
                        m.bytes
                    )));
                }
            }
            write_file(&output, &data)?;
            if json_out {
                let mut v = json!({ "id": id, "file": output, "bytes": data.len() });
                if let Some(m) = &meta {
                    v["recording"] = recording_json(m);
                }
                print_json(&v);
            } else {
                println!("wrote {} ({} bytes)", output.display(), data.len());
            }
            Ok(())
        }
    }
}
