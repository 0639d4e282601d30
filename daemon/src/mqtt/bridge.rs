//! The tasks around rumqttc.
//!
//! - **poll**: owns the `EventLoop`; the only place that awaits the network.
//!   At each ConnAck it drops rumqttc's own replay queue, republishes status
//!   and link state, subscribes, and wakes the feeder to re-send the outbox.
//!   It maps each outgoing publish to its outbox row by order and each
//!   PubAck back to the row by packet id (`pkid.rs`, pure).
//! - **feeder**: turns bus events into messages; durable ones are written to
//!   the outbox (with the cursor) before they are handed to rumqttc; sweeps
//!   the outbox for rows not yet handed over on this connection.
//! - **deleter**: deletes acknowledged rows in batches.
//! - **acker**: PUBACKs inbound messages in the order they came (manual
//!   acks): a roll-call answer only once its event is committed, an alert
//!   ack once it is stored, so a crash between the two leaves the message
//!   with the broker, which redelivers it to the next life of the daemon's
//!   persistent session.
//!
//! Nothing here awaits a publish: `try_publish` either queues the request or
//! fails, and a row that was not queued stays in the outbox for the next
//! sweep.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::pkid::PkidMap;
use super::schema::{self, Inbound, InboundError, OutMsg};
use super::{outbox, Settings};
use crate::alerts::{AlertService, NewAlert};
use crate::events::{self, Bus, Event, Numbered};
use crate::roster::Roster;
use crate::storage::{now_ms, Storage};

/// rumqttc request channel capacity. When full, rows wait in the outbox.
const REQUEST_CAPACITY: usize = 4096;
/// Largest packet either way; bigger outbound messages are refused at
/// enqueue (a packet rumqttc cannot send would wedge the connection).
const MAX_PACKET: usize = 1024 * 1024;
const SWEEP_EVERY: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// State shared by the poll task and the feeder.
///
/// **Invariant:** every publish goes through [`Shared::send`] under the
/// lock, never `client.try_publish` directly: `pkids` must see exactly one
/// entry per publish request, in channel order, or PubAcks would be matched
/// to the wrong outbox rows.
#[derive(Default)]
struct Shared {
    connected: bool,
    /// Counts ConnAcks: a PUBACK is only sent on the connection its
    /// message came in on (packet ids belong to a connection).
    connection: u64,
    /// Requests handed to rumqttc on this connection → packet ids → rows.
    pkids: PkidMap,
    /// Rows handed to rumqttc on this connection (or acked, awaiting delete).
    sent: HashSet<i64>,
    /// Latest retained link state payloads, republished at each ConnAck.
    links: BTreeMap<String, Vec<u8>>,
}

impl Shared {
    /// Hands one message to rumqttc if connected; records it in `pkids`.
    fn send(
        &mut self,
        client: &AsyncClient,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        row: Option<i64>,
    ) -> bool {
        if !self.connected {
            return false;
        }
        match client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                self.pkids.queued(row);
                if let Some(r) = row {
                    self.sent.insert(r);
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, topic, "MQTT request channel full; message waits");
                false
            }
        }
    }

    fn reset(&mut self, connected: bool) {
        self.connected = connected;
        if connected {
            self.connection += 1;
        }
        self.pkids.reset();
        self.sent.clear();
    }
}

struct Cx {
    settings: Settings,
    storage: Storage,
    bus: Bus,
    roster: Roster,
    alerts: Option<AlertService>,
    client: AsyncClient,
    shared: Mutex<Shared>,
    sweep_now: Notify,
    acks: mpsc::UnboundedSender<PendingAck>,
}

/// An inbound QoS 1 message to PUBACK once `stored` resolves (at once when
/// `None`), if its connection is still the current one.
struct PendingAck {
    connection: u64,
    publish: rumqttc::Publish,
    stored: Option<oneshot::Receiver<()>>,
}

impl Cx {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts the bridge. Subscribes to the bus at once, so call it before the
/// events you want published happen. The returned task ends after `cancel`,
/// having published a retained `offline` status if connected.
pub fn spawn(
    settings: Settings,
    storage: Storage,
    bus: Bus,
    roster: Roster,
    alerts: Option<AlertService>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let topics = &settings.topics;
    let mut opts = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    opts.set_keep_alive(settings.keepalive)
        .set_clean_session(false)
        // PUBACK only what is safe (see `ack_in_order`).
        .set_manual_acks(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            topics.status(),
            schema::status(topics, false, &settings.version),
            QoS::AtLeastOnce,
            true,
        ));
    if let Some((u, p)) = &settings.credentials {
        opts.set_credentials(u, p);
    }
    if let Some(config) = &settings.tls {
        super::tls::apply(&mut opts, config.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, REQUEST_CAPACITY);
    eventloop.network_options.set_connection_timeout(5);
    let bus_rx = bus.subscribe();
    let (acks, acks_rx) = mpsc::unbounded_channel();
    let cx = Arc::new(Cx {
        settings,
        storage,
        bus,
        roster,
        alerts,
        client,
        shared: Mutex::new(Shared::default()),
        sweep_now: Notify::new(),
        acks,
    });
    let (del_tx, del_rx) = mpsc::unbounded_channel();
    let feeder = tokio::spawn(feed(cx.clone(), bus_rx, cancel.clone()));
    let deleter = tokio::spawn(delete_acked(cx.clone(), del_rx));
    let acker = tokio::spawn(ack_in_order(cx.clone(), acks_rx, cancel.clone()));
    tokio::spawn(async move {
        poll(&cx, &mut eventloop, del_tx, cancel).await;
        let _ = feeder.await;
        let _ = deleter.await;
        let _ = acker.await;
        tracing::info!("MQTT bridge stopped");
    })
}

async fn poll(
    cx: &Arc<Cx>,
    eventloop: &mut rumqttc::EventLoop,
    del_tx: mpsc::UnboundedSender<i64>,
    cancel: CancellationToken,
) {
    let topics = &cx.settings.topics;
    let mut backoff = BACKOFF_MIN;
    loop {
        let ev = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                // The outbox is the source of truth: drop rumqttc's replay.
                eventloop.pending.clear();
                backoff = BACKOFF_MIN;
                tracing::info!(broker = %format!("{}:{}", cx.settings.host, cx.settings.port),
                    session_present = ack.session_present, "MQTT connected");
                {
                    let mut sh = cx.lock();
                    sh.reset(true);
                    let status = schema::status(topics, true, &cx.settings.version);
                    sh.send(
                        &cx.client,
                        &topics.status(),
                        QoS::AtLeastOnce,
                        true,
                        status,
                        None,
                    );
                    let links: Vec<(String, Vec<u8>)> = sh
                        .links
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for (link, payload) in links {
                        sh.send(
                            &cx.client,
                            &topics.link(&link),
                            QoS::AtLeastOnce,
                            true,
                            payload,
                            None,
                        );
                    }
                }
                let mut filters = vec![rumqttc::SubscribeFilter::new(
                    topics.ack_filter(),
                    QoS::AtLeastOnce,
                )];
                if cx.settings.commands {
                    filters.push(rumqttc::SubscribeFilter::new(
                        topics.cmd_filter(),
                        QoS::AtLeastOnce,
                    ));
                }
                if let Err(e) = cx.client.try_subscribe_many(filters) {
                    tracing::warn!(error = %e, "MQTT subscribe not queued");
                }
                cx.sweep_now.notify_one();
            }
            Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid))) => cx.lock().pkids.outgoing(pkid),
            Ok(MqttEvent::Outgoing(Outgoing::AwaitAck(pkid))) => cx.lock().pkids.await_ack(pkid),
            Ok(MqttEvent::Incoming(Packet::PubAck(ack))) => {
                if let Some(row) = cx.lock().pkids.puback(ack.pkid) {
                    let _ = del_tx.send(row);
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let stored = inbound(cx, &p);
                if p.qos != QoS::AtMostOnce {
                    let connection = cx.lock().connection;
                    let _ = cx.acks.send(PendingAck {
                        connection,
                        publish: p,
                        stored,
                    });
                }
            }
            Ok(_) => {}
            Err(e) => {
                let was = {
                    let mut sh = cx.lock();
                    let was = sh.connected;
                    sh.reset(false);
                    was
                };
                // Requests that entered the channel after rumqttc's own
                // clean-up: move them to `pending`, dropped at ConnAck, so
                // `pkids` and the requests stay in step.
                eventloop.clean();
                if was {
                    tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                } else {
                    tracing::warn!(error = %e, retry_in = ?backoff, "MQTT broker unreachable");
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    // Clean stop: the broker does not send the will on DISCONNECT, so say
    // offline ourselves, then let the queued requests drain briefly.
    let connected = {
        let mut sh = cx.lock();
        let status = schema::status(topics, false, &cx.settings.version);
        let ok = sh.send(
            &cx.client,
            &topics.status(),
            QoS::AtLeastOnce,
            true,
            status,
            None,
        );
        ok && cx.client.try_disconnect().is_ok()
    };
    if connected {
        let drain = async {
            while let Ok(ev) = eventloop.poll().await {
                if let MqttEvent::Outgoing(Outgoing::Disconnect) = ev {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
    }
}

/// Validates an inbound message and hands it on; refusals become
/// `Event::Error { source: topic }`. Never blocks. Returns what its PUBACK
/// must wait for: a roll-call answer's event being committed, an alert ack
/// being stored.
fn inbound(cx: &Arc<Cx>, p: &rumqttc::Publish) -> Option<oneshot::Receiver<()>> {
    let topic = p.topic.as_str();
    let error = |message: String| {
        tracing::warn!(topic, %message, "inbound MQTT message refused");
        cx.bus.publish(Event::Error {
            source: topic.to_owned(),
            message,
        });
        None
    };
    if p.retain {
        return error("retained messages are not accepted on request topics".into());
    }
    let roster = cx.roster.snapshot();
    let topics = &cx.settings.topics;
    match schema::parse_inbound(topics, topic, &p.payload, &roster, cx.settings.commands) {
        Ok(Inbound::RollcallAck {
            guard,
            app_id,
            run_id,
        }) => {
            tracing::debug!(%guard, run_id, "roll-call answer from app");
            // Stored events are what a resumed run reads back (see
            // `RollcallService::recover_runs`): once committed, the answer
            // survives a crash, so only then may the broker forget it.
            Some(cx.bus.publish_stored(Event::AppAck {
                app_id,
                ref_id: format!("rollcall-{run_id}"),
                ts_ms: crate::storage::now_ms(),
            }))
        }
        Ok(Inbound::Ack { guard, alert_id }) => match &cx.alerts {
            Some(a) => Some(a.submit_app_ack(alert_id, &guard, topic)),
            None => error("alerts are not running".into()),
        },
        Ok(Inbound::CreateAlert {
            text,
            priority,
            target,
            deadline,
        }) => {
            let Some(alerts) = cx.alerts.clone() else {
                return error("alerts are not running".into());
            };
            let (cx, topic) = (cx.clone(), topic.to_owned());
            let result_topic = topics.cmd_result();
            tokio::spawn(async move {
                let r = alerts
                    .create(NewAlert {
                        text,
                        priority,
                        target,
                        clip: None,
                        deadline,
                        created_by: "mqtt:cmd".into(),
                    })
                    .await;
                let reply = match &r {
                    Ok(info) => serde_json::json!({
                        "v": schema::VERSION, "request": "alert", "ok": true, "alert_id": info.id,
                    }),
                    Err(e) => {
                        cx.bus.publish(Event::Error {
                            source: topic.clone(),
                            message: e.to_string(),
                        });
                        serde_json::json!({
                            "v": schema::VERSION, "request": "alert", "ok": false, "error": e.to_string(),
                        })
                    }
                };
                // Best effort, QoS 0: the outcome is also an event. Through
                // `Shared::send` like every publish, to keep `pkids` in step.
                cx.lock().send(
                    &cx.client,
                    &result_topic,
                    QoS::AtMostOnce,
                    false,
                    reply.to_string().into_bytes(),
                    None,
                );
            });
            None
        }
        Err(InboundError::UnknownTopic) if topic == topics.cmd_result() => None,
        Err(e) => error(e.to_string()),
    }
}

/// Sends each inbound message's PUBACK in arrival order (MQTT 3.1.1 4.6),
/// each once what it waits for is done. An answer that could not be stored
/// is not acknowledged: the broker redelivers it at the next connection.
async fn ack_in_order(
    cx: Arc<Cx>,
    mut rx: mpsc::UnboundedReceiver<PendingAck>,
    cancel: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            n = rx.recv() => n,
        };
        let Some(ack) = next else { break };
        if let Some(stored) = ack.stored {
            let stored = tokio::select! {
                _ = cancel.cancelled() => break,
                r = stored => r,
            };
            if stored.is_err() {
                tracing::warn!(topic = %ack.publish.topic, "inbound message not stored; not acknowledged, the broker will redeliver it");
                continue;
            }
        }
        // A message of an earlier connection is redelivered on this one.
        let current = {
            let sh = cx.lock();
            sh.connected && sh.connection == ack.connection
        };
        if current {
            if let Err(e) = cx.client.ack(&ack.publish).await {
                tracing::debug!(error = %e, "PUBACK not queued; the broker will redeliver");
            }
        }
    }
}

/// Bus events → messages; durable ones through the outbox.
async fn feed(
    cx: Arc<Cx>,
    mut bus_rx: broadcast::Receiver<Arc<Numbered>>,
    cancel: CancellationToken,
) {
    let mut cursor = match cx.storage.call(outbox::cursor).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the MQTT outbox cursor; bridge not started");
            return;
        }
    };
    catch_up(&cx, &mut cursor).await;
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                // Events published during shutdown are stored on the bus;
                // they reach MQTT from the cursor at the next start.
                break;
            }
            r = bus_rx.recv() => match r {
                Ok(first) => {
                    // Take what else is already queued and store it in one
                    // transaction: one fsync per burst, not per event, or a
                    // 10,000-guard roll call outruns the storage thread.
                    let mut batch = vec![first];
                    let mut lagged = false;
                    while batch.len() < FEED_BATCH {
                        match bus_rx.try_recv() {
                            Ok(n) => batch.push(n),
                            Err(broadcast::error::TryRecvError::Lagged(k)) => {
                                tracing::warn!(missed = k, "MQTT bridge lagged; catching up from storage");
                                lagged = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let mut durable = Vec::new();
                    let mut last = cursor;
                    for n in &batch {
                        let json = serde_json::to_value(&n.event).unwrap_or_default();
                        let msgs = schema::outbound(&cx.settings.topics, n.seq, n.ts_ms, &json);
                        publish_now(&cx, &msgs);
                        if n.seq > last {
                            last = n.seq;
                            durable.extend(msgs);
                        }
                    }
                    if last > cursor && enqueue(&cx, last, &durable).await {
                        cursor = last;
                    }
                    if lagged {
                        catch_up(&cx, &mut cursor).await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(k)) => {
                    tracing::warn!(missed = k, "MQTT bridge lagged; catching up from storage");
                    catch_up(&cx, &mut cursor).await;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = sweep.tick() => resend(&cx).await,
            _ = cx.sweep_now.notified() => resend(&cx).await,
        }
    }
}

/// Bus events stored in one outbox transaction at most.
const FEED_BATCH: usize = 512;

/// Non-durable messages: `events` (QoS 0) and retained link state.
fn publish_now(cx: &Cx, msgs: &[OutMsg]) {
    let mut sh = cx.lock();
    for m in msgs.iter().filter(|m| !m.durable) {
        if m.retain {
            if let Some(link) = m.topic.rsplit('/').next() {
                sh.links.insert(link.to_owned(), m.payload.clone());
            }
            sh.send(
                &cx.client,
                &m.topic,
                QoS::AtLeastOnce,
                true,
                m.payload.clone(),
                None,
            );
        } else {
            sh.send(
                &cx.client,
                &m.topic,
                QoS::AtMostOnce,
                false,
                m.payload.clone(),
                None,
            );
        }
    }
}

/// Stores the durable messages of event `seq` and hands them over. Returns
/// false if storage failed (the cursor then stays, and the next start
/// retries from the event log).
async fn enqueue(cx: &Cx, seq: i64, msgs: &[OutMsg]) -> bool {
    let rows: Vec<(String, String, Vec<u8>)> = msgs
        .iter()
        .filter(|m| m.durable)
        .filter(|m| {
            let fits = m.payload.len() + m.topic.len() + 16 < MAX_PACKET;
            if !fits {
                tracing::error!(topic = %m.topic, bytes = m.payload.len(), "message too large for MQTT; dropped");
            }
            fits
        })
        .map(|m| (m.msg_id.clone(), m.topic.clone(), m.payload.clone()))
        .collect();
    if rows.is_empty() {
        return true;
    }
    let now = now_ms();
    match cx
        .storage
        .call(move |c| outbox::enqueue(c, seq, &rows, now))
        .await
    {
        Ok(rows) => {
            let mut sh = cx.lock();
            for r in rows {
                if !sh.sent.contains(&r.id)
                    && !sh.send(
                        &cx.client,
                        &r.topic,
                        QoS::AtLeastOnce,
                        false,
                        r.payload,
                        Some(r.id),
                    )
                {
                    break;
                }
            }
            true
        }
        Err(e) => {
            tracing::error!(seq, error = %e, "cannot queue MQTT messages");
            false
        }
    }
}

/// Re-reads stored events after the cursor (start-up, or after lagging) and
/// queues their durable messages.
async fn catch_up(cx: &Cx, cursor: &mut i64) {
    loop {
        let batch = match events::read_after(&cx.storage, *cursor, 500).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the event log for MQTT");
                return;
            }
        };
        let Some(last) = batch.last().map(|b| b.0) else {
            return;
        };
        for (seq, ts_ms, kind, body) in batch {
            if !(kind.starts_with("rollcall_") || kind.starts_with("alert_")) {
                continue;
            }
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let msgs = schema::outbound(&cx.settings.topics, seq, ts_ms, &json);
            if !enqueue(cx, seq, &msgs).await {
                return;
            }
        }
        *cursor = last;
    }
}

/// Hands over every outbox row not yet handed over on this connection.
async fn resend(cx: &Cx) {
    if !cx.lock().connected {
        return;
    }
    let mut after = 0;
    loop {
        let rows = match cx
            .storage
            .call(move |c| outbox::pending(c, after, 500))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the MQTT outbox");
                return;
            }
        };
        let Some(last) = rows.last().map(|r| r.id) else {
            return;
        };
        let mut sh = cx.lock();
        for r in rows {
            if sh.sent.contains(&r.id) {
                continue;
            }
            if !sh.send(
                &cx.client,
                &r.topic,
                QoS::AtLeastOnce,
                false,
                r.payload,
                Some(r.id),
            ) {
                return;
            }
        }
        drop(sh);
        after = last;
    }
}

/// Deletes acknowledged rows in batches (one transaction each).
async fn delete_acked(cx: Arc<Cx>, mut rx: mpsc::UnboundedReceiver<i64>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let ids = std::mem::take(&mut batch);
        let ids2 = ids.clone();
        match cx.storage.call(move |c| outbox::delete(c, &ids2)).await {
            Ok(()) => {
                let mut sh = cx.lock();
                for id in ids {
                    sh.sent.remove(&id);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot delete delivered MQTT messages"),
        }
    }
}
