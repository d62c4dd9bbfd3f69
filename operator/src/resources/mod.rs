//! Pure builders of the Kubernetes objects the controllers own. Nothing here talks to the API:
//! every function takes the custom resource (and what the controller looked up) and returns
//! the objects to apply, so each is unit-tested on YAML fixtures.

pub mod config;
pub mod network_policy;
pub mod pdb;
pub mod service;
pub mod service_monitor;
pub mod statefulset;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

pub const FIELD_MANAGER: &str = "medledger-operator";

pub const API_PORT: i32 = medledger_api::config::DEFAULT_API_PORT as i32;
pub const PEER_PORT: i32 = medledger_api::config::DEFAULT_PEER_PORT as i32;
pub const ADMIN_PORT: i32 = medledger_api::config::DEFAULT_ADMIN_PORT as i32;

/// The uid and gid the node runs as (Pod Security "restricted": never root).
pub const NODE_UID: i64 = 10001;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_CONSORTIUM: &str = "medledger.io/consortium";
pub const LABEL_MEMBER: &str = "medledger.io/member";
pub const COMPONENT_LEDGER_NODE: &str = "ledger-node";

pub const ANNOTATION_CONFIG_HASH: &str = "medledger.io/config-hash";
pub const ANNOTATION_GENESIS_HASH: &str = "medledger.io/genesis-hash";

/// Names of the objects owned by a LedgerNode called `node`.
pub mod names {
    pub fn statefulset(node: &str) -> String {
        node.to_string()
    }
    /// Headless Service: stable pod DNS, the client API and the metrics port.
    pub fn headless_service(node: &str) -> String {
        node.to_string()
    }
    pub fn p2p_service(node: &str) -> String {
        format!("{node}-p2p")
    }
    pub fn config_map(node: &str) -> String {
        format!("{node}-config")
    }
    pub fn key_secret(node: &str) -> String {
        format!("{node}-keys")
    }
    pub fn network_policy(node: &str) -> String {
        node.to_string()
    }
    pub fn service_monitor(node: &str) -> String {
        node.to_string()
    }
    pub fn pod(node: &str) -> String {
        format!("{node}-0")
    }
    /// The PVC the StatefulSet's `data` volume claim template creates for the node's pod.
    pub fn data_pvc(node: &str) -> String {
        format!("data-{node}-0")
    }
    pub fn genesis_config_map(consortium: &str) -> String {
        format!("{consortium}-genesis")
    }
    pub fn consortium_pdb(consortium: &str) -> String {
        format!("{consortium}-ledger")
    }
}

/// Labels that select a node's pod; they never change for the life of the node.
pub fn selector_labels(node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), "medledger".to_string()),
        (
            LABEL_COMPONENT.to_string(),
            COMPONENT_LEDGER_NODE.to_string(),
        ),
        (LABEL_INSTANCE.to_string(), node.to_string()),
    ])
}

/// Labels of every object of a node: the selector labels plus consortium and member.
pub fn node_labels(node: &str, consortium: &str, member: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(node);
    l.insert(LABEL_MANAGED_BY.into(), FIELD_MANAGER.into());
    l.insert(LABEL_CONSORTIUM.into(), consortium.into());
    l.insert(LABEL_MEMBER.into(), member.into());
    l
}

/// Labels that select the validator pods of a consortium, in any namespace.
pub fn consortium_pod_labels(consortium: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            LABEL_COMPONENT.to_string(),
            COMPONENT_LEDGER_NODE.to_string(),
        ),
        (LABEL_CONSORTIUM.to_string(), consortium.to_string()),
    ])
}

/// The controller owner reference of `owner`: children are garbage-collected with it.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    owner
        .controller_owner_ref(&())
        .expect("objects read from the API have a name and uid")
}

/// Metadata of a child object owned by `owner`.
pub fn child_meta<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: owner.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner_ref(owner)]),
        ..Default::default()
    }
}

/// Hex SHA-256 of some bytes: content hashes in annotations roll pods when their config changes.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(medledger_api::crypto::Suite::Ed25519.hash(bytes))
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Small YAML fixtures shared by the builder tests.
    use crate::crd::{Consortium, LedgerNode};
    use medledger_api::crypto::Suite;
    use medledger_api::keys::SigningKey;

    pub const NODE: &str = r#"
apiVersion: medledger.io/v1alpha1
kind: LedgerNode
metadata: {name: node-a, namespace: hospital-a, generation: 3, uid: 11111111-2222-3333-4444-555555555555}
spec:
  consortiumRef: {name: emr}
  memberName: hospital-a
  storage: {size: 10Gi, storageClassName: fast}
  p2p:
    serviceType: LoadBalancer
    annotations: {service.beta.kubernetes.io/aws-load-balancer-type: nlb}
    externalAddress: node.hospital-a.example.org:7051
    loadBalancerSourceRanges: [203.0.113.0/24]
    peerCIDRs: [198.51.100.7/32]
  peerAddresses: {hospital-b: 10.1.2.3:7051}
"#;

    pub fn node() -> LedgerNode {
        serde_yaml::from_str(NODE).unwrap()
    }

    /// A minimal node: every default in place.
    pub fn minimal_node() -> LedgerNode {
        serde_yaml::from_str(
            r#"
apiVersion: medledger.io/v1alpha1
kind: LedgerNode
metadata: {name: node-b, namespace: hospital-b, generation: 1, uid: 22222222-2222-3333-4444-555555555555}
spec:
  consortiumRef: {name: emr}
  memberName: hospital-b
  storage: {size: 5Gi}
"#,
        )
        .unwrap()
    }

    pub fn key_hex(suite: Suite) -> String {
        hex::encode(SigningKey::generate(suite).public())
    }

    /// A consortium of `members` members; the first one is `hospital-a` with `node_key`.
    pub fn consortium(node_key: &str, members: usize) -> Consortium {
        let mut c: Consortium = serde_yaml::from_str(
            r#"
apiVersion: medledger.io/v1alpha1
kind: Consortium
metadata: {name: emr, namespace: hospital-a, generation: 1, uid: 99999999-2222-3333-4444-555555555555}
spec:
  chainId: emr-chain
  members: []
"#,
        )
        .unwrap();
        for i in 0..members {
            c.spec.members.push(crate::crd::MemberSpec {
                name: if i == 0 {
                    "hospital-a".into()
                } else {
                    format!("hospital-{}", (b'a' + i as u8) as char)
                },
                node_key: if i == 0 {
                    node_key.to_string()
                } else {
                    key_hex(Suite::Ed25519)
                },
                admin_key: key_hex(Suite::Ed25519),
                endpoint: format!("node{i}.example.org:7051"),
            });
        }
        c
    }
}
