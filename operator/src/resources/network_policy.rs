//! The NetworkPolicy of a LedgerNode: the peer port only from the consortium's validators (in
//! this cluster by label, elsewhere by CIDR), the metrics port only from the configured
//! scraper, and the client API only from this namespace and the operator.

use super::{
    ADMIN_PORT, API_PORT, PEER_PORT, child_meta, consortium_pod_labels, names, node_labels,
    selector_labels,
};
use crate::crd::LedgerNode;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Where the operator runs, so its status polls reach the client API.
#[derive(Clone, Debug, Default)]
pub struct OperatorPeer {
    pub namespace: Option<String>,
}

fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..Default::default()
    }
}

fn tcp(port: i32) -> Option<Vec<NetworkPolicyPort>> {
    Some(vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }])
}

/// The default scraper: pods labelled `app.kubernetes.io/name: prometheus`, any namespace.
pub fn default_scraper() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(selector(BTreeMap::from([(
            super::LABEL_NAME.to_string(),
            "prometheus".to_string(),
        )]))),
        ..Default::default()
    }
}

pub fn network_policy(node: &LedgerNode, operator: &OperatorPeer) -> NetworkPolicy {
    let name = node.name_any();
    let spec = &node.spec;
    let mut peers = vec![NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(selector(consortium_pod_labels(&spec.consortium_ref.name))),
        ..Default::default()
    }];
    peers.extend(spec.p2p.peer_cidrs.iter().map(|cidr| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.clone(),
            except: None,
        }),
        ..Default::default()
    }));
    let scraper = match &spec.monitoring.scraper {
        None => default_scraper(),
        Some(s) => NetworkPolicyPeer {
            namespace_selector: Some(s.namespace_selector.clone().unwrap_or_default()),
            pod_selector: Some(s.pod_selector.clone().unwrap_or_default()),
            ..Default::default()
        },
    };
    let mut api_clients = vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..Default::default()
    }];
    if let Some(ns) = &operator.namespace {
        api_clients.push(NetworkPolicyPeer {
            namespace_selector: Some(selector(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                ns.clone(),
            )]))),
            pod_selector: Some(selector(BTreeMap::from([(
                super::LABEL_NAME.to_string(),
                "medledger-operator".to_string(),
            )]))),
            ..Default::default()
        });
    }
    NetworkPolicy {
        metadata: child_meta(
            node,
            names::network_policy(&name),
            node_labels(&name, &spec.consortium_ref.name, &spec.member_name),
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(selector_labels(&name))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: tcp(PEER_PORT),
                    from: Some(peers),
                },
                NetworkPolicyIngressRule {
                    ports: tcp(ADMIN_PORT),
                    from: Some(vec![scraper]),
                },
                NetworkPolicyIngressRule {
                    ports: tcp(API_PORT),
                    from: Some(api_clients),
                },
            ]),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ScraperSelector;
    use crate::resources::fixtures::*;

    fn rule_for(np: &NetworkPolicy, port: i32) -> NetworkPolicyIngressRule {
        np.spec
            .as_ref()
            .unwrap()
            .ingress
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.ports.as_ref().unwrap()[0].port == Some(IntOrString::Int(port)))
            .cloned()
            .unwrap()
    }

    #[test]
    fn peer_port_only_from_consortium_validators_and_peer_cidrs() {
        let np = network_policy(&node(), &OperatorPeer::default());
        assert_eq!(
            np.spec
                .as_ref()
                .unwrap()
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap(),
            &selector_labels("node-a")
        );
        let from = rule_for(&np, 7051).from.unwrap();
        assert_eq!(from.len(), 2);
        let labels = from[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .clone()
            .unwrap();
        assert_eq!(labels["medledger.io/consortium"], "emr");
        assert_eq!(labels["app.kubernetes.io/component"], "ledger-node");
        assert_eq!(from[1].ip_block.as_ref().unwrap().cidr, "198.51.100.7/32");
        // Every port is covered by a rule: nothing else is open.
        assert_eq!(np.spec.unwrap().ingress.unwrap().len(), 3);
    }

    #[test]
    fn metrics_port_only_from_the_scraper() {
        let np = network_policy(&minimal_node(), &OperatorPeer::default());
        assert_eq!(rule_for(&np, 9464).from.unwrap(), vec![default_scraper()]);

        let mut n = node();
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([("team".to_string(), "sre".to_string())])),
            ..Default::default()
        };
        n.spec.monitoring.scraper = Some(ScraperSelector {
            namespace_selector: Some(sel.clone()),
            pod_selector: None,
        });
        let from = rule_for(&network_policy(&n, &OperatorPeer::default()), 9464)
            .from
            .unwrap();
        assert_eq!(from[0].namespace_selector, Some(sel));
        assert_eq!(from[0].pod_selector, Some(LabelSelector::default()));
    }

    #[test]
    fn api_port_from_the_namespace_and_the_operator() {
        let np = network_policy(
            &node(),
            &OperatorPeer {
                namespace: Some("medledger-system".into()),
            },
        );
        let from = rule_for(&np, 7050).from.unwrap();
        assert_eq!(from[0].pod_selector, Some(LabelSelector::default()));
        assert!(from[0].namespace_selector.is_none());
        let ns = from[1]
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(ns["kubernetes.io/metadata.name"], "medledger-system");
    }
}
