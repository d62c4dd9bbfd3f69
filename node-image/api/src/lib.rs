//! Formats shared by both halves of medledger: the node and the operator.
//!
//! - [`pb`]: the protobuf messages and the tonic client/server of the ledger API.
//! - [`crypto`]: the consortium's crypto suite (Ed25519 + SHA-256, or SM2 + SM3).
//! - [`keys`]: key files and their generation.
//! - [`genesis`]: the genesis document, derived deterministically from a member list.
//! - [`tx`] and [`block`]: building, hashing and checking transactions and blocks.
#![forbid(unsafe_code)]

pub mod block;
pub mod config;
pub mod crypto;
pub mod emr;
pub mod genesis;
pub mod keys;
pub mod policy;
pub mod tx;

/// Generated protobuf and gRPC code (built from `proto/` by `build.rs`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("medledger.v1");
}
