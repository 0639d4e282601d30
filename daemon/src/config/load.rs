//! The span-aware loader: walks the TOML document section by section so one
//! bad entry does not hide the next, then checks ids and references.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml_edit::{Document, Item, Table};

use super::schema::*;

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column; 0 when the problem has no place in the file
    /// (e.g. a missing section).
    pub line: usize,
    pub column: usize,
    /// Dotted key, e.g. `link[2].id`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        } else {
            write!(f, "{}: ", self.file.display())?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and validates a config file. Environment overrides
/// (`ROLLCALLD_MQTT_PASSWORD`, `ROLLCALLD_MQTT_USERNAME`) are applied.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    let mut config = load_str(&src, path)?;
    if let Ok(pw) = std::env::var("ROLLCALLD_MQTT_PASSWORD") {
        config.mqtt.password = Some(pw);
    }
    if let Ok(user) = std::env::var("ROLLCALLD_MQTT_USERNAME") {
        config.mqtt.username = Some(user);
    }
    Ok(config)
}

const TOP_LEVEL: &[&str] = &[
    "daemon", "grpc", "mqtt", "storage", "recorder", "alerts", "metrics", "link", "channel",
    "roster", "rollcall",
];

/// Parses and validates config text; `path` is used in messages and to
/// resolve a relative `data_dir`.
pub fn load_str(src: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = Loader {
        file: path.to_owned(),
        src,
        errors: Vec::new(),
    };
    let doc = match Document::parse(src.to_owned()) {
        Ok(doc) => doc,
        Err(e) => {
            let msg = e.message().trim_end_matches('\n').to_string();
            cx.error_at(e.span(), "", format!("TOML syntax error: {msg}"));
            return Err(ConfigErrors(cx.errors));
        }
    };
    let root = doc.as_table();

    for (key, item) in root.iter() {
        if !TOP_LEVEL.contains(&key) {
            cx.error_at(
                root.key(key).and_then(|k| k.span()).or(item.span()),
                key,
                format!("unknown section; allowed: {}", TOP_LEVEL.join(", ")),
            );
        }
    }

    let daemon: Option<DaemonConfig> = match root.get("daemon") {
        Some(item) => cx.de(item, "daemon"),
        None => {
            cx.error_at(
                None,
                "daemon",
                "missing section [daemon] (station_id is required)",
            );
            None
        }
    };
    let grpc: GrpcConfig = cx.de_or_default(root.get("grpc"), "grpc");
    let mqtt: MqttConfig = cx.de_or_default(root.get("mqtt"), "mqtt");
    let storage: StorageConfig = cx.de_or_default(root.get("storage"), "storage");
    let recorder: RecorderConfig = cx.de_or_default(root.get("recorder"), "recorder");
    let alerts: AlertsConfig = cx.de_or_default(root.get("alerts"), "alerts");
    let metrics: MetricsConfig = cx.de_or_default(root.get("metrics"), "metrics");

    // [[link]]
    let mut links = Vec::new();
    let link_tables = cx.tables(root.get("link"), "link");
    for (i, table) in link_tables.iter().enumerate() {
        let key = format!("link[{i}]");
        let kind = table
            .get("kind")
            .and_then(|k| k.as_str())
            .map(str::to_owned);
        let mut header = table.clone();
        let settings = kind.as_deref().and_then(|k| header.remove(k));
        let Some(h) = cx.de::<LinkHeader>(&Item::Table(header), &key) else {
            continue;
        };
        if let Err(msg) = crate::links::check_settings(&h.kind, settings.as_ref()) {
            let span = settings
                .as_ref()
                .and_then(|s| s.span())
                .or_else(|| table.get("kind").and_then(|k| k.span()));
            match msg {
                crate::links::SettingsError::UnknownKind(allowed) => cx.error_at(
                    table.get("kind").and_then(|k| k.span()),
                    &format!("{key}.kind"),
                    format!("unknown link kind \"{}\"; allowed: {allowed}", h.kind),
                ),
                crate::links::SettingsError::Invalid(e) => {
                    cx.de_error(e, &format!("{key}.{}", h.kind), span, settings.as_ref())
                }
            }
        }
        links.push((
            LinkConfig {
                id: h.id,
                name: h.name,
                kind: h.kind,
                settings,
            },
            table.clone(),
        ));
    }

    // [[channel]]
    let mut channels = Vec::new();
    for (i, table) in cx.tables(root.get("channel"), "channel").iter().enumerate() {
        if let Some(c) =
            cx.de::<ChannelConfig>(&Item::Table(table.clone()), &format!("channel[{i}]"))
        {
            channels.push((c, table.clone()));
        }
    }

    // [roster]
    let mut companies = Vec::new();
    let mut guards = Vec::new();
    let mut groups = Vec::new();
    if let Some(roster) = root.get("roster") {
        match roster.as_table() {
            Some(t) => {
                for (k, item) in t.iter() {
                    if !["company", "guard", "group"].contains(&k) {
                        cx.error_at(
                            item.span().or(t.key(k).and_then(|k| k.span())),
                            &format!("roster.{k}"),
                            "unknown key; allowed: company, guard, group",
                        );
                    }
                }
                for (i, table) in cx
                    .tables(t.get("company"), "roster.company")
                    .iter()
                    .enumerate()
                {
                    if let Some(c) = cx.de::<CompanyConfig>(
                        &Item::Table(table.clone()),
                        &format!("roster.company[{i}]"),
                    ) {
                        companies.push((c, table.clone()));
                    }
                }
                for (i, table) in cx.tables(t.get("guard"), "roster.guard").iter().enumerate() {
                    if let Some(g) = cx.de::<GuardConfig>(
                        &Item::Table(table.clone()),
                        &format!("roster.guard[{i}]"),
                    ) {
                        guards.push((g, table.clone()));
                    }
                }
                for (i, table) in cx.tables(t.get("group"), "roster.group").iter().enumerate() {
                    if let Some(g) = cx.de::<GroupConfig>(
                        &Item::Table(table.clone()),
                        &format!("roster.group[{i}]"),
                    ) {
                        groups.push((g, table.clone()));
                    }
                }
            }
            None => cx.error_at(roster.span(), "roster", "expected a table ([roster])"),
        }
    }

    // [rollcall]
    let mut defaults = RollcallDefaults::default();
    let mut schedules = Vec::new();
    if let Some(rc) = root.get("rollcall") {
        match rc.as_table() {
            Some(t) => {
                let mut rest = t.clone();
                let sched = rest.remove("schedule");
                if let Some(d) = cx.de::<RollcallDefaults>(&Item::Table(rest), "rollcall") {
                    defaults = d;
                }
                for (i, table) in cx
                    .tables(sched.as_ref(), "rollcall.schedule")
                    .iter()
                    .enumerate()
                {
                    if let Some(s) = cx.de::<ScheduleConfig>(
                        &Item::Table(table.clone()),
                        &format!("rollcall.schedule[{i}]"),
                    ) {
                        schedules.push((s, table.clone()));
                    }
                }
            }
            None => cx.error_at(rc.span(), "rollcall", "expected a table ([rollcall])"),
        }
    }

    // ---- semantic checks ----
    if let Some(d) = &daemon {
        let t = root.get("daemon").and_then(|i| i.as_table());
        let span = |k: &str| t.and_then(|t| t.get(k)).and_then(|i| i.span());
        if !is_ident(&d.station_id) {
            cx.error_at(
                span("station_id"),
                "daemon.station_id",
                format!(
                    "\"{}\" is not a valid id; use 1–64 letters, digits, '-' or '_'",
                    d.station_id
                ),
            );
        }
        if let Err(e) = jiff::tz::TimeZone::get(&d.time_zone) {
            cx.error_at(
                span("time_zone"),
                "daemon.time_zone",
                format!("unknown IANA time zone \"{}\": {e}", d.time_zone),
            );
        }
    }
    check_grpc(&mut cx, root, &grpc);
    if mqtt.prefix.is_empty() || mqtt.prefix.contains(['#', '+']) || mqtt.prefix.ends_with('/') {
        cx.error_at(
            span_of(root, &["mqtt", "prefix"]),
            "mqtt.prefix",
            "must be non-empty, without '#', '+' or a trailing '/'",
        );
    }
    if !(0..=10).contains(&recorder.complexity) {
        cx.error_at(
            span_of(root, &["recorder", "complexity"]),
            "recorder.complexity",
            format!("{} is out of range; allowed 0–10", recorder.complexity),
        );
    }
    if !(6_000..=64_000).contains(&recorder.bitrate) {
        cx.error_at(
            span_of(root, &["recorder", "bitrate"]),
            "recorder.bitrate",
            format!(
                "{} bit/s is out of range; allowed 6000–64000",
                recorder.bitrate
            ),
        );
    }
    if !(recorder.min_free_mb >= 0.0 && recorder.min_free_mb.is_finite()) {
        cx.error_at(
            span_of(root, &["recorder", "min_free_mb"]),
            "recorder.min_free_mb",
            format!(
                "{} is not a size; allowed 0 or more MiB",
                recorder.min_free_mb
            ),
        );
    }

    let link_ids = cx.unique_ids("link", links.iter().map(|(l, t)| (l.id.as_str(), t)));
    let channel_ids = cx.unique_ids("channel", channels.iter().map(|(c, t)| (c.id.as_str(), t)));
    let company_ids = cx.unique_ids(
        "roster.company",
        companies.iter().map(|(c, t)| (c.id.as_str(), t)),
    );
    let group_ids = cx.unique_ids(
        "roster.group",
        groups.iter().map(|(g, t)| (g.id.as_str(), t)),
    );
    cx.unique_ids(
        "roster.guard",
        guards.iter().map(|(g, t)| (g.id.as_str(), t)),
    );
    cx.unique_ids(
        "rollcall.schedule",
        schedules.iter().map(|(s, t)| (s.id.as_str(), t)),
    );
    let _ = channel_ids.len();

    let mut link_owner: HashMap<&str, &str> = HashMap::new();
    for (i, (c, t)) in channels.iter().enumerate() {
        let key = format!("channel[{i}].links");
        let span = t.get("links").and_then(|i| i.span());
        if c.links.is_empty() {
            cx.error_at(span.clone(), &key, "a channel needs at least one link");
        }
        for l in &c.links {
            if !link_ids.contains(l.as_str()) {
                cx.error_at(
                    span.clone(),
                    &key,
                    format!(
                        "channel \"{}\" names link \"{l}\", which is not defined; defined links: {}",
                        c.id,
                        sorted_list(&link_ids)
                    ),
                );
            } else if let Some(other) = link_owner.insert(l, &c.id) {
                cx.error_at(
                    span.clone(),
                    &key,
                    format!("link \"{l}\" is already in channel \"{other}\"; a link belongs to one channel"),
                );
            }
        }
        if let Some(std) = &c.ani.selcall {
            if !["ccir", "ccir2", "zvei1", "eea", "eia"].contains(&std.as_str()) {
                cx.error_at(
                    span_in(t, &["ani", "selcall"]),
                    &format!("channel[{i}].ani.selcall"),
                    format!(
                        "unknown 5-tone standard \"{std}\"; allowed: ccir, ccir2, zvei1, eea, eia"
                    ),
                );
            }
        }
        if c.tx_timeout_s == 0 {
            cx.error_at(
                t.get("tx_timeout_s").and_then(|i| i.span()),
                &format!("channel[{i}].tx_timeout_s"),
                "must be at least 1 second: a stuck PTT must always be cut",
            );
        }
    }

    let mut codes: HashMap<(String, String), String> = HashMap::new();
    for (i, (g, t)) in guards.iter().enumerate() {
        let key = |k: &str| format!("roster.guard[{i}].{k}");
        let span = |k: &str| t.get(k).and_then(|i| i.span());
        if !company_ids.contains(g.company.as_str()) {
            cx.error_at(
                span("company"),
                &key("company"),
                format!(
                    "guard \"{}\" names company \"{}\", which is not defined; defined companies: {}",
                    g.id,
                    g.company,
                    sorted_list(&company_ids)
                ),
            );
        }
        for grp in &g.groups {
            if !group_ids.contains(grp.as_str()) {
                cx.error_at(
                    span("groups"),
                    &key("groups"),
                    format!(
                        "group \"{grp}\" is not defined; defined groups: {}",
                        sorted_list(&group_ids)
                    ),
                );
            }
        }
        if let Some(d) = &g.dtmf {
            if d.is_empty() || d.len() > 8 || !d.chars().all(|c| "0123456789ABCD*#".contains(c)) {
                cx.error_at(
                    span("dtmf"),
                    &key("dtmf"),
                    format!("\"{d}\" is not a DTMF PTT-ID; use 1–8 of 0-9 A-D * #"),
                );
            }
        }
        if let Some(s) = &g.selcall {
            if s.is_empty() || s.len() > 8 || !s.chars().all(|c| c.is_ascii_digit()) {
                cx.error_at(
                    span("selcall"),
                    &key("selcall"),
                    format!("\"{s}\" is not a 5-tone code; use 1–8 digits"),
                );
            }
        }
        if let Some(m) = &g.mdc1200 {
            if m.len() != 4 || !m.chars().all(|c| c.is_ascii_hexdigit()) {
                cx.error_at(
                    span("mdc1200"),
                    &key("mdc1200"),
                    format!(
                        "\"{m}\" is not an MDC1200 unit id; use four hex digits, e.g. \"1A2B\""
                    ),
                );
            }
        }
        if let Some(d) = g.dmr {
            if d == 0 || d > 16_776_415 {
                cx.error_at(
                    span("dmr"),
                    &key("dmr"),
                    format!("{d} is not a DMR radio id; allowed 1–16776415"),
                );
            }
        }
        let all = [
            ("dtmf", g.dtmf.clone()),
            ("selcall", g.selcall.clone()),
            (
                "mdc1200",
                g.mdc1200.as_ref().map(|m| m.to_ascii_uppercase()),
            ),
            ("dmr", g.dmr.map(|d| d.to_string())),
            ("app_id", g.app_id.clone()),
        ];
        for (kind, code) in all {
            if let Some(code) = code {
                if let Some(other) = codes.insert((kind.to_string(), code.clone()), g.id.clone()) {
                    cx.error_at(
                        span(kind),
                        &key(kind),
                        format!("{kind} code \"{code}\" is already used by guard \"{other}\"; codes must identify one guard"),
                    );
                }
            }
        }
    }

    for (i, (s, t)) in schedules.iter().enumerate() {
        let key = |k: &str| format!("rollcall.schedule[{i}].{k}");
        let span = |k: &str| t.get(k).and_then(|i| i.span());
        if !channels.iter().any(|(c, _)| c.id == s.channel) {
            cx.error_at(
                span("channel"),
                &key("channel"),
                format!(
                    "schedule \"{}\" names channel \"{}\", which is not defined; defined channels: {}",
                    s.id,
                    s.channel,
                    sorted_list(&channels.iter().map(|(c, _)| c.id.as_str()).collect())
                ),
            );
        }
        for grp in &s.groups {
            if !group_ids.contains(grp.as_str()) {
                cx.error_at(
                    span("groups"),
                    &key("groups"),
                    format!(
                        "group \"{grp}\" is not defined; defined groups: {}",
                        sorted_list(&group_ids)
                    ),
                );
            }
        }
        if s.times.is_empty() {
            cx.error_at(
                span("times"),
                &key("times"),
                "needs at least one time, e.g. [\"08:00\", \"20:00\"]",
            );
        }
        for tm in &s.times {
            if parse_hhmm(tm).is_none() {
                cx.error_at(
                    span("times"),
                    &key("times"),
                    format!("\"{tm}\" is not a time; use 24-hour HH:MM, e.g. \"08:00\""),
                );
            }
        }
        if let Err(msg) = parse_days(&s.days) {
            cx.error_at(span("days"), &key("days"), msg);
        }
        if let Some(tz) = &s.time_zone {
            if let Err(e) = jiff::tz::TimeZone::get(tz) {
                cx.error_at(
                    span("time_zone"),
                    &key("time_zone"),
                    format!("unknown IANA time zone \"{tz}\": {e}"),
                );
            }
        }
        if s.modes.is_empty() {
            cx.error_at(
                span("modes"),
                &key("modes"),
                "needs at least one of individual, group, app",
            );
        }
    }

    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
        return Err(ConfigErrors(cx.errors));
    }

    let mut daemon = daemon.expect("daemon parsed when there are no errors");
    if daemon.data_dir.is_relative() {
        let base = path.parent().unwrap_or(Path::new("."));
        daemon.data_dir = base.join(&daemon.data_dir);
    }
    Ok(Config {
        source: path.to_owned(),
        daemon,
        grpc,
        mqtt,
        storage,
        recorder,
        alerts,
        metrics,
        links: links.into_iter().map(|(l, _)| l).collect(),
        channels: channels.into_iter().map(|(c, _)| c).collect(),
        roster: RosterConfig {
            companies: companies.into_iter().map(|(c, _)| c).collect(),
            guards: guards.into_iter().map(|(g, _)| g).collect(),
            groups: groups.into_iter().map(|(g, _)| g).collect(),
        },
        rollcall: RollcallConfig {
            defaults,
            schedules: schedules.into_iter().map(|(s, _)| s).collect(),
        },
    })
}

fn check_grpc(cx: &mut Loader<'_>, root: &Table, grpc: &GrpcConfig) {
    if grpc.tls_cert.is_some() != grpc.tls_key.is_some() {
        cx.error_at(
            span_of(root, &["grpc"]),
            "grpc",
            "tls_cert and tls_key go together: set both or neither",
        );
    }
    if grpc.tls_client_ca.is_some() && grpc.tls_cert.is_none() {
        cx.error_at(
            span_of(root, &["grpc", "tls_client_ca"]),
            "grpc.tls_client_ca",
            "client certificates need TLS: set tls_cert and tls_key too",
        );
    }
    let mut names = HashSet::new();
    let tokens = root
        .get("grpc")
        .and_then(|g| g.as_table())
        .and_then(|g| g.get("token"))
        .and_then(|t| t.as_array_of_tables());
    for (i, tok) in grpc.tokens.iter().enumerate() {
        let t = tokens.and_then(|a| a.get(i));
        let span = |k: &str| t.and_then(|t| t.get(k)).and_then(|i| i.span());
        if tok.sha256.len() != 64 || !tok.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            cx.error_at(
                span("sha256"),
                &format!("grpc.token[{i}].sha256"),
                "must be 64 hex digits (the SHA-256 of the token; `rollcallctl token new` makes one)",
            );
        }
        if !names.insert(tok.name.as_str()) {
            cx.error_at(
                span("name"),
                &format!("grpc.token[{i}].name"),
                format!("duplicate token name \"{}\"", tok.name),
            );
        }
    }
}

/// Parses `HH:MM` (24-hour).
pub fn parse_hhmm(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u8 = h.parse().ok()?;
    let m: u8 = m.parse().ok()?;
    (h < 24 && m < 60).then_some((h, m))
}

/// Weekdays a schedule runs on, Monday = 0.
pub fn parse_days(days: &Days) -> Result<[bool; 7], String> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    match days {
        Days::Named(n) => match n.as_str() {
            "daily" => Ok([true; 7]),
            "weekdays" => Ok([true, true, true, true, true, false, false]),
            "weekends" => Ok([false, false, false, false, false, true, true]),
            other => Err(format!(
                "\"{other}\" is not a day set; use daily, weekdays, weekends, or a list like [\"mon\", \"thu\"]"
            )),
        },
        Days::List(list) => {
            let mut out = [false; 7];
            if list.is_empty() {
                return Err("the day list is empty".into());
            }
            for d in list {
                match NAMES.iter().position(|n| n == &d.to_ascii_lowercase()) {
                    Some(i) => out[i] = true,
                    None => {
                        return Err(format!(
                            "\"{d}\" is not a day; use {}",
                            NAMES.join(", ")
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Ids: 1–64 of A-Z a-z 0-9 - _.
pub fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn sorted_list(set: &HashSet<&str>) -> String {
    if set.is_empty() {
        return "(none)".into();
    }
    let mut v: Vec<_> = set.iter().copied().collect();
    v.sort();
    v.join(", ")
}

fn span_of(root: &Table, path: &[&str]) -> Option<std::ops::Range<usize>> {
    span_in(root, path)
}

fn span_in(table: &Table, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let (first, rest) = path.split_first()?;
    let item = table.get(first)?;
    if rest.is_empty() {
        return item
            .span()
            .or_else(|| table.key(first).and_then(|k| k.span()));
    }
    match item {
        Item::Table(t) => span_in(t, rest),
        Item::Value(toml_edit::Value::InlineTable(t)) => {
            let (second, _) = rest.split_first()?;
            t.get(second).and_then(|v| v.span())
        }
        _ => item.span(),
    }
}

/// The dotted path of the key inside `item` whose value covers `span`.
fn key_at(item: &Item, span: &std::ops::Range<usize>) -> Option<String> {
    let covers = |s: Option<std::ops::Range<usize>>| {
        s.is_some_and(|s| s.start <= span.start && span.end <= s.end)
    };
    match item {
        Item::Table(t) => t.iter().find_map(|(k, v)| {
            if !covers(v.span()) {
                return None;
            }
            Some(match key_at(v, span) {
                Some(inner) => format!("{k}.{inner}"),
                None => k.to_string(),
            })
        }),
        Item::Value(toml_edit::Value::InlineTable(t)) => t
            .iter()
            .find_map(|(k, v)| covers(v.span()).then(|| k.to_string())),
        _ => None,
    }
}

struct Loader<'a> {
    file: PathBuf,
    src: &'a str,
    errors: Vec<ConfigError>,
}

impl Loader<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let before = &self.src.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        (line, offset - line_start + 1)
    }

    fn error_at(
        &mut self,
        span: Option<std::ops::Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) {
        let (line, column) = span.map_or((0, 0), |s| self.position(s.start));
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn de_error(
        &mut self,
        e: toml_edit::de::Error,
        key: &str,
        fallback: Option<std::ops::Range<usize>>,
        item: Option<&Item>,
    ) {
        let message = e.message().trim_end_matches('\n').to_string();
        // serde names the offending field in the message; prefer the span of
        // that field when the error has none.
        let span = e.span().or(fallback);
        let field = message
            .strip_prefix("unknown field `")
            .or_else(|| message.strip_prefix("missing field `"))
            .and_then(|r| r.split('`').next())
            .map(|f| format!("{key}.{f}"))
            .or_else(|| {
                // A type error: name the key whose value holds the span.
                let span = e.span()?;
                let path = key_at(item?, &span)?;
                Some(format!("{key}.{path}"))
            });
        let message = if message.starts_with("unknown field") {
            message.replacen("expected one of", "allowed keys:", 1)
        } else {
            message
        };
        self.error_at(span, field.as_deref().unwrap_or(key), message);
    }

    /// Deserializes one section or array element; records the error and
    /// returns `None` on failure.
    fn de<T: DeserializeOwned>(&mut self, item: &Item, key: &str) -> Option<T> {
        let fallback = item.span();
        let value = match item.clone().into_value() {
            Ok(v) => v,
            Err(_) => {
                self.error_at(fallback, key, "expected a table");
                return None;
            }
        };
        match T::deserialize(value.into_deserializer()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.de_error(e, key, fallback, Some(item));
                None
            }
        }
    }

    fn de_or_default<T: DeserializeOwned + Default>(
        &mut self,
        item: Option<&Item>,
        key: &str,
    ) -> T {
        match item {
            Some(item) => {
                if !item.is_table() && !item.is_inline_table() {
                    self.error_at(item.span(), key, format!("expected a table ([{key}])"));
                    return T::default();
                }
                self.de(item, key).unwrap_or_default()
            }
            None => T::default(),
        }
    }

    /// The tables of an array of tables (`[[key]]`).
    fn tables(&mut self, item: Option<&Item>, key: &str) -> Vec<Table> {
        match item {
            None => Vec::new(),
            Some(Item::ArrayOfTables(a)) => a.iter().cloned().collect(),
            Some(other) => {
                self.error_at(
                    other.span(),
                    key,
                    format!("expected an array of tables: write each entry as [[{key}]]"),
                );
                Vec::new()
            }
        }
    }

    /// Reports duplicate ids; returns the set of ids seen.
    fn unique_ids<'t>(
        &mut self,
        what: &str,
        items: impl Iterator<Item = (&'t str, &'t Table)>,
    ) -> HashSet<&'t str> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, (id, table)) in items.enumerate() {
            let span = table.get("id").and_then(|i| i.span());
            if let Some(first) = seen.get(id) {
                self.error_at(
                    span,
                    &format!("{what}[{i}].id"),
                    format!("duplicate {what} id \"{id}\" (first used by {what}[{first}])"),
                );
            } else if !is_ident(id) {
                self.error_at(
                    span,
                    &format!("{what}[{i}].id"),
                    format!("\"{id}\" is not a valid id; use 1–64 letters, digits, '-' or '_'"),
                );
                seen.insert(id, i);
            } else {
                seen.insert(id, i);
            }
        }
        seen.into_keys().collect()
    }
}
