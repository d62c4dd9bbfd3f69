//! medledger-operator: deploys and runs a consortium of hospitals' EMR ledger, private IPFS
//! clusters and federated learning on Kubernetes.
#![forbid(unsafe_code)]

pub mod admin;
pub mod controllers;
pub mod crd;
pub mod keys;
pub mod lease;
pub mod metrics;
pub mod resources;
pub mod runtime;
pub mod telemetry;
