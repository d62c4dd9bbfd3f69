//! Deterministic execution of a batch into a block. Every node runs this on every committed
//! batch, so every node re-validates every transaction and holds the same chain: an invalid
//! transaction stays in the block with its rejection code.

use super::{Batch, ChainCtx};
use medledger_api::block::{header_hash, proposal_digest, results_root, tx_root};
use medledger_api::crypto::{Hash, Suite};
use medledger_api::pb::{Block, BlockHeader, ResultCode, Transaction, TxBody, TxResult};

pub use crate::contracts::state::{Changes, StateRead};
use crate::contracts::{Env, Overlay, actor};

pub struct Executed {
    pub block: Block,
    pub hash: Hash,
    pub changes: Changes,
    pub tx_ids: Vec<Hash>,
}

/// Role string of member administrators, as reported by queries.
pub const MEMBER_ROLE: &str = "member";

/// The outcome of checking one transaction before execution: either a decoded transaction
/// or a rejection.
#[allow(clippy::large_enum_variant)] // short-lived, one per transaction of a block
enum Checked {
    Ok { body: TxBody, tx: Transaction },
    Rejected(ResultCode, String),
}

fn reject(code: ResultCode, reason: impl Into<String>) -> TxResult {
    TxResult {
        code: code as i32,
        reason: reason.into(),
    }
}

/// Checks that need neither state nor signature verification: size, encoding, chain, key
/// format. Any node can run them on any transaction.
pub fn precheck_stateless(ctx: &ChainCtx, raw: &[u8]) -> Result<(Transaction, TxBody), TxResult> {
    if raw.len() > ctx.max_tx_bytes {
        return Err(reject(
            ResultCode::Oversized,
            format!(
                "transaction is {} bytes; this chain accepts at most {} (maxTxBytes)",
                raw.len(),
                ctx.max_tx_bytes
            ),
        ));
    }
    let (tx, body) =
        medledger_api::tx::decode(raw).map_err(|e| reject(ResultCode::Malformed, e.to_string()))?;
    if body.chain_id != ctx.chain_id {
        return Err(reject(
            ResultCode::WrongChain,
            format!(
                "transaction is for chain {:?}, this is {:?}",
                body.chain_id, ctx.chain_id
            ),
        ));
    }
    if signer_suite(ctx, &body.signer)
        .check_public_key(&body.signer)
        .is_err()
    {
        return Err(reject(
            ResultCode::Malformed,
            format!("signer is not a {} public key", ctx.suite),
        ));
    }
    Ok((tx, body))
}

/// The suite a signer's key is in. Validator node keys are Ed25519 under every suite (they
/// are TLS identities) and sign only the audit entries of key releases; under `sm` they are
/// told apart from SM2 keys by length (32 bytes against 33).
pub fn signer_suite(ctx: &ChainCtx, signer: &[u8]) -> Suite {
    signer_suite_of(ctx.suite, signer)
}

/// The stateless checks plus "is the signer known", against committed state. Used when a
/// block is applied and, on the leader, before ordering.
pub fn precheck(
    ctx: &ChainCtx,
    state: &dyn StateRead,
    raw: &[u8],
) -> Result<(Transaction, TxBody), TxResult> {
    let (tx, body) = precheck_stateless(ctx, raw)?;
    // Participants (by far the most frequent signers) are found with one table read.
    if state.participant_role(&body.signer).is_none()
        && actor::resolve(ctx, &Overlay::new(state), &body.signer).is_none()
    {
        return Err(reject(
            ResultCode::UnknownSigner,
            format!(
                "signer {} is not a member or a registered participant",
                hex::encode(&body.signer)
            ),
        ));
    }
    Ok((tx, body))
}

fn signer_suite_of(suite: Suite, signer: &[u8]) -> Suite {
    if suite == Suite::Sm && signer.len() == 32 {
        Suite::Ed25519
    } else {
        suite
    }
}

/// Verifies all signatures of a block; Ed25519 ones in one batch, falling back to one by one
/// only when the batch fails, so the common all-valid case costs about half.
fn verify_signatures(suite: Suite, checked: &[Checked]) -> Vec<bool> {
    let mut out = vec![false; checked.len()];
    if suite == Suite::Ed25519 {
        let mut idx = Vec::new();
        let mut msgs: Vec<&[u8]> = Vec::new();
        let mut sigs = Vec::new();
        let mut keys = Vec::new();
        for (i, c) in checked.iter().enumerate() {
            if let Checked::Ok { body, tx } = c {
                let key = medledger_api::crypto::ed25519_key(&body.signer).ok();
                let sig = ed25519_dalek::Signature::from_slice(&tx.signature).ok();
                if let (Some(k), Some(s)) = (key, sig) {
                    idx.push(i);
                    msgs.push(&tx.body);
                    sigs.push(s);
                    keys.push(k);
                }
            }
        }
        if !idx.is_empty() && ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
            for i in idx {
                out[i] = true;
            }
            return out;
        }
    }
    for (i, c) in checked.iter().enumerate() {
        if let Checked::Ok { body, tx } = c {
            out[i] = signer_suite_of(suite, &body.signer)
                .verify(&body.signer, &tx.body, &tx.signature)
                .is_ok();
        }
    }
    out
}

/// Executes a committed batch at `height` on top of `prev_hash`.
pub fn execute_batch(
    ctx: &ChainCtx,
    state: &dyn StateRead,
    batch: &Batch,
    height: u64,
    prev_hash: &Hash,
    raft_term: u64,
    raft_index: u64,
) -> Executed {
    let root = tx_root(ctx.suite, &batch.txs);
    let digest = proposal_digest(
        ctx.suite,
        &ctx.chain_id,
        batch.proposer,
        batch.timestamp_ms,
        &root,
    );
    // A proposal not signed by a validator orders nothing: every transaction in it is void.
    let proposer_key = actor::node_key_of(ctx, &Overlay::new(state), batch.proposer);
    let proposal_ok = proposer_key.is_some_and(|k| {
        medledger_api::crypto::verify_ed25519(&k, &digest, &batch.proposer_sig).is_ok()
    });
    let checked: Vec<Checked> = batch
        .txs
        .iter()
        .map(|raw| match precheck(ctx, state, raw) {
            _ if !proposal_ok => Checked::Rejected(
                ResultCode::Invalid,
                "the proposal signature is invalid".into(),
            ),
            Ok((tx, body)) => Checked::Ok { body, tx },
            Err(r) => Checked::Rejected(
                ResultCode::try_from(r.code).unwrap_or(ResultCode::Invalid),
                r.reason,
            ),
        })
        .collect();
    let sig_ok = verify_signatures(ctx.suite, &checked);

    let mut ov = Overlay::new(state);
    let mut results = Vec::with_capacity(checked.len());
    let mut tx_ids = Vec::with_capacity(checked.len());
    for (i, (c, raw)) in checked.into_iter().zip(&batch.txs).enumerate() {
        let id = match &c {
            Checked::Ok { tx, .. } => medledger_api::tx::tx_id(ctx.suite, tx),
            // A rejected transaction keeps the id its client computed (and back-fill gives
            // it); undecodable bytes still get one, so clients can look up why they failed.
            Checked::Rejected(..) => medledger_api::tx::id_of_raw(ctx.suite, raw),
        };
        let result = match c {
            Checked::Rejected(code, reason) => reject(code, reason),
            Checked::Ok { .. } if !sig_ok[i] => reject(
                ResultCode::BadSignature,
                "signature does not verify for the signer key",
            ),
            Checked::Ok { body, .. } => {
                let last = ov.nonce(&body.signer);
                if body.nonce <= last {
                    reject(
                        ResultCode::ReplayedNonce,
                        format!(
                            "nonce {} is not above the signer's last committed nonce {last}",
                            body.nonce
                        ),
                    )
                } else {
                    let env = Env {
                        height,
                        index: i as u32,
                        now_ms: batch.timestamp_ms,
                    };
                    let r = crate::contracts::apply(ctx, &mut ov, &env, &body);
                    // A rejected operation still consumes its nonce, so it cannot be replayed.
                    ov.changes.nonces.insert(body.signer.clone(), body.nonce);
                    r
                }
            }
        };
        ov.changes.tx_index.push((id, i as u32));
        tx_ids.push(id);
        results.push(result);
    }
    let header = BlockHeader {
        height,
        prev_hash: prev_hash.to_vec(),
        tx_root: root.to_vec(),
        results_root: results_root(ctx.suite, &results).to_vec(),
        timestamp_ms: batch.timestamp_ms,
        proposer: batch.proposer,
        proposer_sig: batch.proposer_sig.clone(),
        raft_term,
        raft_index,
    };
    let hash = header_hash(ctx.suite, &header);
    Executed {
        block: Block {
            header: Some(header),
            txs: batch.txs.clone(),
            results,
        },
        hash,
        changes: ov.changes,
        tx_ids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_api::genesis::BlockLimits;
    use medledger_api::keys::SigningKey;
    use medledger_api::pb::{Put, RegisterParticipant, tx_body::Op};
    use prost::Message;
    use std::collections::HashMap;

    type Fixture = crate::ledger::test_chain::TestChain;

    fn fixture(suite: Suite) -> Fixture {
        Fixture::new(
            suite,
            BlockLimits {
                max_block_txs: 100,
                max_tx_bytes: 1024,
            },
        )
    }

    #[derive(Default)]
    struct Mem {
        nonces: HashMap<Vec<u8>, u64>,
        roles: HashMap<Vec<u8>, String>,
    }
    impl StateRead for Mem {
        fn nonce(&self, s: &[u8]) -> u64 {
            self.nonces.get(s).copied().unwrap_or(0)
        }
        fn participant_role(&self, k: &[u8]) -> Option<String> {
            self.roles.get(k).cloned()
        }
        fn object(&self, _: &str) -> Option<Vec<u8>> {
            None
        }
    }

    fn run(f: &Fixture, state: &Mem, txs: Vec<Vec<u8>>) -> Executed {
        let id = f.ctx.node_keys.keys().next().copied().unwrap();
        let batch = Batch::sign(&f.ctx, id, &f.node, txs, 1000);
        execute_batch(&f.ctx, state, &batch, 1, &f.ctx.genesis_hash, 1, 1)
    }

    fn put(_k: &SigningKey, _nonce: u64) -> Op {
        Op::Put(Put {
            key: "k".into(),
            value: b"v".to_vec(),
        })
    }

    fn codes(e: &Executed) -> Vec<i32> {
        e.block.results.iter().map(|r| r.code).collect()
    }

    #[test]
    fn every_rule_is_enforced_in_the_block() {
        for suite in [Suite::Ed25519, Suite::Sm] {
            let f = fixture(suite);
            let patient = SigningKey::generate(suite);
            let stranger = SigningKey::generate(suite);
            let chain = f.ctx.chain_id.clone();
            let reg = Op::RegisterParticipant(RegisterParticipant {
                public_key: patient.public(),
                role: "patient".into(),
                department: String::new(),
            });
            let mut forged = medledger_api::pb::Transaction::decode(
                medledger_api::tx::build(&f.admin, &chain, 9, put(&f.admin, 9)).as_slice(),
            )
            .unwrap();
            forged.signature[0] ^= 1;
            let txs = vec![
                medledger_api::tx::build(&f.admin, &chain, 1, reg), // already registered
                medledger_api::tx::build(&patient, &chain, 1, put(&patient, 1)), // OK
                medledger_api::tx::build(&patient, &chain, 1, put(&patient, 1)), // replay within the block
                medledger_api::tx::build(&stranger, &chain, 1, put(&stranger, 1)), // unknown signer
                medledger_api::tx::build(&patient, "other", 2, put(&patient, 2)), // wrong chain
                b"garbage".to_vec(),                                             // malformed
                vec![0u8; 2000],                                                 // oversized
                prost::Message::encode_to_vec(&forged),                          // bad signature
                medledger_api::tx::build(
                    &patient,
                    &chain,
                    3,
                    Op::RegisterParticipant(RegisterParticipant {
                        public_key: stranger.public(),
                        role: "clinician".into(),
                        department: String::new(),
                    }),
                ), // unauthorized
                medledger_api::tx::build(
                    &f.admin,
                    &chain,
                    2,
                    Op::RegisterParticipant(RegisterParticipant {
                        public_key: stranger.public(),
                        role: "wizard".into(),
                        department: String::new(),
                    }),
                ), // invalid role
            ];
            let mut state = Mem::default();
            state.roles.insert(patient.public(), "patient".into());
            let e = run(&f, &state, txs);
            use ResultCode::*;
            assert_eq!(
                codes(&e),
                [
                    Invalid,
                    Ok,
                    ReplayedNonce,
                    UnknownSigner,
                    WrongChain,
                    Malformed,
                    Oversized,
                    BadSignature,
                    Unauthorized,
                    Invalid
                ]
                .map(|c| c as i32)
                .to_vec(),
                "{suite}: {:?}",
                e.block.results
            );
            assert!(e.block.results.iter().skip(2).all(|r| !r.reason.is_empty()));
            // Every transaction, accepted or not, is indexed under the id its bytes give
            // wherever they are seen: at ingress, when applied, and in back-fill.
            let expected: Vec<Hash> = e
                .block
                .txs
                .iter()
                .map(|raw| medledger_api::tx::id_of_raw(suite, raw))
                .collect();
            assert_eq!(e.tx_ids, expected, "{suite}");
            let unknown_signer = &e.block.txs[3];
            let (tx, _) = medledger_api::tx::decode(unknown_signer).unwrap();
            assert_eq!(e.tx_ids[3], medledger_api::tx::tx_id(suite, &tx), "{suite}");
            assert_eq!(
                e.changes.nonces.get(&patient.public()),
                Some(&3),
                "a rejected op still consumes its nonce"
            );
        }
    }

    #[test]
    fn a_proposal_not_signed_by_a_validator_voids_its_transactions() {
        let f = fixture(Suite::Ed25519);
        let tx = medledger_api::tx::build(&f.admin, &f.ctx.chain_id, 1, put(&f.admin, 1));
        let id = f.ctx.node_keys.keys().next().copied().unwrap();
        let mut batch = Batch::sign(&f.ctx, id, &f.node, vec![tx], 5);
        batch.proposer_sig[0] ^= 1;
        let e = execute_batch(
            &f.ctx,
            &Mem::default(),
            &batch,
            1,
            &f.ctx.genesis_hash,
            1,
            1,
        );
        assert_eq!(codes(&e), vec![ResultCode::Invalid as i32]);
        assert!(e.changes.nonces.is_empty());
    }

    #[test]
    fn execution_is_deterministic() {
        let f = fixture(Suite::Ed25519);
        let txs: Vec<_> = (1..=5)
            .map(|n| medledger_api::tx::build(&f.admin, &f.ctx.chain_id, n, put(&f.admin, n)))
            .collect();
        let a = run(&f, &Mem::default(), txs.clone());
        let b = run(&f, &Mem::default(), txs);
        assert_eq!(a.hash, b.hash);
        assert_eq!(a.changes, b.changes);
        assert!(a.block.results.iter().all(|r| r.code == 0));
    }
}
