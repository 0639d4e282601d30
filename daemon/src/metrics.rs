//! Prometheus metrics on an optional HTTP listener (`[metrics] listen`):
//! `GET /metrics` returns the text exposition format.
//!
//! Counters are plain atomics updated on the hot paths (frames per link,
//! gRPC calls) or derived from the event bus (ANI by kind, transmissions,
//! recordings, roll-call and alert outcomes), so nothing on the audio path
//! takes a lock. The HTTP side is a minimal HTTP/1.1 responder: one request
//! per connection, read with a size and time limit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::events::{Bus, Event};
use crate::station::{LinkState, Station};

/// Per-link frame counters.
#[derive(Default)]
pub struct LinkCounters {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_dropped: AtomicU64,
    /// The jitter buffer's packet counters, for links that receive RTP.
    pub rtp: std::sync::OnceLock<Arc<rollcall_hw::rtp::RtpCounters>>,
}

/// Every metric the daemon exports.
#[derive(Default)]
pub struct Metrics {
    links: Mutex<BTreeMap<String, Arc<LinkCounters>>>,
    /// (kind of event, label) → count, from the bus.
    events: Mutex<BTreeMap<(String, String), u64>>,
    recording_bytes: AtomicU64,
    recording_files: AtomicU64,
    grpc: Mutex<BTreeMap<(String, String), u64>>,
    /// Set by the MQTT bridge: messages waiting in the outbox.
    pub mqtt_outbox_depth: AtomicU64,
}

impl Metrics {
    pub fn link(&self, id: &str) -> Arc<LinkCounters> {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    pub fn grpc_request(&self, method: &str, code: &str) {
        *self
            .grpc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((method.to_owned(), code.to_owned()))
            .or_default() += 1;
    }

    fn count_event(&self, event: &Event) {
        let label = match event {
            Event::Ani { kind, .. } => kind.clone(),
            Event::TransmissionEnded { direction, .. } => direction.clone(),
            Event::RecordingWritten { bytes, .. } => {
                self.recording_bytes.fetch_add(*bytes, Relaxed);
                self.recording_files.fetch_add(1, Relaxed);
                String::new()
            }
            _ => String::new(),
        };
        *self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((event.kind().to_owned(), label))
            .or_default() += 1;
    }

    /// Counts bus events until `cancel` fires.
    pub fn spawn_event_counter(
        self: &Arc<Self>,
        bus: &Bus,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let mut rx = bus.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    ev = rx.recv() => match ev {
                        Ok(n) => me.count_event(&n.event),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        })
    }

    /// The text exposition.
    pub fn render(&self, station: &Station) -> String {
        let mut out = String::with_capacity(4096);
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        family(
            "rollcalld_link_up",
            "gauge",
            "1 when the link's driver is up.",
            station
                .links()
                .into_iter()
                .map(|l| {
                    (
                        format!("{{link=\"{}\",kind=\"{}\"}}", esc(&l.id), esc(&l.kind)),
                        u64::from(l.state == LinkState::Up),
                    )
                })
                .collect(),
        );
        let links: Vec<(String, Arc<LinkCounters>)> = self
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let per_link = |f: fn(&LinkCounters) -> u64| {
            links
                .iter()
                .map(|(id, c)| (format!("{{link=\"{}\"}}", esc(id)), f(c)))
                .collect::<Vec<_>>()
        };
        family(
            "rollcalld_link_frames_in_total",
            "counter",
            "Audio frames received from the link.",
            per_link(|c| c.frames_in.load(Relaxed)),
        );
        family(
            "rollcalld_link_frames_out_total",
            "counter",
            "Audio frames sent to the link.",
            per_link(|c| c.frames_out.load(Relaxed)),
        );
        family(
            "rollcalld_link_frames_dropped_total",
            "counter",
            "Frames dropped because a queue was full (the link's transmit queue, or a recorder too far behind).",
            per_link(|c| c.frames_dropped.load(Relaxed)),
        );
        let mut rtp = Vec::new();
        for (id, c) in &links {
            if let Some(r) = c.rtp.get() {
                let s = r.snapshot();
                for (outcome, v) in [
                    ("received", s.received),
                    ("played", s.played),
                    ("lost", s.lost),
                    ("late", s.late),
                    ("duplicate", s.duplicate),
                ] {
                    rtp.push((format!("{{link=\"{}\",outcome=\"{outcome}\"}}", esc(id)), v));
                }
            }
        }
        family(
            "rollcalld_link_rtp_packets_total",
            "counter",
            "RTP audio packets of RoIP links by what the jitter buffer did: received, played, lost (concealed), late or duplicate (dropped).",
            rtp,
        );
        let events: Vec<_> = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((kind, label), v)| {
                (
                    format!("{{type=\"{}\",label=\"{}\"}}", esc(kind), esc(label)),
                    *v,
                )
            })
            .collect();
        family(
            "rollcalld_events_total",
            "counter",
            "Bus events by type, labelled with the ANI kind, direction or outcome.",
            events,
        );
        family(
            "rollcalld_recordings_bytes_total",
            "counter",
            "Bytes of recordings written.",
            vec![(String::new(), self.recording_bytes.load(Relaxed))],
        );
        family(
            "rollcalld_recordings_files_total",
            "counter",
            "Recordings written.",
            vec![(String::new(), self.recording_files.load(Relaxed))],
        );
        family(
            "rollcalld_mqtt_outbox_depth",
            "gauge",
            "MQTT messages not yet acknowledged by the broker.",
            vec![(String::new(), self.mqtt_outbox_depth.load(Relaxed))],
        );
        let grpc: Vec<_> = self
            .grpc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((m, c), v)| (format!("{{method=\"{}\",code=\"{}\"}}", esc(m), esc(c)), *v))
            .collect();
        family(
            "rollcalld_grpc_requests_total",
            "counter",
            "gRPC requests by method and status code.",
            grpc,
        );
        family(
            "rollcalld_uptime_seconds",
            "gauge",
            "Seconds since start.",
            vec![(String::new(), station.uptime().as_secs())],
        );
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `/metrics` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    station: Station,
    cancel: CancellationToken,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (metrics, station) = (metrics.clone(), station.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read the request head, at most 4 KiB within 2 s.
            let read = tokio::time::timeout(Duration::from_secs(2), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            n += k;
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let first = head.lines().next().unwrap_or_default();
            let (status, body) = match first.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["GET", "/metrics", ..] => ("200 OK", metrics.render(&station)),
                ["GET", ..] => (
                    "404 Not Found",
                    "only /metrics is served here\n".to_string(),
                ),
                _ => ("405 Method Not Allowed", "use GET /metrics\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_links_export_their_jitter_buffer_counters() {
        let m = Metrics::default();
        let rtp = Arc::new(rollcall_hw::rtp::RtpCounters::default());
        rtp.duplicate.store(3, Relaxed);
        rtp.received.store(100, Relaxed);
        m.link("box").rtp.set(rtp).unwrap();
        m.link("serial");
        let text = m.render(&Station::new("s", "UTC"));
        assert!(
            text.contains("rollcalld_link_rtp_packets_total{link=\"box\",outcome=\"duplicate\"} 3")
        );
        assert!(text
            .contains("rollcalld_link_rtp_packets_total{link=\"box\",outcome=\"received\"} 100"));
        assert!(
            !text.contains("rtp_packets_total{link=\"serial\""),
            "{text}"
        );
    }
}
