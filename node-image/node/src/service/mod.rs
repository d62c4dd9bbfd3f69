//! The node's gRPC services: the client API, the peer API and the submission batcher.

pub mod emr_api;
pub mod ledger_api;
pub mod peer_api;
pub mod submit;
