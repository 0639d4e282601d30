//! `rollcall.v1.AudioService`: live monitoring (Opus, one message per tick
//! for every monitored channel) and console push-to-talk.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rollcall_hw::audio::{AudioFrame, FRAME_SAMPLES};
use rollcall_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::auth::caller;
use super::ApiContext;
use crate::channel::task::MonitorFrame;
use crate::channel::TxSource;
use crate::events::Event;

pub struct AudioApi {
    pub cx: ApiContext,
}

/// Frames of different channels that arrive within this window are sent in
/// one message; the first frame of a tick never waits longer.
const COALESCE: Duration = Duration::from_millis(2);

/// A monitored source: channel and link (`None`: the station's own audio).
type SourceKey = (Arc<str>, Option<Arc<str>>);

/// Whether a tick being coalesced can be sent without waiting out
/// [`COALESCE`]: it already holds every source the previous message held.
/// A lone source (the common case: one channel, one link talking) is sent
/// at once instead of 2–3 ms late; a source that stops costs one full wait,
/// and one that starts goes in the next message until the set settles.
fn tick_complete(tick: &[Arc<MonitorFrame>], previous: &[SourceKey]) -> bool {
    previous.iter().all(|(channel, link)| {
        tick.iter()
            .any(|f| &f.channel == channel && &f.link == link)
    })
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::audio_service_server::AudioService for AudioApi {
    type MonitorStream = BoxStream<pb::MonitorTick>;

    async fn monitor(
        &self,
        request: Request<pb::MonitorRequest>,
    ) -> Result<Response<Self::MonitorStream>, Status> {
        let wanted = request.into_inner().channels;
        let mut receivers = Vec::new();
        if wanted.is_empty() {
            for h in self.cx.channels.by_id.values() {
                receivers.push(h.monitor());
            }
        } else {
            for id in &wanted {
                let h = self
                    .cx
                    .channels
                    .get(id)
                    .ok_or_else(|| Status::not_found(format!("no channel \"{id}\"")))?;
                receivers.push(h.monitor());
            }
        }
        if receivers.is_empty() {
            return Err(Status::failed_precondition("no channels are configured"));
        }
        // One merged stream of frames from every monitored channel.
        let (frames_tx, mut frames) = mpsc::channel::<Arc<MonitorFrame>>(256);
        let cancel = self.cx.cancel.clone();
        for mut rx in receivers {
            let tx = frames_tx.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                loop {
                    let f = tokio::select! {
                        _ = cancel.cancelled() => return,
                        f = rx.recv() => f,
                    };
                    match f {
                        Ok(f) => {
                            if tx.send(f).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::debug!(dropped = n, "monitor client too slow; frames dropped");
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        drop(frames_tx);
        let roster = self.cx.roster.clone();
        let (out_tx, out_rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut encoders: HashMap<SourceKey, opus::Encoder> = HashMap::new();
            let mut out = vec![0u8; 400];
            // Reused every tick: the sources of the last message, and this one's frames.
            let mut previous: Vec<SourceKey> = Vec::new();
            let mut tick: Vec<Arc<MonitorFrame>> = Vec::new();
            while let Some(first) = frames.recv().await {
                tick.push(first);
                let deadline = tokio::time::Instant::now() + COALESCE;
                while !tick_complete(&tick, &previous) {
                    match tokio::time::timeout_at(deadline, frames.recv()).await {
                        Ok(Some(f)) => tick.push(f),
                        _ => break,
                    }
                }
                previous.clear();
                previous.extend(tick.iter().map(|f| (f.channel.clone(), f.link.clone())));
                let mut msg = pb::MonitorTick {
                    ts_ms: crate::storage::now_ms(),
                    channels: Vec::with_capacity(tick.len()),
                };
                for f in tick.drain(..) {
                    let key = (f.channel.clone(), f.link.clone());
                    let enc = match encoders.get_mut(&key) {
                        Some(e) => e,
                        None => match opus::Encoder::new(
                            8000,
                            opus::Channels::Mono,
                            opus::Application::Voip,
                        ) {
                            Ok(e) => encoders.entry(key).or_insert(e),
                            Err(e) => {
                                let _ = out_tx
                                    .send(Err(Status::internal(format!("opus encoder: {e}"))))
                                    .await;
                                return;
                            }
                        },
                    };
                    let n = match enc.encode(&f.frame.samples, &mut out) {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(error = %e, "monitor encode failed");
                            continue;
                        }
                    };
                    let guard = f
                        .ani
                        .as_deref()
                        .and_then(|a| a.split_once(':'))
                        .and_then(|(k, u)| {
                            roster.snapshot().guard_by_code(k, u).map(|g| g.id.clone())
                        })
                        .unwrap_or_default();
                    msg.channels.push(pb::ChannelAudio {
                        channel: f.channel.to_string(),
                        link: f.link.as_deref().unwrap_or("").to_string(),
                        opus: out[..n].to_vec(),
                        cor: f.cor,
                        ani: f.ani.clone().unwrap_or_default(),
                        guard,
                    });
                }
                if out_tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    type TalkStream = BoxStream<pb::TalkResponse>;

    async fn talk(
        &self,
        request: Request<Streaming<pb::TalkRequest>>,
    ) -> Result<Response<Self::TalkStream>, Status> {
        let who = caller(&request);
        let mut inbound = request.into_inner();
        let first = inbound
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty Talk stream: send `start` first"))??;
        let channel_id = match first.msg {
            Some(pb::talk_request::Msg::Start(s)) => s.channel,
            _ => {
                return Err(Status::invalid_argument(
                    "the first Talk message must be `start`",
                ))
            }
        };
        let channel = self
            .cx
            .channels
            .get(&channel_id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no channel \"{channel_id}\"")))?;
        let (out_tx, out_rx) = mpsc::channel(16);
        let claim = match channel.claim(TxSource::Console).await {
            Ok(c) => c,
            Err(e) => {
                let _ = self
                    .cx
                    .storage
                    .audit(&who.name, "talk", &channel_id, &format!("refused: {e}"))
                    .await;
                let _ = out_tx
                    .send(Ok(pb::TalkResponse {
                        granted: false,
                        reason: e.to_string(),
                        frames: 0,
                    }))
                    .await;
                return Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))));
            }
        };
        self.cx
            .storage
            .audit(&who.name, "talk", &channel_id, "granted")
            .await
            .map_err(|e| Status::internal(format!("audit log: {e}")))?;
        let _ = out_tx
            .send(Ok(pb::TalkResponse {
                granted: true,
                reason: String::new(),
                frames: 0,
            }))
            .await;
        let mut bus_rx = self.cx.bus.subscribe();
        let cancel = self.cx.cancel.clone();
        tokio::spawn(async move {
            let mut frames = 0u64;
            let mut reason = String::from("released");
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => { reason = "daemon stopping".into(); break; }
                    ev = bus_rx.recv() => {
                        // Cut by a higher priority or the transmit time-out.
                        if let Ok(n) = ev {
                            if let Event::TransmissionEnded { channel, source, reason: why, .. } = &n.event {
                                if channel == &channel_id && source == "console" {
                                    reason = why.clone();
                                    break;
                                }
                            }
                        }
                    }
                    msg = inbound.next() => match msg {
                        None => break,
                        Some(Err(e)) => { reason = format!("client stream error: {e}"); break; }
                        Some(Ok(m)) => match m.msg {
                            Some(pb::talk_request::Msg::Audio(a)) => {
                                if a.pcm.len() != FRAME_SAMPLES * 2 {
                                    reason = format!("audio frame of {} bytes; 320 expected (20 ms s16le 8 kHz)", a.pcm.len());
                                    break;
                                }
                                let samples: Vec<i16> = a.pcm.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                                if channel.frame(claim, AudioFrame::from_slice(&samples)) {
                                    frames += 1;
                                }
                            }
                            Some(pb::talk_request::Msg::Start(_)) => {
                                reason = "`start` sent twice".into();
                                break;
                            }
                            None => {}
                        }
                    }
                }
            }
            channel.release(claim).await;
            let _ = out_tx
                .send(Ok(pb::TalkResponse {
                    granted: false,
                    reason,
                    frames,
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(channel: &str, link: Option<&str>) -> Arc<MonitorFrame> {
        Arc::new(MonitorFrame {
            channel: channel.into(),
            link: link.map(Arc::from),
            frame: AudioFrame::SILENCE,
            cor: true,
            ani: None,
        })
    }

    fn key(channel: &str, link: Option<&str>) -> SourceKey {
        (channel.into(), link.map(Arc::from))
    }

    #[test]
    fn a_tick_is_complete_once_it_holds_the_previous_sources() {
        // Nothing before: send at once.
        assert!(tick_complete(&[frame("a", Some("l1"))], &[]));
        // The lone source again: send at once.
        let lone = [key("a", Some("l1"))];
        assert!(tick_complete(&[frame("a", Some("l1"))], &lone));
        // Two sources last time: wait for the second.
        let both = [key("a", Some("l1")), key("b", None)];
        assert!(!tick_complete(&[frame("a", Some("l1"))], &both));
        assert!(!tick_complete(
            &[frame("a", Some("l1")), frame("b", Some("l1"))],
            &both
        ));
        assert!(tick_complete(
            &[frame("b", None), frame("a", Some("l1"))],
            &both
        ));
    }
}
