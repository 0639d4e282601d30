//! Simulated base stations and guards, speaking the real wire formats.
//! Used by the `radiosim` binary, the demo config and the integration tests.

pub mod hotspot;
pub mod serial_radio;
