//! The modem-line keyer on in-memory lines (virtual time) and the CM108
//! driver on a seqpacket socketpair standing in for `/dev/hidrawN`.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use rollcall_hw::serial::cm108::{run_cm108, Cm108Config};
use rollcall_hw::serial::lines::{
    run_line_keying, CorLine, InputLine, LineKeying, MemoryLines, OutputLine,
};
use rollcall_hw::serial::port::FdIo;
use rollcall_hw::serial::{ControlEvent, ControlIo};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

async fn recv(events: &mut mpsc::Receiver<ControlEvent>) -> ControlEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no event within 5 s")
        .expect("driver ended")
}

#[tokio::test(start_paused = true)]
async fn modem_lines_lead_in_tail_polarity_and_debounce() {
    let lines = MemoryLines::new();
    let keying = LineKeying {
        ptt_lines: vec![OutputLine::Rts, OutputLine::Dtr],
        ptt_invert: true,
        cor_line: CorLine::Cts,
        cor_invert: false,
        lead_in_ms: 300,
        tail_ms: 150,
        debounce_ms: 50,
        poll_ms: 10,
    };
    let (ptt, ptt_rx) = watch::channel(false);
    let (ev_tx, mut events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let mut driver_lines = lines.clone();
    let task_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        let mut io = ControlIo {
            ptt: ptt_rx,
            events: ev_tx,
        };
        run_line_keying(&mut driver_lines, &keying, None, &mut io, task_cancel).await
    });
    assert_eq!(recv(&mut events).await, ControlEvent::Up);
    // Inverted PTT: idle is high on both lines.
    let s = lines.state();
    assert!(s.rts && s.dtr);
    assert_eq!(recv(&mut events).await, ControlEvent::Cor(false));

    let t0 = Instant::now();
    ptt.send_replace(true);
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    let s = lines.state();
    assert!(!s.rts && !s.dtr, "lines not keyed at once");
    assert_eq!(recv(&mut events).await, ControlEvent::Ptt(true));
    assert_eq!(t0.elapsed(), Duration::from_millis(300), "lead-in");

    let t1 = Instant::now();
    ptt.send_replace(false);
    assert_eq!(recv(&mut events).await, ControlEvent::Ptt(false));
    assert_eq!(t1.elapsed(), Duration::from_millis(150), "tail");
    let s = lines.state();
    assert!(s.rts && s.dtr, "lines not released after tail");

    // A 30 ms COR glitch is ignored; a held level is reported after 50 ms
    // (plus up to one 10 ms poll).
    lines.set_input(InputLine::Cts, true);
    tokio::time::sleep(Duration::from_millis(30)).await;
    lines.set_input(InputLine::Cts, false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(events.try_recv().is_err(), "glitch reported");
    let t2 = Instant::now();
    lines.set_input(InputLine::Cts, true);
    assert_eq!(recv(&mut events).await, ControlEvent::Cor(true));
    let took = t2.elapsed();
    assert!(
        took >= Duration::from_millis(50) && took <= Duration::from_millis(60),
        "debounce took {took:?}"
    );

    // Unplug: the next poll fails and the run ends with an error.
    lines.unplug();
    let err = tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("driver did not notice the unplug")
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("modem lines"), "{err}");
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn modem_lines_cancel_releases_ptt() {
    let lines = MemoryLines::new();
    let keying = LineKeying {
        lead_in_ms: 0,
        ..LineKeying::default()
    };
    let (ptt, ptt_rx) = watch::channel(true);
    let (ev_tx, mut events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let mut driver_lines = lines.clone();
    let task_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        let mut io = ControlIo {
            ptt: ptt_rx,
            events: ev_tx,
        };
        run_line_keying(&mut driver_lines, &keying, None, &mut io, task_cancel).await
    });
    assert_eq!(recv(&mut events).await, ControlEvent::Up);
    // PTT requested before the run started is honoured.
    assert_eq!(recv(&mut events).await, ControlEvent::Ptt(true));
    assert!(lines.state().rts);
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert!(!lines.state().rts, "PTT held after shutdown");
    let mut rest = Vec::new();
    while let Ok(ev) = events.try_recv() {
        rest.push(ev);
    }
    assert!(rest.contains(&ControlEvent::Ptt(false)), "{rest:?}");
    drop(ptt);
}

/// A connected SOCK_SEQPACKET pair: like hidraw, each write is one report
/// and each read returns one.
fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new fds into the array on success.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

#[tokio::test]
async fn cm108_keys_gpio_and_reads_cor_over_socketpair() {
    let (driver_end, device_end) = seqpacket_pair();
    let device = FdIo::new(device_end).unwrap();
    let config = Cm108Config::default();
    let (ptt, ptt_rx) = watch::channel(false);
    let (ev_tx, mut events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        let mut io = ControlIo {
            ptt: ptt_rx,
            events: ev_tx,
        };
        run_cm108(driver_end, &config, None, &mut io, task_cancel).await
    });
    let mut report = [0u8; 16];
    // Start-up writes the unkeyed report.
    let n = device.read(&mut report).await.unwrap();
    assert_eq!(&report[..n], &[0, 0, 0, 0x04, 0]);
    assert_eq!(recv(&mut events).await, ControlEvent::Up);

    ptt.send_replace(true);
    let n = device.read(&mut report).await.unwrap();
    assert_eq!(&report[..n], &[0, 0, 0x04, 0x04, 0], "GPIO3 high");
    assert_eq!(recv(&mut events).await, ControlEvent::Ptt(true));

    // COR on VOL_DN (0x02); a report with other buttons only is COR closed.
    device.write_all(&[0x02, 0, 0, 0]).await.unwrap();
    assert_eq!(recv(&mut events).await, ControlEvent::Cor(true));
    device.write_all(&[0x01, 0, 0, 0]).await.unwrap();
    assert_eq!(recv(&mut events).await, ControlEvent::Cor(false));
    // A short report still carries the button byte.
    device.write_all(&[0x02]).await.unwrap();
    assert_eq!(recv(&mut events).await, ControlEvent::Cor(true));

    ptt.send_replace(false);
    let n = device.read(&mut report).await.unwrap();
    assert_eq!(&report[..n], &[0, 0, 0, 0x04, 0], "GPIO3 low");
    assert_eq!(recv(&mut events).await, ControlEvent::Ptt(false));

    // Unplug: the device end closes and the driver fails.
    drop(device);
    let err = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("driver did not notice the closed device")
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("cm108"), "{err}");
    cancel.cancel();
}
