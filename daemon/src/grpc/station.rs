//! `rollcall.v1.StationService`: station, link and channel status.

use rollcall_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::auth::caller;
use super::ApiContext;
use crate::station::LinkState;

pub struct StationApi {
    pub cx: ApiContext,
}

#[tonic::async_trait]
impl pb::station_service_server::StationService for StationApi {
    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::StationStatus>, Status> {
        let station = &self.cx.station;
        let links = station
            .links()
            .into_iter()
            .map(|l| pb::LinkStatus {
                id: l.id,
                kind: l.kind,
                state: match l.state {
                    LinkState::Starting => pb::LinkState::Starting,
                    LinkState::Up => pb::LinkState::Up,
                    LinkState::Down => pb::LinkState::Down,
                } as i32,
                reason: l.reason,
                cor: l.cor,
                ptt: l.ptt,
                since_ms: l.since_ms,
            })
            .collect();
        let mut channels = Vec::new();
        for c in &self.cx.config.channels {
            let state = match self.cx.channels.get(&c.id) {
                Some(h) => h.state().await,
                None => "stopped",
            };
            channels.push(pb::ChannelStatus {
                id: c.id.clone(),
                name: c.name.clone().unwrap_or_else(|| c.id.clone()),
                links: c.links.clone(),
                state: state.into(),
            });
        }
        Ok(Response::new(pb::StationStatus {
            station_id: station.station_id().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: station.uptime().as_secs(),
            links,
            channels,
            time_zone: station.time_zone().to_owned(),
        }))
    }

    async fn set_patch(
        &self,
        request: Request<pb::SetPatchRequest>,
    ) -> Result<Response<pb::SetPatchResponse>, Status> {
        let who = caller(&request);
        let r = request.into_inner();
        let active = self
            .cx
            .patches
            .set(
                &self.cx.channels,
                &r.channel_a,
                &r.channel_b,
                r.enabled,
                &self.cx.cancel,
            )
            .map_err(Status::invalid_argument)?;
        self.cx
            .storage
            .audit(
                &who.name,
                if r.enabled { "patch_on" } else { "patch_off" },
                &format!("{}<->{}", r.channel_a, r.channel_b),
                "",
            )
            .await
            .map_err(|e| Status::internal(format!("audit log: {e}")))?;
        Ok(Response::new(pb::SetPatchResponse { active }))
    }
}
