//! The `medledger` command line.

pub mod bench;
pub mod bench_cipher;
pub mod client;
pub mod commands;
pub mod demo;
pub mod etcd;
