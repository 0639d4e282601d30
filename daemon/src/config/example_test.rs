//! `configs/station.example.toml` against the schema, both ways:
//! every key the config structs know appears in the example (set, or shown
//! commented out as `# key = value` in its section), and every key the
//! example shows is one the structs know. The active part must also load.
//!
//! # How the schema's keys are found
//! serde offers no list of a struct's keys, so the test reads the Rust
//! sources: in each file of [`SOURCES`] it finds the items whose
//! `#[derive(..)]` includes `Deserialize`, and collects
//! - for a struct, its `pub <name>:` fields, honouring
//!   `#[serde(rename = "..")]` and dropping `#[serde(skip)]`;
//! - for an enum, its `#[serde(tag = "..")]` key and the fields of struct-like
//!   variants (`Opus { pt: u8 }`).
//!
//! [`SECTIONS`] says which TOML section each item fills (`link.roip`,
//! `rollcall.schedule`, ...). In the daemon's own config files (`strict`) an
//! item with keys that is not in [`SECTIONS`] fails the test, so a new struct
//! or field added by anyone shows up here until the example documents it.
//! The top-level section names come from `TOP_LEVEL` in `load.rs`.
//!
//! # How the example's keys are found
//! Active keys by walking the parsed document (array indices dropped, so
//! every `[[roster.guard]]` is `roster.guard`). Commented-out keys by reading
//! lines: `# [section]` or `# [[section]]` opens a section for the commented
//! lines below it, and a `# key = value` line that parses as TOML adds its key
//! (and the keys of an inline-table value) there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Source files read, relative to the workspace root; `strict` = every
/// Deserialize item with keys must be mapped in [`SECTIONS`].
const SOURCES: &[(&str, bool)] = &[
    ("daemon/src/config/schema.rs", true),
    ("daemon/src/links.rs", true),
    ("hw/src/roip/mod.rs", false),
    ("hw/src/rtp/codec.rs", false),
    ("hw/src/serial/mod.rs", false),
    ("hw/src/serial/lines.rs", false),
    ("hw/src/serial/cm108.rs", false),
    ("hw/src/serial/svxlink.rs", false),
    ("hw/src/serial/cat.rs", false),
    ("hw/src/serial/sa818.rs", false),
    ("hw/src/serial/rigctld.rs", false),
    ("hw/src/sim/station.rs", false),
    ("hw/src/soundcard/mod.rs", false),
    ("hw/src/soundcard/vox.rs", false),
];

/// (file, item, section, required): the section an item's keys live in.
/// `required = false` where an item's keys are allowed in a section but need
/// not be repeated there (a CM108 keying block has the cm108 link's keys).
const SECTIONS: &[(&str, &str, &str, bool)] = &[
    (
        "daemon/src/config/schema.rs",
        "DaemonConfig",
        "daemon",
        true,
    ),
    ("daemon/src/config/schema.rs", "GrpcConfig", "grpc", true),
    (
        "daemon/src/config/schema.rs",
        "TokenConfig",
        "grpc.token",
        true,
    ),
    ("daemon/src/config/schema.rs", "MqttConfig", "mqtt", true),
    (
        "daemon/src/config/schema.rs",
        "StorageConfig",
        "storage",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "RecorderConfig",
        "recorder",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "AlertsConfig",
        "alerts",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "MetricsConfig",
        "metrics",
        true,
    ),
    ("daemon/src/config/schema.rs", "LinkHeader", "link", true),
    (
        "daemon/src/config/schema.rs",
        "ChannelConfig",
        "channel",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "AniConfig",
        "channel.ani",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "CompanyConfig",
        "roster.company",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "GuardConfig",
        "roster.guard",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "GroupConfig",
        "roster.group",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "RollcallDefaults",
        "rollcall",
        true,
    ),
    (
        "daemon/src/config/schema.rs",
        "ScheduleConfig",
        "rollcall.schedule",
        true,
    ),
    ("daemon/src/links.rs", "DmrSettings", "link.dmr", true),
    ("daemon/src/links.rs", "DmrPeer", "link.dmr.peer", true),
    ("daemon/src/links.rs", "SimSettings", "link.sim", true),
    (
        "daemon/src/links.rs",
        "SoundcardSettings",
        "link.soundcard",
        true,
    ),
    (
        "hw/src/soundcard/mod.rs",
        "SoundcardConfig",
        "link.soundcard.audio",
        true,
    ),
    (
        "hw/src/soundcard/vox.rs",
        "VoxConfig",
        "link.soundcard.audio.vox",
        true,
    ),
    // The control half of a sound-card link has the shapes of
    // `[link.control]`, documented there.
    (
        "hw/src/serial/mod.rs",
        "ControlConfig",
        "link.soundcard.control",
        false,
    ),
    (
        "hw/src/serial/lines.rs",
        "ModemLinesConfig",
        "link.soundcard.control",
        false,
    ),
    (
        "hw/src/serial/cm108.rs",
        "Cm108Config",
        "link.soundcard.control",
        false,
    ),
    ("hw/src/roip/mod.rs", "RoipConfig", "link.roip", true),
    ("hw/src/rtp/codec.rs", "Codec", "link.roip.codec", true),
    (
        "hw/src/serial/mod.rs",
        "ControlConfig",
        "link.control",
        true,
    ),
    (
        "hw/src/serial/lines.rs",
        "ModemLinesConfig",
        "link.control",
        true,
    ),
    (
        "hw/src/serial/lines.rs",
        "LineKeying",
        "link.control.keying",
        true,
    ),
    (
        "hw/src/serial/cm108.rs",
        "Cm108Config",
        "link.control",
        true,
    ),
    (
        "hw/src/serial/cm108.rs",
        "Cm108Config",
        "link.control.keying",
        false,
    ),
    (
        "hw/src/serial/svxlink.rs",
        "SvxlinkPtyConfig",
        "link.control",
        true,
    ),
    ("hw/src/serial/cat.rs", "CatConfig", "link.control", true),
    (
        "hw/src/serial/sa818.rs",
        "Sa818Config",
        "link.control",
        true,
    ),
    (
        "hw/src/serial/sa818.rs",
        "GroupConfig",
        "link.control.group",
        true,
    ),
    (
        "hw/src/serial/sa818.rs",
        "Sa818Keying",
        "link.control.keying",
        true,
    ),
    (
        "hw/src/serial/rigctld.rs",
        "RigctldConfig",
        "link.control",
        true,
    ),
    (
        "hw/src/sim/station.rs",
        "GuardConfig",
        "link.sim.guard",
        true,
    ),
];

/// Keys the loader handles by hand rather than through a struct.
const MANUAL: &[(&str, &[&str])] = &[
    ("roster", &["company", "guard", "group"]),
    ("rollcall", &["schedule"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Deserialize item found in a source file.
#[derive(Debug)]
struct Item {
    name: String,
    keys: BTreeSet<String>,
}

/// The quoted value of `name = "..."` inside an attribute line.
fn attr_value(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name} = \""))? + name.len() + 4;
    let rest = &line[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Every `#[derive(.. Deserialize ..)]` struct or enum in `src` with its keys.
fn deserialize_items(src: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut lines = src.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if !(line.starts_with("#[derive(") && line.contains("Deserialize")) {
            continue;
        }
        // The item's own attributes, then its `struct`/`enum` line.
        let mut tag = None;
        let mut header = None;
        for l in lines.by_ref() {
            if l.starts_with("#[serde(") {
                tag = tag.or(attr_value(l, "tag"));
            } else if l.starts_with("#[") || l.starts_with("///") {
                continue;
            } else {
                header = Some(l);
                break;
            }
        }
        let Some(header) = header else { break };
        let words: Vec<&str> = header.split_whitespace().collect();
        let Some(pos) = words.iter().position(|w| *w == "struct" || *w == "enum") else {
            continue;
        };
        let is_struct = words[pos] == "struct";
        let name = words
            .get(pos + 1)
            .map(|w| w.trim_end_matches(['{', '(', ';']).to_owned())
            .unwrap_or_default();
        let mut keys = BTreeSet::new();
        if let Some(t) = tag {
            keys.insert(t);
        }
        if !header.ends_with('{') {
            items.push(Item { name, keys });
            continue;
        }
        let mut rename = None;
        let mut skip = false;
        for l in lines.by_ref() {
            if l == "}" {
                break;
            }
            if l.starts_with("#[serde(") {
                rename = rename.or(attr_value(l, "rename"));
                // `skip` and `skip_deserializing`, not `skip_serializing_if`.
                skip |= ["skip)", "skip,", "skip_deserializing"]
                    .iter()
                    .any(|s| l.contains(s));
                continue;
            }
            if l.starts_with("///") || l.starts_with("//") || l.starts_with("#[") {
                continue;
            }
            if is_struct {
                let field = l
                    .strip_prefix("pub(crate) ")
                    .or_else(|| l.strip_prefix("pub "))
                    .and_then(|f| f.split_once(':'))
                    .map(|(n, _)| n.trim().to_owned());
                if let Some(field) = field {
                    if !skip {
                        keys.insert(rename.take().unwrap_or(field));
                    }
                }
            } else if let (Some(open), Some(close)) = (l.find('{'), l.rfind('}')) {
                // A struct-like variant on one line: `Opus { pt: u8 },`.
                for part in l[open + 1..close].split(',') {
                    if let Some((n, _)) = part.split_once(':') {
                        keys.insert(n.trim().to_owned());
                    }
                }
            }
            rename = None;
            skip = false;
        }
        items.push(Item { name, keys });
    }
    items
}

/// section -> keys the schema allows there, and section -> keys the example
/// must show.
type Sections = BTreeMap<String, BTreeSet<String>>;

fn schema_sections() -> (Sections, Sections) {
    let mut allowed = Sections::new();
    let mut required = Sections::new();
    let mut unmapped = Vec::new();
    for (file, strict) in SOURCES {
        let src = std::fs::read_to_string(root().join(file))
            .unwrap_or_else(|e| panic!("reading {file}: {e}"));
        let items = deserialize_items(&src);
        assert!(!items.is_empty(), "no Deserialize item found in {file}");
        for item in items {
            let targets: Vec<_> = SECTIONS
                .iter()
                .filter(|(f, n, _, _)| f == file && *n == item.name)
                .collect();
            if targets.is_empty() && *strict && !item.keys.is_empty() {
                unmapped.push(format!("{file}: {} {:?}", item.name, item.keys));
            }
            for (_, _, section, req) in targets {
                allowed
                    .entry(section.to_string())
                    .or_default()
                    .extend(item.keys.iter().cloned());
                if *req {
                    required
                        .entry(section.to_string())
                        .or_default()
                        .extend(item.keys.iter().cloned());
                }
            }
        }
    }
    assert!(
        unmapped.is_empty(),
        "config items with no section in example_test.rs SECTIONS (add them there and \
         document their keys in configs/station.example.toml):\n{}",
        unmapped.join("\n")
    );
    // Every mapped item must have been found, or the parser missed it.
    for (file, name, section, _) in SECTIONS {
        assert!(
            allowed.contains_key(*section),
            "{file}: {name} ({section}) was not found; renamed or moved?"
        );
    }
    let load = std::fs::read_to_string(root().join("daemon/src/config/load.rs")).unwrap();
    let start = load.find("const TOP_LEVEL").expect("TOP_LEVEL in load.rs");
    let end = start + load[start..].find("];").expect("end of TOP_LEVEL");
    let top: BTreeSet<String> = load[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(top.contains("daemon") && top.contains("link"), "{top:?}");
    allowed.insert(String::new(), top.clone());
    required.insert(String::new(), top);
    for (section, keys) in MANUAL {
        for set in [&mut allowed, &mut required] {
            set.entry(section.to_string())
                .or_default()
                .extend(keys.iter().map(|k| k.to_string()));
        }
    }
    // `[link.<kind>]` is the link's settings table, not a header key.
    let kinds = crate::links::KINDS.iter().map(|k| k.to_string());
    allowed.entry("link".into()).or_default().extend(kinds);
    (allowed, required)
}

fn join(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

/// Records every key under `table` (recursing into tables, inline tables and
/// arrays of tables) as (section, key).
fn walk(section: &str, table: &dyn toml_edit::TableLike, out: &mut BTreeSet<(String, String)>) {
    for (key, item) in table.iter() {
        out.insert((section.to_owned(), key.to_owned()));
        let path = join(section, key);
        match item {
            toml_edit::Item::Table(t) => walk(&path, t, out),
            toml_edit::Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    walk(&path, t, out);
                }
            }
            toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => walk(&path, t, out),
            _ => {}
        }
    }
}

/// (section, key) of every key the example sets or shows commented out.
fn example_keys(text: &str) -> BTreeSet<(String, String)> {
    let doc: toml_edit::DocumentMut = text.parse().expect("the example is valid TOML");
    let mut keys = BTreeSet::new();
    walk("", doc.as_table(), &mut keys);
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        if body.starts_with('[') {
            let name = body.trim_start_matches('[');
            if let Some(end) = name.find(']') {
                section = name[..end].trim().to_owned();
                // `[a.b]` is also key `b` of section `a`.
                let (parent, last) = section.rsplit_once('.').unwrap_or(("", section.as_str()));
                keys.insert((parent.to_owned(), last.to_owned()));
            }
            continue;
        }
        let looks_like_key = body.split_once('=').is_some_and(|(k, _)| {
            k.trim().chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && !k.trim().is_empty()
                && k.ends_with(' ')
        });
        if commented && looks_like_key {
            // Prose that happens to contain `word =` does not parse; skip it.
            if let Ok(frag) = body.parse::<toml_edit::DocumentMut>() {
                walk(&section, frag.as_table(), &mut keys);
            }
        }
    }
    keys
}

#[test]
fn parser_finds_known_fields() {
    let src = std::fs::read_to_string(root().join("daemon/src/config/schema.rs")).unwrap();
    let items = deserialize_items(&src);
    let grpc = items.iter().find(|i| i.name == "GrpcConfig").unwrap();
    assert!(grpc.keys.contains("listen"));
    // `#[serde(default, rename = "token")] pub tokens`
    assert!(grpc.keys.contains("token") && !grpc.keys.contains("tokens"));
    let src = std::fs::read_to_string(root().join("hw/src/rtp/codec.rs")).unwrap();
    let codec = deserialize_items(&src)
        .into_iter()
        .find(|i| i.name == "Codec")
        .unwrap();
    assert_eq!(
        codec.keys,
        ["name", "pt"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn example_keys_reads_active_and_commented_keys() {
    let text = "[a]\nx = 1\n# y = 2   # note\n# Prose: then = nothing\n# [[a.b]]\n# z = { p = 1 }\n[c]\nw = 0\n";
    let keys = example_keys(text);
    let want: BTreeSet<(String, String)> = [
        ("", "a"),
        ("", "c"),
        ("a", "x"),
        ("a", "y"),
        ("a", "b"),
        ("a.b", "z"),
        ("a.b.z", "p"),
        ("c", "w"),
    ]
    .iter()
    .map(|(s, k)| (s.to_string(), k.to_string()))
    .collect();
    assert_eq!(keys, want);
}

#[test]
fn example_documents_every_key_and_only_known_keys() {
    let path = root().join("configs/station.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    if let Err(e) = super::load_file(&path) {
        panic!("station.example.toml does not load:\n{e}");
    }
    let (allowed, required) = schema_sections();
    let shown = example_keys(&text);

    let missing: Vec<String> = required
        .iter()
        .flat_map(|(section, keys)| {
            keys.iter()
                .filter(|k| !shown.contains(&(section.clone(), k.to_string())))
                .map(|k| join(section, k))
                .collect::<Vec<_>>()
        })
        .collect();
    let unknown: Vec<String> = shown
        .iter()
        .filter(|(section, key)| !allowed.get(section).is_some_and(|a| a.contains(key)))
        .map(|(s, k)| join(s, k))
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "configs/station.example.toml is out of step with the schema\n\
         keys the schema has but the example does not show: {missing:?}\n\
         keys the example shows but the schema does not know: {unknown:?}"
    );
}
