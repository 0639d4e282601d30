//! `rollcall.v1.EventService`: the event log from any sequence number, then
//! live, with no gap and no duplicate at the switch-over.

use std::pin::Pin;

use rollcall_proto::v1 as pb;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::ApiContext;
use crate::events::read_after;

pub struct EventsApi {
    pub cx: ApiContext,
}

/// Stored events are read in pages of this size.
const PAGE: usize = 500;

#[tonic::async_trait]
impl pb::event_service_server::EventService for EventsApi {
    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = request.into_inner();
        if req.after_seq < 0 {
            return Err(Status::invalid_argument("after_seq must be 0 or more"));
        }
        let kinds: Vec<String> = req.kinds;
        let wanted = move |kind: &str| kinds.is_empty() || kinds.iter().any(|k| k == kind);
        // Subscribe to live events *before* reading the backlog, so nothing
        // published in between is missed; duplicates are dropped by seq.
        let mut live = self.cx.bus.subscribe();
        let storage = self.cx.storage.clone();
        let (tx, rx) = mpsc::channel(256);
        let cancel = self.cx.cancel.clone();
        let live_only = req.live_only;
        let mut last = req.after_seq;
        tokio::spawn(async move {
            if !live_only {
                loop {
                    let page = match read_after(&storage, last, PAGE).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx
                                .send(Err(Status::internal(format!("reading events: {e}"))))
                                .await;
                            return;
                        }
                    };
                    let n = page.len();
                    for (seq, ts_ms, kind, json) in page {
                        last = seq;
                        if wanted(&kind)
                            && tx
                                .send(Ok(pb::Event {
                                    seq,
                                    ts_ms,
                                    kind,
                                    json,
                                }))
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                    if n < PAGE {
                        break;
                    }
                }
            } else {
                last = i64::MAX;
            }
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tx.closed() => return,
                    ev = live.recv() => ev,
                };
                match ev {
                    Ok(n) => {
                        if live_only && last == i64::MAX {
                            last = n.seq - 1;
                        }
                        if n.seq <= last {
                            continue;
                        }
                        last = n.seq;
                        let kind = n.event.kind();
                        if !wanted(kind) {
                            continue;
                        }
                        let json = serde_json::to_string(&n.event).unwrap_or_default();
                        let msg = pb::Event {
                            seq: n.seq,
                            ts_ms: n.ts_ms,
                            kind: kind.into(),
                            json,
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too slow for the live buffer: catch up from storage.
                        loop {
                            match read_after(&storage, last, PAGE).await {
                                Ok(page) if !page.is_empty() => {
                                    for (seq, ts_ms, kind, json) in page {
                                        last = seq;
                                        if wanted(&kind)
                                            && tx
                                                .send(Ok(pb::Event {
                                                    seq,
                                                    ts_ms,
                                                    kind,
                                                    json,
                                                }))
                                                .await
                                                .is_err()
                                        {
                                            return;
                                        }
                                    }
                                }
                                Ok(_) => break,
                                Err(e) => {
                                    let _ = tx
                                        .send(Err(Status::internal(format!("reading events: {e}"))))
                                        .await;
                                    return;
                                }
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
