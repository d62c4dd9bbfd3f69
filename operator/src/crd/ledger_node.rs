//! `LedgerNode`: one validator of a consortium, run by the hospital that owns it. The operator
//! generates its keys inside the hospital's namespace (never overwriting them), publishes only
//! the public *member card*, and deploys `medledger node` once the Consortium's genesis lists it.

use super::{LocalRef, StorageSpec};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medledger.io",
    version = "v1alpha1",
    kind = "LedgerNode",
    plural = "ledgernodes",
    singular = "ledgernode",
    shortname = "ln",
    category = "medledger",
    namespaced,
    status = "LedgerNodeStatus",
    derive = "PartialEq",
    doc = "A validator node of a consortium ledger, run by the hospital that owns it. Its keys are generated in this namespace and never leave it; the status publishes the public member card.",
    printcolumn(
        name = "Consortium",
        type_ = "string",
        json_path = ".spec.consortiumRef.name"
    ),
    printcolumn(name = "Member", type_ = "string", json_path = ".spec.memberName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.ledger.role"),
    printcolumn(name = "Peers", type_ = "integer", json_path = ".status.ledger.peers"),
    printcolumn(
        name = "In Sync",
        type_ = "boolean",
        json_path = ".status.ledger.inSync"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.memberCard.endpoint",
        priority = 1
    ),
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
    validation = crate::crd::rules::immutable_optional("nodeKeySecret", "the node key is the validator's identity in the genesis; create a new LedgerNode to use another key"),
    validation = crate::crd::rules::immutable_optional("adminKeySecret", "the admin key is the member's identity in the genesis; create a new LedgerNode to use another key")
)]
pub struct LedgerNodeSpec {
    /// The Consortium (in this namespace) whose chain this node validates.
    #[x_kube(validation = crate::crd::rules::immutable("consortiumRef", "a node's data belongs to one chain; create a new LedgerNode for another consortium"))]
    pub consortium_ref: LocalRef,

    /// The consortium member this node serves, as listed in the Consortium's `members`.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(
        validation = crate::crd::rules::dns_label("memberName"),
        validation = crate::crd::rules::immutable("memberName", "the node's keys are bound to its member; create a new LedgerNode for another member")
    )]
    pub member_name: String,

    /// Crypto suite of the consortium this node joins: the admin key is generated in it. Must
    /// equal the Consortium's `suite`.
    #[serde(default)]
    #[x_kube(validation = crate::crd::rules::immutable("suite", "the admin key was generated in this suite; create a new LedgerNode for another suite"))]
    pub suite: super::Suite,

    /// The volume of the node's store (Raft log, blocks, state). It is kept when the
    /// LedgerNode is deleted.
    pub storage: StorageSpec,

    /// Container image of `medledger`.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// `Always`, `IfNotPresent` or `Never`; Kubernetes' default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// CPU and memory of the node container. Defaults: requests 250m CPU / 256Mi memory,
    /// limit 1Gi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// How other members reach this node's peer port.
    #[serde(default)]
    pub p2p: P2pSpec,

    /// Who may scrape `/metrics`, and whether a ServiceMonitor is created.
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// An existing Secret holding the node key under `node.key` (a medledger key file). When
    /// unset the operator generates `<name>-keys`. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_key_secret: Option<LocalRef>,

    /// An existing Secret holding the member's admin key under `admin.key`, in the consortium's
    /// suite. When unset the operator generates it into `<name>-keys`. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_key_secret: Option<LocalRef>,

    /// Overrides of other members' peer endpoints (`member name -> host:port`), e.g. to reach a
    /// member through a local Service or a VPN address instead of its genesis endpoint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::crd::rules::endpoint_map_schema")]
    #[x_kube(validation = Rule::new(format!("self.all(k, {})", crate::crd::rules::endpoint_expr("self[k]")))
        .message("peerAddresses maps a member name to host:port with a port 1-65535, e.g. hospital-b: node.hospital-b.vpn:7051"))]
    pub peer_addresses: BTreeMap<String, String>,
}

pub fn default_image() -> String {
    super::DEFAULT_NODE_IMAGE.to_string()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// The peer-to-peer Service: how validators of other hospitals reach this one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.nodePort) || self.serviceType != 'ClusterIP'")
        .message("p2p.nodePort needs serviceType NodePort or LoadBalancer; remove nodePort or change serviceType"),
    validation = Rule::new("!has(self.loadBalancerSourceRanges) || size(self.loadBalancerSourceRanges) == 0 || self.serviceType == 'LoadBalancer'")
        .message("p2p.loadBalancerSourceRanges needs serviceType LoadBalancer; remove them or change serviceType")
)]
pub struct P2pSpec {
    /// Type of the p2p Service: `ClusterIP` (all members in this cluster), `NodePort` or
    /// `LoadBalancer` (members in other clusters).
    #[serde(default)]
    pub service_type: P2pServiceType,
    /// Annotations of the p2p Service, e.g. for a cloud load balancer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The `host:port` other members use to reach this node, published in the member card.
    /// When unset: the load balancer's address, else the node's in-cluster Service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 261))]
    #[x_kube(validation = crate::crd::rules::endpoint("p2p.externalAddress"))]
    pub external_address: Option<String>,
    /// Fixed node port (30000-32767) for `NodePort` and `LoadBalancer` Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
    /// Source ranges a `LoadBalancer` accepts (CIDRs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("p2p.loadBalancerSourceRanges must be CIDRs such as 203.0.113.0/24"))]
    pub load_balancer_source_ranges: Vec<String>,
    /// Source ranges (CIDRs) of members outside this cluster, allowed to the peer port by the
    /// NetworkPolicy. Validators of the same consortium inside this cluster are always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 64)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("p2p.peerCIDRs must be CIDRs such as 198.51.100.7/32"))]
    #[serde(rename = "peerCIDRs")]
    pub peer_cidrs: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum P2pServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl P2pServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            P2pServiceType::ClusterIP => "ClusterIP",
            P2pServiceType::NodePort => "NodePort",
            P2pServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// The pods allowed to scrape the metrics port (9464) by the NetworkPolicy. Default: pods
    /// labelled `app.kubernetes.io/name: prometheus` in any namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scraper: Option<ScraperSelector>,
    /// Create a ServiceMonitor (when the monitoring.coreos.com CRD exists). Default true.
    #[serde(default = "yes")]
    pub service_monitor: bool,
    /// Extra labels of the ServiceMonitor, e.g. the `release` label a Prometheus selects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_monitor_labels: BTreeMap<String, String>,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        MonitoringSpec {
            scraper: None,
            service_monitor: true,
            service_monitor_labels: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Selects the scraper pods: both selectors must match (an absent selector matches all).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScraperSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerNodeStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `AwaitingGenesis` (keys ready, member card published, waiting for the
    /// Consortium to list this member), `Deploying`, `Running` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodePhase>,
    /// The public material another hospital needs to add this member to a Consortium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_card: Option<MemberCard>,
    /// The Secret holding this node's keys (`node.key`, `admin.key`). Its content never
    /// appears in a status, an event or a log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
    /// Hex genesis hash the node is configured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    /// What the node itself reports over gRPC, written only when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerView>,
    /// `Ready`, `Progressing` and `Degraded`; a condition's lastTransitionTime changes only when its status flips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NodePhase {
    Pending,
    AwaitingGenesis,
    Deploying,
    Running,
    Degraded,
}

/// The member card: exactly the fields of a Consortium member entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberCard {
    /// Member name, to list in the Consortium's spec.members.
    pub name: String,
    /// Hex Ed25519 public key of the node.
    pub node_key: String,
    /// Hex public key of the member's administrator, in the consortium's suite.
    pub admin_key: String,
    /// `host:port` of the node's peer port.
    pub endpoint: String,
}

/// The node's view of the chain, from its gRPC `Status`. Fast-moving figures (height,
/// indexes) are metrics, not status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerView {
    /// `leader`, `follower`, `candidate`, `learner`, `shutdown`, or `unreachable` when the
    /// operator cannot reach the node's API.
    pub role: String,
    /// Peers the node is connected to.
    pub peers: u32,
    /// Whether the node holds and has applied every block the cluster committed.
    pub in_sync: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::*;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    const FIXTURE: &str = r#"
apiVersion: medledger.io/v1alpha1
kind: LedgerNode
metadata: {name: node-a, namespace: hospital-a, generation: 1, uid: 11111111-2222-3333-4444-555555555555}
spec:
  consortiumRef: {name: emr}
  memberName: hospital-a
  storage: {size: 10Gi, storageClassName: fast}
  p2p:
    serviceType: LoadBalancer
    annotations: {service.beta.kubernetes.io/aws-load-balancer-type: nlb}
    externalAddress: node.hospital-a.example.org:7051
    peerCIDRs: [198.51.100.7/32]
"#;

    pub fn fixture() -> Value {
        yaml(FIXTURE)
    }

    #[test]
    fn yaml_fixture_parses_with_defaults() {
        let n: LedgerNode = serde_yaml::from_str(FIXTURE).unwrap();
        assert_eq!(n.spec.image, "medledger/medledger:0.1.0");
        assert!(n.spec.monitoring.service_monitor);
        assert_eq!(n.spec.p2p.service_type, P2pServiceType::LoadBalancer);
        assert_eq!(n.spec.p2p.peer_cidrs, ["198.51.100.7/32"]);
        assert_accepted::<LedgerNode>(&fixture(), None);
        assert_accepted::<LedgerNode>(&fixture(), Some(&fixture()));
    }

    #[test]
    fn creation_rules_explain_what_to_fix() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|o| o["spec"]["memberName"] = json!("Hospital_A")),
                "memberName must be a DNS label",
            ),
            (
                Box::new(|o| o["spec"]["storage"]["size"] = json!("ten gigs")),
                "size must be a Kubernetes quantity",
            ),
            (
                Box::new(|o| o["spec"]["p2p"]["externalAddress"] = json!("node.example.org")),
                "p2p.externalAddress must be host:port",
            ),
            (
                Box::new(|o| o["spec"]["p2p"]["peerCIDRs"] = json!(["10.0.0.0/33"])),
                "p2p.peerCIDRs must be CIDRs",
            ),
            (
                Box::new(|o| {
                    o["spec"]["p2p"]["serviceType"] = json!("ClusterIP");
                    o["spec"]["p2p"]["nodePort"] = json!(30001);
                }),
                "nodePort needs serviceType NodePort or LoadBalancer",
            ),
            (
                Box::new(|o| {
                    o["spec"]["p2p"]["serviceType"] = json!("NodePort");
                    o["spec"]["p2p"]["loadBalancerSourceRanges"] = json!(["203.0.113.0/24"]);
                }),
                "loadBalancerSourceRanges needs serviceType LoadBalancer",
            ),
            (
                Box::new(|o| o["spec"]["p2p"]["loadBalancerSourceRanges"] = json!(["nope"])),
                "must be CIDRs",
            ),
            (
                Box::new(|o| o["spec"]["peerAddresses"] = json!({"hospital-b": "b.example.org"})),
                "peerAddresses maps",
            ),
        ];
        for (mutate, needle) in cases {
            let mut o = fixture();
            mutate(&mut o);
            assert_rejected::<LedgerNode>(&o, None, needle);
        }
        let mut ok = fixture();
        ok["spec"]["peerAddresses"] = json!({"hospital-b": "10.1.2.3:7051"});
        assert_accepted::<LedgerNode>(&ok, None);
    }

    #[test]
    fn identity_and_storage_rules_on_update() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|o| o["spec"]["consortiumRef"]["name"] = json!("other")),
                "consortiumRef cannot change",
            ),
            (
                Box::new(|o| o["spec"]["memberName"] = json!("hospital-b")),
                "memberName cannot change",
            ),
            (
                Box::new(|o| o["spec"]["storage"]["size"] = json!("5Gi")),
                "storage size cannot shrink",
            ),
            (
                Box::new(|o| o["spec"]["storage"]["size"] = json!("10000Mi")),
                "storage size cannot shrink",
            ),
            (
                Box::new(|o| o["spec"]["storage"]["storageClassName"] = json!("slow")),
                "storageClassName cannot change",
            ),
            (
                Box::new(|o| {
                    o["spec"]["storage"]
                        .as_object_mut()
                        .unwrap()
                        .remove("storageClassName")
                        .map(|_| ())
                        .unwrap()
                }),
                "storageClassName cannot change",
            ),
            (
                Box::new(|o| o["spec"]["nodeKeySecret"] = json!({"name": "mine"})),
                "nodeKeySecret cannot be added",
            ),
            (
                Box::new(|o| o["spec"]["adminKeySecret"] = json!({"name": "mine"})),
                "adminKeySecret cannot be added",
            ),
        ];
        let old = fixture();
        for (mutate, needle) in cases {
            let mut o = old.clone();
            mutate(&mut o);
            assert_rejected::<LedgerNode>(&o, Some(&old), needle);
        }
        // Growing is fine, and so is changing what is not identity.
        let mut grown = old.clone();
        grown["spec"]["storage"]["size"] = json!("20Gi");
        grown["spec"]["image"] = json!("medledger/medledger:0.1.1");
        assert_accepted::<LedgerNode>(&grown, Some(&old));

        let mut with_key = old.clone();
        with_key["spec"]["nodeKeySecret"] = json!({"name": "mine"});
        let mut changed = with_key.clone();
        changed["spec"]["nodeKeySecret"] = json!({"name": "theirs"});
        assert_rejected::<LedgerNode>(
            &changed,
            Some(&with_key),
            "nodeKeySecret cannot be added, removed or changed",
        );
        assert_rejected::<LedgerNode>(
            &old,
            Some(&with_key),
            "nodeKeySecret cannot be added, removed or changed",
        );
        assert_accepted::<LedgerNode>(&with_key, Some(&with_key));
    }

    #[test]
    fn schema_has_printer_columns_short_name_and_status() {
        let crd = serde_json::to_value(LedgerNode::crd()).unwrap();
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["subresources"]["status"], json!({}));
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["ln"]));
        let cols: Vec<_> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert!(
            cols.contains(&"Role".to_string()) && cols.contains(&"Peers".to_string()),
            "{cols:?}"
        );
        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["image"]["default"],
            "medledger/medledger:0.1.0"
        );
        assert_eq!(
            spec["properties"]["p2p"]["properties"]["nodePort"]["maximum"],
            32767.0
        );
    }
}
