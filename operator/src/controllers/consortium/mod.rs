//! The Consortium controller.
//!
//! 1. dereference: the LedgerNodes of this namespace that serve the consortium;
//! 2. validate (pure): derive the genesis with `medledger-api` — the same check every node runs;
//! 3. build (pure): the genesis ConfigMap and the validators' PodDisruptionBudget;
//! 4. apply: server-side apply under one field manager;
//! 5. status: genesis hash, every member with its readiness as seen from this cluster.

use super::{Context, ReconcileError, apply, apply_status};
use crate::crd::conditions::{self, Health};
use crate::crd::{
    Consortium, ConsortiumPhase, ConsortiumStatus, EffectivePolicies, LedgerNode, MemberState,
    MemberStatus,
};
use crate::resources::config::genesis_config_map;
use crate::resources::names;
use crate::resources::pdb::consortium_pdb;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use medledger_api::genesis::{Genesis, GenesisError};
use std::sync::Arc;

pub const CONTROLLER: &str = "consortium";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot list the LedgerNodes of namespace {namespace}: {source}")]
    ListNodes {
        namespace: String,
        source: kube::Error,
    },
    #[error("cannot apply {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("cannot write the status: {0}")]
    Status(kube::Error),
}

impl ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::ListNodes { .. } => "ListNodes",
            Error::Apply { .. } => "Apply",
            Error::Status(_) => "Status",
        }
    }
}

/// The children of a valid consortium.
#[derive(Clone, Debug)]
pub struct Children {
    pub genesis: ConfigMap,
    pub pdb: PodDisruptionBudget,
}

/// A consortium that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Valid {
    pub genesis: Genesis,
    pub policies: EffectivePolicies,
}

impl std::ops::Deref for Valid {
    type Target = Genesis;
    fn deref(&self) -> &Genesis {
        &self.genesis
    }
}

/// Validate: the genesis (the same checks every node runs) and the policies, or what is wrong.
pub fn validate(c: &Consortium) -> Result<Valid, String> {
    let genesis =
        Genesis::from_spec(&c.spec.genesis_spec()).map_err(|e: GenesisError| e.to_string())?;
    let policies = c.spec.policies.resolve(c.spec.members.len())?;
    Ok(Valid { genesis, policies })
}

pub fn build(c: &Consortium, genesis: &Genesis) -> Children {
    Children {
        genesis: genesis_config_map(c, genesis),
        pdb: consortium_pdb(c),
    }
}

/// Each member's state as this cluster sees it.
pub fn member_states(
    c: &Consortium,
    genesis: &Genesis,
    local_nodes: &[LedgerNode],
) -> Vec<MemberStatus> {
    let name = c.name_any();
    genesis
        .members
        .iter()
        .map(|m| {
            let node = local_nodes
                .iter()
                .filter(|n| n.spec.consortium_ref.name == name && n.spec.member_name == m.name)
                .min_by_key(|n| n.name_any());
            let state = match node {
                None => MemberState::Remote,
                Some(n) => {
                    let status = n.status.clone().unwrap_or_default();
                    match &status.member_card {
                        Some(card) if card.node_key != m.node_key => MemberState::KeyMismatch,
                        _ if conditions::is_true(&status.conditions, conditions::READY) => {
                            MemberState::Ready
                        }
                        _ => MemberState::NotReady,
                    }
                }
            };
            MemberStatus {
                name: m.name.clone(),
                node_id: m.node_id.to_string(),
                state,
                ledger_node: node.map(|n| n.name_any()),
            }
        })
        .collect()
}

pub fn desired_status(
    c: &Consortium,
    verdict: &Result<Valid, String>,
    local_nodes: &[LedgerNode],
    now: Timestamp,
) -> ConsortiumStatus {
    let current = c.status.clone().unwrap_or_default();
    let generation = c.metadata.generation;
    let (status, health, reason, message) = match verdict {
        Err(e) => (
            ConsortiumStatus {
                phase: Some(ConsortiumPhase::Invalid),
                member_count: Some(c.spec.members.len() as i32),
                ..Default::default()
            },
            Health::Degraded,
            "InvalidSpec",
            format!("{e}; fix the Consortium (it is the same object in every member's cluster)"),
        ),
        Ok(genesis) => {
            let members = member_states(c, genesis, local_nodes);
            let count = |s: MemberState| members.iter().filter(|m| m.state == s).count();
            let local = members
                .iter()
                .filter(|m| m.state != MemberState::Remote)
                .count();
            let (ready, mismatch) = (count(MemberState::Ready), count(MemberState::KeyMismatch));
            let (phase, health, reason, message) = if mismatch > 0 {
                (
                    ConsortiumPhase::Degraded,
                    Health::Degraded,
                    "KeyMismatch",
                    format!(
                        "{mismatch} local LedgerNode(s) hold keys other than the ones listed for their member; see their status"
                    ),
                )
            } else if ready < local {
                (
                    ConsortiumPhase::Pending,
                    Health::Progressing,
                    "MembersNotReady",
                    format!("{ready} of {local} local members ready"),
                )
            } else {
                (
                    ConsortiumPhase::Ready,
                    Health::Ready,
                    "GenesisDerived",
                    format!(
                        "genesis derived; {ready} of {local} local members ready, {} remote",
                        members.len() - local
                    ),
                )
            };
            (
                ConsortiumStatus {
                    phase: Some(phase),
                    genesis_hash: Some(hex::encode(genesis.hash())),
                    policies: Some(genesis.policies.clone()),
                    genesis_config_map: Some(names::genesis_config_map(&c.name_any())),
                    member_count: Some(members.len() as i32),
                    ready_local_members: Some(ready as i32),
                    members,
                    ..Default::default()
                },
                health,
                reason,
                message,
            )
        }
    };
    let observed = conditions::triple(health, reason, &message);
    ConsortiumStatus {
        observed_generation: generation,
        conditions: conditions::merge(&current.conditions, &observed, generation, now),
        ..status
    }
}

pub async fn reconcile(
    guard: Arc<DeserializeGuard<Consortium>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::run_reconcile(CONTROLLER, &guard, &ctx, |c| reconcile_consortium(c, &ctx)).await
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<Consortium>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    super::error_policy_for(CONTROLLER, &guard, error, &ctx)
}

async fn reconcile_consortium(c: &Consortium, ctx: &Context) -> Result<Action, Error> {
    let client = &ctx.client;
    let ns = c.namespace().unwrap_or_default();
    let name = c.name_any();

    // 1. dereference: the LedgerNodes that may serve this consortium. Malformed ones are
    // skipped here (their own controller reports them).
    let nodes: Vec<LedgerNode> =
        Api::<DeserializeGuard<LedgerNode>>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(|source| Error::ListNodes {
                namespace: ns.clone(),
                source,
            })?
            .items
            .into_iter()
            .filter_map(|g| g.0.ok())
            .filter(|n| n.spec.consortium_ref.name == name)
            .collect();

    // 2. validate
    let verdict = validate(c);

    // 3. build and 4. apply
    if let Ok(valid) = &verdict {
        let genesis = &valid.genesis;
        let children = build(c, genesis);
        apply(client, &children.genesis)
            .await
            .map_err(|source| Error::Apply {
                kind: "ConfigMap",
                name: children.genesis.name_any(),
                source,
            })?;
        apply(client, &children.pdb)
            .await
            .map_err(|source| Error::Apply {
                kind: "PodDisruptionBudget",
                name: children.pdb.name_any(),
                source,
            })?;
    }

    // 5. status
    let desired = desired_status(c, &verdict, &nodes, Timestamp::now());
    ctx.metrics
        .consortium_members
        .with_label_values(&[&ns, &name])
        .set(c.spec.members.len() as i64);
    ctx.metrics
        .consortium_ready_members
        .with_label_values(&[&ns, &name])
        .set(desired.ready_local_members.unwrap_or(0) as i64);
    ctx.metrics
        .consortium_key_mismatches
        .with_label_values(&[&ns, &name])
        .set(
            desired
                .members
                .iter()
                .filter(|m| m.state == MemberState::KeyMismatch)
                .count() as i64,
        );
    if c.status.as_ref() != Some(&desired) {
        let old_phase = c.status.as_ref().and_then(|s| s.phase);
        apply_status(
            client,
            c,
            serde_json::to_value(&desired).expect("status serializes"),
        )
        .await
        .map_err(Error::Status)?;
        if old_phase != desired.phase {
            let (reason, message) = conditions::find(&desired.conditions, conditions::READY)
                .map(|c| (c.reason.clone(), c.message.clone()))
                .unwrap_or_default();
            let type_ = if desired.phase == Some(ConsortiumPhase::Invalid)
                || desired.phase == Some(ConsortiumPhase::Degraded)
            {
                EventType::Warning
            } else {
                EventType::Normal
            };
            ctx.event(c, type_, &reason, message).await;
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
