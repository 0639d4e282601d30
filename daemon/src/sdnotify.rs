//! The systemd notify protocol without libsystemd: a datagram of
//! `KEY=VALUE` lines sent to the socket named by `$NOTIFY_SOCKET`
//! (a path, or an abstract name starting with `@`).
//!
//! [`ready`] after every listener is up, [`stopping`] at shutdown, and a
//! watchdog task that pings at half of `$WATCHDOG_USEC` while the runtime is
//! responsive — a hung daemon stops pinging and systemd restarts it.

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

/// Pings the watchdog at half its interval until `cancel` fires.
pub async fn watchdog(interval: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(interval / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(?interval, "systemd watchdog enabled");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = notify("WATCHDOG=1") {
                    tracing::warn!(error = %e, "watchdog ping failed");
                }
            }
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
}
