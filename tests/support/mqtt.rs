//! MQTT helpers for whole-daemon tests: a real mosquitto on a free loopback
//! port, `mosquitto_sub` as an independent consumer, `mosquitto_pub` as a
//! guard's app.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// A mosquitto broker owned by the test.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
}

impl Broker {
    /// Starts a broker on a free port. `persistent`: keep sessions and
    /// queued messages across a clean broker restart (`persistence true`).
    pub fn start(dir: &Path, persistent: bool) -> Broker {
        for _ in 0..5 {
            let port = free_port();
            let mut b = Broker::configure(dir, port, persistent);
            if b.run() {
                return b;
            }
        }
        panic!("mosquitto did not start");
    }

    fn configure(dir: &Path, port: u16, persistent: bool) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\nlog_dest stderr\n\
             # A 10,000-guard app roll call sends 10,000 acks at once; mosquitto's\n\
             # default queue of 1,000 per client would drop the rest.\n\
             max_queued_messages 100000\nmax_inflight_messages 100\n"
        );
        if persistent {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\n",
                dir.display()
            ));
        }
        std::fs::write(&conf, text).unwrap();
        Broker {
            child: None,
            port,
            conf,
        }
    }

    /// Starts (or restarts) the process; true once the port accepts.
    pub fn run(&mut self) -> bool {
        let log = std::fs::File::create(self.conf.with_extension("log")).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGTERM (mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `mosquitto_sub -v` consumer; every line is `topic payload`.
pub struct Sub {
    child: Child,
    pub lines: Arc<Mutex<Vec<(String, String)>>>,
}

impl Sub {
    /// `session`: `Some(client_id)` for a persistent session (`-c -i ID`).
    pub fn start(port: u16, filters: &[&str], session: Option<&str>) -> Sub {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-v", "-q", "1"]);
        if let Some(id) = session {
            cmd.args(["-c", "-i", id]);
        }
        for f in filters {
            cmd.args(["-t", f]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let (t, p) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                sink.lock().unwrap().push((t.to_owned(), p.to_owned()));
            }
        });
        Sub { child, lines }
    }

    /// Waits until the subscription is live: publishes probes on `probe`
    /// (which must match one of the filters) until one comes back.
    pub fn wait_ready(&self, port: u16, probe: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            publish(port, probe, b"probe", false);
            if self
                .wait(|t, _| t == probe, Duration::from_millis(300))
                .is_some()
            {
                return;
            }
        }
        panic!("subscriber on {probe} never became ready");
    }

    /// Waits for a message matching `pred`; returns (topic, JSON payload).
    pub fn wait(
        &self,
        pred: impl Fn(&str, &serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<(String, serde_json::Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            for (t, p) in self.lines.lock().unwrap().iter() {
                let v = serde_json::from_str(p).unwrap_or(serde_json::Value::Null);
                if pred(t, &v) {
                    return Some((t.clone(), v));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn json(&self) -> Vec<(String, serde_json::Value)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(t, p)| {
                (
                    t.clone(),
                    serde_json::from_str(p).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mosquitto_pub -q 1` (payload on stdin, so any size and bytes work).
pub fn publish(port: u16, topic: &str, payload: &[u8], retain: bool) -> bool {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
        "-s",
    ]);
    if retain {
        cmd.arg("-r");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_pub");
    child.stdin.take().unwrap().write_all(payload).unwrap();
    child.wait().map(|s| s.success()).unwrap_or(false)
}

/// The retained message on `topic`, if any (a fresh `mosquitto_sub -C 1`).
pub fn retained(port: u16, topic: &str) -> Option<String> {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-C", "1", "-W", "2", "--retained-only"])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// The daemon's config for MQTT tests: three guards of acme, one of bolt,
/// alerts closing at their deadline, remote commands on, keepalive 1 s.
pub fn daemon_config(data: &Path, broker: &str) -> String {
    format!(
        r#"
[daemon]
station_id = "it"
data_dir = "{}"
shutdown_grace_ms = 2000
[grpc]
listen = "127.0.0.1:0"
require_auth = false
[mqtt]
enabled = true
broker = "{broker}"
prefix = "rc"
keepalive_s = 1
commands = true
[alerts]
reminder_min = 0
late_window_min = 0
[[roster.company]]
id = "acme"
name = "Acme Security"
supervisor = "sup-acme"
[[roster.company]]
id = "bolt"
name = "Bolt Guards"
[[roster.guard]]
id = "g1"
name = "One"
company = "acme"
app_id = "phone-1"
[[roster.guard]]
id = "g2"
name = "Two"
company = "acme"
[[roster.guard]]
id = "g3"
name = "Three"
company = "acme"
[[roster.guard]]
id = "g4"
name = "Four"
company = "bolt"
"#,
        data.display()
    )
}

/// Read-only view of the daemon's database.
pub fn db(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        data.join("rollcalld.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
