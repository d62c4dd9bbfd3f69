//! The `medledger.io/v1alpha1` API: one file per kind, shared condition types, and the small
//! value types several kinds use. Validation lives here as CEL rules (`x-kubernetes-validations`)
//! so the API server rejects a bad object before any controller sees it; every rule carries a
//! message that says what to fix. The same rules are evaluated client-side in the unit tests.

// `#[kube(printcolumn(..))]` repeats `type_ = ..` by design; clippy mistakes it for a duplicate.
#![allow(clippy::duplicated_attributes)]

pub mod conditions;
pub mod consortium;
pub mod docs;
pub mod federated_worker;
pub mod ipfs_cluster;
pub mod ledger_node;
pub mod rules;
pub mod training_schedule;

pub use conditions::*;
pub use consortium::*;
pub use federated_worker::*;
pub use ipfs_cluster::*;
pub use ledger_node::*;
pub use training_schedule::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "medledger.io";
pub const VERSION: &str = "v1alpha1";

/// The default image of `medledger` (ledger node, learning worker and CLI).
pub const DEFAULT_NODE_IMAGE: &str = "medledger/medledger:0.1.0";

/// Every CRD of the API with the file name `crdgen` writes it to.
pub fn all_crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("consortium.yaml", Consortium::crd()),
        ("ledgernode.yaml", LedgerNode::crd()),
        ("ipfscluster.yaml", IpfsCluster::crd()),
        ("federatedworker.yaml", FederatedWorker::crd()),
        ("trainingschedule.yaml", TrainingSchedule::crd()),
    ]
}

/// A reference to an object of a known kind in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    /// Name of the object, in the namespace of the referring object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl LocalRef {
    pub fn new(name: impl Into<String>) -> Self {
        LocalRef { name: name.into() }
    }
}

/// Persistent storage of a workload. The size may grow (the PVC is expanded when its
/// StorageClass allows it) but never shrink; the class is fixed at creation.
#[derive(kube::KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storageClassName cannot change after creation: a volume cannot move to another class; create a new object to use another class"))]
pub struct StorageSpec {
    /// Requested size, a Kubernetes quantity such as `20Gi`.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("size must be a Kubernetes quantity such as 20Gi or 500Mi"),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("storage size cannot shrink: volumes can only grow; set a size at least as large as before")
    )]
    pub size: String,
    /// StorageClass of the volume; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl StorageSpec {
    pub fn new(size: impl Into<String>) -> Self {
        StorageSpec {
            size: size.into(),
            storage_class_name: None,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Client-side evaluation of the CEL rules of a CRD, as the API server would evaluate them.
    use kube::CustomResourceExt;
    use serde_json::Value;

    fn schema<K: CustomResourceExt>() -> Value {
        let crd = K::crd();
        serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap()
    }

    /// Messages of the rules `object` breaks (creation when `old` is None, else update).
    pub fn violations<K: CustomResourceExt>(object: &Value, old: Option<&Value>) -> Vec<String> {
        match kube::core::cel::Validator::new().validate(&schema::<K>(), object, old) {
            Ok(()) => vec![],
            Err(errs) => errs
                .into_vec()
                .into_iter()
                .map(|e| format!("{}: {}", e.field_path, e.message))
                .collect(),
        }
    }

    /// Asserts that `object` passes, or breaks exactly rules whose messages contain `needle`.
    #[track_caller]
    pub fn assert_rejected<K: CustomResourceExt>(
        object: &Value,
        old: Option<&Value>,
        needle: &str,
    ) {
        let v = violations::<K>(object, old);
        assert!(
            !v.is_empty(),
            "expected a violation mentioning {needle:?}, got none"
        );
        assert!(
            v.iter().any(|m| m.contains(needle)),
            "expected {needle:?} in {v:?}"
        );
    }

    #[track_caller]
    pub fn assert_accepted<K: CustomResourceExt>(object: &Value, old: Option<&Value>) {
        let v = violations::<K>(object, old);
        assert!(v.is_empty(), "expected no violation, got {v:?}");
    }

    pub fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use kube::core::cel::{ScopeContext, WarningKind, analyze_rule, compile_schema};
    use serde_json::Value;

    /// Every schema node that carries CEL rules, with its path.
    fn rule_nodes<'a>(path: String, s: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        if s.get("x-kubernetes-validations").is_some() {
            out.push((path.clone(), s));
        }
        if let Some(props) = s["properties"].as_object() {
            for (k, v) in props {
                rule_nodes(format!("{path}.{k}"), v, out);
            }
        }
        if s.get("items").is_some() {
            rule_nodes(format!("{path}[]"), &s["items"], out);
        }
        if s["additionalProperties"].is_object() {
            rule_nodes(format!("{path}{{}}"), &s["additionalProperties"], out);
        }
    }

    #[test]
    fn every_rule_compiles_is_in_scope_and_has_bounded_cost() {
        let mut checked = 0;
        for (file, crd) in super::all_crds() {
            let v = serde_json::to_value(&crd).unwrap();
            let root = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let mut nodes = vec![];
            rule_nodes(String::new(), root, &mut nodes);
            for (path, node) in nodes {
                let compiled = compile_schema(node);
                assert!(
                    !compiled.has_errors(),
                    "{file} {path}: {:?}",
                    compiled.compilation_errors()
                );
                for rule in node["x-kubernetes-validations"].as_array().unwrap() {
                    let r = rule["rule"].as_str().unwrap();
                    // The scope check mistakes comprehension variables (`m` in `all(m, ..)`) for
                    // free variables; scope is proven by evaluating every rule in the kind tests.
                    let warnings: Vec<_> = analyze_rule(r, &compiled, ScopeContext::CrdValidation)
                        .into_iter()
                        .filter(|w| w.kind != WarningKind::WrongScope)
                        .collect();
                    assert!(warnings.is_empty(), "{file} {path}: {r}: {warnings:?}");
                    assert!(
                        rule["message"].as_str().is_some_and(|m| m.len() > 20),
                        "{file} {path}: {r} needs a message that says what to fix"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 40, "only {checked} rules found");
    }
}
