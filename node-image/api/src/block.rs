//! Block hashing, Merkle roots and integrity checks, shared by nodes and clients.

use crate::crypto::{Hash, Suite};
use crate::pb::{Block, BlockHeader, TxResult};
use prost::Message;

/// Merkle root with domain-separated leaves (0x00) and inner nodes (0x01); an odd node is
/// carried up unchanged. The root of no leaves is the hash of the empty string.
pub fn merkle_root(suite: Suite, leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return suite.hash(b"");
    }
    let mut level: Vec<Hash> = leaves
        .iter()
        .map(|l| {
            let mut buf = [0u8; 33];
            buf[1..].copy_from_slice(l);
            suite.hash(&buf)
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => {
                    let mut buf = [0u8; 65];
                    buf[0] = 1;
                    buf[1..33].copy_from_slice(l);
                    buf[33..].copy_from_slice(r);
                    suite.hash(&buf)
                }
                [one] => *one,
                _ => unreachable!("chunks(2)"),
            })
            .collect();
    }
    level[0]
}

pub fn tx_root(suite: Suite, txs: &[Vec<u8>]) -> Hash {
    let leaves: Vec<Hash> = txs.iter().map(|t| suite.hash(t)).collect();
    merkle_root(suite, &leaves)
}

pub fn results_root(suite: Suite, results: &[TxResult]) -> Hash {
    let leaves: Vec<Hash> = results
        .iter()
        .map(|r| suite.hash(&r.encode_to_vec()))
        .collect();
    merkle_root(suite, &leaves)
}

/// What a proposer signs: it commits to the batch, not to results it cannot know yet.
pub fn proposal_digest(
    suite: Suite,
    chain_id: &str,
    proposer: u64,
    timestamp_ms: i64,
    tx_root: &Hash,
) -> Hash {
    suite.hash_parts(&[
        b"medledger-proposal",
        chain_id.as_bytes(),
        &proposer.to_be_bytes(),
        &timestamp_ms.to_be_bytes(),
        tx_root,
    ])
}

pub fn header_hash(suite: Suite, header: &BlockHeader) -> Hash {
    suite.hash(&header.encode_to_vec())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("block has no header")]
    NoHeader,
    #[error("transaction Merkle root does not match the transactions")]
    TxRoot,
    #[error("results Merkle root does not match the results")]
    ResultsRoot,
    #[error("{txs} transactions but {results} results")]
    ResultCount { txs: usize, results: usize },
    #[error("previous-block hash does not match the block before it")]
    PrevHash,
    #[error("proposer {0} is not a validator of this chain")]
    UnknownProposer(u64),
    #[error("proposer signature does not verify")]
    ProposerSignature,
    #[error("expected height {expected}, found {found}")]
    Height { expected: u64, found: u64 },
}

/// Checks a block against its predecessor's hash and returns its own hash.
/// `proposer_key` maps a Raft node id to its Ed25519 public key.
pub fn verify_block(
    suite: Suite,
    chain_id: &str,
    block: &Block,
    expected_height: u64,
    prev_hash: &Hash,
    proposer_key: impl Fn(u64) -> Option<Vec<u8>>,
) -> Result<Hash, BlockError> {
    let h = block.header.as_ref().ok_or(BlockError::NoHeader)?;
    if h.height != expected_height {
        return Err(BlockError::Height {
            expected: expected_height,
            found: h.height,
        });
    }
    if h.prev_hash.as_slice() != prev_hash {
        return Err(BlockError::PrevHash);
    }
    if block.txs.len() != block.results.len() {
        return Err(BlockError::ResultCount {
            txs: block.txs.len(),
            results: block.results.len(),
        });
    }
    let root = tx_root(suite, &block.txs);
    if h.tx_root.as_slice() != root {
        return Err(BlockError::TxRoot);
    }
    if h.results_root.as_slice() != results_root(suite, &block.results) {
        return Err(BlockError::ResultsRoot);
    }
    let key = proposer_key(h.proposer).ok_or(BlockError::UnknownProposer(h.proposer))?;
    let digest = proposal_digest(suite, chain_id, h.proposer, h.timestamp_ms, &root);
    crate::crypto::verify_ed25519(&key, &digest, &h.proposer_sig)
        .map_err(|_| BlockError::ProposerSignature)?;
    Ok(header_hash(suite, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_shapes() {
        let s = Suite::Ed25519;
        let a = s.hash(b"a");
        let b = s.hash(b"b");
        let c = s.hash(b"c");
        assert_ne!(merkle_root(s, &[a]), a, "leaves are domain-separated");
        assert_ne!(merkle_root(s, &[a, b]), merkle_root(s, &[b, a]));
        assert_ne!(merkle_root(s, &[a, b, c]), merkle_root(s, &[a, b]));
        assert_eq!(merkle_root(s, &[]), s.hash(b""));
    }
}
