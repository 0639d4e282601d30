//! `rollcall.v1.AlertService`: alerts and their acknowledgements, over the
//! daemon's [`AlertService`](crate::alerts::AlertService).

use rollcall_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::auth::caller;
use super::ApiContext;
use crate::alerts::{AlertError, AlertInfo, AlertTarget, GuardAckState, NewAlert, Priority};

pub struct AlertApi {
    pub cx: ApiContext,
}

fn status(e: AlertError) -> Status {
    match e {
        AlertError::NotFound(_) | AlertError::UnknownGuard(_) => Status::not_found(e.to_string()),
        AlertError::Ack(_) => Status::failed_precondition(e.to_string()),
        AlertError::Storage(_) | AlertError::Stopped => Status::unavailable(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

fn target_pb(t: AlertTarget) -> pb::AlertTarget {
    pb::AlertTarget {
        channels: t.channels,
        companies: t.companies,
        groups: t.groups,
        guards: t.guards,
    }
}

fn alert_pb(a: AlertInfo) -> pb::Alert {
    pb::Alert {
        id: a.id,
        created_ms: a.created_ms,
        created_by: a.created_by,
        text: a.text,
        priority: a.priority,
        target: Some(target_pb(a.target)),
        channels: a.channels,
        deadline_ms: a.deadline_ms,
        close_ms: a.close_ms,
        closed_ms: a.closed_ms.unwrap_or(0),
        total: a.total as u32,
        on_time: a.on_time as u32,
        late: a.late as u32,
    }
}

fn service(cx: &ApiContext) -> Result<&crate::alerts::AlertService, Status> {
    cx.alerts
        .as_ref()
        .ok_or_else(|| Status::unavailable("alerts are not running"))
}

#[tonic::async_trait]
impl pb::alert_service_server::AlertService for AlertApi {
    async fn create(
        &self,
        request: Request<pb::CreateAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let who = caller(&request);
        let r = request.into_inner();
        let priority = match r.priority.as_str() {
            "" | "routine" => Priority::Routine,
            "urgent" => Priority::Urgent,
            "emergency" => Priority::Emergency,
            other => {
                return Err(Status::invalid_argument(format!(
                    "priority \"{other}\" is not routine, urgent or emergency"
                )))
            }
        };
        let t = r.target.unwrap_or_default();
        let info = service(&self.cx)?
            .create(NewAlert {
                text: r.text,
                priority,
                target: AlertTarget {
                    channels: t.channels,
                    companies: t.companies,
                    groups: t.groups,
                    guards: t.guards,
                },
                clip: (!r.clip_path.is_empty()).then(|| r.clip_path.into()),
                deadline: (r.deadline_s > 0)
                    .then(|| std::time::Duration::from_secs(r.deadline_s.into())),
                created_by: who.name.clone(),
            })
            .await
            .map_err(status)?;
        self.cx
            .storage
            .audit(
                &who.name,
                "alert.create",
                &format!("alert/{}", info.id),
                &info.text,
            )
            .await
            .map_err(|e| Status::internal(format!("audit log: {e}")))?;
        Ok(Response::new(alert_pb(info)))
    }

    async fn list(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let r = request.into_inner();
        let limit = if r.limit == 0 { 50 } else { r.limit.min(500) } as usize;
        let alerts = service(&self.cx)?
            .list(r.open_only, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.into_iter().map(alert_pb).collect(),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::AlertDetail>, Status> {
        let d = service(&self.cx)?
            .get(request.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AlertDetail {
            alert: Some(alert_pb(d.info)),
            guards: d
                .guards
                .into_iter()
                .map(|g| pb::GuardAck {
                    guard: g.guard,
                    company: g.company,
                    state: match g.state {
                        GuardAckState::Pending => "pending",
                        GuardAckState::Acknowledged => "acknowledged",
                        GuardAckState::Late => "late",
                        GuardAckState::Missed => "missed",
                    }
                    .into(),
                    ack_ms: g.ack_ms.unwrap_or(0),
                    via: g.via.unwrap_or_default(),
                    by: g.by.unwrap_or_default(),
                })
                .collect(),
            companies: d
                .companies
                .into_iter()
                .map(|c| pb::CompanyRate {
                    rate: c.rate(),
                    company: c.company,
                    total: c.total as u32,
                    on_time: c.on_time as u32,
                    late: c.late as u32,
                    missed: c.missed as u32,
                })
                .collect(),
        }))
    }

    async fn acknowledge(
        &self,
        request: Request<pb::AcknowledgeRequest>,
    ) -> Result<Response<pb::AcknowledgeResponse>, Status> {
        let who = caller(&request);
        let r = request.into_inner();
        // The service audits the acknowledgement with the operator's name.
        let o = service(&self.cx)?
            .acknowledge(r.alert_id, &r.guard, &who.name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AcknowledgeResponse {
            outcome: if o.late { "late" } else { "acknowledged" }.into(),
        }))
    }
}
