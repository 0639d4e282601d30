//! rollcalld: the radio and roll-call gateway daemon.
//!
//! # Layout
//! - [`config`]: the TOML config, parsed and validated before anything binds.
//! - [`storage`]: the SQLite database on its own thread; migrations.
//! - [`events`]: the event bus — one `Event` enum, numbered, persisted, broadcast.
//! - [`station`]: live link state shared with the API.
//! - [`roster`]: companies, guards, groups; lookups by ANI code and app id;
//!   persisted in SQLite, edited at run time with an audit trail.
//! - [`rollcall`]: schedules, the roll-call engine, results and reports.
//! - [`channel`]: channels, PTT arbitration (`TxSource`), the `Transmitter` trait.
//! - [`links`]: the link registry (config kinds → `rollcall_hw` drivers) and the
//!   per-link task.
//! - [`grpc`]: the tonic server (rollcall.v1, health, reflection).
//! - [`sdnotify`]: systemd readiness and watchdog.
//! - [`run`]: wires it all together and runs until the shutdown future fires.
//!
//! Start reading at [`run`], then [`events::Event`].

pub mod channel;
pub mod config;
pub mod events;
pub mod grpc;
pub mod links;
pub mod rollcall;
pub mod roster;
pub mod sdnotify;
pub mod station;
pub mod storage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use config::Config;
use events::{Bus, Event};

/// Runs the daemon until `shutdown` completes, then drains every task with
/// the configured grace time. Returns an error only for start-up failures
/// (storage, binding the gRPC port).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let cancel = CancellationToken::new();
    let mut tasks = Tasks::default();

    std::fs::create_dir_all(&config.daemon.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data_dir {}: {e}",
            config.daemon.data_dir.display()
        )
    })?;
    let db_path = config
        .storage
        .database
        .clone()
        .unwrap_or_else(|| config.daemon.data_dir.join("rollcalld.sqlite"));
    let (storage, storage_thread) = storage::open(&db_path)?;
    tracing::info!(path = %db_path.display(), "storage open");

    let (bus, bus_task) = Bus::spawn(storage.clone(), cancel.child_token());
    let station = station::Station::new(&config.daemon.station_id, &config.daemon.time_zone);

    // Links.
    if config.links.is_empty() {
        tracing::warn!("no links configured: the daemon serves the API but hears no radio");
    }
    let mut running_links = Vec::new();
    for link in &config.links {
        match links::spawn_link(link, &station, &bus, None, cancel.child_token()) {
            Ok(running) => {
                tasks.add(format!("link {}", link.id), running.task);
                running_links.push(running.handle);
            }
            Err(e) => {
                station.add_link(&link.id, &link.kind);
                station.set_link_state(&link.id, station::LinkState::Down, &e);
                tracing::error!(link = %link.id, error = %e, "link not started");
            }
        }
    }

    // --- roll calls (rollcall branch) ---
    // Roster from SQLite (seeded by the config), then the roll-call service:
    // it recovers unfinished runs and starts the scheduler. TODO(lead): pass
    // the channel registry as the transmitter, the DMR radio check, and hand
    // `roster_store` / `rollcall` to the gRPC context.
    let roster_store = roster::RosterStore::open(storage.clone(), &config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the roster: {e}"))?;
    let rollcall = rollcall::RollcallService::start(
        &config,
        rollcall::Deps {
            storage: storage.clone(),
            bus: bus.clone(),
            roster: roster_store.roster(),
            transmitter: Arc::new(rollcall::UnwiredTransmitter),
            radio_check: None,
            clock: Arc::new(rollcall::SystemClock),
        },
        cancel.child_token(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start roll calls: {e}"))?;
    {
        let rollcall = rollcall.clone();
        tasks.add(
            "rollcall".into(),
            tokio::spawn(async move { rollcall.stopped().await }),
        );
    }
    // --- end roll calls ---

    // gRPC: bind first so a taken port fails start-up before READY.
    let listener = tokio::net::TcpListener::bind(config.grpc.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind gRPC listener {}: {e}", config.grpc.listen))?;
    let grpc_addr = listener.local_addr()?;
    std::fs::write(
        config.daemon.data_dir.join("grpc.addr"),
        grpc_addr.to_string(),
    )?;
    tracing::info!(addr = %grpc_addr, "gRPC listening");
    let cx = grpc::ApiContext {
        config: config.clone(),
        station: station.clone(),
    };
    let grpc_cancel = cancel.child_token();
    tasks.add(
        "grpc".into(),
        tokio::spawn(async move {
            if let Err(e) = grpc::serve(listener, cx, grpc_cancel).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        }),
    );

    if let Some(interval) = sdnotify::watchdog_interval() {
        tasks.add(
            "watchdog".into(),
            tokio::spawn(sdnotify::watchdog(interval, cancel.child_token())),
        );
    }

    bus.publish(Event::DaemonStarted {
        version: env!("CARGO_PKG_VERSION").into(),
        station_id: config.daemon.station_id.clone(),
    });
    sdnotify::ready();
    tracing::info!(station = %config.daemon.station_id, "rollcalld ready");

    shutdown.await;

    tracing::info!("shutting down");
    sdnotify::stopping();
    bus.publish(Event::DaemonStopping);
    // Unkey every transmitter before the drivers stop (drivers also release
    // PTT when cancelled; this covers a driver that is mid-reconnect).
    for handle in &running_links {
        handle.ptt(false);
    }
    cancel.cancel();
    let grace = Duration::from_millis(config.daemon.shutdown_grace_ms);
    tasks.drain(grace).await;
    if tokio::time::timeout(grace, bus_task).await.is_err() {
        tracing::warn!("event bus did not drain within the grace time");
    } else {
        tracing::info!(task = "event bus", "stopped");
    }
    // Roll calls hold storage handles too; release them so the storage
    // thread can finish.
    drop(rollcall);
    drop(roster_store);
    drop(storage);
    drop(bus);
    // The storage thread finishes queued writes, checkpoints and exits.
    let _ = tokio::task::spawn_blocking(move || storage_thread.join()).await;
    tracing::info!("rollcalld stopped");
    Ok(())
}

/// Named tasks, drained together at shutdown.
#[derive(Default)]
struct Tasks {
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
}

impl Tasks {
    fn add(&mut self, name: String, task: tokio::task::JoinHandle<()>) {
        self.tasks.push((name, task));
    }

    /// Waits for every task against one shared deadline (so the total wait
    /// is at most `grace`), logging each one; stragglers are aborted.
    async fn drain(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        for (name, task) in self.tasks {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(())) => tracing::info!(task = %name, "stopped"),
                Ok(Err(e)) => tracing::error!(task = %name, error = %e, "task failed"),
                Err(_) => {
                    tracing::warn!(task = %name, ?grace, "did not stop within the grace time; aborted");
                    abort.abort();
                }
            }
        }
    }
}
