//! The typed configuration. Every struct denies unknown keys, and every default
//! is documented here and in `configs/station.example.toml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole file after validation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path the config was read from (for messages).
    pub source: PathBuf,
    pub daemon: DaemonConfig,
    pub grpc: GrpcConfig,
    pub mqtt: MqttConfig,
    pub storage: StorageConfig,
    pub recorder: RecorderConfig,
    pub alerts: AlertsConfig,
    pub metrics: MetricsConfig,
    pub links: Vec<LinkConfig>,
    pub channels: Vec<ChannelConfig>,
    pub roster: RosterConfig,
    pub rollcall: RollcallConfig,
}

impl Config {
    pub fn link(&self, id: &str) -> Option<&LinkConfig> {
        self.links.iter().find(|l| l.id == id)
    }
    pub fn channel(&self, id: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.id == id)
    }
}

/// `[daemon]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Short id of this station, used in MQTT topics and reports
    /// (letters, digits, `-` and `_`).
    pub station_id: String,
    /// Human-readable station name.
    #[serde(default)]
    pub name: Option<String>,
    /// Where the database and recordings live. Relative paths are relative to
    /// the config file's directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// IANA time zone for schedules and reports, e.g. `Asia/Shanghai`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// How long shutdown waits for tasks to drain before giving up, in ms.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/rollcalld")
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_shutdown_grace_ms() -> u64 {
    800
}

/// `[grpc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address, e.g. `127.0.0.1:50051`. Port 0 picks a free port (the
    /// chosen address is logged and written to `<data_dir>/grpc.addr`).
    #[serde(default = "default_grpc_listen")]
    pub listen: SocketAddr,
    /// TLS certificate and key (PEM). Both or neither.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// When set, clients must present a certificate signed by this CA.
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
    /// When false, calls need no token (a lab setting; never in a station).
    #[serde(default = "yes")]
    pub require_auth: bool,
    /// API tokens: `[[grpc.token]]`.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenConfig>,
    /// Concurrent streaming calls allowed per client connection.
    #[serde(default = "default_max_streams")]
    pub max_streams_per_client: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen: default_grpc_listen(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            require_auth: true,
            tokens: Vec::new(),
            max_streams_per_client: default_max_streams(),
        }
    }
}

fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}
fn default_max_streams() -> u32 {
    16
}
fn yes() -> bool {
    true
}

/// `[[grpc.token]]`: one API token, stored as the SHA-256 of the secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it; appears in the audit log.
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token (`rollcallctl token new` prints both).
    pub sha256: String,
}

/// API roles, each including the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Broker `host:port`.
    #[serde(default = "default_broker")]
    pub broker: String,
    /// Defaults to `rollcalld-<station_id>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic prefix: topics are `<prefix>/<station_id>/...`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub username: Option<String>,
    /// Prefer `ROLLCALLD_MQTT_PASSWORD` or `password_file` over this.
    #[serde(default)]
    pub password: Option<String>,
    /// A file (mode 0600) holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: bool,
    /// CA bundle for TLS (PEM); system roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_keepalive")]
    pub keepalive_s: u64,
    /// Accept remote commands under `cmd/...`.
    #[serde(default)]
    pub commands: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: false,
            broker: default_broker(),
            client_id: None,
            prefix: default_prefix(),
            username: None,
            password: None,
            password_file: None,
            tls: false,
            ca_file: None,
            keepalive_s: default_keepalive(),
            commands: false,
        }
    }
}

fn default_broker() -> String {
    "127.0.0.1:1883".into()
}
fn default_prefix() -> String {
    "rollcall".into()
}
fn default_keepalive() -> u64 {
    15
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// SQLite database file; default `<data_dir>/rollcalld.sqlite`.
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// Keep events in the events table this many days (0 = for ever).
    #[serde(default = "default_event_days")]
    pub event_retention_days: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            database: None,
            event_retention_days: default_event_days(),
        }
    }
}

fn default_event_days() -> u32 {
    365
}

/// `[recorder]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecorderConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Default `<data_dir>/recordings`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Opus bitrate in bit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate: i32,
    /// Opus complexity 0–10.
    #[serde(default = "default_complexity")]
    pub complexity: i32,
    /// Delete recordings older than this many days (0 = keep).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Delete oldest recordings while the total exceeds this many MiB (0 = no cap).
    #[serde(default)]
    pub max_total_mb: u64,
    /// Free space (MiB, fractions allowed) kept on the recordings' file
    /// system: below it recording pauses with an event, so the database,
    /// usually on the same disk, can still commit; it resumes once there is
    /// this much plus an eighth free again. 0 pauses only on a failed write.
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: f64,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            enabled: true,
            dir: None,
            bitrate: default_bitrate(),
            complexity: default_complexity(),
            retention_days: default_retention_days(),
            max_total_mb: 0,
            min_free_mb: default_min_free_mb(),
        }
    }
}

fn default_min_free_mb() -> f64 {
    256.0
}
fn default_bitrate() -> i32 {
    12_000
}
fn default_complexity() -> i32 {
    5
}
fn default_retention_days() -> u32 {
    90
}

/// `[alerts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Default acknowledgement deadline, minutes.
    #[serde(default = "default_deadline_min")]
    pub deadline_min: u32,
    /// Send a reminder this many minutes before the deadline (0 = none).
    #[serde(default = "default_reminder_min")]
    pub reminder_min: u32,
    /// Alert tone frequency (Hz) and length (ms) sent before the clip.
    #[serde(default = "default_tone_hz")]
    pub tone_hz: u32,
    #[serde(default = "default_tone_ms")]
    pub tone_ms: u32,
    /// Acknowledgements are still taken (and counted as late) this many
    /// minutes after the deadline; then the alert closes.
    #[serde(default = "default_late_window_min")]
    pub late_window_min: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            deadline_min: default_deadline_min(),
            reminder_min: default_reminder_min(),
            tone_hz: default_tone_hz(),
            tone_ms: default_tone_ms(),
            late_window_min: default_late_window_min(),
        }
    }
}

fn default_deadline_min() -> u32 {
    10
}
fn default_reminder_min() -> u32 {
    3
}
fn default_late_window_min() -> u32 {
    10
}
fn default_tone_hz() -> u32 {
    1000
}
fn default_tone_ms() -> u32 {
    600
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Prometheus `/metrics` listener; off when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[[link]]`: one base station connection. Kind-specific settings sit in a
/// sub-table named after the kind, e.g. `[link.roip]`; they are checked while
/// loading by `crate::links::check_settings` and turned into a driver at start.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub id: String,
    pub name: Option<String>,
    /// Driver kind, e.g. `roip`, `sim`, `svxlink-pty`.
    pub kind: String,
    /// The `[link.<kind>]` sub-table, spans intact, or `None` when absent.
    pub settings: Option<toml_edit::Item>,
}

/// The common keys of a `[[link]]` table (kind-specific ones are checked by
/// the link registry).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkHeader {
    pub id: String,
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `[[channel]]`: a logical channel grouping one or more links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Link ids. A link belongs to at most one channel.
    pub links: Vec<String>,
    /// Retransmit what one link hears on the channel's other links.
    #[serde(default = "yes")]
    pub merge: bool,
    /// Hang time after the squelch closes before the channel is idle, ms.
    #[serde(default = "default_hang_ms")]
    pub hang_time_ms: u64,
    /// Transmit time-out: no transmission may last longer, seconds.
    #[serde(default = "default_tx_timeout")]
    pub tx_timeout_s: u64,
    /// Patched PTT tail after the source's squelch closes, ms.
    #[serde(default = "default_patch_tail_ms")]
    pub patch_tail_ms: u64,
    /// What a patch does when the destination link is busy: `wait` or `talk-over`.
    #[serde(default)]
    pub busy_policy: BusyPolicy,
    /// Record every transmission on this channel.
    #[serde(default = "yes")]
    pub record: bool,
    /// Which ANI decoders run on this channel's audio.
    #[serde(default)]
    pub ani: AniConfig,
}

fn default_hang_ms() -> u64 {
    1500
}
fn default_tx_timeout() -> u64 {
    60
}
fn default_patch_tail_ms() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusyPolicy {
    #[default]
    Wait,
    TalkOver,
}

/// `[channel.ani]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AniConfig {
    #[serde(default = "yes")]
    pub dtmf: bool,
    /// 5-tone standard: `ccir`, `ccir2`, `zvei1`, `eea`, `eia`, or absent for off.
    #[serde(default)]
    pub selcall: Option<String>,
    #[serde(default = "yes")]
    pub mdc1200: bool,
}

impl Default for AniConfig {
    fn default() -> Self {
        AniConfig {
            dtmf: true,
            selcall: None,
            mdc1200: true,
        }
    }
}

/// `[roster]`
#[derive(Debug, Clone, Default)]
pub struct RosterConfig {
    pub companies: Vec<CompanyConfig>,
    pub guards: Vec<GuardConfig>,
    pub groups: Vec<GroupConfig>,
}

/// `[[roster.company]]`: a security firm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub supervisor: Option<String>,
    #[serde(default)]
    pub supervisor_phone: Option<String>,
}

/// `[[roster.guard]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    pub id: String,
    pub name: String,
    pub company: String,
    #[serde(default)]
    pub post: Option<String>,
    /// DTMF PTT-ID digits.
    #[serde(default)]
    pub dtmf: Option<String>,
    /// 5-tone selcall code (standard from the channel).
    #[serde(default)]
    pub selcall: Option<String>,
    /// MDC1200 unit id, four hex digits.
    #[serde(default)]
    pub mdc1200: Option<String>,
    /// DMR radio id.
    #[serde(default)]
    pub dmr: Option<u32>,
    /// Id of the guard's phone app for MQTT acks.
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `[[roster.group]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `[rollcall]`
#[derive(Debug, Clone, Default)]
pub struct RollcallConfig {
    pub defaults: RollcallDefaults,
    pub schedules: Vec<ScheduleConfig>,
}

/// Keys directly under `[rollcall]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollcallDefaults {
    /// Individual mode: seconds to wait for a guard's reply.
    #[serde(default = "default_reply_window")]
    pub reply_window_s: u64,
    /// Group/app mode: the response window, seconds (station rule: 10 min).
    #[serde(default = "default_window")]
    pub window_s: u64,
    /// Answers after this many seconds count as late.
    #[serde(default = "default_on_time")]
    pub on_time_s: u64,
    /// Individual mode retries per guard.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// A due time missed while the daemon was down is still run if the
    /// daemon is back within this many seconds; otherwise recorded as missed.
    #[serde(default = "default_grace")]
    pub grace_s: u64,
    /// Escalate missed guards to their company's supervisor over MQTT.
    #[serde(default = "yes")]
    pub escalate: bool,
}

impl Default for RollcallDefaults {
    fn default() -> Self {
        RollcallDefaults {
            reply_window_s: default_reply_window(),
            window_s: default_window(),
            on_time_s: default_on_time(),
            retries: default_retries(),
            grace_s: default_grace(),
            escalate: true,
        }
    }
}

fn default_reply_window() -> u64 {
    8
}
fn default_window() -> u64 {
    600
}
fn default_on_time() -> u64 {
    300
}
fn default_retries() -> u32 {
    1
}
fn default_grace() -> u64 {
    900
}

/// `[[rollcall.schedule]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub channel: String,
    /// Roster groups called; empty = every guard.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Local times `HH:MM` in `time_zone`.
    pub times: Vec<String>,
    /// IANA time zone of `times`; default the daemon's `time_zone`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// `daily`, `weekdays`, `weekends`, or a list like `["mon", "wed"]`.
    #[serde(default)]
    pub days: Days,
    /// Any of `individual`, `group`, `app`.
    pub modes: Vec<RollcallMode>,
    /// Announcement clip (WAV or Ogg Opus) for group mode.
    #[serde(default)]
    pub announcement: Option<PathBuf>,
    /// Individual mode: a WAV clip sent after each guard's selective call
    /// (e.g. "report your post").
    #[serde(default)]
    pub call_clip: Option<PathBuf>,
    #[serde(default)]
    pub reply_window_s: Option<u64>,
    #[serde(default)]
    pub window_s: Option<u64>,
    #[serde(default)]
    pub on_time_s: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub grace_s: Option<u64>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RollcallMode {
    Individual,
    Group,
    App,
}

impl RollcallMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RollcallMode::Individual => "individual",
            RollcallMode::Group => "group",
            RollcallMode::App => "app",
        }
    }
}

/// Days a schedule runs on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Days {
    Named(String),
    List(Vec<String>),
}

impl Default for Days {
    fn default() -> Self {
        Days::Named("daily".into())
    }
}

/// Raw key/value pairs, kept for tests that compare the example config with
/// the schema.
pub type KeyList = BTreeMap<String, Vec<String>>;
