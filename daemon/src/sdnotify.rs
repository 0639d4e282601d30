//! The systemd notify protocol without libsystemd: a datagram of
//! `KEY=VALUE` lines sent to the socket named by `$NOTIFY_SOCKET`
//! (a path, or an abstract name starting with `@`).
//!
//! [`ready`] after every listener is up, [`stopping`] at shutdown, and a
//! watchdog task that pings at half of `$WATCHDOG_USEC` — but only after a
//! liveness probe answered (a storage round-trip and every channel task, see
//! `lib.rs`). A timer alone would keep pinging while the storage thread or a
//! channel's event loop is stuck; the probe makes a ping mean "the daemon
//! works", so a hung daemon stops pinging and systemd restarts it.

use std::future::Future;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Sends one notification; returns `Ok(false)` when not run by systemd.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

pub fn ready() {
    match notify("READY=1\nSTATUS=serving") {
        Ok(true) => tracing::info!("notified systemd: ready"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot notify systemd of readiness"),
    }
}

pub fn stopping() {
    let _ = notify("STOPPING=1");
}

/// The watchdog interval systemd asked for, if it asked us (and not another
/// process: `WATCHDOG_PID` must be ours when set).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog at half its interval until `cancel` fires, each ping
/// only after `probe` answered `Ok` within that half interval.
pub async fn watchdog<P, F>(interval: Duration, probe: P, cancel: CancellationToken)
where
    P: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
{
    tracing::info!(?interval, "systemd watchdog enabled");
    run_watchdog(
        interval,
        probe,
        || {
            if let Err(e) = notify("WATCHDOG=1") {
                tracing::warn!(error = %e, "watchdog ping failed");
            }
        },
        cancel,
    )
    .await
}

/// The watchdog loop with the ping passed in, so tests can count pings.
async fn run_watchdog<P, F>(
    interval: Duration,
    mut probe: P,
    mut ping: impl FnMut(),
    cancel: CancellationToken,
) where
    P: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
{
    let period = interval / 2;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Log a failing probe once per outage, not at every tick.
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            r = tokio::time::timeout(period, probe()) => r,
        };
        match outcome {
            Ok(Ok(())) => {
                if std::mem::take(&mut failing) {
                    tracing::warn!("daemon responsive again: watchdog pings resume");
                }
                ping();
            }
            Ok(Err(why)) if !failing => {
                failing = true;
                tracing::error!(%why, "liveness probe failed: not pinging the watchdog");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::error!(
                    timeout = ?period,
                    "liveness probe did not answer (storage thread or a channel task stuck): not pinging the watchdog"
                );
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = crate::storage::tests_support::tempdir();
        let path = dir.join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        // Safe here: this test is the only one touching NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        assert!(notify("READY=1").unwrap());
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Pings only while the probe answers: a stuck probe (a hung storage
    /// thread) stops them, and they resume when it answers again.
    #[tokio::test(start_paused = true)]
    async fn pings_only_while_the_probe_answers() {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
        use std::sync::Arc;
        let stuck = Arc::new(AtomicBool::new(false));
        let pings = Arc::new(AtomicU32::new(0));
        let cancel = CancellationToken::new();
        let probe = {
            let stuck = stuck.clone();
            move || {
                let stuck = stuck.load(SeqCst);
                async move {
                    if stuck {
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                }
            }
        };
        let counter = pings.clone();
        let task = tokio::spawn(run_watchdog(
            Duration::from_secs(2),
            probe,
            move || {
                counter.fetch_add(1, SeqCst);
            },
            cancel.clone(),
        ));
        // Ticks at 0, 1, 2, 3, 4 s: five pings.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        assert_eq!(pings.load(SeqCst), 5);
        stuck.store(true, SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(pings.load(SeqCst), 5, "a stuck probe must stop the pings");
        stuck.store(false, SeqCst);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            pings.load(SeqCst) >= 7,
            "pings resume: {}",
            pings.load(SeqCst)
        );
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_probe_stops_the_pings() {
        let mut pings = 0;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let mut calls = 0;
        let probe = move || {
            calls += 1;
            if calls == 3 {
                stop.cancel();
            }
            async { Err::<(), _>("storage: disk I/O error".to_string()) }
        };
        run_watchdog(Duration::from_secs(2), probe, || pings += 1, cancel).await;
        assert_eq!(pings, 0);
    }
}
