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
    Context, ReconcileError, apply, apply_dynamic, apply_status, delete_if_exists, object_key,
};
use crate::crd::conditions;
use crate::crd::{Consortium, LedgerNode, NodePhase};
use crate::keys::{self, KeyError};
use crate::resources::{names, service_monitor};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use std::sync::Arc;

mod pipeline;
#[cfg(test)]
mod tests;

pub use pipeline::*;

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

impl ReconcileError for Error {
    /// The variant name: the `error` label of the failure metric.
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Keys(e) => e.metric_label(),
            Error::Read { .. } => "Read",
            Error::Apply { .. } => "Apply",
            Error::Delete { .. } => "Delete",
            Error::Status(_) => "Status",
        }
    }

    fn needs_user(&self) -> bool {
        matches!(self, Error::Keys(e) if e.needs_user())
    }
}

/// Entry point of the controller runtime.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<LedgerNode>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    super::run_reconcile(CONTROLLER, &guard, &ctx, |node| reconcile_node(node, &ctx)).await
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<LedgerNode>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    super::error_policy_for(CONTROLLER, &guard, error, &ctx)
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
                    if desired.phase == Some(NodePhase::Degraded) {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    ready.map(|c| c.reason.as_str()).unwrap_or("Deploying"),
                ),
            };
            ctx.event(node, type_, reason, note).await;
        }
    }
    Ok(Action::await_change())
}
