//! The gRPC server: the `rollcall.v1` services plus the standard
//! `grpc.health.v1.Health` and server reflection, on one listener.
//!
//! Only this module (and `rollcallctl`) see prost types; services convert to
//! and from the daemon's own types at this boundary.

mod alert;
pub mod audio;
pub mod auth;
mod events;
mod recording;
mod rollcall;
mod station;

use std::sync::Arc;

use rollcall_proto::v1::alert_service_server::AlertServiceServer;
use rollcall_proto::v1::audio_service_server::AudioServiceServer;
use rollcall_proto::v1::event_service_server::EventServiceServer;
use rollcall_proto::v1::recording_service_server::RecordingServiceServer;
use rollcall_proto::v1::roll_call_service_server::RollCallServiceServer;
use rollcall_proto::v1::roster_service_server::RosterServiceServer;
use rollcall_proto::v1::station_service_server::StationServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::station::Station;

/// Everything the services need, shared.
#[derive(Clone)]
pub struct ApiContext {
    pub config: Arc<Config>,
    pub station: Station,
    pub channels: Arc<crate::channel::Channels>,
    pub patches: crate::channel::crosspatch::CrossPatches,
    pub storage: crate::storage::Storage,
    pub bus: crate::events::Bus,
    pub roster: crate::roster::Roster,
    /// Fires at shutdown: streams end, Talk releases PTT.
    pub cancel: CancellationToken,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub alerts: Option<crate::alerts::AlertService>,
    pub rollcall: Option<crate::rollcall::RollcallService>,
    pub roster_store: Option<crate::roster::RosterStore>,
}

/// Serves until `cancel` fires. The listener is bound by the caller so that
/// bind errors surface before readiness is reported.
pub async fn serve(
    listener: TcpListener,
    cx: ApiContext,
    cancel: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<StationServiceServer<station::StationApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rollcall_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    // Many tools still speak only v1alpha (grpcio-reflection, older grpcurl
    // and Postman); the auth layer already lets both through.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rollcall_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid");
    // Small receive limits for control calls; Talk frames are 320 bytes.
    const CONTROL_LIMIT: usize = 64 * 1024;
    let station = StationServiceServer::new(station::StationApi { cx: cx.clone() })
        .max_decoding_message_size(CONTROL_LIMIT);
    let events = EventServiceServer::new(events::EventsApi { cx: cx.clone() })
        .max_decoding_message_size(CONTROL_LIMIT);
    let audio = AudioServiceServer::new(audio::AudioApi { cx: cx.clone() })
        .max_decoding_message_size(CONTROL_LIMIT);
    let recording = RecordingServiceServer::new(recording::RecordingApi { cx: cx.clone() })
        .max_decoding_message_size(CONTROL_LIMIT);
    let alert = AlertServiceServer::new(alert::AlertApi { cx: cx.clone() })
        .max_decoding_message_size(CONTROL_LIMIT);
    let rollcall = RollCallServiceServer::new(rollcall::RollcallApi { cx: cx.clone() })
        .max_decoding_message_size(CONTROL_LIMIT);
    let roster = RosterServiceServer::new(rollcall::RosterApi { cx: cx.clone() })
        .max_decoding_message_size(CONTROL_LIMIT);
    tonic::transport::Server::builder()
        .max_concurrent_streams(cx.config.grpc.max_streams_per_client)
        .layer(auth::AuthLayer::new(&cx.config.grpc).with_metrics(cx.metrics.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(station)
        .add_service(events)
        .add_service(audio)
        .add_service(recording)
        .add_service(alert)
        .add_service(rollcall)
        .add_service(roster)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), cancel.cancelled())
        .await
}
