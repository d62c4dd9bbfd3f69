//! The node's configuration file (`medledger node --config FILE`), shared with the operator,
//! which renders it into a ConfigMap.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const DEFAULT_API_PORT: u16 = 7050;
pub const DEFAULT_PEER_PORT: u16 = 7051;
pub const DEFAULT_ADMIN_PORT: u16 = 9464;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the node keeps its store (Raft log, blocks, state, snapshots).
    pub data_dir: PathBuf,
    /// The canonical genesis document (`medledger genesis` output).
    pub genesis_file: PathBuf,
    /// When set, the node refuses to start unless the genesis hashes to this (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    /// The node's Ed25519 key file: its TLS identity and block-proposal key. The node
    /// derives its self-signed TLS certificate from it at start, so no certificate files exist.
    pub node_key_file: PathBuf,
    #[serde(default)]
    pub listen: Listen,
    /// Overrides of the genesis endpoints by member name, e.g. to reach a peer through a
    /// local Service or, in tests, on loopback.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_addresses: BTreeMap<String, String>,
    #[serde(default)]
    pub raft: RaftTuning,
    /// Largest number of transactions the leader packs into one proposal (capped by the
    /// genesis `maxBlockTxs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<u32>,
    /// Enables `POST /fault/isolate` and `/fault/heal` on the admin port, which cut and
    /// restore this node's peer transport. For fault tests only; never enable in production.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fault_injection: bool,
    /// For a hospital admitted after the genesis: its member name as proposed on chain. The
    /// node then starts outside the consortium and waits until the members' vote commits
    /// and the leader adds it to Raft (as a learner, then a voter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_as: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listen {
    /// Client gRPC API (SubmitTx, GetTx, GetBlock, StreamBlocks, Status, Query).
    pub api: String,
    /// Mutual-TLS peer port (Raft, forwarding, block sync).
    pub peer: String,
    /// Plain HTTP: /metrics, /live, /ready.
    pub admin: String,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            api: format!("0.0.0.0:{DEFAULT_API_PORT}"),
            peer: format!("0.0.0.0:{DEFAULT_PEER_PORT}"),
            admin: format!("0.0.0.0:{DEFAULT_ADMIN_PORT}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and allow compacting the log) after this many Raft entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, so briefly lagging peers catch up from
    /// the log rather than from a snapshot.
    pub keep_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 150,
            election_timeout_min_ms: 750,
            election_timeout_max_ms: 1500,
            snapshot_every: 5000,
            keep_after_snapshot: 1000,
        }
    }
}

impl NodeConfig {
    pub fn from_yaml(text: &str) -> Result<NodeConfig, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("config serializes")
    }
}
