//! `rollcallctl`: the operator's command line over the rollcalld gRPC API.
//!
//! Table output for people, `--json` for scripts (one JSON document per
//! command; `rollcall watch` prints one JSON object per line). The address
//! and token come from flags, then `ROLLCALLCTL_ADDR` / `ROLLCALLCTL_TOKEN`,
//! then `~/.config/rollcallctl.toml` (`addr = "..."`, `token = "..."`).
//!
//! Exit codes: 0 success, 1 the daemon refused or failed (or a local file
//! could not be written), 2 usage error.

mod alert;
mod decode;
mod out;
mod rollcall;
mod station;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    /// Roll calls: start, watch, show, list, report.
    #[command(subcommand)]
    Rollcall(rollcall::RollcallCmd),
    /// Roll-call schedules.
    #[command(subcommand)]
    Schedule(rollcall::ScheduleCmd),
    /// Alerts to guards and their acknowledgements.
    #[command(subcommand)]
    Alert(alert::AlertCmd),
    /// Recorded transmissions.
    #[command(subcommand)]
    Recordings(station::RecordingsCmd),
    /// Companies, guards and groups.
    #[command(subcommand)]
    Roster(station::RosterCmd),
    /// Patch two channels together (on) or apart (off).
    Patch {
        state: station::OnOff,
        channel_a: String,
        channel_b: String,
    },
    /// Make a new API token: prints the secret (give it to the console) and
    /// the `[[grpc.token]]` entry with its SHA-256 for the daemon's config.
    /// Works offline.
    Token {
        /// `new`.
        #[arg(value_parser = ["new"])]
        action: String,
        /// Who will hold it (appears in the audit log).
        #[arg(long, default_value = "console")]
        name: String,
        /// viewer, operator or admin.
        #[arg(long, default_value = "viewer", value_parser = ["viewer", "operator", "admin"])]
        role: String,
    },
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

/// A connected channel plus the token every request carries.
pub struct Client {
    pub channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
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
    if let Cmd::Token { name, role, .. } = &cli.command {
        use sha2::Digest;
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
        if cli.json {
            println!(
                "{}",
                serde_json::json!({"token": secret, "name": name, "role": role, "sha256": hash})
            );
        } else {
            println!("token (give this to the console; it is not stored anywhere):\n  {secret}\n");
            println!("for the daemon's config:\n[[grpc.token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{hash}\"");
        }
        return ExitCode::SUCCESS;
    }
    if let Cmd::Decode {
        file,
        rate,
        selcall,
        no_dtmf,
        no_mdc1200,
    } = &cli.command
    {
        return decode::decode(
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
    let json = cli.json;
    let result = match cli.command {
        Cmd::Status => station::status(&client, json).await,
        Cmd::Rollcall(cmd) => rollcall::run(&client, cmd, json).await,
        Cmd::Schedule(cmd) => rollcall::schedules(&client, cmd, json).await,
        Cmd::Alert(cmd) => alert::run(&client, cmd, json).await,
        Cmd::Recordings(cmd) => station::recordings(&client, cmd, json).await,
        Cmd::Roster(cmd) => station::roster(&client, cmd, json).await,
        Cmd::Patch {
            state,
            channel_a,
            channel_b,
        } => station::patch(&client, state, channel_a, channel_b, json).await,
        Cmd::Decode { .. } | Cmd::Token { .. } => unreachable!("handled before connecting"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcallctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
