//! The `rollcall.v1` gRPC API: generated prost messages and tonic services.
//!
//! The `.proto` files under `proto/rollcall/v1/` are the source of truth and
//! carry the API documentation. Only the daemon's gRPC module and `rollcallctl`
//! use these types; the daemon converts at that boundary.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("rollcall.v1");
}

/// Encoded `FileDescriptorSet` of every rollcall.v1 file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("rollcall_descriptor");
