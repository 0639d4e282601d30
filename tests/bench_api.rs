//! API latency figures, measured through the real daemon on loopback
//! (`cargo bench -p rollcalld --bench api`, part of `make bench`):
//! - **event fan-out**: a test-side RoIP box opens a link's squelch with an
//!   RFC 4733 packet (no jitter buffer on that path); the `cor` and
//!   `transmission_started` events it causes are timed from the packet's
//!   send to their arrival at each of 100 concurrent `EventService.Subscribe`
//!   consoles (each on its own connection); every event is also timed from
//!   its own `ts_ms` (a millisecond stamp: an upper bound, ≤ 1 ms coarse).
//!   Every console must get every stored event once, in order (asserted).
//!   The consoles run in this process on the same cores as the daemon, so
//!   their own receive work is inside the figures.
//! - **monitor**: RoIP audio into a link, `AudioService.Monitor` frames out.
//! - **patch**: RoIP audio into link A of a merged channel, RTP out of link B.
//!
//! # The jitter buffer's hold
//! A RoIP link plays audio out of an adaptive jitter buffer: a deliberate
//! playout delay, not processing cost. The audio links here are configured
//! with `jitter_min_ms = jitter_max_ms = 20`, the smallest the config
//! accepts, which pins the delay: the first packet of a talkspurt is played
//! 20 ms after it arrives and packet `n` 20·n ms after that, whatever the
//! measured jitter (the buffer cannot grow past its maximum). So each frame
//! has two figures:
//! - *raw*: packet `n` sent → frame out (includes the hold);
//! - *net*: frame out − (first packet of its talkspurt sent + 20 ms + 20·n
//!   ms), i.e. the time after the buffer's scheduled release. The buffer
//!   anchors on the first packet's *arrival*, which is after its send, so
//!   this includes that packet's loopback transit and receive, and the
//!   playout timer's wake-up (tokio timers tick in whole ms): an upper bound
//!   on processing cost. It is the figure compared with the 5 ms goal ("RoIP
//!   packet in to gRPC frame out", which a 20 ms minimum hold would
//!   otherwise make impossible). From a packet this loaded test sends too
//!   late for its slot (concealment plays instead) to the end of its
//!   talkspurt, frames are left out and counted.
//!
//! Monitor frames carry Opus, so frame `n` of a talkspurt is matched by
//! order (the link's frames are strictly ordered; concealed frames only
//! follow the last one). Patched frames are PCMU passed through unchanged,
//! so they are matched by their payload bytes.
//!
//! Prints a markdown table; also writes it to `$BENCH_OUT/api.md`.

#[path = "support/fanout.rs"]
mod fanout;
mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollcall_hw::rtp::{g711, RtpHeader, RtpPacket};
use rollcall_proto::v1 as pb;
use support::*;

const SUBSCRIBERS: usize = 100;
/// Squelch open/close cycles for the fan-out figure (4 events each), one
/// every `EVENT_PERIOD` at most.
const EVENT_CYCLES: usize = 250;
const EVENT_PERIOD: Duration = Duration::from_millis(100);
/// Talkspurts and 20 ms frames per talkspurt for the audio figures.
const TALKSPURTS: usize = 16;
const FRAMES: usize = 50;
/// Silence between talkspurts: longer than squelch hang, hang time and the
/// buffer's concealment, so each talkspurt re-anchors the playout clock.
const GAP: Duration = Duration::from_millis(500);
const FRAME: Duration = Duration::from_millis(20);
/// The pinned jitter-buffer delay (`jitter_min_ms = jitter_max_ms`).
const HOLD_MS: u64 = 20;
const GOAL_MS: f64 = 5.0;
/// Time a packet needs to reach the buffer before its slot (loopback is
/// ~0.1 ms; generous).
const LATE_MARGIN: Duration = Duration::from_millis(5);

fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn free_udp_port() -> u16 {
    udp().local_addr().unwrap().port()
}

struct Ports {
    grpc: u16,
    ev: u16,
    mon: u16,
    pa: u16,
    pb: u16,
}

fn config(dir: &std::path::Path, p: &Ports, peer: &UdpSocket, pb_peer: &UdpSocket) -> String {
    let roip = |id: &str, bind: u16, peer: std::net::SocketAddr, extra: &str| {
        format!(
            r#"
[[link]]
id = "{id}"
kind = "roip"
[link.roip]
bind = "127.0.0.1:{bind}"
peer = "{peer}"
codec = {{ name = "pcmu" }}
peer_timeout_ms = 0
keepalive_ms = 0
{extra}
"#
        )
    };
    let peer = peer.local_addr().unwrap();
    let audio = "jitter_min_ms = 20\njitter_max_ms = 20\ncor_hang_ms = 100";
    format!(
        r#"
[daemon]
station_id = "bench-api"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{grpc}"
require_auth = false
[recorder]
enabled = false
{ev}{mon}{pa}{pb}
[[channel]]
id = "events"
links = ["ev"]
hang_time_ms = 20
[[channel]]
id = "monitor"
links = ["mon"]
hang_time_ms = 100
[[channel]]
id = "patch"
links = ["pa", "pb"]
merge = true
hang_time_ms = 100
patch_tail_ms = 0
"#,
        data = dir.join("data").display(),
        grpc = p.grpc,
        ev = roip("ev", p.ev, peer, "cor_hang_ms = 30"),
        mon = roip("mon", p.mon, peer, audio),
        pa = roip("pa", p.pa, peer, audio),
        pb = roip("pb", p.pb, pb_peer.local_addr().unwrap(), ""),
    )
}

/// The 1-minute load average, as /proc/loadavg says it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// p50, p99 and max of `v` in ms.
fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A signed difference `a − b` in ms.
fn diff_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        ms(a - b)
    } else {
        -ms(b - a)
    }
}

fn row(table: &mut String, figure: &str, v: &mut [f64], goal: Option<f64>) {
    if v.is_empty() {
        let _ = writeln!(
            table,
            "| {figure} | 0 | — | — | — | — | MISSED (no samples) |"
        );
        return;
    }
    let (p50, p99, max) = stats(v);
    let (goal_s, verdict) = match goal {
        Some(g) => (
            format!("p99 < {g:.0} ms"),
            if p99 < g { "met" } else { "MISSED" }.to_string(),
        ),
        None => ("—".into(), "—".into()),
    };
    let _ = writeln!(
        table,
        "| {figure} | {} | {p50:.2} ms | {p99:.2} ms | {max:.2} ms | {goal_s} | {verdict} |",
        v.len()
    );
}

/// PCMU codes that survive decode → encode unchanged, so a payload passed
/// through the daemon's linear frames comes out byte for byte.
fn stable_codes() -> Vec<u8> {
    (0..=255u8)
        .filter(|&c| g711::ulaw_encode(g711::ulaw_decode(c)) == c)
        .collect()
}

/// The payload of frame `n` of talkspurt `k`: pseudo-random stable codes,
/// unique per frame, so the frame can be recognised after the patch.
fn payload(codes: &[u8], k: usize, n: usize) -> Vec<u8> {
    let mut x = (k as u64 * 1000 + n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..160)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            codes[(x % codes.len() as u64) as usize]
        })
        .collect()
}

/// Sends `TALKSPURTS` talkspurts of `FRAMES` paced 20 ms frames to `to`.
/// Returns each packet's send time, per talkspurt.
fn send_talkspurts(sock: &UdpSocket, to: u16, ssrc: u32, codes: &[u8]) -> Vec<Vec<Instant>> {
    let mut sent = Vec::with_capacity(TALKSPURTS);
    let mut seq = 1000u16;
    let mut ts = 0u32;
    for k in 0..TALKSPURTS {
        let t0 = Instant::now();
        let mut times = Vec::with_capacity(FRAMES);
        for n in 0..FRAMES {
            let due = t0 + FRAME * n as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let d = RtpHeader {
                marker: n == 0,
                payload_type: 0,
                sequence: seq,
                timestamp: ts,
                ssrc,
            }
            .to_datagram(&payload(codes, k, n));
            let at = Instant::now();
            sock.send_to(&d, ("127.0.0.1", to)).unwrap();
            times.push(at);
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
        }
        sent.push(times);
        ts = ts.wrapping_add(8000);
        std::thread::sleep(GAP);
    }
    sent
}

/// When the jitter buffer releases frame `n` of talkspurt `k` at the
/// earliest: its first packet's arrival (≥ its send) + the hold + 20·n ms.
fn release(sent: &[Vec<Instant>], k: usize, n: usize) -> Instant {
    sent[k][0] + Duration::from_millis(HOLD_MS) + FRAME * n as u32
}

/// Raw and net latency of frame `n` of talkspurt `k` received at `at`.
fn audio_latency(sent: &[Vec<Instant>], k: usize, n: usize, at: Instant) -> (f64, f64) {
    (diff_ms(at, sent[k][n]), diff_ms(at, release(sent, k, n)))
}

/// The first packet of talkspurt `k` the (loaded) test machine sent so late
/// that it may have missed its playout slot (`FRAMES` if none). From there
/// on the slot held concealment, and after 4 such slots the buffer ends the
/// talkspurt and re-anchors on the next packet, so the schedule is no longer
/// known: frames from it on are left out of the figures and counted.
fn first_late(sent: &[Vec<Instant>], k: usize) -> usize {
    (0..FRAMES)
        .find(|&n| sent[k][n] + LATE_MARGIN > release(sent, k, n))
        .unwrap_or(FRAMES)
}

/// The talkspurt whose window `[first packet, next talkspurt's first
/// packet)` holds `at`.
fn talkspurt_of(sent: &[Vec<Instant>], at: Instant) -> Option<usize> {
    (0..sent.len()).rev().find(|&k| at >= sent[k][0])
}

fn main() {
    let bench_start = Instant::now();
    let load_start = load_average();
    let mut table = String::from(
        "| figure | samples | p50 | p99 | max | goal | verdict |\n|---|---:|---:|---:|---:|---|---|\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = TempDir::new("bench-api");
    let peer = udp();
    let pb_peer = udp();
    let ports = Ports {
        grpc: free_port(),
        ev: free_udp_port(),
        mon: free_udp_port(),
        pa: free_udp_port(),
        pb: free_udp_port(),
    };
    let mut daemon = Daemon::start(dir.path(), &config(dir.path(), &ports, &peer, &pb_peer));
    let codes = stable_codes();

    // --- 1. event fan-out to 100 subscribers ---
    rt.block_on(async {
        let subs = fanout::Subscribers::start(ports.grpc, SUBSCRIBERS).await;
        let mut causes = Vec::with_capacity(EVENT_CYCLES);
        let t0 = Instant::now();
        for k in 0..EVENT_CYCLES {
            let due = t0 + EVENT_PERIOD * k as u32;
            tokio::time::sleep_until(due.into()).await;
            let p = fanout::flash_packet(k as u16, k as u32 * 8000, 7, 101);
            causes.push(Instant::now());
            peer.send_to(&p, ("127.0.0.1", ports.ev)).unwrap();
            // One whole squelch open/close per cycle, even on a stalled
            // machine, so the k-th `cor` event belongs to the k-th packet.
            let ended = subs
                .wait_cycle_ended(k, Duration::from_secs(30))
                .await;
            assert!(ended, "cycle {k} never ended:\n{}", daemon.log_text());
        }
        let mut bodies = subs.bodies.lock().unwrap().clone();
        let start = bodies.iter().position(|(_, k, _)| k == "cor").unwrap();
        bodies.drain(..start);
        let (first, last) = (bodies[0].0, bodies[bodies.len() - 1].0);
        let truth = fanout::stored_seqs(ports.grpc, first, last).await;
        assert!(
            subs.wait_all(last, Duration::from_secs(30)).await,
            "not every subscriber got the last event"
        );
        if let Err(e) = subs.check(&truth) {
            panic!("fan-out: {e}");
        }
        // Events with an exact cause: the squelch opening and the
        // transmission it starts, k-th of each for the k-th packet.
        let opened = fanout::cause_index(&bodies, |k, v| k == "cor" && v["open"] == true);
        let started = fanout::cause_index(&bodies, |k, _| k == "transmission_started");
        assert_eq!(opened.len(), EVENT_CYCLES, "cor open events");
        assert_eq!(started.len(), EVENT_CYCLES, "transmission_started events");
        let (mut cor, mut tx, mut stamped) = (Vec::new(), Vec::new(), Vec::new());
        // Per event: the first and the last console to get it.
        let mut span: HashMap<i64, (Instant, Instant)> = HashMap::new();
        for l in &subs.lists {
            for a in l.lock().unwrap().iter() {
                if !(first..=last).contains(&a.seq) {
                    continue;
                }
                let s = span.entry(a.seq).or_insert((a.at, a.at));
                *s = (s.0.min(a.at), s.1.max(a.at));
                if let Some(&k) = opened.get(&a.seq) {
                    cor.push(diff_ms(a.at, causes[k]));
                }
                if let Some(&k) = started.get(&a.seq) {
                    tx.push(diff_ms(a.at, causes[k]));
                }
                stamped.push((a.wall_us - a.ts_ms * 1000) as f64 / 1000.0);
            }
        }
        let _ = writeln!(
            table,
            "| fan-out: {SUBSCRIBERS} subscribers × {} events, each got every event once, in order | {} | — | — | — | all | met |",
            truth.len(),
            SUBSCRIBERS * truth.len()
        );
        row(
            &mut table,
            &format!("fan-out: RoIP packet sent → `cor` event at each of {SUBSCRIBERS} subscribers"),
            &mut cor,
            None,
        );
        row(
            &mut table,
            &format!("fan-out: RoIP packet sent → `transmission_started` at each of {SUBSCRIBERS} subscribers"),
            &mut tx,
            None,
        );
        let mut first_cor: Vec<f64> = opened
            .iter()
            .map(|(seq, &k)| diff_ms(span[seq].0, causes[k]))
            .collect();
        row(
            &mut table,
            &format!("fan-out: RoIP packet sent → `cor` event at the first of {SUBSCRIBERS} subscribers (stored, then sent)"),
            &mut first_cor,
            None,
        );
        let mut spread: Vec<f64> = span.values().map(|&(a, b)| diff_ms(b, a)).collect();
        row(
            &mut table,
            &format!("fan-out: spread, first → last of {SUBSCRIBERS} subscribers to get an event, every event"),
            &mut spread,
            None,
        );
        row(
            &mut table,
            &format!("fan-out: event `ts_ms` → arrival at each of {SUBSCRIBERS} subscribers, every event (ms stamp: ≤ 1 ms high)"),
            &mut stamped,
            None,
        );
        subs.stop();
    });

    // --- 2. monitor: RoIP audio in → Monitor frame out ---
    rt.block_on(async {
        let url = format!("http://127.0.0.1:{}", ports.grpc);
        let mut client = pb::audio_service_client::AudioServiceClient::connect(url)
            .await
            .expect("connect");
        let mut stream = client
            .monitor(pb::MonitorRequest {
                channels: vec!["monitor".into()],
            })
            .await
            .expect("Monitor")
            .into_inner();
        let frames: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let sink = frames.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(tick)) = stream.message().await {
                let at = Instant::now();
                let mut s = sink.lock().unwrap();
                for c in tick.channels {
                    s.push((at, c.link));
                }
            }
        });
        let sock = peer.try_clone().unwrap();
        let (to, c) = (ports.mon, codes.clone());
        let sent = tokio::task::spawn_blocking(move || send_talkspurts(&sock, to, 11, &c))
            .await
            .unwrap();
        // The last talkspurt's frames are out 20 ms after its last packet.
        let deadline = Instant::now() + Duration::from_secs(10);
        while frames
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= sent[TALKSPURTS - 1][0])
            .count()
            < FRAMES
        {
            assert!(Instant::now() < deadline, "monitor frames missing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reader.abort();
        let frames = frames.lock().unwrap().clone();
        let mut per: Vec<Vec<Instant>> = vec![Vec::new(); TALKSPURTS];
        for (at, link) in &frames {
            assert_eq!(link, "mon", "a frame from another link");
            if let Some(k) = talkspurt_of(&sent, *at) {
                per[k].push(*at);
            }
        }
        let (mut raw, mut net, mut late) = (Vec::new(), Vec::new(), 0);
        for (k, arrivals) in per.iter().enumerate() {
            let cut = first_late(&sent, k);
            late += FRAMES - cut;
            // Each packet once, then at most the buffer's 3 concealed frames.
            assert!(
                arrivals.len() >= cut
                    && (cut < FRAMES || arrivals.len() <= FRAMES + 3),
                "talkspurt {k}: {} monitor frames for {FRAMES} packets",
                arrivals.len()
            );
            for (n, at) in arrivals.iter().take(cut).enumerate() {
                let (r, t) = audio_latency(&sent, k, n, *at);
                raw.push(r);
                net.push(t);
            }
        }
        row(
            &mut table,
            "monitor: RoIP packet sent → Monitor frame received, raw (includes the 20 ms jitter-buffer hold)",
            &mut raw,
            None,
        );
        row(
            &mut table,
            "monitor: jitter-buffer release (first packet + 20 ms + 20 ms·n) → Monitor frame received, net",
            &mut net,
            Some(GOAL_MS),
        );
        let _ = writeln!(
            table,
            "| monitor: frames left out, from a packet the test sent too late for its slot to its talkspurt's end | {late} of {} | — | — | — | — | — |",
            TALKSPURTS * FRAMES
        );
    });

    // --- 3. patch: RoIP link A in → RoIP link B out ---
    {
        let rx = pb_peer.try_clone().unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // The receiver stops once the last frame is through (or at a
        // generous deadline, so a lost frame cannot hang the bench).
        let last_payload = payload(&codes, TALKSPURTS - 1, FRAMES - 1);
        let receiver = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            let limit = Instant::now()
                + GAP * TALKSPURTS as u32
                + FRAME * (TALKSPURTS * FRAMES) as u32
                + Duration::from_secs(10);
            while Instant::now() < limit {
                if let Ok((n, _)) = rx.recv_from(&mut buf) {
                    let at = Instant::now();
                    if let Ok(p) = RtpPacket::parse(&buf[..n]) {
                        if p.header.payload_type == 0 {
                            let done = p.payload == last_payload.as_slice();
                            got.push((at, p.payload.to_vec()));
                            if done {
                                break;
                            }
                        }
                    }
                }
            }
            got
        });
        let sent = send_talkspurts(&peer, ports.pa, 12, &codes);
        let mut index = HashMap::new();
        for k in 0..TALKSPURTS {
            for n in 0..FRAMES {
                index.insert(payload(&codes, k, n), (k, n));
            }
        }
        let got = receiver.join().unwrap();
        let mut seen = HashMap::new();
        let (mut raw, mut net) = (Vec::new(), Vec::new());
        let mut prev: Option<(usize, usize)> = None;
        for (at, p) in &got {
            let Some(&(k, n)) = index.get(p) else {
                continue; // concealment after a talkspurt's end
            };
            assert!(
                seen.insert((k, n), ()).is_none(),
                "frame {n} of talkspurt {k} patched twice"
            );
            assert!(
                prev < Some((k, n)),
                "frame {n} of talkspurt {k} out of order"
            );
            prev = Some((k, n));
            if n >= first_late(&sent, k) {
                continue;
            }
            let (r, t) = audio_latency(&sent, k, n, *at);
            raw.push(r);
            net.push(t);
        }
        let kept: Vec<(usize, usize)> = (0..TALKSPURTS)
            .flat_map(|k| (0..first_late(&sent, k)).map(move |n| (k, n)))
            .collect();
        let missing = kept.iter().filter(|f| !seen.contains_key(f)).count();
        row(
            &mut table,
            "patch: RoIP packet into link A → RTP out of link B, raw (includes the 20 ms jitter-buffer hold)",
            &mut raw,
            None,
        );
        row(
            &mut table,
            "patch: jitter-buffer release on A (first packet + 20 ms + 20 ms·n) → RTP out of B, net",
            &mut net,
            Some(GOAL_MS),
        );
        let _ = writeln!(
            table,
            "| patch: frames sent in time but not patched byte for byte | {missing} of {} | — | — | — | 0 | {} |",
            kept.len(),
            if missing == 0 { "met" } else { "MISSED" }
        );
        let _ = writeln!(
            table,
            "| patch: frames left out, from a packet the test sent too late for its slot to its talkspurt's end | {} of {} | — | — | — | — | — |",
            TALKSPURTS * FRAMES - kept.len(),
            TALKSPURTS * FRAMES
        );
    }

    // p99 on a shared machine follows its load: say what it was.
    let _ = writeln!(
        table,
        "| machine load average (1 min) at start → end, on {} cores | {load_start} → {} | — | — | — | — | — |",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    println!("## API latency through the real daemon (loopback, release build)\n");
    print!("{table}");
    println!(
        "\nbench wall time: {:.0} s",
        bench_start.elapsed().as_secs_f64()
    );
    if let Ok(out) = std::env::var("BENCH_OUT") {
        let _ = std::fs::write(std::path::Path::new(&out).join("api.md"), &table);
    }
}
