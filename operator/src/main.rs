//! `medledger-operator`: see `runtime` for the wiring and docs/operator.md for the design.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use clap::Parser;

/// jemalloc hands freed pages back after a few seconds: the operator's memory follows its
/// live objects rather than the peak of a burst of watch events.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
