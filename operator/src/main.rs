//! `medledger-operator`: see `runtime` for the wiring and docs/operator.md for the design.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    medledger_operator::runtime::run(medledger_operator::runtime::Args::parse()).await
}
