//! rollcalld: the radio and roll-call gateway daemon.
//!
//! # Layout
//! - [`config`]: the TOML config, parsed and validated before anything binds.
//! - [`storage`]: the SQLite database on its own thread; migrations.
//! - [`events`]: the event bus — one `Event` enum, numbered, persisted, broadcast.
//! - [`evidence`]: links reply recordings to roll-call results, pins them.
//! - [`station`]: live link state shared with the API.
//! - [`roster`]: companies, guards, groups; lookups by ANI code and app id;
//!   persisted in SQLite, edited at run time with an audit trail.
//! - [`rollcall`]: schedules, the roll-call engine, results and reports.
//! - [`channel`]: channels, PTT arbitration (`TxSource`), the `Transmitter` trait.
//! - [`links`]: the link registry (config kinds → `rollcall_hw` drivers) and the
//!   per-link task.
//! - [`recorder`]: Ogg Opus file per transmission, index, crash repair, retention.
//! - [`alerts`]: alerts to guards, acknowledgement tracking, company rates.
//! - [`mqtt`]: the MQTT bridge (status, events, alerts out; acks in) and its
//!   persisted outbox.
//! - [`grpc`]: the tonic server (rollcall.v1, health, reflection).
//! - [`metrics`]: Prometheus counters and the `/metrics` listener.
//! - [`sdnotify`]: systemd readiness and watchdog.
//! - [`run`]: wires it all together and runs until the shutdown future fires.
//!
//! Start reading at [`run`], then [`events::Event`].

pub mod alerts;
pub mod channel;
pub mod config;
pub mod events;
pub mod evidence;
pub mod grpc;
pub mod links;
pub mod metrics;
pub mod mqtt;
pub mod recorder;
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
pub async fn run(mut config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.daemon.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data_dir {}: {e}",
            config.daemon.data_dir.display()
        )
    })?;
    // Absolute, normalised paths in logs and in the recordings index.
    if let Ok(abs) = std::fs::canonicalize(&config.daemon.data_dir) {
        config.daemon.data_dir = abs;
    }
    let config = Arc::new(config);
    let cancel = CancellationToken::new();
    let mut tasks = Tasks::default();
    let mut recorder_parts = None;

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
    let metrics = Arc::new(metrics::Metrics::default());
    tasks.add(
        "metrics counter".into(),
        metrics.spawn_event_counter(&bus, cancel.child_token()),
    );

    // The roster lives in SQLite (seeded by the config, edited through the
    // API); everyone shares its swappable snapshot.
    let roster_store = roster::RosterStore::open(storage.clone(), &config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the roster: {e}"))?;
    let roster = roster_store.roster();

    // Recorder: repair what a crash left open before anything new is written.
    let recorder = if config.recorder.enabled {
        match recorder::repair_incomplete(&storage).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(count = n, "repaired recordings left open by a crash"),
            Err(e) => tracing::error!(error = %e, "cannot repair open recordings"),
        }
        let dir = config
            .recorder
            .dir
            .clone()
            .unwrap_or_else(|| config.daemon.data_dir.join("recordings"));
        let (handle, thread, indexer) = recorder::Recorder {
            dir,
            bitrate: config.recorder.bitrate,
            complexity: config.recorder.complexity,
            min_free_bytes: (config.recorder.min_free_mb * 1024.0 * 1024.0) as u64,
        }
        .spawn(storage.clone(), bus.clone());
        recorder_parts = Some((thread, indexer));
        let policy = recorder::RetentionPolicy {
            max_age_days: config.recorder.retention_days,
            max_total_bytes: config.recorder.max_total_mb * 1024 * 1024,
        };
        let (st, rc) = (storage.clone(), cancel.child_token());
        tasks.add(
            "retention".into(),
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(600));
                loop {
                    tokio::select! {
                        _ = rc.cancelled() => break,
                        _ = every.tick() => {
                            if let Err(e) = recorder::enforce_retention(&st, policy, storage::now_ms()).await {
                                tracing::error!(error = %e, "retention failed");
                            }
                        }
                    }
                }
            }),
        );
        Some(handle)
    } else {
        None
    };

    // --- alerts and the MQTT bridge (issue 8) ---
    // Settings are checked before anything connects or binds. The bridge
    // starts before the links so their first up/down events reach MQTT.
    // Alerts transmit through the channels, which exist only after the
    // links; `late_tx` forwards to them once they are built.
    let late_tx = channel::LateTransmitter::default();
    let mqtt_settings = if config.mqtt.enabled {
        Some(mqtt::Settings::from_config(&config)?)
    } else {
        None
    };
    let (alert_service, alert_task) = alerts::start(
        &config,
        storage.clone(),
        bus.clone(),
        roster.clone(),
        Some(Arc::new(late_tx.clone()) as Arc<dyn channel::Transmitter>),
        cancel.child_token(),
    )
    .await?;
    tasks.add("alerts".into(), alert_task);
    if let Some(settings) = mqtt_settings {
        tracing::info!(broker = %config.mqtt.broker, prefix = %settings.topics.base, "MQTT bridge starting");
        tasks.add(
            "mqtt".into(),
            mqtt::spawn(
                settings,
                storage.clone(),
                bus.clone(),
                roster.clone(),
                Some(alert_service.clone()),
                cancel.child_token(),
            ),
        );
    }
    // --- end alerts and MQTT ---

    // Links, then the channels that own them.
    if config.links.is_empty() {
        tracing::warn!("no links configured: the daemon serves the API but hears no radio");
    }
    let sims = std::sync::Mutex::new(Vec::new());
    let radio_checks = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let build = links::BuildContext {
        config: &config,
        cancel: cancel.child_token(),
        sims: &sims,
        radio_checks: &radio_checks,
    };
    let mut running_links = Vec::new();
    let mut channel_inputs = std::collections::HashMap::new();
    for ch in &config.channels {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        channel_inputs.insert(ch.id.clone(), (tx, Some(rx)));
    }
    let mut link_handles = std::collections::HashMap::new();
    for link in &config.links {
        let feed = config
            .channels
            .iter()
            .find(|c| c.links.contains(&link.id))
            .map(|c| channel_inputs[&c.id].0.clone());
        let counters = metrics.link(&link.id);
        match links::spawn_link(
            link,
            &build,
            &station,
            &bus,
            feed,
            counters,
            cancel.child_token(),
        ) {
            Ok(running) => {
                tasks.add(format!("link {}", link.id), running.task);
                link_handles.insert(link.id.clone(), running.handle.clone());
                running_links.push(running.handle);
            }
            Err(e) => {
                station.add_link(&link.id, &link.kind);
                station.set_link_state(&link.id, station::LinkState::Down, &e);
                tracing::error!(link = %link.id, error = %e, "link not started");
            }
        }
    }
    let mut channels = channel::Channels::default();
    for ch in &config.channels {
        let handles: Vec<_> = ch
            .links
            .iter()
            .filter_map(|l| link_handles.get(l).cloned())
            .collect();
        let (task, handle, requests) = channel::task::ChannelTask::new(
            ch,
            handles,
            bus.clone(),
            roster.clone(),
            recorder.clone(),
            metrics.clone(),
        );
        let events = channel_inputs
            .get_mut(&ch.id)
            .and_then(|(_, rx)| rx.take())
            .expect("one receiver per channel");
        tasks.add(
            format!("channel {}", ch.id),
            tokio::spawn(task.run(events, requests, cancel.child_token())),
        );
        channels.by_id.insert(ch.id.clone(), handle);
    }
    drop(channel_inputs);
    let channels = Arc::new(channels);
    late_tx.set(channels.clone());

    // --- roll calls (rollcall branch) ---
    // Recovers unfinished runs, then starts the scheduler. DMR guards are
    // radio-checked through the channel's `dmr` links.
    let rollcall = rollcall::RollcallService::start(
        &config,
        rollcall::Deps {
            storage: storage.clone(),
            bus: bus.clone(),
            roster: roster.clone(),
            transmitter: channels.clone(),
            radio_check: Some(Arc::new(links::DmrRadioChecks {
                by_channel: config
                    .channels
                    .iter()
                    .map(|c| {
                        let checks = radio_checks.lock().unwrap_or_else(|p| p.into_inner());
                        let v = c
                            .links
                            .iter()
                            .filter_map(|l| checks.get(l).cloned())
                            .collect();
                        (c.id.clone(), v)
                    })
                    .collect(),
            }) as Arc<dyn rollcall::RadioCheck>),
            clock: Arc::new(rollcall::SystemClock),
        },
        cancel.child_token(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start roll calls: {e}"))?;
    {
        tasks.add(
            "evidence".into(),
            evidence::spawn(
                &bus,
                storage.clone(),
                rollcall.clone(),
                cancel.child_token(),
            ),
        );
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
    if let Some(addr) = config.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind metrics listener {addr}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics listening");
        tasks.add(
            "metrics".into(),
            tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                station.clone(),
                cancel.child_token(),
            )),
        );
    }
    let cx = grpc::ApiContext {
        config: config.clone(),
        station: station.clone(),
        channels: channels.clone(),
        patches: channel::crosspatch::CrossPatches::default(),
        storage: storage.clone(),
        bus: bus.clone(),
        roster: roster.clone(),
        cancel: cancel.child_token(),
        metrics: metrics.clone(),
        alerts: Some(alert_service.clone()),
        rollcall: Some(rollcall.clone()),
        roster_store: Some(roster_store.clone()),
    };
    let grpc_cancel = cancel.child_token();
    let grpc_grace = Duration::from_millis(config.daemon.shutdown_grace_ms / 2);
    tasks.add(
        "grpc".into(),
        tokio::spawn(async move {
            let stopping = grpc_cancel.clone();
            tokio::select! {
                r = grpc::serve(listener, cx, grpc_cancel) => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "gRPC server failed");
                    }
                }
                // Graceful shutdown waits for clients to hang up; a client
                // that never does (hung, or unpolled) must not hold the
                // daemon, so connections still open after half the grace
                // time are dropped.
                _ = async { stopping.cancelled().await; tokio::time::sleep(grpc_grace).await } => {
                    tracing::warn!("closing gRPC connections that did not hang up");
                }
            }
        }),
    );

    if let Some(interval) = sdnotify::watchdog_interval() {
        // A ping must prove the daemon works, not only that a timer fires:
        // the storage thread answers a query and every channel task its
        // state (a stuck SQLite call or channel loop stops the pings).
        let probe_storage = storage.clone();
        let probe_channels: Vec<_> = channels.by_id.values().cloned().collect();
        let probe = move || {
            let storage = probe_storage.clone();
            let channels = probe_channels.clone();
            async move {
                storage
                    .call(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
                    .await
                    .map_err(|e| format!("storage: {e}"))?;
                for ch in &channels {
                    if ch.state().await == "stopped" {
                        return Err(format!("channel {} has stopped", ch.id));
                    }
                }
                Ok(())
            }
        };
        tasks.add(
            "watchdog".into(),
            tokio::spawn(sdnotify::watchdog(interval, probe, cancel.child_token())),
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
    // Channels have stopped: close the recordings they left open.
    drop(recorder);
    if let Some((thread, indexer)) = recorder_parts {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        if tokio::time::timeout(grace, indexer).await.is_err() {
            tracing::warn!("recorder index did not drain within the grace time");
        }
    }
    let sims = sims.into_inner().unwrap_or_else(|p| p.into_inner());
    for sim in sims {
        let _ = tokio::time::timeout(grace, sim.join()).await;
    }
    storage.close();
    drop(storage);
    drop(bus);
    // Holds a storage handle: must go before the storage thread is joined.
    drop(alert_service);
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
