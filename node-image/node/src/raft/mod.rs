//! Raft ordering (openraft): the type configuration and the network adapter.

pub mod network;

use crate::ledger::{Batch, BatchOutcome};
use std::io::Cursor;

openraft::declare_raft_types!(
    /// Raft entries carry proposals (`Batch`); applying one yields a `BatchOutcome`.
    pub TypeConfig:
        D = Batch,
        R = BatchOutcome,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type Node = openraft::BasicNode;

pub fn config(t: &medledger_api::config::RaftTuning) -> openraft::Config {
    openraft::Config {
        cluster_name: "medledger".into(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_timeout_min_ms,
        election_timeout_max: t.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(t.snapshot_every),
        max_in_snapshot_log_to_keep: t.keep_after_snapshot,
        max_payload_entries: 64,
        // Snapshot chunks stay well under the gRPC message limit.
        snapshot_max_chunk_size: 1 << 20,
        ..Default::default()
    }
}
