//! `rollcall …` and `schedule …`: start, watch, show, list and report roll
//! calls, and list their schedules, over `RollCallService`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Subcommand;
use rollcall_proto::v1 as pb;
use serde_json::json;

use crate::out::*;
use crate::Client;

#[derive(Subcommand, Debug)]
pub enum RollcallCmd {
    /// Start a roll call now.
    Start {
        /// Channel to call on.
        #[arg(long)]
        channel: String,
        /// Roster group to call (repeat); every guard when none.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// individual, group or app (repeat); default group.
        #[arg(long = "mode")]
        modes: Vec<String>,
        /// Group/app mode: response window in seconds.
        #[arg(long)]
        window: Option<u64>,
        /// Answers after this many seconds count as late.
        #[arg(long)]
        on_time: Option<u64>,
        /// Individual mode: seconds to wait after each call.
        #[arg(long)]
        reply_window: Option<u64>,
        /// Individual mode: calls after the first.
        #[arg(long)]
        retries: Option<u32>,
        /// Tell supervisors about missed guards.
        #[arg(long)]
        escalate: bool,
        /// Announcement clip (WAV) on the daemon's machine.
        #[arg(long)]
        announcement: Option<String>,
        /// Then watch it until it finishes.
        #[arg(long)]
        watch: bool,
    },
    /// Live progress of a running roll call, until it finishes.
    Watch { run: i64 },
    /// One roll call with every guard's result.
    Show { run: i64 },
    /// Roll calls, newest first.
    List {
        /// running, finished, interrupted or missed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        /// Started on or after (YYYY-MM-DD, "YYYY-MM-DD HH:MM" or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Started before the end of (same forms).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A run's results as CSV, or per-company figures over a date range.
    Report {
        /// The run; omit with --companies.
        #[arg(required_unless_present = "companies", conflicts_with = "companies")]
        run: Option<i64>,
        /// Per-company answer rates over --from/--to instead of one run.
        #[arg(long)]
        companies: bool,
        #[arg(long, requires = "companies")]
        from: Option<String>,
        #[arg(long, requires = "companies")]
        to: Option<String>,
        /// Write the CSV here (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Write the SVG chart of the daily answer rate here.
        #[arg(long, requires = "companies")]
        chart: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Every roll-call schedule.
    List,
}

fn api(
    c: &Client,
) -> pb::roll_call_service_client::RollCallServiceClient<tonic::transport::Channel> {
    pb::roll_call_service_client::RollCallServiceClient::new(c.channel.clone())
}

pub async fn run(c: &Client, cmd: RollcallCmd, json_out: bool) -> CmdResult {
    match cmd {
        RollcallCmd::Start {
            channel,
            groups,
            modes,
            window,
            on_time,
            reply_window,
            retries,
            escalate,
            announcement,
            watch: then_watch,
        } => {
            let modes = if modes.is_empty() {
                vec!["group".to_owned()]
            } else {
                modes
            };
            let req = pb::StartRunRequest {
                channel,
                groups,
                modes,
                options: Some(pb::RunOptions {
                    reply_window_s: reply_window.unwrap_or(0),
                    window_s: window.unwrap_or(0),
                    on_time_s: on_time.unwrap_or(0),
                    retries: retries.unwrap_or(0),
                    escalate,
                }),
                announcement: announcement.unwrap_or_default(),
            };
            let id = api(c).start_run(c.request(req)).await?.into_inner().run_id;
            if json_out {
                print_json(&json!({ "run_id": id }));
            } else {
                println!("started roll call {id}");
            }
            if then_watch {
                watch(c, id, json_out).await?;
            }
            Ok(())
        }
        RollcallCmd::Watch { run } => watch(c, run, json_out).await,
        RollcallCmd::Show { run } => show(c, run, json_out).await,
        RollcallCmd::List {
            state,
            channel,
            from,
            to,
            limit,
        } => {
            let req = pb::ListRunsRequest {
                from_ms: opt_when(&from, "--from", false)?,
                to_ms: opt_when(&to, "--to", true)?,
                channel: channel.unwrap_or_default(),
                state: state.unwrap_or_default(),
                limit,
            };
            let runs = api(c).list_runs(c.request(req)).await?.into_inner().runs;
            if json_out {
                print_json(&json!(runs.iter().map(summary_json).collect::<Vec<_>>()));
                return Ok(());
            }
            let mut t = Table::new(&[
                "RUN", "STARTED", "CHANNEL", "SCHEDULE", "MODES", "STATE", "ANSWERED", "LATE",
                "MISSED",
            ]);
            for r in &runs {
                t.row(vec![
                    r.id.to_string(),
                    when(r.started_ms.max(r.due_ms)),
                    r.channel.clone(),
                    dash(&r.schedule_id),
                    join(&r.modes),
                    r.state.clone(),
                    r.answered.to_string(),
                    r.late.to_string(),
                    r.missed.to_string(),
                ]);
            }
            if t.is_empty() {
                println!("no roll calls");
            } else {
                t.print();
            }
            Ok(())
        }
        RollcallCmd::Report {
            run: Some(id),
            output,
            ..
        } => {
            let rep = api(c)
                .run_report(c.request(pb::RunReportRequest { id }))
                .await?
                .into_inner();
            match output {
                Some(path) => {
                    write_file(&path, &rep.data)?;
                    if json_out {
                        print_json(&json!({ "csv": path, "bytes": rep.data.len() }));
                    } else {
                        println!("wrote {} ({} bytes)", path.display(), rep.data.len());
                    }
                }
                None => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&rep.data)
                        .map_err(|e| CmdError::Local(format!("cannot write the report: {e}")))?;
                }
            }
            Ok(())
        }
        RollcallCmd::Report {
            run: None,
            from,
            to,
            output,
            chart,
            ..
        } => company_report(c, from, to, output, chart, json_out).await,
    }
}

async fn company_report(
    c: &Client,
    from: Option<String>,
    to: Option<String>,
    output: Option<PathBuf>,
    chart: Option<PathBuf>,
    json_out: bool,
) -> CmdResult {
    let req = pb::CompanyReportRequest {
        from_ms: opt_when(&from, "--from", false)?,
        to_ms: opt_when(&to, "--to", true)?,
    };
    let rep = api(c).company_report(c.request(req)).await?.into_inner();
    let mut written = Vec::new();
    if let Some(path) = &output {
        let data = rep.csv.as_ref().map(|r| r.data.as_slice()).unwrap_or(&[]);
        write_file(path, data)?;
        written.push(path.clone());
    }
    if let Some(path) = &chart {
        let data = rep
            .chart_svg
            .as_ref()
            .map(|r| r.data.as_slice())
            .unwrap_or(&[]);
        write_file(path, data)?;
        written.push(path.clone());
    }
    if json_out {
        let companies: Vec<_> = rep
            .companies
            .iter()
            .map(|s| {
                json!({
                    "company": s.company, "name": s.name, "calls": s.calls,
                    "answered": s.answered, "late": s.late, "missed": s.missed,
                    "answer_rate": s.answer_rate, "late_rate": s.late_rate,
                    "mean_answer_s": s.mean_answer_s,
                })
            })
            .collect();
        print_json(&json!({ "companies": companies, "written": written }));
        return Ok(());
    }
    let mut t = Table::new(&[
        "COMPANY", "NAME", "CALLS", "ANSWERED", "LATE", "MISSED", "ANSWER%", "LATE%", "MEAN",
    ]);
    for s in &rep.companies {
        t.row(vec![
            s.company.clone(),
            dash(&s.name),
            s.calls.to_string(),
            s.answered.to_string(),
            s.late.to_string(),
            s.missed.to_string(),
            format!("{:.1}", s.answer_rate * 100.0),
            format!("{:.1}", s.late_rate * 100.0),
            format!("{:.1}s", s.mean_answer_s),
        ]);
    }
    if t.is_empty() {
        println!("no roll calls in that range");
    } else {
        t.print();
    }
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn summary_json(r: &pb::RunSummary) -> serde_json::Value {
    json!({
        "id": r.id, "schedule_id": r.schedule_id, "channel": r.channel,
        "groups": r.groups, "modes": r.modes, "state": r.state, "reason": r.reason,
        "started_ms": r.started_ms, "finished_ms": r.finished_ms, "due_ms": r.due_ms,
        "answered": r.answered, "late": r.late, "missed": r.missed,
        "interrupted": r.interrupted,
    })
}

async fn show(c: &Client, id: i64, json_out: bool) -> CmdResult {
    let d = api(c)
        .get_run(c.request(pb::GetRunRequest { id }))
        .await?
        .into_inner();
    let r = d.run.unwrap_or_default();
    if json_out {
        let results: Vec<_> = d
            .results
            .iter()
            .map(|g| {
                json!({
                    "guard": g.guard, "name": g.name, "company": g.company,
                    "outcome": g.outcome, "answered_ms": g.answered_ms, "via": g.via,
                    "code": g.code, "recording_id": g.recording_id, "calls": g.calls,
                })
            })
            .collect();
        let unknown: Vec<_> = d
            .unknown
            .iter()
            .map(|u| json!({ "ts_ms": u.ts_ms, "kind": u.kind, "unit": u.unit }))
            .collect();
        print_json(&json!({ "run": summary_json(&r), "results": results, "unknown": unknown }));
        return Ok(());
    }
    println!(
        "roll call {}  on {}  {}  modes {}  groups {}",
        r.id,
        r.channel,
        r.state,
        join(&r.modes),
        join(&r.groups)
    );
    println!(
        "started {}  finished {}{}",
        when(r.started_ms),
        when(r.finished_ms),
        if r.reason.is_empty() {
            String::new()
        } else {
            format!("  ({})", r.reason)
        }
    );
    println!(
        "answered {}  late {}  missed {}  interrupted {}\n",
        r.answered, r.late, r.missed, r.interrupted
    );
    let mut t = Table::new(&[
        "GUARD",
        "NAME",
        "COMPANY",
        "OUTCOME",
        "AFTER",
        "VIA",
        "CODE",
        "RECORDING",
    ]);
    for g in &d.results {
        t.row(vec![
            g.guard.clone(),
            g.name.clone(),
            g.company.clone(),
            g.outcome.clone(),
            if g.answered_ms > 0 && r.started_ms > 0 {
                secs(g.answered_ms - r.started_ms)
            } else {
                "-".into()
            },
            dash(&g.via),
            dash(&g.code),
            if g.recording_id > 0 {
                g.recording_id.to_string()
            } else {
                "-".into()
            },
        ]);
    }
    t.print();
    if !d.unknown.is_empty() {
        println!("\nunknown identities heard:");
        for u in &d.unknown {
            println!("  {}  {} {}", when(u.ts_ms), u.kind, u.unit);
        }
    }
    Ok(())
}

/// Counts per outcome, kept per guard so an event seen both in the
/// starting snapshot and on the stream is not counted twice.
#[derive(Default)]
struct Progress {
    outcome: BTreeMap<String, String>,
}

impl Progress {
    fn count(&self, outcome: &str) -> usize {
        self.outcome.values().filter(|o| *o == outcome).count()
    }

    fn line(&self) -> String {
        format!(
            "answered {}  late {}  missed {}  pending {}",
            self.count("answered"),
            self.count("late"),
            self.count("missed"),
            self.count("pending")
        )
    }

    fn counters(&self) -> serde_json::Value {
        json!({
            "answered": self.count("answered"), "late": self.count("late"),
            "missed": self.count("missed"), "pending": self.count("pending"),
        })
    }
}

async fn watch(c: &Client, id: i64, json_out: bool) -> CmdResult {
    // Subscribe first, then read the snapshot: nothing falls between them.
    let mut stream = match api(c)
        .watch_run(c.request(pb::WatchRunRequest { id }))
        .await
    {
        Ok(s) => s.into_inner(),
        // Already over: show where it ended instead of failing.
        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
            if !json_out {
                println!("roll call {id} has already ended");
            }
            return show(c, id, json_out).await;
        }
        Err(s) => return Err(s.into()),
    };
    let detail = api(c)
        .get_run(c.request(pb::GetRunRequest { id }))
        .await?
        .into_inner();
    let started_ms = detail.run.as_ref().map(|r| r.started_ms).unwrap_or(0);
    let mut p = Progress::default();
    for g in &detail.results {
        p.outcome.insert(g.guard.clone(), g.outcome.clone());
    }
    if json_out {
        print_json(&json!({ "type": "snapshot", "run_id": id, "counters": p.counters() }));
    } else {
        println!("watching roll call {id}: {}", p.line());
    }
    let mut finished = false;
    while let Some(msg) = stream.message().await? {
        let ev: serde_json::Value = serde_json::from_str(&msg.json).unwrap_or_default();
        let s = |k: &str| ev.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        let offset = |ev: &serde_json::Value| {
            ev.get("offset_ms").and_then(|v| v.as_i64()).or_else(|| {
                let ts = ev.get("ts_ms").and_then(|v| v.as_i64())?;
                (started_ms > 0).then(|| ts - started_ms)
            })
        };
        let text = match msg.kind.as_str() {
            "rollcall_guard_closed" => {
                p.outcome.insert(s("guard"), s("outcome"));
                Some(format!(
                    "{:<10} {:<12} {}",
                    s("guard"),
                    s("outcome"),
                    p.line()
                ))
            }
            "rollcall_answer_heard" => Some(format!(
                "{:<10} heard {} {}{}",
                s("guard"),
                s("kind"),
                s("unit"),
                offset(&ev)
                    .map(|o| format!(" at +{}", secs(o)))
                    .unwrap_or_default()
            )),
            "rollcall_guard_called" => Some(format!("{:<10} called ({})", s("guard"), s("how"))),
            "rollcall_unknown_ani" => Some(format!("unknown identity {} {}", s("kind"), s("unit"))),
            "rollcall_finished" => {
                finished = true;
                Some(format!("roll call {id} {}: {}", s("state"), p.line()))
            }
            _ => None,
        };
        if json_out {
            print_json(&json!({
                "type": msg.kind, "event": ev, "counters": p.counters(),
            }));
        } else if let Some(text) = text {
            println!("{text}");
        }
        if finished {
            break;
        }
    }
    if !finished {
        return Err(CmdError::Local(format!(
            "the daemon ended the watch of roll call {id} before it finished"
        )));
    }
    Ok(())
}

pub async fn schedules(c: &Client, cmd: ScheduleCmd, json_out: bool) -> CmdResult {
    let ScheduleCmd::List = cmd;
    let list = api(c)
        .list_schedules(c.request(pb::ListSchedulesRequest {}))
        .await?
        .into_inner()
        .schedules;
    if json_out {
        let v: Vec<_> = list
            .iter()
            .map(|s| {
                let o = s.options.unwrap_or_default();
                json!({
                    "id": s.id, "name": s.name, "channel": s.channel, "groups": s.groups,
                    "times": s.times, "days": s.days, "time_zone": s.time_zone,
                    "modes": s.modes, "announcement": s.announcement, "grace_s": s.grace_s,
                    "enabled": s.enabled,
                    "options": {
                        "reply_window_s": o.reply_window_s, "window_s": o.window_s,
                        "on_time_s": o.on_time_s, "retries": o.retries, "escalate": o.escalate,
                    },
                })
            })
            .collect();
        print_json(&json!(v));
        return Ok(());
    }
    let mut t = Table::new(&[
        "SCHEDULE", "NAME", "CHANNEL", "TIMES", "DAYS", "MODES", "GROUPS", "ENABLED",
    ]);
    for s in &list {
        t.row(vec![
            s.id.clone(),
            dash(&s.name),
            s.channel.clone(),
            join(&s.times),
            join(&s.days),
            join(&s.modes),
            join(&s.groups),
            if s.enabled { "yes" } else { "no" }.into(),
        ]);
    }
    if t.is_empty() {
        println!("no schedules");
    } else {
        t.print();
    }
    Ok(())
}
