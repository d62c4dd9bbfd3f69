//! Deterministic execution of a batch into a block. Every node runs this on every committed
//! batch, so every node re-validates every transaction and holds the same chain: an invalid
//! transaction stays in the block with its rejection code.

use super::{Batch, ChainCtx};
use medledger_api::block::{header_hash, proposal_digest, results_root, tx_root};
use medledger_api::crypto::{Hash, Suite};
use medledger_api::pb::{Block, BlockHeader, ResultCode, Transaction, TxBody, TxResult, tx_body::Op};
use std::collections::BTreeMap;

/// Read access to committed state, as of the block before the one being executed.
pub trait StateRead {
    fn nonce(&self, signer: &[u8]) -> u64;
    fn participant_role(&self, key: &[u8]) -> Option<String>;
}

/// State writes produced by one block.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub nonces: BTreeMap<Vec<u8>, u64>,
    pub participants: BTreeMap<Vec<u8>, String>,
    pub kv: BTreeMap<String, Vec<u8>>,
    /// (tx id, index in block)
    pub tx_index: Vec<(Hash, u32)>,
}

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
enum Checked {
    Ok { body: TxBody, tx: Transaction },
    Rejected(ResultCode, String),
}

fn reject(code: ResultCode, reason: impl Into<String>) -> TxResult {
    TxResult { code: code as i32, reason: reason.into() }
}

/// Checks that need no signature verification: size, encoding, chain, signer.
/// Also used at ingress to turn away junk before it is ordered.
pub fn precheck(ctx: &ChainCtx, state: &dyn StateRead, raw: &[u8]) -> Result<(Transaction, TxBody), TxResult> {
    if raw.len() > ctx.max_tx_bytes {
        return Err(reject(
            ResultCode::Oversized,
            format!("transaction is {} bytes; this chain accepts at most {} (maxTxBytes)", raw.len(), ctx.max_tx_bytes),
        ));
    }
    let (tx, body) = medledger_api::tx::decode(raw).map_err(|e| reject(ResultCode::Malformed, e.to_string()))?;
    if body.chain_id != ctx.chain_id {
        return Err(reject(
            ResultCode::WrongChain,
            format!("transaction is for chain {:?}, this is {:?}", body.chain_id, ctx.chain_id),
        ));
    }
    if ctx.suite.check_public_key(&body.signer).is_err() {
        return Err(reject(ResultCode::Malformed, format!("signer is not a {} public key", ctx.suite)));
    }
    if !ctx.admins.contains_key(&body.signer) && state.participant_role(&body.signer).is_none() {
        return Err(reject(
            ResultCode::UnknownSigner,
            format!("signer {} is not a member or a registered participant", hex::encode(&body.signer)),
        ));
    }
    Ok((tx, body))
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
                let key = <[u8; 32]>::try_from(body.signer.as_slice())
                    .ok()
                    .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok());
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
            out[i] = suite.verify(&body.signer, &tx.body, &tx.signature).is_ok();
        }
    }
    out
}

struct Overlay<'a> {
    state: &'a dyn StateRead,
    changes: Changes,
}

impl Overlay<'_> {
    fn nonce(&self, signer: &[u8]) -> u64 {
        self.changes.nonces.get(signer).copied().unwrap_or_else(|| self.state.nonce(signer))
    }
    fn role(&self, key: &[u8]) -> Option<String> {
        self.changes.participants.get(key).cloned().or_else(|| self.state.participant_role(key))
    }
}

fn apply_op(ctx: &ChainCtx, ov: &mut Overlay<'_>, body: &TxBody) -> TxResult {
    match body.op.as_ref().expect("precheck guarantees an op") {
        Op::RegisterParticipant(r) => {
            if !ctx.admins.contains_key(&body.signer) {
                return reject(ResultCode::Unauthorized, "only a member administrator may register participants");
            }
            if ctx.suite.check_public_key(&r.public_key).is_err() {
                return reject(ResultCode::Invalid, format!("participant key is not a {} public key", ctx.suite));
            }
            const ROLES: [&str; 5] = ["patient", "clinician", "researcher", "auditor", "client"];
            if !ROLES.contains(&r.role.as_str()) {
                return reject(ResultCode::Invalid, format!("role {:?} is not one of {ROLES:?}", r.role));
            }
            if ctx.admins.contains_key(&r.public_key) || ov.role(&r.public_key).is_some() {
                return reject(ResultCode::Invalid, "this key is already registered");
            }
            ov.changes.participants.insert(r.public_key.clone(), r.role.clone());
        }
        Op::Put(p) => {
            if p.key.is_empty() || p.key.len() > 256 {
                return reject(ResultCode::Invalid, "key must be 1 to 256 bytes");
            }
            ov.changes.kv.insert(format!("{}/{}", hex::encode(&body.signer), p.key), p.value.clone());
        }
    }
    reject(ResultCode::Ok, "")
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
    let digest = proposal_digest(ctx.suite, &ctx.chain_id, batch.proposer, batch.timestamp_ms, &root);
    // A proposal not signed by a validator orders nothing: every transaction in it is void.
    let proposal_ok = ctx
        .node_key(batch.proposer)
        .is_some_and(|k| medledger_api::crypto::verify_ed25519(&k, &digest, &batch.proposer_sig).is_ok());
    let checked: Vec<Checked> = batch
        .txs
        .iter()
        .map(|raw| match precheck(ctx, state, raw) {
            _ if !proposal_ok => Checked::Rejected(ResultCode::Invalid, "the proposal signature is invalid".into()),
            Ok((tx, body)) => Checked::Ok { body, tx },
            Err(r) => Checked::Rejected(ResultCode::try_from(r.code).unwrap_or(ResultCode::Invalid), r.reason),
        })
        .collect();
    let sig_ok = verify_signatures(ctx.suite, &checked);

    let mut ov = Overlay { state, changes: Changes::default() };
    let mut results = Vec::with_capacity(checked.len());
    let mut tx_ids = Vec::with_capacity(checked.len());
    for (i, (c, raw)) in checked.into_iter().zip(&batch.txs).enumerate() {
        let id = match &c {
            Checked::Ok { tx, .. } => ctx.suite.hash(&tx.body),
            // Undecodable bytes still get an id, so clients can look up why they failed.
            Checked::Rejected(..) => ctx.suite.hash(raw),
        };
        let result = match c {
            Checked::Rejected(code, reason) => reject(code, reason),
            Checked::Ok { .. } if !sig_ok[i] => reject(ResultCode::BadSignature, "signature does not verify for the signer key"),
            Checked::Ok { body, .. } => {
                let last = ov.nonce(&body.signer);
                if body.nonce <= last {
                    reject(
                        ResultCode::ReplayedNonce,
                        format!("nonce {} is not above the signer's last committed nonce {last}", body.nonce),
                    )
                } else {
                    let r = apply_op(ctx, &mut ov, &body);
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
    Executed { block: Block { header: Some(header), txs: batch.txs.clone(), results }, hash, changes: ov.changes, tx_ids }
}
