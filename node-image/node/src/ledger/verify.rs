//! Start-up check of the stored chain: every block's roots, proposer signature and link to
//! its predecessor, from the genesis (or the snapshot anchor) up to the recorded head.

use super::ChainCtx;
use crate::store::Head;
use medledger_api::block::verify_block;
use medledger_api::crypto::Hash;
use medledger_api::pb::Block;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error(
        "stored block at height {height} fails verification ({reason}); this node's data was altered or damaged: \
         move its data directory aside and restart the node to re-sync it from its peers"
    )]
    Tampered { height: u64, reason: String },
    #[error("stored block at height {height} is missing; move the data directory aside and restart to re-sync")]
    Missing { height: u64 },
    #[error("cannot read the store: {0}")]
    Read(String),
}

/// Verifies every stored block. `get` reads a block and its recorded hash.
pub fn verify_chain(
    ctx: &ChainCtx,
    head: &Head,
    mut get: impl FnMut(u64) -> Result<Option<(Block, Option<Hash>)>, String>,
) -> Result<(), ChainError> {
    let mut check_range = |from: u64, to: u64, mut prev: Hash| -> Result<Hash, ChainError> {
        for height in from..=to {
            let (block, recorded) = get(height).map_err(ChainError::Read)?.ok_or(ChainError::Missing { height })?;
            let hash = verify_block(ctx.suite, &ctx.chain_id, &block, height, &prev, |id| ctx.node_key(id))
                .map_err(|e| ChainError::Tampered { height, reason: e.to_string() })?;
            if recorded.is_some_and(|r| r != hash) {
                return Err(ChainError::Tampered { height, reason: "recorded block hash differs from the block".into() });
            }
            prev = hash;
        }
        Ok(prev)
    };
    let prefix_end = head.contiguous.min(head.height);
    let mut last = check_range(1, prefix_end, ctx.genesis_hash)?;
    if head.anchor_height > prefix_end {
        last = check_range(head.anchor_height + 1, head.height, head.anchor_hash)?;
    } else if head.anchor_height > 0 {
        // The anchor lies inside the verified prefix: it must be the block we hold there.
        let (block, _) = get(head.anchor_height).map_err(ChainError::Read)?.ok_or(ChainError::Missing { height: head.anchor_height })?;
        let h = medledger_api::block::header_hash(ctx.suite, block.header.as_ref().expect("verified"));
        if h != head.anchor_hash {
            return Err(ChainError::Tampered { height: head.anchor_height, reason: "differs from the snapshot anchor".into() });
        }
    }
    if last != head.hash {
        return Err(ChainError::Tampered { height: head.height, reason: "head hash differs from the last block".into() });
    }
    Ok(())
}
