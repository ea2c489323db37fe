//! The generated gRPC types for `sessionbridge.v1`.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("sessionbridge.v1");

/// The encoded `FileDescriptorSet` of the API, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sessionbridge_descriptor.bin"));
