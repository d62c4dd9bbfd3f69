//! The PodDisruptionBudget of a consortium's validators in one namespace. One budget covers
//! them all (a pod under two budgets cannot be evicted at all), allowing one voluntary
//! disruption at a time: a drain never takes two local validators down together, and a lone
//! validator can still be drained.

use super::{LABEL_MANAGED_BY, child_meta, consortium_pod_labels, names};
use crate::crd::Consortium;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

pub fn consortium_pdb(consortium: &Consortium) -> PodDisruptionBudget {
    let name = consortium.name_any();
    let mut labels = consortium_pod_labels(&name);
    labels.insert(LABEL_MANAGED_BY.into(), super::FIELD_MANAGER.into());
    PodDisruptionBudget {
        metadata: child_meta(consortium, names::consortium_pdb(&name), labels),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(consortium_pod_labels(&name)),
                ..Default::default()
            }),
            // A pod that is not ready does not count toward quorum; let it be evicted.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::*;
    use medledger_api::crypto::Suite;

    #[test]
    fn one_budget_selects_every_local_validator_of_the_consortium() {
        let pdb = consortium_pdb(&consortium(&key_hex(Suite::Ed25519), 2));
        assert_eq!(pdb.metadata.name.as_deref(), Some("emr-ledger"));
        assert_eq!(pdb.metadata.owner_references.unwrap()[0].kind, "Consortium");
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert!(spec.min_available.is_none());
        let sel = spec.selector.unwrap().match_labels.unwrap();
        // The node pods carry these labels (see node_labels).
        let pod = crate::resources::node_labels("node-a", "emr", "hospital-a");
        assert!(sel.iter().all(|(k, v)| pod.get(k) == Some(v)));
    }
}
