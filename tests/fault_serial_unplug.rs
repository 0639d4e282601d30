//! A serial control link unplugged and plugged back in, through the real
//! binary. The test plays the radio interface on a real PTY speaking the
//! SvxLink protocol (`O`/`Z` squelch in, `T`/`R` keying out); the daemon's
//! `kind = "control"` link opens it through a symlink, as it would a
//! `/dev/serial/by-id/...` name.
//!
//! Each cycle: squelch open, a console transmission keying the radio, then
//! the device vanishes (its node removed, or the interface closed so reads
//! fail with EIO) and comes back as a new PTY behind the same name. The daemon
//! must report the link down in `GetStatus` (squelch and PTT cleared, channel
//! idle), stay up, key nothing on the new device by itself, reopen it within
//! its back-off, and the link must work again: squelch seen, PTT keyed and
//! released on request.
//!
//! Short form: one cycle of each kind of removal. `ROLLCALL_FAULTS=full`
//! runs more cycles and prints `FAULT serial_unplug: ...` figures.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollcall_proto::v1 as pb;
use support::*;
use tonic::transport::Channel;

/// The radio interface's end of a PTY: a thread collects what the daemon
/// sends; `send` is the radio talking.
struct Radio {
    master: Arc<std::fs::File>,
    /// Kept open so the master never sees a hang-up between daemon opens.
    _slave: std::os::fd::OwnedFd,
    slave_path: PathBuf,
    received: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Radio {
    fn plug(link: &Path) -> Radio {
        let pty = rollcall_hw::serial::port::open_pty().expect("openpty");
        let master = Arc::new(std::fs::File::from(pty.master));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (master, received, stop) = (master.clone(), received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    match (&*master).read(&mut buf) {
                        Ok(n) if n > 0 => received.lock().unwrap().extend_from_slice(&buf[..n]),
                        // Non-blocking master: nothing yet (or no reader).
                        _ => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&pty.slave_path, link).unwrap();
        Radio {
            master,
            _slave: pty.slave,
            slave_path: pty.slave_path,
            received,
            stop,
            reader: Some(reader),
        }
    }

    fn send(&self, byte: u8) {
        (&*self.master).write_all(&[byte]).unwrap();
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until the daemon has sent `byte` at or after index `from`.
    fn wait_byte(&self, byte: u8, from: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .received()
                .get(from..)
                .is_some_and(|r| r.contains(&byte))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Pulls the plug: the interface closes, so the daemon's reads fail.
    fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.reader.take().unwrap().join().unwrap();
    }
}

impl Drop for Radio {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Removal {
    /// The device node goes (udev on unplug) while the fd stays valid.
    NodeRemoved,
    /// The interface closes (the name left dangling): the daemon's reads
    /// fail with EIO.
    Closed,
}

async fn status(port: u16) -> pb::StationStatus {
    let mut c = pb::station_service_client::StationServiceClient::connect(format!(
        "http://127.0.0.1:{port}"
    ))
    .await
    .unwrap();
    c.get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn link(s: &pb::StationStatus) -> pb::LinkStatus {
    s.links.iter().find(|l| l.id == "radio").unwrap().clone()
}

/// Polls `GetStatus` until `f` holds; returns the time it took.
async fn until(
    port: u16,
    what: &str,
    daemon: &Daemon,
    timeout: Duration,
    f: impl Fn(&pb::StationStatus) -> bool,
) -> Duration {
    let t = Instant::now();
    loop {
        let s = status(port).await;
        if f(&s) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}; status {s:?}\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A console transmission on the channel, held until the sender is dropped.
async fn talk(
    port: u16,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let ch = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut audio = pb::audio_service_client::AudioServiceClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::TalkRequest>(64);
    tx.send(pb::TalkRequest {
        msg: Some(pb::talk_request::Msg::Start(pb::TalkStart {
            channel: "ch".into(),
        })),
    })
    .await
    .unwrap();
    let mut replies = audio
        .talk(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let grant = replies.message().await.unwrap().unwrap();
    assert!(grant.granted, "{grant:?}");
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tick.tick() => {
                    let frame = pb::TalkRequest {
                        msg: Some(pb::talk_request::Msg::Audio(pb::TalkAudio { pcm: vec![0; 320] })),
                    };
                    if tx.send(frame).await.is_err() { break; }
                }
            }
        }
        drop(tx);
        // Drain the replies until the daemon ends the stream.
        while let Ok(Some(_)) = replies.message().await {}
    });
    (stop_tx, task)
}

#[test]
fn serial_link_unplugged_and_restored() {
    let full = std::env::var("ROLLCALL_FAULTS").as_deref() == Ok("full");
    let cycles: Vec<Removal> = if full {
        [Removal::NodeRemoved, Removal::Closed].repeat(5)
    } else {
        vec![Removal::NodeRemoved, Removal::Closed]
    };
    let wall = Instant::now();
    let dir = TempDir::new("serial-unplug");
    let dev = dir.path().join("radio0");
    let port = free_port();
    let config = format!(
        r#"
[daemon]
station_id = "unplug"
data_dir = "{data}"
shutdown_grace_ms = 2000
[grpc]
listen = "127.0.0.1:{port}"
require_auth = false

[[link]]
id = "radio"
kind = "control"
[link.control]
kind = "svxlink_pty"
path = "{dev}"

[[channel]]
id = "ch"
links = ["radio"]
hang_time_ms = 200
# The console talks over open squelch, so the radio is keyed and receiving
# when it is pulled.
busy_policy = "talk-over"
"#,
        data = dir.path().join("data").display(),
        dev = dev.display(),
    );
    let mut radio = Radio::plug(&dev);
    let mut daemon = Daemon::start(dir.path(), &config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = |s: &pb::StationStatus| link(s).state == pb::LinkState::Up as i32;
    let down = |s: &pb::StationStatus| link(s).state != pb::LinkState::Up as i32;

    let (mut detect, mut recover) = (Vec::new(), Vec::new());
    let mut stray = 0usize;
    let radio = rt.block_on(async {
        // The daemon may still be starting its listener.
        let deadline = Instant::now() + Duration::from_secs(20);
        while pb::station_service_client::StationServiceClient::connect(format!(
            "http://127.0.0.1:{port}"
        ))
        .await
        .is_err()
        {
            assert!(Instant::now() < deadline, "{}", daemon.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        until(port, "link up", &daemon, Duration::from_secs(20), up).await;

        for (i, removal) in cycles.iter().enumerate() {
            // Squelch opens and the console keys the radio.
            radio.send(b'O');
            until(port, "squelch open", &daemon, Duration::from_secs(5), |s| link(s).cor).await;
            let mark = radio.received().len();
            let (stop_talk, talk_task) = talk(port).await;
            assert!(
                radio.wait_byte(b'T', mark, Duration::from_secs(5)),
                "cycle {i}: radio never keyed; got {:?}\n{}",
                String::from_utf8_lossy(&radio.received()),
                daemon.log_text()
            );
            until(port, "ptt on", &daemon, Duration::from_secs(5), |s| link(s).ptt).await;

            // Pull the device mid-transmission, squelch open.
            let old_path = radio.slave_path.clone();
            let gone = Instant::now();
            let old = match removal {
                Removal::NodeRemoved => {
                    std::fs::remove_file(&dev).unwrap();
                    Some(radio)
                }
                Removal::Closed => {
                    // The name stays, dangling, as a stale by-id link would.
                    radio.close();
                    None
                }
            };
            until(port, "link down", &daemon, Duration::from_secs(10), |s| {
                let l = link(s);
                down(s) && !l.cor && !l.ptt
            })
            .await;
            detect.push(gone.elapsed());
            until(port, "channel idle", &daemon, Duration::from_secs(10), |s| {
                s.channels.iter().all(|c| c.state == "idle" || c.state == "hang")
            })
            .await;
            assert!(
                daemon.child.try_wait().unwrap().is_none(),
                "daemon died:\n{}",
                daemon.log_text()
            );
            // A device that is still wired up after its node went was
            // released on the way out, not left keyed.
            if let Some(old) = &old {
                let keyed_at = old.received().iter().rposition(|b| *b == b'T').unwrap();
                assert!(
                    old.wait_byte(b'R', keyed_at + 1, Duration::from_secs(2)),
                    "cycle {i}: the removed radio was left keyed: {:?}",
                    String::from_utf8_lossy(&old.received())
                );
            }
            // The console gives up while the radio is gone.
            let _ = stop_talk.send(());
            let _ = talk_task.await;
            drop(old);

            // Plug a new interface in behind the same name.
            radio = Radio::plug(&dev);
            let back = Instant::now();
            until(port, "link up again", &daemon, Duration::from_secs(15), up).await;
            recover.push(back.elapsed());
            let down_reason = {
                let log = daemon.log_text();
                log.lines()
                    .rev()
                    .find(|l| l.contains("link down"))
                    .map(str::to_owned)
                    .unwrap_or_default()
            };
            // Nothing keys the new device by itself: the daemon only
            // asserts receive (`R`) when it opens it.
            std::thread::sleep(Duration::from_millis(300));
            let got = radio.received();
            stray += got.iter().filter(|b| **b != b'R').count();
            assert!(
                got.iter().all(|b| *b == b'R'),
                "cycle {i} ({removal:?}, was {}): stray keying on the new device: {:?}\nlast down: {down_reason}",
                old_path.display(),
                String::from_utf8_lossy(&got)
            );
            let s = status(port).await;
            assert!(!link(&s).ptt && !link(&s).cor, "{s:?}");

            // The link works again: squelch both ways, PTT keyed and released.
            radio.send(b'O');
            until(port, "squelch after restore", &daemon, Duration::from_secs(5), |s| link(s).cor).await;
            radio.send(b'Z');
            until(port, "squelch closed", &daemon, Duration::from_secs(5), |s| !link(s).cor).await;
            let mark = radio.received().len();
            let (stop_talk, talk_task) = talk(port).await;
            assert!(
                radio.wait_byte(b'T', mark, Duration::from_secs(5)),
                "no PTT after restore:\n{}",
                daemon.log_text()
            );
            let _ = stop_talk.send(());
            let _ = talk_task.await;
            let keyed_at = radio.received().iter().rposition(|b| *b == b'T').unwrap();
            assert!(
                radio.wait_byte(b'R', keyed_at + 1, Duration::from_secs(5)),
                "PTT not released after restore:\n{}",
                daemon.log_text()
            );
            until(port, "ptt off", &daemon, Duration::from_secs(5), |s| !link(s).ptt).await;
        }
        radio
    });

    // Every change was an event; the daemon stops cleanly.
    daemon.stop_clean(Duration::from_secs(10));
    let db = dir.path().join("data/rollcalld.sqlite");
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let count = |kind: &str| -> usize {
        c.query_row("SELECT count(*) FROM events WHERE kind = ?1", [kind], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as usize
    };
    assert_eq!(count("link_down"), cycles.len(), "one link_down per unplug");
    assert_eq!(count("link_up"), cycles.len() + 1);
    // The radio's final byte is a release: the daemon left it unkeyed.
    assert_eq!(radio.received().last(), Some(&b'R'));

    let ms = |d: &Vec<Duration>| {
        d.iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect::<Vec<_>>()
    };
    let (det, rec) = (ms(&detect), ms(&recover));
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    // The path is checked every 500 ms and a lost device is retried after
    // 250 ms; 3 s leaves room for a loaded machine, not for a back-off that
    // grew with each unplug (it reached 16 s by the seventh).
    assert!(max(&det) <= 3000.0, "detection took {det:?} ms");
    assert!(max(&rec) <= 3000.0, "recovery took {rec:?} ms");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let line = |name: &str, v: String| {
        if full {
            println!("FAULT serial_unplug: {name} = {v}");
        } else {
            eprintln!("serial_unplug: {name} = {v}");
        }
    };
    line("cycles", cycles.len().to_string());
    line("time to detect, mean (ms)", format!("{:.0}", mean(&det)));
    line("time to detect, max (ms)", format!("{:.0}", max(&det)));
    line("time to recover, mean (ms)", format!("{:.0}", mean(&rec)));
    line("time to recover, max (ms)", format!("{:.0}", max(&rec)));
    line("stray keyings", stray.to_string());
    line(
        "wall time (s)",
        format!("{:.1}", wall.elapsed().as_secs_f64()),
    );
}
