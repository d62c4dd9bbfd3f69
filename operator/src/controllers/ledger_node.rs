//! The LedgerNode controller.
//!
//! 1. dereference: the node's keys (generated once into a Secret when none is referenced), its
//!    Consortium, and the children whose live state matters (p2p Service, StatefulSet);
//! 2. validate (pure): is this node a member of the Consortium's genesis, with these keys?
//! 3. build (pure): Services and NetworkPolicy always (so the member card's endpoint exists
//!    before the consortium does), ConfigMap, StatefulSet and ServiceMonitor once admitted;
//! 4. apply: server-side apply under one field manager; a disabled ServiceMonitor is deleted;
//! 5. status: member card, phase and conditions, written only when they change.

use super::{
    Context, apply, apply_dynamic, apply_status, delete_if_exists, object_key, report_invalid,
};
use crate::crd::conditions::{self, Health};
use crate::crd::{Consortium, LedgerNode, LedgerNodeStatus, LedgerView, MemberCard, NodePhase};
use crate::keys::{self, KeyError, PublicKeys};
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
use kube::api::{Api, DynamicObject};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use medledger_api::genesis::Genesis;
use std::sync::Arc;

pub const CONTROLLER: &str = "ledgernode";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot read {kind} {name}: {source}")]
    Read {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("cannot apply {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("cannot delete {kind} {name}: {source}")]
    Delete {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("cannot write the status: {0}")]
    Status(kube::Error),
}

impl Error {
    /// The variant name: the `error` label of the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Keys(e) => e.metric_label(),
            Error::Read { .. } => "Read",
            Error::Apply { .. } => "Apply",
            Error::Delete { .. } => "Delete",
            Error::Status(_) => "Status",
        }
    }

    pub fn needs_user(&self) -> bool {
        matches!(self, Error::Keys(e) if e.needs_user())
    }
}

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

/// Entry point of the controller runtime.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<LedgerNode>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let node = match &guard.0 {
        Ok(node) => node,
        Err(invalid) => {
            return Ok(report_invalid(&ctx, CONTROLLER, guard.as_ref(), &invalid.error).await);
        }
    };
    match reconcile_node(node, &ctx).await {
        Ok(action) => {
            ctx.succeeded(&object_key(node));
            Ok(action)
        }
        Err(e) => {
            ctx.event(node, EventType::Warning, e.metric_label(), e.to_string())
                .await;
            Err(e)
        }
    }
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<LedgerNode>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.failure(CONTROLLER, error.metric_label());
    tracing::warn!(object = %object_key(guard.as_ref()), error = %error, "reconcile failed");
    ctx.backoff(object_key(guard.as_ref()), error.needs_user())
}

async fn get_opt<K>(
    client: &Client,
    ns: &str,
    name: &str,
    kind: &'static str,
) -> Result<Option<K>, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|source| Error::Read {
            kind,
            name: name.to_string(),
            source,
        })
}

async fn apply_child<K>(client: &Client, obj: &K, kind: &'static str) -> Result<K, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    apply(client, obj).await.map_err(|source| Error::Apply {
        kind,
        name: obj.name_any(),
        source,
    })
}

async fn reconcile_node(node: &LedgerNode, ctx: &Context) -> Result<Action, Error> {
    let client = &ctx.client;
    let ns = node.namespace().unwrap_or_default();
    let name = node.name_any();

    // 1. dereference
    let keys = keys::ensure_keys(client, node).await?;
    if keys.generated {
        tracing::info!(node = %object_key(node), node_key = %keys.node_key, "generated node and admin keys");
        let note = format!(
            "generated node key {} and admin key {} into Secret {} (public halves shown; the Secret is never overwritten)",
            keys.node_key, keys.admin_key, keys.node_secret
        );
        ctx.event(node, EventType::Normal, "KeysGenerated", note)
            .await;
    }
    let consortium: Option<Consortium> =
        get_opt(client, &ns, &node.spec.consortium_ref.name, "Consortium").await?;

    // 2. validate
    let verdict = validate(node, consortium.as_ref(), &keys);
    let deploy = matches!(verdict, Verdict::Deploy { .. });
    let seen = Seen {
        existing_statefulset: if deploy {
            get_opt(client, &ns, &names::statefulset(&name), "StatefulSet").await?
        } else {
            None
        },
        service_monitor_available: deploy
            && node.spec.monitoring.service_monitor
            && ctx.service_monitor_available().await,
    };

    // 3. build
    let children = build(node, &verdict, &keys, &seen, &ctx.operator);

    // 4. apply
    apply_child(client, &children.headless, "Service").await?;
    let p2p = apply_child(client, &children.p2p, "Service").await?;
    apply_child(client, &children.network_policy, "NetworkPolicy").await?;
    let mut sts = seen.existing_statefulset.clone();
    if let Some(w) = &children.workload {
        apply_child(client, &w.config_map, "ConfigMap").await?;
        sts = Some(apply_child(client, &w.statefulset, "StatefulSet").await?);
        if let Some(pvc) = &w.pvc_expansion {
            apply_child(client, pvc, "PersistentVolumeClaim").await?;
        }
        if let Some(sm) = &w.service_monitor {
            apply_dynamic(client, sm, &service_monitor::api_resource())
                .await
                .map_err(|source| Error::Apply {
                    kind: "ServiceMonitor",
                    name: name.clone(),
                    source,
                })?;
        }
    }
    if !node.spec.monitoring.service_monitor && ctx.service_monitor_available().await {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &service_monitor::api_resource());
        delete_if_exists(&api, &names::service_monitor(&name))
            .await
            .map_err(|source| Error::Delete {
                kind: "ServiceMonitor",
                name: name.clone(),
                source,
            })?;
    }

    // 5. status
    let desired = desired_status(
        node,
        &keys,
        &verdict,
        Some(&p2p),
        sts.as_ref(),
        Timestamp::now(),
    );
    if status_changed(node, &desired) {
        let old_phase = node.status.as_ref().and_then(|s| s.phase);
        apply_status(
            client,
            node,
            serde_json::to_value(&desired).expect("status serializes"),
        )
        .await
        .map_err(Error::Status)?;
        if old_phase != desired.phase {
            let ready = conditions::find(&desired.conditions, conditions::READY);
            let note = ready.map(|c| c.message.clone()).unwrap_or_default();
            let (type_, reason) = match &verdict {
                Verdict::Broken { reason, .. } => (EventType::Warning, *reason),
                Verdict::Wait { reason, .. } => (EventType::Normal, *reason),
                Verdict::Deploy { .. } => (
                    EventType::Normal,
                    ready.map(|c| c.reason.as_str()).unwrap_or("Deploying"),
                ),
            };
            ctx.event(node, type_, reason, note).await;
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::FakeApi;
    use crate::crd::conditions::{DEGRADED, PROGRESSING, READY, find, is_true};
    use crate::resources::fixtures::{consortium, key_hex, node};
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use medledger_api::crypto::Suite as ApiSuite;
    use medledger_api::keys::SigningKey;
    use serde_json::{Value, json};

    fn keys_for(node_key: &str, admin_key: &str) -> PublicKeys {
        PublicKeys {
            node_key: node_key.into(),
            admin_key: admin_key.into(),
            node_secret: "node-a-keys".into(),
            admin_secret: "node-a-keys".into(),
            generated: false,
        }
    }

    /// A consortium listing node-a (as hospital-a) with `keys`, plus other members.
    fn admitted(keys: &PublicKeys, members: usize) -> Consortium {
        let mut c = consortium(&keys.node_key, members);
        c.spec.members[0].admin_key = keys.admin_key.clone();
        c
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn ready_sts() -> StatefulSet {
        let mut s = StatefulSet::default();
        s.metadata.generation = Some(1);
        s.status = Some(StatefulSetStatus {
            observed_generation: Some(1),
            ready_replicas: Some(1),
            current_revision: Some("r1".into()),
            update_revision: Some("r1".into()),
            replicas: 1,
            ..Default::default()
        });
        s
    }

    #[test]
    fn validation_explains_every_way_a_node_is_not_deployable() {
        let n = node();
        let keys = keys_for(&key_hex(ApiSuite::Ed25519), &key_hex(ApiSuite::Ed25519));
        let verdict = validate(&n, None, &keys);
        assert!(
            matches!(&verdict, Verdict::Wait { phase: NodePhase::Pending, reason: "ConsortiumNotFound", message } if message.contains("apply it"))
        );

        let stranger = consortium(&key_hex(ApiSuite::Ed25519), 2);
        let mut not_listed = stranger.clone();
        not_listed.spec.members.remove(0);
        assert!(matches!(
            validate(&n, Some(&not_listed), &keys),
            Verdict::Wait {
                phase: NodePhase::AwaitingGenesis,
                reason: "AwaitingMembership",
                ..
            }
        ));

        match validate(&n, Some(&stranger), &keys) {
            Verdict::Broken {
                reason: "NodeKeyMismatch",
                message,
            } => assert!(message.contains("status.memberCard"), "{message}"),
            other => panic!("{other:?}"),
        }
        let mut wrong_admin = admitted(&keys, 2);
        wrong_admin.spec.members[0].admin_key = key_hex(ApiSuite::Ed25519);
        assert!(matches!(
            validate(&n, Some(&wrong_admin), &keys),
            Verdict::Broken {
                reason: "AdminKeyMismatch",
                ..
            }
        ));

        let mut sm = admitted(&keys, 2);
        sm.spec.suite = crate::crd::Suite::Sm;
        match validate(&n, Some(&sm), &keys) {
            Verdict::Broken {
                reason: "SuiteMismatch",
                message,
            } => assert!(message.contains("suite sm")),
            other => panic!("{other:?}"),
        }

        let mut bad = admitted(&keys, 2);
        bad.spec.members[1].endpoint = "nohost".into();
        assert!(matches!(
            validate(&n, Some(&bad), &keys),
            Verdict::Broken {
                reason: "InvalidConsortium",
                ..
            }
        ));

        let good = admitted(&keys, 3);
        let hash = hex::encode(
            Genesis::from_spec(&good.spec.genesis_spec())
                .unwrap()
                .hash(),
        );
        assert_eq!(
            validate(&n, Some(&good), &keys),
            Verdict::Deploy { genesis_hash: hash }
        );
    }

    #[test]
    fn before_admission_only_the_network_objects_exist() {
        let keys = keys_for("aa", "bb");
        let wait = Verdict::Wait {
            phase: NodePhase::AwaitingGenesis,
            reason: "AwaitingMembership",
            message: String::new(),
        };
        let c = build(
            &node(),
            &wait,
            &keys,
            &Seen::default(),
            &OperatorPeer::default(),
        );
        assert!(c.workload.is_none());
        assert_eq!(c.p2p.metadata.name.as_deref(), Some("node-a-p2p"));
    }

    #[test]
    fn admitted_nodes_get_a_workload_and_a_service_monitor_only_where_the_crd_exists() {
        let keys = keys_for("aa", "bb");
        let deploy = Verdict::Deploy {
            genesis_hash: "ab".repeat(32),
        };
        let c = build(
            &node(),
            &deploy,
            &keys,
            &Seen::default(),
            &OperatorPeer::default(),
        );
        let w = c.workload.unwrap();
        assert!(w.service_monitor.is_none());
        assert!(w.pvc_expansion.is_none());
        assert!(w.config_map.data.unwrap()["node.yaml"].contains(&"ab".repeat(32)));
        let seen = Seen {
            existing_statefulset: None,
            service_monitor_available: true,
        };
        assert!(
            build(&node(), &deploy, &keys, &seen, &OperatorPeer::default())
                .workload
                .unwrap()
                .service_monitor
                .is_some()
        );
        let mut off = node();
        off.spec.monitoring.service_monitor = false;
        assert!(
            build(&off, &deploy, &keys, &seen, &OperatorPeer::default())
                .workload
                .unwrap()
                .service_monitor
                .is_none()
        );
    }

    #[test]
    fn a_grown_volume_expands_the_pvc_and_keeps_the_claim_templates() {
        let keys = keys_for("aa", "bb");
        let deploy = Verdict::Deploy {
            genesis_hash: "ab".into(),
        };
        let first = build(
            &node(),
            &deploy,
            &keys,
            &Seen::default(),
            &OperatorPeer::default(),
        )
        .workload
        .unwrap()
        .statefulset;
        let mut grown = node();
        grown.spec.storage.size = "20Gi".into();
        let seen = Seen {
            existing_statefulset: Some(first.clone()),
            service_monitor_available: false,
        };
        let w = build(&grown, &deploy, &keys, &seen, &OperatorPeer::default())
            .workload
            .unwrap();
        assert_eq!(
            w.statefulset.spec.volume_claim_templates,
            first.spec.volume_claim_templates
        );
        let pvc = w.pvc_expansion.unwrap();
        assert_eq!(pvc.metadata.name.as_deref(), Some("data-node-a-0"));
        assert_eq!(
            pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"],
            Quantity("20Gi".into())
        );
        // Same size: nothing to expand.
        let seen = Seen {
            existing_statefulset: Some(first),
            service_monitor_available: false,
        };
        assert!(
            build(&node(), &deploy, &keys, &seen, &OperatorPeer::default())
                .workload
                .unwrap()
                .pvc_expansion
                .is_none()
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("10Gi"), Some(10.0 * 1024f64.powi(3)));
        assert_eq!(quantity_bytes("500M"), Some(5e8));
        assert_eq!(quantity_bytes("1.5Ti"), Some(1.5 * 1024f64.powi(4)));
        assert_eq!(quantity_bytes("12"), Some(12.0));
        assert!(quantity_bytes("10 gigs").is_none());
        assert!(quantity_bytes("10000Mi").unwrap() < quantity_bytes("10Gi").unwrap());
    }

    #[test]
    fn status_follows_the_workload_and_the_ledger() {
        let keys = keys_for(&key_hex(ApiSuite::Ed25519), &key_hex(ApiSuite::Ed25519));
        let deploy = Verdict::Deploy {
            genesis_hash: "ab".into(),
        };
        let mut n = node();

        let s = desired_status(&n, &keys, &deploy, None, None, t(0));
        assert_eq!(s.phase, Some(NodePhase::Deploying));
        assert!(is_true(&s.conditions, PROGRESSING));
        assert_eq!(s.genesis_hash.as_deref(), Some("ab"));
        assert_eq!(s.observed_generation, Some(3));
        let card = s.member_card.clone().unwrap();
        assert_eq!(
            (card.name.as_str(), card.node_key.as_str()),
            ("hospital-a", keys.node_key.as_str())
        );
        assert_eq!(card.endpoint, "node.hospital-a.example.org:7051");

        n.status = Some(s);
        let s = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(10));
        assert_eq!(s.phase, Some(NodePhase::Running));
        assert!(is_true(&s.conditions, READY));
        assert_eq!(
            find(&s.conditions, READY).unwrap().last_transition_time.0,
            t(10)
        );
        assert_eq!(
            find(&s.conditions, DEGRADED)
                .unwrap()
                .last_transition_time
                .0,
            t(0)
        );

        n.status = Some(LedgerNodeStatus {
            ledger: Some(LedgerView {
                role: "follower".into(),
                peers: 0,
                in_sync: false,
            }),
            ..s.clone()
        });
        let s2 = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(20));
        assert_eq!(find(&s2.conditions, READY).unwrap().reason, "CatchingUp");
        assert!(!is_true(&s2.conditions, READY));

        n.status = Some(LedgerNodeStatus {
            ledger: Some(crate::controllers::poller::unreachable()),
            ..s
        });
        let s3 = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(30));
        assert_eq!(s3.phase, Some(NodePhase::Degraded));
        assert!(is_true(&s3.conditions, DEGRADED));

        let broken = Verdict::Broken {
            reason: "NodeKeyMismatch",
            message: "fix it".into(),
        };
        let s4 = desired_status(&n, &keys, &broken, None, None, t(40));
        assert_eq!(find(&s4.conditions, DEGRADED).unwrap().message, "fix it");
        // The status never carries a secret.
        let text = serde_json::to_string(&s4).unwrap();
        assert!(!text.contains("secret_key") && !text.contains("secretKey"));
    }

    #[test]
    fn a_steady_node_needs_no_status_write() {
        let keys = keys_for(&key_hex(ApiSuite::Ed25519), &key_hex(ApiSuite::Ed25519));
        let deploy = Verdict::Deploy {
            genesis_hash: "ab".into(),
        };
        let mut n = node();
        let s = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(0));
        assert!(status_changed(&n, &s));
        n.status = Some(LedgerNodeStatus {
            ledger: Some(LedgerView {
                role: "leader".into(),
                peers: 3,
                in_sync: true,
            }),
            ..s
        });
        let again = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(3600));
        assert!(
            !status_changed(&n, &again),
            "an hour later nothing changed, so nothing is written"
        );
    }

    // ---- against the mocked API server ----

    const NS: &str = "hospital-a";

    fn node_path() -> String {
        FakeApi::path("apis/medledger.io/v1alpha1", NS, "ledgernodes", "node-a")
    }
    fn secret_path() -> String {
        FakeApi::path("api/v1", NS, "secrets", "node-a-keys")
    }

    fn seed_node(api: &FakeApi) -> LedgerNode {
        api.put(&node_path(), serde_json::to_value(node()).unwrap());
        serde_json::from_value(api.get(&node_path()).unwrap()).unwrap()
    }

    fn stored_node(api: &FakeApi) -> LedgerNode {
        serde_json::from_value(api.get(&node_path()).unwrap()).unwrap()
    }

    async fn run(_api: &FakeApi, ctx: &Arc<Context>, n: LedgerNode) -> Result<Action, Error> {
        reconcile(Arc::new(DeserializeGuard(Ok(n))), ctx.clone()).await
    }

    #[tokio::test]
    async fn a_new_node_generates_its_keys_once_and_publishes_its_card() {
        let api = FakeApi::new();
        let ctx = api.context();
        let n = seed_node(&api);
        run(&api, &ctx, n).await.unwrap();

        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(api.get(&secret_path()).unwrap()).unwrap();
        assert_eq!(secret.immutable, Some(true));
        let node_pub = keys::public_key(&secret, "node.key", crate::crd::Suite::Ed25519).unwrap();
        let status = stored_node(&api).status.unwrap();
        assert_eq!(status.phase, Some(NodePhase::Pending));
        assert_eq!(status.member_card.as_ref().unwrap().node_key, node_pub);
        assert_eq!(status.key_secret.as_deref(), Some("node-a-keys"));
        // Network objects exist already; the workload waits for the genesis.
        assert!(
            api.get(&FakeApi::path("api/v1", NS, "services", "node-a-p2p"))
                .is_some()
        );
        assert!(
            api.get(&FakeApi::path(
                "apis/networking.k8s.io/v1",
                NS,
                "networkpolicies",
                "node-a"
            ))
            .is_some()
        );
        assert!(
            api.get(&FakeApi::path("apis/apps/v1", NS, "statefulsets", "node-a"))
                .is_none()
        );

        // The secret halves appear nowhere but in the Secret.
        let secret_hex: Vec<String> = ["node.key", "admin.key"]
            .iter()
            .map(|k| serde_json::from_slice::<Value>(&secret.data.as_ref().unwrap()[*k].0).unwrap()["secret_key"].as_str().unwrap().to_string())
            .collect();
        let events = api.events();
        assert!(
            events
                .iter()
                .any(|(r, note)| r == "KeysGenerated" && note.contains(&node_pub)),
            "{events:?}"
        );
        let everything_else: String = {
            let s = api.0.lock().unwrap();
            s.objects
                .iter()
                .filter(|(p, _)| **p != secret_path())
                .map(|(_, v)| v.to_string())
                .collect()
        };
        for h in &secret_hex {
            assert!(
                !everything_else.contains(h.as_str()),
                "a secret key leaked outside its Secret"
            );
        }

        // Again: the key is read, never written; the status is unchanged so not written.
        api.clear_requests();
        run(&api, &ctx, stored_node(&api)).await.unwrap();
        let writes = api.writes();
        assert!(
            !writes.iter().any(|(_, p)| p.contains("/secrets")),
            "{writes:?}"
        );
        assert!(
            !writes.iter().any(|(_, p)| p.ends_with("/status")),
            "{writes:?}"
        );
        let again: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(api.get(&secret_path()).unwrap()).unwrap();
        assert_eq!(again.data, secret.data);
    }

    #[tokio::test]
    async fn an_existing_key_secret_is_used_and_never_overwritten() {
        let api = FakeApi::new();
        let ctx = api.context();
        let n = seed_node(&api);
        let nk = SigningKey::generate(ApiSuite::Ed25519);
        let ak = SigningKey::generate(ApiSuite::Ed25519);
        api.put(
            &secret_path(),
            serde_json::to_value(keys::generated_key_secret(&n, Some(&nk), Some(&ak))).unwrap(),
        );
        run(&api, &ctx, n).await.unwrap();
        let card = stored_node(&api).status.unwrap().member_card.unwrap();
        assert_eq!(card.node_key, hex::encode(nk.public()));
        assert_eq!(card.admin_key, hex::encode(ak.public()));
        assert!(!api.writes().iter().any(|(_, p)| p.contains("/secrets")));
        assert!(api.events().iter().all(|(r, _)| r != "KeysGenerated"));
    }

    #[tokio::test]
    async fn an_admitted_node_is_deployed_with_the_consortium_genesis() {
        let api = FakeApi::new();
        api.0.lock().unwrap().service_monitor_crd = true;
        let ctx = api.context();
        let n = seed_node(&api);
        let nk = SigningKey::generate(ApiSuite::Ed25519);
        let ak = SigningKey::generate(ApiSuite::Ed25519);
        api.put(
            &secret_path(),
            serde_json::to_value(keys::generated_key_secret(&n, Some(&nk), Some(&ak))).unwrap(),
        );
        let c = admitted(
            &keys_for(&hex::encode(nk.public()), &hex::encode(ak.public())),
            3,
        );
        api.put(
            &FakeApi::path("apis/medledger.io/v1alpha1", NS, "consortia", "emr"),
            serde_json::to_value(&c).unwrap(),
        );
        run(&api, &ctx, n).await.unwrap();

        let hash = hex::encode(Genesis::from_spec(&c.spec.genesis_spec()).unwrap().hash());
        let cm = api
            .get(&FakeApi::path("api/v1", NS, "configmaps", "node-a-config"))
            .unwrap();
        assert!(cm["data"]["node.yaml"].as_str().unwrap().contains(&hash));
        let sts = api
            .get(&FakeApi::path("apis/apps/v1", NS, "statefulsets", "node-a"))
            .unwrap();
        assert_eq!(
            sts["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["node", "--config", "/etc/medledger/config/node.yaml"])
        );
        assert!(
            api.get(&FakeApi::path(
                "apis/monitoring.coreos.com/v1",
                NS,
                "servicemonitors",
                "node-a"
            ))
            .is_some()
        );
        let status = stored_node(&api).status.unwrap();
        assert_eq!(status.phase, Some(NodePhase::Deploying));
        assert_eq!(status.genesis_hash, Some(hash));
        // Every child write was a server-side apply under the operator's field manager.
        assert!(
            api.writes()
                .iter()
                .filter(|(_, p)| !p.contains("events"))
                .all(|(m, _)| m == http::Method::PATCH)
        );
    }

    #[tokio::test]
    async fn a_missing_referenced_key_secret_is_an_error_that_says_what_to_do() {
        let api = FakeApi::new();
        let ctx = api.context();
        let mut n = node();
        n.spec.node_key_secret = Some(crate::crd::LocalRef::new("my-node-key"));
        api.put(&node_path(), serde_json::to_value(&n).unwrap());
        let err = run(&api, &ctx, stored_node(&api)).await.unwrap_err();
        assert_eq!(err.metric_label(), "KeySecretMissing");
        assert!(err.needs_user());
        assert!(
            err.to_string().contains(
                "Secret my-node-key named by spec.nodeKeySecret does not exist: create it"
            ),
            "{err}"
        );
        assert!(api.events().iter().any(|(r, _)| r == "KeySecretMissing"));
        let action = error_policy(
            Arc::new(DeserializeGuard(Ok(stored_node(&api)))),
            &err,
            ctx.clone(),
        );
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
        assert!(ctx.metrics.render().contains(r#"error="KeySecretMissing""#));
    }

    #[tokio::test]
    async fn a_malformed_object_is_reported_and_skipped() {
        let api = FakeApi::new();
        let ctx = api.context();
        let raw = json!({"apiVersion": "medledger.io/v1alpha1", "kind": "LedgerNode",
            "metadata": {"name": "broken", "namespace": NS, "uid": "u1"}, "spec": {"memberName": 7}});
        let guard: DeserializeGuard<LedgerNode> = serde_json::from_value(raw).unwrap();
        assert!(guard.0.is_err());
        let action = reconcile(Arc::new(guard), ctx.clone()).await.unwrap();
        assert_eq!(action, Action::await_change());
        assert!(api.events().iter().any(|(r, _)| r == "InvalidObject"));
        assert!(api.writes().iter().all(|(_, p)| p.contains("/events")));
    }
}
