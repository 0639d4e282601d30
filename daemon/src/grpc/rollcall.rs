//! `rollcall.v1.RollCallService` and `rollcall.v1.RosterService`, over the
//! daemon's [`RollcallService`](crate::rollcall::RollcallService) and
//! [`RosterStore`](crate::roster::RosterStore).

use std::pin::Pin;

use jiff::Timestamp;
use rollcall_proto::v1 as pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::caller;
use super::ApiContext;
use crate::config::RollcallMode;
use crate::rollcall::{RollcallError, RunFilter, RunOptions, RunSummary, ScheduleSpec, StartRun};
use crate::roster::{Company, Group, Guard, RosterError};

pub struct RollcallApi {
    pub cx: ApiContext,
}

pub struct RosterApi {
    pub cx: ApiContext,
}

fn rc_status(e: RollcallError) -> Status {
    match e {
        RollcallError::NoSuchSchedule(_) => Status::not_found(e.to_string()),
        RollcallError::Storage(_) => Status::unavailable(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

fn roster_status(e: RosterError) -> Status {
    match e {
        RosterError::NotFound { .. } => Status::not_found(e.to_string()),
        RosterError::InUse { .. } => Status::failed_precondition(e.to_string()),
        RosterError::Storage(_) => Status::unavailable(e.to_string()),
        RosterError::Invalid(_) => Status::invalid_argument(e.to_string()),
    }
}

fn service(cx: &ApiContext) -> Result<&crate::rollcall::RollcallService, Status> {
    cx.rollcall
        .as_ref()
        .ok_or_else(|| Status::unavailable("roll calls are not running"))
}

fn roster(cx: &ApiContext) -> Result<&crate::roster::RosterStore, Status> {
    cx.roster_store
        .as_ref()
        .ok_or_else(|| Status::unavailable("the roster store is not running"))
}

fn modes(names: &[String]) -> Result<Vec<RollcallMode>, Status> {
    names
        .iter()
        .map(|m| match m.as_str() {
            "individual" => Ok(RollcallMode::Individual),
            "group" => Ok(RollcallMode::Group),
            "app" => Ok(RollcallMode::App),
            other => Err(Status::invalid_argument(format!(
                "mode \"{other}\" is not individual, group or app"
            ))),
        })
        .collect()
}

fn ts(ms: i64) -> Result<Option<Timestamp>, Status> {
    if ms == 0 {
        return Ok(None);
    }
    Timestamp::from_millisecond(ms)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("time {ms} ms: {e}")))
}

/// Request options over the station defaults: a 0 field keeps the default.
fn options(cx: &ApiContext, o: Option<pb::RunOptions>) -> RunOptions {
    let mut out = RunOptions::from_defaults(&cx.config.rollcall.defaults);
    if let Some(o) = o {
        if o.reply_window_s > 0 {
            out.reply_window_s = o.reply_window_s;
        }
        if o.window_s > 0 {
            out.window_s = o.window_s;
        }
        if o.on_time_s > 0 {
            out.on_time_s = o.on_time_s;
        }
        if o.retries > 0 {
            out.retries = o.retries;
        }
        out.escalate = o.escalate || out.escalate;
    }
    out
}

fn options_pb(o: &RunOptions) -> pb::RunOptions {
    pb::RunOptions {
        reply_window_s: o.reply_window_s,
        window_s: o.window_s,
        on_time_s: o.on_time_s,
        retries: o.retries,
        escalate: o.escalate,
    }
}

fn summary_pb(r: RunSummary) -> pb::RunSummary {
    pb::RunSummary {
        id: r.id,
        schedule_id: r.schedule_id.unwrap_or_default(),
        channel: r.channel,
        groups: r.groups,
        modes: r.modes.iter().map(|m| m.as_str().to_owned()).collect(),
        state: r.state,
        reason: r.reason.unwrap_or_default(),
        started_ms: r.started_ms,
        finished_ms: r.finished_ms.unwrap_or(0),
        answered: r.answered,
        late: r.late,
        missed: r.missed,
        interrupted: r.interrupted,
        due_ms: r.due_ms.unwrap_or(0),
    }
}

fn schedule_pb(s: &ScheduleSpec) -> pb::Schedule {
    pb::Schedule {
        id: s.id.clone(),
        name: s.name.clone(),
        channel: s.channel.clone(),
        groups: s.groups.clone(),
        times: s.times.clone(),
        days: s.days.clone(),
        time_zone: s.time_zone.clone(),
        modes: s.modes.iter().map(|m| m.as_str().to_owned()).collect(),
        announcement: s
            .announcement
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        options: Some(options_pb(&s.options)),
        grace_s: s.grace_s,
        enabled: s.enabled,
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::roll_call_service_server::RollCallService for RollcallApi {
    async fn list_schedules(
        &self,
        _r: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let list = service(&self.cx)?
            .list_schedules()
            .await
            .map_err(rc_status)?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: list.iter().map(|s| schedule_pb(&s.spec)).collect(),
        }))
    }

    async fn upsert_schedule(
        &self,
        request: Request<pb::Schedule>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let who = caller(&request);
        let s = request.into_inner();
        if s.id.is_empty() || !crate::config::is_ident(&s.id) {
            return Err(Status::invalid_argument(format!(
                "schedule id \"{}\" is not valid; use 1–64 letters, digits, '-' or '_'",
                s.id
            )));
        }
        let spec = ScheduleSpec {
            id: s.id.clone(),
            name: if s.name.is_empty() {
                s.id.clone()
            } else {
                s.name
            },
            channel: s.channel,
            groups: s.groups,
            times: s.times,
            days: if s.days.is_empty() {
                vec!["daily".into()]
            } else {
                s.days
            },
            time_zone: if s.time_zone.is_empty() {
                self.cx.config.daemon.time_zone.clone()
            } else {
                s.time_zone
            },
            modes: modes(&s.modes)?,
            announcement: (!s.announcement.is_empty()).then(|| s.announcement.into()),
            call_clip: None,
            options: options(&self.cx, s.options),
            grace_s: if s.grace_s == 0 {
                self.cx.config.rollcall.defaults.grace_s
            } else {
                s.grace_s
            },
            enabled: s.enabled,
        };
        let out = schedule_pb(&spec);
        service(&self.cx)?
            .upsert_schedule(spec, &who.name)
            .await
            .map_err(rc_status)?;
        Ok(Response::new(out))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let who = caller(&request);
        let id = request.into_inner().id;
        service(&self.cx)?
            .delete_schedule(&id, &who.name)
            .await
            .map_err(rc_status)?;
        Ok(Response::new(pb::DeleteScheduleResponse {}))
    }

    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::StartRunResponse>, Status> {
        let who = caller(&request);
        let r = request.into_inner();
        let modes = if r.modes.is_empty() {
            vec![RollcallMode::Individual]
        } else {
            modes(&r.modes)?
        };
        let run_id = service(&self.cx)?
            .start_run_now(
                StartRun {
                    channel: r.channel,
                    groups: r.groups,
                    modes,
                    options: Some(options(&self.cx, r.options)),
                    announcement: (!r.announcement.is_empty()).then(|| r.announcement.into()),
                    call_clip: None,
                },
                &who.name,
            )
            .await
            .map_err(rc_status)?;
        Ok(Response::new(pb::StartRunResponse { run_id }))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let r = request.into_inner();
        let runs = service(&self.cx)?
            .list_runs(RunFilter {
                from: ts(r.from_ms)?,
                to: ts(r.to_ms)?,
                schedule_id: None,
                state: (!r.state.is_empty()).then_some(r.state),
                limit: (r.limit > 0).then_some(r.limit.min(1000)),
            })
            .await
            .map_err(rc_status)?;
        let runs = runs
            .into_iter()
            .filter(|run| r.channel.is_empty() || run.channel == r.channel)
            .map(summary_pb)
            .collect();
        Ok(Response::new(pb::ListRunsResponse { runs }))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::RunDetail>, Status> {
        let id = request.into_inner().id;
        let rec = service(&self.cx)?
            .get_run(id)
            .await
            .map_err(rc_status)?
            .ok_or_else(|| Status::not_found(format!("no run {id}")))?;
        Ok(Response::new(pb::RunDetail {
            run: Some(summary_pb(rec.run)),
            results: rec
                .results
                .into_iter()
                .map(|g| pb::GuardResult {
                    guard: g.guard_id,
                    name: g.guard_name,
                    company: g.company,
                    outcome: g.outcome,
                    answered_ms: g.answered_ms.unwrap_or(0),
                    via: g.how_kind.unwrap_or_default(),
                    code: g.how_unit.unwrap_or_default(),
                    recording_id: g.recording_id.unwrap_or(0),
                    calls: g.attempts,
                })
                .collect(),
            unknown: rec
                .unknown
                .into_iter()
                .map(|u| pb::UnknownAni {
                    ts_ms: u.ts_ms,
                    kind: u.kind,
                    unit: u.unit,
                })
                .collect(),
        }))
    }

    type WatchRunStream = BoxStream<pb::RunProgress>;

    async fn watch_run(
        &self,
        request: Request<pb::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let id = request.into_inner().id;
        let svc = service(&self.cx)?;
        let Some(mut rx) = svc.watch_run(id) else {
            return match svc.get_run(id).await.map_err(rc_status)? {
                Some(_) => Err(Status::failed_precondition(format!(
                    "run {id} has ended; read it with GetRun"
                ))),
                None => Err(Status::not_found(format!("no run {id}"))),
            };
        };
        let (tx, out) = tokio::sync::mpsc::channel(64);
        let cancel = self.cx.cancel.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tx.closed() => break,
                    ev = rx.recv() => ev,
                };
                match ev {
                    Ok(ev) => {
                        let kind = ev.kind().to_owned();
                        let done = kind == "rollcall_finished";
                        let json = serde_json::to_string(&ev).unwrap_or_default();
                        if tx.send(Ok(pb::RunProgress { kind, json })).await.is_err() || done {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(run = id, skipped = n, "watch client too slow");
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn run_report(
        &self,
        request: Request<pb::RunReportRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        let id = request.into_inner().id;
        let data = service(&self.cx)?
            .run_report_csv(id)
            .await
            .map_err(rc_status)?
            .ok_or_else(|| Status::not_found(format!("no run {id}")))?;
        Ok(Response::new(pb::Report {
            filename: format!("rollcall-{id}.csv"),
            content_type: "text/csv".into(),
            data,
        }))
    }

    async fn company_report(
        &self,
        request: Request<pb::CompanyReportRequest>,
    ) -> Result<Response<pb::CompanyReportResponse>, Status> {
        let r = request.into_inner();
        let from = ts(r.from_ms)?.unwrap_or(Timestamp::UNIX_EPOCH);
        let to = ts(r.to_ms)?.unwrap_or_else(Timestamp::now);
        if to < from {
            return Err(Status::invalid_argument("to_ms is before from_ms"));
        }
        let svc = service(&self.cx)?;
        let stats = svc.company_report(from, to).await.map_err(rc_status)?;
        let csv = svc.company_report_csv(from, to).await.map_err(rc_status)?;
        let svg = svc.company_chart_svg(from, to).await.map_err(rc_status)?;
        let snapshot = self.cx.roster.snapshot();
        Ok(Response::new(pb::CompanyReportResponse {
            companies: stats
                .into_iter()
                .map(|c| pb::CompanyStats {
                    name: snapshot
                        .company(&c.company)
                        .map(|x| x.name.clone())
                        .unwrap_or_default(),
                    company: c.company,
                    calls: c.called,
                    answered: c.answered,
                    late: c.late,
                    missed: c.missed,
                    answer_rate: c.answer_rate,
                    late_rate: c.late_rate,
                    mean_answer_s: c.mean_answer_s.unwrap_or(0.0),
                })
                .collect(),
            csv: Some(pb::Report {
                filename: "companies.csv".into(),
                content_type: "text/csv".into(),
                data: csv,
            }),
            chart_svg: Some(pb::Report {
                filename: "answer-rate.svg".into(),
                content_type: "image/svg+xml".into(),
                data: svg.into_bytes(),
            }),
        }))
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn company_pb(c: Company) -> pb::Company {
    pb::Company {
        id: c.id,
        name: c.name,
        supervisor: c.supervisor.unwrap_or_default(),
        supervisor_phone: c.supervisor_phone.unwrap_or_default(),
    }
}

fn guard_pb(g: Guard) -> pb::Guard {
    pb::Guard {
        id: g.id,
        name: g.name,
        company: g.company,
        post: g.post.unwrap_or_default(),
        dtmf: g.dtmf.unwrap_or_default(),
        selcall: g.selcall.unwrap_or_default(),
        mdc1200: g.mdc1200.unwrap_or_default(),
        dmr: g.dmr.unwrap_or(0),
        app_id: g.app_id.unwrap_or_default(),
        groups: g.groups,
    }
}

#[tonic::async_trait]
impl pb::roster_service_server::RosterService for RosterApi {
    async fn list(
        &self,
        _r: Request<pb::ListRosterRequest>,
    ) -> Result<Response<pb::Roster>, Status> {
        let store = roster(&self.cx)?;
        Ok(Response::new(pb::Roster {
            companies: store.list_companies().into_iter().map(company_pb).collect(),
            guards: store.list_guards().into_iter().map(guard_pb).collect(),
            groups: store
                .list_groups()
                .into_iter()
                .map(|g| pb::Group {
                    id: g.id,
                    name: g.name,
                })
                .collect(),
        }))
    }

    async fn upsert_company(
        &self,
        request: Request<pb::Company>,
    ) -> Result<Response<pb::Company>, Status> {
        let who = caller(&request);
        let c = request.into_inner();
        let company = Company {
            id: c.id,
            name: c.name,
            supervisor: opt(c.supervisor),
            supervisor_phone: opt(c.supervisor_phone),
        };
        roster(&self.cx)?
            .upsert_company(company.clone(), &who.name)
            .await
            .map_err(roster_status)?;
        Ok(Response::new(company_pb(company)))
    }

    async fn delete_company(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let who = caller(&request);
        let id = request.into_inner().id;
        roster(&self.cx)?
            .delete_company(&id, &who.name)
            .await
            .map_err(roster_status)?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    async fn upsert_guard(
        &self,
        request: Request<pb::Guard>,
    ) -> Result<Response<pb::Guard>, Status> {
        let who = caller(&request);
        let g = request.into_inner();
        let guard = Guard {
            id: g.id,
            name: g.name,
            company: g.company,
            post: opt(g.post),
            dtmf: opt(g.dtmf),
            selcall: opt(g.selcall),
            mdc1200: opt(g.mdc1200).map(|m| m.to_ascii_uppercase()),
            dmr: (g.dmr > 0).then_some(g.dmr),
            app_id: opt(g.app_id),
            groups: g.groups,
        };
        roster(&self.cx)?
            .upsert_guard(guard.clone(), &who.name)
            .await
            .map_err(roster_status)?;
        Ok(Response::new(guard_pb(guard)))
    }

    async fn delete_guard(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let who = caller(&request);
        let id = request.into_inner().id;
        roster(&self.cx)?
            .delete_guard(&id, &who.name)
            .await
            .map_err(roster_status)?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    async fn upsert_group(
        &self,
        request: Request<pb::Group>,
    ) -> Result<Response<pb::Group>, Status> {
        let who = caller(&request);
        let g = request.into_inner();
        let name = if g.name.is_empty() {
            g.id.clone()
        } else {
            g.name
        };
        let group = Group { id: g.id, name };
        roster(&self.cx)?
            .upsert_group(group.clone(), &who.name)
            .await
            .map_err(roster_status)?;
        Ok(Response::new(pb::Group {
            id: group.id,
            name: group.name,
        }))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let who = caller(&request);
        let id = request.into_inner().id;
        roster(&self.cx)?
            .delete_group(&id, &who.name)
            .await
            .map_err(roster_status)?;
        Ok(Response::new(pb::DeleteResponse {}))
    }
}
