//! Independent peers from Debian's Hamlib: our rigctld backend keys the
//! dummy rig through a real `rigctld`, and Hamlib's own `rigctl` (TS-2000
//! model) drives our simulated CAT radio on a PTY.

use std::process::{Command, Stdio};
use std::time::Duration;

use rollcall_hw::serial::rigctld::{RigctldBackend, RigctldClient, RigctldConfig};
use rollcall_hw::serial::{ControlBackend, ControlEvent, ControlIo};
use rollcall_hw::sim::serial_radio::spawn_cat_radio;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child on drop so a failing test leaves no rigctld behind.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn connect_with_deadline(addr: &str) -> RigctldClient {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match RigctldClient::connect(addr, Duration::from_secs(2)).await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("rigctld never came up on {addr}: {e}"),
        }
    }
}

async fn next_event(rx: &mut mpsc::Receiver<ControlEvent>) -> ControlEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no control event within 5 s")
        .expect("backend ended")
}

#[tokio::test]
async fn keys_debian_rigctld_dummy_rig() {
    if !have("rigctld") {
        eprintln!("SKIP: rigctld not installed (apt-get install libhamlib-utils)");
        return;
    }
    let port = free_port();
    let rigctld = Child(
        Command::new("rigctld")
            .args([
                "-m",
                "1",
                "-P",
                "RIG",
                "-T",
                "127.0.0.1",
                "-t",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rigctld"),
    );
    let addr = format!("127.0.0.1:{port}");
    // A separate client to read PTT back, as another program would.
    let mut observer = connect_with_deadline(&addr).await;

    let mut config = RigctldConfig::for_addr(addr.clone());
    config.poll_ms = 50;
    let mut backend = RigctldBackend::new(config);
    let (ptt_tx, ptt_rx) = watch::channel(false);
    let (ev_tx, mut ev_rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        let mut io = ControlIo {
            ptt: ptt_rx,
            events: ev_tx,
        };
        backend.run(&mut io, task_cancel).await
    });
    assert_eq!(next_event(&mut ev_rx).await, ControlEvent::Up);
    assert!(!observer.get_ptt().await.unwrap());

    ptt_tx.send_replace(true);
    // Skip DCD reports (the dummy rig toggles DCD on every read).
    loop {
        match next_event(&mut ev_rx).await {
            ControlEvent::Ptt(on) => {
                assert!(on);
                break;
            }
            ControlEvent::Cor(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        observer.get_ptt().await.unwrap(),
        "rigctld reports PTT off after T 1"
    );

    ptt_tx.send_replace(false);
    let mut cor_changes = 0;
    loop {
        match next_event(&mut ev_rx).await {
            ControlEvent::Ptt(on) => {
                assert!(!on);
                break;
            }
            ControlEvent::Cor(_) => cor_changes += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        !observer.get_ptt().await.unwrap(),
        "rigctld reports PTT on after T 0"
    );
    // DCD polling reaches the rig: the dummy's toggling DCD shows up as COR changes.
    while cor_changes < 2 {
        if let ControlEvent::Cor(_) = next_event(&mut ev_rx).await {
            cor_changes += 1;
        }
    }
    // rigctld going away ends the run with an error, so the supervisor
    // reconnects.
    drop(rigctld);
    let result = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("backend did not notice rigctld exit")
        .unwrap();
    assert!(
        result.is_err(),
        "backend ended cleanly after losing rigctld"
    );
    cancel.cancel();
}

#[tokio::test]
async fn hamlib_rigctl_ts2000_drives_simulated_cat_radio() {
    if !have("rigctl") {
        eprintln!("SKIP: rigctl not installed (apt-get install libhamlib-utils)");
        return;
    }
    let radio = spawn_cat_radio().unwrap();
    radio.set_squelch(true);
    let path = radio.path().to_string_lossy().into_owned();
    let run = |cmds: &'static [&'static str]| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("rigctl")
                .args(["-m", "2014", "-r", &path, "-s", "9600"])
                .args(cmds)
                .output()
                .expect("run rigctl")
        })
    };
    let out = run(&["f", "m", "t", "T", "1", "t"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let state = radio.state();
    eprintln!(
        "rigctl stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "radio received: {:?}\nrejected: {:?}",
        state.received, state.rejected
    );
    assert!(out.status.success(), "rigctl failed");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"145500000"), "frequency");
    assert_eq!(lines.get(1), Some(&"FM"), "mode");
    assert_eq!(lines.get(3), Some(&"0"), "PTT before keying");
    assert_eq!(lines.last(), Some(&"1"), "PTT after T 1");
    assert!(radio.ptt(), "radio not keyed by rigctl");
    // What Hamlib 4.5's TS-2000 backend sent, all understood by the simulator.
    for cmd in ["ID;", "IF;", "FA;", "MD;", "TX;"] {
        assert!(
            state.received.iter().any(|r| r == cmd),
            "rigctl never sent {cmd}"
        );
    }
    assert!(
        state.rejected.is_empty(),
        "simulator rejected {:?}",
        state.rejected
    );

    let out = run(&["T", "0", "t"]).await.unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(!radio.ptt(), "radio still keyed after T 0");
}

/// Hamlib's DRA818V backend (alpha in Hamlib 4.5) opens the module with
/// connect, volume and set-group, and `F` sends a new group: our simulated
/// SA818 must parse and accept every line Hamlib writes.
#[tokio::test]
async fn hamlib_dra818_model_configures_simulated_sa818() {
    if !have("rigctl") {
        eprintln!("SKIP: rigctl not installed (apt-get install libhamlib-utils)");
        return;
    }
    let radio = rollcall_hw::sim::serial_radio::spawn_sa818_radio().unwrap();
    let path = radio.path().to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["20", "rigctl", "-m", "31001", "-r", &path, "F", "145525000"])
            .output()
            .expect("run rigctl")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "rigctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = radio.state();
    eprintln!("radio received: {:?}", state.received);
    assert!(
        state.rejected.is_empty(),
        "simulator rejected {:?}",
        state.rejected
    );
    assert_eq!(
        state.received.first().map(String::as_str),
        Some("AT+DMOCONNECT")
    );
    assert!(state
        .received
        .iter()
        .any(|l| l.starts_with("AT+DMOSETVOLUME=")));
    let group = state.group.expect("no group set");
    assert!((group.rx_mhz - 145.525).abs() < 1e-6, "{group:?}");
    assert!((group.tx_mhz - 145.525).abs() < 1e-6, "{group:?}");
}
