//! The ledger proper: chain context, proposals, deterministic execution and chain checks.
//! Nothing here does I/O, so the same code runs in the node, in replays and in tests.

pub mod batch;
pub mod chain;
pub mod execute;
#[cfg(test)]
pub(crate) mod test_chain;
pub mod verify;

pub use batch::{Batch, BatchOutcome};
pub use chain::ChainCtx;
