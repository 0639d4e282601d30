//! Fault scenarios of issue 12 about a daemon that stops working and a
//! transmitter that never lets go, through the real binary:
//!
//! - **Watchdog**: with `NOTIFY_SOCKET` on a test-side datagram socket and
//!   `WATCHDOG_USEC` set, `WATCHDOG=1` pings arrive; a SIGSTOPped daemon
//!   sends none for longer than the interval and resumes after SIGCONT; a
//!   storage thread stuck behind another process's SQLite write lock (while
//!   the daemon has events to store) also stops the pings, because a ping is
//!   sent only after a storage round-trip and every channel task answered.
//! - **Stuck PTT**: a console `Talk` that never ends is cut by the channel's
//!   `tx_timeout_s` (RTP audio to the box stops, `tx_timeout` event, the
//!   Talk stream is told "timed out"), and the channel keys normally again;
//!   a box whose squelch is stuck open stops being patched to the other link
//!   at the time-out and is locked out until its squelch closes, after which
//!   it is patched again.
//!
//! Short and full form are the same here (tens of seconds); the full form
//! (`ROLLCALL_FAULTS=full`) prints the figures as `FAULT ...` lines.

mod support;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollcall_hw::audio::AudioFrame;
use rollcall_hw::rtp::{Codec, RtpSender};
use rollcall_proto::v1 as pb;
use support::*;

fn full() -> bool {
    std::env::var("ROLLCALL_FAULTS").is_ok_and(|v| v == "full")
}

fn report(scenario: &str, figure: &str, value: impl std::fmt::Display) {
    // Printed in both forms; `make faults` runs with --nocapture.
    println!("FAULT {scenario}: {figure} = {value}");
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Collects what the daemon sends to its notify socket, with arrival times.
struct NotifySocket {
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, halt) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !halt.load(SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        NotifySocket { got, stop }
    }

    fn pings(&self) -> Vec<Instant> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(t, _)| *t)
            .collect()
    }

    fn saw(&self, line: &str) -> bool {
        self.got
            .lock()
            .unwrap()
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == line))
    }

    /// Waits until `n` more pings than `after` arrived; returns the time of
    /// the first new one.
    fn wait_pings(&self, after: usize, n: usize, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let p = self.pings();
            if p.len() >= after + n {
                return Some(p[after]);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

/// Longest gap between consecutive pings (or the window edges) in `[from, to]`.
fn longest_gap(pings: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut edges = vec![from];
    edges.extend(pings.iter().copied().filter(|t| *t > from && *t < to));
    edges.push(to);
    edges.windows(2).map(|w| w[1] - w[0]).max().unwrap()
}

#[test]
fn hung_daemon_stops_its_watchdog_pings() {
    let dir = TempDir::new("watchdog");
    let sock_path = dir.path().join("notify.sock");
    let notify = NotifySocket::bind(&sock_path);
    // WATCHDOG_USEC = 2 s: a ping every second while healthy.
    let interval = Duration::from_secs(2);
    // A RoIP box the test keys in short bursts while the lock is held, so
    // the daemon has events and recordings to store.
    let (link_port, box_port) = (free_udp(), free_udp());
    let _box_sink = RtpSink::bind(box_port);
    let config = format!(
        r#"
[daemon]
station_id = "wd"
data_dir = "{data}"
shutdown_grace_ms = 1500
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
{link}
[[channel]]
id = "ch"
links = ["box"]
hang_time_ms = 100
"#,
        data = dir.path().join("data").display(),
        port = free_port(),
        link = roip_link("box", link_port, box_port),
    );
    let mut daemon = Daemon::start_with_env(
        dir.path(),
        &config,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", &interval.as_micros().to_string()),
        ],
    );

    // Healthy: READY, then pings about every second.
    assert!(
        notify.wait_pings(0, 3, Duration::from_secs(30)).is_some(),
        "no watchdog pings: {:?}\n{}",
        notify.got.lock().unwrap(),
        daemon.log_text()
    );
    assert!(notify.saw("READY=1"), "{:?}", notify.got.lock().unwrap());

    // SIGSTOP: the process is frozen, so nothing is sent for far longer
    // than the interval.
    daemon.signal(libc::SIGSTOP);
    // A datagram already in the socket buffer may still be read.
    std::thread::sleep(Duration::from_millis(100));
    let before = notify.pings().len();
    let stopped = Instant::now();
    std::thread::sleep(interval * 2 + Duration::from_millis(500));
    let frozen = stopped.elapsed();
    let during = notify.pings().len() - before;
    daemon.signal(libc::SIGCONT);
    assert_eq!(during, 0, "pings while SIGSTOPped");
    // Resumes well inside one interval (a generous bound for a loaded box).
    let cont = Instant::now();
    let resumed = notify
        .wait_pings(before, 1, Duration::from_secs(10))
        .expect("pings resume after SIGCONT");
    let resume_after = resumed.saturating_duration_since(cont);
    assert!(
        resume_after < interval * 2,
        "first ping {resume_after:?} after SIGCONT"
    );

    // Storage stuck: another process holds SQLite's write lock, so the
    // daemon's next event batch waits in the busy handler (5 s) and the
    // storage thread answers nothing meanwhile. The pings must stop.
    let db = rusqlite::Connection::open(dir.path().join("data/rollcalld.sqlite")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Instant::now();
    // 200 ms transmissions every 900 ms: each one is a batch of events.
    while locked.elapsed() < Duration::from_secs(8) {
        let stop = Arc::new(AtomicBool::new(false));
        let burst = stream_rtp(link_port, rand_ssrc(), stop.clone());
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, SeqCst);
        burst.join().unwrap();
        std::thread::sleep(Duration::from_millis(700));
    }
    let lock_window = locked.elapsed();
    db.execute_batch("ROLLBACK").unwrap();
    let unlocked = Instant::now();
    let gap = longest_gap(&notify.pings(), locked, unlocked);
    assert!(
        gap > interval,
        "pings kept coming while the storage thread was stuck (longest gap {gap:?}):\n{}",
        daemon.log_text()
    );
    assert!(
        daemon.wait_log("liveness probe did not answer", Duration::from_secs(1)),
        "{}",
        daemon.log_text()
    );
    let n = notify.pings().len();
    let back = notify
        .wait_pings(n, 1, Duration::from_secs(20))
        .expect("pings resume once the lock is gone");
    let storage_resume = back.saturating_duration_since(unlocked);
    // After the lock the storage thread may still finish one busy wait.
    assert!(
        storage_resume < Duration::from_secs(8),
        "{storage_resume:?}"
    );
    assert!(
        daemon.wait_log("watchdog pings resume", Duration::from_secs(5)),
        "{}",
        daemon.log_text()
    );

    daemon.stop_clean(Duration::from_secs(15));
    assert!(notify.saw("STOPPING=1"));
    // Not a pass criterion here (issue 12's disk-full scenario owns it), but
    // worth seeing: event batches the bus gave up on after the busy timeout.
    let lost_batches = daemon
        .log_text()
        .matches("cannot store events; they are not broadcast")
        .count();
    if full() {
        report("watchdog", "watchdog interval", format!("{interval:?}"));
        report(
            "watchdog",
            "event batches dropped while storage locked",
            lost_batches,
        );
        report("watchdog", "pings while SIGSTOPped", during);
        report("watchdog", "SIGSTOP window", format!("{frozen:.1?}"));
        report(
            "watchdog",
            "first ping after SIGCONT",
            format!("{resume_after:.2?}"),
        );
        report(
            "watchdog",
            "longest ping gap while storage locked",
            format!("{gap:.1?} of {lock_window:.1?}"),
        );
        report(
            "watchdog",
            "first ping after storage unlocked",
            format!("{storage_resume:.2?}"),
        );
    }
}

/// Records every datagram a test-side RoIP box receives: (arrival, payload
/// type).
struct RtpSink {
    got: Arc<Mutex<Vec<(Instant, u8)>>>,
    stop: Arc<AtomicBool>,
}

/// PCMU audio; comfort-noise keep-alives are PT 13.
const PT_AUDIO: u8 = 0;

impl RtpSink {
    fn bind(port: u16) -> RtpSink {
        let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, halt) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !halt.load(SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    if n >= 12 {
                        sink.lock().unwrap().push((Instant::now(), buf[1] & 0x7f));
                    }
                }
            }
        });
        RtpSink { got, stop }
    }

    fn audio(&self) -> Vec<Instant> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, pt)| *pt == PT_AUDIO)
            .map(|(t, _)| *t)
            .collect()
    }

    fn audio_after(&self, t: Instant) -> Vec<Instant> {
        self.audio().into_iter().filter(|a| *a > t).collect()
    }

    /// Waits for audio after `t`; returns the first packet's time.
    fn wait_audio_after(&self, t: Instant, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(first) = self.audio_after(t).first() {
                return Some(*first);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits until no audio arrived for `quiet`; returns the last packet's
    /// time.
    fn wait_audio_stops(&self, quiet: Duration, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(last) = self.audio().last() {
                if last.elapsed() >= quiet {
                    return Some(*last);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for RtpSink {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

/// A test-side RoIP box keying up: PCMU frames every 20 ms to `to` until
/// `stop` is set.
fn stream_rtp(to: u16, ssrc: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tx = RtpSender::new(Codec::Pcmu, 101, ssrc, 100, 0).unwrap();
        let mut frame = AudioFrame::SILENCE;
        for (i, s) in frame.samples.iter_mut().enumerate() {
            *s = ((i as f32 * 0.3).sin() * 6000.0) as i16;
        }
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(SeqCst) {
            let due = start + Duration::from_millis(20 * sent);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let d = tx.audio(&frame, Instant::now()).unwrap();
            sock.send_to(&d, ("127.0.0.1", to)).unwrap();
            sent += 1;
        }
        sent
    })
}

fn rand_ssrc() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u32
}

fn roip_link(id: &str, bind: u16, peer: u16) -> String {
    format!(
        r#"
[[link]]
id = "{id}"
kind = "roip"
[link.roip]
bind = "127.0.0.1:{bind}"
peer = "127.0.0.1:{peer}"
codec = {{ name = "pcmu" }}
peer_timeout_ms = 0
cor_hang_ms = 300
"#
    )
}

fn events_of(db: &Path, kind: &str) -> Vec<serde_json::Value> {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT body FROM events WHERE kind = ?1 ORDER BY seq") else {
        return Vec::new();
    };
    stmt.query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .filter_map(|b| serde_json::from_str(&b.ok()?).ok())
        .collect()
}

fn tone_pcm() -> Vec<u8> {
    (0..160)
        .map(|i| ((i as f64 * 0.6).sin() * 8000.0) as i16)
        .flat_map(|s| s.to_le_bytes())
        .collect()
}

fn talk_start(channel: &str) -> pb::TalkRequest {
    pb::TalkRequest {
        msg: Some(pb::talk_request::Msg::Start(pb::TalkStart {
            channel: channel.into(),
        })),
    }
}

fn talk_audio() -> pb::TalkRequest {
    pb::TalkRequest {
        msg: Some(pb::talk_request::Msg::Audio(pb::TalkAudio {
            pcm: tone_pcm(),
        })),
    }
}

async fn audio_client(
    port: u16,
) -> pb::audio_service_client::AudioServiceClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = pb::audio_service_client::AudioServiceClient::connect(format!(
            "http://127.0.0.1:{port}"
        ))
        .await
        {
            return c;
        }
        assert!(Instant::now() < deadline, "gRPC never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const TX_TIMEOUT_S: u64 = 3;
/// How late the cut may come after the time-out: the channel task's timer
/// plus the link's queue, on a loaded 2-core machine.
const CUT_MARGIN: Duration = Duration::from_millis(1000);

#[test]
fn stuck_console_talk_is_cut_by_the_transmit_time_out() {
    let dir = TempDir::new("stuck-talk");
    let (link_port, box_port, grpc) = (free_udp(), free_udp(), free_port());
    let sink = RtpSink::bind(box_port);
    let config = format!(
        r#"
[daemon]
station_id = "stuck"
data_dir = "{data}"
shutdown_grace_ms = 1500
[grpc]
listen = "127.0.0.1:{grpc}"
require_auth = false
{link}
[[channel]]
id = "ch"
links = ["box"]
hang_time_ms = 200
tx_timeout_s = {TX_TIMEOUT_S}
"#,
        data = dir.path().join("data").display(),
        link = roip_link("box", link_port, box_port),
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    let db = dir.path().join("data/rollcalld.sqlite");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (keyed_for, end_reason, second_frames) = rt.block_on(async {
        let mut audio = audio_client(grpc).await;
        // A console that keeps talking: frames every 20 ms, never half-closes.
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::TalkRequest>(64);
        tx.send(talk_start("ch")).await.unwrap();
        let mut replies = audio
            .talk(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let grant = replies.message().await.unwrap().unwrap();
        assert!(grant.granted, "{grant:?}");
        let feeder = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(20));
            // Stops only when the daemon stops reading (the test ends).
            loop {
                every.tick().await;
                if tx.send(talk_audio()).await.is_err() {
                    break;
                }
            }
        });
        let t0 = Instant::now();
        let first = sink
            .wait_audio_after(t0 - Duration::from_secs(1), Duration::from_secs(10))
            .expect("the console's audio reaches the box");
        // The stream is told why it ended, while the client still talks.
        let end = tokio::time::timeout(
            Duration::from_secs(TX_TIMEOUT_S) + Duration::from_secs(10),
            replies.message(),
        )
        .await
        .expect("the Talk stream ends by itself")
        .unwrap()
        .unwrap();
        assert!(!end.granted);
        let last = sink
            .wait_audio_stops(Duration::from_millis(500), Duration::from_secs(10))
            .expect("audio to the box stops");
        // Nothing more goes out while the client keeps sending.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            sink.audio_after(last).is_empty(),
            "audio resumed after the cut"
        );
        feeder.abort();

        // The channel works again: a normal Talk keys and releases.
        let before = Instant::now();
        // `start` goes first: the daemon reads it before answering.
        let (tx2, rx2) = tokio::sync::mpsc::channel::<pb::TalkRequest>(64);
        tx2.send(talk_start("ch")).await.unwrap();
        let mut replies2 = audio
            .talk(tokio_stream::wrappers::ReceiverStream::new(rx2))
            .await
            .unwrap()
            .into_inner();
        let frames: Vec<_> = (0..50).map(|_| talk_audio()).collect();
        let grant2 = tokio::time::timeout(Duration::from_secs(10), replies2.message())
            .await
            .expect("the second Talk is answered")
            .unwrap()
            .unwrap();
        assert!(
            grant2.granted,
            "channel not usable after the time-out: {grant2:?}"
        );
        for f in frames {
            tx2.send(f).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(tx2);
        let end2 = tokio::time::timeout(Duration::from_secs(10), replies2.message())
            .await
            .expect("the second Talk ends when the client half-closes")
            .unwrap()
            .unwrap();
        assert_eq!(end2.reason, "released", "{end2:?}");
        sink.wait_audio_stops(Duration::from_millis(500), Duration::from_secs(10))
            .unwrap();
        (last - first, end.reason, sink.audio_after(before).len())
    });
    assert_eq!(end_reason, "timed out");
    let timeout = Duration::from_secs(TX_TIMEOUT_S);
    assert!(
        keyed_for + Duration::from_millis(100) >= timeout && keyed_for <= timeout + CUT_MARGIN,
        "keyed for {keyed_for:?} with tx_timeout_s = {TX_TIMEOUT_S}"
    );
    // 50 frames sent in real time; the paced queue may drop a few.
    assert!(second_frames >= 45, "second talk: {second_frames} frames");

    // The event log tells the story: time-out, PTT off, transmission ended.
    let deadline = Instant::now() + Duration::from_secs(5);
    while events_of(&db, "tx_timeout").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let timeouts = events_of(&db, "tx_timeout");
    assert_eq!(timeouts.len(), 1, "{timeouts:?}");
    assert_eq!(timeouts[0]["source"], "console");
    assert_eq!(timeouts[0]["after_s"], TX_TIMEOUT_S);
    let ptt: Vec<bool> = events_of(&db, "ptt")
        .iter()
        .map(|e| e["on"].as_bool().unwrap())
        .collect();
    assert_eq!(ptt, vec![true, false, true, false], "PTT history");
    let ended: Vec<String> = events_of(&db, "transmission_ended")
        .iter()
        .filter(|e| e["direction"] == "tx")
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ended, vec!["timed out", "released"]);

    daemon.stop_clean(Duration::from_secs(15));
    if full() {
        report(
            "stuck_ptt",
            "console talk keyed for",
            format!("{keyed_for:.2?} (tx_timeout_s = {TX_TIMEOUT_S})"),
        );
        report("stuck_ptt", "frames of the next talk", second_frames);
    }
}

#[test]
fn stuck_squelch_patch_is_cut_and_locked_out_until_it_closes() {
    let dir = TempDir::new("stuck-cor");
    let (a_link, a_box, b_link, b_box, grpc) =
        (free_udp(), free_udp(), free_udp(), free_udp(), free_port());
    let b_sink = RtpSink::bind(b_box);
    // Box A's own port only has to exist; the daemon's keep-alives land there.
    let _a_sink = RtpSink::bind(a_box);
    let config = format!(
        r#"
[daemon]
station_id = "stuck-cor"
data_dir = "{data}"
shutdown_grace_ms = 1500
[grpc]
listen = "127.0.0.1:{grpc}"
require_auth = false
{a}
{b}
[[channel]]
id = "merged"
links = ["a", "b"]
merge = true
hang_time_ms = 200
patch_tail_ms = 200
tx_timeout_s = {TX_TIMEOUT_S}
"#,
        data = dir.path().join("data").display(),
        a = roip_link("a", a_link, a_box),
        b = roip_link("b", b_link, b_box),
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    let db = dir.path().join("data/rollcalld.sqlite");
    assert!(daemon.wait_log("rollcalld ready", Duration::from_secs(20)));

    // Box A's squelch sticks open: it streams without end.
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let streamer = stream_rtp(a_link, 1, stop.clone());
    let first = b_sink
        .wait_audio_after(t0, Duration::from_secs(10))
        .expect("A is patched to B");
    let last = b_sink
        .wait_audio_stops(Duration::from_millis(500), Duration::from_secs(15))
        .expect("the patch is cut");
    let patched_for = last - first;
    // A keeps streaming: locked out, B stays unkeyed.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        b_sink.audio_after(last).is_empty(),
        "a stuck squelch was patched again before it closed"
    );
    stop.store(true, SeqCst);
    let sent = streamer.join().unwrap();
    assert!(sent as f64 * 0.02 > TX_TIMEOUT_S as f64 + 2.0);

    // A's squelch closes (COR hang), then A talks normally: patched again.
    std::thread::sleep(Duration::from_millis(800));
    let again = Instant::now();
    let stop2 = Arc::new(AtomicBool::new(false));
    let streamer2 = stream_rtp(a_link, 2, stop2.clone());
    std::thread::sleep(Duration::from_secs(1));
    stop2.store(true, SeqCst);
    streamer2.join().unwrap();
    b_sink
        .wait_audio_stops(Duration::from_millis(500), Duration::from_secs(10))
        .unwrap();
    let relayed_again = b_sink.audio_after(again).len();
    assert!(
        relayed_again >= 40,
        "after the lock-out A is patched again: {relayed_again} frames"
    );

    let timeout = Duration::from_secs(TX_TIMEOUT_S);
    assert!(
        patched_for + Duration::from_millis(100) >= timeout && patched_for <= timeout + CUT_MARGIN,
        "B keyed for {patched_for:?} with tx_timeout_s = {TX_TIMEOUT_S}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while events_of(&db, "tx_timeout").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let timeouts = events_of(&db, "tx_timeout");
    assert_eq!(timeouts.len(), 1, "{timeouts:?}");
    assert_eq!(timeouts[0]["source"], "patch");
    let b_ptt: Vec<bool> = events_of(&db, "ptt")
        .iter()
        .filter(|e| e["link"] == "b")
        .map(|e| e["on"].as_bool().unwrap())
        .collect();
    assert_eq!(b_ptt, vec![true, false, true, false], "B's PTT history");

    daemon.stop_clean(Duration::from_secs(15));
    if full() {
        report(
            "stuck_ptt",
            "stuck squelch patched for",
            format!("{patched_for:.2?} (tx_timeout_s = {TX_TIMEOUT_S})"),
        );
        report(
            "stuck_ptt",
            "frames patched after squelch closed",
            relayed_again,
        );
    }
}
