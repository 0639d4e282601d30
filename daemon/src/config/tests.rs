use super::*;
use std::path::Path;

fn errors(src: &str) -> Vec<String> {
    match load_str(src, Path::new("t.toml")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const MINIMAL: &str = r#"
[daemon]
station_id = "st-1"
"#;

#[test]
fn minimal_config_loads_with_defaults() {
    let c = load_str(MINIMAL, Path::new("/etc/rollcalld/x.toml")).unwrap();
    assert_eq!(c.daemon.station_id, "st-1");
    assert_eq!(c.daemon.time_zone, "UTC");
    assert_eq!(c.grpc.listen.port(), 50051);
    assert!(!c.mqtt.enabled);
    assert_eq!(c.alerts.deadline_min, 10);
    assert!(c.links.is_empty());
}

#[test]
fn four_distinct_errors_are_all_reported_with_lines() {
    let src = r#"[daemon]
station_id = "st-1"
colour = "blue"

[grpc]
listen = 50051

[[link]]
id = "police"
kind = "roip"
[link.roip]
bind = "127.0.0.1:5000"
peer = "127.0.0.1:5001"
codec = { name = "pcmu" }

[[link]]
id = "police"
kind = "roip"
[link.roip]
bind = "127.0.0.1:5002"
peer = "127.0.0.1:5003"
codec = { name = "pcmu" }

[[channel]]
id = "merged"
links = ["police", "guards"]
"#;
    let errs = errors(src);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.toml:3:1: daemon.colour: unknown field `colour`"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("allowed keys"), "{}", errs[0]);
    assert!(errs[1].starts_with("t.toml:6:"), "{}", errs[1]);
    assert!(errs[1].contains("grpc"), "{}", errs[1]);
    assert!(
        errs[2].starts_with("t.toml:17:6: link[1].id: duplicate link id \"police\""),
        "{}",
        errs[2]
    );
    assert!(
        errs[3].starts_with("t.toml:26:9: channel[0].links"),
        "{}",
        errs[3]
    );
    assert!(
        errs[3].contains("\"guards\", which is not defined"),
        "{}",
        errs[3]
    );
}

#[test]
fn syntax_error_names_the_line() {
    let errs = errors("[daemon]\nstation_id = \"x\nfoo = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("t.toml:2:"), "{}", errs[0]);
    assert!(errs[0].contains("syntax"), "{}", errs[0]);
}

/// Found by the `config` fuzz target: toml_edit 0.23 panicked ("all items
/// have spans") on a dotted key after a bare carriage return. 0.25 reports it.
#[test]
fn fuzz_regression_stray_carriage_return_is_a_syntax_error() {
    let errs = errors("==k=\r.=}=7");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("t.toml:1:"), "{}", errs[0]);
}

#[test]
fn missing_daemon_section_is_an_error() {
    let errs = errors("[grpc]\nlisten = \"127.0.0.1:1\"\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("missing section [daemon]"), "{}", errs[0]);
}

#[test]
fn unknown_section_and_unknown_link_kind() {
    let errs = errors(
        r#"[daemon]
station_id = "a"
[bogus]
x = 1
[[link]]
id = "l"
kind = "carrier-pigeon"
"#,
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].contains("bogus: unknown section"), "{}", errs[0]);
    assert!(
        errs[1].contains("unknown link kind \"carrier-pigeon\""),
        "{}",
        errs[1]
    );
    assert!(errs[1].starts_with("t.toml:7:"), "{}", errs[1]);
}

#[test]
fn roster_and_schedule_references_are_checked() {
    let errs = errors(
        r#"[daemon]
station_id = "a"
time_zone = "Mars/Olympus"
[[roster.company]]
id = "acme"
name = "Acme Security"
[[roster.guard]]
id = "g1"
name = "Li"
company = "acme"
dtmf = "101"
mdc1200 = "XYZ1"
[[roster.guard]]
id = "g2"
name = "Wang"
company = "nope"
dtmf = "101"
groups = ["night"]
[[rollcall.schedule]]
id = "morning"
channel = "ghost"
times = ["08:00", "25:61"]
modes = ["group"]
days = ["mon", "funday"]
"#,
    );
    let joined = errs.join("\n");
    assert!(
        joined.contains("unknown IANA time zone \"Mars/Olympus\""),
        "{joined}"
    );
    assert!(
        joined.contains("\"XYZ1\" is not an MDC1200 unit id"),
        "{joined}"
    );
    assert!(
        joined.contains("company \"nope\", which is not defined"),
        "{joined}"
    );
    assert!(
        joined.contains("dtmf code \"101\" is already used by guard \"g1\""),
        "{joined}"
    );
    assert!(
        joined.contains("group \"night\" is not defined"),
        "{joined}"
    );
    assert!(
        joined.contains("channel \"ghost\", which is not defined"),
        "{joined}"
    );
    assert!(joined.contains("\"25:61\" is not a time"), "{joined}");
    assert!(joined.contains("\"funday\" is not a day"), "{joined}");
    assert_eq!(errs.len(), 8, "{joined}");
}

#[test]
fn link_settings_errors_point_into_the_sub_table() {
    let errs = errors(
        r#"[daemon]
station_id = "a"
[[link]]
id = "l"
kind = "roip"
[link.roip]
bind = "127.0.0.1:1"
peer = "127.0.0.1:2"
codec = { name = "gsm" }
jitter_max_ms = "lots"
"#,
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("link[0].roip.codec"), "{}", errs[0]);
    assert!(errs[0].contains("gsm"), "{}", errs[0]);
    assert!(errs[0].starts_with("t.toml:9:"), "{}", errs[0]);
}

#[test]
fn relative_data_dir_is_relative_to_the_config_file() {
    let c = load_str(
        "[daemon]\nstation_id = \"a\"\ndata_dir = \"data\"\n",
        Path::new("/etc/rollcalld/r.toml"),
    )
    .unwrap();
    assert_eq!(c.daemon.data_dir, Path::new("/etc/rollcalld/data"));
}

#[test]
fn days_and_times_parse() {
    assert_eq!(parse_hhmm("08:00"), Some((8, 0)));
    assert_eq!(parse_hhmm("8:00"), None);
    assert_eq!(parse_hhmm("24:00"), None);
    let wd = parse_days(&Days::Named("weekdays".into())).unwrap();
    assert_eq!(wd, [true, true, true, true, true, false, false]);
}

#[test]
fn shipped_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    for name in ["demo.toml", "station.example.toml"] {
        let p = root.join(name);
        if let Err(e) = load_file(&p) {
            panic!("{name} does not load:\n{e}");
        }
    }
}

#[test]
fn soundcard_link_pairs_audio_with_a_control_half() {
    let ok = load_str(
        r#"[daemon]
station_id = "a"
[[link]]
id = "usb"
kind = "soundcard"
[link.soundcard.audio]
device = "plughw:CARD=Device"
[link.soundcard.control]
kind = "cm108"
ptt_gpio = 3
"#,
        Path::new("t.toml"),
    );
    assert!(ok.is_ok(), "{:?}", ok.err().map(|e| e.to_string()));
    let errs = errors(
        r#"[daemon]
station_id = "a"
[[link]]
id = "usb"
kind = "soundcard"
[link.soundcard.audio]
device = "plughw:0"
gain = 3
"#,
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("link[0].soundcard") && errs[0].contains("gain"),
        "{}",
        errs[0]
    );
}
