//! Backends against the simulated radios over real PTYs opened with
//! tokio-serial: CAT, SA818 and SvxLink exchanges, and a device that is
//! unplugged and plugged back in under the link supervisor.

use std::path::PathBuf;
use std::time::Duration;

use rollcall_hw::link::{spawn_supervised, Backoff, LinkEvent};
use rollcall_hw::serial::cat::{CatBackend, CatConfig};
use rollcall_hw::serial::sa818::{self, GroupConfig};
use rollcall_hw::serial::svxlink::{SvxlinkBackend, SvxlinkPtyConfig};
use rollcall_hw::serial::{port, ControlBackend, ControlEvent, ControlIo, ControlLink};
use rollcall_hw::sim::serial_radio::{spawn_cat_radio, spawn_sa818_radio, spawn_svxlink_radio};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Running {
    ptt: watch::Sender<bool>,
    events: mpsc::Receiver<ControlEvent>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), rollcall_hw::link::LinkError>>,
}

fn start(backend: impl ControlBackend) -> Running {
    start_boxed(Box::new(backend))
}

fn start_boxed(mut backend: Box<dyn ControlBackend>) -> Running {
    let (ptt, ptt_rx) = watch::channel(false);
    let (ev_tx, events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        let mut io = ControlIo {
            ptt: ptt_rx,
            events: ev_tx,
        };
        backend.run(&mut io, task_cancel).await
    });
    Running {
        ptt,
        events,
        cancel,
        task,
    }
}

async fn expect(events: &mut mpsc::Receiver<ControlEvent>, want: ControlEvent) {
    let got = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap_or_else(|_| panic!("no event within 5 s, wanted {want:?}"));
    assert_eq!(got, Some(want));
}

/// Polls `cond` every 10 ms until it holds or 5 s pass.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cat_backend_keys_and_senses_simulated_radio() {
    let radio = spawn_cat_radio().unwrap();
    let mut config = CatConfig::for_device(radio.path());
    config.poll_ms = 20;
    let mut run = start(CatBackend::new(config));
    expect(&mut run.events, ControlEvent::Up).await;
    expect(&mut run.events, ControlEvent::Cor(false)).await;

    radio.set_squelch(true);
    expect(&mut run.events, ControlEvent::Cor(true)).await;
    radio.set_squelch(false);
    expect(&mut run.events, ControlEvent::Cor(false)).await;

    run.ptt.send_replace(true);
    expect(&mut run.events, ControlEvent::Ptt(true)).await;
    assert!(radio.ptt());
    run.ptt.send_replace(false);
    expect(&mut run.events, ControlEvent::Ptt(false)).await;
    assert!(!radio.ptt());

    // Shutdown releases a held PTT.
    run.ptt.send_replace(true);
    expect(&mut run.events, ControlEvent::Ptt(true)).await;
    run.cancel.cancel();
    run.task.await.unwrap().unwrap();
    eventually("PTT released on shutdown", || !radio.ptt()).await;
    let state = radio.state();
    assert!(state.received.iter().any(|c| c == "BY;"));
    assert!(state.rejected.is_empty(), "{:?}", state.rejected);
}

#[tokio::test]
async fn sa818_configure_round_trips_with_simulated_module() {
    let radio = spawn_sa818_radio().unwrap();
    let mut port = port::open_serial(radio.path(), 9600).unwrap();
    let group = GroupConfig {
        tx_mhz: 145.5,
        rx_mhz: 145.525,
        tx_ctcss: Some(88.5),
        rx_ctcss: None,
        squelch: 4,
        bandwidth: 25.0,
    }
    .to_group()
    .unwrap();
    sa818::configure(&mut port, &group, Some(6), Duration::from_secs(2))
        .await
        .unwrap();
    let state = radio.state();
    assert_eq!(state.group, Some(group));
    assert_eq!(state.volume, Some(6));
    assert_eq!(
        state.received,
        vec![
            "AT+DMOCONNECT",
            "AT+DMOSETGROUP=1,145.5000,145.5250,0008,4,0000",
            "AT+DMOSETVOLUME=6"
        ]
    );

    // 200 MHz is a valid config value but outside the module's bands: the
    // module answers +DMOSETGROUP:1 and configure names the refused step.
    let mut bad = group;
    bad.tx_mhz = 200.0;
    let err = sa818::configure(&mut port, &bad, None, Duration::from_secs(2))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DMOSETGROUP") && err.contains("SetGroup(1)"),
        "{err}"
    );
}

#[tokio::test]
async fn svxlink_backend_round_trips_with_simulated_peer() {
    let radio = spawn_svxlink_radio().unwrap();
    let mut run = start(SvxlinkBackend::new(SvxlinkPtyConfig {
        path: radio.path().to_path_buf(),
    }));
    expect(&mut run.events, ControlEvent::Up).await;
    radio.set_squelch(true);
    expect(&mut run.events, ControlEvent::Cor(true)).await;
    radio.set_squelch(false);
    expect(&mut run.events, ControlEvent::Cor(false)).await;
    run.ptt.send_replace(true);
    expect(&mut run.events, ControlEvent::Ptt(true)).await;
    eventually("radio keyed", || radio.ptt()).await;
    run.ptt.send_replace(false);
    expect(&mut run.events, ControlEvent::Ptt(false)).await;
    eventually("radio unkeyed", || !radio.ptt()).await;
    run.cancel.cancel();
    run.task.await.unwrap().unwrap();
    // R at start, T, R.
    assert_eq!(radio.state().received, vec!["R", "T", "R"]);
}

async fn next_link_event(events: &mut mpsc::Receiver<LinkEvent>, within: Duration) -> LinkEvent {
    tokio::time::timeout(within, events.recv())
        .await
        .unwrap_or_else(|_| panic!("no link event within {within:?}"))
        .expect("supervisor ended")
}

#[tokio::test]
async fn unplugged_device_goes_down_and_relinks_when_it_returns() {
    let dir = std::env::temp_dir().join(format!("serial-unplug-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let link_path: PathBuf = dir.join("radio");

    let first = spawn_svxlink_radio().unwrap();
    std::os::unix::fs::symlink(first.path(), &link_path).unwrap();
    let cancel = CancellationToken::new();
    let backend = SvxlinkBackend::new(SvxlinkPtyConfig {
        path: link_path.clone(),
    });
    let (handle, mut events, task) = spawn_supervised(
        "svx",
        Box::new(ControlLink::new(Box::new(backend))),
        Backoff::default(),
        cancel.clone(),
    );
    assert!(matches!(
        next_link_event(&mut events, Duration::from_secs(5)).await,
        LinkEvent::Up
    ));
    assert!(handle.ptt(true));
    assert!(matches!(
        next_link_event(&mut events, Duration::from_secs(5)).await,
        LinkEvent::Ptt(true)
    ));

    // Unplug: the path disappears and the device closes.
    let unplugged = tokio::time::Instant::now();
    std::fs::remove_file(&link_path).unwrap();
    first.close();
    loop {
        match next_link_event(&mut events, Duration::from_secs(2)).await {
            LinkEvent::Down { .. } => break,
            LinkEvent::Ptt(false) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let down_after = unplugged.elapsed();
    assert!(
        down_after < Duration::from_secs(2),
        "down after {down_after:?}"
    );

    // Stay unplugged a while: the driver must wait, not give up.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Plug a new device in at the same configured path.
    let second = spawn_svxlink_radio().unwrap();
    std::os::unix::fs::symlink(second.path(), &link_path).unwrap();
    let plugged = tokio::time::Instant::now();
    loop {
        match next_link_event(&mut events, Duration::from_secs(5)).await {
            LinkEvent::Up => break,
            LinkEvent::Down { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let up_after = plugged.elapsed();
    assert!(
        up_after < Duration::from_secs(5),
        "relinked after {up_after:?}"
    );
    eprintln!("down after {down_after:?}, relinked after {up_after:?}");

    // The new device works: squelch is reported, and the old PTT was not
    // carried over to it.
    second.set_squelch(true);
    assert!(matches!(
        next_link_event(&mut events, Duration::from_secs(5)).await,
        LinkEvent::Cor(true)
    ));
    assert!(!second.ptt());
    cancel.cancel();
    task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn vanished_path_alone_is_noticed_within_two_seconds() {
    // A USB adapter whose node disappears while nothing is being read.
    let dir = std::env::temp_dir().join(format!("serial-vanish-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let link_path = dir.join("radio");
    let radio = spawn_svxlink_radio().unwrap();
    std::os::unix::fs::symlink(radio.path(), &link_path).unwrap();
    let mut run = start(SvxlinkBackend::new(SvxlinkPtyConfig {
        path: link_path.clone(),
    }));
    expect(&mut run.events, ControlEvent::Up).await;
    let removed = tokio::time::Instant::now();
    std::fs::remove_file(&link_path).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(2), &mut run.task)
        .await
        .expect("backend still running 2 s after its device vanished")
        .unwrap();
    let err = result.unwrap_err().to_string();
    assert!(err.contains("disappeared"), "{err}");
    assert!(removed.elapsed() < Duration::from_secs(2));
    drop(radio);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn modem_lines_on_a_pty_fail_with_a_clear_error() {
    // PTYs have no modem lines: the real tokio-serial path must say so
    // instead of pretending to key.
    let radio = spawn_svxlink_radio().unwrap();
    let config: rollcall_hw::serial::ControlConfig = serde_json::from_value(serde_json::json!({
        "kind": "modem_lines",
        "device": radio.path(),
    }))
    .unwrap();
    let mut run = start_boxed(rollcall_hw::serial::backend_from_config(&config));
    let result = tokio::time::timeout(Duration::from_secs(5), &mut run.task)
        .await
        .expect("backend kept running on a PTY")
        .unwrap();
    let err = result.unwrap_err().to_string();
    assert!(err.contains("has no modem lines"), "{err}");
    assert!(
        run.events.try_recv().is_err(),
        "reported Up without modem lines"
    );
}
