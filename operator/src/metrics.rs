//! Prometheus metrics of the operator and of the ledgers it watches.
//!
//! Reconciles are counted and timed per controller (a drop-timer records the duration however
//! the reconcile ends), failures are counted per controller and error variant. Fast-moving
//! ledger figures (height, peers) live here rather than in status, so a steady consortium
//! causes no API writes.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Instant;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: IntCounterVec,
    pub failures: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub node_height: IntGaugeVec,
    pub node_peers: IntGaugeVec,
    pub node_in_sync: IntGaugeVec,
    pub node_reachable: IntGaugeVec,
    pub node_polls: IntCounterVec,
    pub consortium_ready_members: IntGaugeVec,
    pub consortium_members: IntGaugeVec,
    pub consortium_key_mismatches: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "medledger_operator_reconciliations_total",
                "Reconciles started, by controller",
            ),
            &["controller"],
        )
        .unwrap();
        let failures = IntCounterVec::new(
            Opts::new(
                "medledger_operator_reconcile_errors_total",
                "Reconciles that failed, by controller and error",
            ),
            &["controller", "error"],
        )
        .unwrap();
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "medledger_operator_reconcile_duration_seconds",
                "Duration of reconciles, by controller",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .unwrap();
        let node_labels = &["namespace", "ledgernode", "member", "consortium"];
        let node_height = IntGaugeVec::new(
            Opts::new(
                "medledger_ledger_height",
                "Chain height reported by a ledger node",
            ),
            node_labels,
        )
        .unwrap();
        let node_peers = IntGaugeVec::new(
            Opts::new(
                "medledger_ledger_peers_connected",
                "Peers a ledger node is connected to",
            ),
            node_labels,
        )
        .unwrap();
        let node_in_sync = IntGaugeVec::new(
            Opts::new(
                "medledger_ledger_in_sync",
                "1 when a ledger node reports it is in sync",
            ),
            node_labels,
        )
        .unwrap();
        // Set on every poll, success or not: the "node down" alert reads it.
        let node_reachable = IntGaugeVec::new(
            Opts::new(
                "medledger_ledger_reachable",
                "1 when the last gRPC Status poll of a ledger node succeeded",
            ),
            node_labels,
        )
        .unwrap();
        let node_polls = IntCounterVec::new(
            Opts::new(
                "medledger_operator_node_polls_total",
                "gRPC Status polls of ledger nodes, by result",
            ),
            &["result"],
        )
        .unwrap();
        let consortium_ready_members = IntGaugeVec::new(
            Opts::new(
                "medledger_consortium_ready_members",
                "Members of a consortium served by a ready LedgerNode in this cluster",
            ),
            &["namespace", "consortium"],
        )
        .unwrap();
        let consortium_members = IntGaugeVec::new(
            Opts::new(
                "medledger_consortium_members",
                "Founding members of a consortium",
            ),
            &["namespace", "consortium"],
        )
        .unwrap();
        let consortium_key_mismatches = IntGaugeVec::new(
            Opts::new(
                "medledger_consortium_key_mismatches",
                "Members whose local LedgerNode holds other keys than the Consortium lists",
            ),
            &["namespace", "consortium"],
        )
        .unwrap();
        for c in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(node_height.clone()),
            Box::new(node_peers.clone()),
            Box::new(node_in_sync.clone()),
            Box::new(node_reachable.clone()),
            Box::new(node_polls.clone()),
            Box::new(consortium_ready_members.clone()),
            Box::new(consortium_members.clone()),
            Box::new(consortium_key_mismatches.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            reconciliations,
            failures,
            reconcile_duration,
            node_height,
            node_peers,
            node_in_sync,
            node_reachable,
            node_polls,
            consortium_ready_members,
            consortium_members,
            consortium_key_mismatches,
        }
    }

    /// Counts a reconcile and returns a timer that records its duration when dropped.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciliations.with_label_values(&[controller]).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.reconcile_duration.clone(),
            controller,
        }
    }

    pub fn failure(&self, controller: &'static str, error: &str) {
        self.failures.with_label_values(&[controller, error]).inc();
    }

    /// Forgets the gauges of a deleted ledger node.
    pub fn forget_node(&self, namespace: &str, node: &str, member: &str, consortium: &str) {
        for g in [
            &self.node_height,
            &self.node_peers,
            &self.node_in_sync,
            &self.node_reachable,
        ] {
            let _ = g.remove_label_values(&[namespace, node, member, consortium]);
        }
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails");
        String::from_utf8(buf).expect("exposition format is UTF-8")
    }
}

/// Records the elapsed time into the reconcile histogram when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: HistogramVec,
    controller: &'static str,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram
            .with_label_values(&[self.controller])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_gauges_are_exported() {
        let m = Metrics::new();
        {
            let _t = m.reconcile("ledgernode");
        }
        m.failure("ledgernode", "KeySecretMissing");
        m.node_height
            .with_label_values(&["ns", "node-a", "hospital-a", "emr"])
            .set(42);
        m.node_reachable
            .with_label_values(&["ns", "node-a", "hospital-a", "emr"])
            .set(0);
        m.consortium_ready_members
            .with_label_values(&["ns", "emr"])
            .set(2);
        m.consortium_key_mismatches
            .with_label_values(&["ns", "emr"])
            .set(1);
        let text = m.render();
        assert!(
            text.contains(r#"medledger_operator_reconciliations_total{controller="ledgernode"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"medledger_operator_reconcile_duration_seconds_count{controller="ledgernode"} 1"#
        ));
        assert!(text.contains(r#"medledger_operator_reconcile_errors_total{controller="ledgernode",error="KeySecretMissing"} 1"#));
        assert!(text.contains(r#"medledger_ledger_height{consortium="emr",ledgernode="node-a",member="hospital-a",namespace="ns"} 42"#));
        assert!(
            text.contains(
                r#"medledger_consortium_ready_members{consortium="emr",namespace="ns"} 2"#
            )
        );
        assert!(text.contains(r#"medledger_ledger_reachable{consortium="emr",ledgernode="node-a",member="hospital-a",namespace="ns"} 0"#));
        assert!(
            text.contains(
                r#"medledger_consortium_key_mismatches{consortium="emr",namespace="ns"} 1"#
            )
        );
        m.forget_node("ns", "node-a", "hospital-a", "emr");
        let text = m.render();
        assert!(!text.contains("medledger_ledger_height{"));
        assert!(!text.contains("medledger_ledger_reachable{"));
    }
}
