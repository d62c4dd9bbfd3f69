//! The genesis document: the founding members of a consortium and the chain parameters.
//!
//! Every hospital's operator derives the genesis from the same public spec, so the bytes must
//! be deterministic: members are sorted by name, keys are lower-case hex, the document is
//! compact JSON with a fixed field order. The genesis hash (in the chain's suite) is the
//! `prev_hash` of block 1, so two nodes with different genesis documents can never agree.

use crate::crypto::{Hash, Suite};
use crate::policy::{ACCESS_PRINCIPALS, Policy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const GENESIS_VERSION: u32 = 1;
pub const DEFAULT_MAX_BLOCK_TXS: u32 = 4096;
pub const DEFAULT_MAX_TX_BYTES: u32 = 64 * 1024;

/// What a user writes (YAML or JSON): the input of `medledger genesis`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenesisSpec {
    pub chain_id: String,
    #[serde(default)]
    pub suite: Suite,
    #[serde(default)]
    pub block_limits: BlockLimits,
    pub members: Vec<MemberSpec>,
    /// Approval policies; every field has a default, and an empty section leaves the
    /// genesis bytes exactly as they were before policies existed.
    #[serde(default, skip_serializing_if = "Policies::is_empty")]
    pub policies: Policies,
}

/// The consortium's approval policies, fixed at founding and changed only by a vote.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policies {
    /// Member approvals needed to admit a member: `OutOf(n, members)` (default: a majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_admission: Option<u32>,
    /// Member approvals needed to remove a member and its validator (default: a majority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_change: Option<u32>,
    /// Who must approve access to a record (default `OutOf(2, patient, custodian)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_access: Option<String>,
    /// Who must approve research use (default `OutOf(3, patient, custodian, ethics)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub research_access: Option<String>,
}

impl Policies {
    pub fn is_empty(&self) -> bool {
        self == &Policies::default()
    }

    fn normalized(&self, members: usize) -> Result<Policies, GenesisError> {
        let count = |name: &str, n: Option<u32>| match n {
            Some(n) if n == 0 || n as usize > members => Err(GenesisError::Policy(format!(
                "policies.{name} is {n}, but there are {members} founding members: use 1 to {members}"
            ))),
            other => Ok(other),
        };
        let expr = |name: &str, e: &Option<String>| -> Result<Option<String>, GenesisError> {
            let Some(text) = e else { return Ok(None) };
            let p = Policy::parse(text)
                .map_err(|e| GenesisError::Policy(format!("policies.{name}: {e}")))?;
            if let Some(bad) = p
                .principals()
                .into_iter()
                .find(|x| !ACCESS_PRINCIPALS.contains(&x.as_str()) && !x.starts_with("member:"))
            {
                return Err(GenesisError::Policy(format!(
                    "policies.{name}: unknown principal {bad:?}; use patient, custodian, ethics or member:<name>"
                )));
            }
            Ok(Some(p.to_string()))
        };
        Ok(Policies {
            member_admission: count("memberAdmission", self.member_admission)?,
            validator_change: count("validatorChange", self.validator_change)?,
            record_access: expr("recordAccess", &self.record_access)?,
            research_access: expr("researchAccess", &self.research_access)?,
        })
    }

    /// `OutOf(n, members)` for admitting a member, with `members` founding members.
    pub fn member_admission_policy(&self, members: usize) -> Policy {
        Self::members_policy(self.member_admission, members)
    }

    /// `OutOf(n, members)` for removing a member.
    pub fn validator_change_policy(&self, members: usize) -> Policy {
        Self::members_policy(self.validator_change, members)
    }

    fn members_policy(n: Option<u32>, members: usize) -> Policy {
        let n = n.map(|n| n as usize).unwrap_or(members / 2 + 1);
        Policy::OutOf(n, vec![Policy::Principal("members".into())])
    }

    pub fn record_access_policy(&self) -> Policy {
        self.record_access
            .as_deref()
            .and_then(|t| Policy::parse(t).ok())
            .unwrap_or_else(Policy::default_record_access)
    }

    pub fn research_access_policy(&self) -> Policy {
        self.research_access
            .as_deref()
            .and_then(|t| Policy::parse(t).ok())
            .unwrap_or_else(Policy::default_research_access)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockLimits {
    #[serde(default = "default_max_block_txs")]
    pub max_block_txs: u32,
    #[serde(default = "default_max_tx_bytes")]
    pub max_tx_bytes: u32,
}

fn default_max_block_txs() -> u32 {
    DEFAULT_MAX_BLOCK_TXS
}
fn default_max_tx_bytes() -> u32 {
    DEFAULT_MAX_TX_BYTES
}

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits {
            max_block_txs: DEFAULT_MAX_BLOCK_TXS,
            max_tx_bytes: DEFAULT_MAX_TX_BYTES,
        }
    }
}

/// A founding member: one hospital with one validator node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberSpec {
    /// DNS-1123 label, unique in the consortium, e.g. `hospital-a`.
    pub name: String,
    /// Hex Ed25519 public key of the member's validator node (its TLS identity).
    pub node_key: String,
    /// `host:port` where other validators reach this node's peer port.
    pub endpoint: String,
    /// Hex public key, in the chain's suite, of the member's administrator: it signs
    /// membership-level transactions such as registering participants.
    pub admin_key: String,
}

/// The canonical document. Field order here is the byte order of the JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Genesis {
    pub version: u32,
    pub chain_id: String,
    pub suite: Suite,
    pub max_block_txs: u32,
    pub max_tx_bytes: u32,
    pub members: Vec<Member>,
    #[serde(default, skip_serializing_if = "Policies::is_empty")]
    pub policies: Policies,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Raft node id, derived from the node key so it never depends on member order.
    pub node_id: u64,
    pub node_key: String,
    pub endpoint: String,
    pub admin_key: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    #[error("cannot parse the genesis spec: {0}")]
    Parse(String),
    #[error(
        "chainId {0:?} is invalid: use 1-63 lower-case letters, digits and '-', starting with a letter"
    )]
    ChainId(String),
    #[error(
        "the consortium has no members: list at least one member with name, nodeKey, endpoint and adminKey"
    )]
    NoMembers,
    #[error("member name {0:?} is invalid: use a DNS label (1-63 lower-case letters, digits, '-')")]
    MemberName(String),
    #[error("member {0:?} is listed twice: member names must be unique")]
    DuplicateMember(String),
    #[error(
        "member {member:?}: nodeKey is not a hex Ed25519 public key (64 hex characters): {reason}"
    )]
    NodeKey { member: String, reason: String },
    #[error("member {member:?}: adminKey is not a hex {suite} public key: {reason}")]
    AdminKey {
        member: String,
        suite: Suite,
        reason: String,
    },
    #[error("members {0:?} and {1:?} share a node key: every validator needs its own key")]
    DuplicateNodeKey(String, String),
    #[error(
        "member {member:?}: endpoint {endpoint:?} is not host:port with a port from 1 to 65535"
    )]
    Endpoint { member: String, endpoint: String },
    #[error("{0}")]
    Policy(String),
    #[error("blockLimits: {0}")]
    Limits(String),
    #[error(
        "genesis document is not canonical: re-create it with `medledger genesis` (it must be the exact bytes every member derives)"
    )]
    NotCanonical,
}

impl GenesisSpec {
    pub fn from_yaml(text: &str) -> Result<Self, GenesisError> {
        serde_yaml::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `host:port`, where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
pub fn is_endpoint(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().map(|p| p != 0).unwrap_or(false);
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    };
    port_ok && host_ok
}

/// The Raft node id of a node key: the first 8 bytes of its hash, never 0.
pub fn node_id(suite: Suite, node_key: &[u8]) -> u64 {
    let h = suite.hash(node_key);
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes")).max(1)
}

fn decode_key(hex_key: &str) -> Result<Vec<u8>, String> {
    hex::decode(hex_key).map_err(|e| e.to_string())
}

impl Genesis {
    /// Validates the spec and derives the canonical genesis.
    pub fn from_spec(spec: &GenesisSpec) -> Result<Genesis, GenesisError> {
        let chain = &spec.chain_id;
        if !is_dns_label(chain) || !chain.as_bytes()[0].is_ascii_lowercase() {
            return Err(GenesisError::ChainId(chain.clone()));
        }
        if spec.members.is_empty() {
            return Err(GenesisError::NoMembers);
        }
        let limits = spec.block_limits;
        if !(1..=100_000).contains(&limits.max_block_txs) {
            return Err(GenesisError::Limits(
                "maxBlockTxs must be between 1 and 100000".into(),
            ));
        }
        if !(256..=4 * 1024 * 1024).contains(&limits.max_tx_bytes) {
            return Err(GenesisError::Limits(
                "maxTxBytes must be between 256 and 4194304".into(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut keys = std::collections::BTreeMap::new();
        let mut members = Vec::with_capacity(spec.members.len());
        for m in &spec.members {
            if !is_dns_label(&m.name) {
                return Err(GenesisError::MemberName(m.name.clone()));
            }
            if !names.insert(m.name.clone()) {
                return Err(GenesisError::DuplicateMember(m.name.clone()));
            }
            let node_key = decode_key(&m.node_key)
                .and_then(|k| {
                    Suite::Ed25519
                        .check_public_key(&k)
                        .map(|_| k)
                        .map_err(|e| e.to_string())
                })
                .map_err(|reason| GenesisError::NodeKey {
                    member: m.name.clone(),
                    reason,
                })?;
            if let Some(other) = keys.insert(node_key.clone(), m.name.clone()) {
                return Err(GenesisError::DuplicateNodeKey(other, m.name.clone()));
            }
            let admin_key = decode_key(&m.admin_key)
                .and_then(|k| {
                    spec.suite
                        .check_public_key(&k)
                        .map(|_| k)
                        .map_err(|e| e.to_string())
                })
                .map_err(|reason| GenesisError::AdminKey {
                    member: m.name.clone(),
                    suite: spec.suite,
                    reason,
                })?;
            if !is_endpoint(&m.endpoint) {
                return Err(GenesisError::Endpoint {
                    member: m.name.clone(),
                    endpoint: m.endpoint.clone(),
                });
            }
            members.push(Member {
                name: m.name.clone(),
                node_id: node_id(spec.suite, &node_key),
                node_key: hex::encode(&node_key),
                endpoint: m.endpoint.clone(),
                admin_key: hex::encode(&admin_key),
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Genesis {
            version: GENESIS_VERSION,
            chain_id: spec.chain_id.clone(),
            suite: spec.suite,
            max_block_txs: limits.max_block_txs,
            max_tx_bytes: limits.max_tx_bytes,
            policies: spec.policies.normalized(members.len())?,
            members,
        })
    }

    /// The canonical bytes: what is shipped to nodes and hashed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("genesis serializes")
    }

    pub fn hash(&self) -> Hash {
        self.suite.hash(&self.to_bytes())
    }

    /// Parses canonical bytes, refusing anything that is not exactly what `from_spec` derives.
    pub fn from_bytes(bytes: &[u8]) -> Result<Genesis, GenesisError> {
        let g: Genesis =
            serde_json::from_slice(bytes).map_err(|e| GenesisError::Parse(e.to_string()))?;
        let respec = GenesisSpec {
            chain_id: g.chain_id.clone(),
            suite: g.suite,
            block_limits: BlockLimits {
                max_block_txs: g.max_block_txs,
                max_tx_bytes: g.max_tx_bytes,
            },
            members: g
                .members
                .iter()
                .map(|m| MemberSpec {
                    name: m.name.clone(),
                    node_key: m.node_key.clone(),
                    endpoint: m.endpoint.clone(),
                    admin_key: m.admin_key.clone(),
                })
                .collect(),
            policies: g.policies.clone(),
        };
        let canonical = Genesis::from_spec(&respec)?;
        if canonical.to_bytes() != bytes {
            return Err(GenesisError::NotCanonical);
        }
        Ok(canonical)
    }

    pub fn member_by_node_id(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.node_id == id)
    }

    pub fn member_by_name(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn spec(n: usize) -> GenesisSpec {
        GenesisSpec {
            chain_id: "test-chain".into(),
            suite: Suite::Ed25519,
            block_limits: BlockLimits::default(),
            members: (0..n)
                .map(|i| MemberSpec {
                    name: format!("hospital-{i}"),
                    node_key: hex::encode(SigningKey::generate(Suite::Ed25519).public()),
                    endpoint: format!("node-{i}.example.org:7051"),
                    admin_key: hex::encode(SigningKey::generate(Suite::Ed25519).public()),
                })
                .collect(),
            policies: Default::default(),
        }
    }

    #[test]
    fn member_order_does_not_change_the_bytes() {
        let s = spec(4);
        let mut r = s.clone();
        r.members.reverse();
        let a = Genesis::from_spec(&s).unwrap();
        let b = Genesis::from_spec(&r).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(a.hash(), b.hash());
        assert_eq!(Genesis::from_bytes(&a.to_bytes()).unwrap(), a);
    }

    #[test]
    fn yaml_round_trip() {
        let s = spec(2);
        let y = serde_yaml::to_string(&s).unwrap();
        assert!(y.contains("chainId"));
        assert_eq!(GenesisSpec::from_yaml(&y).unwrap(), s);
    }

    #[test]
    fn non_canonical_bytes_are_refused() {
        let g = Genesis::from_spec(&spec(2)).unwrap();
        let pretty = serde_json::to_vec_pretty(&g).unwrap();
        assert_eq!(
            Genesis::from_bytes(&pretty),
            Err(GenesisError::NotCanonical)
        );
    }

    #[test]
    fn every_invalid_spec_is_explained() {
        type Mutation = Box<dyn Fn(&mut GenesisSpec)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|s| s.chain_id = "Bad_Chain".into()), "chainId"),
            (Box::new(|s| s.members.clear()), "no members"),
            (Box::new(|s| s.members[0].name = "A".into()), "member name"),
            (
                Box::new(|s| s.members[1].name = s.members[0].name.clone()),
                "listed twice",
            ),
            (Box::new(|s| s.members[0].node_key = "zz".into()), "nodeKey"),
            (
                Box::new(|s| s.members[0].admin_key = "00".into()),
                "adminKey",
            ),
            (
                Box::new(|s| s.members[1].node_key = s.members[0].node_key.clone()),
                "share a node key",
            ),
            (
                Box::new(|s| s.members[0].endpoint = "nohost".into()),
                "endpoint",
            ),
            (
                Box::new(|s| s.members[0].endpoint = "h:0".into()),
                "endpoint",
            ),
            (
                Box::new(|s| s.block_limits.max_block_txs = 0),
                "maxBlockTxs",
            ),
            (Box::new(|s| s.block_limits.max_tx_bytes = 10), "maxTxBytes"),
        ];
        for (mutate, needle) in cases {
            let mut s = spec(2);
            mutate(&mut s);
            let err = Genesis::from_spec(&s).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn endpoints() {
        for ok in [
            "a:1",
            "node-0.ns.svc.cluster.local:7051",
            "127.0.0.1:9000",
            "[::1]:80",
        ] {
            assert!(is_endpoint(ok), "{ok}");
        }
        for bad in ["", "a", ":80", "a:", "a:70000", "-a:1", "a b:1", "[zz]:1"] {
            assert!(!is_endpoint(bad), "{bad}");
        }
    }
}
