//! `rollcalld`: the daemon binary. Parses the command line, loads and checks
//! the config (exit 2 on any config error, before anything is bound), sets up
//! logging, and runs [`rollcalld::run`] until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Radio and roll-call gateway daemon.
///
/// Connects base stations (serial, RoIP, DMR), merges channels, runs morning
/// and evening roll calls, tracks alert acknowledgements, records every
/// transmission, and serves the station console API over gRPC.
///
/// The config is loaded and checked before anything is opened: any error is
/// printed with its line and the exit status is 2. SIGTERM or SIGINT stop the
/// daemon cleanly (PTT released, recordings closed). Under systemd it reports
/// readiness and pings the watchdog (Type=notify). The level of detail comes
/// from RUST_LOG, e.g. `RUST_LOG=info,rollcall_hw=debug`.
///
/// Every config key: /usr/share/doc/rollcalld/config.md (docs/config.md).
#[derive(Parser, Debug)]
#[command(name = "rollcalld", version, about, long_about)]
struct Cli {
    /// Config file (TOML); `configs/station.example.toml` documents every key.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/rollcalld/rollcalld.toml",
        env = "ROLLCALLD_CONFIG"
    )]
    config: PathBuf,

    /// Log output format: `pretty` for a terminal, `json` for journald or
    /// log shippers. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, env = "ROLLCALLD_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default when no command is given).
    Run,
    /// Validate a config file without opening any device or port: print
    /// every problem found (file:line:column: key: what is wrong), exit 0 if
    /// it is valid and 2 if not.
    CheckConfig {
        /// Config file to check.
        file: PathBuf,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => match rollcalld::config::load_file(&file) {
            Ok(c) => {
                println!(
                    "{}: ok (station {}, {} links, {} channels, {} guards, {} schedules)",
                    file.display(),
                    c.daemon.station_id,
                    c.links.len(),
                    c.channels.len(),
                    c.roster.guards.len(),
                    c.rollcall.schedules.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: {} error(s)", file.display(), errors.0.len());
                ExitCode::from(2)
            }
        },
        None | Some(Command::Run) => {
            let config = match rollcalld::config::load_file(&cli.config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!(
                        "rollcalld: config has {} error(s); not starting",
                        errors.0.len()
                    );
                    return ExitCode::from(2);
                }
            };
            init_tracing(cli.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("rollcalld")
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("rollcalld: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(rollcalld::run(config, shutdown_signal()));
            // Connection tasks of clients that never hung up are dropped here.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("rollcalld: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
    }
}
