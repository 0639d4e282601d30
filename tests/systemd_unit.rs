//! The systemd unit, checked offline by `scripts/systemd-check.sh`:
//! `systemd-analyze verify` is clean with the real binary as
//! `/usr/bin/rollcalld`, the `systemd-analyze security` exposure is at most
//! 2.0, and the sysusers/tmpfiles snippets create the user and directories.
//! Two mutated units show the checks can fail.
//!
//! No running systemd is needed. When the tools are missing the test tries
//! `apt-get install systemd` (as root) and otherwise skips with a loud
//! message on stderr.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// True when the systemd tools are there (installing them if we can).
fn systemd_tools() -> bool {
    let have = || {
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if have() {
        return true;
    }
    let _ = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "systemd"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if have() {
        return true;
    }
    eprintln!("SKIPPED: systemd-analyze is missing and `apt-get install systemd` failed");
    false
}

fn check(unit: Option<&Path>) -> Output {
    let mut cmd = Command::new(repo().join("scripts/systemd-check.sh"));
    cmd.arg(env!("CARGO_BIN_EXE_rollcalld"));
    if let Some(unit) = unit {
        cmd.env("ROLLCALLD_UNIT", unit);
    }
    cmd.output().expect("running scripts/systemd-check.sh")
}

fn exposure(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("exposure: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn unit_verifies_and_exposure_is_at_most_2() {
    if !systemd_tools() {
        return;
    }
    let out = check(None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "systemd-check failed:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("verify: clean"), "{stdout}");
    let e = exposure(&stdout).expect("an exposure figure");
    assert!(e <= 2.0, "exposure {e} is above 2.0");
    assert!(
        stdout.contains("sysusers/tmpfiles: user rollcalld"),
        "{stdout}"
    );
}

#[test]
fn unit_invariants() {
    let unit = std::fs::read_to_string(repo().join("systemd/rollcalld.service")).unwrap();
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "User=rollcalld",
        "StateDirectory=rollcalld",
        "LogsDirectory=rollcalld",
        "ConfigurationDirectory=rollcalld",
        "ExecStart=/usr/bin/rollcalld --config /etc/rollcalld/rollcalld.toml --log-format json",
        "DevicePolicy=closed",
        "MemoryDenyWriteExecute=yes",
        "ProtectSystem=strict",
    ] {
        assert!(has(line), "the unit lacks `{line}`");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    for dev in [
        "char-ttyS",
        "char-ttyUSB",
        "char-ttyACM",
        "char-alsa",
        "char-hidraw",
    ] {
        assert!(
            unit.lines()
                .any(|l| l.starts_with(&format!("DeviceAllow={dev} "))),
            "the unit does not allow {dev}"
        );
    }
    // The packaged config's data_dir must be the unit's StateDirectory.
    let example = std::fs::read_to_string(repo().join("configs/station.example.toml")).unwrap();
    assert!(example.contains("data_dir = \"/var/lib/rollcalld\""));
}

#[test]
fn a_weakened_unit_fails_the_exposure_limit() {
    if !systemd_tools() {
        return;
    }
    let dir = support::TempDir::new("systemd-weak");
    let unit = std::fs::read_to_string(repo().join("systemd/rollcalld.service")).unwrap();
    // Keep the service runnable but drop the hardening block.
    let weak: String = unit
        .lines()
        .take_while(|l| !l.starts_with("# --- hardening ---"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "\n[Install]\nWantedBy=multi-user.target\n";
    let path = dir.path().join("rollcalld.service");
    std::fs::write(&path, weak).unwrap();
    let out = check(Some(&path));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a unit without hardening passed:\n{stdout}"
    );
    let e = exposure(&stdout).expect("an exposure figure");
    assert!(e > 2.0, "exposure {e} of the weakened unit");
}

#[test]
fn a_unit_with_an_unknown_key_fails_verify() {
    if !systemd_tools() {
        return;
    }
    let dir = support::TempDir::new("systemd-typo");
    let unit = std::fs::read_to_string(repo().join("systemd/rollcalld.service")).unwrap();
    let typo = unit.replace("WatchdogSec=", "WatchdogSecs=");
    let path = dir.path().join("rollcalld.service");
    std::fs::write(&path, typo).unwrap();
    let out = check(Some(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("WatchdogSecs"), "{stderr}");
}
