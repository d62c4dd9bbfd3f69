//! The `medledger` command line.

pub mod bench;
pub mod client;
pub mod commands;
pub mod demo;
pub mod etcd;
