//! `rollcallctl` against the real daemon, both as binaries: a roll call on a
//! simulated guards' station started, watched to the end, shown and
//! reported; an alert sent, listed, shown and acknowledged; a recording of
//! a guard's answer found and fetched as a valid Ogg Opus file; a patch
//! turned on and off; and the errors an operator meets (a viewer token
//! refused, usage mistakes) with their exit codes.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const VIEWER: &str = "wall-screen-secret";
const OPERATOR: &str = "desk-secret";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn config(dir: &Path, port: u16) -> String {
    format!(
        r#"
[daemon]
station_id = "it-ctl"
data_dir = "{data}"
[grpc]
listen = "127.0.0.1:{port}"
[[grpc.token]]
name = "wall-screen"
role = "viewer"
sha256 = "{v}"
[[grpc.token]]
name = "desk-1"
role = "operator"
sha256 = "{o}"

# The guards' station: g1 and g2 answer at once, g3 only after the
# on-time threshold, g4 never.
[[link]]
id = "guards"
kind = "sim"
[link.sim]
seed = 9
roster_guards = false
talk_ms = 100
roll_call_min_ms = 800
[[link.sim.guard]]
id = "g1"
ani = "dtmf"
code = "301"
reply_delay_ms = 300
talk_ms = 300
[[link.sim.guard]]
id = "g2"
ani = "dtmf"
code = "302"
reply_delay_ms = 300
talk_ms = 300
[[link.sim.guard]]
id = "g3"
ani = "dtmf"
code = "303"
behaviour = "late"
late_delay_ms = 6500
talk_ms = 300
[[link.sim.guard]]
id = "g4"
ani = "dtmf"
code = "304"
behaviour = "silent"

[[link]]
id = "police"
kind = "sim"
[link.sim]
seed = 10
roster_guards = false

[[channel]]
id = "guards"
links = ["guards"]
hang_time_ms = 200
[[channel]]
id = "police"
links = ["police"]
hang_time_ms = 200

[[roster.company]]
id = "acme"
name = "Acme Security"
[[roster.company]]
id = "bolt"
name = "Bolt Guarding"
[[roster.guard]]
id = "g1"
name = "Li Wei"
company = "acme"
dtmf = "301"
[[roster.guard]]
id = "g2"
name = "Wang Fang"
company = "acme"
dtmf = "302"
[[roster.guard]]
id = "g3"
name = "Zhao Lei"
company = "bolt"
dtmf = "303"
[[roster.guard]]
id = "g4"
name = "Chen Jie"
company = "bolt"
dtmf = "304"
"#,
        data = dir.join("data").display(),
        v = sha256_hex(VIEWER),
        o = sha256_hex(OPERATOR),
    )
}

struct Ctl {
    addr: String,
}

impl Ctl {
    fn cmd(&self, token: &str, args: &[&str]) -> Command {
        let mut c = Command::new(ROLLCALLCTL);
        c.args(args)
            .env("ROLLCALLCTL_ADDR", &self.addr)
            .env("ROLLCALLCTL_TOKEN", token)
            // No operator's ~/.config/rollcallctl.toml leaks in.
            .env("HOME", "/nonexistent");
        c
    }

    fn run(&self, token: &str, args: &[&str]) -> Output {
        self.cmd(token, args).output().expect("running rollcallctl")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(OPERATOR, args);
        assert!(
            out.status.success(),
            "rollcallctl {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }
}

#[test]
fn operator_cli_end_to_end() {
    let t0 = Instant::now();
    let dir = TempDir::new("ctl");
    let port = free_port();
    let daemon = Daemon::start(dir.path(), &config(dir.path(), port));
    let ctl = Ctl {
        addr: format!("127.0.0.1:{port}"),
    };

    // --- status: wait for both links up ---
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = ctl.run(VIEWER, &["--json", "status"]);
        if out.status.success() {
            let s: Value = serde_json::from_slice(&out.stdout).unwrap();
            let links = s["links"].as_array().unwrap();
            if links.len() == 2 && links.iter().all(|l| l["state"] == "up") {
                assert_eq!(s["station_id"], "it-ctl");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "links never came up: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = ctl.ok(&["status"]);
    assert!(table.contains("station it-ctl"), "{table}");
    assert!(
        table.contains("LINK") && table.contains("police"),
        "{table}"
    );

    // --- roster ---
    let roster = ctl.json(&["roster", "list"]);
    let guards: Vec<&str> = roster["guards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(guards, ["g1", "g2", "g3", "g4"]);
    let table = ctl.ok(&["roster", "list"]);
    assert!(
        table.contains("dtmf:303") && table.contains("Bolt Guarding"),
        "{table}"
    );

    // --- roll call: start, watch to the end ---
    let started = ctl.json(&[
        "rollcall",
        "start",
        "--channel",
        "guards",
        "--mode",
        "group",
        "--window",
        "10",
        "--on-time",
        "5",
    ]);
    let run_id = started["run_id"].as_i64().expect("run_id");
    let run = run_id.to_string();
    let watch = ctl
        .cmd(VIEWER, &["--json", "rollcall", "watch", &run])
        .output()
        .unwrap();
    assert!(
        watch.status.success(),
        "watch: {}",
        String::from_utf8_lossy(&watch.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(watch.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "snapshot");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "rollcall_finished", "{lines:?}");
    assert_eq!(last["event"]["state"], "finished");
    let answers: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "rollcall_answer_heard")
        .map(|l| l["event"]["guard"].as_str().unwrap())
        .collect();
    assert!(
        answers.contains(&"g3"),
        "late answer seen live: {answers:?}"
    );
    assert_eq!(
        last["counters"],
        serde_json::json!({"answered": 2, "late": 1, "missed": 1, "pending": 0})
    );

    // A finished run cannot be watched any more: the watch shows the result.
    let table = ctl.ok(&["rollcall", "watch", &run]);
    assert!(table.contains("already ended"), "{table}");

    // --- show, list, report ---
    let detail = ctl.json(&["rollcall", "show", &run]);
    assert_eq!(detail["run"]["state"], "finished");
    assert_eq!(
        (
            &detail["run"]["answered"],
            &detail["run"]["late"],
            &detail["run"]["missed"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(1))
    );
    let outcome = |g: &str| {
        detail["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["guard"] == g)
            .map(|r| r["outcome"].as_str().unwrap().to_owned())
    };
    assert_eq!(outcome("g1").as_deref(), Some("answered"));
    assert_eq!(outcome("g3").as_deref(), Some("late"));
    assert_eq!(outcome("g4").as_deref(), Some("missed"));
    let table = ctl.ok(&["rollcall", "show", &run]);
    assert!(table.contains("answered 2  late 1  missed 1"), "{table}");
    assert!(table.contains("Zhao Lei"), "{table}");

    let list = ctl.json(&["rollcall", "list", "--state", "finished"]);
    assert_eq!(list[0]["id"].as_i64(), Some(run_id));

    let csv = dir.path().join("run.csv");
    ctl.ok(&["rollcall", "report", &run, "-o", csv.to_str().unwrap()]);
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(csv_text.lines().count() >= 5, "{csv_text}");
    let g3_line = csv_text.lines().find(|l| l.contains("g3")).unwrap();
    assert!(g3_line.contains("late"), "{csv_text}");

    let today = jiff::Zoned::now().date().to_string();
    let (ccsv, svg) = (dir.path().join("co.csv"), dir.path().join("co.svg"));
    let rep = ctl.json(&[
        "rollcall",
        "report",
        "--companies",
        "--from",
        &today,
        "--to",
        &today,
        "-o",
        ccsv.to_str().unwrap(),
        "--chart",
        svg.to_str().unwrap(),
    ]);
    let acme = rep["companies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["company"] == "acme")
        .expect("acme in the company report");
    assert_eq!(acme["answered"], 2);
    assert!(std::fs::read_to_string(&ccsv).unwrap().contains("bolt"));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));

    // --- schedules (none configured) ---
    assert_eq!(ctl.json(&["schedule", "list"]), serde_json::json!([]));

    // --- recordings: a guard's answer, fetched whole ---
    let recs = ctl.json(&["recordings", "search", "--guard", "g1"]);
    let rec = &recs
        .as_array()
        .unwrap()
        .first()
        .expect("g1's answer recorded");
    assert_eq!(rec["direction"], "rx");
    let rec_id = rec["id"].as_i64().unwrap().to_string();
    let ogg = dir.path().join("answer.ogg");
    ctl.ok(&["recordings", "fetch", &rec_id, "-o", ogg.to_str().unwrap()]);
    let bytes = std::fs::read(&ogg).unwrap();
    assert_eq!(&bytes[..4], b"OggS");
    assert_eq!(Some(bytes.len() as i64), rec["bytes"].as_i64());
    let info = Command::new("opusinfo")
        .arg(&ogg)
        .output()
        .expect("opusinfo");
    assert!(
        info.status.success(),
        "opusinfo: {}",
        String::from_utf8_lossy(&info.stdout)
    );
    let table = ctl.ok(&["recordings", "search", "--channel", "guards"]);
    assert!(table.contains("dtmf 301"), "{table}");

    // --- alerts: the silent guard never acknowledges; the desk does ---
    let alert = ctl.json(&[
        "alert",
        "send",
        "Report to the gate",
        "--guard",
        "g4",
        "--priority",
        "urgent",
    ]);
    let alert_id = alert["id"].as_i64().unwrap().to_string();
    assert_eq!(alert["total"], 1);
    assert_eq!(alert["created_by"], "desk-1");
    let list = ctl.json(&["alert", "list", "--open"]);
    assert_eq!(list[0]["id"], alert["id"]);
    let ack = ctl.json(&["alert", "ack", &alert_id, "g4"]);
    assert_eq!(ack["outcome"], "acknowledged");
    let shown = ctl.json(&["alert", "show", &alert_id]);
    assert_eq!(shown["guards"][0]["state"], "acknowledged");
    assert_eq!(shown["guards"][0]["via"], "operator");
    let table = ctl.ok(&["alert", "show", &alert_id]);
    assert!(
        table.contains("Report to the gate") && table.contains("100.0%"),
        "{table}"
    );

    // A viewer may look but not send.
    let refused = ctl.run(VIEWER, &["alert", "send", "hello", "--guard", "g1"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("permission denied"), "{err}");

    // --- patch on and off ---
    let on = ctl.json(&["patch", "on", "guards", "police"]);
    assert_eq!(on["active"], serde_json::json!(["guards<->police"]));
    let off = ctl.ok(&["patch", "off", "guards", "police"]);
    assert!(off.contains("no patches active"), "{off}");

    // --- errors: not found (1), usage (2) ---
    let missing = ctl.run(VIEWER, &["rollcall", "show", "999999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let usage = ctl.run(VIEWER, &["rollcall", "report"]);
    assert_eq!(usage.status.code(), Some(2));
    let bad_date = ctl.run(
        VIEWER,
        &["rollcall", "report", "--companies", "--from", "yesterday"],
    );
    assert_eq!(bad_date.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_date.stderr).contains("--from \"yesterday\""));
    let no_token = ctl
        .cmd("", &["status"])
        .env_remove("ROLLCALLCTL_TOKEN")
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("unauthenticated"));

    eprintln!("rollcallctl end to end took {:?}", t0.elapsed());
}
