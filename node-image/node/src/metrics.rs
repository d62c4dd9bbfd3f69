//! Prometheus metrics of one node, in a registry of its own.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub height: IntGauge,
    pub transactions: IntCounterVec,
    pub ingress_rejected: IntCounterVec,
    pub commit_latency: Histogram,
    pub raft_term: IntGauge,
    pub raft_role: IntGaugeVec,
    pub raft_leader: IntGauge,
    pub peers_connected: IntGauge,
    pub validators: IntGauge,
    pub in_sync: IntGauge,
    pub blocks_backfilled: IntCounter,
    pub keys_released: IntCounter,
}

pub const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let height = IntGauge::new(
            "medledger_block_height",
            "Height of the last block applied by this node",
        )
        .unwrap();
        let transactions = IntCounterVec::new(
            Opts::new(
                "medledger_transactions_total",
                "Transactions applied in blocks, by result code",
            ),
            &["result"],
        )
        .unwrap();
        let ingress_rejected = IntCounterVec::new(
            Opts::new(
                "medledger_ingress_rejected_total",
                "Transactions refused before ordering, by result code",
            ),
            &["result"],
        )
        .unwrap();
        let commit_latency = Histogram::with_opts(
            HistogramOpts::new(
                "medledger_commit_latency_seconds",
                "Time from SubmitTx to commit and apply",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .unwrap();
        let raft_term = IntGauge::new("medledger_raft_term", "Current Raft term").unwrap();
        let raft_role = IntGaugeVec::new(
            Opts::new("medledger_raft_role", "1 for this node's current Raft role"),
            &["role"],
        )
        .unwrap();
        let raft_leader = IntGauge::new(
            "medledger_raft_leader_id",
            "Raft node id of the current leader, 0 if unknown",
        )
        .unwrap();
        let peers_connected = IntGauge::new(
            "medledger_peers_connected",
            "Validators that answered this node recently",
        )
        .unwrap();
        let validators = IntGauge::new(
            "medledger_validators",
            "Validators in the current Raft membership",
        )
        .unwrap();
        let in_sync = IntGauge::new(
            "medledger_in_sync",
            "1 when the node holds every block and has applied its log",
        )
        .unwrap();
        let blocks_backfilled = IntCounter::new(
            "medledger_blocks_backfilled_total",
            "Blocks fetched from peers after installing a snapshot",
        )
        .unwrap();
        let keys_released = IntCounter::new(
            "medledger_keys_released_total",
            "Record data keys this node released after committing the audit transaction",
        )
        .unwrap();
        for c in [
            Box::new(height.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(transactions.clone()),
            Box::new(ingress_rejected.clone()),
            Box::new(commit_latency.clone()),
            Box::new(raft_term.clone()),
            Box::new(raft_role.clone()),
            Box::new(raft_leader.clone()),
            Box::new(peers_connected.clone()),
            Box::new(validators.clone()),
            Box::new(in_sync.clone()),
            Box::new(blocks_backfilled.clone()),
            Box::new(keys_released.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            height,
            transactions,
            ingress_rejected,
            commit_latency,
            raft_term,
            raft_role,
            raft_leader,
            peers_connected,
            validators,
            in_sync,
            blocks_backfilled,
            keys_released,
        }
    }

    pub fn set_role(&self, role: &str) {
        for r in ROLES {
            self.raft_role
                .with_label_values(&[r])
                .set(i64::from(r == role));
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("utf-8 metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Name of a result code as used in metric labels and CLI output.
pub fn code_name(code: i32) -> &'static str {
    medledger_api::pb::ResultCode::try_from(code)
        .map(|c| c.as_str_name())
        .unwrap_or("UNKNOWN")
}
