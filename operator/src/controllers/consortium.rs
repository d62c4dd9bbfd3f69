//! The Consortium controller.
//!
//! 1. dereference: the LedgerNodes of this namespace that serve the consortium;
//! 2. validate (pure): derive the genesis with `medledger-api` — the same check every node runs;
//! 3. build (pure): the genesis ConfigMap and the validators' PodDisruptionBudget;
//! 4. apply: server-side apply under one field manager;
//! 5. status: genesis hash, every member with its readiness as seen from this cluster.

use super::{Context, apply, apply_status, object_key, report_invalid};
use crate::crd::conditions::{self, Health};
use crate::crd::{
    Consortium, ConsortiumPhase, ConsortiumStatus, LedgerNode, MemberState, MemberStatus,
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

impl Error {
    pub fn metric_label(&self) -> &'static str {
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

/// Validate: the genesis, or why there is none.
pub fn validate(c: &Consortium) -> Result<Genesis, GenesisError> {
    Genesis::from_spec(&c.spec.genesis_spec())
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
                node_id: m.node_id,
                state,
                ledger_node: node.map(|n| n.name_any()),
            }
        })
        .collect()
}

pub fn desired_status(
    c: &Consortium,
    verdict: &Result<Genesis, GenesisError>,
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
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let c = match &guard.0 {
        Ok(c) => c,
        Err(invalid) => {
            return Ok(report_invalid(&ctx, CONTROLLER, guard.as_ref(), &invalid.error).await);
        }
    };
    match reconcile_consortium(c, &ctx).await {
        Ok(a) => {
            ctx.succeeded(&object_key(c));
            Ok(a)
        }
        Err(e) => {
            ctx.event(c, EventType::Warning, e.metric_label(), e.to_string())
                .await;
            Err(e)
        }
    }
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<Consortium>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.failure(CONTROLLER, error.metric_label());
    tracing::warn!(object = %object_key(guard.as_ref()), error = %error, "reconcile failed");
    ctx.backoff(object_key(guard.as_ref()), false)
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
    if let Ok(genesis) = &verdict {
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
mod tests {
    use super::*;
    use crate::controllers::testing::FakeApi;
    use crate::crd::conditions::{DEGRADED, READY, find, is_true};
    use crate::crd::{LedgerNodeStatus, MemberCard};
    use crate::resources::fixtures::{consortium, key_hex, node};
    use medledger_api::crypto::Suite as ApiSuite;

    const NS: &str = "hospital-a";

    /// 64 lower-case hex characters (so it passes the CEL rules) that are not a curve point.
    fn not_a_point() -> String {
        (1u8..=255)
            .map(|b| [b; 32])
            .find(|k| ApiSuite::Ed25519.check_public_key(k).is_err())
            .map(hex::encode)
            .expect("some byte pattern is not a point")
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// node-a serving hospital-a with `node_key`, Ready or not.
    fn local_node(node_key: &str, ready: bool) -> LedgerNode {
        let mut n = node();
        n.status = Some(LedgerNodeStatus {
            member_card: Some(MemberCard {
                name: "hospital-a".into(),
                node_key: node_key.into(),
                admin_key: String::new(),
                endpoint: String::new(),
            }),
            conditions: conditions::merge(
                &[],
                &conditions::triple(
                    if ready {
                        Health::Ready
                    } else {
                        Health::Progressing
                    },
                    "x",
                    "x",
                ),
                None,
                t(0),
            ),
            ..Default::default()
        });
        n
    }

    #[test]
    fn members_are_ready_not_ready_mismatched_or_remote() {
        let key = key_hex(ApiSuite::Ed25519);
        let c = consortium(&key, 3);
        let g = validate(&c).unwrap();
        let states = |nodes: &[LedgerNode]| {
            member_states(&c, &g, nodes)
                .into_iter()
                .map(|m| (m.name, m.state))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            states(&[local_node(&key, true)]),
            [
                ("hospital-a".into(), MemberState::Ready),
                ("hospital-b".into(), MemberState::Remote),
                ("hospital-c".into(), MemberState::Remote)
            ]
        );
        assert_eq!(
            states(&[local_node(&key, false)])[0].1,
            MemberState::NotReady
        );
        assert_eq!(
            states(&[local_node(&key_hex(ApiSuite::Ed25519), true)])[0].1,
            MemberState::KeyMismatch
        );
        assert_eq!(states(&[])[0].1, MemberState::Remote);
        let ids: Vec<u64> = member_states(&c, &g, &[])
            .iter()
            .map(|m| m.node_id)
            .collect();
        assert!(ids.iter().all(|id| *id != 0));
    }

    #[test]
    fn status_shows_the_genesis_and_local_readiness() {
        let key = key_hex(ApiSuite::Ed25519);
        let mut c = consortium(&key, 3);
        let verdict = validate(&c);
        let s = desired_status(&c, &verdict, &[local_node(&key, false)], t(0));
        assert_eq!(s.phase, Some(ConsortiumPhase::Pending));
        assert_eq!(
            s.genesis_hash,
            Some(hex::encode(verdict.as_ref().unwrap().hash()))
        );
        assert_eq!(s.genesis_config_map.as_deref(), Some("emr-genesis"));
        assert_eq!((s.member_count, s.ready_local_members), (Some(3), Some(0)));
        c.status = Some(s);
        let s = desired_status(&c, &verdict, &[local_node(&key, true)], t(10));
        assert_eq!(s.phase, Some(ConsortiumPhase::Ready));
        assert!(is_true(&s.conditions, READY));
        assert_eq!(
            find(&s.conditions, READY).unwrap().last_transition_time.0,
            t(10)
        );
        c.status = Some(s.clone());
        // Steady: recomputing later changes nothing, so nothing is written.
        assert_eq!(
            desired_status(&c, &verdict, &[local_node(&key, true)], t(999)),
            s
        );
        let s = desired_status(
            &c,
            &verdict,
            &[local_node(&key_hex(ApiSuite::Ed25519), true)],
            t(20),
        );
        assert_eq!(s.phase, Some(ConsortiumPhase::Degraded));
        assert_eq!(find(&s.conditions, DEGRADED).unwrap().reason, "KeyMismatch");
    }

    #[test]
    fn an_invalid_consortium_says_what_is_wrong() {
        let mut c = consortium(&key_hex(ApiSuite::Ed25519), 2);
        // Passes the CEL rules (64 lower-case hex) but is not a point of the curve.
        c.spec.members[1].node_key = not_a_point();
        let verdict = validate(&c);
        assert!(verdict.is_err());
        let s = desired_status(&c, &verdict, &[], t(0));
        assert_eq!(s.phase, Some(ConsortiumPhase::Invalid));
        assert!(s.genesis_hash.is_none());
        let msg = &find(&s.conditions, DEGRADED).unwrap().message;
        assert!(
            msg.contains("nodeKey") && msg.contains("hospital-b"),
            "{msg}"
        );
    }

    #[test]
    fn the_genesis_is_the_same_bytes_whatever_the_member_order() {
        let c = consortium(&key_hex(ApiSuite::Ed25519), 4);
        let mut reversed = c.clone();
        reversed.spec.members.reverse();
        let a = build(&c, &validate(&c).unwrap());
        let b = build(&reversed, &validate(&reversed).unwrap());
        assert_eq!(a.genesis.data, b.genesis.data);
    }

    #[tokio::test]
    async fn reconcile_writes_genesis_pdb_and_status_then_stays_quiet() {
        let api = FakeApi::new();
        let ctx = api.context();
        let key = key_hex(ApiSuite::Ed25519);
        let c = consortium(&key, 3);
        let path = FakeApi::path("apis/medledger.io/v1alpha1", NS, "consortia", "emr");
        api.put(&path, serde_json::to_value(&c).unwrap());
        api.put(
            &FakeApi::path("apis/medledger.io/v1alpha1", NS, "ledgernodes", "node-a"),
            serde_json::to_value(local_node(&key, true)).unwrap(),
        );
        let stored = || -> Consortium { serde_json::from_value(api.get(&path).unwrap()).unwrap() };
        reconcile(Arc::new(DeserializeGuard(Ok(stored()))), ctx.clone())
            .await
            .unwrap();

        let cm = api
            .get(&FakeApi::path("api/v1", NS, "configmaps", "emr-genesis"))
            .unwrap();
        let bytes = cm["data"]["genesis.json"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec();
        let g = Genesis::from_bytes(&bytes).unwrap();
        let status = stored().status.unwrap();
        assert_eq!(status.genesis_hash, Some(hex::encode(g.hash())));
        assert_eq!(status.phase, Some(ConsortiumPhase::Ready));
        assert_eq!(status.members[0].state, MemberState::Ready);
        assert_eq!(status.members[0].ledger_node.as_deref(), Some("node-a"));
        assert!(
            api.get(&FakeApi::path(
                "apis/policy/v1",
                NS,
                "poddisruptionbudgets",
                "emr-ledger"
            ))
            .is_some()
        );
        assert!(ctx.metrics.render().contains(
            r#"medledger_consortium_ready_members{consortium="emr",namespace="hospital-a"} 1"#
        ));

        api.clear_requests();
        reconcile(Arc::new(DeserializeGuard(Ok(stored()))), ctx.clone())
            .await
            .unwrap();
        assert!(
            !api.writes()
                .iter()
                .any(|(_, p)| p.ends_with("/status") || p.contains("/events")),
            "{:?}",
            api.writes()
        );
    }

    #[tokio::test]
    async fn an_invalid_consortium_gets_no_genesis_and_a_warning() {
        let api = FakeApi::new();
        let ctx = api.context();
        let mut c = consortium(&key_hex(ApiSuite::Ed25519), 2);
        c.spec.members[1].node_key = not_a_point();
        let path = FakeApi::path("apis/medledger.io/v1alpha1", NS, "consortia", "emr");
        api.put(&path, serde_json::to_value(&c).unwrap());
        let c: Consortium = serde_json::from_value(api.get(&path).unwrap()).unwrap();
        reconcile(Arc::new(DeserializeGuard(Ok(c))), ctx)
            .await
            .unwrap();
        assert!(
            api.get(&FakeApi::path("api/v1", NS, "configmaps", "emr-genesis"))
                .is_none()
        );
        let status: Consortium = serde_json::from_value(api.get(&path).unwrap()).unwrap();
        assert_eq!(status.status.unwrap().phase, Some(ConsortiumPhase::Invalid));
        assert!(
            api.events()
                .iter()
                .any(|(r, n)| r == "InvalidSpec" && n.contains("nodeKey")),
            "{:?}",
            api.events()
        );
    }
}
