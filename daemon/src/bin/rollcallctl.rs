//! `rollcallctl`: the operator's command line over the rollcalld gRPC API.
//!
//! Table output for people, `--json` for scripts. The address and token come
//! from flags, then `ROLLCALLCTL_ADDR` / `ROLLCALLCTL_TOKEN`, then
//! `~/.config/rollcallctl.toml` (`addr = "..."`, `token = "..."`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rollcall_proto::v1 as pb;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// Operator CLI for rollcalld.
#[derive(Parser, Debug)]
#[command(name = "rollcallctl", version, about)]
struct Cli {
    /// Daemon gRPC address, e.g. http://127.0.0.1:50051.
    #[arg(long, env = "ROLLCALLCTL_ADDR", global = true)]
    addr: Option<String>,
    /// API token.
    #[arg(long, env = "ROLLCALLCTL_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Station, link and channel status.
    Status,
    /// Decode every radio ID (DTMF PTT-ID, 5-tone selcall, MDC1200) in an
    /// audio file, with the same decoders the daemon runs on a channel. Use
    /// it to check what your radios actually send. Works offline.
    Decode {
        /// A WAV file (any rate, 8–32-bit PCM or float), or raw signed 16-bit
        /// little-endian mono with --rate.
        file: std::path::PathBuf,
        /// The file is headerless s16le mono at this rate (Hz).
        #[arg(long)]
        rate: Option<u32>,
        /// Also decode 5-tone selcall of this standard: ccir, ccir2, zvei1,
        /// eea or eia.
        #[arg(long)]
        selcall: Option<String>,
        /// Skip DTMF.
        #[arg(long)]
        no_dtmf: bool,
        /// Skip MDC1200.
        #[arg(long)]
        no_mdc1200: bool,
    },
}

#[derive(Debug, Default, serde::Deserialize)]
struct FileConfig {
    addr: Option<String>,
    token: Option<String>,
}

fn file_config() -> FileConfig {
    let Some(home) = std::env::var_os("HOME") else {
        return FileConfig::default();
    };
    let path = std::path::Path::new(&home).join(".config/rollcallctl.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            use serde::Deserialize;
            match text
                .parse::<toml_edit::de::ValueDeserializer>()
                .or_else(|_| {
                    format!("{{{}}}", text.lines().collect::<Vec<_>>().join(", "))
                        .parse::<toml_edit::de::ValueDeserializer>()
                })
                .and_then(FileConfig::deserialize)
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("rollcallctl: ignoring {}: {e}", path.display());
                    FileConfig::default()
                }
            }
        }
        Err(_) => FileConfig::default(),
    }
}

struct Client {
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        req
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Decode {
        file,
        rate,
        selcall,
        no_dtmf,
        no_mdc1200,
    } = &cli.command
    {
        return decode(
            file,
            *rate,
            selcall.as_deref(),
            !*no_dtmf,
            !*no_mdc1200,
            cli.json,
        );
    }
    let file = file_config();
    let addr = cli
        .addr
        .clone()
        .or(file.addr)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let addr = if addr.contains("://") {
        addr
    } else {
        format!("http://{addr}")
    };
    let token = match cli.token.clone().or(file.token) {
        Some(t) => match format!("Bearer {t}").parse() {
            Ok(v) => Some(v),
            Err(_) => {
                eprintln!("rollcallctl: the token contains characters not allowed in a header");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let channel = match Channel::from_shared(addr.clone()) {
        Ok(ep) => match ep
            .connect_timeout(std::time::Duration::from_secs(3))
            .connect()
            .await
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("rollcallctl: cannot connect to {addr}: {e}");
                return ExitCode::from(1);
            }
        },
        Err(e) => {
            eprintln!("rollcallctl: bad address {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    let client = Client { channel, token };
    let result = match cli.command {
        Cmd::Status => status(&client, cli.json).await,
        Cmd::Decode { .. } => unreachable!("handled before connecting"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(status) => {
            eprintln!(
                "rollcallctl: {}: {}",
                code_name(status.code()),
                status.message()
            );
            ExitCode::from(1)
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Unauthenticated => "unauthenticated (give --token)",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::NotFound => "not found",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::Unavailable => "daemon unavailable",
        tonic::Code::FailedPrecondition => "refused",
        _ => "error",
    }
}

async fn status(client: &Client, json: bool) -> Result<(), tonic::Status> {
    let mut api = pb::station_service_client::StationServiceClient::new(client.channel.clone());
    let s = api
        .get_status(client.request(pb::GetStatusRequest {}))
        .await?
        .into_inner();
    if json {
        let links: Vec<_> = s
            .links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "id": l.id, "kind": l.kind,
                    "state": link_state(l.state), "reason": l.reason,
                    "cor": l.cor, "ptt": l.ptt, "since_ms": l.since_ms,
                })
            })
            .collect();
        let channels: Vec<_> = s
            .channels
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "name": c.name, "links": c.links, "state": c.state}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "station_id": s.station_id, "version": s.version,
                "uptime_seconds": s.uptime_seconds, "time_zone": s.time_zone,
                "links": links, "channels": channels,
            })
        );
        return Ok(());
    }
    println!(
        "station {}  rollcalld {}  up {}  ({})",
        s.station_id,
        s.version,
        human_duration(s.uptime_seconds),
        s.time_zone
    );
    if s.links.is_empty() {
        println!("no links configured");
    } else {
        println!(
            "\n{:<16} {:<12} {:<9} {:<4} {:<4} REASON",
            "LINK", "KIND", "STATE", "COR", "PTT"
        );
        for l in &s.links {
            println!(
                "{:<16} {:<12} {:<9} {:<4} {:<4} {}",
                l.id,
                l.kind,
                link_state(l.state),
                if l.cor { "on" } else { "-" },
                if l.ptt { "on" } else { "-" },
                l.reason
            );
        }
    }
    if !s.channels.is_empty() {
        println!("\n{:<16} {:<12} LINKS", "CHANNEL", "STATE");
        for c in &s.channels {
            println!("{:<16} {:<12} {}", c.id, c.state, c.links.join(", "));
        }
    }
    Ok(())
}

fn link_state(v: i32) -> &'static str {
    match pb::LinkState::try_from(v) {
        Ok(pb::LinkState::Up) => "up",
        Ok(pb::LinkState::Down) => "down",
        Ok(pb::LinkState::Starting) => "starting",
        _ => "unknown",
    }
}

fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h{m}m")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else {
        format!("{m}m{s}s")
    }
}

fn decode(
    path: &std::path::Path,
    rate: Option<u32>,
    selcall: Option<&str>,
    dtmf: bool,
    mdc1200: bool,
    json: bool,
) -> ExitCode {
    use rollcall_hw::signalling::{decode_recording, AniDecoderConfig, SelcallStandard};
    let selcall = match selcall {
        None => None,
        Some(s) => match SelcallStandard::parse(s) {
            Some(std) => Some(std),
            None => {
                eprintln!("rollcallctl: unknown selcall standard \"{s}\"; use ccir, ccir2, zvei1, eea or eia");
                return ExitCode::from(2);
            }
        },
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("rollcallctl: cannot read {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let config = AniDecoderConfig {
        dtmf,
        selcall,
        mdc1200,
    };
    let events = match decode_recording(&bytes, rate, &config) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("rollcallctl: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let rate = f64::from(rollcall_hw::audio::SAMPLE_RATE);
    for e in &events {
        let (start, end) = (e.start_sample as f64 / rate, e.end_sample as f64 / rate);
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "start_s": (start * 1000.0).round() / 1000.0,
                    "end_s": (end * 1000.0).round() / 1000.0,
                    "kind": e.kind.as_str(),
                    "unit": e.unit,
                    "op": format!("{:?}", e.op),
                    "detail": e.detail,
                    "confidence": e.confidence,
                })
            );
        } else {
            println!(
                "{start:8.3}s  {:<8} {:<10} {:?}{}",
                e.kind.as_str(),
                e.unit,
                e.op,
                e.detail
                    .as_ref()
                    .map(|d| format!("  ({d})"))
                    .unwrap_or_default()
            );
        }
    }
    if events.is_empty() && !json {
        eprintln!("no radio IDs found in {}", path.display());
    }
    ExitCode::SUCCESS
}
