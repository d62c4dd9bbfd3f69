//! Native contracts of the state machine: governance, identity, records, access and audit.
//!
//! Every node runs them on every committed transaction, in block order, against the state
//! left by the transactions before; they read only that state, the genesis and the block
//! timestamp, so every node reaches the same result. A contract answers with a result code
//! and a reason, which stay in the block.

pub mod access;
pub mod actor;
pub mod audit;
pub mod governance;
pub mod identity;
pub mod records;
pub mod state;
#[cfg(test)]
mod tests;

use crate::ledger::ChainCtx;
use medledger_api::pb::{ResultCode, TxBody, TxResult, tx_body::Op};
pub use state::{Overlay, StateRead};

/// Where a transaction sits, for audit entries and time checks.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub height: u64,
    pub index: u32,
    /// The block timestamp (the proposer's clock): every node uses the same one.
    pub now_ms: i64,
}

pub type Outcome = Result<(), TxResult>;

pub fn reject(code: ResultCode, reason: impl Into<String>) -> TxResult {
    TxResult {
        code: code as i32,
        reason: reason.into(),
    }
}

pub fn invalid(reason: impl Into<String>) -> TxResult {
    reject(ResultCode::Invalid, reason)
}

pub fn unauthorized(reason: impl Into<String>) -> TxResult {
    reject(ResultCode::Unauthorized, reason)
}

/// Runs the operation of one transaction whose envelope, signature and nonce are valid.
pub fn apply(ctx: &ChainCtx, ov: &mut Overlay<'_>, env: &Env, body: &TxBody) -> TxResult {
    let signer = body.signer.as_slice();
    let outcome = match body.op.as_ref().expect("precheck guarantees an op") {
        Op::RegisterParticipant(r) => identity::register(ctx, ov, env, signer, r),
        Op::Put(p) => identity::put(ov, signer, p),
        Op::RegisterRecord(r) => records::register(ctx, ov, env, signer, r),
        Op::RequestAccess(r) => access::request(ctx, ov, env, signer, r),
        Op::ApproveAccess(a) => access::approve(ctx, ov, env, signer, a),
        Op::RevokeAccess(r) => access::revoke(ctx, ov, env, signer, r),
        Op::BreakGlass(b) => access::break_glass(ctx, ov, env, signer, b),
        Op::KeyReleased(k) => access::key_released(ctx, ov, env, signer, k),
        Op::ProposeMembership(p) => governance::propose(ctx, ov, env, signer, p),
        Op::ApproveProposal(a) => governance::approve(ctx, ov, env, signer, a),
    };
    outcome.err().unwrap_or_else(|| reject(ResultCode::Ok, ""))
}
