//! A proposal: the unit the leader replicates through Raft. Each committed batch becomes
//! exactly one block when applied.

use super::ChainCtx;
use medledger_api::block::{proposal_digest, tx_root};
use medledger_api::crypto::Hash;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Batch {
    pub proposer: u64,
    pub timestamp_ms: i64,
    /// Encoded `Transaction`s exactly as clients submitted them.
    pub txs: Vec<Vec<u8>>,
    /// The proposer's Ed25519 signature over the proposal digest.
    pub proposer_sig: Vec<u8>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Batch(proposer {}, {} txs)",
            self.proposer,
            self.txs.len()
        )
    }
}

impl Batch {
    pub fn sign(
        ctx: &ChainCtx,
        proposer: u64,
        key: &ed25519_dalek::SigningKey,
        txs: Vec<Vec<u8>>,
        timestamp_ms: i64,
    ) -> Batch {
        use ed25519_dalek::Signer;
        let root = tx_root(ctx.suite, &txs);
        let digest = proposal_digest(ctx.suite, &ctx.chain_id, proposer, timestamp_ms, &root);
        Batch {
            proposer,
            timestamp_ms,
            txs,
            proposer_sig: key.sign(&digest).to_bytes().to_vec(),
        }
    }
}

/// What applying one Raft entry produced, returned to the proposer's waiting clients.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Height of the block the batch became; 0 for Raft-internal entries.
    pub height: u64,
    pub results: Vec<(i32, String)>,
    pub tx_ids: Vec<Hash>,
}
