//! One hundred concurrent `EventService.Subscribe` consoles each receive
//! every event once, in order, with nothing missing, while a RoIP box opens
//! and closes a link's squelch (the stored event log is the ground truth).
//! Correctness only; `cargo bench -p rollcalld --bench api` measures the
//! latencies.

#[path = "support/fanout.rs"]
mod fanout;
mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::*;

const SUBSCRIBERS: usize = 100;
const CYCLES: usize = 15;

#[test]
fn a_hundred_subscribers_each_get_every_event_once_in_order() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let link_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("fanout");
    let port = free_port();
    let config = format!(
        r#"
[daemon]
station_id = "it-fanout"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false
[recorder]
enabled = false
[[link]]
id = "box"
kind = "roip"
[link.roip]
bind = "127.0.0.1:{link_port}"
peer = "{peer}"
codec = {{ name = "pcmu" }}
peer_timeout_ms = 0
keepalive_ms = 0
cor_hang_ms = 30
[[channel]]
id = "ch"
links = ["box"]
hang_time_ms = 20
"#,
        data = dir.path().join("data").display(),
        peer = peer.local_addr().unwrap(),
    );
    let daemon = Daemon::start(dir.path(), &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let subs = fanout::Subscribers::start(port, SUBSCRIBERS).await;
        for k in 0..CYCLES {
            let p = fanout::flash_packet(k as u16, k as u32 * 8000, 7, 101);
            peer.send_to(&p, ("127.0.0.1", link_port)).unwrap();
            // Wait for this cycle's end, so each cycle is a whole squelch
            // open/close with its transmission started/ended.
            let ended = subs.wait_cycle_ended(k, Duration::from_secs(20)).await;
            assert!(ended, "cycle {k} never ended:\n{}", daemon.log_text());
        }
        // Start at our first squelch event: a `link_up` from start-up may
        // have reached only the consoles that were already connected.
        let mut bodies = subs.bodies.lock().unwrap().clone();
        let start = bodies.iter().position(|(_, k, _)| k == "cor").unwrap();
        bodies.drain(..start);
        let kinds: Vec<&str> = bodies.iter().map(|(_, k, _)| k.as_str()).collect();
        for kind in ["cor", "transmission_started", "transmission_ended"] {
            let n = kinds.iter().filter(|k| **k == kind).count();
            let want = if kind == "cor" { 2 * CYCLES } else { CYCLES };
            assert_eq!(n, want, "{kind} events: {kinds:?}");
        }
        let (first, last) = (bodies[0].0, bodies[bodies.len() - 1].0);
        let truth = fanout::stored_seqs(port, first, last).await;
        assert_eq!(truth.len(), bodies.len(), "stored {truth:?}");
        assert!(
            subs.wait_all(last, Duration::from_secs(30)).await,
            "not every subscriber got the last event"
        );
        if let Err(e) = subs.check(&truth) {
            panic!("{e}");
        }
        subs.stop();
    });
    daemon.signal(libc::SIGTERM);
}
