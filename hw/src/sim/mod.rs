//! Simulated base stations and guards, speaking the real wire formats.
//! Used by the `radiosim` binary, the demo config and the integration tests.

pub mod hotspot;
pub mod serial_radio;
pub mod station;
pub mod voice;

pub use station::{
    AniTransport, Behaviour, GuardConfig, SimError, SimRecord, Station, StationConfig,
    StationHandle,
};
