//! Who signed a transaction: a member's administrator, a validator node, or a participant
//! registered by a member. Membership is the genesis as changed by governance decisions.

use super::Overlay;
use super::identity::{ParticipantRec, participant};
use crate::ledger::ChainCtx;
use serde::{Deserialize, Serialize};

/// One member (hospital) as currently known on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRec {
    pub name: String,
    pub node_id: u64,
    /// Hex, as in the genesis.
    pub node_key: String,
    pub endpoint: String,
    pub admin_key: String,
    pub active: bool,
}

pub const MEMBERS: &str = "members";

/// The member list: the genesis until the first governance decision, then what decisions
/// made of it (removed members stay, inactive, so history still resolves).
pub fn members(ctx: &ChainCtx, ov: &Overlay<'_>) -> Vec<MemberRec> {
    ov.get(MEMBERS).unwrap_or_else(|| genesis_members(ctx))
}

pub fn genesis_members(ctx: &ChainCtx) -> Vec<MemberRec> {
    ctx.genesis
        .members
        .iter()
        .map(|m| MemberRec {
            name: m.name.clone(),
            node_id: m.node_id,
            node_key: m.node_key.clone(),
            endpoint: m.endpoint.clone(),
            admin_key: m.admin_key.clone(),
            active: true,
        })
        .collect()
}

pub fn active_member<'m>(members: &'m [MemberRec], name: &str) -> Option<&'m MemberRec> {
    members.iter().find(|m| m.active && m.name == name)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Actor {
    /// A member's administrator key.
    Member(String),
    /// A validator node's key, acting for its member.
    Node(String),
    Participant(ParticipantRec),
}

impl Actor {
    /// The member an actor belongs to or acts for.
    pub fn member(&self) -> &str {
        match self {
            Actor::Member(m) | Actor::Node(m) => m,
            Actor::Participant(p) => &p.member,
        }
    }

    pub fn role(&self) -> &str {
        match self {
            Actor::Member(_) => "member",
            Actor::Node(_) => "node",
            Actor::Participant(p) => &p.role,
        }
    }
}

/// Resolves a signer, or None for a key that is not (or no longer) known.
pub fn resolve(ctx: &ChainCtx, ov: &Overlay<'_>, key: &[u8]) -> Option<Actor> {
    if let Some(p) = participant(ov, key) {
        return Some(Actor::Participant(p));
    }
    let hex_key = hex::encode(key);
    // Fast path: the genesis admins, unless a decision changed the member list.
    if ov.get::<Vec<MemberRec>>(MEMBERS).is_none()
        && let Some(name) = ctx.admins.get(key)
    {
        return Some(Actor::Member(name.clone()));
    }
    let members = members(ctx, ov);
    members.iter().filter(|m| m.active).find_map(|m| {
        if m.admin_key == hex_key {
            Some(Actor::Member(m.name.clone()))
        } else if m.node_key == hex_key {
            Some(Actor::Node(m.name.clone()))
        } else {
            None
        }
    })
}

/// The Ed25519 key of a validator node that is or ever was a member's: whoever proposed a
/// block while it was the Raft leader.
pub fn node_key_of(ctx: &ChainCtx, ov: &Overlay<'_>, node_id: u64) -> Option<Vec<u8>> {
    // Genesis validators are found without a state read.
    ctx.node_key(node_id)
        .or_else(|| crate::membership::node_key_in(ctx, &members(ctx, ov), node_id))
}
