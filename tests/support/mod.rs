//! Helpers shared by the whole-daemon tests: temp dirs, free ports, starting
//! the real `rollcalld` binary and stopping it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "rollcalld-it-{tag}-{}-{:x}",
            std::process::id(),
            rand_u64()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish()
}

/// A TCP port that was free a moment ago (bind to port 0, read it, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `rollcalld` with its captured log.
pub struct Daemon {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub dir: PathBuf,
    pub started: Instant,
}

pub const ROLLCALLD: &str = env!("CARGO_BIN_EXE_rollcalld");
pub const ROLLCALLCTL: &str = env!("CARGO_BIN_EXE_rollcallctl");

impl Daemon {
    /// Writes `config` to `<dir>/rollcalld.toml` and starts the daemon on it.
    pub fn start(dir: &Path, config: &str) -> Daemon {
        Daemon::start_with_env(dir, config, &[])
    }

    /// [`Daemon::start`] with extra environment (libfaketime's, the systemd
    /// notify socket).
    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let path = dir.join("rollcalld.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(ROLLCALLD)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting rollcalld");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("ROLLCALLD_TEST_ECHO").is_some() {
                    eprintln!("[rollcalld] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            log,
            dir: dir.to_owned(),
            started: Instant::now(),
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for exit up to `timeout`; returns the exit code (None if it is
    /// still running or was killed by a signal).
    /// SIGTERM, then asserts the daemon exits 0 within `timeout` (its log
    /// in the failure message).
    pub fn stop_clean(&mut self, timeout: Duration) {
        self.signal(libc::SIGTERM);
        let exit = self.wait_exit(timeout);
        assert_eq!(exit, Some(Some(0)), "{}", self.log_text());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The roll-call API client the tests use.
pub type RollcallApi =
    rollcall_proto::v1::roll_call_service_client::RollCallServiceClient<tonic::transport::Channel>;

/// Connects to the daemon's roll-call API on `port`, retrying until it
/// listens (30 s at most: a restarted daemon on a loaded machine).
pub async fn rollcall_api(port: u16) -> RollcallApi {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(c) = RollcallApi::connect(format!("http://127.0.0.1:{port}")).await {
            return c;
        }
        assert!(Instant::now() < deadline, "daemon did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `PRAGMA integrity_check` of the database at `db` (`"ok"` when sound).
pub fn integrity_check(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).expect("opening the database");
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// guard → (outcome, answered_ms) of every roll-call result row, read
/// straight from SQLite (empty while the database or table does not exist).
pub fn rollcall_results(db: &Path) -> std::collections::BTreeMap<String, (String, Option<i64>)> {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Default::default();
    };
    let Ok(mut stmt) = c.prepare("SELECT guard_id, outcome, answered_ms FROM rollcall_results")
    else {
        return Default::default();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
