//! The `medledger` command line.

pub mod bench;
pub mod bench_cipher;
pub mod bench_emr;
pub mod client;
pub mod commands;
pub mod demo;
pub mod demo_emr;
pub mod emr_client;
pub mod emr_cmd;
pub mod etcd;
