//! `FederatedWorker` (draft; its controller comes in a later issue): a hospital's federated
//! learning worker. A `Trainer` trains on the hospital's own data and shares only model
//! updates (through the private IPFS cluster, recorded on the ledger); an `Aggregator`, run by
//! the research centre, combines them into the global model.

use super::{LocalRef, StorageSpec};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medledger.io",
    version = "v1alpha1",
    kind = "FederatedWorker",
    plural = "federatedworkers",
    singular = "federatedworker",
    shortname = "fw",
    category = "medledger",
    namespaced,
    status = "FederatedWorkerStatus",
    derive = "PartialEq",
    doc = "A federated-learning worker: trains on this hospital's data and shares only model updates, or aggregates them at the research centre.",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".spec.ledgerNodeRef.name"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Round", type_ = "integer", json_path = ".status.lastRound"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.role == 'Aggregator' || has(self.dataset)")
        .message("a Trainer needs spec.dataset: the local data it trains on")
        .field_path(".dataset"),
    validation = Rule::new("self.role != 'Aggregator' || !has(self.dataset)")
        .message("an Aggregator never reads patient data: remove spec.dataset")
        .field_path(".dataset"),
    validation = crate::crd::rules::immutable_optional("workerKeySecret", "the worker key signs its model updates on the ledger; create a new FederatedWorker to use another key")
)]
pub struct FederatedWorkerSpec {
    /// The LedgerNode (in this namespace) the worker submits its updates through.
    pub ledger_node_ref: LocalRef,
    /// The IpfsCluster (in this namespace) holding encrypted model updates.
    pub ipfs_cluster_ref: LocalRef,
    /// `Trainer` (a hospital) or `Aggregator` (the research centre).
    #[x_kube(validation = crate::crd::rules::immutable("role", "create a new FederatedWorker for another role"))]
    pub role: WorkerRole,
    /// Local training data (Trainer only). It never leaves this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<Dataset>,
    /// Scratch volume for checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<StorageSpec>,
    /// Container image of `medledger` (the worker is a subcommand).
    #[serde(default = "super::ledger_node::default_image")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Local differential privacy applied to every update the worker shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacySpec>,
    /// An existing Secret with the worker's signing key under `worker.key`; generated when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_key_secret: Option<LocalRef>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WorkerRole {
    Trainer,
    Aggregator,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    /// PersistentVolumeClaim holding the data, mounted read-only.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Path inside the volume.
    #[serde(default = "default_path")]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('..')").message("dataset.path must be an absolute path inside the volume without '..', e.g. /emr/2024"))]
    #[schemars(length(max = 1024))]
    pub path: String,
}

fn default_path() -> String {
    "/".into()
}

/// Per-update privacy budget (epsilon, delta) of local differential privacy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.epsilon > 0.0 && self.epsilon <= 10.0").message("privacy.epsilon must be in (0, 10]: smaller is more private").field_path(".epsilon"))]
pub struct PrivacySpec {
    /// Privacy budget per update, in (0, 10]; smaller is more private.
    pub epsilon: f64,
    /// Probability of exceeding the budget, in [0, 0.001].
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 0.001))]
    pub delta: f64,
    /// Gradient clipping norm before noise is added.
    #[serde(default = "default_clip")]
    #[schemars(range(min = 0.001, max = 1000.0))]
    pub clip_norm: f64,
}

fn default_clip() -> f64 {
    1.0
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FederatedWorkerStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Training`, `Idle` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Hex public key of the worker (registered on the ledger as a participant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_key: Option<String>,
    /// Last training round this worker submitted an update for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`; a condition's lastTransitionTime changes only when its status flips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::*;
    use serde_json::json;

    fn fixture() -> serde_json::Value {
        yaml(
            r#"
apiVersion: medledger.io/v1alpha1
kind: FederatedWorker
metadata: {name: trainer}
spec:
  ledgerNodeRef: {name: node-a}
  ipfsClusterRef: {name: records}
  role: Trainer
  dataset: {claimName: emr-data, path: /emr}
  privacy: {epsilon: 1.0, delta: 0.00001}
"#,
        )
    }

    #[test]
    fn rules() {
        assert_accepted::<FederatedWorker>(&fixture(), None);
        let mut o = fixture();
        o["spec"].as_object_mut().unwrap().remove("dataset");
        assert_rejected::<FederatedWorker>(&o, None, "a Trainer needs spec.dataset");
        let mut o = fixture();
        o["spec"]["role"] = json!("Aggregator");
        assert_rejected::<FederatedWorker>(&o, None, "an Aggregator never reads patient data");
        let mut o = fixture();
        o["spec"]["dataset"]["path"] = json!("../etc");
        assert_rejected::<FederatedWorker>(&o, None, "dataset.path must be an absolute path");
        let mut o = fixture();
        o["spec"]["privacy"]["epsilon"] = json!(0.0);
        assert_rejected::<FederatedWorker>(&o, None, "privacy.epsilon must be in (0, 10]");
        let old = fixture();
        let mut o = fixture();
        o["spec"]["role"] = json!("Aggregator");
        o["spec"].as_object_mut().unwrap().remove("dataset");
        assert_rejected::<FederatedWorker>(&o, Some(&old), "role cannot change");
        let mut o = fixture();
        o["spec"]["workerKeySecret"] = json!({"name": "k"});
        assert_rejected::<FederatedWorker>(&o, Some(&old), "workerKeySecret cannot be added");
        assert_accepted::<FederatedWorker>(&o, None);
    }
}
