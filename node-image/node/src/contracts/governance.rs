//! Governance: members propose to admit or remove a member (with its validator), the other
//! members approve, and once the consortium's policy is met the decision takes effect in
//! the same block. The node then makes the Raft membership follow (see `membership.rs`).

use super::actor::{Actor, MEMBERS, MemberRec, members, resolve};
use super::{Env, Outcome, Overlay, invalid, unauthorized};
use crate::ledger::ChainCtx;
use medledger_api::crypto::Suite;
use medledger_api::emr::valid_id;
use medledger_api::genesis::{is_endpoint, node_id};
use medledger_api::pb::{ApproveProposal, ProposeMembership, propose_membership::Action};
use medledger_api::policy::Policy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalRec {
    pub proposal_id: String,
    pub action: String,
    pub member: MemberRec,
    pub policy: String,
    pub approvals: BTreeSet<String>,
    pub decided_height: u64,
}

pub fn proposal_key(id: &str) -> String {
    format!("proposal/{id}")
}

pub fn get(ov: &Overlay<'_>, id: &str) -> Option<ProposalRec> {
    ov.get(&proposal_key(id))
}

fn member_signer(
    ctx: &ChainCtx,
    ov: &Overlay<'_>,
    signer: &[u8],
) -> Result<String, medledger_api::pb::TxResult> {
    match resolve(ctx, ov, signer) {
        Some(Actor::Member(m)) => Ok(m),
        _ => Err(unauthorized(
            "only a current member's administrator may propose or approve membership changes",
        )),
    }
}

pub fn propose(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    p: &ProposeMembership,
) -> Outcome {
    let proposer = member_signer(ctx, ov, signer)?;
    if !valid_id(&p.proposal_id) || get(ov, &p.proposal_id).is_some() {
        return Err(invalid(
            "proposal_id must be a new id of 1-128 letters, digits, '.', '_' or '-'",
        ));
    }
    let current = members(ctx, ov);
    let active = current.iter().filter(|m| m.active).count();
    let policies = &ctx.genesis.policies;
    let (action, member, policy) = match Action::try_from(p.action) {
        Ok(Action::AddMember) => {
            let name_ok = !p.name.is_empty()
                && p.name.len() <= 63
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !name_ok {
                return Err(invalid(
                    "name must be a DNS label (lower-case letters, digits, '-')",
                ));
            }
            if current.iter().any(|m| m.name == p.name) {
                return Err(invalid(format!(
                    "a member named {} exists or existed: choose another name",
                    p.name
                )));
            }
            let node_key = hex::decode(&p.node_key)
                .ok()
                .filter(|k| Suite::Ed25519.check_public_key(k).is_ok());
            let Some(node_key) = node_key else {
                return Err(invalid("node_key must be a hex Ed25519 public key"));
            };
            let admin_ok = hex::decode(&p.admin_key)
                .ok()
                .is_some_and(|k| ctx.suite.check_public_key(&k).is_ok());
            if !admin_ok {
                return Err(invalid(format!(
                    "admin_key must be a hex {} public key",
                    ctx.suite
                )));
            }
            if !is_endpoint(&p.endpoint) {
                return Err(invalid("endpoint must be host:port"));
            }
            let node_key = hex::encode(&node_key);
            let admin_key = p.admin_key.to_ascii_lowercase();
            if current
                .iter()
                .any(|m| m.node_key == node_key || m.admin_key == admin_key)
            {
                return Err(invalid("node_key or admin_key is already used by a member"));
            }
            let member = MemberRec {
                name: p.name.clone(),
                node_id: node_id(ctx.suite, &hex::decode(&node_key).expect("checked")),
                node_key,
                endpoint: p.endpoint.clone(),
                admin_key,
                active: true,
            };
            let policy = policies.member_admission_policy(active);
            ("add-member", member, policy)
        }
        Ok(Action::RemoveMember) => {
            let Some(m) = current.iter().find(|m| m.active && m.name == p.name) else {
                return Err(invalid(format!("{} is not a current member", p.name)));
            };
            if active <= 1 {
                return Err(invalid("the last member cannot be removed"));
            }
            let mut m = m.clone();
            m.active = false;
            ("remove-member", m, policies.validator_change_policy(active))
        }
        _ => return Err(invalid("action must be ADD_MEMBER or REMOVE_MEMBER")),
    };
    // A threshold fixed at founding may exceed the members left after removals: cap it.
    let policy = match policy {
        Policy::OutOf(n, subs) => Policy::OutOf(n.min(active), subs),
        other => other,
    };
    let mut rec = ProposalRec {
        proposal_id: p.proposal_id.clone(),
        action: action.into(),
        member,
        policy: policy.to_string(),
        approvals: BTreeSet::new(),
        decided_height: 0,
    };
    // Proposing counts as the proposer's approval.
    vote(ctx, ov, env, &mut rec, proposer);
    ov.put(proposal_key(&rec.proposal_id), &rec);
    Ok(())
}

pub fn approve(
    ctx: &ChainCtx,
    ov: &mut Overlay<'_>,
    env: &Env,
    signer: &[u8],
    a: &ApproveProposal,
) -> Outcome {
    let member = member_signer(ctx, ov, signer)?;
    let Some(mut rec) = get(ov, &a.proposal_id) else {
        return Err(invalid(format!(
            "proposal {} does not exist",
            a.proposal_id
        )));
    };
    if rec.decided_height != 0 {
        return Err(invalid(format!(
            "proposal {} was decided at height {}",
            rec.proposal_id, rec.decided_height
        )));
    }
    if rec.approvals.contains(&format!("member:{member}")) {
        return Err(invalid(format!("{member} already approved this proposal")));
    }
    vote(ctx, ov, env, &mut rec, member);
    ov.put(proposal_key(&rec.proposal_id), &rec);
    Ok(())
}

fn vote(ctx: &ChainCtx, ov: &mut Overlay<'_>, env: &Env, rec: &mut ProposalRec, member: String) {
    rec.approvals.insert(format!("member:{member}"));
    let mut current = members(ctx, ov);
    let names = current
        .iter()
        .filter(|m| m.active)
        .map(|m| m.name.clone())
        .collect();
    let policy = Policy::parse(&rec.policy).expect("stored policies parse");
    if !policy.satisfied(&rec.approvals, &names) {
        return;
    }
    rec.decided_height = env.height;
    match current.iter_mut().find(|m| m.name == rec.member.name) {
        Some(m) => *m = rec.member.clone(),
        None => current.push(rec.member.clone()),
    }
    ov.put(MEMBERS.to_string(), &current);
    ov.changes.membership_changed = true;
}
