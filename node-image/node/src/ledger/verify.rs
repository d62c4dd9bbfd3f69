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
    #[error(
        "stored block at height {height} is missing; move the data directory aside and restart to re-sync"
    )]
    Missing { height: u64 },
    #[error("cannot read the store: {0}")]
    Read(String),
}

/// Verifies every stored block. `get` reads a block and its recorded hash.
/// `proposer_key` finds the node key of a block's proposer (validators admitted after the
/// genesis included).
pub fn verify_chain(
    ctx: &ChainCtx,
    head: &Head,
    proposer_key: impl Fn(u64) -> Option<Vec<u8>>,
    mut get: impl FnMut(u64) -> Result<Option<(Block, Option<Hash>)>, String>,
) -> Result<(), ChainError> {
    let mut check_range = |from: u64, to: u64, mut prev: Hash| -> Result<Hash, ChainError> {
        for height in from..=to {
            let (block, recorded) = get(height)
                .map_err(ChainError::Read)?
                .ok_or(ChainError::Missing { height })?;
            let hash = verify_block(
                ctx.suite,
                &ctx.chain_id,
                &block,
                height,
                &prev,
                &proposer_key,
            )
            .map_err(|e| ChainError::Tampered {
                height,
                reason: e.to_string(),
            })?;
            if recorded.is_some_and(|r| r != hash) {
                return Err(ChainError::Tampered {
                    height,
                    reason: "recorded block hash differs from the block".into(),
                });
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
        let (block, _) =
            get(head.anchor_height)
                .map_err(ChainError::Read)?
                .ok_or(ChainError::Missing {
                    height: head.anchor_height,
                })?;
        let h =
            medledger_api::block::header_hash(ctx.suite, block.header.as_ref().expect("verified"));
        if h != head.anchor_hash {
            return Err(ChainError::Tampered {
                height: head.anchor_height,
                reason: "differs from the snapshot anchor".into(),
            });
        }
    }
    if last != head.hash {
        return Err(ChainError::Tampered {
            height: head.height,
            reason: "head hash differs from the last block".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{
        Batch,
        execute::{StateRead, execute_batch},
    };
    use medledger_api::crypto::Suite;

    struct Empty;
    impl StateRead for Empty {
        fn nonce(&self, _: &[u8]) -> u64 {
            0
        }
        fn participant_role(&self, _: &[u8]) -> Option<String> {
            None
        }
        fn object(&self, _: &str) -> Option<Vec<u8>> {
            None
        }
    }

    fn chain(n: u64) -> (ChainCtx, Vec<(Block, Hash)>, Head) {
        let t = crate::ledger::test_chain::TestChain::new(Suite::Ed25519, Default::default());
        let id = t.proposer();
        let (ctx, node, admin) = (t.ctx, t.node, t.admin);
        let mut prev = ctx.genesis_hash;
        let mut blocks = Vec::new();
        for h in 1..=n {
            let tx = medledger_api::tx::build(
                &admin,
                &ctx.chain_id,
                h,
                medledger_api::pb::tx_body::Op::Put(Default::default()),
            );
            let batch = Batch::sign(&ctx, id, &node, vec![tx], h as i64);
            let e = execute_batch(&ctx, &Empty, &batch, h, &prev, 1, h);
            prev = e.hash;
            blocks.push((e.block, e.hash));
        }
        let head = Head {
            height: n,
            hash: prev,
            contiguous: n,
            anchor_height: 0,
            anchor_hash: ctx.genesis_hash,
        };
        (ctx, blocks, head)
    }

    fn verify(ctx: &ChainCtx, blocks: &[(Block, Hash)], head: &Head) -> Result<(), ChainError> {
        verify_chain(
            ctx,
            head,
            |id| ctx.node_key(id),
            |h| {
                Ok(blocks
                    .get(h as usize - 1)
                    .map(|(b, x)| (b.clone(), Some(*x))))
            },
        )
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (ctx, blocks, head) = chain(5);
        verify(&ctx, &blocks, &head).unwrap();
    }

    #[test]
    fn each_kind_of_tampering_names_the_height() {
        type Tamper = fn(&mut Block);
        let cases: [Tamper; 4] = [
            |b| b.txs[0][3] ^= 1,
            |b| b.results[0].code = 3,
            |b| b.header.as_mut().unwrap().timestamp_ms += 1,
            |b| b.header.as_mut().unwrap().prev_hash[0] ^= 1,
        ];
        for tamper in cases {
            let (ctx, mut blocks, head) = chain(5);
            tamper(&mut blocks[2].0);
            match verify(&ctx, &blocks, &head) {
                Err(ChainError::Tampered { height: 3, .. }) => {}
                other => panic!("expected tampering at height 3, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_block_or_a_wrong_head_is_reported() {
        let (ctx, blocks, head) = chain(4);
        assert_eq!(
            verify(&ctx, &blocks[..2], &head),
            Err(ChainError::Missing { height: 3 })
        );
        let mut wrong = head;
        wrong.hash[0] ^= 1;
        assert!(matches!(
            verify(&ctx, &blocks, &wrong),
            Err(ChainError::Tampered { height: 4, .. })
        ));
    }

    #[test]
    fn a_gap_below_a_snapshot_anchor_is_verified_from_the_anchor() {
        let (ctx, blocks, head) = chain(6);
        // Blocks 1..=2 held, 3..=4 not yet back-filled, anchor at 4, 5..=6 applied after it.
        let partial: Vec<_> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (2..4).contains(&i) {
                    None
                } else {
                    Some(b.clone())
                }
            })
            .collect();
        let h = Head {
            contiguous: 2,
            anchor_height: 4,
            anchor_hash: blocks[3].1,
            ..head
        };
        verify_chain(
            &ctx,
            &h,
            |id| ctx.node_key(id),
            |x| Ok(partial[x as usize - 1].clone().map(|(b, y)| (b, Some(y)))),
        )
        .unwrap();
    }
}
