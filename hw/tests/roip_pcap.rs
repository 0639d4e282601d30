//! What the transmit side sends is valid RTP to an independent dissector:
//! packets captured from the real driver (and from the sender core for each
//! codec) are written to a pcap and read back by `tshark` with its rtp and
//! rtpevent dissectors; none may be malformed.

use std::net::{SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use rollcall_hw::audio::AudioFrame;
use rollcall_hw::link::{spawn_supervised, Backoff};
use rollcall_hw::roip::{Codec, RoipConfig, RoipDriver};
use rollcall_hw::rtp::pcap::PcapWriter;
use rollcall_hw::rtp::RtpSender;
use tokio_util::sync::CancellationToken;

const PORT_SRC: u16 = 4000;
const PORT_DST: u16 = 5004;

fn tshark() -> Option<&'static str> {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: tshark is not installed (apt-get install -y tshark)");
    }
    ok.then_some("tshark")
}

fn tone(n: usize) -> AudioFrame {
    let mut f = AudioFrame::SILENCE;
    for (i, s) in f.samples.iter_mut().enumerate() {
        *s = (6000.0 * ((n * 160 + i) as f32 * 0.35).sin()) as i16;
    }
    f
}

fn write_pcap(path: &std::path::Path, datagrams: &[Vec<u8>]) {
    let src: SocketAddrV4 = format!("10.0.0.1:{PORT_SRC}").parse().unwrap();
    let dst: SocketAddrV4 = format!("10.0.0.2:{PORT_DST}").parse().unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).unwrap();
    for (i, d) in datagrams.iter().enumerate() {
        w.write_udp(Duration::from_millis(20 * i as u64), src, dst, d)
            .unwrap();
    }
}

/// Runs tshark over the capture: returns (rows of rtp fields, malformed rows).
fn dissect(path: &std::path::Path, extra: &[&str]) -> (Vec<String>, Vec<String>) {
    let run = |args: &[&str]| {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(path)
            .args(["-d", &format!("udp.port=={PORT_DST},rtp")])
            .args(["-o", "rtpevent.event_payload_type_value:101"])
            .args(extra)
            .args(args)
            .output()
            .expect("run tshark");
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let rows = run(&[
        "-T",
        "fields",
        "-e",
        "rtp.p_type",
        "-e",
        "rtp.seq",
        "-e",
        "rtp.timestamp",
        "-e",
        "rtp.marker",
        "-e",
        "rtpevent.event_id",
        "-e",
        "rtpevent.end_of_event",
    ]);
    let malformed = run(&["-Y", "_ws.malformed || _ws.expert.severity >= 8388608"]);
    (rows, malformed)
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("roip-{}-{name}", std::process::id()))
}

#[test]
fn every_codec_from_the_sender_core_dissects_cleanly() {
    if tshark().is_none() {
        return;
    }
    for codec in [Codec::Pcmu, Codec::Pcma, Codec::Opus { pt: 111 }] {
        let t0 = Instant::now();
        let mut tx = RtpSender::new(codec, 101, 0x1234_5678, 65530, 4_000_000_000).unwrap();
        let mut datagrams = vec![tx.keepalive(t0)];
        for n in 0..20 {
            datagrams.push(
                tx.audio(&tone(n), t0 + Duration::from_millis(20 * n as u64))
                    .unwrap(),
            );
        }
        for (_, d) in tx.dtmf(
            "12#",
            Duration::from_millis(80),
            Duration::from_millis(50),
            t0 + Duration::from_secs(1),
        ) {
            datagrams.push(d);
        }
        let path = temp(&format!("{}.pcap", codec.name()));
        write_pcap(&path, &datagrams);
        let (rows, malformed) = dissect(&path, &[]);
        assert!(
            malformed.is_empty(),
            "{codec:?}: malformed packets: {malformed:?}"
        );
        assert_eq!(rows.len(), datagrams.len(), "{codec:?}: {rows:?}");
        let pt = codec.payload_type().to_string();
        let audio: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.split('\t').collect::<Vec<_>>())
            .filter(|f| f[0] == pt)
            .collect();
        assert_eq!(audio.len(), 20);
        // Sequence wraps, the marker is on the first frame, timestamps step by one frame.
        assert_eq!(audio[0][1], "65531");
        assert_eq!(audio[5][1], "0");
        assert!(
            audio[0][3] == "1" || audio[0][3] == "True",
            "{:?}",
            audio[0]
        );
        let ts: Vec<u64> = audio.iter().map(|f| f[2].parse().unwrap()).collect();
        let step = codec.ticks_per_frame() as u64;
        assert!(
            ts.windows(2)
                .all(|w| (w[1] + (1 << 32) - w[0]) % (1 << 32) == step),
            "{ts:?}"
        );
        let events: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.split('\t').nth(4).filter(|e| !e.is_empty()))
            .collect();
        assert!(
            events.contains(&"1") && events.contains(&"11"),
            "{codec:?}: rtpevent rows {events:?}"
        );
        let _ = std::fs::remove_file(&path);
    }
}

#[tokio::test]
async fn capture_from_the_running_driver_dissects_cleanly() {
    if tshark().is_none() {
        return;
    }
    let capture = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer: SocketAddr = capture.local_addr().unwrap();
    let mut cfg = RoipConfig::new("127.0.0.1:0".parse().unwrap(), peer, Codec::Pcmu);
    cfg.keepalive_ms = 100;
    cfg.peer_timeout_ms = 0;
    let driver = RoipDriver::new(cfg);
    let dtmf = driver.telephone_events();
    let cancel = CancellationToken::new();
    let (handle, _events, task) =
        spawn_supervised("tx", Box::new(driver), Backoff::default(), cancel.clone());
    let mut datagrams = Vec::new();
    let mut buf = [0u8; 2048];
    // A keep-alive while idle.
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), capture.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    datagrams.push(buf[..n].to_vec());
    // Two talkspurts and a DTMF burst.
    for _ in 0..2 {
        handle.ptt(true);
        for i in 0..10 {
            handle.transmit(tone(i));
        }
        handle.ptt(false);
    }
    let count_pt = |d: &[Vec<u8>], pt: u8| {
        d.iter()
            .filter(|p| p.len() > 1 && p[1] & 0x7f == pt)
            .count()
    };
    while count_pt(&datagrams, 0) < 20 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), capture.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        datagrams.push(buf[..n].to_vec());
    }
    // Then a DTMF burst: two 80 ms digits, each three updates and three ends.
    assert!(dtmf.send("90"));
    while count_pt(&datagrams, 101) < 12 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), capture.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        datagrams.push(buf[..n].to_vec());
    }
    cancel.cancel();
    task.await.unwrap();
    let path = temp("driver.pcap");
    write_pcap(&path, &datagrams);
    let (rows, malformed) = dissect(&path, &[]);
    assert!(malformed.is_empty(), "malformed: {malformed:?}");
    let markers = rows
        .iter()
        .filter(|r| {
            let f: Vec<&str> = r.split('\t').collect();
            f[0] == "0" && (f[3] == "1" || f[3] == "True")
        })
        .count();
    assert_eq!(markers, 2, "one marker per talkspurt: {rows:?}");
    let _ = std::fs::remove_file(&path);
}
