//! Makes the peer transport and the Raft membership follow governance decisions.
//!
//! Every node rebuilds its peer table and the set of node keys its TLS server accepts from
//! the member list on chain whenever it changes. The leader also turns decisions into Raft
//! changes: an admitted member's node is added as a learner, caught up, then promoted to
//! voter; a removed member's node is taken out of the voters. Decisions are committed state,
//! so a new leader simply picks up whatever is still to do.

use crate::contracts::Overlay;
use crate::contracts::actor::{MemberRec, members};
use crate::ledger::ChainCtx;
use crate::node::Shared;
use crate::raft::Node;
use crate::transport::peers::PeerInfo;
use crate::transport::tls::AllowedKeys;
use openraft::ChangeMembers;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The peer table for the active members, with configured address overrides.
pub fn peer_infos(
    members: &[MemberRec],
    overrides: &BTreeMap<String, String>,
) -> HashMap<u64, PeerInfo> {
    members
        .iter()
        .filter(|m| m.active)
        .filter_map(|m| {
            let key: [u8; 32] = hex::decode(&m.node_key).ok()?.try_into().ok()?;
            let addr = overrides
                .get(&m.name)
                .cloned()
                .unwrap_or_else(|| m.endpoint.clone());
            Some((
                m.node_id,
                PeerInfo {
                    name: m.name.clone(),
                    addr,
                    key,
                },
            ))
        })
        .collect()
}

/// The member list as this node's committed state has it.
pub fn current_members(ctx: &ChainCtx, store: &crate::store::Store) -> Vec<MemberRec> {
    match store.read() {
        Ok(view) => members(ctx, &Overlay::new(&view)),
        Err(_) => crate::contracts::actor::genesis_members(ctx),
    }
}

/// The node key of `id` among the genesis validators and every member ever admitted: who
/// may have proposed a stored block.
pub fn node_key_in(ctx: &ChainCtx, members: &[MemberRec], id: u64) -> Option<Vec<u8>> {
    ctx.node_key(id).or_else(|| {
        members
            .iter()
            .find(|m| m.node_id == id)
            .and_then(|m| hex::decode(&m.node_key).ok())
    })
}

pub async fn follow(
    node: Arc<Shared>,
    allowed: AllowedKeys,
    overrides: BTreeMap<String, String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut head = node.head_rx.clone();
    let mut known: Vec<MemberRec> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = head.changed() => {}
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = current_members(&node.ctx, &node.store);
        if now != known {
            let infos = peer_infos(&now, &overrides);
            *allowed.write().expect("allowed keys lock") =
                infos.values().map(|p| p.key).collect::<HashSet<_>>();
            node.peers.set_infos(infos);
            tracing::info!(
                members = now.iter().filter(|m| m.active).count(),
                "peer table follows the member list on chain"
            );
            known = now;
        }
        let leading = node.raft.metrics().borrow().current_leader == Some(node.me);
        if leading && let Err(e) = reconcile_raft(&node, &known).await {
            tracing::warn!(error = %e, "Raft membership change pending; will retry");
        }
    }
}

/// One step towards a Raft voter set equal to the active members' nodes.
async fn reconcile_raft(node: &Shared, members: &[MemberRec]) -> Result<(), String> {
    let wanted: BTreeSet<u64> = members
        .iter()
        .filter(|m| m.active)
        .map(|m| m.node_id)
        .collect();
    let (voters, learners) = {
        let m = node.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<u64> = m.membership().voter_ids().collect();
        let learners: BTreeSet<u64> = m.membership().learner_ids().collect();
        (voters, learners)
    };
    for id in wanted.difference(&voters) {
        let Some(info) = node.peers.info(*id) else {
            continue;
        };
        if !learners.contains(id) {
            tracing::info!(node = id, member = %info.name, "adding admitted member's node as a learner");
            // Blocking: returns once the learner has caught up with the log.
            node.raft
                .add_learner(*id, Node { addr: info.addr }, true)
                .await
                .map_err(|e| e.to_string())?;
        }
        tracing::info!(node = id, member = %info.name, "promoting to voter");
        node.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    let gone: BTreeSet<u64> = voters.difference(&wanted).copied().collect();
    if !gone.is_empty() && gone.len() < voters.len() {
        tracing::info!(nodes = ?gone, "removing removed members' nodes from the voters");
        node.raft
            .change_membership(ChangeMembers::RemoveVoters(gone), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
