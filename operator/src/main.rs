//! `medledger-operator`: see `runtime` for the wiring and docs/operator.md for the design.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser;

#[tokio::main]
async fn main() {
    let args = medledger_operator::runtime::Args::parse();
    let result = medledger_operator::runtime::run(args)
        .await
        .context("medledger-operator stopped");
    if let Err(e) = result {
        // One line, causes included: what went wrong and what to do is in the messages.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
