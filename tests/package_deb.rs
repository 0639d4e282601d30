//! The Debian package.
//!
//! `deb_assets_exist` (fast) checks that every asset `[package.metadata.deb]`
//! names exists, so a renamed doc or config breaks the test suite rather than
//! `make deb`.
//!
//! `deb_installs_into_a_throwaway_root` packages the binaries this test run
//! already built (`cargo deb --profile dev --no-build`: the same assets,
//! maintainer scripts and units as `make deb`, without a release build that
//! would cost the suite minutes) — or takes `ROLLCALLD_DEB=/path/to.deb`, e.g.
//! the release package `make deb` made — and installs it with
//! `dpkg --root=DIR --force-script-chrootless`, so the real maintainer scripts
//! run against DIR (they honour `DPKG_ROOT`). It then checks the user, the
//! conffile's owner and mode, that the installed daemon accepts the installed
//! config, and that a purge removes the files but keeps the station's data.
//! `make deb` checks the release package's file list with the same script.

#[path = "support/mod.rs"]
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

#[test]
fn deb_assets_exist() {
    let manifest = std::fs::read_to_string(repo().join("daemon/Cargo.toml")).unwrap();
    let doc: toml_edit::DocumentMut = manifest.parse().unwrap();
    let deb = &doc["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("deb assets");
    let mut checked = 0;
    for a in assets.iter() {
        let src = a.as_array().unwrap().get(0).unwrap().as_str().unwrap();
        if src.starts_with("target/") {
            continue; // built by cargo-deb
        }
        let path = repo().join("daemon").join(src);
        let found = if src.contains('*') {
            let dir = path.parent().unwrap();
            let ext = src.rsplit_once("*.").map(|(_, e)| e).unwrap();
            std::fs::read_dir(dir).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == ext))
            })
        } else {
            path.is_file()
        };
        assert!(found, "deb asset {src} does not exist");
        checked += 1;
    }
    assert!(checked >= 5);
    let units = deb["systemd-units"]["unit-scripts"].as_str().unwrap();
    let units = repo().join("daemon").join(units);
    for f in [
        "rollcalld.service",
        "rollcalld.sysusers",
        "rollcalld.tmpfile",
    ] {
        assert!(
            units.join(f).is_file(),
            "{f} missing from {}",
            units.display()
        );
    }
    let scripts = deb["maintainer-scripts"].as_str().unwrap();
    for f in ["postinst", "postrm"] {
        let p = repo().join("daemon").join(scripts).join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("#DEBHELPER#"), "{f} lacks #DEBHELPER#");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{f} is not executable");
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn build_deb(out: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("ROLLCALLD_DEB") {
        return PathBuf::from(p);
    }
    // cargo-deb comes from crates.io; `make test` installs it when missing.
    run(Command::new("cargo")
        .args([
            "deb",
            "-p",
            "rollcalld",
            "--profile",
            "dev",
            "--no-build",
            "--fast",
        ])
        .arg("--output")
        .arg(out)
        .current_dir(repo()));
    let mut debs: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.pop().expect("cargo deb left a .deb")
}

/// Packages the debug binaries unless `ROLLCALLD_DEB` names a package.
#[test]
fn deb_installs_into_a_throwaway_root() {
    let out = support::TempDir::new("deb-out");
    let deb = build_deb(out.path());
    let check = run(Command::new(repo().join("scripts/deb-check.sh")).arg(&deb));
    eprintln!("{check}");

    let root = support::TempDir::new("deb-root");
    let r = root.path();
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "etc",
        "usr/bin",
    ] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", r.display()))
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--force-not-root",
                "--log=/dev/null",
            ])
            .args(args);
        run(&mut c)
    };
    let out = dpkg(&["--install", deb.to_str().unwrap()]);
    eprintln!("{out}");

    // Files in place, with their modes.
    let bin = r.join("usr/bin/rollcalld");
    assert!(std::fs::metadata(&bin).unwrap().permissions().mode() & 0o111 != 0);
    assert!(r.join("usr/bin/rollcallctl").is_file());
    assert!(r.join("usr/lib/systemd/system/rollcalld.service").is_file());
    // The postinst ran systemd-sysusers on the root: user and groups.
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(r.join("etc/group")).unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("rollcalld:")),
        "{passwd}"
    );
    for g in ["dialout", "audio"] {
        let line = group
            .lines()
            .find(|l| l.starts_with(&format!("{g}:")))
            .unwrap_or_else(|| panic!("no {g} group:\n{group}"));
        assert!(line
            .rsplit(':')
            .next()
            .unwrap()
            .split(',')
            .any(|m| m == "rollcalld"));
    }
    let gid: u32 = group
        .lines()
        .find(|l| l.starts_with("rollcalld:"))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|g| g.parse().ok())
        .expect("a rollcalld group");
    // The conffile: root:rollcalld 0640, registered as a conffile.
    let conf = r.join("etc/rollcalld/rollcalld.toml");
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, gid));
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    let status = dpkg(&["--status", "rollcalld"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("/etc/rollcalld/rollcalld.toml"), "{status}");
    // The installed daemon accepts the installed config.
    let ok = run(Command::new(&bin).arg("check-config").arg(&conf));
    assert!(ok.contains(": ok (station xinhua-rd"), "{ok}");

    // Purge: files gone, the station's data kept.
    std::fs::create_dir_all(r.join("var/lib/rollcalld/recordings")).unwrap();
    std::fs::write(r.join("var/lib/rollcalld/rollcalld.sqlite"), b"keep").unwrap();
    dpkg(&["--purge", "rollcalld"]);
    assert!(!bin.exists());
    assert!(!conf.exists());
    assert!(r.join("var/lib/rollcalld/rollcalld.sqlite").is_file());
}
