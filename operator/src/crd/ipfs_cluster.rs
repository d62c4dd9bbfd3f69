//! `IpfsCluster` (draft; its controller comes in a later issue): a private IPFS cluster (kubo +
//! ipfs-cluster, the official images) holding a hospital's *encrypted* records. Peers of other
//! hospitals are named by their public peer ids; the swarm key and cluster secret stay in
//! Secrets of this namespace.

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
    kind = "IpfsCluster",
    plural = "ipfsclusters",
    singular = "ipfscluster",
    shortname = "ipfs",
    category = "medledger",
    namespaced,
    status = "IpfsClusterStatus",
    derive = "PartialEq",
    doc = "A private IPFS cluster (kubo + ipfs-cluster) holding a hospital's encrypted records.",
    printcolumn(
        name = "Consortium",
        type_ = "string",
        json_path = ".spec.consortiumRef.name"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Healthy",
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
    validation = crate::crd::rules::immutable_optional("swarmKeySecret", "every peer of a private network shares one swarm key; create a new IpfsCluster for another network"),
    validation = crate::crd::rules::immutable_optional("clusterSecret", "every ipfs-cluster peer shares one secret; create a new IpfsCluster to change it"),
    validation = Rule::new("self.replicationFactorMin <= self.replicationFactorMax")
        .message("replicationFactorMin must not exceed replicationFactorMax")
        .field_path(".replicationFactorMin"),
    validation = Rule::new("self.replicationFactorMax <= self.replicas + (has(self.trustedPeers) ? size(self.trustedPeers) : 0)")
        .message("replicationFactorMax is larger than the number of peers (replicas + trustedPeers); lower it or add peers")
        .field_path(".replicationFactorMax")
)]
pub struct IpfsClusterSpec {
    /// The Consortium whose members' peers may join this private network.
    #[x_kube(validation = crate::crd::rules::immutable("consortiumRef", "the swarm of a cluster belongs to one consortium"))]
    pub consortium_ref: LocalRef,
    /// Peers (kubo + ipfs-cluster pods) run in this namespace (1-9).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// Pins are kept on at least this many peers (`-1` would mean everywhere; not allowed here).
    #[serde(default = "default_rf_min")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor_min: i32,
    /// Pins are kept on at most this many peers.
    #[serde(default = "default_rf_max")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor_max: i32,
    /// The volume of each peer.
    pub storage: StorageSpec,
    /// Images of the two containers of each peer.
    #[serde(default)]
    pub images: IpfsImages,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// An existing Secret with the swarm key under `swarm.key`; generated when unset. To span
    /// hospitals, the same key is copied into each hospital's Secret out of band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_key_secret: Option<LocalRef>,
    /// An existing Secret with the ipfs-cluster secret under `cluster.secret`; generated when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret: Option<LocalRef>,
    /// Peers of other hospitals: their public peer id and multiaddresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["peerId".into()]))]
    pub trusted_peers: Vec<TrustedPeer>,
}

fn default_replicas() -> i32 {
    3
}
fn default_rf_min() -> i32 {
    2
}
fn default_rf_max() -> i32 {
    3
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpfsImages {
    /// kubo (IPFS daemon) image.
    #[serde(default = "default_kubo")]
    pub kubo: String,
    /// ipfs-cluster image.
    #[serde(default = "default_cluster")]
    pub cluster: String,
}

impl Default for IpfsImages {
    fn default() -> Self {
        IpfsImages {
            kubo: default_kubo(),
            cluster: default_cluster(),
        }
    }
}

fn default_kubo() -> String {
    "ipfs/kubo:v0.32.1".into()
}
fn default_cluster() -> String {
    "ipfs/ipfs-cluster:v1.1.2".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrustedPeer {
    /// Member that runs the peer.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = crate::crd::rules::dns_label("trustedPeers[].member"))]
    pub member: String,
    /// libp2p peer id (base58 `12D3KooW...` or CIDv1 `bafz...`).
    #[schemars(length(min = 46, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^(12D3KooW|Qm)[1-9A-HJ-NP-Za-km-z]+$|^bafz[a-z2-7]+$')").message("peerId must be a libp2p peer id such as 12D3KooW...; copy it from the peer's IpfsCluster status"))]
    pub peer_id: String,
    /// Multiaddresses of the peer, e.g. `/dns4/ipfs.hospital-b.example.org/tcp/4001`.
    #[schemars(length(min = 1, max = 8), inner(length(max = 256)))]
    #[x_kube(validation = Rule::new("self.all(a, a.startsWith('/'))").message("each multiaddress must start with '/', e.g. /dns4/ipfs.hospital-b.example.org/tcp/4001"))]
    pub addresses: Vec<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IpfsClusterStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Ready` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Peers ready in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Public peer ids of this cluster's peers: what other hospitals list as trustedPeers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_ids: Vec<String>,
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
kind: IpfsCluster
metadata: {name: records}
spec:
  consortiumRef: {name: emr}
  replicas: 3
  replicationFactorMin: 2
  replicationFactorMax: 3
  storage: {size: 100Gi}
  trustedPeers:
    - member: hospital-b
      peerId: 12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN
      addresses: [/dns4/ipfs.hospital-b.example.org/tcp/4001]
"#,
        )
    }

    #[test]
    fn rules() {
        assert_accepted::<IpfsCluster>(&fixture(), None);
        let mut o = fixture();
        o["spec"]["replicationFactorMin"] = json!(4);
        o["spec"]["replicationFactorMax"] = json!(3);
        assert_rejected::<IpfsCluster>(&o, None, "replicationFactorMin must not exceed");
        let mut o = fixture();
        o["spec"].as_object_mut().unwrap().remove("trustedPeers");
        assert_accepted::<IpfsCluster>(&o, None);
        o["spec"]["replicationFactorMax"] = json!(4);
        assert_rejected::<IpfsCluster>(
            &o,
            None,
            "replicationFactorMax is larger than the number of peers",
        );
        let mut o = fixture();
        o["spec"]["replicationFactorMax"] = json!(5);
        assert_rejected::<IpfsCluster>(
            &o,
            None,
            "replicationFactorMax is larger than the number of peers",
        );
        let mut o = fixture();
        o["spec"]["trustedPeers"][0]["peerId"] =
            json!("not-a-peer-id-not-a-peer-id-not-a-peer-id-xxxxx");
        assert_rejected::<IpfsCluster>(&o, None, "peerId must be a libp2p peer id");
        let mut o = fixture();
        o["spec"]["trustedPeers"][0]["addresses"] = json!(["ipfs.example.org:4001"]);
        assert_rejected::<IpfsCluster>(&o, None, "multiaddress must start with '/'");
        let old = fixture();
        let mut o = fixture();
        o["spec"]["swarmKeySecret"] = json!({"name": "k"});
        assert_rejected::<IpfsCluster>(&o, Some(&old), "swarmKeySecret cannot be added");
        let mut o = fixture();
        o["spec"]["clusterSecret"] = json!({"name": "s"});
        assert_rejected::<IpfsCluster>(&o, Some(&old), "clusterSecret cannot be added");
        let mut o = fixture();
        o["spec"]["consortiumRef"]["name"] = json!("other");
        assert_rejected::<IpfsCluster>(&o, Some(&old), "consortiumRef cannot change");
        let mut o = fixture();
        o["spec"]["trustedPeers"][0]["member"] = json!("Hospital B");
        assert_rejected::<IpfsCluster>(&o, None, "trustedPeers[].member must be a DNS label");
        let mut o = fixture();
        o["spec"]["storage"]["size"] = json!("50Gi");
        assert_rejected::<IpfsCluster>(&o, Some(&old), "cannot shrink");
    }
}
