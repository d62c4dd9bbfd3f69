//! The pure steps of the LedgerNode pipeline: validate, build and status. No I/O.

use crate::crd::conditions::{self, Health};
use crate::crd::{Consortium, LedgerNode, LedgerNodeStatus, LedgerView, MemberCard, NodePhase};
use crate::keys::PublicKeys;
use crate::resources::config::{self, node_config_map};
use crate::resources::network_policy::{OperatorPeer, network_policy};
use crate::resources::service::{advertised_endpoint, headless_service, p2p_service};
use crate::resources::statefulset::{NodeInputs, statefulset};
use crate::resources::{names, service_monitor};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::DynamicObject;
use medledger_api::genesis::Genesis;

/// What validation concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The genesis lists this node with its keys: deploy it.
    Deploy { genesis_hash: String },
    /// Nothing is wrong, but something must happen first.
    Wait {
        phase: NodePhase,
        reason: &'static str,
        message: String,
    },
    /// A person must fix something.
    Broken {
        reason: &'static str,
        message: String,
    },
}

fn short(key: &str) -> &str {
    &key[..key.len().min(16)]
}

/// Is this node a member of its Consortium's genesis, with the keys it holds?
pub fn validate(node: &LedgerNode, consortium: Option<&Consortium>, keys: &PublicKeys) -> Verdict {
    let ns = node.namespace().unwrap_or_default();
    let cname = &node.spec.consortium_ref.name;
    let member = &node.spec.member_name;
    let Some(c) = consortium else {
        return Verdict::Wait {
            phase: NodePhase::Pending,
            reason: "ConsortiumNotFound",
            message: format!(
                "Consortium {cname} does not exist in namespace {ns}; apply it (the same object as in every member's cluster). Meanwhile status.memberCard shows what to list for member {member}"
            ),
        };
    };
    if c.spec.suite != node.spec.suite {
        return Verdict::Broken {
            reason: "SuiteMismatch",
            message: format!(
                "Consortium {cname} uses suite {}, but this node's admin key is {} (spec.suite); create a LedgerNode with suite {} for this consortium",
                c.spec.suite, node.spec.suite, c.spec.suite
            ),
        };
    }
    let Some(listed) = c.spec.member(member) else {
        return Verdict::Wait {
            phase: NodePhase::AwaitingGenesis,
            reason: "AwaitingMembership",
            message: format!(
                "member {member} is not in Consortium {cname}: add status.memberCard of this LedgerNode to the Consortium's spec.members in every member's cluster"
            ),
        };
    };
    if listed.node_key != keys.node_key {
        return Verdict::Broken {
            reason: "NodeKeyMismatch",
            message: format!(
                "Consortium {cname} lists nodeKey {}… for member {member}, but this node's key in Secret {} is {}…; correct the Consortium from status.memberCard, or reference the Secret holding the listed key",
                short(&listed.node_key),
                keys.node_secret,
                short(&keys.node_key)
            ),
        };
    }
    if listed.admin_key != keys.admin_key {
        return Verdict::Broken {
            reason: "AdminKeyMismatch",
            message: format!(
                "Consortium {cname} lists adminKey {}… for member {member}, but the admin key in Secret {} is {}…; correct the Consortium from status.memberCard, or reference the Secret holding the listed key",
                short(&listed.admin_key),
                keys.admin_secret,
                short(&keys.admin_key)
            ),
        };
    }
    match Genesis::from_spec(&c.spec.genesis_spec()) {
        Ok(g) => Verdict::Deploy {
            genesis_hash: hex::encode(g.hash()),
        },
        Err(e) => Verdict::Broken {
            reason: "InvalidConsortium",
            message: format!("Consortium {cname} is invalid: {e}"),
        },
    }
}

/// The children of a node, as they should be.
#[derive(Clone, Debug)]
pub struct Children {
    pub headless: Service,
    pub p2p: Service,
    pub network_policy: NetworkPolicy,
    /// Present once the genesis lists this node.
    pub workload: Option<Workload>,
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub config_map: ConfigMap,
    pub statefulset: StatefulSet,
    pub service_monitor: Option<DynamicObject>,
    /// A grown volume: the PVC to expand (a StatefulSet's claim templates cannot change).
    pub pvc_expansion: Option<PersistentVolumeClaim>,
}

/// What the build step needs from the cluster.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub existing_statefulset: Option<StatefulSet>,
    pub service_monitor_available: bool,
}

pub fn build(
    node: &LedgerNode,
    verdict: &Verdict,
    keys: &PublicKeys,
    seen: &Seen,
    operator: &OperatorPeer,
) -> Children {
    let workload = match verdict {
        Verdict::Deploy { genesis_hash } => {
            let config_map = node_config_map(node, genesis_hash);
            let config_yaml = config_map
                .data
                .as_ref()
                .and_then(|d| d.get(config::CONFIG_KEY))
                .cloned()
                .unwrap_or_default();
            let mut sts = statefulset(
                node,
                &NodeInputs {
                    genesis_hash,
                    config_yaml: &config_yaml,
                    key_secret: &keys.node_secret,
                },
            );
            let mut pvc_expansion = None;
            // Claim templates are immutable: keep the live ones, and grow the PVC itself.
            if let Some(live) = seen
                .existing_statefulset
                .as_ref()
                .and_then(|s| s.spec.volume_claim_templates.clone())
            {
                pvc_expansion = expansion(node, &live);
                sts.spec.volume_claim_templates = Some(live);
            }
            let service_monitor = (node.spec.monitoring.service_monitor
                && seen.service_monitor_available)
                .then(|| service_monitor::service_monitor(node));
            Some(Workload {
                config_map,
                statefulset: sts,
                service_monitor,
                pvc_expansion,
            })
        }
        _ => None,
    };
    Children {
        headless: headless_service(node),
        p2p: p2p_service(node),
        network_policy: network_policy(node, operator),
        workload,
    }
}

/// Bytes of a Kubernetes quantity (enough of the grammar for storage sizes).
pub fn quantity_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * mult)
}

/// The PVC patch that grows the data volume to the spec's size, when the spec asks for more
/// than the claim template holds.
fn expansion(node: &LedgerNode, live: &[PersistentVolumeClaim]) -> Option<PersistentVolumeClaim> {
    let template = live
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(crate::resources::statefulset::DATA_VOLUME))?;
    let current = template
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    let want = quantity_bytes(&node.spec.storage.size)?;
    if want <= quantity_bytes(&current.0)? {
        return None;
    }
    let mut pvc = PersistentVolumeClaim::default();
    pvc.metadata.name = Some(names::data_pvc(&node.name_any()));
    pvc.metadata.namespace = node.namespace();
    pvc.spec = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimSpec {
        resources: Some(k8s_openapi::api::core::v1::VolumeResourceRequirements {
            requests: Some(
                [(
                    "storage".to_string(),
                    Quantity(node.spec.storage.size.clone()),
                )]
                .into(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    });
    Some(pvc)
}

fn statefulset_ready(sts: &StatefulSet) -> Result<(), String> {
    let Some(st) = &sts.status else {
        return Err("the StatefulSet has no status yet".into());
    };
    if st.observed_generation.unwrap_or(0) < sts.metadata.generation.unwrap_or(0) {
        return Err("the StatefulSet controller has not seen the latest spec yet".into());
    }
    if let (Some(cur), Some(upd)) = (&st.current_revision, &st.update_revision)
        && cur != upd
    {
        return Err(format!("rolling out revision {upd}"));
    }
    if st.ready_replicas.unwrap_or(0) < 1 {
        return Err("waiting for the node's pod to become ready (it is ready once it has caught up with the chain)".into());
    }
    Ok(())
}

/// The status the node should have. `ledger` is left as it is: the poller owns it.
pub fn desired_status(
    node: &LedgerNode,
    keys: &PublicKeys,
    verdict: &Verdict,
    p2p: Option<&Service>,
    sts: Option<&StatefulSet>,
    now: Timestamp,
) -> LedgerNodeStatus {
    let current = node.status.clone().unwrap_or_default();
    let (phase, health, reason, message) = match verdict {
        Verdict::Wait { phase, reason, message } => (*phase, Health::Progressing, *reason, message.clone()),
        Verdict::Broken { reason, message } => (NodePhase::Degraded, Health::Degraded, *reason, message.clone()),
        Verdict::Deploy { .. } => match sts.map(statefulset_ready) {
            None => (NodePhase::Deploying, Health::Progressing, "Deploying", "creating the node's StatefulSet".to_string()),
            Some(Err(why)) => (NodePhase::Deploying, Health::Progressing, "Deploying", why),
            Some(Ok(())) => match &current.ledger {
                Some(LedgerView { role, .. }) if role == "unreachable" => (
                    NodePhase::Degraded,
                    Health::Degraded,
                    "NodeUnreachable",
                    "the pod is ready but the operator cannot reach its gRPC API on port 7050; check the NetworkPolicy and the node's logs".to_string(),
                ),
                Some(LedgerView { in_sync: false, .. }) => (
                    NodePhase::Running,
                    Health::Progressing,
                    "CatchingUp",
                    "the node is running and catching up with the chain".to_string(),
                ),
                _ => (NodePhase::Running, Health::Ready, "Running", "the node is running and in sync".to_string()),
            },
        },
    };
    let observed = conditions::triple(health, reason, &message);
    let generation = node.metadata.generation;
    LedgerNodeStatus {
        observed_generation: generation,
        phase: Some(phase),
        member_card: Some(MemberCard {
            name: node.spec.member_name.clone(),
            node_key: keys.node_key.clone(),
            admin_key: keys.admin_key.clone(),
            endpoint: advertised_endpoint(node, p2p),
        }),
        key_secret: Some(keys.node_secret.clone()),
        genesis_hash: match verdict {
            Verdict::Deploy { genesis_hash } => Some(genesis_hash.clone()),
            _ => current.genesis_hash.clone(),
        },
        ledger: None,
        conditions: conditions::merge(&current.conditions, &observed, generation, now),
    }
}

/// Whether `desired` differs from what the object has (ignoring the poller's `ledger`).
pub fn status_changed(node: &LedgerNode, desired: &LedgerNodeStatus) -> bool {
    let mut current = node.status.clone().unwrap_or_default();
    current.ledger = None;
    &current != desired
}
