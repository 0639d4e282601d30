//! `radiosim`: runs simulated base stations (RoIP over UDP) from a JSON
//! config, for the demo and for tests that need a separate process.
//!
//! The config is either one station object or `{"stations": [...]}`; see
//! `rollcall_hw::sim::station` for the fields. Ground truth goes to each
//! station's `log` file and, with `--stdout`, to standard output as JSON
//! lines. Stops on SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rollcall_hw::sim::{Station, StationConfig};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "Simulated RoIP base stations with simulated guards")]
struct Args {
    /// JSON config: one station, or {"stations": [...]}.
    config: PathBuf,
    /// Also print every ground-truth record on stdout.
    #[arg(long)]
    stdout: bool,
    /// Override the seed of every station.
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManyStations {
    stations: Vec<StationConfig>,
}

/// Parses either form, with serde's message for the one that was meant.
fn parse_stations(text: &str) -> Result<Vec<StationConfig>, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(text)?;
    if value.get("stations").is_some() {
        Ok(serde_json::from_value::<ManyStations>(value)?.stations)
    } else {
        Ok(vec![serde_json::from_value(value)?])
    }
}

/// sysexits.h EX_USAGE / EX_CONFIG.
const EX_USAGE: u8 = 64;
const EX_CONFIG: u8 = 78;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("radiosim: cannot read {}: {e}", args.config.display());
            return ExitCode::from(EX_USAGE);
        }
    };
    let stations = match parse_stations(&text) {
        Ok(stations) => stations,
        Err(e) => {
            eprintln!("radiosim: {}: {e}", args.config.display());
            return ExitCode::from(EX_CONFIG);
        }
    };
    // Validate everything before binding anything.
    let mut failed = false;
    for s in &stations {
        if let Err(e) = s.validate() {
            eprintln!("radiosim: station {}: {e}", s.name);
            failed = true;
        }
    }
    if failed {
        return ExitCode::from(EX_CONFIG);
    }
    let cancel = CancellationToken::new();
    let mut handles = Vec::new();
    for mut s in stations {
        if let Some(seed) = args.seed {
            s.seed = seed;
        }
        match Station::spawn(s, cancel.clone()) {
            Ok(h) => {
                eprintln!("radiosim: station {} on {}", h.name, h.local_addr);
                if args.stdout {
                    let mut rx = h.subscribe();
                    tokio::spawn(async move {
                        while let Ok(r) = rx.recv().await {
                            if let Ok(line) = serde_json::to_string(&r) {
                                println!("{line}");
                            }
                        }
                    });
                }
                handles.push(h);
            }
            Err(e) => {
                eprintln!("radiosim: {e}");
                cancel.cancel();
                return ExitCode::from(EX_CONFIG);
            }
        }
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("radiosim: cannot watch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
    for h in handles {
        h.join().await;
    }
    ExitCode::SUCCESS
}
