//! medledger: the consortium ledger node, its client and its tools.
#![forbid(unsafe_code)]

pub mod admin;
pub mod backfill;
pub mod blob;
pub mod cli;
pub mod contracts;
pub mod envelope;
pub mod ledger;
pub mod local;
pub mod loopback;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod service;
pub mod store;
pub mod transport;
