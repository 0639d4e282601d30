//! Opening serial devices and PTY pairs, and noticing when a device vanishes.
//!
//! A USB serial adapter that is unplugged either fails its next read/ioctl
//! (EIO) or, when nothing is read, simply loses its `/dev` node. Drivers
//! therefore race their I/O against [`watch_path`], which fails within
//! [`PATH_CHECK`] of the configured path disappearing; the supervisor then
//! restarts the driver, whose first step, [`wait_for_path`], waits for the
//! device (or a new symlink) to come back.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;

use crate::link::LinkError;

/// How often the configured device path is checked for existence.
pub const PATH_CHECK: Duration = Duration::from_millis(500);

/// Opens `path` (following symlinks) as a raw 8N1 serial port.
pub fn open_serial(path: &Path, baud: u32) -> Result<SerialStream, LinkError> {
    let name = path.to_string_lossy();
    let mut port = tokio_serial::new(name.as_ref(), baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
        .map_err(|e| LinkError::Open {
            what: path.display().to_string(),
            source: e.into(),
        })?;
    // Several tools (a monitor, our own tests) may share a device.
    let _ = port.set_exclusive(false);
    Ok(port)
}

/// Fails with a clear error when the port has no modem lines (a PTY, or a
/// device that is not a serial port); tokio-serial's own errors lose the
/// errno, so this asks the kernel directly with `TIOCMGET`.
pub fn check_modem_lines(port: &SerialStream, path: &Path) -> Result<(), LinkError> {
    let mut bits: libc::c_int = 0;
    // SAFETY: TIOCMGET writes one c_int through the pointer; the fd is open
    // for as long as `port` is borrowed.
    let rc = unsafe { libc::ioctl(port.as_raw_fd(), libc::TIOCMGET, &mut bits) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOTTY) || err.raw_os_error() == Some(libc::EINVAL) {
        return Err(LinkError::Protocol(format!(
            "{} has no modem lines (a PTY or not a serial port)",
            path.display()
        )));
    }
    Err(LinkError::Io {
        what: path.display().to_string(),
        source: err,
    })
}

/// Resolves when `path` no longer exists. Returns the error a driver should
/// end its run with.
pub async fn watch_path(path: &Path) -> LinkError {
    loop {
        tokio::time::sleep(PATH_CHECK).await;
        if std::fs::metadata(path).is_err() {
            return LinkError::Io {
                what: path.display().to_string(),
                source: io::Error::new(io::ErrorKind::NotFound, "device disappeared"),
            };
        }
    }
}

/// Waits until `path` exists (a device plugged back in). Returns `false` if
/// cancelled first.
pub async fn wait_for_path(path: &Path, cancel: &CancellationToken) -> bool {
    let mut logged = false;
    loop {
        if std::fs::metadata(path).is_ok() {
            return true;
        }
        if !logged {
            tracing::info!(path = %path.display(), "waiting for device");
            logged = true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// A pseudo-terminal pair: `master` is the simulated device's end, `slave_path`
/// is what a serial client opens. The slave fd is kept open so the master
/// never sees a hang-up while clients come and go.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_path: PathBuf,
}

/// Opens a PTY pair in raw mode (no echo, no line discipline) with a
/// non-blocking master.
pub fn open_pty() -> io::Result<Pty> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two fds into the provided ints; name, termios and
    // winsize are optional and passed as null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both fds are open and owned by us alone.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    make_raw(&slave)?;
    set_nonblocking(&master)?;
    let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))?;
    Ok(Pty {
        master,
        slave,
        slave_path,
    })
}

/// Puts a terminal into raw mode.
fn make_raw(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: termios is plain data; tcgetattr fills it from a valid open fd
    // before cfmakeraw/tcsetattr use it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd.as_raw_fd(), &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets O_NONBLOCK, as tokio's `AsyncFd` requires.
pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a valid open fd with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Async reads and writes on a raw fd (a PTY master, a hidraw node, a
/// socket standing in for one). Each `read` returns what one `read(2)`
/// returned, so report-oriented devices keep their report boundaries.
#[derive(Debug)]
pub struct FdIo {
    fd: tokio::io::unix::AsyncFd<std::fs::File>,
}

impl FdIo {
    /// Takes ownership of `fd` and makes it non-blocking.
    pub fn new(fd: OwnedFd) -> io::Result<FdIo> {
        set_nonblocking(&fd)?;
        let file = std::fs::File::from(fd);
        // SAFETY: the File owns its fd, is moved into the AsyncFd and never
        // handed out, so the fd stays open and unchanged while registered.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(file)? };
        Ok(FdIo { fd })
    }

    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| {
                let mut file: &std::fs::File = inner.get_ref();
                file.read(buf)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        use std::io::Write;
        while !buf.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| {
                let mut file: &std::fs::File = inner.get_ref();
                file.write(buf)
            }) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}
