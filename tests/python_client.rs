//! A console not written in Rust: a Python client generated from the
//! project's `.proto` files with `grpcio-tools` (PyPI) runs a group roll
//! call against a simulated guards' station, follows it on the event stream,
//! reads the results, and checks health and reflection as standard tools
//! do. Its summary must match the simulator's scripted behaviour and what
//! the Rust client reads.
//!
//! The Python packages live in a venv under `target/pyenv`, made once and
//! reused; the generated modules go to a temp dir (never committed). The
//! test skips, loudly, only when pip cannot reach PyPI.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rollcall_proto::v1 as pb;
use serde_json::Value;
use support::*;

const PACKAGES: &[&str] = &[
    "grpcio",
    "grpcio-tools",
    "grpcio-health-checking",
    "grpcio-reflection",
];
const TOKEN: &str = "python-console-secret";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Outcome of preparing the venv.
enum Venv {
    Ready(PathBuf),
    Offline(String),
}

/// Makes (or reuses) the venv with the client packages; returns its python.
/// Re-runs cost one `import` check: a stamp file names what was installed.
fn venv() -> Venv {
    let dir = target_dir().join("pyenv");
    let python = dir.join("bin/python");
    let stamp = dir.join(".rollcall-installed");
    let want = PACKAGES.join(" ");
    let imports_ok = || {
        Command::new(&python)
            .args([
                "-c",
                "import grpc, grpc_tools.protoc, grpc_health.v1.health_pb2, grpc_reflection.v1alpha.reflection_pb2",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) && imports_ok() {
        return Venv::Ready(python);
    }
    if !python.exists() {
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .output()
            .expect("python3 is needed for this test");
        assert!(
            out.status.success(),
            "python3 -m venv failed (apt-get install -y python3-venv): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--retries",
            "1",
            "--timeout",
            "20",
        ])
        .args(PACKAGES)
        .output()
        .expect("running pip");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let offline = [
            "NewConnectionError",
            "Temporary failure in name resolution",
            "Max retries exceeded",
            "Network is unreachable",
            "No matching distribution found",
            "ConnectTimeoutError",
        ]
        .iter()
        .any(|m| err.contains(m));
        if offline {
            return Venv::Offline(err);
        }
        panic!("pip install {want} failed: {err}");
    }
    assert!(imports_ok(), "packages installed but do not import");
    std::fs::write(&stamp, &want).unwrap();
    Venv::Ready(python)
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(dir: &Path, port: u16) -> String {
    format!(
        r#"
[daemon]
station_id = "it-py"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
[[grpc.token]]
name = "python-console"
role = "operator"
sha256 = "{t}"

# One guard per radio ID kind; g3 answers after the on-time threshold, g4
# never.
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 21
roster_guards = false
roll_call_min_ms = 800
[[link.sim.guard]]
id = "g1"
ani = "dtmf"
code = "401"
reply_delay_ms = 300
talk_ms = 200
[[link.sim.guard]]
id = "g2"
ani = "selcall"
code = "12402"
reply_delay_ms = 300
talk_ms = 200
[[link.sim.guard]]
id = "g3"
ani = "mdc1200"
code = "1A03"
behaviour = "late"
late_delay_ms = 6500
talk_ms = 200
[[link.sim.guard]]
id = "g4"
ani = "dtmf"
code = "404"
behaviour = "silent"
[[link.sim.guard]]
id = "g5"
ani = "mdc1200"
code = "1A05"
reply_delay_ms = 300
talk_ms = 200

[[channel]]
id = "guards"
links = ["guards"]
hang_time_ms = 200
[channel.ani]
selcall = "ccir"

[[roster.company]]
id = "acme"
name = "Acme Security"
[[roster.guard]]
id = "g1"
name = "One"
company = "acme"
dtmf = "401"
[[roster.guard]]
id = "g2"
name = "Two"
company = "acme"
selcall = "12402"
[[roster.guard]]
id = "g3"
name = "Three"
company = "acme"
mdc1200 = "1A03"
[[roster.guard]]
id = "g4"
name = "Four"
company = "acme"
dtmf = "404"
[[roster.guard]]
id = "g5"
name = "Five"
company = "acme"
mdc1200 = "1A05"
"#,
        data = dir.join("data").display(),
        t = sha256_hex(TOKEN),
    )
}

#[test]
fn python_console_runs_a_roll_call() {
    let t0 = Instant::now();
    let python = match venv() {
        Venv::Ready(p) => p,
        Venv::Offline(err) => {
            eprintln!(
                "\n*** SKIPPED python_console_runs_a_roll_call: pip cannot reach PyPI ***\n{err}"
            );
            return;
        }
    };
    let venv_time = t0.elapsed();

    // Generate the client from the project's protos, into a temp dir.
    let dir = TempDir::new("py");
    let generated = dir.path().join("gen");
    std::fs::create_dir_all(&generated).unwrap();
    let root = repo_root();
    let protos: Vec<PathBuf> = std::fs::read_dir(root.join("proto/rollcall/v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    assert!(protos.len() >= 7, "{protos:?}");
    let out = Command::new(&python)
        .current_dir(&root)
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", generated.display()))
        .arg(format!("--grpc_python_out={}", generated.display()))
        .args(protos.iter().map(|p| p.strip_prefix(&root).unwrap()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "grpc_tools.protoc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(generated.join("rollcall/v1/rollcall_pb2_grpc.py").exists());

    let port = free_port();
    let daemon = Daemon::start(dir.path(), &config(dir.path(), port));
    let addr = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Wait for the simulated station's link so the roll call goes on air.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut st) =
                pb::station_service_client::StationServiceClient::connect(addr.clone()).await
            {
                let mut req = tonic::Request::new(pb::GetStatusRequest {});
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
                if let Ok(s) = st.get_status(req).await {
                    if s.into_inner()
                        .links
                        .iter()
                        .all(|l| l.state == pb::LinkState::Up as i32)
                    {
                        break;
                    }
                }
            }
            assert!(Instant::now() < deadline, "{}", daemon.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let out = Command::new(&python)
        .arg(root.join("tests/python/console.py"))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--token", TOKEN, "--channel", "guards"])
        .args(["--window", "10", "--on-time", "5"])
        .arg("--generated")
        .arg(&generated)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "console.py failed: {}\n--- daemon ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log_text()
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });

    // Health and reflection, as grpc_health_probe / grpcurl would see them.
    assert_eq!(summary["health"], "SERVING");
    for key in ["reflection_v1", "reflection_v1alpha"] {
        let names: Vec<&str> = summary[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"rollcall.v1.RollCallService"),
            "{key}: {names:?}"
        );
        assert!(names.contains(&"grpc.health.v1.Health"), "{key}: {names:?}");
    }
    assert_eq!(summary["unauthenticated"], "UNAUTHENTICATED");

    // The scripted behaviour: g3 late, g4 silent, the rest on time.
    let expected = serde_json::json!({
        "g1": "answered", "g2": "answered", "g3": "late", "g4": "missed", "g5": "answered",
    });
    assert_eq!(summary["events"]["closed"], expected, "{summary}");
    let heard = &summary["events"]["heard"];
    assert_eq!(heard["g2"]["kind"], "selcall");
    assert_eq!(heard["g3"]["kind"], "mdc1200");
    assert!(heard.get("g4").is_none());
    let fin = &summary["events"]["finished"];
    assert_eq!(
        (&fin["answered"], &fin["late"], &fin["missed"]),
        (&Value::from(3), &Value::from(1), &Value::from(1))
    );
    let got = &summary["get_run"];
    assert_eq!(got["state"], "finished");
    for (g, outcome) in expected.as_object().unwrap() {
        assert_eq!(&got["results"][g]["outcome"], outcome, "{g}");
    }

    // The same run read by the Rust client.
    let run_id = summary["run_id"].as_i64().unwrap();
    let detail = rt.block_on(async {
        let mut api = pb::roll_call_service_client::RollCallServiceClient::connect(addr)
            .await
            .unwrap();
        let mut req = tonic::Request::new(pb::GetRunRequest { id: run_id });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        api.get_run(req).await.unwrap().into_inner()
    });
    let run = detail.run.unwrap();
    assert_eq!(
        (run.answered, run.late, run.missed),
        (
            got["answered"].as_u64().unwrap() as u32,
            got["late"].as_u64().unwrap() as u32,
            got["missed"].as_u64().unwrap() as u32
        )
    );
    for r in &detail.results {
        assert_eq!(got["results"][&r.guard]["via"], r.via.as_str());
        assert_eq!(got["results"][&r.guard]["code"], r.code.as_str());
    }
    eprintln!(
        "python console: venv ready in {venv_time:?}, whole test {:?}",
        t0.elapsed()
    );
}
