//! `Consortium`: the public definition of a consortium ledger — chain id, crypto suite, block
//! limits and the founding members with their public keys and endpoints. The same object is
//! applied in every hospital's cluster, so it holds public material only; the operator derives
//! the genesis from it, byte for byte the same everywhere.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "medledger.io",
    version = "v1alpha1",
    kind = "Consortium",
    plural = "consortia",
    singular = "consortium",
    shortname = "cons",
    category = "medledger",
    namespaced,
    status = "ConsortiumStatus",
    derive = "PartialEq",
    doc = "A consortium ledger: chain id, crypto suite and founding members (public keys and endpoints only). Apply the same object in every member's cluster; the operator derives the same genesis from it everywhere.",
    printcolumn(name = "Chain", type_ = "string", json_path = ".spec.chainId"),
    printcolumn(name = "Suite", type_ = "string", json_path = ".spec.suite"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(
        name = "Local Ready",
        type_ = "integer",
        json_path = ".status.readyLocalMembers"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Genesis",
        type_ = "string",
        json_path = ".status.genesisHash",
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
    validation = Rule::new("self.members.all(m, self.suite == 'sm' ? m.adminKey.matches('^0[23][0-9a-f]{64}$') : m.adminKey.matches('^[0-9a-f]{64}$'))")
        .message("every member's adminKey must match spec.suite: 64 lower-case hex characters for ed25519, or 66 starting with 02 or 03 (a compressed SM2 point) for sm; take it from the member card in the LedgerNode status")
        .field_path(".members"),
    validation = Rule::new("!has(self.policies) || ((!has(self.policies.memberAdmission) || self.policies.memberAdmission <= size(self.members)) && (!has(self.policies.validatorChange) || self.policies.validatorChange <= size(self.members)))")
        .message("a policy asks for more approvals than there are founding members: set policies.memberAdmission and policies.validatorChange to at most the number of members")
        .field_path(".policies"),
    // distinct(), not all/exists_one: the pairwise check is quadratic and the API server runs
    // it on every write, status included (100 ms per write at 100 members, measured).
    validation = Rule::new("size(self.members.map(m, m.nodeKey).distinct()) == size(self.members)")
        // No `FieldValueDuplicate` reason: the API server renders that reason as a bare
        // "Duplicate value" and drops the message (seen against a real API server).
        .message("two members list the same nodeKey: every member's validator needs its own key; copy each nodeKey from that member's card")
        .field_path(".members")
)]
pub struct ConsortiumSpec {
    /// Chain identifier, signed into every transaction. A DNS label starting with a letter.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(
        validation = Rule::new("self.matches('^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$')").message("chainId must be 1-63 lower-case letters, digits and '-', starting with a letter and not ending with '-'"),
        validation = crate::crd::rules::immutable("chainId", "it is part of the genesis and signed into every transaction; create a new Consortium for a new chain")
    )]
    pub chain_id: String,

    /// Crypto suite of the chain: `ed25519` (Ed25519 + SHA-256) or `sm` (SM2 + SM3). Node
    /// identities are Ed25519 under both suites.
    #[serde(default)]
    #[x_kube(validation = crate::crd::rules::immutable("suite", "it is part of the genesis; create a new Consortium for another suite"))]
    pub suite: Suite,

    /// Chain parameters fixed in the genesis.
    #[serde(default)]
    #[x_kube(validation = crate::crd::rules::immutable("blockLimits", "they are part of the genesis; create a new Consortium for other limits"))]
    pub block_limits: BlockLimits,

    /// Founding members, one validator each. They form the genesis, so the list is fixed once
    /// created; hospitals that join later are admitted by an on-chain vote of the members.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["name".into()]),
        validation = crate::crd::rules::immutable("members", "the founding members form the genesis every node has already agreed on; new hospitals join by an on-chain vote. To correct a member before the chain has started, delete and re-create the Consortium in every cluster")
    )]
    pub members: Vec<MemberSpec>,

    /// Multi-party authorization of governance actions: how many founding members' admins must
    /// approve. Each defaults to a majority of the founding members.
    #[serde(default)]
    #[x_kube(validation = crate::crd::rules::immutable("policies", "the consortium's members agreed on them when founding it; change them by an on-chain vote"))]
    pub policies: Policies,
}

/// Approval thresholds, each `OutOf(n, founding members)` in Fabric's policy grammar.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    /// Approvals needed to admit a new member (default: a majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub member_admission: Option<u32>,
    /// Approvals needed to add, remove or replace a validator (default: a majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub validator_change: Option<u32>,
}

/// Policies with their defaults resolved, as Fabric-style expressions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectivePolicies {
    /// e.g. `OutOf(2, members)`.
    pub member_admission: String,
    /// e.g. `OutOf(2, members)`.
    pub validator_change: String,
}

impl Policies {
    /// The thresholds for `members` founding members, or what is wrong with them.
    pub fn resolve(&self, members: usize) -> Result<EffectivePolicies, String> {
        let majority = (members / 2 + 1) as u32;
        let check = |name: &str, n: Option<u32>| -> Result<String, String> {
            let n = n.unwrap_or(majority);
            if n == 0 || n as usize > members {
                return Err(format!(
                    "policies.{name} is {n}, but there are {members} founding members: use 1 to {members}"
                ));
            }
            Ok(format!("OutOf({n}, members)"))
        };
        Ok(EffectivePolicies {
            member_admission: check("memberAdmission", self.member_admission)?,
            validator_change: check("validatorChange", self.validator_change)?,
        })
    }
}

/// The consortium-wide crypto suite.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    #[default]
    Ed25519,
    Sm,
}

impl From<Suite> for medledger_api::crypto::Suite {
    fn from(s: Suite) -> Self {
        match s {
            Suite::Ed25519 => medledger_api::crypto::Suite::Ed25519,
            Suite::Sm => medledger_api::crypto::Suite::Sm,
        }
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(medledger_api::crypto::Suite::from(*self).as_str())
    }
}

/// Limits every block and transaction must respect.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockLimits {
    /// Most transactions in one block (1-100000).
    #[serde(default = "default_max_block_txs")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_block_txs: u32,
    /// Largest encoded transaction in bytes (256-4194304).
    #[serde(default = "default_max_tx_bytes")]
    #[schemars(range(min = 256, max = 4194304))]
    pub max_tx_bytes: u32,
}

fn default_max_block_txs() -> u32 {
    medledger_api::genesis::DEFAULT_MAX_BLOCK_TXS
}
fn default_max_tx_bytes() -> u32 {
    medledger_api::genesis::DEFAULT_MAX_TX_BYTES
}

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits {
            max_block_txs: default_max_block_txs(),
            max_tx_bytes: default_max_tx_bytes(),
        }
    }
}

/// A founding member: one hospital and its validator, as published in the member card of the
/// hospital's LedgerNode status.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// Member name, a DNS label unique in the consortium, e.g. `hospital-a`. A LedgerNode
    /// joins as this member through its `memberName`.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = crate::crd::rules::dns_label("member name"))]
    pub name: String,
    /// Hex Ed25519 public key of the member's validator node (its TLS identity).
    #[schemars(length(max = 64))]
    #[x_kube(validation = crate::crd::rules::hex_key("nodeKey", 64, "an Ed25519 public key"))]
    pub node_key: String,
    /// Hex public key of the member's administrator in the consortium's suite.
    #[schemars(length(max = 66))]
    pub admin_key: String,
    /// `host:port` where the other validators reach this member's peer port.
    #[schemars(length(min = 3, max = 261))]
    #[x_kube(validation = crate::crd::rules::endpoint("endpoint"))]
    pub endpoint: String,
}

impl ConsortiumSpec {
    /// The input of the genesis derivation in `medledger-api`.
    pub fn genesis_spec(&self) -> medledger_api::genesis::GenesisSpec {
        medledger_api::genesis::GenesisSpec {
            chain_id: self.chain_id.clone(),
            suite: self.suite.into(),
            block_limits: medledger_api::genesis::BlockLimits {
                max_block_txs: self.block_limits.max_block_txs,
                max_tx_bytes: self.block_limits.max_tx_bytes,
            },
            members: self
                .members
                .iter()
                .map(|m| medledger_api::genesis::MemberSpec {
                    name: m.name.clone(),
                    node_key: m.node_key.clone(),
                    endpoint: m.endpoint.clone(),
                    admin_key: m.admin_key.clone(),
                })
                .collect(),
            policies: medledger_api::genesis::Policies {
                member_admission: self.policies.member_admission,
                validator_change: self.policies.validator_change,
                ..Default::default()
            },
        }
    }

    pub fn member(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsortiumStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Ready` (genesis derived, every local member ready), `Degraded` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ConsortiumPhase>,
    /// Hex hash of the canonical genesis in the chain's suite. Compare it across clusters: equal
    /// hashes mean every member derived the same genesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    /// ConfigMap holding the canonical genesis under the key `genesis.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_config_map: Option<String>,
    /// Number of founding members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i32>,
    /// The governance thresholds in force, defaults resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<EffectivePolicies>,
    /// Members served by a LedgerNode in this namespace that is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_local_members: Option<i32>,
    /// Every member with its readiness as this cluster sees it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub members: Vec<MemberStatus>,
    /// `Ready`, `Progressing` and `Degraded`; a condition's lastTransitionTime changes only when its status flips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConsortiumPhase {
    Pending,
    Ready,
    Degraded,
    Invalid,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Member name, as in spec.members.
    pub name: String,
    /// Raft node id derived from the node key, in decimal. A string: ids use all 64 bits, and
    /// the API server stores integers only up to 2^63 - 1.
    pub node_id: String,
    /// `Ready`, `NotReady` or `KeyMismatch` for a member served by a LedgerNode in this
    /// namespace; `Remote` for a member run by another hospital (its health is in that
    /// hospital's cluster and in the ledger metrics).
    pub state: MemberState,
    /// The LedgerNode serving this member in this namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_node: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MemberState {
    Ready,
    NotReady,
    KeyMismatch,
    Remote,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::*;
    use kube::CustomResourceExt;
    use medledger_api::crypto::Suite as ApiSuite;
    use medledger_api::keys::SigningKey;
    use serde_json::{Value, json};

    fn key(suite: ApiSuite) -> String {
        hex::encode(SigningKey::generate(suite).public())
    }

    fn object(suite: &str, n: usize) -> Value {
        let api_suite: ApiSuite = suite.parse().unwrap();
        json!({
            "apiVersion": "medledger.io/v1alpha1", "kind": "Consortium",
            "metadata": {"name": "emr", "namespace": "ledger"},
            "spec": {
                "chainId": "emr-chain", "suite": suite,
                "blockLimits": {"maxBlockTxs": 4096, "maxTxBytes": 65536},
                "members": (0..n).map(|i| json!({
                    "name": format!("hospital-{i}"),
                    "nodeKey": key(ApiSuite::Ed25519),
                    "adminKey": key(api_suite),
                    "endpoint": format!("node.hospital-{i}.example.org:7051"),
                })).collect::<Vec<_>>(),
            }
        })
    }

    #[test]
    fn a_good_consortium_passes_every_rule_in_both_suites() {
        for suite in ["ed25519", "sm"] {
            let o = object(suite, 3);
            assert_accepted::<Consortium>(&o, None);
            assert_accepted::<Consortium>(&o, Some(&o));
            let c: Consortium = serde_json::from_value(o).unwrap();
            medledger_api::genesis::Genesis::from_spec(&c.spec.genesis_spec()).unwrap();
        }
    }

    #[test]
    fn yaml_fixture_parses_with_defaults() {
        let c: Consortium = serde_yaml::from_str(
            r#"
apiVersion: medledger.io/v1alpha1
kind: Consortium
metadata: {name: emr}
spec:
  chainId: emr
  members:
    - name: hospital-a
      nodeKey: "0000000000000000000000000000000000000000000000000000000000000000"
      adminKey: "0000000000000000000000000000000000000000000000000000000000000000"
      endpoint: "a.example.org:7051"
"#,
        )
        .unwrap();
        assert_eq!(c.spec.suite, Suite::Ed25519);
        assert_eq!(c.spec.block_limits, BlockLimits::default());
    }

    #[test]
    fn creation_rules_explain_what_to_fix() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|o| o["spec"]["chainId"] = json!("Emr_Chain")),
                "chainId must be",
            ),
            (
                Box::new(|o| o["spec"]["chainId"] = json!("1emr")),
                "starting with a letter",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["name"] = json!("Hospital A")),
                "member name must be a DNS label",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["nodeKey"] = json!("abc")),
                "nodeKey must be 64 lower-case hex",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["nodeKey"] = json!("AB".repeat(32))),
                "nodeKey must be 64 lower-case hex",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["adminKey"] = json!("ab".repeat(33))),
                "adminKey must match spec.suite",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["endpoint"] = json!("node.example.org")),
                "endpoint must be host:port",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["endpoint"] = json!("node.example.org:70000")),
                "endpoint must be host:port",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["endpoint"] = json!("node.example.org:0")),
                "endpoint must be host:port",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["endpoint"] = json!("-bad.example.org:1")),
                "endpoint must be host:port",
            ),
            (
                Box::new(|o| {
                    o["spec"]["members"][1]["nodeKey"] = o["spec"]["members"][0]["nodeKey"].clone()
                }),
                "two members list the same nodeKey",
            ),
        ];
        for (mutate, needle) in cases {
            let mut o = object("ed25519", 2);
            mutate(&mut o);
            assert_rejected::<Consortium>(&o, None, needle);
        }
    }

    #[test]
    fn policies_resolve_to_a_majority_and_stay_within_the_members() {
        let p = Policies::default();
        assert_eq!(p.resolve(4).unwrap().member_admission, "OutOf(3, members)");
        assert_eq!(p.resolve(1).unwrap().validator_change, "OutOf(1, members)");
        let p = Policies {
            member_admission: Some(2),
            validator_change: Some(3),
        };
        assert_eq!(
            p.resolve(3).unwrap(),
            EffectivePolicies {
                member_admission: "OutOf(2, members)".into(),
                validator_change: "OutOf(3, members)".into()
            }
        );
        let err = Policies {
            member_admission: Some(4),
            validator_change: None,
        }
        .resolve(3)
        .unwrap_err();
        assert!(err.contains("use 1 to 3"), "{err}");

        let mut o = object("ed25519", 2);
        o["spec"]["policies"] = json!({"memberAdmission": 2});
        assert_accepted::<Consortium>(&o, None);
        o["spec"]["policies"] = json!({"validatorChange": 3});
        assert_rejected::<Consortium>(&o, None, "more approvals than there are founding members");
        let old = object("ed25519", 2);
        let mut o = old.clone();
        o["spec"]["policies"] = json!({"memberAdmission": 1});
        assert_rejected::<Consortium>(&o, Some(&old), "policies cannot change");
    }

    #[test]
    fn sm_admin_keys_are_compressed_points() {
        let mut o = object("sm", 1);
        o["spec"]["members"][0]["adminKey"] = json!(key(ApiSuite::Ed25519));
        assert_rejected::<Consortium>(&o, None, "adminKey must match spec.suite");
        o["spec"]["members"][0]["adminKey"] = json!(format!("04{}", "ab".repeat(32)));
        assert_rejected::<Consortium>(&o, None, "66 starting with 02 or 03");
    }

    #[test]
    fn the_genesis_inputs_are_immutable() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|o| o["spec"]["chainId"] = json!("other")),
                "chainId cannot change",
            ),
            (
                Box::new(|o| o["spec"]["suite"] = json!("sm")),
                "suite cannot change",
            ),
            (
                Box::new(|o| o["spec"]["blockLimits"]["maxBlockTxs"] = json!(10)),
                "blockLimits cannot change",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["name"] = json!("renamed")),
                "members cannot change",
            ),
            (
                Box::new(|o| o["spec"]["members"][0]["nodeKey"] = json!(key(ApiSuite::Ed25519))),
                "members cannot change",
            ),
            (
                Box::new(|o| o["spec"]["members"][1]["endpoint"] = json!("moved.example.org:7051")),
                "members cannot change",
            ),
            (
                Box::new(|o| o["spec"]["members"].as_array_mut().unwrap().truncate(1)),
                "members cannot change",
            ),
        ];
        let old = object("ed25519", 2);
        for (mutate, needle) in cases {
            let mut o = old.clone();
            mutate(&mut o);
            assert_rejected::<Consortium>(&o, Some(&old), needle);
        }
    }

    #[test]
    fn schema_has_bounds_list_keys_and_status() {
        let crd = serde_json::to_value(Consortium::crd()).unwrap();
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["subresources"]["status"], json!({}));
        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(
            spec["properties"]["members"]["x-kubernetes-list-type"],
            "map"
        );
        assert_eq!(spec["properties"]["members"]["maxItems"], 256);
        assert_eq!(
            spec["properties"]["blockLimits"]["properties"]["maxBlockTxs"]["maximum"],
            100000.0
        );
        assert_eq!(
            spec["properties"]["blockLimits"]["properties"]["maxTxBytes"]["minimum"],
            256.0
        );
        assert_eq!(
            spec["properties"]["suite"]["enum"],
            json!(["ed25519", "sm"])
        );
        let status = &v["schema"]["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(
            status["properties"]["conditions"]["x-kubernetes-list-map-keys"],
            json!(["type"])
        );
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["cons"]));
        assert!(v["additionalPrinterColumns"].as_array().unwrap().len() >= 6);
    }
}
