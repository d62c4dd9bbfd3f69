//! The join flow as a hospital runs it: the operator chart once per cluster, then the
//! hospital chart in two steps (install: keys and member card; upgrade with the collected
//! cards: the Consortium).

use crate::cluster::{Cluster, monitoring_crds};
use crate::{Operator, repo_root, wait_for};
use anyhow::Context as _;
use kube::Client;
use kube::api::Api;
use medledger_operator::crd::{Consortium, ConsortiumPhase, LedgerNode, MemberCard, NodePhase};
use std::path::Path;
use std::time::Duration;

pub const OPERATOR_NS: &str = "medledger-system";
pub const OPERATOR_RELEASE: &str = "medledger-operator";
pub const CONSORTIUM: &str = "emr";
pub const NODE: &str = "ledger";

/// Installs the operator chart (with the monitoring stand-in CRDs, so its ServiceMonitor and
/// PrometheusRule are exercised) and starts the operator process with its ServiceAccount.
pub async fn install_operator(cluster: &Cluster, bin: &Path) -> anyhow::Result<Operator> {
    let crds = cluster.dir.join("monitoring-crds.yaml");
    std::fs::write(&crds, monitoring_crds())?;
    cluster.kubectl(&["apply", "-f", &crds.to_string_lossy()])?;
    cluster.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ])?;
    cluster.restricted_namespace(OPERATOR_NS).await?;
    let chart = repo_root().join("helm/medledger-operator");
    cluster.helm(&[
        "install",
        OPERATOR_RELEASE,
        &chart.to_string_lossy(),
        "--namespace",
        OPERATOR_NS,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        // Pods do not run on kwok: the gRPC status polls could only fail.
        "--set",
        "pollIntervalSeconds=0",
        "--wait",
        "--timeout",
        "90s",
    ])?;
    Operator::start(cluster, bin, OPERATOR_NS, OPERATOR_RELEASE).await
}

/// One hospital: its member name and the namespace it installs into.
#[derive(Clone, Debug)]
pub struct Hospital {
    pub member: String,
    pub namespace: String,
    /// Extra values of the hospital chart (e.g. ledgerNode.p2p.externalAddress).
    pub extra: serde_json::Value,
}

impl Hospital {
    pub fn new(member: &str) -> Hospital {
        Hospital {
            member: member.to_string(),
            namespace: member.to_string(),
            extra: serde_json::json!({}),
        }
    }

    fn values(&self, consortium: Option<&serde_json::Value>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "memberName": self.member,
            "ledgerNode": {"storage": {"size": "1Gi"}},
        });
        merge(&mut v, &self.extra);
        if let Some(c) = consortium {
            merge(&mut v, &serde_json::json!({ "consortium": c }));
        }
        v
    }

    /// `helm upgrade --install` of the hospital chart; `consortium` is the shared part of the
    /// values (chainId, members) once the cards are collected.
    pub async fn helm_install(
        &self,
        cluster: &Cluster,
        consortium: Option<&serde_json::Value>,
    ) -> anyhow::Result<()> {
        cluster.restricted_namespace(&self.namespace).await?;
        let values = cluster.dir.join(format!("values-{}.json", self.member));
        std::fs::write(
            &values,
            serde_json::to_vec_pretty(&self.values(consortium))?,
        )?;
        let chart = repo_root().join("helm/medledger-hospital");
        cluster
            .helm(&[
                "upgrade",
                "--install",
                &self.member,
                &chart.to_string_lossy(),
                "--namespace",
                &self.namespace,
                "-f",
                &values.to_string_lossy(),
            ])
            .with_context(|| format!("hospital chart for {}", self.member))?;
        Ok(())
    }

    /// The member card the operator published for this hospital's LedgerNode.
    pub async fn member_card(&self, client: &Client) -> anyhow::Result<MemberCard> {
        let api: Api<LedgerNode> = Api::namespaced(client.clone(), &self.namespace);
        wait_for(
            &format!("the member card of {}", self.member),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let n = api.get(NODE).await.map_err(|e| e.to_string())?;
                    n.status
                        .and_then(|s| s.member_card)
                        .ok_or_else(|| "no status.memberCard yet".to_string())
                }
            },
        )
        .await
    }

    /// Waits until this hospital's LedgerNode is Running and Ready and its Consortium Ready;
    /// returns the genesis hash the Consortium derived.
    pub async fn wait_ready(&self, client: &Client, timeout: Duration) -> anyhow::Result<String> {
        let nodes: Api<LedgerNode> = Api::namespaced(client.clone(), &self.namespace);
        let consortia: Api<Consortium> = Api::namespaced(client.clone(), &self.namespace);
        wait_for(&format!("{} ready", self.member), timeout, || {
            let (nodes, consortia) = (nodes.clone(), consortia.clone());
            async move {
                let n = nodes.get(NODE).await.map_err(|e| e.to_string())?;
                let ns = n.status.clone().unwrap_or_default();
                let ready = medledger_operator::crd::conditions::find(&ns.conditions, "Ready");
                if ns.phase != Some(NodePhase::Running)
                    || ready.map(|c| c.status.as_str()) != Some("True")
                {
                    return Err(format!(
                        "LedgerNode phase {:?}, Ready {:?}",
                        ns.phase,
                        ready.map(|c| (&c.status, &c.message))
                    ));
                }
                let c = consortia.get(CONSORTIUM).await.map_err(|e| e.to_string())?;
                let cs = c.status.unwrap_or_default();
                if cs.phase != Some(ConsortiumPhase::Ready) {
                    return Err(format!("Consortium phase {:?}", cs.phase));
                }
                cs.genesis_hash.ok_or_else(|| "no genesis hash".into())
            }
        })
        .await
    }
}

/// The shared values of the hospital chart: chain id and the founding members' cards.
pub fn consortium_values(chain_id: &str, cards: &[MemberCard]) -> serde_json::Value {
    serde_json::json!({ "chainId": chain_id, "members": cards })
}

fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}
