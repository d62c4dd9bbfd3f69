//! Node-to-node transport: gRPC over mutual TLS, each side pinned to node keys.

pub mod peers;
pub mod tls;
