//! Event fan-out helpers shared by `tests/event_fanout.rs` (correctness) and
//! `tests/bench_api.rs` (latency): many concurrent `EventService.Subscribe`
//! clients, each on its own connection, recording what arrives and when;
//! the stored log as ground truth; and the RTP packet a test-side RoIP box
//! sends to open a link's squelch at once (no jitter-buffer hold).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rollcall_hw::rtp::{RtpHeader, TelephoneEvent};
use rollcall_proto::v1 as pb;

type EventClient = pb::event_service_client::EventServiceClient<tonic::transport::Channel>;

/// One event as one subscriber received it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub seq: i64,
    pub ts_ms: i64,
    /// When the client got it (this process's monotonic clock).
    pub at: Instant,
    /// The same moment on the wall clock, Unix µs (shared with the daemon).
    pub wall_us: i64,
}

/// Live subscribers; `lists[i]` grows as subscriber `i` receives events.
pub struct Subscribers {
    pub lists: Vec<Arc<Mutex<Vec<Arrival>>>>,
    /// Subscriber 0 also keeps each event's kind and JSON by arrival.
    pub bodies: Arc<Mutex<Vec<(i64, String, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

async fn connect(port: u16) -> EventClient {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // `connect` opens a connection of its own: one per console.
        if let Ok(c) = EventClient::connect(format!("http://127.0.0.1:{port}")).await {
            return c;
        }
        assert!(Instant::now() < deadline, "daemon did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Subscribers {
    /// Opens `n` live-only subscriptions. When this returns every one of
    /// them is registered on the daemon's bus (the server answers the call
    /// only after subscribing), so each sees every event published later.
    pub async fn start(port: u16, n: usize) -> Subscribers {
        let mut lists = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        let bodies = Arc::new(Mutex::new(Vec::new()));
        for i in 0..n {
            let mut client = connect(port).await;
            let mut stream = client
                .subscribe(pb::SubscribeRequest {
                    live_only: true,
                    ..Default::default()
                })
                .await
                .expect("Subscribe")
                .into_inner();
            let list = Arc::new(Mutex::new(Vec::new()));
            let sink = list.clone();
            let bodies = (i == 0).then(|| bodies.clone());
            tasks.push(tokio::spawn(async move {
                let _client = client;
                while let Ok(Some(e)) = stream.message().await {
                    let at = Instant::now();
                    let wall = wall_us();
                    if let Some(b) = &bodies {
                        b.lock()
                            .unwrap()
                            .push((e.seq, e.kind.clone(), e.json.clone()));
                    }
                    sink.lock().unwrap().push(Arrival {
                        seq: e.seq,
                        ts_ms: e.ts_ms,
                        at,
                        wall_us: wall,
                    });
                }
            }));
            lists.push(list);
        }
        Subscribers {
            lists,
            bodies,
            tasks,
        }
    }

    /// Waits until subscriber 0 has seen `pred` hold over its events.
    pub async fn wait_first(
        &self,
        limit: Duration,
        pred: impl Fn(&[(i64, String, String)]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if pred(&self.bodies.lock().unwrap()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Waits until subscriber 0 has seen more than `k` `transmission_ended`
    /// events: the k-th squelch open/close cycle is over.
    pub async fn wait_cycle_ended(&self, k: usize, limit: Duration) -> bool {
        self.wait_first(limit, |b| {
            b.iter()
                .filter(|(_, kind, _)| kind == "transmission_ended")
                .count()
                > k
        })
        .await
    }

    /// Waits until every subscriber has received an event with `seq >= last`.
    pub async fn wait_all(&self, last: i64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self
                .lists
                .iter()
                .all(|l| l.lock().unwrap().last().is_some_and(|a| a.seq >= last))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Checks that every subscriber received exactly `truth` (sequence
    /// numbers from the stored log) for `first..=last`: each event once, in
    /// order, none missing.
    pub fn check(&self, truth: &[i64]) -> Result<(), String> {
        let (Some(&first), Some(&last)) = (truth.first(), truth.last()) else {
            return Err("no events in the log".into());
        };
        for (i, l) in self.lists.iter().enumerate() {
            let got: Vec<i64> = l
                .lock()
                .unwrap()
                .iter()
                .map(|a| a.seq)
                .filter(|s| (first..=last).contains(s))
                .collect();
            if got != truth {
                let missing = truth.iter().filter(|s| !got.contains(s)).count();
                return Err(format!(
                    "subscriber {i}: {} events received, {} stored, {missing} missing (seqs {first}..={last}); first received {:?}",
                    got.len(),
                    truth.len(),
                    &got[..got.len().min(8)]
                ));
            }
        }
        Ok(())
    }

    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// The sequence numbers stored in `first..=last`, read back through a
/// backlog `Subscribe` (the daemon's event log is the ground truth).
pub async fn stored_seqs(port: u16, first: i64, last: i64) -> Vec<i64> {
    let mut client = connect(port).await;
    let mut stream = client
        .subscribe(pb::SubscribeRequest {
            after_seq: first - 1,
            ..Default::default()
        })
        .await
        .expect("backlog Subscribe")
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("backlog read timed out")
        .expect("backlog read")
    {
        if e.seq > last {
            break;
        }
        out.push(e.seq);
        if e.seq == last {
            break;
        }
    }
    out
}

/// An RFC 4733 event packet (event 16, "flash": not a DTMF digit, so it
/// carries no identity). A RoIP link opens its squelch as soon as it
/// arrives, without the jitter buffer's playout delay, so the time it is
/// sent is the exact cause of the link's `cor` event.
pub fn flash_packet(seq: u16, timestamp: u32, ssrc: u32, telephone_event_pt: u8) -> Vec<u8> {
    let ev = TelephoneEvent {
        event: 16,
        end: true,
        volume: 10,
        duration: 400,
    };
    RtpHeader {
        marker: true,
        payload_type: telephone_event_pt,
        sequence: seq,
        timestamp,
        ssrc,
    }
    .to_datagram(&ev.emit())
}

/// Index of event `seq` among the events of subscriber 0 matching `pred`
/// (the k-th matching event belongs to the k-th cause).
pub fn cause_index(
    bodies: &[(i64, String, String)],
    pred: impl Fn(&str, &serde_json::Value) -> bool,
) -> std::collections::HashMap<i64, usize> {
    let mut out = std::collections::HashMap::new();
    for (seq, kind, json) in bodies {
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        if pred(kind, &v) {
            let k = out.len();
            out.insert(*seq, k);
        }
    }
    out
}
