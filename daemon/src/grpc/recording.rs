//! `rollcall.v1.RecordingService`: search the index, stream a file.

use std::pin::Pin;

use rollcall_proto::v1 as pb;
use tokio::io::AsyncReadExt;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::ApiContext;
use crate::recorder::{self, RecordingRow, SearchFilter};

pub struct RecordingApi {
    pub cx: ApiContext,
}

fn to_pb(r: RecordingRow) -> pb::Recording {
    pb::Recording {
        id: r.id,
        channel: r.channel,
        link: r.link,
        direction: r.direction,
        source: r.source,
        start_ms: r.start_ms,
        duration_ms: r.duration_ms,
        ani_kind: r.ani_kind.unwrap_or_default(),
        ani: r.ani.unwrap_or_default(),
        guard: r.guard.unwrap_or_default(),
        bytes: r.bytes,
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

const CHUNK: usize = 64 * 1024;

#[tonic::async_trait]
impl pb::recording_service_server::RecordingService for RecordingApi {
    async fn search(
        &self,
        request: Request<pb::SearchRecordingsRequest>,
    ) -> Result<Response<pb::SearchRecordingsResponse>, Status> {
        let r = request.into_inner();
        if !r.direction.is_empty() && r.direction != "rx" && r.direction != "tx" {
            return Err(Status::invalid_argument(format!(
                "direction \"{}\" is not rx or tx",
                r.direction
            )));
        }
        if r.from_ms < 0 || r.to_ms < 0 || (r.to_ms > 0 && r.to_ms < r.from_ms) {
            return Err(Status::invalid_argument(
                "time range must be non-negative with to_ms >= from_ms",
            ));
        }
        let rows = recorder::search(
            &self.cx.storage,
            SearchFilter {
                channel: opt(r.channel),
                from_ms: (r.from_ms > 0).then_some(r.from_ms),
                to_ms: (r.to_ms > 0).then_some(r.to_ms),
                ani: opt(r.ani),
                guard: opt(r.guard),
                direction: opt(r.direction),
                limit: r.limit,
                before_id: (r.before_id > 0).then_some(r.before_id),
            },
        )
        .await
        .map_err(|e| Status::internal(format!("searching recordings: {e}")))?;
        Ok(Response::new(pb::SearchRecordingsResponse {
            recordings: rows.into_iter().map(to_pb).collect(),
        }))
    }

    type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::RecordingChunk, Status>> + Send>>;

    async fn fetch(
        &self,
        request: Request<pb::FetchRecordingRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let id = request.into_inner().id;
        let row = recorder::get(&self.cx.storage, id)
            .await
            .map_err(|e| Status::internal(format!("reading the index: {e}")))?
            .ok_or_else(|| Status::not_found(format!("no recording {id}")))?;
        let mut file = tokio::fs::File::open(&row.path).await.map_err(|e| {
            Status::not_found(format!(
                "recording {id} is indexed but its file cannot be read: {e}"
            ))
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut first = Some(to_pb(row));
            loop {
                let mut buf = vec![0u8; CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        let chunk = pb::RecordingChunk {
                            data: buf,
                            recording: first.take(),
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!("reading recording: {e}"))))
                            .await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
